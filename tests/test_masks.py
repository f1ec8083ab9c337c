import numpy as np
import pytest
from PIL import Image

from longrvos_data import masks
from longrvos_data.errors import DataError


def test_rle_round_trip_odd_size():
    m = np.zeros((37, 53), dtype=bool)
    m[3:9, 40:53] = True
    m[36, 0] = True
    rle = masks.encode(m)
    assert rle["size"] == [37, 53] and isinstance(rle["counts"], str)
    assert np.array_equal(masks.decode(rle), m)


def test_encode_accepts_uint8_and_any_nonzero():
    m = np.array([[0, 255, 1], [0, 0, 7]], dtype=np.uint8)
    assert masks.decode(masks.encode(m)).tolist() == [[False, True, True], [False, False, True]]


def test_decode_uncompressed_counts():
    # column-major runs of a 2x3 mask: 1 background, 2 foreground, 3 background
    rle = {"size": [2, 3], "counts": [1, 2, 3]}
    assert masks.decode(rle).tolist() == [[False, True, False], [True, False, False]]


def test_area_chunks_past_pycocotools_overflow():
    m = np.zeros((4, 5), dtype=bool)
    m[1, 1:4] = True
    rles = [masks.encode(m)] * 600
    assert masks.area(rles).tolist() == [3] * 600


def test_union_and_empty():
    a = np.zeros((3, 4), dtype=bool)
    b = np.zeros((3, 4), dtype=bool)
    a[0, 0] = True
    b[2, 3] = True
    u = masks.decode(masks.union([masks.encode(a), masks.encode(b)]))
    assert np.array_equal(u, a | b)
    assert masks.union([]) is None
    assert not masks.decode(masks.empty(3, 4)).any()


def test_is_rle():
    assert masks.is_rle({"size": [2, 2], "counts": "04"})
    assert not masks.is_rle({"size": [2], "counts": "04"})
    assert not masks.is_rle({"counts": "04"})
    assert not masks.is_rle(None)


def test_palette_png_keeps_ids(tmp_path):
    ids = np.array([[0, 1, 2], [255, 3, 0]], dtype=np.uint8)
    masks.write_palette_png(tmp_path / "a.png", ids)
    with Image.open(tmp_path / "a.png") as im:
        assert im.mode == "P"
    assert masks.read_png(tmp_path / "a.png").tolist() == ids.tolist()


def test_binary_png_is_0_255(tmp_path):
    m = np.array([[True, False]])
    masks.write_binary_png(tmp_path / "b.png", m)
    assert masks.read_png(tmp_path / "b.png").tolist() == [[255, 0]]


def test_read_png_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 10)
    with pytest.raises(DataError, match="bad.png.*video 'v1'.*cannot be decoded"):
        masks.read_png(bad, video="v1")
    with pytest.raises(DataError, match="missing"):
        masks.read_png(tmp_path / "nope.png", video="v1")


def test_davis_palette_first_colours():
    pal = masks.davis_palette()
    assert pal[:12] == (0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0)
