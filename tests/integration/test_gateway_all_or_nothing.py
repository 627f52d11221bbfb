"""Transitions that fail half way leave no trace (issue 9, defect 3).

Each request is validated before anything is applied, and what cannot be validated up front is
undone when a later step fails: a refused connect leaves no presence, no device and no
session; a refused join leaves no membership; a resume with another user's token takes
nothing from its owner; a resume with a narrower token keeps none of the first token's
rights. Every test runs on the memory store and on a real Valkey (the one that stops the store
on Valkey only), and checks through another client (presence, room.members) that nothing is
left behind.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any
from urllib.parse import urlencode

import jwt
import pytest

from presenced.protocol.chat import MessageAck
from presenced.protocol.codec import MAX_NESTING
from presenced.protocol.messages import (
    Error,
    HeartbeatAck,
    MemberLeft,
    Presence,
    PresenceSubscribed,
    RoomJoined,
    RoomMembersReply,
    ServerMessage,
    Welcome,
)
from presenced.server.serve import RunningServer
from presenced.testing import ProtocolClient
from tests.conftest import ServerFactory
from tests.support.valkey import ValkeyProcess

# Runs on memory and Valkey through its own backend fixture (and a Valkey it stops).
pytestmark = pytest.mark.own_backend

SECRET = "a-test-secret-that-is-long-enough-for-hs256"
LONE_SURROGATE = '{"a":"\\ud800"}'  # json.loads accepts it; no UTF-8 encoder writes it back

Start = Callable[..., Awaitable[RunningServer]]


@pytest.fixture(scope="module")
def valkey() -> Iterator[ValkeyProcess]:
    server = ValkeyProcess()
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


@pytest.fixture(params=["memory", "valkey"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def start(make_server: ServerFactory, backend: str, request: pytest.FixtureRequest) -> Start:
    """Start a node on this test's backend; nodes of one test share its Valkey key prefix."""
    shared: dict[str, Any] = {}
    if backend == "valkey":
        url = request.getfixturevalue("valkey").url
        shared = {"redis": url, "redis_prefix": f"aon-{uuid.uuid4().hex[:10]}"}

    async def factory(**overrides: Any) -> RunningServer:
        return await make_server(**{**shared, **overrides})

    return factory


Open = Callable[..., Awaitable[ProtocolClient]]


@pytest.fixture
async def open_client() -> AsyncIterator[Open]:
    """open_client(server, user=..., device=..., ...): a raw client with the query given."""
    clients: list[ProtocolClient] = []

    async def opener(
        server: RunningServer, *, welcome: bool = True, **query: str
    ) -> ProtocolClient:
        qs = urlencode(query)
        client = await ProtocolClient.connect(f"{server.url}{'?' + qs if qs else ''}")
        clients.append(client)
        if welcome:
            await client.wait_for("welcome")
        return client

    yield opener
    for client in clients:
        if not client.closed.is_set():
            client.abort()


def token(sub: str, **claims: object) -> str:
    return jwt.encode({"sub": sub, "exp": time.time() + 60, **claims}, SECRET, algorithm="HS256")


def nested(levels: int) -> dict[str, Any]:
    """An object ``levels`` deep: {"a": {"a": ... {"a": 1}}}."""
    value: dict[str, Any] = {"a": 1}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


async def presence_of(watcher: ProtocolClient, user: str) -> Presence:
    reply = await watcher.request({"type": "presence.subscribe", "users": [user]})
    assert isinstance(reply, PresenceSubscribed), reply
    (presence,) = reply.users
    return presence


async def members(client: ProtocolClient, room: str) -> list[str]:
    reply = await client.request({"type": "room.members", "room": room})
    assert isinstance(reply, RoomMembersReply), reply
    return sorted(m.user for m in reply.members)


def is_error(reply: ServerMessage, code: str, field: str | None = None) -> bool:
    return isinstance(reply, Error) and reply.code == code and reply.field == field


def went_offline(user: str) -> Callable[[ServerMessage], bool]:
    return lambda m: isinstance(m, Presence) and m.user == user and not m.online


# --- 1. a connect whose device_info cannot be stored -------------------------------------


async def test_connect_with_a_lone_surrogate_in_device_info_leaves_no_ghost(
    start: Start, open_client: Open
) -> None:
    server = await start()
    watcher = await open_client(server, user="watcher", device="w")
    client = await open_client(
        server, user="ghost", device="d1", device_info=LONE_SURROGATE, welcome=False
    )
    error = await client.wait_for("error")
    assert is_error(error, "BAD_REQUEST", "device_info"), error
    assert not client.of_type("welcome")
    # The connection stays open and unauthenticated: its requests are not served.
    refused = await client.request({"type": "heartbeat"})
    assert is_error(refused, "NOT_AUTHENTICATED"), refused
    presence = await presence_of(watcher, "ghost")
    assert (presence.online, presence.devices) == (False, 0)
    # It may still authenticate on the same connection; the one device it then has goes
    # away with it.
    welcome = await client.request({"type": "auth", "user": "ghost", "device": "d1"})
    assert isinstance(welcome, Welcome), welcome
    assert (await presence_of(watcher, "ghost")).devices == 1
    start_at = len(watcher.received)
    client.abort()
    await watcher.wait_for(went_offline("ghost"), start=start_at)
    presence = await presence_of(watcher, "ghost")
    assert (presence.online, presence.devices) == (False, 0)


def _auth_frame(device_info: str) -> str:
    return f'{{"type": "auth", "user": "ghost", "device": "d1", "device_info": {device_info}}}'


@pytest.mark.parametrize(
    ("frame", "code", "field"),
    [
        # In a frame the decoder itself refuses a lone surrogate: the frame is not JSON to it.
        (_auth_frame(LONE_SURROGATE), "BAD_JSON", None),
        (_auth_frame(json.dumps(nested(MAX_NESTING + 1))), "BAD_REQUEST", "device_info"),
    ],
    ids=["lone-surrogate", "too-deep"],
)
async def test_auth_message_with_bad_device_info_leaves_no_ghost(
    start: Start, open_client: Open, frame: str, code: str, field: str | None
) -> None:
    server = await start()
    watcher = await open_client(server, user="watcher", device="w")
    client = await open_client(server, welcome=False)
    await client.send_raw(frame)
    error = await client.wait_for("error")
    assert is_error(error, code, field), error
    refused = await client.request({"type": "heartbeat"})
    assert is_error(refused, "NOT_AUTHENTICATED"), refused
    presence = await presence_of(watcher, "ghost")
    assert (presence.online, presence.devices) == (False, 0)
    assert not client.closed.is_set()


# --- 2. a join whose meta cannot be stored ------------------------------------------------


async def test_join_with_too_deep_meta_joins_nothing(start: Start, open_client: Open) -> None:
    server = await start()
    watcher = await open_client(server, user="watcher", device="w")
    assert isinstance(await watcher.request({"type": "room.join", "room": "lobby"}), RoomJoined)
    client = await open_client(server, user="deep", device="d")
    refused = await client.request({"type": "room.join", "room": "lobby", "meta": nested(600)})
    assert is_error(refused, "BAD_REQUEST", "meta"), refused
    refused = await client.request(
        {"type": "room.join", "room": "lobby", "meta": nested(MAX_NESTING + 1)}
    )
    assert is_error(refused, "BAD_REQUEST", "meta"), refused
    # Not a member, by either account: it cannot post, and the room does not list it.
    post = await client.request({"type": "message.send", "room": "lobby", "body": "hi"})
    assert is_error(post, "NOT_IN_ROOM", "room"), post
    assert await members(watcher, "lobby") == ["watcher"]
    assert not watcher.of_type("member.joined")
    # The limit itself is fine, and the connection was served all along.
    joined = await client.request(
        {"type": "room.join", "room": "lobby", "meta": nested(MAX_NESTING)}
    )
    assert isinstance(joined, RoomJoined), joined
    assert await members(watcher, "lobby") == ["deep", "watcher"]
    # room.meta is held to the same limit and changes nothing when refused.
    refused = await client.request(
        {"type": "room.meta", "room": "lobby", "meta": nested(MAX_NESTING + 1)}
    )
    assert is_error(refused, "BAD_REQUEST", "meta"), refused


# --- 3. resume with another user's token -------------------------------------------------


async def test_resume_with_another_users_token_takes_nothing_from_its_owner(
    start: Start, open_client: Open, backend: str
) -> None:
    node_a = await start(node_id="a")
    # Two nodes sharing the store on Valkey; the memory store is one process's, so one node.
    node_b = await start(node_id="b") if backend == "valkey" else node_a
    owner = await open_client(node_a, user="alice", device="p")
    first = owner.received[0]
    assert isinstance(first, Welcome)
    assert isinstance(await owner.request({"type": "room.join", "room": "lobby"}), RoomJoined)
    watcher = await open_client(node_b, user="carol", device="w")
    assert isinstance(await watcher.request({"type": "room.join", "room": "lobby"}), RoomJoined)
    intruder = await open_client(
        node_b, user="mallory", device="x", resume=first.resume_token, welcome=False
    )
    welcome = await intruder.wait_for("welcome")
    assert isinstance(welcome, Welcome)
    assert (welcome.user, welcome.resumed, welcome.rooms) == ("mallory", False, [])
    assert welcome.resume_error
    # The owner lost nothing: still connected and served, still in its room...
    assert isinstance(await owner.request({"type": "heartbeat"}), HeartbeatAck)
    assert not owner.closed.is_set()
    assert await members(watcher, "lobby") == ["alice", "carol"]
    # ...and its token still resumes it (here on the intruder's node), with no leave seen.
    owner.abort()
    back = await open_client(node_b, user="alice", device="p", resume=first.resume_token)
    resumed = back.received[0]
    assert isinstance(resumed, Welcome)
    assert (resumed.resumed, resumed.rooms, resumed.session) == (True, ["lobby"], first.session)
    assert isinstance(await back.request({"type": "heartbeat"}), HeartbeatAck)
    assert await members(watcher, "lobby") == ["alice", "carol"]
    assert not [m for m in watcher.received if isinstance(m, MemberLeft)]


# --- 4. resume with a narrower token ------------------------------------------------------


async def test_resume_takes_its_rights_from_the_token_presented_now(
    start: Start, open_client: Open
) -> None:
    server = await start(auth_mode="jwt", jwt_secret=SECRET)
    watcher = await open_client(server, token=token("carol"), device="w")
    for room in ("chat:a", "team:b"):
        assert isinstance(await watcher.request({"type": "room.join", "room": room}), RoomJoined)
    broad = token("alice", rooms=["chat:*", "team:*"], moderator=True)
    alice = await open_client(server, token=broad, device="p")
    first = alice.received[0]
    assert isinstance(first, Welcome)
    for room in ("chat:a", "team:b"):
        assert isinstance(await alice.request({"type": "room.join", "room": room}), RoomJoined)
    sent = await watcher.request({"type": "message.send", "room": "chat:a", "body": "hi"})
    assert isinstance(sent, MessageAck), sent
    start_at = len(watcher.received)
    alice.abort()
    narrow = token("alice", rooms=["chat:*"])
    back = await open_client(server, token=narrow, device="p", resume=first.resume_token)
    welcome = back.received[0]
    assert isinstance(welcome, Welcome)
    assert (welcome.resumed, welcome.rooms) == (True, ["chat:a"])
    # The room the new token does not allow was left, as a leave: everyone saw it.
    left = await watcher.wait_for(
        lambda m: isinstance(m, MemberLeft) and m.room == "team:b", start=start_at
    )
    assert isinstance(left, MemberLeft) and (left.user, left.reason) == ("alice", "left")
    assert await members(watcher, "team:b") == ["carol"]
    assert await members(watcher, "chat:a") == ["alice", "carol"]
    # It cannot be joined again, and the moderator claim is gone with the first token.
    refused = await back.request({"type": "room.join", "room": "team:b"})
    assert is_error(refused, "ROOM_FORBIDDEN", "room"), refused
    refused = await back.request({"type": "message.delete", "room": "chat:a", "id": sent.id})
    assert is_error(refused, "NOT_AUTHOR", "id"), refused
    post = await back.request({"type": "message.send", "room": "team:b", "body": "x"})
    assert is_error(post, "NOT_IN_ROOM", "room"), post


# --- what validation cannot catch: a store that fails half way ---------------------------


async def test_steps_that_fail_at_the_store_are_undone(
    make_server: ServerFactory, open_client: Open
) -> None:
    """Valkey only: the memory store cannot fail. A join and a connect made while the store
    is down fail with INTERNAL and are undone: when it is back, the joiner is in no room and
    cannot post there, and the connect left no session (not served, not online)."""
    from tests.integration.test_store_outage import wait_health

    own = ValkeyProcess()  # this test stops its server: not the module's
    try:
        own.start()
        server = await make_server(
            redis=own.url, lease_ttl=1, lease_interval=0.1, grace=30, auth_timeout=60
        )
        watcher = await open_client(server, user="watcher", device="w")
        assert isinstance(await watcher.request({"type": "room.join", "room": "lobby"}), RoomJoined)
        joiner = await open_client(server, user="joiner", device="j")
        port = own.port
        own.stop()
        failed = await joiner.request({"type": "room.join", "room": "lobby"}, timeout=30)
        assert is_error(failed, "INTERNAL"), failed
        ghost = await open_client(server, user="ghost", device="g", welcome=False)
        failed = await ghost.wait_for("error", timeout=30)
        assert is_error(failed, "INTERNAL"), failed
        refused = await ghost.request({"type": "heartbeat"})
        assert is_error(refused, "NOT_AUTHENTICATED"), refused
        own.port = port
        own.start()  # empty: the node re-asserts the sessions it has
        await wait_health(server.http_url, "ok")
        post = await joiner.request({"type": "message.send", "room": "lobby", "body": "hi"})
        assert is_error(post, "NOT_IN_ROOM", "room"), post
        assert await members(watcher, "lobby") == ["watcher"]
        presence = await presence_of(watcher, "ghost")
        assert (presence.online, presence.devices) == (False, 0)
        welcome = await ghost.request({"type": "auth", "user": "ghost", "device": "g"})
        assert isinstance(welcome, Welcome), welcome
        assert (await presence_of(watcher, "ghost")).devices == 1
    finally:
        own.cleanup()
