"""Room messaging over real loopback sockets: sends and acks, fan-out to every other session,
temp-id dedupe, edits and deletes (author, other user, moderator), receipts, read state,
history, typing indicators and bad input.

Recovery (resume, rejoin with ``since``, slow consumers) is in test_messaging_recovery.py.

"Nothing more arrived" is checked with :func:`settle`: the memory broker delivers an event
while the request that caused it is being handled, and each socket carries its messages in
order, so once the causing client got a later reply and every observer then got a heartbeat
ack, any event the request caused is already in the observer's ``received`` list.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import jwt
import pytest

from presenced.protocol.chat import (
    MessageAck,
    MessageDeleted,
    MessageEdited,
    MessageEvent,
    Receipt,
    RoomHistoryReply,
    RoomReadReply,
    TypingEvent,
)
from presenced.protocol.messages import Error, HeartbeatAck, MemberLeft, RoomJoined, RoomLeft
from presenced.server.serve import RunningServer
from presenced.store.memory.stores import MemoryMessageStore
from presenced.testing import ProtocolClient
from presenced.typing import RoomId
from tests.conftest import Connect, ServerFactory
from tests.support.waiting import until

T = TypeVar("T")
Dial = Callable[..., Awaitable[ProtocolClient]]

SECRET = "a-messaging-test-secret-of-at-least-32-bytes"
ROOM = "r"


# --- helpers -----------------------------------------------------------------------------


@pytest.fixture
async def dial(make_server: ServerFactory) -> AsyncIterator[Dial]:
    """Open clients to a server started with overrides: dial(running, "alice", "phone")."""
    opened: list[ProtocolClient] = []

    async def opener(running: RunningServer, user: str, device: str = "d1") -> ProtocolClient:
        client = await ProtocolClient.connect(f"{running.url}?user={user}&device={device}")
        opened.append(client)
        await client.wait_for("welcome")
        return client

    yield opener
    for client in opened:
        if not client.closed.is_set():
            client.abort()


def of(client: ProtocolClient, cls: type[T], start: int = 0) -> list[T]:
    """Every message of one class that ``client`` received (from index ``start`` on)."""
    return [m for m in client.received[start:] if isinstance(m, cls)]


async def ask(client: ProtocolClient, message: dict[str, Any], cls: type[T]) -> T:
    """Send a request and check that its reply is a ``cls``."""
    reply = await client.request(message)
    assert isinstance(reply, cls), reply
    return reply


async def expect(
    client: ProtocolClient,
    cls: type[T],
    match: Callable[[T], bool] = lambda m: True,
    *,
    start: int = 0,
    timeout: float = 5.0,
) -> T:
    """Wait for the first ``cls`` message (from index ``start`` on) that matches."""
    found = await client.wait_for(
        lambda m: isinstance(m, cls) and match(m), start=start, timeout=timeout
    )
    assert isinstance(found, cls)
    return found


async def settle(*clients: ProtocolClient) -> None:
    """A heartbeat round trip on each client, in order (see the module docstring)."""
    for client in clients:
        await ask(client, {"type": "heartbeat"}, HeartbeatAck)


async def join(*clients: ProtocolClient, room: str = ROOM) -> None:
    for client in clients:
        await ask(client, {"type": "room.join", "room": room}, RoomJoined)


async def send(
    client: ProtocolClient, body: Any, temp_id: str | None = None, room: str = ROOM
) -> MessageAck:
    message: dict[str, Any] = {"type": "message.send", "room": room, "body": body}
    if temp_id is not None:
        message["temp_id"] = temp_id
    return await ask(client, message, MessageAck)


async def refused(
    client: ProtocolClient, message: dict[str, Any], code: str, field: str | None
) -> None:
    """The request gets an error with ``code`` and ``field``, and the connection survives."""
    reply = await client.request(message)
    assert isinstance(reply, Error), reply
    assert (reply.code, reply.field) == (code, field), reply
    await settle(client)
    assert not client.closed.is_set()


async def trio(connect: Connect) -> tuple[ProtocolClient, ProtocolClient, ProtocolClient]:
    """alice on phone and laptop, bob on web, all in ROOM."""
    phone = await connect("alice", "phone")
    laptop = await connect("alice", "laptop")
    bob = await connect("bob", "web")
    await join(phone, laptop, bob)
    return phone, laptop, bob


# --- sending -----------------------------------------------------------------------------


async def test_conversation_reaches_every_other_session_once_and_in_order(
    connect: Connect,
) -> None:
    phone, laptop, bob = await trio(connect)
    script = [
        (phone, "hi bob", "t1"),
        (bob, "hi alice", "t2"),
        (laptop, {"text": "from my laptop", "n": [1, 2]}, "t3"),
        (phone, "bye", None),
    ]
    acks: list[MessageAck] = []
    for sender, body, temp_id in script:
        ack = await send(sender, body, temp_id)
        assert (ack.room, ack.temp_id, ack.duplicate) == (ROOM, temp_id, False)
        assert ack.ref is not None and ack.id
        acks.append(ack)
    assert [a.offset for a in acks] == [1, 2, 3, 4]  # strictly increasing from 1
    assert len({a.epoch for a in acks}) == 1 and len({a.id for a in acks}) == 4
    await settle(phone, laptop, bob)  # each send was published before its ack
    for client in (phone, laptop, bob):
        got = of(client, MessageEvent)
        # Every message but the ones this session sent itself, once each, in order.
        expected = [
            a for (sender, _, _), a in zip(script, acks, strict=True) if sender is not client
        ]
        assert [m.id for m in got] == [a.id for a in expected]
        assert [m.offset for m in got] == [a.offset for a in expected]
        assert all(m.epoch == acks[0].epoch and m.room == ROOM for m in got)
    # alice's laptop sees what her phone sent, with the phone named as the device.
    from_phone = of(laptop, MessageEvent)[0]
    assert (from_phone.user, from_phone.device) == ("alice", "phone")
    assert (from_phone.body, from_phone.temp_id) == ("hi bob", "t1")
    assert from_phone.time > 0
    structured = of(bob, MessageEvent)[1]
    assert structured.body == {"text": "from my laptop", "n": [1, 2]}
    assert (structured.user, structured.device) == ("alice", "laptop")
    # The sending session got acks only, never a copy of its own message.
    assert {m.id for m in of(phone, MessageEvent)} == {acks[1].id, acks[2].id}


async def test_resending_a_temp_id_is_acked_again_and_delivered_once(connect: Connect) -> None:
    phone, laptop, bob = await trio(connect)
    first = await send(phone, "once", "t1")
    again = await send(phone, "once", "t1")
    assert again.duplicate and not first.duplicate
    assert (again.id, again.offset, again.epoch, again.temp_id) == (
        first.id,
        first.offset,
        first.epoch,
        "t1",
    )
    # The same temp id from alice's other device is the same user: still a duplicate.
    from_laptop = await send(laptop, "once", "t1")
    assert from_laptop.duplicate and from_laptop.id == first.id
    # Another user's temp ids are their own.
    bobs = await send(bob, "mine", "t1")
    assert not bobs.duplicate and bobs.offset == 2  # duplicates took no offset
    await expect(phone, MessageEvent, lambda m: m.id == bobs.id)
    await settle(phone, laptop, bob)
    assert [m.id for m in of(bob, MessageEvent)] == [first.id]
    assert [m.id for m in of(laptop, MessageEvent)] == [first.id, bobs.id]
    assert [m.id for m in of(phone, MessageEvent)] == [bobs.id]


async def test_sending_outside_the_room_is_not_in_room(connect: Connect) -> None:
    phone, laptop, bob = await trio(connect)
    carol = await connect("carol", "web")
    await refused(
        carol, {"type": "message.send", "room": ROOM, "body": "hello?"}, "NOT_IN_ROOM", "room"
    )
    await settle(phone, laptop, bob)
    assert not any(of(c, MessageEvent) for c in (phone, laptop, bob))


# --- edits and deletes -------------------------------------------------------------------


async def test_author_edits_and_deletes(connect: Connect) -> None:
    phone, laptop, bob = await trio(connect)
    sent = await send(phone, "helo")
    edited = await ask(
        phone,
        {"type": "message.edit", "room": ROOM, "id": sent.id, "body": "hello"},
        MessageEdited,
    )
    assert edited.ref is not None  # the editor's copy is the reply
    assert (edited.id, edited.offset, edited.body, edited.user) == (sent.id, 2, "hello", "alice")
    for other in (laptop, bob):
        seen = await expect(other, MessageEdited)
        assert seen.ref is None and (seen.id, seen.offset, seen.body) == (sent.id, 2, "hello")
    deleted = await ask(
        phone, {"type": "message.delete", "room": ROOM, "id": sent.id}, MessageDeleted
    )
    assert deleted.ref is not None and (deleted.id, deleted.offset) == (sent.id, 3)
    for other in (laptop, bob):
        gone = await expect(other, MessageDeleted)
        assert gone.ref is None and (gone.id, gone.offset, gone.user) == (sent.id, 3, "alice")
    # A deleted message can be neither edited nor deleted again.
    edit = {"type": "message.edit", "room": ROOM, "id": sent.id, "body": "x"}
    await refused(phone, edit, "MESSAGE_NOT_FOUND", "id")
    delete = {"type": "message.delete", "room": ROOM, "id": sent.id}
    await refused(phone, delete, "MESSAGE_NOT_FOUND", "id")
    await settle(laptop, bob)
    for client in (laptop, bob):
        assert len(of(client, MessageEdited)) == 1 and len(of(client, MessageDeleted)) == 1
    # The author's session got each event once: as the reply.
    assert of(phone, MessageEdited) == [edited] and of(phone, MessageDeleted) == [deleted]


async def test_another_user_may_not_edit_or_delete(connect: Connect) -> None:
    phone, laptop, bob = await trio(connect)
    sent = await send(phone, "mine")
    edit = {"type": "message.edit", "room": ROOM, "id": sent.id, "body": "yours"}
    await refused(bob, edit, "NOT_AUTHOR", "id")
    await refused(bob, {"type": "message.delete", "room": ROOM, "id": sent.id}, "NOT_AUTHOR", "id")
    await settle(phone, laptop)
    for client in (phone, laptop, bob):
        assert not of(client, MessageEdited) and not of(client, MessageDeleted)
    history = await ask(bob, {"type": "room.history", "room": ROOM}, RoomHistoryReply)
    assert [(m.id, m.body) for m in history.messages] == [(sent.id, "mine")]
    assert history.offset == 1  # refused changes took no offset
    # alice's other device is alice: it may.
    await ask(laptop, edit, MessageEdited)


async def test_unknown_message_id_is_message_not_found(connect: Connect) -> None:
    phone, _, _ = await trio(connect)
    await send(phone, "something")
    edit = {"type": "message.edit", "room": ROOM, "id": "no-such-id", "body": "x"}
    await refused(phone, edit, "MESSAGE_NOT_FOUND", "id")
    delete = {"type": "message.delete", "room": ROOM, "id": "no-such-id"}
    await refused(phone, delete, "MESSAGE_NOT_FOUND", "id")


def token(sub: str, **claims: object) -> str:
    return jwt.encode({"sub": sub, "exp": time.time() + 60, **claims}, SECRET, algorithm="HS256")


async def test_moderator_may_edit_and_delete_anyones_message(make_server: ServerFactory) -> None:
    running = await make_server(auth_mode="jwt", jwt_secret=SECRET)
    clients = []
    for sub, claims in (("alice", {}), ("mod", {"moderator": True}), ("bob", {})):
        client = await ProtocolClient.connect(
            f"{running.url}?token={token(sub, **claims)}&device=d"
        )
        await client.wait_for("welcome")
        clients.append(client)
    alice, mod, bob = clients
    try:
        await join(alice, mod, bob)
        sent = await send(alice, "spam")
        edit = {"type": "message.edit", "room": ROOM, "id": sent.id, "body": "[removed]"}
        await refused(bob, edit, "NOT_AUTHOR", "id")  # a plain token may not
        edited = await ask(mod, edit, MessageEdited)
        assert (edited.user, edited.body) == ("mod", "[removed]")
        seen = await expect(alice, MessageEdited)
        assert (seen.id, seen.user, seen.ref) == (sent.id, "mod", None)
        deleted = await ask(
            mod, {"type": "message.delete", "room": ROOM, "id": sent.id}, MessageDeleted
        )
        assert (deleted.id, deleted.user, deleted.offset) == (sent.id, "mod", 3)
        assert (await expect(bob, MessageDeleted)).id == sent.id
    finally:
        for client in clients:
            await client.close()


# --- receipts and read state ---------------------------------------------------------------


async def test_receipts_reach_the_author_and_never_go_back(connect: Connect) -> None:
    phone, laptop, bob = await trio(connect)
    await send(phone, "one")
    await send(laptop, "two")

    async def receipt(kind: str, offset: int) -> None:
        await bob.send({"type": f"receipt.{kind}", "room": ROOM, "offset": offset})
        await settle(bob, phone, laptop)  # no reply; errors would show up here

    await receipt("delivered", 1)
    # A receipt reaches the author through the store and pub/sub: a heartbeat's round trip
    # does not wait for that on Valkey, so wait for the receipts a forward move sends.
    await until(lambda: all(of(c, Receipt) for c in (phone, laptop)), "the delivered receipts")
    for client in (phone, laptop):  # every session of the author
        assert [(r.kind, r.user, r.offset, r.room) for r in of(client, Receipt)] == [
            ("delivered", "bob", 1, ROOM)
        ]
    assert not of(bob, Receipt) and not of(bob, Error)
    # Not forward: nothing.
    await receipt("delivered", 1)
    await receipt("delivered", 0)
    assert len(of(phone, Receipt)) == 1 and len(of(laptop, Receipt)) == 1
    # Seen moves past both messages, and implies delivered.
    await receipt("seen", 2)
    await until(lambda: len(of(phone, Receipt)) >= 2, "the seen receipt")
    assert [(r.kind, r.offset) for r in of(phone, Receipt)] == [("delivered", 1), ("seen", 2)]
    await receipt("delivered", 2)  # already delivered through seen: nothing
    await receipt("seen", 1)  # backwards: nothing
    await until(lambda: len(of(laptop, Receipt)) >= 2, "the seen receipt on the laptop")
    assert len(of(phone, Receipt)) == 2 and len(of(laptop, Receipt)) == 2
    # Never past the stream's latest offset.
    mark = len(phone.received)
    await send(laptop, "three")
    await receipt("seen", 99)
    await until(lambda: bool(of(phone, Receipt, mark)), "the seen receipt up to three")
    assert [(r.kind, r.offset) for r in of(phone, Receipt, mark)] == [("seen", 3)]
    # Readers of only their own messages notify nobody.
    await send(bob, "bob speaks")
    mark_bob = len(bob.received)
    await phone.send({"type": "receipt.seen", "room": ROOM, "offset": 3})
    await settle(phone, bob)
    assert not of(bob, Receipt, mark_bob)
    # Receipts are for members only.
    carol = await connect("carol", "web")
    await refused(carol, {"type": "receipt.seen", "room": ROOM, "offset": 1}, "NOT_IN_ROOM", "room")


async def test_room_read_counts_unread_messages_by_others(connect: Connect) -> None:
    phone, _, bob = await trio(connect)
    read = {"type": "room.read", "room": ROOM}
    empty = await ask(bob, read, RoomReadReply)
    assert (empty.offset, empty.last_read, empty.unread) == (0, 0, 0) and empty.epoch
    sent = [await send(phone, f"m{i}") for i in range(3)]
    state = await ask(bob, read, RoomReadReply)
    assert (state.offset, state.last_read, state.unread) == (3, 0, 3)
    assert state.epoch == sent[0].epoch
    await ask(phone, {"type": "message.delete", "room": ROOM, "id": sent[0].id}, MessageDeleted)
    state = await ask(bob, read, RoomReadReply)
    assert (state.offset, state.unread) == (4, 2)  # deleted messages are not unread
    await bob.send({"type": "receipt.seen", "room": ROOM, "offset": 2})
    state = await ask(bob, read, RoomReadReply)
    assert (state.last_read, state.unread) == (2, 1)
    # Sending marks the room read up to one's own message.
    mine = await send(bob, "caught up")
    state = await ask(bob, read, RoomReadReply)
    assert (state.offset, state.last_read, state.unread) == (5, mine.offset, 0)
    alices = await ask(phone, read, RoomReadReply)
    assert (alices.last_read, alices.unread) == (3, 1)  # her own three are read; bob's is not


async def test_history_is_current_state_with_limit_and_before(connect: Connect) -> None:
    phone, _, bob = await trio(connect)
    sent = [await send(phone, f"m{i}", f"t{i}") for i in range(1, 6)]  # offsets 1..5
    await ask(
        phone,
        {"type": "message.edit", "room": ROOM, "id": sent[1].id, "body": "m2 (edited)"},
        MessageEdited,
    )
    await ask(phone, {"type": "message.delete", "room": ROOM, "id": sent[2].id}, MessageDeleted)

    async def history(**extra: Any) -> RoomHistoryReply:
        return await ask(bob, {"type": "room.history", "room": ROOM, **extra}, RoomHistoryReply)

    full = await history()
    assert (full.room, full.epoch, full.offset) == (ROOM, sent[0].epoch, 7)
    assert [(m.offset, m.body) for m in full.messages] == [
        (1, "m1"),
        (2, "m2 (edited)"),
        (4, "m4"),
        (5, "m5"),
    ]
    first = full.messages[0]
    assert first.id == sent[0].id
    assert (first.user, first.device, first.temp_id) == ("alice", "phone", "t1")
    assert [m.offset for m in (await history(limit=2)).messages] == [4, 5]
    assert [m.offset for m in (await history(before=4)).messages] == [1, 2]
    assert [m.offset for m in (await history(before=4, limit=1)).messages] == [2]
    assert (await history(before=1)).messages == []
    await refused(bob, {"type": "room.history", "room": ROOM, "limit": 0}, "BAD_REQUEST", "limit")
    carol = await connect("carol", "web")
    await refused(carol, {"type": "room.history", "room": ROOM}, "NOT_IN_ROOM", "room")


@pytest.mark.gateway_backends("memory")
async def test_old_history_goes_by_age_in_rooms_nobody_touches(
    make_server: ServerFactory, dial: Dial
) -> None:
    # The memory store's history shrinks back by itself after history_ttl: the node's
    # housekeeping trims every room and forgets the emptied streams. (On Valkey every
    # stream key carries the ttl; Redis drops it.)
    running = await make_server(history_ttl=0.3, lease_interval=0.05)
    alice = await dial(running, "alice", "phone")
    rooms = [f"r{i}" for i in range(20)]
    for room in rooms:
        await ask(alice, {"type": "room.join", "room": room}, RoomJoined)
        await send(alice, "soon gone", room=room)
    store = running.node.backplane.messages
    assert isinstance(store, MemoryMessageStore)
    logs = [store.book.log(RoomId(r)) for r in rooms]
    assert sum(len(log.events) for log in logs if log is not None) == 20
    await until(lambda: all(store.book.log(RoomId(r)) is None for r in rooms), "history gone")


# --- typing --------------------------------------------------------------------------------


async def test_typing_starts_ignores_quick_renewals_and_stops_by_itself(
    make_server: ServerFactory, dial: Dial
) -> None:
    running = await make_server(typing_timeout=0.2, typing_throttle=1.0)
    alice = await dial(running, "alice", "phone")
    bob = await dial(running, "bob", "web")
    carol = await dial(running, "carol", "web")
    await join(alice, bob, carol)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await alice.send({"type": "typing.start", "room": ROOM})
    on = await expect(bob, TypingEvent)
    assert (on.room, on.users) == (ROOM, ["alice"])
    await alice.send({"type": "typing.start", "room": ROOM})  # within the throttle: ignored
    await settle(alice, bob)
    assert len(of(bob, TypingEvent)) == 1
    # carol starts too: the set grows, and alice hears of it.
    await carol.send({"type": "typing.start", "room": ROOM})
    both = await expect(bob, TypingEvent, lambda t: len(t.users) == 2)
    assert sorted(both.users) == ["alice", "carol"]
    await expect(alice, TypingEvent, lambda t: sorted(t.users) == ["alice", "carol"])
    # No renewals: each indicator stops by itself, not before typing_timeout.
    off = await expect(bob, TypingEvent, lambda t: t.users == [], timeout=3)
    assert off.room == ROOM
    assert loop.time() - started >= 0.2 * 0.95
    await settle(alice, bob)  # nothing older comes after the empty set
    events = of(bob, TypingEvent)
    assert [t.seq for t in events] == sorted({t.seq for t in events})
    users = [t.users for t in events]
    # The two deadlines may fire in one tick and stop in either order (on Valkey); if the
    # last stop is published first, the set between is dropped as older. Never a stale set.
    assert users[:2] == [["alice"], ["alice", "carol"]]
    assert users[2:] in ([["carol"], []], [["alice"], []], [[]])


async def test_typing_start_stop_alternated_is_throttled_too(
    make_server: ServerFactory, dial: Dial
) -> None:
    # A client flipping typing.start / typing.stop as fast as it can: the room hears one
    # start and one stop per throttle, not one event per frame (a stop is never held back).
    running = await make_server(typing_throttle=5.0)
    alice = await dial(running, "alice", "phone")
    bob = await dial(running, "bob", "web")
    await join(alice, bob)
    for _ in range(40):
        await alice.send({"type": "typing.start", "room": ROOM})
        await alice.send({"type": "typing.stop", "room": ROOM})
    await expect(bob, TypingEvent, lambda t: t.users == [])
    await settle(alice, bob)
    assert [t.users for t in of(bob, TypingEvent)] == [["alice"], []]


async def test_a_start_right_after_a_stop_is_deferred_not_lost(
    make_server: ServerFactory, dial: Dial
) -> None:
    running = await make_server(typing_throttle=0.3)
    alice = await dial(running, "alice", "phone")
    bob = await dial(running, "bob", "web")
    await join(alice, bob)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await alice.send({"type": "typing.start", "room": ROOM})
    await alice.send({"type": "typing.stop", "room": ROOM})
    await alice.send({"type": "typing.start", "room": ROOM})  # within the throttle: held
    await expect(bob, TypingEvent, lambda t: t.users == [])
    again = await expect(
        bob, TypingEvent, lambda t: t is not of(bob, TypingEvent)[0] and t.users == ["alice"]
    )
    assert loop.time() - started >= 0.3 * 0.9  # when the throttle was over, not before
    assert [t.users for t in of(bob, TypingEvent)] == [["alice"], [], ["alice"]]
    assert again.room == ROOM


async def test_typing_is_cleared_by_sending(connect: Connect) -> None:
    phone, _, bob = await trio(connect)
    await phone.send({"type": "typing.start", "room": ROOM})
    assert (await expect(bob, TypingEvent)).users == ["alice"]
    ack = await send(phone, "done typing")
    cleared = await expect(bob, TypingEvent, lambda t: t.users == [])
    assert cleared.room == ROOM
    message = await expect(bob, MessageEvent)
    assert message.id == ack.id
    assert bob.received.index(message) < bob.received.index(cleared)


async def test_typing_is_cleared_by_leaving(connect: Connect) -> None:
    phone, _, bob = await trio(connect)
    await phone.send({"type": "typing.start", "room": ROOM})
    await expect(bob, TypingEvent)
    await ask(phone, {"type": "room.leave", "room": ROOM}, RoomLeft)
    assert (await expect(bob, TypingEvent, lambda t: t.users == [])).room == ROOM
    await refused(phone, {"type": "typing.start", "room": ROOM}, "NOT_IN_ROOM", "room")


@pytest.mark.parametrize("how", ["closed", "half-open"])
async def test_typing_is_cleared_when_the_transport_is_lost(
    make_server: ServerFactory, dial: Dial, how: str
) -> None:
    running = await make_server(grace=30)  # the session stays, in grace, all test long
    alice = await dial(running, "alice", "phone")
    bob = await dial(running, "bob", "web")
    await join(alice, bob)
    await alice.send({"type": "typing.start", "room": ROOM})
    await expect(bob, TypingEvent)
    if how == "closed":
        alice.abort()  # the server sees the TCP connection go
    else:
        alice.ws.transport.pause_reading()  # pings go unanswered: found by the heartbeat
    cleared = await expect(bob, TypingEvent, lambda t: t.users == [], timeout=3)
    assert cleared.room == ROOM and not of(bob, MemberLeft)


# --- bad input -----------------------------------------------------------------------------


async def test_body_over_max_message_bytes_is_too_large(connect: Connect) -> None:
    phone, laptop, bob = await trio(connect)
    big = {"type": "message.send", "room": ROOM, "body": "x" * 20_000}  # default limit 16 KiB
    await refused(phone, big, "MESSAGE_TOO_LARGE", "body")
    nested = {"type": "message.send", "room": ROOM, "body": {"k": "y" * 20_000}}
    await refused(phone, nested, "MESSAGE_TOO_LARGE", "body")
    await settle(laptop, bob)
    assert not of(laptop, MessageEvent) and not of(bob, MessageEvent)
    assert (await send(phone, "small")).offset == 1  # refused sends took no offset


@pytest.mark.parametrize("body", [42, 1.5, True, None, ["a", "list"]], ids=repr)
async def test_body_of_another_json_type_is_a_bad_request(connect: Connect, body: Any) -> None:
    phone, _, bob = await trio(connect)
    bad = {"type": "message.send", "room": ROOM, "body": body}
    await refused(phone, bad, "BAD_REQUEST", "body")
    await settle(bob)
    assert not of(bob, MessageEvent)


async def test_over_the_message_rate_is_refused_and_not_delivered(
    make_server: ServerFactory, dial: Dial
) -> None:
    running = await make_server(message_rate=0.1, message_burst=3)
    alice = await dial(running, "alice", "phone")
    bob = await dial(running, "bob", "web")
    await join(alice, bob)
    acks = [await send(alice, f"m{i}") for i in range(3)]
    over = {"type": "message.send", "room": ROOM, "body": "one too many"}
    await refused(alice, over, "MESSAGE_RATE_LIMITED", None)
    await refused(alice, over, "MESSAGE_RATE_LIMITED", None)
    # Other requests are not held back by the message rate.
    await ask(alice, {"type": "room.read", "room": ROOM}, RoomReadReply)
    await settle(bob)
    assert [m.id for m in of(bob, MessageEvent)] == [a.id for a in acks]
    assert [m.body for m in of(bob, MessageEvent)] == ["m0", "m1", "m2"]
