"""SAM2 on long videos: the stock video predictor against the flat-memory engine, same model.

Each (implementation, length) runs in its own process (peak RSS is per process) on 720p JPEG
frames with the tiny random-weight sam2.1 hiera-t at 256 px: one click on each object (--objects)
at frame 0, then propagation to the end. With --parallel the stock and engine runs of one length
go side by side (one thread each: the same contention for both). Prints one JSON dict: per run the peak RSS, the RSS
after building the model, seconds per frame and the run's own wall time; the engine's RSS
growth from the shortest to the longest video; and, at --correct-at-length frames, the cost of
a correction click in the middle of the video after propagation (the engine re-derives the
released memories from the nearest earlier conditioning frame; stock holds everything).

    python bench/bench_sam2_memory.py [--lengths 100 500 2000] [--objects 1] [--threads 1] [--parallel]

The GPU check (when a device is lent): sam2.1 hiera-large at 1024 px with random weights (seeded,
the same in both processes), bf16 autocast, 2 objects, 1,000 frames, plus CUDA peak memory, fps
and the engine's masks' mean IoU against stock (each run writes its masks to the cache):

    python bench/bench_sam2_memory.py --model large --device cuda --objects 2 --lengths 1000 \
        --correct-at-length 0 --iou
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _frames(cache: Path, n: int):
    from fixtures.sam2_tiny import clip
    return clip(cache / f"clip_{n}", num_frames=n, width=1280, height=720)


def _predictor(model: str, device: str):
    import torch
    from fixtures.sam2_tiny import stock_predictor
    if model == "tiny":
        return stock_predictor().to(device)
    from sam2.build_sam import build_sam2_video_predictor
    torch.manual_seed(0)
    predictor = build_sam2_video_predictor("configs/sam2.1/sam2.1_hiera_l.yaml", None, device,
                                           hydra_overrides_extra=["++model.add_all_frames_to_correct_as_cond=true"])
    predictor.fill_hole_area = 0
    return predictor


class _MaskFile:
    """Each yielded (frame, object) mask, bit-packed into a slot of a file (not into RAM)."""

    def __init__(self, path: Path, objects: int, shape: tuple[int, int]) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        self.objects, self.size = objects, (shape[0] * shape[1] + 7) // 8

    def put(self, frame: int, obj: int, mask) -> None:
        import numpy as np
        os.pwrite(self.fd, np.packbits(mask.reshape(-1)).tobytes(), (frame * self.objects + obj) * self.size)


def _mean_iou(a: Path, b: Path, n: int, objects: int, shape: tuple[int, int]) -> float:
    import numpy as np
    size = (shape[0] * shape[1] + 7) // 8
    ious = []
    with open(a, "rb") as fa, open(b, "rb") as fb:
        for _ in range(n * objects):
            x = np.unpackbits(np.frombuffer(fa.read(size), np.uint8)).astype(bool)
            y = np.unpackbits(np.frombuffer(fb.read(size), np.uint8)).astype(bool)
            union = np.count_nonzero(x | y)
            ious.append(1.0 if union == 0 else np.count_nonzero(x & y) / union)
    return float(np.mean(ious))


def child(impl: str, n: int, cache: Path, threads: int, correct: bool, objects: int, model: str = "tiny",
          device: str = "cpu", masks_to: Path | None = None) -> dict:
    import torch
    from longrvos_data.annotation.engines.sam2 import Sam2Engine

    t_start = time.perf_counter()
    video = _frames(cache, n)
    predictor = _predictor(model, device)
    torch.set_num_threads(threads)
    cuda = device.startswith("cuda")
    masks = _MaskFile(masks_to, objects, (video.height, video.width)) if masks_to else None
    rss_model = _rss_mb()
    clicks = [[list(video.meta["centres"][0][k])] for k in range(objects)]
    mid = n // 2
    fix = [list(video.meta["centres"][mid][0])]
    result = {"impl": impl, "frames": n, "rss_after_model_mb": round(rss_model, 1)}
    t0 = time.perf_counter()
    if impl == "stock":
        state = predictor.init_state(str(video.frames[0].path.parent))
        for k in range(objects):
            predictor.add_new_points_or_box(state, 0, k + 1, points=clicks[k], labels=[1])
        t_prop = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16) if cuda else contextlib.nullcontext():
            for f, _, video_res in predictor.propagate_in_video(state):
                if masks is not None:
                    for k in range(objects):
                        masks.put(f, k, (video_res[k, 0] > 0).cpu().numpy())
        if cuda:
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - t_prop
        if correct:
            t1 = time.perf_counter()
            predictor.add_new_points_or_box(state, mid, 1, points=fix, labels=[1])
            result["correction_click_s"] = round(time.perf_counter() - t1, 3)
    else:
        engine = Sam2Engine.for_tests(predictor)
        engine.open(video)
        for k in range(objects):
            engine.add_points(0, str(k + 1), clicks[k], [1])
        t_prop = time.perf_counter()
        for step in engine.propagate([str(k + 1) for k in range(objects)], start=0):
            if masks is not None:
                empty = torch.zeros(video.height, video.width, dtype=torch.bool).numpy()
                masks.put(step.frame_index, int(step.track_id) - 1, empty if step.mask is None else step.mask)
        if cuda:
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - t_prop
        held = engine.held()
        result["held_frames"] = {"features": len(held.features), "memories": len(held.memories),
                                 "pointers": len(held.pointers)}
        if correct:
            before = engine.stats["rederived"]  # 0 when the released memories are read back (spill)
            t1 = time.perf_counter()
            engine.add_points(mid, "1", fix, [1])
            result["correction_click_s"] = round(time.perf_counter() - t1, 3)
            result["correction_rederived_frames"] = engine.stats["rederived"] - before
        engine.close()
    if cuda:
        result["cuda_max_memory_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    result.update({
        "seconds_per_frame": round(elapsed / n, 4),
        "fps": round(n / elapsed, 2),
        "setup_s": round(t_prop - t0, 2),
        "peak_rss_mb": round(_peak_mb(), 1),
        "wall_s": round(time.perf_counter() - t_start, 1),
    })
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[100, 500, 2000])
    parser.add_argument("--impls", nargs="+", default=["stock", "engine"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model", choices=("tiny", "large"), default="tiny",
                        help="tiny: hiera-t at 256 px (CPU figures); large: hiera-l at 1024 px (the GPU check)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--iou", action="store_true", help="also the engine's masks' mean IoU against stock")
    parser.add_argument("--objects", type=int, default=1, choices=(1, 2))
    parser.add_argument("--parallel", action="store_true", help="run stock and engine of a length side by side")
    parser.add_argument("--correct-at-length", type=int, default=500,
                        help="run the mid-video correction click at this length (0: never)")
    parser.add_argument("--cache", type=Path, default=ROOT / ".bench" / "sam2")
    parser.add_argument("--child", nargs=2, metavar=("IMPL", "FRAMES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    if args.child:
        impl, n = args.child[0], int(args.child[1])
        masks_to = args.cache / f"masks_{args.model}_{impl}_{n}.bin" if args.iou else None
        print(json.dumps(child(impl, n, args.cache, args.threads, n == args.correct_at_length, args.objects,
                               args.model, args.device, masks_to)))
        return
    t0 = time.perf_counter()
    runs = []
    for n in args.lengths:
        _frames(args.cache, n)  # render once, before any timing
        cmds = {impl: [sys.executable, __file__, "--child", impl, str(n), "--threads", str(args.threads),
                       "--objects", str(args.objects), "--correct-at-length", str(args.correct_at_length),
                       "--cache", str(args.cache), "--model", args.model, "--device", args.device,
                       *(["--iou"] if args.iou else [])] for impl in args.impls}
        env = {**os.environ, "TQDM_DISABLE": "1"}
        if args.parallel:
            procs = {impl: subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
                     for impl, c in cmds.items()}
            done = {impl: (p.wait(), *p.communicate()) for impl, p in procs.items()}
        else:
            done = {}
            for impl, c in cmds.items():
                p = subprocess.run(c, capture_output=True, text=True, env=env)
                done[impl] = (p.returncode, p.stdout, p.stderr)
        for impl, (rc, stdout, stderr) in done.items():
            if rc:
                raise SystemExit(f"{impl} at {n} frames failed:\n{stderr[-3000:]}")
            runs.append(json.loads(stdout.strip().splitlines()[-1]))
            print(json.dumps(runs[-1]), file=sys.stderr)
        if args.iou and {"stock", "engine"} <= set(args.impls):
            video = _frames(args.cache, n)
            runs[-1]["mean_iou_vs_stock"] = round(_mean_iou(
                *(args.cache / f"masks_{args.model}_{impl}_{n}.bin" for impl in ("stock", "engine")),
                n, args.objects, (video.height, video.width)), 5)
    out = {"model": ("sam2.1_hiera_t, random weights, image_size 256" if args.model == "tiny"
                     else "sam2.1_hiera_l, random weights (seed 0), image_size 1024, bf16 autocast on CUDA"),
           "device": args.device, "objects": args.objects, "parallel": args.parallel, "frame_size": "1280x720",
           "threads": args.threads, "runs": runs}
    for impl in args.impls:
        mine = sorted((r for r in runs if r["impl"] == impl), key=lambda r: r["frames"])
        if len(mine) >= 2:
            out[f"{impl}_peak_rss_growth_{mine[0]['frames']}_to_{mine[-1]['frames']}"] = \
                round(mine[-1]["peak_rss_mb"] / mine[0]["peak_rss_mb"] - 1, 4)
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
