"""``foveanet playground``: serve the Playground (the 2-D page and the CNN view) on this machine."""
from __future__ import annotations

import socket
import sys
import threading
import webbrowser

from .common import Formatter, UsageError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765

EPILOG = """\
examples:
  foveanet playground                      http://127.0.0.1:8765/
  foveanet playground --port 9000 --open   and open it in the browser
  foveanet playground --host 0.0.0.0       reachable from other machines (no authentication!)
"""


def _port(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise UsageError(f"--port must be an integer from 0 to 65535, got {text!r}") from None
    if not 0 <= n <= 65535:
        raise UsageError(f"--port must be an integer from 0 to 65535, got {n}")
    return n


def _sessions(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise UsageError(f"--max-sessions must be an integer from 1 to 64, got {text!r}") from None
    if not 1 <= n <= 64:
        raise UsageError(f"--max-sessions must be an integer from 1 to 64, got {n}")
    return n


def _cannot_listen(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on (in use, no such address), or None."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        return f"the address is not known ({exc.strerror or exc})"
    family, kind, proto, _, addr = infos[0]
    try:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(addr)
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def add_parser(sub):
    p = sub.add_parser("playground", help="serve the Playground page (TensorFlow Playground "
                                          "trained by foveanet, and the CNN view)",
                       description="Serve the foveanet Playground: TensorFlow Playground's page "
                                   "trained by foveanet on this machine, and the CNN view at "
                                   "/cnn. It binds 127.0.0.1 unless --host says otherwise.",
                       epilog=EPILOG, formatter_class=Formatter)
    p.add_argument("--port", type=str, default=str(DEFAULT_PORT),
                   help=f"the TCP port (default {DEFAULT_PORT}; 0: any free port)")
    p.add_argument("--host", default=DEFAULT_HOST,
                   help=f"the address to bind (default {DEFAULT_HOST}, this machine only)")
    p.add_argument("--open", action="store_true", help="open the page in the web browser")
    p.add_argument("--max-sessions", type=str, default="8",
                   help="training sessions (browser tabs) at once, all views (default 8)")
    return p


def command(args) -> int:
    try:
        import uvicorn
    except ImportError:
        raise UsageError("the Playground needs the playground extra: "
                         "pip install 'foveanet[playground]'") from None
    from ..playground.app import create_app

    port = _port(args.port)
    max_sessions = _sessions(args.max_sessions)
    problem = _cannot_listen(args.host, port)
    if problem:
        print(f"foveanet playground: error: cannot listen on {args.host}:{port}: {problem}; "
              "choose another --port or --host", file=sys.stderr)
        return 1
    app = create_app(max_sessions=max_sessions)
    config = uvicorn.Config(app, host=args.host, port=port, log_level="warning")
    server = uvicorn.Server(config)

    def announce():
        while not server.started and not server.should_exit:
            threading.Event().wait(0.05)
        if not server.started:
            return
        bound = port
        for s in getattr(server, "servers", []):
            for sock in getattr(s, "sockets", []) or []:
                bound = sock.getsockname()[1]
        shown = "127.0.0.1" if args.host in ("0.0.0.0", "") else args.host
        url = f"http://{shown}:{bound}/"
        print(f"foveanet Playground: {url}  (the CNN view: {url}cnn; Ctrl-C stops it)",
              flush=True)
        if args.open:
            webbrowser.open(url)

    threading.Thread(target=announce, daemon=True).start()
    server.run()
    return 0
