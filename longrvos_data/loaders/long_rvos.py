"""Long-RVOS (Liang et al., 2025): per-object binary PNG masks and typed expressions.

On-disk layout (a dataset root holds split folders; a split folder may be passed alone)::

    long_rvos/{train,valid,test}/
      JPEGImages/<video_id>/<frame>.jpg            frame names "00000", "00001", ...
      Annotations/<video_id>/<obj_id>/<frame>.png  one 0/255 PNG per object per frame
      meta_expressions.json

``meta_expressions.json``::

    {"videos": {"<video_id>": {
        "frames": ["00000", "00001", ...],
        "expressions": {"<exp_id>": {"exp": "a man in red", "obj_id": 1,
                                     "type": "static" | "dynamic" | "static+dynamic"}}}}}

Reading rules (the official evaluation opens ``Annotations/<vid>/<obj_id>/<frame>.png`` with
``cv2.imread(GRAYSCALE)`` and takes any non-zero pixel as the object, a missing file or
folder as an empty mask):

- Track ids are ``str(obj_id)``; a video's tracks are the objects its expressions name
  plus any object folder under ``Annotations/<video_id>/`` (an object without expression).
- A missing PNG means the object is absent in that frame; a PNG that is all zero is a
  mask the source stores as present but empty, and is kept as such.
- A split without ``Annotations/`` (the test split as first released) is valid: its
  videos have ``mask_source=None``. In a split with ``Annotations/``, an object that an
  expression names but that has no folder is kept as a track absent from every frame
  (the official evaluation scores it against all-empty masks), with a warning.
- ``type`` ``"static+dynamic"`` becomes kind ``"hybrid"`` (``kind_raw`` keeps the string).
- ``fps`` is 6.0: the release's frames are sampled at 6 fps (361.7 frames per 60.3 s video
  on average, per the paper and project page).
- Masks must be single-channel PNGs of the video's size. The release's are 0/255; any
  non-zero value is foreground, as the official evaluation reads them (1-bit PNGs give
  0/1, other grey levels occur in re-encoded copies). Such values are read silently and
  reported by `longrvos validate` as a warning listing them (`LongRVOSMasks.findings`).
  The official training code reads ``convert('P') == 255`` instead: a grey level below
  255 is background there, a 1-bit pixel is foreground in both.
- ``<split>/longrvos_sidecar.json`` (written by `longrvos_data.converters.long_rvos` with
  ``sidecar=True``) adds what the format cannot hold: see `longrvos_data.sidecar.Sidecar.apply`.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .. import masks as _masks
from ..errors import DataError, OnError, Problem, ProblemLog
from ..schema import Expression, Frame, MaskSource, Track, Video, check_id
from .base import Dataset, Detection, SplitReader, is_present, match_frames, read_json, require

log = logging.getLogger("longrvos_data")

NAME = "long_rvos"
FPS = 6.0


class LongRVOSPaths:
    """File and folder names of the Long-RVOS layout."""

    META = "meta_expressions.json"
    IMAGES = "JPEGImages"
    ANNOTATIONS = "Annotations"
    SPLITS = ("train", "valid", "test")
    FRAME_EXT = ".jpg"
    MASK_EXT = ".png"


# Source ``type`` -> canonical kind. "hybrid" is accepted as a spelling of "static+dynamic"
# (the project page calls the third type "hybrid"); the writer always writes the latter.
TYPE_TO_KIND: dict[str, str] = {"static": "static", "dynamic": "dynamic", "static+dynamic": "hybrid",
                                 "hybrid": "hybrid"}
KIND_TO_TYPE: dict[str, str] = {"static": "static", "dynamic": "dynamic", "hybrid": "static+dynamic"}


def _natural_key(track_id: str) -> tuple:
    """Sort key putting numeric ids first, in numeric order, then the others by name."""
    return (0, int(track_id), "") if track_id.isdigit() else (1, 0, track_id)


class LongRVOSMasks(MaskSource):
    """One video's masks: ``Annotations/<video_id>/<obj_id>/<frame>.png``, non-zero = object.

    Each object folder is listed once, on first use, so that a frame without a PNG costs
    no file-system call. Every decoded PNG is checked (single channel, the video's size)
    before it is turned into a mask; values other than 0/255 are noted per object for
    `findings`.
    """

    def __init__(self, folder: Path, *, video_id: str, frame_names: Sequence[str], track_ids: Sequence[str],
                 height: int, width: int) -> None:
        self.folder = Path(folder)
        self.video_id = video_id
        self.frame_names = tuple(frame_names)
        self.track_ids = tuple(track_ids)
        self.height, self.width = height, width
        self._present: dict[str, frozenset[str]] | None = None
        self._odd: dict[str, tuple[set[str], set[int]]] = {}   # track -> (frames, values) of non-0/255 PNGs

    def _listing(self) -> dict[str, frozenset[str]]:
        if self._present is None:
            present: dict[str, frozenset[str]] = {}
            ext = LongRVOSPaths.MASK_EXT
            for tid in self.track_ids:
                try:
                    with os.scandir(self.folder / tid) as it:
                        present[tid] = frozenset(e.name[:-len(ext)] for e in it
                                                 if e.name.endswith(ext) and not e.name.startswith("."))
                except (FileNotFoundError, NotADirectoryError):
                    present[tid] = frozenset()
            self._present = present
        return self._present

    def read(self, track_id: str, index: int) -> np.ndarray | None:
        """The object's ``(H, W) bool`` mask at frame ``index``, or None when its PNG is missing.

        Any non-zero pixel is foreground (see the module docstring); a PNG holding other
        values than 0 and 255 is noted for `findings`.

        Raises:
            DataError: the PNG is corrupt, not single-channel or of another size than the video.
        """
        name = self.frame_names[index]
        if name not in self._listing().get(track_id, ()):
            return None
        path = self.folder / track_id / f"{name}{LongRVOSPaths.MASK_EXT}"
        field = f"{LongRVOSPaths.ANNOTATIONS}/{track_id}/{name}.png"
        arr = _masks.read_mask_png(path, video=self.video_id, field=field, shape=(self.height, self.width))
        mask = arr != 0
        if np.count_nonzero(arr == 255) != np.count_nonzero(mask):
            frames, values = self._odd.setdefault(track_id, (set(), set()))
            frames.add(name)
            values.update(int(v) for v in np.unique(arr))
        return mask

    def findings(self) -> list[Problem]:
        """Warnings about what was decoded so far: objects whose PNGs hold values other than 0/255.

        `longrvos validate` calls it after decoding every frame; one warning per object
        lists the values found (e.g. ``[0, 128]``, or ``[0, 1]`` for 1-bit PNGs).
        """
        out = []
        order = {n: i for i, n in enumerate(self.frame_names)}
        for tid, (frames, values) in self._odd.items():
            first = min(frames, key=order.__getitem__)
            out.append(Problem(
                "warning", f"{len(frames)} mask PNG(s) hold values other than 0 and 255 (e.g. {first}.png): "
                f"values {sorted(values)}; any non-zero pixel is read as the object, as the official "
                f"evaluation reads them (the official training takes only 255)",
                str(self.folder / tid), self.video_id, f"{LongRVOSPaths.ANNOTATIONS}/{tid}"))
        return out

    def masks(self, index: int) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for tid in self.track_ids:
            mask = self.read(tid, index)
            if mask is not None:
                out[tid] = mask
        return out


class LongRVOSSplit(SplitReader):
    """One Long-RVOS split folder; ``meta_expressions.json`` is parsed on opening.

    Attributes:
        meta_file: the split's ``meta_expressions.json``.
        annotated: whether the split has an ``Annotations/`` folder.
    """

    format = NAME

    def __init__(self, root: Path, split: str, *, problems: ProblemLog) -> None:
        super().__init__(root, split, problems=problems)
        self.meta_file = self.root / LongRVOSPaths.META
        data = read_json(self.meta_file)
        self._videos: dict[str, Any] = require(data, "videos", dict, file=self.meta_file, video=None,
                                               field="videos")
        self.annotated = (self.root / LongRVOSPaths.ANNOTATIONS).is_dir()
        self._warn_unlisted_folders()
        from ..sidecar import Sidecar  # what `converters.long_rvos` kept aside (longrvos_sidecar.json)
        self.sidecar = Sidecar.read(self.root, target=NAME)
        log.debug("Long-RVOS split %s: %d videos, annotated=%s", split, len(self._videos), self.annotated)

    def _warn_unlisted_folders(self) -> None:
        images = self.root / LongRVOSPaths.IMAGES
        try:
            with os.scandir(images) as it:
                folders = {e.name for e in it if e.is_dir() and not e.name.startswith(".")}
        except FileNotFoundError:
            return
        extra = folders - set(self._videos)
        if extra:
            self.problems.warning(f"{len(extra)} video folder(s) in {images} are not in the metadata and are "
                                  f"ignored: {', '.join(sorted(extra)[:5])}", file=self.meta_file, field="videos")

    def video_ids(self) -> list[str]:
        return list(self._videos)

    def metadata_files(self) -> list[Path]:
        """The metadata files this split reads (`validate` checks every id in them)."""
        return [self.meta_file]

    def _load(self, video_id: str) -> Video:
        meta_file = self.meta_file
        vid = check_id(video_id, file=meta_file, video=video_id, field="video_id")
        where = dict(file=meta_file, video=vid)
        entry = self._videos[video_id]
        if not isinstance(entry, dict):
            raise DataError(f"expected an object, got {type(entry).__name__}", field=f"videos.{vid}", **where)

        names = require(entry, "frames", list, field="frames", **where)
        if not names:
            raise DataError("the frame list is empty", field="frames", **where)
        for i, name in enumerate(names):
            if not isinstance(name, str):
                raise DataError(f"frame names must be strings, got {type(name).__name__}", field=f"frames[{i}]",
                                **where)
            check_id(name, field=f"frames[{i}]", **where)
        paths = match_frames(self.root / LongRVOSPaths.IMAGES / vid, names, video=vid, meta_file=meta_file,
                             problems=self.problems)
        height, width = _masks.image_size(paths[0], video=vid)
        frames = [Frame(n, p) for n, p in zip(names, paths)]

        raw_exps = require(entry, "expressions", dict, field="expressions", **where)
        expressions = [_expression(exp_id, e, **where) for exp_id, e in raw_exps.items()]

        track_ids = {e.track_ids[0] for e in expressions}
        ann_dir = self.root / LongRVOSPaths.ANNOTATIONS / vid
        mask_source = None
        if self.annotated:
            folders = _object_folders(ann_dir, vid, self.problems)
            first_mention: dict[str, str] = {}
            for e in expressions:
                first_mention.setdefault(e.track_ids[0], e.exp_id)
            for tid, exp_id in first_mention.items():
                if tid not in folders:
                    self.problems.warning(f"object {tid!r} has no folder {ann_dir / tid}: it is read as absent "
                                          "from every frame (all-empty masks, as the official evaluation "
                                          "scores it)", field=f"expressions.{exp_id}.obj_id", **where)
            track_ids |= folders
        ordered = sorted(track_ids, key=_natural_key)
        if self.annotated:
            mask_source = LongRVOSMasks(ann_dir, video_id=vid, frame_names=names, track_ids=ordered,
                                        height=height, width=width)
        extra = {k: v for k, v in entry.items() if k not in ("frames", "expressions")}
        return self.sidecar.apply(Video(
            dataset=NAME, split=self.split, video_id=vid, frames=frames, height=height, width=width,
            tracks=[Track(t) for t in ordered], expressions=expressions, fps=FPS, meta=extra,
            mask_source=mask_source, source_file=str(meta_file)))


def _expression(exp_id: str, raw: Any, *, file: Path, video: str) -> Expression:
    """One ``expressions.<exp_id>`` entry as an `Expression`, every field checked."""
    field = f"expressions.{exp_id}"
    check_id(exp_id, file=file, video=video, field=field)
    text = require(raw, "exp", str, file=file, video=video, field=f"{field}.exp")
    if not text.strip():
        raise DataError("expression text is empty", file=file, video=video, field=f"{field}.exp")
    obj_id = require(raw, "obj_id", (int, str), file=file, video=video, field=f"{field}.obj_id")
    if isinstance(obj_id, bool):
        raise DataError("obj_id must be an int or a string, got bool", file=file, video=video, field=f"{field}.obj_id")
    track_id = check_id(obj_id, file=file, video=video, field=f"{field}.obj_id")
    kind_raw = require(raw, "type", str, file=file, video=video, field=f"{field}.type")
    if kind_raw not in TYPE_TO_KIND:
        raise DataError(f"unknown type {kind_raw!r}; expected one of static, dynamic, static+dynamic",
                        file=file, video=video, field=f"{field}.type")
    extra = {k: v for k, v in raw.items() if k not in ("exp", "obj_id", "type")}
    return Expression(exp_id=exp_id, text=text, track_ids=(track_id,), kind=TYPE_TO_KIND[kind_raw],
                      kind_raw=kind_raw, meta=extra)


def _object_folders(ann_dir: Path, video: str, problems: ProblemLog) -> set[str]:
    """Names of the object folders under ``Annotations/<video_id>/`` (empty if it is missing)."""
    try:
        with os.scandir(ann_dir) as it:
            entries = [(e.name, e.is_dir()) for e in it if not e.name.startswith(".")]
    except FileNotFoundError:
        return set()
    stray = [n for n, is_dir in entries if not is_dir]
    if stray:
        problems.warning(f"{len(stray)} file(s) in {ann_dir} are not object folders and are ignored "
                         f"(e.g. {stray[0]!r})", file=ann_dir, video=video, field="Annotations")
    return {n for n, is_dir in entries if is_dir}


# -- detection and loading -----------------------------------------------------------------------
def _split_folders(path: Path) -> dict[str, Path]:
    """``{split: folder}`` under a dataset root, or ``{name: path}`` for one split folder."""
    path = Path(path)
    if is_present(path / LongRVOSPaths.META):
        return {path.name: path}
    if not path.is_dir():
        return {}
    found = {c.name: c for c in path.iterdir() if c.is_dir() and is_present(c / LongRVOSPaths.META)}
    order = {s: i for i, s in enumerate(LongRVOSPaths.SPLITS)}
    return dict(sorted(found.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))


def detect(path: str | Path) -> Detection:
    """How likely ``path`` (a root or one split folder) is Long-RVOS, from file content.

    Probes ``meta_expressions.json``: expressions must carry a ``type`` string and a single
    ``obj_id`` (MeViS has lists, Ref-YouTube-VOS has no ``type``); a ``mask_dict.json``
    beside it means MeViS.

    Example:
        >>> detect("data/long_rvos").confidence
        1.0
    """
    path = Path(path)
    splits = _split_folders(path)
    if not splits:
        return Detection(NAME, 0.0, (f"no {LongRVOSPaths.META} in {path} or its sub-folders",))
    name, folder = next(iter(splits.items()))
    meta = folder / LongRVOSPaths.META
    reasons = [f"found {meta}"]
    if (folder / "mask_dict.json").is_file():
        return Detection(NAME, 0.0, (*reasons, "mask_dict.json beside it (MeViS layout)"))
    try:
        data = read_json(meta)
    except DataError as err:
        return Detection(NAME, 0.0, (*reasons, f"unreadable: {err.message}"))
    videos = data.get("videos") if isinstance(data, dict) else None
    if not isinstance(videos, dict):
        return Detection(NAME, 0.0, (*reasons, "no top-level 'videos' object"))
    probed = 0
    for vid, entry in videos.items():
        exps = entry.get("expressions") if isinstance(entry, dict) else None
        if not isinstance(exps, dict):
            return Detection(NAME, 0.0, (*reasons, f"video {vid!r} has no 'expressions' object"))
        for exp in exps.values():
            if not isinstance(exp, dict):
                return Detection(NAME, 0.0, (*reasons, f"video {vid!r}: an expression is not an object"))
            obj = exp.get("obj_id")
            if isinstance(obj, list) or "anno_id" in exp:
                return Detection(NAME, 0.0, (*reasons, "obj_id is a list / anno_id present (MeViS layout)"))
            if "type" not in exp:
                return Detection(NAME, 0.0, (*reasons, "expressions have no 'type' (Ref-YouTube-VOS layout)"))
            if not isinstance(obj, (int, str)) or not isinstance(exp["type"], str):
                return Detection(NAME, 0.0, (*reasons, "obj_id is not a single int/str or type is not a string"))
            probed += 1
            if probed >= 3:
                break
        if probed >= 3:
            break
    if probed == 0:
        return Detection(NAME, 0.3, (*reasons, "no expression to probe"))
    reasons.append(f"expressions carry 'type' and a single 'obj_id' (split {name!r})")
    ann = folder / LongRVOSPaths.ANNOTATIONS
    if ann.is_dir():
        first = str(next(iter(videos)))
        vid_dir = ann / first
        if ("/" not in first and first not in (".", "..") and vid_dir.is_dir()
                and any(p.suffix == ".png" for p in vid_dir.iterdir())):
            return Detection(NAME, 0.5, (*reasons, f"{vid_dir} holds PNGs directly, not per-object folders"))
        reasons.append("Annotations/ holds per-object folders")
    else:
        reasons.append("no Annotations/ (a split without masks)")
    return Detection(NAME, 1.0, tuple(reasons))


def load(path: str | Path, *, split: str | None = None, on_error: OnError = "raise") -> Dataset:
    """Open a Long-RVOS root or one split folder; metadata now, masks on demand.

    Args:
        path: ``long_rvos/`` (holding ``train/ valid/ test/``) or one split folder.
        split: read only this split.
        on_error: ``"raise"`` or ``"skip"`` (bad videos are recorded in ``problems`` and left out).

    Raises:
        DataError: no split folder found, the split is unknown, or a metadata file is broken.

    Example:
        >>> ds = load("data/long_rvos", split="valid")
        >>> video = next(iter(ds["valid"]))
        >>> masks = video.frame_masks(0)          # {"1": (H, W) bool, ...}
    """
    path = Path(path)
    if not path.exists():
        raise DataError("no such file or folder", file=path)
    problems = ProblemLog(on_error)
    folders = _split_folders(path)
    if not folders:
        raise DataError(f"no {LongRVOSPaths.META} here or in a split folder", file=path, field=LongRVOSPaths.META)
    if split is not None:
        if split not in folders:
            raise DataError(f"no split {split!r}; found {sorted(folders)}", file=path, field="split")
        folders = {split: folders[split]}
    splits = {name: LongRVOSSplit(folder, name, problems=problems) for name, folder in folders.items()}
    return Dataset(format=NAME, root=path, splits=splits, version=None, problems=problems)


def validate_extra(path: str | Path, *, split: str | None = None, checksums: bool = False) -> list[Problem]:
    """Whole-split checks that per-frame decoding cannot make: stray annotation files.

    Reports (as warnings) mask PNGs whose frame is not in the video's frame list and
    annotation folders of videos the metadata does not list: the official loader never
    reads them. Videos that fail to load are left to the generic validation.
    ``checksums`` is accepted for the common signature; Long-RVOS publishes none.

    Example:
        >>> for p in validate_extra("data/long_rvos", split="valid"):
        ...     print(p)
    """
    ds = load(path, split=split, on_error="skip")
    found: list[Problem] = []
    for reader in ds:
        if not reader.annotated:
            continue
        ann = reader.root / LongRVOSPaths.ANNOTATIONS
        listed = set(reader.video_ids())
        with os.scandir(ann) as it:
            unlisted = sorted(e.name for e in it if e.is_dir() and e.name not in listed)
        if unlisted:
            found.append(Problem("warning", f"{len(unlisted)} annotation folder(s) belong to no listed video: "
                                 f"{', '.join(unlisted[:5])}", str(ann), None, "Annotations"))
        for vid in reader.video_ids():
            try:
                video = reader.video(vid)
            except DataError:
                continue
            names = set(video.frame_names)
            for tid, stems in video.mask_source._listing().items():
                stray = sorted(stems - names)
                if stray:
                    found.append(Problem("warning", f"{len(stray)} mask PNG(s) are not in the frame list and are "
                                         f"never read: {', '.join(stray[:5])}", str(ann / vid / tid), vid,
                                         f"Annotations/{tid}"))
    return found


__all__ = ["NAME", "FPS", "KIND_TO_TYPE", "TYPE_TO_KIND", "LongRVOSMasks", "LongRVOSPaths", "LongRVOSSplit",
           "detect", "load", "validate_extra"]
