"""What every writer shares: the lossy policy, sidecars, resumable streaming, and `convert`.

A target format often cannot hold everything a canonical `Video` carries (palette PNGs
cannot hold overlapping masks, Long-RVOS names one object per expression, YouTube-VIS
has no expressions). Each writer's ``write(by_split, out, *, lossy=False, sidecar=...)``
handles every such item with one of three policies (`Keeper`):

* ``sidecar=True``: keep the item in a **sidecar** (``longrvos_sidecar.json`` in the
  split folder, schema below) that the format's loader reads back, so the round trip
  is lossless. The default of the ytvis, davis and sola writers, and what `convert`
  (``longrvos convert``) asks of every writer;
* ``sidecar=False``: **refuse** it with a `DataError` naming the video and the field
  (``longrvos convert --no-sidecar``; the default of the long_rvos and mevis writers
  when called directly);
* ``lossy=True`` (``longrvos convert --lossy``): no sidecar and no refusal: the item is
  left out and listed in `WriteReport.dropped`, one `Dropped` per expression, per track,
  per lost field, or per (track, reason) with the frame indices.

The sidecar's schema and its reader live in `longrvos_data.sidecar` (loaders read it too).

Streaming and resume: a writer handles one video at a time (`write_streaming`), writing
each file atomically (temporary name, then rename). When a video's files are complete a
marker ``<out>/.longrvos_parts/<target>/<split>/v_<video_id>.json`` is written holding
what the split-level files need from it (e.g. its YouTube-VIS annotations); the
split-level files are assembled from the markers at the end, then the markers are
removed. A run killed midway leaves only whole files; re-running the same command skips
the videos that have a marker. With a `SplitReader` source, videos are written in
``workers`` processes (`longrvos_data.parallel.map_videos`).

Completion and safety: each split's last write is ``<out>/<split>/.longrvos_complete.json``
(`longrvos_data.sidecar.write_complete`); every reader refuses a split that holds this
package's partial-run files or lock but no such mark. `convert` never writes into its
source, holds ``<out>/.longrvos.lock`` for the run, and accepts only an ``out`` holding
splits of the same target (`prepare_output`).
"""
from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from ..errors import DataError, LongRVOSError, OnError, Problem, ProblemLog
from ..fsutil import atomic_open, atomic_write_json
from ..loaders.base import SplitReader
from ..schema import Expression, Track, Video, check_id
from ..sidecar import (COMPLETE, HF_STATE, LOCK, PARTS_DIR, SIDECAR, SIDECAR_FORMAT, SIDECAR_VERSION, read_complete,
                       unmark_complete, write_complete)

log = logging.getLogger("longrvos_data")

TARGETS: tuple[str, ...] = ("hf", "mevis", "long_rvos", "ytvis", "davis", "sola")
"""Formats `convert` writes (``longrvos convert --to``)."""


# -- what was dropped, and the report ---------------------------------------------------
@dataclass(frozen=True)
class Dropped:
    """One item a lossy write left out.

    Attributes:
        split, video: where.
        what: ``"expression"``, ``"track"``, ``"mask"`` (some frames of one track) or ``"value"``.
        reason: why the format cannot hold it.
        exp_id, track_id: the expression or track concerned, when there is one.
        frames: frame indices, for ``"mask"``.
        key: the field, for ``"value"`` (e.g. ``"fps"``).
    """

    split: str
    video: str
    what: str
    reason: str
    exp_id: str | None = None
    track_id: str | None = None
    frames: tuple[int, ...] = ()
    key: str | None = None

    def __str__(self) -> str:
        if self.what == "expression":
            item = f"expression {self.exp_id!r}"
        elif self.what == "track":
            item = f"track {self.track_id!r}"
        elif self.what == "mask":
            item = f"track {self.track_id!r} frames {_ranges(self.frames)}"
        elif self.track_id is not None:
            item = f"track {self.track_id!r} {self.key}"
        elif self.exp_id is not None:
            item = f"expression {self.exp_id!r} {self.key}"
        else:
            item = f"{self.key}"
        return f"{self.split}/{self.video}: {item}: {self.reason}"

    def as_dict(self) -> dict[str, Any]:
        return {"split": self.split, "video": self.video, "what": self.what, "reason": self.reason,
                "exp_id": self.exp_id, "track_id": self.track_id, "frames": list(self.frames), "key": self.key}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Dropped":
        return cls(d["split"], d["video"], d["what"], d["reason"], d.get("exp_id"), d.get("track_id"),
                   tuple(d.get("frames") or ()), d.get("key"))


def _ranges(frames: Sequence[int]) -> str:
    """``[1, 2, 3, 7]`` -> ``"1-3, 7"``."""
    out, start, prev = [], None, None
    for f in sorted(frames):
        if start is None:
            start = prev = f
        elif f == prev + 1:
            prev = f
        else:
            out.append(f"{start}-{prev}" if prev != start else f"{start}")
            start = prev = f
    if start is not None:
        out.append(f"{start}-{prev}" if prev != start else f"{start}")
    return ", ".join(out)


@dataclass
class WriteReport:
    """What a write did: videos per split, what it resumed, dropped and kept aside.

    Example:
        >>> report = convert("data/mevis", "davis", "out/davis", lossy=True)
        >>> for item in report.dropped:
        ...     print(item)
    """

    target: str
    out: Path
    lossy: bool = False
    videos: dict[str, int] = field(default_factory=dict)
    resumed: dict[str, int] = field(default_factory=dict)
    dropped: list[Dropped] = field(default_factory=list)
    sidecars: list[Path] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"target": self.target, "out": str(self.out), "lossy": self.lossy, "videos": dict(self.videos),
                "resumed": dict(self.resumed), "dropped": [d.as_dict() for d in self.dropped],
                "sidecars": [str(p) for p in self.sidecars], "problems": [p.as_dict() for p in self.problems]}


# -- the per-video policy ---------------------------------------------------------------
def jsonable(value: Any) -> Any:
    """``value`` as plain JSON types (tuples become lists, unknown objects their str)."""
    return json.loads(json.dumps(value, default=str))


def expression_to_json(e: Expression) -> dict[str, Any]:
    return {"exp_id": e.exp_id, "text": e.text, "track_ids": list(e.track_ids), "kind": e.kind,
            "kind_raw": jsonable(e.kind_raw), "meta": jsonable(dict(e.meta))}


def track_to_json(t: Track) -> dict[str, Any]:
    return {"track_id": t.track_id, "category": t.category, "meta": jsonable(dict(t.meta))}


class Keeper:
    """One video's items its target format cannot hold: kept, refused, or dropped and listed.

    The policy is one of three: ``lossy`` drops the item and lists it (`dropped`);
    otherwise ``sidecar`` keeps it in the video's sidecar entry (`entry`); otherwise the
    item is refused with a `DataError` naming the video and the field. Writers call
    `expression`, `track`, `mask`, `value` and `rename` for each such item.

    Args:
        video: the video being written.
        split, target: where, and the format id (for messages and the sidecar).
        lossy: drop and list.
        sidecar: keep in the sidecar (when not lossy); False refuses.

    Example:
        >>> keep = Keeper(video, split="valid", target="davis", lossy=False)
        >>> keep.expression(2, video.expressions[2], "names two objects; DAVIS meta holds one")
        >>> keep.entry()["expressions"][0]["position"]
        2
    """

    def __init__(self, video: Video, *, split: str, target: str, lossy: bool, sidecar: bool = True) -> None:
        self.video, self.split, self.target = video, split, target
        self.lossy, self.sidecar = lossy, sidecar
        self._expressions: list[dict[str, Any]] = []
        self._tracks: list[dict[str, Any]] = []
        self._masks: dict[str, dict[str, Any]] = {}
        self._values: dict[str, Any] = {}
        self._dropped: list[Dropped] = []
        self._mask_drops: dict[tuple[str, str], list[int]] = {}

    def _drop(self, what: str, reason: str, **kw: Any) -> None:
        self._dropped.append(Dropped(self.split, self.video.video_id, what, reason, **kw))

    def _refuse(self, reason: str, field: str) -> None:
        if not self.lossy and not self.sidecar:
            raise DataError(f"{reason} (pass lossy=True / --lossy to leave it out, or keep it in a sidecar)",
                            file=self.video.source_file, video=self.video.video_id, field=field)

    def expression(self, position: int, expression: Expression, reason: str, *, field: str = "",
                   lost: str | None = None) -> None:
        """An expression the format cannot hold.

        Args:
            position: its index in ``video.expressions`` (where the reader puts it back).
            expression: the expression; the sidecar keeps it whole, and on reading it is
                inserted at ``position`` or replaces the format's expression of the same id.
            reason: why, for the error or the drop list.
            field: the refused part, appended to ``expressions.<exp_id>`` in the error.
            lost: when the format writes the expression but loses one part of it (e.g.
                ``"kind"``), that part: the drop list then names it instead of the expression.
        """
        self._refuse(reason, f"expressions.{expression.exp_id}" + (f".{field}" if field else ""))
        if self.lossy:
            if lost is not None:
                self._drop("value", reason, exp_id=expression.exp_id, key=lost)
            else:
                self._drop("expression", reason, exp_id=expression.exp_id)
        else:
            self._expressions.append({"position": position, **expression_to_json(expression)})

    def track(self, position: int, track: Track, reason: str, *, field: str = "", lost: str | None = None) -> None:
        """A track the format cannot hold (its masks go through `mask`); arguments as for `expression`."""
        self._refuse(reason, f"tracks.{track.track_id}" + (f".{field}" if field else ""))
        if self.lossy:
            if lost is not None:
                self._drop("value", reason, track_id=track.track_id, key=lost)
            else:
                self._drop("track", reason, track_id=track.track_id)
        else:
            self._tracks.append({"position": position, **track_to_json(track)})

    def mask(self, track_id: str, frame: int, rle: Mapping[str, Any], reason: str) -> None:
        """One track's exact mask in one frame, which the format does not show exactly."""
        self._refuse(reason, f"masks[{frame}].{track_id}")
        if self.lossy:
            self._mask_drops.setdefault((track_id, reason), []).append(frame)
        else:
            self._masks.setdefault(track_id, {})[str(frame)] = {"size": list(rle["size"]),
                                                                  "counts": rle["counts"]}

    def value(self, key: str, value: Any, reason: str) -> None:
        """One per-video field the format has no place for (``fps``, ``meta``, ``has_masks``...)."""
        self._refuse(reason, key)
        if self.lossy:
            self._drop("value", reason, key=key)
        else:
            self._values[key] = jsonable(value)

    def note(self, key: str, value: Any) -> None:
        """A per-video field for the sidecar only (when keeping one); the writer judges its loss itself."""
        if self.sidecar and not self.lossy:
            self._values[key] = jsonable(value)

    def rename(self, format_id: str, track_id: str, reason: str, *, refuse: bool = True) -> None:
        """The format stores track ``track_id`` as ``format_id``; the sidecar maps it back.

        ``refuse=False``: when neither sidecar nor lossy, accept the format's id silently
        (for a renaming that is the format's own documented convention).
        """
        if refuse:
            self._refuse(reason, f"tracks.{track_id}")
        if self.lossy:
            self._drop("value", f"{reason}; written as {format_id!r}", key="id", track_id=track_id)
        elif self.sidecar:
            self._values.setdefault("track_ids", {})[format_id] = track_id

    def dropped(self) -> list[Dropped]:
        mask = [Dropped(self.split, self.video.video_id, "mask", reason, track_id=tid, frames=tuple(sorted(frames)))
                for (tid, reason), frames in self._mask_drops.items()]
        return self._dropped + mask

    def entry(self) -> dict[str, Any] | None:
        """The video's sidecar entry, None when nothing was kept."""
        out: dict[str, Any] = {}
        if self._expressions:
            out["expressions"] = self._expressions
        if self._tracks:
            out["tracks"] = self._tracks
        if self._masks:
            out["masks"] = self._masks
        if self._values:
            out["values"] = self._values
        return out or None

    def part(self, **data: Any) -> dict[str, Any]:
        """The video's resume marker: its sidecar entry, drops and the writer's ``data``."""
        return {"video_id": self.video.video_id, "sidecar": self.entry(),
                "dropped": [d.as_dict() for d in self.dropped()], "data": data}


# -- streaming JSON and the sidecar writer ------------------------------------------------
def write_json_chunks(path: str | Path, chunks: Iterable[str]) -> None:
    """Write a JSON text given in pieces to ``path`` atomically (temp file, then rename)."""
    with atomic_open(path, "w", encoding="utf-8") as fh:
        for chunk in chunks:
            fh.write(chunk)


def json_object_chunks(pairs: Iterable[tuple[str, Any]]) -> Iterator[str]:
    """``{"k": v, ...}`` as text pieces, one pair at a time."""
    yield "{"
    for i, (key, value) in enumerate(pairs):
        yield ("," if i else "") + json.dumps(key, ensure_ascii=False) + ":" + json.dumps(value, ensure_ascii=False)
    yield "}"


def json_array_chunks(items: Iterable[Any]) -> Iterator[str]:
    """``[v, ...]`` as text pieces, one item at a time."""
    yield "["
    for i, value in enumerate(items):
        yield ("," if i else "") + json.dumps(value, ensure_ascii=False)
    yield "]"


def write_sidecar(folder: str | Path, *, target: str, split: str,
                  entries: Callable[[], Iterable[tuple[str, dict | None]]]) -> Path | None:
    """Write ``folder/longrvos_sidecar.json`` from ``(video_id, entry)`` pairs, streaming.

    ``entries`` is called twice (once to see whether any entry is non-empty). With no
    entry the file is not written, and a stale one from an earlier run is removed.
    """
    path = Path(folder) / SIDECAR
    if not any(entry for _, entry in entries()):
        path.unlink(missing_ok=True)
        return None
    head = json.dumps({"format": SIDECAR_FORMAT, "version": SIDECAR_VERSION, "target": target, "split": split})
    pairs = ((vid, entry) for vid, entry in entries() if entry)
    write_json_chunks(path, [head[:-1], ', "videos": ', *json_object_chunks(pairs), "}"])
    return path


# -- resumable, parallel, one video at a time --------------------------------------------
class SplitJob:
    """The resume markers of one split of one write, in ``out/.longrvos_parts/<target>/<split>/``.

    ``settings`` (the policy and target options) are stored in ``job.json``; markers left
    by a run with other settings are discarded rather than mixed in. A re-run is expected
    to read the same source (the same command, run again).
    """

    def __init__(self, out: Path, target: str, split: str, settings: Mapping[str, Any]) -> None:
        self.folder = Path(out) / PARTS_DIR / target / split
        self.settings = jsonable(dict(settings))

    def start(self) -> None:
        job = self.folder / "job.json"
        if self.folder.is_dir():
            try:
                same = json.loads(job.read_text("utf-8")) == self.settings
            except (OSError, ValueError):
                same = False
            if not same:
                log.info("discarding resume markers of another run in %s", self.folder)
                shutil.rmtree(self.folder)
        if not self.folder.is_dir():
            atomic_write_json(job, self.settings)

    def _marker(self, video_id: str) -> Path:
        return self.folder / f"v_{video_id}.json"

    def done(self, video_id: str) -> bool:
        return self._marker(video_id).is_file()

    def save(self, video_id: str, part: Mapping[str, Any]) -> None:
        atomic_write_json(self._marker(video_id), part)

    def load(self, video_id: str) -> dict[str, Any]:
        with open(self._marker(video_id), encoding="utf-8") as fh:
            return json.load(fh)

    def parts(self, video_ids: Sequence[str]) -> Iterator[dict[str, Any]]:
        """The markers of ``video_ids``, in that order, one at a time."""
        for vid in video_ids:
            yield self.load(vid)

    def finish(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
        for parent in (self.folder.parent, self.folder.parent.parent):
            try:
                parent.rmdir()
            except OSError:
                break


@contextlib.contextmanager
def cleaned_on_error(*folders: Path) -> Iterator[None]:
    """Remove those of ``folders`` this block created if it fails, so a bad video leaves nothing.

    Folders that existed before (a source converted in place, an earlier run's output)
    are left alone.
    """
    fresh = [Path(f) for f in folders if not Path(f).exists()]
    try:
        yield
    except BaseException:
        for folder in fresh:
            shutil.rmtree(folder, ignore_errors=True)
        raise


VideoWriter = Callable[..., dict]
"""``fn(video, *, out, split, lossy, sidecar, **options) -> part``: writes one video's files, returns its marker."""

SplitFinisher = Callable[..., None]
"""``fn(out, split, job, video_ids, *, lossy, sidecar, report, **options)``: writes the split-level files."""


def write_streaming(by_split: Mapping[str, SplitReader | Iterable[Video]], out: str | Path, *, target: str,
                    write_video: VideoWriter, finish_split: SplitFinisher, lossy: bool = False, sidecar: bool = True,
                    workers: int = 1, progress: bool = False, on_error: OnError = "raise",
                    options: Mapping[str, Any] | None = None) -> WriteReport:
    """Write every split one video at a time with resume markers; see the module docstring.

    Args:
        by_split: ``{split: SplitReader or iterable of Video}``.
        out: the output root.
        target: the format id (names the marker folder).
        write_video: module-level function writing one video (sent to worker processes).
        finish_split: writes the split-level files from the markers.
        lossy: drop and list what the format cannot hold instead of keeping or refusing it.
        sidecar: keep what the format cannot hold in the sidecar; False refuses it (`Keeper`).
        workers: processes per split (SplitReader sources only).
        progress: show a progress bar per split.
        on_error: ``"skip"`` records a bad video in `WriteReport.problems` and goes on.
        options: extra keyword arguments for ``write_video`` and ``finish_split`` (JSON-able;
            they are part of the resume settings).

    Returns:
        The `WriteReport`.

    Example:
        >>> report = write_streaming({"valid": reader}, out, target="davis", write_video=_write_video,
        ...                          finish_split=_finish_split, workers=2)
    """
    from ..parallel import map_videos  # late: parallel imports the loaders

    out = Path(out)
    options = dict(options or {})
    report = WriteReport(target=target, out=out, lossy=lossy)
    problems = ProblemLog(on_error)
    for split, videos in by_split.items():
        check_id(split, file=None, video=None, field="split")
        kw = dict(out=str(out), split=split, lossy=lossy, sidecar=sidecar, **options)
        fn = functools.partial(write_video, **kw)
        order: list[str] = []
        written = resumed = 0
        if isinstance(videos, SplitReader):
            ids = list(videos.video_ids())
            job = SplitJob(out, target, split, {"lossy": lossy, "sidecar": sidecar, "options": options})
            job.start()
            unmark_complete(out / split)
            todo = [v for v in ids if not job.done(v)]
            resumed = len(ids) - len(todo)
            for vid, result in map_videos(videos, todo, fn, workers=workers, progress=progress,
                                          desc=f"{target} {split}", errors="return"):
                if isinstance(result, DataError):
                    problems.add(result)
                    continue
                job.save(vid, result)
                written += 1
            order = [v for v in ids if job.done(v)]
        else:
            from tqdm.auto import tqdm
            job = SplitJob(out, target, split, {"lossy": lossy, "sidecar": sidecar, "options": options})
            job.start()
            unmark_complete(out / split)
            seen: set[str] = set()
            for video in tqdm(videos, desc=f"{target} {split}", unit="video", disable=not progress, leave=False):
                vid = video.video_id
                if vid in seen:
                    problems.add(DataError("video id is written twice in this split", file=video.source_file,
                                           video=vid, field="video_id"))
                    continue
                seen.add(vid)
                if job.done(vid):
                    resumed += 1
                    order.append(vid)
                    continue
                try:
                    part = fn(video)
                except DataError as err:
                    problems.add(err)
                    continue
                job.save(vid, part)
                order.append(vid)
                written += 1
        finish_split(out, split, job, order, lossy=lossy, sidecar=sidecar, report=report, **options)
        for part in job.parts(order):
            report.dropped.extend(Dropped.from_dict(d) for d in part["dropped"])
        side_path = write_sidecar(out / split, target=target, split=split,
                                  entries=lambda: ((p["video_id"], p["sidecar"]) for p in job.parts(order)))
        if side_path is not None:
            report.sidecars.append(side_path)
        write_complete(out / split, target=target, split=split, settings=job.settings, videos=len(order))
        job.finish()
        report.videos[split] = len(order)
        if resumed:
            report.resumed[split] = resumed
        log.info("%s: split %r: %d video(s) written, %d resumed, to %s", target, split, written, resumed, out)
    report.problems.extend(problems.problems)
    return report


# -- the output folder: never the source, one writer, only this package's files ---------
def check_not_source(src: str | Path, out: str | Path) -> None:
    """Refuse an ``out`` that is ``src``, lies inside it or contains it (symlinks resolved)."""
    s, o = Path(src).resolve(), Path(out).resolve()
    if o == s:
        why = "is the source"
    elif s in o.parents:
        why = "is inside the source"
    elif o in s.parents:
        why = "contains the source"
    else:
        return
    raise LongRVOSError(f"output folder {out} {why} {src}: a conversion never writes into its source; "
                        "choose a folder outside it")


def _staged_leftover(name: str) -> bool:
    return name.startswith(".") and (name.endswith(".partial") or name.endswith(".old") or name.endswith(".tmp"))


def inventory(out: str | Path) -> tuple[dict[Path, str | None], list[Path]]:
    """What ``out`` holds: ``({path: target}, foreign)``.

    The first maps each top-level entry this package wrote to the target it belongs to
    (None: the lock and stale temporary files, of no target); ``foreign`` lists the others.
    A split folder is this package's when it holds a completion mark or a conversion's
    resume markers name it.
    """
    out = Path(out)
    ours: dict[Path, str | None] = {}
    foreign: list[Path] = []
    if not out.is_dir():
        return ours, foreign
    started: dict[str, str] = {}
    parts = out / PARTS_DIR
    if parts.is_dir():
        for folder in sorted(parts.iterdir()):
            ours[folder] = folder.name
            for split in (folder.iterdir() if folder.is_dir() else ()):
                started.setdefault(split.name, folder.name)
    hf_card = False
    if (out / "README.md").is_file():
        from ..loaders.hf import read_card
        try:
            hf_card = bool(read_card(out).section)
        except LongRVOSError:
            hf_card = False
    hf_owned = hf_card or (out / HF_STATE).is_dir()
    davis: set[str] = set()
    for entry in sorted(out.iterdir()):
        name = entry.name
        if name in (LOCK, PARTS_DIR) or (entry.is_dir() and name == "ImageSets"):
            ours.setdefault(entry, None)
        elif _staged_leftover(name):
            ours[entry] = None
        elif hf_owned and name in (HF_STATE, "README.md", "data"):
            ours[entry] = "hf"
        elif entry.is_dir() and not entry.is_symlink():
            mark = read_complete(entry) if (entry / COMPLETE).is_file() else None
            target = mark.get("target") if mark else started.get(name)
            if target is None:
                foreign.append(entry)
            else:
                ours[entry] = target
                if target == "davis":
                    davis.add(name)
        else:
            foreign.append(entry)
    images = out / "ImageSets"
    if images in ours:
        lists = list(images.iterdir())
        if lists and all(f.is_file() and f.suffix == ".txt" and f.stem in davis for f in lists):
            ours[images] = "davis"
        elif lists:
            del ours[images]
            foreign.append(images)
    return ours, foreign


def prepare_output(out: str | Path, target: str, *, overwrite: bool = False) -> None:
    """Make ``out`` ready for a ``target`` conversion, holding its lock (see `convert`).

    It may hold completed or resumable splits of ``target``; anything else this package
    wrote is refused, or removed with ``overwrite``; files it did not write are always
    refused, and then nothing is removed.
    """
    out = Path(out)
    ours, foreign = inventory(out)
    if foreign:
        names = ", ".join(p.name for p in foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise LongRVOSError(f"{out} holds files longrvos did not write ({names}); choose an empty or new folder"
                            + (" (--overwrite removes only what longrvos wrote)" if overwrite else ""))
    others = sorted({t for t in ours.values() if t not in (None, target)})
    if others and not overwrite:
        raise LongRVOSError(f"{out} holds a {', '.join(others)} conversion, not {target}; pass --overwrite to "
                            "replace it, or choose another folder")
    for path, owner in ours.items():
        if path.name == LOCK or not (overwrite or (owner is None and _staged_leftover(path.name))):
            continue
        log.info("removing %s", path)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


@contextlib.contextmanager
def output_lock(out: str | Path) -> Iterator[None]:
    """Hold ``out/.longrvos.lock`` for the block; a second conversion into ``out`` is refused at once."""
    from ..fsutil import exclusive_lock

    with exclusive_lock(Path(out) / LOCK) as mine:
        if not mine:
            raise LongRVOSError(f"another conversion is writing into {out} (it holds {Path(out) / LOCK}); "
                                "wait until it ends, then re-run")
        yield


class _WithProgress:
    """One split's videos with a progress bar (on stderr), for writers that take no ``progress``."""

    def __init__(self, videos, desc: str) -> None:
        self.videos = videos
        self.desc = desc

    def __len__(self) -> int:
        return len(self.videos)

    def __iter__(self) -> Iterator[Video]:
        from tqdm.auto import tqdm
        with tqdm(total=len(self.videos), desc=self.desc, unit="video", leave=False) as bar:
            for video in self.videos:
                yield video
                bar.update()


# -- convert: load a source, write a target ---------------------------------------------
def convert(src: str | Path, target: str, out: str | Path, *, format: str | None = None, split: str | None = None,
            lossy: bool = False, sidecar: bool = True, workers: int = 1, on_error: OnError = "raise",
            progress: bool = False, overwrite: bool = False, load_options: Mapping[str, Any] | None = None,
            **options: Any) -> WriteReport:
    """Read the dataset at ``src`` and write it as ``target`` under ``out``.

    Args:
        src: dataset root or one split folder, in any readable format.
        target: one of `TARGETS`.
        out: output root.
        format: the source format id; detected from the content when None.
        split: convert only this split.
        lossy: leave out (and list) what ``target`` cannot hold instead of keeping it in a
            sidecar or refusing.
        sidecar: keep what ``target`` cannot hold in ``<split>/longrvos_sidecar.json``
            (default); False refuses it with a `DataError`.
        workers: processes per split.
        on_error: ``"skip"`` leaves bad videos out with a warning (in ``report.problems``).
        load_options: format options for `loaders.load` (``project``: ``provenance``, ``status``).
        progress: show progress bars.
        overwrite: remove what this package wrote in ``out`` first (any target); files it
            did not write are refused all the same.
        **options: target-specific options (e.g. ``link_frames`` for ``hf``, ``frames``
            = ``"hardlink"`` / ``"copy"`` / ``"symlink"`` for the folder targets), passed to
            the writer when its ``write`` accepts them.

    ``out`` is never ``src``, inside it or around it; it may hold completed or resumable
    splits of ``target`` and nothing else (`prepare_output`). One conversion at a time
    writes into ``out``: it holds ``out/.longrvos.lock`` (``fcntl.flock``) for the run.
    Each split's last write is its completion mark (`longrvos_data.sidecar.write_complete`).

    Returns:
        The writer's `WriteReport` (a minimal one for writers that return None).

    Raises:
        LongRVOSError: unknown target; `FormatDetectionError`; `DataError` for bad input
            (``on_error="raise"``) or for what ``target`` cannot hold (``lossy=False``).

    Example:
        >>> report = convert("data/mevis", "ytvis", "out/mevis_ytvis", split="valid_u", workers=2)
        >>> report.sidecars
        [PosixPath('out/mevis_ytvis/valid_u/longrvos_sidecar.json')]
    """
    from ..errors import LongRVOSError
    from ..loaders import load

    if target not in TARGETS:
        raise LongRVOSError(f"unknown target {target!r}; known targets: {', '.join(TARGETS)}")
    check_not_source(src, out)
    if Path(out).exists() and not Path(out).is_dir():
        raise LongRVOSError(f"{out} exists and is not a folder")
    if not (Path(out) / LOCK).exists():
        _, foreign = inventory(out)   # before the lock file is written into a folder that is not ours
        if foreign:
            prepare_output(out, target, overwrite=overwrite)
    dataset = load(src, format=format, split=split, on_error=on_error, **(load_options or {}))
    writer = importlib.import_module(f"longrvos_data.converters.{target}")
    by_split = {split: dataset[split]} if split is not None else dict(dataset.splits)
    offered = dict(lossy=lossy, sidecar=sidecar, workers=workers, progress=progress, on_error=on_error, **options)
    accepted = inspect.signature(writer.write).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values())
    kwargs = {k: v for k, v in offered.items() if takes_any or k in accepted}
    if lossy and "lossy" not in kwargs:
        raise LongRVOSError(f"the {target} writer has no lossy mode")
    unused = [k for k in options if k not in kwargs]
    if unused:
        raise LongRVOSError(f"the {target} writer takes no option(s) {', '.join(sorted(unused))}")
    if workers > 1 and "workers" not in kwargs:
        log.warning("the %s writer runs in one process; --workers is ignored", target)
    if progress and "progress" not in kwargs:  # a writer that only iterates: its bar is drawn here
        by_split = {s: _WithProgress(videos, f"{target} {s}") for s, videos in by_split.items()}
    hints = dict(source_format=dataset.format, source_root=Path(src))   # for writers that record provenance
    kwargs.update({k: v for k, v in hints.items() if k in accepted and k not in kwargs})
    Path(out).mkdir(parents=True, exist_ok=True)
    with output_lock(out):
        prepare_output(out, target, overwrite=overwrite)
        result = writer.write(by_split, Path(out), **kwargs)
    report = result if isinstance(result, WriteReport) else WriteReport(
        target=target, out=Path(out), lossy=lossy, videos={s: len(r) for s, r in by_split.items()})
    report.problems[:0] = dataset.problems.problems
    return report


__all__ = ["Dropped", "Keeper", "cleaned_on_error", "PARTS_DIR", "SplitJob", "check_not_source", "inventory",
           "output_lock", "prepare_output",
           "TARGETS", "WriteReport", "convert", "json_array_chunks", "json_object_chunks", "write_json_chunks",
           "write_sidecar", "write_streaming"]
