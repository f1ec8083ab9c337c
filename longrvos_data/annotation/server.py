"""The annotation web app: an HTTP API over a project's store and a mask engine, and the static UI.

`create_app` builds the FastAPI application, `serve` runs it with uvicorn; the README's
"Annotation app" section lists the routes. What it guarantees:

- Nothing is decoded whole: a frame, a thumbnail or a frame's masks (as COCO RLE) travel
  one at a time; timelines are per-track runs read without a mask; a propagation streams
  its masks (NDJSON) as the engine computes them and is stored as one operation.
- Security (`Guard`): it binds 127.0.0.1 by default; on any other address a token is
  required (``Authorization: Bearer``, or the cookie set by opening ``/?token=T``). The
  ``Host`` header must name the server (400: DNS rebinding) and a browser ``Origin`` must
  be the server's own (403: cross-site requests); bodies over ``max_body`` are refused
  (413) before the application reads them; videos are addressed by their integer key,
  files only through the store's records or the shipped static folder (no traversal).
- Errors are JSON ``{"detail": ...}``: 404 for unknown ids, 409 for a stale version (with
  the stale cells), a refused undo or a busy engine, 400 for what the engine or the store
  cannot take.
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import io
import json
import logging
import re
import secrets
import socket
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any, Literal, Optional
from urllib.parse import parse_qs

from pydantic import BaseModel, Field

from ..errors import LongRVOSError
from ..schema import KINDS
from .store import SEVERITY_RANK, STATUSES, Conflict, NotFound, Store, StoreError, UndoRefused

log = logging.getLogger("longrvos_data")

STATIC_DIR = Path(__file__).with_name("static")
COOKIE = "longrvos_token"
THUMB_HEIGHT = 64
EXPORT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
LOOPBACK = "127.0.0.1"
MEDIA_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
               ".css": "text/css; charset=utf-8",
               ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp"}
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy", b"default-src 'self'; img-src 'self' blob: data:; style-src 'self'; "
                                 b"script-src 'self'; connect-src 'self'; frame-ancestors 'none'"),
]


class ServerError(LongRVOSError):
    """The server cannot start (port taken, no token on a public address, bad project)."""


@dataclass
class ServerConfig:
    """Everything `create_app` needs. ``port`` is the one the server listens on (the ``Host``
    check names it); ``token`` None on 127.0.0.1 means none is asked for."""

    project: Path
    engine: str = "classical"
    engine_options: dict = field(default_factory=dict)
    host: str = LOOPBACK
    port: int = 8765
    user: str = "annotator"
    token: str | None = None
    export_dir: Path | None = None
    max_body: int = 16 * 2**20
    allow_hosts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.project = Path(self.project)
        if self.export_dir is None:
            self.export_dir = self.project.parent / f"{self.project.name}-exports"
        if self.host != LOOPBACK and not self.token:
            raise ServerError(f"serving on {self.host} (not {LOOPBACK}) needs a token: pass --token or let the "
                              "command make one")

    def hosts(self) -> set[str]:
        """The ``Host`` header values that name this server."""
        names = {self.host, *self.allow_hosts}
        if self.host in (LOOPBACK, "localhost"):
            names |= {LOOPBACK, "localhost"}
        if self.host in ("0.0.0.0", "::"):
            names |= {LOOPBACK, "localhost", socket.gethostname(), socket.getfqdn()}
        out = set()
        for name in names:
            shown = f"[{name}]" if ":" in name else name
            out.add(f"{shown}:{self.port}")
            if self.port == 80:
                out.add(shown)
        return out


# -- security ----------------------------------------------------------------------------------
async def _send_json(send, status: int, body: dict, headers: list[tuple[bytes, bytes]] = ()) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                            *SECURITY_HEADERS, *headers]})
    await send({"type": "http.response.body", "body": data})


class Guard:
    """ASGI middleware in front of every request: Host, Origin, token, body size (see the module
    docstring); adds the security headers (a CSP that allows this origin only) to every answer."""

    def __init__(self, app, *, hosts: set[str], token: str | None, max_body: int) -> None:
        self.app, self.hosts, self.token, self.max_body = app, hosts, token, max_body
        self.origins = {f"http://{h}" for h in hosts}

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if headers.get("host", "") not in self.hosts:
            return await _send_json(send, 400, {"detail": f"invalid Host header {headers.get('host', '')!r}"})
        origin = headers.get("origin")
        if (origin is not None and origin not in self.origins) or headers.get("sec-fetch-site") == "cross-site":
            return await _send_json(send, 403, {"detail": f"cross-origin request refused (Origin {origin!r})"})
        if self.token is not None:
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            if scope["path"] == "/" and "token" in query:
                if not hmac.compare_digest(query["token"][0].encode(), self.token.encode()):
                    return await _send_json(send, 401, {"detail": "wrong token"})
                cookie = f"{COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/".encode()
                return await _send_json(send, 303, {"detail": "signed in"},
                                        [(b"location", b"/"), (b"set-cookie", cookie)])
            if not hmac.compare_digest(self._supplied(headers).encode(), self.token.encode()):
                return await _send_json(send, 401, {"detail": "a token is required: open the URL the server "
                                                              "printed (/?token=...) or send Authorization: Bearer"})
        if scope["method"] in ("POST", "PUT", "PATCH", "DELETE"):
            length = headers.get("content-length")
            if length is not None and (not length.isdigit() or int(length) > self.max_body):
                return await _send_json(send, 413, {"detail": f"request body over {self.max_body} bytes"})
            body, more = b"", True
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                body += message.get("body", b"")
                more = message.get("more_body", False)
                if len(body) > self.max_body:
                    return await _send_json(send, 413, {"detail": f"request body over {self.max_body} bytes"})
            receive = _replay(body, receive)

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
            await send(message)

        await self.app(scope, receive, send_with_headers)

    @staticmethod
    def _supplied(headers: dict[str, str]) -> str:
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip()
        morsel = SimpleCookie(headers.get("cookie", "")).get(COOKIE)
        return morsel.value if morsel is not None else ""


def _replay(body: bytes, receive):
    """A ``receive`` that hands the buffered body over once, then waits on the real one."""
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()
    return replay


# -- request bodies ------------------------------------------------------------------------------
class NewTrack(BaseModel):
    category: Optional[str] = None


Point = tuple[float, float]


class Prompt(BaseModel):
    frame: int = Field(ge=0)
    track_id: str
    base: int = Field(ge=0)
    points: Optional[list[Point]] = Field(default=None, max_length=1000)
    labels: Optional[list[Literal[0, 1]]] = Field(default=None, max_length=1000)
    box: Optional[tuple[float, float, float, float]] = None


class Brush(BaseModel):
    frame: int = Field(ge=0)
    track_id: str
    base: int = Field(ge=0)
    radius: float = Field(gt=0, le=1000)
    erase: bool = False
    points: list[Point] = Field(min_length=1, max_length=100_000)


class Span(BaseModel):
    start: int = Field(ge=0)
    end: int = Field(ge=0)


class Absent(Span):
    track_id: str


class Swap(Span):
    a: str
    b: str


class Merge(Span):
    source: str
    target: str


class Split(Span):
    track_id: str


class Propagate(BaseModel):
    track_ids: list[str] = Field(min_length=1, max_length=1000)
    start: int = Field(ge=0)
    direction: Literal["forward", "backward", "both"] = "forward"


class NewExpression(BaseModel):
    text: str = Field(min_length=1, max_length=10_000)
    track_ids: list[str] = Field(default_factory=list, max_length=1000)
    kind: Optional[str] = None


class EditExpression(BaseModel):
    text: Optional[str] = Field(default=None, min_length=1, max_length=10_000)
    track_ids: Optional[list[str]] = Field(default=None, max_length=1000)
    kind: Optional[str] = None


class Status(BaseModel):
    status: Literal[STATUSES]  # type: ignore[valid-type]


class Assignee(BaseModel):
    assignee: Optional[str] = Field(default=None, max_length=200)


class NewFlag(BaseModel):
    frame_start: int = Field(ge=0)
    frame_end: int = Field(ge=0)
    track_ids: list[str] = Field(default_factory=list, max_length=1000)
    message: str = Field(default="look again", max_length=2000)


class Export(BaseModel):
    format: str
    name: str
    overwrite: bool = False


# -- the application ---------------------------------------------------------------------------
class _Stores:
    """One store connection per worker thread (an SQLite connection stays in its thread)."""

    def __init__(self, path: Path) -> None:
        Store.open(path).close()                # fail at start, not at the first request
        self.path = path
        self._local = threading.local()
        self._all: list[Store] = []
        self._lock = threading.Lock()

    def get(self) -> Store:
        store = getattr(self._local, "store", None)
        if store is None:
            store = self._local.store = Store.open(self.path)
            with self._lock:
                self._all.append(store)
        return store

    def close(self) -> None:
        with self._lock:
            for store in self._all:
                with contextlib.suppress(Exception):
                    store.close()
            self._all = []


@dataclass
class _Job:
    """A running propagation: its cancel flag and the queue its steps reach the response by."""

    job_id: str
    cancel: threading.Event
    queue: asyncio.Queue
    loop: asyncio.AbstractEventLoop

    def put(self, item: dict) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, item)


def create_app(config: ServerConfig):
    """The FastAPI application for ``config`` (wrapped in `Guard`)."""
    from fastapi import Body, FastAPI, Query, Request
    from fastapi.responses import JSONResponse, Response, StreamingResponse
    from starlette.concurrency import run_in_threadpool

    from ..converters.base import TARGETS, convert
    from . import edits
    from .session import Busy, Sessions

    stores = _Stores(config.project)
    sessions = Sessions(config.engine, config.engine_options, max_open=1 if config.engine == "sam2" else 4)
    jobs: dict[str, _Job] = {}
    videos: OrderedDict[int, Any] = OrderedDict()   # pk -> VideoInfo without its mutable parts
    videos_lock = threading.Lock()
    user = config.user

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        for job in list(jobs.values()):
            job.cancel.set()
        sessions.close()
        stores.close()

    app = FastAPI(title="longrvos annotate", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)

    # -- errors --------------------------------------------------------------------------
    @app.exception_handler(Conflict)
    async def _conflict(request: Request, err: Conflict):
        return JSONResponse({"detail": str(err), "rejected_op": err.rejected_op,
                             "stale": [{"track_id": s.track_id, "frame": s.frame, "base": s.base,
                                        "version": s.version} for s in err.stale]}, status_code=409)

    @app.exception_handler(LongRVOSError)
    async def _error(request: Request, err: LongRVOSError):
        status = 404 if isinstance(err, NotFound) else 409 if isinstance(err, (UndoRefused, Busy)) else 400
        return JSONResponse({"detail": str(err)}, status_code=status)

    # -- lookups -------------------------------------------------------------------------
    def video(pk: int):
        """The video ``pk`` (frames and size cached: they never change)."""
        with videos_lock:
            if pk in videos:
                videos.move_to_end(pk)
                return videos[pk]
        store = stores.get()
        info = store.video_info(*store.video_key(pk))
        with videos_lock:
            videos[pk] = info
            while len(videos) > 32:
                videos.popitem(last=False)
        return info

    def frame_index(info, i: int) -> int:
        if not 0 <= i < len(info.frames):
            raise NotFound(f"{info.split}/{info.video_id}: no frame {i} (0..{len(info.frames) - 1})")
        return i

    def frame_file(info, i: int) -> Path:
        path = Path(info.frames[frame_index(info, i)].path)
        if ".." in path.parts or not path.is_file():
            raise NotFound(f"{info.split}/{info.video_id} frame {i}: {path} is missing (annotate relink?)")
        return path

    def cell_json(cell) -> dict:
        return {"track_id": cell.track_id, "state": cell.state, "rle": cell.rle, "provenance": cell.provenance,
                "version": cell.version}

    def video_json(pk: int) -> dict:
        store = stores.get()
        info = store.video_info(*store.video_key(pk))
        return {"pk": pk, "split": info.split, "video_id": info.video_id, "dataset": info.dataset,
                "num_frames": len(info.frames), "width": info.width, "height": info.height, "fps": info.fps,
                "status": info.status, "assignee": info.assignee,
                "tracks": [{"track_id": t.track_id, "category": t.category} for t in info.tracks],
                "expressions": [{"exp_id": e.exp_id, "text": e.text, "kind": e.kind, "track_ids": list(e.track_ids)}
                                for e in info.expressions]}

    def changed(applied) -> dict:
        store = stores.get()
        pk = store.video_pk(*applied.video) if applied.video else None
        return {"op_id": applied.op_id,
                "cells": [{"pk": pk, "track_id": t, "frame": f} for (t, f) in sorted(applied.versions)]}

    # -- pages ---------------------------------------------------------------------------
    static_files = {p.name: p for p in STATIC_DIR.iterdir() if p.is_file()} if STATIC_DIR.is_dir() else {}

    def static(name: str):
        path = static_files.get(name)
        if path is None:
            raise NotFound(f"no static file {name!r}")
        return Response(path.read_bytes(), media_type=MEDIA_TYPES.get(path.suffix, "application/octet-stream"),
                        headers={"cache-control": "no-cache"})

    @app.get("/")
    def index():
        return static("index.html")

    @app.get("/static/{name}")
    def static_file(name: str):
        return static(name)

    # -- reading -------------------------------------------------------------------------
    @app.get("/api/project")
    def project():
        return {"name": config.project.name, "user": user, "engine": config.engine,
                "export_formats": list(TARGETS), "statuses": list(STATUSES),
                "kinds": list(KINDS), "max_body": config.max_body}

    @app.get("/api/videos")
    def list_videos():
        con = stores.get().con
        rows = con.execute(
            "SELECT v.video_pk, v.split, v.video_id, v.width, v.height, v.status, v.assignee, "
            "(SELECT count(*) FROM frames f WHERE f.video_pk = v.video_pk), "
            "(SELECT count(*) FROM tracks t WHERE t.video_pk = v.video_pk), "
            "(SELECT count(*) FROM expressions e WHERE e.video_pk = v.video_pk) FROM videos v ORDER BY v.position")
        return [{"pk": pk, "split": sp, "video_id": vid, "width": w, "height": h, "status": st, "assignee": a,
                 "num_frames": nf, "num_tracks": nt, "num_expressions": ne}
                for pk, sp, vid, w, h, st, a, nf, nt, ne in rows]

    @app.get("/api/videos/{pk}")
    def get_video(pk: int):
        return video_json(pk)

    @app.get("/api/videos/{pk}/frames/{i}")
    def get_frame(pk: int, i: int):
        path = frame_file(video(pk), i)
        return Response(path.read_bytes(), media_type=MEDIA_TYPES.get(path.suffix.lower(), "image/jpeg"),
                        headers={"cache-control": "private, max-age=3600"})

    @functools.lru_cache(maxsize=1024)
    def thumbnail(path: Path) -> bytes:
        from PIL import Image
        with Image.open(path) as im:
            im.draft("RGB", (THUMB_HEIGHT * 4, THUMB_HEIGHT))
            im = im.convert("RGB")
            im.thumbnail((THUMB_HEIGHT * 4, THUMB_HEIGHT))
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=75)
        return buf.getvalue()

    @app.get("/api/videos/{pk}/thumbs/{i}")
    def get_thumb(pk: int, i: int):
        return Response(thumbnail(frame_file(video(pk), i)), media_type="image/jpeg",
                        headers={"cache-control": "private, max-age=3600"})

    @app.get("/api/videos/{pk}/masks/{i}")
    def get_masks(pk: int, i: int):
        info = video(pk)
        store = stores.get()
        frame_index(info, i)
        written = {c.track_id: c for c in store.cells(info.split, info.video_id, frame=i)}
        tracks = [t.track_id for t in store.tracks(info.split, info.video_id)]
        return {"frame": i, "cells": [cell_json(written[t]) if t in written else
                                      {"track_id": t, "state": "none", "rle": None, "provenance": None, "version": 0}
                                      for t in tracks]}

    @app.get("/api/videos/{pk}/lanes")
    def get_lanes(pk: int):
        info = video(pk)
        store = stores.get()
        tracks: dict[str, list] = {t.track_id: [] for t in store.tracks(info.split, info.video_id)}
        for tid, f, state, prov, _ in store.cell_states(info.split, info.video_id):
            code = None if state == "none" else "absent" if state == "absent" else \
                "human" if prov == "human" else "machine"
            runs = tracks.setdefault(tid, [])
            if code is None:
                continue
            if runs and runs[-1][1] == f and runs[-1][2] == code:
                runs[-1][1] = f + 1
            else:
                runs.append([f, f + 1, code])
        flags = [{"flag_id": fl.flag_id, "frame_start": fl.frame_start, "frame_end": fl.frame_end,
                  "track_ids": list(fl.track_ids), "check": fl.check, "severity": fl.severity, "message": fl.message}
                 for fl in store.flags(info.split, info.video_id)]
        return {"num_frames": len(info.frames), "tracks": tracks, "flags": flags}

    @app.get("/api/videos/{pk}/next")
    def next_frame(pk: int, frame: int, what: Literal["flagged", "absent", "unreviewed", "keyframe"],
                   direction: int = Query(1, ge=-1, le=1), track_id: Optional[str] = None):
        if direction == 0:
            raise StoreError("direction is 1 (later frames) or -1 (earlier frames)")
        info = video(pk)
        store = stores.get()
        hits: set[int] = set()
        if what == "flagged":
            for fl in store.flags(info.split, info.video_id):
                if track_id is None or track_id in fl.track_ids or not fl.track_ids:
                    hits.update(range(fl.frame_start, fl.frame_end + 1))
        else:
            for tid, f, state, prov, _ in store.cell_states(info.split, info.video_id):
                if track_id is not None and tid != track_id:
                    continue
                if (what == "absent" and state == "absent") or \
                        (what == "unreviewed" and state != "none" and prov != "human") or \
                        (what == "keyframe" and state != "none" and prov == "human"):
                    hits.add(f)
        ahead = [f for f in hits if (f > frame if direction > 0 else f < frame)]
        return {"frame": (min(ahead) if direction > 0 else max(ahead)) if ahead else None}

    @app.get("/api/flags")
    def review_queue(severity: Optional[str] = None, check: Optional[str] = None, limit: int = 500):
        """Every open flag of the project (the audit's and the annotators'), most severe first."""
        store = stores.get()
        rows = [f for f in store.flags() if (severity is None or f.severity == severity)
                and (check is None or f.check == check)]
        rows.sort(key=lambda f: SEVERITY_RANK[f.severity])   # stable: by video and frame within a severity
        pks: dict[tuple[str, str], int] = {}
        out = []
        for f in rows[:max(0, min(limit, 10_000))]:
            key = (f.split, f.video_id)
            if key not in pks:
                pks[key] = store.video_pk(*key)
            out.append({"flag_id": f.flag_id, "pk": pks[key], "split": f.split, "video_id": f.video_id,
                        "check": f.check, "severity": f.severity, "track_ids": list(f.track_ids), "exp_id": f.exp_id,
                        "frame_start": f.frame_start, "frame_end": f.frame_end, "value": f.value,
                        "threshold": f.threshold, "message": f.message, "source": f.source})
        return {"total": len(rows), "flags": out}

    @app.get("/api/history")
    def history(limit: int = 50):
        return [{"op_id": o.op_id, "user": o.user, "at": o.at, "kind": o.kind, "label": o.label, "status": o.status,
                 "target": o.target, "undone_by": o.undone_by} for o in stores.get().history(limit=min(limit, 1000))]

    # -- writing -------------------------------------------------------------------------
    @app.post("/api/videos/{pk}/tracks")
    def new_track(pk: int, body: NewTrack = Body(default_factory=NewTrack)):
        info = video(pk)
        return {"track_id": edits.add_track(stores.get(), info.split, info.video_id, category=body.category)}

    @app.post("/api/videos/{pk}/prompt")
    def prompt(pk: int, body: Prompt):
        info = video(pk)
        frame_index(info, body.frame)
        store = stores.get()
        session = sessions.get(store, info.split, info.video_id)
        applied, cell = session.prompt(store, body.track_id, body.frame, base=body.base, user=user,
                                       points=body.points, labels=body.labels, box=body.box)
        return {"op_id": applied.op_id, "cell": cell_json(cell)}

    @app.post("/api/videos/{pk}/brush")
    def brush(pk: int, body: Brush):
        info = video(pk)
        frame_index(info, body.frame)
        store = stores.get()
        applied = edits.brush(store, info.split, info.video_id, body.track_id, body.frame, base=body.base,
                              points=body.points, radius=body.radius, erase=body.erase, user=user)
        return {"op_id": applied.op_id, "cell": cell_json(store.cell(info.split, info.video_id, body.track_id,
                                                                      body.frame))}

    @app.post("/api/videos/{pk}/absent")
    def absent(pk: int, body: Absent):
        info = video(pk)
        applied = edits.mark_absent(stores.get(), info.split, info.video_id, body.track_id, body.start, body.end,
                                    user=user)
        return {"op_id": applied.op_id, "count": len(applied.versions)}

    @app.post("/api/videos/{pk}/tracks/swap")
    def swap(pk: int, body: Swap):
        info = video(pk)
        applied = edits.swap_tracks(stores.get(), info.split, info.video_id, body.a, body.b, body.start, body.end,
                                    user=user)
        sessions.forget(info.split, info.video_id)
        return {"op_id": applied.op_id}

    @app.post("/api/videos/{pk}/tracks/merge")
    def merge(pk: int, body: Merge):
        info = video(pk)
        applied = edits.merge_tracks(stores.get(), info.split, info.video_id, body.source, body.target, body.start,
                                     body.end, user=user)
        sessions.forget(info.split, info.video_id)
        return {"op_id": applied.op_id}

    @app.post("/api/videos/{pk}/tracks/split")
    def split(pk: int, body: Split):
        info = video(pk)
        applied, new = edits.split_track(stores.get(), info.split, info.video_id, body.track_id, body.start,
                                         body.end, user=user)
        sessions.forget(info.split, info.video_id)
        return {"op_id": applied.op_id, "track_id": new}

    @app.post("/api/videos/{pk}/propagate")
    async def propagate(pk: int, body: Propagate):
        info = await run_in_threadpool(video, pk)
        job = _Job(uuid.uuid4().hex[:12], threading.Event(), asyncio.Queue(), asyncio.get_running_loop())

        def work() -> None:
            try:
                store = stores.get()
                session = sessions.get(store, info.split, info.video_id)
                result = session.propagate(store, body.track_ids, start=body.start, direction=body.direction,
                                           user=user, cancel=job.cancel,
                                           on_step=lambda step: job.put({"type": "step", **step}))
                job.put({"type": "done", "op_id": result.applied.op_id if result.applied else None,
                         "cancelled": result.cancelled, "written": result.written, "error": result.error})
            except LongRVOSError as err:
                job.put({"type": "done", "op_id": None, "cancelled": False, "written": 0, "error": str(err)})
            except Exception as err:                       # never leave the stream hanging
                log.exception("propagation failed")
                job.put({"type": "done", "op_id": None, "cancelled": False, "written": 0,
                         "error": f"{type(err).__name__}: {err}"})

        jobs[job.job_id] = job
        threading.Thread(target=work, name=f"propagate-{job.job_id}", daemon=True).start()

        async def lines():
            try:
                yield json.dumps({"type": "start", "job": job.job_id, "tracks": body.track_ids}) + "\n"
                while True:
                    item = await job.queue.get()
                    yield json.dumps(item) + "\n"
                    if item["type"] == "done":
                        return
            finally:
                job.cancel.set()                           # the client went away: stop, keep what was computed
                jobs.pop(job.job_id, None)

        return StreamingResponse(lines(), media_type="application/x-ndjson",
                                 headers={"cache-control": "no-store", "x-job": job.job_id})

    @app.post("/api/jobs/{job_id}/cancel")
    def cancel(job_id: str):
        job = jobs.get(job_id)
        if job is None:
            raise NotFound(f"no running job {job_id!r}")
        job.cancel.set()
        return {"cancelled": True}

    @app.post("/api/videos/{pk}/expressions")
    def add_expression(pk: int, body: NewExpression):
        from ..schema import Expression
        info = video(pk)
        store = stores.get()
        kind = body.kind or ("referring" if body.track_ids else "no-target")
        if kind not in KINDS:
            raise StoreError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
        with store.transaction():
            taken = {e.exp_id for e in store.video_info(info.split, info.video_id).expressions}
            numbers = [int(e) for e in taken if e.isdigit()]
            exp_id = str(max(numbers, default=-1) + 1)
            store.add_expression(info.split, info.video_id,
                                 Expression(exp_id, body.text, tuple(body.track_ids), kind, kind, {"user": user}))
        return {"exp_id": exp_id}

    @app.put("/api/videos/{pk}/expressions/{exp_id}")
    def edit_expression(pk: int, exp_id: str, body: EditExpression):
        info = video(pk)
        stores.get().update_expression(info.split, info.video_id, exp_id, text=body.text, kind=body.kind,
                                       track_ids=body.track_ids)
        return {"exp_id": exp_id}

    @app.delete("/api/videos/{pk}/expressions/{exp_id}")
    def delete_expression(pk: int, exp_id: str):
        info = video(pk)
        stores.get().delete_expression(info.split, info.video_id, exp_id)
        return {"exp_id": exp_id}

    @app.put("/api/videos/{pk}/status")
    def set_status(pk: int, body: Status):
        info = video(pk)
        stores.get().set_status(info.split, info.video_id, body.status)
        return {"status": body.status}

    @app.put("/api/videos/{pk}/assignee")
    def set_assignee(pk: int, body: Assignee):
        info = video(pk)
        stores.get().assign(info.split, info.video_id, body.assignee or None)
        return {"assignee": body.assignee or None}

    @app.post("/api/videos/{pk}/flags")
    def add_flag(pk: int, body: NewFlag):
        info = video(pk)
        flag_id = f"user-{uuid.uuid4().hex[:10]}"
        stores.get().add_flag(info.split, info.video_id, flag_id=flag_id, source="user", check="user",
                              severity="medium", track_ids=body.track_ids, frame_start=body.frame_start,
                              frame_end=body.frame_end, message=body.message, user=user)
        return {"flag_id": flag_id}

    @app.post("/api/flags/{flag_id}/dismiss")
    def dismiss(flag_id: str):
        stores.get().dismiss(flag_id, user=user)
        return {"flag_id": flag_id}

    def revert(action: str) -> dict:
        store = stores.get()
        applied = store.undo(user=user) if action == "undo" else store.redo(user=user)
        if applied.video:
            sessions.forget(*applied.video)
        return changed(applied)

    @app.post("/api/undo")
    def undo():
        return revert("undo")

    @app.post("/api/redo")
    def redo():
        return revert("redo")

    @app.post("/api/export")
    def export(body: Export):
        if body.format not in TARGETS:
            raise StoreError(f"export format must be one of {', '.join(TARGETS)}"
                             f", not {body.format!r}")
        if not EXPORT_NAME.match(body.name) or body.name in (".", ".."):
            raise StoreError(f"export name {body.name!r}: use letters, digits, '-', '_' and '.' (no path)")
        out = Path(config.export_dir) / body.name
        if out.exists() and not body.overwrite:
            raise StoreError(f"{out} exists; choose another name or overwrite")
        report = convert(config.project, body.format, out, format="project", overwrite=body.overwrite,
                                    frames="copy")
        return {"format": body.format, "path": str(out), "videos": report.videos}

    return Guard(app, hosts=config.hosts(), token=config.token, max_body=config.max_body)


def listen(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: any free one), or a one-line `ServerError`."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP, not 0: asyncio turns Nagle off only on sockets that say TCP, and without
    # that every small JSON answer waits ~40 ms for the client's delayed ACK
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise ServerError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def serve(config: ServerConfig, *, sock: socket.socket | None = None) -> None:
    """Run the app until interrupted (``sock`` from `listen`; made from the config if None)."""
    import uvicorn

    sock = sock or listen(config.host, config.port)
    config.port = sock.getsockname()[1]
    app = create_app(config)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on"))
    server.run(sockets=[sock])


def make_token() -> str:
    return secrets.token_urlsafe(24)


__all__ = ["Guard", "ServerConfig", "ServerError", "create_app", "listen", "make_token", "serve"]
