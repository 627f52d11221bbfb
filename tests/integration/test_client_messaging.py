"""The client SDK's messaging against a real presenced server on loopback.

Sending with acks and exactly-once re-sends, edits and deletes, receipts, typing, history,
and the recovery of a room's messages after a drop (resume), a failed resume (re-join with
``since``) and a server restart (new epoch). Tests wait for events with a timeout; an absence
("nothing else arrived") is made deterministic by ordering: a later, observed event proves
that an earlier one would already have arrived.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import jwt
import pytest

from presenced.client import (
    Backoff,
    Client,
    ClientError,
    Connected,
    Disconnected,
    Event,
    MembersResynced,
    RecoveryFailed,
)
from presenced.protocol.chat import (
    MessageDeleted,
    MessageEdited,
    MessageEvent,
    Receipt,
    RoomRecovered,
    TypingEvent,
)
from presenced.protocol.messages import DeviceDropped, MemberLeft
from presenced.server.serve import RunningServer
from tests.conftest import ServerFactory

__all__: list[str] = []

TIMEOUT = 5.0
FAST_BACKOFF = Backoff(initial=0.05, maximum=0.2)
SECRET = "client-messaging-test-secret-of-32-bytes!"


def client(server: RunningServer, user: str, device: str = "d1", **kwargs: Any) -> Client:
    kwargs.setdefault("backoff", FAST_BACKOFF)
    kwargs.setdefault("request_timeout", TIMEOUT)
    return Client(server.url, device=device, user=user, **kwargs)


async def collect(
    events: AsyncIterator[Event], until: Callable[[Event], bool], timeout: float = TIMEOUT
) -> list[Event]:
    """Every event up to and including the first that matches ``until``."""
    seen: list[Event] = []
    async with asyncio.timeout(timeout):
        async for event in events:
            seen.append(event)
            if until(event):
                return seen
    raise AssertionError(f"the client stopped before the expected event; got {seen}")


async def wait_for(events: AsyncIterator[Event], match: Callable[[Event], bool]) -> Event:
    return (await collect(events, match))[-1]


def is_message(body: object) -> Callable[[Event], bool]:
    return lambda e: isinstance(e, MessageEvent) and e.body == body


def stream(events: list[Event]) -> list[tuple[str, int, object]]:
    """The room stream events among ``events``, recovered ones unpacked, as (type, offset,
    body or id)."""
    out: list[tuple[str, int, object]] = []
    for event in events:
        items = event.events if isinstance(event, RoomRecovered) else [event]
        for item in items:
            if isinstance(item, MessageEvent):
                out.append(("message", item.offset, item.body))
            elif isinstance(item, MessageEdited):
                out.append(("edited", item.offset, item.body))
            elif isinstance(item, MessageDeleted):
                out.append(("deleted", item.offset, item.id))
    return out


def receipts(events: list[Event], user: str) -> list[tuple[str, int]]:
    return [(e.kind, e.offset) for e in events if isinstance(e, Receipt) and e.user == user]


# --- exchanging messages ---------------------------------------------------------------------


async def test_two_clients_exchange_edit_delete_and_read_history(
    make_server: ServerFactory,
) -> None:
    server = await make_server()
    async with client(server, "alice") as alice, client(server, "bob") as bob:
        await alice.join("room")
        await bob.join("room")

        ack = await alice.send("room", "hello")
        assert (ack.room, ack.offset, ack.duplicate) == ("room", 1, False)
        assert ack.temp_id  # generated
        got = await wait_for(bob.events(), is_message("hello"))
        assert isinstance(got, MessageEvent)
        assert (got.id, got.user, got.device, got.temp_id) == (ack.id, "alice", "d1", ack.temp_id)
        assert got.epoch == ack.epoch

        reply = await bob.send("room", {"kind": "card", "n": 2}, temp_id="bob-1")
        assert reply.temp_id == "bob-1" and reply.offset == 2
        # alice gets bob's message and never a copy of her own before it.
        seen = await collect(alice.events(), is_message({"kind": "card", "n": 2}))
        assert stream(seen) == [("message", 2, {"kind": "card", "n": 2})]

        edited = await alice.edit("room", ack.id, "hello, world")
        assert (edited.offset, edited.body, edited.user) == (3, "hello, world", "alice")
        bob_edit = await wait_for(bob.events(), lambda e: isinstance(e, MessageEdited))
        assert isinstance(bob_edit, MessageEdited) and bob_edit.ref is None
        assert (bob_edit.id, bob_edit.offset, bob_edit.body) == (ack.id, 3, "hello, world")

        with pytest.raises(ClientError) as not_author:
            await bob.edit("room", ack.id, "hijacked")
        assert (not_author.value.code, not_author.value.field) == ("NOT_AUTHOR", "id")

        history = await bob.history("room")
        assert (history.epoch, history.offset) == (ack.epoch, 3)
        assert [(m.offset, m.body) for m in history.messages] == [
            (1, "hello, world"),
            (2, {"kind": "card", "n": 2}),
        ]
        older = await bob.history("room", limit=1, before=2)
        assert [m.id for m in older.messages] == [ack.id]

        deleted = await alice.delete("room", ack.id)
        assert (deleted.id, deleted.offset) == (ack.id, 4)
        await wait_for(bob.events(), lambda e: isinstance(e, MessageDeleted))
        with pytest.raises(ClientError) as gone:
            await alice.delete("room", ack.id)
        assert gone.value.code == "MESSAGE_NOT_FOUND"
        assert [m.offset for m in (await alice.history("room")).messages] == [2]

        # alice sent at 1 (marks her own read up to it); bob's message at 2 is unread.
        read = await alice.read_state("room")
        assert (read.epoch, read.offset, read.last_read, read.unread) == (ack.epoch, 4, 1, 1)
        with pytest.raises(ClientError) as outside:
            await alice.send("elsewhere", "lost")
        assert outside.value.code == "NOT_IN_ROOM"


async def test_delivered_receipts_are_automatic_and_seen_is_explicit(
    make_server: ServerFactory,
) -> None:
    server = await make_server()
    async with (
        client(server, "alice") as alice,
        client(server, "bob") as bob,
        client(server, "carol", auto_delivered=False) as carol,
    ):
        for c in (alice, bob, carol):
            await c.join("room")
        first = await alice.send("room", "one")
        await wait_for(bob.events(), is_message("one"))
        await wait_for(carol.events(), is_message("one"))
        got = await wait_for(alice.events(), lambda e: isinstance(e, Receipt) and e.user == "bob")
        assert isinstance(got, Receipt) and (got.kind, got.offset) == ("delivered", first.offset)

        await carol.seen("room", first.offset)
        await bob.seen("room", first.offset)
        # receipt.seen has no reply and the two come over two connections: their receipts
        # may reach alice in either order (on Valkey each is a store write, then a publish).
        waiting = {"bob", "carol"}

        def both_seen(e: Event) -> bool:
            if isinstance(e, Receipt) and e.kind == "seen":
                waiting.discard(e.user)
            return not waiting

        seen = await collect(alice.events(), both_seen)
        # No delivered receipt from carol (auto_delivered=False) came before her seen.
        assert receipts(seen, "carol") == [("seen", first.offset)]
        assert receipts(seen, "bob") == [("seen", first.offset)]
        read = await carol.read_state("room")
        assert (read.last_read, read.unread) == (first.offset, 0)


async def test_typing_start_stop_and_send_clears_it(make_server: ServerFactory) -> None:
    server = await make_server()
    async with client(server, "alice", typing_throttle=60.0) as alice, client(server, "bob") as bob:
        await alice.join("room")
        await bob.join("room")

        def typing(users: list[str]) -> Callable[[Event], bool]:
            return lambda e: isinstance(e, TypingEvent) and e.users == users

        await alice.typing("room")
        await wait_for(bob.events(), typing(["alice"]))
        await alice.typing("room")  # within the throttle: not sent
        await alice.stop_typing("room")
        await wait_for(bob.events(), typing([]))
        await alice.typing("room")  # a stop lets the next start through at once
        await wait_for(bob.events(), typing(["alice"]))
        await alice.send("room", "done typing")  # sending clears the indicator
        await wait_for(bob.events(), typing([]))
        await alice.typing("room")  # ... and the throttle with it
        await wait_for(bob.events(), typing(["alice"]))


# --- sends and drops ---------------------------------------------------------------------------


async def test_send_during_a_drop_is_delivered_once(make_server: ServerFactory) -> None:
    server = await make_server(grace=5.0)
    async with client(server, "alice") as alice, client(server, "bob") as bob:
        await alice.join("room")
        await bob.join("room")
        alice.simulate_drop()
        ack = await alice.send("room", "while away")  # waits for the resumed session
        assert not ack.duplicate
        await alice.send("room", "marker")
        seen = await collect(bob.events(), is_message("marker"))
        assert stream(seen) == [("message", 1, "while away"), ("message", 2, "marker")]


async def test_send_whose_ack_was_lost_is_re_sent_and_acked_once(
    make_server: ServerFactory,
) -> None:
    server = await make_server(grace=5.0)
    async with client(server, "alice") as alice, client(server, "bob") as bob:
        await alice.join("room")
        await bob.join("room")
        alice.simulate_stall()  # the ack will sit unread in the dying socket
        sending = asyncio.create_task(alice.send("room", "exactly once", temp_id="t-1"))
        stored = await wait_for(bob.events(), is_message("exactly once"))
        assert isinstance(stored, MessageEvent) and stored.temp_id == "t-1"
        alice.simulate_drop()

        async with asyncio.timeout(TIMEOUT):
            ack = await sending
        # Re-sent with the same temp_id: the server answered with the first ack.
        assert (ack.temp_id, ack.id, ack.offset, ack.duplicate) == ("t-1", stored.id, 1, True)
        await alice.send("room", "marker")
        seen = await collect(bob.events(), is_message("marker"))
        assert stream(seen) == [("message", 2, "marker")]  # no second "exactly once"
        assert [m.body for m in (await bob.history("room")).messages] == [
            "exactly once",
            "marker",
        ]


# --- recovery ------------------------------------------------------------------------------------


async def test_drop_and_resume_recover_every_missed_event_once_in_order(
    make_server: ServerFactory,
) -> None:
    server = await make_server(grace=5.0)
    async with client(server, "alice") as alice, client(server, "bob") as bob:
        await alice.join("room")
        await bob.join("room")
        await bob.send("room", "m1")
        await wait_for(alice.events(), is_message("m1"))
        # alice's delivered receipt for m1 reached the server before the stall.
        await wait_for(bob.events(), lambda e: isinstance(e, Receipt) and e.offset == 1)

        # The network goes silent: what bob sends now reaches alice's socket and dies there.
        alice.simulate_stall()
        acks = [await bob.send("room", f"m{n}") for n in range(2, 7)]
        await bob.edit("room", acks[0].id, "m2 edited")  # offset 7
        await bob.delete("room", acks[1].id)  # offset 8
        alice.simulate_drop()

        after = await collect(alice.events(), lambda e: isinstance(e, RoomRecovered))
        kinds = [type(e) for e in after]
        assert kinds == [Disconnected, Connected, RoomRecovered]
        back, recovery = after[1], after[2]
        assert isinstance(back, Connected) and back.welcome.resumed
        assert isinstance(recovery, RoomRecovered)
        assert (recovery.recovered, recovery.epoch, recovery.offset) == (True, acks[0].epoch, 8)

        await bob.send("room", "m9")
        tail = await collect(alice.events(), is_message("m9"))
        assert stream([recovery, *tail]) == [
            ("message", 2, "m2"),
            ("message", 3, "m3"),
            ("message", 4, "m4"),
            ("message", 5, "m5"),
            ("message", 6, "m6"),
            ("edited", 7, "m2 edited"),
            ("deleted", 8, acks[1].id),
            ("message", 9, "m9"),
        ]
        # One delivered receipt covered the whole recovery (coalesced), then one for m9.
        seen = await collect(bob.events(), lambda e: isinstance(e, Receipt) and e.offset == 9)
        assert receipts(seen, "alice") == [("delivered", 6), ("delivered", 9)]


async def test_failed_resume_re_joins_with_since_and_recovers_exactly(
    make_server: ServerFactory,
) -> None:
    server = await make_server(auth_mode="jwt", jwt_secret=SECRET)
    gate = asyncio.Event()  # holds alice's reconnect back until the test lets it go
    calls = 0

    async def token() -> str:
        nonlocal calls
        calls += 1
        if calls > 1:
            await gate.wait()
        return jwt.encode({"sub": "alice"}, SECRET, algorithm="HS256")

    bob_token = jwt.encode({"sub": "bob"}, SECRET, algorithm="HS256")
    alice = Client(server.url, device="d1", token=token, backoff=FAST_BACKOFF)
    bob = Client(server.url, device="d1", token=bob_token, backoff=FAST_BACKOFF)
    async with alice, bob:
        await alice.join("room")
        await bob.join("room", device_events=True)
        await bob.send("room", "m1")
        await wait_for(alice.events(), is_message("m1"))
        listed = alice.member_list("room")
        assert listed is not None
        first_join = listed.members["alice"].joined_at
        assert first_join is not None

        alice.simulate_drop()
        await wait_for(bob.events(), lambda e: isinstance(e, DeviceDropped))
        # alice's grace runs out while she cannot reconnect: her session is gone.
        await wait_for(bob.events(), lambda e: isinstance(e, MemberLeft) and e.user == "alice")
        for n in (2, 3, 4):
            await bob.send("room", f"m{n}")
        gate.set()

        seen = await collect(alice.events(), lambda e: isinstance(e, RoomRecovered))
        # Her session was gone, so the re-join is a new membership: its snapshot differs from
        # the list she had by her own join time, and the SDK says so.
        resynced = [e for e in seen if isinstance(e, MembersResynced)]
        assert len(resynced) == 1
        (me,) = [m for m in resynced[0].members if m.user == "alice"]
        assert me.joined_at is not None and me.joined_at > first_join
        after = [e for e in seen if not isinstance(e, MembersResynced)]
        back, recovery = after[-2], after[-1]
        assert isinstance(back, Connected)
        assert not back.welcome.resumed and back.welcome.resume_error
        assert isinstance(recovery, RoomRecovered) and recovery.recovered
        assert stream(after) == [("message", 2, "m2"), ("message", 3, "m3"), ("message", 4, "m4")]
        assert alice.rooms == frozenset({"room"})
        await bob.send("room", "m5")
        tail = await collect(alice.events(), is_message("m5"))
        assert stream(tail) == [("message", 5, "m5")]


async def test_server_restart_new_epoch_says_reload(make_server: ServerFactory) -> None:
    # make_server stops both servers at teardown (the first a second time: harmless).
    first = await make_server()
    async with client(first, "alice") as alice, client(first, "bob") as bob:
        await alice.join("room")
        await bob.join("room")
        old = await bob.send("room", "before the restart")
        await wait_for(alice.events(), is_message("before the restart"))

        await first.stop()
        await wait_for(alice.events(), lambda e: isinstance(e, Disconnected))
        await make_server(port=first.port)

        seen = await collect(alice.events(), lambda e: isinstance(e, RecoveryFailed))
        # Connected, the recovery that cannot be, and the SDK's "reload" for it; and the
        # re-join's member snapshot when bob was not back yet.
        after = [e for e in seen if not isinstance(e, MembersResynced)]
        assert [type(e) for e in after[-3:]] == [Connected, RoomRecovered, RecoveryFailed]
        back, recovery, reload = after[-3:]
        assert isinstance(back, Connected) and not back.welcome.resumed
        assert isinstance(recovery, RoomRecovered)
        assert not recovery.recovered and recovery.events == []
        assert recovery.epoch != old.epoch
        assert reload == RecoveryFailed(room="room", epoch=recovery.epoch, offset=0)

        # The app reloads the room: the new stream is empty, in the new epoch.
        history = await alice.history("room")
        assert (history.epoch, history.messages) == (recovery.epoch, [])
        await wait_for(bob.events(), lambda e: isinstance(e, RoomRecovered))
        ack = await bob.send("room", "after the restart")
        assert (ack.epoch, ack.offset) == (recovery.epoch, 1)
        got = await wait_for(alice.events(), is_message("after the restart"))
        assert isinstance(got, MessageEvent) and got.epoch == recovery.epoch
