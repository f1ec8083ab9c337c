"""``longrvos propagate``: a mask engine tracks every object from its first annotated frame
(calls `annotation.propagate.propagate_dataset`)."""
from __future__ import annotations

from pathlib import Path

from ..errors import LongRVOSError
from .common import add_engine_args, add_progress_flag, add_project_filters, engine_options, load_options, progress, skipped


def _add_propagate(sub) -> None:
    from ..loaders import LOADERS

    p = sub.add_parser("propagate", help="semi-supervised VOS: propagate each object's first annotated mask over "
                                         "its video with a mask engine, written as `longrvos eval` reads it")
    p.add_argument("src", type=Path, help="dataset root or one split folder (any readable format, with masks)")
    p.add_argument("--split", help="the split (required when SRC has several)")
    p.add_argument("--format", choices=list(LOADERS), help="skip detection and read SRC as this format")
    add_project_filters(p)
    add_engine_args(p)
    p.add_argument("--image-size", type=int,
                   help="the engine's working resolution (default: the engine's own; classical: 480 px long side)")
    p.add_argument("--out", type=Path, required=True,
                   help="prediction folder: LVOS <out>/<video>/<frame>.png (palette, pixel = object id), "
                        "referring datasets <out>/<video>/<exp_id>/<frame>.png; finished videos are skipped")
    p.add_argument("--workers", type=int, default=1, help="processes, one video each (each loads its own engine)")
    p.add_argument("--on-error", choices=["raise", "skip"], default="raise",
                   help="skip bad videos with a warning instead of stopping")
    add_progress_flag(p)


def _run_propagate(args) -> int:
    from ..annotation.propagate import propagate_dataset

    if args.workers < 1:
        raise LongRVOSError("--workers must be at least 1")
    report = propagate_dataset(args.src, args.out, split=args.split, format=args.format, engine=args.engine,
                               engine_options=engine_options(args), workers=args.workers,
                               image_size=args.image_size, progress=progress(args), on_error=args.on_error,
                               load_options=load_options(args))
    layout = f" ({report.layout} layout)" if report.layout else ""
    print(f"{report.written} video(s) written{layout}, {report.skipped} already finished, {report.frames} frame(s), "
          f"{report.tracks} track(s) propagated with {args.engine}, to {args.out}")
    return skipped("propagate", report.problems, "not written")


VERBS = {"propagate": (_add_propagate, _run_propagate)}
