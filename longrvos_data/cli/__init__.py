"""The ``longrvos`` command: parses arguments and calls the library, nothing more.

One module per verb group (`data`, `scoring`, `fiftyone`, `annotate`, `audit`, `propagate`, `baseline`), each with
an ``_add_<verb>(sub)`` that declares a verb's arguments, a ``_run_<verb>(args) -> int``
that calls the library, and its ``VERBS``. Every `LongRVOSError` becomes a one-line message
on stderr and exit status 2; no raw traceback reaches the user.
"""
from __future__ import annotations

import argparse
import logging
import sys

from ..errors import LongRVOSError
from . import annotate, audit, baseline, data, fiftyone, propagate, scoring

VERBS = {**data.VERBS, **scoring.VERBS, **fiftyone.VERBS, **annotate.VERBS, **audit.VERBS, **propagate.VERBS,
         **baseline.VERBS}


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """States every option's default, unless there is none to state (None, a flag that is off)
    or its help already says it (``default: ...``)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (not action.option_strings or action.default in (None, False, argparse.SUPPRESS)
                or "default:" in text):
            return text
        return f"{text} (default: %(default)s)"


class _Parser(argparse.ArgumentParser):
    """`argparse.ArgumentParser` with `_HelpFormatter`, for the command and every (sub)verb:
    ``add_subparsers`` makes its parsers of the same class, so each verb's help states its defaults."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)


EPILOG = ("exit status: 0 done; 1 problems found (validate, pack, fiftyone-setup --check); 2 error (one line "
          "names the file, video and field); 3 finished but skipped input (--on-error skip; listed on stderr); "
          "130 interrupted")


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__
    parser = _Parser(prog="longrvos", description="Read, convert, score, browse and annotate long-term "
                     "referring video object segmentation datasets; extract the ReferMo baseline's motion.", epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"longrvos {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="verb", required=True)
    for add, _ in VERBS.values():
        add(sub)
    return parser


class _Console(logging.Handler):
    """The one place log records are printed: ``longrvos VERB: ...`` on stderr, through
    ``tqdm.write`` so that a line never lands inside a progress bar. A `ProblemLog` record
    whose level the verb lists itself (``lists_problems``: skipped videos, for validate every
    problem) is left to the verb, so that each problem is printed once."""

    def __init__(self, verb: str, listed: tuple[str, ...]) -> None:
        super().__init__()
        self.verb = verb
        self.listed = listed

    def emit(self, record: logging.LogRecord) -> None:
        problem = getattr(record, "problem", None)
        if problem is not None and problem.level in self.listed:
            return
        try:
            from tqdm import tqdm
            text = record.getMessage() if problem is not None else f"{record.levelname.lower()}: {record.getMessage()}"
            if record.exc_info:
                text += "\n" + logging.Formatter().formatException(record.exc_info)
            tqdm.write(f"longrvos {self.verb}: {text}", file=sys.stderr)
        except Exception:  # noqa: BLE001 (logging's own contract: a handler never raises)
            self.handleError(record)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = _Console(args.verb, getattr(args, "lists_problems", ("error",)))
    root = logging.getLogger()
    level = root.level
    root.addHandler(console)
    root.setLevel(logging.DEBUG if args.verbose else logging.WARNING)
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
    finally:
        root.removeHandler(console)
        root.setLevel(level)


if __name__ == "__main__":
    sys.exit(main())
