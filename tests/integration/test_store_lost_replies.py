"""A write whose reply is lost is not done twice.

redis-py retries a command that failed with a connection error on a fresh connection: that
is how a pooled connection that died with a restart or failover is survived. But a reply
can be lost after the server did the work (a connection reset between the two), and the
retry then runs the script a second time. A :class:`TcpRelay` in front of Valkey makes that
happen: it lets the request through, drops its reply and closes that one link, and goes on
relaying, so the retry lands at once. Each store write must come out as if it ran once: one
message in the room's stream, one event in the stream to the backend.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from presenced.protocol.chat import MessageAck, MessageEdited
from presenced.protocol.messages import MemberJoined, Presence, PresenceSubscribed, RoomJoined
from presenced.server.serve import RunningServer
from presenced.testing import ProtocolClient
from presenced.typing import RoomId
from tests.integration import test_store_outage_ghosts as ghosts
from tests.integration.test_store_outage_ghosts import (
    Store,
    calls,
    kept,
    open_client,
    script_sha,
    traces,
)
from tests.support.tcp_relay import TcpRelay
from tests.support.waiting import until
from tests.support.webhooks import Receiver

pytestmark = pytest.mark.own_backend

# The same set-up as the outage tests: a node on Valkey through a relay, a webhook receiver
# for its event stream, and a view of the store past the relay.
hook, relay, prefix, store, node = (
    ghosts.hook,
    ghosts.relay,
    ghosts.prefix,
    ghosts.store,
    ghosts.node,
)


async def exported_for(hook: Receiver, event_type: str, users: list[str]) -> None:
    """Wait until the event stream holds ``event_type`` for exactly ``users``, in order."""

    def seen() -> list[str]:
        return [e["user"] for e in kept(hook, event_type)]

    await until(lambda: seen() == users, f"{event_type} for {users} (so far {seen()})")


def carrying(script: str, text: str) -> Any:
    """A relay rule: the request runs ``script`` with ``text`` among its arguments."""
    sha, needle = script_sha(script), text.encode()
    return lambda data: sha in data and needle in data


async def stream_of(store: Store, room: str) -> list[Any]:
    """Every event the room's stream holds, oldest first."""
    messages = store.backplane.messages
    epoch, _ = await messages.position(RoomId(room))
    recovery = await messages.since(RoomId(room), epoch, 0, time.time())
    return recovery.events


async def test_a_message_whose_append_reply_was_lost_is_stored_once(
    node: RunningServer, relay: TcpRelay, store: Store, hook: Receiver
) -> None:
    alice, _ = await open_client(node, "alice")
    assert isinstance(await alice.request({"type": "room.join", "room": "lobby"}), RoomJoined)
    first = await alice.request({"type": "message.send", "room": "lobby", "body": "before"})
    assert isinstance(first, MessageAck), first
    dropped = relay.drop_reply(carrying("message_append", "only-once"))
    ack = await alice.request(
        {"type": "message.send", "room": "lobby", "body": "only-once"}, timeout=30
    )
    assert dropped.is_set(), "the append's reply was dropped"
    assert isinstance(ack, MessageAck), ack
    assert ack.offset == first.offset + 1, (first, ack)
    events = await stream_of(store, "lobby")
    bodies = [e.body for e in events]
    assert bodies == ["before", "only-once"], bodies
    after = await alice.request({"type": "message.send", "room": "lobby", "body": "after"})
    assert isinstance(after, MessageAck) and after.offset == ack.offset + 1, after

    def created() -> list[Any]:
        return [e["data"]["body"] for e in kept(hook, "message.created")]

    await until(lambda: len(created()) >= 3, "three message.created events")
    assert created() == ["before", "only-once", "after"]
    await alice.close()


async def test_a_join_whose_reply_was_lost_is_seen_by_the_room(
    node: RunningServer, relay: TcpRelay, store: Store, hook: Receiver
) -> None:
    """Run again, room_add would find carol already listed and say "nothing changed": she
    would be in the room with nobody told."""
    alice, _ = await open_client(node, "alice")
    assert isinstance(await alice.request({"type": "room.join", "room": "lobby"}), RoomJoined)
    carol, welcome = await open_client(node, "carol")
    dropped = relay.drop_reply(calls("room_add", "carol"))
    joined = await carol.request({"type": "room.join", "room": "lobby"}, timeout=30)
    assert dropped.is_set()
    assert isinstance(joined, RoomJoined), joined
    seen = await alice.wait_for(lambda m: isinstance(m, MemberJoined) and m.user == "carol")
    assert isinstance(seen, MemberJoined) and seen.devices == 1, seen
    assert (await traces(store, "carol"))["member"] == [welcome.session]
    await exported_for(hook, "member.joined", ["alice", "carol"])
    await carol.close()
    await alice.close()


async def test_a_connect_whose_presence_reply_was_lost_is_seen_by_watchers(
    node: RunningServer, relay: TcpRelay, hook: Receiver
) -> None:
    """Run again, presence_set would find bob's session already there: no change, and the
    users watching him would never see him come online."""
    alice, _ = await open_client(node, "alice")
    watching = await alice.request({"type": "presence.subscribe", "users": ["bob"]})
    assert isinstance(watching, PresenceSubscribed), watching
    dropped = relay.drop_reply(calls("presence_set", "bob"))
    bob = await ProtocolClient.connect(f"{node.url}?user=bob&device=d")
    await bob.wait_for("welcome", timeout=30)
    assert dropped.is_set()
    online = await alice.wait_for(lambda m: isinstance(m, Presence) and m.user == "bob")
    assert isinstance(online, Presence) and online.online and online.devices == 1, online
    await exported_for(hook, "user.online", ["alice", "bob"])
    await bob.close()
    await alice.close()


async def test_an_edit_whose_reply_was_lost_is_stored_once(
    node: RunningServer, relay: TcpRelay, store: Store
) -> None:
    alice, _ = await open_client(node, "alice")
    assert isinstance(await alice.request({"type": "room.join", "room": "lobby"}), RoomJoined)
    sent = await alice.request({"type": "message.send", "room": "lobby", "body": "draft"})
    assert isinstance(sent, MessageAck), sent
    edit = {"type": "message.edit", "room": "lobby", "id": sent.id, "body": "second"}
    assert isinstance(await alice.request(edit), MessageEdited)  # the script is loaded
    dropped = relay.drop_reply(carrying("message_amend", "final"))
    edited = await alice.request({**edit, "body": "final"}, timeout=30)
    assert dropped.is_set()
    assert isinstance(edited, MessageEdited) and edited.offset == sent.offset + 2, edited
    events = await stream_of(store, "lobby")
    assert [(e.kind.value, e.body) for e in events] == [
        ("message", "draft"),
        ("edited", "second"),
        ("edited", "final"),
    ], events
    await alice.close()
