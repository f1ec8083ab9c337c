"""`longrvos validate`: every problem in a dataset, each with file, video and field.

The loader's own parsing catches what breaks the metadata (it runs with
``on_error="skip"`` so that one bad video does not hide the next); then every frame
image and every mask of every video is decoded and checked against the video's size.
"""
from __future__ import annotations

import importlib
from pathlib import Path

from PIL import Image

from .errors import DataError, Problem
from .loaders import LOADERS, detect_format, load
from .parallel import map_videos
from .schema import Video


def check_video(video: Video) -> list[Problem]:
    """Decode every frame and mask of one video; return what is wrong with them."""
    problems: list[Problem] = []

    def error(message: str, file, field: str) -> None:
        problems.append(Problem("error", message, None if file is None else str(file), video.video_id, field))

    for e in video.expressions:
        if not e.text.strip():
            error("expression text is empty", video.source_file, f"expressions.{e.exp_id}.exp")
    for i, frame in enumerate(video.frames):
        try:
            with Image.open(frame.path) as im:
                im.load()
                size = (im.height, im.width)
        except FileNotFoundError:
            error("frame image is missing", frame.path, f"frames[{i}]")
            continue
        except (OSError, SyntaxError, ValueError) as exc:
            error(f"frame image cannot be decoded ({exc})", frame.path, f"frames[{i}]")
            continue
        if size != (video.height, video.width):
            error(f"frame is {size[0]}x{size[1]}, the video is {video.height}x{video.width}", frame.path,
                  f"frames[{i}]")
    if video.mask_source is not None:
        for i in range(video.num_frames):
            try:
                for message in video.mask_source.check(i):
                    error(message, video.source_file, f"masks[{video.frames[i].name}]")
            except DataError as err:
                problems.append(Problem("error", err.message, err.file, err.video or video.video_id, err.field))
    return problems


def validate(path: str | Path, *, format: str | None = None, split: str | None = None, checksums: bool = False,
             workers: int = 1, progress: bool = False) -> list[Problem]:
    """All problems found in the dataset at ``path``; errors first, then warnings.

    Args:
        path: dataset root or one split folder.
        format: format id; detected when None.
        split: check only this split.
        checksums: also verify the SHA256 sums the release publishes (ReVOS).
        workers: processes for the per-video checks.

    Example:
        >>> [str(p) for p in validate("samples/mevis") if p.level == "error"]
        []
    """
    path = Path(path)
    try:
        fmt = format or detect_format(path)
        dataset = load(path, format=fmt, split=split, on_error="skip")
    except DataError as err:
        return [Problem("error", err.message, err.file, err.video, err.field)]
    problems: list[Problem] = []
    for reader in dataset.splits.values():
        try:
            ids = reader.video_ids()
        except DataError as err:
            problems.append(Problem("error", err.message, err.file, err.video, err.field))
            continue
        good = []
        for vid in ids:
            try:
                reader.video(vid)
                good.append(vid)
            except DataError as err:
                problems.append(Problem("error", err.message, err.file, err.video or vid, err.field))
        for _, found in map_videos(reader, good, check_video, workers=workers, progress=progress,
                                   desc=f"{reader.split} check"):
            problems.extend(found)
    problems.extend(dataset.problems.problems)
    extra = getattr(importlib.import_module(LOADERS[fmt]), "validate_extra", None)
    if extra is not None:
        problems.extend(extra(path, split=split, checksums=checksums))
    elif checksums:
        problems.append(Problem("warning", f"the {fmt} release publishes no checksums to verify", str(path)))
    seen: set[tuple] = set()
    unique = []
    for p in problems:
        key = (p.level, p.message, p.file, p.video, p.field)
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return sorted(unique, key=lambda p: p.level != "error")
