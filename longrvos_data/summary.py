"""`longrvos info`: what a dataset holds, counted from its metadata (and masks with ``deep``)."""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Mapping

from .errors import DataError, OnError
from .loaders import detect_format, load
from .parallel import map_videos
from .schema import KINDS, Video

COUNT_KEYS = ("videos", "frames", "tracks", "expressions")


def count_masks(video: Video) -> int:
    """Number of (track, frame) pairs whose mask has at least one pixel; decodes each frame once."""
    if not video.has_masks:
        return 0
    return sum(sum(1 for a in video.frame_areas(i).values() if a > 0) for i in range(video.num_frames))


def _summarise_split(reader, *, deep: bool, workers: int, progress: bool) -> dict[str, Any]:
    """Counts of the videos that could be read: with ``on_error="skip"`` a video that fails to
    load, or whose masks fail to decode with ``deep``, is recorded in ``reader.problems`` and
    counted nowhere."""
    read: dict[str, tuple] = {v.video_id: (v.num_frames, len(v.tracks), [e.kind for e in v.expressions],
                                           f"{v.height}x{v.width}") for v in reader}
    masks: dict[str, int] = {}
    if deep:
        errors = "return" if reader.problems.on_error == "skip" else "raise"
        for vid, n in map_videos(reader, list(read), count_masks, workers=workers, progress=progress,
                                 desc=f"{reader.split} masks", errors=errors):
            if isinstance(n, DataError):
                reader.problems.add(n)
                del read[vid]
            else:
                masks[vid] = n
    kinds: Counter[str] = Counter()
    resolutions: Counter[str] = Counter()
    out: dict[str, Any] = {"videos": len(read), "frames": 0, "tracks": 0, "expressions": 0}
    for frames, tracks, video_kinds, resolution in read.values():
        out["frames"] += frames
        out["tracks"] += tracks
        out["expressions"] += len(video_kinds)
        kinds.update(video_kinds)
        resolutions[resolution] += 1
    out["expressions_by_kind"] = {k: kinds[k] for k in KINDS if kinds[k]}
    out["resolutions"] = dict(sorted(resolutions.items(), key=lambda kv: (-kv[1], kv[0])))
    if deep:
        out["masks"] = sum(masks.values())
    if not reader.in_totals:
        out["in_totals"] = False
    return out


def summarise(path: str | Path, *, format: str | None = None, split: str | None = None, deep: bool = False,
              workers: int = 1, on_error: OnError = "raise", progress: bool = False,
              load_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Counts per split and in total, as `longrvos info --json` prints them.

    Keys: ``format``, ``version``, ``path``, ``splits`` (per split: ``videos``, ``frames``,
    ``tracks``, ``expressions``, ``expressions_by_kind``, ``resolutions`` and, with
    ``deep``, ``masks``), the same totals at the top level (splits such as ReVOS
    ``train_sub`` are listed but not totalled), and ``problems`` (warnings, and with
    ``on_error="skip"`` the videos left out, which are counted nowhere).

    Example:
        >>> summarise("samples/long_rvos")["expressions_by_kind"]
        {'static': 7, 'dynamic': 5, 'hybrid': 4}
    """
    path = Path(path)
    fmt = format or detect_format(path)
    dataset = load(path, format=fmt, split=split, on_error=on_error, **(load_options or {}))
    splits = {name: _summarise_split(reader, deep=deep, workers=workers, progress=progress)
              for name, reader in dataset.splits.items()}
    totals: dict[str, Any] = {k: 0 for k in COUNT_KEYS}
    kinds: Counter[str] = Counter()
    resolutions: Counter[str] = Counter()
    masks = 0
    for s in splits.values():
        if s.get("in_totals", True):
            for k in COUNT_KEYS:
                totals[k] += s[k]
            kinds.update(s["expressions_by_kind"])
            resolutions.update(s["resolutions"])
            masks += s.get("masks", 0)
    summary: dict[str, Any] = {"format": fmt, "version": dataset.version, "path": str(path), "splits": splits,
                               **totals, "expressions_by_kind": {k: kinds[k] for k in KINDS if kinds[k]},
                               "resolutions": dict(sorted(resolutions.items(), key=lambda kv: (-kv[1], kv[0])))}
    if deep:
        summary["masks"] = masks
    if dataset.problems.problems:
        summary["problems"] = [p.as_dict() for p in dataset.problems.problems]
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    """A human-readable table of a `summarise` result (its problems are the caller's to print)."""
    cols = list(COUNT_KEYS) + (["masks"] if "masks" in summary else [])
    version = f" {summary['version']}" if summary.get("version") else ""
    lines = [f"{summary['path']}: {summary['format']}{version}", ""]
    rows = [(name + ("" if s.get("in_totals", True) else " (subset)"), s) for name, s in summary["splits"].items()]
    rows.append(("total", summary))
    width = max(len(r[0]) for r in rows) + 2
    lines.append("split".ljust(width) + "".join(c.rjust(13) for c in cols))
    for name, s in rows:
        lines.append(name.ljust(width) + "".join(str(s.get(c, "")).rjust(13) for c in cols))
    kinds = ", ".join(f"{k} {n}" for k, n in summary["expressions_by_kind"].items()) or "none"
    res = ", ".join(f"{r} ({n})" for r, n in list(summary["resolutions"].items())[:6])
    lines += ["", f"expressions by kind: {kinds}", f"resolutions: {res or 'none'}"]
    return "\n".join(lines)
