"""Small, faithful synthetic videos: objects that move, leave and come back.

`synth_videos` renders canonical `Video` records procedurally (masks are drawn on demand
from each object's trajectory, so a 720p, 300-frame video costs no memory); `generate`
writes them in a format's official layout through that format's writer. Tests use it, and
so does the bundled sample data (``samples/``). It is deliberately not the only judge of
the loaders: every format also has a hand-written fixture in ``tests/fixtures``.
"""
from __future__ import annotations

import importlib
import io
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from .fsutil import atomic_write_bytes
from .masks import write_binary_png
from .schema import Expression, Frame, MaskSource, Track, Video
from .sidecar import unmark_complete

COLOURS = ("red", "green", "blue", "yellow", "cyan", "magenta", "orange", "white")
_RGB = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (40, 70, 220), "yellow": (230, 220, 40),
        "cyan": (40, 210, 210), "magenta": (210, 40, 210), "orange": (240, 140, 30), "white": (245, 245, 245)}
SHAPES = ("ellipse", "box")


@dataclass(frozen=True)
class SynthObject:
    """One moving shape: centre and velocity in pixels, radii, and frames where it is gone."""

    track_id: str
    colour: str
    shape: str
    cy: float
    cx: float
    vy: float
    vx: float
    ry: float
    rx: float
    absent: tuple[int, int] | None = None  # [start, stop) frames where the object has left

    def centre(self, t: int, height: int, width: int) -> tuple[float, float]:
        return _bounce(self.cy + self.vy * t, height), _bounce(self.cx + self.vx * t, width)

    def draw(self, t: int, height: int, width: int) -> np.ndarray | None:
        """The object's own (unoccluded) mask at frame ``t``, or None while it is away."""
        if self.absent and self.absent[0] <= t < self.absent[1]:
            return None
        cy, cx = self.centre(t, height, width)
        y0, y1 = max(int(cy - self.ry) - 1, 0), min(int(cy + self.ry) + 2, height)
        x0, x1 = max(int(cx - self.rx) - 1, 0), min(int(cx + self.rx) + 2, width)
        out = np.zeros((height, width), dtype=bool)
        if y0 >= y1 or x0 >= x1:
            return out
        yy, xx = np.ogrid[y0:y1, x0:x1]
        dy, dx = (yy - cy) / self.ry, (xx - cx) / self.rx
        inside = (dy * dy + dx * dx <= 1.0) if self.shape == "ellipse" else ((abs(dy) <= 1.0) & (abs(dx) <= 1.0))
        out[y0:y1, x0:x1] = inside
        return out


def _bounce(pos: float, size: int) -> float:
    """Reflect a coordinate into ``[0, size)`` so objects bounce off the borders."""
    period = 2 * size
    p = pos % period
    return p if p < size else period - p


class SynthMaskSource(MaskSource):
    """Masks drawn from trajectories on demand; later objects occlude earlier ones."""

    def __init__(self, objects: Sequence[SynthObject], height: int, width: int) -> None:
        self.objects, self.height, self.width = tuple(objects), height, width

    def masks(self, index: int) -> dict[str, np.ndarray]:
        drawn = [(o.track_id, o.draw(index, self.height, self.width)) for o in self.objects]
        covered = np.zeros((self.height, self.width), dtype=bool)
        out: dict[str, np.ndarray] = {}
        for tid, m in reversed(drawn):
            if m is None:
                continue
            m &= ~covered
            if m.any():  # a fully hidden object is absent, as every format can say
                covered |= m
                out[tid] = m
        return {tid: out[tid] for tid, _ in drawn if tid in out}


@dataclass(frozen=True)
class Profile:
    """How a format names frames, numbers tracks and types expressions."""

    frame_name: Callable[[int], str]
    kinds: tuple[str, ...]
    multi_object: bool = False
    no_target: bool = False
    global_track_ids: bool = False      # MeViS / ReVOS anno_ids are unique across the dataset
    fps: float | None = None
    splits: tuple[str, ...] = ("train", "valid")
    unannotated: tuple[str, ...] = ()   # splits written without masks
    one_expression_per_track: bool = False  # LVOS v1 captions


PROFILES: dict[str, Profile] = {
    "long_rvos": Profile(lambda i: f"{i:05d}", ("static", "dynamic", "hybrid"), fps=6.0,
                         splits=("train", "valid", "test"), unannotated=("test",)),
    "lvos": Profile(lambda i: f"{1 + 5 * i:08d}", ("caption",), fps=6.0, one_expression_per_track=True),
    "mevis": Profile(lambda i: f"{i:05d}", ("referring",), multi_object=True, no_target=True,
                     global_track_ids=True, splits=("train", "valid_u", "valid"), unannotated=("valid",)),
    "revos": Profile(lambda i: f"{i:05d}", ("referring", "reasoning"), multi_object=True, no_target=True,
                     global_track_ids=True, splits=("train", "valid")),
    "ref_youtube_vos": Profile(lambda i: f"{5 * i:05d}", ("referring",), fps=6.0),
}

DEFAULT_SIZES: tuple[tuple[int, int], ...] = ((37, 53), (48, 64), (61, 45))


def synth_videos(*, dataset: str, split: str, staging: str | Path, num_videos: int = 3, num_frames: int = 12,
                 sizes: Sequence[tuple[int, int]] = DEFAULT_SIZES, max_objects: int = 3,
                 profile: Profile | None = None, seed: int = 0, first_track_id: int = 1,
                 annotated: bool = True, jpeg_quality: int = 90) -> list[Video]:
    """Render ``num_videos`` videos as canonical records, frames written to ``staging``.

    Args:
        dataset: format id; picks the `Profile` (frame names, kinds, id scheme).
        split: split name recorded on the videos.
        staging: folder for the rendered JPEG frames (``staging/<video_id>/<frame>.jpg``).
        sizes: ``(height, width)`` per video, cycled: odd sizes on purpose.
        max_objects: each video has 1..max_objects objects; the first of every other
            video leaves the frame for a while and comes back.
        first_track_id: first id for datasets whose track ids are global (anno_ids).
        annotated: False gives videos without masks (e.g. MeViS ``valid``).

    Returns:
        Videos whose masks are drawn on demand (`SynthMaskSource`).

    Example:
        >>> vids = synth_videos(dataset="mevis", split="train", staging=tmp, num_videos=2)
    """
    profile = profile or PROFILES[dataset]
    rng = np.random.default_rng(seed)
    staging = Path(staging)
    videos: list[Video] = []
    next_global = first_track_id
    for v in range(num_videos):
        height, width = sizes[v % len(sizes)]
        video_id = f"{split[:2]}{seed:02d}v{v:03d}"
        n_obj = 1 + (v % max_objects) if max_objects > 1 else 1
        if profile.multi_object and n_obj < 2 and max_objects >= 2:
            n_obj = 2
        objects = []
        for k in range(n_obj):
            if profile.global_track_ids:
                tid, next_global = str(next_global), next_global + 1
            else:
                tid = str(k + 1)
            absent = None
            if k == 0 and v % 2 == 0 and num_frames >= 6:
                a = num_frames // 3
                absent = (a, a + max(2, num_frames // 4))
            objects.append(SynthObject(
                track_id=tid, colour=COLOURS[(v + k) % len(COLOURS)], shape=SHAPES[(v + k) % 2],
                cy=float(rng.uniform(0.2, 0.8) * height), cx=float(rng.uniform(0.2, 0.8) * width),
                vy=float(rng.uniform(-0.06, 0.06) * height), vx=float(rng.uniform(-0.08, 0.08) * width),
                ry=float(rng.uniform(0.08, 0.22) * height), rx=float(rng.uniform(0.08, 0.22) * width),
                absent=absent))
        source = SynthMaskSource(objects, height, width)
        names = [profile.frame_name(t) for t in range(num_frames)]
        frames = _render_frames(staging / video_id, names, source, objects, rng, jpeg_quality)
        tracks = [Track(o.track_id, meta={"obj_id": k} if profile.global_track_ids else {})
                  for k, o in enumerate(objects)]
        videos.append(Video(dataset=dataset, split=split, video_id=video_id, frames=frames, height=height,
                            width=width, tracks=tracks, expressions=_expressions(objects, profile, v),
                            fps=profile.fps, mask_source=source if annotated else None))
    return videos


def _expressions(objects: Sequence[SynthObject], profile: Profile, v: int) -> list[Expression]:
    exps: list[Expression] = []

    def add(text: str, track_ids: tuple[str, ...], kind: str) -> None:
        exps.append(Expression(str(len(exps)), text, track_ids, kind, kind_raw=kind))

    for k, o in enumerate(objects):
        per_track = 1 if profile.one_expression_per_track else 1 + (k + v) % 2
        for j in range(per_track):
            kind = profile.kinds[(len(exps) + v) % len(profile.kinds)]
            verb = "moving" if j == 0 else "that leaves and comes back" if o.absent else "bouncing around"
            add(f"the {o.colour} {o.shape} {verb}", (o.track_id,), kind)
    if profile.multi_object and len(objects) >= 2:
        add(f"the {objects[0].colour} and {objects[1].colour} shapes",
            (objects[0].track_id, objects[1].track_id), profile.kinds[v % len(profile.kinds)])
    if profile.no_target:
        add("the purple giraffe", (), "no-target")
    return exps


def _render_frames(folder: Path, names: Sequence[str], source: SynthMaskSource, objects: Sequence[SynthObject],
                   rng: np.random.Generator, quality: int) -> list[Frame]:
    h, w = source.height, source.width
    low = rng.integers(40, 120, size=(max(h // 8, 2), max(w // 8, 2), 3), dtype=np.uint8)
    background = np.asarray(Image.fromarray(low).resize((w, h), Image.BILINEAR))
    colours = {o.track_id: np.array(_RGB[o.colour], dtype=np.uint8) for o in objects}
    frames = []
    for t, name in enumerate(names):
        img = background.copy()
        for tid, m in source.masks(t).items():
            img[m] = colours[tid]
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=quality)
        path = folder / f"{name}.jpg"
        atomic_write_bytes(path, buf.getvalue())
        frames.append(Frame(name, path))
    return frames


def synth_splits(format: str, staging: str | Path, *, num_videos: int = 3, num_frames: int = 12,
                 sizes: Sequence[tuple[int, int]] = DEFAULT_SIZES, max_objects: int = 3, seed: int = 0,
                 splits: Sequence[str] | None = None) -> dict[str, list[Video]]:
    """The videos `generate` writes, by split, rendered into ``staging`` (same arguments, same videos)."""
    profile = PROFILES[format]
    by_split: dict[str, list[Video]] = {}
    next_id = 1
    for s, split in enumerate(splits or profile.splits):
        vids = synth_videos(dataset=format, split=split, staging=Path(staging) / split, num_videos=num_videos,
                            num_frames=num_frames, sizes=sizes, max_objects=max_objects, profile=profile,
                            seed=seed * 10 + s, first_track_id=next_id, annotated=split not in profile.unannotated)
        next_id += sum(len(v.tracks) for v in vids)
        by_split[split] = vids
    return by_split


def generate(format: str, out: str | Path, *, num_videos: int = 3, num_frames: int = 12,
             sizes: Sequence[tuple[int, int]] = DEFAULT_SIZES, max_objects: int = 3, seed: int = 0,
             splits: Sequence[str] | None = None, **write_options) -> Path:
    """Write a synthetic dataset in ``format``'s official layout under ``out``.

    Every split of the format's profile is written (or ``splits``); splits the profile
    marks unannotated get no masks. Frames are rendered into ``out/.staging`` and moved
    into place by the format's writer (``converters/<format>.py``).

    Example:
        >>> generate("long_rvos", "/tmp/lr", num_videos=2)
        PosixPath('/tmp/lr')
    """
    out = Path(out)
    staging = out / ".staging"
    by_split = synth_splits(format, staging, num_videos=num_videos, num_frames=num_frames, sizes=sizes,
                            max_objects=max_objects, seed=seed, splits=splits)
    writer = importlib.import_module(f"longrvos_data.converters.{format}")
    writer.write(by_split, out, **write_options)
    _remove_tree(staging)
    for split in by_split:  # a release carries no completion marks: the samples look as downloaded
        unmark_complete(out / split)
    return out



def write_predictions(videos: Sequence[Video], out: str | Path, *, shift: int = 2, miss_every: int = 5) -> Path:
    """Imperfect predictions in the referring layout ``out/<video_id>/<exp_id>/<frame>.png``.

    Each expression's target is shifted ``shift`` pixels right and every ``miss_every``-th
    frame is left empty, so that the sample evaluation has errors to score (0/255 PNGs).

    Example:
        >>> write_predictions(load("samples/long_rvos")["valid"], "preds/valid")
    """
    out = Path(out)
    for video in videos:
        for i, present in video.iter_frame_masks():
            for e in video.expressions:
                target = video.target_mask(e, present)
                pred = np.zeros((video.height, video.width), dtype=bool)
                if target is not None and (miss_every <= 0 or i % miss_every != miss_every - 1):
                    pred[:, shift:] = target[:, :video.width - shift]
                write_binary_png(out / video.video_id / e.exp_id / f"{video.frames[i].name}.png", pred)
    return out


def _remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m longrvos_data.synth OUT [FORMAT ...]``: write the bundled samples."""
    import argparse
    parser = argparse.ArgumentParser(description="write small synthetic datasets in official layouts")
    parser.add_argument("out", type=Path)
    parser.add_argument("formats", nargs="*", default=list(PROFILES))
    parser.add_argument("--videos", type=int, default=3)
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for fmt in args.formats:
        target = args.out / fmt
        _remove_tree(target)
        generate(fmt, target, num_videos=args.videos, num_frames=args.frames, seed=args.seed)
        if fmt == "long_rvos":  # something for the sample evaluation to score
            from .loaders import load
            preds = args.out / "predictions" / "long_rvos_valid"
            _remove_tree(preds)
            write_predictions(load(target, split="valid")["valid"], preds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
