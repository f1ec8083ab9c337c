"""Codec motion for ReferMo: H.264 motion vectors and keyframes of any dataset's videos.

ReferMo reads the motion vectors an H.264 encoder chose, not optical flow. For every
video the frames are encoded with libx264 at a fixed GOP (``g=12, keyint_min=12,
sc_threshold=0, bf=0``, so that I-frames fall every 12 frames whatever the content) and
decoded again with FFmpeg's ``export_mvs``; each vector becomes, as the public extractor
(``scripts/extract_motion.py`` of Long_RVOS) computes it::

    v = source * motion / motion_scale          (pixels, sign: where the block moved to)
    v = (v_x / W / 0.0993703, v_y / H / 0.1130276)

written at its destination pixel, then max-pooled over 16x16 blocks (blocks without a
vector are 0): ``mv`` of shape (T, 2, ceil(H/16), ceil(W/16)), float32. I-frames have no
vectors (all 0).

One deliberate difference: the encoder uses ONE reference frame (``refs=1``). With
libx264's default of 3, a block may point two or three frames back, and FFmpeg's exported
vector does not say how far (``source`` is only -1 for "past"): the public extractor then
counts a +4 px/frame motion referenced two frames back as +8 px. With one reference every
vector is one frame's displacement. ``MotionParams(refs=3)`` gives the public behaviour.

Keyframes follow the public loaders: an I-frame whose next I-frame is exactly 12 frames
later, plus frame 0 (so the last GOP's I-frame is not one).

Output: ``<out>/<video_id>.npz`` with ``mv``, ``frame_types`` (one letter per frame, as
``av_get_picture_type_char``), ``keyframes`` (int32) and ``params_hash``; written
atomically, and a re-run skips videos whose file has the same ``params_hash``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import DataError, LongRVOSError, OnError, ProblemLog
from ..fsutil import atomic_open
from ..schema import Video, check_id

log = logging.getLogger("longrvos_data")

FORMAT_VERSION = 1
"""Bumped when the arrays' meaning changes; part of the parameters' hash."""

STD = (0.0993703, 0.1130276)
"""Per-axis standard deviation of normalised vectors (the public extractor's constants)."""

# av_get_picture_type_char for AVPictureType 0..7 (NONE, I, P, B, S, SI, SP, BI)
_PICT_CHARS = "?IPBSipb"


@dataclass(frozen=True)
class MotionParams:
    """What determines the vectors; any change gives another `hash` and a re-extraction.

    Attributes:
        gop: distance between I-frames (keyframes are I-frames followed by one ``gop`` later).
        refs: reference frames libx264 may use; 1 makes every vector one frame's motion.
        preset, crf: libx264 rate/quality settings (the public script uses ffmpeg's defaults).
        block: pooling block in pixels.
        fps: frame rate written in the stream (does not change the vectors).
    """

    gop: int = 12
    refs: int = 1
    preset: str = "medium"
    crf: int = 23
    block: int = 16
    fps: int = 6

    def hash(self) -> str:
        text = json.dumps({"version": FORMAT_VERSION, "std": STD, **dataclasses.asdict(self)}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def encoder_options(self) -> dict[str, str]:
        return {"g": str(self.gop), "keyint_min": str(self.gop), "sc_threshold": "0", "bf": "0",
                "refs": str(self.refs), "preset": self.preset, "crf": str(self.crf)}


@dataclass(frozen=True)
class Motion:
    """One video's motion: ``mv`` (T, 2, ceil(H/16), ceil(W/16)) float32, types and keyframes."""

    mv: np.ndarray
    frame_types: tuple[str, ...]
    keyframes: tuple[int, ...]
    params_hash: str

    def save(self, path: str | Path) -> None:
        """Write ``path`` (.npz, as ``np.savez_compressed``) atomically, the same bytes for the same motion
        (no time stamps in the archive, unlike numpy's own writer)."""
        import zipfile

        arrays = {"mv": self.mv, "frame_types": np.array(self.frame_types, dtype="<U1"),
                  "keyframes": np.asarray(self.keyframes, dtype=np.int32), "params_hash": np.array(self.params_hash)}
        with atomic_open(path, "wb") as fh, zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, array in arrays.items():
                info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                with zf.open(info, "w", force_zip64=True) as entry:
                    np.lib.format.write_array(entry, np.asanyarray(array), allow_pickle=False)

    @classmethod
    def load(cls, path: str | Path) -> "Motion":
        with np.load(path) as z:
            return cls(z["mv"], tuple(str(t) for t in z["frame_types"]), tuple(int(k) for k in z["keyframes"]),
                       str(z["params_hash"]))


def keyframes(frame_types: tuple[str, ...] | list[str], gop: int = 12) -> list[int]:
    """I-frames whose next I-frame is exactly ``gop`` frames later, with frame 0 added first."""
    starts = [i for i, t in enumerate(frame_types) if t == "I"]
    keys = [a for a, b in zip(starts, starts[1:]) if b == a + gop]
    if frame_types and (not keys or keys[0] > 0):
        keys.insert(0, 0)
    return keys


def pool_vectors(vectors: np.ndarray, height: int, width: int, block: int = 16) -> np.ndarray:
    """One frame's exported vectors (FFmpeg ``AVMotionVector`` records) as a (2, h, w) block map.

    Each vector's value goes to its destination pixel (clipped to the frame; of vectors
    clipped onto one pixel the last is kept, as the public extractor's dense map keeps it);
    each block keeps the maximum per axis; blocks without a vector are 0.
    """
    rows, cols = math.ceil(height / block), math.ceil(width / block)
    out = np.full((2, rows * cols), -np.inf, dtype=np.float64)
    if len(vectors):
        scale = vectors["source"] / vectors["motion_scale"].astype(np.float64)
        vx = vectors["motion_x"] * scale / width / STD[0]
        vy = vectors["motion_y"] * scale / height / STD[1]
        x = np.clip(vectors["dst_x"], 0, width - 1).astype(np.int64)
        y = np.clip(vectors["dst_y"], 0, height - 1).astype(np.int64)
        # destinations clipped onto one pixel: the last vector wins, as in a dense map
        _, last = np.unique((y * width + x)[::-1], return_index=True)
        keep = len(x) - 1 - last
        cell = (y[keep] // block) * cols + x[keep] // block
        np.maximum.at(out[0], cell, vx[keep])
        np.maximum.at(out[1], cell, vy[keep])
    out[np.isinf(out)] = 0.0
    return out.reshape(2, rows, cols).astype(np.float32)


def _read_rgb(path: Path, video: Video, index: int, size: tuple[int, int]) -> np.ndarray:
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None and not Path(path).is_file():
        raise DataError("frame image is missing", file=path, video=video.video_id, field=f"frames[{index}]")
    if image is None:
        raise DataError("frame image cannot be decoded", file=path, video=video.video_id, field=f"frames[{index}]")
    if image.shape[:2] != (video.height, video.width):
        raise DataError(f"frame is {image.shape[0]}x{image.shape[1]}, the video is {video.height}x{video.width}",
                        file=path, video=video.video_id, field=f"frames[{index}]")
    h, w = size
    if (h, w) != image.shape[:2]:  # 4:2:0 needs even sizes: repeat the last row/column
        image = np.pad(image, ((0, h - image.shape[0]), (0, w - image.shape[1]), (0, 0)), mode="edge")
    return image


def _av():
    try:
        import av
    except ImportError:
        raise LongRVOSError("codec motion needs PyAV: pip install 'longrvos-data[motion]'") from None
    return av


def _encode(video: Video, path: Path, params: MotionParams) -> None:
    av = _av()

    size = (video.height + video.height % 2, video.width + video.width % 2)
    with av.open(str(path), "w", format="h264") as container:
        stream = container.add_stream("libx264", rate=params.fps)
        stream.height, stream.width = size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.options = params.encoder_options()
        for i, frame in enumerate(video.frames):
            image = _read_rgb(frame.path, video, i, size)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _decode(path: Path) -> Iterator[tuple[str, np.ndarray]]:
    av = _av()

    with av.open(str(path), "r", format="h264") as container:
        stream = container.streams.video[0]
        stream.codec_context.options = {"flags2": "+export_mvs"}
        for frame in container.decode(stream):
            data = frame.side_data.get("MOTION_VECTORS")
            vectors = data.to_ndarray() if data is not None else np.empty(0, dtype=[("source", "i4")])
            yield _PICT_CHARS[int(frame.pict_type)] if 0 <= int(frame.pict_type) < 8 else "?", vectors


def extract(video: Video, params: MotionParams = MotionParams(), *, work_dir: str | Path | None = None) -> Motion:
    """Encode one video's frames, decode the vectors and pool them (module docstring).

    Frames stream one at a time; the only whole-video arrays are the pooled maps
    (T x 2 x H/16 x W/16 float32: 29 MB for 1,000 frames at 720p). The H.264 stream is a
    temporary file in ``work_dir`` (the system's by default).

    Raises:
        DataError: a frame is missing, undecodable or of the wrong size.
    """
    if video.num_frames == 0:
        raise DataError("video has no frames", file=video.source_file, video=video.video_id, field="frames")
    fd, tmp = tempfile.mkstemp(prefix=".motion.", suffix=".h264", dir=work_dir)
    os.close(fd)
    try:
        _encode(video, Path(tmp), params)
        rows, cols = math.ceil(video.height / params.block), math.ceil(video.width / params.block)
        mv = np.zeros((video.num_frames, 2, rows, cols), dtype=np.float32)
        types: list[str] = []
        for i, (kind, vectors) in enumerate(_decode(Path(tmp))):
            if i >= video.num_frames:
                break
            types.append(kind)
            if kind != "I":
                mv[i] = pool_vectors(vectors, video.height, video.width, params.block)
    finally:
        Path(tmp).unlink(missing_ok=True)
    if len(types) != video.num_frames:
        raise LongRVOSError(f"{video.video_id}: the encoder returned {len(types)} of {video.num_frames} frames")
    return Motion(mv, tuple(types), tuple(keyframes(types, params.gop)), params.hash())


def motion_path(out: str | Path, video_id: str) -> Path:
    check_id(video_id, file=None, video=video_id, field="video_id")
    return Path(out) / f"{video_id}.npz"


def _npz_error(path: Path, video_id: str, field: str, err: Exception) -> DataError:
    return DataError(f"cannot read the motion file ({type(err).__name__}: {err})", file=path, video=video_id,
                     field=field)


def _require(path: Path, video_id: str) -> None:
    if not path.is_file():
        raise DataError("no motion file for this video (run `longrvos baseline extract-motion`, or leave out the "
                        "motion folder to have it extracted)", file=path, video=video_id, field="motion")


def read_motion(folder: str | Path, video_id: str, *, num_frames: int | None = None) -> Motion:
    """``<folder>/<video_id>.npz``, checked: a missing or unreadable file, or one with another frame
    count than ``num_frames``, is a `DataError` naming the file, the video and the field."""
    import zipfile

    path = motion_path(folder, video_id)
    _require(path, video_id)
    try:
        motion = Motion.load(path)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        raise _npz_error(path, video_id, "mv", err) from None
    if num_frames is not None and motion.mv.shape[0] != num_frames:
        raise DataError(f"the motion file has {motion.mv.shape[0]} frames, the video {num_frames}: re-extract it",
                        file=path, video=video_id, field="mv")
    return motion


def read_keyframes(folder: str | Path, video_id: str) -> tuple[list[int], int]:
    """``(keyframes, frame count)`` of ``<folder>/<video_id>.npz``, reading only its small arrays
    (errors as `read_motion`)."""
    import zipfile

    path = motion_path(folder, video_id)
    _require(path, video_id)
    try:
        with np.load(path) as z:
            return [int(k) for k in z["keyframes"]], len(z["frame_types"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        raise _npz_error(path, video_id, "keyframes", err) from None


def is_current(path: Path, params: MotionParams) -> bool:
    """Whether ``path`` holds motion extracted with ``params`` (reads only its hash)."""
    try:
        with np.load(path) as z:
            return str(z["params_hash"]) == params.hash()
    except (OSError, ValueError, KeyError, EOFError):
        return False


def _extract_to(video: Video, *, out: str, params: MotionParams) -> int:
    extract(video, params, work_dir=out).save(motion_path(out, video.video_id))
    return video.num_frames


@dataclass
class MotionReport:
    """What `extract_split` did: videos written, videos already current (skipped), problems."""

    written: int = 0
    current: int = 0
    frames: int = 0
    problems: list = dataclasses.field(default_factory=list)


def extract_split(src: str | Path, out: str | Path, *, split: str | None = None, format: str | None = None,
                  params: MotionParams = MotionParams(), workers: int = 1, progress: bool = False,
                  on_error: OnError = "raise") -> MotionReport:
    """Extract the motion of every video of a dataset (one split, or the only one) into ``out``.

    A video whose ``<out>/<video_id>.npz`` already holds these ``params`` is skipped, so an
    interrupted run resumes; each file is written atomically.

    Example:
        >>> extract_split("samples/long_rvos", "motion/valid", split="valid", workers=2)
    """
    import functools

    from ..loaders import load
    from ..parallel import map_videos

    dataset = load(src, format=format, split=split, on_error=on_error)
    split = dataset.split_name(split)
    reader = dataset[split]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = MotionReport()
    ids = reader.video_ids()
    todo = [v for v in ids if not is_current(motion_path(out, v), params)]
    report.current = len(ids) - len(todo)
    problems = ProblemLog(on_error)
    fn = functools.partial(_extract_to, out=str(out), params=params)
    for _, result in map_videos(reader, todo, fn, workers=workers, progress=progress, desc=f"motion {split}",
                                errors="return"):
        if isinstance(result, DataError):
            problems.add(result)
            continue
        report.written += 1
        report.frames += result
    report.problems = dataset.problems.problems + problems.problems
    return report


__all__ = ["FORMAT_VERSION", "Motion", "MotionParams", "MotionReport", "STD", "extract", "extract_split",
           "is_current", "keyframes", "motion_path", "pool_vectors", "read_keyframes", "read_motion"]
