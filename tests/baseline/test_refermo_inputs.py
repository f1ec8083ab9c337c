"""ReferMo's inputs: sizes, keyframe motion, padding, and the public training augmentation."""
from __future__ import annotations

import numpy as np

from longrvos_data.baseline.inputs import augment, keyframe_motion, keyframe_sample, scaled_size
from longrvos_data.baseline.motion import Motion


def test_scaled_size_keeps_the_aspect_within_the_long_side():
    assert scaled_size(720, 1280, 360, 640) == (360, 640)
    assert scaled_size(720, 2560, 360, 640) == (180, 640)
    assert scaled_size(64, 96, 64, 96) == (64, 96)


def test_each_keyframe_takes_the_maps_after_it():
    mv = np.arange(5, dtype=np.float32)[:, None, None, None] * np.ones((5, 2, 2, 3), np.float32)
    maps, valid = keyframe_motion(Motion(mv, tuple("IPPPP"), (0, 3), "h"), [0, 3], 3)
    assert maps[0, :, 0, 0, 0].tolist() == [1, 2, 3] and valid[0].all()
    assert maps[1, :, 0, 0, 0].tolist() == [4, 0, 0] and valid[1].tolist() == [True, False, False]


def scene(height: int = 480, width: int = 640):
    frames = [np.full((height, width, 3), 100, np.uint8) for _ in range(2)]
    masks = np.zeros((2, height, width), bool)
    masks[:, :, : width // 2] = True                        # the left half
    motion = np.zeros((2, 3, 2, -(-height // 16), -(-width // 16)), np.float32)
    motion[:, :, 0], motion[:, :, 1] = 1.0, 0.5               # moving right and down
    return frames, masks, motion


def test_augmentation_is_the_public_recipe_and_consistent():
    flips = crops = 0
    for seed in range(200):
        frames, masks, motion = scene()
        out_frames, out_masks, out_motion, caption = augment(frames, masks, motion, "the dog on the left",
                                                             np.random.default_rng(seed))
        h, w = out_frames[0].shape[:2]
        assert out_masks.shape == (2, h, w) and out_masks.any() and all(f.shape == (h, w, 3) for f in out_frames)
        assert all(f.dtype == np.uint8 for f in out_frames)
        rows, cols = out_motion.shape[-2:]    # the 16-pixel blocks that cover the crop
        assert -(-h // 16) <= rows <= -(-h // 16) + 1 and -(-w // 16) <= cols <= -(-w // 16) + 1
        flipped = caption == "the dog on the right"
        assert flipped or caption == "the dog on the left"
        assert (out_motion[:, :, 0] == (-1.0 if flipped else 1.0)).all() and (out_motion[:, :, 1] == 0.5).all()
        if not out_masks.all():   # the target's side follows the flip
            assert out_masks[0, :, -1 if flipped else 0].all() and not out_masks[0, :, 0 if flipped else -1].any()
        flips += flipped
        crops += (h, w) != (480, 640)
        if (h, w) != (480, 640):   # a crop of 384-600 px at a short side of 400-600, here in original pixels
            assert 384 * 480 / 600 - 1 <= min(h, w) and max(h, w) <= 600 * 480 / 400 + 1
    assert 70 <= flips <= 130 and 70 <= crops <= 130
    a = augment(*scene()[:2], scene()[2], "left", np.random.default_rng(7))
    b = augment(*scene()[:2], scene()[2], "left", np.random.default_rng(7))
    assert all(np.array_equal(x, y) for x, y in zip(a[0], b[0])) and np.array_equal(a[1], b[1]) and a[3] == b[3]


def test_a_crop_that_loses_the_target_is_not_taken():
    frames, masks, motion = scene()
    masks[:] = False
    masks[:, 0, 0] = True                                   # one corner pixel
    sizes = set()
    for seed in range(40):
        out_frames, out_masks, _m, _c = augment(frames, masks, motion, "x", np.random.default_rng(seed))
        assert out_masks.any()
        sizes.add(out_frames[0].shape[:2])
    assert (480, 640) in sizes


def test_samples_resize_frames_masks_and_motion_to_model_size():
    frames, masks, motion = scene(240, 320)
    s = keyframe_sample(frames, motion, np.ones((2, 3), bool), short_side=120, max_size=200, masks=masks,
                        valid=np.ones(2, bool))
    assert s.pixels.shape == (2, 3, 120, 160) and s.masks.shape == (2, 120, 160) and s.motion.shape == (2, 3, 2, 8, 10)
    assert np.allclose(s.motion[:, :, 0], 1.0) and s.masks[:, :, :80].all() and not s.masks[:, :, 80:].any()
