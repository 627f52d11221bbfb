"""Local fan-out: which of this node's connections receive each broker channel.

A :class:`ChannelTable` maps a key (a room, a watched user...) to the local connections that
want its events, and keeps the node subscribed to the key's broker channel exactly while that
set is non-empty. Delivery writes the same encoded bytes to every connection in the set,
skipping the session that caused the event; nothing is awaited per recipient. The deliveries
are counted once per broadcast (``stats.deliveries += n``), not per recipient: an attribute
increment per socket was a measurable share of the loop (docs/benchmarks.md).

On a networked broker, presence events of one watched user are put in order by
:class:`WatcherTable`: each carries its change's number (``seq``), and only a newer one than
the last delivered goes out (latest wins: nothing is held, nothing filled).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from functools import partial
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import msgspec

from presenced.server.batching import (
    MEMBER_EVENT_PREFIX,
    SUMMARY_PREFIX,
    MembershipBatcher,
    SummaryThrottle,
)
from presenced.server.ordering import Emit, Frame, RoomOrder
from presenced.server.stats import NodeStats
from presenced.store.base import Broker
from presenced.typing import RoomId, UserId

if TYPE_CHECKING:
    from presenced.server.connection import Connection

__all__ = [
    "ChannelTable",
    "LocalFanout",
    "RoomTable",
    "WatcherTable",
    "device_channel",
    "node_channel",
    "presence_channel",
    "room_channel",
    "user_channel",
]

K = TypeVar("K", bound=str)
DELETED_PREFIX = b'{"type":"room.deleted"'
Spawn = Callable[[Coroutine[Any, Any, Any]], None]


def room_channel(room: RoomId) -> str:
    """Membership events and room messages."""
    return f"room:{room}"


def device_channel(room: RoomId) -> str:
    """Device-level events, for the sessions that asked for them."""
    return f"devices:{room}"


def presence_channel(user: UserId) -> str:
    """A user's presence, for its watchers."""
    return f"presence:{user}"


def node_channel(node: str) -> str:
    """Notices for one node: a session it owned was taken by another (``moved``), a room
    it owns sessions of was deleted (``deleted``), the backend acted on its sessions
    (``admin``)."""
    return f"node:{node}"


def user_channel(user: UserId) -> str:
    """Events for every session of one user (receipts of its messages)."""
    return f"user:{user}"


class ChannelTable(Generic[K]):
    """Local connections per key, subscribed to the key's channel while any are there."""

    __slots__ = ("_broker", "_channel", "_conns", "_spawn", "_stats")

    def __init__(
        self, broker: Broker, channel: Callable[[K], str], spawn: Spawn, stats: NodeStats
    ) -> None:
        self._broker = broker
        self._channel = channel
        self._spawn = spawn
        self._stats = stats
        self._conns: dict[K, dict[Connection, None]] = {}

    def __contains__(self, key: object) -> bool:
        return key in self._conns

    def keys(self) -> list[K]:
        return list(self._conns)

    async def add(self, key: K, conn: Connection) -> None:
        conns = self._conns.get(key)
        if conns is None:
            conns = self._conns[key] = {}
            conns[conn] = None
            await self._opening(key)
            await self._broker.subscribe(
                # A partial rather than a closure: smaller, kept per key (per user for the
                # user channels), and called without a Python frame of its own.
                self._channel(key),
                partial(self.deliver, key),
            )
            self._opened(key)
        conns[conn] = None

    async def _opening(self, key: K) -> None:
        """Before the first subscription of ``key`` (for subclasses)."""

    def _opened(self, key: K) -> None:
        """After it (for subclasses)."""

    def discard(self, key: K, conn: Connection) -> None:
        conns = self._conns.get(key)
        if conns is None or conn not in conns:
            return
        del conns[conn]
        if not conns:
            del self._conns[key]
            self._spawn(self._broker.unsubscribe(self._channel(key)))

    def deliver(self, key: K, data: bytes, origin: str | None) -> None:
        """Write ``data`` to every local connection under ``key`` but the origin session's."""
        conns = self._conns.get(key)
        if conns is None:
            return
        sent = len(conns)
        for conn in conns:
            session = conn.session
            if session is not None and session.id != origin:
                conn.send_shared(data)
            else:
                sent -= 1  # the rare branch counts, not the one taken per recipient
        self._stats.deliveries += sent


class RoomTable(ChannelTable[RoomId]):
    """Room members; numbered events put in order by a :class:`RoomOrder` (networked
    backends), membership events may be coalesced by a :class:`MembershipBatcher`."""

    __slots__ = ("batcher", "on_deleted", "order", "summaries")

    def __init__(
        self,
        broker: Broker,
        spawn: Spawn,
        stats: NodeStats,
        batch_window: float | None,
        summary_interval: float = 1.0,
        order: Callable[[Emit], RoomOrder] | None = None,
    ) -> None:
        super().__init__(broker, room_channel, spawn, stats)
        self.batcher = MembershipBatcher(batch_window, self._deliver_all) if batch_window else None
        self.summaries = SummaryThrottle(summary_interval, self._deliver_all)
        self.order = order(self._emit) if order is not None else None
        # Takes a room.deleted in its turn (the lifecycle's): it tells the members and takes
        # the room out of their sessions.
        self.on_deleted: Callable[[RoomId, bytes], None] | None = None

    async def _opening(self, key: RoomId) -> None:
        if self.order is not None:
            await self.order.opening(key)

    def _opened(self, key: RoomId) -> None:
        if self.order is not None:
            self._spawn(self.order.opened(key))

    def deliver(self, key: RoomId, data: bytes, origin: str | None) -> None:
        order = self.order
        if order is not None and order.offer(key, data, origin):
            return
        self._send(key, data, origin)

    def _emit(self, key: RoomId, frame: Frame) -> None:
        """An event from the :class:`RoomOrder`, in its order."""
        if frame.author is not None:
            self._deliver_skipping_author(key, frame.data, frame.author)
        else:
            self._send(key, frame.data, frame.origin)

    def _send(self, key: RoomId, data: bytes, origin: str | None) -> None:
        """Hand an event to the batcher or straight to the local members."""
        batcher = self.batcher
        if data.startswith(SUMMARY_PREFIX):
            if batcher is not None:
                batcher.flush(key)  # member events held from before the room grew go first
            self.summaries.offer(key, data)
            return
        if batcher is not None:
            if data.startswith(MEMBER_EVENT_PREFIX):
                if batcher.hold(key, data, len(self._conns.get(key, ()))):
                    return
            else:
                batcher.flush(key)  # what was held happened before this
        if data.startswith(DELETED_PREFIX) and self.on_deleted is not None:
            self.on_deleted(key, data)  # to its members, who leave the room with it
            return
        super().deliver(key, data, origin)

    def _deliver_skipping_author(self, key: RoomId, data: bytes, author: tuple[str, str]) -> None:
        # A message filled from the store: its author's device had the ack, not a copy.
        if self.batcher is not None:
            self.batcher.flush(key)
        conns = self._conns.get(key)
        if conns is None:
            return
        sent = len(conns)
        for conn in conns:
            session = conn.session
            if session is not None and (session.user, session.device) != author:
                conn.send_shared(data)
            else:
                sent -= 1
        self._stats.deliveries += sent

    def _deliver_all(self, room: RoomId, frame: bytes) -> None:
        # A batch goes to every local member, the sessions that caused its events included:
        # their own events carry versions no newer than their snapshot, which clients skip.
        conns = self._conns.get(room)
        if conns is None:
            return
        sent = len(conns)
        for conn in conns:
            if conn.session is not None:
                conn.send_shared(frame)
            else:
                sent -= 1
        self._stats.deliveries += sent

    def discard(self, key: RoomId, conn: Connection) -> None:
        super().discard(key, conn)
        if key not in self:
            if self.order is not None:
                self.order.close(key)
            self.summaries.forget(key)
            if self.batcher is not None:
                self.batcher.forget(key)


class _Seq(msgspec.Struct):
    """The field of a presence event that orders it (the rest of the frame is skipped)."""

    seq: int | None = None


_seq = msgspec.json.Decoder(_Seq)


class WatcherTable(ChannelTable[UserId]):
    """Presence watchers. With ``ordered`` (a networked broker, which delivers in the order
    publishes land), a user's presence event whose ``seq`` is not newer than the last one
    delivered for that user is dropped: two changes published in either order leave the
    newer presence shown. The last number is forgotten when the node stops watching the user
    (a later subscription starts afresh, from a ``presence.subscribed`` read)."""

    __slots__ = ("_last", "ordered")

    def __init__(
        self, broker: Broker, spawn: Spawn, stats: NodeStats, ordered: bool = False
    ) -> None:
        super().__init__(broker, presence_channel, spawn, stats)
        self.ordered = ordered
        self._last: dict[UserId, int] = {}

    def deliver(self, key: UserId, data: bytes, origin: str | None) -> None:
        if self.ordered and key in self._conns:
            seq = _seq.decode(data).seq
            if seq is not None:
                last = self._last.get(key)
                if last is not None and seq <= last:
                    return  # older than (or the same as) what the watchers have
                self._last[key] = seq
        super().deliver(key, data, origin)

    def discard(self, key: UserId, conn: Connection) -> None:
        super().discard(key, conn)
        if key not in self:
            self._last.pop(key, None)


class LocalFanout:
    """The node's four tables: room members, device-event rooms, presence watchers, users."""

    __slots__ = ("devices", "rooms", "users", "watchers")

    def __init__(
        self,
        broker: Broker,
        spawn: Spawn,
        stats: NodeStats,
        batch_window: float | None = None,
        summary_interval: float = 1.0,
        order: Callable[[Emit], RoomOrder] | None = None,
    ) -> None:
        self.rooms = RoomTable(broker, spawn, stats, batch_window, summary_interval, order)
        self.devices: ChannelTable[RoomId] = ChannelTable(broker, device_channel, spawn, stats)
        self.watchers = WatcherTable(broker, spawn, stats, ordered=not broker.inline)
        self.users: ChannelTable[UserId] = ChannelTable(broker, user_channel, spawn, stats)

    async def join_room(self, conn: Connection, room: RoomId, device_events: bool) -> None:
        await self.rooms.add(room, conn)
        if device_events:
            await self.devices.add(room, conn)
        else:
            self.devices.discard(room, conn)

    def leave_room(self, conn: Connection, room: RoomId) -> None:
        self.rooms.discard(room, conn)
        self.devices.discard(room, conn)
