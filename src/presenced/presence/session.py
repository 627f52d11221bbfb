"""The session: one client connection's logical life, and its state machine.

::

    ACTIVE --TRANSPORT_LOST--> GRACE --GRACE_EXPIRED--> CLOSED
    GRACE  --RESUMED---------> ACTIVE
    ACTIVE|GRACE --LEAVE | FORCE_LEAVE | KICK | NODE_LOST--> CLOSED

A session in GRACE still counts as present (no flicker); CLOSED is final. Every transition is
in :data:`TRANSITIONS`; anything else raises :class:`InvalidTransition` naming state and event.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from presenced.errors import InvalidTransition
from presenced.typing import DeviceId, RoomId, SessionId, UserId

__all__ = ["TRANSITIONS", "RoomOptions", "Session", "SessionEvent", "SessionState", "next_state"]


class SessionState(Enum):
    ACTIVE = "active"
    GRACE = "grace"
    CLOSED = "closed"


class SessionEvent(Enum):
    TRANSPORT_LOST = "transport_lost"  # close without logout, ping timeout, slow consumer
    RESUMED = "resumed"  # the client came back with its resume token
    GRACE_EXPIRED = "grace_expired"
    LEAVE = "leave"  # explicit logout
    FORCE_LEAVE = "force_leave"  # inactivity timeout
    KICK = "kick"  # the backend removed it (a kick, or a disconnect)
    NODE_LOST = "node_lost"  # its node died and grace ran out elsewhere


_S, _E = SessionState, SessionEvent
TRANSITIONS: dict[tuple[SessionState, SessionEvent], SessionState] = {
    (_S.ACTIVE, _E.TRANSPORT_LOST): _S.GRACE,
    (_S.GRACE, _E.RESUMED): _S.ACTIVE,
    (_S.GRACE, _E.GRACE_EXPIRED): _S.CLOSED,
    (_S.ACTIVE, _E.LEAVE): _S.CLOSED,
    (_S.GRACE, _E.LEAVE): _S.CLOSED,
    (_S.ACTIVE, _E.FORCE_LEAVE): _S.CLOSED,
    (_S.GRACE, _E.FORCE_LEAVE): _S.CLOSED,
    (_S.ACTIVE, _E.KICK): _S.CLOSED,
    (_S.GRACE, _E.KICK): _S.CLOSED,
    (_S.ACTIVE, _E.NODE_LOST): _S.CLOSED,
    (_S.GRACE, _E.NODE_LOST): _S.CLOSED,
}


def next_state(state: SessionState, event: SessionEvent) -> SessionState:
    """The state after ``event``, or :class:`InvalidTransition`."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise InvalidTransition(state, event) from None


@dataclass(slots=True)
class RoomOptions:
    """How a session is in a room: its member metadata and whether it wants device events."""

    meta: dict[str, Any] | None = None
    device_events: bool = False


@dataclass(slots=True)
class Session:
    """Everything presenced knows about one session (serializable by the store)."""

    id: SessionId
    user: UserId
    device: DeviceId
    resume_token: str
    device_info: dict[str, Any] | None = None
    state: SessionState = SessionState.ACTIVE
    status: str = "online"  # what this device set (auto-away shows as "away")
    text: str | None = None
    auto_away: bool = False  # away because idle, not because the user said so
    rooms: dict[RoomId, RoomOptions] = field(default_factory=dict)
    subscriptions: set[UserId] = field(default_factory=set)
    moderator: bool = False
    room_patterns: tuple[str, ...] | None = None
    watch_patterns: tuple[str, ...] | None = None  # the token's watch claim (None: none)
    node: str = ""  # the node that owns it: holds its connection or its grace deadline
    # Each room's stream position when the transport was lost: where recovery starts when
    # the client does not say what it saw.
    marks: dict[RoomId, tuple[str, int]] = field(default_factory=dict)
    # Wall-clock times (Unix seconds), for the backend's view of its sessions: when the
    # session was opened, and its last request (activity). ``last_active`` is kept exact by
    # the owner node and travels with the record's ordinary writes (join, status, grace...),
    # so the stored copy may lag by what happened since the last of them.
    connected_at: float = 0.0
    last_active: float = 0.0

    def apply(self, event: SessionEvent) -> SessionState:
        """Move along the state machine; returns the new state."""
        self.state = next_state(self.state, event)
        return self.state

    @property
    def present(self) -> bool:
        """Whether this session keeps its user present (ACTIVE or in GRACE)."""
        return self.state is not SessionState.CLOSED

    @property
    def effective_status(self) -> str:
        """The status this device contributes to its user's aggregate."""
        if self.auto_away and self.status == "online":
            return "away"
        return self.status
