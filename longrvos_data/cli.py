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


VERBS = {
    "info": (_add_info, _run_info),
    "validate": (_add_validate, _run_validate),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="longrvos", description=__doc__.splitlines()[0])
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
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
