"""The canonical records every loader yields and every converter consumes.

A `Video` carries its metadata eagerly and its masks lazily: `Video.frame_masks(i)`
decodes one frame, for every track at once (one PNG decode for palette formats, one
RLE decode per track for mask_dict formats), so that nothing ever holds a whole split
or a whole video's masks in memory.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Literal, Mapping

import numpy as np

from . import masks as _masks
from .errors import DataError

ExpressionKind = Literal["static", "dynamic", "hybrid", "referring", "reasoning", "no-target", "caption"]
KINDS: tuple[str, ...] = ("static", "dynamic", "hybrid", "referring", "reasoning", "no-target", "caption")

FORMATS: tuple[str, ...] = ("long_rvos", "lvos", "mevis", "revos", "ref_youtube_vos")

_SAFE_ID = re.compile(r"^[^/\\\x00]+$")


def check_id(value: object, *, file: str | Path | None, video: str | None, field: str) -> str:
    """Return ``value`` as a string id, refusing ids that could escape a folder.

    Raises:
        DataError: empty, ``.``/``..``, or containing a path separator or NUL.
    """
    text = str(value)
    if not text or text in (".", "..") or not _SAFE_ID.match(text) or text.strip() != text:
        raise DataError(f"unsafe or empty id {text!r}", file=file, video=video, field=field)
    return text


@dataclass(frozen=True)
class Frame:
    """One frame: its name as the source lists it (no extension) and its image file."""

    name: str
    path: Path


@dataclass(frozen=True)
class Track:
    """One object of a video.

    Args:
        track_id: the source's id as a string, unique within the video (Long-RVOS, LVOS and
            Ref-YouTube-VOS object ids; MeViS and ReVOS anno_ids).
        category: class name when the source has one (Ref-YouTube-VOS train).
        meta: source fields kept verbatim, e.g. ``{"obj_id": 3}`` (MeViS), ``frame_range`` (LVOS).
    """

    track_id: str
    category: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Expression:
    """A referring expression (or an LVOS caption) and the tracks it names.

    ``track_ids`` empty means no target. ``kind`` is from `KINDS`; ``kind_raw`` is the
    source's own value (``"static+dynamic"``, ``type_id`` 1, ...).
    """

    exp_id: str
    text: str
    track_ids: tuple[str, ...]
    kind: str
    kind_raw: Any = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"expression {self.exp_id!r}: kind {self.kind!r} is not one of {KINDS}")
        if not isinstance(self.track_ids, tuple):
            object.__setattr__(self, "track_ids", tuple(self.track_ids))


class MaskSource:
    """How one video's masks are read, a frame at a time.

    Subclasses implement `masks` (PNG formats) or `rles` (RLE formats); the other is
    derived. Both return only the tracks present in the frame: a missing key is an
    absent mask, an all-zero array is a mask the source stores as present but empty.
    """

    def masks(self, index: int) -> dict[str, np.ndarray]:
        """``{track_id: (H, W) bool}`` for frame ``index``."""
        return {tid: _masks.decode(rle) for tid, rle in self.rles(index).items()}

    def rles(self, index: int) -> dict[str, _masks.RLE]:
        """``{track_id: RLE}`` for frame ``index``."""
        return {tid: _masks.encode(m) for tid, m in self.masks(index).items()}

    def areas(self, index: int) -> dict[str, int]:
        """``{track_id: foreground pixel count}`` for frame ``index``."""
        return {tid: int(np.count_nonzero(m)) for tid, m in self.masks(index).items()}

    def check(self, index: int) -> list[str]:
        """Problems with frame ``index``'s masks that decoding alone does not raise.

        `validate` calls it for every frame. Decoding errors (corrupt file, wrong size)
        raise `DataError`; palette formats override this to report pixel values that
        are no known track (neither 0 nor the 255 void label).
        """
        self.masks(index)
        return []

    def findings(self) -> list:
        """Warnings (`errors.Problem`) about what a lenient reader accepted while decoding so far,
        e.g. Long-RVOS grey-level PNGs; `validate` asks for them after decoding every frame."""
        return []


class RLEMaskSource(MaskSource):
    """Masks already held as RLE: ``{track_id: [RLE | None per frame]}``, read on demand.

    ``tracks`` is called once, on first use, so that a video's RLE lists are fetched
    (e.g. from an on-disk index) only when its masks are asked for.
    """

    def __init__(self, tracks) -> None:
        self._fetch = tracks
        self._tracks: Mapping[str, list] | None = None

    def _get(self) -> Mapping[str, list]:
        if self._tracks is None:
            self._tracks = self._fetch() if callable(self._fetch) else self._fetch
        return self._tracks

    def rles(self, index: int) -> dict[str, _masks.RLE]:
        return {tid: seq[index] for tid, seq in self._get().items() if seq[index] is not None}

    def areas(self, index: int) -> dict[str, int]:
        rles = self.rles(index)
        return dict(zip(rles, (int(a) for a in _masks.area(list(rles.values())))))


@dataclass(frozen=True)
class Video:
    """One video with its frames, tracks and expressions; masks are read lazily.

    Args:
        dataset: format id (`FORMATS`) or another dataset name.
        split: split name as the source spells it (``valid``, ``valid_u``, ``train_sub``...).
        video_id: the source's id, safe as a folder name.
        frames: frames in order.
        height, width: frame size in pixels.
        fps: frames per second of the listed frames, when known.
        tracks: the objects, ids unique.
        expressions: the expressions, ids unique, naming only known tracks.
        meta: source fields kept verbatim.
        mask_source: None when the split has no annotations (e.g. MeViS ``valid``).

    Example:
        >>> for i in range(video.num_frames):
        ...     present = video.frame_masks(i)      # {track_id: (H, W) bool}
    """

    dataset: str
    split: str
    video_id: str
    frames: tuple[Frame, ...]
    height: int
    width: int
    tracks: tuple[Track, ...]
    expressions: tuple[Expression, ...]
    fps: float | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)
    mask_source: MaskSource | None = field(default=None, compare=False, repr=False)
    source_file: str | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("frames", "tracks", "expressions"):
            value = getattr(self, name)
            if not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))
        where = dict(file=self.source_file, video=self.video_id)
        check_id(self.video_id, field="video_id", **where)
        seen: set[str] = set()
        for i, f in enumerate(self.frames):
            if f.name in seen:
                raise DataError(f"frame {f.name!r} is listed twice", field=f"frames[{i}]", **where)
            seen.add(f.name)
        track_ids = [t.track_id for t in self.tracks]
        if len(set(track_ids)) != len(track_ids):
            raise DataError(f"track ids are not unique: {sorted(track_ids)}", field="tracks", **where)
        known = set(track_ids)
        exp_ids: set[str] = set()
        for e in self.expressions:
            if e.exp_id in exp_ids:
                raise DataError(f"expression id {e.exp_id!r} is used twice", field=f"expressions.{e.exp_id}", **where)
            exp_ids.add(e.exp_id)
            missing = [t for t in e.track_ids if t not in known]
            if missing:
                raise DataError(f"expression names unknown object(s) {missing}",
                                field=f"expressions.{e.exp_id}", **where)
        if self.height <= 0 or self.width <= 0:
            raise DataError(f"bad frame size {self.height}x{self.width}", field="size", **where)

    # -- lookups -------------------------------------------------------------------
    @property
    def num_frames(self) -> int:
        return len(self.frames)

    @property
    def frame_names(self) -> list[str]:
        return [f.name for f in self.frames]

    @property
    def has_masks(self) -> bool:
        return self.mask_source is not None

    def track(self, track_id: str) -> Track:
        for t in self.tracks:
            if t.track_id == track_id:
                return t
        raise KeyError(f"video {self.video_id!r} has no track {track_id!r}")

    def expression(self, exp_id: str) -> Expression:
        for e in self.expressions:
            if e.exp_id == exp_id:
                return e
        raise KeyError(f"video {self.video_id!r} has no expression {exp_id!r}")

    # -- masks ---------------------------------------------------------------------
    def _source(self) -> MaskSource:
        if self.mask_source is None:
            raise DataError("this split has no masks", file=self.source_file, video=self.video_id, field="masks")
        return self.mask_source

    def frame_masks(self, index: int) -> dict[str, np.ndarray]:
        """Masks present at frame ``index``: ``{track_id: (H, W) bool}``."""
        return self._source().masks(index)

    def frame_rles(self, index: int) -> dict[str, _masks.RLE]:
        """Masks present at frame ``index`` as RLE: ``{track_id: RLE}``."""
        return self._source().rles(index)

    def frame_areas(self, index: int) -> dict[str, int]:
        """Foreground pixel count per present track at frame ``index``."""
        return self._source().areas(index)

    def iter_frame_masks(self) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """``(index, {track_id: mask})`` for every frame, decoding each frame once."""
        for i in range(self.num_frames):
            yield i, self.frame_masks(i)

    def target_mask(self, expression: Expression, masks: Mapping[str, np.ndarray]) -> np.ndarray | None:
        """Union of ``expression``'s tracks in one frame's ``masks``; None if none is present."""
        present = [masks[t] for t in expression.track_ids if t in masks]
        if not present:
            return None
        out = present[0].copy()
        for m in present[1:]:
            out |= m
        return out
