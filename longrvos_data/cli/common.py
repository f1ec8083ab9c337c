"""What every verb module shares: progress bars, the skip rule, the dataset arguments."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import LongRVOSError
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


def add_engine_args(p: argparse.ArgumentParser, *, checkpoint_flag: str = "--checkpoint", device: bool = True) -> None:
    """``--engine`` and the SAM2 engine's flags, read by `engine_options`.

    ``checkpoint_flag`` names SAM2's checkpoint flag (``--sam2-checkpoint`` where ``--checkpoint``
    is another model's); ``device=False`` leaves ``--device`` to the caller, whose device SAM2 shares.
    """
    from ..annotation.engines import DEFAULT_ENGINE, ENGINES

    p.add_argument("--engine", choices=sorted(ENGINES), default=DEFAULT_ENGINE,
                   help="classical: OpenCV optical flow + GrabCut, no model; sam2: needs --sam2-config and "
                        f"{checkpoint_flag}")
    p.add_argument("--sam2-config", help="sam2: the model config, e.g. configs/sam2.1/sam2.1_hiera_l.yaml")
    p.add_argument(checkpoint_flag, dest="engine_checkpoint", type=Path,
                   help="sam2: the checkpoint file matching --sam2-config")
    p.set_defaults(engine_checkpoint_flag=checkpoint_flag, engine_device_shared=not device)
    if device:
        p.add_argument("--device", default="cpu", help="sam2: torch device (cpu, cuda, cuda:1)")


def engine_options(args) -> dict:
    """The engine's options from the flags; flags of another engine are refused, not ignored."""
    if args.engine == "sam2":
        return {"config": args.sam2_config, "checkpoint": args.engine_checkpoint, "device": args.device}
    stray = [flag for flag, value in (("--sam2-config", args.sam2_config),
                                      (args.engine_checkpoint_flag, args.engine_checkpoint)) if value is not None]
    if args.device != "cpu" and not args.engine_device_shared:
        stray.append("--device")
    if stray:
        raise LongRVOSError(f"{' and '.join(stray)} {'applies' if len(stray) == 1 else 'apply'} only to --engine "
                            f"sam2 (the {args.engine} engine runs on the CPU with no model)")
    return {}


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
