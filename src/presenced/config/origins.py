"""Which web pages may open a WebSocket to presenced: the ``allowed_origins`` setting.

A browser sends the page's origin (``scheme://host[:port]``) in the ``Origin`` header of every
WebSocket upgrade, and does not stop a page on another site from connecting: the server has
to (cross-site WebSocket hijacking). The setting lists origins separated by spaces or commas
(or a TOML list), each exact (``https://app.example.com``) or with ``*`` standing for any
characters but ``/`` (``https://*.example.com``, ``http://localhost:*``); ``*`` alone allows
every origin. Compared case-insensitively; a default port may be written or left out.

Unset, the rule depends on the auth mode: in the insecure development mode every origin is
allowed (a page on a dev server's port can connect); with JWTs only same-origin pages (the
``Origin`` host and port are the ``Host`` header's), as Gorilla WebSocket and Centrifugo do.
An upgrade without ``Origin`` (not from a browser: an app, a backend, a load generator) is
never refused by this rule. A refused upgrade is answered HTTP 403.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from presenced.errors import ConfigError

__all__ = ["OriginRule", "parse_allowed_origins", "same_origin"]

_HINT = (
    "allowed: origins such as https://app.example.com, https://*.example.com or "
    "http://localhost:*, separated by spaces or commas, or * for every origin"
)
_DEFAULT_PORTS = {"http": "80", "https": "443", "ws": "80", "wss": "443"}


@dataclass(frozen=True, slots=True)
class OriginRule:
    """The origins one setting allows."""

    patterns: tuple[str, ...]
    _regex: re.Pattern[str] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        regexes = [re.escape(_normal(p)).replace(r"\*", "[^/]*") for p in self.patterns]
        object.__setattr__(self, "_regex", re.compile("|".join(regexes) or "(?!)"))

    def allows(self, origin: str) -> bool:
        """Whether a page of ``origin`` (the header's value) may connect."""
        return "*" in self.patterns or self._regex.fullmatch(_normal(origin)) is not None


def same_origin(origin: str, host: str) -> bool:
    """Whether ``origin``'s host and port are those of the ``Host`` header."""
    parts = urlsplit(origin.strip().lower())
    if not parts.netloc:
        return False
    scheme = parts.scheme if parts.scheme in _DEFAULT_PORTS else "http"
    origin_host = _with_port(parts.netloc, _DEFAULT_PORTS[scheme])
    return origin_host == _with_port(host.strip().lower(), _DEFAULT_PORTS[scheme])


def _with_port(netloc: str, default: str) -> str:
    if netloc.endswith("]") or ":" not in netloc.rsplit("]", 1)[-1]:
        return f"{netloc}:{default}"
    return netloc


def _normal(origin: str) -> str:
    """Lower case, without a trailing slash or the scheme's default port."""
    text = origin.strip().lower().rstrip("/")
    scheme, sep, rest = text.partition("://")
    default = _DEFAULT_PORTS.get(scheme)
    if sep and default and rest.endswith(f":{default}"):
        text = f"{scheme}://{rest[: -len(default) - 1]}"
    return text


def parse_allowed_origins(key: str, value: object) -> OriginRule:
    """The rule a setting value gives (text or a TOML list)."""
    if isinstance(value, OriginRule):
        return value
    if isinstance(value, str):
        entries = value.replace(",", " ").split()
    elif isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        entries = [part for v in value for part in str(v).replace(",", " ").split()]
    else:
        raise ConfigError(key, f"a {type(value).__name__} is not a list of origins; {_HINT}")
    if not entries:
        raise ConfigError(key, f"no origin given; {_HINT} (leave it unset for the default)")
    for entry in entries:
        if entry == "*":
            continue
        scheme, sep, rest = entry.partition("://")
        if not sep or not re.fullmatch(r"[a-z][a-z0-9+.-]*", scheme.lower()) or not rest:
            raise ConfigError(key, f"{entry!r} is not an origin (scheme://host[:port]); {_HINT}")
        if "/" in rest.rstrip("/"):
            raise ConfigError(key, f"{entry!r} has a path; an origin has none; {_HINT}")
    return OriginRule(tuple(entries))
