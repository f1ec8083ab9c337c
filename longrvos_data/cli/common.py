"""What every verb module shares: progress bars, the skip rule, the dataset arguments."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..loaders import LOADERS


def add_progress_flag(p: argparse.ArgumentParser) -> None:
    """``--no-progress``, read by `progress`."""
    p.add_argument("--no-progress", action="store_true", help="no progress bar (there is none unless stderr is "
                                                          "a terminal)")


def progress(args) -> bool:
    """Bars only on a terminal (they go to stderr), and never with ``--no-progress``."""
    return not args.no_progress and sys.stderr.isatty()


def skipped(verb: str, problems, what: str) -> int:
    """The rule of every verb with ``--on-error skip``: a run that skipped anything lists it on
    stderr and exits 3 (its counts and outputs hold only what was read); else 0."""
    skipped = [p for p in problems if p.level == "error"]
    if not skipped:
        return 0
    print(f"longrvos {verb}: {len(skipped)} skipped (--on-error skip), {what}:", file=sys.stderr)
    for p in skipped:
        print("  " + str(p).removeprefix("error: "), file=sys.stderr)
    return 3


def add_format_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", type=Path, help="dataset root or one split folder")
    p.add_argument("--format", choices=list(LOADERS), help="skip detection and read as this format")
    p.add_argument("--split", help="read only this split (e.g. valid, train_sub)")
    add_project_filters(p)


def add_project_filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--provenance", help="annotation projects: only masks of these provenances, e.g. human,imported "
                                        "(default: every current mask)")
    p.add_argument("--status", help="annotation projects: only videos of these statuses, e.g. done,reviewed "
                                    "(default: every video)")


def load_options(args) -> dict:
    """The project filters as `loaders.load` options (formats without them refuse them)."""
    return {k: getattr(args, k) for k in ("provenance", "status") if getattr(args, k, None) is not None}


def print_problems(problems, *, as_json: bool) -> int:
    """What ``validate`` verbs print: every problem (or JSON), a count line; 1 when any is an error."""
    errors = [p for p in problems if p.level == "error"]
    if as_json:
        print(json.dumps([p.as_dict() for p in problems], indent=2))
    else:
        for p in problems:
            print(p)
        print(f"{len(errors)} error(s), {len(problems) - len(errors)} warning(s)")
    return 1 if errors else 0
