"""A typed async client of the admin HTTP API, for the app's backend.

::

    async with ApiClient("http://127.0.0.1:7401", key="admin:...secret...") as api:
        sent = await api.publish("lobby", "maintenance at 10:00")
        await api.kick("mallory", message="spam")
        async for member in api.iter_members("lobby"):
            print(member.user, member.joined_at)

Every method returns the response body as a :mod:`presenced.api.models` Struct; a 4xx or 5xx
raises :class:`ApiError` with the status, code, message and field the server sent. One
client keeps one connection pool: make one per process and close it (or use ``async
with``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
import msgspec

from presenced.api.models import (
    Body,
    CleanupReport,
    Count,
    DeletedRoom,
    DisconnectRequest,
    EditRequest,
    ErrorReply,
    HealthReply,
    HistoryReply,
    KickRequest,
    MemberInfo,
    MemberList,
    MessageAmended,
    NodeList,
    PresenceDetail,
    PresenceList,
    PresenceQuery,
    PublishReply,
    PublishRequest,
    RoomDetail,
    RoomInfo,
    RoomList,
    RoomRemoveRequest,
    SessionInfo,
    SessionList,
    Stats,
    SubscribeReply,
    SubscribeRequest,
    Targeted,
    UserList,
)

__all__ = ["ApiClient", "ApiError"]

T = TypeVar("T")

_encode = msgspec.json.Encoder().encode


class ApiError(Exception):
    """The server refused or failed a request."""

    def __init__(self, status: int, code: str, message: str, field: str | None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.field = field


def _p(segment: str) -> str:
    return quote(segment, safe="")


class ApiClient:
    """The admin API of one presenced node (on a cluster, any node answers for all)."""

    def __init__(self, url: str, key: str | None = None, *, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._http = aiohttp.ClientSession(
            headers=headers, timeout=aiohttp.ClientTimeout(total=timeout)
        )

    async def __aenter__(self) -> ApiClient:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.close()

    async def _call(
        self,
        method: str,
        path: str,
        kind: type[T],
        *,
        body: msgspec.Struct | None = None,
        query: dict[str, Any] | None = None,
        ok: tuple[int, ...] = (200, 201),
    ) -> T:
        params = {
            k: str(v).lower() if isinstance(v, bool) else str(v)
            for k, v in (query or {}).items()
            if v is not None
        }
        data = _encode(body) if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else None
        async with self._http.request(
            method, self.url + path, params=params, data=data, headers=headers
        ) as response:
            raw = await response.read()
            if response.status not in ok:
                raise _error(response.status, raw)
        return msgspec.json.decode(raw, type=kind)

    # --- node ------------------------------------------------------------------------------

    async def health(self) -> HealthReply:
        return await self._call("GET", "/health", HealthReply)

    async def ready(self) -> HealthReply:
        """Readiness; a node that is not ready answers 503 with the same body."""
        return await self._call("GET", "/ready", HealthReply, ok=(200, 503))

    # --- presence --------------------------------------------------------------------------

    async def presence(self, user: str) -> PresenceDetail:
        return await self._call("GET", f"/v1/presence/{_p(user)}", PresenceDetail)

    async def presence_of(self, users: list[str]) -> PresenceList:
        return await self._call(
            "POST", "/v1/presence", PresenceList, body=PresenceQuery(users=users)
        )

    # --- sessions and subscriptions --------------------------------------------------------

    async def sessions(
        self, user: str, *, cursor: str | None = None, limit: int | None = None
    ) -> SessionList:
        return await self._call(
            "GET",
            f"/v1/users/{_p(user)}/sessions",
            SessionList,
            query={"cursor": cursor, "limit": limit},
        )

    async def session(self, session_id: str) -> SessionInfo:
        return await self._call("GET", f"/v1/sessions/{_p(session_id)}", SessionInfo)

    async def subscriptions(
        self, user: str, *, cursor: str | None = None, limit: int | None = None
    ) -> UserList:
        return await self._call(
            "GET",
            f"/v1/users/{_p(user)}/subscriptions",
            UserList,
            query={"cursor": cursor, "limit": limit},
        )

    async def subscribers(
        self, user: str, *, cursor: str | None = None, limit: int | None = None
    ) -> UserList:
        return await self._call(
            "GET",
            f"/v1/users/{_p(user)}/subscribers",
            UserList,
            query={"cursor": cursor, "limit": limit},
        )

    async def subscribe(self, user: str, users: list[str]) -> SubscribeReply:
        return await self._call(
            "POST",
            f"/v1/users/{_p(user)}/subscribe",
            SubscribeReply,
            body=SubscribeRequest(users=users),
        )

    async def unsubscribe(self, user: str, users: list[str]) -> SubscribeReply:
        return await self._call(
            "POST",
            f"/v1/users/{_p(user)}/unsubscribe",
            SubscribeReply,
            body=SubscribeRequest(users=users),
        )

    # --- rooms -----------------------------------------------------------------------------

    async def rooms(
        self, prefix: str = "", *, cursor: str | None = None, limit: int | None = None
    ) -> RoomList:
        return await self._call(
            "GET",
            "/v1/rooms",
            RoomList,
            query={"prefix": prefix or None, "cursor": cursor, "limit": limit},
        )

    async def iter_rooms(self, prefix: str = "", *, page: int = 1000) -> AsyncIterator[RoomInfo]:
        """Every room, page by page."""
        cursor: str | None = None
        while True:
            listed = await self.rooms(prefix, cursor=cursor, limit=page)
            for room in listed.rooms:
                yield room
            if listed.next_cursor is None:
                return
            cursor = listed.next_cursor

    async def room(self, room: str) -> RoomDetail:
        return await self._call("GET", f"/v1/rooms/{_p(room)}", RoomDetail)

    async def count(self, room: str) -> Count:
        return await self._call("GET", f"/v1/rooms/{_p(room)}/count", Count)

    async def members(
        self,
        room: str,
        *,
        cursor: str | None = None,
        limit: int | None = None,
        hidden: bool = False,
    ) -> MemberList:
        return await self._call(
            "GET",
            f"/v1/rooms/{_p(room)}/members",
            MemberList,
            query={"cursor": cursor, "limit": limit, "hidden": hidden or None},
        )

    async def iter_members(
        self, room: str, *, page: int = 1000, hidden: bool = False
    ) -> AsyncIterator[MemberInfo]:
        """Every member of a room, page by page."""
        cursor: str | None = None
        while True:
            listed = await self.members(room, cursor=cursor, limit=page, hidden=hidden)
            for member in listed.members:
                yield member
            if listed.next_cursor is None:
                return
            cursor = listed.next_cursor

    async def delete_room(self, room: str) -> DeletedRoom:
        return await self._call("DELETE", f"/v1/rooms/{_p(room)}", DeletedRoom)

    # --- messages --------------------------------------------------------------------------

    async def publish(
        self,
        room: str,
        body: Body,
        *,
        user: str | None = None,
        idempotency_key: str | None = None,
    ) -> PublishReply:
        return await self._call(
            "POST",
            f"/v1/rooms/{_p(room)}/messages",
            PublishReply,
            body=PublishRequest(body=body, user=user, idempotency_key=idempotency_key),
        )

    async def edit(self, room: str, message_id: str, body: Body) -> MessageAmended:
        return await self._call(
            "PATCH",
            f"/v1/rooms/{_p(room)}/messages/{_p(message_id)}",
            MessageAmended,
            body=EditRequest(body=body),
        )

    async def delete_message(self, room: str, message_id: str) -> MessageAmended:
        return await self._call(
            "DELETE", f"/v1/rooms/{_p(room)}/messages/{_p(message_id)}", MessageAmended
        )

    async def history(
        self, room: str, *, limit: int | None = None, before: int | None = None
    ) -> HistoryReply:
        return await self._call(
            "GET",
            f"/v1/rooms/{_p(room)}/messages",
            HistoryReply,
            query={"limit": limit, "before": before},
        )

    # --- moderation ------------------------------------------------------------------------

    async def kick(
        self, user: str, *, session: str | None = None, message: str = "removed by the server"
    ) -> Targeted:
        return await self._call(
            "POST",
            f"/v1/users/{_p(user)}/kick",
            Targeted,
            body=KickRequest(session=session, message=message),
        )

    async def remove_from_room(
        self,
        room: str,
        user: str,
        *,
        session: str | None = None,
        message: str = "removed from the room",
    ) -> Targeted:
        return await self._call(
            "POST",
            f"/v1/rooms/{_p(room)}/kick",
            Targeted,
            body=RoomRemoveRequest(user=user, session=session, message=message),
        )

    async def disconnect(self, user: str, *, session: str | None = None) -> Targeted:
        return await self._call(
            "POST",
            f"/v1/users/{_p(user)}/disconnect",
            Targeted,
            body=DisconnectRequest(session=session),
        )

    async def cleanup(self) -> CleanupReport:
        return await self._call("POST", "/v1/cleanup", CleanupReport)

    # --- cluster ---------------------------------------------------------------------------

    async def nodes(self) -> NodeList:
        return await self._call("GET", "/v1/nodes", NodeList)

    async def stats(self) -> Stats:
        return await self._call("GET", "/v1/stats", Stats)


def _error(status: int, raw: bytes) -> ApiError:
    try:
        detail = msgspec.json.decode(raw, type=ErrorReply).error
    except (msgspec.ValidationError, msgspec.DecodeError):
        return ApiError(status, "HTTP_ERROR", raw[:200].decode(errors="replace"), None)
    return ApiError(status, detail.code, detail.message, detail.field)
