"""Score predictions against ground truth, one video per task, videos in parallel.

Per video, every ground-truth frame is decoded once (``video.frame_masks(i)`` gives all
objects) and every prediction PNG once; expression targets are unions of the decoded
objects, and a target shared by several expressions is analysed once per frame
(`metrics.MaskInfo`). Videos run in a process pool with at most ``2 * workers`` videos in
flight, so memory is bounded by a few videos whatever the split's size; RLE JSON
predictions are streamed one video at a time. Both ``--missing`` policies are scored in
that one pass (`_Scorer`). A ground-truth error (a `DataError` from a loader or a mask
source, in a worker too) stops the run; a bad prediction never does.
"""
from __future__ import annotations

import logging
import math
import multiprocessing as mp
import queue
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import cv2
import numpy as np

from .. import masks as _masks
from ..errors import LongRVOSError
from ..schema import Video
from .. import predictions as P
from .metrics import MaskInfo, accuracy, boundary_radius, raw_accuracy_robustness, robustness, score_frame
from .protocols import (DROPPED, EMPTY, OK, POLICIES, ZERO, Protocol, Unit, UnitScores, get_protocol,
                        unseen_videos)
from .report import EvalReport

log = logging.getLogger("longrvos_data")

_DEFECT_TEXT = {
    P.MISSING_VIDEO: "no predictions for this video",
    P.MISSING_EXPRESSION: "no predictions for this expression",
    P.MISSING_FRAME: "frame(s) without a prediction",
    P.WRONG_SIZE: "prediction size differs from the video's frame size",
    P.UNREADABLE: "prediction cannot be decoded",
}
_SEVERITY = {None: 0, "empty": 1, "zero": 2, "drop": 3}
_DOOMED = ("zero", "drop")


@dataclass
class VideoResult:
    """What one video contributes: rows under the policy in force and under the other one,
    issues, optional per-frame values, work done, and how ReVOS R was divided."""

    order: int
    video_id: str
    rows: list[dict[str, Any]]
    issues: list[dict[str, Any]]
    frames: dict[str, list] | None = None
    unit_frames: int = 0
    other_rows: list[dict[str, Any]] = field(default_factory=list)   # under the other policy
    matched: int = 0                   # units with predictions (not a missing video or expression)
    denominator: str | None = None     # ReVOS R: "file" (mask_dict_foreground.json) or "union"


@dataclass
class _UnitState:
    unit: Unit
    positions: dict[int, int]
    scores: UnitScores
    actions: dict[str, str | None]     # per policy: the costliest action its defects call for
    absent: bool = False               # no predictions at all: nothing to read
    issues: dict[int, P.Issue] = field(default_factory=dict)

    @property
    def doomed(self) -> bool:
        """Scored 0 or dropped under both policies: no frame needs scoring any more."""
        return all(a in _DOOMED for a in self.actions.values())


class _Scorer:
    """Scores one video's units frame by frame (decoding each frame once).

    Both policies are followed in the same pass: under ``strict`` and under ``official``
    a defective frame is scored as an empty mask or ends the unit (``zero``/``drop``), so
    one set of per-frame scores serves both, and each unit's row is finalised twice.
    """

    def __init__(self, protocol: Protocol, *, policy: str, per_frame: bool, revos_raw: bool) -> None:
        self.protocol = protocol
        self.policy = policy
        self.per_frame = per_frame
        self.revos_raw = revos_raw

    def run(self, order: int, video: Video, preds: P.VideoPredictions, log: P.IssueLog) -> VideoResult:
        proto = self.protocol
        radius = boundary_radius(video.height, video.width)

        def warn(unit_id, frame, problem, message):
            issue = log.add(unit_id, problem, message, frame)
            issue.policy = "none"

        units = proto.units(video, warn)
        states: list[_UnitState] = []
        for u in units:
            frames = range(video.num_frames) if u.frames is None else u.frames
            n = len(frames)
            scores = UnitScores(np.zeros(n), np.zeros(n), np.zeros(n, dtype=bool), np.zeros(n, dtype=bool),
                                np.zeros(n) if proto.accuracy else None, np.zeros(n) if proto.accuracy else None)
            st = _UnitState(u, {i: k for k, i in enumerate(frames)}, scores, dict.fromkeys(POLICIES))
            states.append(st)
            if preds.present and not preds.has_unit(u.unit_id):
                self._defect(st, log, P.MISSING_EXPRESSION, None, first=True)
        if not preds.present and states:   # one issue for the video, counting the prediction files it lacks
            files = video.num_frames if proto.shared_frames else sum(len(st.positions) for st in states)
            issue = log.add(None, P.MISSING_VIDEO, _DEFECT_TEXT[P.MISSING_VIDEO], frames=files)
            for st in states:
                self._charge(st, P.MISSING_VIDEO, first=True)
                st.issues[id(issue)] = issue

        fg = _foreground(video) if proto.accuracy else None
        live = [st for st in states if not (st.absent and st.doomed)]
        needed = sorted({i for st in live for i in st.positions})
        referenced = sorted({t for e in video.expressions for t in e.track_ids})
        work = 0
        for i in needed:
            name = video.frames[i].name
            gt: Mapping[str, np.ndarray] | None = None
            targets: dict[tuple[str, ...], MaskInfo | None] = {}
            fg_area: int | None = None
            for st in live:
                if i not in st.positions:
                    continue
                u = st.unit
                if st.absent:
                    rd = P.FrameRead(None)
                else:   # read even when doomed: every defective frame is counted
                    rd = preds.read(u.unit_id, i, name)
                    if rd.defect is not None:
                        self._defect(st, log, rd.defect, name, first=(i == 0), detail=rd.detail)
                if st.doomed:
                    continue
                if gt is None:
                    gt = video.frame_masks(i)   # a DataError stops the run: the ground truth is broken
                key = u.track_ids
                if key not in targets:
                    targets[key] = _target(gt, key)
                g = targets[key]
                p = MaskInfo(rd.mask) if rd.mask is not None else None
                s = score_frame(g, p, radius)
                k = st.positions[i]
                sc = st.scores
                sc.j[k], sc.f[k] = s.j, s.f
                sc.gt_present[k] = s.gt_area > 0
                sc.pred_present[k] = s.pred_area > 0
                if proto.accuracy:
                    if fg_area is None:
                        fg_area = _union_area(gt, referenced) if fg is None else _fg_area(fg, i, self.revos_raw)
                    if self.revos_raw:
                        sc.a[k], sc.r[k] = raw_accuracy_robustness(
                            _gt_sum(gt, key, video), _raw(rd.mask, video), fg_area)
                    else:
                        sc.a[k] = accuracy(s.intersection, s.gt_area, s.pred_area, video.height * video.width)
                        sc.r[k] = robustness(s.pred_area - s.intersection, fg_area)
                work += 1
        preds.report_extras(log)

        rows: list[dict[str, Any]] = []
        other: list[dict[str, Any]] = []
        frames_out: dict[str, list] | None = {"exp_id": [], "frame": [], "J": [], "F": []} if self.per_frame else None
        for st in states:
            u = st.unit
            base: dict[str, Any] = {"video_id": video.video_id, proto.unit_key: u.unit_id, "kind": u.kind}
            finalized: list[dict] = []

            def outcome(action: str | None) -> tuple[dict, str]:
                if action == "drop":
                    return {m: None for m in proto.row_metrics}, DROPPED
                if action == "zero":
                    return proto.zero_row(), ZERO
                if not finalized:
                    finalized.append(proto.finalize(u, st.scores, warn))
                return finalized[0], EMPTY if action == "empty" else OK

            for policy in POLICIES:
                out = rows if policy == self.policy else other
                metrics, status = outcome(st.actions[policy])
                row = dict(base)
                row.update({m: _clean(metrics.get(m)) for m in proto.row_metrics})
                row["status"] = status
                row["frames"] = len(st.positions)
                if proto.name == "lvos":
                    row["unseen"] = bool(u.meta.get("unseen"))
                    row["attributes"] = list(u.meta.get("attributes", ()))
                out.append(row)
            if frames_out is not None and rows[-1]["status"] not in (DROPPED, ZERO):
                for i, k in st.positions.items():
                    frames_out["exp_id"].append(u.unit_id)
                    frames_out["frame"].append(video.frames[i].name)
                    frames_out["J"].append(float(st.scores.j[k]))
                    frames_out["F"].append(float(st.scores.f[k]))
            cost = st.actions[self.policy]
            for issue in st.issues.values():   # what the unit finally paid, under the policy in force
                if _SEVERITY[cost] >= _SEVERITY.get(issue.policy, 0):
                    issue.policy = cost
        for i in log:
            if i.policy is None:
                i.policy = "none"
        issues = [i.as_dict() for i in log]
        denominator = None if not proto.accuracy else ("file" if fg is not None else "union")
        return VideoResult(order, video.video_id, rows, issues, frames_out, work, other,
                           sum(1 for st in states if not st.absent), denominator)

    def _charge(self, st: _UnitState, defect: str, *, first: bool) -> None:
        """Raise the unit's cost under each policy to what ``defect`` calls for."""
        for policy in POLICIES:
            action = self.protocol.action(defect, first_frame=first, policy=policy)
            if _SEVERITY[action] > _SEVERITY[st.actions[policy]]:
                st.actions[policy] = action
        if defect in (P.MISSING_VIDEO, P.MISSING_EXPRESSION):
            st.absent = True

    def _defect(self, st: _UnitState, log: P.IssueLog, defect: str, frame: str | None, *, first: bool,
                detail: str | None = None) -> None:
        """Charge the unit and record the defect: one frame, or (``frame`` None) all of the unit's."""
        self._charge(st, defect, first=first)
        message = _DEFECT_TEXT[defect] + (f": {detail}" if detail else "")
        issue = log.add(st.unit.unit_id, defect, message, frame, frames=len(st.positions) if frame is None else None)
        st.issues[id(issue)] = issue


def _clean(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _target(gt: Mapping[str, np.ndarray], track_ids: tuple[str, ...]) -> MaskInfo | None:
    present = [gt[t] for t in track_ids if t in gt]
    if not present:
        return None
    if len(present) == 1:
        return MaskInfo(present[0])
    out = np.logical_or(present[0], present[1])
    for m in present[2:]:
        np.logical_or(out, m, out=out)
    return MaskInfo(out)


def _union_area(gt: Mapping[str, np.ndarray], track_ids: Sequence[str]) -> int:
    present = [gt[t] for t in track_ids if t in gt]
    if not present:
        return 0
    if len(present) == 1:
        return int(np.count_nonzero(present[0]))
    out = np.logical_or(present[0], present[1])
    for m in present[2:]:
        np.logical_or(out, m, out=out)
    return int(np.count_nonzero(out))


def _gt_sum(gt: Mapping[str, np.ndarray], track_ids: tuple[str, ...], video: Video) -> np.ndarray:
    out = np.zeros((video.height, video.width), dtype=np.uint8)
    for t in track_ids:
        if t in gt:
            out += gt[t].astype(np.uint8, copy=False)
    return out


def _raw(mask: np.ndarray | None, video: Video) -> np.ndarray:
    if mask is None:
        return np.zeros((video.height, video.width), dtype=np.uint8)
    return mask.astype(np.uint8, copy=False)


def _foreground(video: Video) -> Any:
    """The video's entry of ReVOS ``mask_dict_foreground.json`` (what VISA's R divides by),
    or None when the file is not beside the expression file (R then divides by the union
    of the video's objects). A missing or malformed entry is a `DataError`."""
    if video.dataset != "revos" or not video.source_file:
        return None
    from ..loaders.revos import ReVOSPaths, foreground
    return foreground(video, path=Path(video.source_file).parent / ReVOSPaths.FOREGROUND)


def _fg_area(fg: Any, index: int, raw: bool) -> int:
    """FG_t: the foreground pixels of frame ``index``. An item that is a list of RLEs is their
    union (binarised) or, with ``raw``, the sum of their areas (VISA sums the decoded masks)."""
    item = fg.rles[index]
    if item is None:
        return 0
    if isinstance(item, list) and (raw or len(item) == 1):
        return sum(int(np.count_nonzero(_masks.decode(r))) for r in item)
    return int(np.count_nonzero(fg.mask(index)))


# -- ground truth and tasks ----------------------------------------------------------------
class _VideoProvider:
    """Gives a worker the ground-truth `Video` of an id: from a split reader or from memory.

    A reader-backed provider re-opens the split in each worker process (`reopen`), so no
    loader state (file handles, caches) is shared across processes.
    """

    def __init__(self, reader: Any = None, videos: Mapping[str, Video] | None = None) -> None:
        self.reader = reader
        self.videos = videos
        self.spec = None  # a reader that `loaders.load` opened can be re-opened in a worker
        if reader is not None and getattr(reader, "opened_from", None) is not None:
            self.spec = (str(reader.opened_from), reader.format, reader.split, dict(reader.load_options))

    def ids(self) -> list[str]:
        return list(self.videos) if self.videos is not None else list(self.reader.video_ids())

    def get(self, video_id: str) -> Video:
        if self.videos is not None:
            return self.videos[video_id]
        return self.reader.video(video_id)

    def reopen(self) -> None:
        if self.spec is not None:
            from ..loaders import load
            path, fmt, split, options = self.spec
            self.reader = load(path, format=fmt, split=split, **options)[split]

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        if self.spec is not None:
            state["reader"] = None   # re-opened by the worker
        return state


_STATE: dict[str, Any] = {}


def _init_worker(provider: _VideoProvider, source: P.PredictionSource, scorer: _Scorer, reopen: bool = True) -> None:
    if reopen:
        provider.reopen()
    else:
        # Only in this process: a forked child inherits the parent's setting (1, see `evaluate`),
        # and cv2.setNumThreads in a fork of a process whose OpenCV pool has run hangs forever.
        cv2.setNumThreads(1)
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # bad PNGs are reported as warnings
    _STATE.update(provider=provider, source=source, scorer=scorer)


def _work(task: tuple[int, str, Any, bool]) -> VideoResult:
    order, video_id, entry, from_json = task
    provider: _VideoProvider = _STATE["provider"]
    source: P.PredictionSource = _STATE["source"]
    scorer: _Scorer = _STATE["scorer"]
    log = P.IssueLog(video_id)
    video = provider.get(video_id)   # ground-truth errors propagate (from a worker too): they stop the run
    if from_json:
        preds = source.open_entry(video, entry, log)
    else:
        preds = source.open(video, log)
    return scorer.run(order, video, preds, log)


def _bounded_imap(pool, func: Callable, tasks: Iterable, limit: int) -> Iterator[Any]:
    """Results of ``func`` over ``tasks`` in completion order, with at most ``limit`` tasks queued."""
    done: queue.SimpleQueue = queue.SimpleQueue()
    inflight = 0
    for task in tasks:
        pool.apply_async(func, (task,), callback=lambda r: done.put((True, r)),
                         error_callback=lambda e: done.put((False, e)))
        inflight += 1
        while inflight >= limit:
            ok, value = done.get()
            inflight -= 1
            if not ok:
                raise value
            yield value
    while inflight:
        ok, value = done.get()
        inflight -= 1
        if not ok:
            raise value
        yield value


def _resolve_gt(gt: Any, *, format: str | None, split: str | None,
                load_options: Mapping[str, Any] | None = None) -> tuple[_VideoProvider, str | None, str, Any]:
    """``(provider, split, description, dataset_version)`` for any accepted ground truth."""
    from ..loaders import load
    from ..loaders.base import SplitReader

    if isinstance(gt, (str, Path)):
        ds = load(gt, format=format, split=split, **(load_options or {}))
        if split is None:
            names = list(ds.splits)
            if len(names) == 1:
                split = names[0]
            elif "valid" in names:
                split = "valid"
            else:
                raise LongRVOSError(f"{gt}: several splits ({', '.join(names)}); pass --split")
        return _VideoProvider(reader=ds[split]), split, str(gt), ds.version
    if isinstance(gt, SplitReader):
        return _VideoProvider(reader=gt), gt.split, repr(gt), None
    videos: dict[str, Video] = {}
    for v in gt:
        if not isinstance(v, Video):
            raise TypeError(f"ground truth must be a path, a split reader or Videos, got {type(v).__name__}")
        videos[v.video_id] = v
    first = next(iter(videos.values()), None)
    return _VideoProvider(videos=videos), (first.split if first else split), "videos", None


def evaluate(gt: Any, pred: str | Path | P.PredictionSource, *, protocol: str, split: str | None = None,
             format: str | None = None, workers: int = 1, missing: str = "strict", per_frame: bool = False,
             revos_raw: bool = False, lvos_version: int | str | None = None,
             progress: bool | None = None, load_options: Mapping[str, Any] | None = None) -> EvalReport:
    """Score predictions with a dataset's official protocol.

    By default (``missing="strict"``) what was not submitted costs: a missing, unreadable
    or wrong-sized prediction frame scores as an empty mask, a missing expression or video
    scores 0. ``missing="official"`` handles them as each official script does (pass it
    to reproduce the official numbers). Both are computed in one pass: the report's
    ``overall`` follows the policy in force, ``overall_official`` the official handling,
    and ``differences`` lists every deliberate difference from the official script.

    Args:
        gt: a dataset root or split folder in any loader's format (`longrvos_data.load`),
            a split reader (``dataset["valid"]``), or any iterable of annotated `Video`s.
        pred: a PNG folder (``<pred>/<video>/<exp>/<frame>.png``; LVOS ``<pred>/<video>/<frame>.png``),
            an RLE JSON file ``{video: {exp: [RLE | null per frame]}}``, or a `PredictionSource`.
        protocol: ``long_rvos``, ``mevis``, ``revos`` or ``lvos`` (`protocols.PROTOCOLS`).
        split: the split of a path ``gt`` (default: its only split, else ``valid``).
        format: the format of a path ``gt`` (default: detected).
        workers: processes scoring videos in parallel.
        load_options: format options for `loaders.load` (``project``: ``provenance``, ``status``).
        missing: ``strict`` (default) or ``official`` (each toolkit's own behaviour; `protocols`).
        per_frame: keep J and F per frame (`EvalReport.frames`).
        revos_raw: ReVOS A and R on raw grayscale values, as the official script (binarised by default).
        lvos_version: 1 or 2, the unseen video list (default: the dataset's version, else 2).
        progress: show a progress bar (default: when stderr is a terminal).

    Returns:
        The `EvalReport` (rows, aggregates, warnings, differences).

    Raises:
        LongRVOSError: no prediction matches the ground truth at all, or the split has no
            masks; `DataError` (a LongRVOSError) when the ground truth cannot be read or
            decoded, naming the file, the video and the field (from worker processes too).

    Example:
        >>> report = evaluate("data/long_rvos", "out/preds", protocol="long_rvos", split="valid", workers=4)
        >>> report.overall["J&F"]
        0.512...
    """
    if missing not in POLICIES:
        raise ValueError(f"missing must be one of {POLICIES}, not {missing!r}")
    if workers < 1:
        raise ValueError("workers must be at least 1")
    started = time.perf_counter()
    provider, split, gt_desc, version = _resolve_gt(gt, format=format, split=split, load_options=load_options)
    notes: list[dict[str, Any]] = []

    def note(problem: str, message: str) -> None:
        notes.append({"video_id": None, "exp_id": None, "problem": problem, "count": 1, "frames": [],
                      "policy": "none", "message": message})

    model_masks = getattr(provider.reader, "model_masks", None)  # annotation projects say who made each mask
    for vid, count in sorted((model_masks() if model_masks else {}).items()):
        notes.append({"video_id": vid, "exp_id": None, "problem": P.MODEL_GT, "count": count, "frames": [],
                      "policy": "none", "message": f"{count} ground-truth mask(s) have model: provenance (pre-"
                      "annotations nobody corrected); --provenance human,imported scores only the others"})

    options: dict[str, Any] = {}
    if protocol == "lvos":
        v = lvos_version
        if v is None:
            v = str(version).lstrip("v") if version is not None and str(version).lstrip("v") in ("1", "2") else None
            if v is None:
                v = 2
                note("lvos_version", "LVOS version unknown: the v2 unseen video list is used (pass --lvos-version)")
        options["unseen"] = unseen_videos(v)
        options["version"] = int(str(v).lstrip("v"))
    proto = get_protocol(protocol, **options)
    source = pred if isinstance(pred, P.PredictionSource) else P.open_predictions(pred, protocol=protocol)
    scorer = _Scorer(proto, policy=missing, per_frame=per_frame, revos_raw=revos_raw)

    gt_ids = provider.ids()
    if gt_ids:
        first = provider.get(gt_ids[0])
        if not first.has_masks:
            raise LongRVOSError(f"{gt_desc}: split {split!r} has no ground-truth masks (it is scored by its "
                                "evaluation server: `longrvos pack` makes the submission zip)")
        if proto.accuracy:
            _foreground(first)   # indexes mask_dict_foreground.json once, before any worker starts
    order = {vid: k for k, vid in enumerate(gt_ids)}
    from_json = isinstance(source, P.RleJson)
    extra_videos: list[str] = []

    def tasks() -> Iterator[tuple[int, str, Any, bool]]:
        if not from_json:
            for vid in gt_ids:
                yield order[vid], vid, None, False
            return
        seen: set[str] = set()
        for vid, entry in source.iter_videos():
            if vid in order and vid not in seen:
                seen.add(vid)
                yield order[vid], vid, entry, True
            elif vid not in order:
                extra_videos.append(vid)
        for vid in gt_ids:
            if vid not in seen:
                yield order[vid], vid, None, True

    results: list[VideoResult] = []
    show = sys.stderr.isatty() if progress is None else progress
    bar = _progress(len(gt_ids), show)
    if workers == 1:
        threads, level = cv2.getNumThreads(), cv2.utils.logging.getLogLevel()
        saved = dict(_STATE)
        try:
            _init_worker(provider, source, scorer, reopen=False)
            for task in tasks():
                results.append(_work(task))
                bar.update(1)
        finally:
            cv2.setNumThreads(threads)
            cv2.utils.logging.setLogLevel(level)
            _STATE.clear()
            _STATE.update(saved)
    else:
        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
        threads = cv2.getNumThreads()
        cv2.setNumThreads(1)  # before the fork: one OpenCV thread per worker process
        try:
            with ctx.Pool(workers, initializer=_init_worker, initargs=(provider, source, scorer)) as pool:
                for res in _bounded_imap(pool, _work, tasks(), 2 * workers):
                    results.append(res)
                    bar.update(1)
        finally:
            cv2.setNumThreads(threads)
    bar.close()

    if not from_json:
        extra_videos = [v for v in source.video_ids() if v not in order]
    for vid in sorted(extra_videos):
        notes.append({"video_id": vid, "exp_id": None, "problem": P.EXTRA, "count": 1, "frames": [],
                      "policy": "none", "message": "predictions for a video the ground truth does not list; ignored"})

    results.sort(key=lambda r: r.order)
    rows = [row for r in results for row in r.rows]
    if rows and not any(r.matched for r in results):
        raise LongRVOSError(_nothing_matches(source, results, gt_desc, split, proto))
    issues = [i for r in results for i in r.issues]

    def agg_warn(unit_id, frame, problem, message):
        note(problem, message)

    overall, by_kind, extra = proto.aggregate(rows, agg_warn)
    other, _, _ = proto.aggregate([row for r in results for row in r.other_rows], lambda *a: None)
    overall_official = overall if missing == "official" else other
    defects = sum(i["count"] for i in issues if i["problem"] in P.DEFECTS)
    denominators = {d: sum(1 for r in results if r.denominator == d) for d in ("file", "union")}
    differences = _differences(proto, missing, revos_raw=revos_raw, overall=overall,
                               overall_other=other, defects=defects, denominators=denominators)
    warnings = issues + notes
    frames = None
    if per_frame:
        frames = {"video_id": [], proto.unit_key: [], "frame": [], "J": [], "F": []}
        for r in results:
            if r.frames is None:
                continue
            n = len(r.frames["frame"])
            frames["video_id"].extend([r.video_id] * n)
            frames[proto.unit_key].extend(r.frames["exp_id"])
            for k in ("frame", "J", "F"):
                frames[k].extend(r.frames[k])
    counts = {proto.rows_key: len(rows),
              "scored": sum(1 for r in rows if r["status"] in (OK, EMPTY)),
              "zero": sum(1 for r in rows if r["status"] == ZERO),
              "dropped": sum(1 for r in rows if r["status"] == DROPPED),
              "videos": len(results),
              "unit_frames": sum(r.unit_frames for r in results)}
    return EvalReport(protocol=protocol, split=split, gt=gt_desc, pred=str(getattr(source, "root", None) or
                                                                            getattr(source, "path", "")),
                      options={"missing": missing, "revos_raw": revos_raw,
                               **({"lvos_version": options["version"]} if protocol == "lvos" else {})},
                      overall=overall, overall_official=overall_official, differences=differences,
                      by_kind=by_kind, extra=extra, rows=rows, rows_key=proto.rows_key,
                      unit_key=proto.unit_key, metrics=proto.row_metrics, warnings=warnings, counts=counts,
                      frames=frames, seconds=time.perf_counter() - started)


def _nothing_matches(source: P.PredictionSource, results: Sequence[VideoResult], gt_desc: str,
                     split: str | None, proto: Protocol) -> str:
    """The error text when not one prediction matches the ground truth (no J = 0 for a wrong path)."""
    units = sum(len(r.rows) for r in results)
    where = getattr(source, "root", None) or getattr(source, "path", None) or source.kind
    present = [r.video_id for r in results if not any(i["problem"] == P.MISSING_VIDEO for i in r.issues)]
    first = results[0].rows[0]
    if isinstance(source, P.RleJson):
        expected = f"keys {{{first['video_id']!r}: {{{first[proto.unit_key]!r}: [RLE | null per frame]}}}}"
    elif proto.name == "lvos":
        expected = f"{Path(str(where)) / first['video_id']}/<frame>.png"
    else:
        expected = f"{Path(str(where)) / first['video_id'] / str(first[proto.unit_key])}/<frame>.png"
    found = (f"it has {len(present)} of the split's videos but none of their {proto.rows_key}" if present
             else "it has none of the split's videos")
    return (f"{where}: no prediction matches the ground truth ({gt_desc}, split {split!r}: {units} "
            f"{proto.rows_key} in {len(results)} video(s)): {found}; expected e.g. {expected}")


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


def _differences(proto: Protocol, missing: str, *, revos_raw: bool, overall: Mapping[str, Any],
                 overall_other: Mapping[str, Any], defects: int, denominators: Mapping[str, int]) -> list[dict]:
    """Every deliberate difference from the official script in force, one ``{topic, text}`` each."""
    out: list[dict] = []
    key = "J&F"
    if missing == "strict" and proto.strict != proto.official:
        text = ("missing predictions: `--missing strict`: a missing, unreadable or wrong-sized prediction frame "
                "scores as an empty mask, a missing expression or video scores 0")
        if not defects:
            text += "; no prediction is missing or defective, so every figure equals the official script's"
        elif overall.get(key) == overall_other.get(key):
            text += (f"; {defects} defective prediction frame(s) (see warnings) cost the same under the official "
                     f"handling (`overall_official`)")
        else:
            delta = 100 * ((overall.get(key) or 0.0) - (overall_other.get(key) or 0.0))
            text += (f"; {defects} defective prediction frame(s) (see warnings): {key} {_pct(overall.get(key))} "
                     f"here, {_pct(overall_other.get(key))} with the official handling (`overall_official`, "
                     f"`--missing official`), a difference of {delta:+.2f}")
        out.append({"topic": "missing_predictions", "text": text})
    elif missing == "official" and defects:
        text = (f"missing predictions: `--missing official`: {defects} defective prediction frame(s) (see warnings) "
                f"handled as the official script does{proto.official_gaps}")
        if overall.get(key) != overall_other.get(key):
            text += f"; strict scoring (`--missing strict`) gives {key} {_pct(overall_other.get(key))}"
        out.append({"topic": "missing_predictions", "text": text})
    if proto.accuracy and not revos_raw:
        out.append({"topic": "revos_binarised", "text": (
            "ReVOS A and R: predictions are binarised (non-zero = 1) and a target of several objects is their "
            "union; the official script uses raw grayscale values and sums the objects, which mis-scores 0/255 "
            "PNGs (`--revos-raw` reproduces it)")})
    if proto.accuracy:
        n_file, n_union = denominators.get("file", 0), denominators.get("union", 0)
        parts = []
        if n_file:
            parts.append(f"by the foreground masks of mask_dict_foreground.json, as the official script "
                         f"({n_file} video(s))")
        if n_union:
            parts.append(f"by the union of the video's objects in this split, as mask_dict_foreground.json was "
                         f"not found beside the expression file; the official script reads that file "
                         f"({n_union} video(s))")
        out.append({"topic": "revos_r_denominator", "text": "ReVOS R divides " + "; and ".join(parts)})
    return out


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, show: bool):
    if not show:
        return _NoBar()
    from tqdm import tqdm
    return tqdm(total=total, unit="video", desc="eval", file=sys.stderr)
