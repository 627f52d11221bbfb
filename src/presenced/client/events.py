"""What the client SDK hands the application: events and exceptions.

Events are the decoded server messages themselves (:mod:`presenced.protocol.messages`:
``MemberJoined``, ``Presence``...) plus three the SDK adds about the connection:
:class:`Connected`, :class:`Disconnected` and :class:`ForcedLeave`. Every event has a type
name (:func:`event_type`): the wire ``type`` for server messages, ``"connected"``,
``"disconnected"`` and ``"forced_leave"`` for the SDK's own; ``Client.on`` is keyed on it.

Exceptions::

    PresencedError
    +-- ClientError            the server answered a request with ``error`` (code, field, ref)
    +-- ConnectionClosed       no connection to send on, or it closed while waiting
        +-- ForceLeaveError    the server ended the session (force_leave): it is over
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from presenced.errors import PresencedError
from presenced.protocol.messages import ServerMessage, Welcome

__all__ = [
    "ClientError",
    "Connected",
    "ConnectionClosed",
    "Disconnected",
    "Event",
    "ForceLeaveError",
    "ForcedLeave",
    "event_type",
]


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


Event = ServerMessage | Connected | Disconnected | ForcedLeave
"""Anything ``Client.events()`` yields or ``Client.on`` callbacks receive."""


def event_type(event: Event) -> str:
    """The name an event is dispatched under (``"member.joined"``, ``"connected"``...)."""
    if isinstance(event, Connected | Disconnected | ForcedLeave):
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
