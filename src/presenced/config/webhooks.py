"""Webhook sinks of the event export: parsing the ``webhooks`` and ``webhook_secret`` settings.

``webhooks`` lists one or more receivers separated by white space (or a TOML list), each an
``http://`` or ``https://`` URL, optionally followed by ``#events=`` and the event types it
takes as glob patterns joined by ``+`` (``https://app/hook#events=member.*+user.*``). URL
fragments are never sent over HTTP, so the ``#`` part cannot clash with the receiver's URL.
Without ``#events`` a receiver takes every type except the opt-in ones (typing).

``webhook_secret`` is the HMAC key the deliveries are signed with: at least 16 characters;
several, comma-separated, while rotating (each signs every delivery); ``@/path`` reads it
from a file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from presenced.errors import ConfigError
from presenced.events.model import CATALOGUE, EventFilter

__all__ = [
    "MIN_WEBHOOK_SECRET",
    "Webhook",
    "event_patterns",
    "parse_webhook_secrets",
    "parse_webhooks",
]

MIN_WEBHOOK_SECRET = 16

_HINT = (
    "allowed: http(s) URLs separated by spaces, each optionally followed by "
    "#events=PATTERN+PATTERN (event types or globs such as member.*; types: "
    + ", ".join(CATALOGUE)
    + ")"
)


@dataclass(frozen=True, slots=True)
class Webhook:
    """One receiver: where to POST, and which event types (glob patterns)."""

    url: str
    events: tuple[str, ...] = ("*",)

    def __str__(self) -> str:  # as it is written in the setting
        return self.url + ("" if self.events == ("*",) else "#events=" + "+".join(self.events))


def parse_webhooks(key: str, value: object) -> tuple[Webhook, ...]:
    """The receivers a setting value lists (text or a TOML list of entries)."""
    if isinstance(value, str):
        entries = value.split()
    elif isinstance(value, list | tuple) and all(isinstance(v, Webhook) for v in value):
        return tuple(value)
    elif isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        entries = [part for v in value for part in str(v).split()]
    else:
        raise ConfigError(key, f"a {type(value).__name__} is not a list of URLs; {_HINT}")
    hooks = [_webhook(key, number, entry) for number, entry in enumerate(entries, 1)]
    if not hooks:
        raise ConfigError(key, f"no URL given; {_HINT} (leave it unset for none)")
    return tuple(hooks)


def _webhook(key: str, number: int, entry: str) -> Webhook:
    url, _, fragment = entry.partition("#")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(key, f"entry {number} {url!r} is not an http(s) URL; {_HINT}")
    return Webhook(url, event_patterns(key, number, fragment, _HINT))


def event_patterns(key: str, number: int, fragment: str, hint: str) -> tuple[str, ...]:
    """The event types an entry's ``#events=PATTERN+PATTERN`` fragment names (every sink's
    setting uses this form); ``("*",)`` without one. ``hint`` ends the error messages."""
    if not fragment:
        return ("*",)
    name, sep, patterns = fragment.partition("=")
    if name != "events" or not sep or not patterns:
        raise ConfigError(key, f"entry {number}: {'#' + fragment!r} is not #events=...; {hint}")
    events = tuple(p for p in patterns.split("+") if p)
    unknown = EventFilter.unknown(events)
    if unknown:
        raise ConfigError(key, f"entry {number}: {unknown[0]!r} matches no event type; {hint}")
    return events


def parse_webhook_secrets(key: str, value: object) -> tuple[str, ...]:
    """The signing secrets (comma-separated text, ``@file`` or a TOML list)."""
    hint = (
        f"allowed: a secret of at least {MIN_WEBHOOK_SECRET} characters, several "
        "comma-separated while rotating, or @/path/to/file"
    )
    if isinstance(value, str) and value.startswith("@"):
        path = Path(value[1:]).expanduser()
        try:
            value = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(key, f"cannot read {str(path)!r}: {exc}; {hint}") from None
    if isinstance(value, str):
        secrets = [s.strip() for s in value.replace("\n", ",").split(",") if s.strip()]
    elif isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        secrets = [str(v) for v in value]
    else:
        raise ConfigError(key, f"a {type(value).__name__} is not a secret; {hint}")
    if not secrets:
        raise ConfigError(key, f"no secret given; {hint}")
    for number, secret in enumerate(secrets, 1):
        if len(secret) < MIN_WEBHOOK_SECRET:
            raise ConfigError(
                key, f"secret {number} has {len(secret)} characters, fewer than 16; {hint}"
            )
    return tuple(secrets)
