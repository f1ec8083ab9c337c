"""The ``longrvos`` command: parses arguments and calls the library, nothing more.

Each verb has an ``_add_<verb>(sub)`` that declares its arguments and a
``_run_<verb>(args) -> int`` that calls the library. Every `LongRVOSError` becomes a
one-line message on stderr and exit status 2; no raw traceback reaches the user.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from .errors import LongRVOSError
from .loaders import LOADERS


def _add_format_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", type=Path, help="dataset root or one split folder")
    p.add_argument("--format", choices=list(LOADERS), help="skip detection and read as this format")
    p.add_argument("--split", help="read only this split (e.g. valid, train_sub)")


# -- info ----------------------------------------------------------------------------
def _add_info(sub) -> None:
    p = sub.add_parser("info", help="count videos, frames, tracks, expressions (and masks with --deep)")
    _add_format_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--deep", action="store_true", help="decode every mask to count non-empty (track, frame) pairs")
    p.add_argument("--workers", type=int, default=1, help="processes for --deep")
    p.add_argument("--on-error", choices=["raise", "skip"], default="raise",
                   help="skip bad videos with a warning instead of stopping")


def _run_info(args) -> int:
    from .summary import format_summary, summarise
    summary = summarise(args.path, format=args.format, split=args.split, deep=args.deep,
                        workers=args.workers, on_error=args.on_error, progress=not args.json)
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 0


# -- validate ------------------------------------------------------------------------
def _add_validate(sub) -> None:
    p = sub.add_parser("validate", help="list every problem with file, video and field")
    _add_format_args(p)
    p.add_argument("--checksums", action="store_true", help="verify the SHA256 sums the release publishes (ReVOS)")
    p.add_argument("--json", action="store_true", help="print the problems as JSON")
    p.add_argument("--workers", type=int, default=1, help="processes for the per-video checks")


def _run_validate(args) -> int:
    from .validate import validate
    problems = validate(args.path, format=args.format, split=args.split, checksums=args.checksums,
                        workers=args.workers, progress=not args.json)
    errors = [p for p in problems if p.level == "error"]
    if args.json:
        print(json.dumps([p.as_dict() for p in problems], indent=2))
    else:
        for p in problems:
            print(p)
        print(f"{len(errors)} error(s), {len(problems) - len(errors)} warning(s)")
    return 1 if errors else 0


# -- convert -------------------------------------------------------------------------
def _add_convert(sub) -> None:
    from .converters.base import TARGETS as CONVERT_TARGETS

    p = sub.add_parser("convert", help="write a dataset in another format (any readable format to any target)")
    p.add_argument("src", type=Path, help="dataset root or one split folder")
    p.add_argument("--to", dest="target", required=True, choices=CONVERT_TARGETS, help="the format to write")
    p.add_argument("out", type=Path, help="output root")
    p.add_argument("--format", choices=list(LOADERS), help="skip detection and read SRC as this format")
    p.add_argument("--split", help="convert only this split")
    p.add_argument("--workers", type=int, default=1, help="processes per split")
    p.add_argument("--lossy", action="store_true",
                   help="leave out what the target cannot hold, and list it, instead of keeping it in a sidecar")
    p.add_argument("--no-sidecar", action="store_true",
                   help="refuse (error) what the target cannot hold instead of keeping it in a sidecar")
    p.add_argument("--link-frames", action="store_true", help="hf only: reference frame files instead of embedding")
    p.add_argument("--on-error", choices=["raise", "skip"], default="raise",
                   help="skip bad videos with a warning instead of stopping")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _run_convert(args) -> int:
    from .converters.base import convert
    if args.workers < 1:
        raise LongRVOSError("--workers must be at least 1")
    options = {}
    if args.link_frames:
        if args.target != "hf":
            raise LongRVOSError("--link-frames applies to --to hf only")
        options["link_frames"] = True
    if args.lossy and args.no_sidecar:
        raise LongRVOSError("--lossy and --no-sidecar exclude each other")
    report = convert(args.src, args.target, args.out, format=args.format, split=args.split, lossy=args.lossy,
                     sidecar=not args.no_sidecar, workers=args.workers, on_error=args.on_error,
                     progress=not args.no_progress and not args.json and sys.stderr.isatty(), **options)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
        return 0
    for problem in report.problems:
        print(f"longrvos convert: {problem}", file=sys.stderr)
    total = sum(report.videos.values())
    splits = ", ".join(f"{s}: {n}" for s, n in report.videos.items())
    resumed = sum(report.resumed.values())
    print(f"wrote {total} video(s) as {args.target} to {args.out} ({splits})"
          + (f"; {resumed} already complete from an interrupted run" if resumed else ""))
    for path in report.sidecars:
        print(f"kept what {args.target} cannot hold in {path}")
    if args.lossy:
        print(f"dropped {len(report.dropped)} item(s)" + (":" if report.dropped else ""))
        for item in report.dropped:
            print(f"  {item}")
    return 0


# -- push ----------------------------------------------------------------------------
def _add_push(sub) -> None:
    p = sub.add_parser("push", help="upload an hf output (convert --to hf) to the Hugging Face Hub")
    p.add_argument("out", type=Path, help="the output folder of `longrvos convert --to hf`")
    p.add_argument("repo_id", help="dataset repository, user/name (created when missing)")
    p.add_argument("--private", action="store_true", help="create the repository as private")
    p.add_argument("--token", help="Hub token (default: the cached `hf auth login`)")
    p.add_argument("--revision", help="branch to push to")
    p.add_argument("--message", help="commit message")


def _run_push(args) -> int:
    import warnings

    from .hub import LicenceWarning, push
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LicenceWarning)  # printed below, once
        result = push(args.out, args.repo_id, token=args.token, private=args.private, revision=args.revision,
                      commit_message=args.message)
    for line in result.warnings:
        print(f"longrvos push: warning: {line}", file=sys.stderr)
    print(f"pushed {args.out} to {result.repo_id}: {result.url}")
    return 0

# -- fiftyone ------------------------------------------------------------------------
def _add_fiftyone(sub) -> None:
    p = sub.add_parser("fiftyone", help="write a dataset (and predictions) into FiftyOne to browse it in the App")
    _add_format_args(p)
    p.add_argument("--name", required=True, help="FiftyOne dataset name (persistent; re-running updates it)")
    p.add_argument("--pred", type=Path, help="predictions: PNG folder <pred>/<video>/<exp>/<frame>.png or RLE JSON")
    p.add_argument("--scores", type=Path,
                   help="per-frame report of `longrvos eval --per-frame` (REPORT.frames.parquet)")
    p.add_argument("--masks-dir", type=Path, help="where mask PNGs go (default: FiftyOne's dataset dir/<name>/masks)")
    p.add_argument("--inline-masks", action="store_true", help="keep masks in the database (small sets only)")
    p.add_argument("--overwrite", action="store_true", help="delete the FiftyOne dataset first")
    p.add_argument("--workers", type=int, default=1, help="processes decoding masks and writing mask PNGs")
    p.add_argument("--on-error", choices=["raise", "skip"], default="raise",
                   help="skip bad videos with a warning instead of stopping")
    p.add_argument("--launch", action="store_true", help="serve the App afterwards (Ctrl-C stops it)")
    p.add_argument("--port", type=int, default=5151, help="App port with --launch")
    p.add_argument("--view", help="saved view to open with --launch (e.g. by_video)")
    p.add_argument("--expression", metavar="VIDEO_ID/EXP_ID",
                   help="save the view 'expression' showing only this expression's target (opened by --launch)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")


def _run_fiftyone(args) -> int:
    from .converters import fiftyone as lfo
    report = lfo.to_fiftyone(args.path, name=args.name, format=args.format, split=args.split, pred=args.pred,
                             scores=args.scores, masks_dir=args.masks_dir, inline_masks=args.inline_masks,
                             overwrite=args.overwrite, on_error=args.on_error, progress=not args.json,
                             workers=args.workers)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        for problem in report.problems:
            print(f"longrvos fiftyone: {problem}", file=sys.stderr)
        print(f"FiftyOne dataset {report.name!r}: {report.samples} frame(s) of {report.videos} video(s) written "
              f"({report.total_samples} in total, {report.removed} stale removed), {report.gt_masks} mask(s)"
              + (f", {report.pred_labels} prediction(s), {report.scored} scored" if args.pred else "")
              + f"; {report.samples / max(report.seconds, 1e-9):.0f} frames/s")
        print(f"saved views: {', '.join(report.views)}")
    view = args.view
    if args.expression:
        video_id, _, exp_id = args.expression.partition("/")
        lfo.expression_view(args.name, video_id, exp_id, split=args.split, save_as=lfo.VIEW_EXPRESSION)
        view = view or lfo.VIEW_EXPRESSION
    if args.launch:
        session = lfo.launch(args.name, port=args.port, view=view)
        print(f"App at http://localhost:{args.port} (Ctrl-C stops it)", file=sys.stderr)
        try:
            session.wait()
        finally:
            session.close()
    return 0


def _add_fiftyone_setup(sub) -> None:
    p = sub.add_parser("fiftyone-setup", help="write FiftyOne's database settings into its config file (idempotent)")
    p.add_argument("--config", type=Path, help="FiftyOne config file (default: $FIFTYONE_CONFIG_PATH or "
                                               "~/.fiftyone/config.json)")
    p.add_argument("--database-dir", type=Path, help="folder of FiftyOne's MongoDB data (default: kept, "
                                                     "else ~/.fiftyone/var/lib/mongo)")
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 unless a database can be reached")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")


def _run_fiftyone_setup(args) -> int:
    from .converters.fiftyone import configure
    report = configure(path=args.config, database_dir=args.database_dir, write=not args.check)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        what = (f"{'set' if report.written else 'would set'} {', '.join(report.changed)}" if report.changed
                else "nothing to change")
        print(f"{report.config_path}: {what}")
        print(f"mongod: {report.mongod or 'missing'}"
              + (f" (version {report.mongod_version})" if report.mongod_version else ""))
        for problem in report.problems:
            print(f"longrvos fiftyone-setup: {problem}", file=sys.stderr)
    return 0 if report.ok else 1


# -- eval / pack ----------------------------------------------------------------------
def _add_eval(sub) -> None:
    p = sub.add_parser("eval", help="score predictions with a dataset's official protocol (J, F, J&F, ...)")
    p.add_argument("--gt", type=Path, required=True, help="ground-truth dataset root or split folder (any format)")
    p.add_argument("--pred", type=Path, required=True,
                   help="PNG folder <pred>/<video>/<exp>/<frame>.png (LVOS: <pred>/<video>/<frame>.png) "
                        "or an RLE JSON {video: {exp: [RLE|null per frame]}}")
    p.add_argument("--protocol", required=True, choices=["long_rvos", "mevis", "revos", "lvos"])
    p.add_argument("--split", help="ground-truth split (default: the only one, else valid)")
    p.add_argument("--format", choices=list(LOADERS), help="ground-truth format (default: detected)")
    p.add_argument("--out", type=Path, help="REPORT.json to write (with REPORT.csv and REPORT.md beside it); "
                                             "without it the table goes to stdout")
    p.add_argument("--workers", type=int, default=1, help="processes scoring videos in parallel")
    p.add_argument("--per-frame", action="store_true", help="also write REPORT.frames.parquet (J, F per frame)")
    p.add_argument("--missing", choices=["official", "zero", "empty", "drop"], default="official",
                   help="what a missing/unreadable/wrong-sized prediction costs (default: what the official "
                        "script does)")
    p.add_argument("--revos-raw", action="store_true",
                   help="ReVOS A and R on raw grayscale values, reproducing the official script's bug")
    p.add_argument("--lvos-version", type=int, choices=[1, 2], help="LVOS unseen list (default: the dataset's)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _run_eval(args) -> int:
    from .eval import evaluate
    report = evaluate(args.gt, args.pred, protocol=args.protocol, split=args.split, format=args.format,
                      workers=args.workers, missing=args.missing, per_frame=args.per_frame,
                      revos_raw=args.revos_raw, lvos_version=args.lvos_version,
                      progress=False if args.no_progress else None)
    if args.out:
        paths = report.write(args.out)
        print(" ".join(f"{k}={'-' if v is None else f'{100 * v:.2f}'}" for k, v in report.overall.items())
              + f" ({len(report.warnings)} warning(s))")
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
    p.add_argument("--layout", choices=["mevis", "ref_youtube_vos", "lvos"],
                   help="zip layout (default: from the dataset's format)")
    p.add_argument("--allow-gaps", action="store_true", help="write the zip even if predictions are missing")


def _run_pack(args) -> int:
    from .eval.pack import IncompleteSubmission, pack
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
    return 0


VERBS = {
    "info": (_add_info, _run_info),
    "validate": (_add_validate, _run_validate),
    "convert": (_add_convert, _run_convert),
    "push": (_add_push, _run_push),
    "fiftyone": (_add_fiftyone, _run_fiftyone),
    "fiftyone-setup": (_add_fiftyone_setup, _run_fiftyone_setup),
    "eval": (_add_eval, _run_eval),
    "pack": (_add_pack, _run_pack),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="longrvos", description="Read, convert, score and browse long-term "
                                     "referring video object segmentation datasets.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="verb", required=True)
    for add, _ in VERBS.values():
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s: %(message)s")
    try:
        return VERBS[args.verb][1](args)
    except LongRVOSError as err:
        print(f"longrvos {args.verb}: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `longrvos info ... | head`
        return 0
    except KeyError as err:  # an unknown split, video or expression named on the command line
        print(f"longrvos {args.verb}: error: {err.args[0] if err.args else err}", file=sys.stderr)
        return 2
    except OSError as err:  # permissions, a full disk: say which file
        print(f"longrvos {args.verb}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
