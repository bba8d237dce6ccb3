"""Helpers shared by the Playground's tests and benchmark: a live server and a headless Chromium.

::

    from playground_util import live_server, launch_chromium, chromium_skip_reason

    with live_server() as base:              # "http://127.0.0.1:PORT"
        with launch_chromium() as browser:   # a Playwright Browser (headless /usr/bin/chromium)
            page = browser.new_page()
            page.goto(base + "/")

``live_server(**options)`` runs uvicorn with ``foveanet.playground.app.create_app(**options)``
in a daemon thread on a free port of 127.0.0.1, waits until it answers, yields the base URL and
stops it on exit; ``live_app(**options)`` yields ``(base_url, app)`` (the app's ``state`` holds
the session registry).
``chromium_skip_reason()`` is None when Playwright and /usr/bin/chromium are present, else a
sentence for ``pytest.skip``.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import threading
import time
import urllib.request

CHROMIUM = os.environ.get("FOVEANET_CHROMIUM", "/usr/bin/chromium")


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def live_app(timeout: float = 20.0, **options):
    """Yield ``(base_url, app)``: uvicorn serving ``create_app(**options)`` in a thread."""
    import uvicorn

    from foveanet.playground.app import create_app

    app = create_app(**options)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                            lifespan="on", ws_ping_interval=None)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"playground-uvicorn-{port}", daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if time.monotonic() > deadline or not thread.is_alive():
            server.should_exit = True
            raise RuntimeError(f"the playground server did not start on port {port}")
        time.sleep(0.05)
    try:
        yield base, app
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextlib.contextmanager
def live_server(timeout: float = 20.0, **options):
    """Yield the base URL (``http://127.0.0.1:PORT``) of a live Playground server."""
    with live_app(timeout=timeout, **options) as (base, _app):
        yield base


def chromium_skip_reason() -> str | None:
    """None when Playwright's Python package and Chromium are both here, else why not."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright's Python package is not installed (pip install playwright)"
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium, or set FOVEANET_CHROMIUM)"
    return None


@contextlib.contextmanager
def launch_chromium(headless: bool = True):
    """Yield a Playwright ``Browser``: headless /usr/bin/chromium, closed on exit."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=headless,
                                    args=["--no-sandbox", "--disable-gpu",
                                          "--disable-dev-shm-usage"])
        try:
            yield browser
        finally:
            browser.close()


@contextlib.contextmanager
def console_watch(page):
    """Collect a page's console errors and page errors; yields the list (strings)."""
    errors: list[str] = []
    page.on("console", lambda m: errors.append(f"console.{m.type}: {m.text}")
            if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    yield errors
