"""``longrvos audit``: the masks and expressions that need a human (calls `annotation.audit.audit`)."""
from __future__ import annotations

from pathlib import Path

from ..errors import LongRVOSError
from .common import add_engine_args, add_progress_flag, add_project_filters, engine_options, load_options, progress, \
    skipped


def _add_audit(sub) -> None:
    from ..annotation.audit import AuditConfig
    from ..loaders import LOADERS

    p = sub.add_parser("audit", help="flag masks and expressions that need a human: per-frame and temporal checks, "
                                     "a mask engine's re-propagation, a model's predictions")
    p.add_argument("src", type=Path, help="dataset root, one split folder, or an annotation project")
    p.add_argument("--split", help="audit only this split")
    p.add_argument("--format", choices=list(LOADERS), help="skip detection and read SRC as this format")
    add_project_filters(p)
    add_engine_args(p)
    p.set_defaults(engine=None)
    p.add_argument("--keyframe-every", type=int, metavar="N",
                   help="--engine on sources without human keyframes (and tracks no one edited): re-propagate "
                        "from every Nth visible frame (default 10; same as --threshold keyframe_every=N)")
    p.add_argument("--pred", type=Path, help="predictions (folder or RLE JSON, as eval reads them): flag frames "
                                             "where the model disagrees with the masks")
    p.add_argument("--out", type=Path, default=Path("audit.json"),
                   help="REPORT.json (REPORT.csv and REPORT.md are written beside it; default audit.json)")
    p.add_argument("--workers", type=int, default=1, help="processes, one video each")
    p.add_argument("--threshold", action="append", default=[], metavar="NAME=VALUE",
                   help=f"set a check's threshold (repeatable); names: {', '.join(AuditConfig.__dataclass_fields__)}")
    p.add_argument("--no-record", action="store_true",
                   help="projects: do not replace the project's audit flags (the app's review queue)")
    p.add_argument("--on-error", choices=["raise", "skip"], default="raise",
                   help="skip bad videos with a warning instead of stopping")
    add_progress_flag(p)


def _run_audit(args) -> int:
    from ..annotation.audit import audit, config_with

    overrides = {}
    for item in args.threshold:
        name, sep, value = item.partition("=")
        if not sep:
            raise LongRVOSError(f"--threshold {item!r}: write NAME=VALUE, e.g. tiny_px=20")
        overrides[name.strip()] = value.strip()
    if args.keyframe_every is not None:
        if args.keyframe_every < 1:
            raise LongRVOSError("--keyframe-every must be at least 1")
        overrides["keyframe_every"] = str(args.keyframe_every)
    options = engine_options(args) if args.engine else {}
    report = audit(args.src, split=args.split, format=args.format, config=config_with(overrides), engine=args.engine,
                   engine_options=options, pred=args.pred, workers=args.workers, progress=progress(args),
                   on_error=args.on_error, load_options=load_options(args), record=not args.no_record)
    paths = report.write(args.out)
    s = report.summary
    print(f"{s['videos']} video(s), {s['masks']} mask(s) audited in {s['seconds']} s "
          f"({s['masks_per_second']} masks/s): {s['flags']} flag(s) (high {s['by_severity']['high']}, "
          f"medium {s['by_severity']['medium']}, low {s['by_severity']['low']})"
          + (f", {s['dismissed']} dismissed earlier" if s["dismissed"] else ""))
    for check, counts in s["by_check"].items():
        print(f"  {check:<24} " + "  ".join(f"{k} {v}" for k, v in counts.items()))
    print(f"wrote {paths['json']}, {paths['csv'].name}, {paths['md'].name}")
    return skipped("audit", report.problems, "not audited")


VERBS = {"audit": (_add_audit, _run_audit)}
