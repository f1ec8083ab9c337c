"""The one mask codec: COCO RLE <-> boolean array <-> PNG.

RLE is the canonical in-memory and on-disk form (``{"size": [H, W], "counts": str}``,
column-major, as `pycocotools.mask.encode` writes it with ``counts`` decoded to str).
Arrays are ``(H, W) bool``. PNG reading keeps palette indices (pixel = object id).
"""
from __future__ import annotations

import functools
import io
import itertools
import zlib
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
    out = {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}
    _remember((out["counts"], *out["size"]))
    return out


def _parse_counts(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, str | None]:
    """The run lengths of many compressed counts strings, parsed together in one numpy pass.

    The strings are read as pycocotools' ``rleFrString`` reads them: each value is written
    in 5-bit groups, least significant first, one character ``'0' + group`` each (bit
    0x20: another group follows; in a value's last group bit 0x10 is the sign), and from
    the fourth value on it is the difference to the run length two before. One pass over
    the concatenation, not one per string, because the per-call cost of numpy is most of
    the time for a string of a few hundred characters.

    Returns:
        ``(runs, bounds, sums, bad, why)``: string ``i``'s runs are ``runs[bounds[i]:bounds[i + 1]]``
        (int64, possibly negative), ``sums[p, i]`` the sum of those at positions of parity ``p``
        in ``runs``, for every ``i < bad``; ``bad`` is the first string that does not decode
        (``len(texts)`` when all do) and ``why`` says why (None when all do). Nothing is said
        about the strings after ``bad``.
    """
    n = len(texts)
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=n)
    char_end = lengths.cumsum()
    raw = "".join(texts).encode("latin-1")
    c = np.frombuffer(raw, dtype=np.uint8) - np.uint8(48)   # bytes below '0' wrap past 63
    bad, why = n, None
    if not c.size:
        return np.zeros(0, dtype=np.int64), np.zeros(n + 1, dtype=np.int64), np.zeros((2, n), dtype=np.int64), bad, why
    if c.max() > 63:
        pos = int((c > 63).argmax())
        i = int(char_end.searchsorted(pos, "right"))
        at = pos - int(char_end[i] - lengths[i])
        bad, why = i, f"character {chr(raw[pos])!r} at offset {at} is outside '0'..'o'"
    more = c >= 32                                  # continuation bit: the value goes on
    last = char_end - 1     # an empty string's is an earlier one's last character (or wraps to the end)
    cut = more[last] & (lengths > 0)
    if cut.any() and cut.argmax() < bad:
        bad, why = int(cut.argmax()), "the string ends inside a value (truncated?)"
    more[last] = False                              # no value runs on into the next string
    ends = (~more).nonzero()[0]                     # each value's last character
    values = ((c[ends] ^ np.uint8(16)).view(np.int8) - np.int8(16)).astype(np.int64)   # bit 0x10: the sign
    carried = np.empty_like(more)                   # the character before goes on into this one
    carried[0] = False
    carried[1:] = more[:-1]
    multi = carried[ends].nonzero()[0]              # values of two or more characters
    if multi.size:
        tail = ends[multi]
        start = ends[multi - 1] + 1
        if multi[0] == 0:
            start[0] = 0
        longest = tail - start + 1
        top = int(longest.max())
        if top > 6:     # pycocotools writes at most 6 groups (30 bits) and reads no more safely
            k = int((longest > 6).argmax())
            i = int(char_end.searchsorted(tail[k], "right"))
            if i < bad:
                bad, why = i, (f"the value at offset {int(start[k] - (char_end[i] - lengths[i]))} is longer "
                               "than 6 characters")
        # Horner, from the last group down: two groups for each, then more for the few longer ones
        value = (values[multi] << 5) | (c[tail - 1] & 31)
        if top > 2:
            todo = (longest > 2).nonzero()[0]
            part, tail, left = value[todo], tail[todo], longest[todo]
            for j in range(2, min(top, 6)):
                part = np.where(left > j, (part << 5) | (c[tail - j] & 31), part)
            value[todo] = part
        values[multi] = value
    bounds = np.zeros(n + 1, dtype=np.int64)
    bounds[1:] = ends.searchsorted(char_end)
    # Value j > 2 of a string adds to run j - 2: a prefix sum along each string's even and odd
    # values. Global and in-string parity agree up to a swap per string, so each string's two
    # chains are stretches of the global even and odd chains: one cumsum each, restarted at
    # each string by subtracting the sum of the stretch before it.
    filled = (lengths > 0).nonzero()[0]
    firsts = bounds[filled]
    first_values = values[firsts]
    values[firsts] = 0                              # run 0 is value 0; run 2 starts the even chain
    sums = np.zeros((2, n), dtype=np.int64)
    for parity in (0, 1):
        chain = values[parity::2]
        edges = (bounds + (1 - parity)) >> 1        # string i's stretch is chain[edges[i]:edges[i + 1]]
        some = (edges[:-1] < edges[1:]).nonzero()[0]
        if some.size:
            lo = edges[some]
            if some.size > 1:
                chain[lo[1:]] -= np.add.reduceat(chain, lo)[:-1]
            chain.cumsum(out=chain)
            sums[parity, some] = np.add.reduceat(chain, lo)
    values[firsts] = first_values
    sums[firsts & 1, filled] += first_values
    return values, bounds, sums, bad, why


def _counts_text(counts: str | bytes) -> str | None:
    """``counts`` as `_parse_counts` reads it (bytes one character each), or None when a str
    holds non-ASCII characters."""
    if isinstance(counts, str):
        return counts if counts.isascii() else None
    return bytes(counts).decode("latin-1")


_NON_ASCII = "the string holds non-ASCII characters"


def run_lengths(counts: str | bytes) -> np.ndarray:
    """The run lengths a compressed COCO counts string holds, ``(N,) int64``, background first.

    Parsed as `counts_problem` parses many (pycocotools does not check the string: one
    whose runs do not add up to H x W decodes to uninitialised memory, and ``merge`` of it
    never returns).

    Raises:
        DataError: the string does not decode (a non-ASCII character or one outside
            ``'0'..'o'``, a value cut off at the end, a value longer than 6 characters); no
            location (callers add file, video and field).

    Example:
        >>> run_lengths(encode(np.eye(2, dtype=bool))["counts"]).tolist()
        [0, 1, 2, 1]
    """
    text = _counts_text(counts)
    if text is None:
        raise DataError(f"RLE counts do not decode: {_NON_ASCII}")
    runs, _, _, _, why = _parse_counts([text])
    if why is not None:
        raise DataError(f"RLE counts do not decode: {why}")
    return runs


def counts_problem(rles: Sequence[Mapping]) -> tuple[int, str] | None:
    """The first of ``rles`` whose counts do not decode or whose runs are not >= 0 summing to
    H x W, as ``(index, why)``; None when every one is sound.

    `is_rle` checks the shape; this checks the content, cheaply (no decode): the compressed
    strings of all ``rles`` are parsed together (`_parse_counts`), so checking a video's
    RLEs in one call costs microseconds each. Sound compressed RLEs are remembered with
    their area, so that the codec functions below, which all check what they are given,
    do not parse them again, and `area` needs no pycocotools.

    Example:
        >>> counts_problem([encode(np.eye(4, dtype=bool)), {"size": [4, 4], "counts": "02"}])
        (1, 'RLE counts sum to 2 pixel(s), not 4x4 = 16')
    """
    todo: list[int] = []
    keys: list[tuple] = []
    texts: list[str] = []
    late = None         # found before parsing: after every RLE queued for the parse
    for i, rle in enumerate(rles):
        counts = rle["counts"]
        if isinstance(counts, list):
            h, w = (int(v) for v in rle["size"])
            if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 0 for v in counts):
                late = (i, "RLE counts do not decode: uncompressed counts must be integers >= 0")
                break
            if sum(counts) != h * w:
                late = (i, f"RLE counts sum to {int(sum(counts))} pixel(s), not {h}x{w} = {h * w}")
                break
            continue
        key = (counts, *rle["size"])
        if key in _CHECKED:
            continue
        text = _counts_text(counts)
        if text is None:
            late = (i, f"RLE counts do not decode: {_NON_ASCII}")
            break
        todo.append(i)
        keys.append(key)
        texts.append(text)
    if not texts:
        return late
    runs, bounds, sums, bad, why = _parse_counts(texts)
    runs = runs[:bounds[bad]]                       # the strings that decode
    totals = sums[0, :bad] + sums[1, :bad]
    wrong = totals != np.array([int(k[1]) * int(k[2]) for k in keys[:bad]], dtype=np.int64)
    if runs.size and runs.min() < 0:
        wrong[bounds.searchsorted((runs < 0).nonzero()[0], "right") - 1] = True
    first = int(wrong.argmax()) if wrong.any() else bad
    areas = sums[(bounds[:first] + 1) & 1, np.arange(first)]     # a string's odd runs are its foreground
    _remember_many(keys[:first], areas.tolist())
    if first == len(todo):
        return late
    if first == bad:
        return todo[bad], f"RLE counts do not decode: {why}"
    h, w = (int(v) for v in keys[first][1:])
    own = runs[bounds[first]:bounds[first + 1]]
    if own.size and own.min() < 0:
        at = int((own < 0).argmax())
        return todo[first], f"RLE counts do not decode: run {at} is negative ({int(own[at])})"
    return todo[first], f"RLE counts sum to {int(totals[first])} pixel(s), not {h}x{w} = {h * w}"


def check(rle: Mapping) -> None:
    """Refuse an RLE whose counts do not decode, or whose runs are not >= 0 and summing to H x W
    (`counts_problem` of one RLE).

    Raises:
        DataError: saying what is wrong; no location (callers add file, video and field).

    Example:
        >>> check({"size": [4, 4], "counts": "02"})
        Traceback (most recent call last):
        DataError: RLE counts sum to 2 pixel(s), not 4x4 = 16
    """
    problem = counts_problem([rle])
    if problem is not None:
        raise DataError(problem[1])


# Compressed counts already checked (or written by `encode` or `union`), with their area where
# known, so that an RLE checked where it is read (naming its file) is not parsed again by each
# codec call that uses it. Bounded: the oldest go first.
_CHECKED: dict[tuple, int | None] = {}
_CHECKED_MAX = 2048


def _remember(key: tuple, pixels: int | None = None) -> None:
    _remember_many([key], [pixels])


def _remember_many(keys: Sequence[tuple], pixels: Sequence[int | None]) -> None:
    """Remember sound counts (``(counts, H, W)``) with their areas, the oldest going first."""
    excess = len(_CHECKED) + len(keys) - _CHECKED_MAX
    if excess > 0:
        try:
            for old in list(itertools.islice(_CHECKED, excess)):
                _CHECKED.pop(old, None)
        except RuntimeError:            # another thread changed it meanwhile: it evicts too
            pass
    _CHECKED.update(zip(keys[-_CHECKED_MAX:], pixels[-_CHECKED_MAX:]))


def _coco_rles(rles: Sequence[Mapping]) -> list[dict]:
    """pycocotools-ready RLEs, checked together (`counts_problem`); uncompressed (list) counts
    are compressed first."""
    problem = counts_problem(rles)
    if problem is not None:
        raise DataError(problem[1])
    out = []
    for rle in rles:
        counts = rle["counts"]
        h, w = (int(v) for v in rle["size"])
        if isinstance(counts, list):
            out.append(_coco.frPyObjects({"size": [h, w], "counts": counts}, h, w))
        else:
            out.append({"size": [h, w], "counts": counts.encode("ascii") if isinstance(counts, str) else counts})
    return out


def decode(rle: Mapping) -> np.ndarray:
    """Decode one RLE (compressed str/bytes or uncompressed list counts) to ``(H, W) bool``."""
    return _coco.decode(_coco_rles([rle])[0]).astype(bool, copy=False)


def is_rle(value: object) -> bool:
    """True when ``value`` has the RLE shape: a ``size`` of two ints and ``counts``."""
    if not isinstance(value, Mapping) or "size" not in value or "counts" not in value:
        return False
    size = value["size"]
    return (isinstance(size, (list, tuple)) and len(size) == 2
            and all(isinstance(v, int) and v >= 0 for v in size)
            and isinstance(value["counts"], (str, bytes, list)))


def area(rles: Sequence[Mapping]) -> np.ndarray:
    """Foreground pixel counts of many RLEs, ``(N,) int64``, without decoding them (those
    already checked in bulk, e.g. by a loader, are known from their check)."""
    out = np.zeros(len(rles), dtype=np.int64)
    rest = []
    for i, rle in enumerate(rles):
        counts = rle["counts"]
        pixels = None if isinstance(counts, list) else _CHECKED.get((counts, *rle["size"]))
        if pixels is None:
            rest.append(i)
        else:
            out[i] = pixels
    for start in range(0, len(rest), _AREA_CHUNK):
        chunk = rest[start:start + _AREA_CHUNK]
        out[chunk] = _coco.area(_coco_rles([rles[i] for i in chunk]))
    return out


def bbox(rles: Sequence[Mapping]) -> np.ndarray:
    """Bounding boxes ``[x, y, w, h]`` of many RLEs, ``(N, 4) float64`` (zeros for empty masks).

    Example:
        >>> bbox([encode(np.eye(3, dtype=bool))]).tolist()
        [[0.0, 0.0, 3.0, 3.0]]
    """
    if not len(rles):
        return np.zeros((0, 4), dtype=np.float64)
    return np.asarray(_coco.toBbox(_coco_rles(rles)), dtype=np.float64).reshape(-1, 4)


def union(rles: Iterable[Mapping]) -> RLE | None:
    """Union of RLEs of one size, or None when there are none.

    Raises:
        DataError: an RLE fails `check` (pycocotools' merge would spin for ever on runs that
            do not sum to H x W), or the sizes differ.
    """
    coco = _coco_rles(list(rles))
    if not coco:
        return None
    sizes = {tuple(r["size"]) for r in coco}
    if len(sizes) > 1:  # pycocotools would return an empty 0x0 RLE
        raise DataError(f"cannot unite RLEs of different sizes {sorted(sizes)}")
    merged = coco[0] if len(coco) == 1 else _coco.merge(coco, intersect=False)
    counts = merged["counts"]
    out = {"size": [int(merged["size"][0]), int(merged["size"][1])],
           "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}
    _remember((out["counts"], *out["size"]))
    return out


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


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_crc_error(data: bytes) -> str | None:
    """Why a PNG file's chunks fail their CRC-32, or None (also for data that is no PNG, or cut
    off: decoding reports that).

    Pillow checks no CRC of the image data (IDAT), so a flipped byte there decodes to
    wrong pixels without an error; zlib's crc32 over each chunk costs microseconds.

    Example:
        >>> png_crc_error(png_bytes(np.zeros((2, 2), np.uint8))) is None
        True
    """
    if not data.startswith(_PNG_SIGNATURE):
        return None
    view = memoryview(data)
    pos = len(_PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length = int.from_bytes(view[pos:pos + 4], "big")
        kind = bytes(view[pos + 4:pos + 8]).decode("latin-1")
        end = pos + 8 + length
        if end + 4 > len(data):
            return None             # truncated: the decoder says so
        if zlib.crc32(view[pos + 4:end]) != int.from_bytes(view[end:end + 4], "big"):
            return f"chunk {kind!r} at byte {pos} fails its CRC check"
        if kind == "IEND":
            return None
        pos = end + 4
    return None


def read_png(path: str | Path, *, video: str | None = None) -> np.ndarray:
    """Read a mask PNG as a 2-D array of raw values.

    Palette (``P``) and grayscale (``L``) PNGs give ``(H, W) uint8`` (palette: the index,
    i.e. the object id); 16-bit gives ``uint16``; bilevel gives ``uint8`` 0/1. RGB(A)
    PNGs give ``(H, W, C) uint8`` and are the caller's to judge.

    Raises:
        DataError: the file is missing, truncated or not an image, or a chunk fails its CRC
            (`png_crc_error`).
    """
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise DataError("mask PNG is missing", file=path, video=video, field="mask") from None
    except OSError as exc:
        raise DataError(f"mask PNG cannot be read ({exc.strerror or exc})", file=path, video=video,
                        field="mask") from None
    corrupt = png_crc_error(data)
    if corrupt is not None:
        raise DataError(f"mask PNG is corrupt: {corrupt}", file=path, video=video, field="mask")
    try:
        with Image.open(path) as im:   # by name, for Pillow's messages (the file is in the page cache)
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
