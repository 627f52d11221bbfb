"""The rules that span several settings, checked once every value is in place.

Each setting's own rule (kind, range) is in its :class:`~presenced.config.values.Spec`;
what is left are the rules between settings (a timeout below an interval, a broker that
needs shared state, an algorithm that needs its key). :class:`~presenced.config.Settings`
runs :func:`check_together` on construction, after every value has been coerced and
range-checked, so an invalid combination cannot exist either.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from presenced.errors import ConfigError

if TYPE_CHECKING:
    from presenced.config.settings import Settings

__all__ = ["REDIS_SCHEMES", "check_together", "is_loopback"]

REDIS_SCHEMES = ("redis://", "rediss://", "redis+cluster://", "rediss+cluster://", "unix://")
"""The URL schemes the ``redis`` setting accepts."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` names only this machine (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_together(settings: Settings) -> None:
    """Raise :class:`ConfigError` (naming the setting to change) if the settings clash."""
    if (
        settings.admin_port is not None
        and settings.api_keys is None
        and not is_loopback(settings.admin_host)
    ):
        raise ConfigError(
            "api_keys",
            f"the admin port on {settings.admin_host!r} is reachable from other machines and "
            "needs a key: set api_keys (SCOPES:SECRET), or bind admin_host to 127.0.0.1",
        )
    if settings.webhooks is not None and settings.webhook_secret is None:
        raise ConfigError(
            "webhook_secret",
            "webhooks are set but not the secret that signs them: set webhook_secret (16+ "
            "characters, or @/path/to/file) so that receivers can tell forged calls apart",
        )
    if settings.heartbeat_timeout > settings.heartbeat_interval:
        raise ConfigError(
            "heartbeat_timeout",
            f"{settings.heartbeat_timeout:g}s is more than heartbeat_interval "
            f"({settings.heartbeat_interval:g}s); allowed: > 0 and <= heartbeat_interval",
        )
    if (
        settings.away_after is not None
        and settings.inactivity_timeout is not None
        and settings.away_after >= settings.inactivity_timeout
    ):
        raise ConfigError(
            "away_after",
            f"{settings.away_after:g}s is not less than inactivity_timeout "
            f"({settings.inactivity_timeout:g}s); allowed: > 0 and < inactivity_timeout, or off",
        )
    if settings.redis is not None and not settings.redis.startswith(REDIS_SCHEMES):
        raise ConfigError(
            "redis",
            f"{settings.redis.split('@')[-1]!r} is not a Redis URL; allowed: "
            + ", ".join(f"{s}..." for s in REDIS_SCHEMES),
        )
    if settings.broker is not None and not settings.broker.startswith(("nats://", "tls://")):
        raise ConfigError(
            "broker", f"{settings.broker!r} is not a broker URL; allowed: nats://host:port"
        )
    if settings.broker is not None and settings.redis is None:
        raise ConfigError(
            "broker", "a NATS broker needs shared state: set redis as well, or neither"
        )
    if settings.workers > 1 and settings.redis is None:
        raise ConfigError(
            "workers",
            f"{settings.workers} workers need shared state: set redis as well, or use 1 worker",
        )
    if settings.jwt_jwks_url is not None and not settings.jwt_jwks_url.startswith(
        ("http://", "https://")
    ):
        raise ConfigError(
            "jwt_jwks_url", f"{settings.jwt_jwks_url!r} is not allowed; allowed: an http(s) URL"
        )
    if settings.port is None and settings.redis is None:
        raise ConfigError(
            "port",
            "off (a node without a client port) needs shared state to answer for: set redis "
            "as well, or give a port number",
        )
    if settings.demo and settings.port is None:
        raise ConfigError("demo", "the demo page is served on the client port: give a port")
    if settings.demo and settings.effective_auth_mode == "jwt":
        raise ConfigError(
            "demo",
            "the demo page lets anyone name their own user, which needs auth_mode 'insecure': "
            "unset the JWT keys (jwt_secret, jwt_public_key, jwt_jwks_url) or drop demo",
        )
    if settings.port is None and settings.admin_port is None:
        raise ConfigError(
            "port", "off with admin_port off too leaves the node nothing to serve: give one"
        )
    if settings.port is None and settings.workers > 1:
        raise ConfigError("workers", "a node without a client port runs as 1 worker")
    if settings.workers > 1 and settings.port == 0:
        raise ConfigError(
            "port", "workers share one port: give a port number (0 would give each its own)"
        )
    if settings.lease_interval * 2 >= settings.lease_ttl:
        raise ConfigError(
            "lease_interval",
            f"{settings.lease_interval:g}s is not less than half of lease_ttl "
            f"({settings.lease_ttl:g}s); allowed: > 0 and < lease_ttl / 2",
        )
    if settings.max_message_bytes > settings.max_frame_bytes:
        raise ConfigError(
            "max_message_bytes",
            f"{settings.max_message_bytes} bytes is more than max_frame_bytes "
            f"({settings.max_frame_bytes}); allowed: 16 bytes .. max_frame_bytes",
        )
    if (
        settings.auth_mode == "jwt"
        and settings.jwt_secret is None
        and settings.jwt_public_key is None
        and settings.jwt_jwks_url is None
    ):
        raise ConfigError(
            "auth_mode",
            "'jwt' needs a key: set jwt_secret (HS256), jwt_public_key (RS256/ES256) or "
            "jwt_jwks_url, or use auth_mode 'insecure' for development",
        )
    # Explicit algorithms are checked against the keys unless auth is explicitly off: an
    # algorithm list without its key most likely means a key that failed to arrive.
    if settings.effective_auth_mode == "jwt" or (
        settings.jwt_algorithms is not None and settings.auth_mode is None
    ):
        for alg in settings.effective_jwt_algorithms:
            needs = "jwt_secret" if alg.startswith("HS") else "jwt_public_key"
            if needs == "jwt_public_key" and settings.jwt_jwks_url is not None:
                continue  # the JWKS holds the keys
            if getattr(settings, needs) is None:
                raise ConfigError(
                    "jwt_algorithms",
                    f"{alg!r} needs {needs}, which is not set; set {needs} or choose "
                    f"algorithms that match the key you have",
                )
