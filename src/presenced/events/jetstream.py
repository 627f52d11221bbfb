"""The NATS JetStream sink: each event one message on ``<subject>.<type>``, acked by the stream.

Every message carries the event as JSON (exactly as in a webhook body) and the headers
``Nats-Msg-Id`` (the event id: JetStream drops a message whose id it saw within the
stream's duplicate window, 2 minutes by default, so a retried batch is not stored twice) and
``Nats-Expected-Stream`` (the configured stream, so a message some other stream captured
is refused rather than lost to this one).

A batch is published pipelined, one ack awaited per message, and its order is kept across
failures by a chain: every message but the first carries ``Nats-Expected-Last-Msg-Id``, the
id of the message before it, so if one is lost (a connection cut mid-batch) every later one
is refused instead of stored after the gap, and the retry fills it in order (its messages
already stored are duplicates, acked without being stored). The chain assumes that this sink
is the stream's only writer: give each sink a stream of its own.

The stream is created on first use when missing (file storage, subjects ``<subject>.>``); an
existing one is used as it is, if its subjects take ``<subject>.>``. The acks are read from
a reply subscription of the sink's own (nats-py's ``publish_async`` never resolves a refused
publish). The ``nats`` package is imported when the sink first delivers.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from presenced.events.model import CATALOGUE, Event, encode_event

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg

__all__ = ["JetStreamRefused", "JetStreamSink"]

log = logging.getLogger(__name__)


class JetStreamRefused(Exception):
    """The stream answered a publish with an error (or nothing took its subject)."""


class JetStreamSink:
    """Publishes each batch to JetStream, into ``stream``, as ``<subject>.<type>``."""

    def __init__(
        self, name: str, url: str, stream: str, subject: str, *, timeout: float = 10.0
    ) -> None:
        self.name = name
        self.url = url
        self.stream = stream
        self.subject = subject
        self.timeout = timeout
        self._nc: Client | None = None
        self._inbox = ""
        self._acks: dict[str, asyncio.Future[None]] = {}
        self._next = 0
        self._stream_ready = False

    async def _connected(self) -> Client:
        if self._nc is None:
            import nats

            # Once connected, nats-py reconnects by itself (publishes in between are
            # buffered); the first connection is bounded by the sink's timeout.
            nc = await asyncio.wait_for(
                nats.connect(
                    servers=[self.url],
                    name=f"presenced-{self.name}",
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.5,
                    connect_timeout=self.timeout,
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                ),
                self.timeout,
            )
            self._inbox = nc.new_inbox()
            await nc.subscribe(self._inbox + ".*", cb=self._on_ack)
            self._nc = nc
        if not self._stream_ready:
            await self._ensure_stream(self._nc)
            self._stream_ready = True
        return self._nc

    async def _ensure_stream(self, nc: Client) -> None:
        from nats.js.api import StorageType
        from nats.js.errors import NotFoundError

        js = nc.jetstream(timeout=self.timeout)
        wanted = f"{self.subject}.>"
        try:
            info = await js.stream_info(self.stream)
        except NotFoundError:
            await js.add_stream(name=self.stream, subjects=[wanted], storage=StorageType.FILE)
            log.info(
                "sink %s: created the JetStream stream %s (%s)", self.name, self.stream, wanted
            )
            return
        patterns = info.config.subjects or []
        missed = [
            t for t in CATALOGUE if not any(_matches(p, f"{self.subject}.{t}") for p in patterns)
        ]
        if missed:
            raise JetStreamRefused(
                f"stream {self.stream} takes {patterns}, not {self.subject}.{missed[0]}: add "
                f"{wanted} to its subjects or name another stream"
            )

    # nats-py's defaults log every failed reconnect as an error with its traceback; the
    # runner already logs the deliveries that fail meanwhile.
    async def _on_error(self, error: Exception) -> None:
        log.debug("sink %s: nats: %s: %s", self.name, type(error).__name__, error)

    async def _on_disconnected(self) -> None:
        log.info("sink %s: disconnected from NATS", self.name)  # our close, or a reconnect

    async def _on_reconnected(self) -> None:
        log.info("sink %s: reconnected to NATS", self.name)

    async def _on_ack(self, msg: Msg) -> None:
        future = self._acks.pop(msg.subject.rsplit(".", 1)[-1], None)
        if future is None or future.done():
            return  # the reply to an attempt already given up
        if msg.headers and msg.headers.get("Status") == "503":
            self._stream_ready = False  # deleted meanwhile? the next try creates it again
            future.set_exception(JetStreamRefused(f"no stream takes {self.subject}.>"))
            return
        if b'"error"' not in msg.data:  # an ack (most of them: not worth decoding)
            future.set_result(None)
            return
        try:
            reply = json.loads(msg.data)
        except ValueError:
            future.set_exception(JetStreamRefused(f"unreadable ack {msg.data[:100]!r}"))
            return
        if "error" in reply:
            error = reply["error"]
            text = error.get("description", error) if isinstance(error, dict) else error
            future.set_exception(JetStreamRefused(f"stream {self.stream}: {text}"))
        else:
            future.set_result(None)

    async def deliver(self, events: Sequence[Event]) -> None:
        nc = await self._connected()
        loop = asyncio.get_running_loop()
        tokens: list[str] = []
        futures: list[asyncio.Future[None]] = []
        try:
            async with asyncio.timeout(self.timeout):
                previous = ""
                for event in events:
                    self._next += 1
                    token = str(self._next)
                    self._acks[token] = future = loop.create_future()
                    tokens.append(token)
                    futures.append(future)
                    headers = {"Nats-Msg-Id": event.id, "Nats-Expected-Stream": self.stream}
                    if previous:
                        headers["Nats-Expected-Last-Msg-Id"] = previous
                    await nc.publish(
                        f"{self.subject}.{event.type}",
                        encode_event(event),
                        reply=f"{self._inbox}.{token}",
                        headers=headers,
                    )
                    previous = event.id
                if futures:
                    await asyncio.wait(futures, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            for token in tokens:
                self._acks.pop(token, None)
            refused: list[BaseException] = []
            for future in futures:
                if not future.done():
                    future.cancel()
                elif not future.cancelled() and (error := future.exception()) is not None:
                    refused.append(error)  # retrieved, so never "never retrieved"
        if refused:
            raise refused[0]  # the first in the batch's order: the gap, or what followed it

    async def close(self) -> None:
        if self._nc is not None:
            nc, self._nc = self._nc, None
            self._stream_ready = False
            await nc.close()

    def __repr__(self) -> str:  # never show a password
        return f"JetStreamSink({self.name!r}, stream={self.stream!r}, subject={self.subject!r})"


def _matches(pattern: str, subject: str) -> bool:
    """Whether a NATS subject ``pattern`` (``*`` one token, ``>`` the rest) takes ``subject``."""
    tokens = subject.split(".")
    for index, token in enumerate(pattern.split(".")):
        if token == ">":
            return index < len(tokens)
        if index >= len(tokens) or token not in ("*", tokens[index]):
            return False
    return len(pattern.split(".")) == len(tokens)
