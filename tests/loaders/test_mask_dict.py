"""The streaming mask_dict index: scanner correctness, build once / reuse, lazy reads, writer."""
from __future__ import annotations

import io
import json
import os
import random
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as _coco

from longrvos_data import DataError, masks
from longrvos_data.loaders import mask_dict as md


def _entries(data: bytes) -> dict:
    """What `scan` reports, parsed back with json (the oracle is json.loads of the whole text)."""
    out = {}

    def on_entry(key, start, stop, scalar):
        raw = data[start:stop]
        if scalar:
            raw = raw.strip().rstrip(b",").strip()
        out[key] = json.loads(raw)

    count = md.scan(io.BytesIO(data), file="x.json", on_entry=on_entry)
    assert count == len(out) or len(set(out)) < count  # duplicate keys are reported twice
    return out


def _random_doc(rng: random.Random) -> dict:
    # COCO counts use chars 48..111, which include '\\', '[' and ']'; add JSON's own troublemakers.
    alphabet = [chr(c) for c in range(48, 112)] + ['"', "\\", "{", "}", " ", ":", ",", "\u00e9", "\n"]

    def text():
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 10)))

    def value(depth=0):
        r = rng.random()
        if depth > 3 or r < 0.25:
            return rng.choice([None, 0, -7, 2.5, True, False, text()])
        if r < 0.65:
            return [value(depth + 1) for _ in range(rng.randint(0, 4))]
        return {text(): value(depth + 1) for _ in range(rng.randint(0, 3))}

    return {f"{text()}{i}": value() for i in range(rng.randint(0, 6))}


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 1 << 20])
def test_scan_matches_json_on_random_documents(monkeypatch, chunk):
    monkeypatch.setattr(md, "CHUNK_BYTES", chunk)
    rng = random.Random(chunk)
    for _ in range(120):
        doc = _random_doc(rng)
        indent = rng.choice([None, 0, 2])
        text = json.dumps(doc, indent=indent, ensure_ascii=rng.random() < 0.5,
                          separators=rng.choice([(",", ":"), (", ", ": "), (" ,\n", " :\t")]) if indent is None
                          else None)
        data = rng.choice([b"", b" \n", b"\xef\xbb\xbf"]) + text.encode() + rng.choice([b"", b"\n  "])
        assert _entries(data) == doc


def test_scan_real_rles_with_backslashes(monkeypatch):
    # RLE counts strings contain '\\' (escaped in JSON) and brackets: find such masks.
    rng = np.random.default_rng(0)
    rles = []
    while len(rles) < 30:
        m = np.zeros((48, 64), dtype=bool)
        for _ in range(3):
            y, x = rng.integers(0, 40), rng.integers(0, 56)
            m[y:y + rng.integers(1, 30), x:x + rng.integers(1, 30)] = True
        rle = masks.encode(m)
        if "\\" in rle["counts"]:
            rles.append(rle)
    doc = {str(i): [rles[i], None, rles[(i + 1) % 30]] for i in range(30)}
    data = json.dumps(doc).encode()
    for chunk in (7, 13, 4096):
        monkeypatch.setattr(md, "CHUNK_BYTES", chunk)
        assert _entries(data) == doc


@pytest.mark.parametrize("text, key, what", [
    (b"", None, "empty"),
    (b"[1, 2]", None, "expected a JSON object"),
    (b'{"1": [null, {"size": [2, 3], "cou', "1", "string is not closed"),
    (b'{"1": [null, null', "1", "entry '1' is not closed"),
    (b'{"1": [null], "2": [', "2", "entry '2' is not closed"),
    (b'{"1": [null]', None, "top-level object is not closed"),
    (b'{"1": [null]} trailing', None, "data after the end"),
    (b'{"1": [null]]', None, "unbalanced"),
    (b'{[null]}', None, "value without a key"),
])
def test_scan_rejects_truncated_or_invalid(monkeypatch, text, key, what):
    for chunk in (1, 4, 1 << 20):
        monkeypatch.setattr(md, "CHUNK_BYTES", chunk)
        with pytest.raises(DataError, match=what) as info:
            md.scan(io.BytesIO(text), file="/data/mask_dict.json", on_entry=lambda *a: None)
        assert info.value.file == "/data/mask_dict.json"
        assert "/data/mask_dict.json" in str(info.value)
        if key is not None:
            assert info.value.field == f"mask_dict[{key}]"


def _write_mask_dict(path: Path, n: int = 4, frames: int = 3, size=(4, 6)) -> dict:
    doc = {}
    for k in range(n):
        m = np.zeros(size, dtype=bool)
        m[k % size[0], : k + 1] = True
        doc[str(100 + k)] = [masks.encode(m), None, masks.encode(~m)][:frames]
    path.write_text(json.dumps(doc))
    return doc


def test_index_built_once_and_reused(tmp_path):
    src = tmp_path / "mask_dict.json"
    doc = _write_mask_dict(src)
    before = md.build_count()
    index = md.open_index(src)
    assert index.read("101") == doc["101"]
    assert md.build_count() == before + 1
    stored = md.index_path(src)
    assert stored.is_file() and stored.parent == tmp_path / "cache" / "mask_dict"
    mtime = stored.stat().st_mtime_ns
    # A fresh object (as in a new process) reuses the file: no second scan.
    md.clear_open_indexes()
    again = md.MaskDictIndex(src)
    assert again.read("103") == doc["103"] and len(again) == 4 and "100" in again and "999" not in again
    assert md.build_count() == before + 1
    assert stored.stat().st_mtime_ns == mtime
    assert sorted(again.keys()) == sorted(doc)


def test_index_rebuilt_when_the_file_changes(tmp_path):
    src = tmp_path / "mask_dict.json"
    _write_mask_dict(src)
    index = md.open_index(src)
    index.ensure()
    before = md.build_count()
    doc = _write_mask_dict(src, n=6)
    os.utime(src, ns=(src.stat().st_atime_ns, src.stat().st_mtime_ns + 10_000_000))
    assert index.read("105") == doc["105"]          # the open index notices the change
    assert md.build_count() == before + 1
    assert len(md.MaskDictIndex(src)) == 6


def test_failed_build_leaves_no_index_and_is_not_repeated(tmp_path):
    src = tmp_path / "mask_dict.json"
    src.write_bytes(json.dumps({"1": [None, None], "2": [None, None]}).encode()[:-6])
    index = md.MaskDictIndex(src)
    with pytest.raises(DataError, match="not closed") as info:
        index.ensure()
    assert str(src) in str(info.value) and info.value.field == "mask_dict[2]"
    assert not md.index_path(src).exists()
    assert list((tmp_path / "cache" / "mask_dict").iterdir()) == []   # no temporary file left
    before = md.build_count()
    with pytest.raises(DataError):
        index.ensure()  # same file: the stored error is raised again, without a new scan
    assert md.build_count() == before


def test_reads_only_the_requested_entries(tmp_path):
    src = tmp_path / "mask_dict.json"
    doc = _write_mask_dict(src)
    index = md.open_index(src)
    index.ensure()
    # Corrupt entry 102 in place (same size, same mtime): the index is reused as is.
    st = src.stat()
    data = src.read_bytes()
    start = data.index(b'"102": ') + len(b'"102": ')
    broken = data[:start] + b"#" * 10 + data[start + 10:]
    src.write_bytes(broken)
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))
    md.clear_open_indexes()
    index = md.open_index(src)
    assert index.read_many(["100", "103"]) == {"100": doc["100"], "103": doc["103"]}
    assert set(index.reads) == {"100", "103"}
    with pytest.raises(DataError, match="invalid JSON") as info:
        index.read("102", video="v")
    assert info.value.field == "mask_dict[102]" and info.value.video == "v" and str(src) in str(info.value)
    with pytest.raises(KeyError):
        index.read("7")


def test_fetch_tracks_checks_every_rle(tmp_path):
    src = tmp_path / "mask_dict.json"
    good = masks.encode(np.ones((4, 6), dtype=bool))
    wrong = masks.encode(np.ones((5, 6), dtype=bool))
    src.write_text(json.dumps({"1": [good, None], "2": [good, wrong], "3": [good], "4": [good, {"size": [4, 6]}],
                               "5": {"size": [4, 6]}}))
    index = md.open_index(src)
    got = index.fetch_tracks(["1"], video="v", num_frames=2, height=4, width=6)
    assert got == {"1": [good, None]}
    cases = [("2", "mask_dict[2][1]", r"RLE size \[5, 6\] differs from the video's \[4, 6\]"),
             ("3", "mask_dict[3]", "has 1 item"),
             ("4", "mask_dict[4][1]", "expected an RLE"),
             ("5", "mask_dict[5]", "expected a list"),
             ("9", "mask_dict[9]", "anno_id 9 is not in the file")]
    for key, field, message in cases:
        with pytest.raises(DataError, match=message) as info:
            index.fetch_tracks(["1", key], video="vid7", num_frames=2, height=4, width=6)
        err = info.value
        assert (err.file, err.video, err.field) == (str(src), "vid7", field)
        assert "video 'vid7'" in str(err) and field in str(err) and str(src) in str(err)


def test_writer_streams_and_is_atomic(tmp_path):
    out = tmp_path / "out" / "mask_dict.json"
    with md.MaskDictWriter(out) as w:
        w.add("1", [None, {"size": [1, 1], "counts": "01"}])
        w.add("2", [])
        with pytest.raises(ValueError):
            w.add("1", [])
        assert w.bytes_written > 0 and not out.exists()
    assert json.loads(out.read_text()) == {"1": [None, {"size": [1, 1], "counts": "01"}], "2": []}
    with pytest.raises(RuntimeError):
        with md.MaskDictWriter(tmp_path / "out" / "other.json") as w:
            w.add("1", [None])
            raise RuntimeError("stop")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["mask_dict.json"]


def test_rle_lists_of_a_video_refuse_wrong_sizes(tmp_path):
    from longrvos_data.schema import Frame, RLEMaskSource, Track, Video
    good = masks.encode(np.ones((2, 3), dtype=bool))
    bad = masks.encode(np.ones((3, 3), dtype=bool))
    frames = [Frame(f"{i:05d}", tmp_path / f"{i}.jpg") for i in range(2)]
    video = Video("x", "train", "v1", frames, 2, 3, [Track("1"), Track("2")], [],
                  mask_source=RLEMaskSource({"1": [good, None], "2": [None, bad]}))
    assert md.rle_lists(video, ["1"]) == {"1": [good, None]}
    with pytest.raises(DataError, match="differs") as info:
        md.rle_lists(video, ["1", "2"])
    assert info.value.field == "masks[2][1]"


def test_fetch_tracks_refuses_counts_that_do_not_sum_to_the_frame(tmp_path):
    """Before: no error here; decoding gave uninitialised memory and ``masks.union`` spun for ever."""
    src = tmp_path / "mask_dict.json"
    good = masks.encode(np.ones((4, 6), dtype=bool))
    src.write_text(json.dumps({"1": [good, {"size": [4, 6], "counts": "02"}],
                               "2": [{"size": [4, 6], "counts": "0~"}, None]}))
    index = md.open_index(src)
    for key, field, message in [("1", "mask_dict[1][1]", "RLE counts sum to 2 pixel(s), not 4x6 = 24"),
                                ("2", "mask_dict[2][0]", "RLE counts do not decode: character '~' at offset 1 "
                                                         "is outside '0'..'o'")]:
        with pytest.raises(DataError) as info:
            index.fetch_tracks([key], video="vid7", num_frames=2, height=4, width=6)
        assert str(info.value) == f"{src}: video 'vid7': field '{field}': {message}"


def test_fetch_tracks_checks_the_counts_of_every_key_together(tmp_path):
    """All keys of a video in one pass: the first bad RLE in key order is named, and the areas
    of a sound video come from that check (equal to pycocotools')."""
    src = tmp_path / "mask_dict.json"
    rng = np.random.default_rng(2)
    tracks = {str(k): [masks.encode(rng.random((4, 6)) < 0.4) for _ in range(3)] for k in range(1, 4)}
    src.write_text(json.dumps({**tracks, "9": [tracks["1"][0], tracks["2"][1], {"size": [4, 6], "counts": "0~"}],
                               "8": [None, {"size": [4, 6], "counts": "04"}, None]}))
    index = md.open_index(src)
    masks._CHECKED.clear()
    got = index.fetch_tracks(["1", "2", "3"], video="v", num_frames=3, height=4, width=6)
    assert got == tracks
    flat = [r for k in ("1", "2", "3") for r in tracks[k]]
    assert masks.area(flat).tolist() == _coco.area([{**r, "counts": r["counts"].encode()} for r in flat]).tolist()
    for keys, field, message in [
            (["1", "9", "8"], "mask_dict[9][2]", "RLE counts do not decode: character '~' at offset 1 is outside '0'..'o'"),
            (["8", "9"], "mask_dict[8][1]", "RLE counts sum to 4 pixel(s), not 4x6 = 24")]:
        with pytest.raises(DataError) as info:
            index.fetch_tracks(keys, video="vid7", num_frames=3, height=4, width=6)
        assert str(info.value) == f"{src}: video 'vid7': field '{field}': {message}"


def test_fetch_tracks_unites_a_list_of_rles_only_when_asked(tmp_path):
    """ReVOS: a frame's item may be a list of RLEs, their union (VISA's loader sums them).
    Before: the list was refused as "expected an RLE"."""
    src = tmp_path / "mask_dict.json"
    a = np.zeros((4, 6), dtype=bool)
    a[0, :2] = True
    b = np.zeros((4, 6), dtype=bool)
    b[3, 4:] = True
    src.write_text(json.dumps({"1": [[masks.encode(a), masks.encode(b)], [], masks.encode(b)]}))
    index = md.open_index(src)
    got = index.fetch_tracks(["1"], video="v", num_frames=3, height=4, width=6, lists=True)["1"]
    assert masks.decode(got[0]).tolist() == (a | b).tolist()
    assert got[1] is None and got[2] == masks.encode(b)
    with pytest.raises(DataError, match=r"field 'mask_dict\[1\]\[0\]': expected an RLE"):
        index.fetch_tracks(["1"], video="v", num_frames=3, height=4, width=6)
    src.write_text(json.dumps({"1": [[masks.encode(a), {"size": [4, 6], "counts": "1"}], [], None]}))
    with pytest.raises(DataError) as info:
        md.open_index(src).fetch_tracks(["1"], video="v", num_frames=3, height=4, width=6, lists=True)
    assert str(info.value) == f"{src}: video 'v': field 'mask_dict[1][0][1]': RLE counts sum to 1 pixel(s), not 4x6 = 24"


def test_revos_item_given_as_a_list_of_rles_reads_as_their_union(tmp_path):
    from fixtures import fixture
    import longrvos_data

    rh = fixture("revos_hand")
    base = rh.build(tmp_path)
    doc = json.loads((base / "mask_dict.json").read_text())
    parts = [rh.art("#.....\n......\n......\n......"), rh.art("......\n......\n#.....\n......")]
    doc["1"][0] = [masks.encode(p) for p in parts]
    (base / "mask_dict.json").write_text(json.dumps(doc))
    video = longrvos_data.load(base, split="train")["train"].video("r1")
    assert video.frame_masks(0)["1"].tolist() == (parts[0] | parts[1]).tolist()
    assert video.frame_areas(0) == {"1": 2}
