"""The webhook sink: batches of events POSTed as JSON, signed with HMAC-SHA256.

The body is ``{"events": [...]}``. Two headers let the receiver check that it came from
this deployment and is fresh (docs/events.md has a verification snippet):

- ``X-Presenced-Timestamp``: the send time, whole seconds since the epoch;
- ``X-Presenced-Signature``: ``v1=<hex>``, HMAC-SHA256 with the sink's secret over
  ``"<timestamp>.<body>"``. Several ``v1=`` values, comma-separated, during a secret rotation
  (each secret signs).

Only a 2xx answer confirms the batch; anything else (another status, a timeout, a refused
connection) is a failure the runner retries. The signature is recomputed on every try, with
the try's timestamp.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Sequence

import aiohttp
import msgspec

from presenced.events.model import Event

__all__ = ["SIGNATURE_HEADER", "TIMESTAMP_HEADER", "WebhookSink", "sign"]

SIGNATURE_HEADER = "X-Presenced-Signature"
TIMESTAMP_HEADER = "X-Presenced-Timestamp"


class _Body(msgspec.Struct):
    events: Sequence[Event]


_encode = msgspec.json.Encoder().encode


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``"<timestamp>.<body>"`` under ``secret``."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


class WebhookSink:
    """POSTs each batch to ``url``; ``deliver`` returns on a 2xx answer, else raises."""

    def __init__(
        self,
        name: str,
        url: str,
        secrets: Sequence[str],
        *,
        timeout: float = 10.0,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.url = url
        self._secrets = tuple(secrets)
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._wall = wall
        self._session: aiohttp.ClientSession | None = None

    async def deliver(self, events: Sequence[Event]) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        body = _encode(_Body(events))
        timestamp = int(self._wall())
        signature = ",".join(f"v1={sign(s, timestamp, body)}" for s in self._secrets)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "presenced-webhook/1",
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: signature,
        }
        async with self._session.post(self.url, data=body, headers=headers) as reply:
            if not 200 <= reply.status < 300:
                text = (await reply.text(errors="replace"))[:200]
                raise WebhookRefused(f"{self.url} answered {reply.status}: {text}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def __repr__(self) -> str:  # never show the secrets
        return f"WebhookSink({self.name!r}, {self.url!r})"


class WebhookRefused(Exception):
    """The receiver answered, but not with a 2xx."""
