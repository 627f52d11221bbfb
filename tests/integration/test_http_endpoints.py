"""Health and metrics on the gateway's own port."""

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


async def test_metrics_expose_gauges(server: RunningServer, connect: Connect) -> None:
    client = await connect("alice", "phone")
    await client.request({"type": "room.join", "room": "r"})
    status, ctype, body = await asyncio.to_thread(get, server.http_url + "/metrics")
    assert status == 200 and ctype.startswith("text/plain")
    node = server.node.node_id
    assert f'presenced_connections{{node="{node}"}} 1.0' in body
    assert f'presenced_sessions{{node="{node}"}} 1.0' in body
    assert f'presenced_rooms_local{{node="{node}"}} 1.0' in body
    assert f'presenced_degraded{{node="{node}"}} 0.0' in body


async def test_unknown_path_is_404(server: RunningServer) -> None:
    status, _, body = await asyncio.to_thread(get, server.http_url + "/nope")
    assert status == 404 and body == "not found"
