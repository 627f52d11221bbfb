"""No ghosts, no flicker: the core's promise as a Hypothesis state machine.

A SessionRegistry, a Roster and a PresenceBook are driven together the way a node drives them:
sessions connect for one of three users, join and leave one of three rooms, lose their
transport (GRACE), resume, log out, answer or miss pings, and time moves on by random amounts
(or straight to the next deadline, as the node's one timer does). Whatever ``advance`` returns
is applied: a session closed by GRACE or INACTIVITY leaves every room and the PresenceBook.

Invariants, after every step (design note, section 3):

- the members the Roster reports for each room are exactly the users with a live (ACTIVE or
  GRACE) session in that room;
- the PresenceBook's online users are exactly the users with a live session;
- for every (room, user), the member.joined / member.left events alternate, starting with
  joined: every joined is followed by at most one left before the next joined.
"""

from __future__ import annotations

import random
from collections import defaultdict

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from presenced.presence.liveness import Deadline, DeadlineKind, LivenessPolicy, SessionRegistry
from presenced.presence.roster import ChangeKind, RoomChange, Roster
from presenced.presence.session import RoomOptions, Session, SessionEvent, SessionState
from presenced.presence.status import PresenceBook
from presenced.testing import ManualClock
from presenced.typing import DeviceId, RoomId, SessionId, UserId

__all__: list[str] = []

USERS = [UserId(f"u{i}") for i in range(3)]
ROOMS = [RoomId(f"r{i}") for i in range(3)]
POLICY = LivenessPolicy(
    heartbeat_interval=10.0,
    heartbeat_timeout=5.0,
    grace=20.0,
    auth_timeout=5.0,
    away_after=15.0,
    inactivity_timeout=60.0,
)
PICK = st.integers(min_value=0, max_value=63)  # an index into whichever sessions qualify


class NoGhosts(RuleBasedStateMachine):
    """A node's core, with the shell's bookkeeping done by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock()
        self.registry = SessionRegistry(POLICY, random.Random(1234).random)
        self.roster = Roster()
        self.book = PresenceBook()
        self.events: dict[tuple[RoomId, UserId], list[ChangeKind]] = defaultdict(list)
        self.serial = 0

    # --- helpers ---------------------------------------------------------------------------

    def _sessions(self, state: SessionState | None = None) -> list[Session]:
        found = [s for s in self.registry if state is None or s.state is state]
        return sorted(found, key=lambda s: s.id)

    def _record(self, change: RoomChange) -> None:
        if change.kind in (ChangeKind.JOINED, ChangeKind.LEFT):
            self.events[(change.room, change.user)].append(change.kind)

    def _gone(self, session: Session) -> None:
        """What the shell does when a session is CLOSED: out of every room, out of presence."""
        for room in list(session.rooms):
            self._record(self.roster.remove(room, session.user, session.id))
        self.book.remove(session.user, session.id, self.clock.wall())

    def _status_changed(self, session: Session) -> None:
        self.book.set(
            session.user, session.id, session.effective_status, session.text, self.clock.wall()
        )

    def _apply(self, fired: list[Deadline]) -> None:
        for d in fired:
            session = d.session
            assert session is not None  # no connection deadlines are armed here
            if d.kind in (DeadlineKind.GRACE, DeadlineKind.INACTIVITY):
                assert session.state is SessionState.CLOSED
                assert self.registry.get(session.id) is None
                self._gone(session)
            elif d.kind is DeadlineKind.PONG:
                # A zombie: its transport is closed, the session waits in grace, still present.
                # (Nothing later in the same advance() may act on it as if it were ACTIVE.)
                assert session.state is SessionState.GRACE, (
                    f"{session.id} missed its pong but is {session.state} after the same advance"
                )
            elif d.kind is DeadlineKind.AWAY:
                self._status_changed(session)
            # PING: the shell sends a ping; whether the client answers is the `pong` rule.

    # --- rules -----------------------------------------------------------------------------

    @rule(user=st.sampled_from(USERS))
    def connect(self, user: UserId) -> None:
        self.serial += 1
        n = self.serial
        session = Session(
            id=SessionId(f"s{n:03}"), user=user, device=DeviceId(f"d{n}"), resume_token=f"t{n}"
        )
        self.registry.add(session, self.clock.now)
        self.book.set(user, session.id, session.status, None, self.clock.wall())

    @precondition(lambda self: bool(self._sessions(SessionState.ACTIVE)))
    @rule(pick=PICK, room=st.sampled_from(ROOMS))
    def join(self, pick: int, room: RoomId) -> None:
        active = self._sessions(SessionState.ACTIVE)
        session = active[pick % len(active)]
        session.rooms[room] = RoomOptions()
        self._record(
            self.roster.add(room, session.user, session.id, None, False, self.clock.wall())
        )
        if self.registry.activity(session.id, self.clock.now):
            self._status_changed(session)

    @precondition(lambda self: any(s.rooms for s in self._sessions(SessionState.ACTIVE)))
    @rule(pick=PICK)
    def leave(self, pick: int) -> None:
        pairs = [(s, r) for s in self._sessions(SessionState.ACTIVE) for r in sorted(s.rooms)]
        session, room = pairs[pick % len(pairs)]
        del session.rooms[room]
        self._record(self.roster.remove(room, session.user, session.id))
        if self.registry.activity(session.id, self.clock.now):
            self._status_changed(session)

    @precondition(lambda self: bool(self._sessions(SessionState.ACTIVE)))
    @rule(pick=PICK)
    def pong(self, pick: int) -> None:
        active = self._sessions(SessionState.ACTIVE)
        self.registry.pong(active[pick % len(active)].id)

    @precondition(lambda self: bool(self._sessions(SessionState.ACTIVE)))
    @rule(pick=PICK)
    def drop_transport(self, pick: int) -> None:
        active = self._sessions(SessionState.ACTIVE)
        session = self.registry.transport_lost(active[pick % len(active)].id, self.clock.now)
        assert session.state is SessionState.GRACE

    @precondition(lambda self: bool(self._sessions(SessionState.GRACE)))
    @rule(pick=PICK)
    def resume(self, pick: int) -> None:
        grace = self._sessions(SessionState.GRACE)
        session = grace[pick % len(grace)]
        old_token = session.resume_token
        assert self.registry.by_resume_token(old_token) is session
        self.serial += 1
        self.registry.resume(session.id, self.clock.now, f"t{self.serial}")
        assert self.registry.by_resume_token(old_token) is None
        assert session.state is SessionState.ACTIVE

    @precondition(lambda self: bool(self._sessions()))
    @rule(pick=PICK)
    def logout(self, pick: int) -> None:
        live = self._sessions()
        session = self.registry.close(live[pick % len(live)].id, SessionEvent.LEAVE)
        self._gone(session)

    @rule(seconds=st.floats(min_value=0.0, max_value=40.0, allow_nan=False))
    def advance(self, seconds: float) -> None:
        self._apply(self.registry.advance(self.clock.advance(seconds)))

    @precondition(lambda self: self.registry.next_deadline() is not None)
    @rule()
    def advance_to_next_deadline(self) -> None:
        when = self.registry.next_deadline()
        assert when is not None
        self.clock.now = max(self.clock.now, when)
        self._apply(self.registry.advance(self.clock.now))

    # --- invariants ------------------------------------------------------------------------

    @invariant()
    def registry_holds_only_live_sessions(self) -> None:
        assert all(s.present for s in self.registry)

    @invariant()
    def roster_matches_live_sessions(self) -> None:
        for room in ROOMS:
            expected = {s.user for s in self.registry if s.present and room in s.rooms}
            assert self.roster.members_of(room, include_hidden=True) == expected, room
            assert self.roster.members_of(room) == expected, room
            assert self.roster.count(room) == len(expected), room
            for user in USERS:
                sessions = {s.id for s in self.registry if s.user == user and room in s.rooms}
                assert set(self.roster.sessions_in(room, user)) == sessions, (room, user)

    @invariant()
    def presence_matches_live_sessions(self) -> None:
        expected = {s.user for s in self.registry if s.present}
        assert set(self.book.online_users()) == expected
        for user in USERS:
            assert self.book.public(user).online is (user in expected)

    @invariant()
    def joined_and_left_alternate(self) -> None:
        for (room, user), kinds in self.events.items():
            assert all(k is ChangeKind.JOINED for k in kinds[0::2]), (room, user, kinds)
            assert all(k is ChangeKind.LEFT for k in kinds[1::2]), (room, user, kinds)
            # An odd count (last event joined) exactly when the user is a member now.
            assert (len(kinds) % 2 == 1) is self.roster.is_member(room, user), (room, user)


NoGhosts.TestCase.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
TestNoGhosts = NoGhosts.TestCase
