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
    from .predictions import write_video

    def shifted(video: Video):
        for i, present in video.iter_frame_masks():
            if miss_every > 0 and i % miss_every == miss_every - 1:
                continue  # a frame never written is written empty
            moved = {}
            for tid, m in present.items():  # shifting each track shifts each expression's union
                moved[tid] = np.zeros_like(m)
                moved[tid][:, shift:] = m[:, :video.width - shift]
            yield i, moved

    out = Path(out)
    for video in videos:
        write_video(out, video, shifted(video), layout="referring")
    return out


def _remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


# -- a textured LVOS fixture that a tracker has to track ---------------------------------
def _band_noise(rng: np.random.Generator, height: int, width: int, cells: Sequence[float],
                mean: Sequence[float], std: Sequence[float], chroma: float = 0.4) -> np.ndarray:
    """``(H, W, 3)`` uint8 band-limited colour noise: random grids of ``cells`` pixels per
    node, upsampled bicubically and summed, ``chroma`` of it per channel and the rest shared
    (grey), then given each channel's ``mean`` and ``std``."""
    import cv2
    acc = np.zeros((height, width, 3), dtype=np.float32)
    for cell in cells:
        gh, gw = max(int(np.ceil(height / cell)) + 2, 2), max(int(np.ceil(width / cell)) + 2, 2)
        grid = rng.standard_normal((gh, gw, 3)).astype(np.float32)
        big = cv2.resize(grid, (int(gw * cell), int(gh * cell)), interpolation=cv2.INTER_CUBIC)
        acc += big[:height, :width]
    acc = chroma * acc + (1 - chroma) * acc.mean(axis=2, keepdims=True)
    acc = (acc - acc.mean(axis=(0, 1))) / (acc.std(axis=(0, 1)) + 1e-6)
    return np.clip(acc * np.asarray(std, np.float32) + np.asarray(mean, np.float32), 0, 255).astype(np.uint8)


class _TexturedScene(MaskSource):
    """Two textured blobs and a background-textured occluder, drawn per frame from precomputed
    paths: ``render(t)`` gives the frame and its masks, `masks` only the masks."""

    def __init__(self, rng: np.random.Generator, height: int, width: int, num_frames: int) -> None:
        self.height, self.width, self.n = height, width, num_frames
        unit = min(height, width) / 240.0           # texture and size scale with the frame
        self.background = _band_noise(rng, height, width, (40 * unit, 10 * unit, 3 * unit),
                                      (105, 112, 98), (38, 36, 34))
        looks = (((2.5 * unit, 9 * unit), (196, 92, 58), (42, 30, 24)),     # fine grain, warm
                 ((16 * unit, 5 * unit), (58, 122, 192), (24, 36, 46)))     # coarse, cool
        scales = (np.linspace(1.0, 1.2, num_frames), np.linspace(1.0, 0.8, num_frames))  # +-20% over the clip
        self.objects = []
        for k, (cells, mean, std) in enumerate(looks):
            radius = 0.12 * min(height, width)
            aspect = float(rng.uniform(0.75, 1.3))
            size = int(np.ceil(radius * 1.25 * max(aspect, 1 / aspect) * 2)) + 4
            yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) - (size - 1) / 2
            theta = np.arctan2(yy, xx)
            wobble = 1 + 0.12 * np.sin(3 * theta + rng.uniform(0, 6.3)) + 0.07 * np.sin(5 * theta + rng.uniform(0, 6.3))
            r = np.hypot(xx / aspect ** 0.5, yy * aspect ** 0.5) / (radius * wobble)
            alpha = np.clip((1.0 - r) * radius * 0.5 + 0.5, 0, 1).astype(np.float32)  # 1 px soft edge
            texture = _band_noise(rng, size, size, cells, mean, std)
            reach = float(np.max(np.hypot(xx, yy)[alpha > 0.5])) * float(scales[k].max()) + 2
            centres = self._path(rng, reach)
            self.objects.append(dict(track_id=str(k + 1), alpha=alpha, texture=texture, size=size,
                                     scale=scales[k], centres=centres, radius=radius))
        # the occluder: a bar of background-like texture sliding across object 1 for 10 frames
        first = max(1, num_frames // 4)
        self.occlusion = (int(rng.integers(first, max(first + 1, num_frames - 10))), 10)
        self.bar_w, self.bar_h = max(int(0.6 * self.objects[0]["radius"]), 3), int(3 * self.objects[0]["radius"])
        self.bar = _band_noise(rng, self.bar_h, self.bar_w, (40 * unit, 10 * unit, 3 * unit), (105, 112, 98),
                               (38, 36, 34))

    def _path(self, rng: np.random.Generator, reach: float) -> np.ndarray:
        """Centres for every frame: 4-12 px a frame, turning at random, bouncing off the borders."""
        lo = np.array([reach, reach])
        hi = np.array([self.width - reach, self.height - reach])
        hi = np.maximum(hi, lo + 1)
        pos = rng.uniform(lo, hi)
        angle, speed = rng.uniform(0, 2 * np.pi), rng.uniform(4, 12)
        out = np.zeros((self.n, 2))
        for t in range(self.n):
            out[t] = pos
            if rng.random() < 0.3:
                angle += rng.choice((-1, 1)) * rng.uniform(np.pi / 6, np.pi / 2)
                speed = rng.uniform(4, 12)
            step = speed * np.array([np.cos(angle), np.sin(angle)])
            pos = pos + step
            for d in range(2):  # reflect off the border the object would cross
                if pos[d] < lo[d] or pos[d] > hi[d]:
                    pos[d] = 2 * (lo[d] if pos[d] < lo[d] else hi[d]) - pos[d]
                    pos[d] = min(max(pos[d], lo[d]), hi[d])
                    step[d] = -step[d]
                    angle = float(np.arctan2(step[1], step[0]))
        return out

    def occluded(self, t: int) -> bool:
        start, length = self.occlusion
        return start <= t < start + length

    def _warp(self, obj: dict, t: int, *, texture: bool = True) -> tuple[np.ndarray, np.ndarray | None, tuple]:
        """The object's alpha (and texture) at ``t`` over its bounding box only, and that box as
        ``(rows, cols)`` slices of the frame (warping whole 720p frames would cost 10x more)."""
        import cv2
        s, (cx, cy), half = float(obj["scale"][t]), obj["centres"][t], (obj["size"] - 1) / 2
        x0, y0 = max(int(np.floor(cx - s * half)) - 1, 0), max(int(np.floor(cy - s * half)) - 1, 0)
        x1 = min(int(np.ceil(cx + s * half)) + 2, self.width)
        y1 = min(int(np.ceil(cy + s * half)) + 2, self.height)
        m = np.array([[s, 0, cx - s * half - x0], [0, s, cy - s * half - y0]], dtype=np.float64)
        size = (max(x1 - x0, 1), max(y1 - y0, 1))
        alpha = cv2.warpAffine(obj["alpha"], m, size, flags=cv2.INTER_LINEAR, borderValue=0)
        tex = (cv2.warpAffine(obj["texture"], m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
               if texture else None)
        return alpha, tex, (slice(y0, y0 + size[1]), slice(x0, x0 + size[0]))

    def silhouette(self, obj: dict, t: int) -> np.ndarray:
        """The object's whole ``(H, W)`` mask at ``t``, as if nothing covered it."""
        alpha, _, box = self._warp(obj, t, texture=False)
        out = np.zeros((self.height, self.width), dtype=bool)
        out[box] = alpha > 0.5
        return out

    def _bar_box(self, t: int) -> tuple[int, int, int, int] | None:
        """``(y0, x0, y1, x1)`` of the occluder at ``t``, clipped to the frame, or None."""
        if not self.occluded(t):
            return None
        obj = self.objects[0]
        k = t - self.occlusion[0]
        reach = obj["radius"] * float(obj["scale"][t])
        cx, cy = obj["centres"][t]
        x = cx + (-0.6 + 1.2 * k / (self.occlusion[1] - 1)) * reach
        x0, y0 = int(round(x - self.bar_w / 2)), int(round(cy - self.bar_h / 2))
        return y0, x0, y0 + self.bar_h, x0 + self.bar_w

    def render(self, t: int, *, image: bool = True) -> tuple[np.ndarray | None, dict[str, np.ndarray]]:
        img = self.background.astype(np.float32) if image else None
        masks: dict[str, np.ndarray] = {}
        for obj in self.objects:  # later objects pass in front of earlier ones
            alpha, texture, box = self._warp(obj, t, texture=img is not None)
            if img is not None:
                a = alpha[..., None]
                img[box] = img[box] * (1 - a) + texture.astype(np.float32) * a
            m = np.zeros((self.height, self.width), dtype=bool)
            m[box] = alpha > 0.5
            for other in masks.values():
                other &= ~m
            masks[obj["track_id"]] = m
        box = self._bar_box(t)
        if box is not None:
            y0, x0, y1, x1 = box
            cy0, cx0, cy1, cx1 = max(y0, 0), max(x0, 0), min(y1, self.height), min(x1, self.width)
            if cy1 > cy0 and cx1 > cx0:
                if img is not None:
                    img[cy0:cy1, cx0:cx1] = self.bar[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
                for m in masks.values():
                    m[cy0:cy1, cx0:cx1] = False
        masks = {tid: m for tid, m in masks.items() if m.any()}
        return (None if img is None else np.clip(img + 0.5, 0, 255).astype(np.uint8)), masks

    def masks(self, index: int) -> dict[str, np.ndarray]:
        return self.render(index, image=False)[1]


def textured_lvos(out: str | Path, *, split: str = "valid", num_videos: int = 1, width: int = 320,
                  height: int = 240, num_frames: int = 30, seed: int = 0) -> Path:
    """Write a tracking fixture in the LVOS layout under ``out/<split>/``; returns ``out``.

    Each video has two objects with their own band-limited textures and colour statistics
    on a textured background, moving 4-12 px a frame with random turns and bounces, one
    growing and one shrinking by 20% over the clip, and a bar textured like the background
    sliding across object 1 for 10 consecutive frames (a partial occlusion); object 2 passes
    in front of object 1 where they meet. Unlike `generate`'s flat shapes, copying the
    first mask forward scores poorly here, so it tells a tracker from a copier.
    Deterministic from ``seed``; video ids are 8 characters (``tx<seed><n>``).

    Example:
        >>> textured_lvos(tmp / "lvos", num_frames=30)      # then load(tmp / "lvos", format="lvos")
    """
    from .converters import lvos as lvos_writer
    out = Path(out)
    staging = out / ".staging" / split
    rng = np.random.default_rng(seed)
    videos = []
    for v in range(num_videos):
        video_id = f"tx{seed % 100:02d}{v:04d}"
        scene = _TexturedScene(rng, height, width, num_frames)
        frames = []
        for t in range(num_frames):
            img, _ = scene.render(t)
            name = PROFILES["lvos"].frame_name(t)
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, format="JPEG", quality=92)
            path = staging / video_id / f"{name}.jpg"
            atomic_write_bytes(path, buf.getvalue())
            frames.append(Frame(name, path))
        videos.append(Video(dataset="lvos", split=split, video_id=video_id, frames=frames, height=height,
                            width=width, tracks=[Track(o["track_id"]) for o in scene.objects], expressions=(),
                            fps=6.0, mask_source=scene))
    lvos_writer.write({split: videos}, out)
    _remove_tree(out / ".staging")
    unmark_complete(out / split)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m longrvos_data.synth OUT [FORMAT ...]``: write the bundled samples (``textured_lvos``:
    the `textured_lvos` tracking fixture, 320x240, never part of the default set)."""
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
        if fmt == "textured_lvos":
            textured_lvos(target, num_videos=args.videos, num_frames=args.frames, seed=args.seed)
            continue
        generate(fmt, target, num_videos=args.videos, num_frames=args.frames, seed=args.seed)
        if fmt == "long_rvos":  # something for the sample evaluation to score
            from .loaders import load
            preds = args.out / "predictions" / "long_rvos_valid"
            _remove_tree(preds)
            write_predictions(load(target, split="valid")["valid"], preds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
