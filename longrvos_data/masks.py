"""The one mask codec: COCO RLE <-> boolean array <-> PNG.

RLE is the canonical in-memory and on-disk form (``{"size": [H, W], "counts": str}``,
column-major, as `pycocotools.mask.encode` writes it with ``counts`` decoded to str).
Arrays are ``(H, W) bool``. PNG reading keeps palette indices (pixel = object id).
"""
from __future__ import annotations

import functools
import io
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import cv2
import numpy as np
from PIL import Image
from pycocotools import mask as _coco

from .errors import DataError
from .fsutil import atomic_write_bytes

RLE = dict  # {"size": [H, W], "counts": str}

# pycocotools' area() overflows with 256 or more RLEs in one call (DESIGN.md).
_AREA_CHUNK = 255


def encode(mask: np.ndarray) -> RLE:
    """Encode a ``(H, W)`` bool/uint8 mask (non-zero = foreground) as compressed RLE.

    Example:
        >>> encode(np.eye(2, dtype=bool))["size"]
        [2, 2]
    """
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {mask.shape}")
    m = mask if mask.dtype == bool else mask != 0
    if m.size and m.flags.c_contiguous:
        # pycocotools wants column-major 0/1 bytes; cv2's blocked transpose makes that copy
        # several times faster than numpy's strided one (it was most of the cost at 720p).
        m = cv2.transpose(m.view(np.uint8)).T
    else:
        m = np.asfortranarray(m, dtype=np.uint8)
    rle = _coco.encode(m)
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def _coco_rle(rle: Mapping) -> dict:
    """A pycocotools-ready RLE; uncompressed (list) counts are compressed first."""
    counts = rle["counts"]
    h, w = (int(v) for v in rle["size"])
    if isinstance(counts, list):
        return _coco.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    return {"size": [h, w], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


def decode(rle: Mapping) -> np.ndarray:
    """Decode one RLE (compressed str/bytes or uncompressed list counts) to ``(H, W) bool``."""
    return _coco.decode(_coco_rle(rle)).astype(bool, copy=False)


def is_rle(value: object) -> bool:
    """True when ``value`` has the RLE shape: a ``size`` of two ints and ``counts``."""
    if not isinstance(value, Mapping) or "size" not in value or "counts" not in value:
        return False
    size = value["size"]
    return (isinstance(size, (list, tuple)) and len(size) == 2
            and all(isinstance(v, int) and v >= 0 for v in size)
            and isinstance(value["counts"], (str, bytes, list)))


def area(rles: Sequence[Mapping]) -> np.ndarray:
    """Foreground pixel counts of many RLEs, ``(N,) int64``, without decoding them."""
    out = np.zeros(len(rles), dtype=np.int64)
    for start in range(0, len(rles), _AREA_CHUNK):
        chunk = [_coco_rle(r) for r in rles[start:start + _AREA_CHUNK]]
        out[start:start + len(chunk)] = _coco.area(chunk)
    return out


def bbox(rles: Sequence[Mapping]) -> np.ndarray:
    """Bounding boxes ``[x, y, w, h]`` of many RLEs, ``(N, 4) float64`` (zeros for empty masks).

    Example:
        >>> bbox([encode(np.eye(3, dtype=bool))]).tolist()
        [[0.0, 0.0, 3.0, 3.0]]
    """
    if not len(rles):
        return np.zeros((0, 4), dtype=np.float64)
    return np.asarray(_coco.toBbox([_coco_rle(r) for r in rles]), dtype=np.float64).reshape(-1, 4)


def union(rles: Iterable[Mapping]) -> RLE | None:
    """Union of RLEs of one size, or None when there are none."""
    coco = [_coco_rle(r) for r in rles]
    if not coco:
        return None
    merged = coco[0] if len(coco) == 1 else _coco.merge(coco, intersect=False)
    counts = merged["counts"]
    return {"size": [int(merged["size"][0]), int(merged["size"][1])],
            "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}


def empty(height: int, width: int) -> RLE:
    """The RLE of an all-background ``height x width`` mask."""
    return encode(np.zeros((height, width), dtype=bool))


def read_mask_png(path: str | Path, *, video: str | None, field: str, shape: tuple[int, int]) -> np.ndarray:
    """Read an annotation PNG that must be single-channel and of the video's ``shape``.

    Returns the raw ``(H, W)`` values (palette index, or grey level). Every failure is a
    `DataError` naming ``path``, ``video`` and ``field``, so that no mask of the wrong size
    or kind is ever returned.
    """
    try:
        arr = read_png(path, video=video)
    except DataError as err:
        raise DataError(err.message, file=path, video=video, field=field) from None
    if arr.ndim != 2:
        raise DataError(f"expected a single-channel (grayscale or palette) PNG, got shape {arr.shape}",
                        file=path, video=video, field=field)
    if arr.shape != tuple(shape):
        raise DataError(f"mask is {arr.shape[0]}x{arr.shape[1]}, the video is {shape[0]}x{shape[1]}",
                        file=path, video=video, field=field)
    return arr


def read_png(path: str | Path, *, video: str | None = None) -> np.ndarray:
    """Read a mask PNG as a 2-D array of raw values.

    Palette (``P``) and grayscale (``L``) PNGs give ``(H, W) uint8`` (palette: the index,
    i.e. the object id); 16-bit gives ``uint16``; bilevel gives ``uint8`` 0/1. RGB(A)
    PNGs give ``(H, W, C) uint8`` and are the caller's to judge.

    Raises:
        DataError: the file is missing, truncated or not an image.
    """
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode == "1":
                return np.asarray(im, dtype=np.uint8)
            if im.mode in ("I;16", "I;16B", "I"):
                return np.asarray(im).astype(np.uint16 if im.mode != "I" else np.int64)
            return np.asarray(im)
    except FileNotFoundError:
        raise DataError("mask PNG is missing", file=path, video=video, field="mask") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"mask PNG cannot be decoded ({exc})", file=path, video=video, field="mask") from None


def image_size(path: str | Path, *, video: str | None = None) -> tuple[int, int]:
    """``(height, width)`` of an image from its header, without decoding the pixels."""
    try:
        with Image.open(path) as im:
            w, h = im.size
    except FileNotFoundError:
        raise DataError("image is missing", file=path, video=video, field="frames") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"image cannot be read ({exc})", file=path, video=video, field="frames") from None
    return h, w


@functools.lru_cache(maxsize=1)
def davis_palette() -> tuple[int, ...]:
    """The DAVIS/YouTube-VOS colour palette: index i gets the bit-interleaved colour of i."""
    palette = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette.extend((r, g, b))
    return tuple(palette)


def png_bytes(array: np.ndarray, *, palette: Sequence[int] | None = None) -> bytes:
    """Encode a 2-D uint8 array as PNG bytes: grayscale, or palette mode when given one."""
    if array.ndim != 2:
        raise ValueError(f"PNG array must be 2-D, got shape {array.shape}")
    data = np.ascontiguousarray(array, dtype=np.uint8)
    im = Image.frombytes("P" if palette is not None else "L", (data.shape[1], data.shape[0]), data.tobytes())
    if palette is not None:
        im.putpalette(list(palette))
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=False, compress_level=1)
    return buf.getvalue()


def write_binary_png(path: str | Path, mask: np.ndarray) -> None:
    """Write a 0/255 grayscale PNG (the Long-RVOS and prediction layout)."""
    atomic_write_bytes(path, png_bytes(np.where(mask != 0, 255, 0).astype(np.uint8)))


def write_palette_png(path: str | Path, ids: np.ndarray) -> None:
    """Write an indexed PNG whose pixel values are object ids, with the DAVIS palette."""
    if ids.max(initial=0) > 255:
        raise ValueError("palette PNGs hold ids up to 255")
    atomic_write_bytes(path, png_bytes(ids.astype(np.uint8), palette=davis_palette()))
