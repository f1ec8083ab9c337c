"""ReferMo inference: keyframe masks from a detector, carried to every frame by a mask engine.

As the public code (REFERMO.md, "Propagation with SAM2") runs it, per video:

1. keyframes come from the codec motion (`motion.Motion.keyframes`: I-frames of a fixed
   12-frame GOP, plus frame 0); the motion is read from ``motion_dir`` or extracted on the fly
   and cached in ``<out>/.motion/``;
2. the detector gives, for every expression, one mask per keyframe and a score per keyframe
   (`ReferMoDetector`: the query whose sigmoid score, averaged over the keyframes, is highest;
   its masks upsampled to the frame and thresholded at logit 0);
3. the video is cut into segments ``[k_i, k_i+1)`` at the keyframes; each segment starts from
   its keyframe's masks (``Engine.add_mask`` of every expression at once, one engine track per
   expression) and is propagated forward to the segment's end, with no memory carried from the
   previous segment. An expression whose keyframe mask is empty is empty over that segment.

Memory stays bounded in the video's length: frames are read a keyframe chunk at a time, a
detection keeps its keyframe masks as RLE, the engine is reset at every segment, and frames
are written as they come.

Output (``--out PRED``), the layouts ``longrvos eval`` reads:

- ``png``: ``PRED/<video_id>/<exp_id>/<frame>.png`` (0/255 at the original size, every listed
  frame), or for LVOS ``PRED/<video_id>/<frame>.png`` (palette, pixel = object id: each object
  takes the mask of the caption that names it);
- ``rle-json``: ``PRED/masks.json``, ``{video_id: {exp_id: [RLE | null per frame]}}`` (referring
  datasets only);
- ``PRED/predictions.json``: the detector (config, checkpoint file and SHA-256), the engine,
  and per video its keyframes and per expression the selected query, its score and its
  per-keyframe scores.

Each video is written atomically (`predictions.VideoWriter`), then its record
``PRED/.infer/<video_id>.json``; a re-run skips the videos that have one, so an interrupted run
resumes. ``predictions.json`` (and ``masks.json``) are assembled once every video of the split
has its record. Started under ``torchrun`` (``WORLD_SIZE`` > 1), each rank takes the videos
``sorted(ids)[rank::world_size]`` and writes them into the same folder (shared storage across
machines); after a barrier rank 0 assembles the files, so the folder is the same, byte for
byte, as one process writes.

Documented behaviours:

- multi-object expressions (MeViS, ReVOS): ReferMo keeps one query per expression, as the
  public code, so one object of several is found at best;
- no-target expressions: ReferMo always answers; ``min_score`` predicts an expression empty
  when its score is below it (off by default, as the public code);
- LVOS (v1 captions, one per object): each object's masks come from its caption; objects
  without a caption (LVOS v2 has none) are predicted absent, with a warning;
- the annotation project (``into_project``): the masks become pre-annotations with provenance
  ``model:refermo``; cells a person annotated are never replaced.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Protocol, Sequence

import numpy as np

from .. import masks as _masks
from ..errors import DataError, LongRVOSError, OnError, ProblemLog
from ..fsutil import atomic_open, atomic_write_json, file_sha256
from ..predictions import check_prediction_folder, video_writer
from ..schema import Video
from .motion import Motion, MotionParams, extract, is_current, motion_path, read_motion

log = logging.getLogger("longrvos_data")

OUTPUTS: tuple[str, ...] = ("png", "rle-json")
RECORDS = ".infer"
MOTION_CACHE = ".motion"
PREDICTIONS_JSON = "predictions.json"
MASKS_JSON = "masks.json"
FORMAT_TAG = "longrvos-refermo-predictions"
FORMAT_VERSION = 1
PROVENANCE_NAME = "refermo"


# -- detectors ------------------------------------------------------------------------------
@dataclass
class Detection:
    """One expression's keyframe masks (RLE or None per keyframe, at the video's size) and scores."""

    exp_id: str
    masks: list
    keyframe_scores: list[float]
    query: int | None = None

    @property
    def score(self) -> float:
        return float(np.mean(self.keyframe_scores)) if self.keyframe_scores else 0.0


class Detector(Protocol):
    """What gives keyframe masks: ReferMo, or a stand-in."""

    needs_motion: bool

    def describe(self) -> dict[str, Any]: ...

    def detect(self, video: Video, keyframes: Sequence[int], motion: Motion | None) -> Iterator[Detection]: ...


class GroundTruthDetector:
    """The ground truth's target at every keyframe, score 1: the propagation's upper bound
    (checks the pipeline, and measures what the engine loses between keyframes)."""

    needs_motion = False

    def describe(self) -> dict[str, Any]:
        return {"name": "ground-truth"}

    def detect(self, video: Video, keyframes: Sequence[int], motion: Motion | None) -> Iterator[Detection]:
        if not video.has_masks:
            raise DataError("the ground-truth detector needs masks", file=video.source_file, video=video.video_id,
                            field="masks")
        rles: dict[str, list] = {e.exp_id: [] for e in video.expressions}
        for k in keyframes:   # one frame's masks at a time, kept as RLE: memory does not grow with the video
            masks = video.frame_masks(k)
            for e in video.expressions:
                m = video.target_mask(e, masks)
                rles[e.exp_id].append(_masks.encode(m) if m is not None and m.any() else None)
        for e in video.expressions:
            found = rles[e.exp_id]
            yield Detection(e.exp_id, found, [1.0 if r is not None else 0.0 for r in found])


def _autocast(device, precision: str):
    import contextlib

    import torch

    if device.type != "cuda" or precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    return torch.autocast("cuda", dtype=dtype)


class ReferMoDetector:
    """ReferMo's keyframe masks: one query per expression, chosen by its mean score over the keyframes.

    Keyframes go through the model in chunks of ``config.chunk_size``. When a video's keyframes
    (times its expressions) exceed one chunk, the chunk's features are computed again for the
    masks instead of being kept, so memory does not grow with the video's length.

    Args:
        model: a `ReferMo` (eval mode is set here); tokenizer: its BERT tokenizer.
        short_side: frames are resized to this short side (default ``config.infer_short_side``).
        precision: ``fp32``, ``bf16`` or ``fp16`` (autocast, on a GPU only).
        checkpoint: the checkpoint file the model came from (its name and SHA-256 go to the record).
    """

    needs_motion = True

    def __init__(self, model, tokenizer, *, short_side: int | None = None, precision: str = "fp32",
                 checkpoint: str | Path | None = None) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        cfg = model.config
        self.short_side = short_side or cfg.infer_short_side
        self.max_size = round(self.short_side * cfg.train.max_size / cfg.train.short_side)
        self.precision = precision
        self.checkpoint = None if checkpoint is None else Path(checkpoint)
        self._sha = None

    @classmethod
    def from_checkpoint(cls, path: str | Path, *, device: str = "cpu", **kwargs) -> ReferMoDetector:
        """From a `train` checkpoint file, or a run folder (its newest checkpoint)."""
        from .train import latest_checkpoint, load_checkpoint

        path = Path(path)
        if path.is_dir():
            found = latest_checkpoint(path)
            if found is None:
                raise LongRVOSError(f"{path}: a run folder without checkpoints (nothing under {path}/checkpoints/)")
            path = found
        model, tokenizer, _info = load_checkpoint(path, device=device)
        return cls(model, tokenizer, checkpoint=path, **kwargs)

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": "refermo", "config": self.model.config.name, "short_side": self.short_side}
        if self.checkpoint is not None:
            if self._sha is None:
                self._sha = file_sha256(self.checkpoint)
            out["checkpoint"] = {"file": self.checkpoint.name, "sha256": self._sha}
        return out

    def detect(self, video: Video, keyframes: Sequence[int], motion: Motion | None) -> Iterator[Detection]:
        import torch
        import torch.nn.functional as F

        from ..clips import read_rgb
        from .inputs import collate, keyframe_motion, keyframe_sample

        if motion is None:
            raise LongRVOSError(f"video {video.video_id!r}: ReferMo needs the codec motion")
        if not video.expressions:
            return
        model, cfg = self.model, self.model.config
        device = next(model.parameters()).device
        mv, mv_valid = keyframe_motion(motion, keyframes, cfg.motion.frames)
        t_len, step = len(keyframes), cfg.chunk_size
        chunks = [list(range(a, min(t_len, a + step))) for a in range(0, t_len, step)]
        exps = list(video.expressions)
        keep = t_len * len(exps) <= step          # one chunk's worth: keep the features for the masks
        last = cfg.decoder_layers - 1

        def inputs(chunk: list[int]):
            """A chunk's keyframes at model size and their Swin features (shared by every expression)."""
            frames = [read_rgb(video, keyframes[t]) for t in chunk]
            sample = keyframe_sample(frames, mv[chunk], mv_valid[chunk], short_side=self.short_side,
                                     max_size=self.max_size)
            batch = collate([sample], [""], self.tokenizer, cfg).to(device)
            model._check_frame_size(*batch.pixel_values.shape[-2:])
            return batch, model.backbone_features(batch.pixel_values[0]), sample.size

        def encode(chunk_inputs, text, n: int):
            batch, features, _size = chunk_inputs
            return model.encode_frames(batch.pixel_values[0], batch.pixel_mask[0], text.per_frame(n),
                                       batch.motion[0], batch.motion_mask[0], layers=[last], features=features)

        with torch.no_grad(), _autocast(device, self.precision):
            texts = []
            for e in exps:
                ids = self.tokenizer_inputs(e.text, device)
                texts.append(model.encode_text(ids["input_ids"], ids["attention_mask"]))
            parts: list[list[tuple]] = [[] for _ in exps]
            kept: dict[tuple[int, int], Any] = {}
            size = None
            for c, chunk in enumerate(chunks):
                here = inputs(chunk)
                size = here[2]
                for j, text in enumerate(texts):
                    out = encode(here, text, len(chunk))
                    parts[j].append((out.hs[0], out.boxes[0], out.text, out.text_valid))
                    if keep:
                        kept[(c, j)] = out
            selected = []
            for j, e in enumerate(exps):
                hs, boxes, text, valid = (torch.cat([p[i] for p in parts[j]])[:, None] for i in range(4))
                q_hs, ref, logits, _coords, order = model.video_queries(hs, boxes, text, valid)
                scores = logits[0, :, :, 0].float().sigmoid()                 # (T, Q)
                q = int(scores.mean(0).argmax())
                selected.append((q_hs[0, :, q:q + 1], ref[0, :, q:q + 1], scores[:, q].tolist(), order[0, 0, q]))
            parts.clear()
            masks: list[list] = [[] for _ in exps]
            for c, chunk in enumerate(chunks):
                here = None
                for j in range(len(exps)):
                    out = kept.pop((c, j), None)
                    if out is None:
                        if here is None:
                            here = inputs(chunk)
                        out = encode(here, texts[j], len(chunk))
                    q_hs, ref = selected[j][0][chunk], selected[j][1][chunk]   # (n, 1, d), (n, 1, 4)
                    logits = model.frame_masks(out, q_hs, ref).float()         # (n, 1, h/4, w/4)
                    h, w = size
                    up = F.interpolate(logits, scale_factor=4, mode="bilinear", align_corners=False)[..., :h, :w]
                    full = F.interpolate(up, size=(video.height, video.width), mode="bilinear", align_corners=False)
                    for m in (full[:, 0] > 0).cpu().numpy():
                        masks[j].append(_masks.encode(m) if m.any() else None)
        for j, e in enumerate(exps):
            yield Detection(e.exp_id, masks[j], [round(float(s), 6) for s in selected[j][2]], int(selected[j][3]))

    def tokenizer_inputs(self, text: str, device) -> dict:
        from .model import tokenize_captions

        return tokenize_captions(self.tokenizer, [text], self.model.config, device=device)


# -- one video ------------------------------------------------------------------------------
class _RleCollector:
    """``rle-json`` output: one video's expression masks as RLE lists (null = empty), kept until the record."""

    def __init__(self, video: Video) -> None:
        self.video = video
        self.rles: dict[str, list] = {e.exp_id: [None] * video.num_frames for e in video.expressions}

    def write_expressions(self, index: int, masks: Mapping[str, Any]) -> None:
        for exp_id, value in masks.items():
            mask = value[0] if isinstance(value, tuple) else value
            if mask is not None and mask.any():
                self.rles[exp_id][index] = _masks.encode(mask)


def segments(keyframes: Sequence[int], num_frames: int) -> list[tuple[int, int]]:
    """``[(k_i, k_i+1)]``: the frames each keyframe's masks are propagated over (the last to the end).

    Example:
        >>> segments([0, 12, 24], 30)
        [(0, 12), (12, 24), (24, 30)]
    """
    keys = sorted(set(int(k) for k in keyframes))
    if not keys or keys[0] != 0:
        raise ValueError(f"keyframes {keys} must start at frame 0")
    return [(a, b) for a, b in zip(keys, keys[1:] + [num_frames])]


def propagate_segments(video: Video, keyframes: Sequence[int], detections: Sequence[Detection], engine,
                       writer) -> None:
    """Run the engine over each segment from its keyframe's masks into ``writer.write_expressions``.

    One engine session for the video, reset at every segment (no memory across segments, as the
    public code); every expression is one track.
    """
    from ..annotation.propagate import write_steps

    by_key = {k: i for i, k in enumerate(keyframes)}
    score = {d.exp_id: d.score for d in detections}

    def write(frame: int, masks: dict) -> None:   # an expression's score is its detection's, not the engine's
        writer.write_expressions(frame, {exp_id: (mask, score[exp_id]) for exp_id, (mask, _s) in masks.items()})

    engine.open(video)
    try:
        for start, end in segments(keyframes, video.num_frames):
            engine.reset()
            i = by_key[start]
            prompted = []
            for d in detections:
                if d.masks[i] is not None:
                    engine.add_mask(start, d.exp_id, _masks.decode(d.masks[i]))
                    prompted.append(d.exp_id)
            if not prompted:
                continue
            steps = engine.propagate(prompted, start=start, end=end, direction="forward")
            try:
                write_steps(steps, write, video)
            finally:
                steps.close()
    finally:
        engine.close()


# -- a split --------------------------------------------------------------------------------
@dataclass
class InferReport:
    """What `infer` did (this rank): videos written, skipped (already done), frames, files assembled."""

    split: str = ""
    layout: str = ""
    written: int = 0
    skipped: int = 0
    frames: int = 0
    rank: int = 0
    world_size: int = 1
    complete: bool = False
    predictions: Path | None = None
    masks: Path | None = None
    project_cells: int | None = None
    problems: list = field(default_factory=list)


def record_path(out: str | Path, video_id: str) -> Path:
    return Path(out) / RECORDS / f"{video_id}.json"


def _distributed() -> tuple[int, int, Any, bool]:
    """``(rank, world_size, group, made)`` under torchrun, else ``(0, 1, None, False)``.

    Inference exchanges nothing but a barrier at the end, so its group is gloo (on GPUs too) with a
    long timeout: ranks wait there for the slowest shard, which may take hours. ``made``: this call
    started the process group (and `infer` ends it).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, None, False
    import datetime

    import torch.distributed as dist

    timeout = datetime.timedelta(days=7)
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), dist.new_group(backend="gloo", timeout=timeout), False
    dist.init_process_group("gloo", timeout=timeout)
    return dist.get_rank(), dist.get_world_size(), dist.group.WORLD, True


def _motion_for(video: Video, motion_dir: Path | None, cache: Path, params: MotionParams) -> Motion:
    """The video's motion from ``motion_dir``, else from the cache, extracted into it when not current."""
    if motion_dir is not None:
        return read_motion(motion_dir, video.video_id, num_frames=video.num_frames)
    if is_current(motion_path(cache, video.video_id), params):
        return read_motion(cache, video.video_id, num_frames=video.num_frames)
    cache.mkdir(parents=True, exist_ok=True)
    motion = extract(video, params)   # its temporary stream in the system's folder, never in the output
    motion.save(motion_path(cache, video.video_id))
    return motion


def infer_video(video: Video, detector: Detector, engine, out: str | Path, *, output: str = "png",
                motion_dir: str | Path | None = None, min_score: float | None = None) -> dict[str, Any]:
    """Predict one video into ``out`` and write its record; returns the record (without masks)."""
    out = Path(out)
    params = MotionParams()
    motion = _motion_for(video, None if motion_dir is None else Path(motion_dir), out / MOTION_CACHE, params)
    keyframes = list(motion.keyframes)
    detections = list(detector.detect(video, keyframes, motion if detector.needs_motion else None))
    for d in detections:
        if len(d.masks) != len(keyframes):
            raise LongRVOSError(f"video {video.video_id!r}: the detector gave {len(d.masks)} masks for "
                                f"{len(keyframes)} keyframes (expression {d.exp_id!r})")
        if min_score is not None and d.score < min_score:
            d.masks = [None] * len(keyframes)
    record: dict[str, Any] = {
        "video_id": video.video_id, "num_frames": video.num_frames, "keyframes": keyframes,
        "expressions": {d.exp_id: {"query": d.query, "score": round(d.score, 6), "keyframe_scores": d.keyframe_scores,
                                   "empty": all(m is None for m in d.masks)} for d in detections}}
    if output == "rle-json":
        collector = _RleCollector(video)
        propagate_segments(video, keyframes, detections, engine, collector)
        record["rle"] = collector.rles
    else:
        with video_writer(out, video) as writer:
            propagate_segments(video, keyframes, detections, engine, writer)
    atomic_write_json(record_path(out, video.video_id), record)
    record.pop("rle", None)
    return record


def _read_record(out: Path, video_id: str, output: str) -> dict | None:
    path = record_path(out, video_id)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if output == "png" and not (out / video_id).is_dir():
        return None                        # the record outlived its video folder: redo it
    if (output == "rle-json") != ("rle" in record):
        return None                        # written in the other format: redo it
    return record


def _assemble(out: Path, ids: Sequence[str], header: dict, output: str) -> tuple[Path, Path | None] | None:
    """Write ``predictions.json`` (and ``masks.json``) from the records, if every video has one."""
    paths = [record_path(out, v) for v in ids]
    if not all(p.is_file() for p in paths):
        return None
    videos = {}
    masks_file = None
    if output == "rle-json":
        masks_file = out / MASKS_JSON
        with atomic_open(masks_file, "w", encoding="utf-8") as fh:   # streamed: one video in memory at a time
            fh.write("{")
            for n, (vid, path) in enumerate(zip(ids, paths)):
                record = json.loads(path.read_text(encoding="utf-8"))
                fh.write(("," if n else "") + json.dumps(vid) + ":" + json.dumps(record.pop("rle"), sort_keys=True))
                videos[vid] = record
            fh.write("}")
    else:
        for vid, path in zip(ids, paths):
            videos[vid] = json.loads(path.read_text(encoding="utf-8"))
    for record in videos.values():
        record.pop("video_id", None)
        record.pop("rle", None)
    pred = out / PREDICTIONS_JSON
    atomic_write_json(pred, {**header, "videos": videos}, indent=1)
    return pred, masks_file


def infer(src: str | Path, out: str | Path, *, detector: Detector, split: str | None = None,
          format: str | None = None, output: str = "png", engine: str = "classical",
          engine_options: Mapping[str, Any] | None = None, motion_dir: str | Path | None = None,
          min_score: float | None = None, into_project: str | Path | None = None, video_ids: Sequence[str] | None = None,
          shard: bool = True, progress: bool = False, on_error: OnError = "raise") -> InferReport:
    """Predict every video of one split of ``src`` (module docstring) into the folder ``out``.

    Args:
        src: dataset root or split folder in any readable format (masks not needed), or an hf output.
        out: the prediction folder (``longrvos eval --pred out``, or ``out/masks.json`` for rle-json).
        detector: `ReferMoDetector` (``ReferMoDetector.from_checkpoint``) or a stand-in.
        output: ``png`` or ``rle-json``.
        engine, engine_options: the mask engine (``classical``, ``sam2`` with config/checkpoint/device).
        motion_dir: ``<video_id>.npz`` files from ``extract-motion``; None: extracted and cached in ``out/.motion``.
        min_score: predict an expression empty when its score is below this.
        into_project: also write the masks into this annotation project (made from ``src`` if missing).
        video_ids: only these videos (default: all of the split).
        shard: under torchrun, take this rank's share of the videos (False: this process does them all,
            e.g. rank 0 evaluating during training while the others wait).
        on_error: ``skip`` records a bad video in ``problems`` and goes on.

    Raises:
        LongRVOSError: bad output choice, ``out`` inside ``src``, rle-json for LVOS.
    """
    from ..annotation.engines import open_engine
    from ..annotation.propagate import check_engine_options
    from ..loaders import load

    if output not in OUTPUTS:
        raise LongRVOSError(f"--format must be one of {', '.join(OUTPUTS)}, not {output!r}")
    options = dict(engine_options or {})
    check_engine_options(engine, options)
    src, out = Path(src), Path(out)
    check_prediction_folder(src, out)
    dataset = load(src, format=format, split=split, on_error=on_error)
    split = dataset.split_name(split)
    reader = dataset[split]
    ids = sorted(reader.video_ids())
    if video_ids is not None:
        unknown = sorted(set(video_ids) - set(ids))
        if unknown:
            raise LongRVOSError(f"split {split!r} of {src} has no video(s) {', '.join(unknown[:5])}")
        ids = sorted(set(video_ids))
    layout = "lvos" if dataset.format == "lvos" else "referring"
    if output == "rle-json" and layout == "lvos":
        raise LongRVOSError("LVOS predictions are palette PNGs (one per frame, pixel = object id): use --format png")
    rank, world, group, made = _distributed() if shard else (0, 1, None, False)
    report = InferReport(split=split, layout=layout, rank=rank, world_size=world)
    problems = ProblemLog(on_error)
    out.mkdir(parents=True, exist_ok=True)
    mine = ids[rank::world]
    todo = [v for v in mine if _read_record(out, v, output) is None]
    report.skipped = len(mine) - len(todo)
    header = {"format": FORMAT_TAG, "version": FORMAT_VERSION, "dataset": dataset.format, "split": split,
              "layout": layout if output == "png" else "rle-json", "detector": detector.describe(),
              "engine": {"name": engine, **{k: (Path(v).name if k in ("checkpoint", "config") and v else v)
                                            for k, v in sorted(options.items()) if k != "device"}},
              "min_score": min_score,
              "motion": {"extracted": MotionParams().hash()} if motion_dir is None else {"dir": Path(motion_dir).name}}
    try:
        eng = open_engine(engine, **options)
        bar = _bar(len(todo), progress, f"infer {split}" + (f" [rank {rank}]" if world > 1 else ""))
        try:
            for vid in todo:
                try:
                    video = reader.video(vid)
                    uncaptioned = len(video.tracks) - len({t for e in video.expressions for t in e.track_ids})
                    if layout == "lvos" and uncaptioned:
                        log.warning("%s: %d object(s) have no caption and are predicted absent", vid, uncaptioned)
                    infer_video(video, detector, eng, out, output=output, motion_dir=motion_dir, min_score=min_score)
                except DataError as err:
                    problems.add(err)   # raises unless on_error="skip"
                    continue
                report.written += 1
                report.frames += video.num_frames
                bar.update(1)
        finally:
            bar.close()
            eng.close()
    finally:
        if group is not None:   # every rank waits for the others (also after an error), then rank 0 assembles
            import torch.distributed as dist

            dist.barrier(group=group)
            if made:
                dist.destroy_process_group()
    report.problems = dataset.problems.problems + problems.problems
    if rank == 0:
        files = _assemble(out, ids, header, output)
        if files is not None:
            report.complete = True
            report.predictions, report.masks = files
            if into_project is not None:
                report.project_cells = _into_project(into_project, src, split, format, out, output)
    return report


def _bar(total: int, show: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="video", disable=not show)


def _into_project(project: str | Path, src: Path, split: str, format: str | None, out: Path, output: str) -> int:
    """Pre-annotate ``project`` with the predictions (``model:refermo``); made from ``src`` when missing."""
    from ..annotation.project import DB_NAME, import_predictions, init_project

    pred = out / MASKS_JSON if output == "rle-json" else out
    project = Path(project)
    if (project / DB_NAME).is_file():
        return import_predictions(project, pred, provenance=f"model:{PROVENANCE_NAME}")
    report = init_project(project, src, format=format, split=split, pred=pred, pred_name=PROVENANCE_NAME)
    return report.predicted_cells




# -- evaluation during training -------------------------------------------------------------
PROTOCOL_FOR = {"long_rvos": "long_rvos", "mevis": "mevis", "revos": "revos", "lvos": "lvos"}
"""The official protocol of each dataset; others (Ref-YouTube-VOS, DAVIS, projects) are scored with
MeViS's (J, F and J&F per expression over every frame)."""


class _Recording:
    """A detector that keeps what it found, for the keyframe J."""

    def __init__(self, inner: Detector) -> None:
        self.inner, self.needs_motion = inner, inner.needs_motion
        self.found: list[tuple[Video, list[int], list[Detection]]] = []

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()

    def detect(self, video: Video, keyframes: Sequence[int], motion: Motion | None) -> Iterator[Detection]:
        found = list(self.inner.detect(video, keyframes, motion))
        self.found.append((video, list(keyframes), found))
        return iter(found)


def keyframe_j(video: Video, keyframes: Sequence[int], detections: Sequence[Detection]) -> list[float]:
    """Per (keyframe, expression): J of the detected mask against the ground truth (eval's J: 1 when both
    are empty)."""
    from ..eval.metrics import MaskInfo, score_frame

    out = []
    by_exp = {e.exp_id: e for e in video.expressions}
    for i, k in enumerate(keyframes):
        gt = video.frame_masks(k)
        for d in detections:
            target = video.target_mask(by_exp[d.exp_id], gt)
            pred = None if d.masks[i] is None else _masks.decode(d.masks[i])
            out.append(score_frame(None if target is None or not target.any() else MaskInfo(target),
                                   None if pred is None else MaskInfo(pred), 0, boundary=False).j)
    return out


def evaluator(src: str | Path, out: str | Path, *, split: str, format: str | None = None, engine: str = "classical",
              engine_options: Mapping[str, Any] | None = None, motion_dir: str | Path | None = None,
              max_videos: int = 0):
    """``fn(model, tokenizer, step) -> {"J&F", "J", "F", "keyframe_J", "videos"}`` for `train.train`'s
    periodic evaluation: infer the split (its first ``max_videos``, 0 = all) into ``out/step_<N>`` and
    score it with the dataset's official protocol (`PROTOCOL_FOR`)."""
    from ..eval.runner import evaluate
    from ..loaders import load

    dataset = load(src, format=format, split=split)
    split = dataset.split_name(split)
    ids = sorted(dataset[split].video_ids())
    ids = ids[:max_videos] if max_videos else ids
    protocol = PROTOCOL_FOR.get(dataset.format, "mevis")
    motion = motion_dir if motion_dir is not None else Path(out) / "motion"

    def run(model, tokenizer, step: int) -> dict[str, float]:
        was_training = model.training
        detector = _Recording(ReferMoDetector(model, tokenizer))
        pred = Path(out) / f"step_{step:08d}"
        try:
            # motion of the eval videos is extracted once into out/motion and reused at every evaluation
            for vid in ids:
                if not is_current(motion_path(motion, vid), MotionParams()):
                    _motion_for(dataset[split].video(vid), None, Path(motion), MotionParams())
            infer(src, pred, detector=detector, split=split, format=format, engine=engine,
                  engine_options=engine_options, motion_dir=motion, video_ids=ids, shard=False)
        finally:
            model.train(was_training)
        report = evaluate(dataset[split], pred, protocol=protocol, split=split)
        kj = [j for video, keys, found in detector.found for j in keyframe_j(video, keys, found)]
        overall = report.overall
        return {"J&F": overall.get("J&F"), "J": overall.get("J"), "F": overall.get("F"),
                "keyframe_J": float(np.mean(kj)) if kj else float("nan"), "videos": len(ids)}

    return run


__all__ = ["Detection", "Detector", "GroundTruthDetector", "InferReport", "OUTPUTS", "PROTOCOL_FOR", "ReferMoDetector",
           "evaluator", "infer", "infer_video", "keyframe_j", "propagate_segments", "record_path", "segments"]
