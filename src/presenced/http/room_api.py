"""Room endpoints: the rooms (by prefix), one room, its members and count, deleting it."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from presenced.api.models import (
    Count,
    Cursor,
    DeletedRoom,
    Limit,
    MemberInfo,
    MemberList,
    RoomDetail,
    RoomInfo,
    RoomList,
)
from presenced.http.errors import not_found
from presenced.http.routing import DEFAULT_LIMIT, Call, Route, decode_cursor, page
from presenced.typing import RoomId, UserId

__all__ = ["ROUTES"]


class RoomsQuery(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    prefix: Annotated[str, Meta(max_length=256)] = ""
    cursor: Cursor | None = None
    limit: Limit = DEFAULT_LIMIT


class MembersQuery(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    cursor: Cursor | None = None
    limit: Limit = DEFAULT_LIMIT
    hidden: bool = False
    """Include members nobody else sees (invisible users)."""


async def list_rooms(call: Call[RoomsQuery, None]) -> RoomList:
    q = call.query
    after = decode_cursor(q.cursor)
    found = await call.node.backplane.rooms.rooms(
        q.prefix, RoomId(after) if after else None, q.limit + 1
    )
    rooms = [RoomInfo(room=r.room, members=r.members, version=r.version) for r in found]
    return RoomList(rooms=rooms[: q.limit], next_cursor=page([r.room for r in rooms], q.limit))


async def get_room(call: Call[None, None]) -> RoomDetail:
    room = RoomId(call.path["room"])
    backplane = call.node.backplane
    members, version = await backplane.rooms.count(room)
    epoch, offset = await backplane.messages.position(room)
    typing = [str(u) for u in await backplane.typing.typing(room)]
    return RoomDetail(
        room=room, members=members, version=version, typing=typing, epoch=epoch, offset=offset
    )


async def count(call: Call[None, None]) -> Count:
    room = RoomId(call.path["room"])
    members, version = await call.node.backplane.rooms.count(room)
    return Count(room=room, members=members, version=version)


async def list_members(call: Call[MembersQuery, None]) -> MemberList:
    q = call.query
    room = RoomId(call.path["room"])
    after = decode_cursor(q.cursor)
    backplane = call.node.backplane
    chosen: list[MemberInfo] = []
    after_user = UserId(after) if after else None
    while True:  # hidden members are skipped unless asked for: read on to fill the page
        version, found = await backplane.rooms.members(room, after_user, q.limit + 1)
        batch = [m for m in found if q.hidden or not m.hidden]
        presence = await backplane.presence.get_many([m.user for m in batch])
        for m, p in zip(batch, presence, strict=True):
            chosen.append(
                MemberInfo(
                    user=m.user,
                    devices=len(m.sessions),
                    sessions=list(m.sessions),
                    joined_at=m.joined_at,
                    hidden=m.hidden,
                    status=p.status,
                    text=p.text,
                    meta=m.meta,
                )
            )
        if len(chosen) > q.limit or len(found) <= q.limit:
            break
        after_user = found[-1].user
    next_cursor = page([m.user for m in chosen], q.limit)
    members = chosen[: q.limit]
    return MemberList(room=room, version=version, members=members, next_cursor=next_cursor)


async def delete_room(call: Call[None, None]) -> DeletedRoom:
    room = RoomId(call.path["room"])
    _, offset = await call.node.backplane.messages.position(room)
    deletion = await call.node.lifecycle.delete_room(room)
    if not deletion.members and offset == 0:  # neither members nor history: no such room
        raise not_found(f"no room {room!r}", "path.room")
    return DeletedRoom(room=room, version=deletion.version, members=len(deletion.members))


ROUTES: list[Route] = [
    Route(
        "GET",
        "/v1/rooms",
        list_rooms,
        "read",
        "Rooms with members, by id (optionally those starting with a prefix)",
        RoomList,
        "rooms",
        query=RoomsQuery,
        description="Sorted by room id. Each page reads every room id of the store (there is "
        "no global room index: see docs/api.md), so page with the largest limit you can use.",
    ),
    Route("GET", "/v1/rooms/{room}", get_room, "read", "One room", RoomDetail, "rooms"),
    Route(
        "GET",
        "/v1/rooms/{room}/count",
        count,
        "read",
        "A room's visible member count and version (O(1))",
        Count,
        "rooms",
    ),
    Route(
        "GET",
        "/v1/rooms/{room}/members",
        list_members,
        "read",
        "A room's members, by user id, each with its join time",
        MemberList,
        "rooms",
        query=MembersQuery,
    ),
    Route(
        "DELETE",
        "/v1/rooms/{room}",
        delete_room,
        "admin",
        "Delete a room: its members get room.deleted and leave it, its history goes",
        DeletedRoom,
        "rooms",
        errors=(404,),
    ),
]
