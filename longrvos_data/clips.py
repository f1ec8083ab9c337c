"""Training clips: T sampled frames of a video, the expression's target mask in each, the text.

`ClipDataset` is a map-style dataset over the (video, expression) pairs of one split. It
reads an hf output (`longrvos convert --to hf`) directly from its parquet shards, or any
dataset a loader reads (raw Long-RVOS / MeViS / ... folders) through the `Video` API.
Items are dicts of numpy arrays; `ClipDataset.as_torch` wraps it as a
``torch.utils.data.Dataset`` of tensors (torch is imported only then).

Sampling is seeded per item: ``(seed, epoch, index)`` fixes the frames, so results do not
depend on the DataLoader's worker count or order; call `ClipDataset.set_epoch` to draw
new frames each epoch. File handles are opened lazily in each process and never pickled,
so the dataset works with ``DataLoader(num_workers=N)`` under fork or spawn.

Example:
    >>> clips = ClipDataset("out/long_rvos_hf", split="train", num_frames=8, seed=0)
    >>> item = clips[0]
    >>> item["frames"].shape, item["masks"].shape      # (8, H, W, 3) uint8, (8, H, W) bool
    >>> loader = torch.utils.data.DataLoader(clips.as_torch(), batch_size=1, num_workers=2)
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import numpy as np

from . import masks as _masks
from .errors import DataError, LongRVOSError

log = logging.getLogger("longrvos_data")

Sampling = Literal["uniform", "random", "window", "even"]
SAMPLINGS: tuple[str, ...] = ("uniform", "random", "window", "even")


def sample_frames(num_frames: int, length: int, *, mode: str = "uniform", rng: np.random.Generator | None = None,
                  stride: int = 1) -> np.ndarray:
    """Pick ``length`` frame indices of a ``num_frames``-frame video, in increasing order.

    Modes:
        ``uniform``: one random frame in each of ``length`` equal segments (TSN-style).
        ``random``: ``length`` distinct random frames.
        ``window``: ``length`` consecutive frames ``stride`` apart from a random start.
        ``even``: evenly spaced, no randomness (evaluation).
    Videos shorter than ``length`` (or than the window) repeat frames, evenly spread.

    Returns:
        ``(length,) int64``.

    Example:
        >>> sample_frames(100, 4, mode="even").tolist()
        [0, 33, 66, 99]
    """
    if num_frames <= 0:
        raise ValueError("a video needs at least one frame")
    if mode not in SAMPLINGS:
        raise ValueError(f"sampling {mode!r} is not one of {SAMPLINGS}")
    rng = rng if rng is not None else np.random.default_rng(0)
    even = np.linspace(0, num_frames - 1, length).round().astype(np.int64)
    if mode == "even":
        return even
    if mode == "window":
        span = (length - 1) * stride + 1
        if span > num_frames:
            return even
        start = int(rng.integers(0, num_frames - span + 1))
        return start + stride * np.arange(length, dtype=np.int64)
    if num_frames < length:
        return even
    if mode == "random":
        return np.sort(rng.choice(num_frames, size=length, replace=False)).astype(np.int64)
    edges = np.linspace(0, num_frames, length + 1)
    lo, hi = np.floor(edges[:-1]).astype(np.int64), np.floor(edges[1:]).astype(np.int64)
    hi = np.maximum(hi, lo + 1)
    return (lo + (rng.random(length) * (hi - lo)).astype(np.int64)).clip(0, num_frames - 1)


@dataclass(frozen=True)
class ClipItem:
    """One (video, expression) pair of the split."""

    video_id: str
    exp_id: str
    text: str
    num_frames: int
    row: int = -1     # hf output: the expression's row in the split's ``expressions`` shards


def _decode_jpeg(data: bytes, *, where: str, video: str) -> np.ndarray:
    import cv2

    img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise DataError("frame image cannot be decoded", file=where, video=video, field="frames")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _read_file(path: Path | str, *, video: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise DataError(f"frame image cannot be read ({exc.strerror or exc})", file=str(path), video=video,
                        field="frames") from None


def read_rgb(video, index: int) -> np.ndarray:
    """Frame ``index`` of a `Video` as ``(H, W, 3) uint8`` RGB (errors name the file, the video, the field)."""
    path = video.frames[index].path
    return _decode_jpeg(_read_file(path, video=video.video_id), where=str(path), video=video.video_id)


# -- backends ----------------------------------------------------------------------------
class _HFBackend:
    """Clips straight from the parquet shards: JPEG bytes and the expression's union RLEs."""

    def __init__(self, root: Path, split: str) -> None:
        self.root, self.split = Path(root), split
        self._card = None
        self._state: dict | None = None

    def __getstate__(self) -> dict:
        # the parsed card travels (workers then need neither `datasets` nor the YAML parser)
        return {"root": self.root, "split": self.split, "card": self._card}

    def __setstate__(self, state: dict) -> None:
        self.root, self.split, self._card, self._state = state["root"], state["split"], state["card"], None

    def _open(self) -> dict:
        if self._state is None:
            from .loaders.hf import ParquetRows, frames_index, read_card

            if self._card is None:
                self._card = read_card(self.root)
            card = self._card
            if self.split not in card.splits:
                raise DataError(f"no split {self.split!r}; the card lists {card.splits}", file=card.root / "README.md")
            frames = tuple(card.files["frames"][self.split])
            index, _ = frames_index(frames, card.link_frames)
            self._state = {
                "card": card, "index": index,
                "frames": ParquetRows(frames, cache_groups=8),
                "expressions": ParquetRows(card.files["expressions"][self.split], cache_groups=4),
                "videos": ParquetRows(card.files["videos"][self.split]),
            }
        return self._state

    def items(self) -> tuple[list[ClipItem], bool]:
        st = self._open()
        table = st["expressions"].column(["video_id", "exp_id", "text"])
        has = st["videos"].column(["has_masks"]).column("has_masks").to_pylist()
        out = []
        for row, (vid, eid, text) in enumerate(zip(*(table.column(c).to_pylist() for c in ("video_id", "exp_id",
                                                                                           "text")))):
            if vid not in st["index"]:
                raise DataError("expression's video has no frames", file=st["expressions"].file_of(row), video=vid,
                                field="video_id")
            out.append(ClipItem(vid, eid, text, st["index"][vid][1], row))
        return out, bool(has) and all(has)

    def frames(self, item: ClipItem, indices: np.ndarray) -> list[np.ndarray]:
        st = self._open()
        first, _ = st["index"][item.video_id]
        rows = [first + int(i) for i in indices]
        card = st["card"]
        if card.link_frames:
            table = st["frames"].take(rows, columns=["image_path"])
            base = card.source_root or card.root
            paths = table.column("image_path").to_pylist()
            return [_decode_jpeg(_read_file(base / p, video=item.video_id), where=str(base / p),
                                 video=item.video_id) for p in paths]
        table = st["frames"].take(rows, columns=["image"])
        images = table.column("image").combine_chunks()
        return [_decode_jpeg(b, where=f"{self.root} frames row {r}", video=item.video_id)
                for b, r in zip(images.field("bytes").to_pylist(), rows)]

    def masks(self, item: ClipItem, indices: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        st = self._open()
        row = st["expressions"].take([item.row], columns=["masks"]).column("masks")[0].as_py()
        if row is None:
            raise DataError("this split has no masks", file=st["expressions"].file_of(item.row), video=item.video_id,
                            field="masks")
        out = np.zeros((len(indices), height, width), dtype=bool)
        valid = np.zeros(len(indices), dtype=bool)
        for k, i in enumerate(indices):
            rle = row[int(i)]
            if rle is not None:
                out[k] = _masks.decode(rle)
                valid[k] = True
        return out, valid


class _LoaderBackend:
    """Clips through any loader's `Video` records (raw folders): frame files and masks."""

    def __init__(self, path: Path, split: str, format: str | None) -> None:
        self.path, self.split, self.format = Path(path), split, format
        self._reader = None
        self._videos: OrderedDict = OrderedDict()

    def __getstate__(self) -> dict:
        return {"path": self.path, "split": self.split, "format": self.format}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"], state["split"], state["format"])

    def _open(self):
        if self._reader is None:
            from .loaders import detect_format, load

            self.format = self.format or detect_format(self.path)
            self._reader = load(self.path, format=self.format, split=self.split)[self.split]
        return self._reader

    def video(self, video_id: str):
        video = self._videos.get(video_id)
        if video is None:
            video = self._open().video(video_id)
            self._videos[video_id] = video
            while len(self._videos) > 2:
                self._videos.popitem(last=False)
        return video

    def items(self) -> tuple[list[ClipItem], bool]:
        out, annotated = [], True
        for video in self._open():
            annotated &= video.has_masks
            out.extend(ClipItem(video.video_id, e.exp_id, e.text, video.num_frames) for e in video.expressions)
        return out, annotated

    def frames(self, item: ClipItem, indices: np.ndarray) -> list[np.ndarray]:
        video = self.video(item.video_id)
        return [read_rgb(video, int(i)) for i in indices]

    def masks(self, item: ClipItem, indices: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        video = self.video(item.video_id)
        expression = video.expression(item.exp_id)
        out = np.zeros((len(indices), height, width), dtype=bool)
        valid = np.zeros(len(indices), dtype=bool)
        for k, i in enumerate(indices):
            present = {t: m for t, m in video.frame_masks(int(i)).items() if t in expression.track_ids}
            target = video.target_mask(expression, present)
            if target is not None:
                out[k] = target
                valid[k] = True
        return out, valid


# -- the dataset -------------------------------------------------------------------------
class ClipDataset:
    """Map-style dataset of T-frame clips, one item per (video, expression) of a split.

    Args:
        source: an hf output folder, or any dataset root / split folder a loader reads.
        split: the split to read.
        num_frames: T, frames per clip.
        sampling: ``uniform`` (default), ``random``, ``window`` or ``even`` (`sample_frames`).
        stride: frame step for ``window``.
        seed: base seed; an item's frames depend only on ``(seed, epoch, index)``.
        size: ``(height, width)`` to resize frames (bilinear) and masks (nearest) to, so
            clips of different videos batch together; None keeps the original size.
        with_masks: False for splits without annotations (no ``masks``/``valid`` keys).
        format: the source's format id; detected when None (``"hf"`` for an hf output).
        frame_pool: ``{video_id: frame indices}`` to sample from instead of every frame (e.g.
            ReferMo's keyframes); ``sampling`` then picks positions in the pool.

    Items (``dict``):
        ``video_id``, ``exp_id``, ``text`` (str); ``frame_indices`` ``(T,) int64``;
        ``frames`` ``(T, H, W, 3) uint8`` RGB; ``masks`` ``(T, H, W) bool`` (the union of
        the expression's tracks); ``valid`` ``(T,) bool`` (a target is present).

    Raises:
        DataError: ``with_masks`` on a split without annotations, unreadable frames.

    Example:
        >>> clips = ClipDataset("out/mevis_hf", split="train", num_frames=8, size=(360, 640))
        >>> clips.set_epoch(3)
        >>> clips[10]["frames"].shape
        (8, 360, 640, 3)
    """

    def __init__(self, source: str | Path, *, split: str, num_frames: int = 8, sampling: Sampling = "uniform",
                 stride: int = 1, seed: int = 0, size: tuple[int, int] | None = None, with_masks: bool = True,
                 format: str | None = None, frame_pool: Mapping[str, Sequence[int]] | None = None) -> None:
        if num_frames < 1:
            raise ValueError("num_frames must be at least 1")
        if sampling not in SAMPLINGS:
            raise ValueError(f"sampling {sampling!r} is not one of {SAMPLINGS}")
        source = Path(source)
        if format is None:
            from .loaders import hf as _hf_loader
            if _hf_loader.detect(source):
                format = "hf"
        self.backend = _HFBackend(source, split) if format == "hf" else _LoaderBackend(source, split, format)
        self.split, self.num_frames, self.sampling, self.stride = split, num_frames, sampling, stride
        self.seed, self.size, self.with_masks = seed, size, with_masks
        self.set_frame_pool(frame_pool or {})
        self.epoch = 0
        self.items, annotated = self.backend.items()
        if with_masks and not annotated:
            raise DataError(f"split {split!r} has videos without masks; pass with_masks=False", file=str(source),
                            field="masks")

    def __len__(self) -> int:
        return len(self.items)

    def set_epoch(self, epoch: int) -> None:
        """Draw different frames from now on (call it at the start of each epoch)."""
        self.epoch = int(epoch)

    def set_frame_pool(self, frame_pool: Mapping[str, Sequence[int]]) -> None:
        """Sample each listed video among these frames (a pool known only once the items are listed)."""
        self.frame_pool = {k: np.asarray(v, dtype=np.int64) for k, v in frame_pool.items()}

    def frame_indices(self, index: int) -> np.ndarray:
        """The frames item ``index`` samples this epoch, ``(T,) int64``."""
        item = self.items[index]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        pool = self.frame_pool.get(item.video_id)
        if pool is None:
            return sample_frames(item.num_frames, self.num_frames, mode=self.sampling, rng=rng, stride=self.stride)
        if len(pool) == 0 or pool.min() < 0 or pool.max() >= item.num_frames:
            raise DataError(f"frame pool {pool.tolist()} is not within the video's {item.num_frames} frames",
                            video=item.video_id, field="frame_pool")
        return pool[sample_frames(len(pool), self.num_frames, mode=self.sampling, rng=rng, stride=self.stride)]

    def __getitem__(self, index: int) -> dict[str, Any]:
        if index < 0:
            index += len(self.items)
        if not 0 <= index < len(self.items):
            raise IndexError(f"clip index {index} out of range (0..{len(self.items) - 1})")
        item = self.items[index]
        indices = self.frame_indices(index)
        images = self.backend.frames(item, indices)
        h, w = images[0].shape[:2]
        out: dict[str, Any] = {"video_id": item.video_id, "exp_id": item.exp_id, "text": item.text,
                               "frame_indices": indices}
        masks = valid = None
        if self.with_masks:
            masks, valid = self.backend.masks(item, indices, h, w)
        if self.size is not None and (h, w) != tuple(self.size):
            import cv2

            th, tw = self.size
            images = [cv2.resize(im, (tw, th), interpolation=cv2.INTER_LINEAR) for im in images]
            if masks is not None:
                masks = np.stack([cv2.resize(m.view(np.uint8), (tw, th), interpolation=cv2.INTER_NEAREST)
                                  for m in masks]).astype(bool)
        out["frames"] = np.stack(images)
        if masks is not None:
            out["masks"] = masks
            out["valid"] = valid
        return out

    def as_torch(self) -> Any:
        """This dataset as a ``torch.utils.data.Dataset`` of tensors (imports torch).

        Tensors: ``frames`` ``(T, 3, H, W) uint8``, ``masks`` ``(T, H, W) bool``, ``valid``
        ``(T,) bool``, ``frame_indices`` ``(T,) int64``; strings stay strings.
        """
        import sys

        return getattr(sys.modules[__name__], "TorchClipDataset")(self)  # built on first use: __getattr__

    torch_dataset = as_torch


def _torch_class() -> type:
    import torch
    from torch.utils.data import Dataset

    class TorchClipDataset(Dataset):
        """`ClipDataset` items as tensors; picklable (the class is a module attribute)."""

        def __init__(self, clips: ClipDataset) -> None:
            self.clips = clips

        def __len__(self) -> int:
            return len(self.clips)

        def set_epoch(self, epoch: int) -> None:
            self.clips.set_epoch(epoch)

        def __getitem__(self, index: int) -> dict[str, Any]:
            item = self.clips[index]
            out = dict(item)
            out["frames"] = torch.from_numpy(np.ascontiguousarray(item["frames"].transpose(0, 3, 1, 2)))
            out["frame_indices"] = torch.from_numpy(item["frame_indices"])
            if "masks" in item:
                out["masks"] = torch.from_numpy(item["masks"])
                out["valid"] = torch.from_numpy(item["valid"])
            return out

    TorchClipDataset.__module__ = __name__
    TorchClipDataset.__qualname__ = "TorchClipDataset"
    return TorchClipDataset


def __getattr__(name: str) -> Any:
    # PEP 562: `TorchClipDataset` is created (importing torch) on first access, and pickle
    # finds it here by name in DataLoader worker processes.
    if name == "TorchClipDataset":
        try:
            cls = _torch_class()
        except ImportError as exc:
            raise LongRVOSError("ClipDataset.as_torch needs torch: pip install 'longrvos-data[baseline]' "
                                "(torch==2.13.0)") from exc
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ClipDataset", "ClipItem", "SAMPLINGS", "read_rgb", "sample_frames"]
