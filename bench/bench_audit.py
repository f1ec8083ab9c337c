"""How well and how fast the audit finds mask defects, at 720p, without an engine.

Prints one JSON dict:

- ``detection``: defects of fixed sizes (`annotation.defects.DEFECTS`) injected into clean
  1280x720 textured videos (`defects.textured_videos`, 150 frames, two objects, an occluding
  bar, one object passing in front of the other) until every check has ``--per-kind`` of
  them; per check: defects, TP, FN, flags, FP, recall, precision under `defects.match`
  (same check, video and track(s), both ends within 1 frame). Also the flags the clean
  versions of those videos raise.
- ``detection_on_hard_negatives``: the same, injected into the hard-negative videos.
- ``clean_hard_negatives``: flags on `defects.hard_negative_videos` (fast motion, occlusion
  gaps, border entries and exits, real holes, crossings), high ones listed.
- ``speed``: masks audited per second by the driver `audit.audit` on a real LVOS dataset
  written with `synth.textured_lvos` (720p) under ``--workdir``, at 1 and 2 workers.
- ``memory``: peak RSS of `audit.check_masks` on a 100- and a 1,000-frame 720p video, each
  in a fresh subprocess (streaming: the growth should stay under 10%).

Example:
    python bench/bench_audit.py                    # about 3 minutes on 2 cores
    python bench/bench_audit.py --per-kind 60 --speed-videos 8
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

DEFAULT_WORKDIR = Path(__file__).resolve().parents[1] / ".bench" / "audit"
WIDTH, HEIGHT = 1280, 720


def _high(flags) -> list[dict]:
    return [{"video": f.video_id, "check": f.check, "tracks": list(f.track_ids), "frames": [f.frame_start, f.frame_end],
             "score": f.score} for f in flags if f.severity == "high"]


def detection(per_kind: int, frames: int, seed: int, max_videos: int) -> dict:
    """Inject into textured videos until each kind has ``per_kind`` defects; score the audit."""
    from longrvos_data.annotation import audit
    from longrvos_data.annotation import defects as D

    started = time.perf_counter()
    flags, placed, clean_flags, videos = [], [], [], 0
    clean = D.textured_videos(width=WIDTH, height=HEIGHT, num_frames=frames, num_videos=max_videos, seed=seed)

    def audited_clean():
        for video in clean:
            clean_flags.extend(audit.check_masks(video))
            yield video

    for video, found in D.inject_many(audited_clean(), per_kind=per_kind, seed=seed):
        flags += audit.check_masks(video)
        placed += found
        videos += 1
    table = D.match(flags, placed)
    return {"videos": videos, "frames_per_video": frames, "size": f"{WIDTH}x{HEIGHT}", "seed": seed,
            "defects": len(placed), "table": table,
            "every_check_recall_ge_0.9": all((r["recall"] or 0) >= 0.9 for r in table.values()),
            "every_check_precision_ge_0.8": all(r["precision"] >= 0.8 for r in table.values()),
            "other_flags": dict(Counter(f.check for f in flags if f.check not in D.DEFECTS)),
            "clean_versions": {"flags": len(clean_flags), "by_severity": dict(Counter(f.severity for f in clean_flags)),
                               "high": _high(clean_flags)},
            "seconds": round(time.perf_counter() - started, 2)}


def hard_negatives(seeds: int, frames: int, inject: bool) -> tuple[dict, dict | None]:
    """Flags on the clean hard negatives; with ``inject``, the table on them with defects injected."""
    from longrvos_data.annotation import audit
    from longrvos_data.annotation import defects as D

    started = time.perf_counter()
    flags, injected_flags, placed, n = [], [], [], 0
    for seed in range(seeds):
        for video in D.hard_negative_videos(width=WIDTH, height=HEIGHT, num_frames=frames, seed=seed):
            video = _renamed(video, f"{video.video_id}{seed}")
            flags += audit.check_masks(video)
            n += 1
            if inject:
                found = D.place(video, list(D.DEFECTS) * 2, seed=seed)
                injected_flags += audit.check_masks(D.inject(video, found))
                placed += found
    clean = {"videos": n, "frames_per_video": frames, "kinds": list(D.HARD_NEGATIVES), "flags": len(flags),
             "high_flags": sum(f.severity == "high" for f in flags),
             "by_check_severity": {f"{c}/{s}": k for (c, s), k in sorted(Counter((f.check, f.severity)
                                                                                  for f in flags).items())},
             "high": _high(flags), "seconds": round(time.perf_counter() - started, 2)}
    table = None
    if inject:
        extra, missed = D.unmatched(injected_flags, placed)

        def near(d):   # what the audit said around a missed defect instead
            return [f"{f.check}{list(f.track_ids)}@{f.frame_start}" for f in injected_flags
                    if f.video_id == d.video_id and abs(f.frame_start - d.frame_start) <= 2]

        table = {"videos": n, "defects": len(placed), "table": D.match(injected_flags, placed),
                 "missed": [f"{d.kind}{list(d.track_ids)}@{d.video_id}:{d.frame_start}-{d.frame_end} -> {near(d)}"
                            for d in missed],
                 "unmatched_flags": [f"{f.check}{list(f.track_ids)}@{f.video_id}:{f.frame_start}-{f.frame_end} "
                                     f"({f.severity})" for f in extra],
                 "note": "fewer defects per kind than `detection`: a smaller sample, read with its counts"}
    return clean, table


def _renamed(video, video_id: str):
    from dataclasses import replace
    return replace(video, video_id=video_id)


def build_lvos(workdir: Path, videos: int, frames: int, seed: int) -> Path:
    """A 720p LVOS dataset (JPEG frames, palette PNG masks) under ``workdir``, reused when it matches."""
    from longrvos_data.synth import textured_lvos

    root = workdir / f"lvos_{videos}x{frames}_s{seed}"
    marker = root / "BUILT.json"
    if not marker.is_file():
        textured_lvos(root, split="valid", num_videos=videos, width=WIDTH, height=HEIGHT, num_frames=frames,
                      seed=seed)
        marker.write_text(json.dumps({"videos": videos, "frames": frames, "seed": seed}))
    return root


def speed(workdir: Path, videos: int, frames: int, seed: int, workers: list[int]) -> dict:
    from longrvos_data.annotation import audit

    started = time.perf_counter()
    root = build_lvos(workdir, videos, frames, seed)
    out = {"dataset": str(root), "videos": videos, "frames_per_video": frames, "size": f"{WIDTH}x{HEIGHT}",
           "build_seconds": round(time.perf_counter() - started, 2), "engine": None}
    if not hasattr(audit, "audit"):
        out["via"] = "check_masks (the driver audit.audit does not exist yet), 1 worker only"
        from longrvos_data.loaders import load
        started = time.perf_counter()
        masks = 0
        for video in load(root, format="lvos", split="valid")["valid"]:
            audit.check_masks(video)
            masks += sum(len(video.frame_areas(t)) for t in range(video.num_frames))
        seconds = time.perf_counter() - started
        out["workers_1"] = {"masks": masks, "seconds": round(seconds, 2), "masks_per_second": round(masks / seconds, 1)}
        return out
    out["via"] = "longrvos_data.annotation.audit.audit(src, split='valid', format='lvos', workers=N)"
    audit.audit(root, split="valid", format="lvos", workers=1)     # warm the page cache
    for n in workers:
        report = audit.audit(root, split="valid", format="lvos", workers=n)
        masks = report.summary["masks"]
        out[f"workers_{n}"] = {"masks": masks, "flags": report.summary["flags"],
                               "high_flags": report.summary["by_severity"]["high"],
                               "seconds": round(report.seconds, 2),
                               "masks_per_second": round(masks / report.seconds, 1)}
    return out


def memory_child(frames: int, seed: int) -> dict:
    """Run in a fresh process: check_masks on one procedural 720p video of ``frames`` frames."""
    from longrvos_data.annotation import audit
    from longrvos_data.annotation import defects as D

    video = next(D.textured_videos(width=WIDTH, height=HEIGHT, num_frames=frames, seed=seed))
    started = time.perf_counter()
    flags = audit.check_masks(video)
    return {"frames": frames, "flags": len(flags), "seconds": round(time.perf_counter() - started, 2),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def memory(lengths: list[int], seed: int) -> dict:
    out = {}
    for n in lengths:
        done = subprocess.run([sys.executable, __file__, "--memory-child", str(n), "--seed", str(seed)],
                              capture_output=True, text=True, check=True)
        out[f"frames_{n}"] = json.loads(done.stdout.strip().splitlines()[-1])
    peaks = [out[f"frames_{n}"]["peak_rss_mb"] for n in lengths]
    out["growth"] = round(peaks[-1] / peaks[0] - 1, 4)
    out["flat"] = out["growth"] <= 0.10
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--per-kind", type=int, default=30, help="defects of each kind, at least")
    parser.add_argument("--frames", type=int, default=150, help="frames per injected video")
    parser.add_argument("--max-videos", type=int, default=60)
    parser.add_argument("--hard-seeds", type=int, default=2, help="seeds of the hard-negative videos (5 each)")
    parser.add_argument("--speed-videos", type=int, default=4)
    parser.add_argument("--speed-frames", type=int, default=150)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--memory-frames", type=int, nargs=2, default=[100, 1000])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip", nargs="*", default=[], choices=["detection", "hard", "speed", "memory"])
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        print(json.dumps(memory_child(args.memory_child, args.seed)))
        return 0
    started = time.perf_counter()
    result: dict = {}
    if "detection" not in args.skip:
        result["detection"] = detection(args.per_kind, args.frames, args.seed, args.max_videos)
    if "hard" not in args.skip:
        result["clean_hard_negatives"], result["detection_on_hard_negatives"] = \
            hard_negatives(args.hard_seeds, 120, inject=True)
    if "speed" not in args.skip:
        result["speed"] = speed(args.workdir, args.speed_videos, args.speed_frames, args.seed, args.workers)
    if "memory" not in args.skip:
        result["memory"] = memory(args.memory_frames, args.seed)
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["load_average_1min_at_end"] = round(os.getloadavg()[0], 2)   # the machine is shared: read speed with it
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
