"""Score predictions against ground truth, one video per task, videos in parallel.

Per video, every ground-truth frame is decoded once (``video.frame_masks(i)`` gives all
objects) and every prediction PNG once; expression targets are unions of the decoded
objects, and a target shared by several expressions is analysed once per frame
(`metrics.MaskInfo`). Videos run in a process pool with at most ``2 * workers`` videos in
flight, so memory is bounded by a few videos whatever the split's size; RLE JSON
predictions are streamed one video at a time.
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

from ..errors import DataError, LongRVOSError
from ..schema import Video
from . import predictions as P
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
_SEVERITY = {"empty": 1, "zero": 2, "drop": 3}


@dataclass
class VideoResult:
    """What one video contributes: rows, issues, optional per-frame values, work done."""

    order: int
    video_id: str
    rows: list[dict[str, Any]]
    issues: list[dict[str, Any]]
    frames: dict[str, list] | None = None
    unit_frames: int = 0


@dataclass
class _UnitState:
    unit: Unit
    positions: dict[int, int]
    scores: UnitScores
    action: str | None = None
    doomed_at: int = -1
    defects: dict[str, P.Issue] = field(default_factory=dict)

    @property
    def doomed(self) -> bool:
        return self.action in ("zero", "drop")


class _Scorer:
    """Scores one video's units frame by frame (decoding each frame once)."""

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
            st = _UnitState(u, {i: k for k, i in enumerate(frames)}, scores)
            states.append(st)
            if not preds.present:
                self._defect(st, log, P.MISSING_VIDEO, None, first=True, video_level=True)
            elif not preds.has_unit(u.unit_id):
                self._defect(st, log, P.MISSING_EXPRESSION, None, first=True)

        gt_error = None
        needed = sorted({i for st in states if not st.doomed for i in st.positions})
        referenced = sorted({t for e in video.expressions for t in e.track_ids})
        work = 0
        for i in needed:
            active = [st for st in states if not st.doomed and i in st.positions]
            name = video.frames[i].name
            if not active:
                continue
            try:
                gt = video.frame_masks(i)
            except DataError as err:
                gt_error = err
                break
            targets: dict[tuple[str, ...], MaskInfo | None] = {}
            fg_area: int | None = None
            for st in active:
                u = st.unit
                rd = preds.read(u.unit_id, i, name)
                if rd.defect is not None and rd.defect != P.MISSING_EXPRESSION:
                    self._defect(st, log, rd.defect, name, first=(i == 0))
                    if st.doomed:
                        st.doomed_at = i
                        continue
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
                        fg_area = _union_area(gt, referenced)
                    if self.revos_raw:
                        sc.a[k], sc.r[k] = raw_accuracy_robustness(
                            _gt_sum(gt, key, video), _raw(rd.mask, video), fg_area)
                    else:
                        sc.a[k] = accuracy(s.intersection, s.gt_area, s.pred_area, video.height * video.width)
                        sc.r[k] = robustness(s.pred_area - s.intersection, fg_area)
                work += 1

        for st in states:   # frames of doomed units are still checked, cheaply, so every gap is listed
            if st.doomed and preds.present and P.MISSING_EXPRESSION not in st.defects:
                for i in st.positions:
                    name = video.frames[i].name
                    if i > st.doomed_at and not preds.exists(st.unit.unit_id, i, name):
                        self._defect(st, log, P.MISSING_FRAME, name, first=(i == 0))
        preds.report_extras(log)

        rows: list[dict[str, Any]] = []
        frames_out: dict[str, list] | None = {"exp_id": [], "frame": [], "J": [], "F": []} if self.per_frame else None
        for st in states:
            u = st.unit
            row: dict[str, Any] = {"video_id": video.video_id, proto.unit_key: u.unit_id, "kind": u.kind}
            if gt_error is not None:
                metrics = {m: None for m in proto.row_metrics}
                status = DROPPED
            elif st.action == "drop":
                metrics, status = {m: None for m in proto.row_metrics}, DROPPED
            elif st.action == "zero":
                metrics, status = proto.zero_row(), ZERO
            else:
                metrics = proto.finalize(u, st.scores, warn)
                status = EMPTY if st.action == "empty" else OK
            row.update({m: _clean(metrics.get(m)) for m in proto.row_metrics})
            row["status"] = status
            row["frames"] = len(st.positions)
            if proto.name == "lvos":
                row["unseen"] = bool(u.meta.get("unseen"))
                row["attributes"] = list(u.meta.get("attributes", ()))
            rows.append(row)
            if frames_out is not None and gt_error is None and status != DROPPED and st.action != "zero":
                for i, k in st.positions.items():
                    frames_out["exp_id"].append(u.unit_id)
                    frames_out["frame"].append(video.frames[i].name)
                    frames_out["J"].append(float(st.scores.j[k]))
                    frames_out["F"].append(float(st.scores.f[k]))
            for issue in st.defects.values():
                issue.policy = st.action if issue.policy is None or \
                    _SEVERITY.get(st.action, 0) >= _SEVERITY.get(issue.policy, 0) else issue.policy
        if gt_error is not None:
            issue = log.add(None, "ground_truth_error", f"ground truth cannot be read ({gt_error}); "
                                                      "the video's rows are left out of every mean")
            issue.policy = "drop"
        for i in log:
            if i.policy is None:
                i.policy = "none"
        issues = [i.as_dict() for i in log]
        return VideoResult(order, video.video_id, rows, issues, frames_out, work)

    def _defect(self, st: _UnitState, log: P.IssueLog, defect: str, frame: str | None, *, first: bool,
                video_level: bool = False) -> None:
        action = self.protocol.action(defect, first_frame=first, policy=self.policy)
        if st.action is None or _SEVERITY[action] > _SEVERITY[st.action]:
            st.action = action
        unit_id = None if video_level else st.unit.unit_id
        issue = log.add(unit_id, defect, _DEFECT_TEXT[defect], frame)
        st.defects[defect] = issue
        if video_level:
            issue.policy = action if issue.policy is None or _SEVERITY[action] > _SEVERITY.get(issue.policy, 0) \
                else issue.policy


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


# -- ground truth and tasks ----------------------------------------------------------------
class _VideoProvider:
    """Gives a worker the ground-truth `Video` of an id: from a split reader or from memory.

    A reader-backed provider re-opens the split in each worker process (`reopen`), so no
    loader state (file handles, caches) is shared across processes.
    """

    def __init__(self, reader: Any = None, videos: Mapping[str, Video] | None = None,
                 spec: tuple[str, str, str] | None = None) -> None:
        self.reader = reader
        self.videos = videos
        self.spec = spec

    def ids(self) -> list[str]:
        return list(self.videos) if self.videos is not None else list(self.reader.video_ids())

    def get(self, video_id: str) -> Video:
        if self.videos is not None:
            return self.videos[video_id]
        return self.reader.video(video_id)

    def reopen(self) -> None:
        if self.spec is not None:
            from ..loaders import load
            path, fmt, split = self.spec
            self.reader = load(path, format=fmt, split=split)[split]

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        if self.spec is not None:
            state["reader"] = None   # re-opened by the worker
        return state


_STATE: dict[str, Any] = {}


def _init_worker(provider: _VideoProvider, source: P.PredictionSource, scorer: _Scorer, reopen: bool = True) -> None:
    if reopen:
        provider.reopen()
    cv2.setNumThreads(1)
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # bad PNGs are reported as warnings
    _STATE.update(provider=provider, source=source, scorer=scorer)


def _work(task: tuple[int, str, Any, bool]) -> VideoResult:
    order, video_id, entry, from_json = task
    provider: _VideoProvider = _STATE["provider"]
    source: P.PredictionSource = _STATE["source"]
    scorer: _Scorer = _STATE["scorer"]
    log = P.IssueLog(video_id)
    try:
        video = provider.get(video_id)
    except DataError as err:
        issue = log.add(None, "ground_truth_error", f"ground truth cannot be read ({err}); the video is left out")
        issue.policy = "drop"
        return VideoResult(order, video_id, [], [i.as_dict() for i in log])
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


def _resolve_gt(gt: Any, *, format: str | None, split: str | None) -> tuple[_VideoProvider, str | None, str, Any]:
    """``(provider, split, description, dataset_version)`` for any accepted ground truth."""
    from ..loaders import load
    from ..loaders.base import SplitReader

    if isinstance(gt, (str, Path)):
        ds = load(gt, format=format, split=split)
        if split is None:
            names = list(ds.splits)
            if len(names) == 1:
                split = names[0]
            elif "valid" in names:
                split = "valid"
            else:
                raise LongRVOSError(f"{gt}: several splits ({', '.join(names)}); pass --split")
        reader = ds[split]
        spec = (str(getattr(reader, "opened_from", gt)), ds.format, split)
        return _VideoProvider(reader=reader, spec=spec), split, str(gt), ds.version
    if isinstance(gt, SplitReader):
        spec = (str(gt.opened_from), gt.format, gt.split) if getattr(gt, "opened_from", None) else None
        return _VideoProvider(reader=gt, spec=spec), gt.split, repr(gt), None
    videos: dict[str, Video] = {}
    for v in gt:
        if not isinstance(v, Video):
            raise TypeError(f"ground truth must be a path, a split reader or Videos, got {type(v).__name__}")
        videos[v.video_id] = v
    first = next(iter(videos.values()), None)
    return _VideoProvider(videos=videos), (first.split if first else split), "videos", None


def evaluate(gt: Any, pred: str | Path | P.PredictionSource, *, protocol: str, split: str | None = None,
             format: str | None = None, workers: int = 1, missing: str = "official", per_frame: bool = False,
             revos_raw: bool = False, lvos_version: int | str | None = None,
             progress: bool | None = None) -> EvalReport:
    """Score predictions with a dataset's official protocol.

    Args:
        gt: a dataset root or split folder in any loader's format (`longrvos_data.load`),
            a split reader (``dataset["valid"]``), or any iterable of annotated `Video`s.
        pred: a PNG folder (``<pred>/<video>/<exp>/<frame>.png``; LVOS ``<pred>/<video>/<frame>.png``),
            an RLE JSON file ``{video: {exp: [RLE | null per frame]}}``, or a `PredictionSource`.
        protocol: ``long_rvos``, ``mevis``, ``revos`` or ``lvos`` (`protocols.PROTOCOLS`).
        split: the split of a path ``gt`` (default: its only split, else ``valid``).
        format: the format of a path ``gt`` (default: detected).
        workers: processes scoring videos in parallel.
        missing: defect policy: ``official`` (each toolkit's behaviour), ``zero``, ``empty`` or ``drop``.
        per_frame: keep J and F per frame (`EvalReport.frames`).
        revos_raw: ReVOS A and R on raw grayscale values, as the official script (binarised by default).
        lvos_version: 1 or 2, the unseen video list (default: the dataset's version, else 2).
        progress: show a progress bar (default: when stderr is a terminal).

    Returns:
        The `EvalReport` (rows, aggregates, warnings).

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
    provider, split, gt_desc, version = _resolve_gt(gt, format=format, split=split)
    notes: list[dict[str, Any]] = []

    def note(problem: str, message: str) -> None:
        notes.append({"video_id": None, "exp_id": None, "problem": problem, "count": 1, "frames": [],
                      "policy": "none", "message": message})

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
        try:
            first = provider.get(gt_ids[0])
        except DataError:
            first = None
        if first is not None and not first.has_masks:
            raise LongRVOSError(f"{gt_desc}: split {split!r} has no ground-truth masks (it is scored by its "
                                "evaluation server: `longrvos pack` makes the submission zip)")
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
        with ctx.Pool(workers, initializer=_init_worker, initargs=(provider, source, scorer)) as pool:
            for res in _bounded_imap(pool, _work, tasks(), 2 * workers):
                results.append(res)
                bar.update(1)
    bar.close()

    if not from_json:
        extra_videos = [v for v in source.video_ids() if v not in order]
    for vid in sorted(extra_videos):
        notes.append({"video_id": vid, "exp_id": None, "problem": P.EXTRA, "count": 1, "frames": [],
                      "policy": "none", "message": "predictions for a video the ground truth does not list; ignored"})

    results.sort(key=lambda r: r.order)
    rows = [row for r in results for row in r.rows]
    issues = [i for r in results for i in r.issues]

    def agg_warn(unit_id, frame, problem, message):
        note(problem, message)

    overall, by_kind, extra = proto.aggregate(rows, agg_warn)
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
                      overall=overall, by_kind=by_kind, extra=extra, rows=rows, rows_key=proto.rows_key,
                      unit_key=proto.unit_key, metrics=proto.row_metrics, warnings=warnings, counts=counts,
                      frames=frames, seconds=time.perf_counter() - started)


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
