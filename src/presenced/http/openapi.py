"""The OpenAPI 3.1 document of the admin API, derived from the route table.

Schemas come from the msgspec types the server validates with
(:func:`msgspec.json.schema_components`), parameters from each route's path and query type,
and every route lists the errors it can answer, so the document is what the code does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import msgspec

from presenced import __version__
from presenced.api.models import ErrorReply, HealthReply
from presenced.http.routing import Route
from presenced.protocol.fields import ID_EXCLUDED, ID_PATTERN, Name

__all__ = ["openapi_document"]

_REF = "#/components/schemas/{name}"

# The id rule (protocol.fields.Name) in ECMA-262 regex, which JSON Schema uses: the same
# class (written to read alike in both) but for the lone surrogates, which no UTF-8 text (a
# JSON document, a percent-encoded path) can carry and which schema tools cannot generate
# around; and ``$`` for ``\Z`` (the class excludes the line ends ``$`` would allow before).
_PY_NAME = ID_PATTERN
_ECMA_NAME = "^[^" + ID_EXCLUDED.replace(r"\ud800-\udfff", "") + "]+$"
_PARAM = re.compile(r"{(\w+)}")
_ERRORS = {
    400: "Invalid input: `error.field` names it",
    401: "No API key, or not a valid one",
    403: "The API key lacks the route's scope (read < publish < admin)",
    404: "No such user, session, room or message",
    409: "The request conflicts with the current state",
    503: "The node cannot serve this now (the store is unreachable)",
}


def _error(status: int) -> dict[str, Any]:
    return {
        "description": _ERRORS.get(status, "Error"),
        "content": {"application/json": {"schema": {"$ref": _REF.format(name="ErrorReply")}}},
    }


def _json_of(name: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": _REF.format(name=name)}}},
    }


def _query_parameters(schema: dict[str, Any]) -> list[dict[str, Any]]:
    required = set(schema.get("required", ()))
    return [
        {"name": name, "in": "query", "required": name in required, "schema": prop}
        for name, prop in schema.get("properties", {}).items()
    ]


def openapi_document(routes: Iterable[Route]) -> dict[str, Any]:
    """The whole document, as a JSON-ready dict."""
    routes = list(routes)
    types: list[Any] = [ErrorReply, HealthReply, Name]
    for route in routes:
        types += [t for t in (route.response, route.query, route.body) if t is not None]
    schemas, components = msgspec.json.schema_components(types, ref_template=_REF)
    name_schema = schemas[2]
    by_type = dict(zip(types, schemas, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    query_only: set[str] = set()  # query types become parameters, not schemas
    for route in routes:
        parameters = [
            {"name": p, "in": "path", "required": True, "schema": name_schema}
            for p in _PARAM.findall(route.path)
        ]
        if route.query is not None:
            ref = by_type[route.query]["$ref"].rsplit("/", 1)[-1]
            query_only.add(ref)
            parameters += _query_parameters(components[ref])
        responses: dict[str, Any] = {
            str(route.status): _json_of(route.response.__name__, route.summary),
        }
        for status in sorted({400, 401, 403, *route.errors}):
            responses[str(status)] = _error(status)
        operation: dict[str, Any] = {
            "operationId": route.handler.__name__,
            "summary": route.summary,
            "tags": [route.tag],
            "security": [{"bearer": []}],
            "x-scope": route.scope,
            "parameters": parameters,
            "responses": responses,
        }
        description = route.description
        operation["description"] = (
            f"{description} Needs an API key with scope `{route.scope}` or above."
        ).strip()
        if route.body is not None:
            operation["requestBody"] = {"required": True, **_json_of(route.body.__name__, "")}
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    for ref in query_only:
        del components[ref]
    health = {
        "200": _json_of("HealthReply", "The node's health"),
        "503": _json_of("HealthReply", "Not ready (the checks say why)"),
    }
    paths["/health"] = {
        "get": {
            "operationId": "health",
            "summary": "Liveness: 200 while the process serves (status says ok/degraded/draining)",
            "tags": ["node"],
            "security": [],
            "responses": {"200": health["200"]},
        }
    }
    paths["/ready"] = {
        "get": {
            "operationId": "ready",
            "summary": "Readiness: 200 when the store and broker answer and it is not draining",
            "tags": ["node"],
            "security": [],
            "responses": health,
        }
    }
    paths["/metrics"] = {
        "get": {
            "operationId": "metrics",
            "summary": "Prometheus metrics of this node (scope read)",
            "tags": ["node"],
            "security": [{"bearer": []}],
            "responses": {
                "200": {
                    "description": "The text exposition format",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                "401": _error(401),
                "403": _error(403),
            },
        }
    }
    document = {
        "openapi": "3.1.0",
        "info": {
            "title": "presenced admin API",
            "version": __version__,
            "description": "The backend's way into a presenced cluster: presence, sessions, "
            "rooms, messages, moderation. See docs/api.md.",
        },
        "servers": [{"url": "http://127.0.0.1:7401"}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key from the api_keys setting",
                }
            },
        },
    }
    patched: dict[str, Any] = _ecma_patterns(document)
    return patched


def _ecma_patterns(value: Any) -> Any:
    """The document with the id pattern in ECMA form wherever it appears."""
    if isinstance(value, dict):
        return {
            k: _ECMA_NAME if k == "pattern" and v == _PY_NAME else _ecma_patterns(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_ecma_patterns(v) for v in value]
    return value
