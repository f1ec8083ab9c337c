"""Write canonical videos in the MeViS layout (the reader is `longrvos_data.loaders.mevis`).

Output::

    out/<split>/JPEGImages/<video_id>/<frame><ext>     hard links or copies, never re-encoded
    out/<split>/meta_expressions.json                  or meta_expressions_v2.json (see ``version``)
    out/<split>/mask_dict.json                         only for splits whose videos have masks

What MeViS can hold, and what happens to the rest:

- anno_ids are integers, unique within a split's mask_dict: a track id of a video with
  masks that is a canonical decimal integer (``"17"``) not used before in the split is
  its anno_id. Other ids (``"cat"``, an id another video of the split already used) get
  the smallest free integer, and the sidecar maps it back. Videos without masks
  (``valid``) get no ``anno_id``: expressions list ``obj_id`` only, read back as tracks
  ``"obj<obj_id>"`` (renamed back by the sidecar; without sidecar or lossy, accepted
  silently: it is MeViS valid's own convention), or, when their targets are withheld,
  just ``exp``.
- ``obj_id`` is ``track.meta["obj_id"]`` when it is an int, else the track's position in
  ``video.tracks``.
- Each video entry also gets ``height`` and ``width`` (the release has none; official
  readers ignore them, ours prefers them to the first frame's JPEG header).
- Kinds: MeViS has none. ``referring`` expressions with targets and ``no-target``
  expressions without are written as such (no-target: empty ``obj_id``/``anno_id``
  lists). Any other kind (``static``, ``reasoning`` ...), a no-target expression naming
  tracks or a targetless expression of another kind is written as MeViS reads it
  (referring / no-target); the sidecar keeps the expression as it was.
- A track no expression names (MeViS only knows objects that expressions name): the
  sidecar keeps the track and its masks. A track's category: the sidecar keeps it.

Policy for all of the above (`converters.base.Keeper`): by default a `DataError` naming
the video and field; ``sidecar=True`` (what ``longrvos convert`` does) keeps it in
``<split>/longrvos_sidecar.json``, read back by `longrvos_data.loaders.mevis`;
``lossy=True`` writes what MeViS can and lists the rest in the returned report.
- Video and expression ``meta`` fields are written back only for videos read from MeViS.

``mask_dict.json`` is streamed one video at a time and renamed into place when
complete; the expression file is written atomically after it.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..errors import DataError
from ..fsutil import FrameMode, atomic_write_json, link_or_copy, output_error
from ..loaders.mask_dict import MaskDictWriter, rle_lists
from ..schema import Expression, Video, check_id
from ..sidecar import unmark_complete, write_complete
from .base import SIDECAR, Keeper, SplitJob, WriteReport, write_sidecar

log = logging.getLogger("longrvos_data")

FORMAT = "mevis"
_INT_ID = re.compile(r"^(0|[1-9][0-9]*)$")


def write_frames(video: Video, folder: Path, mode: FrameMode = "hardlink") -> None:
    """Hard-link, copy or symlink (``mode``) a video's frames to ``folder/<frame name><source extension>``.

    Example:
        >>> write_frames(video, out / "train" / "JPEGImages" / video.video_id)
    """
    for f in video.frames:
        link_or_copy(f.path, folder / f"{f.name}{Path(f.path).suffix.lower() or '.jpg'}", mode)


def obj_ids(video: Video) -> dict[str, int]:
    """``{track_id: obj_id}``: the track's ``meta["obj_id"]`` when an int, else its position.

    Example:
        >>> obj_ids(video)          # tracks "17" (meta obj_id 0) and "18" (no obj_id)
        {'17': 0, '18': 1}
    """
    out = {}
    for i, t in enumerate(video.tracks):
        value = t.meta.get("obj_id") if isinstance(t.meta, Mapping) else None
        out[t.track_id] = value if isinstance(value, int) and not isinstance(value, bool) else i
    return out


def anno_id(video: Video, track_id: str) -> int:
    """A track id as a MeViS/ReVOS anno_id, or `DataError` when it is not an integer.

    Example:
        >>> anno_id(video, "17")
        17
    """
    if not _INT_ID.match(track_id):
        raise DataError(f"track id {track_id!r} is not an integer; MeViS/ReVOS anno_ids must be "
                        "(mapping other ids is not supported yet)", file=video.source_file,
                        video=video.video_id, field=f"tracks.{track_id}")
    return int(track_id)


def lossy_or_raise(lossy: bool, message: str, *, video: Video, field: str) -> None:
    """Log ``message`` when ``lossy``, else raise it as a `DataError`.

    Example:
        >>> lossy_or_raise(True, "kind 'static' dropped", video=video, field="expressions.0")  # logs
    """
    if not lossy:
        raise DataError(f"{message} (pass lossy=True to write it anyway)", file=video.source_file,
                        video=video.video_id, field=field)
    log.warning("%s: video %r: field %r: %s (written lossily)", video.source_file, video.video_id, field, message)


def extras(meta: Mapping[str, Any], reserved: Iterable[str]) -> dict[str, Any]:
    """The ``meta`` fields that are not ``reserved``.

    Example:
        >>> extras({"vid_id": 3, "frames": []}, ("frames",))
        {'vid_id': 3}
    """
    skip = set(reserved)
    return {k: v for k, v in meta.items() if k not in skip}


def referenced_tracks(video: Video, *, lossy: bool, format_name: str) -> list[str]:
    """Track ids that some expression names, in track order; others refused or dropped.

    Example:
        >>> referenced_tracks(video, lossy=False, format_name="MeViS")
        ['17', '18']
    """
    named = {t for e in video.expressions for t in e.track_ids}
    for t in video.tracks:
        if t.track_id not in named:
            lossy_or_raise(lossy, f"track {t.track_id!r} is named by no expression; {format_name} only keeps "
                           "objects that expressions name", video=video, field=f"tracks.{t.track_id}")
    return [t.track_id for t in video.tracks if t.track_id in named]


def _expression(video: Video, e: Expression, ids: Mapping[str, int], *, annotated: bool, lossy: bool,
                keep: Keeper | None = None, position: int = 0, annos: Mapping[str, int] | None = None) -> dict:
    where = f"expressions.{e.exp_id}"
    withheld = bool(e.meta.get("targets_withheld")) if isinstance(e.meta, Mapping) else False
    tracks = list(e.track_ids)

    def cannot(message: str, lost: str) -> None:
        if keep is None:
            lossy_or_raise(lossy, message, video=video, field=where)
        else:
            keep.expression(position, e, message, lost=lost)

    if e.kind == "no-target" and tracks:
        cannot("a no-target expression names tracks; MeViS writes no-target as empty lists", "track_ids")
        tracks = []
    elif e.kind not in ("referring", "no-target"):
        cannot(f"MeViS has no kind {e.kind!r}; it is read back as referring/no-target", "kind")
    if not tracks and e.kind != "no-target" and not withheld:
        cannot(f"a {e.kind} expression without targets is read back as no-target", "kind")
    out: dict[str, Any] = {"exp": e.text}
    if annotated:
        out["obj_id"] = [ids[t] for t in tracks]
        out["anno_id"] = [annos[t] if annos is not None else anno_id(video, t) for t in tracks]
    elif tracks or not withheld:
        out["obj_id"] = [ids[t] for t in tracks]
    if video.dataset == FORMAT:
        out.update(extras(e.meta, ("exp", "obj_id", "anno_id", "targets_withheld")))
    return out


def video_entry(video: Video, *, lossy: bool, keep: Keeper | None = None,
                annos: Mapping[str, int] | None = None) -> dict:
    """The ``meta_expressions.json`` entry of one video.

    With ``keep``, what MeViS cannot hold goes through it (sidecar, drop list or error)
    and ``annos`` gives each track's anno_id; without, it is refused unless ``lossy``.
    """
    ids = obj_ids(video)
    entry: dict[str, Any] = {}
    if video.dataset == FORMAT:
        entry.update(extras(video.meta, ("frames", "expressions", "height", "width")))
    # Not in the release's files, but read first by the loader: the size needs no JPEG header
    # (and a damaged first frame cannot change it); official readers ignore the two keys.
    entry["height"], entry["width"] = video.height, video.width
    entry["frames"] = video.frame_names
    entry["expressions"] = {e.exp_id: _expression(video, e, ids, annotated=video.has_masks, lossy=lossy, keep=keep,
                                                  position=pos, annos=annos)
                            for pos, e in enumerate(video.expressions)}
    return entry


class _AnnoIds:
    """The anno_ids of one split: a track keeps its integer id while it is free, else gets the smallest free one."""

    def __init__(self, split: str) -> None:
        self.split = split
        self.owner: dict[int, str] = {}
        self._next = 0

    def assign(self, video: Video, track_ids: Iterable[str], keep: Keeper) -> dict[str, int]:
        out: dict[str, int] = {}
        refuse = not keep.lossy and not keep.sidecar
        for tid in track_ids:
            natural = int(tid) if _INT_ID.match(tid) else None
            if natural is not None and natural not in self.owner:
                self.owner[natural] = video.video_id
                out[tid] = natural
                continue
            if natural is None:
                if refuse:
                    anno_id(video, tid)  # raises: not an integer
                why = f"track id {tid!r} is not an integer, which MeViS anno_ids must be"
            else:
                why = f"anno_id {natural} is already used by video {self.owner[natural]!r} in split {self.split!r}"
                if refuse:
                    raise DataError(why, file=video.source_file, video=video.video_id, field=f"tracks.{tid}")
            while self._next in self.owner:
                self._next += 1
            self.owner[self._next] = video.video_id
            out[tid] = self._next
            keep.rename(str(self._next), tid, why)
        return out


def _unmasked_names(video: Video, keep: Keeper) -> None:
    """Tracks of a video without masks are read back as ``obj<obj_id>``: map them back."""
    ids = obj_ids(video)
    named = {t for e in video.expressions for t in e.track_ids}
    for tid in (t.track_id for t in video.tracks if t.track_id in named):
        if tid != f"obj{ids[tid]}":
            keep.rename(f"obj{ids[tid]}", tid, "a track of a video without masks is read back as obj<obj_id>",
                        refuse=False)


def _kept_aside(video: Video, named: set[str], keep: Keeper) -> list[str]:
    """Tracks MeViS cannot list (named by no expression) and categories, through ``keep``."""
    aside = []
    for pos, t in enumerate(video.tracks):
        if t.track_id not in named:
            keep.track(pos, t, f"track {t.track_id!r} is named by no expression; MeViS only keeps objects that "
                       "expressions name")
            aside.append(t.track_id)
        elif t.category:
            keep.track(pos, t, f"MeViS has no categories (category {t.category!r})", lost="category")
    return aside


def write(by_split: Mapping[str, Iterable[Video]], out: str | Path, *, lossy: bool = False,
          sidecar: bool = False, version: str | None = None, frames: FrameMode = "hardlink") -> WriteReport:
    """Write every split in the MeViS layout under ``out``.

    Args:
        by_split: ``{split: videos}``; videos may come from any loader (only the `Video`
            API is used) and are consumed one at a time.
        out: dataset root to create (``out/<split>/...``).
        lossy: write what MeViS can hold and list the rest in the report (module docstring).
        sidecar: keep what MeViS cannot hold in ``<split>/longrvos_sidecar.json``.
        version: ``"v1"`` writes ``meta_expressions.json``, ``"v2"`` ``meta_expressions_v2.json``;
            None picks v2 when some expression is no-target (v1 has none), else v1.
        frames: ``"hardlink"`` (default; a copy across file systems: editing such an output
            frame in place changes the source), ``"copy"`` or ``"symlink"``.

    Returns:
        The `WriteReport` (videos per split, sidecars, what was dropped).

    Raises:
        DataError: a mask of the wrong size, or (without ``lossy`` or ``sidecar``)
            something MeViS cannot hold (a track id that is not an integer, an anno_id
            used twice in a split...). No expression file or mask_dict is left half-written.

    Example:
        >>> write({"valid_u": list(load("data/lvos")["valid"])}, Path("out/mevis"), sidecar=True)
    """
    if version not in (None, "v1", "v2"):
        raise ValueError(f"version must be 'v1', 'v2' or None, not {version!r}")
    out = Path(out)
    report = WriteReport(target=FORMAT, out=out, lossy=lossy)
    metas: dict[str, dict] = {}
    kept: dict[str, dict[str, dict | None]] = {}
    no_target = False
    settings = {"lossy": lossy, "sidecar": sidecar, "version": version, "frames": frames}
    jobs: dict[str, SplitJob] = {}
    for split, videos in by_split.items():
        check_id(split, file=None, video=None, field="split")
        folder = out / split
        jobs[split] = SplitJob(out, FORMAT, split, settings)   # no markers: records that the split is started
        jobs[split].start()
        unmark_complete(folder)
        for stale in folder.glob(".*.tmp"):   # a killed run's half-written mask_dict.json
            stale.unlink()
        entries: dict[str, dict] = {}
        kept[split] = {}
        writer: MaskDictWriter | None = None
        annos = _AnnoIds(split)
        try:
            for video in videos:
                vid = check_id(video.video_id, file=video.source_file, video=video.video_id, field="video_id")
                if vid in entries:
                    raise DataError(f"video listed twice in split {split!r}", file=video.source_file, video=vid)
                keep = Keeper(video, split=split, target=FORMAT, lossy=lossy, sidecar=sidecar)
                named = {t for e in video.expressions for t in e.track_ids}
                tracks = [t.track_id for t in video.tracks if t.track_id in named]
                ids = annos.assign(video, tracks, keep) if video.has_masks else None
                entry = video_entry(video, lossy=lossy, keep=keep, annos=ids)
                if not video.has_masks:
                    _unmasked_names(video, keep)
                aside = _kept_aside(video, named, keep)
                if any(e.kind == "no-target" for e in video.expressions):
                    no_target = True
                    if version == "v1" and not lossy:
                        raise DataError("MeViS v1 has no no-target expressions; write version 'v2' or pass "
                                        "lossy=True", file=video.source_file, video=vid, field="expressions")
                if video.has_masks:
                    writer = writer or MaskDictWriter(folder / "mask_dict.json")
                    rles = rle_lists(video, tracks + aside)
                    for tid in tracks:
                        try:
                            writer.add(str(ids[tid]), rles[tid])
                        except OSError as exc:
                            raise output_error(writer.path, exc) from None
                    for tid in aside:
                        for i, rle in enumerate(rles[tid]):
                            if rle is not None:
                                keep.mask(tid, i, rle, "the track is named by no expression")
                write_frames(video, folder / "JPEGImages" / vid, frames)
                entries[vid] = entry
                kept[split][vid] = keep.entry()
                report.dropped.extend(keep.dropped())
            if writer is not None:
                try:
                    writer.close()
                except OSError as exc:
                    raise output_error(writer.path, exc) from None
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        metas[split] = entries
        report.videos[split] = len(entries)
    name = "meta_expressions_v2.json" if (version or ("v2" if no_target else "v1")) == "v2" else "meta_expressions.json"
    for split, entries in metas.items():
        atomic_write_json(out / split / name, {"videos": entries})
        if write_sidecar(out / split, target=FORMAT, split=split, entries=lambda: kept[split].items()) is not None:
            report.sidecars.append(out / split / SIDECAR)
        write_complete(out / split, target=FORMAT, split=split, settings=settings, videos=len(entries))
        jobs[split].finish()
    return report


__all__ = ["FORMAT", "anno_id", "obj_ids", "referenced_tracks", "video_entry", "write", "write_frames"]
