"""Message endpoints: publish to a room (as the system or a user, idempotently), edit,
delete, and read a room's history."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from presenced.api.models import (
    EditRequest,
    HistoryMessage,
    HistoryReply,
    MessageAmended,
    PublishReply,
    PublishRequest,
)
from presenced.http.errors import not_found
from presenced.http.routing import Call, Route
from presenced.typing import RoomId, UserId

__all__ = ["ROUTES"]


class HistoryQuery(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    limit: Annotated[int, Meta(ge=1, le=1000)] = 50
    before: Annotated[int, Meta(ge=1)] | None = None
    """Only messages with an offset below this one (page back through history)."""


async def publish(call: Call[None, PublishRequest]) -> PublishReply:
    room = RoomId(call.path["room"])
    b = call.body
    user = UserId(b.user) if b.user is not None else None
    done = await call.node.admin.publish(room, b.body, user, b.idempotency_key)
    return PublishReply(
        id=done.message_id,
        room=room,
        epoch=done.epoch,
        offset=done.offset,
        duplicate=done.duplicate,
    )


async def edit(call: Call[None, EditRequest]) -> MessageAmended:
    room, message = RoomId(call.path["room"]), call.path["message"]
    done = await call.node.admin.edit(room, message, call.body.body)
    if done is None:
        raise not_found(f"no message {message!r} in room {room!r}", "path.message")
    return MessageAmended(id=message, room=room, epoch=done.epoch, offset=done.offset)


async def delete(call: Call[None, None]) -> MessageAmended:
    room, message = RoomId(call.path["room"]), call.path["message"]
    done = await call.node.admin.delete(room, message)
    if done is None:
        raise not_found(f"no message {message!r} in room {room!r}", "path.message")
    return MessageAmended(id=message, room=room, epoch=done.epoch, offset=done.offset)


async def history(call: Call[HistoryQuery, None]) -> HistoryReply:
    room = RoomId(call.path["room"])
    q = call.query
    node = call.node
    messages = node.backplane.messages
    epoch, offset = await messages.position(room)
    kept = await messages.last_messages(room, q.limit, q.before, node.clock.wall())
    return HistoryReply(
        room=room,
        epoch=epoch,
        offset=offset,
        messages=[
            HistoryMessage(
                id=m.id,
                user=m.author,
                device=m.device,
                body=m.body,
                time=m.time,
                offset=m.offset,
                temp_id=m.temp_id,
            )
            for m in kept
            if not m.deleted and m.body is not None
        ],
    )


ROUTES: list[Route] = [
    Route(
        "POST",
        "/v1/rooms/{room}/messages",
        publish,
        "publish",
        "Publish a message to a room",
        PublishReply,
        "messages",
        body=PublishRequest,
        status=201,
        errors=(413,),
        description="Members on every node get the `message` event, as if a client had sent "
        "it. Without `user` the author is the system (user `system`, device `api`). With an "
        "`idempotency_key`, a retry returns the first message (`duplicate: true`) and sends "
        "nothing, while that message is in the room's history.",
    ),
    Route(
        "GET",
        "/v1/rooms/{room}/messages",
        history,
        "read",
        "A room's kept messages, oldest first",
        HistoryReply,
        "messages",
        query=HistoryQuery,
    ),
    Route(
        "PATCH",
        "/v1/rooms/{room}/messages/{message}",
        edit,
        "publish",
        "Edit any message (members get message.edited)",
        MessageAmended,
        "messages",
        body=EditRequest,
        errors=(404, 413),
    ),
    Route(
        "DELETE",
        "/v1/rooms/{room}/messages/{message}",
        delete,
        "publish",
        "Delete any message (members get message.deleted)",
        MessageAmended,
        "messages",
        errors=(404,),
    ),
]
