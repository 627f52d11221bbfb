"""A watcher's presence events of one user arrive in change order (issue 9).

Each presence change is a store call, numbered in the same atomic step (PresenceChange.seq),
and then a separate publish, by whichever node made it; on a networked broker two changes of
one user can be published in either order. The node's watcher table (server/fanout.py
WatcherTable) delivers a user's presence only if its ``seq`` is newer than the last it
delivered, so a watcher never ends on a stale presence.

Both tests run on Valkey (a networked broker: the table is ordered); the first feeds frames to
a real node's table by hand, in a fixed order, the second races two devices on two nodes.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from presenced.protocol.codec import encode
from presenced.protocol.messages import Presence, PresenceSubscribed, StatusUpdated
from presenced.server.serve import RunningServer
from presenced.testing import ProtocolClient
from presenced.typing import UserId
from tests.conftest import ServerFactory
from tests.support.valkey import ValkeyProcess
from tests.support.waiting import until

# Picks its backend itself (Valkey): make_server is not run on each gateway backend.
pytestmark = pytest.mark.own_backend

LIMITS: dict[str, Any] = {
    "rate_limit": 10_000,
    "rate_burst": 10_000,
    "grace": 5,
    "heartbeat_interval": 1,
    "heartbeat_timeout": 1,
}
CHANGES_EACH = 150


async def _nodes(make_server: ServerFactory, valkey: ValkeyProcess, n: int) -> list[RunningServer]:
    shared: dict[str, Any] = {
        "redis": valkey.url,
        "redis_prefix": f"t{uuid.uuid4().hex[:8]}:",
        **LIMITS,
    }
    return [await make_server(node_id=f"n{i}", **shared) for i in range(n)]


async def _client(node: RunningServer, user: str, device: str = "d") -> ProtocolClient:
    client = await ProtocolClient.connect(f"{node.url}?user={user}&device={device}")
    await client.wait_for("welcome")
    return client


def _presences(client: ProtocolClient, user: str) -> list[Presence]:
    return [m for m in client.received if isinstance(m, Presence) and m.user == user]


def _view(p: Presence) -> tuple[Any, ...]:
    return (p.user, p.online, p.status, p.devices, p.text, p.last_seen)


def _last_view(client: ProtocolClient, user: str) -> tuple[Any, ...] | None:
    seen = _presences(client, user)
    return _view(seen[-1]) if seen else None


async def test_watcher_table_delivers_only_newer_presence(
    make_server: ServerFactory, valkey: ValkeyProcess
) -> None:
    (node,) = await _nodes(make_server, valkey, 1)
    watchers = node.node.fanout.watchers
    assert watchers.ordered  # a networked broker
    carol = await _client(node, "carol")
    assert isinstance(
        await carol.request({"type": "presence.subscribe", "users": ["ghost"]}), PresenceSubscribed
    )
    user = UserId("ghost")

    def frame(seq: int | None, status: str) -> bytes:
        online = status != "offline"
        return encode(Presence(user=user, online=online, status=status, devices=1, seq=seq))

    # Out of order, repeated, and one without a number (delivered as is).
    for seq, status in [(5, "online"), (3, "away"), (7, "busy"), (7, "away"), (6, "dnd")]:
        watchers.deliver(user, frame(seq, status), None)
    watchers.deliver(user, frame(None, "away"), None)
    watchers.deliver(user, frame(4, "online"), None)
    watchers.deliver(user, frame(9, "dnd"), None)
    await carol.wait_for(lambda m: isinstance(m, Presence) and m.seq == 9)
    got = [(p.seq, p.status) for p in _presences(carol, "ghost")]
    assert got == [(5, "online"), (7, "busy"), (None, "away"), (9, "dnd")]

    # Unwatched: the last number is forgotten, a new subscription starts afresh.
    await carol.request({"type": "presence.unsubscribe", "users": ["ghost"]})
    await until(lambda: user not in watchers, "the table let the user go")
    await carol.request({"type": "presence.subscribe", "users": ["ghost"]})
    mark = len(carol.received)
    watchers.deliver(user, frame(2, "busy"), None)
    seen = await carol.wait_for(lambda m: isinstance(m, Presence), start=mark)
    assert isinstance(seen, Presence) and seen.seq == 2


async def test_concurrent_changes_on_two_nodes_leave_the_final_presence(
    make_server: ServerFactory, valkey: ValkeyProcess
) -> None:
    nodes = await _nodes(make_server, valkey, 2)
    watchers = [await _client(node, f"watcher{i}") for i, node in enumerate(nodes)]
    for watcher in watchers:
        reply = await watcher.request({"type": "presence.subscribe", "users": ["alice"]})
        assert isinstance(reply, PresenceSubscribed)
    devices = [await _client(node, "alice", f"dev{i}") for i, node in enumerate(nodes)]
    statuses = [["online", "dnd", "away"], ["busy", "away", "online"]]

    async def fire(index: int) -> None:
        device = devices[index]
        for n in range(CHANGES_EACH):
            status = statuses[index][n % 3]
            await device.send({"type": "status.set", "status": status, "text": f"{index}:{n}"})

    await asyncio.gather(*(fire(i) for i in range(len(devices))))
    for device in devices:

        def answered(d: ProtocolClient = device) -> bool:
            return len(d.of_type("status.updated")) >= CHANGES_EACH

        await until(answered, "every status.set answered", 30)
        assert all(isinstance(m, StatusUpdated) for m in device.of_type("status.updated"))
    reader = await _client(nodes[0], "reader")
    fresh = await reader.request({"type": "presence.subscribe", "users": ["alice"]})
    assert isinstance(fresh, PresenceSubscribed)
    (final,) = fresh.users
    assert final.online and final.devices == 2
    for watcher in watchers:
        # Whatever is still in flight is older than the final change: it cannot replace it.
        def shows_final(w: ProtocolClient = watcher) -> bool:
            return _last_view(w, "alice") == _view(final)

        await until(shows_final, "the watcher shows the final presence", 10)
        seqs = [p.seq for p in _presences(watcher, "alice")]
        assert all(s is not None for s in seqs)
        assert seqs == sorted(set(seqs)), seqs  # type: ignore[type-var]
