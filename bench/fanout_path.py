"""The fan-out's per-recipient Python path, alone: nanoseconds per delivery.

``python -m bench.fanout_path [BATCHES]`` builds a node on the memory store with 100 local
members in one room whose transports' ``send_text`` is a C no-op, then times
``RoomTable.deliver`` of one message frame (99 recipients) in batches of 200 and prints
the best batch's nanoseconds per delivery. Run it under ``PYTHONPATH=OTHER_TREE/src`` to
compare two source trees: the figure has none of the socket, kernel or client cost, so it
shows a change to the loop itself within a few nanoseconds even on a busy machine, where
the throughput scenario's CPU per delivery moves by 10 % from one run to the next
(docs/benchmarks.md, "Metrics on the hot path").
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import deque
from types import SimpleNamespace
from typing import Any

from presenced.clock import SystemClock
from presenced.config import Settings
from presenced.server.node import Node
from presenced.server.transport import ConnectRequest
from presenced.store.memory import memory_backplane
from presenced.typing import NodeId, RoomId

__all__ = ["measure"]

MEMBERS = 100
CALLS = 200  # deliver() calls per batch


class _NullTransport:
    """What the fan-out touches of a transport; writing is a C call that drops the bytes."""

    __slots__ = ("peer", "send_text")

    def __init__(self) -> None:
        self.send_text = deque(maxlen=0).append
        self.peer = ""

    def buffered(self) -> int:
        return 0


async def measure(batches: int = 300) -> float:
    """The best batch's nanoseconds per delivery."""
    node = Node(Settings(), memory_backplane(), clock=SystemClock(), node_id=NodeId("bench"))
    conns: dict[Any, None] = {}
    for i in range(MEMBERS):
        conn = node.new_connection(ConnectRequest("/ws", {}, {}, ""))
        assert conn is not None
        conn.transport = _NullTransport()  # type: ignore[assignment]
        conn.session = SimpleNamespace(id=f"s{i}")  # type: ignore[assignment]
        conns[conn] = None
    rooms = node.fanout.rooms
    room = RoomId("r")
    rooms._conns[room] = conns
    payload = b'{"type":"message","room":"r","id":"m1","offset":1,"user":"u","body":"%s"}' % (
        b"x" * 100
    )
    deliver = rooms.deliver
    best = float("inf")
    for _ in range(batches):
        t0 = time.perf_counter_ns()
        for _ in range(CALLS):
            deliver(room, payload, "s0")
        best = min(best, (time.perf_counter_ns() - t0) / (CALLS * (MEMBERS - 1)))
    return best


if __name__ == "__main__":
    print(f"{asyncio.run(measure(int(sys.argv[1]) if len(sys.argv) > 1 else 300)):.1f}")
