"""The metrics' pure parts: counters, the merge of several workers, the exposition, the
snapshot directory."""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from presenced.http.metrics import FAMILIES, HistogramValue, Values, merge, render
from presenced.http.worker_metrics import WorkerSnapshots
from presenced.server.stats import LATENCY_BUCKETS, Histogram, NodeStats, close_code_label


def _values(
    opened: float, connections: float, degraded: float = 0, lag: list[int] | None = None
) -> Values:
    buckets = lag or [0] * (len(LATENCY_BUCKETS) + 1)
    return Values(
        counters={
            "presenced_connections_opened": {"": opened},
            "presenced_connections_closed": {"1000": opened},
        },
        gauges={"presenced_connections": {"": connections}, "presenced_degraded": {"": degraded}},
        histograms={
            "presenced_store_call_seconds": {
                "sessions.put": HistogramValue(buckets, sum(buckets) * 0.001, sum(buckets))
            }
        },
    )


def _scrape(values: Values, node: str = "n1") -> dict[str, float]:
    class Collector:
        def collect(self):  # type: ignore[no-untyped-def]
            return render(values, node)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector())
    text = generate_latest(registry).decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()) if k != "node")
            samples[f"{s.name}{{{labels}}}"] = s.value
            assert s.labels["node"] == node
    return samples


def test_histogram_buckets_are_per_bound_with_inf_last() -> None:
    h = Histogram()
    for seconds in (0.0001, 0.0005, 0.003, 7.0):
        h.observe(seconds)
    assert h.buckets[0] == 2  # <= 0.5 ms, the bound itself included
    assert h.buckets[LATENCY_BUCKETS.index(0.005)] == 1
    assert h.buckets[-1] == 1  # +Inf
    assert h.count == 4 and abs(h.sum - 7.0036) < 1e-9


def test_close_codes_a_client_makes_up_share_one_label() -> None:
    assert close_code_label(1000) == "1000"
    assert close_code_label(4003) == "4003"  # CloseCode.FORCE_LEAVE
    assert close_code_label(4999) == "other"
    assert close_code_label(3333) == "other"


def test_published_events_are_counted_by_type_and_notices_are_not() -> None:
    stats = NodeStats()
    stats.event_published(b'{"type":"member.joined","room":"r"}')
    stats.event_published(b'{"type":"member.joined","room":"s"}')
    stats.event_published(b'{"type":"presence","user":"u"}')
    stats.event_published(b"moved abc")
    assert stats.published_by_type() == {"member.joined": 2, "presence": 1}


def test_merge_sums_counters_gauges_and_histograms_bucket_by_bucket() -> None:
    n = len(LATENCY_BUCKETS) + 1
    a = _values(3, 2, degraded=0, lag=[1] + [0] * (n - 1))
    b = _values(5, 4, degraded=1, lag=[0, 2] + [0] * (n - 2))
    total = merge([(a, True), (b, True)])
    assert total.counters["presenced_connections_opened"] == {"": 8}
    assert total.counters["presenced_connections_closed"] == {"1000": 8}
    assert total.gauges["presenced_connections"] == {"": 6}
    assert total.gauges["presenced_degraded"] == {"": 1}  # a flag: the max, not the sum
    h = total.histograms["presenced_store_call_seconds"]["sessions.put"]
    assert h.buckets[:2] == [1, 2] and h.count == 3


def test_a_dead_workers_counters_stay_and_its_gauges_go() -> None:
    live, dead = _values(3, 2), _values(10, 7)
    total = merge([(live, True), (dead, False)])
    assert total.counters["presenced_connections_opened"] == {"": 13}
    assert total.gauges["presenced_connections"] == {"": 2}
    assert total.histograms["presenced_store_call_seconds"]["sessions.put"].count == 0


def test_render_names_types_and_cumulative_buckets() -> None:
    n = len(LATENCY_BUCKETS) + 1
    samples = _scrape(_values(3, 2, lag=[1, 0, 2] + [0] * (n - 4) + [1]))
    assert samples["presenced_connections_opened_total{}"] == 3
    assert samples["presenced_connections_closed_total{code=1000}"] == 3
    assert samples["presenced_connections{}"] == 2
    prefix = "presenced_store_call_seconds_bucket{le="
    assert samples[prefix + "0.0005,operation=sessions.put}"] == 1
    assert samples[prefix + "0.001,operation=sessions.put}"] == 1
    assert samples[prefix + "0.0025,operation=sessions.put}"] == 3
    assert samples[prefix + "+Inf,operation=sessions.put}"] == 4
    assert samples["presenced_store_call_seconds_count{operation=sessions.put}"] == 4


def test_every_family_has_help_and_a_presenced_name() -> None:
    for name, family in FAMILIES.items():
        assert name.startswith("presenced_") and not name.endswith("_total")
        assert family.help.endswith(".")


def test_snapshots_of_other_workers_live_stale_dead_and_broken(tmp_path: Path) -> None:
    now = [1000.0]
    alive = {1, 2, 3}
    mine = WorkerSnapshots(tmp_path, pid=1, wall=lambda: now[0], alive=alive.__contains__)
    fresh = WorkerSnapshots(tmp_path, pid=2, wall=lambda: now[0], alive=alive.__contains__)
    old = WorkerSnapshots(tmp_path, pid=3, wall=lambda: now[0] - 60, alive=alive.__contains__)
    gone = WorkerSnapshots(tmp_path, pid=4, wall=lambda: now[0], alive=alive.__contains__)
    for i, snaps in enumerate((mine, fresh, old, gone)):
        snaps.write(f"w{i}", _values(i + 1, 1))
    (tmp_path / "99.json").write_bytes(b"{not json")
    others = mine.others()
    assert sorted((v.counters["presenced_connections_opened"][""], live) for v, live in others) == [
        (2, True),  # live and fresh
        (3, False),  # its pid is alive but it stopped writing
        (4, False),  # its pid is gone
    ]
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    total = merge([(_values(100, 1), True), *others])
    assert total.counters["presenced_connections_opened"] == {"": 109}
    assert total.gauges["presenced_connections"] == {"": 2}
