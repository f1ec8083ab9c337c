"""Mask engines behind one interface (`Engine`), chosen by name.

- ``classical``: OpenCV only (GrabCut prompts, optical-flow propagation); the default, runs anywhere.
- ``sam2``: the ``sam2`` package's model with state this package owns, flat in memory on videos
  of any length (needs the ``sam2`` extra, a config and a checkpoint).

Engines know nothing of the annotation store; the server joins them.

Example:
    >>> engine = open_engine("classical")
    >>> engine.open(video)
    >>> mask = engine.add_box(0, "1", (40, 30, 200, 160))
"""
from __future__ import annotations

import importlib
from typing import Literal

from .base import DIRECTIONS, Engine, EngineError, Held, Step, StepWithLogits, TrackState

EngineName = Literal["classical", "sam2"]
ENGINES: dict[str, str] = {
    "classical": "longrvos_data.annotation.engines.classical:ClassicalEngine",
    "sam2": "longrvos_data.annotation.engines.sam2:Sam2Engine",
}
DEFAULT_ENGINE = "classical"


def engine_class(name: str) -> type[Engine]:
    """The class registered under ``name`` (imported on first use: sam2 pulls in torch)."""
    try:
        target = ENGINES[name]
    except KeyError:
        raise EngineError(f"unknown engine {name!r}; choose one of {sorted(ENGINES)}") from None
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def open_engine(name: str = DEFAULT_ENGINE, **options) -> Engine:
    """Build the engine ``name`` with its options (sam2: ``config``, ``checkpoint``, ``device``)."""
    return engine_class(name)(**options)


__all__ = ["DEFAULT_ENGINE", "DIRECTIONS", "ENGINES", "Engine", "EngineError", "EngineName", "Held", "Step",
           "StepWithLogits", "TrackState", "engine_class", "open_engine"]
