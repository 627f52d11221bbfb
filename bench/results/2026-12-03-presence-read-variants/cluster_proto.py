"""On Cluster: presence_read once per slot (a cluster pipeline of EVALSHA) against the
store's pipeline of HVALS + HGET per user, alternated.

``python bench/results/2026-12-03-presence-read-variants/cluster_proto.py N CALLS ROUNDS``
from the worktree root (README.md next to this file). A scratch measurement kept as the record.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import redis
from redis.crc import key_slot

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from tests.support.valkey import ValkeyCluster

from presenced.store.redis import redis_backplane
from presenced.store.redis.presence import RedisPresenceStore, _read_decoder
from presenced.store.redis.scripts import load_lua
from presenced.typing import SessionId, UserId

SHA = ""


async def per_slot(self: RedisPresenceStore, users: list[UserId]) -> Any:
    """One presence_read per slot, all in one cluster pipeline."""
    groups: dict[int, list[tuple[UserId, list[str]]]] = {}
    for user in users:
        keys = self._user_keys(user)
        groups.setdefault(key_slot(keys[0].encode()), []).append((user, keys))
    pipe = self._client.pipeline(transaction=False)
    order = list(groups.values())
    for group in order:
        keys = [k for _, ks in group for k in ks]
        pipe.execute_command("EVALSHA", SHA, len(keys), *keys)  # pipe.evalsha is refused
    replies = await pipe.execute()
    found = {}
    for group, reply in zip(order, replies, strict=True):
        for (user, _), (seen, records) in zip(group, _read_decoder.decode(reply), strict=True):
            found[user] = (records, float(seen) if seen else None)
    return found


def valkey_cpu(clients: list[redis.Redis]) -> float:
    total = 0.0
    for c in clients:
        info = c.info("cpu")
        total += float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    return total


async def main(cluster: ValkeyCluster, n: int, calls: int, rounds: int) -> None:
    global SHA
    bp = redis_backplane("redis+cluster://" + ",".join(cluster.seeds), prefix="x")
    users = [UserId(f"u{i:04}") for i in range(n)]
    for i, u in enumerate(users):
        await bp.presence.set(u, SessionId(f"s{i}"), "online", None, 1.0)
    SHA = await bp.presence._client.script_load(load_lua("presence_read"))
    clients = [node.client() for node in cluster.nodes]
    store = bp.presence
    ref = await store.get_many(users)
    pipelined = RedisPresenceStore._read_pipelined
    variants: dict[str, Any] = {"pipeline": pipelined, "per_slot": per_slot}
    out: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in variants}
    try:
        for r in range(rounds):
            for name in list(variants) if r % 2 == 0 else list(variants)[::-1]:
                RedisPresenceStore._read_pipelined = variants[name]  # type: ignore[method-assign]
                assert await store.get_many(users) == ref
                for _ in range(calls // 10):
                    await store.get_many(users)
                v0, cpu0 = valkey_cpu(clients), time.process_time()
                for _ in range(calls):
                    await store.get_many(users)
                out[name][0].append((time.process_time() - cpu0) / calls * 1e6)
                out[name][1].append((valkey_cpu(clients) - v0) / calls * 1e6)
    finally:
        RedisPresenceStore._read_pipelined = pipelined  # type: ignore[method-assign]
    for name, (node, valkey) in out.items():
        print(
            f"N={n} {name:9s} node {statistics.median(node):6.0f} "
            f"({min(node):.0f}-{max(node):.0f}) us  valkey {statistics.median(valkey):6.0f} "
            f"({min(valkey):.0f}-{max(valkey):.0f}) us",
            flush=True,
        )
    for c in clients:
        c.close()
    await bp.close()


if __name__ == "__main__":
    servers = ValkeyCluster().start()
    for node in servers.nodes:
        assert node.proc is not None
        os.sched_setaffinity(node.proc.pid, {1})
    os.sched_setaffinity(0, {0})
    try:
        asyncio.run(main(servers, int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))
    finally:
        servers.cleanup()
