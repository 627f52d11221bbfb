"""The store Protocols: what a node needs from shared state, and nothing more.

Every operation that decides a transition others must see exactly once (a user's first or
last session in a room, a user going online or offline, a member hidden or revealed) is one
call that applies the change and returns the transition, so a backend can make it atomic (the
memory store trivially, Redis with one Lua script). Callers never read, decide and write back.

All methods are coroutines so a networked backend fits; the memory backend never suspends.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from presenced.presence.history import AppendResult, Body, MessageState, Recovery, StreamEvent
from presenced.presence.roster import (
    MemberRecord,
    RoomChange,
    RoomDeletion,
    RoomInfo,
    RoomSnapshot,
)
from presenced.presence.session import Session
from presenced.presence.status import PresenceChange, UserPresence
from presenced.typing import RoomId, SessionId, UserId

__all__ = [
    "Backplane",
    "Broker",
    "Exported",
    "MemberRecord",
    "MessageHandler",
    "MessageStore",
    "NodeRecord",
    "NodeStore",
    "PresenceStore",
    "RoomInfo",
    "RoomStore",
    "SessionStore",
    "TypingChange",
    "TypingStore",
    "next_typing_seq",
]


Exported = Mapping[str, Mapping[str, Any]] | None
"""The data of the events a store step reports that the caller knows beforehand, by event
type (events/model.py): written by a store with an outbox, ignored by the others."""


class SessionStore(Protocol):
    """Session records, so a session can be found by its resume token (on any node).

    Each record is owned by one node (``Session.node``). Only the owner writes it: a ``put``
    from a node that is no longer the owner is refused, so a node that lost a session (it
    resumed elsewhere, or the node was reaped) can never write it back. Ownership moves only
    with :meth:`take`.
    """

    async def put(self, session: Session) -> bool:
        """Insert, or replace the record if ``session.node`` owns it; False if another node
        does (a copy is kept: later changes need another put)."""

    async def get(self, session_id: SessionId) -> Session | None: ...

    async def by_resume_token(self, token: str) -> Session | None: ...

    async def take(self, session_id: SessionId, from_node: str, to_node: str) -> bool:
        """Move ownership if ``from_node`` still owns the record; True for exactly one taker."""

    async def delete(self, session_id: SessionId, owner: str | None = None) -> bool:
        """Remove the record (only if ``owner`` owns it, when given); True if removed."""

    async def of_user(self, user: UserId) -> list[Session]:
        """Every live session of ``user``, on every node."""

    async def of_node(self, node: str) -> list[Session]:
        """Every session a node owns (to reap them when it dies)."""

    async def count(self) -> int:
        """How many session records exist, on every node, whatever their state (a CLOSED
        one lives only while its end is written). Redis: a SCAN of the records themselves
        (on every Cluster primary), not the node indexes, which keep a dead node's entries
        until it is reaped and stale ones until read; a record that expired (its node died
        and nobody took it) is not counted. Cost: a pass over the keyspace."""

    async def watchers(self, user: UserId) -> list[Session]:
        """Every present session (ACTIVE or in GRACE, on any node) whose ``subscriptions``
        hold ``user``: who watches this user's presence. Sorted by session id.

        The index behind it is kept by :meth:`put` (and :meth:`delete`); on Redis it is one
        set per watched user whose entries readers check against each record (a record that
        is gone, closed or no longer subscribed is dropped from the set as it is met), so a
        call costs one read per session listed."""


class RoomStore(Protocol):
    """Room membership per user, backed by sessions; each call returns its transition."""

    async def add(
        self,
        room: RoomId,
        user: UserId,
        session: SessionId,
        meta: dict[str, Any] | None,
        hidden: bool,
        wall: float,
        *,
        quiet: bool = False,
    ) -> RoomChange:
        """Put ``session`` in ``room``; ``meta`` (when not None) replaces the user's metadata.
        ``quiet``: the change is reported to no one (a store with an outbox writes no event).
        ``wall`` is the caller's wall-clock time: the member's ``joined_at`` when this is its
        first session there (kept while it stays a member)."""

    async def remove(
        self, room: RoomId, user: UserId, session: SessionId, reason: str = "left"
    ) -> RoomChange:
        """Take ``session`` out of ``room``; ``reason`` is what the exported member.left says
        (a store with an outbox writes it in the same step)."""
        ...

    async def set_meta(self, room: RoomId, user: UserId, meta: dict[str, Any]) -> RoomChange: ...

    async def touch(self, room: RoomId, user: UserId) -> RoomChange:
        """The member's status changed: UPDATED with a new room version (NONE if hidden)."""

    async def set_hidden(self, room: RoomId, user: UserId, hidden: bool) -> RoomChange: ...

    async def snapshot(self, room: RoomId) -> RoomSnapshot: ...

    async def count(self, room: RoomId) -> tuple[int, int]:
        """Visible members and the room version, in O(1)."""

    async def delete(self, room: RoomId, reason: str = "deleted") -> RoomDeletion:
        """Remove the room and all its members in one step; the version moves on (a room
        made again later does not start over where a node may still remember it)."""

    # --- admin reads (the HTTP API): not on any hot path -------------------------------------

    async def rooms(self, prefix: str, after: RoomId | None, limit: int) -> list[RoomInfo]:
        """A page of the rooms that have members (a room of hidden members only included),
        in room id order (code points): ids starting with ``prefix`` and greater than
        ``after``, at most ``limit`` (none for ``limit <= 0``). A page shorter than ``limit``
        is the last one.

        Cost: every page looks at every room (memory: the roster; Redis: a SCAN of all room
        member keys, on every Cluster primary, then a sort). There is no global index of
        rooms on purpose: on Cluster it could not be updated atomically with a room's own
        slot, and it would cost every first join and last leave one more write. Pages are
        keyset pages (``after`` = the last room seen): a room made or emptied between pages
        is seen or not, never twice."""

    async def room_count(self) -> int:
        """How many rooms have members; the same scan as :meth:`rooms` (on Redis, counted
        as the scan goes: not one instant)."""

    async def members(
        self, room: RoomId, after: UserId | None, limit: int
    ) -> tuple[int, list[MemberRecord]]:
        """The room's version and a page of its members, hidden ones included (flagged:
        the admin sees them, the caller decides what to show), sorted by user id, greater
        than ``after``, at most ``limit``. The version and the page are read at one instant;
        a page costs a read of the whole room (O(members))."""


class PresenceStore(Protocol):
    """Per-user presence aggregated over sessions; each call returns before/after."""

    async def set(
        self,
        user: UserId,
        session: SessionId,
        status: str,
        text: str | None,
        wall: float,
        exported: Exported = None,
        *,
        quiet: bool = False,
        limit: int | None = None,
    ) -> PresenceChange:
        """Add a session or change its status. A store with an outbox writes the change's
        user.* event in the same step, and ``exported["session.opened"]`` if the session
        is new; ``quiet``: no event at all (a node writing its sessions back). ``limit``:
        a session that is new while the user already has ``limit`` sessions is not added
        (:class:`~presenced.errors.SessionLimitReached`, nothing written), checked in the
        same atomic step, so nodes racing for the last slot cannot both win; a session
        already there is never refused (a status change, a resume, a re-assertion)."""

    async def remove(
        self, user: UserId, session: SessionId, wall: float, exported: Exported = None
    ) -> PresenceChange:
        """Remove a closed session. A store with an outbox writes the change's user.* event
        in the same step and, if the session was there, ``exported["force_leave"]`` (when
        given) and ``exported["session.closed"]``."""

    async def get_many(self, users: Iterable[UserId]) -> list[UserPresence]:
        """What others see of each user (invisible users appear offline)."""

    async def get_private(self, user: UserId) -> UserPresence:
        """What the user's own devices see."""

    async def online(self, after: UserId | None, limit: int) -> list[UserId]:
        """A page of the users with at least one present session (ACTIVE or GRACE), sorted
        by user id (code points), greater than ``after``, at most ``limit``: the admin's
        view, so **invisible users are included** (a caller showing the list to others must
        filter them out with :meth:`get_many`). A page shorter than ``limit`` is the last.

        Cost: every page looks at every user (Redis: a SCAN of all status hashes, on every
        Cluster primary, then a sort); no global index, for the reasons given at
        :meth:`RoomStore.rooms`."""

    async def online_count(self) -> int:
        """How many users have a present session (invisible ones too); the same scan."""

    async def sessions_of(self, user: UserId) -> list[SessionId]:
        """The sessions the user's presence is made of, as the store has them (cleanup
        compares them with the live session records)."""


class MessageStore(Protocol):
    """Each room's event stream (messages, edits, deletes), receipts and read positions.

    ``append`` assigns the offset and dedupes a re-sent temporary id in one step; the stream
    is bounded by the history size and age the backend was built with.
    """

    async def expire(self, wall: float) -> int:
        """Housekeeping at ``wall``: drop history past its age in rooms nobody touches, and
        the streams left empty; how many streams went. (Redis: 0, its keys carry TTLs.)"""

    async def append(
        self,
        room: RoomId,
        user: UserId,
        device: str,
        temp_id: str | None,
        body: Body,
        wall: float,
        message_id: str,
    ) -> AppendResult: ...

    async def message(self, room: RoomId, message_id: str) -> MessageState | None:
        """A kept, undeleted message as it is now."""

    async def amend(
        self, room: RoomId, message_id: str, user: UserId, body: Body | None, wall: float
    ) -> StreamEvent | None:
        """Edit (body given) or delete (None); None when the message is not kept."""

    async def since(self, room: RoomId, epoch: str, offset: int, wall: float) -> Recovery: ...

    async def position(self, room: RoomId) -> tuple[str, int]:
        """The stream's epoch and latest offset."""

    async def last_messages(
        self, room: RoomId, limit: int, before: int | None, wall: float
    ) -> list[MessageState]: ...

    async def mark(self, room: RoomId, user: UserId, kind: str, offset: int) -> tuple[int, int]:
        """Advance the ``delivered`` or ``seen`` position; returns (old, new)."""

    async def read_state(self, room: RoomId, user: UserId) -> tuple[int, int]:
        """(seen-up-to offset, unread messages by others after it)."""

    async def authors_between(self, room: RoomId, after: int, upto: int) -> set[UserId]: ...

    async def drop(self, room: RoomId) -> None:
        """Delete the room's whole stream, positions and receipts (the room was deleted)."""


@dataclass(frozen=True, slots=True)
class TypingChange:
    """A room's typing set after a change, and the change's number in that room.

    ``seq`` is assigned in the same atomic step as the change, so the events of one room's
    changes, published separately and by any node, can be put back in order by receivers:
    the greatest ``seq`` is the newest set. It is ``max(previous + 1, wall in ms)``: strictly
    increasing while the store remembers the previous number, and still increasing (by the
    wall clock) after the store forgot it (the room's typing key expired), so a receiver
    that kept an old number never takes a new change for a stale one.
    """

    users: list[UserId]
    seq: int


def next_typing_seq(previous: int, wall: float) -> int:
    """The number of a room's next typing change (see :class:`TypingChange`)."""
    return max(previous + 1, int(wall * 1000))


class TypingStore(Protocol):
    """Who is typing in each room. Each call returns the change (the new set and its
    number), or None if the set did not change; ``wall`` is the caller's wall-clock time."""

    async def start(self, room: RoomId, user: UserId, wall: float) -> TypingChange | None: ...

    async def stop(
        self, room: RoomId, user: UserId, wall: float, *, expired: bool = False
    ) -> TypingChange | None:
        """Take ``user`` off the room's typing list (``expired``: it stopped renewing, as the
        exported typing.stopped says)."""

    async def typing(self, room: RoomId) -> list[UserId]: ...


@dataclass(frozen=True, slots=True)
class NodeRecord:
    """A listed node as the admin sees it: whether its lease is held, and the last record it
    reported (:meth:`NodeStore.report`; ``{}`` when none is kept)."""

    node: str
    alive: bool
    info: dict[str, Any]


class NodeStore(Protocol):
    """Node leases: how the nodes sharing a store learn that one of them died.

    A node renews its lease every ``lease_interval``; a lease not renewed within its ttl
    expires (the store's own clock decides), and the node is then *expired*: the first
    survivor to :meth:`claim` it reaps its sessions into grace.
    """

    async def renew(self, node: str, ttl: float) -> bool:
        """Create or extend the node's lease by ``ttl`` seconds, and list the node. False when
        the lease was not there any more: the store lost its state (an empty restart), or the
        node stalled past its ttl and may have been reaped; either way it must re-assert."""

    async def drop(self, node: str) -> None:
        """End the node's lease now (clean shutdown): survivors reap it at once."""

    async def expired(self) -> list[str]:
        """Listed nodes whose lease is gone."""

    async def claim(self, node: str) -> bool:
        """Unlist an expired node; True for exactly one caller, who reaps it."""

    async def refresh(self, sessions: Iterable[Session], ttl: float) -> None:
        """Push back the failsafe expiry of these sessions and of the rooms and users they
        keep alive, in one batch (a no-op where nothing expires by itself)."""

    async def watch(self, on_expired: Callable[[], None]) -> None:
        """Call ``on_expired`` soon after any lease expires, where the store can tell
        (keyspace notifications); the periodic sweep remains the fallback that always runs."""

    async def close(self) -> None:
        """Stop watching."""

    async def report(self, node: str, info: dict[str, Any], ttl: float) -> None:
        """Publish the node's small health/stats record (JSON-encodable: a bad value is an
        error here, on every backend), kept ``ttl`` seconds unless reported again; the node
        reports each lease tick. Stored by value."""

    async def nodes(self) -> list[NodeRecord]:
        """Every listed node (one that renewed a lease and was not claimed since), by id:
        alive while its lease is held, with its last report while that is kept. A claimed
        (reaped) node's report goes with it."""


MessageHandler = Callable[[bytes, str | None], None]
"""Called with an event's encoded bytes and the session id that caused it (to skip)."""


class Broker(Protocol):
    """Fan-out of encoded events by channel, between nodes (or within one).

    ``inline`` brokers deliver during ``publish``, in the order of the calls (the memory
    broker): a node needs no reordering behind them. ``connected`` is False while a link is
    down (what is published meanwhile is lost to this node). ``on_resubscribed``, when set,
    is called after a lost link came back and its subscriptions are confirmed again, so the
    node can fill what it missed from the store.
    """

    inline: bool
    on_resubscribed: Callable[[], None] | None

    @property
    def connected(self) -> bool: ...

    async def publish(self, channel: str, payload: bytes, origin: str | None = None) -> None: ...

    async def subscribe(self, channel: str, handler: MessageHandler) -> None:
        """Deliver the channel's messages to ``handler`` (one handler per channel per node)."""

    async def unsubscribe(self, channel: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Backplane:
    """Everything shared, as one object handed to a node."""

    sessions: SessionStore
    rooms: RoomStore
    presence: PresenceStore
    messages: MessageStore
    typing: TypingStore
    broker: Broker
    nodes: NodeStore
    name: str = "memory"
    closer: Callable[[], Awaitable[None]] | None = None  # releases the backend's connections
    outbox: Any = None
    """The shared event outbox (events/outbox_feed.py Outbox), or None: the memory backend
    exports through the node's own queues."""

    async def close(self) -> None:
        """Release connections (nothing to do for the memory backend)."""
        if self.closer is not None:
            await self.closer()
