"""presenced's settings: every setting, its default and its rule in one place.

:class:`Settings` is a frozen dataclass; each field carries its default *and* a small spec
(kind, allowed range, help text) in its metadata, so the defaults, the validation, the
``--help`` of every CLI flag and the ``presenced config`` listing all come from one line.
Constructing a :class:`Settings` (directly, by :meth:`Settings.replace` or by
:func:`load_settings`) validates it as a whole, so an invalid ``Settings`` cannot exist.
Sources, later wins: defaults < TOML file < ``PRESENCED_<KEY>`` environment < CLI flags.

Import from :mod:`presenced.config`, which re-exports this module's names; the machinery is
in :mod:`presenced.config.values` (parsing one value), :mod:`presenced.config.sources` (file,
environment, flags) and :mod:`presenced.config.rules` (rules across settings). Every problem
is a :class:`~presenced.errors.ConfigError`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from presenced.config.api_keys import API_SCOPES, ApiKey
from presenced.config.origins import OriginRule, parse_allowed_origins, same_origin
from presenced.config.rules import check_together
from presenced.config.sinks import (
    JetStreamTarget,
    KafkaTarget,
    RedisStreamTarget,
    parse_kafka_sinks,
    parse_nats_sinks,
    parse_redis_stream_sinks,
)
from presenced.config.sources import ENV_PREFIX, SettingInfo, describe, read_sources
from presenced.config.values import (
    JWT_ALGORITHMS,
    Spec,
    check_known,
    check_range,
    coerce,
    parse_duration,
    parse_size,
)
from presenced.config.values import MIB as _MiB  # the short names the fields below use
from presenced.config.values import field_spec as _spec
from presenced.config.webhooks import Webhook
from presenced.errors import ConfigError

__all__ = [
    "API_SCOPES",
    "ENV_PREFIX",
    "JWT_ALGORITHMS",
    "ApiKey",
    "AuthMode",
    "LogFormat",
    "LogLevel",
    "SettingInfo",
    "Settings",
    "load_settings",
    "load_settings_with_origins",
    "parse_duration",
    "parse_size",
    "settings_info",
]

AuthMode = Literal["jwt", "insecure"]
LogLevel = Literal["debug", "info", "warning", "error"]
LogFormat = Literal["text", "json"]

_DURATION_GT0: dict[str, Any] = {"lo": 0, "lo_open": True}


@dataclass(frozen=True, slots=True)
class Settings:
    """Every presenced setting, validated as a whole on construction.

    ``Settings()`` is a valid configuration (an insecure development server on
    127.0.0.1:7400). Durations are seconds; ``None`` means off / not set. ``jwt_public_key``
    given as ``@/path`` is read on construction, so the attribute always holds PEM text.
    """

    host: str = field(default="127.0.0.1", metadata=_spec("str", "address to listen on"))
    port: int | None = field(
        default=7400,
        metadata=_spec(
            "int",
            "TCP port the client WebSockets connect to",
            lo=0,
            hi=65535,
            off=True,
            note="(0 = any free port; off = no client port: an admin API node)",
        ),
    )
    admin_host: str = field(
        default="127.0.0.1",
        metadata=_spec(
            "str",
            "address of the admin port (HTTP API, /metrics, /ready); a non-loopback address "
            "needs api_keys",
        ),
    )
    admin_port: int | None = field(
        default=7401,
        metadata=_spec(
            "int",
            "TCP port of the admin HTTP API",
            lo=0,
            hi=65535,
            off=True,
            note="(0 = any free port; off = no admin port)",
        ),
    )
    api_keys: tuple[ApiKey, ...] | None = field(
        default=None,
        metadata=_spec(
            "apikeys",
            "bearer keys of the admin API, SCOPES:SECRET entries (scopes read, publish, admin; "
            "several keys for rotation), or @/path/to/file (default: none, and the admin port "
            "then serves loopback only, without auth)",
            off=True,
            secret=True,
        ),
    )
    workers: int = field(
        default=1,
        metadata=_spec(
            "int",
            "worker processes sharing the port (SO_REUSEPORT), each a node on the shared store; "
            "the admin port is then served by one more process of its own, off the workers' "
            "cores' fan-out",
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
    jwt_jwks_url: str | None = field(
        default=None,
        metadata=_spec(
            "optstr",
            "an http(s) URL of the identity provider's JSON Web Key Set: RS*/ES* tokens are "
            "checked against the key their kid names (fetched at start, every "
            "jwt_jwks_refresh, and at once for an unknown kid)",
            off=True,
        ),
    )
    jwt_jwks_refresh: float = field(
        default=300.0,
        metadata=_spec("duration", "how often the JWKS is fetched again", **_DURATION_GT0),
    )
    jwt_leeway: float = field(
        default=0.0, metadata=_spec("duration", "clock skew allowed on token exp/nbf", lo=0)
    )
    allowed_origins: OriginRule | None = field(
        default=None,
        metadata=_spec(
            "origins",
            "web pages (the upgrade's Origin) that may connect: origins such as "
            "https://app.example.com or https://*.example.com, or * for any (default: any "
            "in the insecure mode, else same-origin pages only; clients that send no Origin "
            "always); refused upgrades get HTTP 403",
            off=True,
            parse=parse_allowed_origins,
        ),
    )
    watch_without_claim: Literal["any", "none"] = field(
        default="any",
        metadata=_spec(
            "choice",
            "whose presence a session may watch when its token has no `watch` claim (the "
            "claim lists user-id patterns and always decides when present)",
            choices=("any", "none"),
        ),
    )
    max_auth_bytes: int = field(
        default=32 * 1024,
        metadata=_spec(
            "size",
            "most bytes a connection may send before it authenticated (the auth frame with "
            "its token and device_info); more closes it with 1009",
            lo=1024,
            hi=16 * _MiB,
        ),
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
    max_connections_per_user: int = field(
        default=0,
        metadata=_spec(
            "int",
            "sessions one user may have at once, across every node on the shared store "
            "(active or in grace; a resume is not a new one); a new session over it is "
            "refused at auth with TOO_MANY_CONNECTIONS and close 4012",
            lo=0,
            note="(0 = unlimited)",
        ),
    )
    max_connections_per_ip: int = field(
        default=0,
        metadata=_spec(
            "int",
            "open WebSockets one client address may have on a node, authenticated or not "
            "(the address X-Forwarded-For names when the peer is in trusted_proxies); one "
            "over it is closed with 4012 at once, before it authenticates",
            lo=0,
            note="(0 = unlimited)",
        ),
    )
    max_connect_rate_per_ip: float = field(
        default=0.0,
        metadata=_spec(
            "float",
            "new WebSockets one client address may open per second on a node, in bursts of "
            "up to ten seconds' worth (the address as for max_connections_per_ip); one over "
            "it is closed with 4012 at once, before anything is read from it",
            lo=0,
            note="(0 = unlimited)",
        ),
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
            "a room sends at most one membership frame per window (two back to back after a "
            "quiet spell); events beyond are delivered together in one room.batch frame (the "
            "window grows with rooms over 500 members on a node, in proportion, at most 40x)",
            off=True,
            **_DURATION_GT0,
        ),
    )
    order_hold: float = field(
        default=1.0,
        metadata=_spec(
            "duration",
            "with a networked store, how long a node holds a room event that arrived ahead of "
            "its number before it fills the missing messages from history (or gives up on a "
            "missing member version): order is kept either way",
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
        metadata=_spec("duration", "at most one room.summary per room this often", **_DURATION_GT0),
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
    webhooks: tuple[Webhook, ...] | None = field(
        default=None,
        metadata=_spec(
            "webhooks",
            "receivers of the event export: http(s) URLs, each optionally followed by "
            "#events=PATTERN+PATTERN (e.g. #events=member.*+user.offline; default every type "
            "but typing); see docs/events.md",
            off=True,
        ),
    )
    webhook_secret: tuple[str, ...] | None = field(
        default=None,
        metadata=_spec(
            "secrets",
            "HMAC-SHA256 key the webhook deliveries are signed with (16+ characters; several, "
            "comma-separated, while rotating; or @/path/to/file); required with webhooks",
            off=True,
            secret=True,
        ),
    )
    webhook_timeout: float = field(
        default=10.0,
        metadata=_spec("duration", "how long a webhook delivery may take", **_DURATION_GT0),
    )
    webhook_tries: int = field(
        default=8,
        metadata=_spec(
            "int", "delivery attempts of a batch before it goes to the dead letters", lo=1, hi=100
        ),
    )
    webhook_backoff: float = field(
        default=0.5,
        metadata=_spec(
            "duration",
            "first retry delay of a failed delivery; doubled each try (with jitter), up to 60s",
            **_DURATION_GT0,
        ),
    )
    webhook_batch: int = field(
        default=100,
        metadata=_spec("int", "most events in one webhook delivery", lo=1, hi=10_000),
    )
    redis_stream_sinks: tuple[RedisStreamTarget, ...] | None = field(
        default=None,
        metadata=_spec(
            "sinks",
            "Redis streams the events are appended to (XADD, one entry per event, capped with "
            "MAXLEN ~): redis://HOST:PORT/DB?stream=NAME&maxlen=N, each optionally followed by "
            "#events=...; see docs/events.md",
            off=True,
            secret=True,  # the URL may carry a password
            note="(redis://[:PASSWORD@]HOST:PORT[/DB]?stream=NAME&maxlen=N)",
            parse=parse_redis_stream_sinks,
        ),
    )
    nats_sinks: tuple[JetStreamTarget, ...] | None = field(
        default=None,
        metadata=_spec(
            "sinks",
            "NATS JetStream streams the events are published to (subject PREFIX.<type>, acked, "
            "Nats-Msg-Id = event id; the stream is created if missing): "
            "nats://HOST:PORT?stream=NAME&subject=PREFIX, each optionally followed by "
            "#events=...; see docs/events.md",
            off=True,
            secret=True,  # the URL may carry a password
            note="(nats://[USER:PASSWORD@]HOST:PORT?stream=NAME&subject=PREFIX)",
            parse=parse_nats_sinks,
        ),
    )
    kafka_sinks: tuple[KafkaTarget, ...] | None = field(
        default=None,
        metadata=_spec(
            "sinks",
            "Kafka topics the events are produced to (key = the event's key, acks=all; batches "
            "that used up their tries also go to dead_letter_topic): "
            "kafka://HOST:PORT[,HOST:PORT]?topic=T&dead_letter_topic=T2, each optionally "
            "followed by #events=...; see docs/events.md",
            off=True,
            note="(kafka://HOST:PORT[,HOST:PORT]?topic=T&dead_letter_topic=T2&idempotent=0|1)",
            parse=parse_kafka_sinks,
        ),
    )
    demo: bool = field(
        default=False,
        metadata=_spec(
            "bool",
            "serve the demo chat page on the client port (http://HOST:PORT/); the page names "
            "its own users, so it needs the insecure auth mode (no JWT key); see "
            "docs/operations.md",
        ),
    )
    log_level: LogLevel = field(
        default="info",
        metadata=_spec("choice", "logging level", choices=("debug", "info", "warning", "error")),
    )
    log_format: LogFormat = field(
        default="text",
        metadata=_spec(
            "choice",
            "log line format: text, or json (one object per line: time, level, logger, "
            "message and the line's fields)",
            choices=("text", "json"),
        ),
    )
    trusted_proxies: tuple[str, ...] | None = field(
        default=None,
        metadata=_spec(
            "networks",
            "proxies whose X-Forwarded-For names the client address in the logs and for "
            "max_connections_per_ip (addresses or CIDR blocks); from any other peer the header "
            "is ignored",
            off=True,
        ),
    )

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            spec: Spec = f.metadata["spec"]
            value = coerce(f.name, spec, getattr(self, f.name), "")
            check_range(f.name, spec, value)
            object.__setattr__(self, f.name, value)
        check_together(self)

    @property
    def store(self) -> str:
        """Where shared state lives: ``"redis"`` with a Redis URL, else ``"memory"``."""
        return "memory" if self.redis is None else "redis"

    def origin_allowed(self, origin: str | None, host: str) -> bool:
        """Whether an upgrade with this ``Origin`` header (None: none sent) and ``Host``
        header may become a WebSocket (``allowed_origins``; config/origins.py)."""
        if origin is None:
            return True
        if self.allowed_origins is not None:
            return self.allowed_origins.allows(origin)
        return self.effective_auth_mode == "insecure" or same_origin(origin, host)

    @property
    def effective_auth_mode(self) -> AuthMode:
        """``auth_mode`` resolved: ``"jwt"`` when a key is set, else ``"insecure"``."""
        if self.auth_mode is not None:
            return self.auth_mode
        if self.jwt_secret is not None or self.jwt_public_key is not None:
            return "jwt"
        if self.jwt_jwks_url is not None:
            return "jwt"
        return "insecure"

    @property
    def effective_jwt_algorithms(self) -> tuple[str, ...]:
        """``jwt_algorithms`` resolved: HS256 with a secret, RS256+ES256 with a public key
        or a JWKS."""
        if self.jwt_algorithms is not None:
            return self.jwt_algorithms
        algs: tuple[str, ...] = ()
        if self.jwt_secret is not None:
            algs += ("HS256",)
        if self.jwt_public_key is not None or self.jwt_jwks_url is not None:
            algs += ("RS256", "ES256")
        return algs

    def replace(self, **changes: object) -> Settings:
        """A validated copy with ``changes`` applied (values as typed or as text)."""
        for key in changes:
            check_known(key, "", _FIELDS)
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


_FIELDS: dict[str, Spec] = {f.name: f.metadata["spec"] for f in dataclasses.fields(Settings)}


# --- loading, for the server and the CLI -------------------------------------------------


def load_settings_with_origins(
    *,
    cli: Mapping[str, object] | None = None,
    env: Mapping[str, str] | None = None,
    config_file: str | Path | None = None,
) -> tuple[Settings, dict[str, str]]:
    """Like :func:`load_settings`, and also say where each non-default setting came from.

    The origins map a key to ``"<path>"``, ``"PRESENCED_<KEY>"`` or ``"--<flag>"``.
    """
    raw, origins = read_sources(_FIELDS, cli=cli, env=env, config_file=config_file)
    try:
        return Settings(**raw), origins  # type: ignore[arg-type]  # typed by coerce
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


def settings_info() -> tuple[SettingInfo, ...]:
    """One :class:`SettingInfo` per setting, in declaration order."""
    return describe(_FIELDS, Settings())
