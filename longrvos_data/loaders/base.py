"""What every loader shares: detections, lazy split readers, and safe JSON/frame reading."""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from ..errors import DataError, ProblemLog
from ..schema import Video

log = logging.getLogger("longrvos_data")

IMAGE_EXTS = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class Detection:
    """How well a folder matches one format, and why.

    ``confidence`` is 0 when the format is ruled out, 1 when its defining files were
    found and probed; ``reasons`` say what was found or missing.
    """

    format: str
    confidence: float
    reasons: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return self.confidence > 0


class SplitReader:
    """One split of one dataset, read lazily, one video at a time.

    Subclasses implement `video_ids` (from the split's metadata, cheap) and `_load`
    (one video's record, masks left lazy). Iteration honours ``on_error``: a video that
    fails is recorded in `problems` and skipped, or the error is raised.

    Attributes:
        format: format id, e.g. ``"long_rvos"``.
        split: split name as the source spells it.
        in_totals: False for subsets such as ReVOS ``train_sub`` that totals must not count.
    """

    format: str = ""

    def __init__(self, root: Path, split: str, *, problems: ProblemLog, in_totals: bool = True) -> None:
        self.root = Path(root)
        self.opened_from = self.root  # the path `load` was given; set by `loaders.load`
        self.split = split
        self.problems = problems
        self.in_totals = in_totals

    def video_ids(self) -> list[str]:
        raise NotImplementedError

    def _load(self, video_id: str) -> Video:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.video_ids())

    def video(self, video_id: str) -> Video:
        """One video's record; raises `DataError` if it is malformed, KeyError if unknown."""
        if video_id not in set(self.video_ids()):
            raise KeyError(f"{self.format} split {self.split!r} has no video {video_id!r}")
        return self._load(video_id)

    def __iter__(self) -> Iterator[Video]:
        for vid in self.video_ids():
            try:
                yield self._load(vid)
            except DataError as err:
                self.problems.add(err)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.format}:{self.split} at {self.root}>"


@dataclass
class Dataset:
    """A dataset on disk: its format and its splits, each a lazy `SplitReader`.

    Example:
        >>> ds = longrvos_data.load("data/long_rvos")
        >>> for video in ds["valid"]:
        ...     print(video.video_id, video.num_frames)
    """

    format: str
    root: Path
    splits: dict[str, SplitReader]
    version: str | None = None
    problems: ProblemLog = field(default_factory=ProblemLog)

    def __getitem__(self, split: str) -> SplitReader:
        try:
            return self.splits[split]
        except KeyError:
            raise KeyError(f"{self.format} dataset at {self.root} has no split {split!r}; "
                           f"found {sorted(self.splits)}") from None

    def __iter__(self) -> Iterator[SplitReader]:
        return iter(self.splits.values())


def read_json(path: Path, *, video: str | None = None) -> Any:
    """Parse a JSON file, turning every failure into a `DataError` naming the file."""
    try:
        with open(path, "rb") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise DataError("file is missing", file=path, video=video) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"invalid JSON ({exc})", file=path, video=video) from None


def require(mapping: Any, key: str, kind: type | tuple[type, ...], *, file: Path, video: str | None,
            field: str) -> Any:
    """``mapping[key]`` checked for type, or a `DataError` naming file, video and field."""
    if not isinstance(mapping, dict):
        raise DataError(f"expected an object, got {type(mapping).__name__}", file=file, video=video,
                        field=field.rsplit(".", 1)[0] if "." in field else field)
    if key not in mapping:
        raise DataError(f"required key {key!r} is missing", file=file, video=video, field=field)
    value = mapping[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise DataError(f"expected {names}, got {type(value).__name__}", file=file, video=video, field=field)
    return value


def list_images(folder: Path, *, video: str | None = None) -> dict[str, Path]:
    """``{stem: path}`` of the image files in ``folder`` (hidden files ignored)."""
    try:
        entries = os.scandir(folder)
    except FileNotFoundError:
        raise DataError("frame folder is missing", file=folder, video=video, field="frames") from None
    with entries:
        return {Path(e.name).stem: Path(e.path) for e in entries
                if not e.name.startswith(".") and e.name.lower().endswith(IMAGE_EXTS) and e.is_file()}


def match_frames(folder: Path, names: Sequence[str], *, video: str, meta_file: Path,
                 problems: ProblemLog) -> list[Path]:
    """Paths of the listed frames in ``folder``; a listed frame without a file is an error.

    Files in the folder that the list does not name are a warning (the official loaders
    ignore them). Returns the paths in list order.
    """
    files = list_images(folder, video=video)
    missing = [n for n in names if n not in files]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise DataError(f"{len(missing)} listed frame(s) have no image in {folder}: {shown}",
                        file=meta_file, video=video, field="frames")
    extra = len(files) - len(set(names))
    if extra > 0:
        problems.warning(f"{extra} image(s) in {folder} are not in the frame list and are ignored",
                         file=meta_file, video=video, field="frames")
    return [files[n] for n in names]
