"""Dataset verbs: ``download``, ``prepare``, ``info``, ``validate``, ``convert``, ``push``."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ..errors import LongRVOSError, Problem
from ..loaders import LOADERS
from .common import (add_format_args, add_progress_flag, add_project_filters, load_options,
                     print_problems, progress, skipped)


def _add_download(sub) -> None:
    from ..download import DATASETS
    p = sub.add_parser("download", help="fetch a release from the Hugging Face Hub, unpack it and check it "
                                        "(other datasets: where their files are and where each goes)")
    p.add_argument("dataset", choices=DATASETS, help="long_rvos and mevis_v2 are on the Hub; the others print "
                                                     "where their files are and exit 1")
    p.add_argument("out", type=Path, help="dataset root; the repository's split folders land at OUT/<split>/")
    p.add_argument("--split", action="append", help="only this split (repeatable; default: all)")
    p.add_argument("--remove-archives", action="store_true", help="delete each archive once unpacked")
    p.add_argument("--dry-run", action="store_true", help="print the repository, the file patterns and where "
                                                          "each file lands; no network")
    add_progress_flag(p)


def _run_download(args) -> int:
    from .. import download as dl
    if args.dataset in dl.MANUAL:
        print(dl.manual_instructions(args.dataset, args.out))
        return 1
    plan = dl.plan(args.dataset, args.out, splits=args.split)
    if args.dry_run:
        print(dl.format_plan(plan))
        return 0
    report = dl.download(args.dataset, args.out, splits=args.split, remove_archives=args.remove_archives,
                         progress=progress(args))
    _print_prepared(report.prepared)
    for split, counts in report.splits.items():
        print(f"{args.out}/{split}: " + ", ".join(f"{n} {k}" for k, n in counts.items()))
    print(f"downloaded {plan.repo_id} to {args.out}; next: `longrvos validate {args.out}` decodes every file")
    return 0


def _add_prepare(sub) -> None:
    p = sub.add_parser("prepare", help="unpack a release's archives in place into the layout the loaders read")
    p.add_argument("root", type=Path, help="dataset root (or split folder) holding the archives as downloaded")
    p.add_argument("--remove-archives", action="store_true", help="delete each archive once unpacked")
    p.add_argument("--no-verify", action="store_true", help="skip the published SHA256 check (ReVOS JPEGImages.zip)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    add_progress_flag(p)


def _print_prepared(report) -> None:
    if not report.archives:
        print(f"no archive to unpack in {report.root}")
    for a in report.archives:
        what = (f"extracted {a.files} file(s), {a.bytes / 1e6:.1f} MB, into {a.dest}/ in {a.seconds:.1f} s"
                + (f" (top folder {a.top}/ dropped)" if a.top else "")
                if a.action == "extracted" else f"already extracted into {a.dest}/")
        print(f"{a.archive}: {what}" + ("; archive removed" if a.removed else ""))


def _run_prepare(args) -> int:
    from ..prepare import prepare
    report = prepare(args.root, remove_archives=args.remove_archives, verify=not args.no_verify,
                     progress=progress(args) and not args.json)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        _print_prepared(report)
    return 0


def _add_info(sub) -> None:
    p = sub.add_parser("info", help="count videos, frames, tracks, expressions (and masks with --deep)")
    add_format_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--deep", action="store_true", help="decode every mask to count non-empty (track, frame) pairs")
    p.add_argument("--workers", type=int, default=1, help="processes for --deep")
    p.add_argument("--on-error", choices=["raise", "skip"], default="raise",
                   help="skip bad videos (listed, not counted; exit status 3) instead of stopping")
    add_progress_flag(p)


def _run_info(args) -> int:
    from ..summary import format_summary, summarise
    summary = summarise(args.path, format=args.format, split=args.split, deep=args.deep,
                        workers=args.workers, on_error=args.on_error, progress=progress(args),
                        load_options=load_options(args))
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return skipped("info", [Problem(**p) for p in summary.get("problems", [])], "not counted")


def _add_validate(sub) -> None:
    p = sub.add_parser("validate", help="list every problem with file, video and field")
    add_format_args(p)
    p.add_argument("--checksums", action="store_true", help="verify the SHA256 sums the release publishes (ReVOS)")
    p.add_argument("--json", action="store_true", help="print the problems as JSON")
    p.add_argument("--workers", type=int, default=1, help="processes for the per-video checks")
    add_progress_flag(p)
    p.set_defaults(lists_problems=("error", "warning"))  # its output is every problem: none is logged too


def _run_validate(args) -> int:
    from ..validate import validate
    problems = validate(args.path, format=args.format, split=args.split, checksums=args.checksums,
                        workers=args.workers, progress=progress(args), load_options=load_options(args))
    return print_problems(problems, as_json=args.json)


def _add_convert(sub) -> None:
    from ..converters.base import TARGETS as CONVERT_TARGETS

    p = sub.add_parser("convert", help="write a dataset in another format (any readable format to any target)")
    p.add_argument("src", type=Path, help="dataset root or one split folder")
    p.add_argument("--to", dest="target", required=True, choices=CONVERT_TARGETS, help="the format to write")
    add_project_filters(p)
    p.add_argument("out", type=Path, help="output root: new, empty, or holding splits of the same target "
                                           "(completed or from an interrupted run, which is resumed); never "
                                           "SRC, inside it or around it")
    p.add_argument("--overwrite", action="store_true",
                   help="first remove what longrvos wrote in OUT (any target); other files are always refused")
    p.add_argument("--frames", choices=["hardlink", "copy", "symlink"],
                   help="folder targets: how frame files get into OUT (default: hardlink, a copy across file "
                        "systems; a hard-linked frame IS the source's file: editing it in place changes the source)")
    p.add_argument("--format", choices=list(LOADERS), help="skip detection and read SRC as this format")
    p.add_argument("--split", help="convert only this split")
    p.add_argument("--workers", type=int, default=1, help="processes per split")
    p.add_argument("--lossy", action="store_true",
                   help="leave out what the target cannot hold, and list it, instead of keeping it in a sidecar")
    p.add_argument("--no-sidecar", action="store_true",
                   help="refuse (error) what the target cannot hold instead of keeping it in a sidecar")
    p.add_argument("--link-frames", action="store_true", help="hf only: reference frame files instead of embedding")
    p.add_argument("--on-error", choices=["raise", "skip"], default="raise",
                   help="skip bad videos (listed, not written; exit status 3) instead of stopping")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    add_progress_flag(p)


def _run_convert(args) -> int:
    from ..converters.base import convert
    if args.workers < 1:
        raise LongRVOSError("--workers must be at least 1")
    options = {}
    if args.link_frames:
        if args.target != "hf":
            raise LongRVOSError("--link-frames applies to --to hf only")
        options["link_frames"] = True
    if args.frames is not None:
        if args.target == "hf":
            raise LongRVOSError("--frames applies to the folder targets; hf embeds frames or, with --link-frames, "
                                "references them")
        options["frames"] = args.frames
    if args.lossy and args.no_sidecar:
        raise LongRVOSError("--lossy and --no-sidecar exclude each other")
    report = convert(args.src, args.target, args.out, format=args.format, split=args.split, lossy=args.lossy,
                     sidecar=not args.no_sidecar, workers=args.workers, on_error=args.on_error,
                     overwrite=args.overwrite, progress=progress(args), load_options=load_options(args),
                     **options)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
        return skipped("convert", report.problems, "not written")
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
    return skipped("convert", report.problems, "not written")  # warnings were logged as they came


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

    from ..hub import LicenceWarning, push
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LicenceWarning)  # printed below, once
        result = push(args.out, args.repo_id, token=args.token, private=args.private, revision=args.revision,
                      commit_message=args.message)
    for line in result.warnings:
        print(f"longrvos push: warning: {line}", file=sys.stderr)
    print(f"pushed {args.out} to {result.repo_id}: {result.url}")
    return 0


VERBS = {
    "download": (_add_download, _run_download),
    "prepare": (_add_prepare, _run_prepare),
    "info": (_add_info, _run_info),
    "validate": (_add_validate, _run_validate),
    "convert": (_add_convert, _run_convert),
    "push": (_add_push, _run_push),
}
