"""Each dataset's official protocol: what is scored, what a defect costs, how rows add up.

========== ==================================== ============================================
protocol   scored unit (row)                    aggregation (``overall`` / ``by_kind``)
========== ==================================== ============================================
long_rvos  expression, all listed frames:       mean over expressions, pooled, and per kind
           J, F, J&F, tIoU, vIoU                (static, dynamic, hybrid)
mevis      expression, all listed frames:       mean over expressions, pooled, and per kind
           J, F, J&F                            (no-target expressions are their own kind)
revos      expression, all listed frames:       per kind (referring, reasoning) the mean of the
           J, F, J&F, A, R                      rows rounded to 0.01 % (as VISA's script);
                                                overall = mean of the two kinds; no-target rows
                                                are listed but enter no aggregate
lvos       object, frames range(start, end, 5)  seen and unseen means over objects; J, F, V =
           minus the first and the last: J, F, V  mean of the two; J&F = (Js + Fs + Ju + Fu) / 4
========== ==================================== ============================================

Defect policies (``--missing``). ``strict`` (the default) scores what was submitted: a
missing, unreadable or wrong-sized prediction frame is an empty mask, a missing expression
or video scores 0 on every measure. ``official`` is what each official script does (use it
for parity with the official numbers); the report carries both figures (``overall`` and
``overall_official``), computed in one pass:

============================ ========== ========== ========== ====================================
official                     long_rvos  mevis      revos      lvos
============================ ========== ========== ========== ====================================
missing video                zero       zero       zero       empty (official: the run stops)
missing expression folder    drop (*)   drop (*)   zero       -
missing first frame          drop (*)   drop (*)   zero       empty (official: the run stops)
missing later frame          empty      drop (*)   zero       empty (official: the run stops)
wrong size / unreadable      drop (*)   drop (*)   zero       empty (official: assertion error)
============================ ========== ========== ========== ====================================

(*) the official worker process dies on the exception and the expression silently
disappears from the mean; here it is dropped too, but always listed in ``warnings``.
``zero`` scores the expression 0 on every measure, ``empty`` scores the defective frames
as empty masks, ``drop`` leaves the expression out of every mean. ReVOS's official
``zero`` is already strict: there both policies agree.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..schema import Video
from .. import predictions as P
from .metrics import lvos_variance, temporal_ious

PROTOCOLS = ("long_rvos", "mevis", "revos", "lvos")
POLICIES = ("strict", "official")

# What a defect costs under ``strict`` (ReVOS: its official table, which is as strict).
STRICT = {P.MISSING_VIDEO: "zero", P.MISSING_EXPRESSION: "zero", P.MISSING_FRAME: "empty", P.WRONG_SIZE: "empty",
          P.UNREADABLE: "empty"}

OK, EMPTY, ZERO, DROPPED = "ok", "empty", "zero", "dropped"


@dataclass(frozen=True)
class Unit:
    """One scored row: an expression (referring protocols) or an object (LVOS).

    ``frames`` are the frame indices scored, in order (None = every frame of the video);
    ``meta`` carries protocol details (LVOS slots, seen/unseen, attributes).
    """

    unit_id: str
    kind: str | None
    track_ids: tuple[str, ...]
    frames: tuple[int, ...] | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class UnitScores:
    """Per-frame values of one unit (arrays aligned with ``Unit.frames`` or the video's frames)."""

    j: np.ndarray
    f: np.ndarray
    gt_present: np.ndarray
    pred_present: np.ndarray
    a: np.ndarray | None = None
    r: np.ndarray | None = None


def _nan_to_none(value: float) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def _mean(values: Sequence[float | None]) -> float:
    """Mean of the defined values (a row of a video without frames has None)."""
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return float(np.mean(vals)) if vals else math.nan


class Protocol:
    """Base: per-unit metrics, policies and aggregation of one official toolkit."""

    name: str = ""
    rows_key: str = "expressions"
    unit_key: str = "exp_id"
    row_metrics: tuple[str, ...] = ("J", "F", "J&F")
    temporal: bool = False
    accuracy: bool = False
    official: Mapping[str, str] = {}
    strict: Mapping[str, str] = STRICT
    official_gaps: str = ""   # where ``official`` cannot be what the script does (it crashes or stops)
    shared_frames: bool = False  # one prediction file per frame serves every unit (LVOS)

    def __init__(self, **options: Any) -> None:
        self.options = options

    # -- what is scored ---------------------------------------------------------------
    def units(self, video: Video, warn) -> list[Unit]:
        """Expressions of the video as units (referring protocols)."""
        return [Unit(e.exp_id, e.kind, tuple(e.track_ids)) for e in video.expressions]

    # -- what a defect costs ----------------------------------------------------------
    def action(self, defect: str, *, first_frame: bool, policy: str) -> str:
        """``zero`` / ``empty`` / ``drop`` for one defect under ``policy`` (`POLICIES`)."""
        if policy == "strict":
            return self.strict[defect]
        if policy != "official":
            raise ValueError(f"missing must be one of {POLICIES}, not {policy!r}")
        if defect == P.MISSING_FRAME and first_frame and self.name == "long_rvos":
            return "drop"
        return self.official[defect]

    # -- per-unit values --------------------------------------------------------------
    def finalize(self, unit: Unit, s: UnitScores, warn) -> dict[str, float | None]:
        j = float(np.mean(s.j)) if s.j.size else math.nan
        f = float(np.mean(s.f)) if s.f.size else math.nan
        row: dict[str, float | None] = {"J": j, "F": f, "J&F": (j + f) / 2}
        if self.temporal:
            row["tIoU"], row["vIoU"] = temporal_ious(s.j, s.gt_present, s.pred_present)
        if self.accuracy:
            row["A"] = float(np.mean(s.a)) if s.a is not None and s.a.size else math.nan
            row["R"] = float(np.mean(s.r)) if s.r is not None and s.r.size else math.nan
        return row

    def zero_row(self) -> dict[str, float]:
        return {m: 0.0 for m in self.row_metrics}

    # -- aggregation ------------------------------------------------------------------
    def _pool(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        if not rows:
            return {m: None for m in self.row_metrics}
        for m in self.row_metrics:
            if m == "J&F":
                continue
            out[m] = _mean([r[m] for r in rows])
        out["J&F"] = (out["J"] + out["F"]) / 2
        return {m: _nan_to_none(out[m]) for m in self.row_metrics}

    def aggregate(self, rows: Sequence[Mapping[str, Any]], warn) -> tuple[dict, dict, dict]:
        """``(overall, by_kind, extra)`` from the scored rows (dropped rows excluded)."""
        scored = [r for r in rows if r["status"] != DROPPED]
        by_kind: dict[str, dict] = {}
        for kind in _kinds_in_order(scored):
            by_kind[kind] = self._pool([r for r in scored if r["kind"] == kind])
        return self._pool(scored), by_kind, {}


_KIND_ORDER = ("static", "dynamic", "hybrid", "referring", "reasoning", "no-target", "caption")


def _kinds_in_order(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    kinds = {r["kind"] for r in rows if r["kind"] is not None}
    return [k for k in _KIND_ORDER if k in kinds] + sorted(kinds - set(_KIND_ORDER))


class LongRVOSProtocol(Protocol):
    name = "long_rvos"
    row_metrics = ("J", "F", "J&F", "tIoU", "vIoU")
    temporal = True
    official = {P.MISSING_VIDEO: "zero", P.MISSING_EXPRESSION: "drop", P.MISSING_FRAME: "empty",
                P.WRONG_SIZE: "drop", P.UNREADABLE: "drop"}
    official_gaps = ("; where the official worker process crashes (a missing expression folder or first frame, "
                     "a wrong-sized or unreadable frame) the expression is dropped from the means, and listed "
                     "(the official run also loses the expressions queued behind that worker)")


class MeViSProtocol(Protocol):
    name = "mevis"
    official = {P.MISSING_VIDEO: "zero", P.MISSING_EXPRESSION: "drop", P.MISSING_FRAME: "drop",
                P.WRONG_SIZE: "drop", P.UNREADABLE: "drop"}
    official_gaps = ("; where the official worker process crashes (a missing expression folder or frame, "
                     "a wrong-sized or unreadable frame) the expression is dropped from the means, and listed "
                     "(the official run also loses the expressions queued behind that worker)")


class ReVOSProtocol(Protocol):
    """ReVOS (VISA ``tools/eval_revos.py``).

    Options:
        raw: reproduce the official A and R on raw grayscale values (0/255 predictions are
            mis-scored); by default predictions are binarised first.
    """

    name = "revos"
    row_metrics = ("J", "F", "J&F", "A", "R")
    accuracy = True
    official = {P.MISSING_VIDEO: "zero", P.MISSING_EXPRESSION: "zero", P.MISSING_FRAME: "zero",
                P.WRONG_SIZE: "zero", P.UNREADABLE: "zero"}
    strict = official
    groups = ("referring", "reasoning")

    def _rounded_means(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, float | None]:
        # VISA rounds every row to 0.01 % before averaging; J&F is the mean of the J and F means.
        if not rows:
            return {m: None for m in self.row_metrics}
        out = {m: _mean([None if r[m] is None else round(100 * r[m], 2) for r in rows]) / 100
               for m in ("J", "F", "A", "R")}
        out["J&F"] = (out["J"] + out["F"]) / 2
        return {m: _nan_to_none(out[m]) for m in self.row_metrics}

    def aggregate(self, rows, warn):
        scored = [r for r in rows if r["status"] != DROPPED]
        by_kind = {k: self._rounded_means([r for r in scored if r["kind"] == k]) for k in self.groups
                   if any(r["kind"] == k for r in scored)}
        others = sorted({r["kind"] for r in scored} - set(self.groups))
        if others:
            warn(None, None, "kinds_not_aggregated",
                 f"expressions of kind(s) {others} are listed but enter no aggregate (as the official script)")
        present = [by_kind[k] for k in self.groups if k in by_kind]
        if len(present) < len(self.groups) and present:
            missing = [k for k in self.groups if k not in by_kind]
            warn(None, None, "incomplete_groups",
                 f"no {' / '.join(missing)} expressions: overall is the mean of the groups present "
                 "(the official script would print NaN)")
        overall = {m: (_nan_to_none(float(np.mean([g[m] for g in present]))) if present else None)
                   for m in self.row_metrics}
        return overall, by_kind, {}


class LVOSProtocol(Protocol):
    """LVOS v1/v2 semi-supervised evaluation (lvos-evaluation).

    Options:
        unseen: the unseen video ids (`unseen_videos`), deciding the seen/unseen split.
    """

    name = "lvos"
    rows_key = "objects"
    unit_key = "track_id"
    shared_frames = True
    row_metrics = ("J", "F", "J&F", "V")
    official = {P.MISSING_VIDEO: "empty", P.MISSING_EXPRESSION: "empty", P.MISSING_FRAME: "empty",
                P.WRONG_SIZE: "empty", P.UNREADABLE: "empty"}
    official_gaps = ("; where the official toolkit stops (a missing video or frame) or fails (an unreadable or "
                     "wrong-sized frame) those frames are scored as empty masks instead")

    def units(self, video: Video, warn) -> list[Unit]:
        unseen = video.video_id in self.options.get("unseen", frozenset())
        attributes = tuple(str(a) for a in (video.meta.get("attributes") or ()))
        index = {}
        for i, f in enumerate(video.frames):
            try:
                index[int(f.name)] = i
            except ValueError:
                pass
        units = []
        derived = []
        for t in video.tracks:
            meta: dict[str, Any] = {"unseen": unseen, "attributes": attributes}
            fr = t.meta.get("frame_range") if isinstance(t.meta, Mapping) else None
            if not isinstance(fr, Mapping):
                derived.append(t.track_id)
                units.append(Unit(t.track_id, None, (t.track_id,), None, meta))
                continue
            try:
                start, end, nums = int(fr["start"]), int(fr["end"]), int(fr["frame_nums"])
            except (KeyError, TypeError, ValueError):
                warn(t.track_id, None, "bad_frame_range", f"frame_range {dict(fr)!r} is not start/end/frame_nums; "
                     "the span where the object is annotated is used")
                derived.append(t.track_id)
                units.append(Unit(t.track_id, None, (t.track_id,), None, meta))
                continue
            slots = max(nums - 2, 0)
            frames, slot_of, absent = [], [], []
            numbers = list(range(start, end, 5))
            for k, n in enumerate(numbers):
                if k == 0 or k == nums - 1:
                    continue
                if k - 1 >= slots:
                    warn(t.track_id, None, "bad_frame_range",
                         f"frame_range lists {len(numbers)} frames from {start} to {end} but frame_nums is {nums}: "
                         "frames after the last slot are ignored (the official toolkit fails on this video)")
                    break
                if n not in index:
                    absent.append(f"{n:08d}")
                    continue
                frames.append(index[n])
                slot_of.append(k - 1)
            if len(numbers) + 1 < nums:
                warn(t.track_id, None, "bad_frame_range",
                     f"frame_range from {start} to {end} covers fewer frames than frame_nums={nums}: "
                     "the unfilled slots score 0, as in the official toolkit")
            if absent:
                warn(t.track_id, None, "frame_not_in_video",
                     f"{len(absent)} frame(s) of the object's range are not in the video ({', '.join(absent[:5])}"
                     f"{'…' if len(absent) > 5 else ''}); their slots score 0")
            meta.update(slots=slots, slot_of=tuple(slot_of))
            units.append(Unit(t.track_id, None, (t.track_id,), tuple(frames), meta))
        if derived:
            warn(None, None, "no_frame_range",
                 f"object(s) {derived} have no frame_range: scored from the frame after the first annotated "
                 "one to the frame before the last annotated one")
        return units

    def finalize(self, unit: Unit, s: UnitScores, warn) -> dict[str, float | None]:
        if unit.frames is None:   # derived range: the annotated span, first and last frames excluded
            present = np.flatnonzero(s.gt_present)
            if present.size:
                lo, hi = int(present[0]), int(present[-1])
                j_arr, f_arr = s.j[lo + 1:hi], s.f[lo + 1:hi]
            else:
                j_arr = f_arr = np.zeros(0)
        else:
            slots = unit.meta["slots"]
            j_arr, f_arr = np.zeros(slots), np.zeros(slots)
            idx = np.asarray(unit.meta["slot_of"], dtype=np.int64)
            j_arr[idx] = s.j
            f_arr[idx] = s.f
        if j_arr.size == 0:
            warn(unit.unit_id, None, "no_frames",
                 "the object has no frame to score (frame range of 2 frames or less): J, F and V are NaN "
                 "and it enters no mean")
            return {"J": math.nan, "F": math.nan, "J&F": math.nan, "V": math.nan}
        j, f = float(np.nanmean(j_arr)), float(np.nanmean(f_arr))
        return {"J": j, "F": f, "J&F": (j + f) / 2, "V": lvos_variance(j_arr, f_arr)}

    def zero_row(self) -> dict[str, float]:
        return {"J": 0.0, "F": 0.0, "J&F": 0.0, "V": 0.0}

    @staticmethod
    def _group(rows, metric) -> float:
        vals = [r[metric] for r in rows if r[metric] is not None and not math.isnan(r[metric])]
        return float(np.mean(vals)) if vals else math.nan

    def aggregate(self, rows, warn):
        scored = [r for r in rows if r["status"] != DROPPED]
        seen = [r for r in scored if not r["unseen"]]
        unseen = [r for r in scored if r["unseen"]]
        g = {f"{m}_{name}": self._group(grp, m) for name, grp in (("seen", seen), ("unseen", unseen))
             for m in ("J", "F", "V")}
        groups = [name for name, grp in (("seen", seen), ("unseen", unseen)) if grp]
        if len(groups) == 1:
            warn(None, None, "one_group",
                 f"only {groups[0]} objects: the headline figures are the {groups[0]} means "
                 "(the official mean of the seen and unseen means would be NaN)")
        overall: dict[str, float] = {}
        for m in ("J", "F", "V"):
            vals = [g[f"{m}_{n}"] for n in groups]
            overall[m] = float(np.mean(vals)) if vals else math.nan
        overall["J&F"] = (overall["J"] + overall["F"]) / 2
        overall.update(g)
        keys = ("J", "F", "J&F", "V", "J_seen", "F_seen", "V_seen", "J_unseen", "F_unseen", "V_unseen")
        by_attribute: dict[str, dict] = {}
        for attr in sorted({a for r in scored for a in r.get("attributes", ())}):
            grp = [r for r in scored if attr in r.get("attributes", ())]
            j, f, v = self._group(grp, "J"), self._group(grp, "F"), self._group(grp, "V")
            by_attribute[attr] = {"J": _nan_to_none(j), "F": _nan_to_none(f), "J&F": _nan_to_none((j + f) / 2),
                                  "V": _nan_to_none(v), "objects": len(grp)}
        extra = {"by_attribute": by_attribute} if by_attribute else {}
        return {k: _nan_to_none(overall[k]) for k in keys}, {}, extra


def unseen_videos(version: int | str) -> frozenset[str]:
    """The LVOS unseen video ids shipped with the package (``data/lvos_v{1,2}_unseen_videos.txt``).

    Example:
        >>> len(unseen_videos(1)), len(unseen_videos(2))
        (27, 51)
    """
    v = str(version).lstrip("v")
    if v not in ("1", "2"):
        raise ValueError(f"LVOS version must be 1 or 2, not {version!r}")
    text = resources.files("longrvos_data").joinpath("data", f"lvos_v{v}_unseen_videos.txt").read_text()
    return frozenset(line.strip() for line in text.splitlines() if line.strip())


def get_protocol(name: str, **options: Any) -> Protocol:
    """The protocol object for a name in `PROTOCOLS`."""
    classes = {"long_rvos": LongRVOSProtocol, "mevis": MeViSProtocol, "revos": ReVOSProtocol, "lvos": LVOSProtocol}
    if name not in classes:
        raise ValueError(f"unknown protocol {name!r}; choose one of {', '.join(PROTOCOLS)}")
    return classes[name](**options)
