"""Conversion to the interchange formats (ytvis, davis, sola): time, memory, workers.

Builds (or reuses) a synthetic 720p split in the Long-RVOS layout with
`bench_long_rvos_memory.build` (copied 720p JPEGs of realistic size, real per-object 0/255
PNG masks of moving shapes that leave and come back), then, each phase in a fresh
subprocess, converts it with `longrvos_data.converters.base.convert` to every target with
1 and 2 workers and measures seconds, frames/s and peak RSS (parent, largest worker, and
the process tree sampled every 0.1 s). The outputs of 1 and 2 workers are compared byte
for byte (split-level files). Frames are hard-linked, so the figures are mask decoding,
encoding and writing. Prints one JSON object.

Example:
    python bench/bench_convert_interchange.py --workdir /work/main/.bench/interchange --target-gb 0.3
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_WORKDIR = Path("/work/main/.bench/interchange")
SPLIT = "valid"
TARGETS = ("ytvis", "davis", "sola")
SPLIT_FILES = {"ytvis": ["instances.json"], "davis": ["meta_davis.json"], "sola": []}


def _mb(kb: int) -> float:
    return round(kb / 1024, 1)


def phase_convert(split_dir: Path, target: str, out: Path, workers: int) -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_convert_hf import TreeRSS

    from longrvos_data.converters.base import convert

    shutil.rmtree(out, ignore_errors=True)
    with TreeRSS() as tree:
        start = time.perf_counter()
        report = convert(split_dir, target, out, format="long_rvos", workers=workers)
        seconds = time.perf_counter() - start
    output = sum(p.stat().st_size for p in out.rglob("*") if p.is_file() and p.suffix != ".jpg")
    return {"target": target, "workers": workers, "seconds": round(seconds, 2), "videos": report.videos[SPLIT],
            "output_bytes_without_frames": output, "sidecars": len(report.sidecars),
            "peak_rss_mb_parent": _mb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss),
            "peak_rss_mb_largest_worker": _mb(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss),
            "peak_rss_mb_tree_sampled": round(tree.peak / 2**20, 1)}


def _child(*args: str) -> dict:
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"phase {args} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _same_outputs(a: Path, b: Path, target: str) -> bool:
    files = [Path(SPLIT) / f for f in SPLIT_FILES[target]]
    files += [p.relative_to(a) for p in (a / SPLIT).rglob("*") if p.is_file() and p.suffix in (".png", ".json")]
    return all((a / f).read_bytes() == (b / f).read_bytes() for f in files)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--target-gb", type=float, default=0.3, help="split size to reach (decimal GB)")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--arg", action="append", default=[], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    split_dir = args.workdir / "long_rvos" / SPLIT

    if args.phase == "convert":
        print(json.dumps(phase_convert(split_dir, args.arg[0], Path(args.arg[1]), int(args.arg[2]))))
        return 0

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_long_rvos_memory import build, split_bytes

    info = build(args.workdir, target_bytes=int(args.target_gb * 1e9), pool_size=48, link=False, seed=0)
    apparent, _ = split_bytes(split_dir)
    frames = sum(1 for _ in (split_dir / "JPEGImages").rglob("*.jpg"))
    pngs = sum(1 for _ in (split_dir / "Annotations").rglob("*.png"))
    load_start = os.getloadavg()
    results = {}
    for target in TARGETS:
        runs = {}
        for workers in (1, 2):
            out = args.workdir / f"out_{target}_w{workers}"
            run = _child("--workdir", str(args.workdir), "--phase", "convert", "--arg", target, "--arg", str(out),
                         "--arg", str(workers))
            run["frames_per_s"] = round(frames / run["seconds"], 1)
            runs[f"w{workers}"] = run
        same = _same_outputs(args.workdir / f"out_{target}_w1", args.workdir / f"out_{target}_w2", target)
        runs["speedup_w2"] = round(runs["w1"]["seconds"] / runs["w2"]["seconds"], 2)
        runs["outputs_identical"] = same
        results[target] = runs
        for workers in (1, 2):
            shutil.rmtree(args.workdir / f"out_{target}_w{workers}", ignore_errors=True)
    print(json.dumps({
        "machine": {"cpus": os.cpu_count(), "loadavg_start": [round(x, 2) for x in load_start],
                    "loadavg_end": [round(x, 2) for x in os.getloadavg()],
                    "note": "2 cores shared with other processes; figures are wall-clock"},
        "split": {"bytes": apparent, "videos": info["videos"], "frames": frames, "mask_pngs": pngs,
                  "resolution": "1280x720", "reused": info["reused"]},
        "convert": results,
    }, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
