"""The admin HTTP API against a real server, through the typed client, on memory (one node)
and on Valkey (two nodes sharing it: the API on one, clients on the other): each endpoint's
answer, its bad inputs, and what WebSocket clients see of its actions."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from presenced.api import ApiClient, ApiError
from presenced.presence.session import RoomOptions, Session, SessionState
from presenced.protocol.chat import MessageDeleted, MessageEdited, MessageEvent
from presenced.protocol.codes import LeaveReason
from presenced.protocol.messages import (
    ForceLeave,
    MemberLeft,
    Presence,
    PresenceSubscribed,
    RoomDeleted,
)
from presenced.server.serve import RunningServer
from presenced.testing import ProtocolClient
from presenced.typing import DeviceId, RoomId, SessionId, UserId
from tests.conftest import ServerFactory

READ = "read:read-key-0123456789"
PUBLISH = "publish:publish-key-0123456789"
ADMIN = "admin:admin-key-0123456789"
KEYS = f"{READ} {PUBLISH} {ADMIN}"


def _is(kind: type, **fields: Any) -> Callable[[Any], bool]:
    """A wait_for predicate: a message of ``kind`` whose fields have these values."""
    return lambda m: isinstance(m, kind) and all(getattr(m, k) == v for k, v in fields.items())


async def _eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll an API read until it holds (cross-node effects land a moment after the reply)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while not await check():
        assert loop.time() < deadline, f"not within 5 s: {what}"
        await asyncio.sleep(0.02)  # poll pacing, bounded by the deadline


def _secret(entry: str) -> str:
    return entry.split(":", 1)[1]


async def _nodes(make_server: ServerFactory, **settings: Any) -> list[RunningServer]:
    """One node on memory; on Valkey two, the first answering the API."""
    first = await make_server(api_keys=KEYS, grace=5, **settings)
    if first.node.settings.redis is None:
        return [first]
    second = await make_server(
        api_keys=KEYS,
        grace=5,
        redis=first.node.settings.redis,
        redis_prefix=first.node.settings.redis_prefix,
        node_id="second",
        **settings,
    )
    return [first, second]


async def _client(node: RunningServer, user: str, device: str = "d", **q: str) -> ProtocolClient:
    extra = "".join(f"&{k}={v}" for k, v in q.items())
    client = await ProtocolClient.connect(f"{node.url}?user={user}&device={device}{extra}")
    await client.wait_for("welcome")
    return client


def _raw(
    url: str, method: str = "GET", body: bytes | None = None, key: str | None = None
) -> tuple[int, dict[str, Any], dict[str, str]]:
    request = urllib.request.Request(url, data=body, method=method)
    if key is not None:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=5) as r:
            return r.status, json.loads(r.read()), dict(r.headers)
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read()), dict(exc.headers)


# --- auth ---------------------------------------------------------------------------------


async def test_keys_and_scopes(make_server: ServerFactory) -> None:
    (node,) = (await _nodes(make_server))[:1]
    url = node.admin_url + "/v1/presence/alice"
    status, body, headers = await asyncio.to_thread(_raw, url)
    assert status == 401 and body["error"]["code"] == "UNAUTHORIZED"
    assert "Authorization: Bearer" in body["error"]["message"]
    assert headers["WWW-Authenticate"].startswith("Bearer")
    status, body, _ = await asyncio.to_thread(_raw, url, key="not-a-key-of-this-server")
    assert status == 401 and "not valid" in body["error"]["message"]
    status, body, _ = await asyncio.to_thread(_raw, url, key=_secret(READ))
    assert status == 200 and body["user"] == "alice"
    # A read key may not publish or kick; a publish key may not kick; admin may do all.
    publish = node.admin_url + "/v1/rooms/r/messages"
    status, body, _ = await asyncio.to_thread(
        _raw, publish, "POST", b'{"body": "hi"}', _secret(READ)
    )
    assert status == 403 and body["error"]["code"] == "FORBIDDEN"
    assert "publish" in body["error"]["message"]
    kick = node.admin_url + "/v1/users/alice/kick"
    status, body, _ = await asyncio.to_thread(_raw, kick, "POST", b"{}", _secret(PUBLISH))
    assert status == 403 and "needs admin" in body["error"]["message"]
    status, _, _ = await asyncio.to_thread(_raw, publish, "POST", b'{"body": "hi"}', _secret(ADMIN))
    assert status == 201
    # Health, readiness and the schema need no key; metrics do.
    for path in ("/health", "/ready", "/openapi.json"):
        status, _, _ = await asyncio.to_thread(_raw, node.admin_url + path)
        assert status == 200, path
    status, _, _ = await asyncio.to_thread(_raw, node.admin_url + "/metrics")
    assert status == 401


# --- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("GET", "/v1/presence/a%20b", None, "path.user"),
        ("GET", "/v1/presence/a%1B%5B31m", None, "path.user"),
        ("GET", "/v1/rooms/r%E2%80%AE/count", None, "path.room"),
        ("GET", "/v1/rooms?limit=0", None, "query.limit"),
        ("GET", "/v1/rooms?limit=1001", None, "query.limit"),
        ("GET", "/v1/rooms?limit=ten", None, "query.limit"),
        ("GET", "/v1/rooms?colour=red", None, "query.colour"),
        ("GET", "/v1/rooms/r/count?x=1", None, "query.x"),
        ("POST", "/v1/presence", b'{"users": []}', "body.users"),
        ("POST", "/v1/presence", b'{"users": ["ok", "not ok"]}', "body.users[1]"),
        ("POST", "/v1/presence", b'{"users": ["a"], "extra": 1}', "body.extra"),
        ("POST", "/v1/presence", b"{not json", "body"),
        ("POST", "/v1/presence", b"", "body.users"),
        ("POST", "/v1/rooms/r/messages", b'{"body": 5}', "body.body"),
        ("POST", "/v1/rooms/r/messages", b'{"body": "x", "user": ""}', "body.user"),
        ("POST", "/v1/users/u/kick", b'{"message": "' + b"m" * 1100 + b'"}', "body.message"),
        ("POST", "/v1/users/u/kick", b'{"message": ""}', "body.message"),
        (
            "POST",
            "/v1/rooms/r/messages",
            b'{"body": "x", "idempotency_key": "a b"}',
            "body.idempotency_key",
        ),
    ],
)
async def test_bad_input_is_a_400_naming_the_field(
    make_server: ServerFactory, method: str, path: str, body: bytes | None, field: str
) -> None:
    node = (await _nodes(make_server))[0]
    status, reply, _ = await asyncio.to_thread(
        _raw, node.admin_url + path, method, body, _secret(ADMIN)
    )
    assert status == 400, reply
    assert reply["error"]["code"] == "BAD_REQUEST" and reply["error"]["field"] == field
    assert field in reply["error"]["message"]


async def test_unknown_paths_methods_and_huge_bodies(make_server: ServerFactory) -> None:
    node = (await _nodes(make_server))[0]
    key = _secret(ADMIN)
    status, reply, _ = await asyncio.to_thread(_raw, node.admin_url + "/v1/nope", key=key)
    assert status == 404 and reply["error"]["code"] == "NOT_FOUND"
    status, reply, _ = await asyncio.to_thread(
        _raw, node.admin_url + "/v1/rooms/r/count", "PUT", b"{}", key
    )
    assert status == 405 and reply["error"]["code"] == "METHOD_NOT_ALLOWED"
    huge = b'{"body": "' + b"x" * (5 * 1024 * 1024) + b'"}'
    status, reply, _ = await asyncio.to_thread(
        _raw, node.admin_url + "/v1/rooms/r/messages", "POST", huge, key
    )
    assert status == 413 and reply["error"]["code"] == "PAYLOAD_TOO_LARGE"
    # A body under the request cap but over max_message_bytes is refused by the message rule.
    big = node.node.settings.max_message_bytes + 10
    status, reply, _ = await asyncio.to_thread(
        _raw,
        node.admin_url + "/v1/rooms/r/messages",
        "POST",
        b'{"body": "' + b"x" * big + b'"}',
        key,
    )
    assert status == 413 and reply["error"]["field"] == "body.body"


# --- presence and sessions ------------------------------------------------------------------


async def test_presence_and_sessions(make_server: ServerFactory) -> None:
    nodes = await _nodes(make_server)
    phone = await _client(nodes[-1], "alice", "phone", device_info='{"os":"ios"}')
    await phone.request({"type": "status.set", "status": "busy", "text": "coding"})
    await _client(nodes[0], "alice", "laptop")
    async with ApiClient(nodes[0].admin_url, _secret(READ)) as api:
        alice = await api.presence("alice")
        assert alice.online and alice.status == "busy" and alice.text == "coding"
        assert alice.devices == 2 and {s.device for s in alice.sessions} == {"phone", "laptop"}
        many = await api.presence_of(["alice", "bob"])
        assert [(p.user, p.online) for p in many.users] == [("alice", True), ("bob", False)]
        listed = await api.sessions("alice")
        assert len(listed.sessions) == 2 and listed.next_cursor is None
        first = await api.sessions("alice", limit=1)
        assert first.next_cursor is not None
        rest = await api.sessions("alice", limit=1, cursor=first.next_cursor)
        assert {first.sessions[0].id, rest.sessions[0].id} == {s.id for s in listed.sessions}
        by_device = {s.device: s for s in listed.sessions}
        one = await api.session(by_device["phone"].id)
        assert one.device_info == {"os": "ios"} and one.state == "active"
        assert one.node == nodes[-1].node.node_id
        assert 0 < one.connected_at <= one.last_active
        with pytest.raises(ApiError) as missing:
            await api.session("no-such-session")
        assert missing.value.status == 404 and missing.value.field == "path.session"


async def test_subscriptions_both_ways_and_on_behalf(make_server: ServerFactory) -> None:
    nodes = await _nodes(make_server)
    alice = await _client(nodes[-1], "alice")
    await alice.request({"type": "presence.subscribe", "users": ["bob"]})
    async with ApiClient(nodes[0].admin_url, _secret(ADMIN)) as api:
        assert (await api.subscriptions("alice")).users == ["bob"]
        assert (await api.subscribers("bob")).users == ["alice"]
        # The backend makes alice watch carol too: she is told, then sees carol come online.
        done = await api.subscribe("alice", ["carol"])
        assert done.sessions == 1
        told = await alice.wait_for(lambda m: isinstance(m, PresenceSubscribed) and m.ref is None)
        assert isinstance(told, PresenceSubscribed) and "carol" in str(told)
        await _client(nodes[0], "carol")
        await alice.wait_for(_is(Presence, user="carol", online=True))
        assert (await api.subscriptions("alice")).users == ["bob", "carol"]
        await api.unsubscribe("alice", ["bob"])
        assert (await api.subscriptions("alice")).users == ["carol"]
        with pytest.raises(ApiError) as nobody:
            await api.subscribe("zed", ["carol"])
        assert nobody.value.status == 404


# --- rooms ----------------------------------------------------------------------------------


async def test_rooms_by_prefix_count_and_pages(make_server: ServerFactory) -> None:
    nodes = await _nodes(make_server)
    alice = await _client(nodes[-1], "alice")
    for room in ("game:1", "game:2", "game:3", "chat:1"):
        await alice.request({"type": "room.join", "room": room})
    async with ApiClient(nodes[0].admin_url, _secret(READ)) as api:
        everything = await api.rooms()
        assert [r.room for r in everything.rooms] == ["chat:1", "game:1", "game:2", "game:3"]
        seen = [r.room async for r in api.iter_rooms("game:", page=2)]
        assert seen == ["game:1", "game:2", "game:3"]
        count = await api.count("game:1")
        assert count.members == 1 and count.version >= 1
        detail = await api.room("game:1")
        assert detail.members == 1 and detail.typing == []


async def test_members_paginate_over_a_thousand_each_once(make_server: ServerFactory) -> None:
    nodes = await _nodes(make_server)
    rooms = nodes[0].node.backplane.rooms
    wall = nodes[0].node.clock.wall()
    for i in range(1000):
        user = f"u{i:04d}"
        await rooms.add(RoomId("big"), UserId(user), SessionId(f"s{i}"), None, False, wall)
    async with ApiClient(nodes[-1].admin_url, _secret(READ)) as api:
        seen = [m async for m in api.iter_members("big", page=137)]
    users = [m.user for m in seen]
    assert users == sorted(users) and len(users) == len(set(users)) == 1000
    assert all(m.joined_at == pytest.approx(wall) and m.devices == 1 for m in seen)


# --- messages -------------------------------------------------------------------------------


async def test_publish_idempotent_edit_delete_history(make_server: ServerFactory) -> None:
    nodes = await _nodes(make_server)
    bob = await _client(nodes[-1], "bob")
    carol = await _client(nodes[0], "carol")
    for client in (bob, carol):
        await client.request({"type": "room.join", "room": "r"})
    async with ApiClient(nodes[0].admin_url, _secret(PUBLISH)) as api:
        first = await api.publish("r", "deploy at 10", idempotency_key="k1")
        again = await api.publish("r", "deploy at 10", idempotency_key="k1")
        assert again.id == first.id and again.duplicate and not first.duplicate
        as_user = await api.publish("r", {"kind": "note"}, user="alice")
        for client in (bob, carol):
            got = await client.wait_for(_is(MessageEvent, id=as_user.id))
            assert isinstance(got, MessageEvent) and got.user == "alice"
            system = [m for m in client.of_type("message") if isinstance(m, MessageEvent)]
            assert [m.id for m in system] == [first.id, as_user.id]  # the retry sent nothing
            assert system[0].user == "system"
        await api.edit("r", first.id, "deploy at 11")
        await api.delete_message("r", as_user.id)
        for client in (bob, carol):
            edited = await client.wait_for("message.edited")
            assert isinstance(edited, MessageEdited) and edited.body == "deploy at 11"
            assert isinstance(await client.wait_for("message.deleted"), MessageDeleted)
        history = await api.history("r")
        assert [(m.id, m.body) for m in history.messages] == [(first.id, "deploy at 11")]
        with pytest.raises(ApiError) as missing:
            await api.edit("r", "no-such-message", "x")
        assert missing.value.status == 404


# --- moderation -----------------------------------------------------------------------------


async def test_kick_from_the_server_and_from_a_room(make_server: ServerFactory) -> None:
    nodes = await _nodes(make_server)
    bob = await _client(nodes[-1], "bob")
    carol = await _client(nodes[0], "carol")
    dave = await _client(nodes[-1], "dave")
    for client in (bob, carol, dave):
        await client.request({"type": "room.join", "room": "r"})
    async with ApiClient(nodes[0].admin_url, _secret(ADMIN)) as api:
        removed = await api.remove_from_room("r", "dave", message="off topic")
        assert removed.sessions == 1
        event = await dave.wait_for("room.removed")
        assert getattr(event, "room", None) == "r" and getattr(event, "reason", None) == "kicked"
        left = await carol.wait_for(_is(MemberLeft, user="dave"))
        assert isinstance(left, MemberLeft) and left.reason == "kicked"
        assert not dave.closed.is_set()  # still connected, just not in the room
        kicked = await api.kick("bob", message="spam")
        assert kicked.sessions == 1
        leave = await bob.wait_for("force_leave")
        assert isinstance(leave, ForceLeave) and leave.message == "spam"
        assert await bob.wait_closed() == 4003
        left = await carol.wait_for(_is(MemberLeft, user="bob"))
        assert isinstance(left, MemberLeft) and left.reason == "kicked"

        async def offline() -> bool:
            return not (await api.presence("bob")).online

        await _eventually(offline, "bob offline")
        with pytest.raises(ApiError) as gone:
            await api.kick("bob")
        assert gone.value.status == 404


async def test_kick_one_session_and_disconnect(make_server: ServerFactory) -> None:
    nodes = await _nodes(make_server)
    phone = await _client(nodes[-1], "bob", "phone")
    laptop = await _client(nodes[0], "bob", "laptop")
    async with ApiClient(nodes[0].admin_url, _secret(ADMIN)) as api:
        sessions = {s.device: s.id for s in (await api.sessions("bob")).sessions}
        done = await api.kick("bob", session=sessions["phone"])
        assert done.session_ids == [sessions["phone"]]
        assert await phone.wait_closed() == 4003

        async def one_device() -> bool:
            return (await api.presence("bob")).devices == 1

        await _eventually(one_device, "bob down to one device")
        off = await api.disconnect("bob")
        assert off.session_ids == [sessions["laptop"]]
        assert await laptop.wait_closed() == 4010

        async def offline() -> bool:
            return not (await api.presence("bob")).online

        await _eventually(offline, "bob offline")


async def test_delete_room_through_the_api(make_server: ServerFactory) -> None:
    nodes = await _nodes(make_server)
    bob = await _client(nodes[-1], "bob")
    await bob.request({"type": "room.join", "room": "r"})
    async with ApiClient(nodes[0].admin_url, _secret(ADMIN)) as api:
        await api.publish("r", "soon gone")
        deleted = await api.delete_room("r")
        assert deleted.members == 1
        assert isinstance(await bob.wait_for("room.deleted"), RoomDeleted)
        assert (await api.history("r")).messages == []
        assert (await api.rooms()).rooms == []
        with pytest.raises(ApiError) as again:
            await api.delete_room("r")
        assert again.value.status == 404


# --- cluster --------------------------------------------------------------------------------


async def test_nodes_and_stats(make_server: ServerFactory) -> None:
    nodes = await _nodes(make_server, lease_interval=0.05)
    for i, node in enumerate(nodes):
        client = await _client(node, f"user{i}")
        await client.request({"type": "room.join", "room": f"room{i}"})
    async with ApiClient(nodes[0].admin_url, _secret(READ)) as api:
        want = {n.node.node_id for n in nodes}

        async def reported() -> bool:
            listed = (await api.nodes()).nodes
            return {n.node for n in listed if n.alive and n.connections == 1} == want

        await _eventually(reported, "every node reports one connection")
        stats = await api.stats()
        assert stats.nodes_alive == len(nodes) and stats.connections == len(nodes)
        assert stats.sessions == len(nodes) and stats.rooms == len(nodes)
        assert stats.users_online == len(nodes)


async def test_cleanup_on_a_clean_cluster_removes_nothing(make_server: ServerFactory) -> None:
    nodes = await _nodes(make_server)
    alice = await _client(nodes[-1], "alice")
    await alice.request({"type": "room.join", "room": "r"})
    async with ApiClient(nodes[0].admin_url, _secret(ADMIN)) as api:
        report = await api.cleanup()
        assert report.members_removed == 0 and report.presence_removed == 0
        assert report.nodes_reaped == []
        assert [m.user for m in (await api.members("r")).members] == ["alice"]


async def test_cleanup_leaves_a_session_being_ended_to_its_owner(
    make_server: ServerFactory,
) -> None:
    """A session that ends has its CLOSED record written first; its owner then takes it out
    of its rooms and presence with its own reason (``left``, ``kicked``, ...) and deletes the
    record last (Lifecycle.end). A cleanup walking the room in between must not take it for a
    ghost: it would tell the room ``node_lost`` instead of the owner's reason and count a
    removal of what was no ghost. That in-between state is written here as the owner writes
    it (the record CLOSED, the membership and presence entry still there); then the owner
    finishes, and the room hears the owner's reason."""
    nodes = await _nodes(make_server)
    owner = nodes[-1].node
    bob = await _client(nodes[0], "bob")
    await bob.request({"type": "room.join", "room": "r"})
    r, zed, sid = RoomId("r"), UserId("zed"), SessionId("ending-1")
    ending = Session(
        id=sid,
        user=zed,
        device=DeviceId("d"),
        resume_token="tok-ending-1",
        node=owner.node_id,
        rooms={r: RoomOptions()},
        state=SessionState.CLOSED,
    )
    wall = owner.clock.wall()
    await owner.backplane.sessions.put(ending)
    await owner.backplane.rooms.add(r, zed, sid, None, False, wall)
    await owner.backplane.presence.set(zed, sid, "online", None, wall)
    mark = len(bob.received)
    async with ApiClient(nodes[0].admin_url, _secret(ADMIN)) as api:
        report = await api.cleanup()
        assert (report.members_removed, report.presence_removed) == (0, 0)
        assert sorted(m.user for m in (await api.members("r")).members) == ["bob", "zed"]
        await owner.lifecycle.finish(ending, LeaveReason.LEFT)
        left = await bob.wait_for(_is(MemberLeft, user="zed"), start=mark)
        assert isinstance(left, MemberLeft) and left.reason == "left"
        assert [m.user for m in (await api.members("r")).members] == ["bob"]
        assert not (await api.presence("zed")).online
