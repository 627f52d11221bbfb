"""A real HTTP receiver for webhook tests: checks every signature, records what it accepted.

It listens on a free loopback port (aiohttp) and answers 200 after verifying the
``X-Presenced-Signature`` over ``"<timestamp>.<body>"`` the way docs/events.md tells an app to;
``refuse`` makes it answer 503 to the next N deliveries (a receiver that is down for a while),
``refusing`` to every one until cleared.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

from presenced.events.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER

__all__ = ["Receiver", "receiver"]


class Receiver:
    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.batches: list[list[dict[str, Any]]] = []
        self.refused = 0
        self.bad_signatures = 0
        self.refuse_next = 0
        self.refusing = False
        self.url = ""

    @property
    def events(self) -> list[dict[str, Any]]:
        return [e for batch in self.batches for e in batch]

    def of_type(self, *types: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] in types]

    def types(self) -> list[str]:
        return [e["type"] for e in self.events]

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        timestamp = request.headers.get(TIMESTAMP_HEADER, "")
        expected = hmac.new(
            self.secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256
        ).hexdigest()
        presented = [
            part.removeprefix("v1=")
            for part in request.headers.get(SIGNATURE_HEADER, "").split(",")
        ]
        if not any(hmac.compare_digest(expected, p) for p in presented):
            self.bad_signatures += 1
            return web.Response(status=401, text="bad signature")
        if self.refusing or self.refuse_next > 0:
            self.refuse_next = max(0, self.refuse_next - 1)
            self.refused += 1
            return web.Response(status=503, text="down for maintenance")
        self.batches.append(json.loads(body)["events"])
        return web.Response(status=200)


@asynccontextmanager
async def receiver(secret: str) -> AsyncIterator[Receiver]:
    """A receiver listening on 127.0.0.1 (any free port) until the block ends."""
    hook = Receiver(secret)
    app = web.Application()
    app.router.add_post("/hook", hook.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    hook.url = f"http://127.0.0.1:{port}/hook"
    try:
        yield hook
    finally:
        await runner.cleanup()
