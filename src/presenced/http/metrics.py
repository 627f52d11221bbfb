"""Prometheus metrics of one node (or of every worker of a ``--workers`` server), built at
scrape time.

The hot path only bumps plain integers (:class:`~presenced.server.stats.NodeStats`) and the
gauges are functions of the node's state, so nothing here runs until Prometheus scrapes. Then
:func:`node_values` reads the node into a :class:`Values` (a plain, mergeable snapshot:
counters, gauges, histograms, each keyed by family and label value), the values of the other
workers are added to it when there are any (:mod:`presenced.http.worker_metrics`), and a
custom collector turns the sum into metric families described by :data:`FAMILIES`.
Each node has its own registry (several nodes can live in one process, as in tests).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import msgspec
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from presenced.presence.session import SessionState
from presenced.server.stats import LATENCY_BUCKETS, Histogram

if TYPE_CHECKING:
    from presenced.server.node import Node

__all__ = [
    "CONTENT_TYPE",
    "FAMILIES",
    "Family",
    "HistogramValue",
    "NodeMetrics",
    "Values",
    "merge",
    "node_values",
    "render",
]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Kind = Literal["counter", "gauge", "histogram"]


@dataclass(frozen=True, slots=True)
class Family:
    """One metric family: its kind, its label (at most one besides ``node``), its help, and
    how workers' gauges combine (``sum``, or ``max`` for flags and latest readings)."""

    kind: Kind
    help: str
    label: str = ""
    combine: Literal["sum", "max"] = "sum"


FAMILIES: dict[str, Family] = {
    # gauges: the node's state now
    "presenced_connections": Family("gauge", "Open WebSocket connections (authenticated or not)."),
    "presenced_sessions": Family("gauge", "Sessions this node owns (active or in grace)."),
    "presenced_sessions_by_state": Family(
        "gauge", "Sessions this node owns, by state (active, grace).", "state"
    ),
    "presenced_rooms_local": Family("gauge", "Rooms with at least one member connected here."),
    "presenced_users_local": Family("gauge", "Users with at least one session on this node."),
    "presenced_presence_subscriptions": Family(
        "gauge", "Presence subscriptions (session, watched user) of this node's sessions."
    ),
    "presenced_degraded": Family(
        "gauge", "1 while the shared store is unreachable (local clients still served).",
        combine="max",
    ),
    "presenced_repairs_pending": Family(
        "gauge", "Store steps left by transitions that failed (the store went away) and "
        "taken back when it answers; the node is degraded while any is pending."
    ),
    "presenced_draining": Family("gauge", "1 while the node is shutting down.", combine="max"),
    "presenced_worker_processes": Family(
        "gauge", "Processes whose figures this scrape sums (1; under --workers, the live "
        "workers and the admin API's node)."
    ),
    "presenced_export_queued": Family(
        "gauge", "Events waiting in a sink's queue on this node.", "sink"
    ),
    "presenced_export_leading": Family(
        "gauge", "1 while this node dispatches the event export to the sinks."
    ),
    "presenced_export_unwritten": Family(
        "gauge", "Events waiting on this node to be appended to the store's outbox "
        "(Valkey/Redis)."
    ),
    "presenced_pubsub_lag_last_seconds": Family(
        "gauge", "The latest round trip of a ping on the node's own broker channel.",
        combine="max",
    ),
    # counters: since the process started
    "presenced_connections_opened": Family("counter", "WebSocket connections opened."),
    "presenced_connections_closed": Family(
        "counter", "WebSocket connections closed, by close code (1006: no close frame).", "code"
    ),
    "presenced_connections_refused": Family(
        "counter", "Connections refused over a connection limit (close 4012), by limit "
        "(ip: max_connections_per_ip, ip_rate: max_connect_rate_per_ip, user: "
        "max_connections_per_user).", "limit",
    ),
    "presenced_auth_failures": Family(
        "counter", "Refused authentications, by reason (expired, signature, timeout...).",
        "reason",
    ),
    "presenced_heartbeats": Family("counter", "Client heartbeat messages received."),
    "presenced_messages_received": Family("counter", "Room messages (message.send) accepted."),
    "presenced_deliveries": Family("counter", "Frames written to client sockets."),
    "presenced_frames_unsent": Family(
        "counter", "Frames not written: the socket was closing, or so far over its send "
        "buffer that it was closed as a slow consumer."
    ),
    "presenced_events_published": Family(
        "counter", "Events this node published to the broker, by type.", "type"
    ),
    "presenced_slow_consumer_closes": Family(
        "counter", "Connections closed because their send buffer stayed full."
    ),
    "presenced_read_pauses": Family(
        "counter", "Times reading from a connection was paused: it sent far over rate_limit."
    ),
    "presenced_rate_limited": Family(
        "counter", "Requests refused for going over a rate (request: rate_limit, message: "
        "message_rate).", "limit",
    ),
    "presenced_export_delivered": Family(
        "counter", "Events a sink confirmed, as delivered from this node.", "sink"
    ),
    "presenced_export_failures": Family(
        "counter", "Failed delivery attempts to a sink (each retry counts).", "sink"
    ),
    "presenced_export_dead": Family(
        "counter", "Events moved to a sink's dead letters.", "sink"
    ),
    "presenced_export_dropped": Family(
        "counter", "Events not queued for a sink because its queue was full.", "sink"
    ),
    "presenced_export_write_failures": Family(
        "counter", "Failed appends to the store's outbox (Valkey/Redis; each retry counts)."
    ),
    # histograms
    "presenced_store_call_seconds": Family(
        "histogram", "Latency of shared store calls (Valkey/Redis), by operation.", "operation"
    ),
    "presenced_pubsub_lag_seconds": Family(
        "histogram", "Round trip of a ping on the node's own broker channel (pub/sub lag)."
    ),
}  # fmt: skip


class HistogramValue(msgspec.Struct, array_like=True):
    """Per-bucket counts (not cumulative; the last is +Inf), sum and count."""

    buckets: list[int]
    sum: float
    count: int


class Values(msgspec.Struct):
    """The figures of one or more processes: family -> label value ('' when the family has
    no label) -> value. Mergeable: counters, histograms and gauges add up (or take the max)."""

    counters: dict[str, dict[str, float]] = msgspec.field(default_factory=dict)
    gauges: dict[str, dict[str, float]] = msgspec.field(default_factory=dict)
    histograms: dict[str, dict[str, HistogramValue]] = msgspec.field(default_factory=dict)


def _histogram(h: Histogram) -> HistogramValue:
    return HistogramValue(list(h.buckets), h.sum, h.count)


def node_values(node: Node) -> Values:
    """Everything the node counts and is, now."""
    stats = node.stats
    states = {"active": 0, "grace": 0}
    users: set[str] = set()
    subscriptions = 0
    for session in node.registry:
        if session.state is SessionState.ACTIVE:
            states["active"] += 1
        elif session.state is SessionState.GRACE:
            states["grace"] += 1
        users.add(session.user)
        subscriptions += len(session.subscriptions)
    export = node.export
    feed = export.feed
    leading = (feed.leading if feed is not None else True) and export.enabled
    lag = stats.pubsub_lag_last
    gauges: dict[str, dict[str, float]] = {
        "presenced_connections": {"": node.connection_count},
        "presenced_sessions": {"": node.session_count},
        "presenced_sessions_by_state": dict(states),
        "presenced_rooms_local": {"": len(node.fanout.rooms.keys())},
        "presenced_users_local": {"": len(users)},
        "presenced_presence_subscriptions": {"": subscriptions},
        "presenced_degraded": {"": 1 if node.degraded else 0},
        "presenced_repairs_pending": {"": len(node.lifecycle.repairs)},
        "presenced_draining": {"": 1 if node.draining else 0},
        "presenced_worker_processes": {"": 1},
        "presenced_export_queued": {r.stats.sink: r.stats.queued for r in export.runners},
        "presenced_export_leading": {"": 1 if leading else 0},
        "presenced_export_unwritten": {} if feed is None else {"": feed.unwritten},
        "presenced_pubsub_lag_last_seconds": {} if lag is None else {"": lag},
    }
    counters: dict[str, dict[str, float]] = {
        "presenced_connections_opened": {"": stats.connections_opened},
        "presenced_connections_closed": dict(stats.closed),
        "presenced_connections_refused": dict(stats.connections_refused),
        "presenced_auth_failures": dict(stats.auth_failures),
        "presenced_heartbeats": {"": stats.heartbeats},
        "presenced_messages_received": {"": stats.messages_in},
        "presenced_deliveries": {"": stats.deliveries - stats.unsent},
        "presenced_frames_unsent": {"": stats.unsent},
        "presenced_events_published": dict(stats.published_by_type()),
        "presenced_slow_consumer_closes": {"": stats.slow_consumer_closes},
        "presenced_rate_limited": dict(stats.rate_limited),
        "presenced_read_pauses": {"": stats.read_pauses},
        "presenced_export_delivered": {r.stats.sink: r.stats.delivered for r in export.runners},
        "presenced_export_failures": {r.stats.sink: r.stats.failures for r in export.runners},
        "presenced_export_dead": {r.stats.sink: r.stats.dead for r in export.runners},
        "presenced_export_dropped": {r.stats.sink: r.stats.dropped for r in export.runners},
        "presenced_export_write_failures": {} if feed is None else {"": feed.write_failures},
    }
    histograms = {
        "presenced_store_call_seconds": {op: _histogram(h) for op, h in stats.store_calls.items()},
        "presenced_pubsub_lag_seconds": (
            {"": _histogram(stats.pubsub_lag)} if stats.pubsub_lag.count else {}
        ),
    }
    return Values(counters=counters, gauges=gauges, histograms=histograms)


def merge(parts: Iterable[tuple[Values, bool]]) -> Values:
    """Add up several processes' values; a part whose flag is False contributes its counters
    and histograms only (a worker that died or stopped reporting: what it counted still
    happened, but its gauges describe nothing any more)."""
    out = Values()
    for values, live in parts:
        for name, series in values.counters.items():
            into = out.counters.setdefault(name, {})
            for key, value in series.items():
                into[key] = into.get(key, 0) + value
        for name, hseries in values.histograms.items():
            hinto = out.histograms.setdefault(name, {})
            for key, h in hseries.items():
                have = hinto.get(key)
                if have is None:
                    hinto[key] = HistogramValue(list(h.buckets), h.sum, h.count)
                elif len(have.buckets) == len(h.buckets):
                    have.buckets = [a + b for a, b in zip(have.buckets, h.buckets, strict=True)]
                    have.sum += h.sum
                    have.count += h.count
        if not live:
            continue
        for name, series in values.gauges.items():
            into = out.gauges.setdefault(name, {})
            family = FAMILIES.get(name)
            use_max = family is not None and family.combine == "max"
            for key, value in series.items():
                if key not in into:
                    into[key] = value
                else:
                    into[key] = max(into[key], value) if use_max else into[key] + value
    return out


def render(values: Values, node: str) -> Iterator[Metric]:
    """Metric families for ``values``, every sample labelled ``node``."""
    bounds = [f"{b:g}" for b in LATENCY_BUCKETS] + ["+Inf"]
    for name, family in FAMILIES.items():
        labels = ["node", family.label] if family.label else ["node"]
        metric: CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily
        if family.kind == "histogram":
            metric = HistogramMetricFamily(name, family.help, labels=labels)
            for key, h in sorted(values.histograms.get(name, {}).items()):
                running, buckets = 0, []
                for bound, n in zip(bounds, h.buckets, strict=False):
                    running += n
                    buckets.append((bound, float(running)))
                metric.add_metric(_label_values(node, family, key), buckets, h.sum)
        else:
            series = (values.counters if family.kind == "counter" else values.gauges).get(name)
            if family.kind == "counter":
                metric = CounterMetricFamily(name, family.help, labels=labels)
            else:
                metric = GaugeMetricFamily(name, family.help, labels=labels)
            for key, value in sorted((series or {}).items()):
                metric.add_metric(_label_values(node, family, key), float(value))
        yield metric


def _label_values(node: str, family: Family, key: str) -> list[str]:
    return [node, key] if family.label else [node]


class _Collector:
    """The registry's one collector: everything, read when scraped."""

    def __init__(self, read: Callable[[], Values], node: str) -> None:
        self._read = read
        self._node = node

    def collect(self) -> Iterator[Metric]:
        return render(self._read(), self._node)


class NodeMetrics:
    """The node's metrics, in a registry of its own. ``peers`` (``--workers``) gives the other
    workers' values, each with whether it is live; ``node`` is the ``node`` label (the
    supervisor's id under ``--workers``, the same whichever worker answers)."""

    def __init__(
        self,
        node: Node,
        *,
        peers: Callable[[], Iterable[tuple[Values, bool]]] | None = None,
        label: str | None = None,
    ) -> None:
        self.node = node
        self.peers = peers
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self.values, label or node.node_id))

    def values(self) -> Values:
        """This process's values, plus the other workers' when there are any."""
        own = node_values(self.node)
        if self.peers is None:
            return own
        return merge([(own, True), *self.peers()])

    def render(self) -> bytes:
        """The text exposition format."""
        return bytes(generate_latest(self.registry))
