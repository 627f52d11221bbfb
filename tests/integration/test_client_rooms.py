"""The client SDK's room rules against a real presenced server: member lists kept by the
version rule, version gaps answered with a snapshot, offset gaps answered with a recovery.

A gap does not happen on a healthy connection, so the tests that need one put a real lossy
network between the client and the server (tests/support/relay.py): a WebSocket relay that
loses the one server frame chosen. Tests wait for what they expect with timeouts, never
sleeps; an absence is proved by a later event that would have come after it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from presenced.client import (
    Client,
    Event,
    MemberList,
    MembersResynced,
    RecoveryFailed,
)
from presenced.protocol.chat import MessageEvent, RoomRecovered
from presenced.protocol.messages import Member, MemberJoined, RoomMembersReply
from presenced.server.serve import RunningServer
from presenced.testing import ProtocolClient
from tests.conftest import ServerFactory
from tests.integration.test_client_messaging import FAST_BACKOFF, TIMEOUT, collect, stream
from tests.support.relay import Frame, Relay

__all__: list[str] = []


def sdk(url: str, user: str, device: str = "d1", **kwargs: Any) -> Client:
    kwargs.setdefault("backoff", FAST_BACKOFF)
    kwargs.setdefault("request_timeout", TIMEOUT)
    return Client(url, device=device, user=user, **kwargs)


async def raw(server: RunningServer, user: str) -> ProtocolClient:
    client = await ProtocolClient.connect(f"{server.url}?user={user}&device=d1")
    await client.wait_for("welcome")
    return client


def as_dict(members: list[Member] | tuple[Member, ...]) -> dict[str, Member]:
    return {m.user: m for m in members}


async def caught_up(client: Client, room: str, version: int) -> MemberList:
    """The client's member list once it has reached ``version`` (reading its events)."""
    events = client.events()
    async with asyncio.timeout(TIMEOUT):
        while True:
            current = client.member_list(room)
            if current is not None and current.synced and current.version >= version:
                return current
            await anext(events)


async def server_members(observer: ProtocolClient, room: str) -> RoomMembersReply:
    reply = await observer.request({"type": "room.members", "room": room})
    assert isinstance(reply, RoomMembersReply)
    return reply


def joins(user: str) -> Callable[[Frame], bool]:
    """A server frame carrying ``user``'s member.joined, alone or in a room.batch."""

    def rule(frame: Frame) -> bool:
        inner = frame.get("events", []) if frame.get("type") == "room.batch" else [frame]
        return any(e.get("type") == "member.joined" and e.get("user") == user for e in inner)

    return rule


def message(body: str) -> Callable[[Frame], bool]:
    return lambda f: f.get("type") == "message" and f.get("body") == body


# --- (1) the member list follows concurrent joins and leaves -------------------------------------


async def test_member_list_equals_the_servers_after_concurrent_joins_and_leaves(
    server: RunningServer,
) -> None:
    # Events come in version order on every backend (the node holds back what arrives
    # early), so the events alone keep the list right: no snapshot is needed.
    async with sdk(server.url, "alice") as alice:
        await alice.join("room", meta={"seat": 0})
        resyncs: list[Event] = []
        alice.on("members_resynced", resyncs.append)
        observer = await raw(server, "observer")
        others = [await raw(server, f"u{i}") for i in range(12)]
        try:

            async def churn(index: int, client: ProtocolClient) -> None:
                await client.request({"type": "room.join", "room": "room", "meta": {"n": index}})
                if index % 3 == 0:
                    await client.request({"type": "room.leave", "room": "room"})
                elif index % 3 == 1:
                    await client.request({"type": "status.set", "status": "busy", "text": "x"})
                    await client.request({"type": "room.meta", "room": "room", "meta": {"m": 1}})

            await asyncio.gather(*(churn(i, c) for i, c in enumerate(others)))
            truth = await server_members(observer, "room")
            mine = await caught_up(alice, "room", truth.version)
            assert mine.version == truth.version
            assert dict(mine.members) == as_dict(truth.members)
            assert mine.count == len(truth.members) == 1 + 8  # alice, and 8 of 12 stayed
            assert resyncs == []  # kept right by the events alone

            # A second wave, leaves of those who stayed among them.
            await asyncio.gather(
                *(c.request({"type": "room.leave", "room": "room"}) for c in others[1:6])
            )
            truth = await server_members(observer, "room")
            mine = await caught_up(alice, "room", truth.version)
            assert dict(mine.members) == as_dict(truth.members)
            assert resyncs == []
        finally:
            for client in (observer, *others):
                client.abort()


# --- (2) a version gap brings a snapshot --------------------------------------------------------


async def test_a_lost_member_frame_is_a_version_gap_and_brings_a_snapshot(
    make_server: ServerFactory,
) -> None:
    server = await make_server()
    async with Relay(server.url) as relay, sdk(relay.url, "alice") as alice:
        await alice.join("room")
        before = alice.member_list("room")
        assert before is not None and set(before.members) == {"alice"}
        lost = relay.drop(joins("bob"))
        seen: list[Event] = []
        alice.on("*", seen.append)

        bob = await raw(server, "bob")
        carol = await raw(server, "carol")
        try:
            await bob.request({"type": "room.join", "room": "room", "meta": {"seat": 1}})
            async with asyncio.timeout(TIMEOUT):
                await lost.wait()  # alice will never hear of bob's join
            await carol.request({"type": "room.join", "room": "room"})

            # carol's join is one version past what alice has: a gap, so a snapshot.
            resynced = await wait_event(alice, lambda e: isinstance(e, MembersResynced))
            assert isinstance(resynced, MembersResynced)
            assert set(as_dict(resynced.members)) == {"alice", "bob", "carol"}
            truth = await server_members(bob, "room")
            mine = alice.member_list("room")
            assert mine is not None and mine.synced
            assert (mine.version, dict(mine.members)) == (truth.version, as_dict(truth.members))
            assert mine.members["bob"].meta == {"seat": 1}
            # The out-of-order member.joined was not surfaced as if nothing was missing.
            assert not [e for e in seen if isinstance(e, MemberJoined) and e.user == "carol"]
        finally:
            bob.abort()
            carol.abort()


async def wait_event(client: Client, match: Callable[[Event], bool]) -> Event:
    return (await collect(client.events(), match))[-1]


# --- (3) an offset gap brings a recovery ----------------------------------------------------------


async def test_a_lost_message_is_recovered_and_every_message_is_seen_once_in_order(
    make_server: ServerFactory,
) -> None:
    server = await make_server()
    async with (
        Relay(server.url) as relay,
        sdk(relay.url, "alice") as alice,
        sdk(server.url, "bob") as bob,
    ):
        await alice.join("room")
        await bob.join("room")
        lost = relay.drop(message("m2"))
        failures: list[Event] = []
        alice.on("recovery_failed", failures.append)

        for n in (1, 2, 3):
            await bob.send("room", f"m{n}")
        async with asyncio.timeout(TIMEOUT):
            await lost.wait()
        recovered = await collect(alice.events(), lambda e: isinstance(e, RoomRecovered))
        await bob.send("room", "m4")
        tail = await collect(alice.events(), lambda e: isinstance(e, MessageEvent))

        got = stream([*recovered, *tail])
        assert got == [
            ("message", 1, "m1"),
            ("message", 2, "m2"),
            ("message", 3, "m3"),
            ("message", 4, "m4"),
        ]
        recovery = recovered[-1]
        assert isinstance(recovery, RoomRecovered) and recovery.recovered
        assert failures == []


async def test_a_gap_beyond_the_kept_history_says_reload(make_server: ServerFactory) -> None:
    server = await make_server(history_size=2)
    async with (
        Relay(server.url) as relay,
        sdk(relay.url, "alice") as alice,
        sdk(server.url, "bob") as bob,
    ):
        await alice.join("room")
        await bob.join("room")
        await bob.send("room", "m1")
        await collect(alice.events(), lambda e: isinstance(e, MessageEvent))
        for body in ("m2", "m3", "m4"):  # lost: more than the history keeps
            relay.drop(message(body))
        for n in (2, 3, 4, 5):
            await bob.send("room", f"m{n}")
        seen = await collect(alice.events(), lambda e: isinstance(e, RecoveryFailed))
        failed = seen[-1]
        assert isinstance(failed, RecoveryFailed) and (failed.room, failed.offset) == ("room", 5)
        recovery = seen[-2]
        assert isinstance(recovery, RoomRecovered) and not recovery.recovered
        assert stream(seen) == []  # m5 is not surfaced as if m2..m4 had not been lost
        # The app reloads; the stream goes on from the server's position.
        history = await alice.history("room")
        assert [m.body for m in history.messages] == ["m4", "m5"]
        await bob.send("room", "m6")
        tail = await collect(alice.events(), lambda e: isinstance(e, MessageEvent))
        assert stream(tail) == [("message", 6, "m6")]
