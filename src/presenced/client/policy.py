"""The client SDK's decisions, pure: how long to wait, whether to reconnect, what to restore.

Nothing here touches asyncio, sockets or a clock; randomness and time are passed in. That
keeps the rules of docs/protocol.md ("Close codes", "Sessions, grace and resume",
"Recovery", receipts, typing) in one place that unit tests can walk exhaustively, while
:mod:`presenced.client.client` and :mod:`presenced.client.messaging` only apply them.

Two more pure modules hold the per-room rules that :class:`ResumeState` carries:
:mod:`presenced.client.streams` (stream positions and the offset gap rule, which make
recovery exact) and :mod:`presenced.client.members` (member lists and the version rule).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from presenced.client.members import MemberViews
from presenced.client.streams import UNKNOWN_EPOCH, StreamPositions
from presenced.protocol.chat import MessageEvent, Position, ReceiptDelivered, RoomRecovered
from presenced.protocol.codes import CloseCode, ErrorCode
from presenced.protocol.fields import ClientStatus
from presenced.protocol.messages import (
    PresenceSubscribe,
    RoomJoin,
    StatusSet,
    Welcome,
)

__all__ = [
    "MAX_USERS_PER_SUBSCRIBE",
    "UNKNOWN_EPOCH",
    "Backoff",
    "Decision",
    "DeliveredReceipts",
    "Restore",
    "ResumeState",
    "RoomState",
    "StreamPositions",
    "TypingThrottle",
    "auth_failure_decision",
    "delivered_receipt",
    "may_resume",
    "reconnect_decision",
    "retry_delay",
]

MAX_USERS_PER_SUBSCRIBE = 1000
"""The protocol's cap on ``users`` in one presence.subscribe; restores are chunked to it."""


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter.

    Attempt ``n`` (0-based) waits a uniformly random time in
    ``[0, min(maximum, initial * multiplier ** n)]``: the window doubles (by default) on every
    failure up to a cap, and the randomness spreads a crowd of clients that lost the same
    server so they do not all come back in the same instant.
    """

    initial: float = 0.5
    maximum: float = 30.0
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        if not self.initial > 0:
            raise ValueError(f"Backoff.initial must be > 0 seconds, got {self.initial!r}")
        if not self.maximum >= self.initial:
            raise ValueError(
                f"Backoff.maximum must be >= initial ({self.initial!r}), got {self.maximum!r}"
            )
        if not self.multiplier >= 1:
            raise ValueError(f"Backoff.multiplier must be >= 1, got {self.multiplier!r}")

    def cap(self, attempt: int) -> float:
        """The upper bound of the wait before attempt ``attempt``."""
        if attempt < 0:
            raise ValueError(f"attempt must be >= 0, got {attempt}")
        try:
            window = self.initial * self.multiplier**attempt
        except OverflowError:  # huge attempt counts: long past the cap anyway
            return self.maximum
        return min(self.maximum, window)

    def delay(self, attempt: int, rand: float) -> float:
        """Seconds to wait before attempt ``attempt``; ``rand`` is uniform in ``[0, 1)``."""
        if not 0.0 <= rand < 1.0:
            raise ValueError(f"rand must be in [0, 1), got {rand!r}")
        return rand * self.cap(attempt)


class Decision(enum.Enum):
    """What to do after a connection ended."""

    RECONNECT_NOW = "reconnect_now"  # at once, with a small jitter (server restart)
    RECONNECT_BACKOFF = "reconnect_backoff"  # with exponential backoff and full jitter
    STOP = "stop"  # do not reconnect; tell the application


# behaviour.md, "Close codes and what a client should do". Anything absent: backoff.
_CLOSE_DECISIONS: dict[int, Decision] = {
    CloseCode.NORMAL: Decision.STOP,
    CloseCode.SERVICE_RESTART: Decision.RECONNECT_NOW,
    CloseCode.AUTH_FAILED: Decision.STOP,
    CloseCode.AUTH_TIMEOUT: Decision.RECONNECT_BACKOFF,
    CloseCode.FORCE_LEAVE: Decision.STOP,
    CloseCode.UNSUPPORTED_PROTOCOL: Decision.STOP,
    CloseCode.SLOW_CONSUMER: Decision.RECONNECT_BACKOFF,
    CloseCode.HEARTBEAT_TIMEOUT: Decision.RECONNECT_BACKOFF,
    CloseCode.SESSION_REPLACED: Decision.STOP,
    CloseCode.FRAME_TOO_LARGE: Decision.RECONNECT_BACKOFF,
    CloseCode.DISCONNECTED: Decision.RECONNECT_NOW,  # afresh: see may_resume
    CloseCode.TOKEN_EXPIRED: Decision.RECONNECT_NOW,  # with a fresh token, and resume
    CloseCode.TOO_MANY_CONNECTIONS: Decision.RECONNECT_BACKOFF,  # never at once: it holds
}


def may_resume(close_code: int | None) -> bool:
    """Whether the next connect after a close with ``close_code`` may resume the session.

    Not after 4010 ``DISCONNECTED``: the backend ended the session, so the client connects
    with fresh credentials (a token function is called again, as before every connect) and
    opens a new session, restoring its rooms and subscriptions as after a failed resume.
    """
    return close_code != CloseCode.DISCONNECTED


def reconnect_decision(close_code: int | None, *, token_refreshable: bool = False) -> Decision:
    """Whether to reconnect after a close with ``close_code``.

    ``None`` means no close code at all (the connection could not be opened, or dropped
    without a close frame, which websockets reports as 1006): reconnect with backoff.
    ``token_refreshable`` is true when the client can fetch a new token before the next
    attempt; then an auth failure (4001) is worth one more try instead of a stop.
    """
    if close_code == CloseCode.AUTH_FAILED and token_refreshable:
        return Decision.RECONNECT_BACKOFF
    if close_code is None:
        return Decision.RECONNECT_BACKOFF
    return _CLOSE_DECISIONS.get(close_code, Decision.RECONNECT_BACKOFF)


# An ``error`` answering the auth message maps to the close code that follows it (or would).
_AUTH_ERROR_CLOSES: dict[str, int] = {
    ErrorCode.AUTH_FAILED: CloseCode.AUTH_FAILED,
    ErrorCode.AUTH_TIMEOUT: CloseCode.AUTH_TIMEOUT,
    ErrorCode.UNSUPPORTED_PROTOCOL: CloseCode.UNSUPPORTED_PROTOCOL,
}


def auth_failure_decision(error_code: str, *, token_refreshable: bool = False) -> Decision:
    """What to do when the server answered a reconnect's ``auth`` with an ``error``.

    A malformed request (BAD_REQUEST: the device id, say) will not fix itself: stop. Transient
    refusals (RATE_LIMITED, SHUTTING_DOWN, INTERNAL...) back off and retry.
    """
    if error_code == ErrorCode.BAD_REQUEST:
        return Decision.STOP
    close = _AUTH_ERROR_CLOSES.get(error_code)
    if close is None:
        return Decision.RECONNECT_BACKOFF
    return reconnect_decision(close, token_refreshable=token_refreshable)


def retry_delay(decision: Decision, attempt: int, rand: float, backoff: Backoff) -> float | None:
    """Seconds to wait before reconnect attempt ``attempt`` of an outage; ``None`` to stop.

    RECONNECT_NOW always waits within the first, smallest jitter window (a restarting server
    wants its clients back fast but not all in one instant); RECONNECT_BACKOFF widens the
    window with every failed attempt.
    """
    if decision is Decision.STOP:
        return None
    if decision is Decision.RECONNECT_NOW:
        return backoff.delay(0, rand)
    return backoff.delay(attempt, rand)


def delivered_receipt(event: object, me: str | None) -> ReceiptDelivered | None:
    """The ``receipt.delivered`` that ``event`` calls for, if any.

    Messages by others count, live or inside a ``room.recovered``; our own user's messages
    (from another device) are already delivered to us by the server's rules.
    """
    if isinstance(event, MessageEvent):
        if event.user == me:
            return None
        return ReceiptDelivered(room=event.room, offset=event.offset)
    if isinstance(event, RoomRecovered):
        theirs = [e.offset for e in event.events if isinstance(e, MessageEvent) and e.user != me]
        if theirs:
            return ReceiptDelivered(room=event.room, offset=max(theirs))
    return None


@dataclass(slots=True)
class DeliveredReceipts:
    """``receipt.delivered`` to send, coalesced: the highest offset per room."""

    pending: dict[str, int] = field(default_factory=dict)

    def note(self, room: str, offset: int) -> None:
        """Remember that ``room`` is delivered up to ``offset`` (the highest one wins)."""
        self.pending[room] = max(offset, self.pending.get(room, offset))

    def take(self) -> list[ReceiptDelivered]:
        """The batch to send now (one receipt per room), emptying it."""
        batch = [ReceiptDelivered(room=r, offset=o) for r, o in self.pending.items()]
        self.pending.clear()
        return batch


@dataclass(slots=True)
class TypingThrottle:
    """When ``typing()`` really sends ``typing.start``: at most once per ``interval`` per room.

    The server shows the indicator until ``typing_timeout`` (5 s by default) passes without a
    renewal and ignores renewals closer than its ``typing_throttle`` (1 s), so a keystroke
    handler may call ``typing()`` freely. A stop, a sent message or a new connection (the
    server cleared the indicator) lets the next start through at once.
    """

    interval: float = 2.0
    sent: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.interval >= 0:
            raise ValueError(f"typing throttle must be >= 0 seconds, got {self.interval!r}")

    def start(self, room: str, now: float) -> bool:
        """True when a ``typing.start`` for ``room`` should go out at time ``now``."""
        last = self.sent.get(room)
        if last is not None and now - last < self.interval:
            return False
        self.sent[room] = now
        return True

    def reset(self, room: str) -> None:
        """The indicator is off in ``room`` (stopped, or a message was sent)."""
        self.sent.pop(room, None)

    def clear(self) -> None:
        """The indicator is off everywhere (a new connection)."""
        self.sent.clear()


@dataclass(frozen=True, slots=True)
class RoomState:
    """How this session joined a room: what to send again to re-join it."""

    meta: dict[str, Any] | None = None
    device_events: bool = False


@dataclass(frozen=True, slots=True)
class Restore:
    """Requests to send after a ``welcome`` so the new session matches the old one."""

    joins: tuple[RoomJoin, ...] = ()
    subscribes: tuple[PresenceSubscribe, ...] = ()
    status: StatusSet | None = None

    @property
    def empty(self) -> bool:
        """True when nothing has to be sent (a successful resume)."""
        return not self.joins and not self.subscribes and self.status is None


@dataclass(slots=True)
class ResumeState:
    """What the server confirmed for this session, kept so it can be restored.

    The client records a change only once the server has answered it (room.joined,
    presence.subscribed...), so this is the server's view, not the application's wishes.
    :meth:`on_welcome` takes the new resume token and says what to send again.
    """

    resume_token: str | None = None
    rooms: dict[str, RoomState] = field(default_factory=dict)
    subscriptions: set[str] = field(default_factory=set)
    status: ClientStatus | None = None  # None: never set, the server default stands
    text: str | None = None
    streams: StreamPositions = field(default_factory=StreamPositions)
    members: MemberViews = field(default_factory=MemberViews)

    def joined(
        self, room: str, meta: dict[str, Any] | None = None, device_events: bool = False
    ) -> None:
        """The server answered room.join. Joining again without meta keeps the old meta."""
        old = self.rooms.get(room)
        if meta is None and old is not None:
            meta = old.meta
        self.rooms[room] = RoomState(meta=meta, device_events=device_events)

    def left(self, room: str) -> None:
        """The session is no longer in ``room`` (room.left, or NOT_IN_ROOM)."""
        self.rooms.pop(room, None)
        self.streams.forget(room)
        self.members.forget(room)

    def join_failed(self, room: str) -> None:
        """A ``room.join`` sent by the application got no ``room.joined``."""
        if room in self.rooms:
            self.members.abandon(room)  # joined before: the list stays, unheld
        else:
            self.members.forget(room)

    def meta_set(self, room: str, meta: dict[str, Any]) -> None:
        """The server accepted room.meta: a re-join carries the new metadata."""
        old = self.rooms.get(room)
        if old is not None:
            self.rooms[room] = RoomState(meta=meta, device_events=old.device_events)

    def subscribed(self, users: list[str]) -> None:
        self.subscriptions.update(users)

    def unsubscribed(self, users: list[str]) -> None:
        self.subscriptions.difference_update(users)

    def status_set(self, status: ClientStatus, text: str | None) -> None:
        self.status = status
        self.text = text

    def session_ended(self) -> None:
        """The server ended the session but not what the app asked for (4010): the next
        connect opens a new session (no resume token) and restores the rest."""
        self.resume_token = None

    def clear(self) -> None:
        """The session ended for good (logout, force leave): nothing is left to restore."""
        self.resume_token = None
        self.rooms.clear()
        self.subscriptions.clear()
        self.status = None
        self.text = None
        self.streams = StreamPositions()
        self.members = MemberViews()

    def auth_positions(self) -> dict[str, Position] | None:
        """``auth.positions`` for the next connect: only when it will ask to resume."""
        if self.resume_token is None:
            return None
        return self.streams.for_auth(self.rooms)

    def on_welcome(self, welcome: Welcome) -> Restore:
        """Take the new resume token and return what must be sent again.

        A resumed session kept everything: nothing is sent. The welcome's rooms and watched
        users are the server's and stand: a room it does not list is forgotten, not
        re-joined (the session was taken out of it while away: kicked from the room by the
        backend, the room deleted, rights narrowed, or a room.leave whose reply was lost),
        one it lists that we did not know about is adopted; likewise the subscriptions (the
        backend may watch or unwatch for the session). A fresh session (``resumed`` false,
        even with ``resume_error``) gets every room re-joined, every watched user
        re-subscribed and the status re-set.

        Recovery: every restored room awaits the ``room.recovered`` the server sends after
        a resumed welcome (from ``auth.positions``), and every re-join carries ``since`` (the
        known position, else :data:`UNKNOWN_EPOCH`) and awaits the answer to it.

        Members: events of the outage are lost, so every member list waits for a snapshot:
        a restored room's from the ``room.members`` it asks for
        (:meth:`~presenced.client.members.MemberViews.take_requests`), a re-joined room's
        from its ``room.joined``.
        """
        self.resume_token = welcome.resume_token
        self.streams.connection_lost()
        self.members.connection_lost()
        if welcome.resumed:
            listed = set(welcome.rooms)
            for room in [r for r in self.rooms if r not in listed]:
                self.left(room)
            for room in welcome.rooms:
                self.rooms.setdefault(room, RoomState())
                self.streams.expect(room)
                self.members.refresh(room)
            self.subscriptions = set(welcome.subscriptions)
            rooms: list[str] = []
            users: list[str] = []
            status = None
        else:
            rooms = list(self.rooms)
            users = sorted(self.subscriptions)
            status = None
            if self.status is not None:
                status = StatusSet(status=self.status, text=self.text)
        joins = tuple(
            RoomJoin(
                room=r,
                meta=self.rooms[r].meta,
                device_events=self.rooms[r].device_events,
                since=self.streams.since(r),
            )
            for r in rooms
        )
        for room in rooms:
            self.streams.expect(room)
            self.members.expect(room)
        subscribes = tuple(
            PresenceSubscribe(users=users[i : i + MAX_USERS_PER_SUBSCRIBE])
            for i in range(0, len(users), MAX_USERS_PER_SUBSCRIBE)
        )
        return Restore(joins=joins, subscribes=subscribes, status=status)
