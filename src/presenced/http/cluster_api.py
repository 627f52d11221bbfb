"""Cluster endpoints: the nodes sharing the store with their health, and cluster-wide
counts."""

from __future__ import annotations

from typing import Any

from presenced.api.models import NodeInfo, NodeList, Stats
from presenced.http.routing import Call, Route

__all__ = ["ROUTES"]


def _num(info: dict[str, Any], key: str) -> int:
    value = info.get(key, 0)
    return value if isinstance(value, int) else 0


def _float(info: dict[str, Any], key: str) -> float | None:
    value = info.get(key)
    return float(value) if isinstance(value, int | float) else None


async def nodes(call: Call[None, None]) -> NodeList:
    found = await call.node.backplane.nodes.nodes()
    listed = []
    for record in sorted(found, key=lambda r: r.node):
        info = record.info
        status = info.get("status") if record.alive else "dead"
        version = info.get("version")
        listed.append(
            NodeInfo(
                node=record.node,
                alive=record.alive,
                status=status if isinstance(status, str) else "unknown",
                version=version if isinstance(version, str) else None,
                connections=_num(info, "connections"),
                sessions=_num(info, "sessions"),
                rooms=_num(info, "rooms"),
                started_at=_float(info, "started_at"),
                reported_at=_float(info, "reported_at"),
            )
        )
    return NodeList(nodes=listed)


async def stats(call: Call[None, None]) -> Stats:
    backplane = call.node.backplane
    found = await backplane.nodes.nodes()
    alive = [r for r in found if r.alive]
    return Stats(
        nodes=len(found),
        nodes_alive=len(alive),
        connections=sum(_num(r.info, "connections") for r in alive),
        sessions=await backplane.sessions.count(),
        rooms=await backplane.rooms.room_count(),
        users_online=await backplane.presence.online_count(),
    )


ROUTES: list[Route] = [
    Route(
        "GET",
        "/v1/nodes",
        nodes,
        "read",
        "The nodes sharing the store, with their health",
        NodeList,
        "cluster",
        description="Each live node reports itself every lease_interval; a node whose lease "
        "expired is listed with `alive: false` until a survivor reaps it.",
    ),
    Route(
        "GET",
        "/v1/stats",
        stats,
        "read",
        "Cluster-wide counts: nodes, connections, sessions, rooms, users online",
        Stats,
        "cluster",
        description="Connections are the sum of the live nodes' last reports; sessions, rooms "
        "and users are counted in the store (a scan: see docs/api.md).",
    ),
]
