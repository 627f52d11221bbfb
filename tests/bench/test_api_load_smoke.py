"""Smoke test of the api_load scenario: ``python -m bench.run --quick --scenarios api_load``.

A few rooms of a few members and half-second steps (seconds in all): every step and both
throughput searches report their figures, nothing is lost, every admin API request of
every kind was answered 200. No timing is asserted: CI machines differ and are shared.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
from bench.loadgen.api import KINDS, schedule

from tests.bench.test_bench_smoke import _quick_run

pytestmark = pytest.mark.slow


def test_schedule_gives_each_kind_its_share_spread_out() -> None:
    kinds = schedule({"presence": 2.0, "count": 1.0, "members": 1.0}, 8)
    assert sorted(kinds) == sorted(["presence"] * 4 + ["count"] * 2 + ["members"] * 2)
    assert all(a != b for a, b in itertools.pairwise(kinds) if a != "presence")
    with pytest.raises(ValueError):
        schedule({"nope": 1.0}, 3)


def test_quick_api_load_run_produces_sane_figures(tmp_path: Path) -> None:
    proc, doc = _quick_run(tmp_path, ["--scenarios", "api_load", "--servers", "presenced"], 300)
    assert "### Admin API under fan-out load" in proc.stdout
    sizes = doc["sizes"]
    (r,) = doc["results"]["api_load"]
    assert "error" not in r, r
    steps = r["steps"]
    rates = [x for x in sizes["api_rates"] if x > 0]
    mix = [k for k, _w in sizes["api_mix"]]
    kind_rate = f"{sizes['api_kind_rate']:g}"
    assert sorted(st["label"] for st in steps) == sorted(
        ["base"] * 3
        + ["idle"] * 2
        + [f"mix@{x:g}" for x in rates]
        + [f"{k}@{kind_rate}" for k in mix]
        + [f"{k}@{kind_rate} alone" for k in mix]
    )
    assert r["base_cpu_us_per_delivery"] > 0
    for st in steps:
        assert st["lost"] == 0 and st["errors"] == 0 and st["dropped"] == 0, st["label"]
        if st["fanout"]:
            assert st["delivered"] > 0 and st["cpu_us_per_delivery"] > 0
            assert 0 < st["p50_ms"] <= st["p99_ms"]
            assert st["cpu_ratio"] > 0
        else:
            assert st["delivered"] == 0 and "p99_ms" not in st
            # Even the idle step lasts its length (its CPU is what the others subtract).
            assert st["window_s"] >= sizes["api_seconds"] * 0.9, st["label"]
        if st["label"] in ("base", "idle"):
            assert "during" not in st
            continue
        api = st["during"]
        want = int(st["api_rate"] * sizes["api_seconds"])
        assert api["sent"] == want > 0
        assert api["errors"] == 0, api["kinds"]
        assert api["ok"] == want
        assert api["achieved_rs"] > 0
        assert set(api["kinds"]) == set(st["mix"]) <= set(KINDS)
        for k, fig in api["kinds"].items():
            assert fig["errors"] == {}, (st["label"], k)
            assert fig["ok"] == fig["sent"] > 0
            assert 0 < fig["p50_ms"] <= fig["p99_ms"] <= fig["max_ms"]
        assert not math.isnan(st["server_us_per_request"])
    # The mixed load reaches every kind; each kind step only its own.
    mixed = next(st for st in steps if st["label"].startswith("mix@"))
    assert set(mixed["during"]["kinds"]) == set(mix)
    for key in ("search_api0", f"search_api{sizes['api_search_rate']:g}"):
        res = r[key]
        assert res["steps"], key
        for st in res["steps"]:
            assert st["lost"] == 0 and st["errors"] == 0 and st["dropped"] == 0
            assert ("during" in st) == (key != "search_api0")
            if "during" in st:
                assert st["during"]["errors"] == 0 and st["during"]["ok"] > 0
