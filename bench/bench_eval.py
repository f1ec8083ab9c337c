"""Benchmark ``longrvos eval`` against the decode floor and the straightforward reference.

Data (generated once into ``.bench/eval``, reused when present): a Long-RVOS ``valid`` split
of ``--videos`` videos x ``--frames`` frames at 720p, 1 to 3 objects per video covering
about 2 to 15 % of the frame, 1 to 4 expressions per object, and imperfect predictions
(shifted masks, misses, false positives) as 0/255 PNGs and as one RLE JSON.

Phases, each in its own process (so that its peak RSS is its own), all at one worker
unless said otherwise:

- ``floor``: decode every ground-truth PNG (through the loader, ``video.frame_masks``) and
  every prediction PNG once (``cv2.imdecode``, as eval reads them), nothing else;
- ``eval_1w`` / ``eval_2w``: ``longrvos_data.eval.evaluate`` with one / two workers (with
  ``missing="official"``, as every comparison with the official scripts; the predictions are
  complete, so the default ``strict`` gives the same figures);
- ``rle_1w``: the same with the RLE JSON predictions;
- ``reference``: ``bench/reference_eval.py`` (per expression, full frames, as the official
  scripts) on the first ``--reference-videos`` videos (it is slow);
- ``interleaved``: floor, eval at one and at two workers alternated ``--rounds`` times on
  the first ``--subset`` videos, best round of each: the ratios a shared machine can trust.

Prints one JSON object: seconds per expression-frame for each phase, the ratios the issue
asks for, and peak RSS per phase.

Usage::

    .venv/bin/python bench/bench_eval.py            # generate if needed, run every phase
    .venv/bin/python bench/bench_eval.py --phase floor
"""
from __future__ import annotations

import argparse
import io
import json
import math
import os
import resource
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA = Path(os.environ.get("LONGRVOS_BENCH_EVAL", REPO / ".bench" / "eval"))
KINDS = ("static", "dynamic", "hybrid")


def _params(args) -> dict:
    return {"videos": args.videos, "frames": args.frames, "height": 720, "width": 1280, "seed": 0, "version": 2}


def generate(args) -> None:
    """Write the ground truth, PNG predictions and RLE JSON predictions (once)."""
    from longrvos_data import masks as M
    from longrvos_data.converters import long_rvos as writer
    from longrvos_data.fsutil import atomic_write_json
    from longrvos_data.schema import Expression
    from longrvos_data.synth import synth_videos

    marker = DATA / "params.json"
    if marker.is_file() and json.loads(marker.read_text()) == _params(args):
        return
    import shutil
    shutil.rmtree(DATA, ignore_errors=True)
    DATA.mkdir(parents=True)
    rng = np.random.default_rng(0)
    base = synth_videos(dataset="long_rvos", split="valid", staging=DATA / "staging", num_videos=args.videos,
                        num_frames=args.frames, sizes=((720, 1280),), max_objects=3, seed=0, jpeg_quality=80)
    videos = []
    for v in base:
        exps = []
        for t in v.tracks:
            for k in range(int(rng.integers(1, 5))):
                eid = str(len(exps))
                exps.append(Expression(eid, f"object {t.track_id} expression {k}", (t.track_id,),
                                       KINDS[len(exps) % 3], kind_raw=KINDS[len(exps) % 3]))
        videos.append(replace(v, expressions=tuple(exps)))
    writer.write({"valid": videos}, DATA / "gt")
    shutil.rmtree(DATA / "staging", ignore_errors=True)
    preds: dict = {}
    t0 = time.time()
    for v in videos:
        preds[v.video_id] = {e.exp_id: [] for e in v.expressions}
        for i, f in enumerate(v.frames):
            masks = v.frame_masks(i)
            for e in v.expressions:
                g = masks.get(e.track_ids[0])
                g = np.zeros((v.height, v.width), bool) if g is None else g
                p = np.roll(g, (int(rng.integers(-6, 7)), int(rng.integers(-6, 7))), axis=(0, 1))
                u = rng.random()
                if u < 0.05:
                    p = np.zeros_like(p)
                elif u < 0.15:
                    y, x = int(rng.integers(0, 650)), int(rng.integers(0, 1200))
                    p[y:y + 60, x:x + 70] = True
                elif u < 0.3:
                    p = cv2.erode(p.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
                buf = io.BytesIO()
                Image.fromarray(np.where(p, 255, 0).astype(np.uint8)).save(buf, format="PNG")  # PIL default
                path = DATA / "pred" / v.video_id / e.exp_id / f"{f.name}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(buf.getvalue())
                preds[v.video_id][e.exp_id].append(M.encode(p) if p.any() else None)
        print(f"predictions of {v.video_id} written ({time.time() - t0:.0f} s)", file=sys.stderr)
    atomic_write_json(DATA / "pred.json", preds)
    atomic_write_json(marker, _params(args))


def _split():
    import longrvos_data
    return longrvos_data.load(DATA / "gt", split="valid")["valid"]


def _expression_frames(videos) -> int:
    return sum(len(v.expressions) * v.num_frames for v in videos)


def _decode_all(reader, ids) -> int:
    """The floor's work: decode every GT frame's masks once and every prediction PNG once;
    the expression-frames decoded."""
    n = 0
    for vid in ids:
        v = reader.video(vid)
        for i, f in enumerate(v.frames):
            v.frame_masks(i)
            for e in v.expressions:
                data = (DATA / "pred" / vid / e.exp_id / f"{f.name}.png").read_bytes()
                cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
                n += 1
    return n


def phase_floor(args) -> dict:
    cv2.setNumThreads(1)
    reader = _split()
    t0 = time.perf_counter()
    n = _decode_all(reader, reader.video_ids())
    return {"seconds": time.perf_counter() - t0, "expression_frames": n}


def _eval(args, pred: Path, workers: int) -> dict:
    from longrvos_data.eval import evaluate
    t0 = time.perf_counter()
    report = evaluate(DATA / "gt", pred, protocol="long_rvos", split="valid", workers=workers, missing="official",
                      progress=False)
    return {"seconds": time.perf_counter() - t0, "expression_frames": report.counts["unit_frames"],
            "overall": report.overall, "warnings": len(report.warnings)}


def phase_reference(args) -> dict:
    sys.path.insert(0, str(HERE))
    import reference_eval
    cv2.setNumThreads(1)
    reader = _split()
    videos = [reader.video(v) for v in reader.video_ids()[:args.reference_videos]]
    t0 = time.perf_counter()
    rows = reference_eval.score_referring(videos, DATA / "pred", protocol="long_rvos")
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "expression_frames": _expression_frames(videos), "videos": len(videos),
            "rows": len(rows)}


def phase_interleaved(args) -> dict:
    """floor, eval at one worker and eval at two, alternated ``--rounds`` times on ``--subset`` videos.

    On a shared machine single runs drift with the neighbours' load; the best of several
    alternating rounds compares the three under the same conditions.
    """
    from longrvos_data.eval import evaluate

    cv2.setNumThreads(1)
    reader = _split()
    ids = reader.video_ids()[:args.subset]
    videos = [reader.video(v) for v in ids]
    n = _expression_frames(videos)

    def floor():
        _decode_all(_split(), ids)

    def run(workers):
        return lambda: evaluate(videos, DATA / "pred", protocol="long_rvos", workers=workers, missing="official",
                                progress=False)

    best = {"floor": math.inf, "eval_1w": math.inf, "eval_2w": math.inf}
    for _ in range(args.rounds):
        for name, fn in (("floor", floor), ("eval_1w", run(1)), ("eval_2w", run(2))):
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return {"seconds": best["eval_1w"], "expression_frames": n, "videos": len(ids), "rounds": args.rounds,
            "best_seconds_per_expression_frame": {k: v / n for k, v in best.items()}}


PHASES = {
    "floor": phase_floor,
    "eval_1w": lambda a: _eval(a, DATA / "pred", 1),
    "eval_2w": lambda a: _eval(a, DATA / "pred", 2),
    "rle_1w": lambda a: _eval(a, DATA / "pred.json", 1),
    "reference": phase_reference,
    "interleaved": phase_interleaved,
}


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (the worker pool)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=20)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--reference-videos", type=int, default=3)
    parser.add_argument("--subset", type=int, default=4, help="videos of the interleaved phase")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the interleaved phase")
    parser.add_argument("--phase", choices=list(PHASES))
    parser.add_argument("--phases", default=",".join(PHASES), help="comma-separated phases to run")
    args = parser.parse_args()
    if args.phase:   # child: run one phase, print its JSON
        cpu0 = _cpu_seconds()
        out = PHASES[args.phase](args)
        out["cpu_seconds"] = _cpu_seconds() - cpu0
        out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        out["peak_rss_worker_mb"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)
        print(json.dumps(out))
        return
    generate(args)
    results = {}
    for name in args.phases.split(","):
        cmd = [sys.executable, __file__, "--phase", name, "--videos", str(args.videos), "--frames",
               str(args.frames), "--reference-videos", str(args.reference_videos), "--subset", str(args.subset),
               "--rounds", str(args.rounds)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
        if proc.returncode != 0:
            raise SystemExit(f"phase {name} failed:\n{proc.stderr}")
        results[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    inter = results.pop("interleaved", None)
    per = {k: v["seconds"] / v["expression_frames"] for k, v in results.items()}
    cpu = {k: v["cpu_seconds"] / v["expression_frames"] for k, v in results.items()}
    out = {
        "data": {"videos": args.videos, "frames": args.frames, "size": "720x1280",
                 "expression_frames": results.get("eval_1w", results.get("floor", {})).get("expression_frames"),
                 "expressions_per_object": "1-4", "cpu_count": os.cpu_count()},
        "seconds_per_expression_frame": {k: round(v, 6) for k, v in per.items()},
        "cpu_seconds_per_expression_frame": {k: round(v, 6) for k, v in cpu.items()},
        "seconds": {k: round(v["seconds"], 2) for k, v in results.items()},
        "peak_rss_mb": {k: v["peak_rss_mb"] for k, v in results.items()},
        "peak_rss_worker_mb": {k: v["peak_rss_worker_mb"] for k, v in results.items() if v["peak_rss_worker_mb"]},
    }
    ratios = {}
    if "eval_1w" in per and "floor" in per:
        ratios["eval_1w_over_floor"] = round(per["eval_1w"] / per["floor"], 3)
        ratios["eval_1w_over_floor_cpu"] = round(cpu["eval_1w"] / cpu["floor"], 3)
    if "rle_1w" in per and "floor" in per:
        ratios["rle_1w_over_floor"] = round(per["rle_1w"] / per["floor"], 3)
    if "eval_1w" in per and "reference" in per:
        ratios["reference_over_eval_1w"] = round(per["reference"] / per["eval_1w"], 2)
        ratios["reference_over_eval_1w_cpu"] = round(cpu["reference"] / cpu["eval_1w"], 2)
    if "eval_1w" in per and "eval_2w" in per:
        ratios["throughput_2w_over_1w"] = round(per["eval_1w"] / per["eval_2w"], 3)
    out["ratios"] = ratios
    if inter:
        b = inter["best_seconds_per_expression_frame"]
        out["interleaved"] = {
            "videos": inter["videos"], "rounds": inter["rounds"], "expression_frames": inter["expression_frames"],
            "best_seconds_per_expression_frame": {k: round(v, 6) for k, v in b.items()},
            "eval_1w_over_floor": round(b["eval_1w"] / b["floor"], 3),
            "throughput_2w_over_1w": round(b["eval_1w"] / b["eval_2w"], 3)}
    if "eval_1w" in results and "rle_1w" in results:
        out["same_overall_png_and_rle"] = results["eval_1w"]["overall"] == results["rle_1w"]["overall"]
    out["load_average"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
