"""A tiny chat backend for presenced: it hears what happens over signed webhooks and acts
through the admin HTTP API.

    python examples/chat_backend.py

starts ``presenced serve`` (in-memory store, insecure development mode: clients name
themselves) with a webhook sink pointed at this process, then:

- logs who joins and leaves which room, and every message;
- welcomes each user who joins a room with a message from ``system``;
- deletes every message (or edit) that contains a banned word, and says so in the room.

It serves nothing but the webhook receiver. Everything after ``--`` goes to ``presenced
serve`` as is (``-- --jwt-secret ...``, ``-- --log-level warning``). The webhook secret and
the API key are generated at each start unless ``CHAT_WEBHOOK_SECRET`` and
``CHAT_API_KEY`` are set; they reach presenced through its environment
(``PRESENCED_WEBHOOK_SECRET``, ``PRESENCED_API_KEYS``), not its command line.

Delivery is at least once (docs/events.md): a batch is answered 200 only after it was
acted on, so a failure here makes presenced send it again; the event ids seen and the
API's idempotency keys make a redelivery harmless.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import re
import secrets
import signal
import sys
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp
from aiohttp import web

from presenced.api import ApiClient, ApiError

__all__ = ["ChatBackend", "main", "verified"]

HOOK_PATH = "/hooks/presenced"
EVENTS = "member.*+message.created+message.edited"  # the sink's filter (docs/events.md)
SYSTEM = "system"  # the author of the API's own messages (docs/api.md)


def verified(secret: str, headers: Mapping[str, str], body: bytes, tolerance: int = 300) -> bool:
    """Whether a delivery is signed with ``secret`` and fresh (docs/events.md): HMAC-SHA256
    of ``<timestamp>.<raw body>``, compared in constant time; several signatures while
    secrets rotate."""
    timestamp = headers.get("X-Presenced-Timestamp", "")
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > tolerance:
        return False
    expected = hmac.new(
        secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256
    ).hexdigest()
    presented = headers.get("X-Presenced-Signature", "").split(",")
    return any(hmac.compare_digest(expected, p.strip().removeprefix("v1=")) for p in presented)


def text_of(body: Any) -> str:
    """A message body's text: the string itself, an object's ``text``, else its JSON."""
    if isinstance(body, str):
        return body
    if isinstance(body, dict) and isinstance(body.get("text"), str):
        return str(body["text"])
    return json.dumps(body)


class ChatBackend:
    """The rules: what to do with each event. ``handle`` is the webhook endpoint."""

    def __init__(
        self, api: ApiClient, secret: str, banned: Sequence[str], *, remember: int = 10_000
    ) -> None:
        self.api = api
        self.secret = secret
        self.banned = frozenset(word.lower() for word in banned)
        self._seen: OrderedDict[str, None] = OrderedDict()  # event ids, the newest last
        self._remember = remember

    def log(self, line: str) -> None:
        print(line, flush=True)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()  # the raw bytes: the signature is over them
        if not verified(self.secret, request.headers, body):
            self.log("refused a delivery: bad or old signature")
            return web.Response(status=401, text="bad signature")
        for event in json.loads(body)["events"]:
            if event["id"] in self._seen:
                continue  # a redelivery
            await self.on_event(event)
            self._seen[event["id"]] = None
            if len(self._seen) > self._remember:
                self._seen.popitem(last=False)
        return web.Response(status=200)

    async def on_event(self, event: dict[str, Any]) -> None:
        kind, room, user, data = event["type"], event["room"], event["user"], event["data"]
        if kind == "member.joined":
            self.log(f"{room}: {user} joined")
            # Keyed on the event id: publishing it again returns the first message.
            await self.api.publish(
                room, f"welcome to {room}, {user}!", idempotency_key=f"welcome-{event['id']}"
            )
        elif kind == "member.left":
            self.log(f"{room}: {user} left ({data['reason']})")
        elif kind in ("message.created", "message.edited"):
            author = data["user"]
            edited = " (edited)" if kind == "message.edited" else ""
            self.log(f"{room}: <{author}>{edited} {text_of(data['body'])}")
            if author != SYSTEM and self.offends(data["body"]):
                await self.remove(room, data["id"], author)

    def offends(self, body: Any) -> bool:
        return not self.banned.isdisjoint(re.findall(r"\w+", text_of(body).lower()))

    async def remove(self, room: str, message_id: str, author: str) -> None:
        try:
            await self.api.delete_message(room, message_id)
        except ApiError as exc:
            if exc.status != 404:  # 404: deleted already (by its author, or by us before)
                raise
        self.log(f"{room}: deleted message {message_id} by {author} (banned word)")
        await self.api.publish(
            room,
            f"a message by {author} was removed: it contained a banned word",
            idempotency_key=f"removed-{message_id}",
        )


async def wait_until_up(
    proc: asyncio.subprocess.Process, urls: Sequence[str], timeout: float = 20.0
) -> None:
    """Poll the server's ``/health`` URLs until each answers (a process start-up)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as http:
        for url in urls:
            while True:
                if proc.returncode is not None:
                    raise SystemExit(f"presenced serve exited with {proc.returncode}")
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with http.get(url) as response:
                        if response.status == 200:
                            break
                if loop.time() > deadline:
                    raise SystemExit(f"presenced serve not up within {timeout} s ({url})")
                await asyncio.sleep(0.05)


async def run(args: argparse.Namespace, serve_args: Sequence[str]) -> int:
    secret = os.environ.get("CHAT_WEBHOOK_SECRET") or secrets.token_urlsafe(32)
    key = os.environ.get("CHAT_API_KEY") or secrets.token_urlsafe(32)
    api_url = f"http://{args.host}:{args.admin_port}"
    hook_url = f"http://{args.host}:{args.hook_port}{HOOK_PATH}"
    stop = asyncio.Event()  # Ctrl-C or SIGTERM (noticed once presenced is up)
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)

    async with ApiClient(api_url, key=key) as api:
        backend = ChatBackend(api, secret, args.banned.split(","))
        app = web.Application()
        app.router.add_post(HOOK_PATH, backend.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, args.host, args.hook_port).start()  # before presenced
            env = {**os.environ, "PRESENCED_WEBHOOK_SECRET": secret}
            env["PRESENCED_API_KEYS"] = f"admin:{key}"
            command = ["--host", args.host, "--port", str(args.port)]
            command += ["--admin-port", str(args.admin_port)]
            command += ["--webhooks", f"{hook_url}#events={EVENTS}", *serve_args]
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "presenced", "serve", *command, env=env
            )
            try:
                health = [f"http://{args.host}:{args.port}/health", f"{api_url}/health"]
                await wait_until_up(proc, health)
                backend.log(
                    f"chat backend ready: clients connect to ws://{args.host}:{args.port}/ws, "
                    f"the API is {api_url}, webhooks come to {hook_url}; "
                    f"banned words: {', '.join(sorted(backend.banned))}"
                )
                exited = asyncio.ensure_future(proc.wait())
                stopping = asyncio.ensure_future(stop.wait())
                await asyncio.wait([exited, stopping], return_when=asyncio.FIRST_COMPLETED)
                stopping.cancel()
                if exited.done():
                    backend.log(f"presenced serve exited with {proc.returncode}")
                    return 1
                return 0
            finally:
                await end(proc)
        finally:
            await runner.cleanup()


async def end(proc: asyncio.subprocess.Process) -> None:
    """A clean stop (presenced delivers what it has queued first, up to 5 s), bounded."""
    if proc.returncode is not None:
        return
    proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), 10)
    except TimeoutError:
        proc.kill()
        await proc.wait()


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    own, serve_args = argv[:cut], argv[cut + 1 :]
    parser = argparse.ArgumentParser(
        description="A tiny chat backend: presenced's webhooks in, its admin API out.",
        epilog="Arguments after -- go to presenced serve.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address of every port (loopback)")
    parser.add_argument("--port", type=int, default=7400, help="presenced's client port")
    parser.add_argument("--admin-port", type=int, default=7401, help="presenced's API port")
    parser.add_argument("--hook-port", type=int, default=7402, help="this backend's port")
    parser.add_argument("--banned", default="spam", help="banned words, comma-separated")
    return asyncio.run(run(parser.parse_args(own), serve_args))


if __name__ == "__main__":
    sys.exit(main())
