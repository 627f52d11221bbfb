"""``/health`` and ``/ready`` of a node, the same on the client port and the admin port.

``/health`` is liveness: it answers 200 while the process serves, with ``status`` ``ok``,
``degraded`` (the store or the broker is or was unreachable and the node has not yet
re-synced: local clients are served, shared state lags) or ``draining``; restarting a
degraded node would not help it. ``/ready`` is readiness: 200 only when the store answered
the last lease renewal, the broker link is up and re-synced, and the node is not draining,
503 otherwise, so a load balancer sends new clients elsewhere meanwhile.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Literal

import msgspec

from presenced import __version__
from presenced.api.models import HealthReply

if TYPE_CHECKING:
    from presenced.server.node import Node

__all__ = ["health", "health_body"]

_encode = msgspec.json.Encoder().encode


def health(node: Node) -> HealthReply:
    """The node's health and readiness now."""
    connected = node.backplane.broker.connected
    degraded = node.degraded  # also marks a dropped link stale until the next lease tick
    checks = {
        "store": not node.lease.degraded,
        "subscribed": connected and not node.link_stale,
        "accepting": not node.draining,
    }
    status: Literal["ok", "degraded", "draining"] = (
        "draining" if node.draining else "degraded" if degraded else "ok"
    )
    return HealthReply(
        status=status,
        ready=all(checks.values()),
        node=node.node_id,
        pid=os.getpid(),
        version=__version__,
        store=node.backplane.name,
        connections=node.connection_count,
        sessions=node.session_count,
        checks=checks,
    )


def health_body(node: Node, path: str) -> tuple[int, bytes]:
    """Status and JSON body of ``/health`` or ``/ready``."""
    reply = health(node)
    code = 200 if path == "/health" or reply.ready else 503
    return code, _encode(reply)
