"""The Python client SDK against a real presenced server on loopback.

Each test waits for the events it expects with a timeout (never sleeps). Absence checks ("no
member.left") are made deterministic by ordering: a later, observed event proves the earlier
one would already have arrived.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import jwt
import pytest

from presenced.client import (
    Backoff,
    Client,
    ClientError,
    Connected,
    ConnectionClosed,
    Disconnected,
    Event,
    ForcedLeave,
    ForceLeaveError,
)
from presenced.protocol.messages import (
    ClientStatus,
    MemberJoined,
    MemberLeft,
    MemberUpdated,
    Presence,
)
from presenced.server.serve import RunningServer
from tests.conftest import ServerFactory

TIMEOUT = 5.0
FAST_BACKOFF = Backoff(initial=0.05, maximum=0.2)


def client(server: RunningServer, user: str, device: str = "d1", **kwargs: Any) -> Client:
    kwargs.setdefault("backoff", FAST_BACKOFF)
    kwargs.setdefault("request_timeout", TIMEOUT)
    return Client(server.url, device=device, user=user, **kwargs)


async def wait_for(
    events: AsyncIterator[Event],
    match: Callable[[Event], bool],
    seen: list[Event] | None = None,
    timeout: float = TIMEOUT,
) -> Event:
    """The next event that matches, recording every event on the way in ``seen``."""
    async with asyncio.timeout(timeout):
        async for event in events:
            if seen is not None:
                seen.append(event)
            if match(event):
                return event
    raise AssertionError("the client stopped before the expected event")


async def rest(events: AsyncIterator[Event], timeout: float = TIMEOUT) -> list[Event]:
    """Every event until the client's event stream ends."""
    out: list[Event] = []
    async with asyncio.timeout(timeout):
        async for event in events:
            out.append(event)
    return out


def left(user: str, reason: str) -> Callable[[Event], bool]:
    return lambda e: isinstance(e, MemberLeft) and e.user == user and e.reason == reason


# --- basics --------------------------------------------------------------------------------


async def test_join_and_see_another_client_join_and_leave(make_server: ServerFactory) -> None:
    server = await make_server()
    async with client(server, "alice") as alice, client(server, "bob", "phone") as bob:
        assert alice.connected and alice.user == "alice" and alice.session
        first = await wait_for(alice.events(), lambda e: isinstance(e, Connected))
        assert isinstance(first, Connected) and not first.welcome.resumed

        called: asyncio.Queue[Event] = asyncio.Queue()

        async def on_joined_async(event: Event) -> None:
            await called.put(event)

        alice.on("member.joined", called.put_nowait)  # sync callback
        alice.on("member.joined", on_joined_async)

        joined = await alice.join("room1", meta={"cursor": 1})
        assert joined.room == "room1"
        assert [m.user for m in joined.members] == ["alice"]
        assert alice.rooms == frozenset({"room1"})

        await bob.join("room1", meta={"cursor": 9})
        event = await wait_for(alice.events(), lambda e: isinstance(e, MemberJoined))
        assert isinstance(event, MemberJoined)
        assert (event.room, event.user, event.meta) == ("room1", "bob", {"cursor": 9})
        async with asyncio.timeout(TIMEOUT):
            assert await called.get() == event
            assert await called.get() == event

        assert await alice.count("room1") == 2
        members = await bob.members("room1")
        assert sorted(m.user for m in members.members) == ["alice", "bob"]

        await bob.leave("room1")
        assert bob.rooms == frozenset()
        await wait_for(alice.events(), left("bob", "left"))


async def test_status_meta_and_presence_replies(make_server: ServerFactory) -> None:
    server = await make_server()
    async with client(server, "alice") as alice, client(server, "bob") as bob:
        subscribed = await alice.subscribe(["bob"])
        assert [(p.user, p.online) for p in subscribed.users] == [("bob", True)]
        await alice.join("r")
        await bob.join("r")

        status = await bob.set_status("busy", "in a call")
        assert (status.status, status.aggregate, status.text) == ("busy", "busy", "in a call")
        presence = await wait_for(
            alice.events(), lambda e: isinstance(e, Presence) and e.status == "busy"
        )
        assert isinstance(presence, Presence) and presence.text == "in a call"

        reply = await bob.set_meta("r", {"typing": True})
        assert (reply.room, reply.meta) == ("r", {"typing": True})
        updated = await wait_for(
            alice.events(), lambda e: isinstance(e, MemberUpdated) and e.meta == {"typing": True}
        )
        assert isinstance(updated, MemberUpdated) and updated.user == "bob"

        ack = await alice.heartbeat()
        assert ack.time > 0
        await alice.activity()
        unsubscribed = await alice.unsubscribe(["bob"])
        assert unsubscribed.users == ["bob"]


async def test_request_errors_raise_client_error_and_the_connection_survives(
    make_server: ServerFactory,
) -> None:
    server = await make_server()
    async with client(server, "alice") as alice:
        with pytest.raises(ClientError) as not_in_room:
            await alice.leave("never-joined")
        assert not_in_room.value.code == "NOT_IN_ROOM"
        assert isinstance(not_in_room.value.ref, int)

        with pytest.raises(ClientError) as meta_error:
            await alice.set_meta("never-joined", {"a": 1})
        assert meta_error.value.code == "NOT_IN_ROOM"

        with pytest.raises(ClientError) as bad:
            await alice.set_status(cast(ClientStatus, "sleeping"))
        assert (bad.value.code, bad.value.field) == ("BAD_REQUEST", "status")

        assert alice.connected
        assert (await alice.join("ok")).room == "ok"


async def test_refused_first_connect_raises(make_server: ServerFactory) -> None:
    server = await make_server()
    bad = Client(server.url, device="has space", user="alice", request_timeout=TIMEOUT)
    with pytest.raises(ClientError) as refused:
        await bad.connect()
    assert (refused.value.code, refused.value.field) == ("BAD_REQUEST", "device")
    assert not bad.connected
    with pytest.raises(ConnectionClosed):
        await bad.count("r")


def test_exactly_one_credential_is_required() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        Client("ws://127.0.0.1:1/ws", device="d")
    with pytest.raises(ValueError, match="exactly one"):
        Client("ws://127.0.0.1:1/ws", device="d", user="u", token="t")


# --- connection loss -----------------------------------------------------------------------


async def test_dropped_connection_reconnects_and_resumes_unseen(
    make_server: ServerFactory,
) -> None:
    server = await make_server()
    async with client(server, "alice") as alice, client(server, "bob") as bob:
        await alice.join("room", meta={"cursor": 1})
        await alice.set_status("busy")
        await bob.join("room")
        session = alice.session
        await wait_for(alice.events(), lambda e: isinstance(e, MemberJoined))

        alice.simulate_drop()
        # A request made during the outage waits for the resumed session.
        assert await alice.count("room") == 2

        lost = await wait_for(alice.events(), lambda e: isinstance(e, Disconnected))
        assert isinstance(lost, Disconnected)
        assert lost.code == 1006 and lost.will_reconnect
        back = await wait_for(alice.events(), lambda e: isinstance(e, Connected))
        assert isinstance(back, Connected)
        assert back.welcome.resumed and back.welcome.rooms == ["room"]
        assert alice.session == session and alice.connected
        assert alice.rooms == frozenset({"room"})

        # carol drops after alice did: once bob sees carol's grace expire, a grace expiry of
        # alice's would already have reached him. It must not have.
        async with client(server, "carol") as carol:
            await carol.join("room")
        seen: list[Event] = []
        await wait_for(bob.events(), left("carol", "grace_expired"), seen)
        assert not [e for e in seen if isinstance(e, MemberLeft) and e.user == "alice"]
        members = await bob.members("room")
        assert sorted((m.user, m.status) for m in members.members) == [
            ("alice", "busy"),
            ("bob", "online"),
        ]


async def test_server_restart_reconnects_and_restores_a_fresh_session(
    make_server: ServerFactory,
) -> None:
    # make_server stops both servers at teardown (the first a second time: harmless).
    first = await make_server()
    async with client(first, "alice") as alice, client(first, "bob") as bob:
        await alice.join("room", meta={"cursor": 1})
        await alice.set_status("busy", "deep work")
        await alice.subscribe(["bob"])
        await bob.join("room")
        old_session = alice.session

        await first.stop()  # every client gets 1012: reconnect at once
        for c in (alice, bob):
            lost = await wait_for(c.events(), lambda e: isinstance(e, Disconnected))
            assert isinstance(lost, Disconnected)
            assert lost.code == 1012 and lost.will_reconnect

        # A new node on the same port knows nothing: the resume fails, the SDK restores.
        await make_server(port=first.port)
        for c in (alice, bob):
            back = await wait_for(c.events(), lambda e: isinstance(e, Connected))
            assert isinstance(back, Connected)
            assert not back.welcome.resumed and back.welcome.resume_error
        assert alice.session != old_session
        assert alice.rooms == frozenset({"room"})

        members = {m.user: m for m in (await bob.members("room")).members}
        assert set(members) == {"alice", "bob"}
        assert (members["alice"].status, members["alice"].text) == ("busy", "deep work")
        assert members["alice"].meta == {"cursor": 1}

        await bob.set_status("away")  # alice's subscription was restored too
        await wait_for(
            alice.events(),
            lambda e: isinstance(e, Presence) and e.user == "bob" and e.status == "away",
        )


# --- the end of a session ------------------------------------------------------------------


async def test_inactivity_force_leave_surfaces_and_does_not_reconnect(
    make_server: ServerFactory,
) -> None:
    server = await make_server(inactivity_timeout=0.6)
    # alice sends no heartbeats (they count as activity); bob's keep him active.
    async with (
        client(server, "alice", heartbeat_interval=0) as alice,
        client(server, "bob", heartbeat_interval=0.1) as bob,
    ):
        await alice.join("room")
        await bob.join("room")

        forced = await wait_for(alice.events(), lambda e: isinstance(e, ForcedLeave))
        assert isinstance(forced, ForcedLeave) and forced.reason == "inactivity_timeout"
        tail = await rest(alice.events())  # the stream ends: no reconnect
        assert [type(e) for e in tail] == [Disconnected]
        assert isinstance(tail[0], Disconnected)
        assert (tail[0].code, tail[0].will_reconnect) == (4003, False)
        assert not alice.connected and alice.rooms == frozenset()
        with pytest.raises(ForceLeaveError) as ended:
            await alice.count("room")
        assert ended.value.reason == "inactivity_timeout"

        await wait_for(bob.events(), left("alice", "inactivity_timeout"))
        assert bob.connected


async def test_logout_ends_the_session_at_once(make_server: ServerFactory) -> None:
    server = await make_server()
    async with client(server, "alice") as alice, client(server, "bob") as bob:
        await alice.join("room")
        await bob.join("room")
        await alice.logout()
        await wait_for(bob.events(), left("alice", "left"))
        tail = await rest(alice.events())
        final = tail[-1]
        assert isinstance(final, Disconnected)
        assert (final.code, final.will_reconnect) == (1000, False)
        assert not alice.connected
        with pytest.raises(ConnectionClosed):
            await alice.join("room")


async def test_close_keeps_the_session_in_grace(make_server: ServerFactory) -> None:
    server = await make_server()
    async with client(server, "alice") as alice, client(server, "bob") as bob:
        await alice.join("room")
        await bob.join("room")
        await bob.close()
        assert not bob.connected
        # Not at once, as after a logout: only when the grace is over.
        await wait_for(alice.events(), left("bob", "grace_expired"))


# --- tokens --------------------------------------------------------------------------------

SECRET = "client-sdk-test-secret-of-at-least-32-bytes"


def token_for(user: str, **claims: Any) -> str:
    return jwt.encode({"sub": user, **claims}, SECRET, algorithm="HS256")


async def test_token_provider_is_asked_on_every_connect(make_server: ServerFactory) -> None:
    server = await make_server(auth_mode="jwt", jwt_secret=SECRET)
    calls = 0

    async def provider() -> str:
        nonlocal calls
        calls += 1
        return token_for("alice", rooms=["doc:*"])

    alice = Client(server.url, device="d1", token=provider, backoff=FAST_BACKOFF)
    async with alice:
        assert alice.user == "alice" and calls == 1
        await alice.join("doc:1")
        with pytest.raises(ClientError) as forbidden:
            await alice.join("admin")
        assert forbidden.value.code == "ROOM_FORBIDDEN"

        alice.simulate_drop()
        back = await wait_for(
            alice.events(), lambda e: isinstance(e, Connected) and e.welcome.resumed
        )
        assert isinstance(back, Connected) and back.welcome.rooms == ["doc:1"]
        assert calls == 2


async def test_an_expiring_token_is_refreshed_or_replaced_without_a_leave(
    make_server: ServerFactory,
) -> None:
    server = await make_server(auth_mode="jwt", jwt_secret=SECRET, grace=30)
    lifetimes = [1.0, 60.0]  # the first token runs out, the next one lasts

    async def provider() -> str:
        return token_for("alice", exp=time.time() + (lifetimes.pop(0) if lifetimes else 60))

    alice = Client(server.url, device="d1", token=provider, backoff=FAST_BACKOFF)
    async with alice:
        first = alice.session
        await alice.join("doc")
        # Past its exp the server closes with 4011; the client reconnects at once with the
        # provider's next token and resumes: the same session, still in the room.
        lost = await wait_for(alice.events(), lambda e: isinstance(e, Disconnected), timeout=5)
        assert isinstance(lost, Disconnected) and lost.code == 4011 and lost.will_reconnect
        back = await wait_for(alice.events(), lambda e: isinstance(e, Connected))
        assert isinstance(back, Connected) and back.welcome.resumed
        assert alice.session == first and back.welcome.rooms == ["doc"]
        # Or refreshed in band, before exp: the connection stays.
        later = time.time() + 120
        refreshed = await alice.refresh(token_for("alice", exp=later))
        assert refreshed.expires_at == pytest.approx(later)


async def test_bad_token_fails_the_first_connect(make_server: ServerFactory) -> None:
    server = await make_server(auth_mode="jwt", jwt_secret=SECRET)
    forged = jwt.encode(
        {"sub": "alice"}, "another-secret-that-is-32-bytes-long!", algorithm="HS256"
    )
    with pytest.raises(ClientError) as refused:
        async with Client(server.url, device="d1", token=forged):
            pass
    assert refused.value.code == "AUTH_FAILED"
