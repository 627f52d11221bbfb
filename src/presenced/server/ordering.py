"""A node's receive order per room: every numbered event reaches local members in number
order, once, and what pub/sub lost is filled from the store.

On a networked backend the number of an event (a message's offset, a member event's room
version) is assigned by one store call and the event published by another, by whichever node
caused it, so events reach a node in the order their publishes happened to land, not their
numbers. :class:`RoomOrder` keeps a :class:`~presenced.presence.ordering.Sequence` per
stream of each room this node is subscribed to and hands frames to ``emit`` in number
order:

- the message baseline is read *before* subscribing (so nothing numbered after it can be
  missed: what was published before the subscription took effect is a gap, filled from the
  store at once after it), the version baseline right *after* (a local joiner's snapshot is
  read later still and covers whatever came before);
- a frame ahead of its number is held; if the missing numbers have not come within ``hold``
  seconds, messages are fetched from the stream's history (``since``) and delivered in their
  place, and member versions are given up on (clients then see a version gap and take a
  fresh snapshot, as docs/protocol.md says);
- after the pub/sub link came back (:meth:`resync_all`), each room's stream is checked
  against the store and what was published meanwhile is filled the same way;
- a message of another epoch means the stream was recreated (the store restarted empty):
  the sequence starts over in the new epoch and fills from its start;
- ``typing`` events are state, not a log: each carries the number of its change of the
  room's typing set (``seq``), and only a newer one than the last delivered goes out (never
  held, nothing filled): two changes published in either order leave the newer set shown.

Events filled from the store do not know which session sent them; they skip the author's own
device instead (its client had the ack).

The memory backend needs none of this: its store and broker run inline, in number order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import msgspec

from presenced.presence.ordering import Sequence
from presenced.protocol.codec import encode
from presenced.server.wire import wire_event
from presenced.store.base import MessageStore, RoomStore
from presenced.typing import RoomId

__all__ = ["Frame", "RoomOrder"]

log = logging.getLogger(__name__)

Spawn = Callable[[Coroutine[Any, Any, Any]], None]


class Frame(msgspec.Struct, gc=False):
    """An encoded room event on its way to local members."""

    data: bytes
    origin: str | None = None  # the session that caused it (skipped)
    author: tuple[str, str] | None = None  # (user, device) of a frame filled from the store


Emit = Callable[[RoomId, Frame], None]


class _Numbers(msgspec.Struct):
    """The fields of a room event that order it (the rest of the frame is skipped)."""

    epoch: str | None = None
    offset: int | None = None
    version: int | None = None
    seq: int | None = None


_numbers = msgspec.json.Decoder(_Numbers)
_MESSAGE = b'{"type":"message'  # message, message.edited, message.deleted
_MEMBER = b'{"type":"member.'
_SUMMARY = b'{"type":"room.summary"'
_DELETED = b'{"type":"room.deleted"'
_TYPING = b'{"type":"typing",'


class _Streams:
    """One room's sequences and what is under way for them."""

    __slots__ = ("epoch", "filling", "messages", "timer", "typing", "versions")

    def __init__(self) -> None:
        self.epoch: str | None = None
        self.messages: Sequence[Frame] = Sequence()
        self.versions: Sequence[Frame] = Sequence()
        self.typing: Sequence[Frame] = Sequence()  # only ever jumps: latest wins
        self.timer: asyncio.TimerHandle | None = None
        self.filling = False


class RoomOrder:
    """Holds back, de-duplicates and fills the numbered events of this node's rooms."""

    __slots__ = ("_emit", "_rooms", "_spawn", "hold", "messages", "rooms", "wall")

    def __init__(
        self,
        messages: MessageStore,
        rooms: RoomStore,
        wall: Callable[[], float],
        spawn: Spawn,
        emit: Emit,
        hold: float = 1.0,
    ) -> None:
        self.messages = messages
        self.rooms = rooms
        self.wall = wall
        self.hold = hold
        self._spawn = spawn
        self._emit = emit
        self._rooms: dict[RoomId, _Streams] = {}

    def __contains__(self, room: object) -> bool:
        return room in self._rooms

    # --- subscription -----------------------------------------------------------------------

    async def opening(self, room: RoomId) -> None:
        """Before subscribing to ``room``: its message baseline (held until it is known)."""
        streams = self._rooms[room] = _Streams()
        epoch, offset = await self.messages.position(room)
        if self._rooms.get(room) is streams:
            streams.epoch = epoch
            self._deliver(room, streams.messages.start(offset))

    async def opened(self, room: RoomId) -> None:
        """Subscribed: the version baseline, and what was published before it took effect."""
        streams = self._rooms.get(room)
        if streams is None:
            return
        _, version = await self.rooms.count(room)
        if self._rooms.get(room) is streams:
            self._deliver(room, streams.versions.start(version))
            await self._fill(room, streams)

    def close(self, room: RoomId) -> None:
        """Unsubscribed: forget the room (a later subscription starts afresh)."""
        streams = self._rooms.pop(room, None)
        if streams is not None and streams.timer is not None:
            streams.timer.cancel()

    async def resync_all(self) -> None:
        """The pub/sub link is back: fill what each room's stream moved on by meanwhile."""
        for room in list(self._rooms):
            streams = self._rooms.get(room)
            if streams is None:
                continue
            try:
                _, version = await self.rooms.count(room)
                if self._rooms.get(room) is streams:
                    if streams.versions.last is not None and version < streams.versions.last:
                        streams.versions.reset(version)  # the room was recreated
                    else:
                        self._deliver(room, streams.versions.skip())
                        self._deliver(room, streams.versions.start(version))
                    await self._fill(room, streams)
            except Exception:
                log.exception("could not resync room %r after a reconnect", room)

    # --- frames -----------------------------------------------------------------------------

    def offer(self, room: RoomId, data: bytes, origin: str | None) -> bool:
        """Take a frame of ``room``'s channel; False if it is not numbered (deliver it as is)."""
        streams = self._rooms.get(room)
        if streams is None:
            return False
        if data.startswith(_MESSAGE):
            numbers = _numbers.decode(data)
            if numbers.offset is None:
                return False
            frame = Frame(data, origin)
            if numbers.epoch != streams.epoch and streams.epoch is not None:
                # The stream was recreated (the store restarted empty): start over in it.
                log.info("room %r: message stream epoch changed, starting over", room)
                streams.epoch = numbers.epoch
                streams.messages.reset(0)
            out = streams.messages.offer(numbers.offset, frame)
        elif data.startswith((_MEMBER, _SUMMARY, _DELETED)):
            numbers = _numbers.decode(data)
            if numbers.version is None:
                return False
            frame = Frame(data, origin)
            if not data.startswith(_MEMBER):
                # A summary or the deletion: needs none of the versions before it.
                out = streams.versions.jump(numbers.version, frame)
            else:
                out = streams.versions.offer(numbers.version, frame)
        elif data.startswith(_TYPING):
            numbers = _numbers.decode(data)
            if numbers.seq is None:
                return False
            # Nothing held: an older or equal seq is dropped, a newer one goes at once.
            out = streams.typing.jump(numbers.seq, Frame(data, origin))
        else:
            return False
        self._deliver(room, out)
        self._watch(room, streams)
        return True

    def _deliver(self, room: RoomId, frames: list[Frame]) -> None:
        emit = self._emit
        for frame in frames:
            emit(room, frame)

    # --- gaps -------------------------------------------------------------------------------

    def _watch(self, room: RoomId, streams: _Streams) -> None:
        """Keep a hold timer armed exactly while something is held."""
        waiting = streams.messages.waiting or streams.versions.waiting
        if waiting and streams.timer is None:
            loop = asyncio.get_running_loop()
            streams.timer = loop.call_later(self.hold, self._expired, room, streams)
        elif not waiting and streams.timer is not None:
            streams.timer.cancel()
            streams.timer = None

    def _expired(self, room: RoomId, streams: _Streams) -> None:
        streams.timer = None
        if self._rooms.get(room) is not streams:
            return
        if streams.versions.waiting and streams.versions.last is not None:
            skipped = streams.versions.last
            self._deliver(room, streams.versions.skip())
            log.debug("room %r: version gap after %d given up", room, skipped)
        if streams.messages.waiting:
            self._spawn(self._fill(room, streams))
        self._watch(room, streams)

    async def _fill(self, room: RoomId, streams: _Streams) -> None:
        """Fetch the messages after the last delivered one from the store, deliver them in
        their place; if the store does not have them either, give up on them."""
        messages = streams.messages
        if streams.filling or messages.last is None or streams.epoch is None:
            return
        streams.filling = True
        try:
            found = await self.messages.since(room, streams.epoch, messages.last, self.wall())
        except Exception:
            log.warning("room %r: could not fill a message gap from the store", room)
            found = None
        finally:
            streams.filling = False
        if self._rooms.get(room) is not streams:
            return
        if found is not None:
            if found.epoch != streams.epoch:
                streams.epoch = found.epoch
                messages.reset(0)
                found = await self.messages.since(room, found.epoch, 0, self.wall())
            for event in found.events:
                frame = Frame(encode(wire_event(event)), None, (event.user, event.device))
                self._deliver(room, messages.offer(event.offset, frame))
        if messages.waiting:
            # Held frames after numbers the store does not have (trimmed, or no history is
            # kept): deliver them anyway; clients see the gap and recover what they can.
            self._deliver(room, messages.skip())
        self._watch(room, streams)
