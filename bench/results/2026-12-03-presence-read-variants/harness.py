"""presence_read's reply forms (v1.lua, v2.lua, v3.lua here), alternated on one Valkey.

``python bench/results/2026-12-03-presence-read-variants/harness.py N CALLS ROUNDS`` from the
worktree root (README.md next to this file). A scratch measurement kept as the record.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from tests.support.valkey import ValkeyProcess

from presenced.store.redis import redis_backplane
from presenced.store.redis.presence import DeviceStatus, _last_seen, _records, view
from presenced.typing import SessionId, UserId

HERE = Path(__file__).resolve().parent
VARIANTS = ("v1", "v2", "v3")
_json_reply = msgspec.json.Decoder(list[tuple[str | None, list[DeviceStatus]]])

Found = dict[UserId, tuple[list[DeviceStatus], float | None]]


def decode_flat(users: list[UserId], reply: Any) -> Found:
    found, i = {}, 0
    for user in users:
        seen, n = reply[i], reply[i + 1]
        found[user] = (_records(reply[i + 2 : i + 2 + n]), _last_seen(seen))
        i += 2 + n
    return found


def decode_json(users: list[UserId], reply: Any) -> Found:
    rows = _json_reply.decode(reply)
    return {u: (recs, float(ls) if ls else None) for u, (ls, recs) in zip(users, rows, strict=True)}


async def make_users(bp: Any, n: int) -> list[UserId]:
    """1 in 10 invisible, 1 in 7 offline with a last seen, 1 in 5 of the rest with a last seen
    from a session before."""
    users = [UserId(f"u{i:04}") for i in range(n)]
    for i, u in enumerate(users):
        if i % 7 != 3:
            status = "invisible" if i % 10 == 0 else "online"
            await bp.presence.set(u, SessionId(f"s{i}"), status, None, 1.0)
        if i % 7 == 3 or i % 5 == 0:
            await bp.presence.set(u, SessionId(f"t{i}"), "online", "hi", 1.0)
            await bp.presence.remove(u, SessionId(f"t{i}"), 2.0)
    return users


async def main(v: ValkeyProcess, n: int, calls: int, rounds: int) -> None:
    bp = redis_backplane(v.url, prefix="x")
    users = await make_users(bp, n)
    keys = bp.presence._keys
    args = [k for u in users for k in (keys.user_statuses(u), keys.user_meta(u))]
    admin = v.client()
    client = bp.presence._client
    shas = {name: admin.script_load((HERE / f"{name}.lua").read_text()) for name in VARIANTS}
    out: dict[str, tuple[list[float], list[float], list[float]]] = {
        name: ([], [], []) for name in VARIANTS
    }
    ref = None
    for r in range(rounds):
        for name in VARIANTS[r % 3 :] + VARIANTS[: r % 3]:
            decode = decode_json if name == "v3" else decode_flat
            sha = shas[name]
            found = decode(users, await client.evalsha(sha, len(args), *args))
            views = [view(u, *found[u], public=p) for p in (True, False) for u in users]
            ref = views if ref is None else ref
            assert views == ref, name
            admin.config_resetstat()
            cpu0 = time.process_time()
            for _ in range(calls):
                decode(users, await client.evalsha(sha, len(args), *args))
            node = (time.process_time() - cpu0) / calls
            script = admin.info("commandstats")["cmdstat_evalsha"]["usec_per_call"]
            raw = await client.evalsha(sha, len(args), *args)
            cpu0 = time.process_time()
            for _ in range(calls):
                decode(users, raw)
            only = (time.process_time() - cpu0) / calls
            out[name][0].append(script)
            out[name][1].append(node * 1e6)
            out[name][2].append(only * 1e6)
    for name, (script_us, node_us, decode_us) in out.items():
        print(
            f"{name} N={n}: valkey {statistics.median(script_us):.0f} "
            f"({min(script_us):.0f}-{max(script_us):.0f}) us per script, node "
            f"{statistics.median(node_us):.0f} ({min(node_us):.0f}-{max(node_us):.0f}) us, "
            f"decode only {statistics.median(decode_us):.0f} us",
            flush=True,
        )
    admin.close()
    await bp.close()


if __name__ == "__main__":
    server = ValkeyProcess().start()
    assert server.proc is not None
    os.sched_setaffinity(server.proc.pid, {1})
    os.sched_setaffinity(0, {0})
    try:
        asyncio.run(main(server, int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))
    finally:
        server.cleanup()
