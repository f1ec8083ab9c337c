"""Codec motion: a textured square moving +4 px/frame over a static textured background."""
import json
import math
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from longrvos_data.baseline import motion
from longrvos_data.baseline.motion import STD, Motion, MotionParams
from longrvos_data.errors import DataError
from longrvos_data.schema import Frame, Video

SPEED = 4
SQUARE = 48


def _texture(rng, h, w):
    # smooth-ish texture so the encoder finds real matches (pure noise makes it intra-code blocks)
    noise = rng.integers(0, 256, (h // 4 + 1, w // 4 + 1, 3), dtype=np.uint8)
    return cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC)


def moving_square(folder: Path, *, frames: int, height: int, width: int, x0: int = 20, y0: int = 30) -> Video:
    """Frames of a square moving +SPEED px/frame to the right; its top-left x at frame t is x0 + SPEED t."""
    rng = np.random.default_rng(7)
    background = _texture(rng, height, width)
    square = _texture(rng, SQUARE, SQUARE)
    folder.mkdir(parents=True, exist_ok=True)
    items = []
    for t in range(frames):
        image = background.copy()
        x = x0 + SPEED * t
        image[y0:y0 + SQUARE, x:x + SQUARE] = square[:, :max(0, min(SQUARE, width - x))]
        path = folder / f"{t:05d}.png"  # lossless, so the test sees only the codec
        cv2.imwrite(str(path), image)
        items.append(Frame(f"{t:05d}", path))
    return Video(dataset="synthetic", split="valid", video_id="square", frames=tuple(items),
                 height=height, width=width, tracks=(), expressions=())


@pytest.mark.parametrize("height,width", [(144, 256), (135, 241)])
def test_square_moves_right_at_four_pixels(tmp_path, height, width):
    video = moving_square(tmp_path / "frames", frames=30, height=height, width=width)
    result = motion.extract(video)
    rows, cols = math.ceil(height / 16), math.ceil(width / 16)
    assert result.mv.shape == (30, 2, rows, cols) and result.mv.dtype == np.float32
    assert result.frame_types[0] == "I" and result.frame_types[12] == "I" and result.frame_types[24] == "I"
    assert set(result.frame_types) == {"I", "P"}
    assert result.keyframes == (0, 12)  # I at 24 has no I 12 frames later in 30 frames
    expected = SPEED / width / STD[0]
    inside, far = [], []
    for t in range(1, 30):
        if result.frame_types[t] == "I":
            assert not result.mv[t].any()
            continue
        x = 20 + SPEED * t
        # blocks wholly inside the square at frame t (destination positions)
        r0, r1 = math.ceil(30 / 16), (30 + SQUARE) // 16
        c0, c1 = math.ceil(x / 16), (x + SQUARE) // 16
        inside.extend(result.mv[t, 0, r0:r1, c0:c1].ravel())
        # background blocks at least 2 blocks away from the square
        mask = np.ones((rows, cols), bool)
        mask[max(0, r0 - 3):r1 + 3, max(0, c0 - 3):c1 + 3] = False
        far.extend(result.mv[t, :, mask].ravel())
    assert len(inside) > 20
    assert abs(np.median(inside) - expected) <= 0.1 * expected
    assert np.count_nonzero(far) == 0


def test_keyframes_every_gop(tmp_path):
    video = moving_square(tmp_path / "frames", frames=40, height=96, width=224, x0=4)
    result = motion.extract(video)
    assert [i for i, t in enumerate(result.frame_types) if t == "I"] == [0, 12, 24, 36]
    assert result.keyframes == (0, 12, 24)


def test_keyframe_rule_as_the_public_loaders():
    assert motion.keyframes(list("IPPPPPPPPPPPIPPPPPPPPPPPIPP")) == [0, 12]
    assert motion.keyframes(list("PPIPPPPPPPPPPPIPPPPPPPPPPPPPI")) == [0, 2]  # frame 0 added
    assert motion.keyframes(list("IPPPIPPPPPPPPPPPI")) == [0, 4]
    assert motion.keyframes(list("IPP")) == [0]
    assert motion.keyframes([]) == []


def _public_pooling(vectors, h, w, block=16):
    """The public extractor's steps, transcribed: dense map at destinations, pad -1e4, max-pool."""
    mv = np.ones((h, w, 2)) * -10000
    pos = np.stack([vectors["dst_x"], vectors["dst_y"]], 1).clip((0, 0), (w - 1, h - 1))
    vals = vectors["source"][:, None] * np.stack([vectors["motion_x"], vectors["motion_y"]], 1) \
        / vectors["motion_scale"][:, None]
    vals = vals.astype(np.float64)
    vals[:, 0] /= w
    vals[:, 1] /= h
    vals = vals / np.array([STD])
    mv[pos[:, 1], pos[:, 0]] = vals
    ph, pw = math.ceil(h / block) * block, math.ceil(w / block) * block
    padded = np.full((ph, pw, 2), -10000.0)
    padded[:h, :w] = mv
    pooled = padded.reshape(ph // block, block, pw // block, block, 2).max(axis=(1, 3))
    pooled[pooled < -1000] = 0.0
    return pooled.transpose(2, 0, 1).astype(np.float32)


def test_pooling_equals_the_public_extractor():
    rng = np.random.default_rng(3)
    dtype = [("source", "<i4"), ("w", "u1"), ("h", "u1"), ("src_x", "<i2"), ("src_y", "<i2"), ("dst_x", "<i2"),
             ("dst_y", "<i2"), ("flags", "<u8"), ("motion_x", "<i4"), ("motion_y", "<i4"), ("motion_scale", "<u2")]
    h, w = 97, 161
    # unique destinations, some beyond the frame's edge (clipped), partitions of 4..16 px
    xs, ys = np.meshgrid(np.arange(2, w + 8, 4), np.arange(2, h + 8, 4))
    n = xs.size
    vec = np.zeros(n, dtype=dtype)
    vec["source"] = -1
    vec["dst_x"], vec["dst_y"] = xs.ravel(), ys.ravel()
    vec["motion_x"] = rng.integers(-64, 65, n)
    vec["motion_y"] = rng.integers(-64, 65, n)
    vec["motion_scale"] = 4
    keep = rng.random(n) < 0.6
    vec = vec[keep]
    np.testing.assert_allclose(motion.pool_vectors(vec, h, w), _public_pooling(vec, h, w), rtol=1e-6)
    assert not motion.pool_vectors(vec[:0], h, w).any()


def test_cli_caches_and_is_atomic(tmp_path):
    root = tmp_path / "long_rvos"
    moving_square(root / "valid" / "JPEGImages" / "sq", frames=14, height=96, width=128)
    (root / "valid" / "meta_expressions.json").write_text(json.dumps({"videos": {"sq": {
        "frames": [f"{t:05d}" for t in range(14)],
        "expressions": {"0": {"exp": "the square", "obj_id": 1, "type": "dynamic"}}}}}))
    out = tmp_path / "motion"
    run = [sys.executable, "-m", "longrvos_data.cli", "baseline", "extract-motion", str(root), "--split", "valid",
           "--out", str(out), "--no-progress"]
    first = subprocess.run(run, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    assert "1 video(s) written" in first.stdout
    saved = Motion.load(out / "sq.npz")
    assert saved.mv.shape == (14, 2, 6, 8) and saved.keyframes == (0,)
    assert saved.params_hash == MotionParams().hash()
    assert sorted(p.name for p in out.iterdir()) == ["sq.npz"]  # no temporary file left
    again = subprocess.run(run, capture_output=True, text=True)
    assert again.returncode == 0 and "0 video(s) written, 1 already current" in again.stdout
    assert MotionParams(refs=3).hash() != MotionParams().hash()


def test_missing_frame_names_file_and_video(tmp_path):
    video = moving_square(tmp_path / "frames", frames=3, height=96, width=128)
    video.frames[1].path.unlink()
    with pytest.raises(DataError, match="frame image is missing") as err:
        motion.extract(video)
    assert "00001.png" in str(err.value) and "'square'" in str(err.value) and "frames[1]" in str(err.value)


def _square_ratios(result, width):
    """Vectors of the blocks inside the square, in units of the true +4 px/frame."""
    unit = SPEED / width / STD[0]
    out = []
    for t in range(1, result.mv.shape[0]):
        if result.frame_types[t] == "P":
            x = 20 + SPEED * t
            out.extend(result.mv[t, 0, 2:(30 + SQUARE) // 16, math.ceil(x / 16):(x + SQUARE) // 16].ravel() / unit)
    return np.array(out)


def test_one_reference_frame_keeps_vectors_per_frame(tmp_path):
    """libx264's default 3 references let blocks point two frames back (+8 px): refs=1 does not."""
    video = moving_square(tmp_path / "frames", frames=30, height=144, width=256)
    one = _square_ratios(motion.extract(video), 256)
    three = _square_ratios(motion.extract(video, MotionParams(refs=3)), 256)
    assert np.all(np.abs(one - 1) < 0.3)
    assert np.count_nonzero(np.abs(three - 2) < 0.3) >= 10


def test_on_error_skip_writes_the_good_videos_and_exits_3(tmp_path):
    root = tmp_path / "long_rvos"
    videos = {}
    for vid in ("good", "bad"):
        moving_square(root / "valid" / "JPEGImages" / vid, frames=3, height=96, width=128)
        videos[vid] = {"frames": [f"{t:05d}" for t in range(3)],
                       "expressions": {"0": {"exp": "the square", "obj_id": 1, "type": "dynamic"}}}
    (root / "valid" / "meta_expressions.json").write_text(json.dumps({"videos": videos}))
    (root / "valid" / "JPEGImages" / "bad" / "00001.png").write_bytes(b"not an image")
    out = tmp_path / "motion"
    run = subprocess.run([sys.executable, "-m", "longrvos_data.cli", "baseline", "extract-motion", str(root),
                          "--out", str(out), "--on-error", "skip"], capture_output=True, text=True)
    assert run.returncode == 3, run.stderr
    assert "1 skipped (--on-error skip), not written" in run.stderr and "'bad'" in run.stderr
    assert sorted(p.name for p in out.iterdir()) == ["good.npz"]


def test_saved_motion_is_the_same_bytes_every_time(tmp_path):
    mv = np.arange(2 * 2 * 3 * 4, dtype=np.float32).reshape(2, 2, 3, 4)
    m = Motion(mv, ("I", "P"), (0,), "abc")
    m.save(tmp_path / "a.npz")
    m.save(tmp_path / "b.npz")
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    back = Motion.load(tmp_path / "a.npz")
    assert np.array_equal(back.mv, mv) and back.frame_types == ("I", "P") and back.keyframes == (0,)
    with np.load(tmp_path / "a.npz") as z:                 # a plain .npz, as numpy writes it
        assert sorted(z.files) == ["frame_types", "keyframes", "mv", "params_hash"]
