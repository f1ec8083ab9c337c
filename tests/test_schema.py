from pathlib import Path

import numpy as np
import pytest

from longrvos_data import DataError, Expression, Frame, Track, Video
from longrvos_data.schema import RLEMaskSource, check_id
from longrvos_data import masks


def _video(**kw):
    base = dict(dataset="x", split="valid", video_id="v1", frames=[Frame("00000", Path("a.jpg"))],
                height=2, width=3, tracks=[Track("1")],
                expressions=[Expression("0", "the cat", ("1",), "static", "static")], source_file="meta.json")
    base.update(kw)
    return Video(**base)


@pytest.mark.parametrize("bad", ["../x", "a/b", "..", "", " v", "a\\b"])
def test_unsafe_ids_rejected(bad):
    with pytest.raises(DataError, match="unsafe or empty id"):
        check_id(bad, file="m.json", video=None, field="video_id")


def test_expression_naming_unknown_track():
    with pytest.raises(DataError, match=r"meta.json: video 'v1': field 'expressions.0': .*unknown object"):
        _video(expressions=[Expression("0", "x", ("9",), "static")])


def test_duplicate_tracks_and_frames():
    with pytest.raises(DataError, match="track ids are not unique"):
        _video(tracks=[Track("1"), Track("1")])
    with pytest.raises(DataError, match="listed twice"):
        _video(frames=[Frame("0", Path("a")), Frame("0", Path("b"))])


def test_unknown_kind():
    with pytest.raises(ValueError, match="kind"):
        Expression("0", "x", (), "funny")


def test_rle_source_lazy_and_absent():
    calls = []
    m = np.array([[1, 0, 0], [0, 0, 1]], dtype=bool)

    def fetch():
        calls.append(1)
        return {"1": [masks.encode(m), None]}

    v = _video(frames=[Frame("0", Path("a")), Frame("1", Path("b"))], mask_source=RLEMaskSource(fetch))
    assert not calls
    assert np.array_equal(v.frame_masks(0)["1"], m)
    assert v.frame_masks(1) == {}
    assert v.frame_areas(0) == {"1": 2}
    assert len(calls) == 1
    target = v.target_mask(v.expressions[0], v.frame_masks(0))
    assert np.array_equal(target, m)
    assert v.target_mask(v.expressions[0], {}) is None


def test_no_masks_is_a_clear_error():
    with pytest.raises(DataError, match="no masks"):
        _video().frame_masks(0)
