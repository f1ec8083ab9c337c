"""SAM2 with state this engine owns: flat memory on videos of any length.

The stock ``SAM2VideoPredictor`` turns every frame into a float32 tensor at ``init_state`` and
keeps every frame's output for the whole session, although the model reads only the
conditioning frames, the last ``num_maskmem - 1`` memories and ``max_obj_ptrs_in_encoder - 1``
object pointers. This engine drives the same model (``track_step``, ``_encode_new_memory``) with
the same inputs and keeps, per track:

- the conditioning frames (prompts; attention capped at ``max_cond_frames``, nearest first);
- the memories and pointers of the recent window in the direction of travel, and of the
  frames on each side of every conditioning frame (a correction re-propagates from there);
- the low-resolution logits of every tracked frame, spilled to a file (they seed the mask
  decoder when a tracked frame is corrected), and each frame's object score.

Everything else leaves RAM: written to the session's spill folder (``spill_memories``, the
default), or dropped. A prompt or a pass that needs a released memory reads it back, or, when it
was dropped, re-derives it by re-running from the nearest conditioning frame behind it
(`stats` counts both).
Frames are decoded lazily from their files, preprocessed as ``sam2.utils.misc`` does, and
their backbone features kept in a small LRU.
"""
from __future__ import annotations

import bisect
import contextlib
import functools
import importlib.util
import os
import shutil
import tempfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ...errors import DataError, LongRVOSError
from ...schema import Video
from .base import Engine, EngineError, Held, Step, StepWithLogits, TrackState

IMG_MEAN = (0.485, 0.456, 0.406)
IMG_STD = (0.229, 0.224, 0.225)
# What `build_sam2_video_predictor` adds by default (apply_postprocessing=True): the engine
# builds the model exactly as the stock predictor is built.
POSTPROCESSING = (
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.05",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh=0.98",
    "++model.binarize_mask_from_pts_for_mem_enc=true",
    "++model.fill_hole_area=8",
)
PREDICTOR = "++model._target_=sam2.sam2_video_predictor.SAM2VideoPredictor"


def _torch():
    try:
        import torch
        import sam2  # noqa: F401  (registers its Hydra configs)
    except ImportError as exc:
        raise LongRVOSError(f"the sam2 engine needs the sam2 extra ({exc}); see the README's "
                            "'SAM2' section (make install-sam2)") from None
    return torch


@functools.lru_cache(maxsize=1)
def _has_cuda_ops() -> bool:
    """Whether sam2's compiled extension is there: without it the stock hole filling warns on every
    frame and leaves the logits as they are, which is what the engine then does, quietly."""
    return importlib.util.find_spec("sam2._C") is not None


def check_model_files(config: str | Path | None, checkpoint: str | Path | None) -> None:
    """Refuse a missing config or checkpoint before anything heavy runs (torch is not imported)."""
    missing = [flag for value, flag in ((config, "--sam2-config"), (checkpoint, "--checkpoint")) if not value]
    if missing:
        raise LongRVOSError(f"the sam2 engine needs {' and '.join(missing)}: a model config (e.g. "
                            "configs/sam2.1/sam2.1_hiera_l.yaml) and its checkpoint; it never runs on random weights")
    if not Path(checkpoint).is_file():
        raise LongRVOSError(f"{checkpoint}: SAM2 checkpoint not found (official checkpoints: see the README)")


def build_model(config: str | Path, checkpoint: str | Path, *, device: str = "cpu",
                overrides: tuple[str, ...] = ()) -> Any:
    """The SAM2 video model from a Hydra config (a name such as ``configs/sam2.1/sam2.1_hiera_l.yaml``
    or a YAML path) and a checkpoint (the ``{"model": state_dict}`` file Meta publishes).

    Raises:
        LongRVOSError: no checkpoint, a missing file, or weights that do not fit the config.
    """
    check_model_files(config, checkpoint)
    checkpoint = Path(checkpoint)
    model = _instantiate(config, (PREDICTOR, *POSTPROCESSING, *overrides))
    torch = _torch()
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        weights = state["model"] if isinstance(state, dict) and "model" in state else state
        missing, unexpected = model.load_state_dict(weights, strict=False)
    except Exception as exc:  # torch raises a zoo of types for a damaged or foreign file
        raise LongRVOSError(f"{checkpoint}: cannot be read as a SAM2 checkpoint ({type(exc).__name__}: {exc})") from None
    if missing or unexpected:
        raise LongRVOSError(f"{checkpoint}: does not fit {config}: {len(missing)} missing and {len(unexpected)} "
                            f"unexpected weights (e.g. {(list(missing) + list(unexpected))[:3]})")
    return model.to(device).eval()


def _instantiate(config: str | Path, overrides: tuple[str, ...]) -> Any:
    """Compose a packaged config by name, or load a YAML file and apply the same ``++key=value`` overrides."""
    _torch()
    from hydra import compose
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    path = Path(config)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        cfg = OmegaConf.load(path)
        for item in overrides:
            key, _, value = item.lstrip("+").partition("=")
            OmegaConf.update(cfg, key, OmegaConf.create({"v": _yaml_value(value)})["v"], force_add=True)
    else:
        try:
            cfg = compose(config_name=str(config), overrides=list(overrides))
        except Exception as exc:  # hydra's MissingConfigException and friends
            raise LongRVOSError(f"{config}: not a SAM2 config in the sam2 package nor a YAML file ({exc})") from None
    OmegaConf.resolve(cfg)
    return instantiate(cfg.model, _recursive_=True)


def _yaml_value(text: str) -> Any:
    import yaml
    return yaml.safe_load(text)


class _Slots:
    """A spill file with one fixed-size slot a frame, for tensors of one shape and dtype."""

    def __init__(self, path: str, num_frames: int, torch: Any) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        self.have = bytearray(num_frames)
        self.torch = torch
        self.shape: tuple[int, ...] | None = None
        self.dtype = None
        self.nbytes = 0

    def put(self, frame: int, tensor: Any) -> None:
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        if self.shape is None:
            self.shape, self.dtype = tuple(tensor.shape), tensor.dtype
            self.nbytes = flat.numel() * flat.element_size()
        os.pwrite(self.fd, flat.view(self.torch.uint8).numpy().tobytes(), frame * self.nbytes)
        self.have[frame] = 1

    def get(self, frame: int, device: Any) -> Any:
        if not self.have[frame]:
            return None
        data = bytearray(os.pread(self.fd, self.nbytes, frame * self.nbytes))
        return self.torch.frombuffer(data, dtype=self.torch.uint8).view(self.dtype).reshape(self.shape).to(device)

    def close(self) -> None:
        os.close(self.fd)


@dataclass
class _Track:
    """One track's model state. Records are the stock predictor's compact outputs."""

    cond: dict[int, dict] = field(default_factory=dict)      # committed conditioning outputs
    pending: dict[int, dict] = field(default_factory=dict)   # prompts since the last pass (no memory yet)
    mems: dict[int, Any] = field(default_factory=dict)       # non-conditioning maskmem_features (bf16)
    ptrs: dict[int, Any] = field(default_factory=dict)       # non-conditioning obj_ptr
    scores: np.ndarray | None = None                         # object score logit per frame (NaN: none)
    logits: _Slots | None = None                             # low-res logits of every tracked frame
    spilled: tuple[_Slots, _Slots] | None = None             # released memories and pointers (spill_memories)

    def files(self) -> list[_Slots]:
        return [x for x in (self.logits, *(self.spilled or ())) if x is not None]


class Sam2Engine(Engine):
    """The SAM2 engine (see the module docstring). Build it with a config and a checkpoint.

    Args:
        config: Hydra config name in the sam2 package or a YAML path.
        checkpoint: the weights; required (random weights only through `for_tests`).
        device: ``"cpu"`` or ``"cuda"`` / ``"cuda:N"`` (bf16 autocast on CUDA).
        overrides: extra Hydra overrides, e.g. ``("++model.image_size=512",)``.
        max_cond_frames: conditioning frames each frame attends to, nearest first
            (the model's ``max_cond_frames_in_attn`` when it sets one).
        feature_cache: frames whose backbone features are kept (LRU).
        spill_memories: write released memories and pointers to the session's spill folder, so
            that a correction far from any conditioning frame reads them back instead of
            re-running the frames in between (RAM stays flat either way; disk grows by a
            memory a frame: 32 KiB at 256 px, 512 KiB at 1024 px).
    """

    name = "sam2"

    def __init__(self, config: str | Path | None = None, checkpoint: str | Path | None = None, *,
                 device: str = "cpu", overrides: tuple[str, ...] = (), max_cond_frames: int = 8,
                 feature_cache: int = 2, spill_memories: bool = True, _model: Any = None) -> None:
        super().__init__()
        torch = _torch()
        self.model = _model if _model is not None else build_model(config, checkpoint, device=device,
                                                                        overrides=tuple(overrides))
        self.device = self.model.device
        self.torch = torch
        cap = self.model.max_cond_frames_in_attn
        self.max_cond_frames = cap if cap > 0 else max_cond_frames
        if self.max_cond_frames < 2:
            raise EngineError("max_cond_frames must be at least 2 (the frames before and after)")
        self.feature_cache = max(1, feature_cache)
        self.spill_memories = spill_memories
        m = self.model
        self.mem_span = max(10**6 - f for f in self._mem_frames(10**6, False))
        self.ptr_limit = m.max_obj_ptrs_in_encoder if m.use_obj_ptrs_in_encoder else 1
        self._features: OrderedDict[int, tuple] = OrderedDict()
        self._state: dict[str, _Track] = {}
        self._pos_enc = None
        self._spill: str | None = None
        self.stats = {"steps": 0, "rederived": 0, "reloaded": 0}
        self._pins: tuple[set[int], set[int]] = (set(), set())
        mean = torch.tensor(IMG_MEAN, dtype=torch.float32)[:, None, None]
        std = torch.tensor(IMG_STD, dtype=torch.float32)[:, None, None]
        self._norm = (mean, std)

    @staticmethod
    def check_options(config: str | Path | None = None, checkpoint: str | Path | None = None, **_: Any) -> None:
        """What `longrvos propagate` checks before reading any video (see `check_model_files`)."""
        check_model_files(config, checkpoint)

    @classmethod
    def for_tests(cls, model: Any, **options) -> "Sam2Engine":
        """Wrap an already built model (e.g. random weights in a test); never used by the CLI."""
        return cls(_model=model, **options)

    # -- session ---------------------------------------------------------------------
    def _open(self, video: Video, image_size: int | None) -> None:
        if image_size not in (None, self.model.image_size):
            raise EngineError(f"this SAM2 model works at {self.model.image_size} px, not {image_size}")
        self._spill = tempfile.mkdtemp(prefix="longrvos-sam2-")
        self.stats = {"steps": 0, "rederived": 0, "reloaded": 0}

    def _close(self) -> None:
        for track_id in list(self._state):
            self._remove(track_id)
        self._features.clear()
        self._pos_enc = None
        if self._spill is not None:
            shutil.rmtree(self._spill, ignore_errors=True)
            self._spill = None

    def _remove(self, track_id: str) -> None:
        st = self._state.pop(track_id, None)
        for slots in st.files() if st is not None else ():
            slots.close()

    def held(self) -> Held:
        mems: set[int] = set()
        ptrs: set[int] = set()
        for st in self._state.values():
            mems.update(st.mems)
            ptrs.update(st.ptrs)
            mems.update(f for f, r in st.cond.items() if r["maskmem_features"] is not None)
            ptrs.update(st.cond)
            ptrs.update(st.pending)
        return Held(frozenset(self._features), frozenset(mems), frozenset(ptrs))

    def object_score_logit(self, track_id: str, frame: int) -> float | None:
        """The model's object score logit for the track's latest result at ``frame`` (None: none yet)."""
        st = self._state.get(str(track_id))
        if st is None:
            return None
        rec = st.pending.get(frame)
        rec = st.cond.get(frame) if rec is None else rec
        if rec is not None:
            return float(rec["object_score_logits"].float().reshape(-1)[0])
        value = st.scores[frame]
        return None if np.isnan(value) else float(value)

    def _st(self, track: TrackState) -> _Track:
        st = self._state.get(track.track_id)
        if st is None:
            n = self._video().num_frames
            st = self._state[track.track_id] = _Track(scores=np.full(n, np.nan, dtype=np.float32))
            stem = os.path.join(self._spill, str(len(os.listdir(self._spill))))
            st.logits = _Slots(f"{stem}.logits", n, self.torch)
            if self.spill_memories:
                st.spilled = (_Slots(f"{stem}.mems", n, self.torch), _Slots(f"{stem}.ptrs", n, self.torch))
        return st

    # -- frames and features ---------------------------------------------------------------
    def _image(self, index: int):
        """Frame ``index`` as ``sam2.utils.misc`` prepares it: RGB, resized square, /255, normalised."""
        video = self._video()
        path = video.frames[index].path
        size = self.model.image_size
        try:
            with Image.open(path) as im:
                arr = np.array(im.convert("RGB").resize((size, size)))
        except OSError as exc:
            raise DataError(f"frame cannot be read ({exc})", file=path, video=video.video_id,
                            field=f"frames[{index}]") from None
        img = self.torch.from_numpy(arr / 255.0).permute(2, 0, 1).float()
        mean, std = self._norm
        img -= mean
        img /= std
        return img

    def _feats(self, index: int) -> tuple:
        hit = self._features.get(index)
        if hit is not None:
            self._features.move_to_end(index)
            return hit
        image = self._image(index).to(self.device).float().unsqueeze(0)
        backbone_out = self.model.forward_image(image)
        _, vision_feats, vision_pos, feat_sizes = self.model._prepare_backbone_features(backbone_out)
        value = (vision_feats, vision_pos, feat_sizes)
        self._features[index] = value
        while len(self._features) > self.feature_cache:
            self._features.popitem(last=False)
        return value

    @contextlib.contextmanager
    def _infer(self):
        torch = self.torch
        with torch.inference_mode():
            if self.device.type == "cuda":
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    yield
            else:
                yield

    # -- which frames the model reads ------------------------------------------------------
    def _mem_frames(self, t: int, reverse: bool) -> list[int]:
        """The non-conditioning memory frames ``_prepare_memory_conditioned_features`` looks up at ``t``."""
        m = self.model
        r = m.memory_temporal_stride_for_eval
        out = []
        for t_pos in range(1, m.num_maskmem):
            t_rel = m.num_maskmem - t_pos
            if t_rel == 1:
                p = t + 1 if reverse else t - 1
            elif not reverse:
                p = ((t - 2) // r) * r - (t_rel - 2) * r
            else:
                p = -(-(t + 2) // r) * r + (t_rel - 2) * r
            out.append(p)
        return out

    def _ptr_frames(self, t: int, reverse: bool) -> list[int]:
        """The frames whose object pointers it looks up at ``t``."""
        n = self._video().num_frames
        out = []
        for t_diff in range(1, min(n, self.ptr_limit)):
            p = t + t_diff if reverse else t - t_diff
            if p < 0 or p >= n:
                break
            out.append(p)
        return out

    def _view(self, st: _Track, t: int, reverse: bool) -> dict:
        """The ``output_dict`` ``track_step`` reads at ``t``: the selected conditioning outputs, and
        the non-conditioning records it looks up (unselected conditioning frames stand in, as stock)."""
        from sam2.modeling.sam2_utils import select_closest_cond_frames

        selected, unselected = select_closest_cond_frames(t, st.cond, self.max_cond_frames)
        non_cond: dict[int, dict] = {}
        for p in self._mem_frames(t, reverse):
            if p in st.mems:
                non_cond[p] = {"maskmem_features": st.mems[p], "maskmem_pos_enc": self._pos_enc,
                               "obj_ptr": st.ptrs[p]}
            elif p in unselected:
                non_cond[p] = unselected[p]
        for p in self._ptr_frames(t, reverse):
            if p not in non_cond:
                if p in st.ptrs:
                    non_cond[p] = {"obj_ptr": st.ptrs[p]}
                elif p in unselected:
                    non_cond[p] = unselected[p]
        return {"cond_frame_outputs": selected, "non_cond_frame_outputs": non_cond}

    # -- state upkeep --------------------------------------------------------------------
    def _lost(self, st: _Track, track: TrackState, f: int, store: dict) -> bool:
        return f in track.tracked and f not in st.cond and f not in store

    def _ensure(self, st: _Track, track: TrackState, t: int, reverse: bool) -> None:
        """Bring back the memories and pointers the model reads at ``t`` that were released: from
        the spill files, else by re-running from the nearest conditioning frame behind them."""
        need_m = self._mem_frames(t, reverse)
        need_p = self._ptr_frames(t, reverse)
        if st.spilled is not None:
            for frames, store, slots in ((need_m, st.mems, st.spilled[0]), (need_p, st.ptrs, st.spilled[1])):
                for f in frames:
                    if self._lost(st, track, f, store) and slots.have[f]:
                        store[f] = slots.get(f, self.device)
                        self.stats["reloaded"] += 1
        lost = {f for f in need_m if self._lost(st, track, f, st.mems)}
        lost |= {f for f in need_p if self._lost(st, track, f, st.ptrs)}
        if not lost:
            return
        self._pins = (set(need_m), set(need_p))
        try:
            for r in (False, True):
                group = sorted(f for f in lost if track.tracked[f] == r)
                if not group:
                    continue
                committed = sorted(st.cond)
                if not r:
                    i = bisect.bisect_left(committed, group[0])
                    if i == 0:
                        continue  # nothing to re-run from: the model reads what is held, as for untracked frames
                    frames = range(committed[i - 1] + 1, group[-1] + 1)
                else:
                    i = bisect.bisect_right(committed, group[-1])
                    if i == len(committed):
                        continue
                    frames = range(committed[i] - 1, group[0] - 1, -1)
                for f in frames:
                    if f not in st.cond:
                        self._track_frame(st, f, r)
                        self.stats["rederived"] += 1
                        self._evict(st, track, f, r)
        finally:
            self._pins = (set(), set())

    def _evict(self, st: _Track, track: TrackState, t: int | None, reverse: bool) -> None:
        """Release every memory and pointer outside the window behind ``t`` and the conditioning
        frames' neighbourhoods (and the frames pinned by a re-derivation)."""
        cond = sorted(track.cond | set(st.cond))
        d = -1 if reverse else 1

        def keep(f: int, span: int, pins: set[int]) -> bool:
            if f in pins or (t is not None and 0 <= (t - f) * d < span):
                return True
            i = bisect.bisect_left(cond, f)
            near = [cond[j] for j in (i - 1, i) if 0 <= j < len(cond)]
            return any(0 < abs(f - c) <= span for c in near)

        for k, (store, span) in enumerate(((st.mems, self.mem_span), (st.ptrs, self.ptr_limit - 1))):
            for f in [f for f in store if not keep(f, span, self._pins[k])]:
                value = store.pop(f)
                if st.spilled is not None:
                    st.spilled[k].put(f, value)

    def _compact(self, out: dict) -> dict:
        """The stock predictor's compact output: bf16 memory, hole-filled low-res logits, pointer, score."""
        torch = self.torch
        feats = out["maskmem_features"]
        if feats is not None:
            feats = feats.to(torch.bfloat16)
            if self._pos_enc is None:
                self._pos_enc = [x[0:1].clone() for x in out["maskmem_pos_enc"]]
        pred = out["pred_masks"]
        if self.model.fill_hole_area > 0 and _has_cuda_ops():
            from sam2.utils.misc import fill_holes_in_mask_scores
            pred = fill_holes_in_mask_scores(pred, self.model.fill_hole_area)
        return {"maskmem_features": feats, "maskmem_pos_enc": self._pos_enc if feats is not None else None,
                "pred_masks": pred, "obj_ptr": out["obj_ptr"], "object_score_logits": out["object_score_logits"]}

    def _track_frame(self, st: _Track, t: int, reverse: bool) -> dict:
        """One tracking step at a non-conditioning frame; keeps its memory and pointer."""
        vision_feats, vision_pos, feat_sizes = self._feats(t)
        out = self.model.track_step(
            frame_idx=t, is_init_cond_frame=False, current_vision_feats=vision_feats,
            current_vision_pos_embeds=vision_pos, feat_sizes=feat_sizes, point_inputs=None, mask_inputs=None,
            output_dict=self._view(st, t, reverse), num_frames=self._video().num_frames,
            track_in_reverse=reverse, run_mem_encoder=True, prev_sam_mask_logits=None)
        rec = self._compact(out)
        st.mems[t] = rec["maskmem_features"]
        st.ptrs[t] = rec["obj_ptr"]
        self.stats["steps"] += 1
        return rec

    def _save_logits(self, st: _Track, t: int, rec: dict) -> None:
        st.logits.put(t, rec["pred_masks"].float())
        st.scores[t] = float(rec["object_score_logits"].float().reshape(-1)[0])

    def _load_logits(self, st: _Track, t: int):
        return st.logits.get(t, self.device)

    def _video_res(self, low) -> Any:
        video = self._video()
        low = low.to(self.device)
        if low.shape[-2:] == (video.height, video.width):
            return low
        return self.torch.nn.functional.interpolate(low, size=(video.height, video.width), mode="bilinear",
                                                    align_corners=False)

    def _mask(self, low) -> np.ndarray:
        return (self._video_res(low)[0, 0] > 0).cpu().numpy()

    # -- prompts -----------------------------------------------------------------------
    def _prompt_step(self, frame: int, track: TrackState, points=None, mask_inputs=None) -> np.ndarray:
        """The stock ``add_new_points_or_box`` / ``add_new_mask`` on one track, kept as a pending
        conditioning output (its memory is encoded when the next pass starts, as stock)."""
        torch = self.torch
        st = self._st(track)
        is_init = frame not in track.tracked
        reverse = False if is_init else track.tracked[frame]
        prev = None
        if points is not None:
            old = st.pending.get(frame)
            old = st.cond.get(frame) if old is None else old
            prev = old["pred_masks"] if old is not None else self._load_logits(st, frame)
            if prev is not None:
                prev = torch.clamp(prev.to(self.device), -32.0, 32.0)
        with self._infer():
            if not is_init:
                self._ensure(st, track, frame, reverse)
            vision_feats, vision_pos, feat_sizes = self._feats(frame)
            out = self.model.track_step(
                frame_idx=frame, is_init_cond_frame=is_init, current_vision_feats=vision_feats,
                current_vision_pos_embeds=vision_pos, feat_sizes=feat_sizes, point_inputs=points,
                mask_inputs=mask_inputs, output_dict=self._view(st, frame, reverse),
                num_frames=self._video().num_frames, track_in_reverse=reverse, run_mem_encoder=False,
                prev_sam_mask_logits=prev)
            rec = self._compact(out)
            st.pending[frame] = rec
            self._save_logits(st, frame, rec)
            return self._mask(rec["pred_masks"])

    def _point_inputs(self, points: np.ndarray, labels: np.ndarray) -> dict:
        torch = self.torch
        video = self._video()
        pts = torch.tensor(points, dtype=torch.float32)[None]
        lab = torch.tensor(labels, dtype=torch.int32)[None]
        pts = pts / torch.tensor([video.width, video.height]).to(pts.device)
        pts = pts * self.model.image_size
        return {"point_coords": pts.to(self.device), "point_labels": lab.to(self.device)}

    def _add_points(self, frame: int, track: TrackState, points: np.ndarray, labels: np.ndarray) -> np.ndarray:
        return self._prompt_step(frame, track, points=self._point_inputs(points, labels))

    def _add_box(self, frame: int, track: TrackState, box: np.ndarray) -> np.ndarray:
        pts = self._point_inputs(box.reshape(2, 2), np.array([2, 3], dtype=np.int32))
        return self._prompt_step(frame, track, points=pts)

    def _add_mask(self, frame: int, track: TrackState, mask: np.ndarray) -> np.ndarray:
        torch = self.torch
        size = self.model.image_size
        m = torch.from_numpy(mask)[None, None].float().to(self.device)
        if m.shape[-2:] != (size, size):
            m = torch.nn.functional.interpolate(m, size=(size, size), align_corners=False, mode="bilinear",
                                                antialias=True)
            m = (m >= 0.5).float()
        return self._prompt_step(frame, track, mask_inputs=m)

    # -- propagation -------------------------------------------------------------------
    def _begin_pass(self, tracks: list[TrackState], start: int, reverse: bool) -> None:
        """Encode the memories of the prompts made since the last pass (stock: the preflight), and
        release, for every track of the session, what this pass will not read."""
        torch = self.torch
        size = self.model.image_size
        with self._infer():
            for track in tracks:
                st = self._state.get(track.track_id)
                if st is None or not st.pending:
                    continue
                for f, rec in st.pending.items():
                    vision_feats, _, feat_sizes = self._feats(f)
                    high = torch.nn.functional.interpolate(rec["pred_masks"].to(self.device), size=(size, size),
                                                           mode="bilinear", align_corners=False)
                    feats, pos = self.model._encode_new_memory(
                        current_vision_feats=vision_feats, feat_sizes=feat_sizes, pred_masks_high_res=high,
                        object_score_logits=rec["object_score_logits"], is_mask_from_pts=True)
                    if self._pos_enc is None:
                        self._pos_enc = [x[0:1].clone() for x in pos]
                    rec["maskmem_features"] = feats.to(torch.bfloat16)
                    rec["maskmem_pos_enc"] = self._pos_enc
                    st.cond[f] = rec
                    st.mems.pop(f, None)
                    st.ptrs.pop(f, None)
                st.pending.clear()
        behind = start + 1 if reverse else start - 1
        for track_id, st in self._state.items():
            self._evict(st, self._tracks[track_id], behind, reverse)

    def _step(self, frame: int, track: TrackState, reverse: bool, logits: bool) -> Step | StepWithLogits:
        st = self._st(track)
        with self._infer():
            rec = st.cond.get(frame)
            if rec is None:
                self._ensure(st, track, frame, reverse)
                rec = self._track_frame(st, frame, reverse)
                self._save_logits(st, frame, rec)
            self._evict(st, track, frame, reverse)
            video_res = self._video_res(rec["pred_masks"])
            score_logit = float(rec["object_score_logits"].float().reshape(-1)[0])
            mask = (video_res[0, 0] > 0).cpu().numpy() if score_logit > 0 else None
            score = float(1.0 / (1.0 + np.exp(-score_logit)))
            if logits:
                return StepWithLogits(frame, track.track_id, mask, score, video_res[0, 0].float().cpu().numpy())
            return Step(frame, track.track_id, mask, score)
