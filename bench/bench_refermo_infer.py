"""ReferMo inference memory in the video's length: peak RSS at 100 and 1,000 frames (target: <= 10% growth).

Each measurement runs in a fresh process (its peak RSS is its own): `baseline.infer.infer` over
one synthetic Long-RVOS video with two expressions, the tiny ReferMo (random weights, seed 0)
as the detector, the classical engine, PNG output. Motion is extracted beforehand (timed apart),
so the figure is inference's. The ground-truth stand-in detector is measured the same way, as
the floor of what the pipeline itself holds.

Usage: .venv/bin/python bench/bench_refermo_infer.py [--sizes 100,1000] [--height 120 --width 160]
Prints one JSON object.
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

WORK = Path(__file__).resolve().parent.parent / ".bench" / "refermo_infer"

CHILD = r"""
import json, resource, sys, time
import torch
from longrvos_data.baseline.infer import GroundTruthDetector, ReferMoDetector, infer
src, out, motion, detector = sys.argv[1:5]
torch.set_num_threads(1)
if detector == "refermo":
    from longrvos_data.baseline.inputs import tokenizer_for
    from longrvos_data.baseline.model import build_model
    torch.manual_seed(0)
    model = build_model("refermo-tiny")
    det = ReferMoDetector(model, tokenizer_for(model.config))
else:
    det = GroundTruthDetector()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
report = infer(src, out, detector=det, split="valid", motion_dir=motion)
print(json.dumps({"seconds": time.perf_counter() - t, "frames": report.frames,
                  "rss_before_mb": before / 1024, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def make(frames: int, height: int, width: int) -> tuple[Path, Path, float]:
    from longrvos_data.baseline.motion import extract_split
    from longrvos_data.synth import generate

    root = WORK / f"lr_{frames}_{height}x{width}"
    if not (root / "valid").is_dir():
        shutil.rmtree(root, ignore_errors=True)
        generate("long_rvos", root, num_videos=1, num_frames=frames, sizes=((height, width),), max_objects=2,
                 splits=["valid"])
    motion = root.parent / f"{root.name}_motion"
    t = time.perf_counter()
    extract_split(root, motion, split="valid")
    return root, motion, time.perf_counter() - t


def run(src: Path, motion: Path, detector: str) -> dict:
    out = WORK / f"pred_{src.name}_{detector}"
    shutil.rmtree(out, ignore_errors=True)
    r = subprocess.run([sys.executable, "-c", CHILD, str(src), str(out), str(motion), detector],
                       capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="100,1000")
    ap.add_argument("--height", type=int, default=120)
    ap.add_argument("--width", type=int, default=160)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    WORK.mkdir(parents=True, exist_ok=True)
    result: dict = {"size": f"{args.height}x{args.width}", "detector_model": "refermo-tiny (random weights)",
                    "engine": "classical", "runs": {}}
    for n in sizes:
        src, motion, motion_s = make(n, args.height, args.width)
        for detector in ("refermo", "ground-truth"):
            fig = run(src, motion, detector)
            fig["fps"] = fig["frames"] / fig["seconds"]
            result["runs"][f"{detector}@{n}"] = {k: round(v, 2) for k, v in fig.items()} | {
                "motion_extract_s": round(motion_s, 2)}
    lo, hi = min(sizes), max(sizes)
    for detector in ("refermo", "ground-truth"):
        a, b = result["runs"][f"{detector}@{lo}"]["peak_rss_mb"], result["runs"][f"{detector}@{hi}"]["peak_rss_mb"]
        result[f"{detector}_peak_rss_growth_{lo}_to_{hi}"] = round(b / a - 1, 4)
    result["self_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
