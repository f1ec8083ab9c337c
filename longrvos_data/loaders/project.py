"""Annotation projects (``project.sqlite``) read as a dataset like any other.

Layout (see `longrvos_data.annotation.project`)::

    PROJECT/
      project.sqlite
      frames/<split>/<video_id>/*.jpg      frames the project holds itself

Canonical mapping:
- splits, videos, frames, tracks and expressions: as stored (import order);
- masks: the current present cells, by default of every provenance; ``provenance=``
  keeps only the cells of the listed provenances (the others read as absent);
  ``status=`` keeps only the videos of the listed statuses;
- a cell not annotated and an absent cell both read as absent (the canonical schema has no
  "not annotated"); a video with no annotated cell, imported without masks, has none.
"""
from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Sequence

from .. import masks as _masks
from ..annotation.store import DB_NAME, SCHEMA_VERSION, STATUSES, Store, check_provenance
from ..errors import DataError, OnError, ProblemLog
from ..schema import MaskSource, Video
from .base import Dataset, Detection, SplitReader

NAME = "project"


class ProjectPaths:
    """File names of a project."""

    DB = DB_NAME
    FRAMES = "frames"


def _db(path: Path) -> Path:
    return path / ProjectPaths.DB if path.is_dir() else path


def detect(path: str | Path) -> Detection:
    """A project when ``project.sqlite`` (or the given file) is an SQLite database whose
    ``user_version`` and ``videos`` table say so.

    Example:
        >>> detect("proj").confidence
        1.0
    """
    db = _db(Path(path))
    if not db.is_file():
        return Detection(NAME, 0.0, (f"no {ProjectPaths.DB}",))
    try:
        con = sqlite3.connect(f"file:{os.path.abspath(db)}?mode=ro", uri=True)
        try:
            version = con.execute("PRAGMA user_version").fetchone()[0]
            has_videos = con.execute("SELECT 1 FROM sqlite_master WHERE name = 'videos'").fetchone() is not None
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        return Detection(NAME, 0.0, (f"{db.name} is not an SQLite database ({exc})",))
    if version < 1 or not has_videos:
        return Detection(NAME, 0.0, (f"{db.name} is SQLite but not a project (user_version {version})",))
    note = f" (newer than {SCHEMA_VERSION}, which this package reads)" if version > SCHEMA_VERSION else ""
    return Detection(NAME, 1.0, (f"{db.name}: project schema version {version}{note}",))


class ProjectMasks(MaskSource):
    """One video's current masks, read from SQLite a frame at a time."""

    def __init__(self, store: Store, video_pk: int, *, height: int, width: int,
                 provenance: Sequence[str] | None) -> None:
        self.store, self.pk, self.height, self.width = store, video_pk, height, width
        self.provenance = provenance

    def rles(self, index: int) -> dict[str, _masks.RLE]:
        return self.store.frame_rles(self.pk, index, height=self.height, width=self.width,
                                     provenance=self.provenance)

    def areas(self, index: int) -> dict[str, int]:
        rles = self.rles(index)
        return dict(zip(rles, (int(a) for a in _masks.area(list(rles.values())))))


class ProjectSplit(SplitReader):
    """One split of a project; ``provenance`` and ``status`` filter masks and videos."""

    format = NAME

    def __init__(self, store: Store, split: str, *, problems: ProblemLog, provenance: Sequence[str] | None,
                 status: Sequence[str] | None) -> None:
        super().__init__(store.project_dir, split, problems=problems)
        self.store, self.provenance, self.status = store, provenance, status

    def video_ids(self) -> list[str]:
        return self.store.video_ids(self.split, status=self.status)

    def _load(self, video_id: str) -> Video:
        info = self.store.video_info(self.split, video_id)
        source = None
        if info.annotated:
            source = ProjectMasks(self.store, info.pk, height=info.height, width=info.width,
                                  provenance=self.provenance)
        return info.video(source, source_file=str(self.store.path))

    def model_masks(self) -> dict[str, int]:
        """``{video_id: present cells with model: provenance}`` among the tracks the expressions
        name, for the read videos and provenances (what ``eval --gt PROJECT`` warns about)."""
        out = {}
        for vid in self.video_ids():
            info = self.store.video_info(self.split, vid)
            named = sorted({t for e in info.expressions for t in e.track_ids})
            if not named:
                continue
            sql = (f"SELECT count(*) FROM cells WHERE video_pk = ? AND state = 'present' AND provenance LIKE 'model:%' "
                   f"AND track_id IN ({','.join('?' * len(named))})")
            args = [info.pk, *named]
            if self.provenance is not None:
                sql += f" AND provenance IN ({','.join('?' * len(self.provenance))})"
                args += list(self.provenance)
            n = self.store.con.execute(sql, args).fetchone()[0]
            if n:
                out[vid] = n
        return out


def _values(value: str | Sequence[str] | None) -> list[str] | None:
    """``"human,imported"`` or ``["human", "imported"]`` as a list (None stays None)."""
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    return [v.strip() for v in items if v.strip()]


def load(path: str | Path, *, split: str | None = None, on_error: OnError = "raise",
         provenance: str | Sequence[str] | None = None, status: str | Sequence[str] | None = None) -> Dataset:
    """Open a project lazily: its current masks, optionally filtered.

    Args:
        path: the project folder or its ``project.sqlite``.
        split: read only this split.
        on_error: ``"raise"`` or ``"skip"``.
        provenance: keep only masks of these provenances (``"human,imported"`` or a list of
            ``imported``, ``human``, ``propagated``, ``model:<name>``); default all.
        status: keep only videos of these statuses (``"done,reviewed"``; `STATUSES`); default all.

    Raises:
        DataError: no project at ``path``, an unknown split, status or provenance.

    Example:
        >>> ds = load("proj", provenance="human,imported", status="done,reviewed")
        >>> video = next(iter(ds["valid"]))
    """
    path = Path(path)
    db = _db(path)
    if not db.is_file():
        raise DataError(f"no {ProjectPaths.DB}", file=path)
    provenances = _values(provenance)
    statuses = _values(status)
    try:
        for p in provenances or ():
            check_provenance(p)
    except Exception as err:  # noqa: BLE001 - StoreError, reported as bad input
        raise DataError(str(err), file=db, field="provenance") from None
    bad = [s for s in statuses or () if s not in STATUSES]
    if bad:
        raise DataError(f"unknown status(es) {', '.join(bad)}; choose among {', '.join(STATUSES)}", file=db,
                        field="status")
    store = Store.open(db)
    problems = ProblemLog(on_error)
    names = store.splits()
    if split is not None:
        if split not in names:
            store.close()
            raise DataError(f"no split {split!r}; found {names}", file=db, field="split")
        names = [split]
    readers: dict[str, SplitReader] = {n: ProjectSplit(store, n, problems=problems, provenance=provenances,
                                                       status=statuses) for n in names}
    return Dataset(NAME, store.project_dir, readers, problems=problems)  # the schema version is no dataset version


__all__ = ["NAME", "ProjectMasks", "ProjectPaths", "ProjectSplit", "detect", "load"]
