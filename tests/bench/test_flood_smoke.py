"""Smoke test of the flood benchmark: ``python -m bench.flood OUT --quick`` still works.

One round of every flood at the smoke size (8 bystanders, 0.4 s steps): each step measured
the bystanders' heartbeat round trips, every flood step started its flooders and they got
as far as flooding, the bystanders stayed connected and in their room, the pre-auth
flooders were closed by the server and the typing floods reached the bystanders. No
latency is asserted: CI machines differ and are shared.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from bench.flood import FLOODS, Plan

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def test_quick_flood_run_measures_the_bystanders(tmp_path: Path) -> None:
    out = tmp_path / "flood.json"
    argv = [sys.executable, "-m", "bench.flood", str(out), "--quick", "--quiet-wait", "0"]
    proc = subprocess.run(
        [*argv, "--log-dir", str(tmp_path / "logs")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "| step | bystander p50 (ms) |" in proc.stdout
    doc = json.loads(out.read_text())
    plan = Plan.quick()
    steps = doc["steps"]
    names = [s["step"] for s in steps]
    # An unloaded step before every flood and one after the last.
    assert names == [n for f in FLOODS for n in ("unloaded", f.name)] + ["unloaded"]
    assert doc["versions"]["presenced"].startswith("0.")

    for s in steps:
        assert s["hb_acked"] > 0 and s["hb_unanswered"] == 0, s
        assert 0 < s["p50_ms"] <= s["p99_ms"] <= s["max_ms"], s
        assert s["bystanders_open"] == plan.bystanders and s["bystanders_dropped"] == 0, s
        assert s["in_room"] and s["settled"], s
        assert s["rss_mib_before"] > 0 and s["rss_mib_settled"] > 0
        assert 0 <= s["server_cpu_pct"] <= 100 * 1.2
        if s["kind"] is None:
            assert s["hostile"] is None
            continue
        h = s["hostile"]
        assert h["connections"] >= 1 and h["flooded"] >= 1, s
        assert not h["refused"], s
        if s["kind"] == "preauth":
            # Cut by the server (1009 over max_auth_bytes, or a reset: 1006).
            assert sum(v for k, v in h["closes"].items() if k != "open at the end") > 0, h
            assert "welcome" not in h["received"]
        else:
            assert h["received"].get("welcome", 0) >= 1, h
        if s["kind"] == "typing":
            assert s["typing_per_s_min"] > 0, s

    summ = doc["summary"]
    assert list(summ) == ["unloaded", *(f.name for f in FLOODS)]
    for f in FLOODS:
        assert isinstance(summ[f.name]["met"], bool)
        assert len(summ[f.name]["p99_vs_unloaded_ms"]) == 1
