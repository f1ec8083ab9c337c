"""Read a `longrvos convert --to hf` output back into canonical `Video` records.

```
OUT/README.md                       YAML: configs (data_files per split), dataset_info, longrvos: {...}
OUT/data/{expressions,frames,videos}/<split>-NNNNN-of-MMMMM.parquet
```

Parquet is read with pyarrow, a row group at a time: the ``videos`` rows give sizes,
tracks and every track's RLE per frame (masks stay RLE, nothing is decoded until asked
for); the ``expressions`` rows give texts and kinds. Frames: with ``link_frames`` a frame
path is ``source_root / image_path``; with embedded JPEG bytes a frame path points into a
cache folder (``$LONGRVOS_CACHE`` or ``~/.cache/longrvos_data``) and the video's JPEGs are
written there, byte for byte, the first time any of its frame paths is opened or turned
into a string, so that listing or counting a split never copies frames.
"""
from __future__ import annotations

import bisect
import functools
import hashlib
import json
import os
import re
import stat
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from .. import masks as _masks
from ..errors import DataError, OnError, ProblemLog
from ..fsutil import atomic_write_bytes
from ..schema import Expression, Frame, MaskSource, Track, Video
from .base import Dataset, Detection, SplitReader, check_rle_counts

NAME = "hf"


class HFPaths:
    """File and folder names of the layout."""

    CARD = "README.md"
    DATA = "data"
    CONFIGS = ("expressions", "frames", "videos")
    CARD_KEY = "longrvos"   # the card's section written by longrvos-data


_CARD_SECTION = re.compile(rf"^{HFPaths.CARD_KEY}:", re.MULTILINE)
_CARD_BYTES = 16 << 20


def has_card_section(root: Path) -> bool:
    """Whether ``root/README.md`` is this package's card: its YAML front matter has the
    ``longrvos`` section and ``root/data/`` exists.

    Read as text, not parsed: any other README (the Hub's own card of a downloaded
    release, a project's README) is passed over without a warning. A README that is no
    regular file is never opened.
    """
    card = Path(root) / HFPaths.CARD
    try:
        st = os.stat(card)
        if not stat.S_ISREG(st.st_mode) or st.st_size > _CARD_BYTES or not (Path(root) / HFPaths.DATA).is_dir():
            return False
        text = card.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    if not text.startswith("---"):
        return False
    end = text.find("\n---", 3)
    return end > 0 and _CARD_SECTION.search(text, 3, end) is not None


def _find_root(path: Path) -> Path:
    """The output root for ``path`` (the root itself, its ``data`` folder or a config folder):
    the nearest of them whose README.md is this package's card (`has_card_section`)."""
    for candidate in (path, path.parent, path.parent.parent):
        if has_card_section(candidate):
            return candidate
    return path


def _read_card(root: Path) -> dict:
    """The card's YAML as a dict (`huggingface_hub.DatasetCard`), or a `DataError`."""
    from huggingface_hub import DatasetCard

    card_path = root / HFPaths.CARD
    if not card_path.is_file():
        raise DataError("dataset card is missing: not an hf output", file=card_path)
    try:
        card = DatasetCard.load(card_path)
    except Exception as exc:  # YAML errors come in several types
        raise DataError(f"dataset card cannot be parsed ({exc})", file=card_path) from None
    return card.data.to_dict()


def detect(path: Path) -> Detection:
    """A longrvos hf output: a card whose YAML has the three configs and a ``longrvos`` section,
    and parquet files under ``data/<config>/``.

    Example:
        >>> detect(Path("out/mevis_hf")).confidence
        1.0
    """
    path = Path(path)
    root = _find_root(path)
    if not has_card_section(root):
        return Detection(NAME, 0.0, (f"no {HFPaths.CARD} with a {HFPaths.CARD_KEY!r} section beside {HFPaths.DATA}/",))
    try:
        data = _read_card(root)
    except DataError as err:
        return Detection(NAME, 0.0, (str(err),))
    names = {c.get("config_name") for c in data.get("configs") or [] if isinstance(c, dict)}
    missing = [c for c in HFPaths.CONFIGS if c not in names]
    if missing:
        return Detection(NAME, 0.0, (f"card YAML has no config(s) {', '.join(missing)}",))
    if not isinstance(data.get(HFPaths.CARD_KEY), dict):
        return Detection(NAME, 0.0, (f"card YAML has no {HFPaths.CARD_KEY!r} section",))
    if not any((root / HFPaths.DATA / "videos").glob("*.parquet")):
        return Detection(NAME, 0.0, ("no parquet files in data/videos",))
    return Detection(NAME, 1.0, ("card with expressions/frames/videos configs", "parquet shards in data/"))


# -- random access to a config's rows --------------------------------------------------
class ParquetRows:
    """The rows of one (config, split) across its shards, read a row group at a time.

    Global row numbers run over the files in order. File handles are opened lazily and
    dropped when pickled, so an instance can be sent to DataLoader workers.

    Example:
        >>> rows = ParquetRows(card.files["frames"]["valid"])
        >>> rows.take([0, 40], columns=["frame_name"]).column("frame_name").to_pylist()
        ['00000', '00040']
    """

    def __init__(self, files: Sequence[Path], *, cache_groups: int = 4) -> None:
        self.files = [Path(f) for f in files]
        self.cache_groups = cache_groups
        self._reset()

    def _reset(self) -> None:
        self._handles: dict[int, pq.ParquetFile] = {}
        self._starts: list[int] | None = None
        self._groups: list[tuple[int, int, int]] = []  # (file index, row group, rows)
        self._cache: OrderedDict = OrderedDict()

    def __getstate__(self) -> dict:
        return {"files": self.files, "cache_groups": self.cache_groups}

    def __setstate__(self, state: dict) -> None:
        self.files, self.cache_groups = state["files"], state["cache_groups"]
        self._reset()

    def _file(self, k: int) -> pq.ParquetFile:
        handle = self._handles.get(k)
        if handle is None:
            try:
                handle = pq.ParquetFile(self.files[k])
            except (OSError, pa.ArrowInvalid) as exc:
                raise DataError(f"parquet shard cannot be read ({exc})", file=self.files[k]) from None
            self._handles[k] = handle
        return handle

    def _layout(self) -> None:
        if self._starts is not None:
            return
        starts, groups, total = [], [], 0
        for k in range(len(self.files)):
            meta = self._file(k).metadata
            for g in range(meta.num_row_groups):
                n = meta.row_group(g).num_rows
                starts.append(total)
                groups.append((k, g, n))
                total += n
        self._starts, self._groups, self._total = starts, groups, total

    def __len__(self) -> int:
        self._layout()
        return self._total

    def column(self, names: Sequence[str]) -> pa.Table:
        """Whole columns (nested fields as ``"image.path"``) over every shard."""
        tables = []
        for k in range(len(self.files)):
            try:
                tables.append(self._file(k).read(columns=list(names)))
            except (OSError, pa.ArrowInvalid) as exc:
                raise DataError(f"parquet shard cannot be read ({exc})", file=self.files[k]) from None
        if not tables:
            return pa.table({})
        return pa.concat_tables(tables)

    def _group(self, index: int, columns: tuple[str, ...] | None) -> pa.Table:
        key = (index, columns)
        table = self._cache.get(key)
        if table is None:
            k, g, _ = self._groups[index]
            try:
                table = self._file(k).read_row_group(g, columns=list(columns) if columns else None)
            except (OSError, pa.ArrowInvalid) as exc:
                raise DataError(f"parquet row group {g} cannot be read ({exc})", file=self.files[k]) from None
            self._cache[key] = table
            while len(self._cache) > self.cache_groups:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return table

    def rows(self, start: int, stop: int, *, columns: Sequence[str] | None = None) -> pa.Table:
        """Rows ``[start, stop)`` (global numbers), reading only the row groups they lie in."""
        self._layout()
        cols = tuple(columns) if columns else None
        parts = []
        g = max(bisect.bisect_right(self._starts, start) - 1, 0)
        while start < stop and g < len(self._groups):
            first = self._starts[g]
            n = self._groups[g][2]
            if start < first + n:
                lo, hi = start - first, min(stop, first + n) - first
                parts.append(self._group(g, cols).slice(lo, hi - lo))
                start = first + hi
            g += 1
        if not parts:
            return self._group(0, cols).slice(0, 0) if self._groups else pa.table({})
        return parts[0] if len(parts) == 1 else pa.concat_tables(parts)

    def take(self, rows: Sequence[int], *, columns: Sequence[str] | None = None) -> pa.Table:
        """Rows by global number, in the order given; each row group needed is read once."""
        self._layout()
        cols = tuple(columns) if columns else None
        parts = []
        for row in rows:
            if not 0 <= row < self._total:
                raise IndexError(f"row {row} out of range (0..{self._total - 1})")
            g = bisect.bisect_right(self._starts, row) - 1
            parts.append(self._group(g, cols).slice(row - self._starts[g], 1))
        if not parts:
            return self.rows(0, 0, columns=columns)
        return pa.concat_tables(parts)

    def file_of(self, row: int) -> Path:
        self._layout()
        g = bisect.bisect_right(self._starts, row) - 1
        return self.files[self._groups[g][0]]


@dataclass(frozen=True)
class CardInfo:
    """What the card says: each split's files per config and the ``longrvos`` section."""

    root: Path
    files: Mapping[str, Mapping[str, tuple[Path, ...]]]   # config -> split -> shards
    section: Mapping[str, Any]

    @property
    def splits(self) -> list[str]:
        return list(self.files.get("videos", {}))

    @property
    def link_frames(self) -> bool:
        return bool(self.section.get("link_frames"))

    @property
    def source_root(self) -> Path | None:
        root = self.section.get("source_root")
        return None if root is None else Path(root)


def read_card(path: str | Path) -> CardInfo:
    """Parse the output's card: shard lists per config and split, and the longrvos section.

    Raises:
        DataError: no card, no configs, a listed shard that does not exist.

    Example:
        >>> read_card("out/mevis_hf").files["frames"]["valid_u"][0].name
        'valid_u-00000-of-00001.parquet'
    """
    root = _find_root(Path(path))
    data = _read_card(root)
    card_path = root / HFPaths.CARD
    # `configs:` as `datasets` reads it (a list of {config_name, data_files}); parsed here so
    # that reading an output (and every DataLoader worker) does not import `datasets`.
    configs = {c["config_name"]: c for c in data.get("configs") or []
               if isinstance(c, dict) and isinstance(c.get("config_name"), str)}
    files: dict[str, dict[str, tuple[Path, ...]]] = {}
    for config in HFPaths.CONFIGS:
        if config not in configs:
            raise DataError(f"card YAML has no config {config!r}", file=card_path, field="configs")
        per_split: dict[str, tuple[Path, ...]] = {}
        data_files = configs[config].get("data_files") or []
        if isinstance(data_files, str):
            data_files = [{"split": "train", "path": data_files}]
        for entry in data_files:
            if isinstance(entry, dict) and isinstance(entry.get("split"), str) and isinstance(entry.get("path"),
                                                                                             (str, list)):
                split, patterns = entry["split"], entry["path"]
            elif isinstance(entry, str):
                split, patterns = "train", entry
            else:
                raise DataError(f"data_files entry {entry!r} is neither a path nor {{split, path}}",
                                file=card_path, field=f"configs.{config}.data_files")
            found: list[Path] = []
            for pattern in [patterns] if isinstance(patterns, str) else patterns:
                if any(ch in pattern for ch in "*?["):
                    found.extend(sorted(root.glob(pattern)))
                else:
                    p = root / pattern
                    if not p.is_file():
                        raise DataError("a shard listed in the card is missing", file=p, field=f"configs.{config}")
                    found.append(p)
            per_split[split] = tuple(found)
        files[config] = per_split
    section = data.get(HFPaths.CARD_KEY)
    return CardInfo(root=root, files=files, section=section if isinstance(section, dict) else {})


# -- frames: linked, or embedded and written to a cache on first use -------------------
def cache_root() -> Path:
    """Where embedded frames are written when a loader's frame path is used.

    Example:
        >>> os.environ["LONGRVOS_CACHE"] = "/scratch/cache"; cache_root()
        PosixPath('/scratch/cache')
    """
    env = os.environ.get("LONGRVOS_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "longrvos_data"


def frames_index(files: tuple[Path, ...], linked: bool) -> tuple[dict[str, tuple[int, int]], list[str]]:
    """``{video_id: (first row, count)}`` and each row's file name, from two small columns."""
    return _frames_index_cached(files, linked, _cache_key(files))


@functools.lru_cache(maxsize=8)
def _frames_index_cached(files: tuple[Path, ...], linked: bool, stamp: str
                         ) -> tuple[dict[str, tuple[int, int]], list[str]]:
    rows = ParquetRows(files)
    col = "image_path" if linked else "image.path"
    table = rows.column(["video_id", col])
    vids = table.column("video_id").to_pylist()
    names = table.column(col.split(".")[0]).combine_chunks()
    names = (names.field("path") if not linked else names).to_pylist()
    index: dict[str, tuple[int, int]] = {}
    for i, vid in enumerate(vids):
        first, count = index.get(vid, (i, 0))
        if first + count != i:
            raise DataError("a video's frames are not contiguous", file=rows.file_of(i), video=vid, field="video_id")
        index[vid] = (first, count + 1)
    return index, names


@dataclass(frozen=True)
class FrameExtractor:
    """Writes one video's embedded JPEGs into the cache, once (picklable)."""

    files: tuple[Path, ...]
    video_id: str
    folder: Path

    def __call__(self) -> None:
        index, names = frames_index(self.files, False)
        first, count = index[self.video_id]
        if all((self.folder / os.path.basename(names[r])).is_file() for r in range(first, first + count)):
            return
        table = ParquetRows(self.files).rows(first, first + count, columns=["image"])
        for r, blob in zip(range(first, first + count), table.column("image").combine_chunks().field("bytes")):
            target = self.folder / os.path.basename(names[r])
            if not target.is_file():
                atomic_write_bytes(target, blob.as_py())


class EmbeddedFramePath(type(Path())):
    """A frame path in the cache whose file is written the first time the path is used.

    Opening it, passing it to any function that takes a path (``os.fspath``) or turning
    it into a string writes the video's JPEGs first (once per process), so consumers that
    copy, link or decode frames get the exact source bytes. Derived paths (``.parent``,
    ``/ "x"``) are plain paths. On Python >= 3.12, where pathlib compares and hashes paths
    through their string, comparing frames writes them too.
    """

    _extract: FrameExtractor | None = None

    def __str__(self) -> str:
        text = super().__str__()
        extract = self.__dict__.get("_extract")
        if extract is not None:
            self.__dict__["_extract"] = None
            extract()
        return text

    def __reduce__(self):
        return (_embedded_path, (super().__str__(), self.__dict__.get("_extract")))


def _embedded_path(text: str, extract: FrameExtractor | None) -> Path:
    p = EmbeddedFramePath(text)
    p.__dict__["_extract"] = extract
    return p


# -- masks -------------------------------------------------------------------------------
class HFMaskSource(MaskSource):
    """Masks of one video from its ``videos`` row: ``{track_id: [RLE | None per frame]}``."""

    def __init__(self, tracks: Mapping[str, Sequence[dict | None]], *, height: int, width: int, num_frames: int,
                 file: Path, video_id: str) -> None:
        self.tracks, self.h, self.w, self.file, self.video_id = tracks, height, width, file, video_id
        self._checked = False
        for tid, seq in tracks.items():
            if seq is None or len(seq) != num_frames:
                n = "no" if seq is None else len(seq)
                raise DataError(f"track has {n} masks for {num_frames} frames", file=file, video=video_id,
                                field=f"tracks[{tid}].rles")

    def _check(self) -> None:
        """Every RLE of the video, on first use: its size, then all counts in one pass
        (`base.check_rle_counts`)."""
        rles: list[dict] = []
        fields: list[str] = []
        for tid, seq in self.tracks.items():
            for t, rle in enumerate(seq):
                if rle is None:
                    continue
                if list(rle["size"]) != [self.h, self.w]:
                    raise DataError(f"mask is {rle['size'][0]}x{rle['size'][1]}, the video is {self.h}x{self.w}",
                                    file=self.file, video=self.video_id, field=f"tracks[{tid}].rles[{t}]")
                rles.append(rle)
                fields.append(f"tracks[{tid}].rles[{t}]")
        check_rle_counts(rles, fields, file=self.file, video=self.video_id)
        self._checked = True

    def rles(self, index: int) -> dict[str, dict]:
        if not self._checked:
            self._check()
        return {tid: seq[index] for tid, seq in self.tracks.items() if seq[index] is not None}

    def areas(self, index: int) -> dict[str, int]:
        rles = self.rles(index)
        return dict(zip(rles, (int(a) for a in _masks.area(list(rles.values())))))


# -- the split reader --------------------------------------------------------------------
def _loads(text: str | None, *, file: Path, video: str, field: str) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON ({exc})", file=file, video=video, field=field) from None


class HFSplitReader(SplitReader):
    """One split of an hf output; metadata read once per split, masks per video."""

    format = NAME

    def __init__(self, card: CardInfo, split: str, *, problems: ProblemLog) -> None:
        super().__init__(card.root, split, problems=problems)
        self.card = card
        self.videos_rows = ParquetRows(card.files["videos"].get(split, ()), cache_groups=2)
        self._ids: list[str] | None = None
        self._row_of: dict[str, int] = {}
        self._expressions: dict[str, list[tuple[dict, Path]]] | None = None

    def video_ids(self) -> list[str]:
        if self._ids is None:
            ids = self.videos_rows.column(["video_id"]).column("video_id").to_pylist() if self.videos_rows.files else []
            self._row_of = {vid: i for i, vid in enumerate(ids)}
            if len(self._row_of) != len(ids):
                dup = sorted({v for v in ids if ids.count(v) > 1})
                raise DataError(f"video ids occur twice: {dup[:5]}", file=self.videos_rows.files[0], field="video_id")
            self._ids = ids
        return self._ids

    def _expression_rows(self) -> dict[str, list[tuple[dict, Path]]]:
        if self._expressions is None:
            grouped: dict[str, list[tuple[dict, Path]]] = {}
            for f in self.card.files["expressions"].get(self.split, ()):
                try:
                    table = pq.read_table(f, columns=["video_id", "exp_id", "text", "track_ids", "kind",
                                                      "kind_raw", "meta"])
                except (OSError, pa.ArrowInvalid) as exc:
                    raise DataError(f"parquet shard cannot be read ({exc})", file=f) from None
                for row in table.to_pylist():
                    grouped.setdefault(row["video_id"], []).append((row, f))
            self._expressions = grouped
        return self._expressions

    def _frames(self, video_id: str, names: Sequence[str]) -> list[Frame]:
        files = tuple(self.card.files["frames"].get(self.split, ()))
        linked = self.card.link_frames
        index, file_names = frames_index(files, linked)
        if video_id not in index:
            raise DataError("video has no rows in the frames config", file=files[0] if files else self.root,
                            video=video_id, field="frames")
        first, count = index[video_id]
        if count != len(names):
            raise DataError(f"frames config has {count} rows, the video lists {len(names)} frames",
                            file=files[0], video=video_id, field="frames")
        rows = range(first, first + count)
        if linked:
            root = self.card.source_root or self.root
            return [Frame(n, root / file_names[r]) for n, r in zip(names, rows)]
        folder = cache_root() / "hf_frames" / _cache_key(files) / self.split / video_id
        extract = FrameExtractor(files, video_id, folder)
        return [Frame(n, _embedded_path(str(folder / os.path.basename(file_names[r])), extract))
                for n, r in zip(names, rows)]

    def _load(self, video_id: str) -> Video:
        self.video_ids()
        row_no = self._row_of[video_id]
        row = self.videos_rows.rows(row_no, row_no + 1).to_pylist()[0]
        file = self.videos_rows.file_of(row_no)
        where = dict(file=file, video=video_id)
        tracks = [Track(t["track_id"], t["category"],
                        _loads(t["meta"], field=f"tracks[{t['track_id']}].meta", **where) or {})
                  for t in row["tracks"] or []]
        expressions = []
        for e, efile in self._expression_rows().get(video_id, []):
            raw = _loads(e["kind_raw"], file=efile, video=video_id, field=f"expressions[{e['exp_id']}].kind_raw")
            meta = _loads(e["meta"], file=efile, video=video_id, field=f"expressions[{e['exp_id']}].meta") or {}
            try:
                expressions.append(Expression(e["exp_id"], e["text"], tuple(e["track_ids"] or ()), e["kind"],
                                              kind_raw=raw, meta=meta))
            except ValueError as exc:
                raise DataError(str(exc), file=efile, video=video_id, field=f"expressions[{e['exp_id']}]") from None
        names = row["frame_names"] or []
        source = None
        if row["has_masks"]:
            source = HFMaskSource({t["track_id"]: t["rles"] for t in row["tracks"] or []}, height=row["height"],
                                  width=row["width"], num_frames=len(names), file=file, video_id=video_id)
        return Video(dataset=row["dataset"], split=self.split, video_id=video_id, frames=self._frames(video_id, names),
                     height=row["height"], width=row["width"], tracks=tracks, expressions=expressions, fps=row["fps"],
                     meta=_loads(row["meta"], field="meta", **where) or {}, mask_source=source, source_file=str(file))


def _cache_key(files: Sequence[Path]) -> str:
    """Changes when the shards change (path, size, mtime), so a stale cache is never used."""
    h = hashlib.sha1()
    for f in files:
        st = os.stat(f)
        h.update(f"{os.path.abspath(f)}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    return h.hexdigest()[:16]


def load(path: Path, *, split: str | None = None, on_error: OnError = "raise") -> Dataset:
    """Open an hf output (its root, or its ``data`` folder) lazily.

    Example:
        >>> ds = load(Path("out/long_rvos_hf"), split="valid")
        >>> video = ds["valid"].video("v1")
    """
    card = read_card(path)
    problems = ProblemLog(on_error)
    names = card.splits
    if split is not None:
        if split not in names:
            raise DataError(f"no split {split!r}; the card lists {names}", file=card.root / HFPaths.CARD,
                            field="configs")
        names = [split]
    splits = {name: HFSplitReader(card, name, problems=problems) for name in names}
    return Dataset(format=NAME, root=card.root, splits=splits, problems=problems)
