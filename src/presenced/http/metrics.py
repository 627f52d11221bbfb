"""Prometheus metrics of one node, read at scrape time.

Gauges are functions of the node's state, evaluated only when Prometheus scrapes, so the hot
path pays nothing for them. Each node has its own registry (several nodes can live in one
process, as in tests).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Gauge, generate_latest

if TYPE_CHECKING:
    from presenced.server.node import Node

__all__ = ["CONTENT_TYPE", "NodeMetrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class NodeMetrics:
    """The node's gauges, in a registry of its own."""

    def __init__(self, node: Node) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = {"node": node.node_id}

        def gauge(name: str, doc: str, read: object) -> None:
            g = Gauge(name, doc, labelnames=list(labels), registry=self.registry)
            g.labels(**labels).set_function(read)  # type: ignore[arg-type]

        gauge(
            "presenced_connections",
            "Open WebSocket connections (authenticated or not).",
            lambda: node.connection_count,
        )
        gauge(
            "presenced_sessions",
            "Sessions this node owns (active or in grace).",
            lambda: node.session_count,
        )
        gauge(
            "presenced_degraded",
            "1 while the shared store is unreachable (local clients still served).",
            lambda: 1 if node.degraded else 0,
        )
        gauge(
            "presenced_draining",
            "1 while the node is shutting down.",
            lambda: 1 if node.draining else 0,
        )
        gauge(
            "presenced_rooms_local",
            "Rooms with at least one member connected to this node.",
            lambda: len(node.fanout.rooms.keys()),
        )

    def render(self) -> bytes:
        """The text exposition format."""
        return bytes(generate_latest(self.registry))
