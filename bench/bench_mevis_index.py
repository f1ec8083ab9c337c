"""Benchmark the streaming mask_dict index on a MeViS-layout split with a >= 300 MB mask_dict.

Writes (once; reused while complete) a synthetic ``train`` split: realistic 720p RLEs of
irregular moving blobs over hundreds of frames, some frames null, about five objects a
video; every frame of a video is a hard link to one 1280x720 JPEG (only the masks matter).
Then, each in a fresh subprocess with an empty index cache:

- ``index_build``: stream the mask_dict once into the on-disk index;
- ``open_one_video``: `longrvos_data.loaders.mevis.load` the split, open one video and
  decode every mask of every frame (index already built).
- with ``--compare-ijson``: one pass of ``ijson.kvitems(f, "", use_float=True)`` (C
  backend) that re-serialises each value, i.e. what an ijson-based index would cost.

Prints one JSON object: mask_dict_mb, annos, index_build_s, index_build_peak_rss_mb,
open_one_video_s, open_one_video_peak_rss_mb (and a few context figures).

Example:
    python bench/bench_mevis_index.py --workdir /work/main/.bench/mevis_300mb
"""
from __future__ import annotations

import argparse
import io
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

DEFAULT_WORKDIR = Path("/work/main/.bench/mevis_300mb")


def _blob(t: int, k: int, height: int, width: int, rng_phase: float) -> np.ndarray:
    """An irregular blob (wobbly ellipse) that moves and changes size with time ``t``."""
    cy = height * (0.5 + 0.3 * math.sin(0.021 * t + k))
    cx = width * (0.5 + 0.35 * math.cos(0.017 * t + 2 * k))
    ry = height * (0.10 + 0.06 * math.sin(0.05 * t + k + rng_phase))
    rx = width * (0.07 + 0.05 * math.cos(0.04 * t + k))
    y0, y1 = max(int(cy - 1.4 * ry), 0), min(int(cy + 1.4 * ry) + 1, height)
    x0, x1 = max(int(cx - 1.4 * rx), 0), min(int(cx + 1.4 * rx) + 1, width)
    out = np.zeros((height, width), dtype=bool)
    yy, xx = np.mgrid[y0:y1, x0:x1]
    dy, dx = (yy - cy) / ry, (xx - cx) / rx
    angle = np.arctan2(dy, dx)
    wobble = 1.0 + 0.18 * np.sin(5 * angle + 0.3 * t + k) + 0.07 * np.sin(13 * angle - 0.2 * t)
    out[y0:y1, x0:x1] = dy * dy + dx * dx <= wobble * wobble
    return out


def write_split(split: Path, *, target_mb: float, frames: int, height: int, width: int, annos_per_video: int,
                pool_size: int) -> dict:
    """Write the synthetic split (meta, frames, mask_dict) and return its figures."""
    from PIL import Image

    from longrvos_data import masks
    from longrvos_data.fsutil import atomic_write_json
    from longrvos_data.loaders.mask_dict import MaskDictWriter

    done = split / "bench_done.json"
    if done.is_file():
        return json.loads(done.read_text())
    if split.exists():
        shutil.rmtree(split)
    split.mkdir(parents=True)
    # A pool of distinct RLEs: realistic content, cheap to repeat.
    pool = [masks.encode(_blob(i * 7, i % 11, height, width, i * 0.37)) for i in range(pool_size)]
    buf = io.BytesIO()
    rgb = np.full((height, width, 3), 90, dtype=np.uint8)
    Image.fromarray(rgb).save(buf, format="JPEG", quality=60)
    jpeg_bytes = buf.getvalue()
    names = [f"{i:05d}" for i in range(frames)]
    videos: dict[str, dict] = {}
    anno = 0
    target = target_mb * 1e6
    path = split / "mask_dict.json"
    with MaskDictWriter(path) as writer:
        v = 0
        while writer.bytes_written < target:
            vid = f"bench{v:05d}"
            exps = {}
            for k in range(annos_per_video):
                lst = []
                for t in range(frames):
                    # each object leaves the frame for a stretch (null entries)
                    gone = (t + 37 * k + 11 * v) % frames < frames // 5
                    lst.append(None if gone else pool[(t + 13 * k + 29 * v) % pool_size])
                writer.add(str(anno), lst)
                exps[str(k)] = {"exp": f"object {k} moving", "obj_id": [k], "anno_id": [anno]}
                anno += 1
            exps[str(annos_per_video)] = {"exp": "the first two", "obj_id": [0, 1],
                                          "anno_id": [anno - annos_per_video, anno - annos_per_video + 1]}
            videos[vid] = {"vid_id": v, "frames": names, "expressions": exps}
            folder = split / "JPEGImages" / vid
            folder.mkdir(parents=True)
            first = folder / f"{names[0]}.jpg"
            first.write_bytes(jpeg_bytes)          # one file per video (hard-link counts are capped)
            for n in names[1:]:
                os.link(first, folder / f"{n}.jpg")
            v += 1
    atomic_write_json(split / "meta_expressions.json", {"videos": videos})
    figures = {"mask_dict_mb": round(path.stat().st_size / 1e6, 1), "annos": anno, "videos": len(videos),
               "frames_per_video": frames, "height": height, "width": width,
               "mean_rle_chars": round(float(np.mean([len(r["counts"]) for r in pool])), 1)}
    done.write_text(json.dumps(figures))
    return figures


_CHILD_PRELUDE = """
import json, resource, sys, time
def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
"""

_BUILD = _CHILD_PRELUDE + """
from longrvos_data.loaders import mask_dict
t0 = time.perf_counter()
index = mask_dict.MaskDictIndex(sys.argv[1])
index.ensure()
n = len(index)
print(json.dumps({"s": time.perf_counter() - t0, "rss": peak_mb(), "entries": n, "builds": mask_dict.build_count()}))
"""

_OPEN = _CHILD_PRELUDE + """
import numpy as np
import longrvos_data.loaders.mevis as mevis
base = peak_mb()
t0 = time.perf_counter()
ds = mevis.load(sys.argv[1])
split = next(iter(ds))
ids = split.video_ids()
video = split.video(ids[len(ids) // 2])
pixels = 0
for i, masks in video.iter_frame_masks():
    pixels += sum(int(np.count_nonzero(m)) for m in masks.values())
from longrvos_data.loaders import mask_dict
print(json.dumps({"s": time.perf_counter() - t0, "rss": peak_mb(), "import_rss": base, "tracks": len(video.tracks),
                  "frames": video.num_frames, "pixels": pixels, "builds": mask_dict.build_count(),
                  "entries_read": sum(mask_dict.open_index(split.mask_dict).reads.values())}))
"""

_IJSON = _CHILD_PRELUDE + """
import ijson
t0 = time.perf_counter()
n = 0
with open(sys.argv[1], "rb") as fh:
    for key, value in ijson.kvitems(fh, "", use_float=True):
        json.dumps(value)
        n += 1
print(json.dumps({"s": time.perf_counter() - t0, "rss": peak_mb(), "entries": n, "backend": ijson.backend}))
"""


def _child(code: str, arg: Path, cache: Path) -> dict:
    env = dict(os.environ, LONGRVOS_CACHE=str(cache))
    done = subprocess.run([sys.executable, "-c", code, str(arg)], env=env, capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise SystemExit(f"benchmark child failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    p.add_argument("--target-mb", type=float, default=300.0, help="minimum mask_dict.json size")
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--height", type=int, default=720)
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--annos-per-video", type=int, default=5)
    p.add_argument("--pool", type=int, default=96, help="distinct RLEs to cycle through")
    p.add_argument("--compare-ijson", action="store_true", help="also time one ijson kvitems pass")
    args = p.parse_args(argv)

    split = args.workdir / "train"
    figures = write_split(split, target_mb=args.target_mb, frames=args.frames, height=args.height,
                          width=args.width, annos_per_video=args.annos_per_video, pool_size=args.pool)
    cache = args.workdir / "cache"
    shutil.rmtree(cache, ignore_errors=True)
    build = _child(_BUILD, split / "mask_dict.json", cache)
    opened = _child(_OPEN, split, cache)
    result = {
        "mask_dict_mb": figures["mask_dict_mb"],
        "annos": figures["annos"],
        "index_build_s": round(build["s"], 2),
        "index_build_peak_rss_mb": round(build["rss"], 1),
        "open_one_video_s": round(opened["s"], 2),
        "open_one_video_peak_rss_mb": round(opened["rss"], 1),
        "open_one_video_import_rss_mb": round(opened["import_rss"], 1),
        "open_one_video_tracks": opened["tracks"],
        "open_one_video_frames": opened["frames"],
        "open_one_video_entries_read": opened["entries_read"],
        "open_rebuilt_index": opened["builds"] > 0,
        "videos": figures["videos"],
        "frame_size": [figures["height"], figures["width"]],
        "mean_rle_chars": figures["mean_rle_chars"],
    }
    if args.compare_ijson:
        ij = _child(_IJSON, split / "mask_dict.json", cache)
        result.update(ijson_kvitems_s=round(ij["s"], 2), ijson_kvitems_peak_rss_mb=round(ij["rss"], 1),
                      ijson_backend=ij["backend"])
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
