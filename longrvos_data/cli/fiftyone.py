"""FiftyOne verbs: ``fiftyone`` (a dataset to browse in the App) and ``fiftyone-setup``."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from .common import add_format_args, add_progress_flag, load_options, progress, skipped


def _add_fiftyone(sub) -> None:
    p = sub.add_parser("fiftyone", help="write a dataset (and predictions) into FiftyOne to browse it in the App")
    add_format_args(p)
    p.add_argument("--name", required=True, help="FiftyOne dataset name (persistent; re-running updates it)")
    p.add_argument("--pred", type=Path, help="predictions: PNG folder <pred>/<video>/<exp>/<frame>.png or RLE JSON")
    p.add_argument("--scores", type=Path,
                   help="per-frame report of `longrvos eval --per-frame` (REPORT.frames.parquet)")
    p.add_argument("--audit", type=Path, metavar="REPORT.json",
                   help="report of `longrvos audit`: its flags label the frames they span (field 'audit', "
                        "tags audit:<severity>, views audit_flags and audit_high)")
    p.add_argument("--masks-dir", type=Path, help="where mask PNGs go (default: FiftyOne's dataset dir/<name>/masks)")
    p.add_argument("--inline-masks", action="store_true", help="keep masks in the database (small sets only)")
    p.add_argument("--overwrite", action="store_true",
                   help="delete the FiftyOne dataset first, with the mask PNGs longrvos wrote for it")
    p.add_argument("--workers", type=int, default=1, help="processes decoding masks and writing mask PNGs")
    p.add_argument("--on-error", choices=["raise", "skip"], default="raise",
                   help="skip bad videos (listed, not imported; exit status 3) instead of stopping")
    p.add_argument("--launch", action="store_true", help="serve the App afterwards (Ctrl-C stops it)")
    p.add_argument("--port", type=int, default=5151, help="App port with --launch")
    p.add_argument("--view", help="saved view to open with --launch (e.g. by_video)")
    p.add_argument("--expression", metavar="VIDEO_ID/EXP_ID",
                   help="save the view 'expression' showing only this expression's target (opened by --launch)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    add_progress_flag(p)


def _run_fiftyone(args) -> int:
    from ..converters import fiftyone as lfo
    report = lfo.to_fiftyone(args.path, name=args.name, format=args.format, split=args.split, pred=args.pred,
                             scores=args.scores, masks_dir=args.masks_dir, inline_masks=args.inline_masks,
                             overwrite=args.overwrite, on_error=args.on_error, progress=progress(args),
                             workers=args.workers, load_options=load_options(args), audit=args.audit)
    view = args.view
    if args.expression:
        video_id, _, exp_id = args.expression.partition("/")
        lfo.expression_view(args.name, video_id, exp_id, split=args.split, save_as=lfo.VIEW_EXPRESSION)
        report.views.append(lfo.VIEW_EXPRESSION)
        view = view or lfo.VIEW_EXPRESSION
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(f"FiftyOne dataset {report.name!r}: {report.samples} frame(s) of {report.videos} video(s) written "
              f"({report.total_samples} in total, {report.removed} stale removed), {report.gt_masks} mask(s)"
              + (f", {report.pred_labels} prediction(s), {report.scored} scored" if args.pred else "")
              + (f", {report.audit_flags} audit flag(s) on {report.audit_frames} frame(s)" if args.audit else "")
              + f"; {report.samples / max(report.seconds, 1e-9):.0f} frames/s")
        print(f"saved views: {', '.join(report.views)}")
    status = skipped("fiftyone", report.skipped, "not imported")  # warnings were logged as they came
    if args.launch:
        session = lfo.launch(args.name, port=args.port, view=view)
        print(f"App at http://localhost:{args.port} (Ctrl-C stops it)", file=sys.stderr)
        try:
            session.wait()
        finally:  # Ctrl-C included: the App server stops with the session
            session.close()
    return status


def _add_fiftyone_setup(sub) -> None:
    p = sub.add_parser("fiftyone-setup", help="write FiftyOne's database settings into its config file (idempotent)")
    p.add_argument("--config", type=Path, help="FiftyOne config file (default: $FIFTYONE_CONFIG_PATH or "
                                               "~/.fiftyone/config.json)")
    p.add_argument("--database-dir", type=Path, help="folder of FiftyOne's MongoDB data (default: kept, "
                                                     "else ~/.fiftyone/var/lib/mongo)")
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 unless a database can be reached")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")


def _run_fiftyone_setup(args) -> int:
    from ..converters.fiftyone import configure
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


VERBS = {
    "fiftyone": (_add_fiftyone, _run_fiftyone),
    "fiftyone-setup": (_add_fiftyone_setup, _run_fiftyone_setup),
}
