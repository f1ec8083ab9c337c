"""Prediction folders and RLE JSON: the readers (eval, FiftyOne, annotation import) and the
writers (``propagate``, the baseline), in one place below every wing that uses them.

Layouts read:

- referring protocols, PNG folders: ``<pred>/<video_id>/<exp_id>/<frame>.png``, read as the
  official scripts do (``cv2.imread(path, cv2.IMREAD_GRAYSCALE)``: RGB is converted to
  luminance, 16-bit is scaled to 8 bits, a palette PNG is read through its colours); any
  non-zero value is foreground;
- referring protocols, one JSON: ``{video_id: {exp_id: [RLE | null per frame]}}`` (null =
  empty mask);
- LVOS: ``<pred>/<video_id>/<frame>.png`` indexed PNGs read with Pillow (pixel = object
  id), as lvos-evaluation does.

A reader never raises on a bad prediction (a zero-byte file, a file that is no image, an
RLE that does not decode): it returns the frame as missing, wrong-sized or unreadable (a
defect, with a short ``detail``); the runner records it as an `Issue`, one per frame, and
the policy decides what it costs (see ``eval/protocols.py``). Readers record only the oddities
read the official way (`CONVERTED`, `EXTRA`).

Writers (`video_writer`, `write_video`) write the PNG layouts the readers read, one video
at a time and atomically: every file goes into ``<pred>/.<video_id>.partial/``, which is
renamed to ``<pred>/<video_id>/`` once every frame is written (frames never given are
written empty, so eval finds no gap). Readers ignore hidden folders, so a killed run
leaves nothing they would score; `is_written` tells a finished video (a resumed run skips
it) and a writer discards a leftover ``.partial`` of its video and starts it again.

- ``lvos``: ``<pred>/<video_id>/<frame>.png``, palette PNG, pixel = object id; where masks
  overlap the pixel goes to the higher score (on a tie, to the track given later).
- ``referring``: ``<pred>/<video_id>/<exp_id>/<frame>.png``, 0/255 PNG per expression: the
  union of its tracks' masks; a no-target expression gets all-empty frames.
"""
from __future__ import annotations

import io
import os
import shutil
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import cv2
import numpy as np
from PIL import Image

from . import masks as _masks
from .errors import DataError, LongRVOSError
from .fsutil import atomic_write_bytes
from .schema import Video, check_id

# Defects that a policy acts on (per expression / object).
MISSING_VIDEO = "missing_video"
MISSING_EXPRESSION = "missing_expression"
MISSING_FRAME = "missing_frame"
WRONG_SIZE = "wrong_size"
UNREADABLE = "unreadable"
DEFECTS = (MISSING_VIDEO, MISSING_EXPRESSION, MISSING_FRAME, WRONG_SIZE, UNREADABLE)

# Oddities that are read the official way and only reported.
CONVERTED = "converted"        # RGB / grey+alpha / 16-bit PNG read as cv2 does
EXTRA = "extra"                # files, folders or keys the ground truth does not list
MODEL_GT = "model_ground_truth"  # an annotation project scores masks a model made, not a person

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOUR_TYPES = {0: "grey", 2: "RGB", 3: "palette", 4: "grey+alpha", 6: "RGBA"}
MAX_LISTED = 10  # frame names listed per issue; the count is always exact


@dataclass
class Issue:
    """One problem with the predictions, aggregated per (video, expression, problem, message).

    ``count`` is the number of prediction frames affected (for a missing video or
    expression, all of its frames); ``frames`` lists the first `MAX_LISTED` by name.
    ``policy`` is filled in by the runner: what the problem cost under the policy in force
    (``zero``, ``drop``, ``empty``, or ``none`` for oddities that were only reported).
    """

    video_id: str
    exp_id: str | None
    problem: str
    message: str
    frames: list[str] = field(default_factory=list)
    count: int = 0
    policy: str | None = None

    def add_frame(self, name: str) -> None:
        self.count += 1
        if len(self.frames) < MAX_LISTED:
            self.frames.append(name)

    def as_dict(self) -> dict[str, Any]:
        return {"video_id": self.video_id, "exp_id": self.exp_id, "problem": self.problem,
                "count": self.count, "frames": list(self.frames), "policy": self.policy,
                "message": self.message}


class IssueLog:
    """Collects `Issue`s of one video, one entry per (unit, problem, detail)."""

    def __init__(self, video_id: str) -> None:
        self.video_id = video_id
        self._issues: dict[tuple, Issue] = {}

    def add(self, exp_id: str | None, problem: str, message: str, frame: str | None = None, *,
            frames: int | None = None) -> Issue:
        """Record one frame (``frame``), ``frames`` unnamed frames, or else a problem counted once."""
        key = (exp_id, problem, message)
        issue = self._issues.get(key)
        if issue is None:
            issue = self._issues[key] = Issue(self.video_id, exp_id, problem, message)
        if frame is not None:
            issue.add_frame(frame)
        elif frames is not None:
            issue.count += frames
        else:
            issue.count = max(issue.count, 1)
        return issue

    def __iter__(self) -> Iterator[Issue]:
        return iter(self._issues.values())


def png_header(data: bytes) -> tuple[int, int, int, int] | None:
    """``(width, height, bit_depth, colour_type)`` from a PNG's IHDR, None if not a PNG."""
    if len(data) < 26 or data[:8] != _PNG_SIGNATURE or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    return width, height, data[24], data[25]


@dataclass
class FrameRead:
    """A prediction frame: ``mask`` (H, W) uint8/bool (non-zero = foreground) or None with a defect.

    ``detail`` says what is wrong (``"empty file (0 bytes)"``, ``"40x30, the video is 64x48"``).
    """

    mask: np.ndarray | None
    defect: str | None = None
    detail: str | None = None


class VideoPredictions:
    """One video's predictions, read one frame of one unit (expression or object) at a time."""

    present: bool = True

    def has_unit(self, unit_id: str) -> bool:
        raise NotImplementedError

    def read(self, unit_id: str, index: int, name: str) -> FrameRead:
        raise NotImplementedError

    def report_extras(self, log: IssueLog) -> None:
        """Record files/keys that the ground truth does not ask for."""


class PredictionSource:
    """Where predictions live; `open` gives one video's `VideoPredictions`."""

    kind: str = ""

    def open(self, video: Video, log: IssueLog) -> VideoPredictions:
        raise NotImplementedError

    def video_ids(self) -> list[str]:
        """Video ids the predictions hold (to report extras)."""
        raise NotImplementedError


class _Absent(VideoPredictions):
    present = False

    def has_unit(self, unit_id: str) -> bool:
        return False

    def read(self, unit_id: str, index: int, name: str) -> FrameRead:
        return FrameRead(None)   # the runner records the missing video once


def _list_dir(path: Path) -> tuple[set[str], set[str]] | None:
    """``(files, folders)`` names in ``path`` (hidden ignored), None if it is no folder."""
    try:
        with os.scandir(path) as it:
            files, dirs = set(), set()
            for e in it:
                if e.name.startswith("."):
                    continue
                (dirs if e.is_dir() else files).add(e.name)
            return files, dirs
    except (FileNotFoundError, NotADirectoryError):
        return None


def decode_grey(data: bytes, header: tuple[int, int, int, int] | None, *, unit: str | None, name: str,
                log: IssueLog) -> np.ndarray | None:
    """Decode PNG bytes as the official referring scripts do (cv2 grayscale), reporting oddities.

    ``header`` is `png_header` of ``data`` (None: not a PNG, decoded by content). Returns
    None, and records nothing, when the bytes do not decode (empty, truncated, no image).
    """
    if not data:
        return None
    try:
        arr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_GRAYSCALE)
    except cv2.error:
        return None
    if arr is None or arr.ndim != 2:
        return None
    if header is None:
        log.add(unit, CONVERTED, "not a PNG file; decoded by content with OpenCV", name)
    else:
        _, _, depth, colour = header
        if colour in (2, 4, 6):
            log.add(unit, CONVERTED, f"{_COLOUR_TYPES[colour]} PNG read as luminance (cv2.IMREAD_GRAYSCALE, "
                                     "as the official script)", name)
        if depth == 16:
            log.add(unit, CONVERTED, "16-bit PNG scaled to 8 bits by cv2.IMREAD_GRAYSCALE (values below 256 "
                                     "become 0, as in the official script)", name)
    return arr


class _PngVideo(VideoPredictions):
    def __init__(self, folder: Path, video: Video, log: IssueLog) -> None:
        self.folder = folder
        self._prefix = os.fspath(folder) + os.sep
        self.video = video
        self.log = log
        listing = _list_dir(folder)
        self._units: dict[str, set[str]] = {}
        if listing is not None:
            files, dirs = listing
            self._unit_dirs = dirs
            self._stray = files
        else:
            self._unit_dirs, self._stray = set(), set()

    def _files(self, unit_id: str) -> set[str] | None:
        files = self._units.get(unit_id)
        if files is None and unit_id in self._unit_dirs:
            listing = _list_dir(self.folder / unit_id)
            files = self._units[unit_id] = listing[0] if listing else set()
        return files

    def has_unit(self, unit_id: str) -> bool:
        return unit_id in self._unit_dirs

    def read(self, unit_id: str, index: int, name: str) -> FrameRead:
        files = self._files(unit_id)
        if files is None:
            return FrameRead(None, MISSING_EXPRESSION)
        fname = f"{name}.png"
        if fname not in files:
            return FrameRead(None, MISSING_FRAME)
        try:
            with open(f"{self._prefix}{unit_id}{os.sep}{fname}", "rb") as fh:
                data = fh.read()
        except OSError as exc:
            return FrameRead(None, UNREADABLE, f"cannot be read ({exc.strerror or type(exc).__name__})")
        if not data:
            return FrameRead(None, UNREADABLE, "empty file (0 bytes)")
        header = png_header(data)
        if header is not None and (header[1], header[0]) != (self.video.height, self.video.width):
            return FrameRead(None, WRONG_SIZE, _size_text(header[0], header[1], self.video))
        arr = decode_grey(data, header, unit=unit_id, name=name, log=self.log)
        if arr is None:
            return FrameRead(None, UNREADABLE, "corrupt PNG" if header is not None else "not an image")
        if arr.shape != (self.video.height, self.video.width):
            return FrameRead(None, WRONG_SIZE, _size_text(arr.shape[1], arr.shape[0], self.video))
        return FrameRead(arr)

    def report_extras(self, log: IssueLog) -> None:
        known = {e.exp_id for e in self.video.expressions}
        names = {f"{f.name}.png" for f in self.video.frames}
        for d in sorted(self._unit_dirs - known):
            log.add(d, EXTRA, "prediction folder for an expression the ground truth does not list; ignored")
        for f in sorted(self._stray):
            log.add(None, EXTRA, "file directly in the video folder; ignored", f)
        for unit in sorted(self._unit_dirs & known):
            files = self._files(unit) or set()
            for f in sorted(files - names):
                log.add(unit, EXTRA, "file the ground truth has no frame for; ignored", f)


def _size_text(width: int, height: int, video: Video) -> str:
    return f"{width}x{height}, the video is {video.width}x{video.height}"


class PngFolder(PredictionSource):
    """Referring predictions as ``<root>/<video_id>/<exp_id>/<frame>.png``.

    Example:
        >>> src = PngFolder("out/preds")
        >>> preds = src.open(video, IssueLog(video.video_id))
        >>> preds.read("0", 0, video.frames[0].name).mask.shape
        (720, 1280)
    """

    kind = "png"
    _video_reader: type[VideoPredictions] = _PngVideo

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise LongRVOSError(f"{self.root}: prediction folder does not exist")

    def open(self, video: Video, log: IssueLog) -> VideoPredictions:
        folder = self.root / video.video_id
        if not folder.is_dir():
            return _Absent()
        return self._video_reader(folder, video, log)

    def video_ids(self) -> list[str]:
        listing = _list_dir(self.root)
        return sorted(listing[1]) if listing else []


class _RleVideo(VideoPredictions):
    def __init__(self, entry: Any, video: Video, log: IssueLog) -> None:
        self.video = video
        self.log = log
        self.entry = entry if isinstance(entry, Mapping) else {}
        if not isinstance(entry, Mapping):
            log.add(None, UNREADABLE, f"video entry is a {type(entry).__name__}, not an object of expressions")
        self._checked: set[str] = set()

    def has_unit(self, unit_id: str) -> bool:
        return unit_id in self.entry

    def _seq(self, unit_id: str) -> Any:
        seq = self.entry.get(unit_id)
        if unit_id not in self._checked:
            self._checked.add(unit_id)
            if isinstance(seq, list) and len(seq) > self.video.num_frames:
                self.log.add(unit_id, EXTRA, f"list has {len(seq)} entries for {self.video.num_frames} frames; "
                                             "the extra entries are ignored")
        return seq

    def read(self, unit_id: str, index: int, name: str) -> FrameRead:
        if unit_id not in self.entry:
            return FrameRead(None, MISSING_EXPRESSION)
        seq = self._seq(unit_id)
        if not isinstance(seq, list):
            return FrameRead(None, UNREADABLE, f"expected a list of RLEs, got {type(seq).__name__}")
        if index >= len(seq):
            return FrameRead(None, MISSING_FRAME, f"the list has {len(seq)} entries for {self.video.num_frames} "
                                                  "frames")
        rle = seq[index]
        if rle is None:
            return FrameRead(None)
        if not _masks.is_rle(rle):
            return FrameRead(None, UNREADABLE, "not an RLE ({'size': [H, W], 'counts': ...}) or null")
        size = [int(v) for v in rle["size"]]
        if size != [self.video.height, self.video.width]:
            return FrameRead(None, WRONG_SIZE, f"RLE size {size}, the video is [{self.video.height}, "
                                               f"{self.video.width}]")
        try:
            mask = _masks.decode(rle)
            # counts that stop short of H*W leave the rest of pycocotools' buffer undefined:
            # the decoded area must equal the area the counts claim
            if int(_masks.area([rle])[0]) != int(np.count_nonzero(mask)):
                return FrameRead(None, UNREADABLE, "RLE counts do not cover the frame")
        except Exception:  # pycocotools raises bare errors on bad counts  # noqa: BLE001
            return FrameRead(None, UNREADABLE, "RLE counts do not decode")
        return FrameRead(mask)

    def report_extras(self, log: IssueLog) -> None:
        known = {e.exp_id for e in self.video.expressions}
        for k in sorted(set(self.entry) - known):
            log.add(str(k), EXTRA, "predictions for an expression the ground truth does not list; ignored")


class RleJson(PredictionSource):
    """Referring predictions as one JSON ``{video_id: {exp_id: [RLE | null per frame]}}``.

    The file is streamed (``ijson``) one video at a time, so its size does not bound memory;
    `iter_videos` yields ``(video_id, entry)`` in file order.
    """

    kind = "rle_json"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise LongRVOSError(f"{self.path}: prediction file does not exist")

    def iter_videos(self) -> Iterator[tuple[str, Any]]:
        import ijson
        try:
            with open(self.path, "rb") as fh:
                for key, value in ijson.kvitems(fh, "", use_float=True):
                    yield str(key), value
        except ijson.JSONError as exc:
            raise LongRVOSError(f"{self.path}: invalid prediction JSON ({exc})") from None

    def open_entry(self, video: Video, entry: Any, log: IssueLog) -> VideoPredictions:
        """The predictions of ``video`` from its JSON ``entry`` (None = the video is missing)."""
        if entry is None:
            return _Absent()
        return _RleVideo(entry, video, log)

    def open(self, video: Video, log: IssueLog) -> VideoPredictions:
        for key, value in self.iter_videos():
            if key == video.video_id:
                return self.open_entry(video, value, log)
        return _Absent()

    def video_ids(self) -> list[str]:
        return [k for k, _ in self.iter_videos()]


class _LvosVideo(VideoPredictions):
    """One palette PNG per frame, decoded once and shared by the video's objects."""

    def __init__(self, folder: Path, video: Video, log: IssueLog) -> None:
        self.folder = folder
        self.video = video
        self.log = log
        listing = _list_dir(folder)
        self.files = listing[0] if listing else set()
        self._cache: tuple[int, FrameRead] | None = None

    def has_unit(self, unit_id: str) -> bool:
        return True

    def frame_ids(self, index: int, name: str) -> FrameRead:
        """The frame's id map ``(H, W)`` (uint8 or uint16), decoded once per frame."""
        if self._cache is not None and self._cache[0] == index:
            return self._cache[1]
        result = self._decode(name)
        self._cache = (index, result)
        return result

    def _decode(self, name: str) -> FrameRead:
        fname = f"{name}.png"
        if fname not in self.files:
            return FrameRead(None, MISSING_FRAME)
        try:
            data = (self.folder / fname).read_bytes()
        except OSError as exc:
            return FrameRead(None, UNREADABLE, f"cannot be read ({exc.strerror or type(exc).__name__})")
        if not data:
            return FrameRead(None, UNREADABLE, "empty file (0 bytes)")
        try:
            with Image.open(io.BytesIO(data)) as im:
                im.load()
                mode = im.mode
                arr = np.asarray(im)
        except (OSError, SyntaxError, ValueError):
            return FrameRead(None, UNREADABLE, "corrupt PNG" if png_header(data) else "not an image")
        if arr.ndim != 2:
            return FrameRead(None, UNREADABLE, f"{mode} PNG has no object ids (an indexed PNG is required; "
                                               "the official toolkit fails on it)")
        if mode not in ("P", "L"):
            self.log.add(None, CONVERTED, f"{mode} PNG read as object ids", name)
        if arr.shape != (self.video.height, self.video.width):
            return FrameRead(None, WRONG_SIZE, _size_text(arr.shape[1], arr.shape[0], self.video))
        return FrameRead(arr)

    def read(self, unit_id: str, index: int, name: str) -> FrameRead:
        ids = self.frame_ids(index, name)
        if ids.mask is None:
            return ids
        try:
            value = int(unit_id)
        except ValueError:
            return FrameRead(None)
        return FrameRead(ids.mask == value)

    def report_extras(self, log: IssueLog) -> None:
        names = {f"{f.name}.png" for f in self.video.frames}
        for f in sorted(self.files - names):
            log.add(None, EXTRA, "file the ground truth has no frame for; ignored", f)


class LvosPngFolder(PngFolder):
    """LVOS (semi-supervised VOS) predictions as ``<root>/<video_id>/<frame>.png``, pixel = object id."""

    kind = "lvos_png"
    _video_reader = _LvosVideo


def open_predictions(path: str | Path, *, protocol: str) -> PredictionSource:
    """The reader for a prediction path: a JSON file -> `RleJson`, a folder -> PNGs.

    Raises:
        LongRVOSError: the path does not exist, or an RLE JSON is given for LVOS.

    Example:
        >>> open_predictions("preds.json", protocol="mevis").kind
        'rle_json'
    """
    path = Path(path)
    if not path.exists():
        raise LongRVOSError(f"{path}: predictions not found")
    if path.is_file():
        if protocol == "lvos":
            raise LongRVOSError(f"{path}: LVOS predictions are indexed PNG folders (<pred>/<video>/<frame>.png)")
        return RleJson(path)
    return LvosPngFolder(path) if protocol == "lvos" else PngFolder(path)


# -- writers -----------------------------------------------------------------------------
LAYOUTS: tuple[str, ...] = ("lvos", "referring")
PARTIAL = ".{video_id}.partial"
"""Where a video is written before it is renamed into place (hidden: readers skip it)."""


def layout_for(video: Video) -> str:
    """The layout ``longrvos eval`` reads for ``video``'s dataset: ``lvos`` (semi-supervised VOS,
    one palette PNG per frame) for LVOS, else ``referring`` (a folder per expression)."""
    return "lvos" if video.dataset == "lvos" else "referring"


def check_prediction_folder(src: str | Path, out: str | Path) -> None:
    """Refuse an output that is a file, or lies in the source dataset (predictions never go there)."""
    src, out = Path(src), Path(out)
    if out.exists() and not out.is_dir():
        raise LongRVOSError(f"{out} exists and is not a folder")
    if src.exists() and (out.resolve() == src.resolve() or src.resolve() in out.resolve().parents):
        raise LongRVOSError(f"{out}: predictions are never written into their source dataset {src}")


def is_written(pred: str | Path, video_id: str) -> bool:
    """Whether ``<pred>/<video_id>/`` holds a finished video (only a whole one is ever renamed there)."""
    return (Path(pred) / video_id).is_dir()


class VideoWriter:
    """One video's predictions, written into a hidden ``.partial`` folder and renamed into place.

    Use as a context manager: a clean exit commits, an exception (KeyboardInterrupt too)
    removes the partial folder, so no half-written video is ever left under its name.

    Example:
        >>> with video_writer("out/pred", video) as w:
        ...     w.write_frame(0, {"1": (mask, 0.9), "2": (other, 0.7)})
    """

    layout = ""

    def __init__(self, pred: str | Path, video: Video) -> None:
        self.pred = Path(pred)
        self.video = video
        self.final = self.pred / video.video_id
        self.partial = self.pred / PARTIAL.format(video_id=video.video_id)
        self.tracks = {t.track_id for t in video.tracks}
        self._done: set[int] = set()
        self._empty: bytes | None = None
        if self.partial.exists():  # a run that stopped midway: start this video again
            shutil.rmtree(self.partial)
        self.partial.mkdir(parents=True)

    def _check_index(self, index: int) -> None:
        video = self.video
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < video.num_frames:
            raise DataError(f"frame index {index!r} is not in 0..{video.num_frames - 1}", file=self.partial,
                            video=video.video_id, field="frame_index")

    def _masks(self, index: int, masks: Mapping[str, Any]) -> list[tuple[str, np.ndarray, float]]:
        """``[(track_id, bool mask, score)]`` of the present masks, checked against the video."""
        video = self.video
        self._check_index(index)
        out = []
        for tid, value in masks.items():
            mask, score = value if isinstance(value, tuple) else (value, 0.0)
            if mask is None:
                continue
            field = f"frames[{index}].{tid}"
            if str(tid) not in self.tracks:
                raise DataError(f"prediction for unknown track {tid!r} (tracks: {sorted(self.tracks)})",
                                file=self.partial, video=video.video_id, field=field)
            m = np.asarray(mask)
            if m.shape != (video.height, video.width):
                raise DataError(f"mask is {m.shape}, the video is {video.height}x{video.width}", file=self.partial,
                                video=video.video_id, field=field)
            out.append((str(tid), m.astype(bool, copy=False), float(score)))
        return out

    def write_frame(self, index: int, masks: Mapping[str, Any]) -> None:
        """Write frame ``index`` from ``{track_id: mask | None | (mask | None, score)}`` (None:
        absent; a bare mask has score 0). Writing a frame again replaces it."""
        self._write(index, self._masks(index, masks))
        self._done.add(int(index))

    def write_expressions(self, index: int, masks: Mapping[str, Any]) -> None:
        """Write frame ``index`` from one mask per expression, ``{exp_id: mask | None | (mask | None,
        score)}`` (a referring model's output); expressions not given are empty."""
        raise NotImplementedError

    def _expression_masks(self, index: int, masks: Mapping[str, Any]) -> dict[str, tuple[np.ndarray | None, float]]:
        """``masks`` checked against the video's expressions and size (errors name the field)."""
        self._check_index(index)
        video = self.video
        known = {e.exp_id for e in video.expressions}
        out: dict[str, tuple[np.ndarray | None, float]] = {}
        for exp_id, value in masks.items():
            mask, score = value if isinstance(value, tuple) else (value, 0.0)
            field = f"frames[{index}].expressions.{exp_id}"
            if str(exp_id) not in known:
                raise DataError(f"prediction for unknown expression {exp_id!r}", file=self.partial,
                                video=video.video_id, field=field)
            if mask is not None:
                mask = np.asarray(mask)
                if mask.shape != (video.height, video.width):
                    raise DataError(f"mask is {mask.shape}, the video is {video.height}x{video.width}",
                                    file=self.partial, video=video.video_id, field=field)
                mask = mask.astype(bool, copy=False)
            out[str(exp_id)] = (mask, float(score))
        return out

    def _write(self, index: int, present: Sequence[tuple[str, np.ndarray, float]]) -> None:
        raise NotImplementedError

    def _write_empty(self, index: int) -> None:
        raise NotImplementedError

    def commit(self) -> Path:
        """Write the frames never given as empty, then rename the video into place; returns it."""
        for i in range(self.video.num_frames):
            if i not in self._done:
                self._write_empty(i)
        if self.final.exists():  # written meanwhile (or asked again): the new one replaces it
            old = self.pred / f".{self.video.video_id}.old"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(self.final, old)
            os.replace(self.partial, self.final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(self.partial, self.final)
        return self.final

    def abort(self) -> None:
        """Remove the partial folder (nothing of this video is kept)."""
        shutil.rmtree(self.partial, ignore_errors=True)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()

    def _empty_png(self, palette: bool) -> bytes:
        if self._empty is None:
            zeros = np.zeros((self.video.height, self.video.width), dtype=np.uint8)
            self._empty = _masks.png_bytes(zeros, palette=_masks.davis_palette() if palette else None)
        return self._empty


class LvosVideoWriter(VideoWriter):
    """``<pred>/<video_id>/<frame>.png``: palette PNG, pixel = object id (ids must be 1..254)."""

    layout = "lvos"

    def __init__(self, pred: str | Path, video: Video) -> None:
        self.ids: dict[str, int] = {}
        for t in video.tracks:  # checked before anything is written
            tid = t.track_id
            if not (tid.isascii() and tid.isdigit() and 1 <= int(tid) <= 254):
                raise DataError(f"an LVOS prediction pixel holds an object id 1..254; track id {tid!r} is not one",
                                file=video.source_file, video=video.video_id, field=f"tracks.{tid}")
            self.ids[tid] = int(tid)
        super().__init__(pred, video)

    def _path(self, index: int) -> Path:
        return self.partial / f"{self.video.frames[index].name}.png"

    def write_expressions(self, index: int, masks: Mapping[str, Any]) -> None:
        """Each expression's mask goes to the one object it names (LVOS captions name one each);
        an object named by several takes the highest-scoring one."""
        by_track: dict[str, tuple[np.ndarray, float]] = {}
        for exp_id, (mask, score) in self._expression_masks(index, masks).items():
            tracks = self.video.expression(exp_id).track_ids
            if len(tracks) != 1:
                raise DataError(f"an LVOS prediction gives each object one mask; expression {exp_id!r} names "
                                f"{len(tracks)} objects", file=self.video.source_file, video=self.video.video_id,
                                field=f"expressions.{exp_id}")
            if mask is not None and (tracks[0] not in by_track or score > by_track[tracks[0]][1]):
                by_track[tracks[0]] = (mask, score)
        self.write_frame(index, by_track)

    def _write(self, index: int, present: Sequence[tuple[str, np.ndarray, float]]) -> None:
        canvas = np.zeros((self.video.height, self.video.width), dtype=np.uint8)
        order = sorted(range(len(present)), key=lambda k: (present[k][2], k))  # highest score painted last
        for k in order:
            tid, mask, _ = present[k]
            canvas[mask] = self.ids[tid]
        _masks.write_palette_png(self._path(index), canvas)

    def _write_empty(self, index: int) -> None:
        atomic_write_bytes(self._path(index), self._empty_png(palette=True))


class ReferringVideoWriter(VideoWriter):
    """``<pred>/<video_id>/<exp_id>/<frame>.png``: 0/255 PNG, the union of the expression's tracks."""

    layout = "referring"

    def __init__(self, pred: str | Path, video: Video) -> None:
        for e in video.expressions:  # checked before anything is written
            check_id(e.exp_id, file=video.source_file, video=video.video_id, field=f"expressions.{e.exp_id}")
        super().__init__(pred, video)
        for e in video.expressions:
            (self.partial / e.exp_id).mkdir()

    def _path(self, exp_id: str, index: int) -> Path:
        return self.partial / exp_id / f"{self.video.frames[index].name}.png"

    def write_expressions(self, index: int, masks: Mapping[str, Any]) -> None:
        given = self._expression_masks(index, masks)
        for e in self.video.expressions:
            mask = given.get(e.exp_id, (None, 0.0))[0]
            if mask is None or not mask.any():
                atomic_write_bytes(self._path(e.exp_id, index), self._empty_png(palette=False))
            else:
                _masks.write_binary_png(self._path(e.exp_id, index), mask)
        self._done.add(int(index))

    def _write(self, index: int, present: Sequence[tuple[str, np.ndarray, float]]) -> None:
        by_track = {tid: mask for tid, mask, _ in present}
        for e in self.video.expressions:
            target = self.video.target_mask(e, by_track)
            if target is None:
                atomic_write_bytes(self._path(e.exp_id, index), self._empty_png(palette=False))
            else:
                _masks.write_binary_png(self._path(e.exp_id, index), target)

    def _write_empty(self, index: int) -> None:
        for e in self.video.expressions:
            atomic_write_bytes(self._path(e.exp_id, index), self._empty_png(palette=False))


def video_writer(pred: str | Path, video: Video, *, layout: str | None = None) -> VideoWriter:
    """The writer of ``video``'s predictions under ``pred`` in ``layout`` (default: `layout_for`)."""
    layout = layout or layout_for(video)
    if layout not in LAYOUTS:
        raise LongRVOSError(f"unknown prediction layout {layout!r}; choose one of {LAYOUTS}")
    return (LvosVideoWriter if layout == "lvos" else ReferringVideoWriter)(pred, video)


def write_video(pred: str | Path, video: Video, frames: Iterable[tuple[int, Mapping[str, Any]]], *,
                layout: str | None = None) -> Path:
    """Write ``(frame_index, {track_id: mask | (mask, score)})`` pairs as one finished video.

    Example:
        >>> write_video("out/pred", video, ((i, video.frame_masks(i)) for i in range(video.num_frames)))
    """
    with video_writer(pred, video, layout=layout) as w:
        for index, masks in frames:
            w.write_frame(index, masks)
    return w.final
