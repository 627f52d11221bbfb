"""What the client SDK hands the application: events, exceptions, and the hub that delivers them.

Events are the decoded server messages themselves (:mod:`presenced.protocol.messages`:
``MemberJoined``, ``Presence``...; :mod:`presenced.protocol.chat`: ``MessageEvent``,
``MessageEdited``, ``MessageDeleted``, ``Receipt``, ``TypingEvent``, ``RoomRecovered``)
plus three the SDK adds about the connection: :class:`Connected`, :class:`Disconnected` and
:class:`ForcedLeave`, and two about rooms: :class:`~presenced.client.streams.RecoveryFailed`
and :class:`~presenced.client.members.MembersResynced`. Every event has a type name
(:func:`event_type`): the wire ``type`` for server messages, ``"connected"``,
``"disconnected"``, ``"forced_leave"``, ``"recovery_failed"`` and ``"members_resynced"`` for
the SDK's own; ``Client.on`` is keyed on it.

Room streams: each room's ``message`` / ``message.edited`` / ``message.deleted`` events reach
the application once each, in offset order, across reconnects and gaps. Events missed come in
a ``room.recovered`` (after a reconnect, after the ``connected`` event; or when the SDK saw a
gap in the offsets). When its ``recovered`` is false the gap could not be filled (history
trimmed, or a new epoch after a server restart): a ``recovery_failed`` follows it: reload
the room, e.g. with ``Client.history()``.

Members: ``member.*`` events are surfaced once each, in version order; those already in the
client's member list (``Client.member_list``) are skipped. After a version gap or a reconnect
the list is replaced by a snapshot, and a ``members_resynced`` says so when it changed.

:class:`EventHub` is the delivery machinery: a queue for ``Client.events()`` and the
callbacks registered with ``Client.on``.

Exceptions::

    PresencedError
    +-- ClientError            the server answered a request with ``error`` (code, field, ref)
    +-- ConnectionClosed       no connection to send on, or it closed while waiting
        +-- ForceLeaveError    the server ended the session (force_leave): it is over
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from presenced.client.members import MembersResynced
from presenced.client.streams import RecoveryFailed
from presenced.errors import PresencedError
from presenced.protocol.messages import ServerMessage, Welcome

__all__ = [
    "Callback",
    "ClientError",
    "Connected",
    "ConnectionClosed",
    "Disconnected",
    "Event",
    "EventHub",
    "ForceLeaveError",
    "ForcedLeave",
    "MembersResynced",
    "RecoveryFailed",
    "event_type",
]

log = logging.getLogger(__name__)

Callback = Callable[[Any], Awaitable[None] | None]
"""An event callback, sync or async; it receives the event."""


@dataclass(frozen=True, slots=True)
class Connected:
    """A session is established: the first connect, or a reconnect (see ``welcome.resumed``).

    After a reconnect that could not resume, the SDK has already re-joined the rooms,
    re-subscribed and re-set the status by the time this is delivered.
    """

    type: ClassVar[str] = "connected"
    welcome: Welcome


@dataclass(frozen=True, slots=True)
class Disconnected:
    """The connection ended. ``will_reconnect`` says whether the SDK is trying again.

    ``code`` is the WebSocket close code (1006 when the connection dropped without one,
    ``None`` when there never was a connection to close).
    """

    type: ClassVar[str] = "disconnected"
    code: int | None
    reason: str
    will_reconnect: bool


@dataclass(frozen=True, slots=True)
class ForcedLeave:
    """The server ended the session (``reason`` inactivity_timeout or kicked).

    The SDK does not reconnect after it; a :class:`Disconnected` follows.
    """

    type: ClassVar[str] = "forced_leave"
    reason: str
    message: str


Event = ServerMessage | Connected | Disconnected | ForcedLeave | RecoveryFailed | MembersResynced
"""Anything ``Client.events()`` yields or ``Client.on`` callbacks receive."""


def event_type(event: Event) -> str:
    """The name an event is dispatched under (``"member.joined"``, ``"connected"``...)."""
    if isinstance(event, Connected | Disconnected | ForcedLeave | RecoveryFailed | MembersResynced):
        return event.type
    return str(type(event).__struct_config__.tag)


class ClientError(PresencedError):
    """The server refused a request: ``code`` is an :class:`~presenced.protocol.codes.ErrorCode`
    value, ``field`` the offending field when there is one, ``ref`` the request's ref."""

    def __init__(
        self, code: str, message: str, field: str | None = None, ref: str | int | None = None
    ) -> None:
        super().__init__(f"{code}: {message}" + (f" (field {field})" if field else ""))
        self.code = code
        self.message = message
        self.field = field
        self.ref = ref


class ConnectionClosed(PresencedError):
    """The request could not be sent or answered: there is no open connection.

    ``will_reconnect`` is true while the SDK is reconnecting: the request may be retried.
    """

    def __init__(self, code: int | None, reason: str, *, will_reconnect: bool = False) -> None:
        text = f"connection closed (code {code})" + (f": {reason}" if reason else "")
        super().__init__(text)
        self.code = code
        self.reason = reason
        self.will_reconnect = will_reconnect


class ForceLeaveError(ConnectionClosed):
    """The server ended the session with force_leave; the client will not reconnect.

    ``reason`` is the force_leave reason (inactivity_timeout, kicked), ``code`` is 4003.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(4003, reason)
        self.args = (f"session ended by the server ({reason}): {message}",)
        self.message = message


class _EventIterator:
    """``async for event in client.events()``: drains the hub's queue until it ends."""

    def __init__(self, queue: asyncio.Queue[Event | None]) -> None:
        self._queue = queue

    def __aiter__(self) -> _EventIterator:
        return self

    async def __anext__(self) -> Event:
        item = await self._queue.get()
        if item is None:
            self._queue.put_nowait(None)  # keep the end mark for any other iterator
            raise StopAsyncIteration
        return item


class EventHub:
    """Hands events to the application: queued for :meth:`events`, passed to callbacks.

    The queue keeps at most ``max_queued`` unread events (the oldest are dropped beyond it).
    While :meth:`hold` is in force, events are kept back and delivered by :meth:`release`,
    after the events it is given first (a reconnect's ``Connected`` before what the new
    session brought).
    """

    def __init__(self, max_queued: int = 10_000) -> None:
        self._max_queued = max_queued
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self._handlers: dict[str, list[Callback]] = {}
        self._tasks: set[asyncio.Future[Any]] = set()
        self._held: list[Event] | None = None

    def events(self) -> AsyncIterator[Event]:
        """Iterate over the events; the iteration ends after :meth:`end`."""
        return _EventIterator(self._queue)

    def on(self, type_: str, callback: Callback) -> Callable[[], None]:
        """Call ``callback(event)`` for events of type ``type_`` (``"*"``: all); returns a
        function that removes it."""
        self._handlers.setdefault(type_, []).append(callback)

        def remove() -> None:
            handlers = self._handlers.get(type_, [])
            if callback in handlers:
                handlers.remove(callback)

        return remove

    def hold(self) -> None:
        """Keep events back until :meth:`release`."""
        if self._held is None:
            self._held = []

    def release(self, *first: Event) -> None:
        """Deliver ``first``, then what was held, and stop holding."""
        held, self._held = self._held or [], None
        for event in (*first, *held):
            self.emit(event)

    def emit(self, event: Event) -> None:
        """Queue ``event`` and run its callbacks (async ones as tasks)."""
        if self._held is not None:
            self._held.append(event)
            return
        if self._queue.qsize() >= self._max_queued:
            self._queue.get_nowait()
            log.warning("events() not consumed: dropped the oldest queued event")
        self._queue.put_nowait(event)
        name = event_type(event)
        for callback in [*self._handlers.get(name, ()), *self._handlers.get("*", ())]:
            try:
                result = callback(event)
            except Exception:
                log.exception("event callback %r failed on %s", callback, name)
                continue
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self._tasks.add(task)
                task.add_done_callback(self._callback_done)

    def end(self) -> None:
        """No more events: iterations of :meth:`events` stop after the queued ones."""
        self._queue.put_nowait(None)

    def _callback_done(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("event callback failed", exc_info=task.exception())

    async def drain(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for running async callbacks, then cancel them."""
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
        for task in tasks:
            task.cancel()
