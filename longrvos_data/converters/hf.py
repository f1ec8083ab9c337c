"""Hugging Face `datasets` output: parquet shards and a dataset card `load_dataset` reads.

Any split of any loader becomes three configs, their features declared once below:

```
OUT/
  README.md                                   card: YAML `configs:` + `dataset_info`, licence, citation
  data/expressions/<split>-00000-of-00001.parquet   one row per expression (the training unit)
  data/frames/<split>-00000-of-00003.parquet        one row per frame: JPEG bytes + every track's RLE
  data/videos/<split>-00000-of-00001.parquet        one row per video: size, fps, tracks with RLE per frame
  .longrvos_hf/progress.json                  resume state, removed when the output is finished
```

``datasets.load_dataset(OUT, "expressions", split="train")`` works from any working
directory, also with ``streaming=True``. Frames keep the source's JPEG bytes (never
re-encoded) in an ``Image`` column, or, with ``link_frames``, a path relative to the
``source_root`` recorded in the card.

Conversion streams: one video at a time (rows built by `hf_rows.video_rows`, in ``workers``
processes for split readers, a run of `PART_FRAMES` frames per task, turned into Arrow and
written here in video order), rows
flushed in bounded row groups, shards rolled over near ``shard_bytes``. A shard is written
under a temporary name and recorded in the progress file when complete, so a re-run after
a kill resumes after the last complete shard; final names appear only when a split is done. A later run into the same folder with the
same options adds splits to it (the card records each finished split).

Every frame file passes a structural check before its bytes are written (`hf_rows.check_frame`:
JPEG start and end markers and the header's size, or the PNG signature and IHDR size); a
frame that fails is a `DataError`, or with ``on_error="skip"`` its video is left out and
listed in the card. A split without videos is left out of the card (`datasets` cannot load
a split of no rows).
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from datasets import Features, Image, List, Value

from ..errors import DataError, LongRVOSError, OnError, ProblemLog
from ..fsutil import atomic_write_bytes, atomic_write_json, output_error
from ..sidecar import HF_STATE, LOCK
from .base import WriteReport
from .hf_rows import VideoRows, join_rows, video_rows

log = logging.getLogger("longrvos_data")

FORMAT_NAME = "hf"
LAYOUT_VERSION = 1
CONFIGS: tuple[str, ...] = ("expressions", "frames", "videos")
DEFAULT_CONFIG = "expressions"
DEFAULT_SHARD_BYTES = 500_000_000

# -- features, declared once -----------------------------------------------------------
#: COCO RLE as the mask codec writes it: ``{"size": [H, W], "counts": str}``.
RLE_FEATURE = {"size": List(Value("int32"), length=2), "counts": Value("string")}

#: One row per expression: usable alone (``masks`` is the target's union per frame).
EXPRESSIONS_FEATURES = Features({
    "video_id": Value("string"),
    "exp_id": Value("string"),
    "text": Value("string"),
    "track_ids": List(Value("string")),
    "kind": Value("string"),
    "kind_raw": Value("string"),        # the source's own value, as JSON ("\"static+dynamic\"", "1")
    "meta": Value("string"),            # the expression's extra source fields, as a JSON object
    "frame_names": List(Value("string")),   # the video's frames, which ``masks`` aligns with
    "masks": List(RLE_FEATURE),         # per frame: union RLE, null where no target is present;
                                        # the whole list is null in splits without annotations
})

_FRAME_MASKS = List({"track_id": Value("string"), "rle": RLE_FEATURE})

#: One row per frame, JPEG bytes embedded (the default).
FRAMES_FEATURES = Features({
    "video_id": Value("string"),
    "frame_index": Value("int32"),
    "frame_name": Value("string"),
    "image": Image(),                   # {"bytes": original file bytes, "path": "<video_id>/<file>"}
    "masks": _FRAME_MASKS,              # present tracks only; null in splits without annotations
})

#: One row per frame with ``link_frames``: a path relative to the card's ``source_root``.
FRAMES_LINKED_FEATURES = Features({
    "video_id": Value("string"),
    "frame_index": Value("int32"),
    "frame_name": Value("string"),
    "image_path": Value("string"),
    "masks": _FRAME_MASKS,
})

#: One row per video, with every track's mask per frame (null = absent).
VIDEOS_FEATURES = Features({
    "video_id": Value("string"),
    "dataset": Value("string"),
    "height": Value("int32"),
    "width": Value("int32"),
    "fps": Value("float64"),
    "frame_names": List(Value("string")),
    "has_masks": Value("bool"),
    "tracks": List({
        "track_id": Value("string"),
        "category": Value("string"),
        "meta": Value("string"),        # JSON object
        "rles": List(RLE_FEATURE),      # per frame, null where absent; null list without annotations
    }),
    "meta": Value("string"),            # JSON object
})


def config_features(config: str, *, link_frames: bool = False) -> Features:
    """The `Features` of one config (``frames`` depends on ``link_frames``).

    Example:
        >>> list(config_features("frames", link_frames=True))
        ['video_id', 'frame_index', 'frame_name', 'image_path', 'masks']
    """
    if config == "frames":
        return FRAMES_LINKED_FEATURES if link_frames else FRAMES_FEATURES
    return {"expressions": EXPRESSIONS_FEATURES, "videos": VIDEOS_FEATURES}[config]


# Row groups stay small so that one frame can be read without reading many others, and far
# below the 2 GB offset limit of an Arrow binary array whatever the frame size.
# A clip of T frames reads up to T frame row groups: 16 rows (~4 MB of 720p JPEGs) keeps that cheap.
ROW_GROUP_ROWS = {"expressions": 128, "frames": 16, "videos": 16}
ROW_GROUP_BYTES = {"expressions": 32_000_000, "frames": 8_000_000, "videos": 32_000_000}

_STATS_COLUMNS = {"expressions": ["video_id", "exp_id"], "frames": ["video_id", "frame_index"],
                  "videos": ["video_id"]}


# -- licences and citations (FORMATS.md, seeds) ------------------------------------------
@dataclass(frozen=True)
class SourceLicence:
    """What a source dataset's card says about its licence and how to cite it.

    ``hub_id`` is a Hub licence identifier (``other`` / ``unknown`` where no single one fits);
    ``non_commercial`` makes `longrvos push` warn.
    """

    name: str
    hub_id: str
    text: str
    non_commercial: bool
    homepage: str
    citation: str


LICENCES: dict[str, SourceLicence] = {
    "long_rvos": SourceLicence(
        "Long-RVOS", "unknown",
        "The Long-RVOS code is MIT-licensed; the README does not state a licence for the data. "
        "Check https://huggingface.co/datasets/iSEE-Laboratory/Long-RVOS before redistributing.",
        False, "https://isee-laboratory.github.io/Long-RVOS/",
        "@article{liang2025longrvos,\n  title={Long-RVOS: A Comprehensive Benchmark for Long-term Referring "
        "Video Object Segmentation},\n  author={Liang, Tianming and Jiang, Haichao and Yang, Yuting and Tan, "
        "Chaolei and Li, Shuai and Zheng, Wei-Shi and Hu, Jian-Fang},\n  journal={arXiv preprint "
        "arXiv:2505.12702},\n  year={2025}\n}"),
    "lvos": SourceLicence(
        "LVOS", "other",
        "Annotations: CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/). The videos are released "
        "for non-commercial research purposes only and belong to their source datasets (VOT-LT 2019, LaSOT "
        "and others).",
        True, "https://lingyihongfd.github.io/lvos.github.io/",
        "@InProceedings{Hong_2023_ICCV,\n  author={Hong, Lingyi and Chen, Wenchao and Liu, Zhongying and Zhang, "
        "Wei and Guo, Pinxue and Chen, Zhaoyu and Zhang, Wenqiang},\n  title={LVOS: A Benchmark for Long-term "
        "Video Object Segmentation},\n  booktitle={Proceedings of the IEEE/CVF International Conference on "
        "Computer Vision (ICCV)},\n  month={October},\n  year={2023},\n  pages={13480-13492}\n}"),
    "mevis": SourceLicence(
        "MeViS", "cc-by-nc-sa-4.0",
        "CC BY-NC-SA 4.0 (https://creativecommons.org/licenses/by-nc-sa/4.0/): non-commercial use only.",
        True, "https://henghuiding.github.io/MeViS/",
        "@inproceedings{MeViS,\n  title={{MeViS}: A Large-scale Benchmark for Video Segmentation with Motion "
        "Expressions},\n  author={Ding, Henghui and Liu, Chang and He, Shuting and Jiang, Xudong and Loy, "
        "Chen Change},\n  booktitle={Proceedings of the IEEE/CVF International Conference on Computer Vision "
        "(ICCV)},\n  year={2023}\n}"),
    "revos": SourceLicence(
        "ReVOS", "cc-by-nc-sa-4.0",
        "CC BY-NC-SA 4.0 (https://creativecommons.org/licenses/by-nc-sa/4.0/), released for non-commercial "
        "research only; the videos are owned by their source datasets (MOSE, MeViS, LV-VIS, OVIS, TAO, UVO).",
        True, "https://github.com/cilinyan/VISA",
        "@article{yan2024visa,\n  title={VISA: Reasoning Video Object Segmentation via Large Language Models},\n"
        "  author={Yan, Cilin and Wang, Haochen and Yan, Shilin and Jiang, Xiaolong and Hu, Yao and Kang, "
        "Guoliang and Xie, Weidi and Gavves, Efstratios},\n  journal={arXiv preprint arXiv:2407.11325},\n"
        "  year={2024}\n}"),
    "ref_youtube_vos": SourceLicence(
        "Ref-YouTube-VOS", "cc-by-4.0",
        "Reported as CC BY 4.0 (unconfirmed: check https://youtube-vos.org/dataset/rvos/ before "
        "redistributing); the videos come from YouTube.",
        False, "https://youtube-vos.org/dataset/rvos/",
        "@inproceedings{seo2020urvos,\n  title={URVOS: Unified Referring Video Object Segmentation Network with "
        "a Large-Scale Benchmark},\n  author={Seo, Seonguk and Lee, Joon-Young and Han, Bohyung},\n"
        "  booktitle={European Conference on Computer Vision (ECCV)},\n  year={2020}\n}"),
}

UNKNOWN_LICENCE = SourceLicence(
    "unknown source", "unknown", "The source's licence is not known to longrvos-data: check it before "
    "redistributing.", False, "", "")


def licence_for(dataset: str | None) -> SourceLicence:
    """The licence entry of a source dataset id (`UNKNOWN_LICENCE` when not known).

    Example:
        >>> licence_for("mevis").non_commercial
        True
    """
    return LICENCES.get(dataset or "", UNKNOWN_LICENCE)


# -- per-video rows: built in workers (`hf_rows`), turned into Arrow here ------------------
@functools.lru_cache(maxsize=None)
def _schema(config: str, link_frames: bool = False) -> pa.Schema:
    return config_features(config, link_frames=link_frames).arrow_schema


def _read_files(paths: Sequence[str], video_id: str) -> pa.Array:
    """The files' bytes as one Arrow binary array, read straight into its buffer (no copy)."""
    sizes = np.zeros(len(paths) + 1, dtype=np.int64)
    try:
        for k, path in enumerate(paths):
            sizes[k + 1] = os.stat(path).st_size
    except OSError as exc:
        raise DataError(f"frame image cannot be read ({exc.strerror or exc})", file=paths[k], video=video_id,
                        field="frames") from None
    offsets = np.cumsum(sizes)
    if offsets[-1] >= 2**31:
        raise DataError(f"{len(paths)} frame files hold {offsets[-1]} bytes, over a parquet row group's 2 GB",
                        file=paths[0], video=video_id, field="frames")
    data = np.empty(int(offsets[-1]), dtype=np.uint8)
    view = memoryview(data)
    for k, path in enumerate(paths):
        lo, hi = int(offsets[k]), int(offsets[k + 1])
        try:
            with open(path, "rb", buffering=0) as fh:
                got = fh.readinto(view[lo:hi])
                changed = got != hi - lo or fh.read(1)
        except OSError as exc:
            raise DataError(f"frame image cannot be read ({exc.strerror or exc})", file=path, video=video_id,
                            field="frames") from None
        if changed:
            raise DataError("frame image changed size while it was read", file=path, video=video_id, field="frames")
    return pa.Array.from_buffers(pa.binary(), len(paths), [None, pa.py_buffer(offsets.astype(np.int32)),
                                                           pa.py_buffer(data)])


def _frames_table(rows: VideoRows, start: int, stop: int, *, link_frames: bool) -> pa.Table:
    """Frames ``[start, stop)`` of one video as Arrow, the image bytes read from disk now."""
    schema = _schema("frames", link_frames)
    columns: dict[str, pa.Array] = {}
    for name in schema.names:
        if name == "image":
            files = rows.frame_files[start:stop]
            names = [f"{rows.video_id}/{os.path.basename(path)}" for path in files]
            columns[name] = pa.StructArray.from_arrays(
                [_read_files(files, rows.video_id), pa.array(names, pa.string())], fields=list(schema.field(name).type))
        else:
            columns[name] = pa.array(rows.frames[name][start:stop], type=schema.field(name).type)
    return pa.Table.from_arrays([columns[n] for n in schema.names], schema=schema)


def _rows_table(rows: VideoRows, config: str) -> pa.Table:
    return pa.Table.from_pylist(getattr(rows, config), schema=_schema(config))


# -- shards, progress and resume ---------------------------------------------------------
STATE_DIR = HF_STATE
_SPLIT_RE = re.compile(r"^\w+(\.\w+)*$")  # what `datasets` accepts as a split name
PROGRESS_FILE = "progress.json"


def shard_name(split: str, index: int, total: int) -> str:
    """The shard file name `push_to_hub` also uses.

    Example:
        >>> shard_name("train", 3, 12)
        'train-00003-of-00012.parquet'
    """
    return f"{split}-{index:05d}-of-{total:05d}.parquet"


class _ShardWriter:
    """Rows of one (config, split) into size-bounded parquet shards, row groups bounded too.

    An open shard is ``<staging>/<split>-NNNNN.parquet.tmp``; when it is closed it is
    renamed without ``.tmp`` and recorded through ``on_shard`` (which saves progress), so
    a killed run leaves only complete shards that a re-run keeps.
    """

    def __init__(self, staging: Path, config: str, split: str, schema: pa.Schema, *, shards: list[dict],
                 shard_bytes: int, on_shard: Callable[[], None]) -> None:
        self.staging, self.config, self.split, self.schema = staging, config, split, schema
        self.shards = shards            # shared with the progress record
        self.shard_bytes = shard_bytes
        self.on_shard = on_shard
        self.resume_at = shards[-1]["end"] if shards else 0
        self.rg_rows = ROW_GROUP_ROWS[config]
        self.rg_bytes = ROW_GROUP_BYTES[config]
        self._writer: pq.ParquetWriter | None = None
        self._tmp: Path | None = None
        self._buffer: list[pa.Table] = []
        self._buffer_rows = 0
        self._buffer_bytes = 0
        self._rows = 0
        self._nbytes = 0

    def _open(self) -> None:
        self.staging.mkdir(parents=True, exist_ok=True)
        self._tmp = self.staging / f"{self.split}-{len(self.shards):05d}.parquet.tmp"
        # JPEG bytes do not compress: storing them plain keeps reads a memcpy
        overrides = {"image.bytes": "none"} if "image" in self.schema.names else None
        self._writer = pq.ParquetWriter(
            self._tmp, self.schema, compression=_compression(self.schema, overrides),
            use_dictionary=[c for c in ("video_id", "kind", "dataset") if c in self.schema.names],
            write_statistics=_STATS_COLUMNS[self.config])
        self._rows = 0
        self._nbytes = 0

    def add(self, table: pa.Table) -> None:
        """Buffer rows; full row groups are written at once."""
        try:
            self._add(table)
        except OSError as exc:
            raise output_error(self._tmp or self.staging, exc) from None

    def _add(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        if self._writer is None:
            self._open()
        self._buffer.append(table)
        self._buffer_rows += table.num_rows
        self._buffer_bytes += table.nbytes
        self._rows += table.num_rows
        self._nbytes += table.nbytes
        while self._buffer_rows >= self.rg_rows or self._buffer_bytes >= self.rg_bytes:
            self._write_group(final=False)

    def _write_group(self, *, final: bool) -> None:
        table = pa.concat_tables(self._buffer)
        n = table.num_rows
        if not final:
            by_bytes = max(1, int(n * self.rg_bytes / max(self._buffer_bytes, 1)))
            n = min(n, self.rg_rows, by_bytes)
        if n:
            self._writer.write_table(table.slice(0, n), row_group_size=n)
        rest = table.slice(n)
        self._buffer = [rest] if rest.num_rows else []
        self._buffer_rows = rest.num_rows
        self._buffer_bytes = rest.nbytes if rest.num_rows else 0

    def end_video(self, index: int) -> None:
        """Close the shard after video ``index`` when it has reached the target size."""
        if self._writer is not None and os.path.getsize(self._tmp) + self._buffer_bytes >= self.shard_bytes:
            self.close_shard(end=index + 1)

    def close_shard(self, *, end: int) -> None:
        try:
            self._close_shard(end=end)
        except OSError as exc:
            if self._writer is not None:
                self._writer.is_open = False
            raise output_error(self._tmp or self.staging, exc) from None

    def _close_shard(self, *, end: int) -> None:
        if self._writer is None:
            self._open()  # an empty split still gets one (empty) shard per config
        while self._buffer:
            self._write_group(final=True)
        self._writer.close()
        self._writer = None
        final = self._tmp.with_suffix("")
        os.replace(self._tmp, final)
        self.shards.append({"file": final.name, "end": end, "rows": self._rows, "nbytes": self._nbytes})
        self.on_shard()

    def finish(self, *, total: int) -> None:
        if self._writer is not None or not self.shards or self.shards[-1]["end"] < total:
            self.close_shard(end=total)

    def abort(self) -> None:
        """Drop the open shard (a failed write, a bad video): its file is removed, never published."""
        if self._writer is not None:
            try:
                self._writer.close()
            except OSError:          # e.g. the disk is full: the error being handled says so
                self._writer.is_open = False   # and pyarrow must not retry the close when collected
            finally:
                self._writer = None
                if self._tmp is not None:
                    self._tmp.unlink(missing_ok=True)


def _compression(schema: pa.Schema, overrides: dict[str, str] | None) -> str | dict[str, str]:
    if not overrides:
        return "zstd"
    paths: list[str] = []

    def walk(prefix: str, typ: pa.DataType) -> None:
        if pa.types.is_struct(typ):
            for f in typ:
                walk(f"{prefix}.{f.name}", f.type)
        else:
            paths.append(prefix)

    for f in schema:
        walk(f.name, f.type)
    return {p: overrides.get(p, "zstd") for p in paths}


@dataclass
class SplitReport:
    """Rows, shards and bytes written per config for one split."""

    videos: int = 0
    frames: int = 0
    configs: dict[str, dict[str, int]] = field(default_factory=dict)
    resumed_from: int = 0


@dataclass
class HFWriteReport(WriteReport):
    """`WriteReport` plus, per split, rows/shards/bytes per config and the wall time.

    ``dropped`` stays empty: this format holds everything the canonical schema holds.
    """

    splits: dict[str, SplitReport] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def frames(self) -> int:
        return sum(s.frames for s in self.splits.values())


def _ids_digest(ids: Sequence[str]) -> str:
    h = hashlib.sha1()
    for vid in ids:
        h.update(vid.encode("utf-8") + b"\0")
    return h.hexdigest()


class _Progress:
    """``OUT/.longrvos_hf/progress.json``: the options, and per split the shards completed."""

    def __init__(self, out: Path, options: dict[str, Any]) -> None:
        self.out = out
        self.path = out / STATE_DIR / PROGRESS_FILE
        self.options = options
        self.data: dict[str, Any] = {"layout": LAYOUT_VERSION, "options": options, "splits": {}, "complete": False}
        if self.path.exists():
            try:
                old = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                old = None
            if isinstance(old, dict) and old.get("layout") == LAYOUT_VERSION and old.get("options") == options:
                self.data = old
                self.data["complete"] = False
            else:
                log.info("%s: options changed since the last run; converting from scratch", out)
                self._forget_all(old)
        elif (out / "README.md").is_file():
            self._from_card()

    def _from_card(self) -> None:
        """A finished output keeps no progress file: its card records the splits it holds."""
        from ..loaders.hf import read_card
        try:
            section = read_card(self.out).section
        except DataError:
            return
        if section.get("layout") != LAYOUT_VERSION or section.get("options") != self.options:
            log.info("%s: options changed since the last run; converting from scratch", self.out)
            self._forget_all({"splits": section.get("splits") or {}})
            return
        for split, rec in (section.get("splits") or {}).items():
            self.data["splits"][split] = dict(rec, done=True)
        self.data["datasets"] = list(section.get("source_datasets") or [])
        self.data["skipped"] = dict(section.get("skipped") or {})

    def _forget_all(self, old: Any) -> None:
        shutil.rmtree(self.out / STATE_DIR / "staging", ignore_errors=True)
        if isinstance(old, dict):
            for split in (old.get("splits") or {}):
                _remove_final(self.out, split)

    def split(self, split: str, *, digest: str, count: int) -> dict:
        """The split's record; reset when its video list changed since the last run."""
        rec = self.data["splits"].get(split)
        if rec is not None and rec.get("done") and not all(
                (self.out / s.get("final", "?")).is_file() for c in CONFIGS for s in rec["configs"][c]):
            rec = dict(rec, ids=None)  # published shards were removed since: convert the split again
        if rec is None or rec.get("ids") != digest or rec.get("videos") != count:
            if rec is not None:
                log.info("%s: split %r changed since the last run; converting it again", self.out, split)
            shutil.rmtree(self.out / STATE_DIR / "staging" / split, ignore_errors=True)
            _remove_final(self.out, split)
            rec = {"ids": digest, "videos": count, "done": False, "configs": {c: [] for c in CONFIGS}}
            self.data["splits"][split] = rec
            self.save()
        return rec

    def keep_only(self, splits: Iterable[str]) -> None:
        """Forget unfinished splits a run no longer writes; finished ones stay in the output."""
        keep = set(splits)
        for split, rec in list(self.data["splits"].items()):
            if split not in keep and not rec.get("done"):
                shutil.rmtree(self.out / STATE_DIR / "staging" / split, ignore_errors=True)
                _remove_final(self.out, split)
                del self.data["splits"][split]

    def save(self) -> None:
        atomic_write_json(self.path, self.data, indent=1)


def _remove_final(out: Path, split: str) -> None:
    for config in CONFIGS:
        folder = out / "data" / config
        if folder.is_dir():
            for f in folder.glob(f"{split}-*-of-*.parquet"):
                if f.name[len(split) + 1:len(split) + 6].isdigit():
                    f.unlink()


def _check_out(out: Path) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise LongRVOSError(f"{out} exists and is not a folder")
    if (out / STATE_DIR / PROGRESS_FILE).exists():
        return
    if (out / "README.md").is_file():
        from ..loaders.hf import read_card
        try:
            if read_card(out).section:
                return   # a finished output of this package: splits are added to it
        except DataError:
            pass
    if any(p.name != LOCK for p in out.iterdir()):
        raise LongRVOSError(f"{out} is not empty and holds no earlier longrvos hf conversion; "
                            "choose an empty or new folder")


# -- the writer ------------------------------------------------------------------------
def _is_reader(source: Any) -> bool:
    return hasattr(source, "video_ids") and hasattr(source, "opened_from") and hasattr(source, "format")


#: Frames per worker task: long videos are shared between workers instead of leaving one
#: worker alone with the last video of a split.
PART_FRAMES = 32


def _iter_rows(source: Any, ids: Sequence[str] | None, start: int, fn: Callable[..., VideoRows], *,
               workers: int, problems: ProblemLog) -> Iterator[tuple[int, VideoRows]]:
    """``(index, rows)`` for every video from ``start``, in split order.

    A video that fails with `DataError` raises, or with ``on_error="skip"`` is recorded in
    ``problems`` and left out (its index is still used, so resumes line up).
    """
    if ids is not None:
        from ..parallel import map_videos
        todo = list(ids[start:])
        errors = "return" if problems.on_error == "skip" else "raise"
        for k, (_, parts) in enumerate(map_videos(source, todo, fn, workers=workers, progress=False, errors=errors,
                                                  part_frames=PART_FRAMES)):
            if isinstance(parts, DataError):
                problems.add(parts)
                continue
            yield start + k, join_rows(parts)
        return
    for index, video in enumerate(source):
        if index >= start:
            try:
                rows = fn(video)
            except DataError as err:
                problems.add(err)
                continue
            yield index, rows


def write(by_split: Mapping[str, Any], out: str | Path, *, workers: int = 1, link_frames: bool = False,
          shard_bytes: int = DEFAULT_SHARD_BYTES, progress: bool = False, source_format: str | None = None,
          source_root: str | Path | None = None, lossy: bool = False, on_error: OnError = "raise",
          pretty_name: str | None = None) -> HFWriteReport:
    """Write splits as a Hugging Face dataset (parquet shards + dataset card) under ``out``.

    Args:
        by_split: split name -> `SplitReader` (converted in ``workers`` processes) or any
            iterable of `Video` (converted in this process).
        out: output folder: new, empty, or an earlier (possibly interrupted) run's output,
            which is resumed after its last complete shard.
        workers: processes that build rows (mask reading/encoding); the parent writes in
            video order, so the output is the same for any ``workers``.
        link_frames: store frame paths relative to ``source_root`` instead of the bytes.
        shard_bytes: target shard size; a shard closes at the first video end past it.
        progress: show a progress bar.
        source_format: format id of the source (recorded in the card); taken from the
            readers when omitted.
        source_root: root the linked frame paths are relative to; defaults to the common
            folder of the readers' paths (required for plain iterables with ``link_frames``).
        lossy: accepted for the converter contract; nothing is ever dropped here.
        on_error: ``"skip"`` leaves a video that cannot be read out (listed in
            ``report.problems``) instead of stopping.
        pretty_name: the card's title.

    Returns:
        `HFWriteReport` with rows, shards and bytes per split and config.

    Raises:
        DataError: a video that cannot be read, a mask of the wrong size (nothing of that
            split's current shard becomes visible).
        LongRVOSError: ``out`` is a non-empty folder that holds no earlier conversion.

    Example:
        >>> ds = longrvos_data.load("data/long_rvos", split="valid")
        >>> write(ds.splits, "out/long_rvos_hf", workers=2)
        >>> datasets.load_dataset("out/long_rvos_hf", "expressions", split="valid")
    """
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    out = Path(out).absolute()
    _check_out(out)
    out.mkdir(parents=True, exist_ok=True)
    for split in by_split:
        if not _SPLIT_RE.match(split):
            raise LongRVOSError(f"split name {split!r} cannot be a Hugging Face split (letters, digits, _ and .)")
    readers = {s: src for s, src in by_split.items() if _is_reader(src)}
    if source_format is None and readers:
        source_format = next(iter(readers.values())).format
    root: str | None = None
    if link_frames:
        if source_root is None:
            if len(readers) != len(by_split):
                raise ValueError("link_frames with plain video lists needs source_root")
            source_root = os.path.commonpath([os.path.abspath(r.opened_from) for r in readers.values()])
            if os.path.isfile(source_root):
                source_root = os.path.dirname(source_root)
        root = os.path.abspath(source_root)
    options = {"link_frames": link_frames, "shard_bytes": int(shard_bytes), "source_root": root}
    state = _Progress(out, options)
    state.keep_only(by_split)
    fn = functools.partial(video_rows, link_frames=link_frames, source_root=root)
    report = HFWriteReport(target=FORMAT_NAME, out=out, lossy=lossy)
    problems = ProblemLog(on_error)
    datasets_seen: list[str] = list(state.data.get("datasets", []))

    for split, source in by_split.items():
        ids = list(source.video_ids()) if split in readers else None
        if ids is None:
            source = list(source) if not isinstance(source, Sequence) else source
            ids_for_digest = [v.video_id for v in source]
        else:
            ids_for_digest = ids
        rec = state.split(split, digest=_ids_digest(ids_for_digest), count=len(ids_for_digest))
        srep = SplitReport(videos=len(ids_for_digest))
        report.splits[split] = srep
        if not ids_for_digest and not rec["done"]:
            log.warning("%s: split %r has no videos; it is left out of the card (`datasets` cannot load it)",
                        out, split)
            rec["done"] = True
            state.save()
        if not rec["done"]:
            staging = out / STATE_DIR / "staging" / split
            for stale in staging.glob("*/*.tmp"):  # a shard a killed run had open
                stale.unlink()
            writers = {c: _ShardWriter(staging / c, c, split, _schema(c, link_frames and c == "frames"),
                                       shards=rec["configs"][c], shard_bytes=shard_bytes, on_shard=state.save)
                       for c in CONFIGS}
            start = min(w.resume_at for w in writers.values())
            srep.resumed_from = start
            if start:
                log.info("%s: resuming split %r at video %d of %d", out, split, start, len(ids_for_digest))
            bar = tqdm(total=len(ids_for_digest), initial=start, desc=f"hf {split}", unit="video",
                       disable=not progress, leave=False)
            skipped = state.data.setdefault("skipped", {}).setdefault(split, [])
            seen = len(problems.problems)
            try:
                for index, rows in _iter_rows(source, ids, start, fn, workers=workers, problems=problems):
                    for p in problems.problems[seen:]:   # saved with the next shard, listed in the card
                        if p.as_dict() not in skipped:
                            skipped.append(p.as_dict())
                    seen = len(problems.problems)
                    if rows.dataset not in datasets_seen:
                        datasets_seen.append(rows.dataset)
                    for config, w in writers.items():
                        if index < w.resume_at:
                            continue
                        if config == "frames":
                            for lo in range(0, rows.num_frames, w.rg_rows):
                                w.add(_frames_table(rows, lo, min(lo + w.rg_rows, rows.num_frames),
                                                    link_frames=link_frames))
                        else:
                            w.add(_rows_table(rows, config))
                        w.end_video(index)
                    bar.update()
                for p in problems.problems[seen:]:
                    if p.as_dict() not in skipped:
                        skipped.append(p.as_dict())
                for w in writers.values():
                    w.finish(total=len(ids_for_digest))
            except BaseException:
                for w in writers.values():
                    w.abort()
                raise
            finally:
                bar.close()
            state.data["datasets"] = datasets_seen
            _publish_split(out, split, rec)
            rec["done"] = True
            state.save()
        for config in CONFIGS:
            shards = rec["configs"][config]
            srep.configs[config] = {"rows": sum(s["rows"] for s in shards), "shards": len(shards),
                                    "nbytes": sum(s["nbytes"] for s in shards),
                                    "files_bytes": sum((out / s["final"]).stat().st_size for s in shards)}
        srep.frames = srep.configs["frames"]["rows"]
        report.videos[split] = srep.configs["videos"]["rows"]
        if srep.resumed_from:
            report.resumed[split] = srep.resumed_from

    from .. import __version__
    card = dataset_card(out, state.data["splits"], link_frames=link_frames, source_root=root,
                        source_format=source_format, datasets_seen=datasets_seen, version=__version__,
                        pretty_name=pretty_name, options=options, skipped=state.data.get("skipped") or {})
    atomic_write_bytes(out / "README.md", card.encode("utf-8"))
    shutil.rmtree(out / STATE_DIR, ignore_errors=True)   # the card now records every split: a finished output keeps no resume file
    report.problems.extend(problems.problems)
    report.seconds = time.perf_counter() - t0
    return report


def _publish_split(out: Path, split: str, rec: dict) -> None:
    """Give a finished split's shards their final ``-of-`` names (idempotent after a kill)."""
    for config in CONFIGS:
        shards = rec["configs"][config]
        folder = out / "data" / config
        folder.mkdir(parents=True, exist_ok=True)
        for k, shard in enumerate(shards):
            final = folder / shard_name(split, k, len(shards))
            staged = out / STATE_DIR / "staging" / split / config / shard["file"]
            if staged.exists():
                os.replace(staged, final)
            elif not final.exists():
                raise LongRVOSError(f"{staged}: a completed shard is missing; delete {out} and convert again")
            shard["final"] = final.relative_to(out).as_posix()


# -- the dataset card ------------------------------------------------------------------
def dataset_card(out: Path, splits: Mapping[str, dict], *, link_frames: bool, source_root: str | None,
                 source_format: str | None, datasets_seen: Sequence[str], version: str,
                 pretty_name: str | None = None, options: Mapping[str, Any] | None = None,
                 skipped: Mapping[str, Sequence[Mapping[str, Any]]] | None = None) -> str:
    """The README.md text: YAML made by `datasets`/`huggingface_hub`, then the prose.

    ``configs:`` lists every shard of every split (exact paths, so that ``train`` never
    matches ``train_sub``); ``dataset_info`` holds each config's features and split sizes.
    ``splits`` is the progress record: ``{split: {"configs": {config: [shard, ...]}}}``
    with each shard's ``final`` path, ``rows`` and ``nbytes``. A split of no rows is left out
    (`datasets` refuses to load one); ``longrvos.splits`` keeps every split's record so that
    a later run adds splits to the output, and ``skipped`` (videos left out by
    ``on_error="skip"``) is listed in the prose and in ``longrvos.skipped``.

    Example:
        >>> text = dataset_card(out, progress["splits"], link_frames=False, source_root=None,
        ...                     source_format="mevis", datasets_seen=["mevis"], version="0.1.0")
        >>> text.startswith("---")
        True
    """
    from datasets import DatasetInfo, SplitDict, SplitInfo
    from datasets.info import DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCard, DatasetCardData

    source = next((d for d in datasets_seen if d in LICENCES), source_format)
    lic = licence_for(source)
    records = {s: {k: v for k, v in rec.items() if k != "done"} for s, rec in splits.items()}
    empty = [s for s, rec in splits.items() if not sum(sh["rows"] for sh in rec["configs"]["videos"])]
    splits = {s: rec for s, rec in splits.items() if s not in empty}
    skipped = {s: list(v) for s, v in (skipped or {}).items() if v}
    card_data = DatasetCardData(
        license=lic.hub_id, pretty_name=pretty_name or f"{lic.name if source in LICENCES else source} (longrvos-data)",
        task_categories=["image-segmentation"], tags=["referring-video-object-segmentation", "video", "longrvos-data"],
        longrvos={"layout": LAYOUT_VERSION, "version": version, "source_format": source_format,
                  "source_datasets": list(datasets_seen), "link_frames": link_frames, "source_root": source_root,
                  "options": dict(options or {}), "splits": records, "skipped": skipped})
    infos = {}
    configs = {}
    for config in CONFIGS:
        split_dict = SplitDict()
        data_files = []
        for split, rec in splits.items():
            shards = rec["configs"][config]
            split_dict.add(SplitInfo(name=split, num_bytes=sum(s["nbytes"] for s in shards),
                                     num_examples=sum(s["rows"] for s in shards)))
            data_files.append({"split": split, "path": [s["final"] for s in shards]})
        files_bytes = sum((out / s["final"]).stat().st_size for rec in splits.values() for s in rec["configs"][config])
        dataset_size = sum(si.num_bytes for si in split_dict.values())
        infos[config] = DatasetInfo(features=config_features(config, link_frames=link_frames), splits=split_dict,
                                    download_size=files_bytes, dataset_size=dataset_size,
                                    size_in_bytes=files_bytes + dataset_size)
        configs[config] = {"data_files": data_files, **({"default": True} if config == DEFAULT_CONFIG else {})}
    DatasetInfosDict(infos).to_dataset_card_data(card_data)
    MetadataConfigs(configs).to_dataset_card_data(card_data)
    return str(DatasetCard(f"---\n{card_data}\n---\n" + _card_body(lic, source, source_format, link_frames,
                                                                      source_root, version, list(splits), empty,
                                                                      skipped)))


def _card_body(lic: SourceLicence, source: str | None, source_format: str | None, link_frames: bool,
               source_root: str | None, version: str, splits: list[str], empty: Sequence[str] = (),
               skipped: Mapping[str, Sequence[Mapping[str, Any]]] | None = None) -> str:
    frames = ("`image_path`: the frame's path relative to `source_root` "
              f"(`{source_root}`; the JPEG files are not in this folder)"
              if link_frames else "`image`: the source's JPEG bytes, never re-encoded")
    lines = [
        f"# {lic.name if source in LICENCES else (source or 'Video')} for referring video object segmentation",
        "",
        f"Converted by longrvos-data {version} from the `{source_format or 'unknown'}` layout"
        + (f" ([source]({lic.homepage}))" if lic.homepage else "") + f". Splits: {', '.join(splits)}."
        + (f" Left out, as they have no videos: {', '.join(empty)}." if empty else ""),
        "",
        "## Configs",
        "",
        "- `expressions` (default): one row per expression, the training unit: `video_id`, `exp_id`, "
        "`text`, `track_ids`, `kind` (static, dynamic, hybrid, referring, reasoning, no-target, caption), "
        "`kind_raw` (the source's value as JSON), `meta` (JSON), `frame_names` (the video's frames) and "
        "`masks`: the target's union mask per frame as COCO RLE `{size: [H, W], counts}`, aligned with "
        "`frame_names`, null where no target is present.",
        f"- `frames`: one row per frame: `video_id`, `frame_index`, `frame_name`, {frames}; "
        "`masks`: `{track_id, rle}` for the tracks present in the frame.",
        "- `videos`: one row per video: `height`, `width`, `fps`, `frame_names`, `tracks` (`track_id`, "
        "`category`, `meta`, `rles`: one RLE or null per frame) and `meta` (JSON).",
        "",
        "A mask is a COCO RLE (column-major, 1 = foreground); a whole `masks` list is null in splits "
        "without annotations. To get frame `i`'s target as a numpy array (H x W, uint8 0/1):",
        "",
        "```python",
        "import numpy as np",
        "from datasets import load_dataset",
        "expressions = load_dataset(PATH_OR_REPO, \"expressions\", split=\"" + (splits[0] if splits else "train")
        + "\")",
        "row = expressions[0]",
        "for name, rle in zip(row[\"frame_names\"], row[\"masks\"] or []):",
        "    if rle is None:                         # no target in this frame: an empty mask",
        "        continue",
        "    # with longrvos-data (pip install longrvos-data):",
        "    from longrvos_data import masks",
        "    mask = masks.decode(rle)                # numpy bool array, H x W",
        "    # or with pycocotools alone (column-major RLE, 1 = foreground):",
        "    from pycocotools import mask as mask_utils",
        "    same = mask_utils.decode({\"size\": rle[\"size\"], \"counts\": rle[\"counts\"].encode()})",
        "    assert np.array_equal(mask, same.astype(bool))",
        "    print(name, mask.shape, int(mask.sum()))",
        "```",
        "",
        "## Licence",
        "",
        lic.text,
        "",
    ]
    if skipped:
        lines += ["## Skipped videos", "", "Left out of this conversion (`--on-error skip`):", ""]
        for split, items in skipped.items():
            lines += [f"- `{split}`: {_problem_line(p)}" for p in items]
        lines.append("")
    if lic.citation:
        lines += ["## Citation", "", "```bibtex", lic.citation, "```", ""]
    return "\n".join(lines)


def _problem_line(p: Mapping[str, Any]) -> str:
    where = ": ".join(str(x) for x in (p.get("file"), p.get("video") and f"video {p['video']!r}",
                                       p.get("field") and f"field {p['field']!r}") if x)
    return f"{where}: {p.get('message')}" if where else str(p.get("message"))
