"""J, F and the per-expression measures: values worked out by hand, then against the oracle."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from evalcase import art
from longrvos_data.eval.metrics import (MaskInfo, accuracy, boundary_radius, disk, jf, lvos_variance,
                                        matched_count, raw_accuracy_robustness, robustness, score_frame, seg2bmap,
                                        temporal_ious)


def blank(h=10, w=10):
    return np.zeros((h, w), dtype=bool)


def dot(y, x, h=10, w=10):
    m = blank(h, w)
    m[y, x] = True
    return m


# -- radius and disk ---------------------------------------------------------------------
@pytest.mark.parametrize("size, radius", [
    ((480, 854), 8),      # 0.008 * 979.6 = 7.84
    ((720, 1280), 12),    # 11.75
    ((1080, 1920), 18),   # 17.62
    ((480, 640), 7),      # 6.4
    ((600, 800), 8),      # exactly 8.0: ceil keeps 8
    ((37, 53), 1),        # odd small frame: 0.52
    ((1, 1), 1),
])
def test_boundary_radius(size, radius):
    assert boundary_radius(*size) == radius


@pytest.mark.parametrize("size, r", [((480, 854), 8), ((720, 1280), 12), ((1080, 1920), 18)])
def test_radius_decides_f_at_480p_720p_1080p(size, r):
    # Single pixels d columns apart: each boundary is a 2x2 block whose columns are x-1, x and
    # x+d-1, x+d. d = r: every column has one of the other's within r -> F = 1;
    # d = r+1: only the two facing columns are within r -> P = R = 1/2, F = 1/2; d = r+2: F = 0.
    h, w = size
    g = np.zeros(size, bool)
    g[h // 2, w // 2] = True
    for d, want in ((r, 1.0), (r + 1, 0.5), (r + 2, 0.0)):
        p = np.zeros(size, bool)
        p[h // 2, w // 2 + d] = True
        assert jf(g, p) == (0.0, want)


def test_disk_is_skimage_shape():
    assert disk(1).tolist() == [[0, 1, 0], [1, 1, 1], [0, 1, 0]]
    assert disk(2).tolist() == [[0, 0, 1, 0, 0],
                                [0, 1, 1, 1, 0],
                                [1, 1, 1, 1, 1],
                                [0, 1, 1, 1, 0],
                                [0, 0, 1, 0, 0]]
    d = disk(12)
    assert d.shape == (25, 25) and d[12, 0] == 1 and d[0, 12] == 1 and d[0, 11] == 0
    assert int(d.sum()) == 441  # lattice points with x^2 + y^2 <= 144


# -- boundary map ------------------------------------------------------------------------
def test_seg2bmap_single_pixel_is_the_2x2_block_towards_the_origin():
    b = seg2bmap(dot(4, 4))
    assert {tuple(p) for p in np.argwhere(b)} == {(3, 3), (3, 4), (4, 3), (4, 4)}


def test_seg2bmap_corner_pixel_uses_the_last_row_and_column_rules():
    b = seg2bmap(dot(9, 9))
    assert {tuple(p) for p in np.argwhere(b)} == {(8, 8), (8, 9), (9, 8)}


def test_seg2bmap_full_mask_has_no_boundary():
    assert not seg2bmap(np.ones((5, 7), bool)).any()


def test_seg2bmap_box():
    m = art("""
        ......
        .##...
        .##...
        ......
    """)
    expected = art("""
        ###...
        #.#...
        ###...
        ......
    """)
    assert np.array_equal(seg2bmap(m), expected)


# -- J and F on tiny hand-computed frames (radius 1 at 10x10: the plus-shaped disk) ------
def test_both_empty_scores_one():
    assert jf(blank(), blank()) == (1.0, 1.0)


def test_one_empty_scores_zero():
    assert jf(dot(4, 4), blank()) == (0.0, 0.0)
    assert jf(blank(), dot(4, 4)) == (0.0, 0.0)


def test_full_prediction_against_empty_truth_keeps_the_official_f_of_one():
    # A full mask has no boundary, so both boundaries are empty: F = 1 although J = 0.
    assert jf(blank(), np.ones((10, 10), bool)) == (0.0, 1.0)


def test_identical_masks():
    m = art("""
        .....
        .###.
        .###.
        .....
    """)
    assert jf(m, m) == (1.0, 1.0)


def test_two_pixels_apart_half_the_boundary_matches():
    # Bg = {(3,3),(3,4),(4,3),(4,4)}, Bp = {(3,5),(3,6),(4,5),(4,6)}; with r = 1 only the
    # columns 4 and 5 see each other: P = R = 2/4, F = 0.5; no overlap: J = 0.
    j, f = jf(dot(4, 4), dot(4, 6))
    assert (j, f) == (0.0, 0.5)


def test_diagonal_neighbours_radius_one_and_two():
    # Bg = {(3,3),(3,4),(4,3),(4,4)}, Bp = {(4,4),(4,5),(5,4),(5,5)}: (5,5) is sqrt(2) from
    # (4,4), outside the r = 1 disk; likewise (3,3) for the other side: P = R = 3/4.
    assert jf(dot(4, 4), dot(5, 5)) == (0.0, 0.75)
    assert jf(dot(4, 4), dot(5, 5), radius=2) == (0.0, 1.0)


def test_overlapping_boxes_j_by_hand():
    g = art("""
        ........
        .####...
        .####...
        ........
    """)
    p = art("""
        ........
        ...####.
        ...####.
        ........
    """)
    j, _ = jf(g, p)
    assert j == pytest.approx(4 / 12)


def test_corner_masks():
    corner = dot(9, 9)
    assert jf(corner, corner) == (1.0, 1.0)
    # Bg = {(8,8),(8,9),(9,8)} and Bp = {(0,0)}-block far away: nothing matches
    assert jf(corner, dot(0, 0)) == (0.0, 0.0)


def test_odd_size_frame():
    g = np.zeros((7, 3), bool)
    g[2:5, 1] = True
    p = np.zeros((7, 3), bool)
    p[3:6, 1] = True
    # r = ceil(0.008 * sqrt(58)) = 1. Bg = rows 1..4 x columns 0..1 (the last column has
    # seg ^ south = 0), Bp = rows 2..5 x columns 0..1: every boundary pixel has one of the
    # other's within one step, so F = 1, while J = 2 / 4.
    assert set(map(tuple, np.argwhere(seg2bmap(g)))) == {(y, x) for y in range(1, 5) for x in range(2)}
    assert jf(g, p) == (0.5, 1.0)


def test_wrong_sizes_raise():
    with pytest.raises(ValueError, match="differ in size"):
        jf(blank(4, 4), blank(4, 5))


# -- the bbox-cropped computation equals the full-frame oracle --------------------------------
def _random_mask(rng, h, w):
    kind = rng.integers(0, 6)
    if kind == 0:
        return np.zeros((h, w), bool)
    if kind == 1:
        return rng.random((h, w)) < rng.random() * 0.3
    if kind == 2:
        return np.ones((h, w), bool)
    m = np.zeros((h, w), np.uint8)
    for _ in range(int(rng.integers(1, 4))):
        cv2.ellipse(m, (int(rng.integers(-5, w + 5)), int(rng.integers(-5, h + 5))),
                    (int(rng.integers(0, w)), int(rng.integers(0, h))), 0, 0, 360, 1, -1)
    return m.astype(bool)


def test_cropped_equals_full_frame_oracle_on_random_masks(ref):
    rng = np.random.default_rng(7)
    for _ in range(600):
        h, w = int(rng.integers(1, 70)), int(rng.integers(1, 70))
        g, p = _random_mask(rng, h, w), _random_mask(rng, h, w)
        if rng.random() < 0.3:
            g = np.asfortranarray(g)          # pycocotools decodes column-major
        if rng.random() < 0.3:
            p = p.astype(np.uint8) * 255      # PNG predictions are uint8
        r = boundary_radius(h, w) if rng.random() < 0.6 else int(rng.integers(1, 20))
        s = score_frame(MaskInfo(g), MaskInfo(p), r)
        assert s.j == ref.db_eval_iou(g, p)
        assert s.f == ref.db_eval_boundary(g, p, bound_th=r), (h, w, r)


def test_matched_count_equals_dilation_at_720p(ref):
    h, w = 720, 1280
    yy, xx = np.ogrid[:h, :w]
    g = ((yy - 300) / 120.0) ** 2 + ((xx - 600) / 200.0) ** 2 <= 1
    rng = np.random.default_rng(0)
    for shift in (0, 3, 9, 11, 12, 13, 17, 40):
        p = np.roll(g, shift, axis=int(rng.integers(0, 2))) | (rng.random(g.shape) < 0.0005)
        r = boundary_radius(h, w)
        bg, bp = MaskInfo(g).boundary(2 * r + 1), MaskInfo(p).boundary(2 * r + 1)
        full_bg, full_bp = ref.seg2bmap(g), ref.seg2bmap(p)
        want = int((full_bp & cv2.dilate(full_bg.astype(np.uint8), ref.disk(r)).astype(bool)).sum())
        assert matched_count(bp, bg, r) == want
        assert jf(g, p) == (ref.db_eval_iou(g, p), ref.db_eval_boundary(g, p))


def test_mask_info_caches_and_handles_uint8():
    m = np.zeros((6, 8), np.uint8)
    m[1:3, 2:5] = 7
    info = MaskInfo(m)
    assert info.bbox == (1, 3, 2, 5) and info.area == 6
    assert info.boundary() is info.boundary()
    assert MaskInfo(np.zeros((3, 3), bool)).empty


# -- per-expression measures ------------------------------------------------------------------
def test_temporal_ious_by_hand():
    # frames: gt present in 0,1,2; pred in 1,2,3; J in the shared frames 0.5 and 1.0
    j = [0.0, 0.5, 1.0, 0.0]
    assert temporal_ious(j, [1, 1, 1, 0], [0, 1, 1, 1]) == (2 / 4, 1.5 / 4)
    assert temporal_ious([1.0, 1.0], [0, 0], [0, 0]) == (1.0, 1.0)
    assert temporal_ious([0.0], [1], [0]) == (0.0, 0.0)


def test_accuracy_and_robustness_by_hand():
    # 10 pixels; G = 3 pixels, P = 4 pixels, 2 shared: mismatches 3 + 4 - 4 = 3
    assert accuracy(2, 3, 4, 10) == pytest.approx(0.7)
    # 2 false-positive pixels, foreground of 5: 1 - 2/5
    assert robustness(2, 5) == pytest.approx(0.6)
    assert robustness(9, 5) == 0.0
    assert robustness(0, 0) == 1.0


def test_raw_revos_values_reproduce_the_official_uint8_arithmetic():
    gt = np.array([[1, 1, 0, 0]], np.uint8)
    pred = np.array([[255, 0, 255, 0]], np.uint8)
    a, r = raw_accuracy_robustness(gt, pred, foreground_area=2)
    # gt == pred only where both are 0: 1 of 4; (1 - gt) * pred = 255 at the false positive
    assert a == 0.25
    assert r == max(1 - 255 / (2 + 1e-6), 0.0) == 0.0


def test_lvos_variance_by_hand():
    # JF = [1, 0.5, 0]: mean 0.5, population variance (0.25 + 0 + 0.25) / 3 = 0.16666 -> 0.1667
    assert lvos_variance(np.array([1.0, 0.5, 0.0]), np.array([1.0, 0.5, 0.0])) == pytest.approx(math.sqrt(0.1667))
    assert math.isnan(lvos_variance(np.zeros(0), np.zeros(0)))
