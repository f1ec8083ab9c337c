"""Prediction readers: PNG folders and RLE JSON, and what is wrong with them.

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
the policy decides what it costs (see ``protocols.py``). Readers record only the oddities
read the official way (`CONVERTED`, `EXTRA`).
"""
from __future__ import annotations

import io
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import cv2
import numpy as np
from PIL import Image

from .. import masks as _masks
from ..errors import LongRVOSError
from ..schema import Video

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
