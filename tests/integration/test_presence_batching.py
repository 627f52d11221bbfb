"""Membership bursts are coalesced into room.batch frames, with every event kept in order."""

from __future__ import annotations

import asyncio

from presenced.protocol.messages import MemberJoined, MemberLeft
from presenced.server.batching import IMMEDIATE, MembershipBatcher
from presenced.testing import ProtocolClient
from presenced.typing import RoomId
from tests.conftest import ServerFactory


async def test_a_burst_of_joins_arrives_in_few_frames_and_in_order(
    make_server: ServerFactory,
) -> None:
    running = await make_server(presence_batch_window=0.05)
    watcher = await ProtocolClient.connect(running.url + "?user=watcher&device=w")
    await watcher.wait_for("welcome")
    first = await watcher.request({"type": "room.join", "room": "r"})
    frames_before = watcher.frames
    joiners = await asyncio.gather(
        *(ProtocolClient.connect(f"{running.url}?user=u{i}&device=d") for i in range(40))
    )
    for client in joiners:
        await client.wait_for("welcome")
    await asyncio.gather(*(c.request({"type": "room.join", "room": "r"}) for c in joiners))
    await watcher.wait_for(
        lambda m: isinstance(m, MemberJoined) and m.version == first.version + 40  # type: ignore[union-attr]
    )
    joined = [m for m in watcher.received if isinstance(m, MemberJoined)]
    assert [m.version for m in joined] == list(range(first.version + 1, first.version + 41))  # type: ignore[union-attr]
    assert {m.user for m in joined} == {f"u{i}" for i in range(40)}
    frames = watcher.frames - frames_before
    assert watcher.batches >= 1
    assert frames < 40, frames  # fewer frames than events
    # A change after a quiet spell is not held back: it comes alone.
    await asyncio.sleep(0.1)  # the quiet spell itself is what this step is about
    batches = watcher.batches
    await joiners[0].request({"type": "room.leave", "room": "r"})
    left = await watcher.wait_for("member.left")
    assert isinstance(left, MemberLeft) and left.user == "u0"
    assert watcher.batches == batches
    for client in (watcher, *joiners):
        await client.close()


async def test_messages_are_never_overtaken_by_held_membership_events(
    make_server: ServerFactory,
) -> None:
    running = await make_server(presence_batch_window=5.0)  # long: only ordering can flush
    watcher = await ProtocolClient.connect(running.url + "?user=watcher&device=w")
    await watcher.wait_for("welcome")
    await watcher.request({"type": "room.join", "room": "r"})
    joiners = [await ProtocolClient.connect(f"{running.url}?user=u{i}&device=d") for i in range(6)]
    for joiner in joiners:
        await joiner.wait_for("welcome")
        await joiner.request({"type": "room.join", "room": "r"})
    # The first few went out at once (IMMEDIATE, 2); the
    # others are held for a 5 s window: only the message flushes them.
    a = joiners[0]
    await a.request({"type": "message.send", "room": "r", "body": "hello"})
    message = await watcher.wait_for("message", timeout=2)
    order = [type(m).__name__ for m in watcher.received]
    assert order.index("MessageEvent") > max(
        i for i, m in enumerate(watcher.received) if isinstance(m, MemberJoined)
    ), order
    assert message.body == "hello"  # type: ignore[union-attr]
    assert watcher.batches == 1
    assert len([m for m in watcher.received if isinstance(m, MemberJoined)]) == 6
    for client in (watcher, *joiners):
        await client.close()


async def test_a_large_room_switches_to_summaries(make_server: ServerFactory) -> None:
    from presenced.protocol.messages import RoomSummary

    running = await make_server(room_summary_above=3, room_summary_interval=0.2)
    watcher = await ProtocolClient.connect(running.url + "?user=watcher&device=w")
    await watcher.wait_for("welcome")
    await watcher.request({"type": "room.join", "room": "r"})
    clients = []
    for i in range(8):
        client = await ProtocolClient.connect(f"{running.url}?user=u{i}&device=d")
        await client.wait_for("welcome")
        await client.request({"type": "room.join", "room": "r"})
        clients.append(client)
    # Up to the limit, member events; past it, summaries, the latest count winning.
    last = await watcher.wait_for(lambda m: isinstance(m, RoomSummary) and m.count == 9)
    joined = [m for m in watcher.received if isinstance(m, MemberJoined)]
    assert [m.user for m in joined] == ["u0", "u1"]
    summaries = [m for m in watcher.received if isinstance(m, RoomSummary)]
    assert len(summaries) < 7  # throttled: fewer than one per change
    assert isinstance(last, RoomSummary) and last.version >= 9
    # Back to the limit: a last summary says so; under it, member events again.
    for client in clients[:6]:
        await client.request({"type": "room.leave", "room": "r"})
    await watcher.wait_for(lambda m: isinstance(m, RoomSummary) and m.count == 3)
    await clients[6].request({"type": "room.leave", "room": "r"})
    left = await watcher.wait_for("member.left", timeout=3)
    assert isinstance(left, MemberLeft) and left.user == "u6"
    count = await watcher.request({"type": "room.count", "room": "r"})
    assert count.count == 2  # type: ignore[union-attr]
    for client in (watcher, *clients):
        await client.close()


async def test_the_batch_window_grows_with_the_room() -> None:
    """A big room holds its batch longer (fewer frames per member while it churns); a small
    one keeps the configured window."""
    sent: list[tuple[str, bytes, float]] = []
    loop = asyncio.get_running_loop()
    batcher = MembershipBatcher(
        0.02, lambda room, frame: sent.append((room, frame, loop.time())), scale_members=10
    )
    assert batcher.window_for(1) == batcher.window_for(10) == 0.02
    assert batcher.window_for(50) == 0.1
    assert batcher.window_for(10**6) == 0.02 * batcher.max_scale
    event = b'{"type":"member.joined","room":"R","version":1,"user":"u"}'
    for room, members in (("small", 5), ("big", 50)):
        for _ in range(IMMEDIATE):  # a quiet room's first few go out at once
            assert not batcher.hold(room, event, members)
        assert batcher.hold(room, event, members)  # the next ones wait for the window
        assert batcher.hold(room, event, members)
    start = loop.time()
    while len(sent) < 4 and loop.time() - start < 2:
        await asyncio.sleep(0.005)
    held = {
        room: at - start for room, frame, at in sent if frame.startswith(b'{"type":"room.batch"')
    }
    assert set(held) == {"small", "big"}
    assert held["small"] < 0.09  # 20 ms window (plus loop lag)
    assert held["big"] >= 0.09  # 100 ms window
    batcher.close()


async def test_a_leave_right_after_a_join_is_not_held_for_the_window(
    make_server: ServerFactory,
) -> None:
    """A change goes out at once even when another came just before it: after a quiet
    spell, a join and the leave that follows it both reach the room well within the 0.4 s
    window (held, the leave would wait for it)."""
    running = await make_server(presence_batch_window=0.4)
    watcher = await ProtocolClient.connect(running.url + "?user=watcher&device=w")
    await watcher.wait_for("welcome")
    visitor = await ProtocolClient.connect(running.url + "?user=v&device=d")
    await visitor.wait_for("welcome")
    await watcher.request({"type": "room.join", "room": "r"})  # spends one of the room's two
    await asyncio.sleep(0.4)  # the quiet spell itself is what this step is about
    await visitor.request({"type": "room.join", "room": "r"})
    await visitor.request({"type": "room.leave", "room": "r"})
    left = await watcher.wait_for("member.left", timeout=0.3)  # not the 0.4 s window
    assert isinstance(left, MemberLeft) and left.user == "v"
    assert watcher.batches == 0
    for client in (watcher, visitor):
        await client.close()


async def test_a_rooms_budget_is_two_frames_then_one_per_window() -> None:
    """The budget itself, on a batcher: a quiet room's first IMMEDIATE changes go out at
    once; the next are held, until the window earns a frame or another event of the room
    flushes them, as one batch."""
    sent: list[bytes] = []
    batcher = MembershipBatcher(60.0, lambda room, frame: sent.append(frame))
    event = b'{"type":"member.joined","room":"R","version":1,"user":"u"}'
    held = [batcher.hold(RoomId("R"), event, 10) for _ in range(IMMEDIATE + 2)]
    assert held == [False] * IMMEDIATE + [True, True]
    assert not sent  # the held ones wait for the window (60 s), or for another event
    batcher.flush(RoomId("R"))  # another event of the room: the held ones go first, as one batch
    assert len(sent) == 1 and sent[0].startswith(b'{"type":"room.batch"')
    assert batcher.hold(RoomId("R"), event, 10)  # the budget is spent (one frame in debt)
    batcher.close()
