"""The classical engine: GrabCut prompts, flow propagation that beats copying the first mask,
the shared range rules, cancelling, the session calls, errors and flat memory."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from longrvos_data.annotation.engines import EngineError, Step, StepWithLogits, engine_class, open_engine
from longrvos_data.annotation.engines.classical import ClassicalEngine
from longrvos_data.loaders import load
from longrvos_data.schema import Frame, Track, Video
from longrvos_data.synth import textured_lvos


def iou(a: np.ndarray | None, b: np.ndarray) -> float:
    a = np.zeros_like(b) if a is None else a
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def _texture(rng: np.random.Generator, h: int, w: int, base, amp: float = 45) -> np.ndarray:
    acc = np.zeros((h, w, 3), np.float32)
    for cell, weight in ((16, 1.0), (5, 0.6), (2, 0.4)):
        grid = rng.normal(size=(h // cell + 2, w // cell + 2, 3)).astype(np.float32)
        acc += weight * cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(np.asarray(base, np.float32) + amp * acc / 1.5, 0, 255).astype(np.uint8)


def disc_clip(folder: Path, *, n: int = 16, w: int = 200, h: int = 150, speed=(6.0, 2.5), radius: float = 24,
              seed: int = 0) -> tuple[Video, list[np.ndarray]]:
    """A textured disc gliding over a textured background, growing by 20%, with a bar of
    background texture sliding across it on frames 5-9; JPEG frames and the true masks."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    background = _texture(rng, h, w, (100, 120, 95))
    skin = _texture(rng, 4 * int(radius), 4 * int(radius), (60, 70, 200), amp=35)
    bar = _texture(rng, h, 12, (100, 120, 95))
    frames, truth = [], []
    yy, xx = np.mgrid[0:h, 0:w]
    for t in range(n):
        r = radius * (1 + 0.2 * t / (n - 1))
        cx, cy = 40 + speed[0] * t, 45 + speed[1] * t
        disc = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
        size = int(np.ceil(2 * r)) + 2
        patch = cv2.resize(skin, (size, size))
        x0, y0 = round(cx - size / 2), round(cy - size / 2)
        img = background.copy()
        under = np.zeros((h, w, 3), np.uint8)
        px0, py0, px1, py1 = max(0, x0), max(0, y0), min(w, x0 + size), min(h, y0 + size)
        if px1 > px0 and py1 > py0:
            under[py0:py1, px0:px1] = patch[py0 - y0:py1 - y0, px0 - x0:px1 - x0]
        img[disc] = under[disc]
        mask = disc.copy()
        if 5 <= t < 10:   # the occluder slides across the disc
            bx = int(cx - 0.7 * r + 0.35 * r * (t - 5))
            img[:, max(0, bx):bx + 12] = bar[:, max(0, -bx):max(0, -bx) + min(w, bx + 12) - max(0, bx)]
            mask[:, max(0, bx):bx + 12] = False
        path = folder / f"{t:05d}.jpg"
        cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, 92])
        frames.append(Frame(f"{t:05d}", path))
        truth.append(mask)
    video = Video(dataset="synthetic", split="valid", video_id="disc", frames=tuple(frames), height=h, width=w,
                  tracks=(Track("1"),), expressions=())
    return video, truth


@pytest.fixture(scope="module")
def disc(tmp_path_factory):
    return disc_clip(tmp_path_factory.mktemp("disc"))


@pytest.fixture(scope="module")
def textured(tmp_path_factory):
    """`synth.textured_lvos` at 320x240x30: two textured objects, a partial occlusion."""
    root = textured_lvos(tmp_path_factory.mktemp("textured") / "lvos", width=320, height=240, num_frames=30)
    video = next(iter(load(root, format="lvos", split="valid")["valid"]))
    truth = [video.frame_masks(i) for i in range(video.num_frames)]
    return video, truth


@pytest.fixture
def engine():
    e = ClassicalEngine()
    yield e
    e.close()


def _centroid(mask: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(mask)
    return float(xs.mean()), float(ys.mean())


def _box(mask: np.ndarray) -> tuple[float, float, float, float]:
    ys, xs = np.nonzero(mask)
    return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)


def _run(engine, tids, **kw) -> dict[tuple[int, str], Step]:
    return {(s.frame_index, s.track_id): s for s in engine.propagate(tids, **kw)}


# -- prompts ---------------------------------------------------------------------------
def test_registry_builds_the_classical_engine():
    assert engine_class("classical") is ClassicalEngine
    assert isinstance(open_engine("classical", image_size=320), ClassicalEngine)


def test_box_and_centroid_click_segment_textured_objects(engine, disc, textured):
    for video, masks in ((disc[0], {0: {"1": disc[1][0]}, 12: {"1": disc[1][12]}}),
                         (textured[0], {0: textured[1][0], 17: textured[1][17]})):
        engine.open(video)
        for f, objects in masks.items():
            for tid, gt in objects.items():
                box = engine.add_box(f, "b" + tid, _box(gt))
                click = engine.add_points(f, "c" + tid, [_centroid(gt)], [1])
                assert box.shape == click.shape == gt.shape and box.dtype == click.dtype == bool
                assert iou(box, gt) >= 0.85, (video.video_id, f, tid, iou(box, gt))
                assert iou(click, gt) >= 0.7, (video.video_id, f, tid, iou(click, gt))


def test_a_prompt_makes_a_conditioning_frame_and_add_mask_is_kept_as_is(engine, disc):
    video, truth = disc
    engine.open(video)
    engine.add_points(3, "1", [_centroid(truth[3])], [1])
    given = truth[7].copy()
    given[:5, :5] = True            # not something GrabCut would draw: kept as given
    back = engine.add_mask(7, "1", given)
    assert np.array_equal(back, given) and back is not given
    assert engine.conditioning_frames("1") == [3, 7]
    steps = _run(engine, ["1"], start=7, end=8)
    assert np.array_equal(steps[(7, "1")].mask, given) and steps[(7, "1")].score == 1.0


def test_clicks_replace_the_frames_earlier_ones_and_correct_the_mask(engine, textured):
    video, truth = textured
    one, two = truth[0]["1"], truth[0]["2"]     # the two objects touch on frame 0
    engine.open(video)
    both = engine.add_points(0, "1", [_centroid(one), _centroid(two)], [1, 1])
    assert iou(both, one | two) >= 0.7
    fixed = engine.add_points(0, "1", [_centroid(one), _centroid(two)], [1, 0])
    x, y = (round(v) for v in _centroid(two))
    assert not fixed[y, x] and iou(fixed, one) >= 0.7 and iou(fixed, one) > iou(both, one)
    assert engine.conditioning_frames("1") == [0]


def test_only_negative_clicks_on_a_fresh_track_give_an_empty_mask(engine, disc):
    video, _ = disc
    engine.open(video)
    assert not engine.add_points(2, "1", [(5, 5)], [0]).any()
    steps = _run(engine, ["1"], start=2, end=5)
    assert [steps[(f, "1")].mask for f in (2, 3, 4)] == [None, None, None]


# -- propagation ------------------------------------------------------------------------
def _mean_iou(engine, video, truth, tid, start, reverse=False):
    direction = "backward" if reverse else "forward"
    got = [iou(s.mask, truth[s.frame_index].get(tid, np.zeros_like(truth[start][tid])))
           for s in engine.propagate([tid], start=start, direction=direction) if s.frame_index != start]
    copy = [iou(truth[start][tid], truth[i].get(tid, np.zeros_like(truth[start][tid])))
            for i in (range(start - 1, -1, -1) if reverse else range(start + 1, video.num_frames))]
    return float(np.mean(got)), float(np.mean(copy)), len(got)


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "backward"])
def test_propagation_tracks_the_textured_fixture_far_better_than_copying(engine, textured, reverse):
    """Measured: 0.95-0.97 forward, about the same backward; copying scores under 0.2."""
    video, truth = textured
    engine.open(video)
    start = video.num_frames - 1 if reverse else 0
    for tid in ("1", "2"):
        engine.add_mask(start, tid, truth[start][tid])
        got, copy, n = _mean_iou(engine, video, truth, tid, start, reverse)
        assert n == video.num_frames - 1
        assert got >= 0.85, (tid, got)
        assert copy <= 0.4 and got >= copy + 0.45, (tid, got, copy)


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "backward"])
def test_propagation_follows_the_disc_through_its_occlusion(engine, disc, reverse):
    video, truth = disc
    truth = [{"1": m} for m in truth]
    engine.open(video)
    start = video.num_frames - 1 if reverse else 0
    engine.add_mask(start, "1", truth[start]["1"])
    got, copy, _ = _mean_iou(engine, video, truth, "1", start, reverse)
    assert got >= 0.85 and copy <= 0.4 and got >= copy + 0.45, (got, copy)


def test_steps_carry_scores_and_logits_that_agree_with_the_masks(engine, disc):
    video, truth = disc
    engine.open(video)
    engine.add_mask(0, "1", truth[0])
    steps = list(engine.propagate(["1"], start=0, end=6, logits=True))
    assert [s.frame_index for s in steps] == list(range(6))
    for s in steps:
        assert isinstance(s, StepWithLogits) and 0.0 <= s.score <= 1.0
        assert s.logits.dtype == np.float32 and s.logits.shape == (video.height, video.width)
        assert s.mask is not None and s.mask.dtype == bool
        assert np.array_equal(s.logits > 0, s.mask)
    assert steps[0].score == 1.0 and min(s.score for s in steps[1:]) > 0.5
    plain = list(engine.propagate(["1"], start=0, end=3))
    assert all(type(s) is Step for s in plain)


def test_end_none_stops_at_the_next_conditioning_frame_and_yields_it_as_given(engine, disc):
    video, truth = disc
    engine.open(video)
    engine.add_mask(2, "1", truth[2])
    engine.add_mask(9, "1", truth[9])
    forward = list(engine.propagate(["1"], start=2))
    assert [s.frame_index for s in forward] == list(range(2, 10))
    assert np.array_equal(forward[-1].mask, truth[9])
    backward = list(engine.propagate(["1"], start=9, direction="backward"))
    assert [s.frame_index for s in backward] == list(range(9, 1, -1))
    # from 9 forward: no later prompt, so on to the video's end
    assert [s.frame_index for s in engine.propagate(["1"], start=9)] == list(range(9, video.num_frames))
    # a track is never invented before its first prompt
    engine.add_mask(6, "late", truth[6])
    seen = [(s.frame_index, s.track_id) for s in engine.propagate(["1", "late"], start=2, end=9)]
    assert [f for f, t in seen if t == "late"] == [6, 7, 8]


def test_both_directions_cover_every_frame_once(engine, disc):
    video, truth = disc
    engine.open(video)
    engine.add_mask(8, "1", truth[8])
    steps = list(engine.propagate(["1"], start=8, direction="both"))
    frames = [s.frame_index for s in steps]
    assert sorted(frames) == list(range(video.num_frames)) and len(set(frames)) == len(frames)
    assert frames[:8] == list(range(8, 16)) and frames[8:] == list(range(7, -1, -1))
    ious = [iou(s.mask, truth[s.frame_index]) for s in steps]
    assert np.mean(ious) >= 0.85, np.round(ious, 2)


def test_an_empty_keyframe_means_absent(engine, disc):
    video, truth = disc
    engine.open(video)
    engine.add_mask(0, "1", np.zeros_like(truth[0]))
    steps = list(engine.propagate(["1"], start=0, end=5, logits=True))
    assert len(steps) == 5 and all(s.mask is None and (s.logits < 0).all() for s in steps)


def test_an_object_leaving_the_frame_becomes_absent(engine, tmp_path):
    video, truth = disc_clip(tmp_path / "exit", n=14, speed=(16.0, 0.0), radius=18)
    engine.open(video)
    engine.add_mask(0, "1", truth[0])
    steps = list(engine.propagate(["1"], start=0))
    gone = [s.frame_index for s in steps if not truth[s.frame_index].any()]
    assert gone, "the clip should take the disc out of the frame"
    assert all(s.mask is None or s.mask.sum() < 0.1 * truth[0].sum() for s in steps if s.frame_index in gone)


def test_same_prompts_same_masks(disc):
    video, truth = disc
    runs = []
    for _ in range(2):
        e = ClassicalEngine()
        e.open(video)
        e.add_points(0, "1", [_centroid(truth[0])], [1])
        e.add_box(0, "2", _box(truth[0]))
        runs.append([s.mask for s in e.propagate(["1", "2"], start=0, end=8)])
        e.close()
    assert all(np.array_equal(a, b) for a, b in zip(*runs))


# -- cancelling and the session ---------------------------------------------------------
def test_closing_the_iterator_cancels_and_leaves_the_session_usable(engine, disc):
    video, truth = disc
    engine.open(video)
    engine.add_mask(0, "1", truth[0])
    run = engine.propagate(["1"], start=0)
    got = [next(run) for _ in range(4)]
    run.close()
    assert [s.frame_index for s in got] == [0, 1, 2, 3]
    track = engine._tracks["1"]
    assert sorted(track.tracked) == [0, 1, 2, 3]
    # later frames were never tracked; the session still takes prompts and runs
    engine.add_points(10, "2", [_centroid(truth[10])], [1])
    steps = _run(engine, ["1", "2"], start=3, end=12)
    assert iou(steps[(11, "2")].mask, truth[11]) >= 0.7
    assert iou(steps[(11, "1")].mask, truth[11]) >= 0.7
    assert sorted(track.tracked) == list(range(12))


def test_remove_track_reset_and_close(engine, disc):
    video, truth = disc
    engine.open(video)
    engine.add_mask(0, "1", truth[0])
    engine.add_box(0, "2", _box(truth[0]))
    engine.remove_track("1")
    engine.remove_track("nobody")          # unknown ids are ignored
    assert engine.track_ids() == ["2"] and "1" not in engine._data
    with pytest.raises(EngineError, match="track '1' has no prompt"):
        list(engine.propagate(["1"], start=0))
    list(engine.propagate(["2"], start=0, end=4))
    engine.reset()
    assert engine.track_ids() == [] and engine._data == {} and engine.video is video
    engine.add_mask(0, "3", truth[0])       # still open after a reset
    engine.close()
    engine.close()                          # idempotent
    assert engine.video is None and engine._data == {} and not engine._frames and not engine._flows
    with pytest.raises(EngineError, match="no video is open"):
        engine.add_points(0, "1", [(10, 10)], [1])
    engine.open(video)                      # and a new session starts clean
    assert engine.track_ids() == []


def test_errors_name_the_frame_the_track_and_the_file(engine, disc, tmp_path):
    video, truth = disc
    engine.open(video)
    with pytest.raises(EngineError, match="frame 99 is not in 0..15"):
        engine.add_points(99, "1", [(10, 10)], [1])
    with pytest.raises(EngineError, match="mask is 10x20, the video is 200x150"):
        engine.add_mask(0, "1", np.zeros((20, 10), bool))
    with pytest.raises(EngineError, match="outside"):
        engine.add_box(0, "1", (0, 0, 500, 20))
    with pytest.raises(EngineError, match="has no prompt"):
        list(engine.propagate(["ghost"], start=0))
    assert engine.track_ids() == []         # a failed prompt leaves no track behind
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    frames = list(video.frames)
    frames[3] = Frame("00003", broken)
    bad = Video(dataset="synthetic", split="valid", video_id="bad", frames=frames, height=video.height,
                width=video.width, tracks=video.tracks, expressions=())
    engine.open(bad)
    with pytest.raises(EngineError, match=r"video 'bad' frame 3: cannot read the image .*broken\.jpg"):
        engine.add_points(3, "1", [(10, 10)], [1])
    assert engine.track_ids() == []
    engine.add_mask(0, "1", truth[0])
    with pytest.raises(EngineError, match="broken"):
        list(engine.propagate(["1"], start=0))
    with pytest.raises(EngineError, match="image_size"):
        engine.open(video, image_size=4)


def test_memory_stays_flat_over_the_video(textured):
    """What the session holds does not grow with the frames it has tracked."""
    video, truth = textured
    engine = ClassicalEngine(cache_frames=4)
    engine.open(video)
    engine.add_mask(0, "1", truth[0]["1"])
    engine.add_mask(0, "2", truth[0]["2"])
    sizes = []
    for s in engine.propagate(["1", "2"], start=0):
        if s.track_id == "2":
            held = engine.held()
            sizes.append(len(held.frames))
            assert len(engine._frames) <= 4 and len(engine._flows) <= 2
            assert held.memories <= {0, s.frame_index} and held.pointers == {0}
            assert all(f >= s.frame_index - 4 for f in held.features)
    assert len(sizes) == video.num_frames and max(sizes) <= 4 + 2
    # a working frame is the reduced one, not the video's
    big = ClassicalEngine(image_size=160)
    big.open(video)
    big.add_box(0, "1", _box(truth[0]["1"]))
    assert big._work_size == (160, 120) and big._frames[0][0].shape == (120, 160, 3)
    big.close()
    engine.close()
    assert engine.held().frames == frozenset()
