"""One exception family for bad data, and a log that decides whether a problem raises.

Every message names the file, the video and the field, so that a user can open the
file and find the entry without reading a traceback.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

log = logging.getLogger("longrvos_data")

OnError = Literal["raise", "skip"]


def _where(file: str | Path | None, video: str | None, field: str | None) -> str:
    parts = []
    if file is not None:
        parts.append(str(file))
    if video is not None:
        parts.append(f"video {video!r}")
    if field is not None:
        parts.append(f"field {field!r}")
    return ": ".join(parts)


class LongRVOSError(Exception):
    """Base of every error this package raises on purpose."""


class DataError(LongRVOSError):
    """Input that breaks its format, located by file, video and field.

    Example:
        >>> raise DataError("frame is missing", file="a/meta.json", video="v1", field="frames[3]")
    """

    def __init__(self, message: str, *, file: str | Path | None = None,
                 video: str | None = None, field: str | None = None) -> None:
        self.message = message
        self.file = None if file is None else str(file)
        self.video = video
        self.field = field
        where = _where(file, video, field)
        super().__init__(f"{where}: {message}" if where else message)


class FormatDetectionError(LongRVOSError):
    """No format (or more than one, equally likely) matches a folder; lists each reason."""


@dataclass(frozen=True)
class Problem:
    """One finding of `validate` or of a loader running with ``on_error="skip"``."""

    level: Literal["error", "warning"]
    message: str
    file: str | None = None
    video: str | None = None
    field: str | None = None

    def __str__(self) -> str:
        where = _where(self.file, self.video, self.field)
        return f"{self.level}: {where}: {self.message}" if where else f"{self.level}: {self.message}"

    def as_dict(self) -> dict:
        return {"level": self.level, "message": self.message, "file": self.file,
                "video": self.video, "field": self.field}


class ProblemLog:
    """Collects problems; in ``raise`` mode an error raises at once.

    Loaders call `error` for anything that would give a wrong record, and `warning`
    for oddities that do not. With ``on_error="skip"`` an error is recorded and the
    caller skips the affected video.

    Each distinct problem is kept and logged once, however often the video is read (a
    summary reads it, then its masks; each worker process reads it again): the log record
    carries the `Problem` as ``record.problem``, so that the command line, which lists
    skipped videos itself, can tell these records from the rest.
    """

    def __init__(self, on_error: OnError = "raise") -> None:
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', not {on_error!r}")
        self.on_error = on_error
        self.problems: list[Problem] = []
        self._seen: set[Problem] = set()

    def record(self, problem: Problem) -> bool:
        """Keep and log ``problem`` unless the same one is kept already; True when it is new."""
        if problem in self._seen:
            return False
        self._seen.add(problem)
        self.problems.append(problem)
        text = str(problem)
        if problem.level == "error":
            text = "skipped: " + text[len("error: "):]
        log.warning("%s", text, extra={"problem": problem})
        return True

    def error(self, message: str, *, file=None, video=None, field=None) -> None:
        self.add(DataError(message, file=file, video=video, field=field))

    def add(self, err: DataError) -> None:
        """Record (or re-raise) an error caught from deeper code."""
        if self.on_error == "raise":
            raise err
        self.record(Problem("error", err.message, err.file, err.video, err.field))

    def warning(self, message: str, *, file=None, video=None, field=None) -> None:
        self.record(Problem("warning", message, None if file is None else str(file), video, field))

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.level == "error"]
