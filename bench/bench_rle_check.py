"""What the RLE count check costs (issue 10 item 2): per RLE, and in `longrvos info --deep`.

Builds (once; reused while complete) a synthetic MeViS ``train`` split of realistic size:
720p, ``--videos`` videos x ``--frames`` frames x 3 objects, every RLE distinct (irregular
moving blobs, `bench_mevis_index._blob`, encoded with `longrvos_data.masks.encode`; each
object leaves for a stretch, so some items are null); every frame of a video is a hard
link to one JPEG (only the masks matter). Then, in this run:

- ``per_rle_us``: on one video's RLEs, microseconds per RLE of the batched check over the
  whole video (as `mask_dict.check_rle_list` runs it), of the batched check per frame, of
  `masks.check` one RLE at a time (the check cache cleared before each pass), and of
  pycocotools' ``area`` (per frame, as ``info --deep`` calls it) and ``decode``;
- ``info_deep``: `longrvos_data.summary.summarise(..., deep=True)` on the split, each run
  in a fresh subprocess (index already built), alternating ``check on`` (as users run it)
  and ``check off`` (`masks.counts_problem` replaced by a no-op in that process only);
  the fastest run of each counts, wall and process CPU seconds. Target: on / off <= 1.2.

Prints one JSON object.

Example:
    python bench/bench_rle_check.py --workdir /work/main/.bench/rle_check
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

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_mevis_index import _blob  # noqa: E402

DEFAULT_WORKDIR = Path("/work/main/.bench/rle_check")
OBJECTS = 3


def build(root: Path, *, videos: int, frames: int, height: int, width: int) -> dict:
    """Write the split under ``root/train`` (reused when its figures match) and return its figures."""
    from PIL import Image

    from longrvos_data import masks
    from longrvos_data.fsutil import atomic_write_json
    from longrvos_data.loaders.mask_dict import MaskDictWriter

    split = root / "train"
    want = {"videos": videos, "frames_per_video": frames, "objects": OBJECTS, "height": height, "width": width}
    done = root / "bench_done.json"
    if done.is_file():
        figures = json.loads(done.read_text())
        if {k: figures.get(k) for k in want} == want:
            return {**figures, "reused": True}
    shutil.rmtree(root, ignore_errors=True)
    (split / "JPEGImages").mkdir(parents=True)
    import io
    buf = io.BytesIO()
    Image.fromarray(np.full((height, width, 3), 90, dtype=np.uint8)).save(buf, format="JPEG", quality=60)
    names = [f"{i:05d}" for i in range(frames)]
    meta: dict[str, dict] = {}
    chars: list[int] = []
    anno = 0
    with MaskDictWriter(split / "mask_dict.json") as writer:
        for v in range(videos):
            vid = f"bench{v:04d}"
            exps = {}
            for k in range(OBJECTS):
                items = []
                for t in range(frames):
                    gone = (t + 37 * k + 11 * v) % frames < frames // 6
                    rle = None if gone else masks.encode(_blob(t + 1000 * v, k, height, width, 0.37 * v))
                    if rle is not None:
                        chars.append(len(rle["counts"]))
                    items.append(rle)
                writer.add(str(anno), items)
                exps[str(k)] = {"exp": f"object {k} moving", "obj_id": [k], "anno_id": [anno]}
                anno += 1
            meta[vid] = {"vid_id": v, "frames": names, "expressions": exps}
            folder = split / "JPEGImages" / vid
            folder.mkdir()
            first = folder / f"{names[0]}.jpg"
            first.write_bytes(buf.getvalue())
            for n in names[1:]:
                os.link(first, folder / f"{n}.jpg")
    atomic_write_json(split / "meta_expressions.json", {"videos": meta})
    figures = {**want, "rles": len(chars), "mask_dict_mb": round((split / "mask_dict.json").stat().st_size / 1e6, 1),
               "mean_rle_chars": round(float(np.mean(chars)), 1)}
    atomic_write_json(done, figures)
    return {**figures, "reused": False}


def _best_us(fn, n_items: int, repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return round(best / n_items * 1e6, 2)


def per_rle(root: Path) -> dict:
    """Microseconds per RLE of each way to check or read one video's RLEs."""
    from pycocotools import mask as coco

    from longrvos_data import masks

    split = root / "train"
    meta = json.loads((split / "meta_expressions.json").read_text())["videos"]["bench0000"]
    doc = json.loads((split / "mask_dict.json").read_text())
    tracks = [doc[str(e["anno_id"][0])] for e in meta["expressions"].values()]
    frames = [[seq[t] for seq in tracks if seq[t] is not None] for t in range(len(meta["frames"]))]
    rles = [r for frame in frames for r in frame]
    coco_frames = [[{"size": r["size"], "counts": r["counts"].encode()} for r in f] for f in frames]
    clear = masks._CHECKED.clear

    def batched_video():
        clear()
        masks.counts_problem(rles)

    def batched_frames():
        clear()
        for f in frames:
            masks.counts_problem(f)

    def single():
        clear()
        for r in rles:
            masks.check(r)

    sample = coco_frames[:10]
    return {
        "rles": len(rles), "mean_chars": round(float(np.mean([len(r["counts"]) for r in rles])), 1),
        "batched_check_per_video": _best_us(batched_video, len(rles)),
        "batched_check_per_frame": _best_us(batched_frames, len(rles)),
        "single_check": _best_us(single, len(rles)),
        "pycocotools_area_per_frame": _best_us(lambda: [coco.area(f) for f in coco_frames], len(rles)),
        "pycocotools_decode": _best_us(lambda: [coco.decode(f) for f in sample], sum(map(len, sample)), 2),
    }


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def phase(root: Path, check: bool) -> dict:
    """One ``summarise(deep=True)`` in this process, the check on or replaced by a no-op."""
    from longrvos_data import masks
    from longrvos_data.summary import summarise

    if not check:
        masks.counts_problem = lambda rles: None
    cpu, start = _cpu(), time.perf_counter()
    summary = summarise(root, format="mevis", deep=True)
    return {"check": check, "seconds": round(time.perf_counter() - start, 3), "cpu_seconds": round(_cpu() - cpu, 3),
            "masks": summary["masks"], "frames": summary["frames"]}


def _child(root: Path, check: bool, cache: Path) -> dict:
    done = subprocess.run([sys.executable, __file__, "--workdir", str(root), "--phase",
                           "on" if check else "off"], capture_output=True, text=True,
                          env=dict(os.environ, LONGRVOS_CACHE=str(cache)))
    if done.returncode != 0:
        raise SystemExit(f"phase failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--videos", type=int, default=20)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--runs", type=int, default=3, help="runs of each variant (alternating)")
    parser.add_argument("--phase", choices=("on", "off"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    cache = args.workdir / "cache"
    if args.phase:
        print(json.dumps(phase(args.workdir, args.phase == "on")))
        return 0

    figures = build(args.workdir, videos=args.videos, frames=args.frames, height=args.height, width=args.width)
    os.environ["LONGRVOS_CACHE"] = str(cache)
    shutil.rmtree(cache, ignore_errors=True)
    micro = per_rle(args.workdir)
    _child(args.workdir, True, cache)                      # builds the mask_dict index
    load_start = os.getloadavg()
    runs: dict[bool, list] = {True: [], False: []}
    for _ in range(args.runs):
        for check in (True, False):
            runs[check].append(_child(args.workdir, check, cache))
    best = {k: min(r["seconds"] for r in v) for k, v in runs.items()}
    best_cpu = {k: min(r["cpu_seconds"] for r in v) for k, v in runs.items()}
    assert runs[True][0]["masks"] == runs[False][0]["masks"]
    print(json.dumps({
        "machine": {"cpus": os.cpu_count(), "loadavg_start": [round(x, 2) for x in load_start],
                    "loadavg_end": [round(x, 2) for x in os.getloadavg()]},
        "split": figures,
        "per_rle_us": micro,
        "info_deep": {
            "check_on": runs[True], "check_off": runs[False],
            "per_rle_us_on": round(best[True] / figures["rles"] * 1e6, 2),
            "per_rle_us_off": round(best[False] / figures["rles"] * 1e6, 2),
            "ratio_wall": round(best[True] / best[False], 3),
            "ratio_cpu": round(best_cpu[True] / best_cpu[False], 3),
            "target_at_most_1_2": best_cpu[True] / best_cpu[False] <= 1.2,
        },
    }, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
