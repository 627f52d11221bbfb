"""Session endpoints: a user's sessions, one session, presence subscriptions both ways, and
subscribing a user's live sessions on its behalf."""

from __future__ import annotations

from presenced.api.models import (
    SessionInfo,
    SessionList,
    SubscribeReply,
    SubscribeRequest,
    UserList,
)
from presenced.http.errors import not_found
from presenced.http.routing import Call, PageQuery, Route, decode_cursor, page
from presenced.presence.session import Session
from presenced.typing import SessionId, UserId

__all__ = ["ROUTES", "session_info"]


def session_info(s: Session) -> SessionInfo:
    return SessionInfo(
        id=s.id,
        user=s.user,
        device=s.device,
        device_info=s.device_info,
        node=s.node,
        state=s.state.value,
        status=s.effective_status,
        text=s.text,
        connected_at=s.connected_at,
        last_active=s.last_active,
        rooms=sorted(s.rooms),
        subscriptions=sorted(s.subscriptions),
    )


def _after(ids: list[str], cursor: str | None) -> list[str]:
    after = decode_cursor(cursor)
    return [i for i in ids if after is None or i > after]


def _users_page(users: set[str], q: PageQuery) -> UserList:
    ids = _after(sorted(users), q.cursor)[: q.limit + 1]
    return UserList(users=ids[: q.limit], next_cursor=page(ids, q.limit))


async def user_sessions(call: Call[PageQuery, None]) -> SessionList:
    q = call.query
    found = await call.node.backplane.sessions.of_user(UserId(call.path["user"]))
    by_id = {s.id: s for s in found if s.present}
    ids = _after(sorted(by_id), q.cursor)[: q.limit + 1]
    return SessionList(
        sessions=[session_info(by_id[SessionId(i)]) for i in ids[: q.limit]],
        next_cursor=page(ids, q.limit),
    )


async def one_session(call: Call[None, None]) -> SessionInfo:
    session_id = SessionId(call.path["session"])
    found = await call.node.backplane.sessions.get(session_id)
    if found is None or not found.present:
        raise not_found(f"no live session {session_id!r}", "path.session")
    return session_info(found)


async def subscriptions(call: Call[PageQuery, None]) -> UserList:
    """Whom the user's live sessions watch (the union over its devices)."""
    q = call.query
    found = await call.node.backplane.sessions.of_user(UserId(call.path["user"]))
    return _users_page({u for s in found if s.present for u in s.subscriptions}, q)


async def subscribers(call: Call[PageQuery, None]) -> UserList:
    """Who watches the user: the users of every live session subscribed to it."""
    q = call.query
    found = await call.node.backplane.sessions.watchers(UserId(call.path["user"]))
    return _users_page({s.user for s in found if s.present}, q)


async def _on_behalf(call: Call[None, SubscribeRequest], add: bool) -> SubscribeReply:
    user = UserId(call.path["user"])
    users = [UserId(u) for u in dict.fromkeys(call.body.users)]
    admin = call.node.admin
    done = await (admin.watch if add else admin.unwatch)(user, users)
    if not done.sessions:
        raise not_found(f"user {user!r} has no live session", "path.user")
    return SubscribeReply(sessions=done.sessions)


async def subscribe(call: Call[None, SubscribeRequest]) -> SubscribeReply:
    return await _on_behalf(call, add=True)


async def unsubscribe(call: Call[None, SubscribeRequest]) -> SubscribeReply:
    return await _on_behalf(call, add=False)


ROUTES: list[Route] = [
    Route(
        "GET",
        "/v1/users/{user}/sessions",
        user_sessions,
        "read",
        "A user's live sessions (connected or in grace), on every node",
        SessionList,
        "sessions",
        query=PageQuery,
    ),
    Route(
        "GET",
        "/v1/sessions/{session}",
        one_session,
        "read",
        "One live session",
        SessionInfo,
        "sessions",
        errors=(404,),
    ),
    Route(
        "GET",
        "/v1/users/{user}/subscriptions",
        subscriptions,
        "read",
        "The users whose presence this user's sessions watch",
        UserList,
        "subscriptions",
        query=PageQuery,
    ),
    Route(
        "GET",
        "/v1/users/{user}/subscribers",
        subscribers,
        "read",
        "The users whose sessions watch this user's presence",
        UserList,
        "subscriptions",
        query=PageQuery,
    ),
    Route(
        "POST",
        "/v1/users/{user}/subscribe",
        subscribe,
        "admin",
        "Make every connected session of the user watch these users' presence",
        SubscribeReply,
        "subscriptions",
        body=SubscribeRequest,
        errors=(404, 409),
        description="Each session gets `presence.subscribed` with their presence now, then "
        "`presence` events, as if it had sent `presence.subscribe` itself. 409 when that "
        "would take a session past max_subscriptions.",
    ),
    Route(
        "POST",
        "/v1/users/{user}/unsubscribe",
        unsubscribe,
        "admin",
        "Make every connected session of the user stop watching these users",
        SubscribeReply,
        "subscriptions",
        body=SubscribeRequest,
        errors=(404,),
    ),
]
