"""Redis / Valkey under load: the failsafe refresh of many keys, bursts past the pool, leases.

A node refreshes some 100,000 keys per 20,000 sessions, in chunked script calls on one
server and a pipeline on Cluster; more sessions than one chunk holds check the chunking.
"""

from __future__ import annotations

import asyncio

import pytest

from presenced.presence.session import RoomOptions, Session
from presenced.store.redis.connect import POOL_SIZE, make_client
from presenced.store.redis.nodes import REFRESH_CHUNK
from presenced.typing import DeviceId, RoomId, SessionId, UserId
from tests.conformance.conftest import open_backend


@pytest.mark.parametrize("backend", ["redis", "redis-cluster"])
async def test_refresh_pushes_back_every_key_of_every_session(
    request: pytest.FixtureRequest, backend: str
) -> None:
    bp = await open_backend(request, backend)
    try:
        sessions = []
        for i in range(REFRESH_CHUNK + 200):  # several chunks of keys
            s = Session(
                id=SessionId(f"s{i}"),
                user=UserId(f"u{i}"),
                device=DeviceId("d"),
                resume_token=f"tok-{i}",
                node="n1",
            )
            s.rooms[RoomId(f"r{i % 7}")] = RoomOptions()
            s.subscriptions = {UserId(f"w{i % 5}")}
            assert await bp.sessions.put(s)
            await bp.rooms.add(RoomId(f"r{i % 7}"), s.user, s.id, None, False, 1_700_000_000.0)
            sessions.append(s)
        await bp.nodes.refresh(sessions, 100_000.0)
        client, keys = bp.nodes._client, bp.nodes._keys  # type: ignore[attr-defined]
        names = [keys.session(s.id) for s in sessions] + [
            keys.room_members(RoomId("r3")),
            keys.user_watchers(UserId("w2")),
        ]
        ttls = [await client.ttl(name) for name in names]
        assert min(ttls) > 90_000, [n for n, t in zip(names, ttls, strict=True) if t <= 90_000]
        # GT: a shorter refresh never shortens what a longer one set.
        await bp.nodes.refresh(sessions, 60.0)
        assert await client.ttl(keys.session(sessions[0].id)) > 90_000
    finally:
        await bp.close()


async def test_a_burst_beyond_the_pool_queues_instead_of_failing(
    request: pytest.FixtureRequest,
) -> None:
    """More concurrent commands than the client has connections wait for one (a node in a
    connect storm); redis-py's default pool failed the 101st with "Too many connections"."""
    url = request.getfixturevalue("valkey").url
    client = make_client(url)
    try:
        burst = 4 * POOL_SIZE
        results = await asyncio.gather(*(client.eval("return ARGV[1]", 0, i) for i in range(burst)))
        assert [int(r) for r in results] == list(range(burst))
        assert len(client.connection_pool._in_use_connections) == 0
    finally:
        await client.aclose()


async def test_a_lease_renews_while_every_store_connection_is_busy(
    request: pytest.FixtureRequest,
) -> None:
    """Requests that hold every connection of the shared pool (a connect storm) must not
    hold up the lease: a renewal stuck behind them could lapse and get a live node reaped."""
    bp = await open_backend(request, "redis")
    try:
        client = bp.sessions._client  # type: ignore[attr-defined]
        busy = [
            asyncio.create_task(client.blpop([f"nothing-{i}"], timeout=3)) for i in range(POOL_SIZE)
        ]
        while len(client.connection_pool._in_use_connections) < POOL_SIZE:
            await asyncio.sleep(0.01)
        loop = asyncio.get_running_loop()
        start = loop.time()
        assert await bp.nodes.renew("n1", 5.0) is False
        assert loop.time() - start < 1.0  # not queued behind the 3 s of blocked commands
        await asyncio.gather(*busy)
    finally:
        await bp.close()
