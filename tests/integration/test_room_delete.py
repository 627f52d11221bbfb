"""Deleting a room (Lifecycle.delete_room, which the HTTP API calls): every member, on every
node, connected or in grace, gets ``room.deleted`` and is out of the room; its history goes;
joining again makes a new room. On memory (one node) and on Valkey (two nodes)."""

from __future__ import annotations

from presenced.protocol.chat import MessageAck, RoomHistoryReply
from presenced.protocol.messages import (
    Error,
    MemberLeft,
    RoomDeleted,
    RoomJoined,
    RoomMembersReply,
    Welcome,
)
from presenced.server.serve import RunningServer
from presenced.testing import ProtocolClient
from presenced.typing import RoomId
from tests.conftest import ServerFactory


async def _nodes(make_server: ServerFactory) -> list[RunningServer]:
    first = await make_server(grace=5)
    settings = first.node.settings
    if settings.redis is None:
        return [first]
    second = await make_server(
        grace=5, redis=settings.redis, redis_prefix=settings.redis_prefix, node_id="second"
    )
    return [first, second]


async def _client(node: RunningServer, user: str, **query: str) -> ProtocolClient:
    extra = "".join(f"&{k}={v}" for k, v in query.items())
    client = await ProtocolClient.connect(f"{node.url}?user={user}&device=d{extra}")
    await client.wait_for("welcome")
    return client


async def test_deleting_a_room_removes_every_member_everywhere(make_server: ServerFactory) -> None:
    nodes = await _nodes(make_server)
    alice = await _client(nodes[0], "alice")
    bob = await _client(nodes[-1], "bob")
    carol = await _client(nodes[-1], "carol")
    for client in (alice, bob, carol):
        assert isinstance(await client.request({"type": "room.join", "room": "r"}), RoomJoined)
    await alice.request({"type": "room.join", "room": "other"})
    ack = await alice.request({"type": "message.send", "room": "r", "body": "before"})
    assert isinstance(ack, MessageAck)
    # carol vanishes: her session waits in grace on its node, still in the room.
    carol_welcome = carol.of_type("welcome")[0]
    assert isinstance(carol_welcome, Welcome)
    carol.abort()

    deletion = await nodes[0].node.lifecycle.delete_room(RoomId("r"))
    assert set(deletion.members) == {"alice", "bob", "carol"}

    for client in (alice, bob):
        event = await client.wait_for("room.deleted")
        assert isinstance(event, RoomDeleted)
        assert (event.room, event.version, event.reason) == ("r", deletion.version, "deleted")
        # No member.left: the one event says it for everyone.
        assert not [m for m in client.received if isinstance(m, MemberLeft) and m.room == "r"]
        refused = await client.request({"type": "message.send", "room": "r", "body": "after"})
        assert isinstance(refused, Error) and refused.code == "NOT_IN_ROOM"
    # The room is empty and its history gone; alice's other room is untouched.
    members = await alice.request({"type": "room.members", "room": "r"})
    assert isinstance(members, RoomMembersReply) and members.members == []
    other = await alice.request({"type": "room.members", "room": "other"})
    assert isinstance(other, RoomMembersReply) and [m.user for m in other.members] == ["alice"]
    # carol resumes (on the other node): she is in the room no more.
    back = await _client(nodes[0], "carol", resume=carol_welcome.resume_token)
    welcome = back.of_type("welcome")[0]
    assert isinstance(welcome, Welcome) and welcome.resumed
    assert welcome.rooms == []
    # Joining again makes a new room, with no history.
    again = await bob.request({"type": "room.join", "room": "r"})
    assert isinstance(again, RoomJoined) and [m.user for m in again.members] == ["bob"]
    history = await bob.request({"type": "room.history", "room": "r"})
    assert isinstance(history, RoomHistoryReply) and history.messages == []
    for client in (alice, bob, back):
        await client.close()


async def test_members_deleted_on_one_node_are_told_once(make_server: ServerFactory) -> None:
    nodes = await _nodes(make_server)
    clients = [await _client(nodes[i % len(nodes)], f"u{i}") for i in range(6)]
    for client in clients:
        await client.request({"type": "room.join", "room": "big"})
    await nodes[-1].node.lifecycle.delete_room(RoomId("big"))
    for client in clients:
        await client.wait_for("room.deleted")
    # Both paths (the room's channel and the owner's notice) may reach a node: once each.
    for client in clients:
        await client.request({"type": "heartbeat"})
        assert len(client.of_type("room.deleted")) == 1
        await client.close()
