"""The admin port: an aiohttp application serving the route table, health and metrics.

aiohttp was chosen by measurement among the candidates (Litestar, Starlette on uvicorn,
aiohttp): it answered a small JSON endpoint twice as fast as Litestar and a little faster
than Starlette (docs/benchmarks.md), it runs its own server on the node's event loop (no
ASGI server to add), and it is one well-kept dependency. What Litestar would have given, an
OpenAPI schema derived from typed handlers, the route table gives here
(:mod:`presenced.http.routing`, :mod:`presenced.http.openapi`) with the msgspec types the
gateway already uses.

Every request is authorised first (:class:`~presenced.http.auth.KeyRing`), then its path
parameters, query and body are validated against the route's types, so a handler only ever
sees valid input; every error is a JSON :class:`~presenced.api.models.ErrorReply`.
"""

from __future__ import annotations

import logging
import re
import typing
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web

from presenced.api.models import ErrorDetail, ErrorReply
from presenced.http import (
    cluster_api,
    events_api,
    message_api,
    moderation_api,
    presence_api,
    room_api,
    session_api,
)
from presenced.http.auth import KeyRing
from presenced.http.errors import ApiError, from_validation, refused
from presenced.http.health import health_body
from presenced.http.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from presenced.http.metrics import NodeMetrics
from presenced.http.openapi import openapi_document
from presenced.http.routing import Call, Route
from presenced.http.worker_metrics import from_environment
from presenced.protocol.fields import Name
from presenced.server.admin import AdminRefused
from presenced.web import DASHBOARD, Pages

if TYPE_CHECKING:
    from presenced.server.node import Node

__all__ = ["ROUTES", "build_app", "error_response"]

log = logging.getLogger(__name__)

ROUTES: list[Route] = [
    *presence_api.ROUTES,
    *session_api.ROUTES,
    *room_api.ROUTES,
    *message_api.ROUTES,
    *moderation_api.ROUTES,
    *cluster_api.ROUTES,
    *events_api.ROUTES,
]
"""Every endpoint of the API, in the order the OpenAPI document lists them."""

_encode = msgspec.json.Encoder().encode
_JSON = "application/json"
# A request body holds at most a message body plus a little: bounded well before decoding.
MAX_REQUEST_BYTES = 4 * 1024 * 1024
# The dashboard runs its own script and style only, and talks to this port only: an injected
# script could not load or send anything elsewhere (the key is in its sessionStorage).
_DASHBOARD_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def error_response(exc: ApiError) -> web.Response:
    body = ErrorReply(error=ErrorDetail(code=exc.code, message=exc.message, field=exc.field))
    headers = {"WWW-Authenticate": 'Bearer realm="presenced"'} if exc.status == 401 else None
    return web.Response(status=exc.status, body=_encode(body), content_type=_JSON, headers=headers)


def _json(status: int, data: bytes) -> web.Response:
    return web.Response(status=status, body=data, content_type=_JSON)


# The id rule of protocol.fields.Name, compiled once (msgspec.convert against the Annotated
# type would look the type up again on every request).
_NAME_META = typing.get_args(Name)[1]
_NAME_PATTERN = re.compile(_NAME_META.pattern)


def _path_params(request: web.Request) -> dict[str, str]:
    params = dict(request.match_info)
    for name, value in params.items():
        if not (0 < len(value) <= _NAME_META.max_length and _NAME_PATTERN.search(value)):
            raise ApiError(
                400,
                f"path.{name}: an id is 1-{_NAME_META.max_length} characters with no white "
                "space, control or format character",
                f"path.{name}",
            )
    return params


def _query(request: web.Request, kind: type[msgspec.Struct] | None) -> Any:
    raw = request.query
    if kind is None:
        if raw:
            name = next(iter(raw))
            raise ApiError(400, f"query.{name}: this endpoint takes no query", f"query.{name}")
        return None
    values: dict[str, str] = {}
    for name in raw:
        got = raw.getall(name)
        if len(got) > 1:
            raise ApiError(400, f"query.{name}: given {len(got)} times", f"query.{name}")
        values[name] = got[0]
    try:
        return msgspec.convert(values, kind, strict=False)
    except msgspec.ValidationError as exc:
        raise from_validation(exc, "query") from None


async def _body(request: web.Request, kind: type[msgspec.Struct] | None) -> Any:
    if kind is None:
        return None
    data = await request.read()
    if not data:
        data = b"{}"  # an empty body is an empty object: its required fields are named
    try:
        return msgspec.json.decode(data, type=kind)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise from_validation(exc, "body") from None


def _endpoint(
    node: Node, keys: KeyRing, route: Route
) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def serve(request: web.Request) -> web.Response:
        keys.check(request.headers.get("Authorization"), route.scope)
        call: Call[Any, Any] = Call(
            node=node,
            path=_path_params(request),
            query=_query(request, route.query),
            body=await _body(request, route.body),
        )
        reply = await route.handler(call)
        return _json(route.status, _encode(reply))

    return serve


@web.middleware
async def _errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every failure as a JSON error body; a fault is logged once and answered 500."""
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc)
    except AdminRefused as exc:
        return error_response(refused(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = {
            404: f"no endpoint {request.path!r}: see /openapi.json",
            405: f"{request.method} is not allowed on {request.path!r}",
            413: f"the request body is over {MAX_REQUEST_BYTES} bytes",
        }.get(exc.status, exc.reason)
        response = error_response(ApiError(exc.status, message))
        if isinstance(exc, web.HTTPMethodNotAllowed):
            response.headers["Allow"] = ", ".join(sorted(exc.allowed_methods))
        return response
    except Exception:
        log.exception("admin API %s %s failed", request.method, request.path)
        return error_response(ApiError(500, "the server failed on this request; see its log"))


def build_app(node: Node) -> web.Application:
    """The admin application of ``node``: the API, /health, /ready, /metrics, /openapi.json."""
    settings = node.settings
    keys = KeyRing(settings.api_keys)
    workers = from_environment()  # --workers: this scrape sums every process's snapshot
    if workers is None:
        metrics = NodeMetrics(node)
    else:
        snapshots, label = workers
        metrics = NodeMetrics(node, peers=snapshots.others, label=label or None)
    document = _encode(openapi_document(ROUTES))
    app = web.Application(middlewares=[_errors], client_max_size=MAX_REQUEST_BYTES)

    async def health(request: web.Request) -> web.Response:
        return _json(*health_body(node, request.path))

    async def metrics_text(request: web.Request) -> web.Response:
        keys.check(request.headers.get("Authorization"), "read")
        return web.Response(body=metrics.render(), headers={"Content-Type": METRICS_CONTENT_TYPE})

    async def openapi(request: web.Request) -> web.Response:
        return _json(200, document)

    # The dashboard's files need no key (they hold no data; the page asks for one and sends
    # it with every API call it makes).
    pages = Pages(("dashboard",), DASHBOARD)

    async def dashboard(request: web.Request) -> web.Response:
        page = pages.get(request.path)
        if page is None:
            raise web.HTTPNotFound()
        body, kind = page
        return web.Response(
            body=body,
            headers={
                "Content-Type": kind,
                "Cache-Control": "no-store",
                "X-Content-Type-Options": "nosniff",
                "Content-Security-Policy": _DASHBOARD_CSP,
            },
        )

    router = app.router
    router.add_get("/health", health, allow_head=False)
    router.add_get("/ready", health, allow_head=False)
    router.add_get("/metrics", metrics_text, allow_head=False)
    router.add_get("/openapi.json", openapi, allow_head=False)
    router.add_get("/dashboard", dashboard, allow_head=False)
    router.add_get("/dashboard/", dashboard, allow_head=False)
    router.add_get("/dashboard/{file:[^/]+}", dashboard, allow_head=False)
    for route in ROUTES:
        router.add_route(route.method, route.path, _endpoint(node, keys, route))
    return app
