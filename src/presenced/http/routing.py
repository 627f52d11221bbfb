"""The admin API's route table: each route's method, path, scope, input and output types.

A route module declares its endpoints as :class:`Route` values; the app
(:mod:`presenced.http.app`) validates every input against the declared types before the
handler runs, and the OpenAPI document (:mod:`presenced.http.openapi`) is derived from the
same values, so the schema cannot drift from the code.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import msgspec

from presenced.api.models import Cursor, Limit

if TYPE_CHECKING:
    from presenced.server.node import Node

__all__ = [
    "DEFAULT_LIMIT",
    "Call",
    "Handler",
    "PageQuery",
    "Route",
    "decode_cursor",
    "encode_cursor",
    "page",
]

Q = TypeVar("Q")
B = TypeVar("B")

DEFAULT_LIMIT = 100


class PageQuery(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``?cursor=...&limit=...`` of every list."""

    cursor: Cursor | None = None
    limit: Limit = DEFAULT_LIMIT


@dataclass(frozen=True, slots=True)
class Call(Generic[Q, B]):
    """One validated request: the node it runs on, its path parameters (each a valid id),
    its query and its body, decoded into the route's types."""

    node: Node
    path: dict[str, str]
    query: Q
    body: B


Handler = Callable[[Call[Any, Any]], Awaitable[msgspec.Struct]]


@dataclass(frozen=True, slots=True)
class Route:
    """One endpoint. ``scope`` is what the API key must allow (``read``, ``publish``,
    ``admin``). ``errors`` lists the statuses the handler itself may answer, besides the
    400/401/403 every route can."""

    method: str
    path: str
    handler: Handler
    scope: str
    summary: str
    response: type[msgspec.Struct]
    tag: str
    query: type[msgspec.Struct] | None = None
    body: type[msgspec.Struct] | None = None
    status: int = 200
    errors: tuple[int, ...] = ()
    description: str = ""


def encode_cursor(last: str) -> str:
    """The cursor for "after ``last``": the last id of the page itself. Clients treat it as
    opaque; any string is a valid cursor (the page starts after it in id order)."""
    return last


def decode_cursor(cursor: str | None) -> str | None:
    """The id after which a page starts (None: from the first)."""
    return cursor


def page(ids: list[str], limit: int) -> str | None:
    """The next cursor of a page of ``ids`` fetched with ``limit + 1``: None on the last."""
    return encode_cursor(ids[limit - 1]) if len(ids) > limit else None
