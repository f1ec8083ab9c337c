"""The project database: everything a `Video` holds, per-cell masks, versions and history.

A project is a folder holding ``project.sqlite`` (WAL). Why SQLite: one file, atomic
multi-row transactions, and safe readers beside one writer, with nothing to run.

Tables (schema `SCHEMA_VERSION`, kept in ``PRAGMA user_version``)::

    sources      source_id, root                 frame roots, one per import (relative = inside the project)
    videos       split, video_id, dataset, size, fps, meta, status, assignee, frame source
    frames       video, index, name, path        path relative to the source's root
    tracks       video, track_id, position, category, meta
    expressions  video, exp_id, position, text, kind, kind_raw, track_ids, meta
    masks        mask_id, counts                 COCO RLE counts, deflated (the size is the video's)
    cells        video, frame, track: state, mask, provenance, version, origin, last operation
    operations   op_id, user, at, kind, label, status, target, undone_by
    changes      op_id, video, frame, track: base, before and after (state, mask, provenance, version)
    flags        flag_id, video, source (``user`` or an audit), check, severity, tracks, frames, message
    dismissals   flag_id, user, at                a dismissed flag stays dismissed when an audit re-runs

A cell (one track in one frame) is ``none`` (not annotated; version 0 until first written),
``absent`` or ``present`` (an RLE, possibly empty), with a provenance (`PROVENANCES`)
and a version that every write raises by one. Masks rows are immutable, so history
refers to them instead of copying RLEs. A cell's ``origin`` is the version whose content
it holds (its own version, except after an undo or redo, which restore an older one):
undoing an edit is allowed while each of its cells still holds that edit's content,
so that undoing twice in a row on one cell works, and anyone else's change refuses it.

Every write names the version each cell was based on. An operation is one transaction
(``BEGIN IMMEDIATE``): if any base is stale nothing is written, the attempt is kept as a
``rejected`` operation with the masks it proposed, and `Conflict` lists the stale cells.
Every connection runs ``journal_mode=WAL`` and ``synchronous=FULL``, so a write that
returned is on disk.

Metadata edits (tracks, expressions, status, assignee, flags) are plain updates; the
history records mask changes.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from .. import masks as _masks
from ..errors import LongRVOSError
from ..schema import KINDS, Expression, Frame, MaskSource, Track, Video

log = logging.getLogger("longrvos_data")

DB_NAME = "project.sqlite"
SCHEMA_VERSION = 3

NONE, ABSENT, PRESENT = "none", "absent", "present"
STATES: tuple[str, ...] = (NONE, ABSENT, PRESENT)
STATUSES: tuple[str, ...] = ("todo", "in_progress", "done", "reviewed")
PROVENANCES: tuple[str, ...] = ("imported", "human", "propagated", "model:<name>")
SEVERITIES: tuple[str, ...] = ("low", "medium", "high")
SEVERITY_RANK: dict[str, int] = {s: i for i, s in enumerate(reversed(SEVERITIES))}   # 0 = most severe first

# Migration k takes a database from user_version k-1 to k. Append; never edit a shipped one.
MIGRATIONS: dict[int, str] = {
    1: """
CREATE TABLE project (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE sources (source_id INTEGER PRIMARY KEY, root TEXT NOT NULL UNIQUE);
CREATE TABLE videos (
    video_pk INTEGER PRIMARY KEY, split TEXT NOT NULL, video_id TEXT NOT NULL, dataset TEXT NOT NULL,
    height INTEGER NOT NULL, width INTEGER NOT NULL, fps REAL, meta TEXT NOT NULL,
    source_id INTEGER NOT NULL REFERENCES sources, annotated INTEGER NOT NULL, position INTEGER NOT NULL,
    UNIQUE (split, video_id));
CREATE TABLE frames (
    video_pk INTEGER NOT NULL REFERENCES videos, idx INTEGER NOT NULL, name TEXT NOT NULL, path TEXT NOT NULL,
    PRIMARY KEY (video_pk, idx)) WITHOUT ROWID;
CREATE TABLE tracks (
    video_pk INTEGER NOT NULL REFERENCES videos, track_id TEXT NOT NULL, position INTEGER NOT NULL,
    category TEXT, meta TEXT NOT NULL, PRIMARY KEY (video_pk, track_id)) WITHOUT ROWID;
CREATE TABLE expressions (
    video_pk INTEGER NOT NULL REFERENCES videos, exp_id TEXT NOT NULL, position INTEGER NOT NULL,
    text TEXT NOT NULL, kind TEXT NOT NULL, kind_raw TEXT NOT NULL, track_ids TEXT NOT NULL, meta TEXT NOT NULL,
    PRIMARY KEY (video_pk, exp_id)) WITHOUT ROWID;
CREATE TABLE masks (mask_id INTEGER PRIMARY KEY, counts BLOB NOT NULL);
CREATE TABLE operations (
    op_id INTEGER PRIMARY KEY AUTOINCREMENT, user TEXT NOT NULL, at TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('import', 'edit', 'undo', 'redo')), label TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('applied', 'rejected')),
    target INTEGER REFERENCES operations, undone_by INTEGER REFERENCES operations);
CREATE INDEX operations_by_user ON operations (user, kind, op_id);
CREATE TABLE cells (
    video_pk INTEGER NOT NULL, frame INTEGER NOT NULL, track_id TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('none', 'absent', 'present')), mask_id INTEGER REFERENCES masks,
    provenance TEXT, version INTEGER NOT NULL, origin INTEGER NOT NULL, op_id INTEGER NOT NULL,
    PRIMARY KEY (video_pk, frame, track_id), FOREIGN KEY (video_pk, track_id) REFERENCES tracks) WITHOUT ROWID;
CREATE TABLE changes (
    op_id INTEGER NOT NULL REFERENCES operations, video_pk INTEGER NOT NULL, frame INTEGER NOT NULL,
    track_id TEXT NOT NULL, base INTEGER NOT NULL,
    before_state TEXT NOT NULL, before_mask INTEGER, before_prov TEXT, before_version INTEGER NOT NULL,
    before_origin INTEGER NOT NULL,
    after_state TEXT NOT NULL, after_mask INTEGER, after_prov TEXT, after_version INTEGER NOT NULL,
    after_origin INTEGER NOT NULL,
    PRIMARY KEY (op_id, video_pk, frame, track_id)) WITHOUT ROWID;
""",
    2: """
ALTER TABLE videos ADD COLUMN status TEXT NOT NULL DEFAULT 'todo'
    CHECK (status IN ('todo', 'in_progress', 'done', 'reviewed'));
ALTER TABLE videos ADD COLUMN assignee TEXT;
""",
    3: """
CREATE TABLE flags (
    flag_id TEXT PRIMARY KEY, video_pk INTEGER NOT NULL REFERENCES videos, source TEXT NOT NULL,
    check_name TEXT NOT NULL, severity TEXT NOT NULL CHECK (severity IN ('low', 'medium', 'high')),
    track_ids TEXT NOT NULL, exp_id TEXT, frame_start INTEGER NOT NULL, frame_end INTEGER NOT NULL,
    value REAL, threshold REAL, message TEXT NOT NULL, user TEXT, at TEXT NOT NULL);
CREATE INDEX flags_by_video ON flags (video_pk, frame_start);
CREATE TABLE dismissals (flag_id TEXT PRIMARY KEY, user TEXT NOT NULL, at TEXT NOT NULL);
""",
}


# -- errors -----------------------------------------------------------------------------
class StoreError(LongRVOSError):
    """The project database cannot do what was asked (names the project or the cells)."""


class NotFound(StoreError):
    """No such video, track, expression, flag or operation in the project (the server's 404)."""


@dataclass(frozen=True)
class StaleCell:
    """A cell whose version moved: the ``base`` a write (or undo) expected, the ``version``
    it has now, and the operation that wrote it last."""

    split: str
    video_id: str
    track_id: str
    frame: int
    base: int
    version: int
    op_id: int | None

    def __str__(self) -> str:
        return (f"{self.split}/{self.video_id} track {self.track_id!r} frame {self.frame} "
                f"(expected v{self.base}, now v{self.version} by operation {self.op_id})")


class Conflict(StoreError):
    """A write based on stale versions: nothing was written; ``rejected_op`` keeps the attempt.

    The HTTP layer answers 409 with ``stale`` (each cell's current version).
    """

    def __init__(self, stale: Sequence[StaleCell], rejected_op: int) -> None:
        self.stale = list(stale)
        self.rejected_op = rejected_op
        shown = "; ".join(str(s) for s in self.stale[:10])
        more = f" and {len(self.stale) - 10} more" if len(self.stale) > 10 else ""
        super().__init__(f"conflict: {len(self.stale)} cell(s) changed since they were read: {shown}{more}; "
                         f"nothing was written (kept as rejected operation {rejected_op})")


class UndoRefused(StoreError):
    """Undo or redo of an operation some of whose cells changed since; names them."""

    def __init__(self, action: str, op_id: int, stale: Sequence[StaleCell]) -> None:
        self.action, self.op_id, self.stale = action, op_id, list(stale)
        by = sorted({s.op_id for s in self.stale if s.op_id is not None})
        shown = "; ".join(f"{s.split}/{s.video_id} track {s.track_id!r} frame {s.frame} (now v{s.version} by "
                          f"operation {s.op_id})" for s in self.stale[:10])
        more = f" and {len(self.stale) - 10} more" if len(self.stale) > 10 else ""
        super().__init__(f"cannot {action} operation {op_id}: {len(self.stale)} of its cell(s) were changed "
                         f"since by operation(s) {', '.join(map(str, by))}: {shown}{more}")


# -- records ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Cell:
    """One track in one frame: ``state`` (`STATES`), ``rle`` when present, provenance, version."""

    track_id: str
    frame: int
    state: str = NONE
    rle: dict | None = None
    provenance: str | None = None
    version: int = 0
    op_id: int | None = None


@dataclass(frozen=True)
class Write:
    """One cell of an edit: its new state (and RLE when present), and the version it was based on.

    ``provenance`` None takes the operation's.

    Example:
        >>> Write("cat", 12, base=3, rle=masks.encode(mask))          # present
        >>> Write("cat", 13, base=1, state="absent")
    """

    track_id: str
    frame: int
    base: int
    state: str = PRESENT
    rle: Mapping | None = None
    provenance: str | None = None

    def __post_init__(self) -> None:
        if self.state not in STATES:
            raise ValueError(f"state must be one of {STATES}, not {self.state!r}")
        if (self.state == PRESENT) != (self.rle is not None):
            raise ValueError(f"track {self.track_id!r} frame {self.frame}: an RLE is given exactly when "
                             f"the state is present (state {self.state!r})")


@dataclass(frozen=True)
class Applied:
    """A committed operation, the new version of each cell it wrote, and its video
    (``(split, video_id)``; an operation writes one video)."""

    op_id: int
    versions: dict[tuple[str, int], int]
    video: tuple[str, str] | None = None


@dataclass(frozen=True)
class Change:
    """One cell of an operation: what it was and what the operation made it (or proposed)."""

    split: str
    video_id: str
    base: int
    before: Cell
    after: Cell


@dataclass(frozen=True)
class Operation:
    """One user action in the history. ``status`` ``rejected``: a refused attempt whose
    ``changes`` hold the proposed masks (``before`` = the cell when it was refused)."""

    op_id: int
    user: str
    at: str
    kind: str
    label: str
    status: str
    target: int | None
    undone_by: int | None
    changes: tuple[Change, ...] = ()


@dataclass(frozen=True)
class VideoInfo:
    """A stored video's metadata, frames resolved against their source's current root."""

    pk: int
    split: str
    video_id: str
    dataset: str
    height: int
    width: int
    fps: float | None
    meta: dict
    status: str
    assignee: str | None
    annotated: bool
    frames: tuple[Frame, ...]
    tracks: tuple[Track, ...]
    expressions: tuple[Expression, ...]

    def video(self, mask_source: MaskSource | None = None, *, source_file: str | None = None) -> Video:
        """The canonical record (masks from ``mask_source``)."""
        return Video(dataset=self.dataset, split=self.split, video_id=self.video_id, frames=self.frames,
                     height=self.height, width=self.width, tracks=self.tracks, expressions=self.expressions,
                     fps=self.fps, meta=self.meta, mask_source=mask_source, source_file=source_file)


@dataclass(frozen=True)
class Flag:
    """Something a person should look at: a check's finding over ``frame_start..frame_end``
    (inclusive) of some tracks (or an expression). ``dismissed_by`` is set once someone has."""

    flag_id: str
    split: str
    video_id: str
    source: str
    check: str
    severity: str
    track_ids: tuple[str, ...]
    exp_id: str | None
    frame_start: int
    frame_end: int
    value: float | None
    threshold: float | None
    message: str
    dismissed_by: str | None = None


_UNWRITTEN = (NONE, None, None, 0, 0, None)   # a cell never written: not annotated, version 0


def check_provenance(value: str) -> str:
    """``value`` if it is one of `PROVENANCES` (``model:<name>``, name without commas)."""
    if value in ("imported", "human", "propagated"):
        return value
    if value.startswith("model:") and len(value) > 6 and "," not in value and value.strip() == value:
        return value
    raise StoreError(f"provenance {value!r} is not one of imported, human, propagated, model:<name>")


def pack_counts(counts: str) -> bytes:
    """COCO counts as stored: deflated, since 720p counts (~1.5 KB) shrink by half and rows of
    half a page pack SQLite pages far better (`bench/bench_store.py`: 2.1 KB -> 1.0 KB a mask)."""
    return zlib.compress(counts.encode("ascii"), 1)


def unpack_counts(data: bytes) -> str:
    return zlib.decompress(data).decode("ascii")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def connect(path: str | Path) -> sqlite3.Connection:
    """A connection with the project's pragmas: WAL, ``synchronous=FULL`` (durable on return),
    foreign keys, and a busy timeout so that writers queue instead of failing."""
    con = sqlite3.connect(os.fspath(path), isolation_level=None, timeout=30.0)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=FULL")
    con.execute("PRAGMA foreign_keys=ON")
    return con


def migrate(con: sqlite3.Connection, *, path: str | Path) -> int:
    """Bring the database to `SCHEMA_VERSION`, one migration per transaction; returns the old version.

    Raises:
        StoreError: the database is newer than this package, or is not a project database.
    """
    version = con.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise StoreError(f"{path}: project schema version {version} is newer than this longrvos-data reads "
                         f"({SCHEMA_VERSION}); upgrade longrvos-data")
    if version == 0 and con.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
        raise StoreError(f"{path}: an SQLite database that is not a longrvos project (user_version 0)")
    for step in range(version + 1, SCHEMA_VERSION + 1):
        con.execute("BEGIN IMMEDIATE")
        try:
            if con.execute("PRAGMA user_version").fetchone()[0] == step - 1:   # another process may be first
                for statement in MIGRATIONS[step].split(";"):
                    if statement.strip():
                        con.execute(statement)
                con.execute(f"PRAGMA user_version={step}")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        log.info("%s: migrated the project schema to version %d", path, step)
    return version


class Store:
    """A project database. Open with `Store.create` (new) or `Store.open` (existing, migrated).

    Example:
        >>> with Store.open("proj/project.sqlite") as store:
        ...     cell = store.cell("valid", "v1", "cat", 12)
        ...     store.write("valid", "v1", [Write("cat", 12, base=cell.version, rle=rle)], user="ana")
    """

    def __init__(self, con: sqlite3.Connection, path: Path) -> None:
        self.con = con
        self.path = path
        self._videos: dict[tuple[str, str], tuple[int, int, int, int]] = {}

    # -- lifecycle ------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path) -> "Store":
        """A new, empty project database at ``path`` (refused if the file exists)."""
        path = Path(path)
        if path.exists():
            raise StoreError(f"{path}: already exists")
        path.parent.mkdir(parents=True, exist_ok=True)
        con = connect(path)
        migrate(con, path=path)
        return cls(con, path)

    @classmethod
    def open(cls, path: str | Path) -> "Store":
        """An existing project database (a ``project.sqlite`` or the folder holding it), migrated."""
        path = Path(path)
        if path.is_dir():
            path = path / DB_NAME
        if not path.is_file():
            raise StoreError(f"{path}: no such project database")
        con = connect(path)
        try:
            migrate(con, path=path)
        except BaseException:
            con.close()
            raise
        return cls(con, path)

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``: the write lock is taken first, so the versions read
        inside are the ones the commit replaces. Inside another, it joins that one (a compound
        edit is one transaction; a refusal inside rolls all of it back)."""
        if self.con.in_transaction:
            yield self.con
            return
        self.con.execute("BEGIN IMMEDIATE")
        try:
            yield self.con
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        self.con.execute("COMMIT")

    @property
    def project_dir(self) -> Path:
        return self.path.parent

    # -- project-level values and frame sources --------------------------------------------
    def set_value(self, key: str, value: Any) -> None:
        self.con.execute("INSERT OR REPLACE INTO project VALUES (?, ?)", (key, _json(value)))

    def value(self, key: str, default: Any = None) -> Any:
        row = self.con.execute("SELECT value FROM project WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def add_source(self, root: str | Path) -> int:
        """The id of the frame root ``root`` (absolute, or relative to the project folder), added once."""
        root = os.fspath(root)
        row = self.con.execute("SELECT source_id FROM sources WHERE root = ?", (root,)).fetchone()
        if row:
            return row[0]
        return self.con.execute("INSERT INTO sources (root) VALUES (?)", (root,)).lastrowid

    def sources(self) -> dict[int, str]:
        return dict(self.con.execute("SELECT source_id, root FROM sources ORDER BY source_id"))

    def source_root(self, root: str) -> Path:
        """Where a recorded root is on disk: relative roots are inside the project folder."""
        return Path(root) if os.path.isabs(root) else self.project_dir / root

    def relink(self, old: str | Path, new: str | Path) -> int:
        """Point the frames recorded under root ``old`` to ``new``; returns the videos moved.

        Raises:
            StoreError: no source has root ``old`` (the message lists the recorded roots).
        """
        old_s, new_s = os.fspath(old), os.fspath(new)
        roots = self.sources()
        match = [sid for sid, r in roots.items() if r == old_s or os.path.normpath(r) == os.path.normpath(old_s)
                 or (os.path.isabs(r) and os.path.abspath(old_s) == r)]
        if not match:
            raise StoreError(f"{self.path}: no frames are recorded under {old_s}; recorded roots: "
                             f"{', '.join(roots.values()) or 'none'}")
        if os.path.isabs(roots[match[0]]):   # a root outside the project stays absolute
            new_s = os.path.abspath(new_s)
        with self.transaction() as con:
            if con.execute("SELECT 1 FROM sources WHERE root = ? AND source_id != ?", (new_s, match[0])).fetchone():
                raise StoreError(f"{self.path}: {new_s} is already a recorded root")
            con.execute("UPDATE sources SET root = ? WHERE source_id = ?", (new_s, match[0]))
            moved = con.execute("SELECT count(*) FROM videos WHERE source_id = ?", (match[0],)).fetchone()[0]
        return moved

    # -- videos ----------------------------------------------------------------------------
    def add_video(self, video: Video, *, source: int, frame_paths: Sequence[str], annotated: bool,
                  status: str = "todo", assignee: str | None = None) -> int:
        """Store ``video``'s metadata (not its masks); ``frame_paths`` relative to ``source``'s root."""
        if len(frame_paths) != video.num_frames:
            raise ValueError("one path per frame")
        if status not in STATUSES:
            raise StoreError(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
        con = self.con
        if con.execute("SELECT 1 FROM videos WHERE split = ? AND video_id = ?",
                       (video.split, video.video_id)).fetchone():
            raise StoreError(f"{self.path}: split {video.split!r} already has a video {video.video_id!r}")
        position = con.execute("SELECT coalesce(max(position) + 1, 0) FROM videos").fetchone()[0]
        pk = con.execute(
            "INSERT INTO videos (split, video_id, dataset, height, width, fps, meta, source_id, annotated, position, "
            "status, assignee) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (video.split, video.video_id, video.dataset, video.height, video.width, video.fps,
             _json(dict(video.meta)), source, int(annotated), position, status, assignee)).lastrowid
        con.executemany("INSERT INTO frames VALUES (?, ?, ?, ?)",
                        [(pk, i, f.name, p) for i, (f, p) in enumerate(zip(video.frames, frame_paths))])
        for track in video.tracks:
            self._insert_track(pk, track)
        for i, e in enumerate(video.expressions):
            con.execute("INSERT INTO expressions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (pk, e.exp_id, i, e.text, e.kind, _json(e.kind_raw), _json(list(e.track_ids)),
                         _json(dict(e.meta))))
        return pk

    def _insert_track(self, pk: int, track: Track) -> None:
        position = self.con.execute("SELECT coalesce(max(position) + 1, 0) FROM tracks WHERE video_pk = ?",
                                    (pk,)).fetchone()[0]
        self.con.execute("INSERT INTO tracks VALUES (?, ?, ?, ?, ?)",
                         (pk, track.track_id, position, track.category, _json(dict(track.meta))))

    def add_track(self, split: str, video_id: str, track: Track) -> None:
        """A new track (no cells annotated yet)."""
        pk = self._video(split, video_id)[0]
        if self.con.execute("SELECT 1 FROM tracks WHERE video_pk = ? AND track_id = ?",
                            (pk, track.track_id)).fetchone():
            raise StoreError(f"{split}/{video_id}: track {track.track_id!r} exists")
        self._insert_track(pk, track)

    def set_expression_tracks(self, split: str, video_id: str, exp_id: str, track_ids: Sequence[str]) -> None:
        """Make expression ``exp_id`` name ``track_ids`` (known tracks)."""
        self.update_expression(split, video_id, exp_id, track_ids=track_ids)

    def add_expression(self, split: str, video_id: str, expression: Expression) -> None:
        """A new expression (its id unused in the video, its tracks known)."""
        pk = self._video(split, video_id)[0]
        if self.con.execute("SELECT 1 FROM expressions WHERE video_pk = ? AND exp_id = ?",
                            (pk, expression.exp_id)).fetchone():
            raise StoreError(f"{split}/{video_id}: expression {expression.exp_id!r} exists")
        self._check_tracks(pk, split, video_id, expression.exp_id, expression.track_ids)
        position = self.con.execute("SELECT coalesce(max(position) + 1, 0) FROM expressions WHERE video_pk = ?",
                                    (pk,)).fetchone()[0]
        e = expression
        self.con.execute("INSERT INTO expressions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         (pk, e.exp_id, position, e.text, e.kind, _json(e.kind_raw), _json(list(e.track_ids)),
                          _json(dict(e.meta))))

    def update_expression(self, split: str, video_id: str, exp_id: str, *, text: str | None = None,
                          kind: str | None = None, track_ids: Sequence[str] | None = None) -> None:
        """Change an expression's text, kind or tracks (None leaves a field as it is)."""
        pk = self._video(split, video_id)[0]
        if kind is not None and kind not in KINDS:
            raise StoreError(f"{split}/{video_id}: expression {exp_id!r}: kind {kind!r} is not one of {KINDS}")
        if track_ids is not None:
            self._check_tracks(pk, split, video_id, exp_id, track_ids)
        fields = {"text": text, "kind": kind, "track_ids": None if track_ids is None else _json(list(track_ids))}
        sets = [(k, v) for k, v in fields.items() if v is not None]
        if kind is not None:
            sets.append(("kind_raw", _json(kind)))
        cur = self.con.execute(f"UPDATE expressions SET {', '.join(f'{k} = ?' for k, _ in sets) or 'exp_id = exp_id'} "
                               "WHERE video_pk = ? AND exp_id = ?", [v for _, v in sets] + [pk, exp_id])
        if not cur.rowcount:
            raise NotFound(f"{split}/{video_id}: no expression {exp_id!r}")

    def delete_expression(self, split: str, video_id: str, exp_id: str) -> None:
        pk = self._video(split, video_id)[0]
        if not self.con.execute("DELETE FROM expressions WHERE video_pk = ? AND exp_id = ?", (pk, exp_id)).rowcount:
            raise NotFound(f"{split}/{video_id}: no expression {exp_id!r}")

    def _check_tracks(self, pk: int, split: str, video_id: str, exp_id: str, track_ids: Sequence[str]) -> None:
        known = {r[0] for r in self.con.execute("SELECT track_id FROM tracks WHERE video_pk = ?", (pk,))}
        unknown = [t for t in track_ids if t not in known]
        if unknown:
            raise StoreError(f"{split}/{video_id}: expression {exp_id!r}: unknown track(s) {unknown}")

    def set_status(self, split: str, video_id: str, status: str) -> None:
        """Set a video's status (`STATUSES`)."""
        if status not in STATUSES:
            raise StoreError(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
        self.con.execute("UPDATE videos SET status = ? WHERE video_pk = ?", (status, self._video(split, video_id)[0]))

    def assign(self, split: str, video_id: str, assignee: str | None) -> None:
        """Set (or clear, with None) who annotates a video."""
        self.con.execute("UPDATE videos SET assignee = ? WHERE video_pk = ?",
                         (assignee, self._video(split, video_id)[0]))

    def splits(self) -> list[str]:
        return [r[0] for r in self.con.execute("SELECT split FROM videos GROUP BY split ORDER BY min(position)")]

    def video_ids(self, split: str, *, status: Iterable[str] | None = None) -> list[str]:
        """Video ids of ``split`` in import order, only those with a status in ``status`` if given."""
        sql, args = "SELECT video_id FROM videos WHERE split = ?", [split]
        if status is not None:
            wanted = list(status)
            bad = [s for s in wanted if s not in STATUSES]
            if bad:
                raise StoreError(f"status must be among {', '.join(STATUSES)}, not {', '.join(bad)}")
            sql += f" AND status IN ({','.join('?' * len(wanted))})"
            args += wanted
        return [r[0] for r in self.con.execute(sql + " ORDER BY position", args)]

    def _video(self, split: str, video_id: str) -> tuple[int, int, int, int]:
        """``(pk, height, width, frames)`` of a video, cached (these never change)."""
        key = (split, video_id)
        if key not in self._videos:
            row = self.con.execute("SELECT video_pk, height, width, (SELECT count(*) FROM frames f WHERE "
                                   "f.video_pk = v.video_pk) FROM videos v WHERE split = ? AND video_id = ?",
                                   key).fetchone()
            if row is None:
                raise NotFound(f"{self.path}: split {split!r} has no video {video_id!r}")
            self._videos[key] = row
        return self._videos[key]

    def video_pk(self, split: str, video_id: str) -> int:
        """The video's primary key (how the server names videos in its URLs)."""
        return self._video(split, video_id)[0]

    def video_size(self, split: str, video_id: str) -> tuple[int, int, int]:
        """``(height, width, frames)`` without reading the frame list (cached)."""
        return self._video(split, video_id)[1:]

    def tracks(self, split: str, video_id: str) -> tuple[Track, ...]:
        """The video's tracks in order, without reading its frames."""
        pk = self._video(split, video_id)[0]
        return tuple(Track(tid, cat, json.loads(m)) for tid, cat, m in self.con.execute(
            "SELECT track_id, category, meta FROM tracks WHERE video_pk = ? ORDER BY position", (pk,)))

    def video_key(self, pk: int) -> tuple[str, str]:
        """``(split, video_id)`` of the video with primary key ``pk`` (how the server names videos)."""
        row = self.con.execute("SELECT split, video_id FROM videos WHERE video_pk = ?", (pk,)).fetchone()
        if row is None:
            raise NotFound(f"{self.path}: no video {pk}")
        return row

    def cell_states(self, split: str, video_id: str) -> Iterator[tuple[str, int, str, str | None, int]]:
        """``(track, frame, state, provenance, version)`` of every written cell, by track then frame,
        without reading a mask (timelines, reviews)."""
        pk = self._video(split, video_id)[0]
        yield from self.con.execute("SELECT c.track_id, c.frame, c.state, c.provenance, c.version FROM cells c "
                                    "JOIN tracks t USING (video_pk, track_id) WHERE c.video_pk = ? "
                                    "ORDER BY t.position, c.frame", (pk,))

    def versions(self, split: str, video_id: str, keys: Iterable[tuple[str, int]]) -> dict[tuple[str, int], tuple]:
        """``{(track, frame): (state, provenance, version)}`` of the written cells among ``keys``."""
        pk = self._video(split, video_id)[0]
        return {k: (v[0], v[2], v[3]) for k, v in self._current(pk, keys).items()}

    def video_info(self, split: str, video_id: str) -> VideoInfo:
        """Everything the store holds about one video except its masks."""
        pk = self._video(split, video_id)[0]
        con = self.con
        (dataset, h, w, fps, meta, status, assignee, annotated, root) = con.execute(
            "SELECT dataset, height, width, fps, meta, status, assignee, annotated, s.root FROM videos v "
            "JOIN sources s USING (source_id) WHERE video_pk = ?", (pk,)).fetchone()
        base = self.source_root(root)
        frames = tuple(Frame(name, base / rel) for name, rel in
                       con.execute("SELECT name, path FROM frames WHERE video_pk = ? ORDER BY idx", (pk,)))
        tracks = self.tracks(split, video_id)
        exps = tuple(Expression(eid, text, tuple(json.loads(tids)), kind, json.loads(raw), json.loads(m))
                     for eid, text, kind, raw, tids, m in con.execute(
                         "SELECT exp_id, text, kind, kind_raw, track_ids, meta FROM expressions WHERE video_pk = ? "
                         "ORDER BY position", (pk,)))
        if not annotated:
            annotated = con.execute("SELECT 1 FROM cells WHERE video_pk = ? AND state != 'none' LIMIT 1",
                                    (pk,)).fetchone() is not None
        return VideoInfo(pk, split, video_id, dataset, h, w, fps, json.loads(meta), status, assignee, bool(annotated),
                         frames, tracks, exps)

    # -- cells -----------------------------------------------------------------------------
    def _rle(self, mask_id: int | None, h: int, w: int) -> dict | None:
        if mask_id is None:
            return None
        counts = self.con.execute("SELECT counts FROM masks WHERE mask_id = ?", (mask_id,)).fetchone()[0]
        return {"size": [h, w], "counts": unpack_counts(counts)}

    def cell(self, split: str, video_id: str, track_id: str, frame: int) -> Cell:
        """The current state of one cell (``none``, version 0, when never written)."""
        pk, h, w, _ = self._video(split, video_id)
        row = self.con.execute("SELECT state, mask_id, provenance, version, op_id FROM cells WHERE video_pk = ? "
                               "AND frame = ? AND track_id = ?", (pk, frame, track_id)).fetchone()
        if row is None:
            return Cell(track_id, frame)
        return Cell(track_id, frame, row[0], self._rle(row[1], h, w), row[2], row[3], row[4])

    def cells(self, split: str, video_id: str, *, frame: int | None = None, frames: range | None = None,
              track_ids: Sequence[str] | None = None) -> list[Cell]:
        """Every written cell of a video, or of one ``frame``, a range of ``frames``, some tracks;
        in frame then track order."""
        pk, h, w, _ = self._video(split, video_id)
        sql = ("SELECT c.track_id, c.frame, c.state, m.counts, c.provenance, c.version, c.op_id FROM cells c "
               "JOIN tracks t USING (video_pk, track_id) LEFT JOIN masks m USING (mask_id) WHERE c.video_pk = ?")
        args: list = [pk]
        if frame is not None:
            sql += " AND c.frame = ?"
            args.append(frame)
        if frames is not None:
            sql += " AND c.frame >= ? AND c.frame < ?"
            args += [frames.start, frames.stop]
        if track_ids is not None:
            sql += f" AND c.track_id IN ({','.join('?' * len(track_ids))})"
            args += list(track_ids)
        return [Cell(tid, f, st, None if counts is None else {"size": [h, w], "counts": unpack_counts(counts)}, prov,
                     ver, op)
                for tid, f, st, counts, prov, ver, op in
                self.con.execute(sql + " ORDER BY c.frame, t.position", args)]

    def frame_rles(self, video_pk: int, frame: int, *, height: int, width: int,
                   provenance: Sequence[str] | None = None) -> dict[str, dict]:
        """``{track_id: RLE}`` of the present cells of one frame, in track order (the loader's read)."""
        sql = ("SELECT c.track_id, m.counts FROM cells c JOIN masks m USING (mask_id) JOIN tracks t "
               "USING (video_pk, track_id) WHERE c.video_pk = ? AND c.frame = ? AND c.state = 'present'")
        args: list = [video_pk, frame]
        if provenance is not None:
            sql += f" AND c.provenance IN ({','.join('?' * len(provenance))})"
            args += list(provenance)
        return {tid: {"size": [height, width], "counts": unpack_counts(counts)}
                for tid, counts in self.con.execute(sql + " ORDER BY t.position", args)}

    def _current(self, pk: int, keys: Iterable[tuple[str, int]]) -> dict[tuple[str, int], tuple]:
        """``{(track, frame): (state, mask_id, provenance, version, origin, op_id)}`` of the written
        cells among ``keys``."""
        by_track: dict[str, list[int]] = {}
        for tid, f in keys:
            by_track.setdefault(tid, []).append(f)
        out: dict[tuple[str, int], tuple] = {}
        for tid, frames in by_track.items():
            for start in range(0, len(frames), 500):
                chunk = frames[start:start + 500]
                for f, *rest in self.con.execute(
                        "SELECT frame, state, mask_id, provenance, version, origin, op_id FROM cells WHERE "
                        f"video_pk = ? AND track_id = ? AND frame IN ({','.join('?' * len(chunk))})",
                        [pk, tid, *chunk]):
                    out[(tid, f)] = tuple(rest)
        return out

    def _mask_id(self, rle: Mapping | None, h: int, w: int, *, where: str) -> int | None:
        if rle is None:
            return None
        if not _masks.is_rle(rle) or [int(v) for v in rle["size"]] != [h, w]:
            size = rle.get("size") if isinstance(rle, Mapping) else None
            raise StoreError(f"{where}: expected an RLE of size [{h}, {w}], got size {size}")
        counts = rle["counts"]
        if not isinstance(counts, str):
            counts = (counts.decode("ascii") if isinstance(counts, bytes)
                      else _masks.encode(_masks.decode(rle))["counts"])   # uncompressed (list) counts
        return self.con.execute("INSERT INTO masks (counts) VALUES (?)", (pack_counts(counts),)).lastrowid

    def _new_op(self, *, user: str, kind: str, label: str, status: str = "applied", target: int | None = None) -> int:
        if not user:
            raise StoreError("every operation names its user")
        return self.con.execute("INSERT INTO operations (user, at, kind, label, status, target) "
                                "VALUES (?, ?, ?, ?, ?, ?)", (user, _now(), kind, label, status, target)).lastrowid

    def _commit_cells(self, op_id: int, pk: int, rows: Sequence[tuple]) -> dict[tuple[str, int], int]:
        """Write cells and their change rows. ``rows``: ``(track, frame, base, before, after)`` with
        before/after ``(state, mask_id, provenance, version, origin)``. Returns the new versions."""
        self.con.executemany(
            "INSERT INTO cells VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (video_pk, frame, track_id) "
            "DO UPDATE SET state = excluded.state, mask_id = excluded.mask_id, provenance = excluded.provenance, "
            "version = excluded.version, origin = excluded.origin, op_id = excluded.op_id",
            [(pk, f, tid, *after, op_id) for tid, f, _, _, after in rows])
        self.con.executemany("INSERT INTO changes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                             [(op_id, pk, f, tid, base, *before, *after) for tid, f, base, before, after in rows])
        return {(tid, f): after[3] for tid, f, _, _, after in rows}

    def _check_writes(self, split: str, video_id: str, writes: Sequence[Write]) -> None:
        pk, _, _, n = self._video(split, video_id)
        known = {r[0] for r in self.con.execute("SELECT track_id FROM tracks WHERE video_pk = ?", (pk,))}
        seen: set[tuple[str, int]] = set()
        for w in writes:
            where = f"{split}/{video_id} track {w.track_id!r} frame {w.frame}"
            if w.track_id not in known:
                raise StoreError(f"{where}: the video has no such track")
            if not 0 <= w.frame < n:
                raise StoreError(f"{where}: the video has {n} frames")
            if (w.track_id, w.frame) in seen:
                raise StoreError(f"{where}: written twice in one operation")
            if w.provenance is not None:
                check_provenance(w.provenance)
            seen.add((w.track_id, w.frame))

    def write(self, split: str, video_id: str, writes: Sequence[Write], *, user: str,
              provenance: str = "human", label: str = "edit") -> Applied:
        """Apply one user action (a brush stroke, a whole propagation) atomically.

        Args:
            split, video_id: the video.
            writes: one `Write` per cell, each naming the version it was based on.
            user: who (``--user`` or the token's name).
            provenance: of every cell whose `Write` names none (`PROVENANCES`).
            label: what the action was (``"brush"``, ``"propagate"``), kept in the history.

        Raises:
            Conflict: some base is stale; nothing was written and the attempt is kept as
                rejected operation ``err.rejected_op`` (with its proposed masks).
            StoreError: unknown track, frame out of range, a cell twice, a wrong-sized RLE.
        """
        check_provenance(provenance)
        if not writes:
            raise StoreError(f"{split}/{video_id}: an operation writes at least one cell")
        self._check_writes(split, video_id, writes)
        pk, h, w_, _ = self._video(split, video_id)
        stale: list[StaleCell] = []
        with self.transaction():
            current = self._current(pk, [(w.track_id, w.frame) for w in writes])
            rows = []
            for w in writes:
                state, mask_id, prov, version, origin, last_op = current.get((w.track_id, w.frame), _UNWRITTEN)
                if version != w.base:
                    stale.append(StaleCell(split, video_id, w.track_id, w.frame, w.base, version, last_op))
                where = f"{split}/{video_id} track {w.track_id!r} frame {w.frame}"
                after_mask = self._mask_id(w.rle, h, w_, where=where)
                after = (w.state, after_mask, w.provenance or provenance, version + 1, version + 1)
                rows.append((w.track_id, w.frame, w.base, (state, mask_id, prov, version, origin), after))
            op_id = self._new_op(user=user, kind="edit", label=label, status="rejected" if stale else "applied")
            if stale:   # keep the attempt (proposed masks, the cells as they were) and change nothing
                self.con.executemany("INSERT INTO changes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                     [(op_id, pk, f, tid, base, *before, *after)
                                      for tid, f, base, before, after in rows])
                versions = {}
            else:
                versions = self._commit_cells(op_id, pk, rows)
        if stale:
            raise Conflict(stale, op_id)
        return Applied(op_id, versions, (split, video_id))

    def import_cells(self, op_id: int, split: str, video_id: str, cells: Mapping[tuple[str, int], Mapping | None], *,
                     provenance: str, only_unannotated: bool = False) -> int:
        """Write ``{(track, frame): RLE | None (absent)}`` as part of import operation ``op_id``,
        inside the caller's transaction. With ``only_unannotated`` cells already annotated
        are left as they are. Returns how many cells were left."""
        check_provenance(provenance)
        pk, h, w, _ = self._video(split, video_id)
        current = self._current(pk, cells) if cells else {}
        rows, kept = [], 0
        for (tid, f), rle in cells.items():
            state, mask_id, prov, version, origin, _ = current.get((tid, f), _UNWRITTEN)
            if only_unannotated and state != NONE:
                kept += 1
                continue
            after = (PRESENT if rle is not None else ABSENT,
                     self._mask_id(rle, h, w, where=f"{split}/{video_id} track {tid!r} frame {f}"), provenance,
                     version + 1, version + 1)
            rows.append((tid, f, version, (state, mask_id, prov, version, origin), after))
        self._commit_cells(op_id, pk, rows)
        return kept

    def begin_import(self, *, user: str, label: str) -> int:
        """A new ``import`` operation (not undoable) that `import_cells` calls add to."""
        return self._new_op(user=user, kind="import", label=label)

    # -- flags (what needs a human) -----------------------------------------------------------
    def add_flag(self, split: str, video_id: str, *, flag_id: str, source: str, check: str, severity: str,
                 track_ids: Sequence[str], frame_start: int, frame_end: int, message: str,
                 exp_id: str | None = None, value: float | None = None, threshold: float | None = None,
                 user: str | None = None) -> None:
        """Record (or replace) flag ``flag_id`` on a video; ``frame_end`` is inclusive."""
        pk, _, _, n = self._video(split, video_id)
        if severity not in SEVERITIES:
            raise StoreError(f"flag {flag_id!r}: severity must be one of {', '.join(SEVERITIES)}, not {severity!r}")
        if not 0 <= frame_start <= frame_end < n:
            raise StoreError(f"{split}/{video_id}: flag {flag_id!r} spans frames {frame_start}..{frame_end}; "
                             f"the video has {n} frames")
        self.con.execute("INSERT OR REPLACE INTO flags VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         (flag_id, pk, source, check, severity, _json(list(track_ids)), exp_id, frame_start,
                          frame_end, value, threshold, message, user, _now()))

    def flags(self, split: str | None = None, video_id: str | None = None, *, source: str | None = None,
              dismissed: bool = False) -> list[Flag]:
        """The flags of one video (or all), by video then first frame; dismissed ones only when asked."""
        sql = ("SELECT f.flag_id, v.split, v.video_id, f.source, f.check_name, f.severity, f.track_ids, f.exp_id, "
               "f.frame_start, f.frame_end, f.value, f.threshold, f.message, d.user FROM flags f "
               "JOIN videos v USING (video_pk) LEFT JOIN dismissals d USING (flag_id) WHERE 1")
        args: list = []
        if video_id is not None:
            sql += " AND f.video_pk = ?"
            args.append(self._video(split, video_id)[0])
        if source is not None:
            sql += " AND f.source = ?"
            args.append(source)
        if not dismissed:
            sql += " AND d.flag_id IS NULL"
        rows = self.con.execute(sql + " ORDER BY v.position, f.frame_start, f.flag_id", args)
        return [Flag(fid, sp, vid, src, chk, sev, tuple(json.loads(t)), exp, fs, fe, val, thr, msg, by)
                for fid, sp, vid, src, chk, sev, t, exp, fs, fe, val, thr, msg, by in rows]

    def clear_flags(self, source: str) -> int:
        """Remove every flag ``source`` recorded (an audit re-run replaces its own); dismissals stay."""
        return self.con.execute("DELETE FROM flags WHERE source = ?", (source,)).rowcount

    def dismiss(self, flag_id: str, *, user: str) -> None:
        """Mark a flag as looked at; the dismissal outlives the flag, so a re-run does not raise it again."""
        if not self.con.execute("SELECT 1 FROM flags WHERE flag_id = ?", (flag_id,)).fetchone():
            raise NotFound(f"{self.path}: no flag {flag_id!r}")
        self.con.execute("INSERT OR REPLACE INTO dismissals VALUES (?, ?, ?)", (flag_id, user, _now()))

    # -- history, undo, redo ---------------------------------------------------------------
    def _changes(self, op_id: int) -> list[tuple]:
        return self.con.execute(
            "SELECT v.split, v.video_id, v.height, v.width, c.video_pk, c.track_id, c.frame, c.base, "
            "c.before_state, c.before_mask, c.before_prov, c.before_version, c.before_origin, "
            "c.after_state, c.after_mask, c.after_prov, c.after_version, c.after_origin "
            "FROM changes c JOIN videos v USING (video_pk) WHERE c.op_id = ? ORDER BY c.video_pk, c.frame, c.track_id",
            (op_id,)).fetchall()

    def operation(self, op_id: int) -> Operation:
        """One operation of the history with its changes (masks included)."""
        row = self.con.execute("SELECT op_id, user, at, kind, label, status, target, undone_by FROM operations "
                               "WHERE op_id = ?", (op_id,)).fetchone()
        if row is None:
            raise NotFound(f"{self.path}: no operation {op_id}")
        changes = []
        for split, vid, h, w, _, tid, f, base, bs, bm, bp, bv, _, as_, am, ap, av, _ in self._changes(op_id):
            changes.append(Change(split, vid, base, Cell(tid, f, bs, self._rle(bm, h, w), bp, bv),
                                  Cell(tid, f, as_, self._rle(am, h, w), ap, av, op_id)))
        return Operation(*row, changes=tuple(changes))

    def history(self, *, user: str | None = None, limit: int | None = None) -> list[Operation]:
        """Operations, newest first (without their changes; see `operation`)."""
        sql = "SELECT op_id, user, at, kind, label, status, target, undone_by FROM operations"
        args: list = []
        if user is not None:
            sql += " WHERE user = ?"
            args.append(user)
        sql += " ORDER BY op_id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return [Operation(*r) for r in self.con.execute(sql, args)]

    def _revert(self, action: str, user: str, target: int) -> Applied:
        """Write ``target``'s before values (undo) or after values (redo), if each of its cells still
        holds the content the other direction left (``origin``); else refuse, naming the cells."""
        stale, rows_by_video, video = [], {}, None
        for split, vid, h, w, pk, tid, f, _, bs, bm, bp, bv, bo, as_, am, ap, av, ao in self._changes(target):
            video = (split, vid)
            state, mask_id, prov, version, origin, last_op = self._current(pk, [(tid, f)]).get((tid, f), _UNWRITTEN)
            want = ao if action == "undo" else bo
            if origin != want:
                stale.append(StaleCell(split, vid, tid, f, want, version, last_op))
                continue
            after = (bs, bm, bp, version + 1, bo) if action == "undo" else (as_, am, ap, version + 1, ao)
            rows_by_video.setdefault(pk, []).append((tid, f, version, (state, mask_id, prov, version, origin), after))
        if stale:
            raise UndoRefused(action, target, stale)
        op_id = self._new_op(user=user, kind=action, label=f"{action} {target}", target=target)
        versions: dict = {}
        for pk, rows in rows_by_video.items():
            versions.update(self._commit_cells(op_id, pk, rows))
        self.con.execute("UPDATE operations SET undone_by = ? WHERE op_id = ?",
                         (op_id if action == "undo" else None, target))
        return Applied(op_id, versions, video)

    def undo(self, *, user: str) -> Applied:
        """Revert ``user``'s most recent edit not yet undone, as a new ``undo`` operation.

        Raises:
            StoreError: nothing to undo.
            UndoRefused: a cell of that edit changed since (names the cells and the operations).
        """
        with self.transaction() as con:
            row = con.execute("SELECT op_id FROM operations WHERE user = ? AND kind = 'edit' AND status = 'applied' "
                              "AND undone_by IS NULL ORDER BY op_id DESC LIMIT 1", (user,)).fetchone()
            if row is None:
                raise StoreError(f"user {user!r} has nothing to undo")
            return self._revert("undo", user, row[0])

    def redo(self, *, user: str) -> Applied:
        """Re-apply the edit ``user`` undid most recently, unless they made a new edit since.

        Raises:
            StoreError: nothing to redo.
            UndoRefused: a cell changed since the undo.
        """
        with self.transaction() as con:
            last_edit = con.execute("SELECT coalesce(max(op_id), 0) FROM operations WHERE user = ? AND kind = 'edit' "
                                    "AND status = 'applied'", (user,)).fetchone()[0]
            row = con.execute("SELECT o.op_id FROM operations o JOIN operations u ON u.op_id = o.undone_by "
                              "WHERE o.user = ? AND o.kind = 'edit' AND u.op_id > ? ORDER BY u.op_id DESC LIMIT 1",
                              (user, last_edit)).fetchone()
            if row is None:
                raise StoreError(f"user {user!r} has nothing to redo")
            return self._revert("redo", user, row[0])

    def reapply(self, op_id: int, *, user: str) -> Applied:
        """Submit a rejected attempt's proposed masks again, based on the versions the cells had
        when it was refused (so it succeeds only if nothing changed since the conflict was shown).

        Raises:
            StoreError: ``op_id`` is not a rejected attempt.
            Conflict: the cells moved again.
        """
        op = self.operation(op_id)
        if op.status != "rejected":
            raise StoreError(f"operation {op_id} was not rejected; only rejected attempts are re-applied")
        by_video: dict[tuple[str, str], list[Write]] = {}
        for c in op.changes:
            by_video.setdefault((c.split, c.video_id), []).append(
                Write(c.after.track_id, c.after.frame, base=c.before.version, state=c.after.state, rle=c.after.rle,
                      provenance=c.after.provenance))
        (split, vid), writes = next(iter(by_video.items()))
        return self.write(split, vid, writes, user=user, label=f"reapply {op_id}")

    def integrity_check(self) -> str:
        return self.con.execute("PRAGMA integrity_check").fetchone()[0]


__all__ = ["ABSENT", "Applied", "Cell", "Change", "Conflict", "DB_NAME", "Flag", "MIGRATIONS", "NONE", "NotFound",
           "Operation",
           "PRESENT", "PROVENANCES", "SCHEMA_VERSION", "SEVERITIES", "SEVERITY_RANK", "STATES", "STATUSES", "StaleCell", "Store", "StoreError", "UndoRefused",
           "VideoInfo", "Write", "check_provenance", "connect", "migrate"]
