"""``presenced serve --workers 3``: /metrics, served by the admin API's own node, sums every
process (the three workers and itself), from the real CLI."""

from __future__ import annotations

import asyncio
import os
import signal
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from presenced.testing import ProtocolClient
from tests.multinode.conftest import NODE_SETTINGS
from tests.multinode.test_workers import worker_pids
from tests.support.nodes import PresencedNode
from tests.support.valkey import ValkeyProcess

CLIENTS = 12


def _scrape(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url + "/metrics", timeout=5) as r:
        text = r.read().decode()
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            assert s.labels["node"] == "wm"  # the supervisor's id, whoever answered
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()) if k != "node")
            samples[f"{s.name}{{{labels}}}"] = s.value
    return samples


async def test_metrics_sum_every_worker(valkey: ValkeyProcess) -> None:
    node = PresencedNode(
        "wm", **{**NODE_SETTINGS, "redis": valkey.url, "redis_prefix": "wmetrics", "workers": 3}
    )
    node.start()
    clients: list[ProtocolClient] = []
    try:
        assert node.proc is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while len(worker_pids(node.proc.pid)) < 4:  # 3 workers and the admin API's node
            assert loop.time() < deadline, "workers did not start"
            await asyncio.sleep(0.05)  # polling process start-up
        for i in range(CLIENTS):
            client = await ProtocolClient.connect(f"{node.url}?user=u{i}&device=d")
            await client.wait_for("welcome", timeout=10)
            await client.request({"type": "heartbeat"})
            clients.append(client)
        nodes = {c.of_type("welcome")[0].node for c in clients}  # type: ignore[attr-defined]

        # Snapshots are written every second: wait until a scrape sees every process live,
        # then several scrapes in a row agree on the sums.
        deadline = loop.time() + 15
        while True:
            samples = await asyncio.to_thread(_scrape, node.admin_url)
            if (
                samples.get("presenced_worker_processes{}") == 4
                and samples.get("presenced_connections{}") == CLIENTS
                and samples.get("presenced_heartbeats_total{}") == CLIENTS
            ):
                break
            assert loop.time() < deadline, f"never summed: {samples}"
            await asyncio.sleep(0.1)  # polling the snapshots' period
        for _ in range(12):
            samples = await asyncio.to_thread(_scrape, node.admin_url)
            assert samples["presenced_connections_opened_total{}"] == CLIENTS
            assert samples["presenced_connections{}"] == CLIENTS
            assert samples["presenced_sessions_by_state{state=active}"] == CLIENTS
            assert samples["presenced_heartbeats_total{}"] == CLIENTS
            assert samples["presenced_worker_processes{}"] == 4
            assert samples["presenced_store_call_seconds_count{operation=sessions.put}"] >= CLIENTS

        # A worker dies: its gauges leave the sums, what it counted stays (no counter reset).
        victim_node = max(
            nodes, key=lambda n: sum(c.of_type("welcome")[0].node == n for c in clients)
        )  # type: ignore[attr-defined]
        health = {}
        pids = set(worker_pids(node.proc.pid))
        deadline = loop.time() + 20
        while str(health.get("node")) != victim_node:
            assert loop.time() < deadline, "the victim worker never answered /health"
            health = await asyncio.to_thread(node.health) or {}
        victim = int(health["pid"])
        assert victim in pids
        os.kill(victim, signal.SIGKILL)
        on_victim = [c for c in clients if c.of_type("welcome")[0].node == victim_node]  # type: ignore[attr-defined]
        await asyncio.gather(*(c.wait_closed(timeout=10) for c in on_victim))
        deadline = loop.time() + 20
        while True:
            samples = await asyncio.to_thread(_scrape, node.admin_url)
            assert samples["presenced_connections_opened_total{}"] >= CLIENTS
            assert samples["presenced_heartbeats_total{}"] >= CLIENTS
            if samples.get("presenced_connections{}") == CLIENTS - len(on_victim):
                break
            assert loop.time() < deadline, f"the dead worker's gauges stayed: {samples}"
            await asyncio.sleep(0.1)  # polling the snapshots' period
    finally:
        for client in clients:
            client.abort()
        assert node.terminate() == 0
        node.cleanup()
