"""Projects on disk: create one from any dataset (and predictions), add new videos, check frames.

A project folder::

    PROJECT/
      project.sqlite                  the store (`longrvos_data.annotation.store`)
      frames/<split>/<video_id>/00000.jpg ...
                                      frames decoded from added video files, and frames that
                                      were not files under the imported root (e.g. a Hugging
                                      Face dataset's embedded JPEGs); all other frames are
                                      referenced where they are, relative to the imported root

Predictions become pre-annotations with provenance ``model:NAME``. Where they go:

- a single-track expression's prediction goes to that track;
- a multi-track or trackless expression's (MeViS ``valid``, Long-RVOS ``test``) goes to a
  new track ``pred:<exp_id>`` (meta ``{"expression": exp_id}``); a trackless expression is
  made to name it, so that the project says what the prediction refers to;
- LVOS predictions (one indexed PNG per frame) go to the object of each pixel value;
- a no-target expression's prediction is ignored with a warning;
- a prediction never replaces an annotated cell (the source's masks win; the cells left
  are counted in a warning), and an all-zero predicted mask is an absent cell.
"""
from __future__ import annotations

import contextlib
import getpass
import logging
import math
import os
import shutil
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from .. import masks as _masks
from ..errors import DataError, LongRVOSError, OnError, Problem, ProblemLog
from ..fsutil import staged_dir
from ..loaders.base import list_images
from ..schema import Frame, Track, Video, check_id
from .store import DB_NAME, Store, StoreError, check_provenance

log = logging.getLogger("longrvos_data")

FRAMES_DIR = "frames"
"""Frames the project holds itself, ``frames/<split>/<video_id>/``; recorded as a relative root."""

_BATCH = 64   # frames per insert batch on import: bounds memory on long videos


def default_user() -> str:
    """Who is acting: ``$LONGRVOS_USER``, else the login name."""
    return os.environ.get("LONGRVOS_USER") or getpass.getuser()


@dataclass
class ImportReport:
    """What `init_project` wrote: videos per split, imported and predicted cells, warnings."""

    project: Path
    videos: dict[str, int] = field(default_factory=dict)
    imported_cells: int = 0
    predicted_cells: int = 0
    provenance: str | None = None
    problems: list[Problem] = field(default_factory=list)


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False


def init_project(project_dir: str | Path, src: str | Path, *, format: str | None = None, split: str | None = None,
                 pred: str | Path | None = None, pred_name: str | None = None, overwrite: bool = False,
                 user: str | None = None, on_error: OnError = "raise") -> ImportReport:
    """Create a project from the dataset at ``src`` (any loader's format), optionally with predictions.

    Args:
        project_dir: the new project folder (refused if it exists, unless ``overwrite`` and
            it is a project).
        src: dataset root or one split folder.
        format, split, on_error: as `longrvos_data.load`.
        pred: a prediction folder or RLE JSON, as `eval` reads them (module docstring: where
            each prediction goes).
        pred_name: provenance ``model:<pred_name>``; default ``pred``'s folder (or file stem) name.
        overwrite: replace an existing project.
        user: who imports (`default_user`).

    The project is built beside ``project_dir`` and renamed into place, so a failure
    leaves the previous project (or nothing).

    Example:
        >>> report = init_project("proj", "data/mevis", split="valid", pred="preds/referformer")
        >>> report.provenance
        'model:referformer'
    """
    from ..loaders import load

    project_dir, src = Path(project_dir), Path(src)
    user = user or default_user()
    if project_dir.exists() and (not project_dir.is_dir() or any(project_dir.iterdir())):
        if not (project_dir / DB_NAME).is_file():
            raise LongRVOSError(f"{project_dir} exists and is not a project; refusing to replace it")
        if not overwrite:
            raise LongRVOSError(f"{project_dir}: a project exists; pass --overwrite to replace it")
        if _inside(Path(os.path.abspath(src)), Path(os.path.abspath(project_dir))):
            raise LongRVOSError(f"{src} is inside {project_dir}, which --overwrite would remove")
    provenance = None
    if pred is not None:
        pred = Path(pred)
        provenance = check_provenance(f"model:{pred_name or (pred.stem if pred.is_file() else pred.name)}")
    dataset = load(src, format=format, split=split, on_error=on_error)
    report = ImportReport(Path(project_dir), provenance=provenance)
    problems = ProblemLog("skip")
    root = Path(os.path.abspath(src if src.is_dir() else src.parent))
    with staged_dir(project_dir) as tmp:
        with Store.create(tmp / DB_NAME) as store:
            with store.transaction():
                store.set_value("imported", {"format": dataset.format, "root": str(root), "version": dataset.version})
                source = store.add_source(str(root))
                op_id = store.begin_import(user=user, label=f"import {dataset.format} {root}")
            for split_name, reader in dataset.splits.items():
                report.videos[split_name] = 0
                for video in reader:
                    report.imported_cells += _import_video(store, op_id, video, root=root, source=source)
                    report.videos[split_name] += 1
            if pred is not None:
                report.predicted_cells = _import_predictions(store, dataset.format, pred, provenance=provenance,
                                                             user=user, problems=problems)
    report.problems = dataset.problems.problems + problems.problems
    return report


def _frame_refs(store: Store, video: Video, *, root: Path, source: int) -> tuple[int, list[str]]:
    """``(source, paths)``: the frames relative to ``root``, or copied into the project when
    some are not files under it (embedded frames written to a cache)."""
    paths = [Path(os.path.abspath(f.path)) for f in video.frames]
    if all(_inside(p, root) for p in paths):
        return source, [p.relative_to(root).as_posix() for p in paths]
    folder = store.project_dir / FRAMES_DIR / video.split / video.video_id
    rels = []
    for f in video.frames:
        name = f"{f.name}{Path(os.fspath(f.path)).suffix or '.jpg'}"
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(os.fspath(f.path), folder / name)
        rels.append(f"{video.split}/{video.video_id}/{name}")
    return store.add_source(FRAMES_DIR), rels


def _import_video(store: Store, op_id: int, video: Video, *, root: Path, source: int) -> int:
    """One video's metadata and (if it has them) masks, in one transaction; returns the cells."""
    source, paths = _frame_refs(store, video, root=root, source=source)
    written = 0
    with store.transaction():
        store.add_video(video, source=source, frame_paths=paths, annotated=video.has_masks)
        if video.has_masks:
            track_ids = [t.track_id for t in video.tracks]
            for start in range(0, video.num_frames, _BATCH):
                cells = {}
                for i in range(start, min(start + _BATCH, video.num_frames)):
                    rles = video.frame_rles(i)
                    cells.update({(tid, i): rles.get(tid) for tid in track_ids})
                store.import_cells(op_id, video.split, video.video_id, cells, provenance="imported")
                written += len(cells)
    return written


def _prediction_videos(source, store: Store, problems: ProblemLog) -> Iterator[tuple[Video, object, object]]:
    """``(video, its predictions, issue log)`` for every project video the predictions hold."""
    from ..predictions import IssueLog, RleJson

    videos: dict[str, list[Video]] = {}
    for split in store.splits():
        for vid in store.video_ids(split):
            videos.setdefault(vid, []).append(store.video_info(split, vid).video())
    if isinstance(source, RleJson):   # streamed once, in file order
        for vid, entry in source.iter_videos():
            if vid not in videos:
                problems.warning(f"predictions for video {vid!r}, which the project does not hold, are ignored",
                                 file=source.path, video=vid, field="predictions")
            for video in videos.get(vid, ()):
                issues = IssueLog(vid)
                yield video, source.open_entry(video, entry, issues), issues
        return
    for vid in sorted(set(source.video_ids()) - set(videos)):
        problems.warning(f"predictions for video {vid!r}, which the project does not hold, are ignored",
                         file=source.root, video=vid, field="predictions")
    for vid, vids in videos.items():
        for video in vids:
            issues = IssueLog(vid)
            preds = source.open(video, issues)
            if preds.present:
                yield video, preds, issues


def _predicted(preds, unit: str, video: Video) -> tuple[dict[int, dict | None], dict[str, int]]:
    """``{frame: RLE | None}`` of one prediction unit (all-zero = absent) and ``{defect: frames}``."""
    out: dict[int, dict | None] = {}
    defects: dict[str, int] = {}
    for i, frame in enumerate(video.frames):
        read = preds.read(unit, i, frame.name)
        if read.defect:
            defects[read.defect] = defects.get(read.defect, 0) + 1
            continue
        if read.mask is None:   # an RLE JSON's null: an empty prediction
            out[i] = None
            continue
        mask = np.asarray(read.mask) != 0
        out[i] = _masks.encode(mask) if mask.any() else None
    return out, defects


def _import_predictions(store: Store, fmt: str, pred: Path, *, provenance: str, user: str,
                        problems: ProblemLog) -> int:
    """Write the predictions at ``pred`` as one import operation; returns the cells written."""
    from ..predictions import open_predictions

    source = open_predictions(pred, protocol="lvos" if fmt == "lvos" else fmt)
    with store.transaction():
        op_id = store.begin_import(user=user, label=f"predictions {provenance} {os.path.abspath(pred)}")
    written = 0
    for video, preds, issues in _prediction_videos(source, store, problems):
        where = dict(file=pred, video=video.video_id)
        with store.transaction():
            if fmt == "lvos":
                targets = [(t.track_id, t.track_id) for t in video.tracks]
            else:
                targets = []
                for e in video.expressions:
                    if not preds.has_unit(e.exp_id):
                        continue
                    if e.kind == "no-target":
                        problems.warning(f"prediction for no-target expression {e.exp_id!r} ignored",
                                         field=f"expressions.{e.exp_id}", **where)
                        continue
                    if len(e.track_ids) == 1:
                        targets.append((e.exp_id, e.track_ids[0]))
                        continue
                    tid = f"pred:{e.exp_id}"
                    store.add_track(video.split, video.video_id, Track(tid, None, {"expression": e.exp_id}))
                    if not e.track_ids:
                        store.set_expression_tracks(video.split, video.video_id, e.exp_id, [tid])
                    targets.append((e.exp_id, tid))
            for unit, tid in targets:
                frames, defects = _predicted(preds, unit, video)
                for defect, n in sorted(defects.items()):
                    problems.warning(f"{n} frame(s) of unit {unit!r} are {defect.replace('_', ' ')}; left not "
                                     "annotated", field=f"predictions.{unit}", **where)
                kept = store.import_cells(op_id, video.split, video.video_id, {(tid, i): r for i, r in frames.items()},
                                          provenance=provenance, only_unannotated=True)
                if kept:
                    problems.warning(f"{kept} frame(s) of track {tid!r} were already annotated; the prediction of "
                                     f"{unit!r} did not replace them", field=f"tracks.{tid}", **where)
                written += len(frames) - kept
        for issue in issues:
            problems.warning(f"{issue.problem}: {issue.message}", field=f"predictions.{issue.exp_id}", **where)
    return written


def import_predictions(project: str | Path, pred: str | Path, *, provenance: str, user: str | None = None) -> int:
    """Pre-annotate an existing project with predictions (a folder or RLE JSON, as ``eval`` reads them).

    Every predicted cell is written with ``provenance`` (``model:<name>``) as one operation;
    cells already annotated are kept. Returns the cells written; what could not be used is
    logged as a warning.

    Example:
        >>> import_predictions("proj", "out/refermo_pred", provenance="model:refermo")
        5120
    """
    check_provenance(provenance)
    problems = ProblemLog("skip")
    with Store.open(project) as store:
        imported = store.value("imported") or {}
        fmt = imported.get("format")
        if fmt is None:
            raise LongRVOSError(f"{project}: the project was not imported from a dataset; its format is unknown")
        return _import_predictions(store, fmt, Path(pred), provenance=provenance, user=user or default_user(),
                                   problems=problems)


# -- new videos -------------------------------------------------------------------------
def decode_video(path: Path, folder: Path, *, fps: float | None = None) -> tuple[list[str], int, int, float]:
    """Decode a video file once into ``folder/00000.jpg``...; returns ``(names, height, width, fps)``.

    Frame ``k`` is the first decoded frame whose time (from the first frame) is at least
    ``k / F``, ``F`` being ``fps`` or the stream's average rate; there are
    ``ceil(duration * F)`` frames (the last decoded frame fills the tail). Times are
    compared as exact fractions.

    Raises:
        DataError: no video stream, undecodable, or no frame rate to sample at.
    """
    import av

    try:
        container = av.open(os.fspath(path))
    except (av.FFmpegError, OSError) as exc:
        raise DataError(f"cannot be opened as a video ({exc})", file=path, field="video") from None
    names: list[str] = []
    with container:
        if not container.streams.video:
            raise DataError("has no video stream", file=path, field="video")
        stream = container.streams.video[0]
        rate = Fraction(fps).limit_denominator(1_000_000) if fps else Fraction(stream.average_rate or 0)
        if rate <= 0:
            raise DataError("has no frame rate; pass --fps", file=path, field="fps")
        tb = Fraction(stream.time_base)
        folder.mkdir(parents=True, exist_ok=True)
        first = last = None
        size = (0, 0)
        try:
            for frame in container.decode(stream):
                pts = frame.pts if frame.pts is not None else len(names)
                first = pts if first is None else first
                t = (pts - first) * tb
                image = None
                while Fraction(len(names)) / rate <= t:
                    image = frame.to_image() if image is None else image
                    name = f"{len(names):05d}"
                    image.save(folder / f"{name}.jpg", format="JPEG", quality=95)
                    names.append(name)
                last = (t, frame)
                size = (frame.height, frame.width)
        except av.FFmpegError as exc:
            raise DataError(f"cannot be decoded ({exc})", file=path, field="video") from None
        if last is None:
            raise DataError("has no decodable frame", file=path, field="video")
        if stream.duration:
            duration = stream.duration * tb
        elif container.duration:
            duration = Fraction(container.duration, 1_000_000)
        else:
            duration = last[0] + Fraction(1) / Fraction(stream.average_rate or rate)
        total = max(math.ceil(duration * rate), len(names))
        if len(names) < total:
            tail = last[1].to_image()
            while len(names) < total:
                name = f"{len(names):05d}"
                tail.save(folder / f"{name}.jpg", format="JPEG", quality=95)
                names.append(name)
    return names, size[0], size[1], float(rate)


def _folder_frames(folder: Path) -> tuple[list[str], list[str], int, int]:
    """``(names, file names, height, width)`` of a frame folder, all frames one size."""
    images = list_images(folder, video=folder.name)
    if not images:
        raise DataError("no image files (.jpg, .jpeg, .png)", file=folder, field="frames")
    names = sorted(images)
    h, w = _masks.image_size(images[names[0]], video=folder.name)
    for n in names[1:]:
        if _masks.image_size(images[n], video=folder.name) != (h, w):
            raise DataError(f"frame is {_masks.image_size(images[n])}, the first is {(h, w)}", file=images[n],
                            video=folder.name, field="frames")
    return names, [images[n].name for n in names], h, w


def add_videos(project: str | Path, paths: Sequence[str | Path], *, fps: float | None = None, split: str = "train",
               dataset: str | None = None) -> list[str]:
    """Add new, unannotated videos: each a video file (decoded into the project) or a frame folder.

    Args:
        project: the project folder.
        paths: video files (any codec PyAV decodes) or folders of frames (referenced, not copied).
        fps: sample video files at this rate (default: each file's own); recorded for folders.
        split: the split the videos join.
        dataset: the videos' dataset name (default: the imported dataset's format, else ``"project"``).

    Returns:
        The new video ids (each path's stem or folder name).

    Example:
        >>> add_videos("proj", ["clips/dance.mp4"], fps=6)
        ['dance']
    """
    if fps is not None and fps <= 0:
        raise LongRVOSError(f"--fps must be positive, not {fps}")
    added = []
    with Store.open(project) as store:
        name = dataset or (store.value("imported") or {}).get("format") or "project"
        for path in map(Path, paths):
            if not path.exists():
                raise DataError("no such video file or frame folder", file=path, field="video")
            vid = check_id(path.name if path.is_dir() else path.stem, file=path, video=None, field="video_id")
            if vid in store.video_ids(split):
                raise StoreError(f"{store.path}: split {split!r} already has a video {vid!r} (from {path})")
            if path.is_dir():
                names, files, h, w = _folder_frames(path)
                source = store.add_source(os.path.abspath(path.parent))
                rels = [f"{path.name}/{f}" for f in files]
                rate = fps
                _store_new(store, name, split, vid, names, rels, h, w, rate, source, path)
            else:
                target = store.project_dir / FRAMES_DIR / split / vid
                try:
                    with staged_dir(target) as tmp:
                        names, h, w, rate = decode_video(path, tmp, fps=fps)
                        rels = [f"{split}/{vid}/{n}.jpg" for n in names]
                        _store_new(store, name, split, vid, names, rels, h, w, rate, store.add_source(FRAMES_DIR),
                                   path)
                except BaseException:
                    for folder in (target.parent, target.parent.parent):   # frames/<split>, frames: if left empty
                        with contextlib.suppress(OSError):
                            folder.rmdir()
                    raise
            added.append(vid)
    return added


def _store_new(store: Store, dataset: str, split: str, vid: str, names: list[str], rels: list[str], h: int, w: int,
               fps: float | None, source: int, origin: Path) -> None:
    video = Video(dataset=dataset, split=split, video_id=vid, frames=[Frame(n, Path(r)) for n, r in zip(names, rels)],
                  height=h, width=w, tracks=(), expressions=(), fps=fps, meta={"added_from": os.path.abspath(origin)})
    with store.transaction():
        store.add_video(video, source=source, frame_paths=rels, annotated=False)


# -- checks -----------------------------------------------------------------------------
def validate_project(project: str | Path) -> list[Problem]:
    """Problems of a project: each missing frame with its expected path, and the database's integrity.

    Example:
        >>> for p in validate_project("proj"):
        ...     print(p)
        error: /data/mevis/valid/JPEGImages/v1/00003.jpg: video 'v1': field 'frames[3]': frame is missing
    """
    out: list[Problem] = []
    with Store.open(project) as store:
        check = store.integrity_check()
        if check != "ok":
            out.append(Problem("error", f"integrity check failed: {check}", str(store.path)))
        for split in store.splits():
            for vid in store.video_ids(split):
                info = store.video_info(split, vid)
                for i, frame in enumerate(info.frames):
                    if not frame.path.is_file():
                        out.append(Problem("error", f"frame {frame.name!r} is missing (expected at {frame.path})",
                                           str(frame.path), vid, f"frames[{i}]"))
    return out


def relink(project: str | Path, old: str | Path, new: str | Path) -> int:
    """Point frames recorded under ``old`` to ``new`` (the dataset moved); returns the videos moved."""
    with Store.open(project) as store:
        return store.relink(old, new)


__all__ = ["FRAMES_DIR", "ImportReport", "add_videos", "decode_video", "default_user", "import_predictions",
           "init_project", "relink", "validate_project"]
