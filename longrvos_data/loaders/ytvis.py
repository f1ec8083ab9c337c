"""YouTube-VIS / COCO-video JSON: one JSON per split, RLE per frame per instance.

The YouTube-VIS 2021 layout (what `longrvos_data.converters.ytvis` writes)::

    ytvis/
      <split>/instances.json              {"videos": [...], "annotations": [...], "categories": [...]}
      <split>/JPEGImages/<vid>/<frame>.jpg
      <split>/longrvos_sidecar.json       optional: what the format cannot hold (longrvos_data/sidecar.py)

The 2019 layout, ``annotations/<split>.json`` beside ``<split>/JPEGImages/``, reads too.
A path that is one split folder (holding ``instances.json``) loads that split.

JSON (the official keys; ``longrvos`` objects are this package's extension, ignored by
other tools)::

    videos:      [{"id": int, "width": W, "height": H, "length": T,
                   "file_names": ["<vid>/<frame>.jpg", ...],
                   "longrvos": {"fps": float, "meta": {...}}}]                optional extension
    annotations: [{"id": int, "video_id": int, "category_id": int, "iscrowd": 0,
                   "segmentations": [RLE | null per frame], "areas": [float | null],
                   "bboxes": [[x, y, w, h] | null],
                   "longrvos": {"track_id": str, "category": str | null, "meta": {...}}}]
    categories:  [{"id": int, "name": str, "supercategory": str}]

Canonical mapping:
- video id = the folder of ``file_names[0]`` (``str(id)`` when the names have no folder);
  frame names = the file stems; size from ``height``/``width``.
- one track per annotation, in file order; its id is ``longrvos.track_id`` when present,
  else ``str(annotation id)``; category from ``longrvos.category`` when present, else the
  category's name.
- a null segmentation is an absent mask; an RLE of area 0 is a present, empty mask.
  Polygon segmentations are refused (`DataError`).
- no ``annotations`` key (or null): the split has no masks (YouTube-VIS valid/test).
- expressions: none in the format; they come from the sidecar.

Large files: a JSON over `LARGE_FILE_BYTES` is scanned once with ijson into an SQLite
index in the cache folder (``$LONGRVOS_CACHE/ytvis`` or ``~/.cache/longrvos_data/ytvis``),
keyed by the file's path, size and mtime, so a split is never held in memory and worker
processes reuse the index.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from .. import masks as _masks
from ..errors import DataError, OnError, ProblemLog
from ..schema import Frame, RLEMaskSource, Track, Video, check_id
from .base import (Dataset, Detection, SplitReader, check_rle_counts, match_frames, read_json,
                   require_regular_file)

log = logging.getLogger("longrvos_data")

NAME = "ytvis"

LARGE_FILE_BYTES = 128 << 20
"""JSON files above this size are indexed on disk instead of parsed into memory."""

INDEX_VERSION = "1"


class YTVISPaths:
    """File and folder names of the YouTube-VIS layouts."""

    INSTANCES = "instances.json"      # <split>/instances.json (2021 layout)
    ANNOTATIONS_DIR = "annotations"   # annotations/<split>.json (2019 layout)
    IMAGES = "JPEGImages"
    EXTENSION = "longrvos"            # this package's extension key in videos and annotations


P = YTVISPaths


# -- layout --------------------------------------------------------------------------------
@dataclass(frozen=True)
class _SplitFiles:
    name: str
    json_file: Path
    folder: Path          # <root>/<split>: JPEGImages and the sidecar


def _find_splits(path: Path) -> dict[str, _SplitFiles]:
    if (path / P.INSTANCES).is_file():
        return {path.name: _SplitFiles(path.name, path / P.INSTANCES, path)}
    found: dict[str, _SplitFiles] = {}
    try:
        children = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        children = []
    for d in children:
        if (d / P.INSTANCES).is_file():
            found[d.name] = _SplitFiles(d.name, d / P.INSTANCES, d)
    ann_dir = path / P.ANNOTATIONS_DIR
    if ann_dir.is_dir():
        for f in sorted(ann_dir.glob("*.json")):
            if f.stem not in found and (path / f.stem / P.IMAGES).is_dir():
                found[f.stem] = _SplitFiles(f.stem, f, path / f.stem)
    return found


def _peek(json_file: Path, max_events: int = 20000) -> tuple[set[str], str | None, set[str]]:
    """Top-level keys seen, the type of ``videos`` and the keys of its first item (ijson, bounded)."""
    import ijson

    keys: set[str] = set()
    videos_type: str | None = None
    first: set[str] = set()
    require_regular_file(json_file)  # never open a FIFO (it blocks) or a device
    with open(json_file, "rb") as fh:
        for n, (prefix, event, value) in enumerate(ijson.parse(fh)):
            if prefix == "" and event == "map_key":
                keys.add(value)
            elif prefix == "videos" and event in ("start_array", "start_map", "null"):
                videos_type = {"start_array": "list", "start_map": "dict"}.get(event, "null")
                if videos_type != "list":
                    break
            elif prefix == "videos.item" and event == "map_key":
                first.add(value)
            elif prefix == "videos.item" and event == "end_map":
                break
            if n >= max_events:
                break
    return keys, videos_type, first


def detect(path: str | Path) -> Detection:
    """How well ``path`` matches YouTube-VIS: probes the JSON's ``videos`` list and its first item.

    Example:
        >>> detect("out/ytvis").confidence
        1.0
    """
    path = Path(path)
    if not path.is_dir():
        return Detection(NAME, 0.0, (f"{path} is not a folder",))
    splits = _find_splits(path)
    if not splits:
        return Detection(NAME, 0.0, (f"no {P.INSTANCES} in the folder or its split folders, and no "
                                     f"{P.ANNOTATIONS_DIR}/<split>.json beside <split>/{P.IMAGES}",))
    probe = next(iter(splits.values()))
    try:
        keys, videos_type, first = _peek(probe.json_file)
    except Exception as exc:  # noqa: BLE001 - a parse failure is a reason, not a crash
        return Detection(NAME, 0.2, (f"{probe.json_file} cannot be parsed ({type(exc).__name__})",))
    reasons = [f"found {probe.json_file}"]
    if videos_type is None:
        return Detection(NAME, 0.0, tuple(reasons + ["no 'videos' list near its start (pass --format ytvis if "
                                                      "it comes after the annotations)"]))
    if videos_type != "list":
        return Detection(NAME, 0.0, tuple(reasons + [f"its 'videos' is a {videos_type}, not a list"]))
    if first and "file_names" not in first:
        return Detection(NAME, 0.0, tuple(reasons + ["its first video has no 'file_names'"]))
    confidence = 0.7
    reasons.append("'videos' is a list of entries with 'file_names'" if first else "'videos' is an empty list")
    if "categories" in keys:
        confidence += 0.2
        reasons.append("has 'categories'")
    if "annotations" in keys:
        confidence += 0.1
    return Detection(NAME, round(min(confidence, 1.0), 3), tuple(reasons))


# -- the split's JSON: in memory, or indexed on disk ----------------------------------------
def cache_root() -> Path:
    """``$LONGRVOS_CACHE/ytvis`` or ``~/.cache/longrvos_data/ytvis``."""
    base = os.environ.get("LONGRVOS_CACHE")
    root = Path(base).expanduser() if base else Path.home() / ".cache" / "longrvos_data"
    return root / "ytvis"


class _Contents:
    """A split JSON's videos and categories, and its annotations by video id."""

    videos: list[dict]
    categories: list[dict]
    has_annotations: bool

    def annotations(self, video_id: int) -> list[dict]:
        raise NotImplementedError


class _InMemory(_Contents):
    def __init__(self, path: Path) -> None:
        data = read_json(path)
        if not isinstance(data, dict):
            raise DataError("expected a JSON object", file=path)
        self.videos = _list(data.get("videos"), path, "videos")
        self.categories = _list(data.get("categories", []), path, "categories")
        anns = data.get("annotations")
        self.has_annotations = anns is not None
        self._by_video: dict[Any, list[dict]] = {}
        for i, ann in enumerate(_list(anns or [], path, "annotations")):
            if not isinstance(ann, dict) or "video_id" not in ann:
                raise DataError("expected an object with 'video_id'", file=path, field=f"annotations[{i}]")
            self._by_video.setdefault(ann["video_id"], []).append(ann)

    def annotations(self, video_id: int) -> list[dict]:
        return self._by_video.get(video_id, [])


def _list(value: Any, path: Path, field: str) -> list:
    if not isinstance(value, list):
        raise DataError(f"expected a list, got {type(value).__name__}", file=path, field=field)
    return value


class _Indexed(_Contents):
    """The JSON scanned once into SQLite: ``meta`` (videos, categories) and ``ann`` rows."""

    def __init__(self, path: Path) -> None:
        self.path = path
        st = path.stat()
        key = f"{INDEX_VERSION}|{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
        self.index = cache_root() / f"{hashlib.sha1(key.encode()).hexdigest()}.sqlite"
        if not self.index.is_file():
            self._build()
        self._conn = sqlite3.connect(f"file:{self.index}?mode=ro", uri=True, check_same_thread=False)
        meta = dict(self._conn.execute("SELECT key, value FROM meta"))
        self.videos = json.loads(meta["videos"])
        self.categories = json.loads(meta["categories"])
        self.has_annotations = json.loads(meta["has_annotations"])

    def _build(self) -> None:
        import ijson

        self.index.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".index.", suffix=".sqlite", dir=self.index.parent)
        os.close(fd)
        log.info("indexing %s (once) into %s", self.path, self.index)
        try:
            conn = sqlite3.connect(tmp)
            conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
            conn.execute("CREATE TABLE ann (video TEXT, body TEXT)")
            try:
                with open(self.path, "rb") as fh:
                    videos = list(ijson.items(fh, "videos.item", use_float=True))
                with open(self.path, "rb") as fh:
                    categories = list(ijson.items(fh, "categories.item", use_float=True))
                count = 0
                with open(self.path, "rb") as fh:
                    batch = []
                    for i, ann in enumerate(ijson.items(fh, "annotations.item", use_float=True)):
                        if not isinstance(ann, dict) or "video_id" not in ann:
                            raise DataError("expected an object with 'video_id'", file=self.path,
                                            field=f"annotations[{i}]")
                        batch.append((json.dumps(ann["video_id"]), json.dumps(ann)))
                        if len(batch) >= 1000:
                            conn.executemany("INSERT INTO ann VALUES (?, ?)", batch)
                            batch.clear()
                        count += 1
                    conn.executemany("INSERT INTO ann VALUES (?, ?)", batch)
                has_annotations = count > 0 or self._annotations_listed()
            except ijson.JSONError as exc:
                raise DataError(f"invalid JSON ({exc})", file=self.path) from None
            conn.execute("CREATE INDEX ann_video ON ann (video)")
            conn.executemany("INSERT INTO meta VALUES (?, ?)", [
                ("videos", json.dumps(videos)), ("categories", json.dumps(categories)),
                ("has_annotations", json.dumps(has_annotations))])
            conn.commit()
            conn.close()
            os.replace(tmp, self.index)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _annotations_listed(self) -> bool:
        """Whether an (empty) ``annotations`` list is present, as opposed to missing or null."""
        import ijson

        with open(self.path, "rb") as fh:
            for prefix, event, _ in ijson.parse(fh):
                if prefix == "annotations":
                    return event == "start_array"
        return False

    def annotations(self, video_id: int) -> list[dict]:
        rows = self._conn.execute("SELECT body FROM ann WHERE video = ? ORDER BY rowid", (json.dumps(video_id),))
        return [json.loads(body) for (body,) in rows]


def _open_contents(path: Path) -> _Contents:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise DataError("file is missing", file=path) from None
    return _Indexed(path) if size > LARGE_FILE_BYTES else _InMemory(path)


# -- the split -------------------------------------------------------------------------------
class YTVISSplit(SplitReader):
    """One split of a YouTube-VIS JSON, read a video at a time."""

    format = NAME

    def __init__(self, files: _SplitFiles, *, problems: ProblemLog) -> None:
        super().__init__(files.folder, files.name, problems=problems)
        from ..sidecar import Sidecar

        self.files = files
        self.contents = _open_contents(files.json_file)
        self.sidecar = Sidecar.read(files.folder, target=NAME)
        self.categories: dict[Any, str] = {}
        for i, c in enumerate(self.contents.categories):
            if not isinstance(c, dict) or "id" not in c or "name" not in c:
                raise DataError("expected an object with 'id' and 'name'", file=files.json_file,
                                field=f"categories[{i}]")
            self.categories[c["id"]] = str(c["name"])
        self._entries: dict[str, tuple[int, dict]] = {}
        for i, v in enumerate(self.contents.videos):
            where = dict(file=files.json_file, field=f"videos[{i}]")
            if not isinstance(v, dict) or "id" not in v:
                raise DataError("expected an object with 'id'", **where)
            names = v.get("file_names")
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise DataError("'file_names' must be a list of strings", **where)
            folder = Path(names[0]).parent.as_posix() if names else ""
            vid = check_id(folder if folder not in ("", ".") else str(v["id"]), file=files.json_file,
                           video=None, field=f"videos[{i}].file_names")
            if vid in self._entries:
                raise DataError("video is listed twice", file=files.json_file, video=vid, field=f"videos[{i}]")
            self._entries[vid] = (i, v)

    def video_ids(self) -> list[str]:
        return list(self._entries)

    def _load(self, video_id: str) -> Video:
        i, v = self._entries[video_id]
        jf = self.files.json_file
        where = dict(file=jf, video=video_id)
        height, width = v.get("height"), v.get("width")
        if not isinstance(height, int) or not isinstance(width, int):
            raise DataError("'height' and 'width' must be integers", field=f"videos[{i}]", **where)
        names = v["file_names"]
        if "length" in v and v["length"] != len(names):
            raise DataError(f"'length' {v['length']} differs from the {len(names)} file_names",
                            field=f"videos[{i}].length", **where)
        folders = {Path(n).parent.as_posix() for n in names}
        if len(folders) > 1:
            raise DataError(f"file_names span several folders {sorted(folders)[:3]}", field=f"videos[{i}].file_names",
                            **where)
        frame_dir = self.files.folder / P.IMAGES / (folders.pop() if folders else "")
        stems = [Path(n).stem for n in names]
        paths = match_frames(frame_dir, stems, video=video_id, meta_file=jf, problems=self.problems)
        frames = [Frame(s, p) for s, p in zip(stems, paths)]
        ext = v.get(P.EXTENSION) or {}
        anns = self.contents.annotations(v["id"])
        tracks: list[Track] = []
        for k, ann in enumerate(anns):
            a_ext = ann.get(P.EXTENSION) or {}
            tid = str(a_ext["track_id"]) if "track_id" in a_ext else str(ann.get("id", k))
            category = a_ext["category"] if "category" in a_ext else self.categories.get(ann.get("category_id"))
            meta = a_ext["meta"] if "meta" in a_ext else {"ann_id": ann.get("id")}
            tracks.append(Track(tid, category, meta))
        track_ids = [t.track_id for t in tracks]
        source = None
        if self.contents.has_annotations:
            source = RLEMaskSource(lambda: _segmentations(anns, track_ids, len(frames), height, width, jf, video_id))
        video = Video(dataset=NAME, split=self.split, video_id=video_id, frames=frames, height=height, width=width,
                      tracks=tracks, expressions=(), fps=ext.get("fps"), meta=ext.get("meta") or {},
                      mask_source=source, source_file=str(jf))
        return self.sidecar.apply(video)


def _segmentations(anns: Iterable[dict], track_ids: list[str], num_frames: int, height: int, width: int,
                   file: Path, video: str) -> dict[str, list]:
    """``{track_id: [RLE | None per frame]}`` checked for length, RLE shape, size and counts
    (`base.check_rle_counts`, the whole video at once)."""
    out: dict[str, list] = {}
    rles: list[dict] = []
    fields: list[str] = []
    for ann, tid in zip(anns, track_ids):
        f = f"annotations[id={ann.get('id')}].segmentations"
        segs = ann.get("segmentations")
        if not isinstance(segs, list):
            raise DataError("expected a list", file=file, video=video, field=f)
        if len(segs) != num_frames:
            raise DataError(f"{len(segs)} segmentations for {num_frames} frames", file=file, video=video, field=f)
        for t, seg in enumerate(segs):
            if seg is None:
                continue
            if not _masks.is_rle(seg):
                what = "a polygon" if isinstance(seg, list) else f"a {type(seg).__name__}"
                raise DataError(f"is {what}, not an RLE (only RLE segmentations are read)", file=file, video=video,
                                field=f"{f}[{t}]")
            if [int(x) for x in seg["size"]] != [height, width]:
                raise DataError(f"RLE size {seg['size']} is not the video's [{height}, {width}]", file=file,
                                video=video, field=f"{f}[{t}]")
            rles.append(seg)
            fields.append(f"{f}[{t}]")
        out[tid] = segs
    check_rle_counts(rles, fields, file=file, video=video)
    return out


def load(path: str | Path, *, split: str | None = None, on_error: OnError = "raise") -> Dataset:
    """Open a YouTube-VIS root (or one split folder) lazily.

    Args:
        path: the root (``<split>/instances.json`` or ``annotations/<split>.json``) or one split folder.
        split: read only this split.
        on_error: ``"raise"`` or ``"skip"`` (bad videos are recorded and left out).

    Raises:
        DataError: no split JSON under ``path``, no such split, or a malformed JSON.

    Example:
        >>> ds = load("out/ytvis", split="valid")
        >>> video = next(iter(ds["valid"]))
        >>> video.frame_rles(0)
    """
    path = Path(path)
    problems = ProblemLog(on_error)
    splits = _find_splits(path) if path.is_dir() else {}
    if not splits:
        raise DataError(f"no YouTube-VIS JSON ({P.INSTANCES} or {P.ANNOTATIONS_DIR}/<split>.json)", file=path)
    if split is not None:
        if split not in splits:
            raise DataError(f"no split {split!r}; found {sorted(splits)}", file=path, field="split")
        splits = {split: splits[split]}
    readers: dict[str, SplitReader] = {n: YTVISSplit(f, problems=problems) for n, f in splits.items()}
    return Dataset(NAME, path, readers, version=None, problems=problems)


__all__ = ["LARGE_FILE_BYTES", "NAME", "YTVISPaths", "YTVISSplit", "cache_root", "detect", "load"]
