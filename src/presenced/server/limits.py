"""Connection limits of one node: open sockets per client address (``max_connections_per_ip``)
and new ones per second (``max_connect_rate_per_ip``).

The per-address count is a node's own: every socket this node has open, authenticated or not,
under the address :class:`~presenced.server.client_ip.ClientAddress` resolved for it (the
peer, or what a trusted proxy names in ``X-Forwarded-For``). It guards this process's sockets
and memory, so it needs no shared store and no round trip. The per-user limit
(``max_connections_per_user``) is the store's: it is checked where a new session is added to
the user's presence (:meth:`~presenced.store.base.PresenceStore.set`, ``limit``), across
every node.
"""

from __future__ import annotations

from presenced.presence.ratelimit import TokenBucket

__all__ = ["CONNECT_BURST_SECONDS", "AddressSlots", "ConnectRate"]

CONNECT_BURST_SECONDS = 10.0
"""A client address may open ``max_connect_rate_per_ip`` sockets a second in bursts of this
many seconds' worth: a page reload or a NAT's morning rush passes, a reconnect loop does not."""


class AddressSlots:
    """How many sockets each client address has open here, bounded by ``limit``."""

    __slots__ = ("_open", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[str, int] = {}

    def take(self, address: str) -> bool:
        """Count one more socket of ``address``, or False (and nothing counted) when it has
        ``limit`` already. The caller asks only while a limit is set and the address known."""
        have = self._open.get(address, 0)
        if have >= self.limit:
            return False
        self._open[address] = have + 1
        return True

    def give_back(self, address: str) -> None:
        """One socket of ``address``, counted by :meth:`take`, is gone."""
        have = self._open.get(address, 0)
        if have <= 1:
            self._open.pop(address, None)
        else:
            self._open[address] = have - 1

    def open_from(self, address: str) -> int:
        return self._open.get(address, 0)

    def __len__(self) -> int:
        """Addresses with a socket counted."""
        return len(self._open)


class ConnectRate:
    """New sockets per second per client address, a token bucket each. Addresses whose bucket
    is full again are forgotten whenever the map has doubled since it was last pruned, so it
    holds about the addresses of the last ``CONNECT_BURST_SECONDS``."""

    __slots__ = ("_buckets", "_prune_at", "burst", "rate")

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.burst = max(1, round(rate * CONNECT_BURST_SECONDS))
        self._buckets: dict[str, TokenBucket] = {}
        self._prune_at = 1024

    def allow(self, address: str, now: float) -> bool:
        """Count a new socket of ``address`` at ``now``; False when it is over the rate."""
        bucket = self._buckets.get(address)
        if bucket is None:
            if len(self._buckets) >= self._prune_at:
                self._prune(now)
            bucket = self._buckets[address] = TokenBucket(self.rate, self.burst, now)
        return bucket.take(now)

    def _prune(self, now: float) -> None:
        self._buckets = {a: b for a, b in self._buckets.items() if not b.full(now)}
        self._prune_at = max(1024, 2 * len(self._buckets))

    def __len__(self) -> int:
        """Addresses tracked."""
        return len(self._buckets)
