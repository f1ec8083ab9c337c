"""The review queue of the annotation app in a real browser (Debian Chromium via Playwright).

A textured fixture project gets one defect through the store (object 1 absent on frame 10, between
frames where it is visible), the real audit records its ``empty_in_span`` flag, and the UI then
lists it in the review queue, opens it, dismisses it, walks the queue with ``Q`` and dismisses with
``D``. A re-run of the audit must not bring the dismissed flag back, and three thousand flags must
not put three thousand rows in the DOM. Waits are on ``window.annotator``, never on sleeps.
"""
from __future__ import annotations

import os

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

from longrvos_data.annotation import Store, Write, init_project
from longrvos_data.annotation.audit import audit
from longrvos_data.synth import textured_lvos

# the Chromium set-up, the server subprocess and the page helpers of the app's own browser test
from test_annotate_app import CHROMIUM, TIMEOUT_MS, app_page, get

N = 24
BULK = 3000


def rows(page):
    return page.locator("[data-testid=queue-row]")


def wait_queue(page, count: int) -> None:
    """Until the queue has answered and shows ``count`` rows (0: the empty note)."""
    page.wait_for_function(
        "n => window.annotator.queueReady && document.querySelectorAll('[data-testid=queue-row]').length === n",
        arg=count, timeout=TIMEOUT_MS)


def test_review_queue(tmp_path):
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium chromium-driver (`make test` does it as root)")
    src = textured_lvos(tmp_path / "src", split="valid", num_videos=1, num_frames=N)
    proj = tmp_path / "proj"
    init_project(proj, src)
    with Store.open(proj) as store:
        split = store.splits()[0]
        vid = store.video_ids(split)[0]
        before = store.cell(split, vid, "1", 10)
        assert before.state == "present"
        store.write(split, vid, [Write("1", 10, base=before.version, state="absent")], user="t")
    report = audit(proj)
    assert [(f.check, f.track_ids, f.frame_start, f.frame_end) for f in report.flags] == \
        [("empty_in_span", ("1",), 10, 10)], report.flags  # the fixture is clean but for the defect
    gap = report.flags[0]
    with app_page(proj, tmp_path / "exports", tmp_path / "server.log") as (page, ui, port):

        # 1. the queue lists the audit's flag: severity, check, video, frames, object, message
        page.click("[data-testid=view-queue]")
        assert page.locator("[data-testid=review-queue]").is_visible()
        wait_queue(page, 1)
        assert ui.state("queueTotal") == 1 and ui.state("queueFlags") == [gap.flag_id]
        row = page.locator(f"[data-testid=queue-row][data-flag='{gap.flag_id}']")
        text = row.text_content()
        for part in ("high", "empty_in_span", "10..10", vid, "object 1", gap.message):
            assert part in text, (part, text)
        assert row.locator(".sev.high").count() == 1
        checks = page.eval_on_selector_all("[data-testid=queue-filter-check] option", "os => os.map(o => o.value)")
        assert "empty_in_span" in checks
        page.select_option("[data-testid=queue-filter-severity]", "low")
        wait_queue(page, 0)
        page.select_option("[data-testid=queue-filter-severity]", "high")
        wait_queue(page, 1)
        page.select_option("[data-testid=queue-filter-severity]", "")
        page.select_option("[data-testid=queue-filter-check]", "empty_in_span")
        wait_queue(page, 1)
        page.select_option("[data-testid=queue-filter-check]", "")
        wait_queue(page, 1)

        # 2. clicking it opens the video at its frame with its object selected
        row.click(position={"x": 12, "y": 30})
        ui.wait_frame(10)
        assert ui.state("frame") == 10 and ui.state("selectedTrack") == "1"
        assert ui.state("queueCurrent") == gap.flag_id
        page.wait_for_function("id => window.annotator.flagsHere.includes(id)", arg=gap.flag_id, timeout=TIMEOUT_MS)

        # 3. dismiss it from the queue: the queue, the lanes and "flags here" drop it
        ui.act(lambda: row.locator("[data-testid=queue-dismiss]").click())
        wait_queue(page, 0)
        assert ui.state("queueFlags") == [] and ui.state("queueTotal") == 0
        assert gap.flag_id not in ui.state("flagsHere")
        assert all(f["flag_id"] != gap.flag_id for f in get(port, f"/api/videos/{ui.state('pk')}/lanes")["flags"])
        assert "none on this frame" in page.inner_text("[data-testid=flag-list]")
        assert get(port, "/api/flags")["total"] == 0
        assert page.locator("[data-testid=review-queue] .queue-empty").count() == 1

        # 4. an annotator's flag on frame 3 (F); Q goes to it (the next after the dismissed one); D dismisses it
        ui.goto(3)
        ui.act(lambda: page.keyboard.press("f"))
        wait_queue(page, 1)
        ui.goto(0)
        page.keyboard.press("q")
        ui.wait_frame(3)
        user_flag = ui.state("queueCurrent")
        assert user_flag and user_flag.startswith("user-") and ui.state("flagsHere") == [user_flag]
        ui.act(lambda: page.keyboard.press("d"))
        wait_queue(page, 0)
        assert ui.state("queueTotal") == 0 and ui.state("flagsHere") == []

        # 5. the help overlay names the new keys
        page.click("[data-testid=help-open]")
        help_text = page.inner_text("[data-testid=help-overlay]")
        assert "dismiss the flag on this frame" in help_text and "next flag in the review queue" in help_text
        page.keyboard.press("Escape")

        # 6. a re-run of the audit finds the defect again, but the dismissal holds across runs
        again = audit(proj)
        assert again.dismissed == 1 and all(f.flag_id != gap.flag_id for f in again.flags)
        with Store.open(proj) as store:
            assert gap.flag_id in {f.flag_id for f in store.flags(dismissed=True)}
            assert gap.flag_id not in {f.flag_id for f in store.flags()}
        page.reload(wait_until="load")
        page.click("[data-testid=view-queue]")
        wait_queue(page, 0)
        assert ui.state("queueTotal") == 0 and get(port, "/api/flags") == {"total": 0, "flags": []}

        # 7. thousands of flags: a few dozen rows in the DOM, the last one reachable by scrolling
        with Store.open(proj) as store, store.transaction():
            for i in range(BULK):
                store.add_flag(split, vid, flag_id=f"bulk-{i:05d}", source="user", check="note", severity="low",
                               track_ids=["2"], frame_start=i % N, frame_end=i % N, message=f"note {i}")
        page.click("[data-testid=queue-refresh]")
        page.wait_for_function("n => window.annotator.queueReady && window.annotator.queueTotal === n",
                               arg=BULK, timeout=TIMEOUT_MS)
        shown = rows(page).count()
        assert 0 < shown <= 200, shown
        page.eval_on_selector("[data-testid=queue-scroll]", "b => { b.scrollTop = b.scrollHeight; }")
        page.wait_for_selector(f"[data-testid=queue-row][data-index='{BULK - 1}']", timeout=TIMEOUT_MS)
        assert 0 < rows(page).count() <= 200
        page.select_option("[data-testid=queue-filter-severity]", "high")
        wait_queue(page, 0)

