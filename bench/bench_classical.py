"""The classical mask engine at 720p: click and box latency and quality, propagation speed,
and J&F on the textured tracking fixture against copying the first mask.

Builds (or reuses) `longrvos_data.synth.textured_lvos` at ``--width`` x ``--height`` with
``--frames`` frames under ``.bench/classical/``, then:

- ``click``: one centroid click per object on ``--click-frames`` frames spread over the video,
  each on a fresh track; latency p50/p95 (``cold``: the frame was not decoded yet, as when a
  person clicks a frame just shown; ``warm``: the same click again) and mean J against the
  ground truth;
- ``box``: the objects' tight boxes on the same frames, latency and mean J;
- ``propagation``: every object from its first annotated frame (``add_mask``) forward over
  the whole video in one run, seconds per frame and per (frame, object) step;
- ``jf``: the propagated masks written as LVOS palette PNGs and scored with
  `longrvos_data.eval.evaluate` (protocol ``lvos``), beside the first mask copied to every
  frame, scored in the same run.

Prints one JSON object. Example:
    python bench/bench_classical.py --width 1280 --height 720 --frames 100
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np

from longrvos_data.annotation.engines import open_engine
from longrvos_data.eval import evaluate
from longrvos_data.loaders import load
from longrvos_data.masks import write_palette_png
from longrvos_data.synth import textured_lvos

DEFAULT_WORKDIR = Path(__file__).resolve().parent.parent / ".bench" / "classical"


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def build(workdir: Path, width: int, height: int, frames: int, seed: int) -> Path:
    """The fixture, reused when an earlier run wrote the same one."""
    path = workdir / f"textured_{width}x{height}x{frames}_s{seed}"
    if not (path / "valid" / "JPEGImages").is_dir():
        shutil.rmtree(path, ignore_errors=True)
        textured_lvos(path, width=width, height=height, num_frames=frames, seed=seed)
    return path


def percentiles(values: list[float]) -> dict[str, float]:
    a = np.asarray(values) * 1000
    return {"p50_ms": round(float(np.percentile(a, 50)), 1), "p95_ms": round(float(np.percentile(a, 95)), 1),
            "max_ms": round(float(a.max()), 1), "n": len(values)}


def prompts(video, engine, gts, frames: list[int]) -> dict:
    """Centroid clicks and tight boxes on ``frames``, each on a fresh track."""
    out = {k: {"cold": [], "warm": [], "j": []} for k in ("click", "box")}
    for f in frames:
        for tid, gt in sorted(gts[f].items()):
            ys, xs = np.nonzero(gt)
            point = [(float(xs.mean()), float(ys.mean()))]
            box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
            for kind, call in (("click", lambda f=f, p=point: engine.add_points(f, "probe", p, [1])),
                               ("box", lambda f=f, b=box: engine.add_box(f, "probe", b))):
                engine._frames.clear()   # the frame a person just opened is not decoded yet
                for phase in ("cold", "warm"):
                    engine.remove_track("probe")
                    t0 = time.perf_counter()
                    mask = call()
                    out[kind][phase].append(time.perf_counter() - t0)
                out[kind]["j"].append(iou(mask, gt))
                engine.remove_track("probe")
    return {kind: {"cold": percentiles(v["cold"]), "warm": percentiles(v["warm"]),
                   "mean_J": round(float(np.mean(v["j"])), 4), "min_J": round(float(np.min(v["j"])), 4)}
            for kind, v in out.items()}


def propagate(video, engine, gts, pred: Path, copy: Path) -> dict:
    """Every object from its first annotated frame, one forward run; writes both prediction folders."""
    firsts = {}
    for i in range(video.num_frames):
        for tid in gts[i]:
            firsts.setdefault(tid, i)
    ids = {tid: int(tid) for tid in firsts}
    engine.reset()
    for tid, f in firsts.items():
        engine.add_mask(f, tid, gts[f][tid])
    shape = (video.height, video.width)
    current: dict[int, dict[str, np.ndarray | None]] = {}
    steps, t0 = 0, time.perf_counter()
    for step in engine.propagate(list(firsts), start=min(firsts.values()), end=video.num_frames):
        current.setdefault(step.frame_index, {})[step.track_id] = step.mask
        steps += 1
    seconds = time.perf_counter() - t0
    j_engine, j_copy = [], []
    for i in range(video.num_frames):
        got, held = np.zeros(shape, np.uint8), np.zeros(shape, np.uint8)
        for tid in sorted(firsts, key=ids.get):
            m = current.get(i, {}).get(tid)
            if m is not None:
                got[m] = ids[tid]
            if i >= firsts[tid]:
                held[gts[firsts[tid]][tid]] = ids[tid]
            gt = gts[i].get(tid, np.zeros(shape, bool))
            if i > firsts[tid]:
                j_engine.append(iou(m if m is not None else np.zeros(shape, bool), gt))
                j_copy.append(iou(gts[firsts[tid]][tid], gt))
        name = video.frames[i].name
        write_palette_png(pred / video.video_id / f"{name}.png", got)
        write_palette_png(copy / video.video_id / f"{name}.png", held)
    return {"seconds": round(seconds, 2), "s_per_frame": round(seconds / video.num_frames, 4),
            "s_per_object_frame": round(seconds / max(steps, 1), 4), "objects": len(firsts),
            "mean_J_own": round(float(np.mean(j_engine)), 4), "copy_mean_J_own": round(float(np.mean(j_copy)), 4)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--click-frames", type=int, default=20, help="frames clicked (one click per object each)")
    parser.add_argument("--image-size", type=int, default=None, help="working long side (engine default: 480)")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    args = parser.parse_args(argv)

    wall = time.perf_counter()
    fixture = build(args.workdir, args.width, args.height, args.frames, args.seed)
    build_s = time.perf_counter() - wall
    video = next(iter(load(fixture, format="lvos", split="valid")["valid"]))
    gts = [video.frame_masks(i) for i in range(video.num_frames)]
    engine = open_engine("classical")
    engine.open(video, image_size=args.image_size)
    clicked = sorted(set(np.linspace(0, video.num_frames - 1, args.click_frames).round().astype(int).tolist()))
    report: dict = {"bench": "classical", "video": f"{video.width}x{video.height}x{video.num_frames}",
                    "working_size": list(engine._work_size), "fixture_build_s": round(build_s, 1)}
    report.update(prompts(video, engine, gts, clicked))

    out = args.workdir / "pred" / fixture.name
    pred, copy = out / "classical", out / "copy_first"
    shutil.rmtree(out, ignore_errors=True)
    report["propagation"] = propagate(video, engine, gts, pred, copy)
    engine.close()
    scores = {}
    for key, folder in (("classical", pred), ("copy_first", copy)):
        r = evaluate(fixture, folder, protocol="lvos", split="valid")
        scores[key] = {m: round(float(r.overall[m]), 4) for m in ("J&F", "J", "F") if r.overall.get(m) is not None}
    scores["margin_over_copy"] = round(scores["classical"]["J&F"] - scores["copy_first"]["J&F"], 4)
    report["jf"] = scores
    report["targets"] = {
        "click_p95_le_300ms": report["click"]["cold"]["p95_ms"] <= 300,
        "click_J_ge_0.7": report["click"]["mean_J"] >= 0.7,
        "box_J_ge_0.85": report["box"]["mean_J"] >= 0.85,
        "jf_ge_0.8": scores["classical"]["J&F"] >= 0.8,
        "jf_beats_copy_by_0.2": scores["margin_over_copy"] >= 0.2,
    }
    report["wall_s"] = round(time.perf_counter() - wall, 1)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
