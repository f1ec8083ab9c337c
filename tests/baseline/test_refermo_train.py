"""ReferMo's training loop on the CPU: bitwise resume, DDP = one process, overfitting one clip, bad input."""
from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")
pytest.importorskip("av")
yaml = pytest.importorskip("yaml")


from longrvos_data.baseline.config import load_config
from longrvos_data.fsutil import file_sha256
from longrvos_data.baseline.model import build_model
from longrvos_data.baseline.motion import Motion, extract_split, motion_path
from longrvos_data.baseline.train import (
    FORMAT,
    _Collate,
    build_dataset,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    read_checkpoint,
    seed_everything,
    set_train_mode,
    step_items,
    train,
)
from longrvos_data.errors import DataError, LongRVOSError
from longrvos_data.synth import generate

REPO = Path(__file__).resolve().parents[2]


def write_config(path: Path, **train) -> Path:
    """refermo-tiny with ``train`` overrides, as a YAML file (the vocabulary stays the shipped one)."""
    data = load_config("refermo-tiny").as_dict()
    data["train"].update(train)
    path.write_text(yaml.safe_dump(json.loads(json.dumps(data))), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Two 64x96 videos of 36 frames (4 expressions) with motion, and an unannotated test split."""
    root = tmp_path_factory.mktemp("train_data")
    src = generate("long_rvos", root / "src", num_videos=2, num_frames=36, sizes=((64, 96),), max_objects=2,
                   splits=("train", "test"))
    extract_split(src, root / "motion", split="train")
    return src, root / "motion"


def state_of(path: Path) -> dict:
    return read_checkpoint(path)["model"]


def test_order_is_the_same_for_any_split_of_the_batch():
    for step in range(5):  # 7 items, 4 a step: the second step wraps at the end of the epoch
        one = step_items(7, 3, 2, step % 2, batch_size=4)
        two = [i for r in range(2) for i in step_items(7, 3, 2, step % 2, batch_size=2, world_size=2, rank=r)]
        four = [i for r in range(4) for i in step_items(7, 3, 2, step % 2, batch_size=1, world_size=4, rank=r)]
        assert one == two == four
    epoch = [i for s in range(2) for i in step_items(7, 3, 2, s, batch_size=4)]
    assert sorted(set(epoch)) == list(range(7)) and len(epoch) == 8
    assert step_items(7, 3, 2, 0, batch_size=4) != step_items(7, 3, 3, 0, batch_size=4)


def test_batches_are_padded_to_the_mask_stride(data, tmp_path):
    src, motion = data
    cfg = load_config(write_config(tmp_path / "c.yaml", short_side=62, max_size=93))
    ds = build_dataset(src, motion, cfg)
    from longrvos_data.baseline.inputs import tokenizer_for

    batch = _Collate(tokenizer_for(cfg), cfg)([ds[0], ds[1]])
    assert batch.pixel_values.shape[-2:] == (64, 96) and batch.masks.shape[-2:] == (64, 96)
    assert batch.motion.shape[-2:] == (4, 6)
    assert batch.pixel_mask[..., :62, :93].all() and not batch.pixel_mask[..., 62:, :].any()
    assert not batch.pixel_mask[..., 93:].any() and not batch.masks[..., 62:, :].any()


@pytest.mark.slow
def test_resume_gives_bitwise_the_same_weights(data, tmp_path):
    """6 steps == 3 steps, a resume, 3 more: mid-epoch (4 items at batch 1), across an epoch, with workers."""
    src, motion = data
    cfg = write_config(tmp_path / "c.yaml", batch_size=1, checkpoint_every=2, keep_checkpoints=2, workers=2)
    straight = train(src, tmp_path / "a", config=cfg, motion_dir=motion, max_steps=6)
    half = train(src, tmp_path / "b", config=cfg, max_steps=3)           # extracts motion into b/motion
    assert half.steps == 3 and half.checkpoint.name == "step_00000003.pt"
    assert (tmp_path / "b" / "motion" / "tr00v000.npz").is_file()
    resumed = train(src, tmp_path / "b", config=cfg, max_steps=6, resume=True)
    assert straight.steps == resumed.steps == 6 and resumed.resumed_from == 3 and straight.steps_per_epoch == 4
    a, b = read_checkpoint(straight.checkpoint), read_checkpoint(resumed.checkpoint)
    assert a["model"].keys() == b["model"].keys()
    for name in a["model"]:
        assert torch.equal(a["model"][name], b["model"][name]), name
    assert all(torch.equal(x["exp_avg"], y["exp_avg"]) for x, y in zip(a["optimizer"]["state"].values(),
                                                                       b["optimizer"]["state"].values()))
    assert a["step"] == 6 and a["epoch"] == 1 and a["format"] == FORMAT
    # periodic checkpoints, the last two kept; the log has each step once, with the same losses
    assert [s for s, _ in list_checkpoints(tmp_path / "a" / "checkpoints")] == [4, 6]
    assert [s for s, _ in list_checkpoints(tmp_path / "b" / "checkpoints")] == [4, 6]
    rows_a = (tmp_path / "a" / "train.csv").read_text().splitlines()
    rows_b = (tmp_path / "b" / "train.csv").read_text().splitlines()
    assert len(rows_a) == len(rows_b) == 7
    strip = lambda rows: [r.rsplit(",", 1)[0] for r in rows]
    assert strip(rows_a) == strip(rows_b)
    assert load_config(tmp_path / "b" / "config.yaml") == load_config(cfg)
    # the same folder without resume, or with another config, is refused, naming the file
    with pytest.raises(LongRVOSError, match="holds checkpoints already"):
        train(src, tmp_path / "b", config=cfg, motion_dir=motion)
    other = write_config(tmp_path / "other.yaml", batch_size=1, checkpoint_every=2, keep_checkpoints=2, workers=2,
                         lr=5e-3)
    with pytest.raises(LongRVOSError, match=r"step_00000006\.pt: was trained with another config \(train\.lr"):
        train(src, tmp_path / "b", config=other, motion_dir=motion, resume=True)
    with pytest.raises(LongRVOSError, match="no checkpoint to resume from"):
        train(src, tmp_path / "c", config=cfg, motion_dir=motion, resume=True)


@pytest.mark.slow
def test_checkpoint_alone_serves_inference_and_hf_trains_as_raw(data, tmp_path):
    src, motion = data
    report = train(src, tmp_path / "run", config="refermo-tiny", motion_dir=motion, max_steps=1)
    # the same data as an hf output (parquet: JPEG bytes and RLE masks) trains to the same weights
    from longrvos_data.converters import hf
    from longrvos_data.loaders import load

    hf.write(load(src, format="long_rvos", split="train").splits, tmp_path / "hf")
    from_hf = train(tmp_path / "hf", tmp_path / "run_hf", config="refermo-tiny", motion_dir=motion, max_steps=1)
    raw_state, hf_state = state_of(report.checkpoint), state_of(from_hf.checkpoint)
    assert all(torch.equal(raw_state[k], hf_state[k]) for k in raw_state)
    model, tokenizer, info = load_checkpoint(report.checkpoint, "cpu")
    assert not model.training and info.step == 1 and info.config == load_config("refermo-tiny")
    assert tokenizer.convert_tokens_to_ids(["[CLS]", "ellipse"]) == [2, 27]
    stored = read_checkpoint(report.checkpoint)
    assert all(torch.equal(v, stored["model"][k]) for k, v in model.state_dict().items())
    assert len(file_sha256(report.checkpoint)) == 64
    torch.load(report.checkpoint, weights_only=True)  # plain data and tensors only
    # frozen modules run as at inference while training; the learning ones train
    set_train_mode(model)
    assert not model.model.text_backbone.training and not model.model.backbone.conv_encoder.model.swin.training
    assert model.model.encoder.layers[0].motion_fusion.training and model.mask_decoder.training
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(LongRVOSError, match="junk.pt: cannot read the checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"model": model.state_dict()}, tmp_path / "plain.pt")
    with pytest.raises(LongRVOSError, match="plain.pt: not a ReferMo training checkpoint"):
        load_checkpoint(tmp_path / "plain.pt")


DDP_SCRIPT = """
import sys, torch
torch.set_num_threads(1)
from longrvos_data.baseline.train import train
train(sys.argv[1], sys.argv[2], config=sys.argv[3], motion_dir=sys.argv[4], max_steps=2, device="cpu")
"""


# Tensors whose gradient is zero in exact arithmetic, so that Adam steps them by rounding noise: biases
# right before a GroupNorm of one channel per group (the tiny config's 32 channels in 32 groups; the FPN's
# last convolutions), the motion block's last LayerNorm bias (it reaches only such a GroupNorm through a
# 1x1 convolution) and attention key biases (a softmax ignores a shift shared by all keys).
ZERO_GRADIENT = re.compile(r"(input_proj_vision\.\d+\.0\.bias|motion_fusion\.conv_layers\.\d+\.0\.bias"
                           r"|pixel_decoder\.lay[345]\.bias|motion_fusion\.norm2\.bias|\.key\.bias)$")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_at_batch_1_equal_one_at_batch_2(data, tmp_path):
    """Weights after 2 steps agree to float rounding. The motion is random here: the synthetic videos'
    static background gives exact-zero motion tokens, whose LayerNorm (zero variance) amplifies rounding
    in the backward pass (gradient norm ~1e9 at initialisation) so much that batching alone changes the
    gradients of a few biases by their own size."""
    src, extracted = data
    motion = tmp_path / "noisy_motion"
    rng = np.random.default_rng(0)
    for path in sorted(extracted.glob("*.npz")):
        real = Motion.load(path)
        Motion(rng.normal(size=real.mv.shape).astype(np.float32), real.frame_types, real.keyframes,
               real.params_hash).save(motion / path.name)
    script = tmp_path / "ddp.py"
    script.write_text(textwrap.dedent(DDP_SCRIPT))
    cfg1 = write_config(tmp_path / "b1.yaml", batch_size=1)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
                          "--master_addr", "127.0.0.1", "--master_port", str(free_port()), str(script), str(src),
                          str(tmp_path / "ddp"), str(cfg1), str(motion)],
                         check=False, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    single = train(src, tmp_path / "one", config=write_config(tmp_path / "b2.yaml", batch_size=2),
                   motion_dir=motion, max_steps=2, device="cpu")
    ddp_ckpt = latest_checkpoint(tmp_path / "ddp")
    assert ddp_ckpt.name == "step_00000002.pt" and read_checkpoint(ddp_ckpt)["world_size"] == 2
    assert len(read_checkpoint(ddp_ckpt)["rng"]) == 2
    a, b = state_of(ddp_ckpt), state_of(single.checkpoint)
    assert a.keys() == b.keys()
    # training starts from the weights its seed gives; two steps moved only trainable tensors
    seed_everything(0)
    model = build_model(load_config(cfg1))
    init = model.state_dict()
    trainable = set(model.trainable_parameter_names())
    moved = {k for k in init if not torch.equal(init[k], b[k])}
    assert moved <= trainable and len(moved) > len(trainable) // 2
    assert all(torch.equal(a[k], b[k]) for k in init if k not in trainable)
    noise_only = {k for k in moved if ZERO_GRADIENT.search(k)}
    for k in moved - noise_only:   # each update agrees with the other to 2 % of its length (most to 1e-4)
        update = (b[k] - init[k]).norm()
        assert (a[k] - b[k]).norm() <= 2e-2 * update, (k, ((a[k] - b[k]).norm() / update).item())
    total = sum(((a[k] - b[k]) ** 2).sum() for k in moved - noise_only).sqrt()
    assert total <= 2e-3 * sum(((b[k] - init[k]) ** 2).sum() for k in moved - noise_only).sqrt()
    lr = load_config(cfg1).train.lr
    assert all((a[k] - b[k]).abs().max() <= 2 * 2 * lr for k in noise_only)  # Adam moves them <= lr a step
    # the logged losses agree too (each rank's share, averaged)
    la = (tmp_path / "ddp" / "train.csv").read_text().splitlines()[1:]
    lb = (tmp_path / "one" / "train.csv").read_text().splitlines()[1:]
    for ra, rb in zip(la, lb):
        assert np.allclose([float(x) for x in ra.split(",")[:-2]], [float(x) for x in rb.split(",")[:-2]],
                           rtol=1e-4)


@pytest.mark.slow
def test_overfits_one_clip(tmp_path):
    """One clip (one expression, an object of about 12 % of the frame, present at keyframes 0, 12, 24), scored
    every 10 steps by the real periodic evaluation: inference (keyframe masks, classical propagation) and eval."""
    from longrvos_data.baseline.infer import evaluator

    src = generate("long_rvos", tmp_path / "src", num_videos=1, num_frames=40, sizes=((64, 96),), max_objects=1,
                   splits=("train",))
    extract_split(src, tmp_path / "motion", split="train")
    cfg_path = write_config(tmp_path / "overfit.yaml", lr=2e-3, epochs=40, keyframes=3, eval_every=10, log_every=5)
    cfg = load_config(cfg_path)
    dataset = build_dataset(src, tmp_path / "motion", cfg)
    assert len(dataset) == 1 and dataset.clips.frame_pool["tr00v000"].tolist() == [0, 12, 24]
    sample, _ = dataset[0]
    assert sample.valid.all() and sample.masks.mean() > 0.09

    evaluate = evaluator(src, tmp_path / "run" / "eval", split="train", motion_dir=tmp_path / "motion")
    report = train(src, tmp_path / "run", config=cfg_path, motion_dir=tmp_path / "motion", eval_fn=evaluate)
    assert report.steps == 40 and report.epochs == 40
    with open(tmp_path / "run" / "eval.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    curve = {int(r["step"]): float(r["keyframe_J"]) for r in rows}
    print("overfit keyframe J by step:", curve, "J&F:", [r["J&F"] for r in rows],
          f"{report.seconds / report.steps:.3f} s/step")
    assert list(curve) == [10, 20, 30, 40]
    assert curve[40] >= 0.5, curve
    assert (tmp_path / "run" / "eval" / "step_00000040" / "predictions.json").is_file()
    logged = (tmp_path / "run" / "train.csv").read_text().splitlines()
    assert [int(r.split(",")[0]) for r in logged[1:]] == [5, 10, 15, 20, 25, 30, 35, 40]


def test_bad_input_names_file_video_and_field(data, tmp_path):
    src, motion = data
    with pytest.raises(DataError) as err:
        train(src, tmp_path / "o", config="refermo-tiny", split="test", motion_dir=motion)
    assert err.value.field == "masks" and err.value.video == "te01v000"
    assert "meta_expressions.json" in str(err.value) and "without masks" in str(err.value)
    assert not (tmp_path / "o" / "motion").exists()  # refused before any extraction

    (tmp_path / "partial").mkdir()
    keep = motion_path(motion, "tr00v000")
    (tmp_path / "partial" / keep.name).write_bytes(keep.read_bytes())
    with pytest.raises(DataError) as err:
        train(src, tmp_path / "o", config="refermo-tiny", motion_dir=tmp_path / "partial")
    assert err.value.video == "tr00v001" and err.value.field == "motion"
    assert str(tmp_path / "partial" / "tr00v001.npz") in str(err.value)

    stale = Motion.load(keep)
    Motion(stale.mv[:30], stale.frame_types[:30], stale.keyframes, stale.params_hash).save(
        tmp_path / "partial" / "tr00v001.npz")
    with pytest.raises(DataError, match="has 30 frames, the video 36") as err:
        train(src, tmp_path / "o", config="refermo-tiny", motion_dir=tmp_path / "partial")
    assert err.value.video == "tr00v001"

    # a frame that cannot be read, in a worker process: the error comes back as it was raised
    broken = tmp_path / "broken"
    shutil.copytree(src, broken)
    (broken / "train" / "JPEGImages" / "tr00v000" / "00012.jpg").write_bytes(b"not a jpeg")  # a keyframe
    cfg = write_config(tmp_path / "workers.yaml", workers=1)
    with pytest.raises(DataError) as err:
        train(broken, tmp_path / "w", config=cfg, motion_dir=motion)
    assert err.value.video == "tr00v000" and err.value.field == "frames" and "Traceback" not in str(err.value)
    assert "00012.jpg: video 'tr00v000': field 'frames': frame image cannot be decoded" in str(err.value)
    assert latest_checkpoint(tmp_path / "w") is None

    empty = tmp_path / "empty"
    generate("long_rvos", empty, num_videos=1, num_frames=12, sizes=((64, 96),), max_objects=1, splits=("train",))
    meta = empty / "train" / "meta_expressions.json"
    content = json.loads(meta.read_text())
    for video in content["videos"].values():
        video["expressions"] = {}
    meta.write_text(json.dumps(content))
    with pytest.raises(DataError, match="no expressions to train on") as err:
        train(empty, tmp_path / "o", config="refermo-tiny", motion_dir=motion)
    assert err.value.field == "expressions" and str(empty) in str(err.value)


def test_a_bf16_autocast_step_with_the_augmentation_runs(data, tmp_path):
    """Mixed precision as on a GPU (bf16 autocast, here on the CPU: tracking's Hungarian matching and the fp32
    loss take bf16 activations), with the public augmentation on (crops change the frame size per sample)."""
    src, motion = data
    cfg = write_config(tmp_path / "bf16.yaml", precision="bf16", augment=True, batch_size=2)
    report = train(src, tmp_path / "run", config=cfg, motion_dir=motion, max_steps=2)
    assert report.steps == 2 and math.isfinite(report.loss)
