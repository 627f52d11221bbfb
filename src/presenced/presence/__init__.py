"""The presence core: pure data structures and decisions, no I/O, no clock.

Everything here takes ``now`` as an argument and returns what happened; the asyncio shell
(:mod:`presenced.server`) applies it. Importing this package pulls in no asyncio, socket,
Redis or JSON module (a test checks it).
"""

from presenced.presence.deadlines import DeadlineQueue
from presenced.presence.liveness import (
    Deadline,
    DeadlineKind,
    LivenessPolicy,
    SessionRegistry,
)
from presenced.presence.ratelimit import TokenBucket
from presenced.presence.roster import ChangeKind, RoomChange, Roster, RosterEntry
from presenced.presence.session import (
    TRANSITIONS,
    Session,
    SessionEvent,
    SessionState,
    next_state,
)
from presenced.presence.status import (
    OFFLINE,
    STATUS_PRECEDENCE,
    PresenceBook,
    PresenceChange,
    UserPresence,
    aggregate_status,
)

__all__ = [
    "OFFLINE",
    "STATUS_PRECEDENCE",
    "TRANSITIONS",
    "ChangeKind",
    "Deadline",
    "DeadlineKind",
    "DeadlineQueue",
    "LivenessPolicy",
    "PresenceBook",
    "PresenceChange",
    "RoomChange",
    "Roster",
    "RosterEntry",
    "Session",
    "SessionEvent",
    "SessionRegistry",
    "SessionState",
    "TokenBucket",
    "UserPresence",
    "aggregate_status",
    "next_state",
]
