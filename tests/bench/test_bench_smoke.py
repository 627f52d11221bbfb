"""Smoke test of the benchmark suite: a tiny run of ``python -m bench.run`` still works.

Runs every scenario at ``--quick`` size (a few hundred connections, a few seconds each)
against presenced and the bare ``websockets`` peer, the two servers the ``test`` extra
can start, and checks that the figures are sane: present, positive, consistent with
each other and nothing lost. No speed threshold: CI machines differ and are shared.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SERVERS = ["presenced", "websockets-bare"]


def _by_server(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out = {r["server"]: r for r in runs}
    assert sorted(out) == sorted(SERVERS), runs
    for r in runs:
        assert "error" not in r, r
    return out


def _quick_run(
    tmp_path: Path, args: list[str], timeout: float
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """``python -m bench.run --quick ARGS``; the finished run's output and its JSON."""
    out = tmp_path / "bench.json"
    argv = [sys.executable, "-m", "bench.run", "--quick", *args]
    proc = subprocess.run(
        [*argv, "--quiet-wait", "0", "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc, json.loads(out.read_text())


def test_quick_bench_run_produces_sane_figures(tmp_path: Path) -> None:
    proc, doc = _quick_run(tmp_path, ["--servers", ",".join(SERVERS), "--workers", "2"], 600)
    sizes = doc["sizes"]
    results = doc["results"]
    assert sorted(results) == ["detection", "idle", "room", "throughput"]
    assert "| Metric | presenced | websockets-bare |" in proc.stdout

    top = sizes["idle_levels"][-1]
    assert len(sizes["idle_rooms"]) >= 2  # each room size on a fresh server
    for r in _by_server(results["idle"]).values():
        for room in sizes["idle_rooms"]:
            for n in sizes["idle_levels"]:
                assert 0 < r[f"b_per_conn_{n}_r{room}"] < 1024 * 1024
                assert 0 <= r[f"idle_cpu_pct_{n}_r{room}"] <= 100
                assert r[f"connect_rate_{n}_r{room}"] > 0
            assert r[f"rss_mib_{top}_r{room}"] > r[f"rss_base_mib_r{room}"] > 0

    members = sizes["room_members"][0]
    for r in _by_server(results["room"]).values():
        assert r["lat_messages"] > 0
        assert r["lat_lost"] == 0
        assert r["lat_deliveries"] == r["lat_messages"] * (members - 1)
        assert 0 < r["lat_p50_ms"] <= r["lat_p99_ms"] <= r["lat_max_ms"]
        assert r["lat_cpu_us_per_delivery"] > 0
        assert r["pres_events"] == 2 * sizes["movers"]
        assert r["pres_missed"] == 0
        assert 0 < r["pres_p50_ms"] <= r["pres_p99_ms"] <= r["pres_max_ms"]

    for r in _by_server(results["throughput"]).values():
        assert r["steps"]
        for step in r["steps"]:
            assert step["messages"] > 0
            assert step["lost"] == 0 and step["errors"] == 0 and step["dropped"] == 0
            assert step["deliveries_s"] > 0
            assert step["cpu_us_per_delivery"] > 0
            assert 0 <= step["gen_cpu_pct"] <= 100 * 2

    det = _by_server(results["detection"])
    for name, r in det.items():
        assert r["paused_missed"] == 0 and r["closed_missed"] == 0
        for t in r["paused_times_s"] + r["closed_times_s"]:
            # Within the configured bound, plus slack for a slow machine.
            assert 0 <= t <= r["bound_s"] + 5, (name, t)
    # presenced holds a closed session for its grace before announcing the leave.
    grace = sizes["det_live"]["grace"]
    assert det["presenced"]["closed_median_s"] >= grace * 0.9
    assert all(not math.isnan(v) for v in det["presenced"]["paused_times_s"])


def test_quick_capacity_run_produces_sane_figures(tmp_path: Path) -> None:
    """``--scenarios capacity`` at smoke size: 2 server workers on a fresh Valkey."""
    proc, doc = _quick_run(tmp_path, ["--scenarios", "capacity", "--servers", "presenced"], 300)
    assert "| Metric | presenced |" in proc.stdout
    sizes = doc["sizes"]
    (r,) = doc["results"]["capacity"]
    assert "error" not in r, r
    workers = sizes["cap_workers"]
    assert r["pinned"] is False
    assert r["cap_workers"] == workers
    # The generator is spread over ceil(total / per generator) processes (2 here).
    assert r["cap_generators"] == math.ceil(sizes["cap_total"] / sizes["cap_per_generator"]) > 1
    # Supervisor, its workers and the spawn start method's resource tracker.
    assert r["cap_server_processes"] >= workers + 1
    levels = r["cap_levels"]
    assert levels[-1] == sizes["cap_total"] and levels == sorted(levels)
    for n in levels:
        assert r[f"cap_open_{n}"] == n
        # Every worker answered /health; together they hold every connection.
        assert r[f"cap_health_answered_{n}"] == workers
        assert sum(r[f"cap_worker_conns_{n}"]) == n
        assert r[f"cap_worker_conns_min_{n}"] <= r[f"cap_worker_conns_max_{n}"]
        assert r[f"cap_rss_mib_{n}"] > r["cap_rss_base_mib"] > 0
        assert r[f"cap_valkey_rss_mib_{n}"] > 0
        assert 0 <= r[f"cap_cpu_pct_{n}"] <= 100 * (workers + 1)
        assert 0 <= r[f"cap_valkey_cpu_pct_{n}"] <= 100
        assert r[f"cap_connect_rate_{n}"] > 0
        assert r[f"cap_valkey_clients_{n}"] >= workers
    top = levels[-1]
    assert 0 < r[f"cap_kib_per_conn_{top}"] < 1024
    assert r[f"cap_hb_acks_s_{top}"] > 0
    assert r["cap_valkey_rejected"] == 0
