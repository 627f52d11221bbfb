"""User presence derived from sessions: status aggregation, invisibility, last seen.

A user is online while at least one of its sessions is ACTIVE or in GRACE. Its status is the
aggregate of its devices' statuses by :data:`STATUS_PRECEDENCE` (explicit invisible, dnd and
busy win over online, which wins over away). An invisible user appears offline to everyone
else: :meth:`PresenceBook.public` is what others see, :meth:`PresenceBook.private` what the
user's own devices see.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass, field

import msgspec

from presenced.typing import SessionId, UserId

__all__ = [
    "OFFLINE",
    "STATUS_PRECEDENCE",
    "PresenceBook",
    "PresenceChange",
    "UserPresence",
    "aggregate_status",
    "derive_view",
    "next_presence_seq",
]

OFFLINE = "offline"
STATUS_PRECEDENCE: dict[str, int] = {"invisible": 5, "dnd": 4, "busy": 3, "online": 2, "away": 1}


def aggregate_status(statuses: Iterable[str]) -> str:
    """The user's status over its devices; ``offline`` when it has none."""
    best = OFFLINE
    rank = 0
    for status in statuses:
        r = STATUS_PRECEDENCE[status]
        if r > rank:
            best, rank = status, r
    return best


def derive_view(
    user: UserId,
    devices: list[tuple[str, str | None, int]],
    last_seen: float | None,
    *,
    public: bool,
) -> UserPresence:
    """THE presence rule, for every store: a user's presence from its sessions' records
    ``(status, text, seq)`` (``seq``: higher was set later). Status by
    :data:`STATUS_PRECEDENCE`, text of the newest session with the winning status; with
    ``public``, an invisible user is offline (what everyone else sees)."""
    if not devices:
        return UserPresence(user, False, OFFLINE, 0, None, last_seen)
    if len(devices) == 1:  # the common case, read by every join reply
        status, text, _ = devices[0]
    else:
        status = aggregate_status(d[0] for d in devices)
        text = max((d for d in devices if d[0] == status), key=lambda d: d[2])[1]
    if public and status == "invisible":
        return UserPresence(user, False, OFFLINE, 0, None, last_seen)
    return UserPresence(user, True, status, len(devices), text, None)


class UserPresence(msgspec.Struct, frozen=True):
    """A user's presence as one viewer sees it (a Struct: built per member of every join
    reply, so cheap construction matters)."""

    user: UserId
    online: bool
    status: str
    devices: int
    text: str | None = None
    last_seen: float | None = None


def next_presence_seq(previous: int, wall: float) -> int:
    """The number of a user's next presence change (see :class:`PresenceChange`)."""
    return max(previous + 1, int(wall * 1000))


@dataclass(frozen=True, slots=True)
class PresenceChange:
    """Before and after of the public view and of the private one (invisible included, what
    the user's own devices and the backend's event export see), and the change's number
    among the user's presence changes.

    ``seq`` is assigned in the same atomic step as the change, so the ``presence`` events of
    one user's changes, published separately and by any node, can be put back in order by
    receivers: the greatest ``seq`` is the newest presence. It is ``max(previous + 1, wall in
    ms)`` (:func:`next_presence_seq`): strictly increasing while the store remembers the
    previous number, and still increasing (by the wall clock) after it forgot it (the user's
    keys expired or were dropped, the store restarted empty).
    """

    before: UserPresence
    after: UserPresence
    private_before: UserPresence
    private_after: UserPresence
    seq: int

    @property
    def aggregate(self) -> str:
        """The user's own status after the change (invisible included)."""
        return self.private_after.status

    @property
    def changed(self) -> bool:
        return self.before != self.after

    @property
    def went_online(self) -> bool:
        return not self.before.online and self.after.online

    @property
    def went_offline(self) -> bool:
        return self.before.online and not self.after.online


@dataclass(slots=True)
class _DeviceStatus:
    status: str
    text: str | None
    seq: int  # when it was set, to pick the newest text among equal statuses


@dataclass(slots=True)
class _User:
    sessions: dict[SessionId, _DeviceStatus] = field(default_factory=dict)
    last_seen: float | None = None
    changes: int = 0  # the number of the user's latest presence change (PresenceChange.seq)


class PresenceBook:
    """Per-user presence from per-session statuses; the memory store's presence state."""

    __slots__ = ("_seq", "_users")

    def __init__(self) -> None:
        self._users: dict[UserId, _User] = {}
        self._seq = 0

    def set(
        self, user: UserId, session: SessionId, status: str, text: str | None, wall: float
    ) -> PresenceChange:
        """Add a session or change its status."""
        before, private_before = self.public(user), self.private(user)
        entry = self._users.setdefault(user, _User())
        self._seq += 1
        entry.sessions[session] = _DeviceStatus(status, text, self._seq)
        return self._change(user, before, private_before, wall)

    def remove(self, user: UserId, session: SessionId, wall: float) -> PresenceChange:
        """Remove a closed session; the last one leaves ``last_seen = wall``."""
        before, private_before = self.public(user), self.private(user)
        entry = self._users.get(user)
        if entry is not None:
            entry.sessions.pop(session, None)
        return self._change(user, before, private_before, wall)

    def sessions_of(self, user: UserId) -> list[SessionId]:
        """The sessions the user's presence is made of."""
        entry = self._users.get(user)
        return sorted(entry.sessions) if entry is not None else []

    def private(self, user: UserId) -> UserPresence:
        """The user's true presence (what its own devices see)."""
        return self._view(user, public=False)

    def public(self, user: UserId) -> UserPresence:
        """What everyone else sees: invisible users appear offline."""
        return self._view(user, public=True)

    def _view(self, user: UserId, *, public: bool) -> UserPresence:
        entry = self._users.get(user)
        if entry is None:
            return UserPresence(user, False, OFFLINE, 0, None, None)
        devices = [(d.status, d.text, d.seq) for d in entry.sessions.values()]
        return derive_view(user, devices, entry.last_seen, public=public)

    def sessions(self, user: UserId) -> list[SessionId]:
        entry = self._users.get(user)
        return list(entry.sessions) if entry else []

    def online_users(self) -> list[UserId]:
        return [u for u, e in self._users.items() if e.sessions]

    def online_page(self, after: UserId | None, limit: int) -> list[UserId]:
        """Users with a session (invisible ones too), sorted, after ``after``, at most
        ``limit``: O(users known) per page."""
        return heapq.nsmallest(
            max(0, limit),
            (u for u, e in self._users.items() if e.sessions and (after is None or u > after)),
        )

    def online_count(self) -> int:
        return sum(1 for e in self._users.values() if e.sessions)

    def _change(
        self, user: UserId, before: UserPresence, private_before: UserPresence, wall: float
    ) -> PresenceChange:
        after = self.public(user)
        entry = self._users.get(user)
        seq = next_presence_seq(entry.changes if entry is not None else 0, wall)
        if entry is not None:
            entry.changes = seq
        if entry is not None and before.online and not after.online:
            entry.last_seen = wall
            after = self.public(user)
        if entry is not None and not entry.sessions and entry.last_seen is None:
            # Never seen online by anyone (e.g. invisible the whole time): forget it.
            del self._users[user]
        return PresenceChange(before, after, private_before, self.private(user), seq)
