"""The annotation store on this machine's disk, with ``synchronous=FULL``: write latency, a
300-frame propagation, and the database size per 1,000 masks.

Masks are real-shaped 720p objects: a blob whose outline wobbles at several angular
frequencies (the concavities of a person or an animal), plus a smaller second part,
moving and deforming from frame to frame. Phases (one JSON object is printed):

- ``edit``: `Store.write` of one 720p mask (one cell, one operation, one commit), 200
  times: p50 / p95 / max in ms (target p95 <= 50 ms). The peer, ``fsync_floor``: the same
  RLE bytes written to a file and fsynced, the least a durable write costs on this disk;
- ``propagation``: one `Store.write` of 300 frames of one track, one operation, 5 times:
  seconds (target <= 1 s);
- ``size``: 1,000 masks imported as `init_project` does (4 videos x 250 frames, one track),
  the database file after its WAL is checkpointed (masks, cells and the import's history;
  counts are stored deflated), against the same RLEs as plain JSON (``{video: [RLE, ...]}``),
  bytes per mask and the ratio.

RLE encoding is not timed (the client sends RLE). Example:
    python bench/bench_store.py --workdir /work/main/.bench/store
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from longrvos_data import masks
from longrvos_data.annotation.store import Store, Write
from longrvos_data.schema import Frame, Track, Video

H, W = 720, 1280


def blob(t: int, seed: int = 0) -> np.ndarray:
    """A real-shaped object mask at frame ``t``: ``(720, 1280) bool``."""
    rng = np.random.default_rng(seed)
    phases = rng.uniform(0, 2 * np.pi, 4)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    cy, cx = 360 + 120 * np.sin(t / 40 + seed), 640 + 300 * np.sin(t / 60 + 2 * seed)
    theta = np.arctan2(yy - cy, xx - cx)
    r0 = 150 + 30 * np.sin(t / 25)
    wobble = (1 + 0.18 * np.sin(3 * theta + phases[0] + t / 30) + 0.08 * np.sin(7 * theta + phases[1])
              + 0.05 * np.sin(13 * theta + phases[2] + t / 10) + 0.03 * np.sin(29 * theta + phases[3]))
    body = np.hypot(yy - cy, (xx - cx) * 0.7) < r0 * wobble
    arm = np.hypot(yy - cy + 160, xx - cx - 90 * np.cos(t / 15)) < 45 * (1 + 0.2 * np.sin(5 * theta))
    return body | arm


def _video(vid: str, frames: int, tracks: list[str]) -> Video:
    return Video(dataset="bench", split="train", video_id=vid, height=H, width=W, expressions=(),
                 tracks=[Track(t) for t in tracks],
                 frames=[Frame(f"{i:05d}", Path(f"{i:05d}.jpg")) for i in range(frames)])


def _new_store(folder: Path, videos: list[Video]) -> Store:
    store = Store.create(folder / "project.sqlite")
    with store.transaction():
        src = store.add_source(str(folder))
        for v in videos:
            paths = [f"{v.video_id}/{f.name}.jpg" for f in v.frames]
            store.add_video(v, source=src, frame_paths=paths, annotated=False)
    return store


def _ms(values: list[float]) -> dict:
    ordered = sorted(values)
    return {"p50_ms": round(1000 * statistics.median(ordered), 2),
            "p95_ms": round(1000 * ordered[int(0.95 * (len(ordered) - 1))], 2),
            "max_ms": round(1000 * ordered[-1], 2), "n": len(ordered)}


def bench_edit(folder: Path, rles: list[dict], n: int = 200) -> dict:
    store = _new_store(folder, [_video("v", 300, ["a"])])
    versions = [0] * 300
    times = []
    for k in range(n):
        f = k % 300
        start = time.perf_counter()
        applied = store.write("train", "v", [Write("a", f, base=versions[f], rle=rles[k % len(rles)])], user="bench")
        times.append(time.perf_counter() - start)
        versions[f] = applied.versions[("a", f)]
    sync = store.con.execute("PRAGMA synchronous").fetchone()[0]
    store.close()
    floor = []
    for k in range(n):
        data = json.dumps(rles[k % len(rles)]).encode()
        start = time.perf_counter()
        fd = os.open(folder / "floor.json", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, data)
        os.fsync(fd)
        os.close(fd)
        floor.append(time.perf_counter() - start)
    return {"edit": {**_ms(times), "target_p95_ms": 50, "synchronous": {2: "FULL"}.get(sync, sync)},
            "fsync_floor": _ms(floor)}


def bench_propagation(folder: Path, rles: list[dict], runs: int = 5) -> dict:
    store = _new_store(folder, [_video("v", 300, [f"t{r}" for r in range(runs)])])
    times = []
    for r in range(runs):
        writes = [Write(f"t{r}", i, base=0, rle=rles[i], provenance="propagated") for i in range(300)]
        start = time.perf_counter()
        store.write("train", "v", writes, user="bench", label="propagate")
        times.append(time.perf_counter() - start)
    store.close()
    return {"frames": 300, "median_s": round(statistics.median(times), 3), "max_s": round(max(times), 3),
            "runs": runs, "target_s": 1.0}


def bench_size(folder: Path, rles: list[dict]) -> dict:
    videos = [_video(f"v{k}", 250, ["a"]) for k in range(4)]
    store = _new_store(folder, videos)
    with store.transaction():
        op = store.begin_import(user="bench", label="import")
    plain = {}
    for k, v in enumerate(videos):
        seq = rles[250 * k:250 * (k + 1)]
        plain[v.video_id] = seq
        with store.transaction():
            store.import_cells(op, "train", v.video_id, {("a", i): r for i, r in enumerate(seq)}, provenance="imported")
    store.close()                                       # checkpoints the WAL into the file
    db = (folder / "project.sqlite").stat().st_size
    wal = folder / "project.sqlite-wal"
    as_json = len(json.dumps(plain).encode())
    return {"masks": 1000, "db_bytes": db, "wal_left_bytes": wal.stat().st_size if wal.exists() else 0,
            "json_bytes": as_json, "db_bytes_per_mask": round(db / 1000), "json_bytes_per_mask": round(as_json / 1000),
            "db_over_json": round(db / as_json, 3),
            "mean_counts_chars": round(statistics.mean(len(r["counts"]) for r in rles[:1000]))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("/work/main/.bench/store"),
                        help="a folder on the disk to measure (emptied first)")
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    rles, encode_s = [], 0.0
    for t in range(1000):
        mask = blob(t, seed=t // 250)
        start = time.perf_counter()
        rles.append(masks.encode(mask))
        encode_s += time.perf_counter() - start
    out = {"height": H, "width": W, "encode_ms_per_mask": round(1000 * encode_s / len(rles), 2)}
    for name, fn in (("latency", bench_edit), ("propagation", bench_propagation), ("size", bench_size)):
        folder = Path(tempfile.mkdtemp(prefix=f"{name}.", dir=args.workdir))
        try:
            result = fn(folder, rles)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        out.update(result if name == "latency" else {name: result})
    json.dump(out, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
