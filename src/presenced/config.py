"""presenced's settings: every setting, its default and its rule in one place.

:class:`Settings` is a frozen dataclass; each field carries its default *and* a small spec
(kind, allowed range, help text) in the field metadata, so the defaults, the validation, the
``--help`` of every CLI flag and the ``presenced config`` listing all come from the same line.
Constructing a :class:`Settings` (directly, through :meth:`Settings.replace` or through
:func:`load_settings`) validates it as a whole, so an invalid ``Settings`` cannot exist.

Sources, later wins::

    defaults  <  TOML file  <  PRESENCED_<KEY> environment variables  <  CLI flags

The TOML file (``--config FILE`` or ``PRESENCED_CONFIG``) holds flat top-level keys, or keys
under a ``[presenced]`` table (then other tables in the file are ignored, so the file may be
shared with other tools). An unknown key in the file is an error; an unknown ``PRESENCED_*``
environment variable is ignored (other tools may share the prefix), and an empty one counts as
unset. Durations accept ``25``, ``1.5``, ``500ms``, ``25s``, ``10m``, ``6h``; a setting that can
be turned off also takes ``off``, ``none`` or ``0``. The ``*_bytes`` settings accept sizes such as
``64KiB`` or ``1MiB``. ``jwt_public_key`` takes PEM text (escaped ``\\n`` newlines, as a
one-line environment variable has them, are unescaped) or ``@/path/to/key.pem``.

Every problem is a :class:`~presenced.errors.ConfigError` naming the key, the bad value and
what is allowed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import math
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from presenced.errors import ConfigError

__all__ = [
    "ENV_PREFIX",
    "JWT_ALGORITHMS",
    "AuthMode",
    "LogLevel",
    "SettingInfo",
    "Settings",
    "load_settings",
    "load_settings_with_origins",
    "parse_duration",
    "parse_size",
    "settings_info",
]

ENV_PREFIX = "PRESENCED_"
CONFIG_ENV = ENV_PREFIX + "CONFIG"

AuthMode = Literal["jwt", "insecure"]
LogLevel = Literal["debug", "info", "warning", "error"]

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

_Kind = Literal["str", "optstr", "pem", "int", "size", "float", "duration", "choice", "algorithms"]

_KiB = 1024
_MiB = 1024 * 1024
_SIZE_UNITS = {"b": 1, "kib": _KiB, "mib": _MiB, "gib": 1024 * _MiB}
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?"
_DURATION_RE = re.compile(rf"^({_NUMBER})\s*(ms|s|m|h)?$", re.IGNORECASE)
_SIZE_RE = re.compile(rf"^({_NUMBER})\s*(b|kib|mib|gib)?$", re.IGNORECASE)
_DURATION_HINT = "use seconds (25, 1.5) or a number with a unit: 500ms, 25s, 10m, 6h"
_SIZE_HINT = "use a number of bytes or a size: 512B, 64KiB, 1MiB"
_OFF_WORDS = frozenset({"off", "none"})
_REDIS_SCHEMES = ("redis://", "rediss://", "redis+cluster://", "rediss+cluster://", "unix://")


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
    for unit, size in (("GiB", 1024 * _MiB), ("MiB", _MiB), ("KiB", _KiB)):
        if n >= size and n % size == 0:
            return f"{int(n // size)} {unit}"
    return f"{int(n)} B"


# --- the per-setting spec ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Spec:
    """How one setting is parsed and what values it allows."""

    kind: _Kind
    help: str
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False  # lo itself is not allowed (> rather than >=)
    off: bool = False  # None is allowed and means "off" / "not set"
    choices: tuple[str, ...] = ()
    secret: bool = False  # never shown by `presenced config`
    note: str = ""  # appended to the allowed range in messages and help

    def fmt(self, value: object) -> str:
        """A value as the user would write it, for messages."""
        if self.kind == "duration" and isinstance(value, int | float):
            return f"{value:g}s"
        if self.kind == "size" and isinstance(value, int):
            return str(value) if value % _KiB else f"{value} ({_fmt_bytes(value)})"
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
        elif self.kind == "pem":
            text = "PEM text or @/path/to/key.pem"
        else:
            text = "a non-empty string"
        if self.note:
            text += f" {self.note}"
        if self.off and self.kind == "duration":
            text += ", or off"
        return text


def _spec(kind: _Kind, help: str, **rule: Any) -> dict[str, _Spec]:
    """Field metadata: how the setting is parsed and checked (next to its default)."""
    return {"spec": _Spec(kind, help, **rule)}


# --- the settings ------------------------------------------------------------------------

_DURATION_GT0: dict[str, Any] = {"lo": 0, "lo_open": True}


@dataclass(frozen=True, slots=True)
class Settings:
    """Every presenced setting, validated as a whole on construction.

    ``Settings()`` is a valid configuration (an insecure development server on
    127.0.0.1:7400). Durations are seconds; ``None`` means off / not set. ``jwt_public_key``
    given as ``@/path`` is read on construction, so the attribute always holds PEM text.
    """

    host: str = field(default="127.0.0.1", metadata=_spec("str", "address to listen on"))
    port: int = field(
        default=7400,
        metadata=_spec("int", "TCP port to listen on", lo=0, hi=65535, note="(0 = any free port)"),
    )
    workers: int = field(
        default=1,
        metadata=_spec(
            "int",
            "worker processes sharing the port (SO_REUSEPORT), each a node on the shared store",
            lo=1,
            hi=256,
            note="(more than 1 needs redis)",
        ),
    )
    node_id: str | None = field(
        default=None,
        metadata=_spec("optstr", "this node's id (default: generated at start)", off=True),
    )
    auth_mode: AuthMode | None = field(
        default=None,
        metadata=_spec(
            "choice",
            "how clients authenticate (default auto: jwt when jwt_secret or jwt_public_key "
            "is set, else insecure)",
            off=True,
            choices=("jwt", "insecure", "auto"),
        ),
    )
    jwt_secret: str | None = field(
        default=None,
        metadata=_spec(
            "optstr",
            "HS256 secret for client tokens (prefer PRESENCED_JWT_SECRET: command lines are "
            "visible to other users)",
            off=True,
            secret=True,
        ),
    )
    jwt_public_key: str | None = field(
        default=None,
        metadata=_spec(
            "pem",
            "public key for RS256/ES256 client tokens",
            off=True,
            secret=True,
        ),
    )
    jwt_algorithms: tuple[str, ...] | None = field(
        default=None,
        metadata=_spec(
            "algorithms",
            "accepted token algorithms, comma-separated (default: HS256 with jwt_secret, "
            "RS256,ES256 with jwt_public_key)",
            off=True,
            choices=JWT_ALGORITHMS,
        ),
    )
    jwt_audience: str | None = field(
        default=None, metadata=_spec("optstr", "required token audience (aud)", off=True)
    )
    jwt_issuer: str | None = field(
        default=None, metadata=_spec("optstr", "required token issuer (iss)", off=True)
    )
    jwt_leeway: float = field(
        default=0.0, metadata=_spec("duration", "clock skew allowed on token exp/nbf", lo=0)
    )
    auth_timeout: float = field(
        default=10.0,
        metadata=_spec("duration", "time a new connection has to authenticate", **_DURATION_GT0),
    )
    heartbeat_interval: float = field(
        default=25.0,
        metadata=_spec("duration", "time between pings to each client", **_DURATION_GT0),
    )
    heartbeat_timeout: float = field(
        default=10.0,
        metadata=_spec(
            "duration",
            "time a client has to answer a ping before its session enters grace",
            note="and <= heartbeat_interval",
            **_DURATION_GT0,
        ),
    )
    grace: float = field(
        default=15.0,
        metadata=_spec("duration", "time a dropped session may come back unseen", lo=0),
    )
    inactivity_timeout: float | None = field(
        default=21600.0,
        metadata=_spec(
            "duration", "idle time after which a session is closed", off=True, **_DURATION_GT0
        ),
    )
    away_after: float | None = field(
        default=None,
        metadata=_spec(
            "duration",
            "idle time after which a session shows as away",
            off=True,
            note="and < inactivity_timeout",
            **_DURATION_GT0,
        ),
    )
    max_frame_bytes: int = field(
        default=65536,
        metadata=_spec("size", "largest client frame accepted", lo=512, hi=16 * _MiB),
    )
    max_rooms_per_session: int = field(
        default=100, metadata=_spec("int", "rooms one session may be in", lo=1)
    )
    max_subscriptions_per_session: int = field(
        default=1000, metadata=_spec("int", "users one session may watch", lo=0)
    )
    rate_limit: float = field(
        default=50.0,
        metadata=_spec("float", "messages per second per connection", lo=0, lo_open=True),
    )
    rate_burst: int = field(
        default=100, metadata=_spec("int", "messages a connection may send in a burst", lo=1)
    )
    send_queue_bytes: int = field(
        default=1048576,
        metadata=_spec("size", "bytes buffered for one client before it counts as full", lo=4096),
    )
    slow_consumer_timeout: float = field(
        default=5.0,
        metadata=_spec(
            "duration",
            "time a client's send queue may stay full before it is closed",
            **_DURATION_GT0,
        ),
    )
    presence_batch_window: float | None = field(
        default=0.025,
        metadata=_spec(
            "duration",
            "membership events of a room arriving within this window of the last one sent are "
            "delivered together in one room.batch frame",
            off=True,
            **_DURATION_GT0,
        ),
    )
    room_summary_above: int | None = field(
        default=None,
        metadata=_spec(
            "int",
            "rooms with more visible members than this send room.summary (count and version) "
            "instead of member events (default: off, every room sends member events)",
            lo=1,
            off=True,
        ),
    )
    room_summary_interval: float = field(
        default=1.0,
        metadata=_spec(
            "duration", "at most one room.summary per room this often", **_DURATION_GT0
        ),
    )
    history_size: int = field(
        default=100,
        metadata=_spec(
            "int", "room events (messages, edits, deletes) kept for recovery and history", lo=0
        ),
    )
    history_ttl: float = field(
        default=3600.0,
        metadata=_spec("duration", "how long room events are kept for recovery", **_DURATION_GT0),
    )
    max_message_bytes: int = field(
        default=16384,
        metadata=_spec(
            "size",
            "largest message body (JSON-encoded)",
            lo=16,
            hi=16 * _MiB,
            note="and <= max_frame_bytes",
        ),
    )
    message_rate: float = field(
        default=10.0,
        metadata=_spec("float", "room messages per second per connection", lo=0, lo_open=True),
    )
    message_burst: int = field(
        default=20, metadata=_spec("int", "room messages a connection may send in a burst", lo=1)
    )
    typing_timeout: float = field(
        default=5.0,
        metadata=_spec(
            "duration", "typing stops by itself after this long without a renewal", **_DURATION_GT0
        ),
    )
    typing_throttle: float = field(
        default=1.0,
        metadata=_spec(
            "duration",
            "typing.start renewals from one session closer together than this are ignored",
            lo=0,
        ),
    )
    redis: str | None = field(
        default=None,
        metadata=_spec(
            "optstr",
            "Valkey/Redis URL for shared state and fan-out across nodes: redis://host:port/db, "
            "rediss://..., or redis+cluster://host:port,host:port (default: in-memory, one "
            "process)",
            off=True,
            secret=True,
        ),
    )
    redis_prefix: str = field(
        default="pd", metadata=_spec("str", "prefix of every Redis key (one per deployment)")
    )
    broker: str | None = field(
        default=None,
        metadata=_spec(
            "optstr",
            "event broker URL: nats://host:port (default: Redis pub/sub with --redis, in-process "
            "without)",
            off=True,
        ),
    )
    lease_ttl: float = field(
        default=8.0,
        metadata=_spec(
            "duration",
            "a node that stops renewing its lease this long is dead: its sessions enter grace",
            **_DURATION_GT0,
        ),
    )
    lease_interval: float = field(
        default=2.0,
        metadata=_spec(
            "duration",
            "how often a node renews its lease and its sessions' expiry",
            note="and < lease_ttl / 2",
            **_DURATION_GT0,
        ),
    )
    session_ttl: float = field(
        default=60.0,
        metadata=_spec(
            "duration",
            "failsafe expiry of every shared entry, refreshed while its node lives",
            **_DURATION_GT0,
        ),
    )
    log_level: LogLevel = field(
        default="info",
        metadata=_spec("choice", "logging level", choices=("debug", "info", "warning", "error")),
    )

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            spec: _Spec = f.metadata["spec"]
            value = _coerce(f.name, spec, getattr(self, f.name), "")
            _check_range(f.name, spec, value)
            object.__setattr__(self, f.name, value)
        self._check_together()

    def _check_together(self) -> None:
        """The rules that span several settings."""
        if self.heartbeat_timeout > self.heartbeat_interval:
            raise ConfigError(
                "heartbeat_timeout",
                f"{self.heartbeat_timeout:g}s is more than heartbeat_interval "
                f"({self.heartbeat_interval:g}s); allowed: > 0 and <= heartbeat_interval",
            )
        if (
            self.away_after is not None
            and self.inactivity_timeout is not None
            and self.away_after >= self.inactivity_timeout
        ):
            raise ConfigError(
                "away_after",
                f"{self.away_after:g}s is not less than inactivity_timeout "
                f"({self.inactivity_timeout:g}s); allowed: > 0 and < inactivity_timeout, or off",
            )
        if self.redis is not None and not self.redis.startswith(_REDIS_SCHEMES):
            raise ConfigError(
                "redis",
                f"{self.redis.split('@')[-1]!r} is not a Redis URL; allowed: "
                + ", ".join(f"{s}..." for s in _REDIS_SCHEMES),
            )
        if self.broker is not None and not self.broker.startswith(("nats://", "tls://")):
            raise ConfigError(
                "broker", f"{self.broker!r} is not a broker URL; allowed: nats://host:port"
            )
        if self.broker is not None and self.redis is None:
            raise ConfigError(
                "broker", "a NATS broker needs shared state: set redis as well, or neither"
            )
        if self.workers > 1 and self.redis is None:
            raise ConfigError(
                "workers",
                f"{self.workers} workers need shared state: set redis as well, or use 1 worker",
            )
        if self.workers > 1 and self.port == 0:
            raise ConfigError(
                "port", "workers share one port: give a port number (0 would give each its own)"
            )
        if self.lease_interval * 2 >= self.lease_ttl:
            raise ConfigError(
                "lease_interval",
                f"{self.lease_interval:g}s is not less than half of lease_ttl "
                f"({self.lease_ttl:g}s); allowed: > 0 and < lease_ttl / 2",
            )
        if self.max_message_bytes > self.max_frame_bytes:
            raise ConfigError(
                "max_message_bytes",
                f"{self.max_message_bytes} bytes is more than max_frame_bytes "
                f"({self.max_frame_bytes}); allowed: 16 bytes .. max_frame_bytes",
            )
        if self.auth_mode == "jwt" and self.jwt_secret is None and self.jwt_public_key is None:
            raise ConfigError(
                "auth_mode",
                "'jwt' needs a key: set jwt_secret (HS256) or jwt_public_key (RS256/ES256), "
                "or use auth_mode 'insecure' for development",
            )
        # Explicit algorithms are checked against the keys unless auth is explicitly off: an
        # algorithm list without its key most likely means a key that failed to arrive.
        if self.effective_auth_mode == "jwt" or (
            self.jwt_algorithms is not None and self.auth_mode is None
        ):
            for alg in self.effective_jwt_algorithms:
                needs = "jwt_secret" if alg.startswith("HS") else "jwt_public_key"
                if getattr(self, needs) is None:
                    raise ConfigError(
                        "jwt_algorithms",
                        f"{alg!r} needs {needs}, which is not set; set {needs} or choose "
                        f"algorithms that match the key you have",
                    )

    @property
    def store(self) -> str:
        """Where shared state lives: ``"redis"`` with a Redis URL, else ``"memory"``."""
        return "memory" if self.redis is None else "redis"

    @property
    def effective_auth_mode(self) -> AuthMode:
        """``auth_mode`` resolved: ``"jwt"`` when a key is set, else ``"insecure"``."""
        if self.auth_mode is not None:
            return self.auth_mode
        if self.jwt_secret is not None or self.jwt_public_key is not None:
            return "jwt"
        return "insecure"

    @property
    def effective_jwt_algorithms(self) -> tuple[str, ...]:
        """``jwt_algorithms`` resolved: HS256 with a secret, RS256+ES256 with a public key."""
        if self.jwt_algorithms is not None:
            return self.jwt_algorithms
        algs: tuple[str, ...] = ()
        if self.jwt_secret is not None:
            algs += ("HS256",)
        if self.jwt_public_key is not None:
            algs += ("RS256", "ES256")
        return algs

    def replace(self, **changes: object) -> Settings:
        """A validated copy with ``changes`` applied (values as typed or as text)."""
        for key in changes:
            _check_known(key, "")
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


# --- coercion and range checks -----------------------------------------------------------


def _coerce(key: str, spec: _Spec, value: object, origin: str) -> Any:
    """Turn a value from any source (typed, TOML or text) into the setting's type."""
    shown = f"{value!r}{origin}"
    if value is None:
        if spec.off:
            return None
        raise ConfigError(key, f"a value is required; allowed: {spec.allowed()}")
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
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(
            key,
            f"{shown} is not allowed; allowed: {spec.allowed()}"
            + (" (leave it unset for none)" if spec.off else ""),
        )
    if spec.kind == "pem":
        return _read_pem(key, value)
    return value


def _coerce_algorithms(key: str, spec: _Spec, value: object, shown: str) -> tuple[str, ...]:
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


def _check_range(key: str, spec: _Spec, value: object) -> None:
    if not isinstance(value, int | float) or (spec.lo is None and spec.hi is None):
        return
    low_ok = spec.lo is None or (value > spec.lo if spec.lo_open else value >= spec.lo)
    high_ok = spec.hi is None or value <= spec.hi
    if not (low_ok and high_ok):
        raise ConfigError(key, f"{spec.fmt(value)} is out of range; allowed: {spec.allowed()}")


_FIELDS: dict[str, _Spec] = {f.name: f.metadata["spec"] for f in dataclasses.fields(Settings)}


def _check_known(key: str, where: str) -> None:
    if key in _FIELDS:
        return
    close = difflib.get_close_matches(key, _FIELDS, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConfigError(
        key, f"unknown setting {key!r}{where}{hint}; known settings: {', '.join(_FIELDS)}"
    )


# --- sources -----------------------------------------------------------------------------


def _read_toml(path: Path) -> dict[str, object]:
    """The settings table of a TOML file (flat, or under ``[presenced]``)."""
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError("config", f"config file {str(path)!r} not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("config", f"cannot parse config file {str(path)!r}: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("config", f"cannot read config file {str(path)!r}: {exc}") from None
    table = data.get("presenced")
    if not isinstance(table, dict):
        return data
    stray = [k for k, v in data.items() if k != "presenced" and not isinstance(v, dict)]
    if stray:
        raise ConfigError(
            stray[0],
            f"{stray[0]!r} is outside the [presenced] table in "
            f"{str(path)!r}; move it under [presenced]",
        )
    return table


def load_settings_with_origins(
    *,
    cli: Mapping[str, object] | None = None,
    env: Mapping[str, str] | None = None,
    config_file: str | Path | None = None,
) -> tuple[Settings, dict[str, str]]:
    """Like :func:`load_settings`, and also say where each non-default setting came from.

    The origins map a key to ``"<path>"``, ``"PRESENCED_<KEY>"`` or ``"--<flag>"``.
    """
    env = os.environ if env is None else env
    raw: dict[str, object] = {}
    origins: dict[str, str] = {}

    def take(key: str, value: object, origin: str, where: str) -> None:
        _check_known(key, where)
        raw[key] = _coerce(key, _FIELDS[key], value, f" ({where.strip()})")
        origins[key] = origin

    if config_file is None and env.get(CONFIG_ENV):
        config_file = env[CONFIG_ENV]
    if config_file is not None:
        path = Path(config_file).expanduser()
        for key, value in _read_toml(path).items():
            take(key, value, str(path), f" in {str(path)!r}")
    for key in _FIELDS:
        name = ENV_PREFIX + key.upper()
        text = env.get(name)
        if text:  # an empty variable counts as unset
            take(key, text, name, f" from {name}")
    for key, value in (cli or {}).items():
        if value is not None:  # None: the flag was not given
            flag = "--" + key.replace("_", "-")
            take(key, value, flag, f" from {flag}")
    try:
        return Settings(**raw), origins  # type: ignore[arg-type]  # typed by _coerce
    except ConfigError as exc:
        if exc.key not in origins:
            raise
        # Range and cross-setting errors are found on the merged values: say where it was set.
        raise ConfigError(exc.key, f"{exc.message}; set by {origins[exc.key]}") from None


def load_settings(
    *,
    cli: Mapping[str, object] | None = None,
    env: Mapping[str, str] | None = None,
    config_file: str | Path | None = None,
) -> Settings:
    """Build validated :class:`Settings`: defaults < TOML file < environment < ``cli``.

    ``env`` defaults to ``os.environ``; the config file comes from ``config_file`` or else
    ``PRESENCED_CONFIG``. ``cli`` maps setting names to values (text or typed); ``None``
    values count as not given. Raises :class:`ConfigError` on the first problem found.
    """
    return load_settings_with_origins(cli=cli, env=env, config_file=config_file)[0]


# --- description, for the CLI ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SettingInfo:
    """What the CLI needs to know about one setting: its flag, help and how to show it."""

    name: str
    kind: str
    help: str
    allowed: str
    default: object
    secret: bool

    @property
    def flag(self) -> str:
        """The command-line flag, e.g. ``--heartbeat-interval``."""
        return "--" + self.name.replace("_", "-")

    @property
    def env_var(self) -> str:
        """The environment variable, e.g. ``PRESENCED_HEARTBEAT_INTERVAL``."""
        return ENV_PREFIX + self.name.upper()


def settings_info() -> tuple[SettingInfo, ...]:
    """One :class:`SettingInfo` per setting, in declaration order."""
    defaults = Settings()
    return tuple(
        SettingInfo(
            name, spec.kind, spec.help, spec.allowed(), getattr(defaults, name), spec.secret
        )
        for name, spec in _FIELDS.items()
    )
