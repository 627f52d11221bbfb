"""Instrumenting a backplane without touching its call sites: timed stores, a counting broker.

:func:`instrument` returns a copy of a :class:`~presenced.store.base.Backplane` whose stores
time every coroutine method into the node's :class:`~presenced.server.stats.NodeStats`
(histogram ``<store>.<method>``; networked backends only: the memory stores answer inline,
there is nothing to time), and whose broker counts what is published, by event type. The
wrappers forward everything else to the real objects, so the rest of the node cannot tell.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Coroutine
from dataclasses import replace
from functools import wraps
from typing import Any, cast

from presenced.server.stats import NodeStats, frame_type
from presenced.store.base import Backplane, Broker, MessageHandler

__all__ = ["CountingBroker", "TimedStore", "instrument"]

_STORES = ("sessions", "rooms", "presence", "messages", "typing", "nodes")


class TimedStore:
    """A store whose coroutine methods are timed (the wrapped method is made once, on first
    use); every other attribute is the real store's. Methods are kept on the wrapper once
    looked up, so only the first use of each goes through ``__getattr__``."""

    def __init__(self, inner: object, name: str, stats: NodeStats) -> None:
        self._inner = inner
        self._name = name
        self._stats = stats

    def __getattr__(self, attr: str) -> Any:
        value = getattr(self._inner, attr)
        if inspect.iscoroutinefunction(value):
            value = _timed(value, self._stats.store_histogram(f"{self._name}.{attr}").observe)
        elif not inspect.ismethod(value):
            return value  # data: read through each time, it may change
        object.__setattr__(self, attr, value)  # found without __getattr__ from now on
        return value

    def __repr__(self) -> str:
        return f"<timed {self._inner!r}>"


def _timed(
    method: Callable[..., Coroutine[Any, Any, Any]], observe: Callable[[float], None]
) -> Callable[..., Coroutine[Any, Any, Any]]:
    clock = time.perf_counter

    @wraps(method)
    async def call(*args: Any, **kwargs: Any) -> Any:
        start = clock()
        try:
            return await method(*args, **kwargs)
        finally:
            observe(clock() - start)

    return call


class CountingBroker:
    """A broker that counts each event it publishes by type (node notices are not events).

    This runs per publish, which can be per delivery (a message's seen receipts go to each
    of the authors it covers, one publish each), so it is inline and parses a frame once:
    the same bytes published again (to the next author) reuse the type found last time."""

    def __init__(self, inner: Broker, stats: NodeStats) -> None:
        self._inner = inner
        self._counts = stats.published
        self._last: bytes | None = None
        self._last_type: bytes | None = None
        self.inline = inner.inline

    @property
    def on_resubscribed(self) -> Callable[[], None] | None:
        return self._inner.on_resubscribed

    @on_resubscribed.setter
    def on_resubscribed(self, callback: Callable[[], None] | None) -> None:
        self._inner.on_resubscribed = callback

    @property
    def connected(self) -> bool:
        return self._inner.connected

    def publish(
        self, channel: str, payload: bytes, origin: str | None = None
    ) -> Coroutine[Any, Any, None]:
        # A plain function handing back the real broker's coroutine: no extra coroutine
        # frame per publish.
        if payload is not self._last:
            self._last = payload
            self._last_type = frame_type(payload)
        kind = self._last_type
        if kind is not None:
            counts = self._counts
            counts[kind] = counts.get(kind, 0) + 1
        return self._inner.publish(channel, payload, origin)

    async def subscribe(self, channel: str, handler: MessageHandler) -> None:
        await self._inner.subscribe(channel, handler)

    async def unsubscribe(self, channel: str) -> None:
        await self._inner.unsubscribe(channel)

    def __getattr__(self, attr: str) -> Any:  # close() and the backend's own extras
        return getattr(self._inner, attr)


def instrument(backplane: Backplane, stats: NodeStats) -> Backplane:
    """The same backplane, counted (and, when networked, timed) into ``stats``."""
    changes: dict[str, Any] = {"broker": CountingBroker(backplane.broker, stats)}
    if backplane.name != "memory":
        for name in _STORES:
            changes[name] = cast(Any, TimedStore(getattr(backplane, name), name, stats))
    return replace(backplane, **changes)
