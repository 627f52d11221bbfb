"""Scratch: on Cluster, one presence_read script per slot (in a cluster pipeline) against the
pipeline of HVALS + HGET per user. Alternated rounds; node CPU and Valkey CPU per read."""
import asyncio, os, statistics, sys, time
sys.path.insert(0, "/work/wt-many")
from redis.crc import key_slot
from tests.support.valkey import ValkeyCluster
from presenced.store.redis import redis_backplane
from presenced.store.redis.presence import RedisPresenceStore, _read_decoder
from presenced.store.redis.scripts import load_lua
from presenced.typing import SessionId, UserId

N, CALLS, ROUNDS = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])

async def per_slot(self, users):
    groups = {}
    for user in users:
        keys = self._user_keys(user)
        groups.setdefault(key_slot(keys[0].encode()), []).append((user, keys))
    pipe = self._client.pipeline(transaction=False)
    order = list(groups.values())
    for group in order:
        keys = [k for _, ks in group for k in ks]
        pipe.execute_command("EVALSHA", SHA, len(keys), *keys)
    replies = await pipe.execute()
    found = {}
    for group, reply in zip(order, replies):
        for (user, _), (seen, records) in zip(group, _read_decoder.decode(reply)):
            found[user] = (records, float(seen) if seen else None)
    return found

def vcpu(clients):
    t = 0.0
    for c in clients:
        i = c.info("cpu"); t += float(i["used_cpu_user"]) + float(i["used_cpu_sys"])
    return t

async def main(cl):
    global SHA
    bp = redis_backplane("redis+cluster://" + ",".join(cl.seeds), prefix="x")
    users = [UserId(f"u{i:04}") for i in range(N)]
    for i, u in enumerate(users):
        await bp.presence.set(u, SessionId(f"s{i}"), "online", None, 1.0)
    SHA = await bp.presence._client.script_load(load_lua("presence_read"))
    clients = [n.client() for n in cl.nodes]
    store = bp.presence
    ref = await store.get_many(users)
    orig = RedisPresenceStore._read_pipelined
    variants = {"pipeline": orig, "per_slot": per_slot}
    out = {k: ([], []) for k in variants}
    for r in range(ROUNDS):
        for name in (list(variants) if r % 2 == 0 else list(variants)[::-1]):
            RedisPresenceStore._read_pipelined = variants[name]
            assert await store.get_many(users) == ref
            for _ in range(CALLS // 10): await store.get_many(users)
            v0 = vcpu(clients); t0 = time.process_time()
            for _ in range(CALLS): await store.get_many(users)
            node = (time.process_time() - t0) / CALLS * 1e6; valkey = (vcpu(clients) - v0) / CALLS * 1e6
            out[name][0].append(node); out[name][1].append(valkey)
    RedisPresenceStore._read_pipelined = orig
    for name, (a, b) in out.items():
        print(f"N={N} {name:9s} node {statistics.median(a):6.0f} ({min(a):.0f}-{max(a):.0f}) us  valkey {statistics.median(b):6.0f} ({min(b):.0f}-{max(b):.0f}) us")
    for c in clients: c.close()
    await bp.close()

cl = ValkeyCluster().start()
for n in cl.nodes: os.sched_setaffinity(n.proc.pid, {1})
os.sched_setaffinity(0, {0})
try:
    asyncio.run(main(cl))
finally:
    cl.cleanup()
