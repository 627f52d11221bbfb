"""The event outbox when a node is killed: real node processes on one Valkey, a real webhook
receiver. A node that is killed with ``kill -9`` right after its clients got their replies
loses none of the events those replies confirmed (sessions opened, users online, joins,
statuses, messages: each transition's script wrote them in the same step as the change),
and none is made twice: the surviving node takes over the dispatch and, after the grace,
exports the dead node's users leaving, once. What the dead leader delivered but had not acked
the survivor delivers again with the same id (docs/events.md: at least once around a leader
change), so the checks count what a consumer keeps after de-duplicating on ``id``, and every
redelivered copy must equal the first.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest

from presenced.protocol.chat import MessageAck
from presenced.protocol.messages import RoomJoined
from tests.multinode.conftest import Dial, StartNodes
from tests.support.waiting import until
from tests.support.webhooks import Receiver, receiver


def first_copies(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What a consumer de-duplicating on ``id`` keeps: each id's first copy, in arrival
    order; a later copy that differs from the first fails."""
    kept: dict[str, dict[str, Any]] = {}
    for event in events:
        first = kept.setdefault(event["id"], event)
        assert event == first, f"event {event['id']} redelivered changed"
    return list(kept.values())


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

    def kept() -> list[dict[str, Any]]:
        return first_copies(hook.events)

    def of_type(*types: str) -> list[dict[str, Any]]:
        return [e for e in kept() if e["type"] in types]

    def joined(room: str) -> set[str]:
        return {e["user"] for e in of_type("member.joined") if e["room"] == room}

    users = {f"u{i}" for i in range(10)}
    await until(lambda: joined("lobby") == users | {"watcher"}, "every join into lobby", 20)
    await until(lambda: all(joined(f"own{i}") == {f"u{i}"} for i in range(10)), "own rooms", 20)
    # The survivor adopts the dead node's sessions; when their grace runs out, they leave.
    left = lambda: {e["user"] for e in of_type("member.left") if e["room"] == "lobby"}  # noqa: E731
    await until(lambda: left() == users, "the dead node's users leave lobby", 20)
    await until(lambda: len(of_type("room.vacated")) == 10, "the own rooms vacated", 20)
    await until(lambda: len(of_type("user.offline")) == 10, "the users offline", 20)

    def by_user(event_type: str) -> Counter[str | None]:
        return Counter(e["user"] for e in of_type(event_type))

    once = Counter(users)
    for event_type in ("session.opened", "user.online", "user.status", "session.closed"):
        assert by_user(event_type) == once + Counter(
            {"watcher": 1} if event_type in ("session.opened", "user.online") else {}
        ), event_type
    assert by_user("user.offline") == once
    messages = {e["room"]: e["data"]["body"] for e in of_type("message.created")}
    assert messages == {f"own{i}": {"n": i} for i in range(10)}
    assert {e["data"]["reason"] for e in of_type("session.closed")} == {"node_lost"}
    assert all(e["data"]["reason"] == "node_lost" for e in of_type("member.left"))
    lobby = [e for e in kept() if e["key"] == "room:lobby"]
    seqs = [e["seq"] for e in lobby]
    assert seqs == sorted(seqs)
    per_user = Counter((e["type"], e["user"]) for e in lobby if e["type"].startswith("member."))
    assert all(n == 1 for n in per_user.values()), per_user
    assert hook.bad_signatures == 0
