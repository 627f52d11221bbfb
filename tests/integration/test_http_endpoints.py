"""Health and readiness on the gateway's own port (and the admin port); metrics on the admin
port only."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

from presenced.server.serve import RunningServer
from tests.conftest import Connect


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.headers["Content-Type"], r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"] or "", exc.read().decode()


async def test_health_reports_ok_and_counts(
    server: RunningServer, connect: Connect, gateway_backend: str
) -> None:
    await connect("alice", "phone")
    status, ctype, body = await asyncio.to_thread(get, server.http_url + "/health")
    data = json.loads(body)
    assert status == 200 and ctype == "application/json"
    store = {"memory": "memory", "valkey": "redis"}[gateway_backend]
    assert data["status"] == "ok" and data["store"] == store
    assert data["connections"] == 1 and data["sessions"] == 1
    assert data["ready"] is True and all(data["checks"].values())
    for base in (server.http_url, server.admin_url):
        status, _, body = await asyncio.to_thread(get, base + "/ready")
        assert status == 200 and json.loads(body)["ready"] is True


async def test_ready_is_503_while_draining_and_health_still_200(server: RunningServer) -> None:
    server.node.draining = True  # what drain() sets first; the listeners are still up
    try:
        for base in (server.http_url, server.admin_url):
            status, _, body = await asyncio.to_thread(get, base + "/ready")
            data = json.loads(body)
            assert status == 503 and data["checks"]["accepting"] is False
            status, _, body = await asyncio.to_thread(get, base + "/health")
            assert status == 200 and json.loads(body)["status"] == "draining"
    finally:
        server.node.draining = False


async def test_metrics_are_not_on_the_client_port(server: RunningServer) -> None:
    status, _, _ = await asyncio.to_thread(get, server.http_url + "/metrics")
    assert status == 404


async def test_metrics_expose_gauges(server: RunningServer, connect: Connect) -> None:
    client = await connect("alice", "phone")
    await client.request({"type": "room.join", "room": "r"})
    status, ctype, body = await asyncio.to_thread(get, server.admin_url + "/metrics")
    assert status == 200 and ctype.startswith("text/plain")
    node = server.node.node_id
    assert f'presenced_connections{{node="{node}"}} 1.0' in body
    assert f'presenced_sessions{{node="{node}"}} 1.0' in body
    assert f'presenced_rooms_local{{node="{node}"}} 1.0' in body
    assert f'presenced_degraded{{node="{node}"}} 0.0' in body


async def test_unknown_path_is_404(server: RunningServer) -> None:
    status, _, body = await asyncio.to_thread(get, server.http_url + "/nope")
    assert status == 404 and body == "not found"
