"""Signing keys from a JWKS URL (``jwt_jwks_url``): fetched, cached, refreshed, rotated.

An identity provider (Auth0, Keycloak, Cognito, your own) publishes its public keys as a JSON
Web Key Set and signs each token with one of them, named by the token's ``kid`` header. The
node keeps the set in memory: it fetches it at start, again every ``refresh`` seconds, and at
once (at most every ``MIN_REFETCH`` seconds, one fetch at a time) when a token names a ``kid``
it does not know, which is how a rotated-in key is picked up before the schedule. A failed
fetch keeps the keys it had (and is logged); a key that left the set is refused after the
next fetch. Fetching is asynchronous (aiohttp): verifying stays synchronous, with the keys in
hand (:meth:`JwksKeys.get`); the caller awaits :meth:`JwksKeys.ensure` for a token's ``kid``
first. PyJWT parses the keys (``PyJWKSet``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import jwt

__all__ = ["MIN_REFETCH", "JwksKeys"]

log = logging.getLogger(__name__)

MIN_REFETCH = 10.0
"""Seconds between two fetches made for unknown ``kid`` values (a flood of forged tokens
with random kids must not become a flood of fetches; the scheduled ones do not count)."""

FETCH_TIMEOUT = 5.0


class JwksKeys:
    """The key set at ``url``: ``kid`` -> public key."""

    def __init__(
        self, url: str, *, refresh: float = 300.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.url = url
        self.refresh = refresh
        self._clock = clock
        self._keys: dict[str, Any] = {}
        self._unknown_at = float("-inf")  # the last fetch made for an unknown kid
        self._fetching: asyncio.Task[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self.fetches = 0

    def get(self, kid: str) -> Any | None:
        """The public key (a cryptography key object) named ``kid``, if the set has it."""
        return self._keys.get(kid)

    @property
    def kids(self) -> list[str]:
        return sorted(self._keys)

    async def ensure(self, kid: str | None) -> None:
        """Fetch the set now if ``kid`` is unknown and the last fetch is old enough."""
        if kid is None or kid in self._keys:
            return
        now = self._clock()
        if now - self._unknown_at < MIN_REFETCH and self._fetching is None:
            return
        self._unknown_at = now
        await self.fetch()

    async def fetch(self) -> None:
        """Fetch and swap in the set (one fetch at a time; joiners wait for it)."""
        if self._fetching is None:
            self._fetching = asyncio.get_running_loop().create_task(self._fetch())
        task = self._fetching
        try:
            await asyncio.shield(task)
        finally:
            if task.done() and self._fetching is task:
                self._fetching = None

    async def _fetch(self) -> None:
        self.fetches += 1
        try:
            timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT)
            async with (
                aiohttp.ClientSession(timeout=timeout) as http,
                http.get(self.url, headers={"Accept": "application/json"}) as reply,
            ):
                if reply.status != 200:
                    raise ValueError(f"HTTP {reply.status}")
                data = await reply.json(content_type=None)
            keys = _parse(data)
        except Exception as exc:  # the set it had stays in use
            log.warning(
                "JWKS %s: fetch failed (%s); keeping %d key(s)", self.url, exc, len(self._keys)
            )
            return
        if set(keys) != set(self._keys):
            log.info("JWKS %s: keys now %s", self.url, ", ".join(sorted(keys)) or "none")
        self._keys = keys

    async def start(self) -> None:
        """The first fetch (awaited), then a refresh every ``refresh`` seconds."""
        await self.fetch()
        self._task = asyncio.get_running_loop().create_task(self._refresh_loop())

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.refresh)
            await self.fetch()

    async def close(self) -> None:
        for task in (self._task, self._fetching):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._task = self._fetching = None


def _parse(data: object) -> dict[str, Any]:
    """``kid`` -> key of every usable signing key in a JWKS document."""
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise ValueError("not a JWKS document (no `keys` list)")
    keys: dict[str, Any] = {}
    for entry in data["keys"]:
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        kid = entry.get("kid")
        if not isinstance(kid, str) or entry.get("kty") not in ("RSA", "EC"):
            continue
        try:
            keys[kid] = jwt.PyJWK(entry).key
        except jwt.PyJWTError as exc:
            log.warning("JWKS: key %r skipped (%s)", kid, exc)
    return keys
