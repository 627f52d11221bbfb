"""Typing indicators of one node's sessions: who types where, and the renewal throttle.

A session typing in a room has an indicator keyed by (session, room). ``start`` renews it at
most once per ``throttle`` seconds (a client sends typing.start on every keystroke; only a
renewal reaches the store and pushes the expiry back); ``stop`` ends it. The expiry itself is
a TYPING deadline in the node's :class:`~presenced.presence.liveness.SessionRegistry`, keyed by
:func:`typing_key`. Pure: time is an argument.
"""

from __future__ import annotations

from presenced.typing import RoomId, SessionId

__all__ = ["TypingBook", "typing_key", "typing_of_key"]

_SEP = "\x1f"  # ids never hold control characters


def typing_key(session: SessionId, room: RoomId) -> str:
    """The deadline key of a session's indicator in a room."""
    return f"{session}{_SEP}{room}"


def typing_of_key(key: str) -> tuple[SessionId, RoomId]:
    session, _, room = key.partition(_SEP)
    return SessionId(session), RoomId(room)


class TypingBook:
    """When each indicator was last renewed."""

    __slots__ = ("_renewed", "throttle")

    def __init__(self, throttle: float) -> None:
        self.throttle = throttle
        self._renewed: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._renewed)

    def start(self, session: SessionId, room: RoomId, now: float) -> str | None:
        """Typing (again) at ``now``: the key to renew, or None while throttled."""
        key = typing_key(session, room)
        last = self._renewed.get(key)
        if last is not None and now - last < self.throttle:
            return None
        self._renewed[key] = now
        return key

    def stop(self, session: SessionId, room: RoomId) -> str | None:
        """Stopped: the key of the indicator it had, or None if it had none."""
        key = typing_key(session, room)
        return key if self._renewed.pop(key, None) is not None else None

    def expired(self, key: str) -> tuple[SessionId, RoomId]:
        """Its deadline fired (no renewal in time): forget it."""
        self._renewed.pop(key, None)
        return typing_of_key(key)
