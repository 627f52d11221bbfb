"""Field types and message bases shared by every part of the wire protocol."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from msgspec import Meta, Struct

__all__ = [
    "CLIENT_STATUSES",
    "ClientBase",
    "ClientStatus",
    "MetaObject",
    "Name",
    "Ref",
    "ServerBase",
    "StatusText",
]

Ref = str | int | None
"""Client-chosen request id, echoed in the reply or error."""

Name = Annotated[str, Meta(min_length=1, max_length=256, pattern=r"^[^\s]+\Z")]
"""A room, user or device id: 1-256 characters, no white space."""

StatusText = Annotated[str, Meta(max_length=256)]
ClientStatus = Literal["online", "away", "busy", "dnd", "invisible"]
CLIENT_STATUSES: tuple[str, ...] = ("online", "away", "busy", "dnd", "invisible")
MetaObject = dict[str, Any]
"""Free-form JSON object (member metadata, device info); size bounded by the frame limit."""


class ClientBase(Struct, tag_field="type", kw_only=True, forbid_unknown_fields=False):
    """Base of client requests: every one may carry ``ref``."""

    ref: Ref = None


class ServerBase(Struct, tag_field="type", kw_only=True, omit_defaults=True):
    """Base of server messages: fields left at their default are not sent."""
