"""Serve the example chat page (examples/chat_page/) and start presenced for it.

    python examples/chat_page.py

then open http://127.0.0.1:8000/ in two browser windows (or one normal, one private), pick
a name in each and chat. The page is static: ``index.html`` and ``chat.js`` from
examples/chat_page/, and the presenced JS client's browser build (the one ``presenced serve
--demo`` uses, shipped in the package) under ``/client/``. Any static file server would do;
this one is the standard library's.

It starts ``presenced serve`` on port 7400 (admin API and dashboard on 7401) in insecure
development mode (users name themselves), with the page's origin in ``--allowed-origins``:
a page on another origin than presenced's must be listed there (unset, the insecure mode
lets any page connect, a server with a JWT key only its own origin's).
``--presenced ws://HOST:PORT/ws`` starts none and points the page at that one instead (the
chat backend's, say: examples/README.md). Arguments after ``--`` go to ``presenced serve``.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import ClassVar
from urllib.parse import quote, urlsplit

from presenced.web import Page, Pages

__all__ = ["main", "page_files"]

HERE = Path(__file__).resolve().with_name("chat_page")
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8"}


def page_files() -> dict[str, Page]:
    """Every URL path this server answers, with its bytes and type: the page's files and
    the JS client's build (``/client/*.js``, from the installed presenced package)."""
    client = Pages(("client",))
    served = {path: page for path in client.paths if (page := client.get(path)) is not None}
    for file in HERE.iterdir():
        if file.suffix in TYPES:
            served[f"/{file.name}"] = (file.read_bytes(), TYPES[file.suffix])
    served["/"] = served["/index.html"]
    return served


class PageHandler(BaseHTTPRequestHandler):
    files: ClassVar[Mapping[str, Page]] = {}  # set by main()

    def do_GET(self) -> None:
        page = self.files.get(urlsplit(self.path).path)
        body, kind = page if page is not None else (b"not found\n", "text/plain")
        self.send_response(200 if page is not None else 404)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet: presenced's log is the interesting one


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(json.loads(response.read()).get("status"))
    except (OSError, ValueError):
        return False


def start_presenced(
    args: argparse.Namespace, origins: list[str], serve_args: Sequence[str]
) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "presenced", "serve", "--host", args.host]
    command += ["--port", str(args.presenced_port), "--admin-port", args.admin_port]
    command += ["--allowed-origins", " ".join(origins), *serve_args]
    proc = subprocess.Popen(command)
    deadline = time.monotonic() + 20
    try:
        while not healthy(f"http://{args.host}:{args.presenced_port}/health"):
            if proc.poll() is not None:
                raise SystemExit(f"presenced serve exited with {proc.returncode}")
            if time.monotonic() > deadline:
                raise SystemExit("presenced serve did not start within 20 s")
            time.sleep(0.05)  # polling a process start-up
    except BaseException:  # a failed start, or a signal meanwhile: leave no server behind
        stop(proc)
        raise
    return proc


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    own, serve_args = argv[:cut], argv[cut + 1 :]
    parser = argparse.ArgumentParser(
        description="Serve the example chat page and start presenced for it.",
        epilog="Arguments after -- go to presenced serve.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address of every port")
    parser.add_argument("--port", type=int, default=8000, help="the page's port")
    parser.add_argument("--presenced-port", type=int, default=7400, help="its client port")
    parser.add_argument("--admin-port", default="7401", help="its admin port, or off")
    parser.add_argument("--presenced", metavar="WS_URL", help="use this presenced, start none")
    args = parser.parse_args(own)

    PageHandler.files = page_files()
    server = ThreadingHTTPServer((args.host, args.port), PageHandler)
    signal.signal(signal.SIGTERM, _exit)
    proc = None
    try:
        page = f"http://{args.host}:{server.server_address[1]}/"
        ws = args.presenced or f"ws://{args.host}:{args.presenced_port}/ws"
        if args.presenced is None:
            origins = [page.rstrip("/"), f"http://localhost:{server.server_address[1]}"]
            proc = start_presenced(args, origins, serve_args)
        if ws != f"ws://{args.host}:7400/ws":
            page += f"?presenced={quote(ws, safe=':/')}"
        print(f"chat page ready: open {page} in two browser windows", flush=True)
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        stop(proc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
