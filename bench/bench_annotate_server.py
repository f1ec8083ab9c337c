"""The annotation server on a 10,000-frame 720p video: memory while a person scrubs it, the latency
of a frame with its masks, and the classical engine's click-to-mask latency, all over real HTTP.

The project (built once, cached under ``--workdir``, default ``.bench/annotate_10k/``):
``--pool`` distinct 720p JPEGs (PIL quality 90: band-limited noise background, two textured
ellipses of ~6,000 pixels moving on a closed path with period ``--pool`` frames), hard-linked
as ``00000.jpg``... into one frame folder that `add_videos` adds; two tracks whose present
mask (the ellipse in that frame, `masks.encode`) is written on every frame through
`Store.write` (provenance ``imported``, batches of ``--batch`` cells). The pool is 49 frames
by default so that a stride-50 scrub visits them all. Each run serves a fresh copy of the
project (the prompts add a track and masks).

The server is the real command (``python -m longrvos_data.cli annotate serve ... --engine
classical``) in a subprocess; its RSS (psutil) is sampled every 20 ms by a thread. Phases:

- ``rss_mb.start``: once ``/api/project`` answers;
- ``rss_mb.opened``: after what the UI asks on opening the video (videos, the video, its
  lanes, a 20-thumbnail strip);
- ``rss_mb.scrubbed``: after every ``--stride``-th frame, each as GET frame then GET masks,
  sequential (``latency.frame_with_masks``: both requests, wall clock; ``latency.masks_only``);
- ``prompts``: a new track, ``--prompts`` positive clicks on an object's centroid, each on a
  different frame with the base read from ``/masks`` (``cold``: the first, which opens the
  engine session on the video; ``warm``: the rest), then one box prompt; mean IoU of the
  returned masks against the drawn ellipses;
- ``latency.api_project``: the smallest JSON answer, the per-request floor; and
  ``store_video_info_ms``, `Store.video_info` of this video timed in the bench's process;
- ``rss_mb.peak`` (sampled) and ``vm_hwm_mb`` (``/proc/PID/status``) over the whole run.

Prints one JSON object. Example:
    python bench/bench_annotate_server.py            # 10,000 frames
    python bench/bench_annotate_server.py --quick    # 1,000 frames
"""
from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import psutil
from PIL import Image

from longrvos_data import masks
from longrvos_data.annotation.project import add_videos
from longrvos_data.annotation.store import DB_NAME, Store, Write
from longrvos_data.schema import Track
from longrvos_data.synth import _band_noise

BENCH_DIR = Path(__file__).resolve().parent.parent / ".bench"
SPLIT, VIDEO_ID = "train", "long720"
BUILD_VERSION = 1
# (semi-axis x, semi-axis y, texture cells, colour mean, colour std, path centre x share, phase)
OBJECTS = ((56, 36, (6.0, 2.0), (196, 92, 58), (42, 30, 24), 0.3, 0.0),
           (48, 40, (12.0, 4.0), (58, 122, 192), (24, 36, 46), 0.7, 1.7))


# -- the project ---------------------------------------------------------------------------------
class Scene:
    """The pool frames and their masks: frame ``t`` of the video shows pool frame ``t % pool``."""

    def __init__(self, width: int, height: int, pool: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.width, self.height, self.pool = width, height, pool
        unit = min(width, height) / 240.0
        self.background = _band_noise(rng, height, width, (40 * unit, 10 * unit, 3 * unit), (105, 112, 98),
                                      (38, 36, 34))
        self.textures = [_band_noise(rng, 2 * ay + 1, 2 * ax + 1, cells, mean, std)
                         for ax, ay, cells, mean, std, _, _ in OBJECTS]

    def _ellipse(self, k: int, t: int) -> tuple[np.ndarray, tuple[slice, slice]]:
        """Object ``k``'s mask over its box at pool frame ``t``, and the box in the frame."""
        ax, ay, _, _, _, share, phase = OBJECTS[k]
        angle = 2 * np.pi * t / self.pool + phase
        cx = int(round(self.width * share + 0.12 * self.width * np.cos(angle)))
        cy = int(round(self.height * 0.5 + 0.25 * self.height * np.sin(2 * angle)))
        yy, xx = np.mgrid[-ay:ay + 1, -ax:ax + 1]
        inside = (xx / ax) ** 2 + (yy / ay) ** 2 <= 1.0
        return inside, (slice(cy - ay, cy + ay + 1), slice(cx - ax, cx + ax + 1))

    def render(self, t: int) -> tuple[np.ndarray, list[np.ndarray]]:
        """``(image (H, W, 3) uint8, [mask (H, W) bool per object])`` of pool frame ``t``."""
        img = self.background.copy()
        out = []
        for k, texture in enumerate(self.textures):
            inside, box = self._ellipse(k, t)
            img[box][inside] = texture[inside]
            m = np.zeros((self.height, self.width), dtype=bool)
            m[box] = inside
            out.append(m)
        return img, out

    def mask(self, k: int, frame: int) -> np.ndarray:
        inside, box = self._ellipse(k, frame % self.pool)
        m = np.zeros((self.height, self.width), dtype=bool)
        m[box] = inside
        return m


def build(workdir: Path, scene: Scene, *, frames: int, batch: int, seed: int) -> dict:
    """The cached project under ``workdir`` (``BUILD.json`` is written last: its presence, with the
    same parameters, means complete); built from scratch otherwise."""
    wanted = {"version": BUILD_VERSION, "frames": frames, "width": scene.width, "height": scene.height,
              "pool": scene.pool, "seed": seed, "tracks": len(OBJECTS)}
    marker = workdir / "BUILD.json"
    if marker.is_file() and (workdir / "project" / DB_NAME).is_file():
        info = json.loads(marker.read_text())
        if {k: info.get(k) for k in wanted} == wanted:
            return {**info, "reused": True}
    start = time.perf_counter()
    if workdir.exists():
        shutil.rmtree(workdir)
    pool_dir, frame_dir, project = workdir / "pool", workdir / "frames" / VIDEO_ID, workdir / "project"
    pool_dir.mkdir(parents=True)
    frame_dir.mkdir(parents=True)
    sizes, rles = [], [[] for _ in OBJECTS]
    for t in range(scene.pool):
        img, object_masks = scene.render(t)
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=90)
        (pool_dir / f"{t:03d}.jpg").write_bytes(buf.getvalue())
        sizes.append(len(buf.getvalue()))
        for k, m in enumerate(object_masks):
            rles[k].append(masks.encode(m))
    rendered = time.perf_counter()
    for i in range(frames):
        os.link(pool_dir / f"{i % scene.pool:03d}.jpg", frame_dir / f"{i:05d}.jpg")
    linked = time.perf_counter()
    Store.create(project / DB_NAME).close()
    add_videos(project, [frame_dir], fps=30.0, split=SPLIT, dataset="bench")
    added = time.perf_counter()
    track_ids = [str(k + 1) for k in range(len(OBJECTS))]
    with Store.open(project) as store:
        for tid in track_ids:
            store.add_track(SPLIT, VIDEO_ID, Track(tid, "ellipse"))
        per = max(1, batch // len(track_ids))
        for s in range(0, frames, per):
            writes = [Write(tid, i, base=0, rle=rles[k][i % scene.pool])
                      for i in range(s, min(s + per, frames)) for k, tid in enumerate(track_ids)]
            store.write(SPLIT, VIDEO_ID, writes, user="bench", provenance="imported", label="bench masks")
    done = time.perf_counter()
    info = {**wanted, "jpeg_bytes_mean": round(statistics.mean(sizes)), "jpeg_bytes_min": min(sizes),
            "jpeg_bytes_max": max(sizes), "mask_area_px": [int(masks.area([r[0]])[0]) for r in rles],
            "rle_counts_chars_mean": round(statistics.mean(len(r["counts"]) for rs in rles for r in rs), 1),
            "cells": frames * len(track_ids), "db_bytes": (project / DB_NAME).stat().st_size,
            "build_s": {"render_pool": round(rendered - start, 2), "hard_links": round(linked - rendered, 2),
                        "add_videos": round(added - linked, 2), "store_masks": round(done - added, 2),
                        "total": round(done - start, 2)}}
    marker.write_text(json.dumps(info))
    return {**info, "reused": False}


# -- measuring -------------------------------------------------------------------------------------
class RssSampler(threading.Thread):
    """The server's RSS every ``period`` seconds; ``peak`` is the largest seen."""

    def __init__(self, pid: int, period: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.proc, self.period = psutil.Process(pid), period
        self.peak = 0
        self.samples = 0
        self._halt = threading.Event()

    def now(self) -> int:
        rss = self.proc.memory_info().rss
        self.peak = max(self.peak, rss)
        return rss

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                self.now()
                self.samples += 1
            except psutil.Error:
                return
            self._halt.wait(self.period)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)


def vm_hwm(pid: int) -> int | None:
    """The kernel's peak resident size of ``pid`` in bytes (``VmHWM``), or None off Linux."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _mb(n: int | None) -> float | None:
    return None if n is None else round(n / 2**20, 1)


def _ms(values: list[float]) -> dict:
    ordered = sorted(values)
    return {"p50_ms": round(1000 * statistics.median(ordered), 2),
            "p95_ms": round(1000 * ordered[int(0.95 * (len(ordered) - 1))], 2),
            "max_ms": round(1000 * ordered[-1], 2), "n": len(ordered)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(project: Path, port: int, log_path: Path) -> tuple[subprocess.Popen, float]:
    """The real ``annotate serve`` command, and the seconds until ``/api/project`` answered."""
    cmd = [sys.executable, "-m", "longrvos_data.cli", "annotate", "serve", str(project), "--port", str(port),
           "--engine", "classical", "--user", "bench"]
    log = log_path.open("wb")
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    log.close()
    deadline = start + 120
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}: {log_path.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/project", timeout=2).status_code == 200:
                return proc, time.perf_counter() - start
        except httpx.HTTPError:
            pass
        if time.perf_counter() > deadline:
            stop_server(proc)
            raise RuntimeError(f"the server did not answer within 120 s: {log_path.read_text()[-2000:]}")
        time.sleep(0.05)


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=15)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def video_info_ms(project: Path, repeat: int = 5) -> float:
    """`Store.video_info` of the video in this process (what a route that reads it per request
    would pay; the server reads it to open the video and an engine session): median ms."""
    with Store.open(project) as store:
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            store.video_info(SPLIT, VIDEO_ID)
            times.append(time.perf_counter() - t0)
    return round(1000 * statistics.median(times), 1)


def open_video(api: httpx.Client, thumbs: int) -> dict:
    """What the UI asks when a video is opened; returns the video and the timings."""
    t0 = time.perf_counter()
    videos = api.get("/api/videos").raise_for_status().json()
    pk = videos[0]["pk"]
    t1 = time.perf_counter()
    video = api.get(f"/api/videos/{pk}").raise_for_status().json()
    t2 = time.perf_counter()
    lanes = api.get(f"/api/videos/{pk}/lanes").raise_for_status().json()
    t3 = time.perf_counter()
    n = video["num_frames"]
    thumb_bytes = [len(api.get(f"/api/videos/{pk}/thumbs/{k * n // thumbs}").raise_for_status().content)
                   for k in range(thumbs)]
    t4 = time.perf_counter()
    return {"pk": pk, "video": video, "lanes": lanes,
            "timing": {"videos_ms": round(1000 * (t1 - t0), 1), "video_ms": round(1000 * (t2 - t1), 1),
                       "lanes_ms": round(1000 * (t3 - t2), 1), "lanes_runs": sum(map(len, lanes["tracks"].values())),
                       "thumbs_strip_ms": round(1000 * (t4 - t3), 1), "thumbs": thumbs,
                       "thumb_bytes_mean": round(statistics.mean(thumb_bytes))}}


def scrub(api: httpx.Client, pk: int, n: int, stride: int) -> dict:
    both, only_masks, only_frame, frame_bytes, mask_bytes, cells = [], [], [], [], [], set()
    for i in range(0, n, stride):
        t0 = time.perf_counter()
        frame = api.get(f"/api/videos/{pk}/frames/{i}").raise_for_status()
        t1 = time.perf_counter()
        got = api.get(f"/api/videos/{pk}/masks/{i}").raise_for_status()
        t2 = time.perf_counter()
        body = got.json()
        if any(c["state"] != "present" for c in body["cells"]):
            raise RuntimeError(f"frame {i}: a cell is not present: {body['cells']}")
        cells.add(len(body["cells"]))
        both.append(t2 - t0)
        only_frame.append(t1 - t0)
        only_masks.append(t2 - t1)
        frame_bytes.append(len(frame.content))
        mask_bytes.append(len(got.content))
    return {"frames_fetched": len(both), "stride": stride, "masks_per_frame": sorted(cells),
            "frame_with_masks": _ms(both), "masks_only": _ms(only_masks), "frame_only": _ms(only_frame),
            "frame_bytes_mean": round(statistics.mean(frame_bytes)),
            "masks_json_bytes_mean": round(statistics.mean(mask_bytes))}


def prompts(api: httpx.Client, pk: int, n: int, count: int, shape: tuple[int, int]) -> dict:
    """A new track, ``count`` clicks (each on its own frame) and one box, through ``/prompt``."""
    track = api.post(f"/api/videos/{pk}/tracks", json={"category": "clicked"}).raise_for_status().json()["track_id"]
    frames = [int((k + 0.5) * n / count) for k in range(count)]
    times, ious = [], []
    for k, f in enumerate(frames):
        body = api.get(f"/api/videos/{pk}/masks/{f}").raise_for_status().json()
        cells = {c["track_id"]: c for c in body["cells"]}
        target = masks.decode(cells[str(1 + k % len(OBJECTS))]["rle"])
        ys, xs = np.nonzero(target)
        t0 = time.perf_counter()
        got = api.post(f"/api/videos/{pk}/prompt", json={
            "frame": f, "track_id": track, "base": cells[track]["version"],
            "points": [[float(xs.mean()), float(ys.mean())]], "labels": [1]}).raise_for_status().json()
        times.append(time.perf_counter() - t0)
        cell = got["cell"]
        ious.append(iou(masks.decode(cell["rle"]), target) if cell["state"] == "present" else 0.0)
    f = frames[0] + max(1, n // (2 * count)) // 2          # a frame no click was on
    body = api.get(f"/api/videos/{pk}/masks/{f}").raise_for_status().json()
    cells = {c["track_id"]: c for c in body["cells"]}
    target = masks.decode(cells["1"]["rle"])
    ys, xs = np.nonzero(target)
    box = [float(xs.min() - 4), float(ys.min() - 4), float(xs.max() + 4), float(ys.max() + 4)]
    t0 = time.perf_counter()
    got = api.post(f"/api/videos/{pk}/prompt", json={"frame": f, "track_id": track, "base": cells[track]["version"],
                                                     "box": box}).raise_for_status().json()
    box_s = time.perf_counter() - t0
    box_iou = iou(masks.decode(got["cell"]["rle"]), target) if got["cell"]["state"] == "present" else 0.0
    return {"track_id": track, "click_cold_ms": round(1000 * times[0], 1), "click_cold_iou": round(ious[0], 3),
            "click_warm": {**_ms(times[1:]), "mean_iou": round(statistics.mean(ious[1:]), 3)},
            "box_ms": round(1000 * box_s, 1), "box_iou": round(box_iou, 3), "frame_size": list(shape)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=10_000, help="frames of the video (default 10000)")
    parser.add_argument("--quick", action="store_true", help="a 1,000-frame smoke run (overrides --frames)")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--pool", type=int, default=49, help="distinct JPEGs hard-linked into the video")
    parser.add_argument("--stride", type=int, default=50, help="scrub every STRIDE-th frame")
    parser.add_argument("--thumbs", type=int, default=20, help="thumbnails in the timeline strip")
    parser.add_argument("--prompts", type=int, default=20, help="clicks, each on its own frame")
    parser.add_argument("--batch", type=int, default=1000, help="cells per Store.write while building")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, help="cache (default .bench/annotate_<frames>, e.g. annotate_10k)")
    args = parser.parse_args(argv)
    frames = 1000 if args.quick else args.frames
    if frames < max(args.prompts * 2, args.thumbs, args.stride):
        parser.error(f"--frames {frames} is too few for {args.prompts} prompts, {args.thumbs} thumbnails and "
                     f"stride {args.stride}")
    workdir = args.workdir or BENCH_DIR / (f"annotate_{frames // 1000}k" if frames % 1000 == 0
                                           else f"annotate_{frames}")

    wall = time.perf_counter()
    scene = Scene(args.width, args.height, args.pool, args.seed)
    built = build(workdir, scene, frames=frames, batch=args.batch, seed=args.seed)
    run = workdir / "run"
    if run.exists():
        shutil.rmtree(run)
    shutil.copytree(workdir / "project", run)
    report: dict = {"bench": "annotate_server", "frames": frames, "resolution": f"{args.width}x{args.height}",
                    "masks_per_frame": len(OBJECTS), "mask_cells": built["cells"],
                    "jpeg_bytes": {k: built[f"jpeg_bytes_{k}"] for k in ("mean", "min", "max")},
                    "distinct_jpegs": args.pool, "mask_area_px": built["mask_area_px"],
                    "db_mb": _mb(built["db_bytes"]),
                    "build": {"reused": built["reused"], **built["build_s"]}}

    proc, ready_s = start_server(run, free_port(), workdir / "server.log")
    port = int(proc.args[proc.args.index("--port") + 1])
    sampler = RssSampler(proc.pid)
    sampler.start()
    try:
        rss = {"start": sampler.now()}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as api:
            small = []
            for _ in range(20):
                t0 = time.perf_counter()
                api.get("/api/project").raise_for_status()
                small.append(time.perf_counter() - t0)
            opened = open_video(api, args.thumbs)
            rss["opened"] = sampler.now()
            pk, shape = opened["pk"], (opened["video"]["height"], opened["video"]["width"])
            if opened["video"]["num_frames"] != frames:
                raise RuntimeError(f"the server has {opened['video']['num_frames']} frames, expected {frames}")
            scrubbed = scrub(api, pk, frames, args.stride)
            rss["scrubbed"] = sampler.now()
            peak_scrub = sampler.peak
            prompted = prompts(api, pk, frames, args.prompts, shape)
            rss["prompted"] = sampler.now()
        hwm = vm_hwm(proc.pid)
    finally:
        sampler.stop()
        stop_server(proc)
    growth = rss["scrubbed"] - rss["opened"]
    report.update({
        "server_ready_s": round(ready_s, 2),
        "open_video": opened["timing"],
        "latency": {**{k: scrubbed[k] for k in ("frame_with_masks", "masks_only", "frame_only")},
                    "api_project": _ms(small)},
        "store_video_info_ms": video_info_ms(run),
        "scrub": {k: scrubbed[k] for k in ("frames_fetched", "stride", "masks_per_frame", "frame_bytes_mean",
                                           "masks_json_bytes_mean")},
        "prompts": prompted,
        "rss_mb": {**{k: _mb(v) for k, v in rss.items()}, "peak_through_scrub": _mb(peak_scrub),
                   "peak": _mb(sampler.peak), "samples": sampler.samples},
        "vm_hwm_mb": _mb(hwm),
        "rss_growth_open_to_scrub": {"mb": round(growth / 2**20, 2), "pct": round(100 * growth / rss["opened"], 2)},
    })
    report["wall_s"] = round(time.perf_counter() - wall, 1)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
