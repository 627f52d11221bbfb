"""Setting values: how one setting's value is parsed, checked and described.

Each :class:`~presenced.config.Settings` field carries a :class:`Spec` in its metadata (made
by :func:`field_spec`): its kind, allowed range and help text. This module turns a value
from any source (typed, TOML or text) into the setting's type (:func:`coerce`), checks its
range (:func:`check_range`) and says what is allowed, for messages and ``--help``
(:meth:`Spec.allowed`). It knows nothing of particular settings or of where values come
from, so :mod:`presenced.config.settings` (the settings) and :mod:`presenced.config.sources`
(the sources) both build on it.

Durations accept ``25``, ``1.5``, ``500ms``, ``25s``, ``10m``, ``6h``; a setting that can be
turned off also takes ``off``, ``none`` or ``0``. Sizes accept ``64KiB`` or ``1MiB``. PEM
settings take PEM text (escaped ``\\n`` newlines, as a one-line environment variable has
them, are unescaped) or ``@/path/to/key.pem``. Every problem is a
:class:`~presenced.errors.ConfigError` naming the key, the bad value and what is allowed.
"""

from __future__ import annotations

import contextlib
import difflib
import ipaddress
import math
import re
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from presenced.config.api_keys import parse_api_keys
from presenced.config.webhooks import parse_webhook_secrets, parse_webhooks
from presenced.errors import ConfigError

__all__ = [
    "JWT_ALGORITHMS",
    "KIB",
    "MIB",
    "Kind",
    "Spec",
    "check_known",
    "check_range",
    "coerce",
    "field_spec",
    "parse_duration",
    "parse_size",
]

JWT_ALGORITHMS: tuple[str, ...] = (
    "HS256",
    "HS384",
    "HS512",
    "RS256",
    "RS384",
    "RS512",
    "ES256",
    "ES384",
    "ES512",
)

Kind = Literal[
    "bool",
    "str",
    "optstr",
    "pem",
    "int",
    "size",
    "float",
    "duration",
    "choice",
    "algorithms",
    "apikeys",
    "webhooks",
    "secrets",
    "sinks",
    "origins",
    "networks",
]
"""How a setting's value is parsed ("sinks" and "origins": by the spec's own ``parse``)."""

KIB = 1024
MIB = 1024 * 1024
_SIZE_UNITS = {"b": 1, "kib": KIB, "mib": MIB, "gib": 1024 * MIB}
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?"
_DURATION_RE = re.compile(rf"^({_NUMBER})\s*(ms|s|m|h)?$", re.IGNORECASE)
_SIZE_RE = re.compile(rf"^({_NUMBER})\s*(b|kib|mib|gib)?$", re.IGNORECASE)
_DURATION_HINT = "use seconds (25, 1.5) or a number with a unit: 500ms, 25s, 10m, 6h"
_SIZE_HINT = "use a number of bytes or a size: 512B, 64KiB, 1MiB"
_OFF_WORDS = frozenset({"off", "none"})
_TRUE_WORDS = frozenset({"true", "on", "yes", "1"})
_FALSE_WORDS = frozenset({"false", "off", "no", "0"})


# --- parsing helpers ---------------------------------------------------------------------


def parse_duration(
    text: str | float, *, allow_off: bool = False, key: str = "duration"
) -> float | None:
    """Parse a duration in seconds: ``25``, ``1.5``, ``"500ms"``, ``"25s"``, ``"10m"``, ``"6h"``.

    With ``allow_off``, ``"off"``, ``"none"`` and any zero duration mean "off" and give
    ``None``; without it they are an error (``0`` is then plain zero seconds). The sign is not
    checked here: the range belongs to the setting. Raises :class:`ConfigError` for ``key``.
    """
    return _duration(text, allow_off, key, repr(text))


def _duration(text: object, allow_off: bool, key: str, shown: str) -> float | None:
    """:func:`parse_duration`, with the bad value shown as ``shown`` in messages."""
    hint = _DURATION_HINT + (", or off" if allow_off else "")
    if isinstance(text, str):
        word = text.strip().lower()
        if word in _OFF_WORDS:
            if allow_off:
                return None
            raise ConfigError(
                key, f"{shown} is not allowed: {key} cannot be turned off; {_DURATION_HINT}"
            )
        match = _DURATION_RE.match(word)
        if match is None:
            raise ConfigError(key, f"{shown} is not a duration; {hint}")
        value = float(match.group(1)) * _DURATION_UNITS[match.group(2) or "s"]
    elif isinstance(text, int | float) and not isinstance(text, bool):
        value = float(text)
    else:
        raise ConfigError(key, f"{shown} is not a duration; {hint}")
    if not math.isfinite(value):
        raise ConfigError(key, f"{shown} is not a finite duration; {hint}")
    if value == 0 and allow_off:
        return None
    return value


def parse_size(text: str | int, *, key: str = "size") -> int:
    """Parse a byte count: ``65536``, ``"65536"``, ``"512B"``, ``"64KiB"``, ``"1MiB"``, ``"1GiB"``.

    Units are binary (KiB = 1024 bytes) and case-insensitive; a fraction of a unit is rounded
    down to whole bytes. Raises :class:`ConfigError` for ``key``.
    """
    if isinstance(text, bool) or not isinstance(text, int | str):
        raise ConfigError(key, f"{text!r} is not a size; {_SIZE_HINT}")
    if isinstance(text, int):
        return text
    match = _SIZE_RE.match(text.strip())
    if match is None:
        raise ConfigError(key, f"{text!r} is not a size; {_SIZE_HINT}")
    number, unit = match.group(1), (match.group(2) or "b").lower()
    try:
        return int(number) * _SIZE_UNITS[unit]
    except ValueError:  # a fraction or an exponent: compute in float, then whole bytes
        value = float(number) * _SIZE_UNITS[unit]
    if not math.isfinite(value):
        raise ConfigError(key, f"{text!r} is not a size; {_SIZE_HINT}")
    return int(value)


def _fmt_number(n: float) -> str:
    return f"{n:g}"


def _fmt_bytes(n: float) -> str:
    for unit, size in (("GiB", 1024 * MIB), ("MiB", MIB), ("KiB", KIB)):
        if n >= size and n % size == 0:
            return f"{int(n // size)} {unit}"
    return f"{int(n)} B"


# --- the per-setting spec ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Spec:
    """How one setting is parsed and what values it allows."""

    kind: Kind
    help: str
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False  # lo itself is not allowed (> rather than >=)
    off: bool = False  # None is allowed and means "off" / "not set"
    choices: tuple[str, ...] = ()
    secret: bool = False  # never shown by `presenced config`
    note: str = ""  # appended to the allowed range in messages and help
    parse: Callable[[str, object], Any] | None = None  # (key, value) -> value, for "sinks"

    def fmt(self, value: object) -> str:
        """A value as the user would write it, for messages."""
        if self.kind == "duration" and isinstance(value, int | float):
            return f"{value:g}s"
        if self.kind == "size" and isinstance(value, int):
            return str(value) if value % KIB else f"{value} ({_fmt_bytes(value)})"
        if self.kind == "float" and isinstance(value, float):
            return f"{value:g}"
        return repr(value)

    def allowed(self) -> str:
        """The allowed values, for messages and ``--help``."""
        if self.choices:
            text = ", ".join(self.choices)
        elif self.kind in ("int", "size", "float", "duration"):
            bound = _fmt_bytes if self.kind == "size" else _fmt_number
            if self.lo is not None and self.hi is not None:
                text = f"{bound(self.lo)}..{bound(self.hi)}"
            else:
                text = f"{'>' if self.lo_open else '>='} {bound(self.lo or 0)}"
            if self.kind == "duration":
                text += " seconds (e.g. 500ms, 25s, 10m, 6h)"
        elif self.kind == "bool":
            text = "true or false (also on/off, yes/no, 1/0)"
        elif self.kind == "pem":
            text = "PEM text or @/path/to/key.pem"
        elif self.kind == "apikeys":
            text = "SCOPES:SECRET entries (scopes read, publish, admin) or @/path/to/file"
        elif self.kind == "webhooks":
            text = "http(s) URLs, each optionally with #events=PATTERN+PATTERN"
        elif self.kind == "secrets":
            text = "secrets of 16+ characters, comma-separated, or @/path/to/file"
        elif self.kind == "sinks":
            text = "URLs separated by spaces, each optionally with #events=PATTERN+PATTERN"
        elif self.kind == "origins":
            text = "origins (scheme://host[:port], * as a wildcard) separated by spaces, or *"
        elif self.kind == "networks":
            text = "IP addresses or CIDR blocks, comma-separated (e.g. 10.0.0.0/8,::1)"
        else:
            text = "a non-empty string"
        if self.note:
            text += f" {self.note}"
        if self.off and self.kind == "duration":
            text += ", or off"
        return text


def field_spec(kind: Kind, help: str, **rule: Any) -> dict[str, Spec]:
    """Field metadata: how the setting is parsed and checked (next to its default)."""
    return {"spec": Spec(kind, help, **rule)}


# --- coercion and checks ------------------------------------------------------------------


def coerce(key: str, spec: Spec, value: object, origin: str) -> Any:
    """Turn a value from any source (typed, TOML or text) into the setting's type."""
    shown = f"{value!r}{origin}"
    if value is None:
        if spec.off:
            return None
        raise ConfigError(key, f"a value is required; allowed: {spec.allowed()}")
    if spec.kind == "bool":
        if isinstance(value, bool):
            return value
        word = value.strip().lower() if isinstance(value, str) else None
        if word in _TRUE_WORDS or word in _FALSE_WORDS:
            return word in _TRUE_WORDS
        raise ConfigError(key, f"{shown} is not allowed; allowed: {spec.allowed()}")
    if spec.kind == "duration":
        return _duration(value, spec.off, key, shown)
    if spec.kind == "size":
        if not isinstance(value, str | int):
            raise ConfigError(key, f"{shown} is not a size; {_SIZE_HINT}")
        try:
            return parse_size(value, key=key)
        except ConfigError:
            raise ConfigError(key, f"{shown} is not a size; {_SIZE_HINT}") from None
    if spec.kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            if spec.off and value.strip().lower() in _OFF_WORDS:
                return None
            with contextlib.suppress(ValueError):
                return int(value)
        raise ConfigError(key, f"{shown} is not an integer; allowed: {spec.allowed()}")
    if spec.kind == "float":
        try:
            number = float(value) if isinstance(value, str | int) else value
        except ValueError:
            number = None
        if isinstance(value, bool) or not isinstance(number, float) or not math.isfinite(number):
            raise ConfigError(key, f"{shown} is not a number; allowed: {spec.allowed()}")
        return number
    if spec.kind == "choice":
        if not isinstance(value, str) or value.strip().lower() not in spec.choices:
            raise ConfigError(key, f"{shown} is not allowed; allowed values: {spec.allowed()}")
        word = value.strip().lower()
        return None if word == "auto" else word
    if spec.kind == "algorithms":
        return _coerce_algorithms(key, spec, value, shown)
    if spec.kind == "apikeys":
        return parse_api_keys(key, value)
    if spec.kind == "webhooks":
        return parse_webhooks(key, value)
    if spec.kind == "secrets":
        return parse_webhook_secrets(key, value)
    if spec.parse is not None:
        return spec.parse(key, value)
    if spec.kind == "networks":
        return _coerce_networks(key, spec, value, shown)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(
            key,
            f"{shown} is not allowed; allowed: {spec.allowed()}"
            + (" (leave it unset for none)" if spec.off else ""),
        )
    if spec.kind == "pem":
        return _read_pem(key, value)
    return value


def _coerce_algorithms(key: str, spec: Spec, value: object, shown: str) -> tuple[str, ...]:
    items: Iterable[object]
    if isinstance(value, str):
        items = [part for part in value.split(",") if part.strip()]
    elif isinstance(value, list | tuple):
        items = value
    else:
        items = [value]
    algs: list[str] = []
    for item in items:
        name = item.strip().upper() if isinstance(item, str) else ""
        if name not in JWT_ALGORITHMS:
            raise ConfigError(
                key, f"{item!r} in {shown} is not allowed; allowed values: {spec.allowed()}"
            )
        if name not in algs:
            algs.append(name)
    if not algs:
        raise ConfigError(key, f"{shown} names no algorithm; allowed values: {spec.allowed()}")
    return tuple(algs)


def _coerce_networks(key: str, spec: Spec, value: object, shown: str) -> tuple[str, ...] | None:
    """Addresses and CIDR blocks, normalized (``10.1.2.3/8`` is ``10.0.0.0/8``)."""
    items: Iterable[object]
    if isinstance(value, str):
        if spec.off and value.strip().lower() in _OFF_WORDS:
            return None
        items = [part for part in value.split(",") if part.strip()]
    elif isinstance(value, list | tuple):
        items = value
    else:
        items = [value]
    networks: list[str] = []
    for item in items:
        try:
            network = str(ipaddress.ip_network(str(item).strip(), strict=False))
        except ValueError:
            raise ConfigError(
                key, f"{item!r} in {shown} is not allowed; allowed: {spec.allowed()}"
            ) from None
        if network not in networks:
            networks.append(network)
    if not networks:
        if spec.off:
            return None
        raise ConfigError(key, f"{shown} names no address; allowed: {spec.allowed()}")
    return tuple(networks)


def _read_pem(key: str, value: str) -> str:
    """Return PEM text, reading ``@path`` from disk."""
    text = value
    if "\\n" in text and "\n" not in text:
        # one-line PEM from an environment variable, with escaped newlines
        text = text.replace("\\n", "\n")
    if value.startswith("@"):
        path = Path(value[1:]).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(
                key,
                f"cannot read {str(path)!r}: file not found; "
                "allowed: PEM text or @/path/to/key.pem",
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(key, f"cannot read {str(path)!r}: {exc}") from None
    if "-----BEGIN " not in text:
        where = repr(value[1:]) if value.startswith("@") else "the value"
        raise ConfigError(
            key,
            f"{where} is not PEM text (no '-----BEGIN' line); "
            "allowed: PEM text or @/path/to/key.pem",
        )
    return text


def check_range(key: str, spec: Spec, value: object) -> None:
    """Raise :class:`ConfigError` if a number is outside the range ``spec`` allows."""
    if not isinstance(value, int | float) or (spec.lo is None and spec.hi is None):
        return
    low_ok = spec.lo is None or (value > spec.lo if spec.lo_open else value >= spec.lo)
    high_ok = spec.hi is None or value <= spec.hi
    if not (low_ok and high_ok):
        raise ConfigError(key, f"{spec.fmt(value)} is out of range; allowed: {spec.allowed()}")


def check_known(key: str, where: str, known: Collection[str]) -> None:
    """Raise :class:`ConfigError` unless ``key`` is one of ``known``, naming a close match."""
    if key in known:
        return
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConfigError(
        key, f"unknown setting {key!r}{where}{hint}; known settings: {', '.join(known)}"
    )
