"""The Playground server's shared session limit: one registry per app, in ``app.state.sessions``.

Every live training session, whatever view it belongs to (the 2-D Playground at ``/``, the CNN
view at ``/cnn``), holds one token of the registry while its socket is open::

    registry = websocket.app.state.sessions       # a SessionRegistry
    token = registry.acquire("cnn")               # None when max_sessions are live already
    if token is None:
        ...refuse with registry.refusal()...
    try:
        ...run the session...
    finally:
        registry.release(token)                   # always; releasing twice is harmless

``len(registry)`` is the number of live sessions, ``registry.counts()`` their number per kind,
``registry.limit`` the limit (``app.state.max_sessions``).
"""
from __future__ import annotations

import itertools
import threading

__all__ = ["SessionRegistry", "registry_of"]


class SessionRegistry:
    """At most ``limit`` live sessions at once, counted across every kind."""

    def __init__(self, limit: int = 8):
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"the session limit must be a positive integer, got {limit!r}")
        self.limit = limit
        self._live: dict[int, str] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def acquire(self, kind: str):
        """A token (an int) for a new session of ``kind``, or None when the limit is reached."""
        with self._lock:
            if len(self._live) >= self.limit:
                return None
            token = next(self._ids)
            self._live[token] = str(kind)
            return token

    def release(self, token) -> None:
        with self._lock:
            self._live.pop(token, None)

    def counts(self) -> dict:
        with self._lock:
            out: dict[str, int] = {}
            for kind in self._live.values():
                out[kind] = out.get(kind, 0) + 1
            return out

    def refusal(self) -> str:
        return (f"the server runs {self.limit} training sessions already, its limit "
                "(foveanet playground --max-sessions N): close another Playground tab and reload")

    def __len__(self) -> int:
        with self._lock:
            return len(self._live)


def registry_of(app) -> SessionRegistry:
    """The registry of ``app`` (created by ``create_app``)."""
    return app.state.sessions


async def read_body(request, limit: int, what: str, error) -> bytes:
    """An HTTP request's body, refused with ``error(sentence, "file", 413)`` (the view's input
    error class) as soon as it is known to pass ``limit`` bytes: by its Content-Length, or while
    it streams in."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise error(f"the {what} is {int(length)} bytes; at most {limit} bytes are accepted",
                    "file", 413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise error(f"the {what} is over {limit} bytes, the limit", "file", 413)
        chunks.append(chunk)
    return b"".join(chunks)
