"""Helpers for the evaluation tests: masks drawn as ASCII art, in-memory videos, the oracle."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from longrvos_data import masks as M
from longrvos_data.schema import Expression, Frame, RLEMaskSource, Track, Video

REPO = Path(__file__).resolve().parents[2]


def load_reference():
    """``bench/reference_eval.py``: the direct implementation of the official definitions (the oracle)."""
    spec = importlib.util.spec_from_file_location("reference_eval", REPO / "bench" / "reference_eval.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def art(text: str) -> np.ndarray:
    """A bool mask from ASCII art: ``#`` foreground, ``.`` background, one row per line."""
    rows = [line.strip() for line in text.strip().splitlines()]
    return np.array([[c == "#" for c in row] for row in rows], dtype=bool)


def make_video(video_id: str, frames: Sequence[Mapping[str, np.ndarray | None]], expressions: Sequence[tuple],
               *, size: tuple[int, int], dataset: str = "long_rvos", frame_names: Sequence[str] | None = None,
               track_meta: Mapping[str, Mapping] | None = None, meta: Mapping | None = None,
               tracks: Sequence[str] | None = None) -> Video:
    """A `Video` whose masks are given per frame as ``{track_id: mask or None}`` (None/missing = absent).

    ``expressions`` are ``(exp_id, kind, track_ids)`` tuples.
    """
    h, w = size
    names = list(frame_names) if frame_names else [f"{i:05d}" for i in range(len(frames))]
    track_ids = list(tracks) if tracks else sorted({t for f in frames for t in f} |
                                                   {t for e in expressions for t in e[2]})
    seqs = {t: [None if f.get(t) is None else M.encode(f[t]) for f in frames] for t in track_ids}
    return Video(dataset=dataset, split="valid", video_id=video_id,
                 frames=[Frame(n, Path(f"/nonexistent/{n}.jpg")) for n in names], height=h, width=w,
                 tracks=[Track(t, meta=(track_meta or {}).get(t, {})) for t in track_ids],
                 expressions=[Expression(e[0], f"expression {e[0]}", tuple(e[2]), e[1]) for e in expressions],
                 meta=meta or {}, mask_source=RLEMaskSource(seqs))


def write_pngs(root: Path, video_id: str, unit: str | None, frames: Mapping[str, np.ndarray]) -> None:
    """Prediction PNGs (0/255) under ``root/video_id[/unit]/<frame>.png``."""
    folder = root / video_id if unit is None else root / video_id / unit
    for name, mask in frames.items():
        M.write_binary_png(folder / f"{name}.png", mask)


def perturbed_predictions(videos: Sequence[Video], root: Path, *, seed: int = 0) -> None:
    """Plausible, imperfect predictions for every expression: shifted, sometimes empty, sometimes noisy."""
    rng = np.random.default_rng(seed)
    for v in videos:
        for e in v.expressions:
            for i, f in enumerate(v.frames):
                g = v.target_mask(e, v.frame_masks(i))
                g = np.zeros((v.height, v.width), bool) if g is None else g
                p = np.roll(g, int(rng.integers(-3, 4)), axis=int(rng.integers(0, 2)))
                u = rng.random()
                if u < 0.15:
                    p = np.zeros_like(p)
                elif u < 0.3:
                    p = p | (rng.random(p.shape) < 0.01)
                elif u < 0.4:
                    p[int(rng.integers(0, v.height)):, : int(rng.integers(0, v.width))] = True
                M.write_binary_png(root / v.video_id / e.exp_id / f"{f.name}.png", p)
