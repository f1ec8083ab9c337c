"""Conversion to the hf layout: throughput vs. the mask-decoding floor, workers, memory, clips.

Builds (or reuses) a >= 1 GB synthetic split in the Long-RVOS layout at 720p (with
`bench_long_rvos_memory.build`: copied 720p JPEGs of realistic size, real per-object 0/255
PNG masks of moving shapes that leave and come back), then, each phase in a fresh
subprocess, measures:

- ``floor``: decoding every mask PNG of the split once (`masks.read_png`), one process;
  conversion cannot be faster, since every mask has to be decoded to be encoded as RLE
  (run before and after the conversions; the faster run counts);
- ``convert_w1`` / ``convert_w2``: `longrvos_data.converters.hf.write` with 1 and 2
  workers: seconds, frames/s, the ratio to the floor, CPU seconds of the parent and of
  the workers, peak RSS (the parent's VmHWM, the largest worker and the whole process
  tree, both sampled every 0.1 s);
- ``convert_w1_malloc``: 1 worker again with the glibc settings the worker processes give
  themselves (`parallel._keep_freed_memory`, here through ``MALLOC_*`` variables), so that
  the 2-worker speed-up can be read against a one-process run with the same allocator;
- ``clips_hf`` / ``clips_raw``: `ClipDataset` items per second and CPU ms per item
  (T=8, 720p, uniform sampling, one process, warm file cache) from the hf output and
  from the raw folders.

The file cache is warmed (every file read once) before the phases. On a machine shared
with other work, wall-clock ratios move with the load; the ``*_cpu`` figures (process CPU
seconds) are steadier. Prints one JSON object.

Example:
    python bench/bench_convert_hf.py --workdir /work/main/.bench/hf_1gb
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

DEFAULT_WORKDIR = Path("/work/main/.bench/hf_1gb")
WORKER_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(64 << 20), "MALLOC_TRIM_THRESHOLD_": str(128 << 20)}
SPLIT = "valid"


def _split_dir(workdir: Path) -> Path:
    return workdir / "long_rvos" / SPLIT


def _warm(root: Path) -> int:
    """Read every file under ``root`` once; their total size."""
    total = 0
    for dirpath, _, files in os.walk(root):
        for name in files:
            with open(os.path.join(dirpath, name), "rb") as fh:
                while chunk := fh.read(1 << 22):
                    total += len(chunk)
    return total


def _peak_self_mb() -> float:
    """This process's peak RSS (VmHWM). Unlike ru_maxrss it is not inherited across fork+exec
    from the process that started this one."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def _cpu(who: int) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


class TreeRSS:
    """Peak resident memory of this process plus its children, sampled from /proc
    (``peak``: the tree's sum; ``child_peak``: the largest single child)."""

    def __init__(self, interval: float = 0.1) -> None:
        self.interval, self.peak, self.child_peak, self._stop = interval, 0, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _rss(pid: int) -> int:
        try:
            with open(f"/proc/{pid}/statm") as fh:
                return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            return 0

    @staticmethod
    def _children(pid: int) -> list[int]:
        out = []
        try:
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/children") as fh:
                    out.extend(int(c) for c in fh.read().split())
        except OSError:
            pass
        return out

    def _run(self) -> None:
        me = os.getpid()
        while not self._stop.is_set():
            pids, stack = [], [me]
            while stack:
                pid = stack.pop()
                pids.append(pid)
                stack.extend(self._children(pid))
            sizes = [self._rss(p) for p in pids]
            self.peak = max(self.peak, sum(sizes))
            self.child_peak = max([self.child_peak, *sizes[1:]])
            self._stop.wait(self.interval)

    def __enter__(self) -> "TreeRSS":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


# -- phases (each runs in its own process) -------------------------------------------------
def phase_floor(split_dir: Path) -> dict:
    from longrvos_data import masks

    pngs = sorted(str(p) for p in (split_dir / "Annotations").rglob("*.png"))
    cpu = _cpu(resource.RUSAGE_SELF)
    start = time.perf_counter()
    for p in pngs:
        masks.read_png(p)
    return {"pngs": len(pngs), "seconds": round(time.perf_counter() - start, 2),
            "cpu_seconds": round(_cpu(resource.RUSAGE_SELF) - cpu, 2)}


def phase_convert(split_dir: Path, out: Path, workers: int) -> dict:
    from longrvos_data.converters import hf
    from longrvos_data.loaders import load

    shutil.rmtree(out, ignore_errors=True)
    cpu_self, cpu_children = _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN)
    with TreeRSS() as tree:
        start = time.perf_counter()
        report = hf.write(load(split_dir, format="long_rvos").splits, out, workers=workers)
        seconds = time.perf_counter() - start
    frames = report.frames
    return {"workers": workers, "seconds": round(seconds, 2), "frames": frames,
            "frames_per_s": round(frames / seconds, 1),
            "cpu_seconds_parent": round(_cpu(resource.RUSAGE_SELF) - cpu_self, 1),
            "cpu_seconds_workers": round(_cpu(resource.RUSAGE_CHILDREN) - cpu_children, 1),
            "shards": {c: report.splits[SPLIT].configs[c]["shards"] for c in hf.CONFIGS},
            "output_bytes": sum(p.stat().st_size for p in (out / "data").rglob("*.parquet")),
            "peak_rss_mb_parent": _peak_self_mb(),
            "peak_rss_mb_largest_worker": round(tree.child_peak / 2**20, 1),
            "peak_rss_mb_tree_sampled": round(tree.peak / 2**20, 1)}


def phase_clips(source: Path, fmt: str, count: int) -> dict:
    import numpy as np

    from longrvos_data.clips import ClipDataset

    start = time.perf_counter()
    clips = ClipDataset(source, split=SPLIT, num_frames=8, seed=0, format=fmt)
    setup = time.perf_counter() - start
    order = np.random.default_rng(0).permutation(len(clips))
    order = np.resize(order, count)
    clips[int(order[0])]  # open files, build indices
    cpu = _cpu(resource.RUSAGE_SELF)
    start = time.perf_counter()
    for i in order:
        item = clips[int(i)]
    seconds = time.perf_counter() - start
    return {"format": fmt, "clips": count, "seconds": round(seconds, 2), "clips_per_s": round(count / seconds, 2),
            "cpu_ms_per_clip": round(1000 * (_cpu(resource.RUSAGE_SELF) - cpu) / count, 1),
            "setup_seconds": round(setup, 2), "frame_shape": list(item["frames"].shape),
            "peak_rss_mb": _peak_self_mb()}


def _digests(out: Path) -> dict[str, str]:
    """SHA-1 of every parquet shard, read in chunks."""
    found = {}
    for p in sorted((out / "data").rglob("*.parquet")):
        h = hashlib.sha1()
        with open(p, "rb") as fh:
            while chunk := fh.read(1 << 22):
                h.update(chunk)
        found[p.relative_to(out).as_posix()] = h.hexdigest()
    return found


def _child(*args: str, env: dict[str, str] | None = None) -> dict:
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})
    if done.returncode != 0:
        raise SystemExit(f"phase {args} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--target-gb", type=float, default=1.0, help="split size to reach (decimal GB)")
    parser.add_argument("--clips", type=int, default=60, help="clips to load per clip phase")
    parser.add_argument("--keep-output", action="store_true", help="keep the converted outputs")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--arg", action="append", default=[], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.phase:
        split_dir = _split_dir(args.workdir)
        if args.phase == "floor":
            result = phase_floor(split_dir)
        elif args.phase == "convert":
            result = phase_convert(split_dir, Path(args.arg[0]), int(args.arg[1]))
        else:
            result = phase_clips(Path(args.arg[0]), args.arg[1], int(args.arg[2]))
        print(json.dumps(result))
        return 0

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_long_rvos_memory import build, split_bytes

    info = build(args.workdir, target_bytes=int(args.target_gb * 1e9), pool_size=48, link=False, seed=0)
    split_dir = _split_dir(args.workdir)
    apparent, _ = split_bytes(split_dir)
    load_start = os.getloadavg()
    _warm(split_dir)
    floor = _child("--workdir", str(args.workdir), "--phase", "floor")
    w1 = _child("--workdir", str(args.workdir), "--phase", "convert", "--arg", str(args.workdir / "out_w1"),
                "--arg", "1")
    w2 = _child("--workdir", str(args.workdir), "--phase", "convert", "--arg", str(args.workdir / "out_w2"),
                "--arg", "2")
    w1_malloc = _child("--workdir", str(args.workdir), "--phase", "convert", "--arg", str(args.workdir / "out_w1m"),
                       "--arg", "1", env=WORKER_MALLOC)
    shutil.rmtree(args.workdir / "out_w1m", ignore_errors=True)
    floor_again = _child("--workdir", str(args.workdir), "--phase", "floor")
    same = _digests(args.workdir / "out_w1") == _digests(args.workdir / "out_w2")
    os.sync()  # the outputs' dirty pages must not be written back while clips are timed
    _warm(args.workdir / "out_w1")
    clips_hf = _child("--workdir", str(args.workdir), "--phase", "clips", "--arg", str(args.workdir / "out_w1"),
                      "--arg", "hf", "--arg", str(args.clips))
    clips_raw = _child("--workdir", str(args.workdir), "--phase", "clips", "--arg", str(split_dir),
                       "--arg", "long_rvos", "--arg", str(args.clips))
    floor_s = min(floor["seconds"], floor_again["seconds"])
    floor_cpu = min(floor["cpu_seconds"], floor_again["cpu_seconds"])
    w1_cpu = w1["cpu_seconds_parent"]
    w2_cpu = w2["cpu_seconds_parent"] + w2["cpu_seconds_workers"]
    frames = w1["frames"]
    result = {
        "machine": {"cpus": os.cpu_count(), "loadavg_start": [round(x, 2) for x in load_start],
                    "loadavg_end": [round(x, 2) for x in os.getloadavg()],
                    "note": "seconds are wall-clock; cpu_seconds are process CPU time"},
        "split": {"bytes": apparent, "videos": info["videos"], "frames": frames, "mask_pngs": floor["pngs"],
                  "resolution": "1280x720", "build_seconds": info["build_seconds"], "reused": info["reused"]},
        "floor": {"seconds": floor_s, "runs": [floor["seconds"], floor_again["seconds"]],
                  "cpu_seconds": floor_cpu, "frames_per_s": round(frames / floor_s, 1),
                  "ms_per_png": round(1000 * floor_s / floor["pngs"], 2)},
        "convert_w1": {**w1, "x_floor": round(w1["seconds"] / floor_s, 2),
                       "x_floor_cpu": round(w1_cpu / floor_cpu, 2)},
        "convert_w2": {**w2, "x_floor": round(w2["seconds"] / floor_s, 2),
                       "speedup_vs_w1": round(w1["seconds"] / w2["seconds"], 2),
                       # what two free cores would give: the workers' CPU split over two, vs one worker's
                       "speedup_vs_w1_cpu_bound": round(w1_cpu / max(w2["cpu_seconds_workers"] / 2,
                                                                     w2["cpu_seconds_parent"]), 2),
                       "cpu_overhead_vs_w1": round(w2_cpu / w1_cpu, 2)},
        "convert_w1_malloc": {**w1_malloc, "x_floor": round(w1_malloc["seconds"] / floor_s, 2),
                              "w2_speedup_vs_this": round(w1_malloc["seconds"] / w2["seconds"], 2)},
        "outputs_identical": same,
        "targets": {"w1_within_1.5x_floor": w1["seconds"] <= 1.5 * floor_s,
                    "w2_at_least_1.7x_w1": w1["seconds"] / w2["seconds"] >= 1.7,
                    "rss_under_1gb": max(w1["peak_rss_mb_tree_sampled"], w2["peak_rss_mb_tree_sampled"]) < 1024},
        "clips_T8_720p": {"hf": clips_hf, "raw": clips_raw,
                          "hf_over_raw": round(clips_hf["clips_per_s"] / clips_raw["clips_per_s"], 2),
                          "hf_over_raw_cpu": round(clips_raw["cpu_ms_per_clip"] / clips_hf["cpu_ms_per_clip"], 2)},
    }
    if not args.keep_output:
        for name in ("out_w1", "out_w2"):
            shutil.rmtree(args.workdir / name, ignore_errors=True)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
