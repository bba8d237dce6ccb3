"""The Playground's web server: ``create_app()`` -> a Starlette app (run it with uvicorn).

Routes:

- ``GET /``: the page (``static/index.html``); ``/static/...``: its script, style sheet;
- ``GET /healthz``: ``{"ok": true, "sessions": live sessions, "max_sessions": N}``;
- ``GET /api/options``: the defaults, the choices and the limits (``session.LIMITS``);
- ``POST /api/state``: a JSON state checked: 200 with it normalised, 400 with ``{"error":
  sentence, "field": key}``;
- ``POST /api/csv?filename=NAME``: a CSV table as the request body (at most ``MAX_CSV_BYTES``,
  ``MAX_ROWS`` rows, ``MAX_COLUMNS`` columns, numbers only; a header row is optional): 200 with
  ``{"id", "columns", "rows", "suggestion": {label, x1, x2, problem}, "preview"}``, else 4xx with
  a sentence (413 too large, 415 not text, 422 malformed); ``GET /api/csv/{id}``: the same
  description of an upload still kept, 404 with a sentence otherwise;
- ``GET /lecture``: ``docs/LECTURE.md`` as a simple page, 404 with a sentence when absent;
- ``WS /ws``: one training session (``session.Session``) per socket; the protocol below;
- the CNN view's routes (``cnn.routes()``, all under ``/cnn``).

The socket takes JSON messages ``{"type": ..., "id": optional, ...}``:

=================  ===========================================================================
``start``          ``state``: the settings to begin with (the page's URL hash); first message
``configure``      ``state``: the settings to change (one key or several)
``play``/``pause``  train continuously (frames at ``fps`` a second) / stop
``step``           one epoch, then a frame
``reset``          ``same``: true keeps the initial weights (the same init seed), false the next
``regenerate``     new points (the next data seed)
``weight``         ``layer``, ``to``, ``from`` (an index or "bias"), ``value``: set one weight
``export``         ``format``: onnx, safetensors or python
``predict``        ``points``: [[x1, x2], ...]: the network's outputs there
``frame``          a frame now
=================  ===========================================================================

and answers ``state`` (the whole state after a change), ``data`` (the points), ``frame``,
``status`` (a sentence: a stop condition met), ``export``, ``predict`` and ``error``
(``message``: a sentence naming the problem, ``field``: the setting at fault or null); replies
carry the request's ``id``. Bad input never ends the session.

Limits: ``max_sessions`` sessions at once (the 2-D view's and the CNN view's together, through
``app.state.sessions``, a ``limits.SessionRegistry``); a session trains at most ``CHUNK_S``
seconds between two frames (``fps`` frames a second), so at most one core's
``CHUNK_S * fps`` share, in one thread at a time; messages of at most ``MAX_MESSAGE_BYTES``,
at most ``MAX_QUEUED`` waiting.
"""
from __future__ import annotations

import asyncio
import contextlib
import csv
import html
import io
import json
import logging
import math
import re
import secrets
import time
from collections import OrderedDict
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

from ..backend import xp
from . import cnn
from .limits import SessionRegistry, read_body
from .session import (DEFAULT_STATE, LIMITS, MAX_CLASSES, MAX_POINTS, OPTIONS,
                      PlaygroundInputError, Session, Table, check_state)

__all__ = ["create_app", "parse_csv", "MAX_CSV_BYTES", "MAX_ROWS", "MAX_COLUMNS"]

log = logging.getLogger("foveanet.playground")
STATIC = Path(__file__).resolve().parent / "static"

MAX_CSV_BYTES = 1 << 20          # 1 MiB
MAX_ROWS = MAX_POINTS            # 5000
MAX_COLUMNS = 20
MIN_ROWS = 4
MAX_TABLES = 32                  # uploads kept (the latest), per server
MAX_MESSAGE_BYTES = 256 * 1024
MAX_QUEUED = 64
MAX_BODY_BYTES = 64 * 1024       # /api/state
CHUNK_S = 0.02                   # training time between two frames, at most
DEFAULT_FPS = 30
SERVER_LIMITS = {"max_csv_bytes": MAX_CSV_BYTES, "max_rows": MAX_ROWS,
                 "max_columns": MAX_COLUMNS, "max_message_bytes": MAX_MESSAGE_BYTES,
                 "chunk_s": CHUNK_S}
COMMANDS = ("start", "configure", "play", "pause", "step", "reset", "regenerate", "weight",
            "export", "predict", "frame")


# ------------------------------------------------------------------------------- CSV
def _number_or_none(text: str):
    try:
        v = float(text)
    except ValueError:
        return None
    return v


def parse_csv(data: bytes, filename: str = "") -> Table:
    """A numeric table from CSV bytes; PlaygroundInputError (422, 413, 415) with a sentence."""
    if len(data) > MAX_CSV_BYTES:
        raise PlaygroundInputError(f"the file is {len(data)} bytes; at most {MAX_CSV_BYTES} "
                                   "bytes (1 MiB) are accepted", "file", 413)
    if not data.strip():
        raise PlaygroundInputError("the file is empty", "file", 422)
    if b"\x00" in data:
        raise PlaygroundInputError("the file is not a text file (it holds NUL bytes); send a "
                                   "CSV table", "file", 415)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PlaygroundInputError(f"the file is not UTF-8 text (byte {exc.start}); send a "
                                   "CSV table", "file", 415) from None
    first = text.lstrip().split("\n", 1)[0]
    delimiter = max([",", ";", "\t"], key=first.count)
    rows = [r for r in csv.reader(io.StringIO(text), delimiter=delimiter)
            if r and any(c.strip() for c in r)]
    if not rows:
        raise PlaygroundInputError("the file holds no rows", "file", 422)
    header = [c.strip() for c in rows[0]]
    has_header = any(_number_or_none(c) is None for c in header)
    if has_header:
        body = rows[1:]
        if any(not c for c in header):
            raise PlaygroundInputError("the header row has an empty column name", "file", 422)
        if len(set(header)) != len(header):
            dup = next(c for c in header if header.count(c) > 1)
            raise PlaygroundInputError(f"the header names the column {dup!r} twice", "file", 422)
        columns = header
    else:
        body = rows
        columns = [f"c{i}" for i in range(len(header))]
    if len(columns) < 2:
        raise PlaygroundInputError("the table needs at least 2 columns (inputs and a label), "
                                   f"it has {len(columns)}", "file", 422)
    if len(columns) > MAX_COLUMNS:
        raise PlaygroundInputError(f"the table has {len(columns)} columns; at most "
                                   f"{MAX_COLUMNS} are accepted", "file", 422)
    if len(body) > MAX_ROWS:
        raise PlaygroundInputError(f"the table has {len(body)} rows; at most {MAX_ROWS} are "
                                   "accepted", "file", 422)
    if len(body) < MIN_ROWS:
        raise PlaygroundInputError(f"the table has {len(body)} data rows; at least {MIN_ROWS} "
                                   "are needed", "file", 422)
    values = []
    line0 = 2 if has_header else 1
    for r, row in enumerate(body):
        if len(row) != len(columns):
            raise PlaygroundInputError(f"row {r + line0} has {len(row)} values; the table has "
                                       f"{len(columns)} columns", "file", 422)
        out = []
        for c, cell in enumerate(row):
            v = _number_or_none(cell.strip())
            if v is None or not math.isfinite(v):
                raise PlaygroundInputError(f"row {r + line0}, column {columns[c]!r}: "
                                           f"{cell.strip()[:40]!r} is not a finite number",
                                           "file", 422)
            out.append(v)
        values.append(out)
    return Table(columns, xp.asarray(values, dtype=xp.float64), filename=filename[:200])


def suggest(table: Table) -> dict:
    label = table.columns[-1]
    inputs = table.columns[:-1]
    y = table.values[:, -1]
    distinct = set(y.tolist())
    integer = all(float(v).is_integer() for v in distinct)
    problem = "classification" if integer and 2 <= len(distinct) <= MAX_CLASSES else "regression"
    return {"label": label, "x1": inputs[0], "x2": inputs[1] if len(inputs) > 1 else inputs[0],
            "problem": problem}


# ---------------------------------------------------------------------------- helpers
def _error(exc: PlaygroundInputError) -> JSONResponse:
    return JSONResponse({"error": str(exc), "field": exc.field}, status_code=exc.status)


async def _read_body(request: Request, limit: int, what: str) -> bytes:
    return await read_body(request, limit, what, PlaygroundInputError)


def _find_lecture() -> Path | None:
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "docs" / "LECTURE.md"
        if candidate.is_file():
            return candidate
        if (parent / "pyproject.toml").is_file():
            break
    return None


# ------------------------------------------------------------------------------ pages
async def index(request: Request):
    return FileResponse(STATIC / "index.html", media_type="text/html")


async def healthz(request: Request):
    app = request.app
    return JSONResponse({"ok": True, "sessions": len(app.state.sessions),
                         "max_sessions": app.state.max_sessions})


async def api_options(request: Request):
    return JSONResponse({"defaults": DEFAULT_STATE, "options": OPTIONS,
                         "limits": {**LIMITS, **SERVER_LIMITS,
                                    "max_sessions": request.app.state.max_sessions,
                                    "fps": request.app.state.fps}})


async def api_state(request: Request):
    try:
        body = await _read_body(request, MAX_BODY_BYTES, "request body")
        try:
            doc = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise PlaygroundInputError("the body must be a JSON object of settings",
                                       "state") from None
        return JSONResponse({"state": check_state(doc)})
    except PlaygroundInputError as exc:
        return _error(exc)


async def api_csv(request: Request):
    try:
        data = await _read_body(request, MAX_CSV_BYTES, "file")
        filename = request.query_params.get("filename", "")
        table = await run_in_threadpool(parse_csv, data, filename)
    except PlaygroundInputError as exc:
        return _error(exc)
    tables = request.app.state.tables
    key = secrets.token_hex(8)
    tables[key] = table
    while len(tables) > MAX_TABLES:
        tables.popitem(last=False)
    return JSONResponse({"id": key, **table.describe(), "suggestion": suggest(table),
                         "preview": table.values[:5].tolist()})


async def api_csv_info(request: Request):
    table = request.app.state.tables.get(request.path_params["key"])
    if table is None:
        return JSONResponse({"error": "no uploaded table has this id (the server keeps the "
                                      f"latest {MAX_TABLES} uploads, not across restarts): "
                                      "upload the file again", "field": "csv"}, status_code=404)
    return JSONResponse({"id": request.path_params["key"], **table.describe(),
                         "suggestion": suggest(table), "preview": table.values[:5].tolist()})


async def lecture(request: Request):
    path = request.app.state.lecture_path
    if path is None or not Path(path).is_file():
        return HTMLResponse("<p>The lecture walk-through (docs/LECTURE.md) is not part of this "
                            "installation; read it in foveanet's repository.</p>",
                            status_code=404)
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    return HTMLResponse(
        "<!doctype html><html><head><meta charset='utf-8'><link rel='icon' href='data:,'>"
        "<title>The lecture, slide by slide"
        "</title><style>body{font:15px/1.55 sans-serif;max-width:900px;margin:2em auto;"
        "padding:0 1em;color:#222}pre{background:#f4f4f4;padding:8px;overflow-x:auto}"
        "code{background:#f4f4f4;padding:0 2px}h1,h2,h3{color:#183d4e}</style></head><body>"
        "<p><a href='/'>Back to the Playground</a> &middot; <a href='/cnn'>CNN view</a></p>" +
        markdown_page(text) + "</body></html>")


_INLINE = [(re.compile(r"`([^`]+)`"), r"<code>\1</code>"),
           (re.compile(r"\*\*([^*]+)\*\*"), r"<b>\1</b>"),
           (re.compile(r"\[([^\]]+)\]\(#([^)\s]+)\)"), r"<a href='#\2'>\1</a>"),
           (re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)"), r"\1")]


def _inline(text: str) -> str:
    text = html.escape(text, quote=False)
    for pattern, repl in _INLINE:
        text = pattern.sub(repl, text)
    return text


def markdown_page(text: str) -> str:
    """Simple HTML for a Markdown file: headings (with anchors), fenced code, lists, tables as
    text, paragraphs, inline code, bold and in-page links (other links keep their text)."""
    out, para, fence, listing = [], [], None, False

    def flush():
        nonlocal listing
        if para:
            out.append("<p>" + _inline(" ".join(para)) + "</p>")
            para.clear()
        if listing:
            out.append("</ul>")
            listing = False

    for line in text.splitlines():
        if fence is not None:
            if line.strip().startswith("```"):
                out.append("<pre>" + html.escape("\n".join(fence)) + "</pre>")
                fence = None
            else:
                fence.append(line)
            continue
        stripped = line.strip()
        if stripped.startswith("```"):
            flush()
            fence = []
        elif stripped.startswith("#"):
            flush()
            level = min(6, len(stripped) - len(stripped.lstrip("#")))
            title = stripped[level:].strip()
            anchor = re.sub(r"[^a-z0-9 -]", "", title.lower()).replace(" ", "-")
            out.append(f"<h{level} id='{anchor}'>{_inline(title)}</h{level}>")
        elif re.match(r"^\s*([-*]|\d+\.)\s+", line):
            if para:
                out.append("<p>" + _inline(" ".join(para)) + "</p>")
                para.clear()
            if not listing:
                out.append("<ul>")
                listing = True
            out.append("<li>" + _inline(re.sub(r"^\s*([-*]|\d+\.)\s+", "", line)) + "</li>")
        elif stripped.startswith("|"):
            flush()
            out.append("<pre>" + html.escape(line) + "</pre>")
        elif not stripped:
            flush()
        elif listing and line.startswith(" "):
            out[-1] = out[-1][:-5] + " " + _inline(stripped) + "</li>"
        else:
            para.append(stripped)
    flush()
    if fence is not None:
        out.append("<pre>" + html.escape("\n".join(fence)) + "</pre>")
    return "\n".join(out)


async def not_found(request: Request, exc: HTTPException):
    if exc.status_code == 404:
        msg = f"there is no page {request.url.path}; the Playground is at /"
    elif exc.status_code == 405:
        msg = f"{request.method} is not accepted at {request.url.path}"
    else:
        msg = exc.detail or "the request was refused"
    return JSONResponse({"error": msg}, status_code=exc.status_code)


# ----------------------------------------------------------------------------- socket
class _Connection:
    """One socket's session: a receiver (checks messages, queues them) and a runner (handles
    them and trains, in the thread pool, one piece at a time)."""

    def __init__(self, websocket: WebSocket, app):
        self.ws = websocket
        self.app = app
        self.queue: asyncio.Queue = asyncio.Queue(MAX_QUEUED)
        self.session: Session | None = None
        self.fps = app.state.fps
        self.lock = asyncio.Lock()

    async def send(self, msg: dict):
        try:
            text = json.dumps(msg, separators=(",", ":"), allow_nan=False)
        except ValueError:  # an infinite or NaN number: the network diverged
            text = json.dumps({"type": "error", "field": "lr", "id": msg.get("id"), "message":
                               f"a {msg.get('type')} message held an infinite number (the "
                               "network diverged): lower the learning rate and press reset"})
        async with self.lock:  # the receiver and the runner both answer
            await self.ws.send_text(text)

    async def receiver(self):
        while True:
            msg = await self.ws.receive()
            if msg["type"] == "websocket.disconnect":
                return
            text = msg.get("text")
            if text is None:
                await self.send({"type": "error", "field": None,
                                 "message": "send JSON text messages, not binary ones"})
                continue
            if len(text) > MAX_MESSAGE_BYTES:
                await self.send({"type": "error", "field": None,
                                 "message": f"a message is at most {MAX_MESSAGE_BYTES} bytes; "
                                            f"this one has {len(text)}"})
                continue
            try:
                doc = json.loads(text)
            except json.JSONDecodeError as exc:
                await self.send({"type": "error", "field": None, "message":
                                 f"the message is not JSON ({exc.msg} at character {exc.pos})"})
                continue
            if not isinstance(doc, dict) or doc.get("type") not in COMMANDS:
                kind = doc.get("type") if isinstance(doc, dict) else None
                await self.send({"type": "error", "field": "type",
                                 "message": f"unknown message type {kind!r}; the types are "
                                            f"{', '.join(COMMANDS)}"})
                continue
            try:
                self.queue.put_nowait(doc)
            except asyncio.QueueFull:
                await self.send({"type": "error", "field": None, "id": doc.get("id"),
                                 "message": f"{MAX_QUEUED} messages are waiting already; wait "
                                            "for the session's answers"})

    async def runner(self):
        last = time.monotonic()
        while True:
            s = self.session
            if s is not None and s.playing:
                try:
                    doc = self.queue.get_nowait()
                except asyncio.QueueEmpty:
                    doc = None
            else:
                doc = await self.queue.get()
            if doc is not None:
                was_playing = s is not None and s.playing
                await self.handle(doc)
                if self.session is not None and self.session.playing and not was_playing:
                    last = time.monotonic()
                continue
            began = time.monotonic()
            seconds = min(began - last, 0.1)
            last = began
            out = await run_in_threadpool(self._play_chunk, s, seconds)
            for msg in out:
                await self.send(msg)
            wait = 1.0 / self.fps - (time.monotonic() - began)
            if wait > 0:
                await asyncio.sleep(wait)

    @staticmethod
    def _play_chunk(s: Session, seconds: float) -> list:
        try:
            s.train(max(1, s.play_updates(seconds)), budget_s=CHUNK_S)
            frame = s.frame()
        except ArithmeticError as exc:
            s.playing = False
            return [{"type": "error", "field": "lr", "message":
                     f"the network diverged at epoch {s.epoch} ({exc}): lower the learning "
                     "rate and press reset"}, {"type": "frame", **_safe_frame(s)}]
        reason = s.stop_reason(frame)
        out = []
        if reason:
            s.playing = False
            frame["playing"] = False
            out.append({"type": "status", "message": reason})
        return [frame] + out

    async def handle(self, doc: dict):
        rid = doc.get("id")
        try:
            replies = await run_in_threadpool(self._handle, doc)
        except PlaygroundInputError as exc:
            replies = [{"type": "error", "message": str(exc), "field": exc.field}]
            if self.session is not None:
                replies.append({"type": "state", "state": self.session.state})
        except ArithmeticError as exc:
            s = self.session
            s.playing = False
            replies = [{"type": "error", "field": "lr", "message":
                        f"the network diverged at epoch {s.epoch} ({exc}): lower the learning "
                        "rate and press reset"}, {"type": "frame", **_safe_frame(s)}]
        except Exception as exc:  # noqa: BLE001 - the session goes on, the page hears why
            log.exception("a Playground message failed")
            replies = [{"type": "error", "field": None,
                        "message": f"the server could not do {doc.get('type')!r}: "
                                   f"{type(exc).__name__}: {exc}"}]
        for msg in replies:
            if rid is not None:
                msg["id"] = rid
            await self.send(msg)

    def _handle(self, doc: dict) -> list:
        kind = doc["type"]
        tables = self.app.state.tables
        if self.session is None:
            state = doc.get("state", {}) if kind in ("start", "configure") else {}
            state = dict(state) if isinstance(state, dict) else {}
            errors = []
            while self.session is None:
                try:
                    self.session = Session(state, tables=tables)
                except PlaygroundInputError as exc:
                    # drop the setting at fault (its default applies) and try again
                    dropped = exc.field if exc.field in state else None
                    if exc.field == "csv":
                        state.pop("dataset", None)
                        state.pop("problem", None)
                    if dropped is None or len(errors) > 30:
                        state = {}
                        dropped = "all the settings"
                    else:
                        state.pop(dropped)
                    errors.append({"type": "error", "field": exc.field, "message":
                                   f"{exc}; the page starts with the default {dropped}"})
            s = self.session
            out = errors + [{"type": "state", "state": s.state}, s.data_message(), s.frame()]
            if kind in ("start", "configure"):
                return out
            return out + self._handle(doc)
        s = self.session
        if kind == "start":
            kind = "configure"
        if kind == "configure":
            state = doc.get("state")
            old = s.state
            new = s.configure(state if isinstance(state, dict) else _not_object(state))
            out = [{"type": "state", "state": new}]
            if any(new[k] != old[k] for k in ("dataset", "noise", "ratio", "seed", "csv",
                                               "problem")):
                out.append(s.data_message())
            return out + [s.frame()]
        if kind == "play":
            s.playing = True
            return [{"type": "state", "state": s.state, "playing": True}]
        if kind == "pause":
            s.playing = False
            return [s.frame()]
        if kind == "step":
            s.playing = False
            s.epoch_step()
            return [s.frame()]
        if kind == "reset":
            same = doc.get("same", False)
            if not isinstance(same, bool):
                raise PlaygroundInputError(f"same must be true or false, got {same!r}", "same")
            s.playing = False
            return [{"type": "state", "state": s.reset(same)}, s.frame()]
        if kind == "regenerate":
            return [{"type": "state", "state": s.regenerate()}, s.data_message(), s.frame()]
        if kind == "weight":
            s.set_weight(doc.get("layer"), doc.get("to"), doc.get("from"), doc.get("value"))
            return [s.frame()]
        if kind == "export":
            return [{"type": "export", **s.export(doc.get("format"))}]
        if kind == "predict":
            return [{"type": "predict", "outputs": s.predict(doc.get("points"))}]
        return [s.frame()]


def _not_object(value):
    raise PlaygroundInputError(f"state must be a JSON object of settings, got {value!r}", "state")


def _safe_frame(s: Session) -> dict:
    return {"epoch": s.epoch, "steps": s.steps, "playing": False}


async def socket(websocket: WebSocket):
    await websocket.accept()
    registry = websocket.app.state.sessions
    token = registry.acquire("playground")
    if token is None:
        with contextlib.suppress(Exception):
            await websocket.send_text(json.dumps({"type": "error", "field": None,
                                                  "message": registry.refusal()}))
            await websocket.close(code=1013)
        return
    conn = _Connection(websocket, websocket.app)
    tasks = [asyncio.create_task(conn.receiver()), asyncio.create_task(conn.runner())]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in done:
            exc = t.exception()
            if exc is not None and not isinstance(exc, (WebSocketDisconnect, RuntimeError,
                                                        OSError)):
                log.warning("a Playground socket ended: %s: %s", type(exc).__name__, exc)
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if conn.session is not None:
            conn.session.playing = False
        registry.release(token)


# -------------------------------------------------------------------------------- app
def create_app(max_sessions: int = 8, fps: int = DEFAULT_FPS, lecture_path=None) -> Starlette:
    """The Playground's Starlette app: the 2-D view, its socket, the CNN view's routes."""
    if isinstance(fps, bool) or not isinstance(fps, int) or not 1 <= fps <= 60:
        raise ValueError(f"fps must be an integer from 1 to 60, got {fps!r}")
    routes = [Route("/", index, methods=["GET"]),
              Route("/healthz", healthz, methods=["GET"]),
              Route("/api/options", api_options, methods=["GET"]),
              Route("/api/state", api_state, methods=["POST"]),
              Route("/api/csv", api_csv, methods=["POST"]),
              Route("/api/csv/{key}", api_csv_info, methods=["GET"]),
              Route("/lecture", lecture, methods=["GET"]),
              WebSocketRoute("/ws", socket),
              *cnn.routes(),
              Mount("/static", app=StaticFiles(directory=str(STATIC)), name="static")]
    app = Starlette(routes=routes, exception_handlers={HTTPException: not_found})
    app.state.sessions = SessionRegistry(max_sessions)
    app.state.max_sessions = max_sessions
    app.state.fps = fps
    app.state.tables = OrderedDict()
    app.state.lecture_path = _find_lecture() if lecture_path is None else Path(lecture_path)
    return app
