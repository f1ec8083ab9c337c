"""Server submission zips, after checking that nothing is missing.

Layouts (what each evaluation server unpacks):

- ``mevis`` (MeViS ``valid``, CodaLab): ``<video_id>/<exp_id>/<frame>.png`` at the zip root;
- ``long_rvos``: the same layout, the one the official ``run_eval.sh`` reads (Long-RVOS
  publishes its annotations: score a split locally with `evaluate` / ``longrvos eval``);
- ``ref_youtube_vos`` (Ref-YouTube-VOS ``valid``): ``Annotations/<video_id>/<exp_id>/<frame>.png``;
- ``lvos`` (LVOS ``test``, CodaLab): ``<video_id>/<frame>.png`` indexed PNGs at the root.

Every expression (LVOS: video) and every listed frame of the split must have a PNG of the
video's size; otherwise `pack` raises `IncompleteSubmission` listing every gap and writes
nothing (``allow_gaps=True`` writes what there is). PNG files go into the zip byte for
byte; RLE JSON predictions are rendered as 0/255 PNGs. Entries get the usual mode
(``-rw-r--r--``), the zip itself the umask's, as any file the package writes.
"""
from __future__ import annotations

import logging
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .. import masks as _masks
from ..errors import LongRVOSError
from ..fsutil import atomic_open
from ..schema import Video
from .. import predictions as P

log = logging.getLogger("longrvos_data")

LAYOUTS = ("mevis", "long_rvos", "ref_youtube_vos", "lvos")
_DEFAULT_LAYOUT = {"mevis": "mevis", "long_rvos": "long_rvos", "ref_youtube_vos": "ref_youtube_vos", "lvos": "lvos"}
_ENTRY_MODE = 0o100644 << 16   # a regular file, rw-r--r-- (zipfile's writestr default is 0600)
MAX_FRAMES_SHOWN = 5


class IncompleteSubmission(LongRVOSError):
    """The predictions do not cover the split; ``gaps`` lists every problem, one line each."""

    def __init__(self, gaps: list[str]) -> None:
        self.gaps = gaps
        shown = "\n".join(f"  {g}" for g in gaps[:50])
        more = f"\n  … and {len(gaps) - 50} more" if len(gaps) > 50 else ""
        super().__init__(f"{len(gaps)} gap(s) in the predictions; nothing was written "
                         f"(pass --allow-gaps to pack anyway):\n{shown}{more}")


@dataclass
class PackResult:
    """What `pack` wrote: the zip, its layout, how many PNGs, the gaps it tolerated, and
    whether the split has ground truth (then `evaluate` scores it locally)."""

    out: Path | None
    layout: str
    files: int
    gaps: list[str] = field(default_factory=list)
    extras: int = 0
    has_masks: bool = False


def _frames_text(names: list[str]) -> str:
    shown = ", ".join(names[:MAX_FRAMES_SHOWN])
    return shown + (f" and {len(names) - MAX_FRAMES_SHOWN} more" if len(names) > MAX_FRAMES_SHOWN else "")


def _check_png(path: Path, video: Video) -> str | None:
    """Why a prediction PNG is unusable (not a PNG, wrong size), from its header only."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(33)
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    header = P.png_header(head)
    if header is None:
        return "is not a PNG file"
    w, h = header[0], header[1]
    if (h, w) != (video.height, video.width):
        return f"is {w}x{h}, the video is {video.width}x{video.height}"
    return None


def _png_entries(root: Path, video: Video, layout: str, gaps: list[str]) -> Iterator[tuple[str, Path | bytes]]:
    prefix = "Annotations/" if layout == "ref_youtube_vos" else ""
    vdir = root / video.video_id
    if not vdir.is_dir():
        gaps.append(f"video {video.video_id}: no prediction folder {vdir}")
        return
    units = [None] if layout == "lvos" else [e.exp_id for e in video.expressions]
    for unit in units:
        folder = vdir if unit is None else vdir / unit
        where = f"video {video.video_id}" + ("" if unit is None else f" expression {unit}")
        if not folder.is_dir():
            gaps.append(f"{where}: no prediction folder {folder}")
            continue
        missing: list[str] = []
        for f in video.frames:
            path = folder / f"{f.name}.png"
            if not path.is_file():
                missing.append(f.name)
                continue
            bad = _check_png(path, video)
            if bad:
                gaps.append(f"{where}: frame {f.name}: {path} {bad}")
                continue
            arc = f"{prefix}{video.video_id}/" + ("" if unit is None else f"{unit}/") + f"{f.name}.png"
            yield arc, path
        if missing:
            gaps.append(f"{where}: {len(missing)} frame(s) missing: {_frames_text(missing)}")


def _rle_entries(entry: Any, video: Video, layout: str, gaps: list[str]) -> Iterator[tuple[str, Path | bytes]]:
    prefix = "Annotations/" if layout == "ref_youtube_vos" else ""
    if entry is None:
        gaps.append(f"video {video.video_id}: not in the prediction JSON")
        return
    if not isinstance(entry, dict):
        gaps.append(f"video {video.video_id}: entry is not an object of expressions")
        return
    for e in video.expressions:
        where = f"video {video.video_id} expression {e.exp_id}"
        seq = entry.get(e.exp_id)
        if not isinstance(seq, list):
            gaps.append(f"{where}: not in the prediction JSON" if seq is None else f"{where}: not a list of RLEs")
            continue
        if len(seq) < video.num_frames:
            gaps.append(f"{where}: {video.num_frames - len(seq)} frame(s) missing: "
                        f"{_frames_text([f.name for f in video.frames[len(seq):]])}")
        for i, f in enumerate(video.frames[:len(seq)]):
            rle = seq[i]
            if rle is None:
                mask = None
            elif not _masks.is_rle(rle) or [int(v) for v in rle["size"]] != [video.height, video.width]:
                gaps.append(f"{where}: frame {f.name}: not an RLE of size {video.height}x{video.width}")
                continue
            else:
                mask = _masks.decode(rle)
            png = _masks.png_bytes(np.where(mask, 255, 0).astype(np.uint8) if mask is not None
                                   else np.zeros((video.height, video.width), dtype=np.uint8))
            yield f"{prefix}{video.video_id}/{e.exp_id}/{f.name}.png", png


def pack(pred: str | Path, *, gt: Any, out: str | Path, split: str | None = None, format: str | None = None,
         layout: str | None = None, allow_gaps: bool = False, progress: bool | None = None) -> PackResult:
    """Check predictions against a split's metadata and zip them for the evaluation server.

    Args:
        pred: PNG folder (referring: ``<pred>/<video>/<exp>/<frame>.png``; LVOS:
            ``<pred>/<video>/<frame>.png``) or an RLE JSON (referring layouts only).
        gt: the dataset (root or split folder) whose split lists the videos, expressions
            and frames, or an iterable of `Video`s.
        out: the zip to write (atomically).
        split: the split to check against (default: its only split, else ``valid``).
        layout: ``mevis``, ``long_rvos``, ``ref_youtube_vos`` or ``lvos``; default from the dataset's format.
        allow_gaps: write the zip even when something is missing (gaps are returned).

    Raises:
        IncompleteSubmission: something is missing or malformed (and ``allow_gaps`` is False).

    Example:
        >>> pack("out/preds", gt="data/mevis", split="valid", out="mevis_valid.zip").files
        26324
    """
    from .runner import _resolve_gt

    provider, split, _, _ = _resolve_gt(gt, format=format, split=split)
    fmt = getattr(provider.reader, "format", None)
    layout = layout or _DEFAULT_LAYOUT.get(fmt or "")
    if layout not in LAYOUTS:
        raise LongRVOSError(f"no submission layout for format {fmt!r}; pass --layout ({', '.join(LAYOUTS)})")
    pred = Path(pred)
    if not pred.exists():
        raise LongRVOSError(f"{pred}: predictions not found")
    if pred.is_file() and layout == "lvos":
        raise LongRVOSError("LVOS submissions are indexed PNG folders, not RLE JSON")
    out = Path(out)
    gaps: list[str] = []
    ids = provider.ids()
    json_entries: dict[str, Any] | None = None
    if pred.is_file():
        wanted = set(ids)
        json_entries = {k: v for k, v in P.RleJson(pred).iter_videos() if k in wanted}

    count = 0
    show = sys.stderr.isatty() if progress is None else progress
    bar = None
    if show:
        from tqdm import tqdm
        bar = tqdm(total=len(ids), unit="video", desc="pack", file=sys.stderr)
    try:
        planned: dict[str, list[tuple[str, Path | bytes]]] | None = None
        if json_entries is None:   # PNGs: check everything (headers only) before writing anything
            planned = {vid: list(_png_entries(pred, provider.get(vid), layout, gaps)) for vid in ids}
            if gaps and not allow_gaps:
                raise IncompleteSubmission(gaps)
        with atomic_open(out, "wb") as fh, zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_STORED) as zf:
            for vid in ids:
                if planned is not None:
                    entries = planned[vid]
                else:
                    entries = _rle_entries(json_entries.get(vid), provider.get(vid), layout, gaps)
                for arc, src in entries:
                    if isinstance(src, Path):
                        info = zipfile.ZipInfo.from_file(src, arc)
                        data = src.read_bytes()
                    else:
                        info = zipfile.ZipInfo(arc, time.localtime()[:6])
                        data = src
                    info.external_attr = _ENTRY_MODE
                    zf.writestr(info, data, compress_type=zipfile.ZIP_STORED)
                    count += 1
                if bar is not None:
                    bar.update(1)
            if gaps and not allow_gaps:
                raise IncompleteSubmission(gaps)
    finally:
        if bar is not None:
            bar.close()
    extras = 0
    if json_entries is None:
        listed = set(ids)
        extras = sum(1 for p in pred.iterdir() if p.is_dir() and p.name not in listed)
        if extras:
            log.warning("%d prediction folder(s) are not videos of the split and were left out", extras)
    has_masks = bool(ids) and provider.get(ids[0]).has_masks
    return PackResult(out, layout, count, gaps, extras, has_masks)
