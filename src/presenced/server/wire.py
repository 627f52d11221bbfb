"""Stored stream events (messages, edits, deletes) as the messages clients receive."""

from __future__ import annotations

from presenced.presence.history import EventKind, StreamEvent
from presenced.protocol.chat import MessageDeleted, MessageEdited, MessageEvent, RoomEvent

__all__ = ["wire_event"]


def wire_event(event: StreamEvent) -> RoomEvent:
    """A stored stream event as the message clients receive."""
    if event.kind is EventKind.MESSAGE:
        assert event.body is not None
        return MessageEvent(
            room=event.room,
            epoch=event.epoch,
            offset=event.offset,
            id=event.message_id,
            user=event.user,
            device=event.device,
            body=event.body,
            time=event.time,
            temp_id=event.temp_id,
        )
    if event.kind is EventKind.EDITED:
        assert event.body is not None
        return MessageEdited(
            room=event.room,
            epoch=event.epoch,
            offset=event.offset,
            id=event.message_id,
            user=event.user,
            body=event.body,
            time=event.time,
        )
    return MessageDeleted(
        room=event.room,
        epoch=event.epoch,
        offset=event.offset,
        id=event.message_id,
        user=event.user,
        time=event.time,
    )
