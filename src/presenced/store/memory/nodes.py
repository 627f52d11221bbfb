"""Node leases and reports in memory, for nodes sharing one process (tests); the NodeStore
Protocol."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import msgspec

from presenced.clock import Clock, SystemClock
from presenced.presence.session import Session
from presenced.store.base import NodeRecord

__all__ = ["MemoryNodeStore"]

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(dict[str, Any])


class MemoryNodeStore:
    """Leases for nodes sharing one process (tests); time comes from the given clock."""

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock or SystemClock()
        self._leases: dict[str, float] = {}  # node -> expiry (monotonic)
        self._listed: set[str] = set()
        self._reports: dict[str, tuple[bytes, float]] = {}  # node -> (JSON, expiry)

    async def renew(self, node: str, ttl: float) -> bool:
        now = self._clock.monotonic()
        held = self._leases.get(node, -1.0) > now
        self._leases[node] = now + ttl
        self._listed.add(node)
        return held

    async def drop(self, node: str) -> None:
        self._leases.pop(node, None)

    async def expired(self) -> list[str]:
        now = self._clock.monotonic()
        return sorted(n for n in self._listed if self._leases.get(n, -1.0) <= now)

    async def claim(self, node: str) -> bool:
        if node not in self._listed:
            return False
        self._listed.discard(node)
        self._leases.pop(node, None)
        self._reports.pop(node, None)
        return True

    async def report(self, node: str, info: dict[str, Any], ttl: float) -> None:
        """Kept encoded, as Redis keeps it: by value, and unencodable values fail here too."""
        self._reports[node] = (_encoder.encode(info), self._clock.monotonic() + ttl)

    async def nodes(self) -> list[NodeRecord]:
        now = self._clock.monotonic()
        records = []
        for node in sorted(self._listed):
            data, expiry = self._reports.get(node, (b"", -1.0))
            info = _decoder.decode(data) if expiry > now else {}
            records.append(NodeRecord(node, self._leases.get(node, -1.0) > now, info))
        return records

    async def refresh(self, sessions: Iterable[Session], ttl: float) -> None:
        """Nothing in memory expires by itself."""

    async def watch(self, on_expired: Callable[[], None]) -> None:
        """Expiry is only seen by the sweep here."""

    async def close(self) -> None:
        """Nothing to stop."""
