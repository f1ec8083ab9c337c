"""Benchmark `longrvos prepare` on ~1 GB Long-RVOS-like ``.tar.gz`` archives against ``tar -xzf``.

Writes (once; reused while complete) under ``--workdir`` one archive per case, members without a
top folder, as the release ships them (built by GNU tar + gzip -6, not measured):

- ``1280x720``, ``320x180``: ``valid/JPEGImages.tar.gz`` of ``<video>/<frame>.jpg`` JPEGs of noise
  (as incompressible as real frames; about 830 KB and 54 KB each) plus one small binary PNG per frame;
- ``masks``: ``valid/Annotations.tar.gz`` of ``<video>/<object>/<frame>.png`` 1280x720 binary masks
  of a few smooth blobs, about 7 KB each (Long-RVOS's ships some 2 million of these), 150k members.

Then, per case, in the same run and alternating (best of ``--repeat``; removal of the previous
output and ``os.sync()`` between runs, not timed):

- ``tar``: ``tar -xzf ARCHIVE -C OUT`` (GNU tar, decompressing through gzip in a second process);
- ``prepare_python``: `longrvos_data.prepare.extract` as `longrvos prepare` runs it (zlib in a second thread);
- with ``--programs``: ``prepare_gzip`` and ``prepare_pigz``, decompressing through those programs.

Prints one JSON object per case: archive_mb, members, every run's seconds, the best of each, MB/s
(of archive) and the ratio of each prepare to tar (target: at most 1.3).

With ``--scratch /dev/shm/...`` each archive is first copied to that folder (not timed) and both
tools extract there: the comparison is then of the two programs, not of the disk's file creation.

Example:
    python bench/bench_prepare.py --workdir .bench/prepare_1gb --case 320x180 --case masks --repeat 3
    python bench/bench_prepare.py --case masks --scratch /dev/shm/longrvos_bench
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
CASES = ("1280x720", "320x180", "masks")
SETTLE_S = 5.0


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
    _pack(src, archive)
    info = {"members": members, "videos": frames // per_video + 1, "uncompressed_mb": round(total / 1e6, 1),
            "frame_jpeg_kb": round(sum(map(len, jpegs)) / pool / 1e3, 1),
            "mask_png_kb": round(sum(map(len, pngs)) / pool / 1e3, 1)}
    (archive.parent / "archive.json").write_text(json.dumps(info))
    return info


def build_masks(archive: Path, *, target_mb: float, pool: int, seed: int = 0) -> dict:
    """An ``Annotations.tar.gz`` of ``<video>/<object>/<frame>.png`` masks; returns member count and sizes."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    pngs = []
    for _ in range(pool):  # smooth blobs: a coarse random field, upsampled and thresholded
        field = Image.fromarray((rng.random((5, 8)) * 255).astype(np.uint8)).resize((1280, 720), Image.BICUBIC)
        buf = io.BytesIO()
        Image.fromarray(((np.asarray(field) > 170) * 255).astype(np.uint8)).save(buf, "PNG")
        pngs.append(buf.getvalue())
    src = archive.parent / "src"
    shutil.rmtree(src, ignore_errors=True)
    per_object, objects = 100, 3
    members = total = 0
    while total < target_mb * 1e6:
        video = members // (per_object * objects)
        obj = src / f"v{video:05d}" / str(members // per_object % objects)
        if members % per_object == 0:
            obj.mkdir(parents=True)
        data = pngs[members % pool]
        (obj / f"{members % per_object:05d}.png").write_bytes(data)
        members += 1
        total += len(data)
    _pack(src, archive)
    info = {"members": members, "videos": video + 1, "uncompressed_mb": round(total / 1e6, 1),
            "mask_png_kb": round(sum(map(len, pngs)) / pool / 1e3, 1)}
    (archive.parent / "archive.json").write_text(json.dumps(info))
    return info


def _pack(src: Path, archive: Path) -> None:
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


def _clear(*paths: Path) -> None:
    """Remove earlier output, then let the file system settle: deleting ~170k files slows the creates
    that follow for a while (ext4), so every run, tar's and prepare's alike, starts after the same."""
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)
    os.sync()
    time.sleep(SETTLE_S)


def run_tar(archive: Path, out: Path) -> float:
    out.mkdir(parents=True)
    start = time.perf_counter()
    subprocess.run(["tar", "-xzf", str(archive), "-C", str(out)], check=True)
    return time.perf_counter() - start


def run_prepare(archive: Path, *, gunzip: str) -> float:
    from longrvos_data.prepare import archive_spec, extract

    spec = archive_spec(archive)
    spec.marker.unlink(missing_ok=True)
    start = time.perf_counter()
    result = extract(spec, gunzip=gunzip)
    seconds = time.perf_counter() - start
    assert result.files > 0 and result.top is None
    return seconds


def bench_case(case: str, args: argparse.Namespace) -> dict:
    """Build (or reuse) the case's archive, then time tar and prepare on it, alternating."""
    name = "Annotations.tar.gz" if case == "masks" else "JPEGImages.tar.gz"
    archive = args.workdir / case / "valid" / name
    archive.parent.mkdir(parents=True, exist_ok=True)
    meta = archive.parent / "archive.json"
    if archive.exists() and meta.exists():
        info = json.loads(meta.read_text())
    elif case == "masks":
        info = build_masks(archive, target_mb=args.target_mb, pool=args.pool * 4)
    else:
        width, height = map(int, case.split("x"))
        info = build(archive, target_mb=args.target_mb, pool=args.pool, width=width, height=height)
    size_mb = archive.stat().st_size / 1e6
    if args.scratch is not None:  # e.g. /dev/shm: both tools write to memory, so the disk's noise is out
        copy = args.scratch / case / "valid" / name
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(archive, copy)
        archive = copy

    gunzips = {"prepare_python": "python"}
    if args.programs:
        gunzips["prepare_gzip"] = "gzip"
        if shutil.which("pigz"):
            gunzips["prepare_pigz"] = "pigz"
    runs: dict[str, list[float]] = {"tar": [], **{k: [] for k in gunzips}}
    outputs = (archive.parent.parent / "tar_out", archive.parent / name.split(".")[0])
    for _ in range(args.repeat):
        _clear(*outputs)
        runs["tar"].append(run_tar(archive, outputs[0]))
        for key, gunzip in gunzips.items():
            _clear(*outputs)
            runs[key].append(run_prepare(archive, gunzip=gunzip))
    _clear(*outputs)
    if args.scratch is not None:
        shutil.rmtree(args.scratch / case, ignore_errors=True)
    best = {k: min(v) for k, v in runs.items()}
    return {
        "case": case, "archive": f"{case}/valid/{name}", "archive_mb": round(size_mb, 1), **info,
        "default_gunzip": "python (second thread)", "cpus": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2), "repeat": args.repeat,
        "extracted_to": str(args.scratch) if args.scratch is not None else "workdir",
        **{f"{k}_s": round(v, 3) for k, v in best.items()},
        **{f"{k}_mb_s": round(size_mb / v, 1) for k, v in best.items()},
        **{f"ratio_{k}_to_tar": round(best[k] / best["tar"], 3) for k in gunzips},
        "all_runs_s": {k: [round(x, 3) for x in v] for k, v in runs.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--case", action="append", choices=CASES,
                        help="archive(s) to measure (repeatable; default: all)")
    parser.add_argument("--target-mb", type=float, default=1000.0, help="archive content size")
    parser.add_argument("--pool", type=int, default=48, help="distinct images (masks: 4x as many)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--programs", action="store_true", help="also prepare through gzip and pigz processes")
    parser.add_argument("--scratch", type=Path, help="copy each archive here and extract both there (e.g. /dev/shm: "
                        "this machine's disk made file creation vary 7x between runs of tar itself)")
    args = parser.parse_args()
    for case in args.case or CASES:
        print(json.dumps(bench_case(case, args), indent=2), flush=True)


if __name__ == "__main__":
    sys.exit(main())
