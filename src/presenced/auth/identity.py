"""Who a connection is: the result of authentication, whatever the method.

A :class:`Identity` comes out of :meth:`presenced.auth.tokens.TokenVerifier.verify` (a JWT)
or :func:`presenced.auth.tokens.insecure_identity` (development mode). The rest of presenced
only sees this value, never the token, so the session code does not care how a client
proved who it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from presenced.typing import UserId

__all__ = ["Identity"]


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated user and what its credentials allow.

    - ``user``: the user id (the token's ``sub``).
    - ``rooms``: room patterns the user may join or inspect (see
      :func:`presenced.auth.rooms.room_allowed`); ``None`` means any room, an empty tuple
      means none.
    - ``expires_at``: the token's ``exp`` as wall-clock seconds, ``None`` if it has none.
    - ``moderator``: the token's ``moderator`` claim.
    - ``watch``: user-id patterns (the rooms' syntax) whose presence the user may watch;
      ``None`` (no claim) leaves it to the ``watch_without_claim`` setting.
    - ``claims``: every claim of the token, read-only, for the app's own use (empty in
      development mode). Not part of equality's hash, so an ``Identity`` stays hashable.
    """

    user: UserId
    rooms: tuple[str, ...] | None
    expires_at: float | None
    moderator: bool
    claims: Mapping[str, object] = field(hash=False)
    watch: tuple[str, ...] | None = None
