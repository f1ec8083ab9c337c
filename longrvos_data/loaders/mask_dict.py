"""A streaming, on-disk index of ``mask_dict.json`` files (MeViS, ReVOS), and their writer.

A MeViS/ReVOS ``mask_dict.json`` is one JSON object, hundreds of MB large::

    {"<anno_id>": [<RLE> | null, ...one per frame...], ...}

Loading it with ``json.load`` costs several GB of memory. Instead the file is scanned
once, in chunks, and the byte range of every top-level value is stored in a small SQLite
file in the cache folder (``$LONGRVOS_CACHE`` or ``~/.cache/longrvos_data``, under
``mask_dict/``). Reading one video's masks then seeks to its anno_ids' entries and
parses only those. The index is keyed by the file's absolute path, size and mtime:
a changed file is re-indexed; the index is written under a temporary name and
renamed, so a killed build never leaves a half index.

The scanner works on 8 MiB chunks with numpy: unescaped quotes give the strings,
brackets outside strings give the nesting depth, and only top-level events (keys and
the ends of their values) reach Python, so the cost is a few passes at memory speed
per chunk and the memory a few times the chunk size. On a 300 MB MeViS-like file it
indexes in about 2 s with a peak RSS near 110 MB, where one ``ijson.kvitems`` pass (C
backend) that re-serialises each value takes about 5.5 s and a byte-level regular
expression tokenizer about 6 s (``bench/bench_mevis_index.py --compare-ijson``). The
scan checks that the file is one complete JSON object; the content of each value is
checked when that value is read (`MaskDictIndex.read_many`), so a corrupt entry
raises only for the video that uses it, naming the file, the video and the anno_id.

The same machinery indexes any JSON object of that shape, e.g. ReVOS
``mask_dict_foreground.json`` (``{video_id: {"masks_rle": [...], ...}}``).

Example:
    >>> index = open_index("mevis/train/mask_dict.json")
    >>> rles = index.fetch_tracks(["2", "7"], video="abc", num_frames=80, height=720, width=1280)
    >>> rles["2"][0]        # RLE dict or None (absent in frame 0)
"""
from __future__ import annotations

import collections
import hashlib
import json
import logging
import os
import sqlite3
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from .. import masks as _masks
from ..errors import DataError
from .base import check_rle_counts

log = logging.getLogger("longrvos_data")

INDEX_VERSION = "1"
"""Bumped whenever the index layout changes; older index files are rebuilt."""

CHUNK_BYTES = 8 << 20
"""Bytes read per step while scanning."""

_WS = b" \t\r\n"

_STATS = collections.Counter()
_OPEN: dict[str, "MaskDictIndex"] = {}
_OPEN_LOCK = threading.Lock()


def cache_root() -> Path:
    """Folder holding the index files: ``$LONGRVOS_CACHE/mask_dict`` or ``~/.cache/longrvos_data/mask_dict``.

    Example:
        >>> os.environ["LONGRVOS_CACHE"] = "/scratch/cache"; cache_root()
        PosixPath('/scratch/cache/mask_dict')
    """
    base = os.environ.get("LONGRVOS_CACHE")
    root = Path(base).expanduser() if base else Path.home() / ".cache" / "longrvos_data"
    return root / "mask_dict"


def index_path(path: str | Path) -> Path:
    """Where the index of the JSON file ``path`` lives (one file per absolute path).

    Example:
        >>> index_path("/data/mevis/train/mask_dict.json").name
        'mask_dict-3f1c....sqlite'
    """
    source = Path(path).resolve()
    digest = hashlib.sha1(str(source).encode("utf-8")).hexdigest()[:20]
    return cache_root() / f"{source.stem}-{digest}.sqlite"


def _fallback_path(path: str | Path) -> Path:
    """Index location used when the cache folder cannot be written."""
    user = getattr(os, "getuid", lambda: "user")()
    return Path(tempfile.gettempdir()) / f"longrvos_data-{user}" / "mask_dict" / index_path(path).name


def build_count() -> int:
    """How many indexes this process has built (a full scan each); tests use it.

    Example:
        >>> n = build_count(); open_index(p).ensure(); build_count() - n   # 0 when cached
        0
    """
    return _STATS["builds"]


def open_index(path: str | Path) -> "MaskDictIndex":
    """The process-wide `MaskDictIndex` of ``path`` (shared by every video that reads it).

    Example:
        >>> open_index("ReVOS/mask_dict.json").read("12")[:2]
        [None, {'size': [720, 1280], 'counts': '...'}]
    """
    key = str(Path(path).resolve())
    with _OPEN_LOCK:
        index = _OPEN.get(key)
        if index is None:
            index = _OPEN[key] = MaskDictIndex(path)
        return index


def clear_open_indexes() -> None:
    """Forget the process-wide indexes (the index files stay in the cache).

    Example:
        >>> clear_open_indexes()   # e.g. between tests that rewrite a mask_dict in place
    """
    with _OPEN_LOCK:
        for index in _OPEN.values():
            index.close()
        _OPEN.clear()


# -- scanning ----------------------------------------------------------------------------------
def scan(fh, *, file: str | Path, on_entry: Callable[[str, int, int, bool], None]) -> int:
    """Stream a JSON object from the binary file ``fh`` and report each top-level entry.

    Each chunk is tokenised with numpy: unescaped quotes give the string intervals,
    brackets outside strings give the nesting depth, and only the few events at the top
    level (keys, starts and ends of their values) reach Python. Memory is a few times
    the chunk size whatever the file size.

    Args:
        fh: binary file object positioned at the start of the JSON text.
        file: the file's path, for error messages.
        on_entry: called as ``on_entry(key, start, stop, scalar)`` per top-level key, with
            the byte range of its value; ``scalar`` means the range runs up to the next key
            and still holds the separating comma (numbers, ``null``, ``true``, ``false`` have
            no closing token to end on).

    Returns:
        The number of entries reported.

    Raises:
        DataError: the text is not one complete JSON object (truncated, a top-level array,
            unbalanced brackets, trailing data). Names the file and, if known, the key.

    Example:
        >>> with open("mask_dict.json", "rb") as fh:
        ...     scan(fh, file="mask_dict.json", on_entry=lambda k, a, b, s: print(k, a, b))
    """
    def fail(message: str, key: str | None = None) -> DataError:
        return DataError(message, file=file, field=None if key is None else f"mask_dict[{key}]")

    # The opening brace, after optional whitespace and a UTF-8 byte order mark.
    head = fh.read(CHUNK_BYTES)
    while len(head) < 4:
        more = fh.read(CHUNK_BYTES)
        if not more:
            break
        head += more
    start = 3 if head.startswith(b"\xef\xbb\xbf") else 0
    while True:
        while start < len(head) and head[start] in _WS:
            start += 1
        if start < len(head):
            break
        more = fh.read(CHUNK_BYTES)
        if not more:
            raise fail("file is empty (expected a JSON object)")
        head, start = more, 0
    if head[start:start + 1] != b"{":
        raise fail(f"expected a JSON object, found {head[start:start + 20]!r}")

    state = _ScanState()
    buf, base, pos = head, 0, start + 1
    eof = False
    while True:
        done, cut = _scan_chunk(buf, pos, base, eof, state, on_entry, fail)
        if done is not None:
            _check_trailing(fh, buf[done:], fail)
            return state.count
        if eof:
            key = state.pending
            if state.in_str:
                raise fail(f"truncated or invalid JSON: a string is not closed at end of file "
                           f"(byte {base + len(buf)})", key)
            what = f"entry {key!r} is not closed" if key is not None else "the top-level object is not closed"
            raise fail(f"truncated or invalid JSON: {what} at end of file (byte {base + len(buf)})", key)
        chunk = fh.read(CHUNK_BYTES)
        eof = not chunk
        buf = buf[cut:] + chunk
        base += cut
        pos = 0


class _ScanState:
    """What `scan` carries from one chunk to the next."""

    __slots__ = ("depth", "in_str", "pending", "pending_at", "value_at", "count")

    def __init__(self) -> None:
        self.depth = 1            # nesting depth at the start of the unread text
        self.in_str = False       # whether the unread text starts inside a string
        self.pending: str | None = None  # top-level key whose value has not ended
        self.pending_at = 0       # absolute offset just after that key's colon
        self.value_at = 0         # absolute offset where its container value began
        self.count = 0


# Byte values: '"' 34, '\\' 92, ':' 58, '[' 91, ']' 93, '{' 123, '}' 125. ``(c & 0xD9) == 0x59``
# holds for the four brackets (and for 'Y', '_', 'y', DEL, filtered out after).


def _scan_chunk(buf: bytes, pos: int, base: int, eof: bool, st: _ScanState, on_entry, fail) -> tuple[int | None, int]:
    """Tokenise ``buf[pos:]``; returns (end of the top-level object or None, where to resume)."""
    end = len(buf)
    if not eof:  # never cut a backslash run (its parity decides whether a quote is escaped)
        while end > pos and buf[end - 1] == 92:
            end -= 1
    a = np.frombuffer(buf, dtype=np.uint8, count=end - pos, offset=pos) if end > pos else np.zeros(0, np.uint8)
    in_str0 = int(st.in_str)

    quotes = np.flatnonzero(a == 34)
    if quotes.size:
        maybe = quotes[(quotes > 0) & (a[np.maximum(quotes - 1, 0)] == 92)]
        if maybe.size:
            escaped = []
            for q in maybe.tolist():
                j = q - 1
                while j >= 0 and a[j] == 92:
                    j -= 1
                if (q - 1 - j) % 2:
                    escaped.append(q)
            if escaped:
                quotes = np.setdiff1d(quotes, np.asarray(escaped, dtype=quotes.dtype), assume_unique=True)
    cand = np.flatnonzero((a & 0xD9) == 0x59)
    vals = a[cand]
    keep = (vals == 91) | (vals == 93) | (vals == 123) | (vals == 125)
    brackets, vals = cand[keep], vals[keep]
    if quotes.size and brackets.size:
        outside = (np.searchsorted(quotes, brackets) + in_str0) % 2 == 0
        brackets, vals = brackets[outside], vals[outside]
    elif in_str0 and brackets.size:  # no quote: the whole chunk is inside one string
        brackets, vals = brackets[:0], vals[:0]
    delta = np.where((vals == 91) | (vals == 123), 1, -1).astype(np.int64)
    after = st.depth + np.cumsum(delta)

    # Events at the top level, as (position, kind, extra), in file order.
    events: list[tuple[int, int, int]] = []
    starts = brackets[(delta == 1) & (after == 2)]   # a value opens: depth 1 -> 2
    events += [(p, 1, 0) for p in starts.tolist()]
    ends = brackets[(delta == -1) & (after == 1)]    # a value closes: depth 2 -> 1
    events += [(p, 2, 0) for p in ends.tolist()]
    top = brackets[after <= 0]                   # the top-level object closes (or worse)
    if top.size:
        events.append((int(top[0]), 3, int(vals[np.flatnonzero(after <= 0)[0]])))
    opens = quotes[in_str0::2]                   # opening quotes of strings
    if opens.size:
        j = np.searchsorted(brackets, opens)
        depth_at = np.where(j == 0, st.depth, after[np.maximum(j - 1, 0)] if after.size else st.depth)
        first = np.flatnonzero(depth_at == 1)
        for k in first.tolist():                 # top-level strings: keys (or string values)
            qi = 2 * k + in_str0
            close = int(quotes[qi + 1]) if qi + 1 < quotes.size else -1
            events.append((int(opens[k]), 4, close))
    events.sort()

    in_str_end = (quotes.size + in_str0) % 2 == 1
    depth_end = int(after[-1]) if after.size else st.depth
    cut = end
    for p, kind, extra in events:
        if kind == 3:  # end of the top-level object
            if extra != 125:
                raise fail(f"unbalanced ']' at byte {base + pos + p}", st.pending)
            if st.pending is not None:
                on_entry(st.pending, st.pending_at, base + pos + p, True)
                st.count += 1
                st.pending = None
            return pos + p + 1, 0
        if kind == 1:
            if st.pending is None:
                raise fail(f"a value without a key at byte {base + pos + p}")
            st.value_at = base + pos + p
        elif kind == 2:
            on_entry(st.pending, st.value_at, base + pos + p + 1, False)
            st.count += 1
            st.pending = None
        else:  # a string at the top level
            if extra < 0:  # not closed in this chunk: re-read it with the next one
                if eof:
                    raise fail(f"truncated or invalid JSON: a string is not closed (byte {base + pos + p})", st.pending)
                cut, in_str_end, depth_end = pos + p, False, 1
                break
            after_str = pos + extra + 1
            nxt = after_str
            while nxt < len(buf) and buf[nxt] in _WS:
                nxt += 1
            if nxt >= len(buf) and not eof:  # a colon may follow in the next chunk
                cut, in_str_end, depth_end = pos + p, False, 1
                break
            if nxt < len(buf) and buf[nxt] == 58:  # ':' -> a key
                if st.pending is not None:
                    on_entry(st.pending, st.pending_at, base + pos + p, True)
                    st.count += 1
                try:
                    st.pending = json.loads(buf[pos + p:after_str])
                except ValueError as exc:
                    raise fail(f"bad key at byte {base + pos + p} ({exc})") from None
                st.pending_at = base + nxt + 1
            else:
                if st.pending is None:
                    raise fail(f"a string where a key is expected at byte {base + pos + p}")
                on_entry(st.pending, base + pos + p, base + after_str, False)
                st.count += 1
                st.pending = None
    st.in_str, st.depth = bool(in_str_end), depth_end
    return None, cut


def _check_trailing(fh, rest: bytes, fail) -> None:
    """Only whitespace may follow the closing brace."""
    while True:
        if rest.strip(_WS):
            raise fail("data after the end of the JSON object")
        rest = fh.read(CHUNK_BYTES)
        if not rest:
            return


def build_index(path: str | Path, dest: str | Path) -> int:
    """Scan ``path`` once and write its index to ``dest`` (temporary name, then rename).

    Returns the number of entries. Raises `DataError` for a truncated or invalid file;
    nothing is left at ``dest`` then.

    Example:
        >>> build_index("mevis/train/mask_dict.json", index_path("mevis/train/mask_dict.json"))
        8171
    """
    path, dest = Path(path), Path(dest)
    st = path.stat()
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    try:
        conn = sqlite3.connect(tmp)
        try:
            conn.execute("PRAGMA journal_mode=OFF")
            conn.execute("PRAGMA synchronous=OFF")
            conn.execute("CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID")
            conn.execute("CREATE TABLE entries (key TEXT PRIMARY KEY, start INTEGER, stop INTEGER, "
                         "scalar INTEGER) WITHOUT ROWID")
            batch: list[tuple[str, int, int, int]] = []

            def on_entry(key: str, start: int, stop: int, scalar: bool) -> None:
                batch.append((key, start, stop, int(scalar)))
                if len(batch) >= 4096:
                    conn.executemany("INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?)", batch)
                    batch.clear()

            with open(path, "rb") as fh:
                count = scan(fh, file=path, on_entry=on_entry)
            conn.executemany("INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?)", batch)
            conn.executemany("INSERT INTO meta VALUES (?, ?)", [
                ("version", INDEX_VERSION), ("source", str(path.resolve())), ("size", str(st.st_size)),
                ("mtime_ns", str(st.st_mtime_ns)), ("entries", str(count))])
            conn.commit()
        finally:
            conn.close()
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _STATS["builds"] += 1
    log.info("indexed %s: %d entries -> %s", path, count, dest)
    return count


# -- the index -----------------------------------------------------------------------------------
class MaskDictIndex:
    """Random access to the top-level entries of a large JSON object on disk.

    Built on first use (one streaming pass), reused from the cache afterwards, rebuilt
    when the file's size or mtime changes. Safe to share between threads; a forked
    process reopens its own SQLite connection.

    Attributes:
        path: the JSON file.
        reads: how many times each key was read in this process (cheap; tests use it).

    Example:
        >>> index = MaskDictIndex("mevis/valid_u/mask_dict.json")
        >>> "12" in index, len(index)
        (True, 413)
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.reads: collections.Counter = collections.Counter()
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._conn_pid = 0
        self._stamp: tuple[int, int] | None = None
        self._failed: tuple[tuple[int, int], DataError] | None = None

    def __repr__(self) -> str:
        return f"<MaskDictIndex {self.path}>"

    @property
    def index_file(self) -> Path:
        return index_path(self.path)

    def _file_stamp(self) -> tuple[int, int]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            raise DataError("file is missing", file=self.path) from None
        return st.st_size, st.st_mtime_ns

    def _valid(self, conn: sqlite3.Connection, stamp: tuple[int, int]) -> bool:
        try:
            meta = dict(conn.execute("SELECT name, value FROM meta"))
        except sqlite3.DatabaseError:
            return False
        return (meta.get("version") == INDEX_VERSION and meta.get("source") == str(self.path.resolve())
                and meta.get("size") == str(stamp[0]) and meta.get("mtime_ns") == str(stamp[1]))

    def ensure(self) -> None:
        """Open the index, building it first if it is missing or stale."""
        with self._lock:
            stamp = self._file_stamp()
            if self._conn is not None and self._conn_pid == os.getpid() and self._stamp == stamp:
                return
            self.close()
            if self._failed is not None and self._failed[0] == stamp:
                raise self._failed[1]  # the same broken file: do not scan it again
            dest = self.index_file
            if not dest.exists() and _fallback_path(self.path).exists():
                dest = _fallback_path(self.path)
            conn = self._connect(dest) if dest.exists() else None
            if conn is not None and not self._valid(conn, stamp):
                conn.close()
                conn = None
            if conn is None:
                try:
                    dest = self._build(dest)
                except DataError as err:
                    self._failed = (stamp, err)
                    raise
                conn = self._connect(dest)
                if not self._valid(conn, stamp):
                    conn.close()
                    raise DataError("file changed while it was being indexed; try again", file=self.path)
            self._conn, self._conn_pid, self._stamp = conn, os.getpid(), stamp

    def _build(self, dest: Path) -> Path:
        """Build at ``dest``, or in the temp folder when the cache folder is not writable."""
        try:
            build_index(self.path, dest)
            return dest
        except PermissionError:
            fallback = _fallback_path(self.path)
            log.warning("cannot write the index to %s; using %s (set LONGRVOS_CACHE)", dest.parent, fallback.parent)
            build_index(self.path, fallback)
            return fallback

    @staticmethod
    def _connect(dest: Path) -> sqlite3.Connection | None:
        try:
            return sqlite3.connect(f"{dest.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)
        except sqlite3.Error:
            return None

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._conn_pid == os.getpid():
                self._conn.close()
            self._conn = None

    def _query(self, sql: str, args: Sequence = ()) -> list[tuple]:
        with self._lock:
            self.ensure()
            assert self._conn is not None
            return self._conn.execute(sql, args).fetchall()

    def __contains__(self, key: object) -> bool:
        return bool(self._query("SELECT 1 FROM entries WHERE key = ?", (str(key),)))

    def __len__(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM entries")[0][0])

    def keys(self) -> list[str]:
        """Every top-level key, in key order (not file order)."""
        return [k for (k,) in self._query("SELECT key FROM entries ORDER BY key")]

    def read_many(self, keys: Iterable[str], *, video: str | None = None,
                  field: str = "mask_dict[{key}]") -> dict[str, Any]:
        """Parse the values of ``keys`` (only those bytes are read).

        Raises:
            KeyError: a key is not in the file.
            DataError: a value is not valid JSON; names the file, ``video`` and the field.
        """
        keys = [str(k) for k in keys]
        spans = {}
        for key in keys:
            rows = self._query("SELECT start, stop, scalar FROM entries WHERE key = ?", (key,))
            if not rows:
                raise KeyError(key)
            spans[key] = rows[0]
        out: dict[str, Any] = {}
        if not spans:
            return out
        with open(self.path, "rb") as fh:
            for key, (start, stop, scalar) in spans.items():
                fh.seek(start)
                raw = fh.read(stop - start)
                if scalar:
                    raw = raw.strip(_WS).rstrip(b",").rstrip(_WS)
                try:
                    out[key] = json.loads(raw)
                except ValueError as exc:
                    raise DataError(f"invalid JSON in this entry ({exc})", file=self.path, video=video,
                                    field=field.format(key=key)) from None
                self.reads[key] += 1
        if self._file_stamp() != self._stamp:
            # The file changed under us: offsets may be wrong. Re-index and read again.
            log.info("%s changed since it was indexed; re-indexing", self.path)
            self.ensure()
            return self.read_many(keys, video=video, field=field)
        return out

    def read(self, key: str, *, video: str | None = None) -> Any:
        """The parsed value of one key (KeyError if absent)."""
        return self.read_many([key], video=video)[str(key)]

    def fetch_tracks(self, keys: Iterable[str], *, video: str, num_frames: int, height: int,
                     width: int, lists: bool = False) -> dict[str, list]:
        """``{key: [RLE | None per frame]}`` for one video, each RLE checked as `check_rle_list`
        does (the counts of all ``keys`` in one pass).

        With ``lists`` a frame's item may be a list of RLEs, returned as their union (ReVOS:
        VISA's loader sums them); an empty list is an absent mask.

        Raises:
            DataError: a key is missing, a list's length differs from ``num_frames``, or an
                item is neither null nor an RLE of size ``[height, width]`` whose counts decode
                to H x W pixels; the field is ``mask_dict[<key>]`` or ``mask_dict[<key>][<t>]``.
        """
        keys = list(keys)
        try:
            values = self.read_many(keys, video=video)
        except KeyError as exc:
            raise DataError(f"anno_id {exc.args[0]} is not in the file", file=self.path, video=video,
                            field=f"mask_dict[{exc.args[0]}]") from None
        rles: list[Mapping] = []
        fields: list[str] = []
        for key in keys:     # shapes key by key, then the counts of the whole video in one pass
            _check_rle_shapes(values[key], file=self.path, video=video, field=f"mask_dict[{key}]",
                              num_frames=num_frames, height=height, width=width, allow_lists=lists,
                              rles=rles, fields=fields)
        check_rle_counts(rles, fields, file=self.path, video=video)
        out = {key: values[key] for key in keys}
        if lists:
            for seq in out.values():
                for t, item in enumerate(seq):
                    if isinstance(item, list):
                        seq[t] = _masks.union(item)
        return out


def check_rle_list(value: Any, *, file: str | Path, video: str | None, field: str, num_frames: int,
                   height: int, width: int, allow_lists: bool = False) -> list:
    """Check ``value`` is ``[RLE | None] * num_frames`` with every RLE of size ``[height, width]``.

    Each RLE's counts are checked too (`base.check_rle_counts`: they decode and sum to
    H x W, all of the list in one pass), so that a corrupt entry is an error naming its
    place here and not a hang or garbage pixels in pycocotools later. With ``allow_lists``
    an item may also be a list of RLEs (ReVOS: their union is meant).

    Returns:
        ``value`` itself.

    Raises:
        DataError: naming ``file``, ``video`` and ``field`` (``field[t]`` for frame ``t``'s item,
            ``field[t][j]`` for an RLE of a list).

    Example:
        >>> check_rle_list([None], file="m.json", video="v", field="mask_dict[3]", num_frames=1,
        ...                height=4, width=6)
        [None]
    """
    rles: list[Mapping] = []
    fields: list[str] = []
    _check_rle_shapes(value, file=file, video=video, field=field, num_frames=num_frames, height=height,
                      width=width, allow_lists=allow_lists, rles=rles, fields=fields)
    check_rle_counts(rles, fields, file=file, video=video)
    return value


def _check_rle_shapes(value: Any, *, file: str | Path, video: str | None, field: str, num_frames: int,
                      height: int, width: int, allow_lists: bool, rles: list, fields: list) -> None:
    """`check_rle_list` but for the counts: appends each RLE and its field to ``rles`` and
    ``fields``, for one `check_rle_counts` of many lists."""
    if not isinstance(value, list):
        raise DataError(f"expected a list of RLE or null per frame, got {type(value).__name__}",
                        file=file, video=video, field=field)
    if len(value) != num_frames:
        raise DataError(f"has {len(value)} item(s) but the video lists {num_frames} frame(s)",
                        file=file, video=video, field=field)
    for t, rle in enumerate(value):
        if rle is None:
            continue
        listed = allow_lists and isinstance(rle, list)
        for j, item in enumerate(rle if listed else [rle]):
            where = f"{field}[{t}][{j}]" if listed else f"{field}[{t}]"
            if not _masks.is_rle(item):
                raise DataError("expected an RLE ({'size': [H, W], 'counts': ...}) or null",
                                file=file, video=video, field=where)
            if list(item["size"]) != [height, width]:
                raise DataError(f"RLE size {list(item['size'])} differs from the video's [{height}, {width}]",
                                file=file, video=video, field=where)
            rles.append(item)
            fields.append(where)


# -- writing -----------------------------------------------------------------------------------
class MaskDictWriter:
    """Write a ``{key: value}`` JSON object one entry at a time, then rename it into place.

    Nothing but the current entry is held in memory; the file appears at ``path`` only
    when `close` succeeds (a failure or an exception inside ``with`` removes the partial
    file). Keys must be unique.

    Example:
        >>> with MaskDictWriter(out / "mask_dict.json") as w:
        ...     w.add("1", [rle0, None, rle2])
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self._tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        self._fh = os.fdopen(fd, "wb")
        self._fh.write(b"{")
        self._keys: set[str] = set()
        self._closed = False

    def __contains__(self, key: object) -> bool:
        return str(key) in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    @property
    def bytes_written(self) -> int:
        """Size of the partial file so far."""
        return self._fh.tell()

    def add(self, key: str, value: Any) -> None:
        """Append one entry; raises ValueError if ``key`` was already written."""
        key = str(key)
        if key in self._keys:
            raise ValueError(f"key {key!r} written twice to {self.path}")
        sep = b", " if self._keys else b""
        self._keys.add(key)
        self._fh.write(sep + json.dumps(key).encode() + b": "
                       + json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))

    def close(self) -> None:
        """Finish the object and rename it into place."""
        if self._closed:
            return
        self._closed = True
        try:
            self._fh.write(b"}")
            self._fh.close()
            os.replace(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Drop the partial file."""
        self._closed = True
        if not self._fh.closed:
            self._fh.close()
        Path(self._tmp).unlink(missing_ok=True)

    def __enter__(self) -> "MaskDictWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def rle_lists(video, track_ids: Sequence[str]) -> dict[str, list]:
    """``{track_id: [RLE | None per frame]}`` of one canonical video, read frame by frame.

    Holds one video's RLEs (small) and never a decoded mask beyond the current frame.
    Raises `DataError` if an RLE's size differs from the video's.

    Example:
        >>> rle_lists(video, ["17"])["17"][:2]
        [{'size': [720, 1280], 'counts': '...'}, None]
    """
    out: dict[str, list] = {tid: [None] * video.num_frames for tid in track_ids}
    wanted = set(track_ids)
    for t in range(video.num_frames):
        for tid, rle in video.frame_rles(t).items():
            if tid not in wanted:
                continue
            if list(rle["size"]) != [video.height, video.width]:
                raise DataError(f"mask size {list(rle['size'])} differs from the video's "
                                f"[{video.height}, {video.width}]", file=video.source_file,
                                video=video.video_id, field=f"masks[{tid}][{t}]")
            out[tid][t] = _plain_rle(rle)
    return out


def _plain_rle(rle: Mapping) -> dict:
    """A JSON-ready RLE: ``{"size": [H, W], "counts": str}`` (lists compressed)."""
    counts = rle["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    elif isinstance(counts, list):
        return _masks.encode(_masks.decode(rle))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": counts}
