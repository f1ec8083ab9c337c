"""FiftyOne import: throughput (frames/s) and database size for 10,000 frames with masks.

Builds (or reuses) a synthetic Long-RVOS ``valid`` split, 100 videos x 100 frames at
480x854 with 1-3 moving objects per video (real JPEG frames, real 0/255 PNG masks), then,
in a fresh subprocess with its own MongoDB (FiftyOne's mongod on ``<workdir>/db``):

- ``import``: `to_fiftyone` into a new dataset (load, decode every mask, write the mask
  crops as PNGs, merge the samples in batches): seconds, frames/s (after the database
  connection is up), peak RSS of the importer and the mongod RSS at the end;
- ``rerun``: the same command again, which updates every sample in place;
- sizes after mongod has shut down cleanly: the MongoDB data folder (all of it, and its
  data files alone: the journal preallocates ~100 MB whatever the data), FiftyOne's own
  ``dataset.stats()`` of the sample documents, and the mask PNG folder.

Prints one JSON object.

Example:
    python bench/bench_fiftyone.py --workdir /work/main/.bench/fiftyone
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

DEFAULT_WORKDIR = Path("/work/main/.bench/fiftyone")


def _du(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def build(workdir: Path, *, videos: int, frames: int, height: int, width: int) -> Path:
    """The synthetic split (reused when its marker says it has the same shape)."""
    from longrvos_data.synth import generate
    root = workdir / "src"
    marker = workdir / "src.json"
    shape = {"videos": videos, "frames": frames, "height": height, "width": width}
    if marker.is_file() and json.loads(marker.read_text()) == shape:
        return root
    shutil.rmtree(root, ignore_errors=True)
    generate("long_rvos", root, num_videos=videos, num_frames=frames, sizes=((height, width),),
             splits=("valid",), seed=7)
    marker.write_text(json.dumps(shape))
    return root


def _phase(workdir: Path, src: Path) -> dict:
    """Runs in the subprocess: import twice into a private database, then measure sizes."""
    import psutil

    from longrvos_data.converters import fiftyone as lfo
    db, masks = workdir / "db", workdir / "masks"
    shutil.rmtree(db, ignore_errors=True)
    shutil.rmtree(masks, ignore_errors=True)
    out: dict = {}
    with lfo.private_database(db):
        import fiftyone as fo
        t0 = time.perf_counter()
        first = lfo.to_fiftyone(src, name="bench", masks_dir=masks, split="valid", progress=False)
        wall = time.perf_counter() - t0
        mongod = [p for p in psutil.Process().children(recursive=True) if p.name() == "mongod"]
        out["import"] = {"frames": first.samples, "videos": first.videos, "gt_masks": first.gt_masks,
                         "seconds": round(first.seconds, 2), "frames_per_s": round(first.samples / first.seconds, 1),
                         "wall_seconds_incl_connect": round(wall, 2),
                         "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                         "mongod_rss_mb": round(mongod[0].memory_info().rss / 2**20, 1) if mongod else None}
        again = lfo.to_fiftyone(src, name="bench", masks_dir=masks, split="valid", progress=False)
        out["rerun"] = {"frames": again.samples, "total_samples": again.total_samples,
                        "seconds": round(again.seconds, 2), "frames_per_s": round(again.samples / again.seconds, 1)}
        stats = fo.load_dataset("bench").stats()
        out["fiftyone_stats"] = {"samples_count": stats["samples_count"], "samples_bytes": stats["samples_bytes"]}
    data = sum(f.stat().st_size for f in db.glob("*.wt"))  # collections + indexes, without journal/diagnostics
    out["sizes_mb"] = {"mongodb_dir": round(_du(db) / 2**20, 1), "mongodb_data_files": round(data / 2**20, 1),
                       "mongodb_journal": round(_du(db / "journal") / 2**20, 1),
                       "mongodb_diagnostic_data": round(_du(db / "diagnostic.data") / 2**20, 1),
                       "mask_pngs": round(_du(masks) / 2**20, 1),
                       "mask_png_files": sum(len(f) for _, _, f in os.walk(masks))}
    out["bytes_per_frame"] = {"mongodb_data_files": round(data / first.samples),
                              "fiftyone_sample_docs": round(stats["samples_bytes"] / first.samples),
                              "mask_pngs": round(_du(masks) / first.samples)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--videos", type=int, default=100)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=854)
    parser.add_argument("--phase", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.phase:
        print(json.dumps(_phase(args.workdir, args.workdir / "src")))
        return
    t0 = time.perf_counter()
    src = build(args.workdir, videos=args.videos, frames=args.frames, height=args.height, width=args.width)
    built = time.perf_counter() - t0
    env = {**os.environ, "FIFTYONE_DO_NOT_TRACK": "true"}
    run = subprocess.run([sys.executable, __file__, "--phase", "--workdir", str(args.workdir)],
                         capture_output=True, text=True, env=env, check=False)
    if run.returncode != 0:
        sys.exit(f"import phase failed:\n{run.stderr[-4000:]}")
    result = {"dataset": {"format": "long_rvos", "videos": args.videos, "frames_per_video": args.frames,
                          "size": f"{args.height}x{args.width}", "objects_per_video": "1-3",
                          "source_mb": round(_du(src) / 2**20, 1), "build_seconds": round(built, 1)},
              **json.loads(run.stdout.strip().splitlines()[-1]), "cpu_count": os.cpu_count()}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
