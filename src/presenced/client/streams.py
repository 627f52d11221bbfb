"""Room stream positions and the gap rule, pure: what to surface, what to drop, what to recover.

docs/protocol.md, "Keeping a position": per room the client keeps ``(epoch, last)``, the
highest offset up to which it has applied every event, and for each stream event, ack or
edit/delete reply with epoch ``E`` and offset ``N``:

- ``N == last + 1`` (same epoch): apply it, ``last = N``;
- ``N <= last``: already applied (a duplicate): drop it;
- ``N > last + 1``: a gap: hold it and recover with ``room.join`` + ``since: (epoch, last)``;
- ``E`` is another epoch: the stream was restarted; recovering from the old position gets
  ``recovered: false`` with the new position, which says "reload" (:class:`RecoveryFailed`).

:class:`StreamPositions` applies these rules; it touches no socket. The shell feeds it every
server message (:meth:`~StreamPositions.receive`, :meth:`~StreamPositions.reply`), surfaces
what it returns, and sends the recoveries it asks for (:meth:`~StreamPositions.take_recoveries`,
sans-I/O style). A room is *awaited* while a ``room.recovered`` is due for it (after a resume,
a re-join with ``since``, or a gap): its live events are held, not surfaced and not counted,
because the recovery may contain them too; when it arrives, the recovery is surfaced first and
then the held events it does not cover, by the same rule.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar

import msgspec

from presenced.protocol.chat import (
    MessageAck,
    MessageDeleted,
    MessageEdited,
    MessageEvent,
    Position,
    RoomEvent,
    RoomHistoryReply,
    RoomRecovered,
)
from presenced.protocol.messages import ServerMessage

__all__ = [
    "UNKNOWN_EPOCH",
    "RecoveryFailed",
    "Step",
    "StreamPositions",
    "Surfaced",
    "classify",
]

UNKNOWN_EPOCH = ""
"""The epoch a re-join sends in ``since`` for a room where nothing was seen yet.

No stream has it, so the server answers ``room.recovered`` with recovered=false: after a
failed resume the SDK cannot prove such a room stayed quiet, and the application reloads it.
"""

_STREAM_EVENTS = (MessageEvent, MessageEdited, MessageDeleted)


@dataclass(frozen=True, slots=True)
class RecoveryFailed:
    """The room's missed events cannot be told: reload the room.

    Surfaced right after a ``room.recovered`` with ``recovered`` false (history trimmed past
    the position, or a new ``epoch``: the stream was restarted), or when the recovery request
    itself was refused. What to do (docs/protocol.md, "Recovery"): ``Client.history(room)``
    and replace the shown messages (all of them when the epoch changed), ``read_state`` for
    the unread count. The SDK's position is already ``(epoch, offset)``; later events follow.
    """

    type: ClassVar[str] = "recovery_failed"
    room: str
    epoch: str
    offset: int


Surfaced = ServerMessage | RecoveryFailed
"""What :class:`StreamPositions` hands back for the application, in order."""


class Step(enum.Enum):
    """Where a stream offset stands against the kept position (:func:`classify`)."""

    FIRST = "first"  # no position yet: this event is the baseline
    APPLY = "apply"  # the next one
    DUPLICATE = "duplicate"  # at or below the position: already applied
    GAP = "gap"  # beyond the next one: events are missing
    NEW_EPOCH = "new_epoch"  # another epoch: the stream was restarted


def classify(position: Position | None, epoch: str, offset: int) -> Step:
    """The protocol's position rule for an event at ``(epoch, offset)``."""
    if position is None:
        return Step.FIRST
    if epoch != position.epoch:
        return Step.NEW_EPOCH
    if offset <= position.offset:
        return Step.DUPLICATE
    if offset == position.offset + 1:
        return Step.APPLY
    return Step.GAP


@dataclass(slots=True)
class StreamPositions:
    """Per room, the position of the stream the application has, and the recoveries due.

    ``known[room]`` is the ``(epoch, last)`` of the rule above: it moves only by one, with
    every stream event surfaced (``message``, ``message.edited``, ``message.deleted``), every
    own ack or edit/delete reply, and to a ``room.recovered``'s position. A ``room.history``
    reply sets it when there is none or it is of another epoch (the reload after a restart).

    ``awaiting[room]`` holds the room's live events while a ``room.recovered`` is due.
    ``due[room]`` is a recovery to request (``room.join`` with ``since`` = the value).
    """

    known: dict[str, Position] = field(default_factory=dict)
    awaiting: dict[str, list[RoomEvent]] = field(default_factory=dict)
    due: dict[str, Position] = field(default_factory=dict)

    def position(self, room: str) -> Position | None:
        """The position of ``room``: every event up to it was surfaced, if any event was."""
        return self.known.get(room)

    def forget(self, room: str) -> None:
        """The session left ``room``: a later join starts from nothing."""
        self.known.pop(room, None)
        self.awaiting.pop(room, None)
        self.due.pop(room, None)

    def expect(self, room: str) -> None:
        """A ``room.recovered`` is due for ``room``: hold its live events until then."""
        self.awaiting[room] = []

    def since(self, room: str) -> Position:
        """What a re-join of ``room`` sends as ``since`` (see :data:`UNKNOWN_EPOCH`)."""
        return self.known.get(room) or Position(epoch=UNKNOWN_EPOCH, offset=0)

    def for_auth(self, rooms: Iterable[str]) -> dict[str, Position] | None:
        """``auth.positions`` for a resume: the position of each of ``rooms`` that has one.

        Rooms without one are left out; the server then recovers them from where it noticed
        the drop (approximate, but all it can do).
        """
        positions = {room: self.known[room] for room in rooms if room in self.known}
        return positions or None

    def take_recoveries(self) -> list[tuple[str, Position]]:
        """The recoveries to request now: ``room.join`` of each room with this ``since``."""
        out = list(self.due.items())
        self.due.clear()
        return out

    # --- what arrives --------------------------------------------------------------------------

    def receive(self, message: ServerMessage) -> list[Surfaced]:
        """An unsolicited server message arrived: what to surface now, in order.

        Stream events go through the rule (held while their room is awaited); a
        ``room.recovered`` releases the held events. Everything else passes through.
        """
        if isinstance(message, RoomRecovered):
            return self._recovered(message)
        if isinstance(message, _STREAM_EVENTS):
            out: list[Surfaced] = []
            self._live(message, out)
            return out
        return [message]

    def reply(self, message: ServerMessage) -> None:
        """A reply to one of our requests arrived: an ack or an edit/delete reply counts in
        the position like an event (a gap before it starts a recovery); a history reply sets
        a missing position. Not while the room is awaited: the recovery sets the position."""
        if isinstance(message, MessageAck | MessageEdited | MessageDeleted):
            room = message.room
            if room in self.awaiting or (isinstance(message, MessageAck) and message.duplicate):
                return
            step = classify(self.known.get(room), message.epoch, message.offset)
            if step in (Step.FIRST, Step.APPLY):
                self.known[room] = Position(epoch=message.epoch, offset=message.offset)
            elif step in (Step.GAP, Step.NEW_EPOCH):
                # The ack is the caller's; the recovery brings what is missing (and our own
                # message again, as protocol.md says: the app matches it by temp_id).
                self._start_recovery(room)
        elif isinstance(message, RoomHistoryReply) and message.room not in self.awaiting:
            old = self.known.get(message.room)
            if old is None or old.epoch != message.epoch:
                self.known[message.room] = Position(epoch=message.epoch, offset=message.offset)

    def settle(self, rooms: Mapping[str, list[RoomEvent]]) -> list[Surfaced]:
        """No ``room.recovered`` came for ``rooms`` (as :attr:`awaiting` was when the
        welcome's recoveries were due): release their held events by the rule. A room
        awaited anew since (a gap) is left alone."""
        out: list[Surfaced] = []
        for room, held in rooms.items():
            if self.awaiting.get(room) is held:
                del self.awaiting[room]
                for event in held:
                    self._live(event, out)
        return out

    def abandon(self, room: str) -> list[Surfaced]:
        """The recovery request for ``room`` was refused: say so, and surface what was held
        (the application reloads the room anyway); the position moves to the last of it."""
        held = self.awaiting.pop(room, None)
        if held is None:
            return []
        old = self.since(room)
        out: list[Surfaced] = [RecoveryFailed(room=room, epoch=old.epoch, offset=old.offset)]
        for event in held:
            self.known[room] = Position(epoch=event.epoch, offset=event.offset)
            out.append(event)
        return out

    def connection_lost(self) -> None:
        """Drop held events and requests: they were never counted, so the next recovery
        (from the unchanged position) brings them."""
        self.awaiting.clear()
        self.due.clear()

    # --- the rule ------------------------------------------------------------------------------

    def _live(self, event: RoomEvent, out: list[Surfaced]) -> None:
        room = event.room
        held = self.awaiting.get(room)
        if held is not None:
            held.append(event)
            return
        step = classify(self.known.get(room), event.epoch, event.offset)
        if step in (Step.FIRST, Step.APPLY):
            self.known[room] = Position(epoch=event.epoch, offset=event.offset)
            out.append(event)
        elif step in (Step.GAP, Step.NEW_EPOCH):
            self._start_recovery(room)
            self.awaiting[room].append(event)
        # Step.DUPLICATE: already surfaced; dropped.

    def _start_recovery(self, room: str) -> None:
        self.awaiting[room] = []
        self.due[room] = self.since(room)

    def _recovered(self, message: RoomRecovered) -> list[Surfaced]:
        room = message.room
        held = self.awaiting.pop(room, [])
        self.due.pop(room, None)
        old = self.known.get(room)
        if old is not None and old.epoch == message.epoch and message.events:
            fresh = [e for e in message.events if e.offset > old.offset]
            if len(fresh) != len(message.events):  # already surfaced: not twice
                message = msgspec.structs.replace(message, events=fresh)
        # The recovery covers the stream up to its position: exactly when recovered, by the
        # reload it asks for when not.
        self.known[room] = Position(epoch=message.epoch, offset=message.offset)
        out: list[Surfaced] = [message]
        if not message.recovered:
            out.append(RecoveryFailed(room=room, epoch=message.epoch, offset=message.offset))
        for event in held:
            if event.epoch == message.epoch:  # of another epoch: from the dead stream
                self._live(event, out)
        return out
