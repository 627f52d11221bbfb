"""Turning store transitions into the events rooms and watchers see, published once.

A :class:`RoomChange` becomes exactly one member.joined / member.left / member.updated on the
room channel; a :class:`PresenceChange` becomes one ``presence`` event for watchers, and for
each of the user's rooms a hide (member.left, reason offline), reveal (member.joined) or
update, so invisibility and status changes reach rooms with the room version.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from presenced.clock import SystemClock
from presenced.events.export import EventExport
from presenced.presence.roster import ChangeKind, RoomChange, RoomSnapshot
from presenced.presence.status import PresenceChange, UserPresence
from presenced.protocol.codec import encode
from presenced.protocol.codes import LeaveReason
from presenced.protocol.messages import (
    Member,
    MemberJoined,
    MemberLeft,
    MemberUpdated,
    Presence,
    RoomSummary,
)
from presenced.server.fanout import presence_channel, room_channel
from presenced.store.base import Backplane
from presenced.typing import RoomId, UserId

__all__ = ["RoomEvents", "presence_message"]


def presence_message(view: UserPresence, seq: int | None = None) -> Presence:
    """The wire form of a presence: with the change's number (an event) or without (a read)."""
    return Presence(
        user=view.user,
        online=view.online,
        status=view.status,
        devices=view.devices,
        text=view.text,
        last_seen=view.last_seen,
        seq=seq,
    )


class RoomEvents:
    """Builds and publishes what rooms and watchers see, over one backplane."""

    __slots__ = ("backplane", "export", "summary_above")

    def __init__(
        self,
        backplane: Backplane,
        summary_above: int | None = None,
        export: EventExport | None = None,
    ) -> None:
        self.backplane = backplane
        self.summary_above = summary_above
        self.export = export or EventExport("", SystemClock())  # no sinks: emits nothing

    async def presence_of(self, users: Iterable[UserId]) -> list[Presence]:
        return [presence_message(p) for p in await self.backplane.presence.get_many(users)]

    async def members(self, snapshot: RoomSnapshot) -> list[Member]:
        """Snapshot entries with each user's public status (and join time, when known)."""
        views = await self.backplane.presence.get_many(m.user for m in snapshot.members)
        return [
            Member(
                user=m.user,
                status=v.status,
                devices=m.devices,
                text=v.text,
                meta=m.meta,
                joined_at=m.joined_at or None,  # 0.0: a record from before the time was kept
            )
            for m, v in zip(snapshot.members, views, strict=True)
        ]

    async def publish_change(
        self,
        change: RoomChange,
        *,
        reason: LeaveReason = LeaveReason.LEFT,
        origin: str | None,
    ) -> None:
        """Turn a room transition into its member.* event and publish it once; in a room larger
        than ``summary_above``, into a ``room.summary`` (count and version) instead. The
        event export gets member.joined/left as the room sees them (a member going invisible
        leaves with reason ``offline``) and room.occupied/vacated, before any await."""
        kind = change.kind
        if self.export.enabled:
            _export_change(self.export, change, reason)
        if kind is ChangeKind.NONE:
            return
        event: Any
        backplane = self.backplane
        summary_above = self.summary_above
        if summary_above is not None:
            count, version = await backplane.rooms.count(change.room)
            if count > summary_above or (kind is ChangeKind.LEFT and count == summary_above):
                # (The leave that brings it back to the limit still says so with a summary.)
                if kind is not ChangeKind.UPDATED:
                    summary = RoomSummary(room=change.room, count=count, version=version)
                    await backplane.broker.publish(
                        room_channel(change.room), encode(summary), origin
                    )
                return
        if kind is ChangeKind.LEFT:
            event = MemberLeft(
                room=change.room, version=change.version, user=change.user, reason=reason.value
            )
        else:
            (view,) = await backplane.presence.get_many([change.user])
            if kind is ChangeKind.JOINED:
                event = MemberJoined(
                    room=change.room,
                    version=change.version,
                    user=change.user,
                    status=view.status,
                    devices=change.devices,
                    text=view.text,
                    meta=change.meta,
                    joined_at=change.joined_at or None,
                )
            else:
                event = MemberUpdated(
                    room=change.room,
                    version=change.version,
                    user=change.user,
                    status=view.status,
                    devices=change.devices,
                    text=view.text,
                    meta=change.meta,
                )
        await backplane.broker.publish(room_channel(change.room), encode(event), origin)

    async def presence_changed(self, user: UserId, change: PresenceChange) -> None:
        """Watchers get the new presence; rooms get hidden, revealed or updated members. The
        event export gets user.online/offline/status from the private views (invisible
        users are online to the backend)."""
        if self.export.enabled:
            _export_presence(self.export, user, change)
        backplane = self.backplane
        before, after = change.before, change.after
        if before == after:
            return
        await backplane.broker.publish(
            presence_channel(user), encode(presence_message(after, change.seq))
        )
        rooms: set[RoomId] = set()
        for session in await backplane.sessions.of_user(user):
            rooms.update(session.rooms)
        store = backplane.rooms
        for room in sorted(rooms):
            if change.went_offline:  # it still has sessions, so it went invisible
                hidden = await store.set_hidden(room, user, True)
                await self.publish_change(hidden, reason=LeaveReason.OFFLINE, origin=None)
            elif change.went_online:
                revealed = await store.set_hidden(room, user, False)
                await self.publish_change(revealed, origin=None)
            elif before.status != after.status or before.text != after.text:
                await self.publish_change(await store.touch(room, user), origin=None)


def _export_change(export: EventExport, change: RoomChange, reason: LeaveReason) -> None:
    room, user = str(change.room), str(change.user)
    if change.occupancy == "occupied":
        export.emit("room.occupied", room=room, user=user)
    if change.kind is ChangeKind.JOINED:
        data = {"devices": change.devices, "meta": change.meta, "joined_at": change.joined_at}
        export.emit("member.joined", room=room, user=user, data=data)
    elif change.kind is ChangeKind.LEFT:
        export.emit("member.left", room=room, user=user, data={"reason": reason.value})
    if change.occupancy == "vacated":
        export.emit("room.vacated", room=room, user=user)


def _export_presence(export: EventExport, user: UserId, change: PresenceChange) -> None:
    before, after = change.private_before, change.private_after
    data: dict[str, Any] = {"status": after.status, "text": after.text, "devices": after.devices}
    if not before.devices and after.devices:
        export.emit("user.online", user=str(user), data=data)
    elif before.devices and not after.devices:
        data = {"last_seen": change.after.last_seen}
        export.emit("user.offline", user=str(user), data=data)
    elif after.devices and (before.status != after.status or before.text != after.text):
        data["previous"] = before.status
        export.emit("user.status", user=str(user), data=data)
