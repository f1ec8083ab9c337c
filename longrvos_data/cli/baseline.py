"""The ReferMo baseline's verbs: ``baseline extract-motion``, ``baseline train``, ``baseline infer``."""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import LongRVOSError
from ..loaders import LOADERS
from .common import add_engine_args, add_progress_flag, engine_options, progress, skipped


def _add_source(p, *, split_help: str = "the split (required when SRC has several)") -> None:
    p.add_argument("src", type=Path, help="dataset root or one split folder (any readable format), or an hf output")
    p.add_argument("--split", help=split_help)
    p.add_argument("--format", choices=list(LOADERS), help="skip detection and read SRC as this format")


def _add_baseline(sub) -> None:
    p = sub.add_parser("baseline", help="the ReferMo baseline: codec motion, training, inference")
    verbs = p.add_subparsers(dest="baseline_verb", required=True)
    m = verbs.add_parser("extract-motion", help="H.264 motion vectors and keyframes of every video (.npz per video)")
    _add_source(m)
    m.add_argument("--out", type=Path, required=True, help="folder of <video_id>.npz files")
    m.add_argument("--workers", type=int, default=1, help="processes, one video each")
    m.add_argument("--refs", type=int, default=1,
                   help="H.264 reference frames (3 = libx264's default, as the public extractor)")
    m.add_argument("--on-error", choices=["raise", "skip"], default="raise",
                   help="skip bad videos with a warning instead of stopping")
    add_progress_flag(m)

    t = verbs.add_parser("train", help="train ReferMo (torchrun for several GPUs or processes)")
    _add_source(t, split_help="the split to train on (default: train)")
    t.add_argument("--config",
                   help="a config name (refermo-swint, the default: the paper's recipe; refermo-tiny: CPU-sized) or a "
                        "YAML file; with --resume, the run's own by default")
    t.add_argument("--out", type=Path, required=True, help="the run folder: checkpoints/, train.csv, eval.csv")
    t.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in OUT")
    t.add_argument("--max-steps", type=int, help="stop after this many optimiser steps in all (default: the epochs)")
    t.add_argument("--motion", type=Path, help="extract-motion's folder (default: extracted into OUT/motion)")
    t.add_argument("--init", type=Path, action="append", default=[],
                   help="a local checkpoint to start from (GroundingDINO, BERT); repeatable; default: random")
    t.add_argument("--vocab", type=Path, help="BERT's vocab.txt (default: the config's text.vocab)")
    t.add_argument("--device", help="torch device (default: cuda:LOCAL_RANK when there is a GPU, else cpu)")
    t.add_argument("--eval-split", help="evaluate on this split of SRC every train.eval_every steps (default: none)")
    add_progress_flag(t)

    i = verbs.add_parser("infer", help="predict a split: ReferMo's keyframe masks propagated by a mask engine")
    i.add_argument("src", type=Path, help="dataset root or one split folder (any readable format), or an hf output")
    i.add_argument("--split", help="the split (required when SRC has several)")
    i.add_argument("--checkpoint", type=Path, help="a `baseline train` checkpoint (.pt)")
    i.add_argument("--detector", choices=["refermo", "ground-truth"], default="refermo",
                   help="ground-truth: the annotated keyframe masks instead of the model (the propagation's upper "
                        "bound; needs masks)")
    i.add_argument("--out", type=Path, required=True,
                   help="prediction folder (as `longrvos eval --pred` reads it) with predictions.json; finished "
                        "videos are skipped")
    i.add_argument("--format", dest="output", choices=["png", "rle-json"], default="png",
                   help="png: a 0/255 PNG per frame (LVOS: palette PNGs); rle-json: OUT/masks.json")
    i.add_argument("--source-format", dest="format", choices=list(LOADERS),
                   help="skip detection and read SRC as this format")
    i.add_argument("--motion", type=Path, help="extract-motion's folder (default: extracted and cached in OUT/.motion)")
    i.add_argument("--device", default="cpu", help="torch device for ReferMo and SAM2 (cpu, cuda, cuda:1; under "
                                                   "torchrun cuda means cuda:LOCAL_RANK)")
    i.add_argument("--short-side", type=int, help="resize frames to this short side (default: the config's, 360)")
    i.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32", help="autocast on a GPU")
    i.add_argument("--min-score", type=float, help="predict an expression empty when its score is below this")
    i.add_argument("--into-project", type=Path,
                   help="also pre-annotate this annotation project (model:refermo); made from SRC if missing")
    add_engine_args(i, checkpoint_flag="--sam2-checkpoint", device=False)
    i.add_argument("--on-error", choices=["raise", "skip"], default="raise",
                   help="skip bad videos with a warning instead of stopping")
    add_progress_flag(i)


def _device(requested: str | None) -> str:
    """``cuda`` under torchrun is this rank's GPU; None picks the GPU when there is one."""
    local = os.environ.get("LOCAL_RANK")
    if requested in (None, "cuda"):
        import torch

        if requested is None and not torch.cuda.is_available():
            return "cpu"
        return f"cuda:{local}" if local is not None else "cuda"
    return requested


def _run_baseline(args) -> int:
    if args.baseline_verb == "train":
        return _run_train(args)
    if args.baseline_verb == "infer":
        return _run_infer(args)
    from ..baseline.motion import MotionParams, extract_split
    if args.workers < 1:
        raise LongRVOSError("--workers must be at least 1")
    report = extract_split(args.src, args.out, split=args.split, format=args.format,
                           params=MotionParams(refs=args.refs), workers=args.workers,
                           progress=progress(args), on_error=args.on_error)
    print(f"{report.written} video(s) written, {report.current} already current, {report.frames} frame(s), "
          f"to {args.out}")
    return skipped("baseline extract-motion", report.problems, "not written")


def _run_train(args) -> int:
    from ..baseline.config import load_config
    from ..baseline.infer import evaluator
    from ..baseline.train import train

    stored = args.out / "config.yaml"
    config = load_config(args.config or (stored if args.resume and stored.is_file() else "refermo-swint"))
    if args.max_steps is not None and args.max_steps < 1:
        raise LongRVOSError("--max-steps must be at least 1")
    eval_fn = None
    if args.eval_split:
        eval_fn = evaluator(args.src, args.out / "eval", split=args.eval_split, format=args.format,
                            max_videos=config.train.eval_videos)
    report = train(args.src, args.out, config=config, split=args.split or "train", format=args.format,
                   motion_dir=args.motion, resume=args.resume, max_steps=args.max_steps, init=args.init,
                   vocab=args.vocab, device=_device(args.device), eval_fn=eval_fn, progress=progress(args))
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"{report.steps} step(s) in {report.seconds:.1f} s, last loss {report.loss:.4f}; "
              f"checkpoint {report.checkpoint}")
    return 0


def _run_infer(args) -> int:
    from ..baseline.infer import GroundTruthDetector, ReferMoDetector, infer

    device = _device(args.device)
    if args.detector == "ground-truth":
        if args.checkpoint is not None:
            raise LongRVOSError("--checkpoint is ReferMo's; --detector ground-truth uses none")
        detector = GroundTruthDetector()
    else:
        if args.checkpoint is None:
            raise LongRVOSError("--checkpoint is required (a `longrvos baseline train` checkpoint), or pass "
                                "--detector ground-truth")
        detector = ReferMoDetector.from_checkpoint(args.checkpoint, device=device, short_side=args.short_side,
                                                   precision=args.precision)
    options = engine_options(args)
    if args.engine == "sam2":
        options["device"] = device
    report = infer(args.src, args.out, detector=detector, split=args.split, format=args.format,
                   output=args.output, engine=args.engine, engine_options=options, motion_dir=args.motion,
                   min_score=args.min_score, into_project=args.into_project, progress=progress(args),
                   on_error=args.on_error)
    rank = f"rank {report.rank}/{report.world_size}: " if report.world_size > 1 else ""
    print(f"{rank}{report.written} video(s) written ({report.layout} layout), {report.skipped} already finished, "
          f"{report.frames} frame(s), to {args.out}")
    if report.complete:
        extra = f" and {report.masks}" if report.masks else ""
        print(f"{report.predictions}{extra} written")
        if report.project_cells is not None:
            print(f"{report.project_cells} cell(s) pre-annotated as model:refermo in {args.into_project}")
    return skipped("baseline infer", report.problems, "not written")


VERBS = {
    "baseline": (_add_baseline, _run_baseline),
}
