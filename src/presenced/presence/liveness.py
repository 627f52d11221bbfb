"""The sessions a node owns, and every deadline that governs them, as data.

One :class:`DeadlineQueue` holds each session's next ping, pong deadline, grace expiry,
away-after-idle and inactivity deadline, plus the auth deadline of connections not yet
authenticated; a second one holds the prompt deadlines (:data:`PROMPT_KINDS`: typing, a
paused flooder's reads, a slow consumer), which the shell serves on a finer tick. The shell
arms one timer at :meth:`SessionRegistry.next_deadlines` and calls
:meth:`SessionRegistry.advance` when it fires: no task or timer per session.

Activity is recorded as a timestamp; the idle deadlines are checked lazily when they fire
and pushed back if activity came in since, so a busy client costs no deadline work per
message. The ping deadline is the one exception: a frame that finds it due within half an
interval moves it to a full interval (and the slack) from now, one O(1) bucket move, so a
client that heartbeats every interval never has a deadline fire at all; without the move
each such session's ping deadline fired once an interval only to be pushed back, the bulk
of an idle node's timer work.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum

from presenced.presence.deadlines import DEFAULT_WIDTH, DeadlineQueue
from presenced.presence.session import Session, SessionEvent, SessionState
from presenced.typing import SessionId

__all__ = [
    "PROMPT_KINDS",
    "Deadline",
    "DeadlineKind",
    "LivenessPolicy",
    "SessionRegistry",
    "heard_slack",
]


class DeadlineKind(Enum):
    PING = "ping"  # time to send a WebSocket ping
    PONG = "pong"  # the pong did not come in time: zombie, the session is now in GRACE
    GRACE = "grace"  # grace ran out: the session is now CLOSED
    AWAY = "away"  # idle past away_after: the session is now auto-away
    INACTIVITY = "inactivity"  # idle past inactivity_timeout: the session is now CLOSED
    AUTH = "auth"  # a connection did not authenticate in time
    SLOW = "slow"  # a connection's send buffer stayed full for too long
    READ = "read"  # a flooding connection's reads were paused: resume them
    TYPING = "typing"  # a typing indicator ran out without a renewal
    TYPING_DEFERRED = "typing_deferred"  # a typing start held back by the throttle may go now
    TOKEN = "token"  # a session's token expired and no refresh came

    # Members are singletons: hashing by identity is exact and runs in C, where Enum's own
    # __hash__ (of the name) is a Python call for every deadline key looked up.
    __hash__ = object.__hash__


# Deadlines keyed by a caller-chosen string rather than owned by a session's state.
_KEYED_KINDS = frozenset(
    {
        DeadlineKind.AUTH,
        DeadlineKind.SLOW,
        DeadlineKind.READ,
        DeadlineKind.TYPING,
        DeadlineKind.TYPING_DEFERRED,
        DeadlineKind.TOKEN,
    }
)


@dataclass(frozen=True, slots=True)
class Deadline:
    """A deadline that fired: ``session`` for session deadlines, ``key`` for keyed ones
    (AUTH, SLOW, TYPING)."""

    kind: DeadlineKind
    session: Session | None = None
    key: str | None = None


@dataclass(frozen=True, slots=True)
class LivenessPolicy:
    """The timing settings the core needs (seconds; None = off)."""

    heartbeat_interval: float
    heartbeat_timeout: float
    grace: float
    auth_timeout: float
    away_after: float | None = None
    inactivity_timeout: float | None = None


def heard_slack(policy: LivenessPolicy) -> float:
    """How much later than ``heartbeat_interval`` after a client's last frame its ping is
    sent: a client heartbeating every interval is heard again just after the interval (its
    timer, the network), and would otherwise be pinged every time. A tenth of the interval,
    at most a quarter of the timeout, which the pong then has less of: the dead are still
    found within interval + timeout of their last word."""
    return min(0.1 * policy.heartbeat_interval, 0.25 * policy.heartbeat_timeout)


# What a user watches happen on time: a typing indicator that runs out or a held-back one
# that may go, a paused flooder's reads, a slow consumer's end. The other deadlines (pings,
# pong and grace, away and inactivity, auth and token) are a matter of seconds, where a
# fraction of a second late is never seen, and the node fires them on a coarser tick: each
# wake-up of an idle process costs the machine far more than the few deadlines it serves.
PROMPT_KINDS = frozenset(
    {DeadlineKind.TYPING, DeadlineKind.TYPING_DEFERRED, DeadlineKind.READ, DeadlineKind.SLOW}
)

_Key = tuple[DeadlineKind, str]


class SessionRegistry:
    """The sessions this node owns, by id and by resume token, with their deadlines."""

    __slots__ = (
        "_deadlines",
        "_jitter",
        "_last_activity",
        "_last_heard",
        "_move_ping_before",
        "_prompt",
        "_quiet",
        "_sessions",
        "_tokens",
        "policy",
    )

    def __init__(
        self,
        policy: LivenessPolicy,
        jitter: Callable[[], float],
        resolution: float = DEFAULT_WIDTH,
        prompt_resolution: float | None = None,
    ) -> None:
        """``jitter()`` returns a number in [0, 1): the spread of ping times (pass a seeded
        ``random.Random().random`` for tests). ``resolution`` and ``prompt_resolution``
        (default: the same): the caller's timer ticks for the other and the prompt
        deadlines, the widths of their buckets (a matter of cost only: deadlines stay
        exact)."""
        self.policy = policy
        # A session heard from is pinged this long after its last frame ...
        self._quiet = policy.heartbeat_interval + heard_slack(policy)
        # ... and a frame moves its ping deadline when it is due sooner than this from now.
        self._move_ping_before = self._quiet - policy.heartbeat_interval / 2
        self._jitter = jitter
        self._sessions: dict[SessionId, Session] = {}
        self._tokens: dict[str, SessionId] = {}
        self._last_activity: dict[SessionId, float] = {}
        self._last_heard: dict[SessionId, float] = {}  # last frame from the client
        self._deadlines: DeadlineQueue[_Key] = DeadlineQueue(resolution)
        self._prompt: DeadlineQueue[_Key] = DeadlineQueue(prompt_resolution or resolution)

    # --- lookups -------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._sessions)

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self._sessions.values()))

    def get(self, session_id: SessionId) -> Session | None:
        return self._sessions.get(session_id)

    def by_resume_token(self, token: str) -> Session | None:
        sid = self._tokens.get(token)
        return self._sessions.get(sid) if sid is not None else None

    def deadline_of(self, kind: DeadlineKind, key: str) -> float | None:
        return self._queue(kind).when((kind, key))

    # --- transitions ---------------------------------------------------------------------

    def add(self, session: Session, now: float) -> None:
        """Register a new ACTIVE session and arm its ping and idle deadlines."""
        self._sessions[session.id] = session
        self._tokens[session.resume_token] = session.id
        self._start_active(session, now, first=True)

    def adopt_in_grace(self, session: Session, now: float) -> None:
        """Own a session that was in GRACE (or ACTIVE) on a node that died or let it go: it is
        in GRACE here from ``now``."""
        session.state = SessionState.ACTIVE
        self.add(session, now)
        self.transport_lost(session.id, now)

    def transport_lost(self, session_id: SessionId, now: float) -> Session:
        """ACTIVE -> GRACE: stop pinging, start the grace clock."""
        session = self._sessions[session_id]
        session.apply(SessionEvent.TRANSPORT_LOST)
        self._stop_active(session.id)
        self._deadlines.schedule((DeadlineKind.GRACE, session.id), now + self.policy.grace)
        return session

    def resume(self, session_id: SessionId, now: float, new_token: str) -> Session:
        """GRACE -> ACTIVE with a fresh resume token (the old one is spent)."""
        session = self._sessions[session_id]
        session.apply(SessionEvent.RESUMED)
        self._deadlines.cancel((DeadlineKind.GRACE, session.id))
        self._tokens.pop(session.resume_token, None)
        session.resume_token = new_token
        self._tokens[new_token] = session.id
        self._start_active(session, now, first=True)
        return session

    def close(self, session_id: SessionId, event: SessionEvent) -> Session:
        """-> CLOSED: forget the session and all its deadlines."""
        session = self._sessions[session_id]
        session.apply(event)
        self._forget(session)
        return session

    def release(self, session_id: SessionId) -> Session | None:
        """Forget a session that another node now owns (no transition: it lives on there)."""
        session = self._sessions.get(session_id)
        if session is not None:
            self._forget(session)
        return session

    def activity(self, session_id: SessionId, now: float) -> bool:
        """Record activity. Returns True when the session was auto-away and no longer is."""
        session = self._sessions.get(session_id)
        if session is None or session.state is not SessionState.ACTIVE:
            return False
        self._last_activity[session_id] = now
        self._last_heard[session_id] = now  # proof the transport is alive: no ping due
        key = (DeadlineKind.PING, session_id)
        ping_at = self._deadlines.when(key)
        if ping_at is not None and ping_at < now + self._move_ping_before:
            self._deadlines.schedule(key, now + self._quiet)
        if session.auto_away:
            session.auto_away = False
            if self.policy.away_after is not None:
                self._deadlines.schedule(
                    (DeadlineKind.AWAY, session_id), now + self.policy.away_after
                )
            return True
        return False

    def pong(self, session_id: SessionId) -> None:
        """A pong arrived: the transport is alive."""
        self._deadlines.cancel((DeadlineKind.PONG, session_id))

    # --- keyed deadlines (AUTH, SLOW by connection id; TYPING by session and room) ----------

    def arm(self, kind: DeadlineKind, key: str, when: float) -> None:
        """Arm a keyed deadline; it fires once unless disarmed or re-armed first."""
        if kind not in _KEYED_KINDS:
            raise ValueError(f"{kind} is a session deadline, not a keyed one")
        self._queue(kind).schedule((kind, key), when)

    def disarm(self, kind: DeadlineKind, key: str) -> None:
        self._queue(kind).cancel((kind, key))

    def _queue(self, kind: DeadlineKind) -> DeadlineQueue[_Key]:
        return self._prompt if kind in PROMPT_KINDS else self._deadlines

    # --- time ----------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """The earliest deadline of either kind, or None."""
        relaxed, prompt = self.next_deadlines()
        if relaxed is None or prompt is None:
            return prompt if relaxed is None else relaxed
        return min(relaxed, prompt)

    def next_deadlines(self) -> tuple[float | None, float | None]:
        """The earliest deadline not in :data:`PROMPT_KINDS`, and the earliest that is
        (None: none): the shell rounds each to its own tick."""
        return self._deadlines.next_deadline(), self._prompt.next_deadline()

    def advance(self, now: float) -> list[Deadline]:
        """Fire every deadline due at ``now``, applying its transition; returns what fired
        (the prompt ones last)."""
        fired: list[Deadline] = []
        for kind, key in self._deadlines.pop_due(now) + self._prompt.pop_due(now):
            if kind in _KEYED_KINDS:
                fired.append(Deadline(kind, key=key))
                continue
            session = self._sessions.get(SessionId(key))
            if session is None:
                continue
            result = self._fire(kind, session, now)
            if result is not None:
                fired.append(result)
        return fired

    # --- internals -----------------------------------------------------------------------

    def _fire(self, kind: DeadlineKind, session: Session, now: float) -> Deadline | None:
        policy, sid = self.policy, session.id
        if kind is not DeadlineKind.GRACE and session.state is not SessionState.ACTIVE:
            # Popped in the same batch as the PONG that just put it in GRACE (a late timer):
            # those deadlines were cancelled by that transition and must not act.
            return None
        if kind is DeadlineKind.PING:
            heard = self._last_heard.get(sid)
            quiet = self._quiet
            if heard is not None and now - heard < quiet:
                # The client spoke within the interval (and the slack): its transport is
                # alive, no ping needed. A client that heartbeats every interval, as the
                # protocol asks, is never pinged: half the frames of an idle connection.
                self._deadlines.schedule((kind, sid), heard + quiet)
                return None
            if (DeadlineKind.PONG, sid) not in self._deadlines:
                # A session that has spoken may have had its ping held for the slack: its
                # pong has that much less time, so it is found within interval + timeout of
                # its last word. (One only ever pinged has no last word: -inf.)
                due = now + policy.heartbeat_timeout
                if heard is not None and heard != -math.inf:
                    due -= heard_slack(policy)
                self._deadlines.schedule((DeadlineKind.PONG, sid), due)
            self._schedule_ping(sid, now, first=False)
            return Deadline(kind, session)
        if kind is DeadlineKind.PONG:
            self.transport_lost(sid, now)
            return Deadline(kind, session)
        if kind is DeadlineKind.GRACE:
            self.close(sid, SessionEvent.GRACE_EXPIRED)
            return Deadline(kind, session)
        idle_since = self._last_activity.get(sid, now)
        if kind is DeadlineKind.AWAY and policy.away_after is not None:
            due = idle_since + policy.away_after
            if due > now:  # activity since it was armed: push it back
                self._deadlines.schedule((kind, sid), due)
                return None
            session.auto_away = True
            return Deadline(kind, session)
        if kind is DeadlineKind.INACTIVITY and policy.inactivity_timeout is not None:
            due = idle_since + policy.inactivity_timeout
            if due > now:
                self._deadlines.schedule((kind, sid), due)
                return None
            self.close(sid, SessionEvent.FORCE_LEAVE)
            return Deadline(kind, session)
        return None

    def _start_active(self, session: Session, now: float, *, first: bool) -> None:
        sid = session.id
        self._last_activity[sid] = now
        self._last_heard[sid] = -math.inf  # a ping is due after the first interval
        self._schedule_ping(sid, now, first=first)
        if self.policy.away_after is not None:
            self._deadlines.schedule((DeadlineKind.AWAY, sid), now + self.policy.away_after)
        if self.policy.inactivity_timeout is not None:
            self._deadlines.schedule(
                (DeadlineKind.INACTIVITY, sid), now + self.policy.inactivity_timeout
            )

    def _schedule_ping(self, sid: SessionId, now: float, *, first: bool) -> None:
        # Jitter only ever shortens the period, so detection stays within interval + timeout;
        # the first ping is spread over half an interval so reconnect storms do not stay aligned.
        spread = 0.5 if first else 0.1
        period = self.policy.heartbeat_interval * (1.0 - spread * self._jitter())
        self._deadlines.schedule((DeadlineKind.PING, sid), now + period)

    def _stop_active(self, sid: SessionId) -> None:
        for kind in (DeadlineKind.PING, DeadlineKind.PONG, DeadlineKind.AWAY):
            self._deadlines.cancel((kind, sid))
        self._deadlines.cancel((DeadlineKind.INACTIVITY, sid))

    def _forget(self, session: Session) -> None:
        self._stop_active(session.id)
        self._deadlines.cancel((DeadlineKind.GRACE, session.id))
        self._sessions.pop(session.id, None)
        self._tokens.pop(session.resume_token, None)
        self._last_activity.pop(session.id, None)
        self._last_heard.pop(session.id, None)
