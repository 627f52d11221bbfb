"""Bearer API keys of the admin port, checked in constant time.

The presented key is hashed and compared with the hash of every configured key, each one,
with :func:`hmac.compare_digest`: the time taken says nothing about which key or how many
characters matched. With no key configured the admin port is open; the settings refuse
that unless it listens on loopback only.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from presenced.config import ApiKey
from presenced.http.errors import ApiError

__all__ = ["KeyRing"]


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()


class KeyRing:
    """The configured keys; :meth:`check` says whether a request may do ``scope``."""

    def __init__(self, keys: Iterable[ApiKey] | None) -> None:
        self._keys = [(_digest(k.secret), k) for k in keys or ()]

    @property
    def open(self) -> bool:
        """No key is configured: every request is allowed (loopback only)."""
        return not self._keys

    def check(self, authorization: str | None, scope: str) -> None:
        """Raise a 401 (no or unknown key) or a 403 (the key lacks ``scope``)."""
        if self.open:
            return
        if not authorization:
            raise ApiError(401, "no API key: send the header `Authorization: Bearer <key>`")
        kind, _, presented = authorization.partition(" ")
        if kind.lower() != "bearer" or not presented.strip():
            raise ApiError(401, "the Authorization header must be `Bearer <key>`")
        digest = _digest(presented.strip())
        found: ApiKey | None = None
        for stored, key in self._keys:  # every key, no early exit: constant time
            if hmac.compare_digest(stored, digest):
                found = key
        if found is None:
            raise ApiError(401, "the API key is not valid (revoked, mistyped, or another server's)")
        if not found.allows(scope):
            held = ", ".join(sorted(found.scopes))
            raise ApiError(
                403, f"this API key has scope {held}; this request needs {scope} (or above)"
            )
