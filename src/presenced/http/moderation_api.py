"""Moderation endpoints: kick a user (or one session) from the server or from a room,
disconnect a user everywhere, and clean up now."""

from __future__ import annotations

from presenced.api.models import (
    CleanupReport,
    DisconnectRequest,
    KickRequest,
    RoomRemoveRequest,
    Targeted,
)
from presenced.http.errors import not_found
from presenced.http.routing import Call, Route
from presenced.server.reconcile import reconcile
from presenced.typing import RoomId, SessionId, UserId

__all__ = ["ROUTES"]


def _targeted(sessions: list[str], what: str, field: str) -> Targeted:
    if not sessions:
        raise not_found(what, field)
    return Targeted(sessions=len(sessions), session_ids=sorted(sessions))


async def kick(call: Call[None, KickRequest]) -> Targeted:
    user = UserId(call.path["user"])
    b = call.body
    session = SessionId(b.session) if b.session else None
    done = await call.node.admin.kick(user=user, session=session, message=b.message)
    what = f"session {b.session!r} of user {user!r}" if b.session else f"user {user!r}"
    return _targeted(list(done.session_ids), f"{what} has no live session", "path.user")


async def remove_from_room(call: Call[None, RoomRemoveRequest]) -> Targeted:
    room = RoomId(call.path["room"])
    b = call.body
    session = SessionId(b.session) if b.session else None
    done = await call.node.admin.kick(
        user=UserId(b.user), session=session, room=room, message=b.message
    )
    return _targeted(
        list(done.session_ids), f"user {b.user!r} has no live session in room {room!r}", "body.user"
    )


async def disconnect(call: Call[None, DisconnectRequest]) -> Targeted:
    user = UserId(call.path["user"])
    session = call.body.session
    done = await call.node.admin.disconnect(user, SessionId(session) if session else None)
    what = f"session {session!r} of user {user!r}" if session else f"user {user!r}"
    return _targeted(list(done.session_ids), f"{what} has no live session", "path.user")


async def cleanup(call: Call[None, None]) -> CleanupReport:
    return await reconcile(call.node)


ROUTES: list[Route] = [
    Route(
        "POST",
        "/v1/users/{user}/kick",
        kick,
        "admin",
        "Kick a user (or one of its sessions) from the server",
        Targeted,
        "moderation",
        body=KickRequest,
        errors=(404,),
        description="Each session gets `force_leave` (reason `kicked`, the message) and close "
        "4003, and leaves presence and its rooms at once; a session in grace just ends. The "
        "client does not reconnect by itself.",
    ),
    Route(
        "POST",
        "/v1/rooms/{room}/kick",
        remove_from_room,
        "admin",
        "Remove a user (or one of its sessions) from a room",
        Targeted,
        "moderation",
        body=RoomRemoveRequest,
        errors=(404,),
        description="The session stays connected and gets `room.removed`; the room sees "
        "`member.left` with reason `kicked` when it was the user's last session there.",
    ),
    Route(
        "POST",
        "/v1/users/{user}/disconnect",
        disconnect,
        "admin",
        "End every session of a user, on every node; clients reconnect with new credentials",
        Targeted,
        "moderation",
        body=DisconnectRequest,
        errors=(404,),
        description="The sessions end without grace (rooms see them leave) and the "
        "connections close with 4010: the client reconnects with fresh credentials, no resume "
        "(for example after its permissions changed).",
    ),
    Route(
        "POST",
        "/v1/cleanup",
        cleanup,
        "admin",
        "Reconcile now: reap dead nodes, drop members and presence without a live session",
        CleanupReport,
        "moderation",
        description="What the nodes do by themselves over time (lease sweeps, failsafe "
        "expiry), done at once, returning what was removed.",
    ),
]
