"""API keys of the admin port: parsing the ``api_keys`` setting.

A key is a bearer secret with scopes. The setting lists one or more entries, separated by
commas, white space or new lines, each ``SCOPES:SECRET`` where SCOPES is ``read``,
``publish`` or ``admin``, or several joined by ``+``. Scopes nest: ``publish`` includes
``read`` (a chat backend that posts also reads history), ``admin`` includes both. Several
keys may hold the same scopes at once, so a key can be
rotated without downtime: add the new one, move the clients, remove the old one. The value
``@/path`` reads the entries from a file (``#`` starts a comment), which keeps secrets off
command lines and out of the environment.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from presenced.errors import ConfigError

__all__ = ["API_SCOPES", "MIN_SECRET_LENGTH", "ApiKey", "parse_api_keys"]

API_SCOPES: tuple[str, ...] = ("read", "publish", "admin")
"""What a key may do, each including the ones before it: ``read`` the state, ``publish``
messages (and read), ``admin`` everything."""

MIN_SECRET_LENGTH = 16
"""Shorter secrets are refused: a key guards kicks and deletions."""

_HINT = (
    "allowed: entries SCOPES:SECRET (SCOPES one of read, publish, admin, or several joined "
    f"by '+'; SECRET at least {MIN_SECRET_LENGTH} characters), separated by commas or "
    "spaces, or @/path/to/file with one entry per line"
)


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One bearer key and what it may do (scopes nest: read < publish < admin)."""

    scopes: frozenset[str]
    secret: str

    def allows(self, scope: str) -> bool:
        rank = API_SCOPES.index(scope)
        return any(API_SCOPES.index(held) >= rank for held in self.scopes)

    def __repr__(self) -> str:  # never show the secret, in logs or tracebacks
        return f"ApiKey(scopes={'+'.join(sorted(self.scopes))}, secret=<hidden>)"


def parse_api_keys(key: str, value: object) -> tuple[ApiKey, ...]:
    """The keys a setting value lists (text, ``@file`` or a TOML list of entries)."""
    if isinstance(value, str) and value.startswith("@"):
        value = _read_file(key, value[1:])
    if isinstance(value, str):
        entries = value.replace(",", " ").split()
    elif isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        entries = [part for v in value for part in str(v).replace(",", " ").split()]
    elif isinstance(value, list | tuple) and all(isinstance(v, ApiKey) for v in value):
        return tuple(value)
    else:
        raise ConfigError(key, f"a {type(value).__name__} is not a list of keys; {_HINT}")
    keys: list[ApiKey] = []
    for number, entry in enumerate(entries, 1):
        scopes_text, sep, secret = entry.partition(":")
        scopes = frozenset(s.strip().lower() for s in scopes_text.split("+"))
        if not sep or not scopes_text:
            raise ConfigError(key, f"entry {number} has no 'SCOPES:' before its secret; {_HINT}")
        unknown = sorted(scopes - set(API_SCOPES))
        if unknown:
            raise ConfigError(key, f"entry {number} has unknown scope {unknown[0]!r}; {_HINT}")
        if len(secret) < MIN_SECRET_LENGTH:
            raise ConfigError(
                key,
                f"entry {number}: the secret has {len(secret)} characters, fewer than "
                f"{MIN_SECRET_LENGTH}; {_HINT}",
            )
        keys.append(ApiKey(scopes, secret))
    if not keys:
        raise ConfigError(key, f"no key given; {_HINT} (leave it unset for none)")
    return tuple(keys)


def _read_file(key: str, name: str) -> str:
    path = Path(name).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(key, f"cannot read {str(path)!r}: {exc}; {_HINT}") from None
    return "\n".join(line.split("#", 1)[0] for line in text.splitlines())
