import numpy as np

from longrvos_data.synth import synth_videos


def test_objects_leave_and_come_back_and_do_not_overlap(tmp_path):
    videos = synth_videos(dataset="mevis", split="train", staging=tmp_path, num_videos=2, num_frames=12)
    v = videos[0]
    first = v.tracks[0].track_id
    present = [first in v.frame_masks(i) for i in range(v.num_frames)]
    assert present[0] and not all(present) and present[-1]
    for i in range(v.num_frames):
        stack = np.stack(list(v.frame_masks(i).values()))
        assert stack.sum(axis=0).max() <= 1
        assert all(m.any() for m in v.frame_masks(i).values())
    kinds = {e.kind for e in v.expressions}
    assert "no-target" in kinds
    assert any(len(e.track_ids) == 2 for e in v.expressions)
    # anno ids are global across the split
    ids = [t.track_id for vid in videos for t in vid.tracks]
    assert len(ids) == len(set(ids))


def test_deterministic(tmp_path):
    a = synth_videos(dataset="long_rvos", split="valid", staging=tmp_path / "a", seed=3)
    b = synth_videos(dataset="long_rvos", split="valid", staging=tmp_path / "b", seed=3)
    assert [v.expressions for v in a] == [v.expressions for v in b]
    for va, vb in zip(a, b):
        assert va.frames[0].path.read_bytes() == vb.frames[0].path.read_bytes()
        for i in range(va.num_frames):
            ma, mb = va.frame_masks(i), vb.frame_masks(i)
            assert ma.keys() == mb.keys() and all(np.array_equal(ma[k], mb[k]) for k in ma)
