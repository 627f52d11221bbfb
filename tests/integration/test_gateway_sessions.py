"""Sessions over real loopback sockets: auth, devices, drops, grace, resume, liveness."""

from __future__ import annotations

import asyncio
import time

import pytest

from presenced.protocol.messages import (
    DeviceBack,
    DeviceDropped,
    DeviceGone,
    Error,
    MemberJoined,
    MemberLeft,
    MemberUpdated,
    RoomJoined,
    Welcome,
)
from presenced.server import node as node_module
from presenced.server.serve import RunningServer
from presenced.testing import ProtocolClient
from presenced.typing import SessionId, UserId
from tests.conftest import Connect, ServerFactory


async def test_auth_in_connect_url_gets_welcome(connect: Connect) -> None:
    client = await connect("alice", "phone")
    welcome = client.of_type("welcome")[0]
    assert isinstance(welcome, Welcome)
    assert welcome.user == "alice" and welcome.device == "phone" and not welcome.resumed
    assert welcome.session and welcome.resume_token
    assert welcome.heartbeat_interval == 0.2 and welcome.grace == 0.4


async def test_auth_as_first_message(connect: Connect) -> None:
    client = await connect()
    reply = await client.request({"type": "auth", "user": "bob", "device": "web"})
    assert isinstance(reply, Welcome) and reply.user == "bob"


async def test_request_before_auth_is_refused_but_connection_stays(connect: Connect) -> None:
    client = await connect()
    reply = await client.request({"type": "room.join", "room": "lobby"})
    assert isinstance(reply, Error) and reply.code == "NOT_AUTHENTICATED"
    welcome = await client.request({"type": "auth", "user": "bob", "device": "web"})
    assert isinstance(welcome, Welcome)


async def test_missing_device_is_a_bad_request_naming_the_field(connect: Connect) -> None:
    client = await connect()
    reply = await client.request({"type": "auth", "user": "bob"})
    assert isinstance(reply, Error)
    assert (reply.code, reply.field) == ("BAD_REQUEST", "device")
    assert not client.closed.is_set()


async def test_nothing_within_auth_timeout_closes_with_auth_timeout(connect: Connect) -> None:
    client = await connect()
    error = await client.wait_for("error", timeout=3)
    assert isinstance(error, Error) and error.code == "AUTH_TIMEOUT"
    assert await client.wait_closed() == 4002


async def test_unsupported_protocol_is_fatal(connect: Connect) -> None:
    client = await connect()
    reply = await client.request({"type": "auth", "user": "a", "device": "d", "protocol": 9})
    assert isinstance(reply, Error) and reply.code == "UNSUPPORTED_PROTOCOL"
    assert await client.wait_closed() == 4004


async def test_second_device_closing_changes_nothing_for_others(connect: Connect) -> None:
    watcher = await connect("carol", "web")
    await watcher.request({"type": "room.join", "room": "r"})
    phone = await connect("alice", "phone")
    laptop = await connect("alice", "laptop")
    await phone.request({"type": "room.join", "room": "r"})
    joined = await watcher.wait_for("member.joined")
    assert isinstance(joined, MemberJoined) and joined.devices == 1
    await laptop.request({"type": "room.join", "room": "r"})
    updated = await watcher.wait_for("member.updated")
    assert isinstance(updated, MemberUpdated) and updated.devices == 2
    mark = len(watcher.received)
    await laptop.send({"type": "logout"})
    second = await watcher.wait_for("member.updated", start=mark)
    assert isinstance(second, MemberUpdated) and second.devices == 1
    members = await watcher.request({"type": "room.members", "room": "r"})
    assert {m.user for m in members.members} == {"alice", "carol"}  # type: ignore[union-attr]
    assert not watcher.of_type("member.left")


async def test_members_carry_when_their_first_session_joined(connect: Connect) -> None:
    join = {"type": "room.join", "room": "r"}
    watcher = await connect("carol", "web")
    before = time.time()
    reply = await watcher.request(join)
    after = time.time()
    assert isinstance(reply, RoomJoined)
    (carol,) = reply.members
    assert carol.joined_at is not None and before <= carol.joined_at <= after
    phone = await connect("alice", "phone")
    laptop = await connect("alice", "laptop")
    before = time.time()
    await phone.request(join)
    after = time.time()
    joined = await watcher.wait_for("member.joined")
    assert isinstance(joined, MemberJoined) and joined.joined_at is not None
    assert before <= joined.joined_at <= after
    # A second device joining later is no new join: the member's time stays.
    second = await laptop.request(join)
    assert isinstance(second, RoomJoined)
    times = {m.user: m.joined_at for m in second.members}
    assert times == {"alice": joined.joined_at, "carol": carol.joined_at}
    members = await watcher.request({"type": "room.members", "room": "r"})
    assert {m.user: m.joined_at for m in members.members} == times  # type: ignore[union-attr]
    # Leaving with every device and coming back is a new join, with a new time.
    await laptop.request({"type": "room.leave", "room": "r"})
    await phone.request({"type": "room.leave", "room": "r"})
    await watcher.wait_for("member.left")
    mark = len(watcher.received)
    await phone.request(join)
    again = await watcher.wait_for("member.joined", start=mark)
    assert isinstance(again, MemberJoined) and again.joined_at is not None
    assert again.joined_at > joined.joined_at


async def test_abrupt_close_then_grace_expiry_leaves(connect: Connect) -> None:
    watcher = await connect("carol", "web")
    await watcher.request({"type": "room.join", "room": "r"})
    alice = await connect("alice", "phone")
    await alice.request({"type": "room.join", "room": "r"})
    await watcher.wait_for("member.joined")
    alice.abort()
    left = await watcher.wait_for("member.left", timeout=3)
    assert isinstance(left, MemberLeft)
    assert (left.user, left.reason) == ("alice", "grace_expired")
    count = await watcher.request({"type": "room.count", "room": "r"})
    assert count.count == 1  # type: ignore[union-attr]


async def test_resume_within_grace_is_invisible_to_others(
    make_server: ServerFactory, connect: Connect, server: RunningServer
) -> None:
    watcher = await connect("carol", "web")
    await watcher.request({"type": "room.join", "room": "r"})
    await watcher.request({"type": "presence.subscribe", "users": ["alice"]})
    alice = await connect("alice", "phone")
    await alice.request({"type": "room.join", "room": "r"})
    await alice.request({"type": "presence.subscribe", "users": ["carol"]})
    await watcher.wait_for("member.joined")
    welcome = alice.of_type("welcome")[0]
    assert isinstance(welcome, Welcome)
    mark = len(watcher.received)
    alice.abort()
    back = await connect("alice", "phone", resume=welcome.resume_token)
    again = back.of_type("welcome")[0]
    assert isinstance(again, Welcome)
    assert again.resumed and again.session == welcome.session
    assert again.rooms == ["r"] and again.subscriptions == ["carol"]
    assert again.resume_token != welcome.resume_token
    # Still a member after the grace period would have run out: nothing was seen.
    await asyncio.wait_for(_grace_passes(server), 3)
    members = await watcher.request({"type": "room.members", "room": "r"})
    assert {m.user for m in members.members} == {"alice", "carol"}  # type: ignore[union-attr]
    seen = [type(m).__name__ for m in watcher.received[mark:]]
    assert seen == ["RoomMembersReply"], seen
    # The resumed session gets room events again.
    await watcher.request({"type": "status.set", "status": "busy"})
    update = await back.wait_for("member.updated")
    assert isinstance(update, MemberUpdated) and update.status == "busy"


async def _grace_passes(server: RunningServer) -> None:
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    loop.call_later(server.node.settings.grace * 2, done.set_result, None)
    await done


async def test_spent_resume_token_gives_a_fresh_session(connect: Connect) -> None:
    alice = await connect("alice", "phone")
    welcome = alice.of_type("welcome")[0]
    assert isinstance(welcome, Welcome)
    await alice.send({"type": "logout"})
    assert await alice.wait_closed() == 1000
    again = await connect("alice", "phone", resume=welcome.resume_token)
    fresh = again.of_type("welcome")[0]
    assert isinstance(fresh, Welcome)
    assert not fresh.resumed and fresh.resume_error and fresh.session != welcome.session


async def test_resume_by_another_user_is_refused(connect: Connect) -> None:
    alice = await connect("alice", "phone")
    welcome = alice.of_type("welcome")[0]
    assert isinstance(welcome, Welcome)
    alice.abort()
    mallory = await connect("mallory", "x", resume=welcome.resume_token)
    got = mallory.of_type("welcome")[0]
    assert isinstance(got, Welcome) and not got.resumed and got.user == "mallory"


async def test_resume_while_old_transport_looks_alive_replaces_it(connect: Connect) -> None:
    alice = await connect("alice", "phone")
    welcome = alice.of_type("welcome")[0]
    assert isinstance(welcome, Welcome)
    again = await connect("alice", "phone", resume=welcome.resume_token)
    assert again.of_type("welcome")[0].resumed  # type: ignore[union-attr]
    assert await alice.wait_closed() == 4007


async def test_half_open_client_is_detected_and_removed(connect: Connect) -> None:
    watcher = await connect("carol", "web")
    await watcher.request({"type": "room.join", "room": "r"})
    zombie = await connect("zed", "phone")
    await zombie.request({"type": "room.join", "room": "r"})
    await watcher.wait_for("member.joined")
    zombie.ws.transport.pause_reading()  # stops reading: pings go unanswered, no FIN sent
    left = await watcher.wait_for("member.left", timeout=3)
    assert isinstance(left, MemberLeft) and left.user == "zed"
    assert left.reason == "grace_expired"


async def test_client_heartbeat_is_acknowledged(connect: Connect) -> None:
    alice = await connect("alice", "phone")
    ack = await alice.request({"type": "heartbeat"})
    assert type(ack).__name__ == "HeartbeatAck"


async def test_device_events_for_rooms_that_ask(connect: Connect) -> None:
    watcher = await connect("carol", "web")
    await watcher.request({"type": "room.join", "room": "r", "device_events": True})
    plain = await connect("dave", "web")
    await plain.request({"type": "room.join", "room": "r"})
    alice = await connect("alice", "phone")
    await alice.request({"type": "room.join", "room": "r"})
    welcome = alice.of_type("welcome")[0]
    assert isinstance(welcome, Welcome)
    alice.abort()
    dropped = await watcher.wait_for("device.dropped")
    assert isinstance(dropped, DeviceDropped) and (dropped.user, dropped.device) == (
        "alice",
        "phone",
    )
    await connect("alice", "phone", resume=welcome.resume_token)
    back = await watcher.wait_for("device.back")
    assert isinstance(back, DeviceBack) and back.user == "alice"
    assert not plain.of_type("device.dropped") and not plain.of_type("device.back")


async def test_device_gone_after_grace(connect: Connect) -> None:
    watcher = await connect("carol", "web")
    await watcher.request({"type": "room.join", "room": "r", "device_events": True})
    alice = await connect("alice", "phone")
    await alice.request({"type": "room.join", "room": "r"})
    alice.abort()
    await watcher.wait_for("device.dropped")
    gone = await watcher.wait_for("device.gone", timeout=3)
    assert isinstance(gone, DeviceGone) and gone.reason == "grace_expired"
    left = await watcher.wait_for("member.left")
    assert isinstance(left, MemberLeft) and left.user == "alice"
    # docs/protocol.md: device.gone comes first, member.left follows.
    assert watcher.received.index(gone) < watcher.received.index(left)


async def test_device_gone_before_member_updated_when_other_devices_remain(
    connect: Connect,
) -> None:
    watcher = await connect("carol", "web")
    await watcher.request({"type": "room.join", "room": "r", "device_events": True})
    phone = await connect("alice", "phone")
    await phone.request({"type": "room.join", "room": "r"})
    laptop = await connect("alice", "laptop")
    await laptop.request({"type": "room.join", "room": "r"})
    await watcher.wait_for(lambda m: isinstance(m, MemberUpdated) and m.devices == 2)
    phone.abort()
    dropped = await watcher.wait_for("device.dropped")
    mark = watcher.received.index(dropped) + 1
    gone = await watcher.wait_for("device.gone", timeout=3, start=mark)
    updated = await watcher.wait_for("member.updated", start=mark)
    assert isinstance(gone, DeviceGone) and gone.device == "phone"
    assert isinstance(updated, MemberUpdated) and updated.devices == 1
    assert watcher.received.index(gone) < watcher.received.index(updated)


async def test_inactivity_force_leaves_at_once(make_server: ServerFactory) -> None:
    running = await make_server(inactivity_timeout=0.3, grace=30)
    watcher = await ProtocolClient.connect(running.url + "?user=carol&device=w")
    await watcher.wait_for("welcome")
    idle = await ProtocolClient.connect(running.url + "?user=ivan&device=tab")
    await idle.wait_for("welcome")
    await watcher.request({"type": "room.join", "room": "r"})
    await idle.request({"type": "room.join", "room": "r"})

    # The watcher keeps itself active with heartbeats; the idle one does nothing.
    async def keep_alive() -> None:
        while not watcher.closed.is_set():
            await watcher.send({"type": "heartbeat"})
            await asyncio.sleep(0.05)

    beat = asyncio.create_task(keep_alive())
    try:
        force = await idle.wait_for("force_leave", timeout=3)
        assert force.reason == "inactivity_timeout" and force.message  # type: ignore[union-attr]
        assert await idle.wait_closed() == 4003
        left = await watcher.wait_for("member.left", timeout=1)
        assert isinstance(left, MemberLeft) and left.reason == "inactivity_timeout"
        assert not watcher.closed.is_set()
    finally:
        beat.cancel()
        await watcher.close()


async def test_shutdown_tells_clients_to_reconnect(make_server: ServerFactory) -> None:
    running = await make_server()
    client = await ProtocolClient.connect(running.url + "?user=a&device=d")
    await client.wait_for("welcome")
    await running.stop()
    assert await client.wait_closed() == 1012


async def test_shutdown_cancels_work_that_outlives_the_drain(
    make_server: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Work still running when the store closes would reopen its connections (a closed
    # redis-py client reconnects on the next command) and leak them: a CI run failed on
    # the unclosed socket. stop() must leave no background work behind.
    monkeypatch.setattr(node_module, "SHUTDOWN_WORK_TIMEOUT", 0.05)
    running = await make_server()
    release = asyncio.Event()
    outcome: list[str] = []

    async def outlives_the_drain() -> None:
        try:
            await release.wait()
            await running.node.backplane.presence.get_many([UserId("a")])
            outcome.append("used the store")
        except asyncio.CancelledError:
            outcome.append("cancelled")
            raise

    running.node.spawn(outlives_the_drain())
    await running.stop()
    assert outcome == ["cancelled"]  # not pending, and it never reached the store
    release.set()
    running.node.rearm()  # a late callback must not restart the deadline timer
    assert running.node._timer is None


async def test_room_joined_lists_members_with_status(connect: Connect) -> None:
    alice = await connect("alice", "phone")
    await alice.request({"type": "status.set", "status": "busy", "text": "in a call"})
    await alice.request({"type": "room.join", "room": "r", "meta": {"role": "host"}})
    bob = await connect("bob", "web")
    joined = await bob.request({"type": "room.join", "room": "r"})
    assert isinstance(joined, RoomJoined) and joined.version == 2
    by_user = {m.user: m for m in joined.members}
    assert by_user["alice"].status == "busy" and by_user["alice"].text == "in a call"
    assert by_user["alice"].meta == {"role": "host"} and by_user["bob"].devices == 1


async def test_a_session_keeps_when_it_was_opened_and_last_active(
    server: RunningServer, connect: Connect
) -> None:
    alice = await connect("alice")
    welcome = alice.of_type("welcome")[0]
    assert isinstance(welcome, Welcome)
    session = server.node.registry.get(SessionId(welcome.session))
    assert session is not None
    opened = session.connected_at
    assert opened > 0 and session.last_active == opened
    await alice.request({"type": "heartbeat"})  # answered inline: no store write
    beat = session.last_active
    assert beat > opened
    assert isinstance(await alice.request({"type": "room.join", "room": "r"}), RoomJoined)
    # The join wrote the record: the times went with it.
    assert session.connected_at == opened and session.last_active > beat
    record = await server.node.backplane.sessions.get(session.id)
    assert record is not None
    assert (record.connected_at, record.last_active) == (opened, session.last_active)
    await alice.close()
