"""The event export to a signed webhook, end to end, on memory and on Valkey.

A real receiver (tests/support/webhooks.py) checks every signature the way docs/events.md
tells an app to and records what it accepted. Clients drive real transitions over WebSocket;
the admin API lists sinks and replays dead letters.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from presenced.protocol.chat import MessageAck
from presenced.protocol.messages import Welcome
from presenced.server.serve import RunningServer
from presenced.testing import ProtocolClient
from tests.conftest import ServerFactory
from tests.support.waiting import until
from tests.support.webhooks import Receiver, receiver

SECRET = "s3cret-s3cret-s3cret"


@pytest.fixture
async def hook() -> AsyncIterator[Receiver]:
    async with receiver(SECRET) as r:
        yield r


def exporting(hook: Receiver, events: str = "", **more: Any) -> dict[str, Any]:
    return {
        "webhooks": hook.url + (f"#events={events}" if events else ""),
        "webhook_secret": SECRET,
        "webhook_backoff": 0.01,
        "webhook_tries": 3,
        **more,
    }


async def open_client(server: RunningServer, user: str, device: str = "d1") -> ProtocolClient:
    c = await ProtocolClient.connect(f"{server.url}?user={user}&device={device}")
    await c.wait_for("welcome")
    return c


async def poll(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 5.0) -> None:
    """Poll an async ``check`` (an API read) until it holds, bounded by ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        assert loop.time() < deadline, f"not within {timeout}s: {what}"
        await asyncio.sleep(0.02)  # poll pacing; the deadline bounds the wait


def keyed(events: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    return [e for e in events if e["key"] == key]


async def test_a_chat_is_exported_in_order_signed_and_each_event_once(
    hook: Receiver, make_server: ServerFactory
) -> None:
    server = await make_server(**exporting(hook))
    alice = await open_client(server, "alice")
    bob = await open_client(server, "bob")
    await alice.request({"type": "room.join", "room": "lobby"})
    await bob.request({"type": "room.join", "room": "lobby"})
    ack = await alice.request({"type": "message.send", "room": "lobby", "body": "hi"})
    assert isinstance(ack, MessageAck)
    await alice.request({"type": "message.edit", "room": "lobby", "id": ack.id, "body": "hey"})
    await bob.send({"type": "receipt.seen", "room": "lobby", "offset": ack.offset})
    # A receipt has no reply: wait for its export before the next step, to fix the order.
    await until(lambda: [e["user"] for e in hook.of_type("receipt.seen")][-1:] == ["bob"], "bob")
    await alice.request({"type": "message.delete", "room": "lobby", "id": ack.id})
    await bob.request({"type": "room.leave", "room": "lobby"})
    await alice.send({"type": "logout"})
    await alice.wait_closed()

    await until(lambda: "user.offline" in hook.types(), "alice's user.offline")
    await until(lambda: "room.vacated" in hook.types(), "the room vacated")
    room = keyed(hook.events, "room:lobby")
    assert [e["type"] for e in room] == [
        "room.occupied",
        "member.joined",  # alice
        "member.joined",  # bob
        "message.created",
        "receipt.seen",  # alice's own send marks it seen for her
        "message.edited",
        "receipt.seen",  # bob
        "message.deleted",
        "member.left",  # bob
        "member.left",  # alice, logged out
        "room.vacated",
    ]
    assert [e["user"] for e in room if e["type"].startswith("member.")] == [
        "alice", "bob", "bob", "alice",
    ]  # fmt: skip
    assert room[3]["data"]["body"] == "hi" and room[3]["data"]["id"] == ack.id
    assert room[5]["data"]["body"] == "hey"
    assert room[6]["user"] == "bob" and room[6]["data"]["offset"] == ack.offset
    assert room[9]["data"]["reason"] == "left"
    users = keyed(hook.events, "user:alice")
    assert [e["type"] for e in users] == [
        "session.opened", "user.online", "session.closed", "user.offline",
    ]  # fmt: skip
    closed = users[2]["data"]
    assert closed["reason"] == "left" and closed["close_code"] == 1000
    assert closed["device"] == "d1" and closed["duration"] >= 0
    for key in {e["key"] for e in hook.events}:
        seqs = [e["seq"] for e in keyed(hook.events, key)]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), key
    ids = [e["id"] for e in hook.events]
    assert len(ids) == len(set(ids))
    assert all(e["v"] == 1 and e["node"] == server.node.node_id for e in hook.events)
    assert hook.bad_signatures == 0
    await bob.close()


async def test_a_resume_within_grace_exports_no_leave(
    hook: Receiver, make_server: ServerFactory
) -> None:
    server = await make_server(**exporting(hook, grace=2.0))
    alice = await ProtocolClient.connect(f"{server.url}?user=alice&device=d1")
    welcome = await alice.wait_for("welcome")
    assert isinstance(welcome, Welcome)
    await alice.request({"type": "room.join", "room": "r"})
    alice.abort()  # vanishes without a goodbye
    back = await ProtocolClient.connect(
        f"{server.url}?user=alice&device=d1&resume={welcome.resume_token}"
    )
    resumed = await back.wait_for("welcome")
    assert isinstance(resumed, Welcome) and resumed.resumed
    await back.request({"type": "room.join", "room": "marker"})  # a later event, to wait on
    await until(lambda: "room.occupied" in [e["type"] for e in keyed(hook.events, "room:marker")],
                "the marker room")  # fmt: skip
    assert hook.of_type("member.left", "user.offline", "session.closed", "room.vacated") == []
    assert len(hook.of_type("session.opened")) == 1 and len(hook.of_type("user.online")) == 1
    await back.close()


async def test_grace_running_out_exports_one_leave_and_one_offline(
    hook: Receiver, make_server: ServerFactory
) -> None:
    server = await make_server(**exporting(hook))
    alice = await open_client(server, "alice")
    await alice.request({"type": "room.join", "room": "r"})
    alice.abort()
    await until(lambda: "user.offline" in hook.types(), "user.offline after the grace")
    (left,) = hook.of_type("member.left")
    assert left["data"]["reason"] == "grace_expired"
    (closed,) = hook.of_type("session.closed")
    assert closed["data"]["reason"] == "grace_expired" and closed["data"]["close_code"] is None
    assert len(hook.of_type("user.offline")) == 1
    assert hook.types().index("member.left") < hook.types().index("user.offline")


async def test_a_receiver_down_for_a_while_loses_nothing_and_keeps_the_order(
    hook: Receiver, make_server: ServerFactory
) -> None:
    hook.refusing = True
    server = await make_server(
        **exporting(hook, events="message.*", webhook_tries=100, message_burst=100)
    )
    alice = await open_client(server, "alice")
    await alice.request({"type": "room.join", "room": "r"})
    for n in range(30):
        await alice.request({"type": "message.send", "room": "r", "body": f"m{n}"})
    await until(lambda: hook.refused >= 3, "a few refused deliveries")
    hook.refusing = False
    await until(lambda: len(hook.events) == 30, "all 30 messages")
    assert [e["data"]["body"] for e in hook.events] == [f"m{n}" for n in range(30)]
    assert hook.types() == ["message.created"] * 30  # the filter holds
    await alice.close()


async def test_a_batch_refused_every_try_is_a_dead_letter_the_api_replays(
    hook: Receiver, make_server: ServerFactory
) -> None:
    hook.refusing = True
    server = await make_server(**exporting(hook, events="member.*"))
    alice = await open_client(server, "alice")
    await alice.request({"type": "room.join", "room": "r"})
    async with aiohttp.ClientSession(server.admin_url) as http:

        async def get(path: str) -> Any:
            async with http.get(path) as reply:
                assert reply.status == 200, await reply.text()
                return await reply.json()

        async def dead() -> bool:
            return bool((await get("/v1/events/sinks"))["sinks"][0]["dead"])

        await poll(dead, "the batch dead-lettered")
        sinks = (await get("/v1/events/sinks"))["sinks"][0]
        assert sinks["dead"] == 1 and sinks["failures"] == 3 and sinks["delivered"] == 0
        letters = (await get("/v1/events/dead-letters"))["dead_letters"]
        assert len(letters) == 1 and letters[0]["tries"] == 3 and "503" in letters[0]["error"]
        assert [e["type"] for e in letters[0]["events"]] == ["member.joined"]
        hook.refusing = False
        async with http.post(f"/v1/events/dead-letters/{letters[0]['id']}/replay") as reply:
            assert reply.status == 202
            assert (await reply.json())["events"] == 1
        await until(lambda: len(hook.events) == 1, "the replayed event")
        assert hook.events[0]["id"] == letters[0]["events"][0]["id"]  # same id: de-duplicable
        assert (await get("/v1/events/dead-letters"))["dead_letters"] == []
        async with http.post(f"/v1/events/dead-letters/{letters[0]['id']}/replay") as reply:
            assert reply.status == 404
            assert (await reply.json())["error"]["field"] == "path.letter"
    await alice.close()


async def test_typing_is_sent_only_to_a_sink_that_names_it(
    hook: Receiver, make_server: ServerFactory
) -> None:
    async with receiver(SECRET) as everything:
        hooks = f"{hook.url}#events=typing.*+member.joined {everything.url}"
        server = await make_server(**{**exporting(hook), "webhooks": hooks})
        alice = await open_client(server, "alice")
        await alice.request({"type": "room.join", "room": "r"})
        await alice.send({"type": "typing.start", "room": "r"})
        await until(lambda: "typing.started" in hook.types(), "typing on the opted-in sink")
        await until(lambda: "member.joined" in everything.types(), "the join on the other")
        assert hook.types() == ["member.joined", "typing.started"]
        await alice.send({"type": "typing.stop", "room": "r"})
        await until(lambda: "typing.stopped" in hook.types(), "typing stopped")
        assert not any(t.startswith("typing.") for t in everything.types())
        await alice.close()


async def test_a_kick_exports_force_leave_then_the_closed_session(
    hook: Receiver, make_server: ServerFactory
) -> None:
    server = await make_server(**exporting(hook))
    alice = await open_client(server, "alice")
    async with (
        aiohttp.ClientSession(server.admin_url) as http,
        http.post("/v1/users/alice/kick", json={"message": "spam"}) as reply,
    ):
        assert reply.status == 200, await reply.text()
    await until(lambda: "user.offline" in hook.types(), "alice offline")
    users = [e["type"] for e in keyed(hook.events, "user:alice")]
    assert users == ["session.opened", "user.online", "force_leave", "session.closed",
                     "user.offline"]  # fmt: skip
    (closed,) = hook.of_type("session.closed")
    assert closed["data"]["reason"] == "kicked" and closed["data"]["close_code"] == 4003
    await alice.wait_closed()


async def test_an_invisible_user_is_online_to_the_backend(
    hook: Receiver, make_server: ServerFactory
) -> None:
    server = await make_server(**exporting(hook))
    alice = await open_client(server, "alice")
    await alice.request({"type": "status.set", "status": "invisible"})
    await alice.request({"type": "status.set", "status": "busy", "text": "call"})
    await until(lambda: len(hook.of_type("user.status")) == 2, "two status changes")
    first, second = hook.of_type("user.status")
    assert first["data"]["status"] == "invisible" and first["data"]["previous"] == "online"
    assert second["data"] == {
        "status": "busy", "text": "call", "devices": 1, "previous": "invisible",
    }  # fmt: skip
    assert len(hook.of_type("user.online")) == 1 and hook.of_type("user.offline") == []
    await alice.close()
