"""A client that stops reading is cut off; the room keeps flowing for everyone else."""

from __future__ import annotations

from presenced.protocol.messages import DeviceDropped, RoomMetaUpdated
from presenced.testing import ProtocolClient
from tests.conftest import ServerFactory


async def test_slow_consumer_is_closed_while_the_room_keeps_flowing(
    make_server: ServerFactory,
) -> None:
    running = await make_server(
        send_queue_bytes=65536,
        slow_consumer_timeout=0.2,
        rate_limit=10_000,
        rate_burst=10_000,
        grace=30,
        heartbeat_interval=30,
        heartbeat_timeout=10,
    )
    watcher = await ProtocolClient.connect(running.url + "?user=carol&device=w")
    await watcher.wait_for("welcome")
    await watcher.request({"type": "room.join", "room": "r", "device_events": True})
    slow = await ProtocolClient.connect(running.url + "?user=sam&device=s")
    await slow.wait_for("welcome")
    await slow.request({"type": "room.join", "room": "r"})
    sender = await ProtocolClient.connect(running.url + "?user=alice&device=a")
    await sender.wait_for("welcome")
    await sender.request({"type": "room.join", "room": "r"})

    slow.ws.transport.pause_reading()  # sam's app hangs: it reads nothing more
    padding = "x" * 30_000
    dropped = None
    for i in range(2_000):  # bounded: the kernel buffers fill after a few MB
        reply = await sender.request(
            {"type": "room.meta", "room": "r", "meta": {"i": i, "p": padding}}
        )
        assert isinstance(reply, RoomMetaUpdated)  # the sender is never held back
        found = [m for m in watcher.of_type("device.dropped") if m.user == "sam"]  # type: ignore[union-attr]
        if found:
            dropped = found[0]
            break
    assert isinstance(dropped, DeviceDropped), "the slow consumer was never cut off"
    # The server is bounded: sam's session is in grace, not holding an ever-growing buffer.
    assert running.node.connection_count == 2
    # And everyone else still gets events.
    mark = len(watcher.received)
    await sender.request({"type": "room.meta", "room": "r", "meta": {"done": True}})
    await watcher.wait_for("member.updated", start=mark)
    for client in (watcher, sender):
        await client.close()
    slow.abort()
