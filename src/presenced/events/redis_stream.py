"""The Redis Streams sink: each event one stream entry, appended with ``XADD``.

An entry has two fields: ``id``, the event's id (a consumer de-duplicates on it), and
``event``, the event as JSON (exactly as in a webhook body). A batch is one script call
(``lua/sink_append.lua``, one ``XADD`` per event), so it is appended whole, in order and
with no other client's entry in between, or not at all when the call does not reach the
server: a failed delivery leaves no partial tail that its retry would follow out of order.
A reply lost after the script ran means the retry appends the batch again (at least once:
de-duplicate on ``id``). One call per batch rather than a ``MULTI`` of ``XADD`` s: the
client's cost per command was most of the sink's (docs/benchmarks.md).

Each ``XADD`` caps the stream with ``MAXLEN ~ maxlen``: Redis trims whole macro nodes, so
the stream keeps at least ``maxlen`` entries and a little more; a consumer that falls that
far behind loses the oldest. The ``redis`` package is imported when the sink first delivers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from presenced.events.model import Event, encode_event

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisStreamSink"]


class RedisStreamSink:
    """Appends each batch to ``stream`` on the server at ``url`` (``redis://``/``rediss://``)."""

    def __init__(
        self, name: str, url: str, stream: str, *, maxlen: int, timeout: float = 10.0
    ) -> None:
        self.name = name
        self.url = url
        self.stream = stream
        self.maxlen = maxlen
        self.timeout = timeout
        self._client: Redis | None = None
        self._append: Any = None

    def _connected(self) -> Any:
        """The registered append script (EVALSHA; loaded again after a server restart)."""
        if self._client is None:
            from redis.asyncio import Redis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            from presenced.store.redis.scripts import load_lua

            # One quick retry on a fresh connection (a pooled one that died with a server
            # restart); any longer outage is the runner's to retry, with its backoff.
            self._client = Redis.from_url(
                self.url,
                socket_timeout=self.timeout,
                socket_connect_timeout=self.timeout,
                retry=Retry(NoBackoff(), 1),
            )
            self._append = self._client.register_script(load_lua("sink_append"))
        return self._append

    async def deliver(self, events: Sequence[Event]) -> None:
        args: list[Any] = [self.maxlen]
        for event in events:
            args += (event.id, encode_event(event))
        await self._connected()(keys=[self.stream], args=args)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def __repr__(self) -> str:  # never show a password
        return f"RedisStreamSink({self.name!r}, stream={self.stream!r})"
