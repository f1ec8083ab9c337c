"""The evaluation report: one object, written as JSON, CSV rows, a Markdown table, and parquet frames.

``REPORT.json`` holds ``differences`` (every deliberate difference from the official
script in force), ``overall`` (under the ``--missing`` policy in force) and
``overall_official`` (the official handling of missing predictions; the same figures when
nothing is missing) and ``by_kind`` (objects keyed by metric name, values in [0, 1]), the
rows (``expressions``, LVOS ``objects``) and ``warnings``; ``REPORT.csv`` (the rows) and
``REPORT.md`` (the differences first, then the table in percent) are written beside it,
and with per-frame values ``REPORT.frames.parquet`` (J and F per video, expression/object
and frame).
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..fsutil import atomic_write_bytes, atomic_write_json, report_paths

MD_WARNINGS = 50  # warning rows shown in the Markdown table; all are in the JSON


@dataclass
class EvalReport:
    """Everything an evaluation produced.

    Attributes:
        overall: ``{metric: value}`` (``J``, ``F``, ``J&F`` and the protocol's own) under the
            ``options["missing"]`` policy.
        overall_official: the same with missing predictions handled as the official script does.
        differences: ``[{"topic": ..., "text": ...}]``, every deliberate difference from the
            official script in force (missing-prediction policy, ReVOS binarised A/R, ReVOS R's
            denominator).
        by_kind: ``{kind: {metric: value}}`` in the schema's kind vocabulary.
        extra: protocol extras, e.g. LVOS ``by_attribute``.
        rows: one dict per expression (LVOS: object) with ``video_id``, ``exp_id``
            (``track_id``), ``kind``, the metrics, ``status`` (ok / empty / zero / dropped)
            and ``frames``.
        warnings: every missing, odd or extra prediction with the policy applied.
        frames: with ``per_frame``, columns ``video_id``, ``exp_id``/``track_id``, ``frame``, ``J``, ``F``.
    """

    protocol: str
    split: str | None
    gt: str
    pred: str
    options: dict[str, Any]
    overall: dict[str, float | None]
    by_kind: dict[str, dict[str, float | None]]
    extra: dict[str, Any]
    rows: list[dict[str, Any]]
    rows_key: str
    unit_key: str
    metrics: tuple[str, ...]
    warnings: list[dict[str, Any]]
    counts: dict[str, int]
    overall_official: dict[str, float | None] = field(default_factory=dict)
    differences: list[dict[str, str]] = field(default_factory=list)
    frames: dict[str, list] | None = None
    seconds: float = 0.0
    files: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``REPORT.json``)."""
        out = {"protocol": self.protocol, "split": self.split, "gt": self.gt, "pred": self.pred,
               "options": self.options, "differences": self.differences, "counts": self.counts,
               "overall": self.overall, "overall_official": self.overall_official, "by_kind": self.by_kind}
        out.update(self.extra)
        out[self.rows_key] = self.rows
        out["warnings"] = self.warnings
        out["seconds"] = round(self.seconds, 3)
        return out

    # -- CSV ---------------------------------------------------------------------------
    def columns(self) -> list[str]:
        cols = ["video_id", self.unit_key, "kind", *self.metrics, "status", "frames"]
        if self.protocol == "lvos":
            cols += ["unseen", "attributes"]
        return cols

    def to_csv(self) -> str:
        """The rows as CSV (``REPORT.csv``)."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        cols = self.columns()
        writer.writerow(cols)
        for row in self.rows:
            values = []
            for c in cols:
                v = row.get(c)
                if isinstance(v, (list, tuple)):
                    v = ";".join(map(str, v))
                values.append("" if v is None else v)
            writer.writerow(values)
        return buf.getvalue()

    # -- Markdown ----------------------------------------------------------------------
    def to_markdown(self) -> str:
        """The differences from the official script, the summary table in percent, the counts and
        the warnings (``REPORT.md``)."""
        keys = [k for k in self.overall]
        lines = [f"# {self.protocol} evaluation" + (f" — split `{self.split}`" if self.split else ""), ""]
        if self.differences:
            lines += ["Differences from the official script:", ""]
            lines += [f"- {d['text']}" for d in self.differences]
            lines.append("")
        lines += ["| | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]
        lines.append("| **overall** | " + " | ".join(_pct(self.overall.get(k)) for k in keys) + " |")
        if self.overall_official and self.overall_official != self.overall:
            lines.append("| overall, official handling of missing predictions | "
                         + " | ".join(_pct(self.overall_official.get(k)) for k in keys) + " |")
        for kind, vals in self.by_kind.items():
            lines.append(f"| {kind} | " + " | ".join(_pct(vals.get(k)) for k in keys) + " |")
        by_attr = self.extra.get("by_attribute") or {}
        if by_attr:
            attr_keys = ["J", "F", "J&F", "V"]
            lines += ["", "| attribute | objects | " + " | ".join(attr_keys) + " |",
                      "|---|---:|" + "---:|" * len(attr_keys)]
            for attr, vals in by_attr.items():
                lines.append(f"| {attr} | {vals['objects']} | " + " | ".join(_pct(vals.get(k)) for k in attr_keys)
                             + " |")
        c = self.counts
        lines += ["", f"{c.get(self.rows_key, 0)} {self.rows_key} in {c.get('videos', 0)} videos: "
                      f"{c.get('scored', 0)} scored, {c.get('zero', 0)} scored 0, {c.get('dropped', 0)} dropped."]
        if self.warnings:
            lines += ["", f"## Warnings ({len(self.warnings)})", "",
                      "| video | " + self.unit_key + " | problem | count | policy | message |",
                      "|---|---|---|---:|---|---|"]
            for w in self.warnings[:MD_WARNINGS]:
                frames = ", ".join(w.get("frames") or [])
                msg = w["message"] + (f" ({frames}{', …' if w['count'] > len(w.get('frames') or []) else ''})"
                                      if frames else "")
                lines.append(f"| {w.get('video_id') or ''} | {w.get('exp_id') or ''} | {w['problem']} | "
                             f"{w['count']} | {w.get('policy') or ''} | {msg.replace('|', '/')} |")
            if len(self.warnings) > MD_WARNINGS:
                lines.append(f"\n… and {len(self.warnings) - MD_WARNINGS} more in the JSON report.")
        return "\n".join(lines) + "\n"

    # -- files -------------------------------------------------------------------------
    def write(self, out: str | Path) -> dict[str, Path]:
        """Write ``out`` (JSON) and, beside it, ``.csv``, ``.md`` and ``.frames.parquet``.

        Returns:
            ``{"json": path, "csv": path, "md": path[, "frames": path]}``.

        Example:
            >>> report.write("results/REPORT.json")["csv"]
            PosixPath('results/REPORT.csv')
        """
        paths = report_paths(out)
        atomic_write_json(paths["json"], _json_safe(self.to_dict()), indent=1)
        atomic_write_bytes(paths["csv"], self.to_csv().encode("utf-8"))
        atomic_write_bytes(paths["md"], self.to_markdown().encode("utf-8"))
        if self.frames is not None:
            paths["frames"] = report_paths(out, ("frames.parquet",))["frames.parquet"]
            write_frames_parquet(paths["frames"], self.frames, self.unit_key)
        self.files = {k: str(v) for k, v in paths.items()}
        return paths


def write_frames_parquet(path: Path, frames: Mapping[str, Sequence], unit_key: str) -> None:
    """Per-frame J and F as parquet, written atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"video_id": pa.array(frames["video_id"], pa.string()),
                      unit_key: pa.array(frames[unit_key], pa.string()),
                      "frame": pa.array(frames["frame"], pa.string()),
                      "J": pa.array(frames["J"], pa.float64()),
                      "F": pa.array(frames["F"], pa.float64())})
    buf = pa.BufferOutputStream()
    pq.write_table(table, buf)
    atomic_write_bytes(path, buf.getvalue().to_pybytes())


def _pct(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{100 * value:.2f}"


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float) and (math.isnan(obj) or math.isinf(obj)):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj
