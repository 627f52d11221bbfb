"""Room patterns: which rooms a token lets its user join.

A token's ``rooms`` claim is a list of patterns; :func:`room_allowed` answers whether a room
id matches one of them. It runs on every ``room.join``, ``room.members`` and ``room.count``,
so each distinct tuple of patterns is compiled once into a matcher and cached.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

__all__ = ["room_allowed"]

# Room ids use ':' as the segment separator ("org:acme:general"); a single '*' stays inside
# one segment, '**' may cross segments.
_STARS = re.compile(r"(\*+)")


def _glob_to_regex(pattern: str) -> str:
    parts: list[str] = []
    for i, piece in enumerate(_STARS.split(pattern)):
        if i % 2 == 0:  # literal text between runs of stars
            parts.append(re.escape(piece))
        elif len(piece) == 1:
            parts.append("[^:]*")
        else:  # '**' (or a longer run, same meaning): anything, ':' included
            parts.append(".*")
    return "".join(parts)


@functools.lru_cache(maxsize=4096)
def _matcher(patterns: tuple[str, ...]) -> Callable[[str], bool]:
    exact = frozenset(p for p in patterns if "*" not in p)
    globs = [p for p in patterns if "*" in p]
    if not globs:
        return exact.__contains__
    # One alternation for all globs: one regex call per check, whatever the number of patterns.
    regex = re.compile("|".join(f"(?:{_glob_to_regex(p)})" for p in globs), re.DOTALL)
    fullmatch = regex.fullmatch

    def allowed(room: str) -> bool:
        return room in exact or fullmatch(room) is not None

    return allowed


def room_allowed(patterns: tuple[str, ...] | None, room: str) -> bool:
    """Whether ``room`` matches one of ``patterns``; ``None`` allows every room.

    Pattern syntax (room ids use ``:`` to separate segments):

    - ``*`` matches any run of characters, possibly empty, except ``:`` (it stays within one
      segment): ``"chat:*"`` matches ``"chat:general"`` but not ``"chat:a:b"``;
      ``"game:lobby-*"`` matches ``"game:lobby-7"``.
    - ``**`` matches anything, ``:`` included: ``"org:acme:**"`` matches ``"org:acme:x"`` and
      ``"org:acme:x:y"`` (and ``"org:acme:"``), not ``"org:acme"``. Three or more stars in a
      row mean the same as ``**``.
    - Every other character matches itself; a pattern without ``*`` matches only the room of
      exactly that name. There is no escape for ``*`` and no other special character.

    ``None`` (the token has no ``rooms`` claim) allows every room; an empty tuple allows none.
    The whole room id must match (the pattern is anchored at both ends).
    """
    if patterns is None:
        return True
    return _matcher(patterns)(room)
