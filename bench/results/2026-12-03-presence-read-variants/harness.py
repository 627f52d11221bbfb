import asyncio, os, sys, time
sys.path.insert(0, "/work/wt-many")
import msgspec
from tests.support.valkey import ValkeyProcess
from presenced.store.redis import redis_backplane
from presenced.store.redis.presence import _records, _last_seen, DeviceStatus, view
from presenced.typing import SessionId, UserId

N, CALLS = int(sys.argv[1]), int(sys.argv[2])
dec3 = msgspec.json.Decoder(list[tuple[str | None, list[DeviceStatus]]])

def decode_flat(users, reply):
    found, i = {}, 0
    for user in users:
        seen, n = reply[i], reply[i + 1]
        found[user] = (_records(reply[i + 2 : i + 2 + n]), _last_seen(seen))
        i += 2 + n
    return found

def decode_json(users, reply):
    rows = dec3.decode(reply)
    return {u: (recs, float(ls) if ls else None) for u, (ls, recs) in zip(users, rows)}

async def main(v):
    bp = redis_backplane(v.url, prefix="x")
    users = [UserId(f"u{i:04}") for i in range(N)]
    for i, u in enumerate(users):
        st = "invisible" if i % 10 == 0 else "online"
        if i % 7 != 3:
            await bp.presence.set(u, SessionId(f"s{i}"), st, None, 1.0)
        if i % 7 == 3 or i % 5 == 0:
            await bp.presence.set(u, SessionId(f"t{i}"), "online", "hi", 1.0)
            await bp.presence.remove(u, SessionId(f"t{i}"), 2.0)
    keys = [k for u in users for k in (bp.presence._keys.user_statuses(u), bp.presence._keys.user_meta(u))]
    c = v.client()
    ref = None
    import statistics
    out = {n: ([], [], []) for n in ("v1", "v2", "v3")}
    for rnd in range(int(sys.argv[3])):
      order = ["v1", "v2", "v3"][rnd % 3:] + ["v1", "v2", "v3"][:rnd % 3]
      for name in order:
          text = open(f"/tmp/many-variants/{name}.lua").read()
          sha = c.script_load(text)
          decode = decode_json if name == "v3" else decode_flat
          client = bp.presence._client
          res = decode(users, await client.evalsha(sha, len(keys), *keys))
          views = [view(u, *res[u], public=True) for u in users] + [view(u, *res[u], public=False) for u in users]
          if ref is None: ref = views
          assert views == ref, name
          c.config_resetstat()
          t0 = time.process_time()
          for _ in range(CALLS):
              decode(users, await client.evalsha(sha, len(keys), *keys))
          cpu = (time.process_time() - t0) / CALLS
          st = c.info("commandstats")["cmdstat_evalsha"]
          rep = client.connection_pool  # noqa
          raw = await client.evalsha(sha, len(keys), *keys)
          t1 = time.process_time()
          for _ in range(CALLS):
              decode(users, raw)
          dec = (time.process_time() - t1) / CALLS
          out[name][0].append(st['usec_per_call']); out[name][1].append(cpu * 1e6); out[name][2].append(dec * 1e6)
    for name, (a, b, d) in out.items():
        print(f"{name} N={N}: valkey {statistics.median(a):.0f} ({min(a):.0f}-{max(a):.0f}) us per script, node {statistics.median(b):.0f} ({min(b):.0f}-{max(b):.0f}) us, decode only {statistics.median(d):.0f} us")
    await bp.close()

v = ValkeyProcess().start()
os.sched_setaffinity(v.proc.pid, {1}); os.sched_setaffinity(0, {0})
try:
    asyncio.run(main(v))
finally:
    v.cleanup()
