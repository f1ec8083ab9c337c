"""The clip dataset: seeded sampling, hand-checked targets, hf output vs raw folders, torch."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from longrvos_data import DataError
from longrvos_data.clips import ClipDataset, sample_frames
from longrvos_data.converters import hf
from longrvos_data.loaders import load
from longrvos_data.synth import generate

from fixtures import fixture

FIXTURES = Path(__file__).resolve().parent / "fixtures"


hand = fixture("hf_hand")


# -- sampling ------------------------------------------------------------------------------
def test_even_sampling_is_fixed():
    assert sample_frames(100, 4, mode="even").tolist() == [0, 33, 66, 99]
    assert sample_frames(3, 5, mode="even").tolist() == [0, 0, 1, 2, 2]


def test_uniform_sampling_takes_one_frame_per_segment():
    for seed in range(20):
        idx = sample_frames(40, 4, mode="uniform", rng=np.random.default_rng(seed))
        assert [i // 10 for i in idx.tolist()] == [0, 1, 2, 3]


def test_random_sampling_is_sorted_and_distinct():
    idx = sample_frames(10, 6, mode="random", rng=np.random.default_rng(1)).tolist()
    assert idx == sorted(set(idx)) and len(idx) == 6 and 0 <= idx[0] and idx[-1] < 10


def test_window_sampling_is_consecutive_with_stride():
    idx = sample_frames(50, 4, mode="window", stride=3, rng=np.random.default_rng(2)).tolist()
    assert [b - a for a, b in zip(idx, idx[1:])] == [3, 3, 3] and idx[-1] < 50
    assert sample_frames(5, 4, mode="window", stride=3).tolist() == [0, 1, 3, 4]  # too short: even spread


def test_unknown_sampling_is_refused():
    with pytest.raises(ValueError, match="sampling"):
        sample_frames(10, 2, mode="sometimes")


# -- items checked by hand -----------------------------------------------------------------
@pytest.fixture
def hand_hf(tmp_path):
    vids = hand.videos(tmp_path / "src")
    hf.write({"train": vids}, tmp_path / "out")
    return tmp_path / "out", vids


def test_hf_clip_has_the_hand_computed_target_and_the_source_pixels(hand_hf, tmp_path):
    out, _ = hand_hf
    clips = ClipDataset(out, split="train", num_frames=3, sampling="even")
    assert len(clips) == 4
    assert [(c.video_id, c.exp_id, c.text) for c in clips.items] == [
        ("v1", "0", "the dog"), ("v1", "1", "both animals"), ("v1", "2", "a unicorn"),
        ("v2", "e", "the dot that leaves")]
    item = clips[1]                                    # "both animals": a + b
    assert item["frame_indices"].tolist() == [0, 1, 2]
    assert item["frames"].shape == (3, 3, 4, 3) and item["frames"].dtype == np.uint8
    for k, want in enumerate(hand.EXPECTED_UNION[("v1", "1")]):
        assert np.array_equal(item["masks"][k], hand.art(want))
    assert item["valid"].tolist() == [True, True, True]
    dog = clips[0]
    assert dog["valid"].tolist() == [True, False, True] and not dog["masks"][1].any()
    assert clips[2]["valid"].tolist() == [False, False, False]
    jpeg = cv2.cvtColor(cv2.imread(str(tmp_path / "src/v1/f2.jpg")), cv2.COLOR_BGR2RGB)
    assert np.array_equal(item["frames"][2], jpeg)


def test_hf_and_raw_folders_give_the_same_clips(tmp_path):
    src = generate("long_rvos", tmp_path / "src", num_videos=2, num_frames=9, splits=["train"])
    hf.write(load(src, format="long_rvos").splits, tmp_path / "out")
    a = ClipDataset(tmp_path / "out", split="train", num_frames=4, seed=5)
    b = ClipDataset(src, split="train", num_frames=4, seed=5, format="long_rvos")
    assert len(a) == len(b) > 0
    for i in range(len(a)):
        x, y = a[i], b[i]
        assert (x["video_id"], x["exp_id"], x["text"]) == (y["video_id"], y["exp_id"], y["text"])
        for key in ("frame_indices", "frames", "masks", "valid"):
            assert np.array_equal(x[key], y[key]), (i, key)


def test_linked_frames_read_from_the_source_root(tmp_path):
    vids = hand.videos(tmp_path / "src")
    hf.write({"train": vids}, tmp_path / "out", link_frames=True, source_root=tmp_path / "src")
    embedded = tmp_path / "emb"
    hf.write({"train": vids}, embedded)
    a = ClipDataset(tmp_path / "out", split="train", num_frames=2)
    b = ClipDataset(embedded, split="train", num_frames=2)
    assert np.array_equal(a[3]["frames"], b[3]["frames"])


def test_sampling_depends_on_seed_and_epoch_only(tmp_path):
    src = generate("long_rvos", tmp_path / "src", num_videos=1, num_frames=30, splits=["train"])
    hf.write(load(src, format="long_rvos").splits, tmp_path / "out")
    a = ClipDataset(tmp_path / "out", split="train", num_frames=4, sampling="random", seed=3)
    b = ClipDataset(tmp_path / "out", split="train", num_frames=4, sampling="random", seed=3)
    first = [a.frame_indices(i).tolist() for i in range(len(a))]
    assert first == [b.frame_indices(i).tolist() for i in reversed(range(len(b)))][::-1]
    a.set_epoch(1)
    assert [a.frame_indices(i).tolist() for i in range(len(a))] != first


def test_resize_keeps_masks_binary(hand_hf):
    out, _ = hand_hf
    item = ClipDataset(out, split="train", num_frames=3, sampling="even", size=(6, 8))[1]
    assert item["frames"].shape == (3, 6, 8, 3) and item["masks"].shape == (3, 6, 8)
    assert item["masks"].dtype == bool
    assert np.array_equal(item["masks"][1], np.kron(hand.art(hand.EXPECTED_UNION[("v1", "1")][1]),
                                                    np.ones((2, 2), bool)))


def test_split_without_masks_needs_with_masks_false(tmp_path):
    hf.write({"test": hand.videos(tmp_path / "src", split="test", annotated=False)}, tmp_path / "out")
    with pytest.raises(DataError, match="with_masks=False"):
        ClipDataset(tmp_path / "out", split="test")
    item = ClipDataset(tmp_path / "out", split="test", with_masks=False, num_frames=2)[0]
    assert "masks" not in item and item["frames"].shape[0] == 2


def test_index_out_of_range(hand_hf):
    clips = ClipDataset(hand_hf[0], split="train", num_frames=2)
    with pytest.raises(IndexError):
        clips[4]
    assert clips[-1]["exp_id"] == "e"


# -- torch -----------------------------------------------------------------------------------
def test_torch_is_imported_only_when_asked_for(hand_hf):
    code = (f"import sys; from longrvos_data.clips import ClipDataset; "
            f"c = ClipDataset({str(hand_hf[0])!r}, split='train', num_frames=2); c[0]; "
            f"assert 'torch' not in sys.modules, 'torch imported'; print('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr[-2000:]


@pytest.mark.slow
def test_dataloader_with_two_workers_gives_the_same_items(tmp_path):
    import torch
    src = generate("long_rvos", tmp_path / "src", num_videos=2, num_frames=8, splits=["train"],
                   sizes=[(24, 32)])
    hf.write(load(src, format="long_rvos").splits, tmp_path / "out")
    # spawn pickles the dataset into fresh interpreters (file handles reopen there); fork copies it
    for source, fmt, context in ((tmp_path / "out", None, "spawn"), (src, "long_rvos", "fork")):
        clips = ClipDataset(source, split="train", num_frames=3, seed=9, format=fmt)
        clips[0]  # handles opened in the parent must not travel
        loader = torch.utils.data.DataLoader(clips.as_torch(), batch_size=2, num_workers=2,
                                             multiprocessing_context=context)
        batches = list(loader)
        assert sum(len(b["exp_id"]) for b in batches) == len(clips)
        first = batches[0]
        assert first["frames"].shape == (2, 3, 3, 24, 32) and first["frames"].dtype == torch.uint8
        assert first["masks"].dtype == torch.bool
        direct = clips[1]
        assert np.array_equal(first["frames"][1].numpy().transpose(0, 2, 3, 1), direct["frames"])
        assert np.array_equal(first["masks"][1].numpy(), direct["masks"])


def test_a_frame_pool_restricts_sampling_to_its_frames(tmp_path):
    src = generate("long_rvos", tmp_path / "lr", num_videos=1, num_frames=40, splits=("train",))
    plain = ClipDataset(src, split="train", num_frames=4, sampling="random", seed=1)
    vid = plain.items[0].video_id
    clips = ClipDataset(src, split="train", num_frames=4, sampling="random", seed=1, frame_pool={vid: [0, 12, 24]})
    drawn = {int(i) for e in range(5) for i in (clips.set_epoch(e), clips.frame_indices(0))[1]}
    assert drawn == {0, 12, 24}                      # 4 frames from a pool of 3: repeats, never another frame
    item = clips[0]
    assert set(item["frame_indices"].tolist()) <= {0, 12, 24} and item["masks"].shape[0] == 4
    bad = ClipDataset(src, split="train", num_frames=2, frame_pool={vid: [0, 40]})
    with pytest.raises(DataError, match="frame pool") as err:
        bad.frame_indices(0)
    assert err.value.video == vid and err.value.field == "frame_pool"
