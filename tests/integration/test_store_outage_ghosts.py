"""A store outage that starts half way through a transition leaves no ghost (issue 10).

The worst moment for a store to go away is just after it did what a node asked and before
the node heard back: the write landed, the node saw an error, and the undo it runs at once
cannot reach the store either. A :class:`TcpRelay` in front of Valkey makes exactly that
outage: it lets the request through, drops its reply and cuts every connection; the data
stays in Valkey, as it would through a network partition or a failover to a replica. When
the store is reachable again the node must take back what the failed transition left
before it reports healthy: no presence, no session record, no room membership, and in the
event stream a ``session.closed`` or ``member.left`` for each ``session.opened`` or
``member.joined`` that was written with the landed step.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from presenced.protocol.messages import Error, Presence, PresenceSubscribed, RoomJoined, Welcome
from presenced.server.serve import RunningServer
from presenced.store.redis import Keys, redis_backplane
from presenced.store.redis.scripts import script_text
from presenced.testing import ProtocolClient
from tests.conftest import ServerFactory
from tests.integration.test_http_endpoints import get
from tests.integration.test_store_outage import wait_health
from tests.support.tcp_relay import TcpRelay
from tests.support.valkey import ValkeyProcess
from tests.support.waiting import until
from tests.support.webhooks import Receiver, receiver

# A relay in front of the suite's Valkey, and a store view that bypasses it: one backend.
pytestmark = pytest.mark.own_backend

SECRET = "ghost-ghost-ghost-ghost"


def script_sha(name: str) -> bytes:
    """The SHA1 a node's EVALSHA of ``lua/NAME.lua`` names (redis-py's register_script)."""
    return hashlib.sha1(script_text(name).encode()).hexdigest().encode()


def calls(script: str, user: str) -> Any:
    """A relay rule: the request runs ``script`` for ``user``."""
    sha, who = script_sha(script), user.encode()
    return lambda data: sha in data and who in data


@pytest.fixture
async def hook() -> AsyncIterator[Receiver]:
    async with receiver(SECRET) as r:
        yield r


@pytest.fixture
async def relay(valkey: ValkeyProcess) -> AsyncIterator[TcpRelay]:
    async with TcpRelay(valkey.port) as r:
        yield r


@pytest.fixture
def prefix() -> str:
    return f"gh{uuid.uuid4().hex[:10]}"


class Store:
    """The store as it is, read past the relay (the node's view is cut off)."""

    def __init__(self, url: str, prefix: str) -> None:
        self.backplane = redis_backplane(url, prefix=prefix)
        self.raw = Redis.from_url(url)
        self.keys = Keys(prefix=prefix)

    async def records_of(self, user: str) -> list[str]:
        """The session records of ``user`` (a SCAN: a record whose indexes were never
        written counts too) and the sessions its index lists."""
        found = set()
        async for key in self.raw.scan_iter(match=self.keys.match_sessions()):
            if await self.raw.hget(key, "u") == user.encode():
                found.add(key.decode().rsplit("{s:", 1)[1].rstrip("}"))
        found.update(m.decode() for m in await self.raw.smembers(self.keys.user_sessions(user)))
        return sorted(found)

    async def close(self) -> None:
        await self.backplane.close()
        await self.raw.aclose()


@pytest.fixture
async def store(valkey: ValkeyProcess, prefix: str) -> AsyncIterator[Store]:
    view = Store(valkey.url, prefix)
    yield view
    await view.close()


@pytest.fixture
async def node(
    make_server: ServerFactory, relay: TcpRelay, prefix: str, hook: Receiver
) -> RunningServer:
    return await make_server(
        redis=f"redis://{relay.address}/0",
        redis_prefix=prefix,
        lease_ttl=1,
        lease_interval=0.1,
        grace=0.5,
        auth_timeout=60,
        webhooks=hook.url,
        webhook_secret=SECRET,
        webhook_backoff=0.01,
        webhook_tries=100,
    )


async def open_client(node: RunningServer, user: str) -> tuple[ProtocolClient, Welcome]:
    client = await ProtocolClient.connect(f"{node.url}?user={user}&device=d")
    welcome = await client.wait_for("welcome")
    assert isinstance(welcome, Welcome), welcome
    return client, welcome


async def traces(store: Store, user: str, room: str = "lobby") -> dict[str, Any]:
    """What the store holds of ``user``: online, its presence entries, its session records
    and the sessions it has in ``room``."""
    backplane = store.backplane
    (presence,) = await backplane.presence.get_many([user])
    _, members = await backplane.rooms.members(room, None, 500)
    return {
        "online": presence.online,
        "presence": await backplane.presence.sessions_of(user),
        "records": await store.records_of(user),
        "member": [s for m in members if m.user == user for s in m.sessions],
    }


NO_TRACE = {"online": False, "presence": [], "records": [], "member": []}


async def lease_ticks(node: RunningServer, n: int) -> None:
    """Wait for ``n`` more lease ticks (each one may re-assert and refresh)."""
    lease = node.node.lease
    start = lease._ticks
    await until(lambda: lease._ticks >= start + n, f"{n} lease ticks")


def kept(hook: Receiver, *types: str) -> list[dict[str, Any]]:
    """The events of ``types`` a consumer keeps: delivery is at least once (a batch whose
    confirmation the outage cut off comes again), so repeated ids count once."""
    seen: set[str] = set()
    events = []
    for event in hook.of_type(*types):
        if event["id"] not in seen:
            seen.add(event["id"])
            events.append(event)
    return events


def events_of(hook: Receiver, session: str, *types: str) -> list[str]:
    return [e["type"] for e in kept(hook, *types) if e["data"].get("session") == session]


@pytest.mark.parametrize("landed", ["session_put", "presence_set"])
async def test_connect_whose_step_landed_as_the_store_went_away_leaves_no_ghost(
    node: RunningServer, relay: TcpRelay, store: Store, hook: Receiver, landed: str
) -> None:
    """bob connects; the store does the step (the record, or the record and the presence)
    and goes away before answering. bob gets INTERNAL and vanishes. When the store is back,
    bob is not online, has no record, and the events that opened him are closed."""
    alice, _ = await open_client(node, "alice")  # the scripts are loaded on the server
    watching = await alice.request({"type": "presence.subscribe", "users": ["bob"]})
    assert isinstance(watching, PresenceSubscribed), watching
    cut = relay.lose_reply(calls(landed, "bob"))
    bob = await ProtocolClient.connect(f"{node.url}?user=bob&device=d")
    failed = await bob.wait_for("error", timeout=30)
    assert isinstance(failed, Error) and failed.code == "INTERNAL", failed
    assert cut.is_set()
    await bob.close()
    assert node.node.lifecycle.repairs, "the undo is kept for when the store answers"
    _, _, metrics = await asyncio.to_thread(get, node.admin_url + "/metrics")
    assert f'presenced_repairs_pending{{node="{node.node.node_id}"}} 1.0' in metrics
    left = await traces(store, "bob")
    assert left["records"], "the step landed: the store has bob's record"
    assert left["online"] is (landed == "presence_set")
    await relay.mend()
    await wait_health(node.http_url, "ok", timeout=20)
    assert await traces(store, "bob") == NO_TRACE  # healthy means taken back
    await lease_ticks(node, 5)  # no later tick brings him back (re-assert, refresh)
    assert await traces(store, "bob") == NO_TRACE
    # The event stream: whatever opened bob's session is closed.
    (session,) = left["records"]
    if landed == "presence_set":
        await until(
            lambda: (
                events_of(hook, session, "session.opened", "session.closed")
                == ["session.opened", "session.closed"]
            ),
            "session.opened then session.closed",
            15,
        )
        (closed,) = [e for e in kept(hook, "session.closed") if e["data"]["session"] == session]
        assert closed["data"]["reason"] == "open_failed"

        def bob_events() -> list[str]:
            found = kept(hook, "user.online", "user.offline")
            return [e["type"] for e in found if e["user"] == "bob"]

        await until(
            lambda: bob_events() == ["user.online", "user.offline"],
            "bob online then offline",
            15,
        )
    else:
        assert events_of(hook, session, "session.opened", "session.closed") == []
    # alice never saw bob online; a connect after the outage works.
    seen = [m for m in alice.received if isinstance(m, Presence) and m.user == "bob"]
    assert not any(m.online for m in seen), seen
    bob, welcome = await open_client(node, "bob")
    assert (await traces(store, "bob"))["presence"] == [welcome.session]
    await until(
        lambda: any(
            isinstance(m, Presence) and m.user == "bob" and m.online for m in alice.received
        ),
        "alice sees bob online",
    )
    await bob.close()
    await alice.close()


async def test_join_whose_add_landed_as_the_store_went_away_is_undone(
    node: RunningServer, relay: TcpRelay, store: Store, hook: Receiver
) -> None:
    """carol's join lands in the store, which goes away before answering: carol gets
    INTERNAL and stays connected. When the store is back she is in no room, cannot post
    there, and the member.joined written with the landed add has its member.left."""
    alice, _ = await open_client(node, "alice")
    assert isinstance(await alice.request({"type": "room.join", "room": "lobby"}), RoomJoined)
    carol, welcome = await open_client(node, "carol")
    cut = relay.lose_reply(calls("room_add", "carol"))
    failed = await carol.request({"type": "room.join", "room": "lobby"}, timeout=30)
    assert isinstance(failed, Error) and failed.code == "INTERNAL", failed
    assert cut.is_set()
    assert (await traces(store, "carol"))["member"] == [welcome.session], "the add landed"
    await relay.mend()
    await wait_health(node.http_url, "ok", timeout=20)
    assert (await traces(store, "carol"))["member"] == []
    await lease_ticks(node, 5)
    left = await traces(store, "carol")
    assert left["member"] == [] and left["online"], left  # out of the room, still connected
    record = await store.backplane.sessions.get(welcome.session)  # type: ignore[arg-type]
    assert record is not None and "lobby" not in record.rooms
    post = await carol.request({"type": "message.send", "room": "lobby", "body": "hi"})
    assert isinstance(post, Error) and post.code == "NOT_IN_ROOM", post

    def member_events() -> list[str]:
        return [
            e["type"] for e in kept(hook, "member.joined", "member.left") if e["user"] == "carol"
        ]

    await until(
        lambda: member_events() == ["member.joined", "member.left"],
        f"member.joined then member.left (so far {member_events()})",
        15,
    )
    # A join after the outage works.
    assert isinstance(await carol.request({"type": "room.join", "room": "lobby"}), RoomJoined)
    assert (await traces(store, "carol"))["member"] == [welcome.session]
    await carol.close()
    await alice.close()


async def test_session_ending_during_an_outage_is_gone_when_the_store_is_back(
    node: RunningServer, relay: TcpRelay, store: Store, hook: Receiver
) -> None:
    """dave is in a room when the store goes away; he vanishes and his grace runs out
    while it is away, so his ending cannot be written. When the store is back, dave is not
    online, in no room, has no record, and the event stream closed his session."""
    dave, welcome = await open_client(node, "dave")
    assert isinstance(await dave.request({"type": "room.join", "room": "lobby"}), RoomJoined)
    await relay.cut()
    await wait_health(node.http_url, "degraded")
    dave.abort()
    lifecycle = node.node.lifecycle
    session = welcome.session
    await until(
        lambda: (
            lifecycle.registry.get(session) is None  # type: ignore[arg-type]
            and bool(lifecycle.repairs)
        ),
        "dave's grace ran out and his ending failed",
        15,
    )
    assert (await traces(store, "dave"))["records"] == [session], "nothing was written"
    await relay.mend()
    await wait_health(node.http_url, "ok", timeout=20)
    assert await traces(store, "dave") == NO_TRACE
    await lease_ticks(node, 5)
    assert await traces(store, "dave") == NO_TRACE
    await until(
        lambda: (
            events_of(hook, session, "session.opened", "session.closed")
            == ["session.opened", "session.closed"]
        ),
        "session.opened then session.closed",
        15,
    )
