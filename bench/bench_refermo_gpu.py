"""ReferMo at full size on a GPU, random weights: training step time and peak memory at batch 2, inference fps.

For the issue's GPU check (one script, under 8 minutes on one GPU):

- train: `refermo-swint` (210 M parameters, 40.6 M trainable), batch 2 x 6 keyframes at 360x640,
  3 motion maps per keyframe, bf16 autocast, AdamW on the trainable set, the full criterion on
  every decoder layer; median step time after warm-up, ``torch.cuda.max_memory_allocated``.
  ReferDINO's figure for comparison: about 24 GB per GPU at batch 1.
- infer: `baseline.infer.ReferMoDetector` over one synthetic 720p video (keyframes every 12
  frames) at short side 360: keyframe fps of the detector alone (ReferDINO, on which ReferMo
  builds, claims 51 FPS) and frames per second of the whole pipeline with the SAM2 engine
  (sam2.1 hiera-large, random weights, fp32) propagating every segment.

``--smoke`` runs the same code with the tiny configs on the CPU (to check the script before a GPU
is lent). Prints one JSON object.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path

WORK = Path(__file__).resolve().parent.parent / ".bench" / "refermo_gpu"


def _sync(torch, device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_train(torch, device, config: str, *, batch: int, keyframes: int, size: tuple[int, int],
                steps: int, warmup: int, tokenizer) -> dict:
    from longrvos_data.baseline.inputs import KeyframeSample, collate
    from longrvos_data.baseline.losses import ReferMoCriterion
    from longrvos_data.baseline.model import build_model

    import numpy as np

    torch.manual_seed(0)
    model = build_model(config, device=str(device))
    model.train()
    cfg = model.config
    criterion = ReferMoCriterion(cfg.train.loss)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    rng = np.random.default_rng(0)
    h, w = size
    samples = []
    for _ in range(batch):
        masks = np.zeros((keyframes, h, w), dtype=bool)
        masks[:, h // 4:h // 2, w // 4:w // 2] = True
        samples.append(KeyframeSample(rng.standard_normal((keyframes, 3, h, w)).astype(np.float32),
                                      rng.standard_normal((keyframes, cfg.motion.frames, 2, -(-h // 16), -(-w // 16)))
                                      .astype(np.float32) * 0.1, np.ones((keyframes, cfg.motion.frames), dtype=bool),
                                      masks, np.ones(keyframes, dtype=bool)))
    batch_t = collate(samples, ["the man in white turning left"] * batch, tokenizer, cfg).to(device)
    amp = device.type == "cuda"
    times = []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for i in range(warmup + steps):
        _sync(torch, device)
        t = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out = model(**batch_t.model_inputs(), aux_outputs=True)
        losses = criterion(out, batch_t.masks, batch_t.valid, pixel_mask=batch_t.pixel_mask)  # as train.py: fp32
        opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.train.clip_norm)
        opt.step()
        _sync(torch, device)
        if i >= warmup:
            times.append(time.perf_counter() - t)
    out = {"config": config, "batch": batch, "keyframes": keyframes, "size": f"{h}x{w}",
           "precision": "bf16" if amp else "fp32", "step_s_median": round(statistics.median(times), 4),
           "step_s_all": [round(x, 4) for x in times], "loss": round(float(losses["loss"].detach()), 4)}
    if device.type == "cuda":
        out["peak_memory_gb"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    del model, opt
    return out


def bench_infer(torch, device, config: str, *, frames: int, size: tuple[int, int], short_side: int, sam2: str | None,
                tokenizer, sam2_overrides: tuple[str, ...] = ()) -> dict:
    from longrvos_data.annotation.engines import open_engine
    from longrvos_data.baseline.infer import ReferMoDetector, infer_video
    from longrvos_data.baseline.model import build_model
    from longrvos_data.baseline.motion import extract
    from longrvos_data.loaders import load
    from longrvos_data.synth import generate

    h, w = size
    root = WORK / f"lr_{frames}_{h}x{w}"
    if not (root / "valid").is_dir():
        shutil.rmtree(root, ignore_errors=True)
        generate("long_rvos", root, num_videos=1, num_frames=frames, sizes=((h, w),), max_objects=2, splits=["valid"])
    reader = load(root, split="valid")["valid"]
    video = reader.video(reader.video_ids()[0])
    motion = extract(video)
    keys = list(motion.keyframes)
    torch.manual_seed(0)
    model = build_model(config, device=str(device))
    detector = ReferMoDetector(model, tokenizer, short_side=short_side,
                               precision="bf16" if device.type == "cuda" else "fp32")
    list(detector.detect(video, keys[:2], motion))              # warm-up
    _sync(torch, device)
    t = time.perf_counter()
    found = list(detector.detect(video, keys, motion))
    _sync(torch, device)
    detect_s = time.perf_counter() - t
    result = {"config": config, "frames": frames, "video_size": f"{h}x{w}", "short_side": short_side,
              "keyframes": len(keys), "expressions": len(found), "detect_s": round(detect_s, 3),
              "detector_keyframe_fps": round(len(keys) * len(found) / detect_s, 2)}
    if sam2 is not None:
        from longrvos_data.annotation.engines.sam2 import POSTPROCESSING, PREDICTOR, Sam2Engine, _instantiate

        torch.manual_seed(0)
        sam = _instantiate(sam2, (PREDICTOR, *POSTPROCESSING, *sam2_overrides)).to(device).eval()
        engine = Sam2Engine(_model=sam)
        engine_name = Path(sam2).stem
    else:
        engine, engine_name = open_engine("classical"), "classical"
    del model
    out = WORK / f"pred_{engine_name}"
    shutil.rmtree(out, ignore_errors=True)

    class Found:  # the detections measured above, so that the pipeline's time is the engine's + writing
        needs_motion = False

        def describe(self):
            return {"name": "measured"}

        def detect(self, video, keyframes, motion):
            return iter(found)

    _sync(torch, device)
    t = time.perf_counter()
    infer_video(video, Found(), engine, out)
    _sync(torch, device)
    prop_s = time.perf_counter() - t
    engine.close()
    result.update({"engine": engine_name, "propagate_and_write_s": round(prop_s, 3),
                   "pipeline_fps": round(frames / (detect_s + prop_s), 2)})
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true", help="tiny configs on the CPU: check the script")
    args = ap.parse_args()
    import torch

    from longrvos_data.baseline.inputs import tokenizer_for
    from longrvos_data.baseline.model import build_tokenizer

    WORK.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if args.smoke:
        device = torch.device("cpu")
        from longrvos_data.baseline.config import load_config

        tiny_tok = tokenizer_for(load_config("refermo-tiny"))
        result = {"device": "cpu (smoke)",
                  "train": bench_train(torch, device, "refermo-tiny", batch=2, keyframes=2, size=(64, 96), steps=2,
                                       warmup=1, tokenizer=tiny_tok),
                  "infer": bench_infer(torch, device, "refermo-tiny", frames=40, size=(72, 128), short_side=64,
                                       sam2="configs/sam2.1/sam2.1_hiera_t.yaml", tokenizer=tiny_tok,
                                       sam2_overrides=("++model.image_size=256",
                                                       "++model.memory_attention.layer.self_attention.feat_sizes=[16,16]",
                                                       "++model.memory_attention.layer.cross_attention.feat_sizes=[16,16]"))}
    else:
        device = torch.device("cuda")
        # bert-base-uncased's special ids ([CLS] 101, [SEP] 102, '.' 1012, '?' 1029) in a stand-in vocabulary:
        # random weights need no real words, only the ids the config names
        vocab = [f"[unused{i}]" for i in range(30522)]
        for i, tok in ((0, "[PAD]"), (100, "[UNK]"), (101, "[CLS]"), (102, "[SEP]"), (103, "[MASK]"), (1012, "."),
                       (1029, "?"), (2000, "the"), (2001, "man"), (2002, "in"), (2003, "white"), (2004, "turning"),
                       (2005, "left")):
            vocab[i] = tok
        tok = build_tokenizer({t: i for i, t in enumerate(vocab)})
        result = {"device": torch.cuda.get_device_name(0),
                  "train": bench_train(torch, device, "refermo-swint", batch=2, keyframes=6, size=(360, 640),
                                       steps=10, warmup=3, tokenizer=tok),
                  "infer": bench_infer(torch, device, "refermo-swint", frames=600, size=(720, 1280), short_side=360,
                                       sam2="configs/sam2.1/sam2.1_hiera_l.yaml", tokenizer=tok)}
    result["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
