"""The SAM2 engine's session rules with the tiny random-weight model: ranges, cancel, checkpoints."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sam2")

from fixtures.sam2_tiny import CONFIG, OVERRIDES, clip, stock_predictor  # noqa: E402

from longrvos_data.annotation.engines import EngineError, open_engine  # noqa: E402
from longrvos_data.annotation.engines.sam2 import Sam2Engine  # noqa: E402
from longrvos_data.errors import LongRVOSError  # noqa: E402

N = 12


def test_torchvision_is_not_installed():
    # sam2 declares torchvision, whose registry wheel is a CUDA build that fails with the CPU torch
    assert importlib.util.find_spec("torchvision") is None


@pytest.fixture(scope="module")
def model():
    return stock_predictor()


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return clip(tmp_path_factory.mktemp("short") / "frames", num_frames=N)


def _disc(video, frame, k, r=30):
    x, y = video.meta["centres"][frame][k]
    yy, xx = np.mgrid[:video.height, :video.width]
    return (xx - x) ** 2 + (yy - y) ** 2 <= r * r


def test_checkpoint_is_required_and_checked(tmp_path, model):
    with pytest.raises(LongRVOSError, match="checkpoint"):
        Sam2Engine(CONFIG, None)
    with pytest.raises(LongRVOSError, match="checkpoint"):
        open_engine("sam2", config=CONFIG)
    with pytest.raises(LongRVOSError, match="config"):
        Sam2Engine(None, tmp_path / "x.pt")
    missing = tmp_path / "nope.pt"
    with pytest.raises(LongRVOSError, match="nope.pt.*not found"):
        Sam2Engine(CONFIG, missing)
    good = tmp_path / "tiny.pt"
    torch.save({"model": model.state_dict()}, good)
    engine = Sam2Engine(CONFIG, good, overrides=OVERRIDES)
    for name, p in model.state_dict().items():
        assert torch.equal(engine.model.state_dict()[name], p), name
    partial = tmp_path / "partial.pt"
    weights = dict(model.state_dict())
    weights.pop(next(iter(weights)))
    torch.save({"model": weights}, partial)
    with pytest.raises(LongRVOSError, match="partial.pt: does not fit"):
        Sam2Engine(CONFIG, partial, overrides=OVERRIDES)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(LongRVOSError, match="junk.pt: cannot be read"):
        Sam2Engine(CONFIG, junk, overrides=OVERRIDES)
    with pytest.raises(LongRVOSError, match="not a SAM2 config"):
        Sam2Engine("configs/none.yaml", good)


def test_range_only_repropagation_leaves_other_frames_untouched(model, video):
    engine = Sam2Engine.for_tests(model)
    engine.open(video)
    engine.add_mask(0, "1", _disc(video, 0, 0))
    engine.add_mask(8, "1", _disc(video, 8, 0))
    assert [s.frame_index for s in engine.propagate(["1"], start=0)] == list(range(0, 9))  # stops at 8, included
    assert [s.frame_index for s in engine.propagate(["1"], start=8, end=N)] == list(range(8, N))
    st = engine._state["1"]
    before = {f: engine._load_logits(st, f).clone() for f in range(N)}
    engine.add_points(4, "1", [video.meta["centres"][4][0]], [1])
    steps = list(engine.propagate(["1"], start=4, direction="both"))
    assert [s.frame_index for s in steps] == [4, 5, 6, 7, 8, 3, 2, 1, 0]
    assert engine.conditioning_frames("1") == [0, 4, 8]
    for f in range(9, N):
        assert torch.equal(engine._load_logits(st, f), before[f]), f"frame {f} changed"
    changed = [f for f in (5, 6, 7, 3, 2, 1) if not torch.equal(engine._load_logits(st, f), before[f])]
    assert changed, "the corrected range was not re-propagated"
    engine.close()


def _two_discs(model, video) -> Sam2Engine:
    engine = Sam2Engine.for_tests(model)
    engine.open(video)
    engine.add_mask(0, "a", _disc(video, 0, 0))
    engine.add_mask(0, "b", _disc(video, 0, 1))
    return engine


def test_cancel_keeps_what_was_yielded_and_resumes_identically(model, video):
    engine = _two_discs(model, video)
    run = engine.propagate(["a", "b"], start=0, logits=True)
    got = [next(run) for _ in range(6)]  # frames 0..2, both tracks
    run.close()
    assert sorted(engine._tracks["a"].tracked) == [0, 1, 2]
    got += list(engine.propagate(["a", "b"], start=3, logits=True))
    engine.close()

    again = _two_discs(model, video)
    full = list(again.propagate(["a", "b"], start=0, logits=True))
    assert [(s.frame_index, s.track_id) for s in got] == [(s.frame_index, s.track_id) for s in full]
    for x, y in zip(got, full):
        np.testing.assert_array_equal(x.logits, y.logits)
    present = [s for s in full if s.mask is not None]
    assert present and all(s.mask.shape == (video.height, video.width) and s.mask.dtype == bool for s in present)
    assert all(0.0 <= s.score <= 1.0 for s in full)
    assert all((s.mask is None) == (s.score <= 0.5) for s in full)
    again.close()


def test_a_late_object_is_not_invented_before_its_first_prompt(model, video):
    engine = Sam2Engine.for_tests(model)
    engine.open(video)
    engine.add_mask(0, "early", _disc(video, 0, 0))
    engine.add_mask(5, "late", _disc(video, 5, 1))
    steps = list(engine.propagate(["early", "late"], start=0, end=8))
    assert [s.frame_index for s in steps if s.track_id == "late"] == [5, 6, 7]
    assert [s.frame_index for s in steps if s.track_id == "early"] == list(range(8))
    engine.close()


def test_session_errors_and_cleanup(model, video):
    engine = Sam2Engine.for_tests(model)
    with pytest.raises(EngineError, match="no video is open"):
        engine.add_points(0, "1", [(5, 5)], [1])
    with pytest.raises(EngineError, match="256 px"):
        engine.open(video, image_size=512)
    engine.open(video)
    spill = engine._spill
    with pytest.raises(EngineError, match="frame 99"):
        engine.add_points(99, "1", [(5, 5)], [1])
    with pytest.raises(EngineError, match="outside"):
        engine.add_points(0, "1", [(5000, 5)], [1])
    with pytest.raises(EngineError, match="mask is"):
        engine.add_mask(0, "1", np.zeros((3, 3), bool))
    with pytest.raises(EngineError, match="no prompt yet"):
        next(engine.propagate(["ghost"], start=0))
    engine.add_box(0, "1", (40, 40, 120, 120))
    engine.add_mask(0, "2", _disc(video, 0, 1))
    assert engine.track_ids() == ["1", "2"]
    engine.remove_track("1")
    assert engine.track_ids() == ["2"] and list(engine._state) == ["2"]
    engine.reset()
    assert engine.track_ids() == [] and engine.held().memories == frozenset()
    engine.close()
    assert spill is not None and not __import__("os").path.exists(spill)
