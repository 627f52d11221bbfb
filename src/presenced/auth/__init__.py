"""Authentication: who a connecting client is and which rooms it may use.

Pure and shell-free (no asyncio, no sockets): :class:`TokenVerifier` checks a client JWT at
a wall-clock time it is given and returns an :class:`Identity`; :func:`insecure_identity`
does the same for development mode; :func:`room_allowed` applies a token's room patterns.
"""

from presenced.auth.identity import Identity
from presenced.auth.rooms import room_allowed
from presenced.auth.tokens import SUPPORTED_ALGORITHMS, TokenVerifier, insecure_identity

__all__ = [
    "SUPPORTED_ALGORITHMS",
    "Identity",
    "TokenVerifier",
    "insecure_identity",
    "room_allowed",
]
