"""`longrvos validate`: every problem in a dataset, each with file, video and field.

The loader's own parsing catches what breaks the metadata (it runs with
``on_error="skip"`` so that one bad video does not hide the next); then every frame
image and every mask of every video is decoded and checked against the video's size.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Iterable, Mapping

from PIL import Image

from .errors import DataError, Problem
from .masks import png_crc_error
from .loaders import LOADERS, detect_format, load
from .loaders.base import duplicate_keys, read_json
from .parallel import map_videos
from .schema import Video, check_id


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
            if Path(frame.path).suffix.lower() == ".png":   # Pillow does not check the image data's CRC
                corrupt = png_crc_error(Path(frame.path).read_bytes())
                if corrupt is not None:
                    error(f"frame image is corrupt: {corrupt}", frame.path, f"frames[{i}]")
                    continue
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
        # what a lenient reader accepted but noted while decoding (Long-RVOS grey-level PNGs)
        problems.extend(video.mask_source.findings())
    return problems


def metadata_id_problems(files: Iterable[str | Path]) -> list[Problem]:
    """Every id in ``{"videos": ...}`` metadata files that could escape a folder (`schema.check_id`).

    Loaders refuse an unsafe id only where they use it; this walks each whole file, so that
    an entry a loader ignores (an LVOS caption or attribute entry of a video the meta file
    lacks, the test videos of a Ref-YouTube-VOS valid file, a video of ``meta.json`` no
    expression names) is reported as the error it is. Checked: video ids, expression ids,
    string ``obj_id`` values, ``objects`` keys and every ``frames`` name. Fields are named
    as the loaders name them, so that a problem both find is listed once.
    """
    found: list[Problem] = []

    def check(value, file: Path, video: str, field: str) -> None:
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            try:
                check_id(value, file=file, video=video, field=field)
            except DataError as err:
                found.append(Problem("error", err.message, err.file, video, field))

    def frames(names, file: Path, video: str, prefix: str) -> None:
        for i, name in enumerate(names if isinstance(names, list) else ()):
            check(name, file, video, f"{prefix}[{i}]")

    for file in dict.fromkeys(Path(f) for f in files):
        try:
            videos = read_json(file).get("videos")
        except (DataError, AttributeError):
            continue                        # unreadable or not an object: the loader says so
        for vid, entry in (videos.items() if isinstance(videos, dict) else ()):
            check(vid, file, vid, "video_id")
            if not isinstance(entry, dict):
                continue
            frames(entry.get("frames"), file, vid, "frames")
            exps = entry.get("expressions")
            for exp_id, exp in (exps.items() if isinstance(exps, dict) else ()):
                check(exp_id, file, vid, f"expressions.{exp_id}")
                if isinstance(exp, dict) and isinstance(exp.get("obj_id"), str):
                    check(exp["obj_id"], file, vid, f"expressions.{exp_id}.obj_id")
            objects = entry.get("objects")
            for key, obj in (objects.items() if isinstance(objects, dict) else ()):
                check(key, file, vid, f"objects.{key}")
                if isinstance(obj, dict):
                    frames(obj.get("frames"), file, vid, f"objects.{key}.frames")
    return found


def validate(path: str | Path, *, format: str | None = None, split: str | None = None, checksums: bool = False,
             workers: int = 1, progress: bool = False, load_options: Mapping[str, Any] | None = None
             ) -> list[Problem]:
    """All problems found in the dataset at ``path``; errors first, then warnings.

    A key repeated within one object of a metadata JSON is an error here (naming the file
    and the key path), where loading only warns and keeps the last value (`read_json`).
    See `_validate` for the arguments.
    """
    with duplicate_keys() as repeated:
        problems = _validate(path, format=format, split=split, checksums=checksums, workers=workers,
                             progress=progress, load_options=load_options)
    known = {(p.level, p.message, p.file, p.video, p.field) for p in problems}
    extra = [p for p in dict.fromkeys(repeated) if (p.level, p.message, p.file, p.video, p.field) not in known]
    return sorted([*problems, *extra], key=lambda p: p.level != "error")


def _validate(path: str | Path, *, format: str | None = None, split: str | None = None, checksums: bool = False,
              workers: int = 1, progress: bool = False, load_options: Mapping[str, Any] | None = None
              ) -> list[Problem]:
    """All problems found in the dataset at ``path``; errors first, then warnings.

    Args:
        path: dataset root or one split folder.
        format: format id; detected when None.
        split: check only this split.
        checksums: also verify the SHA256 sums the release publishes (ReVOS).
        workers: processes for the per-video checks.
        load_options: format options for `loaders.load` (``project``: ``provenance``, ``status``).

    Example:
        >>> [str(p) for p in validate("samples/mevis") if p.level == "error"]
        []
    """
    path = Path(path)
    try:
        fmt = format or detect_format(path)
        dataset = load(path, format=fmt, split=split, on_error="skip", **(load_options or {}))
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
    problems.extend(metadata_id_problems(f for reader in dataset.splits.values()
                                         for f in getattr(reader, "metadata_files", lambda: ())()))
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
