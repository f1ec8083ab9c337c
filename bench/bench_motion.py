"""Codec-motion extraction at 720p: seconds per frame and peak RSS for a 1,000-frame video.

Builds (or reuses) one synthetic Long-RVOS video of ``--frames`` 1280x720 JPEG frames: a
textured background panning slowly with two textured objects moving at their own speeds
(so the encoder finds real motion everywhere). Then, each in a fresh subprocess:

- ``extract``: `longrvos_data.baseline.motion.extract_split` (encode with libx264, decode
  with ``export_mvs``, pool per 16x16 block), as ``longrvos baseline extract-motion`` runs it;
- ``public_pooling``: the public extractor's per-frame step on the same exported vectors
  (a dense H x W x 2 float64 map per frame, kept for the whole video, then padded and
  max-pooled), over the first ``--public-frames`` frames, its peak RSS extrapolated
  linearly to the whole video is reported beside the measured one.

Prints one JSON object. Example:
    python bench/bench_motion.py --frames 1000
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

DEFAULT_WORKDIR = Path(__file__).resolve().parent.parent / ".bench" / "motion"
HEIGHT, WIDTH = 720, 1280


def build(workdir: Path, frames: int) -> Path:
    """``workdir/long_rvos/valid`` with one video ``pan`` of ``frames`` frames (reused when complete)."""
    import cv2

    root = workdir / "long_rvos"
    split = root / "valid"
    folder = split / "JPEGImages" / "pan"
    meta = split / "meta_expressions.json"
    if meta.is_file() and len(list(folder.glob("*.jpg"))) == frames:
        return root
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    world = cv2.resize(rng.integers(0, 256, (HEIGHT // 8, (WIDTH + 2 * frames) // 8, 3), dtype=np.uint8),
                       (WIDTH + 2 * frames, HEIGHT), interpolation=cv2.INTER_CUBIC)
    sprites = [cv2.resize(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8), (160, 160),
                          interpolation=cv2.INTER_CUBIC) for _ in range(2)]
    for t in range(frames):
        image = world[:, 2 * t:2 * t + WIDTH].copy()  # background pans 2 px/frame
        for k, (sprite, (vx, vy)) in enumerate(zip(sprites, [(5, 1), (-3, 2)])):
            x = int((100 + 400 * k + vx * t) % (WIDTH - 160))
            y = int((100 + 200 * k + vy * t) % (HEIGHT - 160))
            image[y:y + 160, x:x + 160] = sprite
        cv2.imwrite(str(folder / f"{t:05d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    names = [f"{t:05d}" for t in range(frames)]
    meta.write_text(json.dumps({"videos": {"pan": {"frames": names, "expressions": {
        "0": {"exp": "the square moving right", "obj_id": 1, "type": "dynamic"}}}}}))
    return root


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_extract(root: str, out: str) -> dict:
    from longrvos_data.baseline.motion import extract_split

    start = time.perf_counter()
    report = extract_split(root, out, split="valid")
    seconds = time.perf_counter() - start
    return {"frames": report.frames, "seconds": seconds, "seconds_per_frame": seconds / max(report.frames, 1),
            "peak_rss_mb": _peak_rss_mb()}


def run_public_pooling(root: str, frames: int) -> dict:
    """The public script's per-frame arrays on the vectors of our own encode of the first ``frames`` frames."""
    import dataclasses
    import math
    import tempfile

    from longrvos_data.baseline import motion
    from longrvos_data.loaders import load

    video = load(root, split="valid")["valid"].video("pan")
    frames = int(frames)
    video = dataclasses.replace(video, frames=video.frames[:frames])
    fd, tmp = tempfile.mkstemp(suffix=".h264")
    motion._encode(video, Path(tmp), motion.MotionParams())
    start = time.perf_counter()
    kept = []
    for _, vectors in motion._decode(Path(tmp)):
        mv = np.ones((HEIGHT, WIDTH, 2)) * -10000
        if len(vectors):
            pos = np.stack([vectors["dst_x"], vectors["dst_y"]], 1).clip((0, 0), (WIDTH - 1, HEIGHT - 1))
            vals = (vectors["source"][:, None] * np.stack([vectors["motion_x"], vectors["motion_y"]], 1)
                    / vectors["motion_scale"][:, None]).astype(np.float64)
            mv[pos[:, 1], pos[:, 0]] = vals / np.array([[WIDTH, HEIGHT]]) / np.array([motion.STD])
        kept.append(mv)  # the public script keeps every frame's dense map until the end
    ph, pw = math.ceil(HEIGHT / 16) * 16, math.ceil(WIDTH / 16) * 16
    pooled = []
    for mv in kept:
        padded = np.full((ph, pw, 2), -10000.0)
        padded[:HEIGHT, :WIDTH] = mv
        pooled.append(padded.reshape(ph // 16, 16, pw // 16, 16, 2).max(axis=(1, 3)))
    seconds = time.perf_counter() - start
    Path(tmp).unlink()
    return {"frames": len(kept), "pooling_seconds_per_frame": seconds / max(len(kept), 1),
            "peak_rss_mb": _peak_rss_mb(), "dense_map_mb_per_frame": HEIGHT * WIDTH * 2 * 8 / 2 ** 20}


def _child(kind: str, *args: str) -> dict:
    code = (f"import json, sys; sys.path.insert(0, {str(Path(__file__).resolve().parent)!r}); "
            f"import bench_motion as b; print(json.dumps(b.run_{kind}(*{list(args)!r})))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--public-frames", type=int, default=120, help="frames for the public pooling peer")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    args = parser.parse_args()
    root = build(args.workdir, args.frames)
    out = args.workdir / "out"
    for old in out.glob("*.npz"):
        old.unlink()
    ours = _child("extract", str(root), str(out))
    public = _child("public_pooling", str(root), str(args.public_frames))
    public["peak_rss_mb_extrapolated_to_video"] = public["dense_map_mb_per_frame"] * args.frames
    from longrvos_data.baseline.motion import Motion
    saved = Motion.load(out / "pan.npz")
    print(json.dumps({"height": HEIGHT, "width": WIDTH, "frames": args.frames, "extract": ours,
                      "npz_mb": (out / "pan.npz").stat().st_size / 2 ** 20, "mv_shape": list(saved.mv.shape),
                      "keyframes": len(saved.keyframes), "public_pooling": public}, indent=2))


if __name__ == "__main__":
    main()
