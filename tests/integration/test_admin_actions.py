"""The backend's actions (``node.admin``, which the HTTP API calls), cluster-wide: on memory
one node; on Valkey two nodes on one store, the clients on the second and the action called
on the first, so every session action travels as an ``admin`` notice to its owner.

Kick (from the server, from a room, one session of two), disconnect (close 4010, the SDK
comes back as a new session), watch and unwatch on a user's behalf, messages from the
backend (system and as a user, an idempotency key used twice, edit, delete), and the
refusals. Absence checks are made by ordering: a later, observed event proves an earlier
one would already have arrived.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import jwt
import pytest

from presenced.client import Backoff, Client, Connected, Disconnected, Event, ForcedLeave
from presenced.protocol.chat import MessageAck, MessageDeleted, MessageEdited, MessageEvent
from presenced.protocol.codes import CloseCode, ErrorCode
from presenced.protocol.messages import (
    Error,
    ForceLeave,
    MemberJoined,
    MemberLeft,
    MemberUpdated,
    Presence,
    PresenceSubscribed,
    PresenceUnsubscribed,
    RoomJoined,
    RoomMembersReply,
    RoomRemoved,
    Welcome,
)
from presenced.server.admin import AdminRefused
from presenced.server.serve import RunningServer
from presenced.store.base import SessionStore
from presenced.testing import ProtocolClient
from presenced.typing import SessionId
from tests.conftest import ServerFactory
from tests.support.waiting import until

FAST_BACKOFF = Backoff(initial=0.05, maximum=0.2)
SECRET = "admin-actions-test-secret-of-32-bytes-or-more"


async def _nodes(make_server: ServerFactory, **settings: Any) -> list[RunningServer]:
    """One node on memory; two on one Valkey (the second named "second")."""
    first = await make_server(grace=5, **settings)
    redis = first.node.settings.redis
    if redis is None:
        return [first]
    prefix = first.node.settings.redis_prefix
    second = await make_server(
        grace=5, redis=redis, redis_prefix=prefix, node_id="second", **settings
    )
    return [first, second]


async def _client(node: RunningServer, user: str, device: str = "d") -> ProtocolClient:
    client = await ProtocolClient.connect(f"{node.url}?user={user}&device={device}")
    await client.wait_for("welcome")
    return client


def _welcome(client: ProtocolClient) -> Welcome:
    welcome = client.of_type("welcome")[0]
    assert isinstance(welcome, Welcome)
    return welcome


async def _join(client: ProtocolClient, room: str) -> None:
    assert isinstance(await client.request({"type": "room.join", "room": room}), RoomJoined)


async def _settled(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll an async condition (a store read) until it holds, bounded by a timeout: an
    action on a session of another node is done when that node has done it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5.0
    while not await check():
        assert loop.time() < deadline, f"not within 5 s: {what}"
        await asyncio.sleep(0.02)  # poll pacing; the deadline bounds the wait


def _left(user: str, reason: str) -> Any:
    return lambda m: isinstance(m, MemberLeft) and m.user == user and m.reason == reason


async def _gone(store: SessionStore, session_id: SessionId) -> bool:
    return await store.get(session_id) is None


# --- kick ------------------------------------------------------------------------------------


async def test_kick_from_the_server_ends_every_session_connected_or_in_grace(
    make_server: ServerFactory,
) -> None:
    nodes = await _nodes(make_server)
    admin = nodes[0].node.admin
    bob = await _client(nodes[0], "bob")
    phone = await _client(nodes[-1], "alice", "phone")
    laptop = await _client(nodes[-1], "alice", "laptop")
    for client in (bob, phone, laptop):
        await _join(client, "r")
    laptop_token = _welcome(laptop).resume_token
    laptop.abort()  # in grace on its node, still in the room

    kicked = await admin.kick(user="alice", message="see the rules")

    assert kicked.sessions == 2
    assert set(kicked.session_ids) == {_welcome(phone).session, _welcome(laptop).session}
    leave = await phone.wait_for("force_leave")
    assert isinstance(leave, ForceLeave)
    assert (leave.reason, leave.message) == ("kicked", "see the rules")
    assert await phone.wait_closed() == CloseCode.FORCE_LEAVE
    await bob.wait_for(_left("alice", "kicked"))
    store = nodes[0].node.backplane.sessions
    laptop_id = SessionId(_welcome(laptop).session)
    await _settled(lambda: _gone(store, laptop_id), "the session in grace ended")
    # The session in grace ended too: its resume opens a new one.
    back = await ProtocolClient.connect(
        f"{nodes[0].url}?user=alice&device=laptop&resume={laptop_token}"
    )
    welcome = await back.wait_for("welcome")
    assert isinstance(welcome, Welcome) and not welcome.resumed and welcome.rooms == []
    # Nobody left to kick.
    assert (await admin.kick(user="nobody")).sessions == 0
    for client in (bob, back):
        await client.close()


async def test_kick_one_session_of_a_user_with_two_devices(make_server: ServerFactory) -> None:
    nodes = await _nodes(make_server)
    bob = await _client(nodes[0], "bob")
    phone = await _client(nodes[-1], "alice", "phone")
    laptop = await _client(nodes[-1], "alice", "laptop")
    for client in (bob, phone, laptop):
        await _join(client, "r")
    phone_id = _welcome(phone).session

    # Another user's session id, named with the wrong user, is not found.
    assert (await nodes[0].node.admin.kick(user="bob", session=phone_id)).sessions == 0
    kicked = await nodes[0].node.admin.kick(user="alice", session=phone_id)

    assert kicked.session_ids == (SessionId(phone_id),)
    assert await phone.wait_closed() == CloseCode.FORCE_LEAVE
    await bob.wait_for(
        lambda m: isinstance(m, MemberUpdated) and m.user == "alice" and m.devices == 1
    )
    # The laptop carries on, still in the room.
    sent = await laptop.request({"type": "message.send", "room": "r", "body": "still here"})
    assert not isinstance(sent, Error)
    assert not [m for m in bob.received if isinstance(m, MemberLeft)]
    for client in (bob, laptop):
        await client.close()


async def test_kick_from_a_room_keeps_the_client_connected(make_server: ServerFactory) -> None:
    nodes = await _nodes(make_server)
    bob = await _client(nodes[0], "bob")
    alice = await _client(nodes[-1], "alice")
    await _join(bob, "r")
    await _join(alice, "r")
    await _join(alice, "other")

    kicked = await nodes[0].node.admin.kick(user="alice", room="r", message="off topic")

    assert kicked.session_ids == (SessionId(_welcome(alice).session),)
    removed = await alice.wait_for("room.removed")
    assert isinstance(removed, RoomRemoved)
    assert (removed.room, removed.reason, removed.message) == ("r", "kicked", "off topic")
    await bob.wait_for(_left("alice", "kicked"))
    refused = await alice.request({"type": "message.send", "room": "r", "body": "hi"})
    assert isinstance(refused, Error) and refused.code == ErrorCode.NOT_IN_ROOM
    assert not isinstance(
        await alice.request({"type": "message.send", "room": "other", "body": "hi"}), Error
    )
    members = await bob.request({"type": "room.members", "room": "r"})
    assert isinstance(members, RoomMembersReply) and [m.user for m in members.members] == ["bob"]
    # Not in the room any more: a second kick from it finds nothing; joining again is allowed.
    assert (await nodes[0].node.admin.kick(user="alice", room="r")).sessions == 0
    await _join(alice, "r")
    for client in (bob, alice):
        await client.close()


async def test_the_sdk_forgets_a_room_it_was_removed_from_and_does_not_rejoin_it(
    make_server: ServerFactory,
) -> None:
    nodes = await _nodes(make_server)
    bob = await _client(nodes[0], "bob")
    await _join(bob, "r")
    removals: list[Event] = []
    alice = Client(nodes[-1].url, device="d", user="alice", backoff=FAST_BACKOFF)
    alice.on("room.removed", removals.append)
    async with alice:
        await alice.join("r")
        await alice.join("other")
        await nodes[0].node.admin.kick(user="alice", room="r", message="off topic")
        await until(lambda: bool(removals), "room.removed surfaced")
        assert isinstance(removals[0], RoomRemoved) and removals[0].room == "r"
        assert alice.rooms == frozenset({"other"}) and alice.member_list("r") is None

        reconnected: list[Event] = []
        alice.on("connected", reconnected.append)
        alice.simulate_drop()
        await until(lambda: bool(reconnected), "resumed")
        back = reconnected[0]
        assert isinstance(back, Connected) and back.welcome.resumed
        assert back.welcome.rooms == ["other"] and alice.rooms == frozenset({"other"})
        members = await bob.request({"type": "room.members", "room": "r"})
        assert isinstance(members, RoomMembersReply)
        assert [m.user for m in members.members] == ["bob"]
    await bob.close()


async def test_a_session_kicked_from_a_room_while_in_grace_resumes_without_it(
    make_server: ServerFactory,
) -> None:
    nodes = await _nodes(make_server)
    alice = await _client(nodes[-1], "alice")
    await _join(alice, "r")
    await _join(alice, "other")
    token = _welcome(alice).resume_token
    alice.abort()
    kicked = await nodes[0].node.admin.kick(user="alice", room="r")
    assert kicked.sessions == 1
    store = nodes[0].node.backplane.sessions
    sid = SessionId(_welcome(alice).session)

    async def out_of_the_room() -> bool:
        record = await store.get(sid)
        return record is not None and "r" not in record.rooms

    await _settled(out_of_the_room, "the session's node took it out of the room")
    back = await ProtocolClient.connect(f"{nodes[0].url}?user=alice&device=d&resume={token}")
    welcome = await back.wait_for("welcome")
    assert isinstance(welcome, Welcome)
    assert welcome.resumed and welcome.rooms == ["other"]
    await back.close()


# --- disconnect ------------------------------------------------------------------------------


async def test_disconnect_closes_4010_and_the_sdk_comes_back_as_a_new_session(
    make_server: ServerFactory,
) -> None:
    nodes = await _nodes(make_server, auth_mode="jwt", jwt_secret=SECRET)
    calls = 0

    async def token() -> str:
        nonlocal calls
        calls += 1
        return jwt.encode({"sub": "alice"}, SECRET, algorithm="HS256")

    bob_token = jwt.encode({"sub": "bob"}, SECRET, algorithm="HS256")
    bob = await ProtocolClient.connect(f"{nodes[0].url}?token={bob_token}&device=d")
    await bob.wait_for("welcome")
    await _join(bob, "r")
    events: list[Event] = []
    alice = Client(nodes[-1].url, device="d", token=token, backoff=FAST_BACKOFF)
    alice.on("*", events.append)
    async with alice:
        await alice.join("r")
        first = alice.session

        done = await nodes[0].node.admin.disconnect("alice")

        assert done.session_ids == (first,)
        await until(lambda: any(isinstance(e, Connected) for e in events[1:]), "back")
        lost = next(e for e in events if isinstance(e, Disconnected))
        assert lost.code == CloseCode.DISCONNECTED and lost.will_reconnect
        back = next(e for e in events[1:] if isinstance(e, Connected))
        # A new session, not a resume (none was asked for), with fresh credentials.
        assert isinstance(back, Connected) and not back.welcome.resumed
        assert back.welcome.resume_error is None
        assert alice.session != first and calls == 2
        assert not any(isinstance(e, ForceLeave | ForcedLeave) for e in events)
        assert alice.rooms == frozenset({"r"})  # re-joined as after a failed resume
        await bob.wait_for(_left("alice", "disconnected"))
        await bob.wait_for(lambda m: isinstance(m, MemberJoined) and m.user == "alice")
    await bob.close()


async def test_disconnect_ends_sessions_in_grace_and_is_not_resumable(
    make_server: ServerFactory,
) -> None:
    nodes = await _nodes(make_server)
    bob = await _client(nodes[0], "bob")
    await _join(bob, "r")
    phone = await _client(nodes[-1], "alice", "phone")
    tablet = await _client(nodes[-1], "alice", "tablet")
    await _join(phone, "r")
    token = _welcome(tablet).resume_token
    tablet.abort()

    done = await nodes[0].node.admin.disconnect(user="alice")

    assert done.sessions == 2
    store = nodes[0].node.backplane.sessions
    tablet_id = SessionId(_welcome(tablet).session)
    await _settled(lambda: _gone(store, tablet_id), "the session in grace ended")
    assert await phone.wait_closed() == CloseCode.DISCONNECTED
    assert not phone.of_type("force_leave")
    await bob.wait_for(_left("alice", "disconnected"))
    back = await ProtocolClient.connect(f"{nodes[0].url}?user=alice&device=tablet&resume={token}")
    welcome = await back.wait_for("welcome")
    assert isinstance(welcome, Welcome) and not welcome.resumed
    assert (await nodes[0].node.admin.disconnect(session=welcome.session)).sessions == 1
    assert await back.wait_closed() == CloseCode.DISCONNECTED
    await bob.close()


# --- watch -----------------------------------------------------------------------------------


async def test_watch_and_unwatch_on_a_users_behalf(make_server: ServerFactory) -> None:
    nodes = await _nodes(make_server)
    alice = await _client(nodes[-1], "alice")

    watched = await nodes[0].node.admin.watch("alice", ["carol"])

    assert watched.sessions == 1
    told = await alice.wait_for("presence.subscribed")
    assert isinstance(told, PresenceSubscribed) and told.ref is None
    assert [(p.user, p.online) for p in told.users] == [("carol", False)]
    carol = await _client(nodes[0], "carol")
    online = await alice.wait_for(lambda m: isinstance(m, Presence) and m.online)
    assert isinstance(online, Presence) and online.user == "carol"

    assert (await nodes[0].node.admin.unwatch("alice", ["carol"])).sessions == 1
    gone = await alice.wait_for("presence.unsubscribed")
    assert isinstance(gone, PresenceUnsubscribed) and gone.users == ["carol"] and gone.ref is None
    await carol.send({"type": "logout"})  # carol goes offline at once: alice is not told
    await carol.wait_closed()
    await nodes[0].node.admin.watch("alice", ["dave"])
    await alice.wait_for(lambda m: isinstance(m, PresenceSubscribed) and m.users[0].user == "dave")
    assert [m.online for m in alice.received if isinstance(m, Presence)] == [True]
    assert (await nodes[0].node.admin.watch("nobody", ["carol"])).sessions == 0
    await alice.close()


async def test_the_sdk_keeps_the_users_the_backend_watched_for_it(
    make_server: ServerFactory,
) -> None:
    nodes = await _nodes(make_server)
    told: list[Event] = []
    connected: list[Event] = []
    alice = Client(nodes[-1].url, device="d", user="alice", backoff=FAST_BACKOFF)
    alice.on("presence.subscribed", told.append)
    alice.on("connected", connected.append)
    async with alice:
        await nodes[0].node.admin.watch("alice", ["carol"])
        await until(lambda: bool(told), "presence.subscribed surfaced")
        # A disconnect makes a new session: the SDK subscribes it to carol by itself.
        await nodes[0].node.admin.disconnect("alice")
        await until(lambda: len(connected) == 2, "back as a new session")
        assert alice.session is not None
        record = await nodes[0].node.backplane.sessions.get(SessionId(alice.session))
        assert record is not None and record.subscriptions == {"carol"}


async def test_a_watch_over_the_limit_is_refused_whole(make_server: ServerFactory) -> None:
    nodes = await _nodes(make_server, max_subscriptions_per_session=2)
    phone = await _client(nodes[-1], "alice", "phone")
    laptop = await _client(nodes[0], "alice", "laptop")
    await phone.request({"type": "presence.subscribe", "users": ["u1", "u2"]})

    with pytest.raises(AdminRefused) as refused:
        await nodes[0].node.admin.watch("alice", ["u3"])
    assert refused.value.code == ErrorCode.TOO_MANY_SUBSCRIPTIONS
    assert refused.value.field == "users"
    # Nothing changed, on either session: the laptop was not subscribed either.
    await laptop.request({"type": "heartbeat"})
    assert not laptop.of_type("presence.subscribed")
    record = await nodes[0].node.backplane.sessions.get(SessionId(_welcome(laptop).session))
    assert record is not None and record.subscriptions == set()
    # Users already watched do not count twice.
    assert (await nodes[0].node.admin.watch("alice", ["u1"])).sessions == 2
    for client in (phone, laptop):
        await client.close()


# --- messages --------------------------------------------------------------------------------


def _messages(client: ProtocolClient, message_id: str) -> list[MessageEvent]:
    return [m for m in client.received if isinstance(m, MessageEvent) and m.id == message_id]


async def test_publish_a_system_message_and_one_as_a_user_exactly_once(
    make_server: ServerFactory,
) -> None:
    nodes = await _nodes(make_server)
    admin = nodes[0].node.admin
    alice = await _client(nodes[0], "alice")
    bob = await _client(nodes[-1], "bob")
    for client in (alice, bob):
        await _join(client, "r")

    system = await admin.publish("r", {"text": "the stream starts soon"})
    first = await admin.publish("r", "hello all", user="alice", idempotency_key="k-1")
    again = await admin.publish("r", "hello all", user="alice", idempotency_key="k-1")
    marker = await admin.publish("r", "marker")

    assert not system.duplicate and not first.duplicate and again.duplicate
    assert (again.message_id, again.offset, again.epoch) == (
        first.message_id,
        first.offset,
        first.epoch,
    )
    assert [system.offset, first.offset, marker.offset] == [
        system.offset,
        system.offset + 1,
        system.offset + 2,
    ]
    for client in (alice, bob):  # alice's own device too: no session sent it
        await client.wait_for(lambda m: isinstance(m, MessageEvent) and m.body == "marker")
        (sys_event,) = _messages(client, system.message_id)
        assert (sys_event.user, sys_event.device) == ("system", "api")
        assert sys_event.body == {"text": "the stream starts soon"}
        (user_event,) = _messages(client, first.message_id)  # delivered once
        assert (user_event.user, user_event.device) == ("alice", "api")
        assert user_event.temp_id == "k-1"
        offsets = [m.offset for m in client.received if isinstance(m, MessageEvent)]
        assert offsets == sorted(offsets)
    for client in (alice, bob):
        await client.close()


async def test_the_backend_edits_and_deletes_any_message(make_server: ServerFactory) -> None:
    nodes = await _nodes(make_server)
    admin = nodes[0].node.admin
    alice = await _client(nodes[0], "alice")
    bob = await _client(nodes[-1], "bob")
    for client in (alice, bob):
        await _join(client, "r")
    ack = await bob.request({"type": "message.send", "room": "r", "body": "rude words"})
    assert isinstance(ack, MessageAck)
    message_id = ack.id

    edited = await admin.edit("r", message_id, "[removed by a moderator]")
    assert edited is not None and edited.message_id == message_id
    deleted = await admin.delete("r", message_id)
    assert deleted is not None and deleted.offset == edited.offset + 1

    for client in (alice, bob):
        edit = await client.wait_for("message.edited")
        assert isinstance(edit, MessageEdited)
        assert (edit.id, edit.user, edit.body) == (message_id, "system", "[removed by a moderator]")
        gone = await client.wait_for("message.deleted")
        assert isinstance(gone, MessageDeleted)
        assert (gone.id, gone.user, gone.offset) == (message_id, "system", deleted.offset)
    # Deleted, or never there: not found.
    assert await admin.delete("r", message_id) is None
    assert await admin.edit("r", "no-such-id", "x") is None
    assert await admin.edit("elsewhere", message_id, "x") is None
    for client in (alice, bob):
        await client.close()


async def test_backend_messages_obey_the_limits(make_server: ServerFactory) -> None:
    nodes = await _nodes(make_server, max_message_bytes=100)
    admin = nodes[0].node.admin
    with pytest.raises(AdminRefused) as too_large:
        await admin.publish("r", "x" * 200)
    assert too_large.value.code == ErrorCode.MESSAGE_TOO_LARGE
    deep: dict[str, Any] = {}
    for _ in range(40):
        deep = {"a": deep}
    for body in (deep, 42, ["a list"], {"bad": object()}):
        with pytest.raises(AdminRefused) as malformed:
            await admin.publish("r", body)
        assert (malformed.value.code, malformed.value.field) == (ErrorCode.BAD_REQUEST, "body")
    for kwargs, field in (
        ({"room": "with space", "body": "x"}, "room"),
        ({"room": "r", "body": "x", "user": ""}, "user"),
        ({"room": "r", "body": "x", "idempotency_key": "k" * 300}, "idempotency_key"),
    ):
        with pytest.raises(AdminRefused) as bad:
            await admin.publish(**kwargs)
        assert bad.value.field == field
    with pytest.raises(AdminRefused):
        await admin.kick()  # neither a user nor a session
    with pytest.raises(AdminRefused):
        await admin.kick(user="alice", message="\ud800")
    with pytest.raises(AdminRefused):
        await admin.watch("alice", [])


# --- the rest ---------------------------------------------------------------------------------


async def test_notices_for_sessions_gone_meanwhile_are_no_ops(make_server: ServerFactory) -> None:
    nodes = await _nodes(make_server)
    last = nodes[-1].node
    alice = await _client(nodes[-1], "alice")
    gone = secrets.token_urlsafe(12)
    for notice in (
        b'{"action":"kick","sessions":["%s"]}' % gone.encode(),
        b'{"action":"remove","sessions":["%s"],"room":"r"}' % gone.encode(),
        b'{"action":"watch","sessions":["%s"],"users":["bob"]}' % gone.encode(),
        b"not json",
    ):
        last.admin.on_notice(notice)
    # A session that is no longer in the room is left alone too.
    last.admin.on_notice(
        b'{"action":"remove","sessions":["%s"],"room":"r"}' % _welcome(alice).session.encode()
    )
    await alice.request({"type": "heartbeat"})
    assert not alice.of_type("room.removed") and not alice.closed.is_set()
    await alice.close()


async def test_an_action_returns_once_the_owner_node_has_done_it(
    make_server: ServerFactory,
) -> None:
    """The owner is slow to act: the action still returns only after it has, so what the
    backend reads next (the session's record) shows the change. On memory the one node acts
    inline; on Valkey the owner answers ``admin-done`` on the asker's channel."""
    nodes = await _nodes(make_server)
    owner = nodes[-1].node
    alice = await _client(nodes[-1], "alice")
    await alice.request({"type": "presence.subscribe", "users": ["bob", "carol"]})
    unwatch = owner.lifecycle.unwatch

    async def slow_unwatch(*args: Any) -> None:
        await asyncio.sleep(0.3)  # the owner is busy: the asker must wait for it
        await unwatch(*args)

    owner.lifecycle.unwatch = slow_unwatch  # type: ignore[method-assign]
    reached = await nodes[0].node.admin.unwatch("alice", ["bob"])
    assert reached.sessions == 1
    record = await nodes[0].node.backplane.sessions.get(_welcome(alice).session)
    assert record is not None and record.subscriptions == {"carol"}
    await alice.close()


@pytest.mark.gateway_backends("valkey")  # memory has one node: no other owner to wait for
async def test_an_owner_that_never_answers_costs_the_action_the_reply_timeout(
    make_server: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An owner node that does not answer (its link down, say) does not hang the action:
    after REPLY_TIMEOUT its sessions count as reached, as its notice was sent."""
    nodes = await _nodes(make_server)
    monkeypatch.setattr("presenced.server.admin.REPLY_TIMEOUT", 0.2)
    owner = nodes[-1].node
    alice = await _client(nodes[-1], "alice")
    monkeypatch.setattr(owner.admin, "on_notice", lambda data: None)  # it hears nothing
    loop = asyncio.get_running_loop()
    started = loop.time()
    reached = await nodes[0].node.admin.unwatch("alice", ["bob"])
    assert reached.session_ids == (_welcome(alice).session,)
    assert 0.2 <= loop.time() - started < 2.0
    assert not nodes[0].node.admin._waiting  # nothing left waiting
    await alice.close()


async def test_no_client_may_be_the_system_user(connect: Any) -> None:
    client = await connect()
    await client.send({"type": "auth", "user": "system", "device": "d"})
    error = await client.wait_for("error")
    assert isinstance(error, Error) and error.code == ErrorCode.AUTH_FAILED
    assert await client.wait_closed() == CloseCode.AUTH_FAILED
