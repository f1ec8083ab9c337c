"""One video's rows of the hf layout as plain Python: the part of `converters.hf` that runs
in worker processes.

It imports neither `datasets` nor `pyarrow`, so a worker starts in a fraction of a second
and stays small; the parent turns the rows into Arrow tables against the features
declared in `converters.hf` and writes them.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from .. import masks as _masks
from ..errors import DataError
from ..schema import Video


@dataclass
class VideoRows:
    """Everything one video contributes to the three configs.

    ``expressions`` and ``videos`` are rows (dicts keyed by feature name); ``frames`` is
    column lists without the image, whose bytes the writer reads from ``frame_files`` a row
    group at a time, so that a long video never sits in memory whole.
    """

    video_id: str
    dataset: str
    expressions: list[dict[str, Any]]
    frames: dict[str, list]
    videos: list[dict[str, Any]]
    frame_files: list[str]
    num_frames: int


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)


def _rle(rle: Mapping, *, height: int, width: int, video: Video, track: str, index: int) -> dict:
    """A codec RLE checked against the video's size, in the column's shape."""
    size = [int(v) for v in rle["size"]]
    if size != [height, width]:
        raise DataError(f"mask is {size[0]}x{size[1]}, the video is {height}x{width}",
                        file=video.source_file, video=video.video_id,
                        field=f"masks[{video.frames[index].name}][{track}]")
    counts = rle["counts"]
    if not isinstance(counts, str):  # uncompressed or bytes counts: normalise through the codec
        counts = _masks.union([rle])["counts"]
        counts = counts.decode("ascii") if isinstance(counts, bytes) else counts
    return {"size": size, "counts": counts}


_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}   # start-of-frame markers (C4 DHT, C8, CC DAC)
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_HEAD = 4096


def _jpeg_size(fh: Any, head: bytes) -> tuple[int, int] | None:
    """``(height, width)`` from the JPEG's start-of-frame segment, None when there is none before the scan."""
    pos, buf, base = 2, head, 0
    while True:
        if pos + 9 > base + len(buf):       # the segment header lies past what was read
            fh.seek(pos)
            buf, base = fh.read(_HEAD), pos
            if len(buf) < 4:
                return None
        k = pos - base
        if buf[k] != 0xFF:
            return None
        marker = buf[k + 1]
        if marker == 0xFF:                  # fill byte
            pos += 1
            continue
        if marker in _JPEG_SOF:
            return int.from_bytes(buf[k + 5:k + 7], "big"), int.from_bytes(buf[k + 7:k + 9], "big")
        if marker in (0xD9, 0xDA):          # end of image, start of scan: no frame header before
            return None
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        pos += 2 + int.from_bytes(buf[k + 2:k + 4], "big")


def check_frame(path: str, *, height: int, width: int, video_id: str, field: str) -> None:
    """Refuse a frame file that is not a whole JPEG or PNG of the video's size, reading its ends only.

    JPEG: the start (FF D8) and end (FF D9) markers and the start-of-frame header's size;
    PNG: the signature, the IHDR size and the closing IEND chunk. A full decode is
    `longrvos validate`'s.

    Raises:
        DataError: naming the file, the video and the frame.
    """
    where = dict(file=path, video=video_id, field=field)
    try:
        with open(path, "rb", buffering=0) as fh:
            head = fh.read(_HEAD)
            size = os.fstat(fh.fileno()).st_size
            fh.seek(max(size - len(_PNG_IEND), 0))
            tail = fh.read(len(_PNG_IEND))
            if head[:2] == b"\xff\xd8":
                kind, found = "JPEG", _jpeg_size(fh, head)
                if found is None:
                    raise DataError("frame is not a readable JPEG: no frame header (SOF marker) before the image data",
                                    **where)
                if tail[-2:] != b"\xff\xd9":
                    raise DataError("frame is not a complete JPEG: it does not end with the end-of-image marker "
                                    "FF D9 (truncated?)", **where)
            elif head[:8] == _PNG_SIGNATURE and head[12:16] == b"IHDR" and len(head) >= 24:
                kind = "PNG"
                found = int.from_bytes(head[20:24], "big"), int.from_bytes(head[16:20], "big")
                if tail != _PNG_IEND:
                    raise DataError("frame is not a complete PNG: it does not end with an IEND chunk (truncated?)",
                                    **where)
            else:
                raise DataError(f"frame is neither a JPEG nor a PNG (it starts with {head[:8].hex(' ')!r})", **where)
    except OSError as exc:
        raise DataError(f"frame image is missing or unreadable ({exc.strerror or exc})", **where) from None
    if found != (height, width):
        raise DataError(f"frame is {found[1]}x{found[0]} ({kind} header), the video is {width}x{height}", **where)


def _relative(path: Path, root: str, video: Video, index: int) -> str:
    rel = os.path.relpath(os.path.abspath(path), root)
    if rel == ".." or rel.startswith(".." + os.sep) or os.path.isabs(rel):
        raise DataError(f"frame file {path} is outside the source root {root}", file=video.source_file,
                        video=video.video_id, field=f"frames[{index}]")
    return rel.replace(os.sep, "/")


def video_rows(video: Video, frames: range | None = None, *, link_frames: bool = False,
               source_root: str | None = None) -> VideoRows:
    """Build one video's rows, or a run of its frames' (``frames``, default all): every
    frame's RLEs once, expression unions from them.

    Masks are read frame by frame (`Video.frame_rles`: no decode for RLE sources, one PNG
    decode + encode for PNG sources), so memory holds RLEs only. Frame files are checked
    before anything is returned, so a bad video never leaves part of its rows behind. The
    rows of consecutive runs join into the video's with `join_rows`.

    Raises:
        DataError: a mask whose size is not the video's, a mask for an unknown track, a
            missing frame file, a frame outside ``source_root``, a frame that fails `check_frame`.

    Example:
        >>> rows = video_rows(video)
        >>> len(rows.expressions) == len(video.expressions)
        True
    """
    h, w = video.height, video.width
    frames = range(video.num_frames) if frames is None else frames
    n = len(frames)
    track_ids = [t.track_id for t in video.tracks]
    known = set(track_ids)
    per_track: dict[str, list] | None = None
    frame_masks: list[list[dict]] | None = None
    if video.has_masks:
        per_track = {tid: [None] * n for tid in track_ids}
        frame_masks = []
        for k, i in enumerate(frames):
            rles = video.frame_rles(i)
            unknown = sorted(set(rles) - known)
            if unknown:
                raise DataError(f"masks for unknown track(s) {unknown}", file=video.source_file,
                                video=video.video_id, field=f"masks[{video.frames[i].name}]")
            row = []
            for tid in track_ids:
                if tid in rles:
                    rle = _rle(rles[tid], height=h, width=w, video=video, track=tid, index=i)
                    per_track[tid][k] = rle
                    row.append({"track_id": tid, "rle": rle})
            frame_masks.append(row)

    exp_rows = []
    for e in video.expressions:
        exp_masks = None
        if per_track is not None:
            exp_masks = []
            for k in range(n):
                present = [per_track[t][k] for t in e.track_ids if per_track[t][k] is not None]
                if not present:
                    exp_masks.append(None)
                elif len(present) == 1:
                    exp_masks.append(present[0])
                else:
                    u = _masks.union(present)
                    exp_masks.append({"size": u["size"], "counts": u["counts"]})
        exp_rows.append({"video_id": video.video_id, "exp_id": e.exp_id, "text": e.text,
                         "track_ids": list(e.track_ids), "kind": e.kind,
                         "kind_raw": None if e.kind_raw is None else _json(e.kind_raw),
                         "meta": _json(dict(e.meta)), "frame_names": [video.frames[i].name for i in frames],
                         "masks": exp_masks})

    files = [str(video.frames[i].path) for i in frames]
    for i, path in zip(frames, files):
        check_frame(path, height=h, width=w, video_id=video.video_id, field=f"frames[{i}]")
    columns: dict[str, list] = {
        "video_id": [video.video_id] * n,
        "frame_index": list(frames),
        "frame_name": [video.frames[i].name for i in frames],
    }
    if link_frames:
        if source_root is None:
            raise ValueError("link_frames needs a source_root")
        columns["image_path"] = [_relative(video.frames[i].path, source_root, video, i) for i in frames]
    columns["masks"] = frame_masks if frame_masks is not None else [None] * n

    video_row = {
        "video_id": video.video_id, "dataset": video.dataset, "height": h, "width": w,
        "fps": None if video.fps is None else float(video.fps), "frame_names": video.frame_names,
        "has_masks": video.has_masks,
        "tracks": [{"track_id": t.track_id, "category": t.category, "meta": _json(dict(t.meta)),
                    "rles": None if per_track is None else per_track[t.track_id]} for t in video.tracks],
        "meta": _json(dict(video.meta)),
    }
    return VideoRows(video_id=video.video_id, dataset=video.dataset, expressions=exp_rows, frames=columns,
                     videos=[video_row], frame_files=files, num_frames=n)


def join_rows(parts: Sequence[VideoRows]) -> VideoRows:
    """One video's rows from the rows of its consecutive runs of frames (`video_rows`)."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0]

    def joined(lists: Iterable[list | None]) -> list | None:
        lists = list(lists)
        return None if lists[0] is None else [x for seq in lists for x in seq]

    expressions = [dict(row, masks=joined(p.expressions[k]["masks"] for p in parts),
                        frame_names=joined(p.expressions[k]["frame_names"] for p in parts))
                   for k, row in enumerate(first.expressions)]
    video = first.videos[0]
    tracks = [dict(t, rles=joined(p.videos[0]["tracks"][k]["rles"] for p in parts))
              for k, t in enumerate(video["tracks"])]
    return VideoRows(video_id=first.video_id, dataset=first.dataset, expressions=expressions,
                     frames={c: joined(p.frames[c] for p in parts) for c in first.frames},
                     videos=[dict(video, tracks=tracks)], frame_files=joined(p.frame_files for p in parts),
                     num_frames=sum(p.num_frames for p in parts))
