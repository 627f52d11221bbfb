"""Field types and message bases shared by every part of the wire protocol."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from msgspec import Meta, Struct

__all__ = [
    "CLIENT_STATUSES",
    "ID_EXCLUDED",
    "ID_PATTERN",
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

ID_EXCLUDED = (
    r"\x00-\x20\x7f-\xa0\xad\u061c\u1680\u180e\u2000-\u200b\u200e\u200f\u2028-\u202f"
    r"\u205f-\u2064\u2066-\u206f\u3000\ufeff\ufff9-\ufffb\ud800-\udfff"
)
"""The characters no id may hold, as a regex class body (the same text in Python's and
ECMA-262's syntax): white space, the control characters (C0, DEL, C1), the invisible format
characters (soft hyphen, the bidi marks, embeddings, overrides and isolates, zero-width
space and the other invisible operators, the BOM, interlinear annotations) and lone UTF-16
surrogates. The zero-width joiner and non-joiner stay allowed: emoji sequences and several
scripts need them. Ids are written
into logs and shown in apps and the dashboard, where these would forge, reorder or hide
text (an ESC sequence in a terminal, a right-to-left override in a UI)."""

ID_PATTERN = rf"^[^{ID_EXCLUDED}]+\Z"

Name = Annotated[str, Meta(min_length=1, max_length=256, pattern=ID_PATTERN)]
"""A room, user or device id: 1-256 characters, none of them white space, a control or an
invisible format character (:data:`ID_EXCLUDED`)."""

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
