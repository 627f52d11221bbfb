"""The event outbox when a node is killed: real node processes on one Valkey, a real webhook
receiver. A node that is killed with ``kill -9`` right after its clients got their replies
loses none of the events those replies confirmed (sessions opened, users online, joins,
statuses, messages: each transition's script wrote them in the same step as the change),
and no event is sent twice: the surviving node takes over the dispatch and, after the
grace, exports the dead node's users leaving, once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator

import pytest

from presenced.protocol.chat import MessageAck
from presenced.protocol.messages import RoomJoined
from tests.multinode.conftest import Dial, StartNodes
from tests.support.waiting import until
from tests.support.webhooks import Receiver, receiver

SECRET = "s3cret-s3cret-s3cret"


@pytest.fixture
async def hook() -> AsyncIterator[Receiver]:
    async with receiver(SECRET) as r:
        yield r


async def test_kill_9_after_the_replies_loses_no_event_and_doubles_none(
    hook: Receiver, start_nodes: StartNodes, dial: Dial
) -> None:
    exporting = {"webhooks": hook.url, "webhook_secret": SECRET, "webhook_backoff": "0.05"}
    doomed, survivor = start_nodes(2, **exporting)
    clients = [await dial(doomed, f"u{i}") for i in range(10)]
    watcher = await dial(survivor, "watcher")
    assert isinstance(await watcher.request({"type": "room.join", "room": "lobby"}), RoomJoined)
    for i, client in enumerate(clients):
        for room in ("lobby", f"own{i}"):
            reply = await client.request({"type": "room.join", "room": room})
            assert isinstance(reply, RoomJoined)
        sent = await client.request({"type": "message.send", "room": f"own{i}", "body": {"n": i}})
        assert isinstance(sent, MessageAck)
        await client.request({"type": "status.set", "status": "away"})
    doomed.kill()  # SIGKILL, right after the last reply

    def joined(room: str) -> set[str]:
        return {e["user"] for e in hook.of_type("member.joined") if e["room"] == room}

    users = {f"u{i}" for i in range(10)}
    await until(lambda: joined("lobby") == users | {"watcher"}, "every join into lobby", 20)
    await until(lambda: all(joined(f"own{i}") == {f"u{i}"} for i in range(10)), "own rooms", 20)
    # The survivor adopts the dead node's sessions; when their grace runs out, they leave.
    left = lambda: {e["user"] for e in hook.of_type("member.left") if e["room"] == "lobby"}  # noqa: E731
    await until(lambda: left() == users, "the dead node's users leave lobby", 20)
    await until(lambda: len(hook.of_type("room.vacated")) == 10, "the own rooms vacated", 20)
    await until(lambda: len(hook.of_type("user.offline")) == 10, "the users offline", 20)

    def by_user(event_type: str) -> Counter[str | None]:
        return Counter(e["user"] for e in hook.of_type(event_type))

    once = Counter(users)
    for event_type in ("session.opened", "user.online", "user.status", "session.closed"):
        assert by_user(event_type) == once + Counter(
            {"watcher": 1} if event_type in ("session.opened", "user.online") else {}
        ), event_type
    assert by_user("user.offline") == once
    messages = {e["room"]: e["data"]["body"] for e in hook.of_type("message.created")}
    assert messages == {f"own{i}": {"n": i} for i in range(10)}
    assert {e["data"]["reason"] for e in hook.of_type("session.closed")} == {"node_lost"}
    ids = Counter(e["id"] for e in hook.events)
    assert [i for i, n in ids.items() if n > 1] == [], "an event was delivered twice"
    assert all(e["data"]["reason"] == "node_lost" for e in hook.of_type("member.left"))
    lobby = [e for e in hook.events if e["key"] == "room:lobby"]
    seqs = [e["seq"] for e in lobby]
    assert seqs == sorted(seqs)
    per_user = Counter((e["type"], e["user"]) for e in lobby if e["type"].startswith("member."))
    assert all(n == 1 for n in per_user.values()), per_user
    assert hook.bad_signatures == 0
