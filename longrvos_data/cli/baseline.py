"""The ReferMo baseline's verbs: ``baseline extract-motion``."""
from __future__ import annotations

from pathlib import Path

from ..errors import LongRVOSError
from ..loaders import LOADERS
from .common import add_progress_flag, progress, skipped


def _add_baseline(sub) -> None:
    p = sub.add_parser("baseline", help="the ReferMo baseline: codec motion (extract-motion)")
    verbs = p.add_subparsers(dest="baseline_verb", required=True)
    m = verbs.add_parser("extract-motion", help="H.264 motion vectors and keyframes of every video (.npz per video)")
    m.add_argument("src", type=Path, help="dataset root or one split folder (any readable format)")
    m.add_argument("--split", help="the split (required when SRC has several)")
    m.add_argument("--format", choices=list(LOADERS), help="skip detection and read SRC as this format")
    m.add_argument("--out", type=Path, required=True, help="folder of <video_id>.npz files")
    m.add_argument("--workers", type=int, default=1, help="processes, one video each")
    m.add_argument("--refs", type=int, default=1,
                   help="H.264 reference frames (3 = libx264's default, as the public extractor)")
    m.add_argument("--on-error", choices=["raise", "skip"], default="raise",
                   help="skip bad videos with a warning instead of stopping")
    add_progress_flag(m)


def _run_baseline(args) -> int:
    from ..baseline.motion import MotionParams, extract_split
    if args.workers < 1:
        raise LongRVOSError("--workers must be at least 1")
    report = extract_split(args.src, args.out, split=args.split, format=args.format,
                           params=MotionParams(refs=args.refs), workers=args.workers,
                           progress=progress(args), on_error=args.on_error)
    print(f"{report.written} video(s) written, {report.current} already current, {report.frames} frame(s), "
          f"to {args.out}")
    return skipped("baseline extract-motion", report.problems, "not written")


VERBS = {
    "baseline": (_add_baseline, _run_baseline),
}
