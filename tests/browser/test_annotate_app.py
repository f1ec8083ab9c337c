"""The annotation web app in a real browser (Debian Chromium driven by Playwright) against the real server.

The test builds a textured LVOS fixture, imports it into a project, starts ``longrvos annotate
serve`` as a subprocess and annotates a NEW object through the UI only: a box, a forward
propagation, an eraser correction and its undo, a second object, an expression naming both, and a
MeViS export read back with the loader. It waits on ``window.annotator`` (the UI's read-only state),
never on sleeps, and checks that no request leaves 127.0.0.1 and that the console stays clean.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = [pytest.mark.browser, pytest.mark.slow]

from playwright import sync_api

from longrvos_data import masks
from longrvos_data.annotation import init_project
from longrvos_data.loaders import load
from longrvos_data.synth import textured_lvos

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 60_000
W, H, N = 320, 240, 24
MAGENTA = "#ff00ff"  # no palette colour and no fixture texture is magenta
TEXT = "the two moving blobs"


def overlay_pixels(rgb: np.ndarray) -> int:
    """Pixels tinted by a magenta mask drawn over any frame content (blended at opacity 0.8)."""
    r, g, b = (rgb[..., k].astype(int) for k in range(3))
    return int(np.count_nonzero((r >= 170) & (b >= 170) & (g <= 90)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port: int, path: str):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as res:
        return json.load(res)


def cell(port: int, pk: int, frame: int, track: str) -> dict:
    cells = {c["track_id"]: c for c in get(port, f"/api/videos/{pk}/masks/{frame}")["cells"]}
    return cells[track]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.count_nonzero(a & b) / max(1, np.count_nonzero(a | b)))


def bbox(mask: np.ndarray, margin: int = 4) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return (max(0, xs.min() - margin), max(0, ys.min() - margin), min(W, xs.max() + 1 + margin),
            min(H, ys.max() + 1 + margin))


@contextlib.contextmanager
def running_server(proj: Path, exports: Path, log: Path):
    """``longrvos annotate serve`` on a free port; yields the port and stops the server on the way out."""
    port = free_port()
    cmd = [sys.executable, "-m", "longrvos_data.cli", "annotate", "serve", str(proj), "--engine", "classical",
           "--port", str(port), "--user", "tester", "--export-dir", str(exports)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"the server exited: {log.read_text()}"
            with contextlib.suppress(OSError):
                get(port, "/api/project")
                break
            assert time.monotonic() < deadline, f"the server did not answer within 60 s: {log.read_text()}"
            time.sleep(0.2)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


@contextlib.contextmanager
def app_page(proj: Path, exports: Path, log: Path):
    """The app on ``proj`` in Chromium: yields ``(page, UI, port)``. On the way out it checks a
    clean run: no error on the status line, nothing in the console, no request off the server."""
    requests: list[str] = []
    console_errors: list[str] = []
    with running_server(proj, exports, log) as port, sync_api.sync_playwright() as pw:
        origin = f"http://127.0.0.1:{port}/"
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("request", lambda r: requests.append(r.url))
            page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda err: console_errors.append(str(err)))
            ui = UI(page)
            page.goto(origin, wait_until="load")
            yield page, ui, port
            assert ui.state("lastError") is None
            assert "error" not in (page.get_attribute("[data-testid=status-line]", "class") or "")
        finally:
            browser.close()
    assert console_errors == []
    assert requests, "the page made no request"
    strays = [u for u in requests if not u.startswith(origin)]
    assert strays == [], f"requests left 127.0.0.1:{port}: {strays[:5]}"


class UI:
    """The page plus the waits the test needs, all on ``window.annotator``."""

    def __init__(self, page) -> None:
        self.page = page

    def state(self, name: str):
        return self.page.evaluate(f"window.annotator.{name}")

    def act(self, do) -> None:
        """Run ``do()`` (a click, a drag, a key) and wait until the UI has finished the write it starts."""
        before = self.page.evaluate("[window.annotator.writes, window.annotator.errors]")
        do()
        self.page.wait_for_function(
            "([w, e]) => (window.annotator.writes > w || window.annotator.errors > e) && !window.annotator.busy",
            arg=before, timeout=TIMEOUT_MS)
        assert self.state("lastError") is None, self.state("lastError")

    def wait_frame(self, frame: int) -> None:
        self.page.wait_for_function("f => window.annotator.frame === f && window.annotator.ready", arg=frame,
                                    timeout=TIMEOUT_MS)

    def goto(self, frame: int) -> None:
        self.page.fill("[data-testid=frame-index]", str(frame))
        self.page.press("[data-testid=frame-index]", "Enter")
        self.wait_frame(frame)

    def canvas_point(self, x: float, y: float) -> tuple[float, float]:
        """Page coordinates of video pixel (x, y): at zoom 1 the frame fills the canvas."""
        box = self.page.locator("[data-testid=frame-canvas]").bounding_box()
        assert abs(box["width"] / W - box["height"] / H) < 0.02, box
        return box["x"] + x * box["width"] / W, box["y"] + y * box["height"] / H

    def drag(self, points) -> None:
        mouse = self.page.mouse
        mouse.move(*self.canvas_point(*points[0]))
        mouse.down()
        for p in points[1:]:
            mouse.move(*self.canvas_point(*p), steps=6)
        mouse.up()

    def add_object(self) -> str:
        before = self.state("tracks")
        self.act(lambda: self.page.click("[data-testid=add-object]"))
        track = self.state("selectedTrack")
        assert track not in before and self.state("tracks") == [*before, track]
        return track

    def box(self, mask: np.ndarray) -> None:
        self.page.click("[data-testid=tool-box]")
        x0, y0, x1, y1 = bbox(mask)
        self.act(lambda: self.drag([(x0, y0), (x1, y1)]))


def test_annotate_app_end_to_end(tmp_path):
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium chromium-driver (`make test` does it as root)")
    src = textured_lvos(tmp_path / "src", split="valid", num_videos=1, width=W, height=H, num_frames=N)
    proj = tmp_path / "proj"
    init_project(proj, src)
    video = next(iter(load(src, format="lvos")["valid"]))
    exports = tmp_path / "exports"
    with app_page(proj, exports, tmp_path / "server.log") as (page, ui, port):

        # 4. pick the video, add an object, box it where ground-truth object 1 is on frame 0
        page.locator("[data-testid=video-item]").first.click()
        ui.wait_frame(0)
        pk = ui.state("pk")
        assert ui.state("zoom") == 1
        new1 = ui.add_object()
        gt0 = video.frame_masks(0)["1"]
        ui.box(gt0)
        first = cell(port, pk, 0, new1)
        assert first["state"] == "present" and first["provenance"] == "human"
        assert iou(masks.decode(first["rle"]), gt0) >= 0.7

        # 5. propagate forward: every later frame gets a propagated cell for the new object
        ui.act(lambda: page.click("[data-testid=propagate-forward]"))
        assert "frame" in page.text_content("[data-testid=job-progress]")
        for f in range(1, N):
            c = cell(port, pk, f, new1)
            assert c["state"] != "none" and c["provenance"] == "propagated", (f, c)
        lanes = get(port, f"/api/videos/{pk}/lanes")["tracks"][new1]
        assert lanes[0][:3] == [0, 1, "human"] and lanes[-1][1] == N

        # 6. correct frame 12 with an eraser stroke through the mask, then undo it with Ctrl+Z
        ui.goto(12)
        before = cell(port, pk, 12, new1)
        assert before["state"] == "present"
        m12 = masks.decode(before["rle"])
        ys, xs = np.nonzero(m12)
        cy = float(np.median(ys))
        page.click("[data-testid=tool-eraser]")
        page.fill("[data-testid=brush-radius]", "5")
        ui.act(lambda: ui.drag([(xs.min() - 6, cy), (xs.max() + 6, cy)]))
        after = cell(port, pk, 12, new1)
        assert after["version"] > before["version"] and after["provenance"] == "human"
        assert after["rle"] != before["rle"]
        assert np.count_nonzero(masks.decode(after["rle"])) < np.count_nonzero(m12)
        ui.act(lambda: page.keyboard.press("Control+z"))
        undone = cell(port, pk, 12, new1)
        assert undone["rle"] == before["rle"] and undone["provenance"] == "propagated"

        # 7. a second new object on ground-truth object 2; an expression naming both
        new2 = ui.add_object()
        ui.box(video.frame_masks(12)["2"])
        second = cell(port, pk, 12, new2)
        assert second["state"] == "present"
        assert iou(masks.decode(second["rle"]), video.frame_masks(12)["2"]) >= 0.7
        tool, tracks = ui.state("tool"), ui.state("tracks")
        page.fill("[data-testid=expression-text]", "")
        page.locator("[data-testid=expression-text]").press_sequentially(TEXT)  # key by key: shortcuts stay quiet
        assert ui.state("tool") == tool and ui.state("tracks") == tracks
        for track in (new1, new2):
            page.check(f"[data-testid=expr-new-track][data-track='{track}']")
        ui.act(lambda: page.click("[data-testid=expression-add]"))
        exps = [e for e in get(port, f"/api/videos/{pk}")["expressions"] if e["text"] == TEXT]
        assert len(exps) == 1 and sorted(exps[0]["track_ids"]) == sorted([new1, new2])

        # 8. export to MeViS; the loader reads the expression and the new object's current masks back
        page.select_option("[data-testid=export-format]", "mevis")
        page.fill("[data-testid=export-name]", "ui-export")
        ui.act(lambda: page.click("[data-testid=export-run]"))
        path = Path(page.text_content("[data-testid=export-result]").strip())
        assert path == exports / "ui-export" and path.is_dir()
        exported = [v for split in load(path, format="mevis") for v in split if v.video_id == video.video_id]
        assert len(exported) == 1
        out = exported[0]
        named = [e for e in out.expressions if e.text == TEXT]
        assert len(named) == 1 and sorted(named[0].track_ids) == sorted([new1, new2])
        for f in (0, 5, 12, 23):
            c = cell(port, pk, f, new1)
            got = out.frame_masks(f).get(new1)
            if c["state"] == "present":
                assert got is not None and np.array_equal(got, masks.decode(c["rle"])), f
            else:
                assert got is None or not got.any(), f

        # 9. the selected object's mask shows over the frame in its colour
        assert ui.state("selectedTrack") == new2
        frame_rgb = np.asarray(Image.open(video.frames[12].path).convert("RGB"))
        assert overlay_pixels(frame_rgb) == 0, "the frame itself must not contain the overlay colour"
        page.fill(f"[data-testid=object-color][data-track='{new2}']", MAGENTA)
        page.fill("[data-testid=mask-opacity]", "0.8")
        page.wait_for_function("([t, c]) => window.annotator.colorOf(t) === c", arg=[new2, MAGENTA])
        page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
        shot_path = tmp_path / "annotate.png"
        page.screenshot(path=str(shot_path))
        box = page.locator("[data-testid=frame-canvas]").bounding_box()
        shot = np.asarray(Image.open(shot_path).convert("RGB"))
        crop = shot[int(box["y"]):int(box["y"] + box["height"]), int(box["x"]):int(box["x"] + box["width"])]
        area = np.count_nonzero(masks.decode(second["rle"])) * (box["width"] / W) ** 2
        assert overlay_pixels(crop) >= 0.5 * area, (overlay_pixels(crop), area)

        # 10. a clean run: no error on the status line, nothing in the console
