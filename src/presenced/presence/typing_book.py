"""Typing indicators of one node's sessions: who types where, and the renewal throttle.

A session typing in a room has an indicator keyed by (session, room). ``start`` renews it at
most once per ``throttle`` seconds (a client sends typing.start on every keystroke; only a
renewal reaches the store and pushes the expiry back); ``stop`` ends it. A start within
``throttle`` of the indicator's last start is ignored even after a stop, so a client
alternating typing.start and typing.stop makes at most one start and one stop per
``throttle`` seconds reach the room (a stop is never held back: no indicator outlives it);
such a start is not lost but deferred (:meth:`TypingBook.deferred_until`): the node applies
it when the throttle is over, unless a stop came first.
The expiry itself is a TYPING deadline in the node's
:class:`~presenced.presence.liveness.SessionRegistry`, keyed by :func:`typing_key`. Pure:
time is an argument.
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
    """When each indicator was last renewed, and when stopped ones last started."""

    __slots__ = ("_renewed", "_stopped", "throttle")

    def __init__(self, throttle: float) -> None:
        self.throttle = throttle
        self._renewed: dict[str, float] = {}
        self._stopped: dict[str, float] = {}  # stopped indicator -> when it last started

    def __len__(self) -> int:
        return len(self._renewed)

    def start(self, session: SessionId, room: RoomId, now: float) -> str | None:
        """Typing (again) at ``now``: the key to renew, or None while throttled."""
        key = typing_key(session, room)
        last = self._renewed.get(key)
        if last is None:
            last = self._stopped.pop(key, None)
        if last is not None and now - last < self.throttle:
            if key not in self._renewed:
                self._stopped[key] = last  # still cooling down
            return None
        self._renewed[key] = now
        if len(self._stopped) > 1024 + len(self._renewed):
            self._forget_cooled(now)
        return key

    def deferred_until(self, session: SessionId, room: RoomId) -> float | None:
        """When a start refused just now may go through: the end of the throttle of a
        stopped indicator's last start; None for a renewal of one that is on (nothing to
        defer: it is showing)."""
        key = typing_key(session, room)
        if key in self._renewed:
            return None
        last = self._stopped.get(key)
        return None if last is None else last + self.throttle

    def stop(self, session: SessionId, room: RoomId) -> str | None:
        """Stopped: the key of the indicator it had, or None if it had none."""
        key = typing_key(session, room)
        started = self._renewed.pop(key, None)
        if started is None:
            return None
        self._stopped[key] = started
        return key

    def _forget_cooled(self, now: float) -> None:
        """Drop the stopped indicators whose throttle is over (bounded memory: amortised
        over the starts that let the table grow)."""
        throttle = self.throttle
        self._stopped = {k: t for k, t in self._stopped.items() if now - t < throttle}

    def expired(self, key: str) -> tuple[SessionId, RoomId]:
        """Its deadline fired (no renewal in time): forget it."""
        self._renewed.pop(key, None)
        return typing_of_key(key)
