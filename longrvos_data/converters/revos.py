"""Write canonical videos in the ReVOS layout (the reader is `longrvos_data.loaders.revos`).

Output::

    out/JPEGImages/<video_id>/<frame><ext>      one folder for every split (links or copies)
    out/mask_dict.json                          every split's masks, keyed by anno_id
    out/mask_dict_foreground.json               {video_id: {"masks_rle": [...], "foreground_ratio": [...]}}
    out/meta_expressions_<split>_.json          height, width, frames, expressions with type_id

- Kinds map to ``type_id``: referring 0, reasoning 1, no-target 2; other kinds raise
  `DataError` (``lossy=True`` writes them as 0 and logs it). A no-target expression keeps
  the anno_ids it names, as ReVOS allows.
- anno_ids: as in `longrvos_data.converters.mevis` (integer track ids, unique across
  the whole dataset since one mask_dict serves every split). A video listed in two
  splits (``train`` and its subset ``train_sub``) has its frames, masks and foreground
  written once; its foreground is the union of all of its tracks.
- Foreground: for videos read from ReVOS the source's entry is copied verbatim; for
  others it is the union of the video's masks per frame, with ``foreground_ratio`` the
  fraction of the frame it covers (our reading of the field; the release does not
  document it).
- Videos without masks get expressions without ``anno_id`` (their targets read back as
  withheld) and no mask entries.

Both JSON mask files are streamed one video at a time and renamed into place when
complete; the expression files are written atomically after them.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterable, Mapping

from .. import masks as _masks
from ..errors import DataError
from ..fsutil import atomic_write_json
from ..loaders.mask_dict import MaskDictWriter, open_index, rle_lists
from ..schema import Video, check_id
from .mevis import anno_id, extras, lossy_or_raise, obj_ids, referenced_tracks, write_frames

log = logging.getLogger("longrvos_data")

FORMAT = "revos"
TYPE_IDS = {"referring": 0, "reasoning": 1, "no-target": 2}


def video_entry(video: Video, *, lossy: bool) -> dict:
    """The ``meta_expressions_<split>_.json`` entry of one video.

    Example:
        >>> video_entry(video, lossy=False)["expressions"]["0"]
        {'exp': 'the horse', 'obj_id': [0], 'anno_id': [5], 'type_id': 0}
    """
    ids = obj_ids(video)
    entry: dict[str, Any] = {}
    if video.dataset == FORMAT:
        entry.update(extras(video.meta, ("height", "width", "frames", "expressions")))
    entry.update(height=video.height, width=video.width, frames=video.frame_names)
    exps: dict[str, dict] = {}
    for e in video.expressions:
        where = f"expressions.{e.exp_id}"
        type_id = TYPE_IDS.get(e.kind)
        if type_id is None:
            lossy_or_raise(lossy, f"ReVOS has no kind {e.kind!r} (only referring, reasoning, no-target)",
                           video=video, field=where)
            type_id = 0
        d: dict[str, Any] = {"exp": e.text, "obj_id": [ids[t] for t in e.track_ids]}
        if video.has_masks:
            d["anno_id"] = [anno_id(video, t) for t in e.track_ids]
        d["type_id"] = type_id
        if video.dataset == FORMAT:
            d.update(extras(e.meta, ("exp", "obj_id", "anno_id", "type_id", "targets_withheld")))
        exps[e.exp_id] = d
    entry["expressions"] = exps
    return entry


def _foreground(video: Video, tracks: Mapping[str, list]) -> dict:
    """The video's foreground entry: the source's when it is a ReVOS video, else the union."""
    if video.dataset == FORMAT and video.source_file:
        source = Path(video.source_file).parent / "mask_dict_foreground.json"
        if source.is_file():
            index = open_index(source)
            if video.video_id in index:
                return index.read(video.video_id, video=video.video_id)
    area = float(video.height * video.width)
    rles, ratios = [], []
    for t in range(video.num_frames):
        present = [seq[t] for seq in tracks.values() if seq[t] is not None]
        rle = _masks.union(present) if present else _masks.empty(video.height, video.width)
        rles.append(rle)
        ratios.append(float(_masks.area([rle])[0]) / area)
    return {"masks_rle": rles, "foreground_ratio": ratios}


def write(by_split: Mapping[str, Iterable[Video]], out: str | Path, *, lossy: bool = False) -> None:
    """Write every split in the ReVOS layout under ``out``.

    Args:
        by_split: ``{split: videos}`` from any loader (``train``, ``valid``, ``train_sub``...).
        out: the dataset root to create.
        lossy: write kinds ReVOS lacks as referring, and drop tracks no expression names,
            instead of raising.

    Raises:
        DataError: a non-integer track id, an anno_id shared by two videos, a mask of the
            wrong size, or (without ``lossy``) a kind ReVOS cannot hold. The mask files are
            then removed, not left half-written.

    Example:
        >>> write({"train": train_videos, "valid": valid_videos}, Path("out/ReVOS"))
    """
    out = Path(out)
    masks = MaskDictWriter(out / "mask_dict.json")
    fg = MaskDictWriter(out / "mask_dict_foreground.json")
    metas: dict[str, dict] = {}
    owner: dict[int, str] = {}
    done: set[str] = set()
    try:
        for split, videos in by_split.items():
            check_id(split, file=None, video=None, field="split")
            entries: dict[str, dict] = {}
            for video in videos:
                vid = check_id(video.video_id, file=video.source_file, video=video.video_id, field="video_id")
                if vid in entries:
                    raise DataError(f"video listed twice in split {split!r}", file=video.source_file, video=vid)
                entries[vid] = video_entry(video, lossy=lossy)
                if video.has_masks:
                    # A video may come again in another split (train_sub repeats train, possibly
                    # naming fewer objects): write only the anno_ids not written yet.
                    fresh = []
                    for tid in referenced_tracks(video, lossy=lossy, format_name="ReVOS"):
                        a = anno_id(video, tid)
                        if a in owner:
                            if owner[a] != vid:
                                raise DataError(f"anno_id {a} is already used by video {owner[a]!r}",
                                                file=video.source_file, video=vid, field=f"tracks.{tid}")
                            continue
                        owner[a] = vid
                        fresh.append(tid)
                    wanted = fresh if vid in done else [t.track_id for t in video.tracks]
                    lists = rle_lists(video, wanted)
                    for tid in fresh:
                        masks.add(str(anno_id(video, tid)), lists[tid])
                    if vid not in done:
                        fg.add(vid, _foreground(video, lists))  # every object, named or not
                if vid not in done:
                    write_frames(video, out / "JPEGImages" / vid)
                    done.add(vid)
            metas[split] = entries
        masks.close()
        fg.close()
    except BaseException:
        masks.abort()
        fg.abort()
        raise
    for split, entries in metas.items():
        atomic_write_json(out / f"meta_expressions_{split}_.json", {"videos": entries})


__all__ = ["FORMAT", "TYPE_IDS", "video_entry", "write"]
