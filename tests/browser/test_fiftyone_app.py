"""The FiftyOne App in a real browser (Debian Chromium driven by Playwright) on a converted fixture.

The test starts its own MongoDB (FiftyOne's mongod on a temporary folder), the App server
(``fo.launch_app``) and Chromium, and checks at the end that every one of them is gone.
"""
from __future__ import annotations

import contextlib
import io
import os
import socket
import time

import numpy as np
import pytest
from PIL import Image

pytestmark = [pytest.mark.browser, pytest.mark.slow]

import psutil
from playwright import sync_api

from longrvos_data.converters import fiftyone as lfo
from longrvos_data.synth import generate

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
OVERLAY = (255, 0, 255)  # the ground truth's colour in this test (no synthetic object is magenta)
TIMEOUT_MS = 90_000
ERROR_SELECTORS = ("[data-cy=error-boundary]", "[data-cy=looker-error-info]", "[class*=lookerErrorPage]",
                   "text=Something went wrong")


def overlay_pixels(rgb: np.ndarray) -> int:
    """Pixels tinted by a magenta mask drawn over any frame content (the App blends at ~0.7 opacity)."""
    r, g, b = (rgb[..., k].astype(int) for k in range(3))
    return int(np.count_nonzero((r >= 170) & (b >= 170) & (g <= 90)))


def require_chromium() -> None:
    if os.path.exists(CHROMIUM):
        return
    pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium chromium-driver (`make test` does it as root)")


def our_processes() -> list[str]:
    """Server, database and browser processes below this one."""
    found = []
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            cmd = " ".join(child.cmdline())
            if child.name() == "mongod" or "fiftyone" in cmd or "chrom" in cmd or "playwright" in cmd:
                found.append(f"{child.pid} {cmd[:120]}")
    return found


def port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


def dismiss_popups(page) -> None:
    page.keyboard.press("Escape")
    dismiss = page.get_by_text("Dismiss", exact=True)
    if dismiss.count():
        dismiss.first.click()


def assert_no_error_overlay(page) -> None:
    for selector in ERROR_SELECTORS:
        assert page.locator(selector).count() == 0, f"the App shows an error ({selector})"


def test_app_shows_masks_and_plays_videos(tmp_path, monkeypatch):
    require_chromium()
    monkeypatch.setenv("FIFTYONE_DO_NOT_TRACK", "true")  # no analytics calls from an offline App
    before = our_processes()
    src = generate("long_rvos", tmp_path / "src", num_videos=2, num_frames=6, sizes=((120, 160),),
                   splits=("valid",))
    port = lfo._free_port()
    page_errors: list[str] = []
    with contextlib.ExitStack() as stack:
        stack.enter_context(lfo.private_database(tmp_path / "db"))
        import fiftyone as fo
        name = "browser-fixture"
        lfo.to_fiftyone(src, name=name, masks_dir=tmp_path / "masks", progress=False)
        dataset = fo.load_dataset(name)
        dataset.app_config.color_scheme = fo.ColorScheme(
            color_by="field", fields=[{"path": "ground_truth", "fieldColor": "#%02x%02x%02x" % OVERLAY}])
        dataset.save()
        first = dataset.first()
        assert first["ground_truth"].detections, "the first frame must show a mask"
        frame = np.asarray(Image.open(first.filepath).convert("RGB"))
        assert overlay_pixels(frame) == 0, "the frame itself must not contain the overlay colour"
        n_frames = len(dataset)
        videos = len(dataset.distinct("video_key"))

        session = lfo.launch(dataset, port=port, address="127.0.0.1")
        stack.callback(session.close)
        playwright = stack.enter_context(sync_api.sync_playwright())
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        stack.callback(browser.close)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("pageerror", lambda err: page_errors.append(str(err)))

        # the grid: one tile per frame, each canvas drawn; no error overlay anywhere
        page.goto(f"http://127.0.0.1:{port}/datasets/{name}", wait_until="load")
        tiles = page.locator("[data-cy=looker]")
        page.wait_for_function(
            "n => document.querySelectorAll('[data-cy=looker] canvas[canvas-loaded=true]').length >= n",
            arg=min(n_frames, 8), timeout=TIMEOUT_MS)
        dismiss_popups(page)
        assert_no_error_overlay(page)
        time.sleep(1.0)  # masks are decoded in a worker after the canvas first paints
        deadline = time.monotonic() + 30
        while True:
            shot = np.asarray(Image.open(io.BytesIO(tiles.first.screenshot())).convert("RGB"))
            if overlay_pixels(shot) >= 50 or time.monotonic() > deadline:
                break
            time.sleep(1.0)
        assert overlay_pixels(shot) >= 50, "no mask overlay in the first sample's thumbnail"

        # the grouped view: one tile per video; a group opens as a video with all its frames
        page.goto(f"http://127.0.0.1:{port}/datasets/{name}?view=by-video", wait_until="load")
        page.wait_for_function(
            "n => document.querySelectorAll('[data-cy=looker] canvas[canvas-loaded=true]').length == n",
            arg=videos, timeout=TIMEOUT_MS)
        dismiss_popups(page)
        assert_no_error_overlay(page)
        tiles.first.click()
        page.wait_for_selector("[data-cy=dynamic-group-pagination-item-btn]", timeout=TIMEOUT_MS)
        page.locator("[data-cy=action-display-options]").last.click()
        page.get_by_text("video", exact=True).click()
        page.wait_for_selector("[class*=imaVidLookerControls]", timeout=TIMEOUT_MS)
        page.get_by_text(f"1 / {n_frames // videos}", exact=True).wait_for(timeout=TIMEOUT_MS)
        assert_no_error_overlay(page)
        assert page_errors == []
    # every server, database and browser process this test started is gone
    deadline = time.monotonic() + 30
    while our_processes() != before and time.monotonic() < deadline:
        time.sleep(0.5)
    assert our_processes() == before
    assert not port_open(port)
