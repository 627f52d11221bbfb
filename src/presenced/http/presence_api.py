"""Presence endpoints: one user (with each session), or many in one call."""

from __future__ import annotations

from presenced.api.models import (
    DevicePresence,
    PresenceDetail,
    PresenceInfo,
    PresenceList,
    PresenceQuery,
)
from presenced.http.routing import Call, Route
from presenced.presence.status import UserPresence
from presenced.typing import UserId

__all__ = ["ROUTES"]


def presence_info(p: UserPresence) -> PresenceInfo:
    return PresenceInfo(
        user=p.user,
        online=p.online,
        status=p.status,
        devices=p.devices,
        text=p.text,
        last_seen=p.last_seen,
    )


async def get_presence(call: Call[None, None]) -> PresenceDetail:
    user = UserId(call.path["user"])
    backplane = call.node.backplane
    public = (await backplane.presence.get_many([user]))[0]
    private = await backplane.presence.get_private(user)
    sessions = await backplane.sessions.of_user(user)
    return PresenceDetail(
        user=public.user,
        online=public.online,
        status=public.status,
        devices=public.devices,
        text=public.text,
        last_seen=public.last_seen,
        private_status=private.status,
        sessions=[
            DevicePresence(
                session=s.id,
                device=s.device,
                status=s.effective_status,
                state=s.state.value,
                node=s.node,
            )
            for s in sorted(sessions, key=lambda s: s.id)
        ],
    )


async def query_presence(call: Call[None, PresenceQuery]) -> PresenceList:
    users = list(dict.fromkeys(UserId(u) for u in call.body.users))
    found = await call.node.backplane.presence.get_many(users)
    return PresenceList(users=[presence_info(p) for p in found])


ROUTES: list[Route] = [
    Route(
        "GET",
        "/v1/presence/{user}",
        get_presence,
        "read",
        "A user's presence, with each live session",
        PresenceDetail,
        "presence",
        description="What other users see (status, text, last seen, device count; an "
        "invisible user appears offline), plus the user's real status and every session, "
        "connected or in grace, on any node.",
    ),
    Route(
        "POST",
        "/v1/presence",
        query_presence,
        "read",
        "The presence of many users in one call",
        PresenceList,
        "presence",
        body=PresenceQuery,
        description="Up to 1000 users, answered in the order asked (duplicates once).",
    ),
]
