"""What the conversion safety checks cost: `convert --to hf` with and without them, same split, same run.

Builds (or reuses) the >= 1 GB 720p Long-RVOS split of `bench_convert_hf.py`, then converts it
to hf, one worker, each run in a fresh subprocess, alternating:

- ``with``: `longrvos_data.converters.base.convert` as users run it: the output checks (not
  the source, only this package's files, the lock), the completion check of every reader,
  the structural check of every frame (`hf_rows.check_frame`) and the RLE count check
  (`masks.counts_problem`, issue 10 item 2);
- ``without``: `converters.hf.write` on the loaded split with those checks switched off
  (the frame, completion and RLE checks replaced by no-ops in that process).

Each is run ``--runs`` times; the fastest run of each counts (wall seconds and process CPU
seconds, the steadier figure on a shared machine). Target: the checks cost at most 10% of
the throughput. Prints one JSON object.

Example:
    python bench/bench_convert_checks.py --workdir /work/main/.bench/hf_1gb
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

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_convert_hf import DEFAULT_WORKDIR, _split_dir, _warm  # noqa: E402


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime + c.ru_utime + c.ru_stime


def phase(split_dir: Path, out: Path, checks: bool) -> dict:
    from longrvos_data import masks, sidecar
    from longrvos_data.converters import hf
    from longrvos_data.converters.base import convert
    from longrvos_data.converters import hf_rows
    from longrvos_data.loaders import load

    shutil.rmtree(out, ignore_errors=True)
    cpu, start = _cpu(), time.perf_counter()
    if checks:
        report = convert(split_dir, "hf", out, format="long_rvos")
    else:  # one process (workers=1), so patching this process's functions turns every check off
        sidecar.check_complete = lambda *a, **kw: None
        hf_rows.check_frame = lambda *a, **kw: None
        masks.counts_problem = lambda rles: None     # what `masks.check` and the loaders call
        report = hf.write(load(split_dir, format="long_rvos").splits, out)
    seconds = time.perf_counter() - start
    return {"checks": checks, "seconds": round(seconds, 2), "cpu_seconds": round(_cpu() - cpu, 2),
            "frames": report.frames, "frames_per_s": round(report.frames / seconds, 1)}


def _child(workdir: Path, out: Path, checks: bool) -> dict:
    done = subprocess.run([sys.executable, __file__, "--workdir", str(workdir), "--phase", str(out),
                           "--checks" if checks else "--no-checks"], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"phase failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--target-gb", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=2, help="runs of each variant (alternating)")
    parser.add_argument("--phase", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--checks", dest="checks", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--no-checks", dest="checks", action="store_false", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.phase:
        print(json.dumps(phase(_split_dir(args.workdir), args.phase, args.checks)))
        return 0

    from bench_long_rvos_memory import build, split_bytes

    info = build(args.workdir, target_bytes=int(args.target_gb * 1e9), pool_size=48, link=False, seed=0)
    split_dir = _split_dir(args.workdir)
    apparent, _ = split_bytes(split_dir)
    load_start = os.getloadavg()
    _warm(split_dir)
    runs = {True: [], False: []}
    for _ in range(args.runs):
        for checks in (True, False):
            runs[checks].append(_child(args.workdir, args.workdir / f"out_checks_{int(checks)}", checks))
    for name in ("out_checks_0", "out_checks_1"):
        shutil.rmtree(args.workdir / name, ignore_errors=True)
    best = {k: min(v, key=lambda r: r["seconds"]) for k, v in runs.items()}
    best_cpu = {k: min(r["cpu_seconds"] for r in v) for k, v in runs.items()}
    cost = best[True]["seconds"] / best[False]["seconds"] - 1
    cost_cpu = best_cpu[True] / best_cpu[False] - 1
    print(json.dumps({
        "machine": {"cpus": os.cpu_count(), "loadavg_start": [round(x, 2) for x in load_start],
                    "loadavg_end": [round(x, 2) for x in os.getloadavg()]},
        "split": {"bytes": apparent, "videos": info["videos"], "frames": best[True]["frames"],
                  "reused": info["reused"]},
        "with_checks": runs[True], "without_checks": runs[False],
        "throughput_cost": round(cost, 4), "cpu_cost": round(cost_cpu, 4),
        "target_at_most_10_percent": cost <= 0.10,
    }, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
