"""The annotation server's API over real HTTP (uvicorn on 127.0.0.1, a real project file):
prompts, brush pixels, absence, range-only re-propagation, cancel, conflicts, track surgery,
expressions, export, and what it refuses (Host, Origin, token, traversal, size)."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from fixtures.annotate_server import running, textured_project
from longrvos_data import masks
from longrvos_data.annotation import Store
from longrvos_data.annotation.server import ServerConfig, ServerError
from longrvos_data.loaders import load

pytestmark = pytest.mark.slow


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return textured_project(tmp_path)


@pytest.fixture
def api(project: Path, tmp_path: Path):
    with running(project, user="ana", export_dir=tmp_path / "exports") as url:
        with httpx.Client(base_url=url, timeout=60) as client:
            yield client


def gt(project: Path, frame: int) -> dict[str, np.ndarray]:
    video = next(iter(load(project.parent / "src", format="lvos")["valid"]))
    return video.frame_masks(frame)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def cell(api: httpx.Client, frame: int, track: str) -> dict:
    cells = api.get(f"/api/videos/1/masks/{frame}").raise_for_status().json()["cells"]
    return next(c for c in cells if c["track_id"] == track)


def mask_of(c: dict, shape=(240, 320)) -> np.ndarray:
    return masks.decode(c["rle"]) if c["state"] == "present" else np.zeros(shape, bool)


def new_track(api: httpx.Client) -> str:
    return api.post("/api/videos/1/tracks", json={}).raise_for_status().json()["track_id"]


def box_of(mask: np.ndarray, pad: int = 4) -> list[float]:
    ys, xs = np.nonzero(mask)
    return [float(max(0, xs.min() - pad)), float(max(0, ys.min() - pad)), float(min(319, xs.max() + pad)),
            float(min(239, ys.max() + pad))]


def propagate(api: httpx.Client, tracks: list[str], start: int, direction: str = "forward") -> list[dict]:
    with api.stream("POST", "/api/videos/1/propagate",
                    json={"track_ids": tracks, "start": start, "direction": direction}) as r:
        assert r.status_code == 200
        return [json.loads(line) for line in r.iter_lines() if line]


def versions(api: httpx.Client, track: str, n: int = 24) -> list[int]:
    return [cell(api, f, track)["version"] for f in range(n)]


# -- prompts and edits -----------------------------------------------------------------------
def test_clicks_and_a_box_make_human_masks_on_the_object(api, project):
    truth = gt(project, 0)["1"]
    t = new_track(api)
    ys, xs = np.nonzero(truth)
    r = api.post("/api/videos/1/prompt", json={"frame": 0, "track_id": t, "base": 0,
                                                "points": [[float(xs.mean()), float(ys.mean())]], "labels": [1]})
    assert r.status_code == 200, r.text
    c = r.json()["cell"]
    assert (c["state"], c["provenance"], c["version"]) == ("present", "human", 1)
    assert iou(mask_of(c), truth) >= 0.6
    # a negative click just outside the object, with the positive one: still the object, one more version
    r = api.post("/api/videos/1/prompt", json={"frame": 0, "track_id": t, "base": 1,
                                                "points": [[float(xs.mean()), float(ys.mean())],
                                                           [float(max(0, xs.min() - 6)), float(ys.mean())]],
                                                "labels": [1, 0]})
    assert r.json()["cell"]["version"] == 2 and iou(mask_of(r.json()["cell"]), truth) >= 0.6
    t2 = new_track(api)
    r = api.post("/api/videos/1/prompt", json={"frame": 3, "track_id": t2, "base": 0, "box": box_of(gt(project, 3)["2"])})
    assert iou(mask_of(r.json()["cell"]), gt(project, 3)["2"]) >= 0.7
    # what the engine cannot take is a 400 naming the frame, not a 500
    r = api.post("/api/videos/1/prompt", json={"frame": 0, "track_id": t, "base": 2, "points": [[900.0, 5.0]],
                                                "labels": [1]})
    assert r.status_code == 400 and "outside" in r.json()["detail"]
    assert api.post("/api/videos/1/prompt", json={"frame": 99, "track_id": t, "base": 0,
                                                   "box": [1, 1, 9, 9]}).status_code == 404


def test_the_brush_paints_and_the_eraser_clears_exactly_the_stroke(api):
    t = new_track(api)
    r = api.post("/api/videos/1/brush", json={"frame": 5, "track_id": t, "base": 0, "radius": 6,
                                               "points": [[40, 50], [80, 50]]})
    painted = mask_of(r.json()["cell"])
    yy, xx = np.mgrid[:240, :320]
    along = np.clip(xx, 40, 80)
    dist = np.hypot(xx - along, yy - 50)
    assert painted[dist <= 5.5].all() and not painted[dist > 7].any()
    r = api.post("/api/videos/1/brush", json={"frame": 5, "track_id": t, "base": 1, "radius": 3, "erase": True,
                                               "points": [[60, 50]]})
    erased = mask_of(r.json()["cell"])
    hole = np.hypot(xx - 60, yy - 50)
    assert not erased[hole <= 2.5].any()
    assert (erased == painted)[hole > 4.5].all()
    assert r.json()["cell"]["version"] == 2 and r.json()["cell"]["provenance"] == "human"
    # erasing everything leaves the object absent there, not an empty present mask
    r = api.post("/api/videos/1/brush", json={"frame": 5, "track_id": t, "base": 2, "radius": 60, "erase": True,
                                               "points": [[60, 50]]})
    assert r.json()["cell"]["state"] == "absent"


def test_absent_over_a_range_is_one_operation_and_shows_in_the_lanes(api):
    before = len(api.get("/api/history").json())
    r = api.post("/api/videos/1/absent", json={"track_id": "1", "start": 2, "end": 5})
    assert r.json()["count"] == 4
    assert [cell(api, f, "1")["state"] for f in range(1, 7)] == ["present"] + ["absent"] * 4 + ["present"]
    assert len(api.get("/api/history").json()) == before + 1
    lanes = api.get("/api/videos/1/lanes").json()["tracks"]["1"]
    assert lanes == [[0, 2, "machine"], [2, 6, "absent"], [6, 24, "machine"]]
    assert api.get("/api/videos/1/next", params={"frame": 0, "what": "absent"}).json() == {"frame": 2}
    assert api.get("/api/videos/1/next", params={"frame": 2, "what": "keyframe"}).json() == {"frame": 3}
    assert api.get("/api/videos/1/next", params={"frame": 9, "what": "absent", "direction": -1}).json() == {"frame": 5}


def test_a_correction_re_propagates_only_up_to_the_next_human_frame(api, project):
    t = new_track(api)
    api.post("/api/videos/1/prompt", json={"frame": 0, "track_id": t, "base": 0,
                                            "box": box_of(gt(project, 0)["1"])}).raise_for_status()
    lines = propagate(api, [t], 0)
    assert lines[0]["type"] == "start" and lines[-1]["type"] == "done" and lines[-1]["error"] is None
    assert [x["frame"] for x in lines[1:-1]] == list(range(1, 24))
    assert all(cell(api, f, t)["provenance"] == "propagated" for f in range(1, 24))
    # two human corrections (10 and 16), then re-propagate from 10 in both directions
    for f in (10, 16):
        c = cell(api, f, t)
        api.post("/api/videos/1/brush", json={"frame": f, "track_id": t, "base": c["version"], "radius": 3,
                                               "erase": True, "points": [[1, 1]]}).raise_for_status()
    before = versions(api, t)
    lines = propagate(api, [t], 10, "both")
    assert lines[-1]["error"] is None
    assert sorted(x["frame"] for x in lines[1:-1]) == [*range(1, 10), *range(11, 16)]
    after = versions(api, t)
    moved = [f for f in range(24) if after[f] != before[f]]
    assert moved == [*range(1, 10), *range(11, 16)]       # never frame 0, 10 or 16, nor past 16
    assert [cell(api, f, t)["provenance"] for f in (0, 10, 16)] == ["human"] * 3
    ops = api.get("/api/history", params={"limit": 1}).json()
    assert ops[0]["label"] == "propagate both from 10"


def test_propagating_from_a_frame_without_a_mask_says_so(api):
    t = new_track(api)
    lines = propagate(api, [t], 4)
    assert lines[-1]["op_id"] is None and "no mask on frame 4" in lines[-1]["error"]


def test_cancel_keeps_what_was_computed_as_one_undo_step(tmp_path):
    project = textured_project(tmp_path, num_frames=150, width=256, height=192)
    with running(project, user="ana") as url, httpx.Client(base_url=url, timeout=60) as api:
        truth = next(iter(load(tmp_path / "src", format="lvos")["valid"])).frame_masks(0)["1"]
        ys, xs = np.nonzero(truth)
        t = new_track(api)
        api.post("/api/videos/1/prompt", json={"frame": 0, "track_id": t, "base": 0,
                                                "box": [float(v) for v in (xs.min(), ys.min(), xs.max(), ys.max())]}
                 ).raise_for_status()
        steps = 0
        with api.stream("POST", "/api/videos/1/propagate", json={"track_ids": [t], "start": 0}) as r:
            lines = r.iter_lines()
            start = json.loads(next(lines))
            for line in lines:
                item = json.loads(line)
                if item["type"] == "step":
                    steps += 1
                    if steps == 3:
                        assert api.post(f"/api/jobs/{start['job']}/cancel").json() == {"cancelled": True}
                else:
                    done = item
        assert done["cancelled"] and 3 <= done["written"] < 149, done
        written = [f for f in range(1, 150) if cell(api, f, t)["state"] != "none"]
        assert written == list(range(1, 1 + done["written"]))
        history = api.get("/api/history", params={"limit": 2}).json()
        assert history[0]["label"] == "propagate forward from 0 (cancelled)" and history[1]["label"] == "box"
        undone = api.post("/api/undo").json()
        assert undone["cells"] == [{"pk": 1, "track_id": t, "frame": f} for f in written]
        assert all(cell(api, f, t)["state"] == "none" for f in written)
        assert cell(api, 0, t)["state"] == "present"            # the box is the next undo step
        assert api.post(f"/api/jobs/{start['job']}/cancel").status_code == 404


def test_two_clients_on_one_cell_the_second_gets_409_and_nothing_is_lost(project, tmp_path):
    with running(project, user="ana") as url, httpx.Client(base_url=url) as a, httpx.Client(base_url=url) as b:
        seen_a, seen_b = cell(a, 7, "1"), cell(b, 7, "1")
        stroke = {"frame": 7, "track_id": "1", "radius": 4, "points": [[10, 10]]}
        assert a.post("/api/videos/1/brush", json={**stroke, "base": seen_a["version"]}).status_code == 200
        r = b.post("/api/videos/1/brush", json={**stroke, "base": seen_b["version"], "erase": True})
        assert r.status_code == 409
        body = r.json()
        assert body["stale"] == [{"track_id": "1", "frame": 7, "base": 1, "version": 2}]
        assert mask_of(cell(a, 7, "1"))[10, 10]                # a's stroke stands
    with Store.open(project) as store:
        rejected = store.operation(body["rejected_op"])
        assert rejected.status == "rejected" and rejected.changes[0].after.rle is not None


def test_undo_refused_when_someone_else_changed_the_cells(project):
    with running(project, user="ana") as url, httpx.Client(base_url=url) as ana:
        c = cell(ana, 3, "2")
        ana.post("/api/videos/1/brush", json={"frame": 3, "track_id": "2", "base": c["version"], "radius": 3,
                                               "points": [[5, 5]]}).raise_for_status()
    with running(project, user="bo") as url, httpx.Client(base_url=url) as bo:
        c = cell(bo, 3, "2")
        bo.post("/api/videos/1/brush", json={"frame": 3, "track_id": "2", "base": c["version"], "radius": 3,
                                              "points": [[50, 5]]}).raise_for_status()
    with running(project, user="ana") as url, httpx.Client(base_url=url) as ana:
        r = ana.post("/api/undo")
        assert r.status_code == 409 and "changed since" in r.json()["detail"]
        assert ana.post("/api/redo").status_code == 400      # nothing to redo: a plain 400


def test_swap_merge_and_split_over_a_range(api):
    one = {f: mask_of(cell(api, f, "1")) for f in range(24)}
    two = {f: mask_of(cell(api, f, "2")) for f in range(24)}
    api.post("/api/videos/1/tracks/swap", json={"a": "1", "b": "2", "start": 5, "end": 9}).raise_for_status()
    for f in range(24):
        want1, want2 = (two[f], one[f]) if 5 <= f <= 9 else (one[f], two[f])
        assert (mask_of(cell(api, f, "1")) == want1).all() and (mask_of(cell(api, f, "2")) == want2).all()
    assert cell(api, 5, "1")["provenance"] == "imported"          # moved content keeps its provenance
    api.post("/api/undo").raise_for_status()
    api.post("/api/videos/1/tracks/merge", json={"source": "2", "target": "1", "start": 0, "end": 3}).raise_for_status()
    for f in range(4):
        assert (mask_of(cell(api, f, "1")) == (one[f] | two[f])).all() and cell(api, f, "2")["state"] == "absent"
    assert (mask_of(cell(api, 4, "2")) == two[4]).all()
    r = api.post("/api/videos/1/tracks/split", json={"track_id": "1", "start": 12, "end": 23})
    new = r.json()["track_id"]
    assert new == "3"
    assert all((mask_of(cell(api, f, new)) == one[f]).all() for f in range(12, 24))
    assert all(cell(api, f, "1")["state"] == "absent" for f in range(12, 24))
    assert cell(api, 11, new)["state"] == "none"
    r = api.post("/api/videos/1/tracks/swap", json={"a": "1", "b": "1", "start": 0, "end": 1})
    assert r.status_code == 400
    assert api.post("/api/videos/1/tracks/merge", json={"source": "9", "target": "1", "start": 0,
                                                        "end": 1}).status_code == 400
    assert api.post("/api/videos/1/tracks/split", json={"track_id": "1", "start": 0, "end": 99}).status_code == 400


def test_expressions_name_several_tracks_one_or_none(api):
    r = api.post("/api/videos/1/expressions", json={"text": "the two blobs", "track_ids": ["1", "2"]})
    exp = r.json()["exp_id"]
    video = api.get("/api/videos/1").json()
    assert video["expressions"] == [{"exp_id": exp, "text": "the two blobs", "kind": "referring",
                                     "track_ids": ["1", "2"]}]
    api.put(f"/api/videos/1/expressions/{exp}", json={"text": "nothing here", "track_ids": [],
                                                       "kind": "no-target"}).raise_for_status()
    assert api.get("/api/videos/1").json()["expressions"][0] == {"exp_id": exp, "text": "nothing here",
                                                                 "kind": "no-target", "track_ids": []}
    assert api.post("/api/videos/1/expressions", json={"text": "x", "track_ids": ["9"]}).status_code == 400
    assert api.put("/api/videos/1/expressions/77", json={"text": "x"}).status_code == 404
    assert api.post("/api/videos/1/expressions", json={"text": ""}).status_code == 422
    assert api.delete(f"/api/videos/1/expressions/{exp}").status_code == 200
    assert api.get("/api/videos/1").json()["expressions"] == []


def test_status_assignee_flags_and_dismissal(api):
    api.put("/api/videos/1/status", json={"status": "in_progress"}).raise_for_status()
    api.put("/api/videos/1/assignee", json={"assignee": "ana"}).raise_for_status()
    assert api.get("/api/videos").json()[0] | {} == {**api.get("/api/videos").json()[0], "status": "in_progress",
                                                     "assignee": "ana"}
    assert api.put("/api/videos/1/status", json={"status": "finished"}).status_code == 422
    flag = api.post("/api/videos/1/flags", json={"frame_start": 8, "frame_end": 9, "track_ids": ["1"]}).json()
    assert api.get("/api/videos/1/next", params={"frame": 0, "what": "flagged"}).json() == {"frame": 8}
    api.post(f"/api/flags/{flag['flag_id']}/dismiss").raise_for_status()
    assert api.get("/api/videos/1/lanes").json()["flags"] == []
    assert api.post("/api/videos/1/flags", json={"frame_start": 8, "frame_end": 99}).status_code == 400


def test_export_through_a_converter_reloads_with_the_project_masks(api, tmp_path):
    t = new_track(api)
    api.post("/api/videos/1/brush", json={"frame": 2, "track_id": t, "base": 0, "radius": 9,
                                           "points": [[100, 100]]}).raise_for_status()
    api.post("/api/videos/1/expressions", json={"text": "a dot", "track_ids": [t, "1"]}).raise_for_status()
    r = api.post("/api/export", json={"format": "mevis", "name": "round1"})
    assert r.status_code == 200, r.text
    out = Path(r.json()["path"])
    assert out == tmp_path / "exports" / "round1"
    video = next(iter(load(out, format="mevis")["valid"]))
    assert [e.text for e in video.expressions] == ["a dot"]
    assert set(video.expressions[0].track_ids) == {t, "1"}
    exported = video.frame_masks(2)
    assert (exported[t] == mask_of(cell(api, 2, t))).all() and (exported["1"] == mask_of(cell(api, 2, "1"))).all()
    assert api.post("/api/export", json={"format": "mevis", "name": "round1"}).status_code == 400   # exists
    assert api.post("/api/export", json={"format": "mevis", "name": "../up"}).status_code == 400
    assert api.post("/api/export", json={"format": "tar", "name": "x"}).status_code == 400
    assert not (tmp_path / "up").exists()


# -- what the server refuses -------------------------------------------------------------------
def test_host_and_origin_are_checked(api):
    port = api.base_url.port
    assert api.get("/api/project", headers={"Host": "evil.example"}).status_code == 400
    assert api.get("/api/project", headers={"Host": f"evil.example:{port}"}).status_code == 400
    assert api.get("/api/project", headers={"Host": f"localhost:{port}"}).status_code == 200
    r = api.post("/api/videos/1/tracks", json={}, headers={"Origin": "http://evil.example"})
    assert r.status_code == 403
    assert api.post("/api/videos/1/tracks", json={}, headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
    r = api.post("/api/videos/1/tracks", json={}, headers={"Origin": f"http://127.0.0.1:{port}"})
    assert r.status_code == 200
    assert len(api.get("/api/videos/1").json()["tracks"]) == 3     # only the same-origin one was made
    page = api.get("/")
    assert page.status_code == 200 and "default-src 'self'" in page.headers["content-security-policy"]


def test_ids_and_paths_do_not_traverse(api, project):
    with Store.open(project) as store:                # a record pointing outside its root is not served
        store.con.execute("UPDATE frames SET path = '../../../../etc/hostname' WHERE idx = 2")
    for path in ("/static/../server.py", "/static/..%2Fserver.py", "/static/%2e%2e%2fstore.py",
                 "/api/videos/1/frames/-1", "/api/videos/1/frames/24", "/api/videos/7", "/api/videos/1/masks/99",
                 "/api/videos/1/thumbs/500"):
        assert api.get(path).status_code == 404, path
    assert api.get("/api/videos/..%2F1").status_code in (404, 422)
    assert api.get("/api/videos/1/frames/2").status_code == 404
    assert api.get("/api/videos/1/frames/3").status_code == 200


def test_bodies_over_the_limit_are_refused_with_413_and_write_nothing(project):
    with running(project, user="ana", max_body=64 * 1024) as url, httpx.Client(base_url=url) as api:
        before = api.get("/api/history").json()
        big = {"frame": 1, "track_id": "1", "base": 1, "radius": 2, "points": [[1.0, 1.0]] * 20_000}
        assert api.post("/api/videos/1/brush", json=big).status_code == 413

        def chunks():
            data = json.dumps(big).encode()
            for i in range(0, len(data), 8192):
                yield data[i:i + 8192]
        r = api.post("/api/videos/1/brush", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413
        assert api.get("/api/history").json() == before


def test_a_token_is_required_off_127_0_0_1(project, tmp_path):
    with pytest.raises(ServerError, match="needs a token"):
        ServerConfig(project, host="127.0.0.2")
    proc = subprocess.Popen([sys.executable, "-m", "longrvos_data.cli", "annotate", "serve", str(project),
                             "--host", "127.0.0.2", "--port", "0", "--user", "ana"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.2:(\d+)/\?token=(\S+)", line)
        assert match, line + proc.stderr.read() if proc.poll() is not None else line
        port, token = match.groups()
        base = f"http://127.0.0.2:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                r = httpx.get(f"{base}/api/project")
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert r.status_code == 401
        assert httpx.get(f"{base}/api/project", headers={"Authorization": "Bearer nope"}).status_code == 401
        assert httpx.get(f"{base}/api/project", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert httpx.get(f"{base}/?token=nope").status_code == 401
        r = httpx.get(f"{base}/?token={token}")
        assert r.status_code == 303 and "HttpOnly" in r.headers["set-cookie"]
        with httpx.Client(base_url=base, cookies=r.cookies) as browser:
            assert browser.get("/api/videos").status_code == 200
        assert httpx.get(f"{base}/api/project", headers={"Host": f"127.0.0.1:{port}",
                                                         "Authorization": f"Bearer {token}"}).status_code == 400
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_serve_refuses_a_taken_port_in_one_line(project):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        r = subprocess.run([sys.executable, "-m", "longrvos_data.cli", "annotate", "serve", str(project),
                            "--port", str(s.getsockname()[1])], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "cannot listen on 127.0.0.1" in r.stderr and "Traceback" not in r.stderr


def test_the_sam2_engine_behind_the_api(tmp_path):
    """The same routes with SAM2 (tiny random weights from a checkpoint file): a box, a
    propagation, a click correction that starts from the store's mask, and a range-only re-run."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("sam2")
    from fixtures.sam2_tiny import CONFIG, OVERRIDES, stock_predictor

    checkpoint = tmp_path / "tiny.pt"
    torch.save({"model": stock_predictor().state_dict()}, checkpoint)
    project = textured_project(tmp_path, num_frames=10)
    options = {"config": CONFIG, "checkpoint": checkpoint, "overrides": OVERRIDES, "device": "cpu"}
    with running(project, user="ana", engine="sam2", engine_options=options) as url, \
            httpx.Client(base_url=url, timeout=300) as api:
        assert api.get("/api/project").json()["engine"] == "sam2"
        t = new_track(api)
        r = api.post("/api/videos/1/prompt", json={"frame": 0, "track_id": t, "base": 0,
                                                    "box": box_of(gt(project, 0)["1"])})
        assert r.status_code == 200, r.text
        lines = propagate(api, [t], 0)
        assert lines[-1]["error"] is None and [x["frame"] for x in lines[1:-1]] == list(range(1, 10))
        assert all(x["state"] in ("present", "absent") for x in lines[1:-1])
        c = cell(api, 5, t)
        ys, xs = np.nonzero(gt(project, 5)["1"])
        r = api.post("/api/videos/1/prompt", json={"frame": 5, "track_id": t, "base": c["version"],
                                                    "points": [[float(xs.mean()), float(ys.mean())]], "labels": [1]})
        assert r.status_code == 200 and r.json()["cell"]["provenance"] == "human"
        before = versions(api, t, 10)
        lines = propagate(api, [t], 5, "backward")
        assert lines[-1]["error"] is None and [x["frame"] for x in lines[1:-1]] == [4, 3, 2, 1]
        after = versions(api, t, 10)
        assert [f for f in range(10) if after[f] != before[f]] == [1, 2, 3, 4]
