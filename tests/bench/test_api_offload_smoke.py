"""Smoke test of the api_offload scenario: ``bench.run --quick --scenarios api_offload``.

A fresh Valkey, the fan-out node and an admin-only node (``serve --port off``) on it, a few
rooms of a few members and half-second steps (seconds in all): every step reports its
figures, nothing is lost, every admin API request was answered 200 *and right* (checked
against the rooms as joined) by the node it was meant for. No timing is asserted: CI
machines differ and are shared.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from bench.scenarios.api_offload import offload_labels, offload_plan
from bench.scenarios.base import Sizes

from tests.bench.test_bench_smoke import _quick_run

pytestmark = pytest.mark.slow


def test_the_plan_interleaves_and_brackets_with_base() -> None:
    s = Sizes()
    one, two = offload_plan(s, 1), offload_plan(s, 2)
    fanout = [p for p in one if p.fanout]
    labels = [p.label for p in fanout]
    assert labels[0] == labels[-1] == "base"
    assert labels.count("base") == s.off_cycles + 1
    assert set(labels) | {p.label for p in one if not p.fanout} == set(offload_labels(s))
    burn = f"burn@{s.off_burn_pct:g}%"
    for lab in [*offload_labels(s)[1 : 1 + 2 * len(s.off_rates)], burn]:
        assert labels.count(lab) == s.off_cycles
    # Each cycle is the other's reverse; the rounds start on opposite variants.
    size = 2 + 2 * len(s.off_rates)
    assert fanout[1:size] == fanout[size + 1 : 2 * size][::-1]
    assert fanout[1:size] == [p for p in two if p.fanout][size + 1 : 2 * size]
    assert all((p.target is None) == (p.rate == 0) for p in one)
    # Then each kind alone on the admin-only node, between two idle steps.
    alone = [p for p in one if not p.fanout]
    assert [p.label for p in alone] == [
        "idle",
        *(f"{k}@{s.off_kind_rate:g} alone" for k in s.off_kinds),
        "idle",
    ]
    assert all(p.target == "own" and p.kinds == (p.label.split("@")[0],) for p in alone[1:-1])


def test_quick_api_offload_run_produces_sane_figures(tmp_path: Path) -> None:
    proc, doc = _quick_run(tmp_path, ["--scenarios", "api_offload", "--servers", "presenced"], 120)
    assert "### Admin API on its own node (Valkey)" in proc.stdout
    sizes = doc["sizes"]
    (r,) = doc["results"]["api_offload"]
    assert "error" not in r, r
    assert r["fanout_node"] != r["admin_node"]
    steps = r["steps"]
    s = Sizes.quick()
    assert [st["label"] for st in steps] == [p.label for p in offload_plan(s, 1)]
    assert r["base_cpu_us_per_delivery"] > 0
    for st in steps:
        assert st["lost"] == 0 and st["errors"] == 0 and st["dropped"] == 0, st["label"]
        assert st["valkey_cpu_s"] >= 0 and st["admin_cpu_s"] >= 0
        if st["fanout"]:
            assert st["delivered"] > 0 and st["cpu_us_per_delivery"] > 0
            assert 0 < st["p50_ms"] <= st["p99_ms"]
            assert st["cpu_ratio"] > 0 and st["p99_ratio"] > 0
        else:
            assert st["delivered"] == 0 and "p99_ms" not in st
            assert st["window_s"] >= sizes["off_seconds"] * 0.9, st["label"]
        if st["label"].startswith("burn@"):  # the control: a busy loop on core 1, no API
            assert "during" not in st and st["target"] is None and st["fanout"]
            assert 0 < st["burn_cpu_pct"] <= 100
            continue
        if st["target"] is None:
            assert "during" not in st and st["label"] in ("base", "idle")
            continue
        api = st["during"]
        want = int(st["api_rate"] * sizes["off_seconds"])
        assert api["checked"] is True
        assert api["sent"] == want > 0
        assert api["errors"] == 0 and api["wrong"] == {}, api["kinds"]
        assert api["ok"] == want
        kinds = {k for k, _w in sizes["api_mix"]} if st["fanout"] else set(sizes["off_kinds"])
        assert set(api["kinds"]) == kinds
        for k, fig in api["kinds"].items():
            assert fig["errors"] == {}, (st["label"], k)
            assert fig["ok"] == fig["sent"] > 0
            assert 0 < fig["p50_ms"] <= fig["p99_ms"] <= fig["max_ms"]
        keys = ["valkey_us_per_request", "admin_us_per_request"]
        for key in [*keys, "fanout_us_per_request"] if st["fanout"] else keys:
            assert not math.isnan(st[key]), (st["label"], key)
    # The admin-only node did the own-node steps' work (it is idle in the others).
    own = [st["admin_cpu_s"] for st in steps if st["target"] == "own"]
    assert sum(own) > 0
