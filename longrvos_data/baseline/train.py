"""Train ReferMo: one loop for one process or many (torchrun), with checkpoints that resume bit for bit.

Data: a `ClipDataset` over the split (any loader's dataset, or an hf output) draws
``train.keyframes`` random codec keyframes per (video, expression); each item becomes a
`inputs.KeyframeSample` with the motion maps that follow its keyframes (``<motion_dir>/
<video_id>.npz``, extracted into ``<out>/motion/`` first when no folder is given) and the
target's keyframe masks.

Order: epoch ``e`` visits the items in the permutation ``default_rng([seed, e])``; optimiser
step ``s`` of the epoch covers positions ``[s*B*W, (s+1)*B*W)`` of it (wrapping at the end), and
rank ``r`` of ``W`` takes the ``B`` consecutive positions from ``s*B*W + r*B``. One process at
batch 2 therefore sees exactly what two processes at batch 1 see, and a resumed run sees
what an uninterrupted one would (`step_items`).

Modes: the trainable modules train; a module that has parameters but none trainable (the
Swin backbone, BERT) runs as at inference, so that its dropout and drop-path are off:
frozen features are the same however the batch is split. The public code keeps the whole
model in train mode (frozen BERT's dropout on); this is a deliberate difference.

Outputs under ``out``::

    config.yaml                 the config, written at the start (`load_config` reads it)
    motion/<video_id>.npz       when no motion folder is given
    checkpoints/step_%08d.pt    every ``checkpoint_every`` steps and at the end; the last
                                ``keep_checkpoints`` are kept
    train.csv                   step, epoch, lr, loss, every loss term (weighted; ``_0``... the earlier
                                decoder layers, ``_interm`` the proposals), grad_norm (before clipping),
                                seconds (per step since the previous row, data loading included)
    eval.csv                    step and the metrics of ``eval_fn`` (every ``eval_every`` steps)

A checkpoint holds everything (the config, the vocabulary, the full model state, optimiser,
scaler, step, RNG states of every process), so it alone serves inference (`load_checkpoint`).

Example:
    >>> report = train("data/long_rvos", "runs/tiny", config="refermo-tiny", max_steps=100)
    >>> model, tokenizer, info = load_checkpoint(report.checkpoint, "cpu")

Distributed: ``torchrun --nproc_per_node 8 -m ...`` (``WORLD_SIZE > 1``) starts one process per
device; the learning rate is ``lr * batch_size * world_size / 2``. Torch is imported when
training starts, not with this module.
"""
from __future__ import annotations

import contextlib
import csv
import datetime
import logging
import math
import os
import random
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, LongRVOSError
from ..fsutil import atomic_open
from .config import ReferMoConfig, config_from_dict, load_config
from .motion import Motion, motion_path, read_keyframes, read_motion

log = logging.getLogger("longrvos_data")

FORMAT = "refermo-train-checkpoint"
"""The format tag of a training checkpoint."""
VERSION = 1
"""Bumped when a checkpoint's content changes meaning."""
CHECKPOINT_DIR = "checkpoints"

_STEP_FILE = re.compile(r"^step_(\d{8,})\.pt$")
_RESUME_IGNORED = ("text.vocab",)
"""Config keys a resume may change: the vocabulary file's path (its tokens are compared instead)."""

EvalFn = Callable[[Any, Any, int], Mapping[str, float]]


@dataclass
class TrainReport:
    """What `train` did: optimiser ``steps`` done in all (``resumed_from`` of them before this
    call), ``epochs`` (steps over steps per epoch), the last step's ``loss``, the last checkpoint
    and the wall-clock ``seconds`` of this call."""

    steps: int
    epochs: float
    loss: float | None
    checkpoint: Path | None
    seconds: float
    steps_per_epoch: int = 0
    resumed_from: int = 0
    out: Path | None = None


@dataclass(frozen=True)
class CheckpointInfo:
    """A training checkpoint's metadata, as `load_checkpoint` returns it."""

    path: Path
    step: int
    epoch: int
    config: ReferMoConfig
    version: int


# ---- order ---------------------------------------------------------------------------------------

def steps_per_epoch(num_items: int, batch_size: int, world_size: int = 1) -> int:
    """Optimiser steps that visit every item once (the last step wraps to the epoch's start)."""
    return max(1, math.ceil(num_items / (batch_size * world_size)))


def epoch_order(num_items: int, seed: int, epoch: int) -> np.ndarray:
    """The permutation of item indices that epoch ``epoch`` visits."""
    return np.random.default_rng([seed, epoch]).permutation(num_items)


def step_items(num_items: int, seed: int, epoch: int, step: int, *, batch_size: int, world_size: int = 1,
               rank: int = 0) -> list[int]:
    """The items rank ``rank`` trains on at step ``step`` (counted within the epoch).

    Example:
        >>> a = step_items(5, 0, 0, 1, batch_size=2)
        >>> a == step_items(5, 0, 0, 1, batch_size=1, world_size=2, rank=0) + \\
        ...      step_items(5, 0, 0, 1, batch_size=1, world_size=2, rank=1)
        True
    """
    order = epoch_order(num_items, seed, epoch)
    base = step * batch_size * world_size + rank * batch_size
    return [int(order[(base + j) % num_items]) for j in range(batch_size)]


# ---- data ----------------------------------------------------------------------------------------

class KeyframeClips:
    """`ClipDataset` items as ``(KeyframeSample, caption)``: frames and masks at model size, the motion
    maps after each sampled keyframe. Map-style (a `DataLoader` takes it as is); picklable for workers."""

    def __init__(self, clips, motion_dir: str | Path, config: ReferMoConfig) -> None:
        self.clips, self.motion_dir, self.config = clips, Path(motion_dir), config
        self._cache: tuple[str, Motion] | None = None

    def __getstate__(self) -> dict:
        return {"clips": self.clips, "motion_dir": self.motion_dir, "config": self.config, "_cache": None}

    def __len__(self) -> int:
        return len(self.clips)

    def set_epoch(self, epoch: int) -> None:
        self.clips.set_epoch(epoch)

    def motion(self, video_id: str) -> Motion:
        if self._cache is None or self._cache[0] != video_id:
            self._cache = (video_id, read_motion(self.motion_dir, video_id))
        return self._cache[1]

    def __getitem__(self, index: int):
        """``(KeyframeSample, caption)``, or a `SampleError` for bad data (a worker process passes it back
        as it is, where a raised error would come back with the worker's traceback in its message)."""
        from .inputs import augment, keyframe_motion, keyframe_sample

        try:
            item = self.clips[index]
            tr = self.config.train
            mv, mv_valid = keyframe_motion(self.motion(item["video_id"]), item["frame_indices"].tolist(),
                                           self.config.motion.frames)
            frames, masks, valid, text = item["frames"], item["masks"], item["valid"], item["text"]
            if tr.augment:  # seeded per (seed, epoch, item), as the frames: the same whoever loads it
                rng = np.random.default_rng([tr.seed, self.clips.epoch, index, 1])
                frames, masks, mv, text = augment(frames, masks, mv, text, rng)
                valid = valid & masks.reshape(len(masks), -1).any(1)
            sample = keyframe_sample(frames, mv, mv_valid, short_side=tr.short_side, max_size=tr.max_size,
                                     masks=masks, valid=valid)
        except DataError as err:
            return SampleError(err.message, err.file, err.video, err.field)
        return sample, text


@dataclass(frozen=True)
class SampleError:
    """A `DataError` of one sample, carried through the data loader and raised in the training process."""

    message: str
    file: str | None = None
    video: str | None = None
    field: str | None = None

    def error(self) -> DataError:
        return DataError(self.message, file=self.file, video=self.video, field=self.field)


class _Collate:
    """Pads and tokenises (a class, so that worker processes can unpickle it)."""

    def __init__(self, tokenizer, config: ReferMoConfig) -> None:
        self.tokenizer, self.config = tokenizer, config

    def __call__(self, pairs):
        from .inputs import collate

        failed = next((p for p in pairs if isinstance(p, SampleError)), None)
        if failed is not None:
            return failed
        samples, texts = zip(*pairs)
        return collate(list(samples), list(texts), self.tokenizer, self.config)


def _first_unannotated(src: Path, split: str, format: str | None) -> tuple[str | None, str | None]:
    """(video id, its source file) of the split's first video without masks, for the error message."""
    from ..loaders import load

    try:
        for video in load(src, format=format, split=split)[split]:
            if not video.has_masks:
                return video.video_id, None if video.source_file is None else str(video.source_file)
    except LongRVOSError:
        pass
    return None, None


def open_clips(src: str | Path, config: ReferMoConfig, *, split: str = "train", format: str | None = None):
    """The split's `ClipDataset` (random keyframes of each (video, expression)), checked for masks and items.

    Raises:
        DataError: a split without masks (naming its first such video), no expressions.
    """
    from ..clips import ClipDataset

    src, tr = Path(src), config.train
    try:
        clips = ClipDataset(src, split=split, num_frames=tr.keyframes, sampling="random", seed=tr.seed,
                            format=format)
    except DataError as err:
        if err.field != "masks":
            raise
        video, file = _first_unannotated(src, split, format)
        raise DataError(f"split {split!r} has videos without masks: training needs an annotated split",
                        file=file or err.file or src, video=video, field="masks") from None
    if len(clips) == 0:
        raise DataError(f"split {split!r} has no expressions to train on", file=src, field="expressions")
    return clips


def attach_motion(clips, motion_dir: str | Path, config: ReferMoConfig) -> KeyframeClips:
    """``clips`` sampling among each video's codec keyframes, with the motion of ``motion_dir``.

    Raises:
        DataError: a video without a motion file, or one extracted from another frame count.
    """
    motion_dir = Path(motion_dir)
    pool: dict[str, list[int]] = {}
    for item in clips.items:
        if item.video_id in pool:
            continue
        path = motion_path(motion_dir, item.video_id)
        keys, frames = read_keyframes(motion_dir, item.video_id)
        if frames != item.num_frames:
            raise DataError(f"the motion file has {frames} frames, the video {item.num_frames}: re-extract it",
                            file=path, video=item.video_id, field="frame_types")
        if not keys:
            raise DataError("the motion file lists no keyframes", file=path, video=item.video_id, field="keyframes")
        pool[item.video_id] = keys
    clips.set_frame_pool(pool)   # the pool needs the split's video ids, which the dataset has just listed
    return KeyframeClips(clips, motion_dir, config)


def build_dataset(src: str | Path, motion_dir: str | Path, config: ReferMoConfig, *, split: str = "train",
                  format: str | None = None) -> KeyframeClips:
    """The training samples of ``split``: `open_clips`, then `attach_motion`."""
    return attach_motion(open_clips(src, config, split=split, format=format), motion_dir, config)


# ---- processes -----------------------------------------------------------------------------------

class _Dist:
    """This process's place: rank, world size, device; collectives that are no-ops in one process."""

    def __init__(self, device: str | None) -> None:
        import torch
        import torch.distributed as dist

        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.owns_group = False
        if self.world > 1:
            self.rank = int(os.environ.get("RANK", "0"))
            local = int(os.environ.get("LOCAL_RANK", str(self.rank)))
            cuda = torch.cuda.is_available() and (device is None or str(device).startswith("cuda"))
            self.device = torch.device("cuda", local) if cuda else torch.device("cpu")
            if cuda:
                torch.cuda.set_device(self.device)
            if not dist.is_initialized():
                # rank 0 alone extracts motion and evaluates while the others wait: allow it time
                dist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(hours=2))
                self.owns_group = True
        else:
            self.rank = 0
            self.device = torch.device(device) if device else torch.device(
                "cuda" if torch.cuda.is_available() else "cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def on_main(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on rank 0; every rank raises its error, so that no rank waits for a dead one."""
        result, error = None, None
        if self.main:
            try:
                result = fn()
            except Exception as err:  # noqa: BLE001 - re-raised below on every rank
                error = err
        if self.world > 1:
            import torch.distributed as dist

            box = [None if error is None else f"rank 0: {error}"]
            dist.broadcast_object_list(box, src=0)
            if box[0] is not None and error is None:
                raise LongRVOSError(box[0])
        if error is not None:
            raise error
        return result

    def raise_if_any_failed(self, failure: SampleError | None) -> None:
        """Raise ``failure`` here, and on every other process too (no process waits for a failed one)."""
        if self.world > 1:
            import torch
            import torch.distributed as dist

            flag = torch.tensor([0 if failure is None else 1], device=self.device)
            dist.all_reduce(flag)
            if int(flag.item()) and failure is None:
                others = [f for f in self.gather(None) if f is not None]
                raise LongRVOSError(f"another process stopped on bad data: {others[0].error()}")
            if int(flag.item()):
                self.gather(failure)
        if failure is not None:
            raise failure.error()

    def gather(self, obj: Any) -> list[Any]:
        if self.world == 1:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def mean(self, values):
        """The mean over processes of a tensor (for logging)."""
        if self.world > 1:
            import torch.distributed as dist

            values = values.clone()
            dist.all_reduce(values)
            values /= self.world
        return values

    def close(self) -> None:
        if self.owns_group:
            import torch.distributed as dist

            dist.destroy_process_group()


def autocast_dtype(precision: str, device) -> Any:
    """The autocast dtype of ``precision`` on ``device`` (None: fp32): ``auto`` is bf16 on a GPU that has
    it, fp16 on other GPUs, fp32 elsewhere."""
    import torch

    if precision == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def seed_everything(seed: int) -> None:
    """Seed torch (every device), numpy's and Python's global generators."""
    import torch

    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def rng_state() -> dict[str, Any]:
    """This process's RNG states, as plain data and tensors (``torch.load(weights_only=True)`` reads them)."""
    import torch

    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos),
                                                      int(has_gauss), float(gauss)],
             "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    import torch

    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in state and torch.cuda.is_available():
        cuda = list(state["cuda"])[:torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(cuda)


def set_train_mode(model) -> None:
    """Train mode for the modules that learn; a module with parameters, none of them trainable, runs as
    at inference (its dropout and drop-path off), with everything below it."""
    model.train()
    frozen = []

    def visit(module) -> tuple[bool, bool]:
        own = list(module.parameters(recurse=False))
        has, learns = bool(own), any(p.requires_grad for p in own)
        for child in module.children():
            h, lrn = visit(child)
            has, learns = has or h, learns or lrn
        if has and not learns:
            frozen.append(module)
        return has, learns

    visit(model)
    for module in frozen:
        module.eval()


# ---- checkpoints ---------------------------------------------------------------------------------

def checkpoint_path(out: str | Path, step: int) -> Path:
    return Path(out) / CHECKPOINT_DIR / f"step_{step:08d}.pt"


def list_checkpoints(folder: str | Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of the ``step_*.pt`` files in ``folder``, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _STEP_FILE.match(p.name))]
    return sorted(found)


def latest_checkpoint(out: str | Path) -> Path | None:
    """The newest checkpoint of a training output folder, or None."""
    found = list_checkpoints(Path(out) / CHECKPOINT_DIR)
    return found[-1][1] if found else None


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def save_checkpoint(path: str | Path, state: Mapping[str, Any]) -> Path:
    """Write ``state`` with ``torch.save`` to a temporary name, fsync it, rename it into place."""
    import torch

    path = Path(path)
    with atomic_open(path, "wb") as fh:
        torch.save(dict(state), fh)
        fh.flush()
        os.fsync(fh.fileno())
    _fsync_dir(path.parent)
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A training checkpoint's content (read with ``weights_only=True`` onto the CPU).

    Raises:
        CheckpointError: missing, unreadable, not a training checkpoint, or a newer version.
    """
    import torch

    from .weights import CheckpointError

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - every reader error becomes one message naming the file
        text = str(err).splitlines()[0] if str(err) else ""
        raise CheckpointError(f"{path}: cannot read the checkpoint: {type(err).__name__}: {text}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        tag = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise CheckpointError(f"{path}: not a ReferMo training checkpoint (format {tag!r}, expected {FORMAT!r}); "
                              "detector or released weights go through build_model(checkpoint=...)")
    if int(data.get("version", 0)) > VERSION:
        raise CheckpointError(f"{path}: checkpoint version {data['version']} is newer than this package's {VERSION}")
    for key in ("config", "vocab", "model", "step"):
        if key not in data:
            raise CheckpointError(f"{path}: field {key!r} is missing")
    return data


def _checkpoint_config(data: Mapping[str, Any], path: Path) -> ReferMoConfig:
    from .config import ConfigError
    from .weights import CheckpointError

    try:
        return config_from_dict(dict(data["config"]), source=f"{path} (field 'config')")
    except ConfigError as err:
        raise CheckpointError(str(err)) from None


def load_checkpoint(path: str | Path, device: str = "cpu") -> tuple[Any, Any, CheckpointInfo]:
    """``(model, tokenizer, info)`` from a training checkpoint: the model built from the stored config,
    its full state loaded strictly, in eval mode on ``device``; the tokenizer from the stored vocabulary.

    Raises:
        CheckpointError: see `read_checkpoint`; a state that does not fit the stored config.
    """
    from .inputs import tokenizer_for
    from .model import build_model
    from .weights import CheckpointError

    path = Path(path)
    data = read_checkpoint(path)
    config = _checkpoint_config(data, path)
    model = build_model(config, device=device)
    try:
        model.load_state_dict(data["model"], strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{path}: field 'model' does not fit the stored config: "
                              f"{str(err).splitlines()[0]}") from None
    model.eval()
    tokenizer = tokenizer_for(config, tokens=list(data["vocab"]))
    info = CheckpointInfo(path, int(data["step"]), int(data.get("epoch", 0)), config, int(data["version"]))
    return model, tokenizer, info


def _flat(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flat(value, name + "."))
        else:
            out[name] = list(value) if isinstance(value, tuple) else value
    return out


def config_differences(stored: ReferMoConfig, given: ReferMoConfig,
                       ignore: Sequence[str] = _RESUME_IGNORED) -> list[str]:
    """``"key: stored -> given"`` for every config value that differs (``ignore``d keys left out)."""
    a, b = _flat(stored.as_dict()), _flat(given.as_dict())
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b))
            if k not in ignore and a.get(k) != b.get(k)]


# ---- logs ----------------------------------------------------------------------------------------

def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    if not path.is_file():
        return [], []
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def _write_csv(path: Path, fields: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> None:
    with atomic_open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(fields), restval="")
        writer.writeheader()
        writer.writerows(rows)


def truncate_csv(path: Path, last_step: int) -> None:
    """Drop the rows past ``last_step`` (a resume redoes those steps)."""
    fields, rows = _read_csv(path)
    if fields:
        kept = [r for r in rows if r.get("step", "").isdigit() and int(r["step"]) <= last_step]
        if len(kept) != len(rows):
            _write_csv(path, fields, kept)


def append_csv(path: Path, row: Mapping[str, Any]) -> None:
    """Append ``row``; a new file gets a header, and new columns rewrite the file with the union."""
    fields, rows = _read_csv(path) if path.is_file() else ([], [])
    if not fields:
        _write_csv(path, list(row), [row])
        return
    if any(k not in fields for k in row):
        _write_csv(path, fields + [k for k in row if k not in fields], [*rows, row])
        return
    with open(path, "a", newline="", encoding="utf-8") as fh:
        csv.DictWriter(fh, fieldnames=fields, restval="").writerow(dict(row))


def write_config_yaml(path: Path, config: ReferMoConfig) -> None:
    import yaml

    text = yaml.safe_dump(_plain(config.as_dict()), sort_keys=False)
    with atomic_open(path, "w", encoding="utf-8") as fh:
        fh.write(f"# written by longrvos_data.baseline.train; `load_config` reads it\n{text}")


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# ---- the loop ------------------------------------------------------------------------------------

def train(src: str | Path, out: str | Path, *, config: str | Path | ReferMoConfig, split: str = "train",
          format: str | None = None, motion_dir: str | Path | None = None, resume: bool = False,
          max_steps: int | None = None, init: Sequence[str | Path] = (), vocab: str | Path | None = None,
          device: str | None = None, eval_fn: EvalFn | None = None, progress: bool = False) -> TrainReport:
    """Train ReferMo on ``split`` of ``src`` into ``out`` (module docstring).

    Args:
        src: any dataset a loader reads, or an hf output (`longrvos convert --to hf`).
        out: the output folder (config, motion, checkpoints, logs).
        config: a config name, YAML path or `ReferMoConfig`; its ``train`` section is the recipe.
        motion_dir: ``<video_id>.npz`` motion files; None extracts them into ``<out>/motion`` (once:
            current files are kept).
        resume: continue from the newest checkpoint in ``<out>/checkpoints`` (same config required).
        max_steps: stop after this many steps in all (None: ``epochs`` x steps per epoch).
        init: local GroundingDINO / BERT / ReferMo checkpoints to start from (none: random weights).
        vocab: BERT's ``vocab.txt`` when the config names none.
        device: ``cpu``, ``cuda``, ``cuda:1``...; None: a GPU if there is one. Under torchrun each
            process takes ``cuda:LOCAL_RANK`` (or the CPU).
        eval_fn: ``eval_fn(model, tokenizer, step) -> {metric: value}``, called on rank 0 every
            ``eval_every`` steps and at the end (the model in eval mode); rows go to ``eval.csv``.
        progress: a progress bar (rank 0).

    Raises:
        DataError: no masks, missing or stale motion, no expressions (naming file, video, field).
        LongRVOSError: resuming without a checkpoint or with another config; an output folder that
            already holds checkpoints without ``resume``; a loss that is not finite.
    """
    cfg = load_config(config)
    if max_steps is not None and max_steps < 0:
        raise LongRVOSError(f"max_steps must be 0 or more, not {max_steps}")
    ctx = _Dist(device)
    try:
        return _Trainer(cfg, Path(src), Path(out), ctx, split=split, format=format, motion_dir=motion_dir,
                        resume=resume, max_steps=max_steps, init=init, vocab=vocab, eval_fn=eval_fn,
                        progress=progress).run()
    finally:
        ctx.close()


class _Trainer:
    def __init__(self, cfg: ReferMoConfig, src: Path, out: Path, ctx: _Dist, *, split, format, motion_dir, resume,
                 max_steps, init, vocab, eval_fn, progress) -> None:
        self.cfg, self.src, self.out, self.ctx = cfg, src, out, ctx
        self.split, self.format, self.resume, self.max_steps = split, format, resume, max_steps
        self.init, self.vocab, self.eval_fn, self.progress = tuple(init or ()), vocab, eval_fn, progress
        self.motion_dir = Path(motion_dir) if motion_dir is not None else None
        self.ckpt_dir = out / CHECKPOINT_DIR

    # -- set-up --
    def _resume_state(self) -> tuple[Path | None, dict | None]:
        tr = self.cfg.train
        found = latest_checkpoint(self.out)
        if not self.resume:
            if found is not None:
                raise LongRVOSError(f"{self.ckpt_dir}: holds checkpoints already ({found.name}): resume, or train "
                                    "into another folder")
            return None, None
        if found is None:
            raise LongRVOSError(f"{self.ckpt_dir}: no checkpoint to resume from")
        data = read_checkpoint(found)
        diff = config_differences(_checkpoint_config(data, found), self.cfg)
        if diff:
            raise LongRVOSError(f"{found}: was trained with another config ({'; '.join(diff[:8])}"
                                f"{'; ...' if len(diff) > 8 else ''}): resume with the same config, or train "
                                "into another folder")
        total = tr.batch_size * self.ctx.world
        stored = int(data.get("batch_size", tr.batch_size)) * int(data.get("world_size", 1))
        if stored != total:
            raise LongRVOSError(f"{found}: was trained at a total batch of {stored} (batch_size x processes), this "
                                f"run has {total}: the steps would not mean the same")
        return found, data

    def _tokenizer(self, data: dict | None):
        from .config import ConfigError
        from .inputs import tokenizer_for, vocab_tokens

        if data is not None:
            stored = list(data["vocab"])
            if self.vocab is not None or self.cfg.text.vocab:
                given = vocab_tokens(tokenizer_for(self.cfg, None if self.vocab is None else str(self.vocab)))
                if given != stored:
                    raise LongRVOSError(f"{self.resume_path}: field 'vocab': the checkpoint's vocabulary differs from "
                                        f"{self.vocab or self.cfg.text.vocab}")
            tokenizer = tokenizer_for(self.cfg, tokens=stored)
        else:
            tokenizer = tokenizer_for(self.cfg, None if self.vocab is None else str(self.vocab))
        size = len(tokenizer.get_vocab())
        if size > self.cfg.text.vocab_size:
            raise ConfigError(f"config {self.cfg.name!r}: field 'text.vocab_size' is {self.cfg.text.vocab_size} but "
                              f"the vocabulary has {size} tokens")
        return tokenizer

    def _motion(self) -> Path:
        if self.motion_dir is not None:
            return self.motion_dir
        from .motion import extract_split

        folder = self.out / "motion"

        def extract():
            report = extract_split(self.src, folder, split=self.split, format=self.format,
                                   workers=max(1, self.cfg.train.workers), progress=self.progress)
            log.info("motion: %d video(s) extracted, %d current, into %s", report.written, report.current, folder)

        self.ctx.on_main(extract)
        return folder

    def run(self) -> TrainReport:
        import torch
        from torch.nn.parallel import DistributedDataParallel

        from .inputs import vocab_tokens
        from .losses import ReferMoCriterion
        from .model import build_model

        started = time.perf_counter()
        cfg, tr, ctx = self.cfg, self.cfg.train, self.ctx
        self.resume_path, data = self._resume_state()
        tokenizer = self._tokenizer(data)
        self.tokens = vocab_tokens(tokenizer)
        clips = open_clips(self.src, cfg, split=self.split, format=self.format)  # checked before anything is written
        if ctx.main:
            self.out.mkdir(parents=True, exist_ok=True)
            write_config_yaml(self.out / "config.yaml", cfg)
        dataset = attach_motion(clips, self._motion(), cfg)
        self.dataset = dataset
        per_epoch = steps_per_epoch(len(dataset), tr.batch_size, ctx.world)
        total = tr.epochs * per_epoch if self.max_steps is None else min(self.max_steps, tr.epochs * per_epoch)
        if data is not None and int(data.get("num_items", len(dataset))) != len(dataset):
            log.warning("%s: trained on %s items, the split now has %d: the order differs from here on",
                        self.resume_path, data.get("num_items"), len(dataset))

        seed_everything(tr.seed)
        model = build_model(cfg, checkpoint=list(self.init) if self.init and data is None else None,
                            device=str(ctx.device))
        seed_everything(tr.seed + ctx.rank)
        params = [p for p in model.parameters() if p.requires_grad]
        lr = tr.lr * tr.batch_size * ctx.world / 2
        optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=tr.weight_decay)
        dtype = autocast_dtype(tr.precision, ctx.device)
        scaler = torch.amp.GradScaler(ctx.device.type, enabled=dtype == torch.float16)
        step = 0
        if data is not None:
            model.load_state_dict(data["model"], strict=True)
            optimizer.load_state_dict(data["optimizer"])
            if data.get("scaler"):
                scaler.load_state_dict(data["scaler"])
            step = int(data["step"])
            states = list(data.get("rng", []))
            if ctx.rank < len(states):
                set_rng_state(states[ctx.rank])
            else:  # more processes than the checkpoint had: a fresh, distinct stream
                seed_everything(tr.seed + ctx.rank + step)
            log.info("resumed from %s at step %d", self.resume_path, step)
        if ctx.main:
            truncate_csv(self.out / "train.csv", step)
            truncate_csv(self.out / "eval.csv", step)
        set_train_mode(model)
        net = model
        if ctx.world > 1:
            # every trainable parameter gets a gradient in each step (aux_outputs=True), so no unused-parameter search
            net = DistributedDataParallel(model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)
        criterion = ReferMoCriterion(tr.loss)
        collate = _Collate(tokenizer, cfg)

        report = TrainReport(step, step / per_epoch, None, self.resume_path, 0.0, per_epoch, step, self.out)
        bar = None
        if self.progress and ctx.main:
            from tqdm import tqdm

            bar = tqdm(total=total, initial=step, desc="train", unit="step")

        def autocast():
            return torch.autocast(ctx.device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()

        window_start, window_steps = time.perf_counter(), 0
        try:
            while step < total:
                epoch = step // per_epoch
                first, stop = step - epoch * per_epoch, min(per_epoch, total - epoch * per_epoch)
                dataset.set_epoch(epoch)
                batches = [step_items(len(dataset), tr.seed, epoch, s, batch_size=tr.batch_size, world_size=ctx.world,
                                      rank=ctx.rank) for s in range(first, stop)]
                gen = torch.Generator().manual_seed(tr.seed * 1_000_003 + epoch)  # keeps the global RNG untouched
                loader = torch.utils.data.DataLoader(dataset, batch_sampler=batches, num_workers=tr.workers,
                                                     collate_fn=collate, generator=gen)
                for batch in loader:
                    ctx.raise_if_any_failed(batch if isinstance(batch, SampleError) else None)
                    batch = batch.to(ctx.device)
                    with autocast():
                        outputs = net(**batch.model_inputs(), aux_outputs=True)
                    losses = criterion(outputs, batch.masks, batch.valid, pixel_mask=batch.pixel_mask)
                    names = list(losses)
                    values = ctx.mean(torch.stack([losses[k].detach().float() for k in names])).tolist()
                    logged = dict(zip(names, values))
                    if not math.isfinite(logged["loss"]) and not scaler.is_enabled():
                        raise LongRVOSError(f"step {step + 1}: the loss is not finite ({logged['loss']}); terms: "
                                            + ", ".join(f"{k}={v:.4g}" for k, v in logged.items() if k != "loss"))
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(losses["loss"]).backward()
                    scaler.unscale_(optimizer)
                    norm = torch.nn.utils.clip_grad_norm_(params, tr.clip_norm if tr.clip_norm > 0 else math.inf)
                    scaler.step(optimizer)
                    scaler.update()
                    step += 1
                    window_steps += 1
                    report.loss = logged["loss"]
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(loss=f"{logged['loss']:.4g}")
                    last = step == total
                    if ctx.main and (tr.log_every <= 1 or step % tr.log_every == 0 or last):
                        now = time.perf_counter()
                        row = {"step": step, "epoch": epoch, "lr": optimizer.param_groups[0]["lr"],
                               "loss": logged["loss"], **{k: v for k, v in logged.items() if k != "loss"},
                               "grad_norm": float(norm), "seconds": (now - window_start) / window_steps}
                        append_csv(self.out / "train.csv", row)
                        log.info("step %d/%d epoch %d loss %.4f grad_norm %.3g", step, total, epoch, logged["loss"],
                                 float(norm))
                        window_start, window_steps = now, 0
                    if (tr.checkpoint_every and step % tr.checkpoint_every == 0) or last:
                        report.checkpoint = self._save(step, per_epoch, model, optimizer, scaler)
                    if (tr.eval_every and step % tr.eval_every == 0) or last:   # no-op without an eval_fn
                        self._evaluate(model, tokenizer, step)
                    if step >= total:
                        break
        finally:
            if bar is not None:
                bar.close()
        if report.checkpoint is None:
            report.checkpoint = latest_checkpoint(self.out)
        report.steps, report.epochs = step, step / per_epoch
        report.seconds = time.perf_counter() - started
        return report

    def _save(self, step: int, per_epoch: int, model, optimizer, scaler) -> Path:
        tr = self.cfg.train
        states = self.ctx.gather(rng_state())
        path = checkpoint_path(self.out, step)

        def write() -> Path:
            state = {"format": FORMAT, "version": VERSION, "config": self.cfg.as_dict(), "vocab": self.tokens,
                     "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                     "step": step, "epoch": (step - 1) // per_epoch if step else 0, "steps_per_epoch": per_epoch,
                     "batch_size": tr.batch_size, "world_size": self.ctx.world, "num_items": len(self.dataset),
                     "rng": states}
            save_checkpoint(path, state)
            for _, old in list_checkpoints(self.ckpt_dir)[:-tr.keep_checkpoints]:
                old.unlink(missing_ok=True)
            log.info("checkpoint %s", path)
            return path

        self.ctx.on_main(write)
        return path

    def _evaluate(self, model, tokenizer, step: int) -> None:
        import torch

        if self.eval_fn is None:
            return
        eval_fn = self.eval_fn

        def evaluate() -> None:
            saved = rng_state()  # evaluation must not change what training draws next
            model.eval()
            try:
                with torch.no_grad():
                    metrics = dict(eval_fn(model, tokenizer, step))
            finally:
                set_train_mode(model)
                set_rng_state(saved)
            append_csv(self.out / "eval.csv", {"step": step, **{k: float(v) for k, v in metrics.items()}})
            log.info("eval at step %d: %s", step, ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))

        self.ctx.on_main(evaluate)


__all__ = [
    "CHECKPOINT_DIR",
    "FORMAT",
    "VERSION",
    "CheckpointInfo",
    "KeyframeClips",
    "SampleError",
    "TrainReport",
    "append_csv",
    "attach_motion",
    "autocast_dtype",
    "build_dataset",
    "checkpoint_path",
    
    "config_differences",
    "epoch_order",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "open_clips",
    
    "read_checkpoint",
    "rng_state",
    "save_checkpoint",
    "seed_everything",
    "set_rng_state",
    "set_train_mode",
    "step_items",
    "steps_per_epoch",
    "train",
    "truncate_csv",
    "write_config_yaml",
]
