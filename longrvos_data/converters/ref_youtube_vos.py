"""Write canonical videos, from any source, in the Ref-YouTube-VOS layout.

Output (what `longrvos_data.loaders.ref_youtube_vos` and the official loaders read)::

    out/
      meta_expressions/<split>/meta_expressions.json   {"videos": {vid: {"expressions": {exp_id:
                                                          {"exp": str, "obj_id": "1"}}, "frames": [...]}}}
      <split>/JPEGImages/<vid>/<frame>.jpg             the source's frame files, linked or copied
      <split>/Annotations/<vid>/<frame>.png            palette PNG per frame (videos with masks)
      <split>/meta.json                                {"videos": {vid: {"objects": {"1": {"category":
                                                          str | null, "frames": [frames where present]}}}}}

What the format cannot hold is refused with a `DataError` naming the video and the field
(nothing is dropped silently):
- an expression naming several objects, or none (no-target) in a video with masks;
- overlapping masks (one object per pixel);
- track ids that are not decimal integers 1..254 (0 is background, 255 void, PNGs are 8-bit);
- frame names whose sorted order is not the video's order (the format orders frames by name);
- one video id in both ``valid`` and ``test`` (the loader subtracts the test file from valid).

Choices, documented here because the official layout is silent about them:
- ``meta.json`` is written for every split that has masks, categories, or tracks that no
  expression names (so that they survive); an unknown category is ``null``. An object's ``frames`` lists the frames where it is present (videos with masks only).
- Every frame of a video with masks gets a PNG, all-zero where no object is present.
- Each split's expression file lists its own videos only (the official valid file also lists
  the test videos; the loader gives the same splits either way). A valid split written
  without test gets a test file listing no video: the official loaders, and this package's,
  need it to tell valid from test.
- An expression without target in a video without masks (a hidden target, as in the official
  valid split) is written without ``obj_id``.
- An expression kind other than ``referring`` is kept in an extra ``"kind"`` key, which the
  official loaders ignore and this package's loader reads back.
- Frames keep their bytes and their extension (never re-encoded).
- JSON files are written last, atomically: a refused input leaves no expression file, and the
  frame and mask folders this call created are removed.
"""
from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from .. import masks as _masks
from ..errors import DataError
from ..fsutil import atomic_write_json
from ..loaders.ref_youtube_vos import RefYouTubeVOSPaths as P
from ..schema import Video, check_id
from .ytvis import copy_frames, frame_files

log = logging.getLogger("longrvos_data")

_TRACK_ID = re.compile(r"^[1-9][0-9]*$")
_MAX_ID = 254


def _track_values(video: Video) -> dict[str, int]:
    """``{track_id: palette value}``; refuses ids a palette PNG cannot hold."""
    values: dict[str, int] = {}
    for t in video.tracks:
        if not _TRACK_ID.match(t.track_id) or not 1 <= int(t.track_id) <= _MAX_ID:
            raise DataError(f"track id {t.track_id!r} is not a decimal integer in 1..{_MAX_ID}, which a palette "
                            "PNG needs (0 = background, 255 = void); renumber the tracks first",
                            file=video.source_file, video=video.video_id, field=f"tracks.{t.track_id}")
        values[t.track_id] = int(t.track_id)
    return values


def _expression_entries(video: Video) -> dict[str, dict[str, Any]]:
    """The video's ``expressions`` object; refuses multi-object and no-target expressions."""
    out: dict[str, dict[str, Any]] = {}
    for e in video.expressions:
        where = dict(file=video.source_file, video=video.video_id, field=f"expressions.{e.exp_id}")
        if len(e.track_ids) > 1:
            raise DataError(f"names {len(e.track_ids)} objects {list(e.track_ids)}; Ref-YouTube-VOS holds one "
                            "object per expression", **where)
        if e.kind == "no-target" or (not e.track_ids and video.has_masks):
            raise DataError("is a no-target expression; Ref-YouTube-VOS holds one object per expression", **where)
        entry: dict[str, Any] = {"exp": e.text}
        if e.track_ids:
            entry["obj_id"] = e.track_ids[0]
        if e.kind != "referring":
            entry["kind"] = e.kind
        out[e.exp_id] = entry
    return out


def _frame_files(video: Video) -> list[str]:
    """Each frame's file name (`ytvis.frame_files`); refuses names that do not sort in frame order."""
    names = video.frame_names
    if sorted(names) != names:
        raise DataError("frame names do not sort in frame order; Ref-YouTube-VOS orders frames by name "
                        "(rename them, e.g. zero-padded)", file=video.source_file, video=video.video_id,
                        field="frames")
    return frame_files(video)


class _Writer:
    """Writes videos one at a time; JSON last; removes what it created if anything fails."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.expressions: dict[str, dict[str, Any]] = {}
        self.objects: dict[str, dict[str, Any]] = {}
        self.needs_objects: dict[str, bool] = {}
        self.created: list[Path] = []

    def _fresh_dir(self, path: Path) -> Path:
        """Make ``path``; remember its topmost folder that did not exist, for `rollback`."""
        top, probe = None, path
        while probe != self.out and probe != probe.parent and not probe.exists():
            top, probe = probe, probe.parent
        if top is not None:
            self.created.append(top)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def add_split(self, split: str) -> None:
        check_id(split, file=None, video=None, field="split")
        if split not in self.expressions:
            self.expressions[split] = {}
            self.objects[split] = {}
            self.needs_objects[split] = False
            self._fresh_dir(self.out / split / P.IMAGES)

    def add(self, split: str, video: Video) -> None:
        vid = video.video_id
        if vid in self.expressions[split]:
            raise DataError("video id is written twice in this split", file=video.source_file, video=vid,
                            field="video_id")
        other = {"valid": P.TEST, "val": P.TEST, P.TEST: "valid"}.get(split)
        if other is not None and vid in self.expressions.get(other, {}):
            raise DataError(f"video id is in both {split!r} and {other!r}; the loader subtracts the test videos "
                            "from valid", file=video.source_file, video=vid, field="video_id")
        values = _track_values(video)
        entries = _expression_entries(video)
        files = _frame_files(video)  # checked before anything of the video is written
        copy_frames(video, self._fresh_dir(self.out / split / P.IMAGES / vid), files)

        present: dict[str, list[str]] | None = None
        if video.has_masks:
            present = self._write_masks(self._fresh_dir(self.out / split / P.ANNOTATIONS / vid), video, values)
            self.needs_objects[split] = True
        named = {tid for e in video.expressions for tid in e.track_ids}
        if any(t.track_id not in named for t in video.tracks):
            self.needs_objects[split] = True      # only meta.json keeps tracks no expression names
        objects: dict[str, Any] = {}
        for t in video.tracks:
            obj: dict[str, Any] = {"category": t.category or None}
            if present is not None:
                obj["frames"] = present[t.track_id]
            objects[t.track_id] = obj
            if t.category:
                self.needs_objects[split] = True
        self.objects[split][vid] = {"objects": objects}
        self.expressions[split][vid] = {"expressions": entries, "frames": video.frame_names}

    def _write_masks(self, folder: Path, video: Video, values: Mapping[str, int]) -> dict[str, list[str]]:
        """One palette PNG per frame; returns each track's frames where it is present."""
        shape = (video.height, video.width)
        present: dict[str, list[str]] = {tid: [] for tid in values}
        for i, name in enumerate(video.frame_names):
            where = dict(file=video.source_file, video=video.video_id, field=f"masks[{i}]")
            labels = np.zeros(shape, dtype=np.uint8)
            for tid, mask in video.frame_masks(i).items():
                if tid not in values:
                    raise DataError(f"frame {name}: mask of unknown track {tid!r}", **where)
                if mask.shape != shape:
                    raise DataError(f"frame {name}: mask of track {tid} is {mask.shape[0]}x{mask.shape[1]}, "
                                    f"the video is {shape[0]}x{shape[1]}", **where)
                taken = labels[mask]
                clash = taken[taken != 0]
                if clash.size:
                    others = sorted({str(v) for v in np.unique(clash)}, key=int)
                    raise DataError(f"frame {name}: track {tid} overlaps track(s) {', '.join(others)} on "
                                    f"{clash.size} pixel(s); a palette PNG holds one object per pixel", **where)
                labels[mask] = values[tid]
                if mask.any():
                    present[tid].append(name)
            _masks.write_palette_png(folder / f"{name}.png", labels)
        return present

    def finish(self) -> None:
        for split, videos in self.expressions.items():
            atomic_write_json(self.out / P.META_DIR / split / P.META_FILE, {"videos": videos})
            if self.needs_objects[split]:
                atomic_write_json(self.out / split / P.OBJECTS, {"videos": self.objects[split]})
        test_file = self.out / P.META_DIR / P.TEST / P.META_FILE
        if any(s in P.VALID_NAMES for s in self.expressions) and not test_file.exists():
            atomic_write_json(test_file, {"videos": {}})    # the loaders need it beside valid (no test videos)

    def rollback(self) -> None:
        for path in reversed(self.created):
            shutil.rmtree(path, ignore_errors=True)


def write(by_split: Mapping[str, Iterable[Video]], out: str | Path) -> None:
    """Write videos in the Ref-YouTube-VOS layout under ``out`` (see the module docstring).

    Videos are read one at a time (masks decoded frame by frame), so ``by_split`` may hold
    generators over a whole split.

    Args:
        by_split: ``{split: videos}``; the split names become folder names (``train``, ``valid``,
            ``test``).
        out: the dataset root to write; existing files of the same names are replaced.

    Raises:
        DataError: something the format cannot hold (module docstring), naming video and field.

    Example:
        >>> ds = longrvos_data.load("data/long_rvos_like_source")
        >>> write({"train": ds["train"]}, Path("out/ref-youtube-vos"))
    """
    out = Path(out)
    writer = _Writer(out)
    try:
        for split, videos in by_split.items():
            writer.add_split(split)
            count = 0
            for video in videos:
                writer.add(split, video)
                count += 1
            log.info("ref_youtube_vos: wrote %d video(s) of split %r to %s", count, split, out)
        writer.finish()
    except BaseException:
        writer.rollback()
        raise


__all__ = ["write"]
