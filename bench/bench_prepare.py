"""Benchmark `longrvos prepare` on a ~1 GB Long-RVOS-like ``JPEGImages.tar.gz`` against ``tar -xzf``.

Writes (once; reused while complete) under ``--workdir`` a ``valid/JPEGImages.tar.gz`` of
``<video>/<frame>.jpg`` members without a top folder, as the release ships it: JPEGs of noise
(as incompressible as real frames; 1280x720 by default, about 830 KB each, or ``--frame-size
320x180``, about 50 KB, closer to Long-RVOS's 72 KB average and giving many more members), plus
one ``Annotations``-like binary PNG per frame. The archive is built by GNU tar + gzip -6 (not
measured).

Then, in the same run and alternating (best of ``--repeat``; ``os.sync()`` and removal of the
previous output between runs, not timed):

- ``tar``: ``tar -xzf ARCHIVE -C OUT`` (GNU tar, decompressing through gzip);
- ``prepare_python``: `longrvos_data.prepare.extract` with Python's zlib (the default);
- ``prepare_gzip``: the same decompressing through GNU gzip in a second process;
- ``prepare_pigz``: the same through pigz, when it is installed.

Prints one JSON object: archive_mb, members, seconds and MB/s (of archive) of each, and the
ratio of each prepare run to tar (target: at most 1.3).

Example:
    python bench/bench_prepare.py --workdir .bench/prepare_1gb
"""
from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

DEFAULT_WORKDIR = Path(__file__).resolve().parents[1] / ".bench" / "prepare_1gb"


def build(archive: Path, *, target_mb: float, pool: int, width: int, height: int, seed: int = 0) -> dict:
    """The source tree and its ``.tar.gz``; returns member count and sizes."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    src = archive.parent / "src"
    shutil.rmtree(src, ignore_errors=True)
    jpegs, pngs = [], []
    for _ in range(pool):  # distinct images, reused across frames (gzip's 32 KiB window cannot tell)
        frame = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(frame).save(buf, "JPEG", quality=90)
        jpegs.append(buf.getvalue())
        mask = np.zeros((height, width), dtype=np.uint8)
        y, x, r = rng.integers(0, height), rng.integers(0, width), rng.integers(height // 8, height // 3)
        yy, xx = np.ogrid[:height, :width]
        mask[(yy - y) ** 2 + (xx - x) ** 2 <= r * r] = 255
        buf = io.BytesIO()
        Image.fromarray(mask).save(buf, "PNG")
        pngs.append(buf.getvalue())
    per_frame = (sum(map(len, jpegs)) + sum(map(len, pngs))) / pool
    frames = int(target_mb * 1e6 / per_frame)
    per_video = 120
    members = total = 0
    for i in range(frames):
        video = src / f"v{i // per_video:05d}"
        if i % per_video == 0:
            video.mkdir(parents=True)
        (video / f"{i % per_video:05d}.jpg").write_bytes(jpegs[i % pool])
        (video / f"{i % per_video:05d}.png").write_bytes(pngs[(i * 7) % pool])
        members += 2
        total += len(jpegs[i % pool]) + len(pngs[(i * 7) % pool])
    tmp = archive.with_name(archive.name + ".tmp")
    names = sorted(p.name for p in src.iterdir())
    with open(tmp, "wb") as out:
        tar = subprocess.Popen(["tar", "-C", str(src), "-cf", "-", *names], stdout=subprocess.PIPE)
        subprocess.run(["gzip", "-6", "-c"], stdin=tar.stdout, stdout=out, check=True)
        tar.stdout.close()
        if tar.wait() != 0:
            raise SystemExit("tar failed")
    os.replace(tmp, archive)
    shutil.rmtree(src)
    info = {"members": members, "videos": frames // per_video + 1, "uncompressed_mb": round(total / 1e6, 1),
            "frame_jpeg_kb": round(sum(map(len, jpegs)) / pool / 1e3, 1),
            "mask_png_kb": round(sum(map(len, pngs)) / pool / 1e3, 1)}
    (archive.parent / "archive.json").write_text(json.dumps(info))
    return info


def _clear(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    os.sync()


def run_tar(archive: Path, out: Path) -> float:
    _clear(out)
    out.mkdir(parents=True)
    start = time.perf_counter()
    subprocess.run(["tar", "-xzf", str(archive), "-C", str(out)], check=True)
    return time.perf_counter() - start


def run_prepare(archive: Path, *, gunzip: str) -> float:
    from longrvos_data.prepare import archive_spec, extract

    spec = archive_spec(archive)
    _clear(spec.dest)
    spec.marker.unlink(missing_ok=True)
    start = time.perf_counter()
    result = extract(spec, gunzip=gunzip)
    seconds = time.perf_counter() - start
    assert result.files > 0 and result.top is None
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--target-mb", type=float, default=1000.0, help="archive content size")
    parser.add_argument("--pool", type=int, default=48, help="distinct images")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--frame-size", default="1280x720",
                        help="WxH of the noise frames (320x180 gives ~50 KB frames, many more members)")
    args = parser.parse_args()
    width, height = map(int, args.frame_size.split("x"))

    archive = args.workdir / args.frame_size / "valid" / "JPEGImages.tar.gz"
    archive.parent.mkdir(parents=True, exist_ok=True)
    meta = archive.parent / "archive.json"
    if archive.exists() and meta.exists():
        info = json.loads(meta.read_text())
    else:
        info = build(archive, target_mb=args.target_mb, pool=args.pool, width=width, height=height)
    size_mb = archive.stat().st_size / 1e6

    gunzips = {"prepare_python": "python", "prepare_gzip": "gzip"}
    if shutil.which("pigz"):
        gunzips["prepare_pigz"] = "pigz"
    runs: dict[str, list[float]] = {"tar": [], **{k: [] for k in gunzips}}
    tar_out = args.workdir / args.frame_size / "tar_out"
    for _ in range(args.repeat):
        runs["tar"].append(run_tar(archive, tar_out))
        _clear(tar_out)
        for key, gunzip in gunzips.items():
            runs[key].append(run_prepare(archive, gunzip=gunzip))
    _clear(archive.parent / "JPEGImages")
    best = {k: min(v) for k, v in runs.items()}
    print(json.dumps({
        "archive_mb": round(size_mb, 1), "frame_size": args.frame_size, **info,
        "default_gunzip": "python", "cpus": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2), "repeat": args.repeat,
        **{f"{k}_s": round(v, 3) for k, v in best.items()},
        **{f"{k}_mb_s": round(size_mb / v, 1) for k, v in best.items()},
        **{f"ratio_{k}_to_tar": round(best[k] / best["tar"], 3) for k in gunzips},
        "all_runs_s": {k: [round(x, 3) for x in v] for k, v in runs.items()},
    }, indent=2))


if __name__ == "__main__":
    sys.exit(main())
