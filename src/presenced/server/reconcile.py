"""Cleanup on demand: make the shared state match the live sessions now.

The nodes converge by themselves over time (lease sweeps reap dead nodes, failsafe expiry
drops what no node refreshes), but a backend may want it done at once, and to know what was
left behind: after a whole-cluster crash, say, room memberships and presence entries can
outlive their sessions' records. :func:`reconcile` reaps every expired node now, then walks
every room's members and takes out each session that has no record (the room sees
``member.left`` with reason ``node_lost`` when it was the user's last session), then does
the same for presence entries. Each removal is the store's own atomic step, so a session
that comes back meanwhile is not harmed: it re-joins as usual.

A CLOSED record is not a ghost's: its session is being ended (the record is written CLOSED
first, removed last), by its owner with the owner's reason, or by the reaper of its dead
owner (the sweep above has just reaped every expired node). Taking it out here would race
the owner and tell the room ``node_lost`` instead. A CLOSED record that outlives its ending
(a store error half way) goes with its failsafe expiry, and what it backed with the next
cleanup after that.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from presenced.api.models import CleanupReport
from presenced.typing import RoomId, SessionId, UserId

if TYPE_CHECKING:
    from presenced.server.node import Node

__all__ = ["reconcile"]

_PAGE = 500


async def reconcile(node: Node) -> CleanupReport:
    """Reap dead nodes and drop memberships and presence that no session record backs."""
    reaped = await node.lease.sweep()
    backplane = node.backplane
    backed: dict[SessionId, bool] = {}

    async def is_backed(session_id: SessionId) -> bool:
        """The session has a record: live, or being ended by its owner or reaper."""
        if session_id not in backed:
            backed[session_id] = await backplane.sessions.get(session_id) is not None
        return backed[session_id]

    members_removed = 0
    after_room: RoomId | None = None
    while True:
        rooms = await backplane.rooms.rooms("", after_room, _PAGE)
        for info in rooms:
            after_user: UserId | None = None
            while True:
                _, members = await backplane.rooms.members(info.room, after_user, _PAGE)
                for member in members:
                    for session_id in member.sessions:
                        if not await is_backed(session_id):
                            await node.lifecycle.remove_orphan(info.room, member.user, session_id)
                            members_removed += 1
                if len(members) < _PAGE:
                    break
                after_user = members[-1].user
        if len(rooms) < _PAGE:
            break
        after_room = rooms[-1].room

    presence_removed = 0
    after: UserId | None = None
    while True:
        users = await backplane.presence.online(after, _PAGE)
        for user in users:
            for session_id in await backplane.presence.sessions_of(user):
                if not await is_backed(session_id):
                    await node.lifecycle.remove_orphan_presence(user, session_id)
                    presence_removed += 1
        if len(users) < _PAGE:
            break
        after = users[-1]

    return CleanupReport(
        nodes_reaped=sorted(reaped),
        sessions_reaped=sum(reaped.values()),
        members_removed=members_removed,
        presence_removed=presence_removed,
    )
