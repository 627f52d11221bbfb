"""Recovering missed room events over real loopback sockets: resume within grace (with and
without client positions), rejoin with ``since``, gaps beyond the kept history, a changed
epoch, and a slow consumer that is cut off, resumes and gets every message it missed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import pytest

from presenced.protocol.chat import (
    MessageAck,
    MessageDeleted,
    MessageEdited,
    MessageEvent,
    RoomHistoryReply,
    RoomRecovered,
)
from presenced.protocol.messages import (
    DeviceBack,
    DeviceDropped,
    HeartbeatAck,
    MemberLeft,
    RoomJoined,
    RoomMembersReply,
    Welcome,
)
from presenced.server.serve import RunningServer
from presenced.testing import ProtocolClient
from tests.conftest import Connect, ServerFactory

T = TypeVar("T")
Dial = Callable[..., Awaitable[ProtocolClient]]

ROOM = "r"


@pytest.fixture
async def dial(make_server: ServerFactory) -> AsyncIterator[Dial]:
    """Open clients to a server started with overrides.

    ``dial(running, "bob", "web", resume=token)`` authenticates in the URL;
    ``dial(running, "bob", "web", auth={...})`` sends an ``auth`` message with those extra
    fields (``positions`` does not fit in a URL) and checks that the reply is a welcome.
    ``max_size`` goes to ``websockets`` (recoveries can be large frames).
    """
    opened: list[ProtocolClient] = []

    async def opener(
        running: RunningServer,
        user: str,
        device: str = "d1",
        *,
        auth: dict[str, Any] | None = None,
        max_size: int | None = 2**20,
        **query: str,
    ) -> ProtocolClient:
        if auth is None:
            qs = "&".join(f"{k}={v}" for k, v in {"user": user, "device": device, **query}.items())
            client = await ProtocolClient.connect(f"{running.url}?{qs}", max_size=max_size)
            opened.append(client)
            await client.wait_for("welcome")
        else:
            client = await ProtocolClient.connect(running.url, max_size=max_size)
            opened.append(client)
            hello = {"type": "auth", "user": user, "device": device, **auth}
            await ask(client, hello, Welcome)
        return client

    yield opener
    for client in opened:
        if not client.closed.is_set():
            client.abort()


def of(client: ProtocolClient, cls: type[T], start: int = 0) -> list[T]:
    return [m for m in client.received[start:] if isinstance(m, cls)]


async def ask(client: ProtocolClient, message: dict[str, Any], cls: type[T]) -> T:
    reply = await client.request(message)
    assert isinstance(reply, cls), reply
    return reply


async def expect(
    client: ProtocolClient,
    cls: type[T],
    match: Callable[[T], bool] = lambda m: True,
    *,
    timeout: float = 5.0,
) -> T:
    found = await client.wait_for(lambda m: isinstance(m, cls) and match(m), timeout=timeout)
    assert isinstance(found, cls)
    return found


async def settle(*clients: ProtocolClient) -> None:
    """A heartbeat round trip on each: whatever was sent to them before is now received."""
    for client in clients:
        await ask(client, {"type": "heartbeat"}, HeartbeatAck)


async def send(client: ProtocolClient, body: Any) -> MessageAck:
    return await ask(client, {"type": "message.send", "room": ROOM, "body": body}, MessageAck)


async def join(client: ProtocolClient, **extra: Any) -> RoomJoined:
    return await ask(client, {"type": "room.join", "room": ROOM, **extra}, RoomJoined)


def summary(events: list[Any]) -> list[tuple[str, int, str]]:
    """(type, offset, message id) of each recovered event."""
    return [(type(e).__name__, e.offset, e.id) for e in events]


async def passes(seconds: float) -> None:
    """Wait out a period in which something must *not* happen (a grace period)."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    loop.call_later(seconds, done.set_result, None)
    await done


# --- resume within grace -----------------------------------------------------------------


async def test_resume_with_positions_recovers_exactly_what_was_missed(
    make_server: ServerFactory, dial: Dial
) -> None:
    running = await make_server(grace=0.5)
    alice = await dial(running, "alice", "phone")
    bob = await dial(running, "bob", "web")
    await join(alice, device_events=True)
    await join(bob)
    first = await send(alice, "before the drop")
    await expect(bob, MessageEvent, lambda m: m.id == first.id)
    token = of(bob, Welcome)[0].resume_token

    bob.abort()
    await expect(alice, DeviceDropped, lambda d: d.user == "bob")  # bob is in grace now
    missed = [await send(alice, f"while away {i}") for i in range(3)]
    edited = await ask(
        alice,
        {"type": "message.edit", "room": ROOM, "id": missed[1].id, "body": "fixed"},
        MessageEdited,
    )
    position = {"epoch": first.epoch, "offset": first.offset}
    back = await dial(running, "bob", "web", auth={"resume": token, "positions": {ROOM: position}})
    welcome = of(back, Welcome)[0]
    assert welcome.resumed and welcome.rooms == [ROOM]
    recovered = await expect(back, RoomRecovered)
    assert (recovered.room, recovered.epoch, recovered.offset) == (ROOM, first.epoch, 5)
    assert recovered.recovered
    assert summary(recovered.events) == [
        ("MessageEvent", 2, missed[0].id),
        ("MessageEvent", 3, missed[1].id),
        ("MessageEvent", 4, missed[2].id),
        ("MessageEdited", 5, missed[1].id),
    ]
    bodies = ["while away 0", "while away 1", "while away 2", "fixed"]
    assert [e.body for e in recovered.events if not isinstance(e, MessageDeleted)] == bodies
    assert recovered.events[-1] == MessageEdited(
        room=ROOM,
        epoch=first.epoch,
        offset=5,
        id=missed[1].id,
        user="alice",
        body="fixed",
        time=edited.time,
    )
    # The room.recovered follows the welcome, and nothing is delivered twice.
    await settle(back)
    assert [type(m).__name__ for m in back.received] == ["Welcome", "RoomRecovered", "HeartbeatAck"]
    # Live again.
    after = await send(alice, "welcome back")
    assert (await expect(back, MessageEvent)).offset == after.offset == 6
    # Nobody saw bob leave, even once the grace period would have run out.
    await expect(alice, DeviceBack, lambda d: d.user == "bob")
    await passes(running.node.settings.grace * 2)
    members = await ask(alice, {"type": "room.members", "room": ROOM}, RoomMembersReply)
    assert {m.user for m in members.members} == {"alice", "bob"}
    assert not of(alice, MemberLeft)


async def test_resume_without_positions_recovers_from_where_the_drop_was_noticed(
    make_server: ServerFactory, dial: Dial
) -> None:
    running = await make_server(grace=5)
    alice = await dial(running, "alice", "phone")
    bob = await dial(running, "bob", "web")
    await join(alice, device_events=True)
    await join(bob)
    first = await send(alice, "seen")
    await expect(bob, MessageEvent)
    bob.abort()
    await expect(alice, DeviceDropped, lambda d: d.user == "bob")
    missed = [await send(alice, f"missed {i}") for i in range(2)]
    back = await dial(running, "bob", "web", resume=of(bob, Welcome)[0].resume_token)
    assert of(back, Welcome)[0].resumed
    recovered = await expect(back, RoomRecovered)
    assert recovered.recovered and recovered.epoch == first.epoch
    assert summary(recovered.events) == [
        ("MessageEvent", 2, missed[0].id),
        ("MessageEvent", 3, missed[1].id),
    ]


# --- rejoin with `since` -------------------------------------------------------------------


async def test_rejoin_with_since_after_logout_gets_the_missed_events(connect: Connect) -> None:
    alice = await connect("alice", "phone")
    bob = await connect("bob", "web")
    await join(alice)
    await join(bob)
    first = await send(alice, "hello")
    seen = await expect(bob, MessageEvent)
    await bob.send({"type": "logout"})
    assert await bob.wait_closed() == 1000
    second = await send(alice, "are you there?")
    third = await send(alice, "hello?")
    await ask(alice, {"type": "message.delete", "room": ROOM, "id": second.id}, MessageDeleted)

    again = await connect("bob", "web")
    since = {"epoch": seen.epoch, "offset": seen.offset}
    joined = await join(again, since=since)
    recovered = await expect(again, RoomRecovered)
    assert again.received.index(joined) < again.received.index(recovered)
    assert (recovered.recovered, recovered.epoch, recovered.offset) == (True, first.epoch, 4)
    assert summary(recovered.events) == [
        ("MessageEvent", 2, second.id),
        ("MessageEvent", 3, third.id),
        ("MessageDeleted", 4, second.id),
    ]
    # Already up to date: recovered, with nothing to add.
    mark = len(again.received)
    await join(again, since={"epoch": first.epoch, "offset": 4})
    latest = await again.wait_for("room.recovered", start=mark)
    assert isinstance(latest, RoomRecovered)
    assert (latest.recovered, latest.offset, latest.events) == (True, 4, [])
    # A join without `since` recovers nothing.
    mark = len(again.received)
    await join(again)
    await settle(again)
    assert not of(again, RoomRecovered, mark)


async def test_gap_beyond_the_kept_history_is_not_recovered(
    make_server: ServerFactory, dial: Dial
) -> None:
    running = await make_server(history_size=3)
    alice = await dial(running, "alice", "phone")
    await join(alice)
    acks = [await send(alice, f"m{i}") for i in range(1, 11)]  # offsets 1..10, 8..10 kept
    epoch = acks[0].epoch
    bob = await dial(running, "bob", "web")
    await join(bob, since={"epoch": epoch, "offset": 6})
    lost = await expect(bob, RoomRecovered)
    assert (lost.recovered, lost.epoch, lost.offset, lost.events) == (False, epoch, 10, [])
    mark = len(bob.received)
    await join(bob, since={"epoch": epoch, "offset": 7})  # just covered
    found = await bob.wait_for("room.recovered", start=mark)
    assert isinstance(found, RoomRecovered) and found.recovered
    assert summary(found.events) == [("MessageEvent", o, acks[o - 1].id) for o in (8, 9, 10)]
    history = await ask(bob, {"type": "room.history", "room": ROOM}, RoomHistoryReply)
    assert [m.offset for m in history.messages] == [8, 9, 10]


async def test_another_epoch_or_a_future_offset_is_not_recovered(connect: Connect) -> None:
    alice = await connect("alice", "phone")
    await join(alice)
    ack = await send(alice, "one")
    await send(alice, "two")
    bob = await connect("bob", "web")
    for since in ({"epoch": "not-" + ack.epoch, "offset": 1}, {"epoch": ack.epoch, "offset": 9}):
        mark = len(bob.received)
        await join(bob, since=since)
        got = await bob.wait_for("room.recovered", start=mark)
        assert isinstance(got, RoomRecovered)
        assert (got.recovered, got.epoch, got.offset, got.events) == (False, ack.epoch, 2, [])


# --- slow consumers ----------------------------------------------------------------------


async def test_slow_consumer_is_cut_off_then_resumes_and_recovers_everything(
    make_server: ServerFactory, dial: Dial
) -> None:
    running = await make_server(
        send_queue_bytes=65536,
        slow_consumer_timeout=0.2,
        rate_limit=10_000,
        rate_burst=10_000,
        message_rate=10_000,
        message_burst=10_000,
        max_frame_bytes=65536,
        max_message_bytes=40_000,
        history_size=10_000,
        grace=30,
        heartbeat_interval=30,
        heartbeat_timeout=10,
    )
    watcher = await dial(running, "carol", "w")
    await join(watcher, device_events=True)
    slow = await dial(running, "sam", "s")
    await join(slow)
    sender = await dial(running, "alice", "a")
    await join(sender)

    slow.ws.transport.pause_reading()  # sam's app hangs: it reads nothing more
    padding = "x" * 30_000
    acks: list[MessageAck] = []
    for i in range(2_000):  # bounded: the kernel buffers fill after a few MB
        acks.append(await send(sender, {"i": i, "pad": padding}))  # never held back
        if any(d.user == "sam" for d in of(watcher, DeviceDropped)):
            break
    assert of(watcher, DeviceDropped), "the slow consumer was never cut off"
    # The room keeps flowing for everyone else.
    for i in range(3):
        acks.append(await send(sender, {"after": i}))
    await expect(watcher, MessageEvent, lambda m: m.id == acks[-1].id)
    assert [m.offset for m in of(watcher, MessageEvent)] == list(range(1, len(acks) + 1))

    # sam's app wakes up to a dead socket; what it saw is what it got before the cut.
    slow.abort()
    await slow.wait_closed()
    seen = of(slow, MessageEvent)
    last = seen[-1].offset if seen else 0
    assert [m.offset for m in seen] == list(range(1, last + 1))
    assert last < len(acks)  # it did miss messages

    position = {"epoch": acks[0].epoch, "offset": last}
    back = await dial(
        running,
        "sam",
        "s",
        auth={"resume": of(slow, Welcome)[0].resume_token, "positions": {ROOM: position}},
        max_size=None,
    )
    assert of(back, Welcome)[0].resumed
    with contextlib.suppress(AssertionError):  # closed or timed out: said precisely below
        await expect(back, RoomRecovered, timeout=10)
    got = [type(m).__name__ for m in back.received]
    assert of(back, RoomRecovered), (
        f"no room.recovered on the resumed connection (closed: {back.closed.is_set()}, "
        f"code {back.close_code}); it got {got}; {len(acks) - last} events were missed"
    )
    recovered = of(back, RoomRecovered)[0]
    assert recovered.recovered and recovered.offset == len(acks)
    assert [(e.offset, e.id) for e in recovered.events] == [(a.offset, a.id) for a in acks[last:]]
    assert all(isinstance(e, MessageEvent) for e in recovered.events)
    # And it is live again.
    final = await send(sender, "all caught up")
    assert (await expect(back, MessageEvent)).id == final.id
