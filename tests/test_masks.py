import io

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as _coco

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


# -- counts checks (issue 10 item 2) -----------------------------------------------------------
def _runs_of(mask: np.ndarray) -> list[int]:
    """Run lengths of a mask, column-major, background first: computed from the pixels."""
    flat = mask.ravel(order="F").astype(np.int8)
    edges = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate(([0], edges, [flat.size]))).tolist()
    return ([0] + runs) if flat.size and flat[0] else runs


def _write_counts(runs: list[int]) -> str:
    """COCO's string encoding of run lengths, written here independently of pycocotools."""
    out = []
    for i, run in enumerate(runs):
        x = run - runs[i - 2] if i > 2 else run
        while True:
            c = x & 0x1F
            x >>= 5
            more = not ((x == 0 and not c & 0x10) or (x == -1 and c & 0x10))
            out.append(chr(48 + (c | 0x20 if more else c)))
            if not more:
                break
    return "".join(out)


def test_run_lengths_match_the_pixels_of_random_masks():
    rng = np.random.default_rng(7)
    for trial in range(1500):
        h, w = int(rng.integers(1, 50)), int(rng.integers(1, 50))
        if trial % 3:
            mask = rng.random((h, w)) < rng.random()
        else:  # a block: long runs, several characters per value
            mask = np.zeros((h, w), bool)
            mask[rng.integers(0, h):, rng.integers(0, w):] = True
        rle = masks.encode(mask)
        assert masks.run_lengths(rle["counts"]).tolist() == _runs_of(mask), (trial, h, w)
        masks.check(rle)


def test_run_lengths_read_what_pycocotools_writes_and_reads():
    rng = np.random.default_rng(11)
    for trial in range(1500):
        runs = rng.integers(0, 2 ** 23 if trial % 2 else 40, size=int(rng.integers(1, 12))).tolist()
        total = sum(runs)
        coco = _coco.frPyObjects({"size": [1, total], "counts": runs}, 1, total)
        assert masks.run_lengths(coco["counts"]).tolist() == runs, runs
        assert _write_counts(runs) == coco["counts"].decode()
    # six-character values (up to 2**29), beyond what pycocotools can write without overflowing its buffer
    for trial in range(300):
        runs = rng.integers(0, 2 ** 28, size=int(rng.integers(1, 8))).tolist()
        text = _write_counts(runs)
        assert masks.run_lengths(text).tolist() == runs
        rle = {"size": [1, sum(runs)], "counts": text.encode()}
        assert int(_coco.area([rle])[0]) == sum(runs[1::2])   # pycocotools reads the same runs


BAD_COUNTS = [
    ("02", "RLE counts sum to 2 pixel(s), not 4x4 = 16"),
    ("", "RLE counts sum to 0 pixel(s), not 4x4 = 16"),
    ("0:0:0:0:0:", "RLE counts sum to 150 pixel(s), not 4x4 = 16"),   # deltas: 10, 20, 30, ...
    ("0~2", "RLE counts do not decode: character '~' at offset 1 is outside '0'..'o'"),
    ("0 2", "RLE counts do not decode: character ' ' at offset 1 is outside '0'..'o'"),
    ("1b", "RLE counts do not decode: the string ends inside a value (truncated?)"),
    ("11O1", "RLE counts do not decode: run 2 is negative (-1)"),
    ("1PPPPPP0", "RLE counts do not decode: the value at offset 1 is longer than 6 characters"),
    ("1é", "RLE counts do not decode: the string holds non-ASCII characters"),
    (b"0\xe92", "RLE counts do not decode: character 'é' at offset 1 is outside '0'..'o'"),
    ("0;PPPPPP0", "RLE counts do not decode: the value at offset 2 is longer than 6 characters"),
    ("<0~b", "RLE counts do not decode: character '~' at offset 2 is outside '0'..'o'"),   # before the cut
    ([3, 20], "RLE counts sum to 23 pixel(s), not 4x4 = 16"),
    ([3, -1, 14], "RLE counts do not decode: uncompressed counts must be integers >= 0"),
]


@pytest.mark.parametrize("counts, message", BAD_COUNTS)
def test_check_names_what_is_wrong_with_the_counts(counts, message):
    with pytest.raises(DataError) as err:
        masks.check({"size": [4, 4], "counts": counts})
    assert str(err.value) == message


def _sound_rles(rng) -> list[tuple[dict, list[int]]]:
    """Sound RLEs with their runs: random masks of many sizes (1x1 and odd ones among them),
    blocks, all-background, all-foreground, runs longer than 2**20 (five characters a value)
    and six-character values written by `_write_counts` (beyond what pycocotools writes)."""
    out = []
    for trial in range(400):
        h, w = (1, 1) if trial % 50 == 0 else (int(rng.integers(1, 70)), int(rng.integers(1, 70)))
        kind = trial % 5
        if kind == 0:
            mask = np.zeros((h, w), bool)
        elif kind == 1:
            mask = np.ones((h, w), bool)
        elif kind == 2:
            mask = np.zeros((h, w), bool)
            mask[rng.integers(0, h):, rng.integers(0, w):] = True
        else:
            mask = rng.random((h, w)) < rng.random()
        out.append((masks.encode(mask), _runs_of(mask)))
    for h, w, fg in [(1100, 1000, (slice(1090, 1095), slice(990, 1000))), (1031, 1029, (slice(0, 3), slice(0, 1))),
                     (1024, 1025, (slice(0, 1024), slice(0, 1025)))]:
        mask = np.zeros((h, w), bool)
        mask[fg] = True
        out.append((masks.encode(mask), _runs_of(mask)))
        assert max(out[-1][1]) > 2 ** 20
    for _ in range(40):
        runs = rng.integers(0, 2 ** 28, size=int(rng.integers(1, 8))).tolist()
        out.append(({"size": [1, sum(runs)], "counts": _write_counts(runs)}, runs))
    return out


def test_batched_parse_reads_every_string_as_pycocotools_does():
    rng = np.random.default_rng(5)
    sound = _sound_rles(rng)
    order = rng.permutation(len(sound))
    rles = [sound[i][0] for i in order]
    runs, bounds, _, bad, why = masks._parse_counts([r["counts"] for r in rles])
    assert (bad, why) == (len(rles), None)
    coco = [{"size": r["size"], "counts": r["counts"].encode()} for r in rles]
    for k, i in enumerate(order):
        rle, want = sound[i]
        got = runs[bounds[k]:bounds[k + 1]]
        assert got.tolist() == want, (k, rle)
        h, w = rle["size"]
        if h * w <= 2 ** 22:   # pycocotools decodes the same pixels
            pixels = np.repeat(np.arange(got.size) % 2, got).astype(np.uint8).reshape((h, w), order="F")
            assert np.array_equal(_coco.decode(coco[k]), pixels), (k, rle)
    areas = [int(a) for i in range(0, len(coco), 200) for a in _coco.area(coco[i:i + 200])]  # overflows at 256
    masks._CHECKED.clear()
    assert masks.counts_problem(rles) is None
    assert all((r["counts"], *r["size"]) in masks._CHECKED for r in rles)
    assert masks.area(rles).tolist() == areas          # from the check
    masks._CHECKED.clear()
    assert masks.area(rles).tolist() == areas          # checked there, then pycocotools


@pytest.mark.parametrize("counts, message", BAD_COUNTS)
def test_batched_check_names_the_first_bad_rle_as_the_single_check_does(counts, message):
    """A bad RLE among sound ones of other sizes, and before others bad in other ways: the
    batch names it, with the single check's message, and keeps none after it."""
    rng = np.random.default_rng(len(message))
    sound = [rle for rle, _ in _sound_rles(rng)[:60]]
    bad = {"size": [4, 4], "counts": counts}
    later = [{"size": [4, 4], "counts": "1b"}, {"size": [3, 3], "counts": "02"}, {"size": [4, 4], "counts": "0~"}]
    for at in (0, 1, 17, 60):
        masks._CHECKED.clear()
        batch = sound[:at] + [bad] + later + sound[at:]
        assert masks.counts_problem(batch) == (at, message)
        before = {(r["counts"], *r["size"]) for r in sound[:at]}
        after = {(r["counts"], *r["size"]) for r in sound[at:]} - before
        assert before <= masks._CHECKED.keys() and not after & masks._CHECKED.keys()
        assert len(after) > 10 or at == len(sound)
        masks._CHECKED.clear()
        with pytest.raises(DataError) as err:
            masks.area(batch)
        assert str(err.value) == message
    masks._CHECKED.clear()
    assert masks.counts_problem(sound) is None


def test_codec_refuses_bad_counts_before_pycocotools():
    """Before the check: decode returned uninitialised memory, area 2, and union never returned."""
    good = masks.encode(np.eye(4, dtype=bool))
    short = {"size": [4, 4], "counts": "02"}
    for call in (lambda: masks.decode(short), lambda: masks.area([good, short]), lambda: masks.bbox([short]),
                 lambda: masks.union([good, short]), lambda: masks.union([short, good])):
        with pytest.raises(DataError, match=r"^RLE counts sum to 2 pixel\(s\), not 4x4 = 16$"):
            call()
    with pytest.raises(DataError, match=r"^cannot unite RLEs of different sizes \[\(3, 4\), \(4, 4\)\]$"):
        masks.union([good, masks.encode(np.eye(3, 4, dtype=bool))])
    assert masks.union([good, good]) == good


def test_png_whose_chunk_crc_fails_is_an_error(tmp_path):
    """Before: Pillow decoded the flipped byte inside IDAT to wrong pixels, without an error."""
    mask = np.array([[0, 1, 1, 1, 0, 0], [0, 0, 0, 0, 0, 1], [0, 1, 0, 1, 0, 0], [1, 0, 1, 1, 0, 0]], bool)
    data = bytearray(masks.png_bytes(np.where(mask, 255, 0).astype(np.uint8)))
    idat = data.index(b"IDAT")
    assert masks.png_crc_error(bytes(data)) is None
    data[idat + 4 + 6] ^= 0x40          # still a valid zlib stream: other pixels
    with Image.open(io.BytesIO(bytes(data))) as im:
        assert (np.asarray(im) != 0).tolist() != mask.tolist()
    path = tmp_path / "m.png"
    path.write_bytes(bytes(data))
    with pytest.raises(DataError) as err:
        masks.read_png(path, video="v1")
    assert str(err.value) == (f"{path}: video 'v1': field 'mask': mask PNG is corrupt: chunk 'IDAT' at byte "
                              f"{idat - 4} fails its CRC check")
