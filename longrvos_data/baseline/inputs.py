"""What ReferMo reads, made from a dataset's frames and codec motion: one place for training and inference.

- Frames are resized so that the short side is ``short_side`` and the long side at most
  ``max_size`` (bilinear), ImageNet-normalised, and padded to the batch's largest size, rounded up
  to a multiple of 4 (the masks' stride: targets are exactly 4x the predicted masks), with a pixel
  mask (True on real pixels).
- Motion: each keyframe takes the ``n`` maps after it (the P-frames of its GOP,
  `motion.Motion`), resized (bilinear) from the original frame's 16-pixel grid to the resized
  frame's, on the padded frame's grid; a map past the video's end, and the padding, are
  masked out. Vectors are normalised by the frame's size, so resizing leaves their values.
- Targets (training): the expression's mask at each keyframe, resized (nearest) with the
  frame and padded with False, and ``valid`` (the target is present).

Example:
    >>> sample = keyframe_sample(frames, motion_maps, masks=masks, valid=valid, short_side=360, max_size=640)
    >>> batch = collate([sample], ["the red car"], tokenizer, config)
    >>> out = model(batch.pixel_values, batch.input_ids, batch.motion, attention_mask=batch.attention_mask,
    ...             pixel_mask=batch.pixel_mask, motion_mask=batch.motion_mask)
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Sequence

import numpy as np

from .config import ReferMoConfig
from .motion import Motion

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
MOTION_BLOCK = 16
MASK_STRIDE = 4


def scaled_size(height: int, width: int, short_side: int, max_size: int | None = None) -> tuple[int, int]:
    """``(h, w)`` with the short side ``short_side`` and the long side at most ``max_size``, aspect kept.

    Example:
        >>> scaled_size(720, 1280, 360, 640)
        (360, 640)
        >>> scaled_size(720, 2560, 360, 640)
        (180, 640)
    """
    scale = short_side / min(height, width)
    if max_size is not None and max(height, width) * scale > max_size:
        scale = max_size / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def keyframe_motion(motion: Motion, keyframes: Sequence[int], frames: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``frames`` motion maps after each keyframe: ``(T, n, 2, h16, w16) float32`` and ``(T, n) bool``
    (False where the video ends first)."""
    total = motion.mv.shape[0]
    out = np.zeros((len(keyframes), frames, *motion.mv.shape[1:]), dtype=np.float32)
    valid = np.zeros((len(keyframes), frames), dtype=bool)
    for t, k in enumerate(keyframes):
        for j in range(frames):
            if k + 1 + j < total:
                out[t, j] = motion.mv[k + 1 + j]
                valid[t, j] = True
    return out, valid


def _swap_left_right(caption: str) -> str:
    return caption.replace("left", "\0").replace("right", "left").replace("\0", "right")


def _photometric(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One frame's colour jitter, as the public ``PhotometricDistort``: brightness +-32, then contrast
    0.8-1.2 before or after saturation 0.8-1.2 (each with p 0.5), a channel shuffle with p 0.2."""
    import cv2

    img = image.astype(np.float32)
    if rng.integers(2):
        img = np.clip(img + rng.uniform(-32, 32), 0, 255)

    def contrast(x: np.ndarray) -> np.ndarray:
        return x * rng.uniform(0.8, 1.2) if rng.integers(2) else x

    def saturation(x: np.ndarray) -> np.ndarray:
        hsv = cv2.cvtColor(np.clip(x, 0, 255), cv2.COLOR_RGB2HSV)
        if rng.integers(2):
            hsv[..., 1] *= rng.uniform(0.8, 1.2)
        return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)

    img = saturation(contrast(img)) if rng.integers(2) else contrast(saturation(img))
    if rng.random() < 0.2:
        img = img[..., rng.permutation(3)]
    return np.clip(img, 0, 255).astype(np.uint8)   # the public code wraps values over 255 instead


def augment(frames: Sequence[np.ndarray], masks: np.ndarray, motion: np.ndarray, caption: str,
            rng: np.random.Generator) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, str]:
    """The public training augmentation (Long_RVOS ``make_coco_transforms("train")``), from ``rng``.

    With p 0.5 a zoomed crop: the frame scaled so its short side is 400, 500 or 600, a random
    crop of 384-600 px per side (in that scale), here cut from the original frames (the resize to
    model size follows in `keyframe_sample`); a crop that loses the target in every keyframe is
    not taken (the public code draws another sample). Then a horizontal flip with p 0.5, which
    negates the motion's x and swaps "left" and "right" in the caption, and per-frame colour
    jitter (`_photometric`). ``motion`` is (T, n, 2, h16, w16); it is cropped to the 16-pixel
    blocks that cover the crop.
    """
    frames = list(frames)
    height, width = frames[0].shape[:2]
    if rng.random() < 0.5:
        scale = rng.choice([400, 500, 600]) / min(height, width)
        sh, sw = height * scale, width * scale
        ch = int(rng.integers(min(384, int(sh)), int(min(sh, 600)) + 1))
        cw = int(rng.integers(min(384, int(sw)), int(min(sw, 600)) + 1))
        y0 = int(rng.integers(0, int(sh) - ch + 1))
        x0 = int(rng.integers(0, int(sw) - cw + 1))
        top, left = int(y0 / scale), int(x0 / scale)
        bottom, right = min(height, max(top + 1, round((y0 + ch) / scale))), min(width, max(left + 1, round((x0 + cw) / scale)))
        cut = masks[:, top:bottom, left:right]
        if cut.any():
            frames = [f[top:bottom, left:right] for f in frames]
            masks = cut
            motion = motion[..., top // MOTION_BLOCK:math.ceil(bottom / MOTION_BLOCK),
                            left // MOTION_BLOCK:math.ceil(right / MOTION_BLOCK)]
    if rng.random() < 0.5:
        frames = [f[:, ::-1] for f in frames]
        masks = masks[..., ::-1]
        motion = motion[..., ::-1].copy()
        motion[:, :, 0] *= -1
        caption = _swap_left_right(caption)
    frames = [_photometric(np.ascontiguousarray(f), rng) for f in frames]
    return frames, np.ascontiguousarray(masks), np.ascontiguousarray(motion), caption


@dataclass
class KeyframeSample:
    """One video's keyframes at model size (before padding): ``pixels`` (T, 3, h, w) float32
    normalised, ``motion`` (T, n, 2, h16, w16), ``motion_valid`` (T, n), and for training ``masks``
    (T, h, w) bool and ``valid`` (T,) bool."""

    pixels: np.ndarray
    motion: np.ndarray
    motion_valid: np.ndarray
    masks: np.ndarray | None = None
    valid: np.ndarray | None = None

    @property
    def size(self) -> tuple[int, int]:
        return self.pixels.shape[-2], self.pixels.shape[-1]


def keyframe_sample(frames: Sequence[np.ndarray], motion: np.ndarray, motion_valid: np.ndarray, *,
                    short_side: int, max_size: int | None, masks: np.ndarray | None = None,
                    valid: np.ndarray | None = None) -> KeyframeSample:
    """Resize and normalise ``frames`` ((H, W, 3) uint8 RGB each) and their motion (`keyframe_motion`)."""
    import cv2

    height, width = frames[0].shape[:2]
    h, w = scaled_size(height, width, short_side, max_size)
    pixels = np.empty((len(frames), 3, h, w), dtype=np.float32)
    for t, image in enumerate(frames):
        if image.shape[:2] != (height, width):
            raise ValueError(f"keyframe {t} is {image.shape[0]}x{image.shape[1]}, the first is {height}x{width}")
        small = image if (h, w) == (height, width) else cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
        pixels[t] = ((small.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)
    gh, gw = math.ceil(h / MOTION_BLOCK), math.ceil(w / MOTION_BLOCK)
    t_len, n = motion.shape[:2]
    flat = motion.reshape(t_len * n * 2, *motion.shape[-2:])
    if flat.shape[-2:] != (gh, gw):
        flat = np.stack([cv2.resize(m, (gw, gh), interpolation=cv2.INTER_LINEAR) for m in flat]) if len(flat) else \
            np.zeros((0, gh, gw), dtype=np.float32)
    out_masks = None
    if masks is not None:
        out_masks = np.stack([m if (h, w) == m.shape else
                              cv2.resize(m.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
                              for m in masks])
    return KeyframeSample(pixels, flat.reshape(t_len, n, 2, gh, gw).astype(np.float32), motion_valid.astype(bool),
                          out_masks, None if valid is None else np.asarray(valid, dtype=bool))


@dataclass
class KeyframeBatch:
    """Padded tensors for `ReferMo.forward` (B videos of T keyframes) and the training targets."""

    pixel_values: "object"       # (B, T, 3, H, W) float
    pixel_mask: "object"         # (B, T, H, W) bool
    motion: "object"             # (B, T, n, 2, ceil(H/16), ceil(W/16)) float
    motion_mask: "object"        # (B, T, n, ceil(H/16), ceil(W/16)) bool
    input_ids: "object"          # (B, L) long
    attention_mask: "object"     # (B, L) long
    masks: "object" = None       # (B, T, H, W) bool
    valid: "object" = None       # (B, T) bool
    sizes: tuple = ()            # per video: (h, w) of the real pixels

    def to(self, device) -> "KeyframeBatch":
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        for key, value in moved.items():
            if hasattr(value, "to"):
                moved[key] = value.to(device, non_blocking=True)
        return KeyframeBatch(**moved)

    def model_inputs(self) -> dict:
        return {"pixel_values": self.pixel_values, "input_ids": self.input_ids, "motion": self.motion,
                "attention_mask": self.attention_mask, "pixel_mask": self.pixel_mask, "motion_mask": self.motion_mask}


def collate(samples: Sequence[KeyframeSample], captions: Sequence[str], tokenizer, config: ReferMoConfig) -> KeyframeBatch:
    """Pad ``samples`` (same T and n) to the largest frame (a multiple of 4) and tokenise one caption each."""
    import torch

    from .model import tokenize_captions

    if len(samples) != len(captions) or not samples:
        raise ValueError(f"{len(samples)} samples with {len(captions)} captions")
    t_len, n = samples[0].motion.shape[:2]
    if any(s.motion.shape[:2] != (t_len, n) for s in samples):
        raise ValueError("samples of one batch need the same number of keyframes and motion maps")
    big_h = -(-max(s.size[0] for s in samples) // MASK_STRIDE) * MASK_STRIDE
    big_w = -(-max(s.size[1] for s in samples) // MASK_STRIDE) * MASK_STRIDE
    gh, gw = math.ceil(big_h / MOTION_BLOCK), math.ceil(big_w / MOTION_BLOCK)
    b = len(samples)
    pixels = torch.zeros((b, t_len, 3, big_h, big_w))
    pixel_mask = torch.zeros((b, t_len, big_h, big_w), dtype=torch.bool)
    motion = torch.zeros((b, t_len, n, 2, gh, gw))
    motion_mask = torch.zeros((b, t_len, n, gh, gw), dtype=torch.bool)
    train = samples[0].masks is not None
    masks = torch.zeros((b, t_len, big_h, big_w), dtype=torch.bool) if train else None
    valid = torch.zeros((b, t_len), dtype=torch.bool) if train else None
    for i, s in enumerate(samples):
        h, w = s.size
        mh, mw = s.motion.shape[-2:]
        pixels[i, :, :, :h, :w] = torch.from_numpy(s.pixels)
        pixel_mask[i, :, :h, :w] = True
        motion[i, :, :, :, :mh, :mw] = torch.from_numpy(s.motion)
        motion_mask[i, :, :, :mh, :mw] = torch.from_numpy(s.motion_valid)[..., None, None]
        if train:
            masks[i, :, :h, :w] = torch.from_numpy(s.masks)
            valid[i] = torch.from_numpy(s.valid)
    text = tokenize_captions(tokenizer, captions, config)
    return KeyframeBatch(pixels, pixel_mask, motion, motion_mask, text["input_ids"], text["attention_mask"],
                         masks, valid, tuple(s.size for s in samples))


def tokenizer_for(config: ReferMoConfig, vocab: str | None = None, tokens: Sequence[str] | None = None):
    """The BERT tokenizer of ``config``: from ``tokens`` (a checkpoint's vocabulary), a ``vocab.txt``
    path, or the config's ``text.vocab``."""
    from .config import ConfigError
    from .model import build_tokenizer

    if tokens is not None:
        return build_tokenizer({t: i for i, t in enumerate(tokens)})
    path = vocab or config.text.vocab
    if not path:
        raise ConfigError(f"config {config.name!r} names no vocabulary (text.vocab): pass --vocab with BERT's "
                          "vocab.txt (bert-base-uncased for refermo-swint)")
    return build_tokenizer(path)


def vocab_tokens(tokenizer) -> list[str]:
    """The tokenizer's vocabulary in id order (what a checkpoint stores)."""
    vocab = tokenizer.get_vocab()
    out = [""] * len(vocab)
    for token, i in vocab.items():
        out[i] = token
    return out
