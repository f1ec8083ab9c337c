"""Scoring verbs: ``eval`` (the official protocols) and ``pack`` (the evaluation server's zip)."""
from __future__ import annotations

import sys
from pathlib import Path

from ..loaders import LOADERS
from .common import add_progress_flag, add_project_filters, load_options


def _add_eval(sub) -> None:
    p = sub.add_parser("eval", help="score predictions with a dataset's official protocol (J, F, J&F, ...)")
    p.add_argument("--gt", type=Path, required=True, help="ground-truth dataset root or split folder (any format)")
    p.add_argument("--pred", type=Path, required=True,
                   help="PNG folder <pred>/<video>/<exp>/<frame>.png (LVOS: <pred>/<video>/<frame>.png) "
                        "or an RLE JSON {video: {exp: [RLE|null per frame]}}")
    p.add_argument("--protocol", required=True, choices=["long_rvos", "mevis", "revos", "lvos"])
    p.add_argument("--split", help="ground-truth split (default: the only one, else valid)")
    p.add_argument("--format", choices=list(LOADERS), help="ground-truth format (default: detected)")
    add_project_filters(p)
    p.add_argument("--out", type=Path, help="REPORT.json to write (with REPORT.csv and REPORT.md beside it); "
                                             "without it the table goes to stdout")
    p.add_argument("--workers", type=int, default=1, help="processes scoring videos in parallel (default: 1)")
    p.add_argument("--per-frame", action="store_true", help="also write REPORT.frames.parquet (J, F per frame)")
    p.add_argument("--missing", choices=["strict", "official"], default="strict",
                   help="what a missing, unreadable or wrong-sized prediction costs (default: strict): strict "
                        "scores such a frame as an empty mask and a missing expression or video as 0; official "
                        "does what each official script does (for parity with the official numbers). The report "
                        "carries both: overall and overall_official")
    p.add_argument("--revos-raw", action="store_true",
                   help="ReVOS A and R on raw grayscale values, reproducing the official script's bug")
    p.add_argument("--lvos-version", type=int, choices=[1, 2], help="LVOS unseen list (default: the dataset's)")
    add_progress_flag(p)


def _run_eval(args) -> int:
    from ..eval import evaluate
    report = evaluate(args.gt, args.pred, protocol=args.protocol, split=args.split, format=args.format,
                      workers=args.workers, missing=args.missing, per_frame=args.per_frame,
                      revos_raw=args.revos_raw, lvos_version=args.lvos_version,
                      progress=False if args.no_progress else None, load_options=load_options(args))

    def figures(values) -> str:
        return " ".join(f"{k}={'-' if v is None else f'{100 * v:.2f}'}" for k, v in values.items())

    if args.out:
        paths = report.write(args.out)
        print(figures(report.overall) + f" ({len(report.warnings)} warning(s))")
        if report.overall_official != report.overall:
            print("official handling of missing predictions: " + figures(report.overall_official))
        print("wrote " + ", ".join(str(p) for p in paths.values()))
    else:
        if args.per_frame:
            print("longrvos eval: --per-frame needs --out", file=sys.stderr)
        print(report.to_markdown(), end="")
    return 0


def _add_pack(sub) -> None:
    p = sub.add_parser("pack", help="check predictions against a split and zip them for the evaluation server")
    p.add_argument("pred", type=Path, help="prediction PNG folder (or RLE JSON for referring layouts)")
    p.add_argument("out", type=Path, help="the zip to write")
    p.add_argument("--gt", type=Path, required=True, help="dataset root or split folder listing the videos")
    p.add_argument("--split", help="split to check against (default: the only one, else valid)")
    p.add_argument("--format", choices=list(LOADERS), help="ground-truth format (default: detected)")
    p.add_argument("--layout", choices=["mevis", "long_rvos", "ref_youtube_vos", "lvos"],
                   help="zip layout (default: from the dataset's format; long_rvos and mevis: "
                        "<video>/<exp_id>/<frame>.png at the zip root)")
    p.add_argument("--allow-gaps", action="store_true", help="write the zip even if predictions are missing")


def _run_pack(args) -> int:
    from ..eval.pack import IncompleteSubmission, pack
    try:
        result = pack(args.pred, gt=args.gt, out=args.out, split=args.split, format=args.format,
                      layout=args.layout, allow_gaps=args.allow_gaps)
    except IncompleteSubmission as err:
        for gap in err.gaps:
            print(f"gap: {gap}", file=sys.stderr)
        print(f"longrvos pack: {len(err.gaps)} gap(s); nothing written (--allow-gaps packs anyway)",
              file=sys.stderr)
        return 1
    for gap in result.gaps:
        print(f"gap: {gap}", file=sys.stderr)
    print(f"wrote {result.out} ({result.files} PNGs, {result.layout} layout"
          + (f", {len(result.gaps)} gap(s)" if result.gaps else "") + ")")
    if result.has_masks:
        print("note: this split has ground-truth masks: `longrvos eval` scores it locally")
    return 0


VERBS = {
    "eval": (_add_eval, _run_eval),
    "pack": (_add_pack, _run_pack),
}
