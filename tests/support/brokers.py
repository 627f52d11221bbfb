"""Helpers of the broker tests (tests/integration: the contract suite and each broker's own).

An :class:`Inbox` is a broker handler that records what it gets and lets a test wait for the
next message; :func:`probe_until_delivered` waits, bounded, for delivery to resume after an
outage; :func:`owner_index` and :func:`subscribers` look at a Valkey server's side of pub/sub.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis
from redis.crc import key_slot

from presenced.store.base import MessageHandler
from tests.support.valkey import ValkeyCluster
from tests.support.waiting import until

__all__ = [
    "RESUME",
    "WAIT",
    "Inbox",
    "NodeBroker",
    "owner_index",
    "probe_until_delivered",
    "subscribers",
    "until",
]

WAIT = 5.0  # seconds to wait for one message before failing
RESUME = 30.0  # seconds for delivery to resume after a restart


class NodeBroker(Protocol):
    """What the tests use of a node's broker (RedisBroker and NatsBroker both have it)."""

    async def publish(self, channel: str, payload: bytes, origin: str | None = None) -> None: ...
    async def subscribe(self, channel: str, handler: MessageHandler) -> None: ...
    async def unsubscribe(self, channel: str) -> None: ...
    async def close(self) -> None: ...
    @property
    def channels(self) -> list[str]: ...
    @property
    def connected(self) -> bool: ...


@dataclass
class Inbox:
    """A broker handler that records what it gets and lets a test wait for the next one."""

    got: list[tuple[bytes, str | None]] = field(default_factory=list)
    queue: asyncio.Queue[tuple[bytes, str | None]] = field(default_factory=asyncio.Queue)

    def __call__(self, payload: bytes, origin: str | None) -> None:
        self.got.append((payload, origin))
        self.queue.put_nowait((payload, origin))

    async def next(self, timeout: float = WAIT) -> tuple[bytes, str | None]:
        return await asyncio.wait_for(self.queue.get(), timeout)


async def probe_until_delivered(
    publisher: NodeBroker,
    channel: str,
    inboxes: list[Inbox],
    errors: tuple[type[BaseException], ...],
) -> None:
    """Publish probes until every inbox got one, each wait bounded, then drain up to a marker
    so the inboxes hold only what comes next. ``errors``: what a publish may raise meanwhile."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + RESUME
    waiting = list(inboxes)
    probe = 0
    while waiting:
        assert loop.time() < deadline, "delivery did not resume"
        probe += 1
        with contextlib.suppress(*errors):
            await publisher.publish(channel, b"probe %d" % probe, None)
        for inbox in list(waiting):
            with contextlib.suppress(TimeoutError):
                while True:
                    payload, _ = await inbox.next(timeout=0.2)
                    if payload.startswith(b"probe"):
                        waiting.remove(inbox)
                        break
    await publisher.publish(channel, b"drained", None)
    for inbox in inboxes:
        while (payload := (await inbox.next())[0]) != b"drained":
            assert payload.startswith(b"probe")


def owner_index(cluster: ValkeyCluster, name: str) -> int:
    """The index of the master owning the slot of channel ``name`` (its name on the wire)."""
    slot = key_slot(name.encode())
    return next(i for i, (lo, hi) in enumerate(cluster.SLOTS) if lo <= slot <= hi)


def subscribers(client: redis.Redis, command: str, names: list[str]) -> dict[str, int]:
    """PUBSUB NUMSUB / SHARDNUMSUB on one server: subscribers of each channel there."""
    reply: Any = client.execute_command("PUBSUB", command, *names)  # type: ignore[no-untyped-call]
    return {reply[i].decode(): int(reply[i + 1]) for i in range(0, len(reply), 2)}
