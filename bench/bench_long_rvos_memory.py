"""Peak memory of streaming a >= 2 GB Long-RVOS split through `longrvos_data.load`.

Builds (or reuses) a synthetic split in the Long-RVOS layout: 720p JPEG frames (a small
rendered pool, copied — or hard-linked with ``--link`` — to reach the size; only their
size has to be realistic) and real per-object 0/255 PNG masks of moving shapes that leave
and come back. Then, in a fresh subprocess, it loads the split, decodes every frame's
masks of every video and prints one JSON line:

    {"split_bytes": ..., "videos": ..., "frames": ..., "masks_decoded": ..., "seconds": ...,
     "peak_rss_mb": ...}

``seconds`` and ``peak_rss_mb`` cover the measuring subprocess only (load + iterate).

Example:
    python bench/bench_long_rvos_memory.py --workdir /work/main/.bench/long_rvos_2gb
"""
from __future__ import annotations

import argparse
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

DEFAULT_WORKDIR = Path("/work/main/.bench/long_rvos_2gb")
HEIGHT, WIDTH = 720, 1280
SPLIT = "valid"
TYPES = ("static", "dynamic", "static+dynamic")


def _render_pool(n: int, rng: np.random.Generator) -> list[bytes]:
    """``n`` 720p JPEGs (quality 90) of smooth colour fields plus sensor-like noise (~250 KB each)."""
    from PIL import Image

    pool = []
    for k in range(n):
        low = rng.integers(0, 255, (HEIGHT // 16, WIDTH // 16, 3), dtype=np.uint8)
        base = np.asarray(Image.fromarray(low).resize((WIDTH, HEIGHT), Image.BICUBIC)).astype(np.int16)
        noisy = np.clip(base + rng.normal(0, 3 + k % 4, base.shape), 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(noisy).save(buf, format="JPEG", quality=90)
        pool.append(buf.getvalue())
    return pool


def build(workdir: Path, *, target_bytes: int, pool_size: int, link: bool, seed: int) -> dict:
    """Write the split under ``workdir/long_rvos/<SPLIT>`` unless a finished one is there."""
    from longrvos_data.masks import png_bytes
    from longrvos_data.synth import SynthObject

    marker = workdir / "BUILD.json"
    if marker.is_file():
        info = json.loads(marker.read_text())
        if info.get("target_bytes", 0) >= target_bytes:
            info["reused"] = True
            return info
    start = time.perf_counter()
    root = workdir / "long_rvos" / SPLIT
    if root.exists():
        shutil.rmtree(root)
    rng = np.random.default_rng(seed)
    pool_dir = workdir / "pool"
    pool_dir.mkdir(parents=True, exist_ok=True)
    pool = []
    for k, data in enumerate(_render_pool(pool_size, rng)):
        path = pool_dir / f"{k:03d}.jpg"
        path.write_bytes(data)
        pool.append((path, len(data)))

    videos: dict[str, dict] = {}
    written = 0
    pngs = 0
    v = 0
    while written < target_bytes:
        vid = f"bench{v:04d}"
        num_frames = int(rng.integers(300, 421))
        names = [f"{t:05d}" for t in range(num_frames)]
        frame_dir = root / "JPEGImages" / vid
        frame_dir.mkdir(parents=True)
        for t, name in enumerate(names):
            src, size = pool[(t + 7 * v) % len(pool)]
            dst = frame_dir / f"{name}.jpg"
            os.link(src, dst) if link else shutil.copyfile(src, dst)
            written += size
        objects = []
        for k in range(1 + v % 3):
            gone = int(rng.integers(num_frames // 4, num_frames // 2))
            objects.append(SynthObject(
                track_id=str(k + 1), colour="red", shape=("ellipse", "box")[k % 2],
                cy=float(rng.uniform(0.2, 0.8) * HEIGHT), cx=float(rng.uniform(0.2, 0.8) * WIDTH),
                vy=float(rng.uniform(-0.01, 0.01) * HEIGHT), vx=float(rng.uniform(-0.01, 0.01) * WIDTH),
                ry=float(rng.uniform(0.05, 0.2) * HEIGHT), rx=float(rng.uniform(0.05, 0.2) * WIDTH),
                absent=(gone, gone + 40) if k == 0 else None))
        for obj in objects:
            obj_dir = root / "Annotations" / vid / obj.track_id
            obj_dir.mkdir(parents=True)
            for t, name in enumerate(names):
                mask = obj.draw(t, HEIGHT, WIDTH)
                if mask is None:
                    continue            # absent: no PNG, as in the release
                data = png_bytes(np.where(mask, 255, 0).astype(np.uint8))
                (obj_dir / f"{name}.png").write_bytes(data)
                written += len(data)
                pngs += 1
        videos[vid] = {"frames": names, "expressions": {
            str(k): {"exp": f"the {o.shape} that moves", "obj_id": int(o.track_id), "type": TYPES[(v + k) % 3]}
            for k, o in enumerate(objects)}}
        v += 1
        print(f"built {vid}: {num_frames} frames, {len(objects)} objects, {written / 1e9:.2f} GB so far",
              file=sys.stderr, flush=True)
    meta = json.dumps({"videos": videos}).encode()
    (root / "meta_expressions.json").write_bytes(meta)
    info = {"target_bytes": target_bytes, "videos": len(videos), "mask_pngs": pngs, "linked": link,
            "build_seconds": round(time.perf_counter() - start, 1), "reused": False}
    marker.write_text(json.dumps(info))
    return info


def split_bytes(root: Path) -> tuple[int, int]:
    """(apparent bytes of every file, bytes of distinct inodes) under ``root``."""
    total = 0
    inodes: dict[tuple[int, int], int] = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            st = os.stat(os.path.join(dirpath, name))
            total += st.st_size
            inodes[(st.st_dev, st.st_ino)] = st.st_size
    return total, sum(inodes.values())


def measure(split_dir: Path) -> dict:
    """Load the split and decode every frame's masks; runs in its own process."""
    import longrvos_data

    start = time.perf_counter()
    ds = longrvos_data.load(split_dir, format="long_rvos")
    videos = frames = masks_decoded = fg_pixels = 0
    for video in ds[split_dir.name]:
        videos += 1
        for i in range(video.num_frames):
            present = video.frame_masks(i)
            frames += 1
            masks_decoded += len(present)
            fg_pixels += sum(int(np.count_nonzero(m)) for m in present.values())
    seconds = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"videos": videos, "frames": frames, "masks_decoded": masks_decoded, "foreground_pixels": fg_pixels,
            "seconds": round(seconds, 1), "peak_rss_mb": round(peak_kb / 1024, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--target-gb", type=float, default=2.0, help="split size to reach (decimal GB)")
    parser.add_argument("--pool", type=int, default=48, help="distinct rendered JPEG frames")
    parser.add_argument("--link", action="store_true", help="hard-link pool frames instead of copying them")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)   # child mode
    args = parser.parse_args(argv)

    if args.measure is not None:
        print(json.dumps(measure(args.measure)))
        return 0

    info = build(args.workdir, target_bytes=int(args.target_gb * 1e9), pool_size=args.pool, link=args.link,
                 seed=args.seed)
    split_dir = args.workdir / "long_rvos" / SPLIT
    apparent, unique = split_bytes(split_dir)
    child = subprocess.run([sys.executable, __file__, "--measure", str(split_dir)], check=True,
                           capture_output=True, text=True)
    result = json.loads(child.stdout.strip().splitlines()[-1])
    out = {"split_bytes": apparent, **result, "unique_bytes": unique, "mask_pngs": info["mask_pngs"],
           "resolution": f"{WIDTH}x{HEIGHT}", "build_seconds": info["build_seconds"], "reused": info["reused"]}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
