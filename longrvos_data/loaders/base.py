"""What every loader shares: detections, lazy split readers, and safe JSON/frame reading."""
from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from .. import masks as _masks
from ..errors import DataError, LongRVOSError, Problem, ProblemLog
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
        self.load_options: dict = {}  # format options `load` was given (project filters)
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

    def split_name(self, split: str | None) -> str:
        """``split``, checked, or the only split when None (a verb that reads one split of its input).

        Raises:
            LongRVOSError: None with several splits, or a split the dataset does not have.
        """
        if split is None:
            if len(self.splits) != 1:
                raise LongRVOSError(f"{self.root} has splits {sorted(self.splits)}: pass --split")
            return next(iter(self.splits))
        if split not in self.splits:
            raise LongRVOSError(f"{self.root} has no split {split!r} (it has {', '.join(sorted(self.splits))})")
        return split


_KINDS = {stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device", stat.S_IFIFO: "a FIFO (named pipe)",
          stat.S_IFSOCK: "a socket", stat.S_IFDIR: "a folder"}


def require_regular_file(path: Path, *, video: str | None = None) -> os.stat_result:
    """``os.stat(path)`` when ``path`` (links followed) is a regular file, else a `DataError`.

    Checked before opening: reading a FIFO blocks for ever and ``/dev/zero`` never ends.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        kind = "a broken symbolic link" if os.path.islink(path) else None
        raise DataError("file is missing" if kind is None else f"file is {kind}", file=path, video=video) from None
    except OSError as exc:
        raise DataError(f"file cannot be read ({exc.strerror or exc})", file=path, video=video) from None
    if not stat.S_ISREG(st.st_mode):
        kind = _KINDS.get(stat.S_IFMT(st.st_mode), "not a regular file")
        raise DataError(f"not a regular file: it is {kind}", file=path, video=video)
    return st


def is_present(path: Path) -> bool:
    """True when something other than a folder has this name (a link to a device or a FIFO
    included), so that a metadata file that cannot be read is reported, not passed over."""
    return os.path.lexists(path) and not os.path.isdir(path)


class _Duplicates:
    """Collects repeated keys while `read_json` parses (see `duplicate_keys`)."""

    def __init__(self) -> None:
        self.found: list[Problem] = []


_COLLECT: contextvars.ContextVar[_Duplicates | None] = contextvars.ContextVar("longrvos_json_duplicates",
                                                                               default=None)
_WARNED: set[str] = set()


@contextlib.contextmanager
def duplicate_keys() -> Iterator[list[Problem]]:
    """Inside this block, a key repeated in a JSON object of a file `read_json` parses is an
    error in the yielded list (naming the file and the key path) instead of a warning.

    `validate` uses it; loading keeps the last value either way, as ``json.load`` and the
    official loaders do.

    Example:
        >>> with duplicate_keys() as found:
        ...     read_json(Path("meta_expressions.json"))
        >>> [p.field for p in found]
        ['videos.vidA.expressions.0']
    """
    collector = _Duplicates()
    token = _COLLECT.set(collector)
    try:
        yield collector.found
    finally:
        _COLLECT.reset(token)


def _key_paths(data: Any, repeated: list[tuple[dict, str, int]]) -> list[tuple[str, int]]:
    """The dotted paths of the repeated keys, found by walking the parsed tree (only when some are)."""
    wanted: dict[int, list[tuple[str, int]]] = {}
    for obj, key, n in repeated:
        wanted.setdefault(id(obj), []).append((key, n))
    out: list[tuple[str, int]] = []
    stack: list[tuple[Any, str]] = [(data, "")]
    while stack:
        node, where = stack.pop()
        if isinstance(node, dict):
            for key, n in wanted.get(id(node), ()):
                out.append((f"{where}.{key}" if where else key, n))
            stack.extend((v, f"{where}.{k}" if where else str(k)) for k, v in node.items()
                         if isinstance(v, (dict, list)))
        elif isinstance(node, list):
            stack.extend((v, f"{where}[{i}]") for i, v in enumerate(node) if isinstance(v, (dict, list)))
    return sorted(out)


def read_json(path: Path, *, video: str | None = None) -> Any:
    """Parse a JSON file, turning every failure into a `DataError` naming the file.

    A file that is not regular (a FIFO, a link to a device) is refused before it is opened.
    A key repeated within one object keeps its last value, as ``json.load`` does, with one
    warning per file (an error inside `duplicate_keys`, as `validate` runs it).
    """
    require_regular_file(path, video=video)
    repeated: list[tuple[dict, str, int]] = []

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict:
        obj = dict(pairs)
        if len(obj) != len(pairs):
            counts: dict[str, int] = {}
            for key, _ in pairs:
                counts[key] = counts.get(key, 0) + 1
            repeated.extend((obj, key, n) for key, n in counts.items() if n > 1)
        return obj

    try:
        with open(path, "rb") as fh:
            data = json.load(fh, object_pairs_hook=pairs_hook)
    except FileNotFoundError:
        raise DataError("file is missing", file=path, video=video) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"invalid JSON ({exc})", file=path, video=video) from None
    if repeated:
        found = _key_paths(data, repeated)
        collector = _COLLECT.get()
        if collector is not None:
            collector.found.extend(Problem("error", f"key {where.rsplit('.', 1)[-1]!r} appears {n} times in one "
                                           "object; the last is kept", str(path), video, where)
                                   for where, n in found)
        elif str(path) not in _WARNED:
            _WARNED.add(str(path))
            shown = ", ".join(w for w, _ in found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
            log.warning("%s", Problem("warning", f"repeated key(s) at {shown}; the last value of each is kept",
                                      str(path), video))
    return data


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


def check_rle_counts(rles: Sequence[Mapping], fields: Sequence[str], *, file: str | Path,
                     video: str | None) -> None:
    """Refuse the first of ``rles`` whose counts do not decode or do not sum to H x W, naming
    ``file``, ``video`` and its field, ``fields[i]``.

    Pass a whole video's (or track's) RLEs at once: `masks.counts_problem` parses them
    together, a few microseconds each, where one call per RLE costs about a hundred.

    Raises:
        DataError: with the message of `masks.check`.
    """
    problem = _masks.counts_problem(rles)
    if problem is not None:
        raise DataError(problem[1], file=file, video=video, field=fields[problem[0]])


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
                 problems: ProblemLog, ext: str = ".jpg") -> list[Path]:
    """Paths of the listed frames in ``folder``; a listed frame without a file is an error.

    The error names each missing frame by its full expected path (``folder/<name><ext>``,
    ``ext`` being the release's extension), so that the user sees what to put where.
    Files in the folder that the list does not name are a warning (the official loaders
    ignore them). Returns the paths in list order.
    """
    folder = Path(folder)
    try:
        files = list_images(folder, video=video)
    except DataError:
        first = folder / f"{names[0]}{ext}" if names else folder
        raise DataError(f"frame folder is missing: {len(names)} listed frame(s) have no image, "
                        f"e.g. {first}", file=folder, video=video, field="frames") from None
    missing = [n for n in names if n not in files]
    if missing:
        shown = ", ".join(str(folder / f"{n}{ext}") for n in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise DataError(f"{len(missing)} listed frame(s) have no image: {shown}{more}",
                        file=meta_file, video=video, field="frames")
    extra = len(files) - len(set(names))
    if extra > 0:
        problems.warning(f"{extra} image(s) in {folder} are not in the frame list and are ignored",
                         file=meta_file, video=video, field="frames")
    return [files[n] for n in names]
