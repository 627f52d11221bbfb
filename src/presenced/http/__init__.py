"""Backend-facing HTTP: health and Prometheus metrics (served on the gateway's own port)."""

from presenced.http.metrics import NodeMetrics

__all__ = ["NodeMetrics"]
