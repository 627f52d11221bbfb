"""Room member lists and the version rule, pure: what to apply, skip, or re-snapshot.

docs/protocol.md, "Rooms and room versions": a client keeps the last version per room and,
for each ``member.joined`` / ``member.left`` / ``member.updated`` (alone or inside a
``room.batch``):

- ``version == last + 1``: apply it, ``last = version``;
- ``version <= last``: already reflected (e.g. in the snapshot just received): skip it;
- ``version > last + 1``: a gap: send ``room.members`` and replace the list with the reply.

:class:`MemberViews` keeps, per room this session is in, the member list that rule produces,
seeded by ``room.joined`` and replaced by ``room.members`` snapshots; it touches no socket.
While a snapshot is due (after a gap, a join sent, a reconnect) the room's member events are
held, then applied by the rule once the snapshot is in. The shell sends the ``room.members``
requests it asks for (:meth:`MemberViews.take_requests`).

``room.summary`` (a room over the server's ``room_summary_above``) sets the count only: the
names are not sent one by one then, so the version is left where the list is; when member
events resume, the first one is a gap and brings a fresh snapshot.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import ClassVar

from presenced.protocol.messages import (
    Member,
    MemberJoined,
    MemberLeft,
    MemberUpdated,
    RoomJoined,
    RoomMembersReply,
    RoomMetaUpdated,
    RoomSummary,
    ServerMessage,
)

__all__ = ["MemberEvent", "MemberList", "MemberViews", "MembersResynced"]

MemberEvent = MemberJoined | MemberLeft | MemberUpdated


@dataclass(frozen=True, slots=True)
class MemberList:
    """A room's visible members as this client knows them, at ``version``.

    ``members`` maps user id to :class:`~presenced.protocol.messages.Member` (status,
    devices, text, meta, ``joined_at``: when the user's first session joined, Unix seconds,
    None when the server did not say). ``member.updated`` carries no join time: a member
    keeps the one its ``member.joined`` or snapshot gave. ``count`` is ``len(members)``, or
    the newer count of a ``room.summary``. ``synced`` is false while a snapshot is due (a
    version gap was seen, or the connection was lost): the list may be behind until it
    arrives.
    """

    room: str
    version: int
    members: Mapping[str, Member]
    count: int
    synced: bool


@dataclass(frozen=True, slots=True)
class MembersResynced:
    """A snapshot replaced a room's member list and it differs from what the events built
    (members were missed: a version gap, a reconnect). Redraw the room from ``members``."""

    type: ClassVar[str] = "members_resynced"
    room: str
    version: int
    members: tuple[Member, ...]


@dataclass(slots=True)
class _View:
    version: int | None = None  # None: no snapshot yet (a join is on its way)
    members: dict[str, Member] = field(default_factory=dict)
    count: int = 0
    count_version: int = -1
    held: list[MemberEvent] | None = None  # not None while a snapshot is due


@dataclass(slots=True)
class MemberViews:
    """Per room, the member list and its version; the snapshots to request."""

    views: dict[str, _View] = field(default_factory=dict)
    due: set[str] = field(default_factory=set)

    def get(self, room: str) -> MemberList | None:
        """The member list of ``room``, or None before its first snapshot."""
        view = self.views.get(room)
        if view is None or view.version is None:
            return None
        return MemberList(
            room=room,
            version=view.version,
            members=MappingProxyType(dict(view.members)),
            count=view.count,
            synced=view.held is None,
        )

    def expect(self, room: str) -> None:
        """A snapshot of ``room`` is on its way (a join, a reconnect): hold its events."""
        view = self.views.setdefault(room, _View())
        if view.held is None:
            view.held = []

    def refresh(self, room: str) -> None:
        """Ask for a snapshot of ``room`` (after a resume: member events were lost)."""
        self.expect(room)
        self.due.add(room)

    def take_requests(self) -> list[str]:
        """The rooms to send ``room.members`` for now."""
        rooms = sorted(self.due)
        self.due.clear()
        return rooms

    def abandon(self, room: str) -> None:
        """The join or snapshot request for ``room`` failed: stop holding its events (they
        are dropped; the next event past the list's version is a gap and asks again)."""
        view = self.views.get(room)
        if view is None:
            return
        if view.version is None:
            del self.views[room]
        else:
            view.held = None
        self.due.discard(room)

    def forget(self, room: str) -> None:
        """The session left ``room``."""
        self.views.pop(room, None)
        self.due.discard(room)

    def clear(self) -> None:
        self.views.clear()
        self.due.clear()

    def connection_lost(self) -> None:
        """Member events are not recovered: every list waits for a snapshot (the requests
        are for the next welcome to decide: :meth:`refresh` or a re-join's ``room.joined``)."""
        self.due.clear()
        for view in self.views.values():
            view.held = []

    # --- what arrives --------------------------------------------------------------------------

    def receive(self, message: ServerMessage) -> list[ServerMessage | MembersResynced]:
        """An unsolicited server message arrived: what to surface now, in order. Member
        events of a tracked room go through the version rule; everything else passes."""
        if isinstance(message, MemberJoined | MemberLeft | MemberUpdated):
            out: list[ServerMessage | MembersResynced] = []
            self._event(message, out)
            return out
        if isinstance(message, RoomSummary):
            view = self.views.get(message.room)
            if view is not None and message.version >= view.count_version:
                view.count, view.count_version = message.count, message.version
        return [message]

    def reply(
        self, message: ServerMessage, me: str | None
    ) -> list[ServerMessage | MembersResynced]:
        """A reply to one of our requests arrived: ``room.joined`` and ``room.members`` are
        snapshots; ``room.meta`` moves this user's meta and the version (the requester gets
        no ``member.updated`` for it). Returns what to surface."""
        if isinstance(message, RoomJoined | RoomMembersReply):
            return self._snapshot(message.room, message.version, message.members)
        if isinstance(message, RoomMetaUpdated) and me is not None:
            self._own_meta(message, me)
        return []

    # --- the rule ------------------------------------------------------------------------------

    def _event(self, event: MemberEvent, out: list[ServerMessage | MembersResynced]) -> None:
        view = self.views.get(event.room)
        if view is None:
            out.append(event)  # a room we do not track (not joined through this client)
            return
        if view.held is not None:
            view.held.append(event)
            return
        assert view.version is not None  # a view without a snapshot always holds
        if event.version <= view.version:
            return  # already in the list
        if event.version > view.version + 1:
            view.held = [event]
            self.due.add(event.room)
            return
        _apply(view, event)
        out.append(event)

    def _snapshot(
        self, room: str, version: int, members: list[Member]
    ) -> list[ServerMessage | MembersResynced]:
        view = self.views.get(room)
        if view is None:
            return []  # room.members of a room this session is not in
        if view.held is None and view.version is not None and version < view.version:
            return []  # older than what the events already built
        # (While a snapshot is due any snapshot is taken: after a server restart with the
        # memory store the versions start again from 0.)
        first = view.version is None
        before = view.members
        view.members = {m.user: m for m in members}
        view.version = version
        view.count, view.count_version = len(view.members), version
        held, view.held = view.held or [], None
        self.due.discard(room)
        out: list[ServerMessage | MembersResynced] = []
        if not first and view.members != before:
            out.append(MembersResynced(room=room, version=version, members=tuple(members)))
        for event in held:
            self._event(event, out)
        return out

    def _own_meta(self, reply: RoomMetaUpdated, me: str) -> None:
        view = self.views.get(reply.room)
        if view is None or view.held is not None or view.version is None:
            return  # the snapshot due covers it (or a later gap does)
        if reply.version <= view.version:
            return
        if reply.version > view.version + 1:
            view.held = []
            self.due.add(reply.room)
            return
        view.version = reply.version
        own = view.members.get(me)
        if own is not None:
            view.members[me] = Member(
                user=me,
                status=own.status,
                devices=own.devices,
                text=own.text,
                meta=reply.meta,
                joined_at=own.joined_at,
            )
        view.count, view.count_version = len(view.members), view.version


def _apply(view: _View, event: MemberEvent) -> None:
    if isinstance(event, MemberLeft):
        view.members.pop(event.user, None)
    else:
        if isinstance(event, MemberJoined):
            joined_at = event.joined_at
        else:  # member.updated has none: the member keeps its own
            known = view.members.get(event.user)
            joined_at = known.joined_at if known is not None else None
        view.members[event.user] = Member(
            user=event.user,
            status=event.status,
            devices=event.devices,
            text=event.text,
            meta=event.meta,
            joined_at=joined_at,
        )
    view.version = event.version
    view.count, view.count_version = len(view.members), event.version
