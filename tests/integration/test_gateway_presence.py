"""Rooms, statuses, invisibility and presence subscriptions over real sockets."""

from __future__ import annotations

from presenced.protocol.messages import (
    Error,
    MemberJoined,
    MemberLeft,
    MemberUpdated,
    Presence,
    PresenceSubscribed,
    RoomCountReply,
    RoomMetaUpdated,
    StatusUpdated,
)
from presenced.testing import ProtocolClient
from tests.conftest import Connect, ServerFactory


async def test_leave_is_immediate_and_versions_increase(connect: Connect) -> None:
    carol = await connect("carol", "w")
    first = await carol.request({"type": "room.join", "room": "r"})
    alice = await connect("alice", "p")
    await alice.request({"type": "room.join", "room": "r"})
    joined = await carol.wait_for("member.joined")
    reply = await alice.request({"type": "room.leave", "room": "r"})
    assert type(reply).__name__ == "RoomLeft"
    left = await carol.wait_for("member.left")
    assert isinstance(joined, MemberJoined) and isinstance(left, MemberLeft)
    assert first.version < joined.version < left.version  # type: ignore[union-attr]
    assert left.reason == "left"


async def test_status_aggregates_over_devices_and_reaches_rooms_and_watchers(
    connect: Connect,
) -> None:
    carol = await connect("carol", "w")
    await carol.request({"type": "room.join", "room": "r"})
    watched = await carol.request({"type": "presence.subscribe", "users": ["alice", "nobody"]})
    assert isinstance(watched, PresenceSubscribed)
    assert [(p.user, p.online) for p in watched.users] == [("alice", False), ("nobody", False)]
    phone = await connect("alice", "phone")
    online = await carol.wait_for(lambda m: isinstance(m, Presence) and m.online)
    assert isinstance(online, Presence) and online.status == "online"
    laptop = await connect("alice", "laptop")
    await phone.request({"type": "room.join", "room": "r"})
    await laptop.request({"type": "room.join", "room": "r"})
    reply = await laptop.request({"type": "status.set", "status": "away"})
    assert isinstance(reply, StatusUpdated) and reply.aggregate == "online"  # phone is online
    reply = await phone.request({"type": "status.set", "status": "dnd", "text": "focus"})
    assert isinstance(reply, StatusUpdated) and reply.aggregate == "dnd"
    update = await carol.wait_for(lambda m: isinstance(m, MemberUpdated) and m.status == "dnd")
    assert isinstance(update, MemberUpdated) and update.text == "focus" and update.devices == 2
    dnd = await carol.wait_for(lambda m: isinstance(m, Presence) and m.status == "dnd")
    assert isinstance(dnd, Presence) and dnd.devices == 2


async def test_invisible_user_appears_offline_to_others(connect: Connect) -> None:
    carol = await connect("carol", "w")
    await carol.request({"type": "room.join", "room": "r"})
    await carol.request({"type": "presence.subscribe", "users": ["alice"]})
    alice = await connect("alice", "p")
    await alice.request({"type": "room.join", "room": "r"})
    await carol.wait_for("member.joined")
    mark = len(carol.received)
    own = await alice.request({"type": "status.set", "status": "invisible"})
    assert isinstance(own, StatusUpdated) and own.aggregate == "invisible"
    left = await carol.wait_for("member.left", start=mark)
    assert isinstance(left, MemberLeft) and left.reason == "offline"
    offline = await carol.wait_for(lambda m: isinstance(m, Presence) and not m.online, start=mark)
    assert isinstance(offline, Presence) and offline.status == "offline"
    count = await carol.request({"type": "room.count", "room": "r"})
    assert isinstance(count, RoomCountReply) and count.count == 1
    members = await carol.request({"type": "room.members", "room": "r"})
    assert [m.user for m in members.members] == ["carol"]  # type: ignore[union-attr]
    # A new device of the invisible user joins another room: still nothing visible.
    laptop = await connect("alice", "laptop")
    await laptop.request({"type": "room.join", "room": "r"})
    assert not [m for m in carol.received[mark:] if isinstance(m, MemberJoined)]
    mark = len(carol.received)
    await alice.request({"type": "status.set", "status": "online"})
    await laptop.send({"type": "logout"})
    assert await laptop.wait_closed() == 1000
    back = await carol.wait_for("member.joined", start=mark)
    assert isinstance(back, MemberJoined) and back.user == "alice"


async def test_last_seen_is_kept_after_the_last_session(connect: Connect) -> None:
    carol = await connect("carol", "w")
    alice = await connect("alice", "p")
    await alice.send({"type": "logout"})
    await alice.wait_closed()
    seen = await carol.request({"type": "presence.subscribe", "users": ["alice"]})
    assert isinstance(seen, PresenceSubscribed)
    (view,) = seen.users
    assert not view.online and view.last_seen is not None


async def test_unsubscribe_stops_presence_events(connect: Connect) -> None:
    carol = await connect("carol", "w")
    await carol.request({"type": "presence.subscribe", "users": ["alice"]})
    await carol.request({"type": "presence.unsubscribe", "users": ["alice"]})
    mark = len(carol.received)
    alice = await connect("alice", "p")
    await alice.request({"type": "status.set", "status": "busy"})
    await carol.request({"type": "heartbeat"})  # a round trip after alice's changes
    assert not [m for m in carol.received[mark:] if isinstance(m, Presence)]


async def test_room_meta_updates_others(connect: Connect) -> None:
    carol = await connect("carol", "w")
    await carol.request({"type": "room.join", "room": "r"})
    alice = await connect("alice", "p")
    reply = await alice.request({"type": "room.meta", "room": "r", "meta": {"x": 1}})
    assert isinstance(reply, Error) and reply.code == "NOT_IN_ROOM"
    await alice.request({"type": "room.join", "room": "r"})
    reply = await alice.request({"type": "room.meta", "room": "r", "meta": {"hand": True}})
    assert isinstance(reply, RoomMetaUpdated)
    update = await carol.wait_for("member.updated")
    assert isinstance(update, MemberUpdated) and update.meta == {"hand": True}


async def test_limits_on_rooms_and_subscriptions(make_server: ServerFactory) -> None:
    from presenced.testing import ProtocolClient

    running = await make_server(max_rooms_per_session=2, max_subscriptions_per_session=2)
    client = await ProtocolClient.connect(running.url + "?user=a&device=d")
    await client.wait_for("welcome")
    for room in ("r1", "r2"):
        await client.request({"type": "room.join", "room": room})
    refused = await client.request({"type": "room.join", "room": "r3"})
    assert isinstance(refused, Error) and refused.code == "TOO_MANY_ROOMS"
    again = await client.request({"type": "room.join", "room": "r1"})  # rejoining is fine
    assert type(again).__name__ == "RoomJoined"
    refused = await client.request({"type": "presence.subscribe", "users": ["x", "y", "z"]})
    assert isinstance(refused, Error) and refused.code == "TOO_MANY_SUBSCRIPTIONS"
    assert refused.field == "users"
    await client.close()


async def test_idle_goes_away_and_a_heartbeat_brings_it_back(make_server: ServerFactory) -> None:
    """Heartbeats are answered on a fast path; one that ends an auto-away must still set the
    status back, and the room must see it."""
    running = await make_server(away_after=0.3)
    carol = await ProtocolClient.connect(running.url + "?user=carol&device=w")
    alice = await ProtocolClient.connect(running.url + "?user=alice&device=p")
    for client in (carol, alice):
        await client.wait_for("welcome")
        await client.request({"type": "room.join", "room": "r"})
    away = await carol.wait_for(
        lambda m: isinstance(m, MemberUpdated) and m.user == "alice" and m.status == "away",
        timeout=5,
    )
    assert isinstance(away, MemberUpdated)
    ack = await alice.request({"type": "heartbeat", "ref": "hb"})
    assert type(ack).__name__ == "HeartbeatAck"
    back = await carol.wait_for(
        lambda m: isinstance(m, MemberUpdated) and m.user == "alice" and m.status == "online",
        timeout=5,
    )
    assert isinstance(back, MemberUpdated) and back.version > away.version
    await carol.close()
    await alice.close()
