"""Turning store transitions into the events rooms and watchers see, published once.

A :class:`RoomChange` becomes exactly one member.joined / member.left / member.updated on the
room channel; a :class:`PresenceChange` becomes one ``presence`` event for watchers, and for
each of the user's rooms a hide (member.left, reason offline), reveal (member.joined) or
update, so invisibility and status changes reach rooms with the room version.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from presenced.presence.roster import ChangeKind, RoomChange, RoomSnapshot
from presenced.presence.status import PresenceChange, UserPresence
from presenced.protocol.codec import encode
from presenced.protocol.codes import LeaveReason
from presenced.protocol.messages import Member, MemberJoined, MemberLeft, MemberUpdated, Presence
from presenced.server.fanout import presence_channel, room_channel
from presenced.store.base import Backplane
from presenced.typing import RoomId, UserId

__all__ = ["members", "presence_changed", "presence_message", "presence_of", "publish_change"]


def presence_message(view: UserPresence) -> Presence:
    return Presence(
        user=view.user,
        online=view.online,
        status=view.status,
        devices=view.devices,
        text=view.text,
        last_seen=view.last_seen,
    )


async def presence_of(backplane: Backplane, users: Iterable[UserId]) -> list[Presence]:
    return [presence_message(p) for p in await backplane.presence.get_many(users)]


async def members(backplane: Backplane, snapshot: RoomSnapshot) -> list[Member]:
    """Snapshot entries with each user's public status."""
    views = await backplane.presence.get_many(m.user for m in snapshot.members)
    return [
        Member(user=m.user, status=v.status, devices=m.devices, text=v.text, meta=m.meta)
        for m, v in zip(snapshot.members, views, strict=True)
    ]


async def publish_change(
    backplane: Backplane,
    change: RoomChange,
    *,
    reason: LeaveReason = LeaveReason.LEFT,
    origin: str | None,
) -> None:
    """Turn a room transition into its member.* event and publish it once."""
    kind = change.kind
    if kind is ChangeKind.NONE:
        return
    event: Any
    if kind is ChangeKind.LEFT:
        event = MemberLeft(
            room=change.room, version=change.version, user=change.user, reason=reason.value
        )
    else:
        (view,) = await backplane.presence.get_many([change.user])
        cls = MemberJoined if kind is ChangeKind.JOINED else MemberUpdated
        event = cls(
            room=change.room,
            version=change.version,
            user=change.user,
            status=view.status,
            devices=change.devices,
            text=view.text,
            meta=change.meta,
        )
    await backplane.broker.publish(room_channel(change.room), encode(event), origin)


async def presence_changed(backplane: Backplane, user: UserId, change: PresenceChange) -> None:
    """Watchers get the new presence; rooms get hidden, revealed or updated members."""
    before, after = change.before, change.after
    if before == after:
        return
    await backplane.broker.publish(presence_channel(user), encode(presence_message(after)))
    rooms: set[RoomId] = set()
    for session in await backplane.sessions.of_user(user):
        rooms.update(session.rooms)
    store = backplane.rooms
    for room in sorted(rooms):
        if change.went_offline:  # it still has sessions, so it went invisible
            hidden = await store.set_hidden(room, user, True)
            await publish_change(backplane, hidden, reason=LeaveReason.OFFLINE, origin=None)
        elif change.went_online:
            revealed = await store.set_hidden(room, user, False)
            await publish_change(backplane, revealed, origin=None)
        elif before.status != after.status or before.text != after.text:
            await publish_change(backplane, await store.touch(room, user), origin=None)
