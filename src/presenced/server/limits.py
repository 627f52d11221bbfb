"""Connection limits of one node: open sockets per client address (``max_connections_per_ip``).

The per-address count is a node's own: every socket this node has open, authenticated or not,
under the address :class:`~presenced.server.client_ip.ClientAddress` resolved for it (the
peer, or what a trusted proxy names in ``X-Forwarded-For``). It guards this process's sockets
and memory, so it needs no shared store and no round trip. The per-user limit
(``max_connections_per_user``) is the store's: it is checked where a new session is added to
the user's presence (:meth:`~presenced.store.base.PresenceStore.set`, ``limit``), across
every node.
"""

from __future__ import annotations

__all__ = ["AddressSlots"]


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
