"""`synth.textured_lvos`: the LVOS layout, determinism, and the motion it promises."""
from __future__ import annotations

import json

import numpy as np
from PIL import Image

from longrvos_data import synth
from longrvos_data.loaders import load


def test_lvos_layout_read_back_by_the_loader(tmp_path):
    out = synth.textured_lvos(tmp_path / "lvos", split="valid", num_videos=2, width=96, height=64, num_frames=12,
                              seed=3)
    split = out / "valid"
    meta = json.loads((split / "valid_meta.json").read_text())
    assert sorted(meta["videos"]) == ["tx030000", "tx030001"]
    names = [f"{1 + 5 * i:08d}" for i in range(12)]
    for vid, entry in meta["videos"].items():
        assert sorted(entry["objects"]) == ["1", "2"]
        assert entry["objects"]["2"]["frame_range"] == {"start": "00000001", "end": "00000056", "frame_nums": 12}
        assert sorted(p.stem for p in (split / "JPEGImages" / vid).glob("*.jpg")) == names
        for name in names:
            with Image.open(split / "Annotations" / vid / f"{name}.png") as im:
                assert im.mode == "P" and im.size == (96, 64)
                assert set(np.unique(np.asarray(im))) <= {0, 1, 2}
    reader = load(out, format="lvos")["valid"]
    video = reader.video("tx030000")
    assert (video.width, video.height, video.num_frames) == (96, 64, 12)
    assert video.frame_names == names
    assert not (out / ".staging").exists()


def test_deterministic_from_the_seed(tmp_path):
    def files(seed, where):
        root = synth.textured_lvos(tmp_path / where, num_frames=4, width=64, height=48, seed=seed) / "valid"
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
    a, b, c = files(5, "a"), files(5, "b"), files(6, "c")
    assert a == b
    assert len(a) == len(c) and list(a.values()) != list(c.values())


def test_objects_move_4_to_12_px_scale_20_percent_and_one_is_partly_hidden_for_10_frames(tmp_path):
    width, height, n = 320, 240, 30
    out = synth.textured_lvos(tmp_path / "lvos", width=width, height=height, num_frames=n, seed=0)
    video = load(out, format="lvos")["valid"].video("tx000000")
    # the first video's scene, rebuilt from the same seed, is the one written
    scene = synth._TexturedScene(np.random.default_rng(0), height, width, n)
    for i in (0, 13, n - 1):
        got, want = video.frame_masks(i), scene.masks(i)
        assert sorted(got) == sorted(want) and all((got[t] == want[t]).all() for t in got)
    hidden_frames = []
    for k, obj in enumerate(scene.objects):
        steps = np.hypot(*np.diff(obj["centres"], axis=0).T)
        assert steps.max() <= 12 + 1e-6
        assert np.mean((steps >= 4 - 1e-6)) >= 0.75          # shorter only where it bounced
        full = [int(scene.silhouette(obj, t).sum()) for t in range(n)]
        ratio = full[-1] / full[0]
        assert (1.3 < ratio < 1.55) if k == 0 else (0.55 < ratio < 0.75)   # linear scale 1.2 or 0.8
        inside = [(obj["centres"][t] > 0).all() and obj["centres"][t][0] < width and obj["centres"][t][1] < height
                  for t in range(n)]
        assert all(inside)
    obj1, obj2 = scene.objects
    for t in range(n):
        a1, a2 = scene.silhouette(obj1, t), scene.silhouette(obj2, t)
        m1 = video.frame_masks(t).get("1", np.zeros_like(a1))
        by_bar = a1 & ~a2 & ~m1          # of object 1's own pixels, those the occluder covers
        if by_bar.any():
            hidden_frames.append(t)
            assert 0.05 < by_bar.sum() / (a1 & ~a2).sum() < 0.7, t   # partial, never whole
    assert len(hidden_frames) == 10 and hidden_frames == list(range(hidden_frames[0], hidden_frames[0] + 10))
    # the whole clip moves: the first mask of each object covers little of its last one
    first, last = video.frame_masks(0), video.frame_masks(n - 1)
    for t in ("1", "2"):
        assert (first[t] & last[t]).sum() < 0.5 * last[t].sum()
