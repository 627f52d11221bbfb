"""SessionRegistry: every liveness deadline of the sessions a node owns, driven by a ManualClock.

Pings with jitter (first within [0.5, 1] x interval, later within [0.9, 1] x interval, so a dead
client is detected within interval + timeout), pong timeouts into GRACE, grace expiry, resume
with a fresh token, away-after-idle and inactivity with their lazy push-back, the AUTH and
SLOW connection deadlines, several devices of one user, and ``next_deadline``.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable
from dataclasses import replace

import pytest

from presenced.errors import InvalidTransition
from presenced.presence.liveness import (
    Deadline,
    DeadlineKind,
    LivenessPolicy,
    SessionRegistry,
    heard_slack,
)
from presenced.presence.session import Session, SessionEvent, SessionState
from presenced.testing import ManualClock
from presenced.typing import DeviceId, SessionId, UserId

__all__: list[str] = []

K = DeadlineKind
INTERVAL, TIMEOUT, GRACE = 10.0, 5.0, 30.0
POLICY = LivenessPolicy(
    heartbeat_interval=INTERVAL, heartbeat_timeout=TIMEOUT, grace=GRACE, auth_timeout=5.0
)
# For the idle tests: pings far away so they do not get in the way.
QUIET = replace(POLICY, heartbeat_interval=1000.0)
ALMOST_ONE = math.nextafter(1.0, 0.0)  # the largest value random() can return
SESSION_KINDS = [K.PING, K.PONG, K.GRACE, K.AWAY, K.INACTIVITY]
# Deadlines keyed by a caller's string (AUTH and SLOW by connection id, and any added since).
KEYED_KINDS = [k for k in DeadlineKind if k not in SESSION_KINDS]


def make(
    policy: LivenessPolicy = POLICY, jitter: Callable[[], float] | None = None, seed: int = 7
) -> tuple[SessionRegistry, ManualClock]:
    return SessionRegistry(policy, jitter or random.Random(seed).random), ManualClock()


def new_session(n: int = 1, user: str = "alice", device: str | None = None) -> Session:
    return Session(
        id=SessionId(f"s{n}"),
        user=UserId(user),
        device=DeviceId(device or f"d{n}"),
        resume_token=f"tok{n}",
    )


def state_of(session: Session) -> SessionState:
    """The session's state, read afresh (keeps mypy from narrowing it across transitions)."""
    return session.state


def kinds(fired: list[Deadline]) -> list[DeadlineKind]:
    return [d.kind for d in fired]


def step(reg: SessionRegistry, clock: ManualClock) -> list[Deadline]:
    """Move the clock to the next deadline, exactly as the node's one timer does."""
    when = reg.next_deadline()
    assert when is not None
    assert when >= clock.now
    clock.now = when
    return reg.advance(when)


# --- pings -------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_first_ping_within_half_to_one_interval(seed: int) -> None:
    reg, clock = make(seed=seed)
    offsets = []
    for n in range(300):
        reg.add(new_session(n), clock.now)
        when = reg.deadline_of(K.PING, SessionId(f"s{n}"))
        assert when is not None
        offsets.append(when - clock.now)
    assert all(0.5 * INTERVAL <= o <= INTERVAL for o in offsets)
    # The jitter really spreads them (so a reconnect storm does not stay aligned).
    assert min(offsets) < 0.55 * INTERVAL
    assert max(offsets) > 0.95 * INTERVAL


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_later_pings_within_ninety_to_hundred_percent(seed: int) -> None:
    reg, clock = make(seed=seed)
    s = new_session()
    reg.add(s, clock.now)
    ping_times: list[float] = []
    while len(ping_times) < 300:
        fired = step(reg, clock)
        assert kinds(fired) == [K.PING]
        assert fired[0].session is s
        ping_times.append(clock.now)
        reg.pong(s.id)  # the client answers at once
    gaps = [b - a for a, b in itertools.pairwise(ping_times)]
    assert all(0.9 * INTERVAL <= g <= INTERVAL for g in gaps)
    assert min(gaps) < 0.91 * INTERVAL
    assert max(gaps) > 0.99 * INTERVAL
    assert s.state is SessionState.ACTIVE


def test_jitter_extremes() -> None:
    reg, _ = make(jitter=lambda: 0.0)
    reg.add(new_session(1), 1000.0)
    assert reg.deadline_of(K.PING, SessionId("s1")) == 1000.0 + INTERVAL
    reg.advance(1000.0 + INTERVAL)
    assert reg.deadline_of(K.PING, SessionId("s1")) == 1000.0 + 2 * INTERVAL
    reg2, _ = make(jitter=lambda: ALMOST_ONE)
    reg2.add(new_session(1), 1000.0)
    assert reg2.deadline_of(K.PING, SessionId("s1")) == pytest.approx(1000.0 + 0.5 * INTERVAL)
    reg2.advance(1000.0 + 0.5 * INTERVAL)
    reg2.pong(SessionId("s1"))
    assert reg2.deadline_of(K.PING, SessionId("s1")) == pytest.approx(
        1000.0 + 0.5 * INTERVAL + 0.9 * INTERVAL
    )


def test_ping_arms_the_pong_deadline_and_pong_cancels_it() -> None:
    reg, clock = make(jitter=lambda: 0.0)
    s = new_session()
    reg.add(s, clock.now)
    fired = step(reg, clock)
    assert fired == [Deadline(K.PING, s)]
    ping_at = clock.now
    assert reg.deadline_of(K.PONG, s.id) == ping_at + TIMEOUT
    assert reg.deadline_of(K.PING, s.id) == ping_at + INTERVAL
    reg.pong(s.id)
    assert reg.deadline_of(K.PONG, s.id) is None
    # Past the would-be timeout: nothing but the next ping.
    assert reg.advance(ping_at + TIMEOUT + 1) == []
    assert s.state is SessionState.ACTIVE
    assert kinds(step(reg, clock)) == [K.PING]


def test_missed_pong_puts_the_session_in_grace() -> None:
    reg, clock = make()
    s = new_session()
    reg.add(s, clock.now)
    assert kinds(step(reg, clock)) == [K.PING]
    ping_at = clock.now
    fired = step(reg, clock)
    assert fired == [Deadline(K.PONG, s)]
    assert clock.now == ping_at + TIMEOUT
    assert s.state is SessionState.GRACE
    # Still owned and resumable; no more pings; the grace clock runs.
    assert reg.get(s.id) is s
    assert reg.by_resume_token("tok1") is s
    assert reg.deadline_of(K.PING, s.id) is None
    assert reg.deadline_of(K.PONG, s.id) is None
    assert reg.deadline_of(K.GRACE, s.id) == clock.now + GRACE
    assert reg.next_deadline() == clock.now + GRACE


def test_second_ping_does_not_push_back_a_pending_pong() -> None:
    # heartbeat_timeout longer than the interval: a ping fires while the pong is still awaited.
    policy = replace(POLICY, heartbeat_timeout=15.0)
    reg, clock = make(policy, jitter=lambda: 0.0)
    s = new_session()
    reg.add(s, clock.now)
    first_ping = clock.now + INTERVAL
    assert kinds(step(reg, clock)) == [K.PING]
    assert kinds(step(reg, clock)) == [K.PING]  # the second ping, pong still pending
    assert reg.deadline_of(K.PONG, s.id) == first_ping + 15.0
    fired = step(reg, clock)
    assert fired == [Deadline(K.PONG, s)]
    assert clock.now == first_ping + 15.0
    assert s.state is SessionState.GRACE


@pytest.mark.parametrize("seed", range(20))
def test_dead_client_detected_within_interval_plus_timeout(seed: int) -> None:
    rng = random.Random(seed)
    reg, clock = make(seed=seed)
    s = new_session()
    start = clock.now
    reg.add(s, start)
    silent_from = start + rng.uniform(0, 10 * INTERVAL)  # the client dies at this moment
    detected = None
    while detected is None:
        fired = step(reg, clock)
        for d in fired:
            if d.kind is K.PING and clock.now < silent_from:
                reg.pong(s.id)
            elif d.kind is K.PONG:
                detected = clock.now
    assert silent_from < detected <= silent_from + INTERVAL + TIMEOUT
    assert s.state is SessionState.GRACE


# --- grace and resume --------------------------------------------------------------------------


def test_grace_expiry_closes_and_forgets() -> None:
    reg, clock = make()
    s = new_session()
    reg.add(s, clock.now)
    reg.transport_lost(s.id, clock.now)
    assert s.state is SessionState.GRACE
    assert reg.advance(clock.now + GRACE - 0.001) == []
    fired = reg.advance(clock.now + GRACE)
    assert fired == [Deadline(K.GRACE, s)]
    assert state_of(s) is SessionState.CLOSED
    assert reg.get(s.id) is None
    assert reg.by_resume_token("tok1") is None
    assert len(reg) == 0
    assert list(reg) == []
    assert reg.next_deadline() is None


def test_missed_pong_then_grace_expiry() -> None:
    reg, clock = make()
    s = new_session()
    reg.add(s, clock.now)
    seen = [kinds(step(reg, clock)) for _ in range(3)]
    assert seen == [[K.PING], [K.PONG], [K.GRACE]]
    assert s.state is SessionState.CLOSED
    assert reg.get(s.id) is None


def test_resume_within_grace() -> None:
    reg, clock = make(seed=3)
    s = new_session()
    reg.add(s, clock.now)
    reg.transport_lost(s.id, clock.now)
    old_grace = reg.deadline_of(K.GRACE, s.id)
    assert old_grace is not None
    clock.advance(GRACE / 2)
    assert reg.advance(clock.now) == []
    resumed = reg.resume(s.id, clock.now, "tok1-b")
    assert resumed is s
    assert s.state is SessionState.ACTIVE
    assert s.resume_token == "tok1-b"
    assert reg.by_resume_token("tok1-b") is s
    assert reg.by_resume_token("tok1") is None  # the old token is spent
    assert reg.deadline_of(K.GRACE, s.id) is None
    ping = reg.deadline_of(K.PING, s.id)
    assert ping is not None
    assert 0.5 * INTERVAL <= ping - clock.now <= INTERVAL
    # The old grace deadline passes without effect while the client answers its pings.
    while clock.now < old_grace + INTERVAL:
        for d in step(reg, clock):
            assert d.kind is K.PING
            reg.pong(s.id)
    assert s.state is SessionState.ACTIVE
    assert reg.get(s.id) is s


def test_resume_twice_spends_each_token() -> None:
    reg, clock = make()
    s = new_session()
    reg.add(s, clock.now)
    for n, token in enumerate(["t2", "t3"]):
        reg.transport_lost(s.id, clock.advance(1.0))
        reg.resume(s.id, clock.advance(1.0), token)
        assert reg.by_resume_token(token) is s
        assert reg.by_resume_token(["tok1", "t2"][n]) is None


def test_invalid_registry_transitions_raise() -> None:
    reg, clock = make()
    s = new_session()
    reg.add(s, clock.now)
    with pytest.raises(InvalidTransition) as info:
        reg.resume(s.id, clock.now, "x")  # not in grace
    assert info.value.state is SessionState.ACTIVE
    assert info.value.event is SessionEvent.RESUMED
    reg.transport_lost(s.id, clock.now)
    with pytest.raises(InvalidTransition) as info:
        reg.transport_lost(s.id, clock.now)
    assert info.value.state is SessionState.GRACE
    assert info.value.event is SessionEvent.TRANSPORT_LOST


@pytest.mark.parametrize(
    "event",
    [SessionEvent.LEAVE, SessionEvent.KICK, SessionEvent.FORCE_LEAVE, SessionEvent.NODE_LOST],
)
@pytest.mark.parametrize("in_grace", [False, True])
def test_close_forgets_everything(event: SessionEvent, in_grace: bool) -> None:
    policy = replace(POLICY, away_after=60.0, inactivity_timeout=300.0)
    reg, clock = make(policy)
    s = new_session()
    reg.add(s, clock.now)
    if in_grace:
        reg.transport_lost(s.id, clock.now)
    assert reg.close(s.id, event) is s
    assert s.state is SessionState.CLOSED
    assert reg.get(s.id) is None
    assert reg.by_resume_token("tok1") is None
    assert reg.next_deadline() is None
    assert reg.advance(clock.now + 10_000) == []


# --- activity: away and inactivity -------------------------------------------------------------


def test_away_after_idle_and_lifted_by_activity() -> None:
    reg, clock = make(replace(QUIET, away_after=60.0))
    s = new_session()
    t0 = clock.now
    reg.add(s, t0)
    assert reg.deadline_of(K.AWAY, s.id) == t0 + 60.0
    assert reg.advance(t0 + 59.0) == []
    assert s.auto_away is False
    fired = reg.advance(t0 + 60.0)
    assert fired == [Deadline(K.AWAY, s)]
    assert s.auto_away is True
    assert s.effective_status == "away"
    assert reg.deadline_of(K.AWAY, s.id) is None  # fires once while idle
    assert reg.activity(s.id, t0 + 70.0) is True  # away lifted
    assert s.auto_away is False
    assert s.effective_status == "online"
    assert reg.deadline_of(K.AWAY, s.id) == t0 + 130.0
    assert reg.activity(s.id, t0 + 71.0) is False  # nothing to lift any more
    # Idle again: away again, counted from the last activity.
    assert reg.advance(t0 + 130.0) == []
    assert reg.deadline_of(K.AWAY, s.id) == t0 + 131.0
    assert reg.advance(t0 + 131.0) == [Deadline(K.AWAY, s)]
    assert s.auto_away is True


def test_away_pushed_back_lazily_by_activity() -> None:
    reg, clock = make(replace(QUIET, away_after=60.0))
    s = new_session()
    t0 = clock.now
    reg.add(s, t0)
    assert reg.activity(s.id, t0 + 30.0) is False
    # Activity does not touch the heap; the deadline is pushed back when it comes up.
    assert reg.deadline_of(K.AWAY, s.id) == t0 + 60.0
    assert reg.advance(t0 + 60.0) == []
    assert s.auto_away is False
    assert reg.deadline_of(K.AWAY, s.id) == t0 + 90.0
    assert reg.advance(t0 + 90.0) == [Deadline(K.AWAY, s)]


def test_inactivity_timeout_closes() -> None:
    reg, clock = make(replace(QUIET, inactivity_timeout=300.0))
    s = new_session()
    t0 = clock.now
    reg.add(s, t0)
    assert reg.advance(t0 + 299.0) == []
    fired = reg.advance(t0 + 300.0)
    assert fired == [Deadline(K.INACTIVITY, s)]
    assert s.state is SessionState.CLOSED
    assert reg.get(s.id) is None
    assert reg.by_resume_token("tok1") is None
    assert reg.next_deadline() is None


def test_inactivity_pushed_back_lazily_by_activity() -> None:
    reg, clock = make(replace(QUIET, inactivity_timeout=300.0))
    s = new_session()
    t0 = clock.now
    reg.add(s, t0)
    reg.activity(s.id, t0 + 100.0)
    assert reg.deadline_of(K.INACTIVITY, s.id) == t0 + 300.0
    assert reg.advance(t0 + 300.0) == []
    assert s.state is SessionState.ACTIVE
    assert reg.deadline_of(K.INACTIVITY, s.id) == t0 + 400.0
    reg.activity(s.id, t0 + 350.0)
    assert reg.advance(t0 + 400.0) == []
    assert reg.deadline_of(K.INACTIVITY, s.id) == t0 + 650.0
    assert reg.advance(t0 + 649.0) == []
    assert reg.advance(t0 + 650.0) == [Deadline(K.INACTIVITY, s)]
    assert state_of(s) is SessionState.CLOSED


def test_away_then_inactivity() -> None:
    reg, clock = make(replace(QUIET, away_after=60.0, inactivity_timeout=300.0))
    s = new_session()
    t0 = clock.now
    reg.add(s, t0)
    assert kinds(step(reg, clock)) == [K.AWAY]
    assert clock.now == t0 + 60.0
    assert kinds(step(reg, clock)) == [K.INACTIVITY]
    assert clock.now == t0 + 300.0
    assert s.state is SessionState.CLOSED


def test_activity_is_ignored_in_grace_and_for_unknown_sessions() -> None:
    reg, clock = make(replace(QUIET, away_after=60.0))
    s = new_session()
    reg.add(s, clock.now)
    reg.advance(clock.now + 60.0)
    assert s.auto_away is True
    reg.transport_lost(s.id, clock.now + 61.0)
    assert reg.activity(s.id, clock.now + 62.0) is False
    assert s.auto_away is True
    assert reg.deadline_of(K.AWAY, s.id) is None
    assert reg.activity(SessionId("nobody"), clock.now) is False


def test_grace_stops_idle_deadlines_and_resume_restarts_them() -> None:
    reg, clock = make(replace(QUIET, away_after=60.0, inactivity_timeout=300.0))
    s = new_session()
    t0 = clock.now
    reg.add(s, t0)
    reg.transport_lost(s.id, t0 + 10.0)
    assert reg.deadline_of(K.AWAY, s.id) is None
    assert reg.deadline_of(K.INACTIVITY, s.id) is None
    reg.resume(s.id, t0 + 20.0, "tok-b")
    assert reg.deadline_of(K.AWAY, s.id) == t0 + 80.0
    assert reg.deadline_of(K.INACTIVITY, s.id) == t0 + 320.0


def test_no_idle_deadlines_when_off() -> None:
    reg, clock = make(QUIET)
    s = new_session()
    reg.add(s, clock.now)
    assert reg.deadline_of(K.AWAY, s.id) is None
    assert reg.deadline_of(K.INACTIVITY, s.id) is None


# --- connection deadlines ----------------------------------------------------------------------


def test_auth_and_slow_are_keyed_kinds() -> None:
    assert {K.AUTH, K.SLOW} <= set(KEYED_KINDS)


@pytest.mark.parametrize("kind", KEYED_KINDS)
def test_connection_deadline_fires_once(kind: DeadlineKind) -> None:
    reg, clock = make()
    reg.arm(kind, "c1", clock.now + 5.0)
    assert reg.deadline_of(kind, "c1") == clock.now + 5.0
    assert reg.next_deadline() == clock.now + 5.0
    assert reg.advance(clock.now + 4.9) == []
    assert reg.advance(clock.now + 5.0) == [Deadline(kind, key="c1")]
    assert reg.advance(clock.now + 100.0) == []
    assert reg.deadline_of(kind, "c1") is None
    assert reg.next_deadline() is None


@pytest.mark.parametrize("kind", KEYED_KINDS)
def test_connection_deadline_disarmed(kind: DeadlineKind) -> None:
    reg, clock = make()
    reg.arm(kind, "c1", clock.now + 5.0)
    reg.arm(kind, "c2", clock.now + 6.0)
    reg.disarm(kind, "c1")
    reg.disarm(kind, "never-armed")
    assert reg.deadline_of(kind, "c1") is None
    assert reg.advance(clock.now + 100.0) == [Deadline(kind, key="c2")]


def test_connection_deadline_rearm_moves_it() -> None:
    reg, clock = make()
    reg.arm(K.SLOW, "c1", clock.now + 1.0)
    reg.arm(K.SLOW, "c1", clock.now + 3.0)
    assert reg.advance(clock.now + 2.0) == []
    assert reg.advance(clock.now + 3.0) == [Deadline(K.SLOW, key="c1")]


def test_auth_and_slow_of_one_connection_are_independent() -> None:
    reg, clock = make()
    reg.arm(K.AUTH, "c1", clock.now + 1.0)
    reg.arm(K.SLOW, "c1", clock.now + 2.0)
    reg.disarm(K.AUTH, "c1")
    assert reg.advance(clock.now + 5.0) == [Deadline(K.SLOW, key="c1")]


@pytest.mark.parametrize("kind", SESSION_KINDS)
def test_arming_a_session_kind_is_refused(kind: DeadlineKind) -> None:
    reg, clock = make()
    with pytest.raises(ValueError, match="session deadline"):
        reg.arm(kind, "c1", clock.now + 1.0)
    assert reg.next_deadline() is None


def test_connection_key_equal_to_a_session_id_does_not_touch_the_session() -> None:
    reg, clock = make(QUIET)
    s = new_session()
    reg.add(s, clock.now)
    reg.arm(K.AUTH, "s1", clock.now + 1.0)
    assert reg.advance(clock.now + 1.0) == [Deadline(K.AUTH, key="s1")]
    assert s.state is SessionState.ACTIVE
    assert reg.deadline_of(K.PING, s.id) is not None


# --- several devices ---------------------------------------------------------------------------


def test_two_devices_of_one_user_are_independent() -> None:
    reg, clock = make(seed=11)
    phone = new_session(1, device="phone")
    laptop = new_session(2, device="laptop")
    reg.add(phone, clock.now)
    reg.add(laptop, clock.now)
    assert len(reg) == 2
    assert {x.id for x in reg} == {phone.id, laptop.id}
    assert reg.by_resume_token("tok1") is phone
    assert reg.by_resume_token("tok2") is laptop
    # The phone stops answering; the laptop keeps answering.
    closed_at = None
    while closed_at is None:
        for d in step(reg, clock):
            if d.kind is K.PING and d.session is laptop:
                reg.pong(laptop.id)
            elif d.kind is K.GRACE:
                assert d.session is phone
                closed_at = clock.now
            else:
                assert d.session is phone
    assert phone.state is SessionState.CLOSED
    assert laptop.state is SessionState.ACTIVE
    assert reg.get(phone.id) is None
    assert reg.get(laptop.id) is laptop
    assert len(reg) == 1
    ping = reg.deadline_of(K.PING, laptop.id)
    assert ping is not None
    assert ping - clock.now <= INTERVAL


def test_closing_one_device_keeps_the_other() -> None:
    reg, clock = make()
    a, b = new_session(1), new_session(2)
    reg.add(a, clock.now)
    reg.add(b, clock.now)
    reg.transport_lost(a.id, clock.now)
    reg.close(b.id, SessionEvent.LEAVE)
    assert a.state is SessionState.GRACE
    assert reg.get(a.id) is a
    assert reg.deadline_of(K.GRACE, a.id) == clock.now + GRACE


# --- next_deadline -----------------------------------------------------------------------------


def test_next_deadline_values() -> None:
    reg, _ = make(jitter=lambda: 0.0)
    assert reg.next_deadline() is None
    s = new_session()
    reg.add(s, 1000.0)
    assert reg.next_deadline() == 1010.0  # first ping
    reg.arm(K.AUTH, "c", 1003.0)
    assert reg.next_deadline() == 1003.0
    assert reg.advance(1003.0) == [Deadline(K.AUTH, key="c")]
    assert reg.next_deadline() == 1010.0
    assert kinds(reg.advance(1010.0)) == [K.PING]
    assert reg.next_deadline() == 1015.0  # the pong deadline comes before the next ping
    reg.pong(s.id)
    assert reg.next_deadline() == 1020.0
    reg.transport_lost(s.id, 1012.0)
    assert reg.next_deadline() == 1012.0 + GRACE
    reg.resume(s.id, 1013.0, "t2")
    assert reg.next_deadline() == 1023.0
    reg.close(s.id, SessionEvent.LEAVE)
    assert reg.next_deadline() is None


def test_prompt_deadlines_are_kept_apart_for_the_finer_tick() -> None:
    """Typing, read pauses and slow consumers are the prompt deadlines: next_deadlines()
    gives their earliest apart from the others', which the node rounds to a coarser tick;
    advance() fires both."""
    reg, _ = make(jitter=lambda: 0.0)
    assert reg.next_deadlines() == (None, None)
    s = new_session()
    reg.add(s, 1000.0)
    reg.arm(K.AUTH, "c1", 1004.0)
    reg.arm(K.TYPING, "t1", 1003.0)
    reg.arm(K.READ, "c2", 1006.0)
    assert reg.next_deadlines() == (1004.0, 1003.0)
    assert reg.next_deadline() == 1003.0
    assert reg.deadline_of(K.READ, "c2") == 1006.0 and reg.deadline_of(K.AUTH, "c1") == 1004.0
    reg.disarm(K.TYPING, "t1")
    assert reg.next_deadlines() == (1004.0, 1006.0)
    assert reg.advance(1006.0) == [Deadline(K.AUTH, key="c1"), Deadline(K.READ, key="c2")]
    assert reg.next_deadlines() == (1010.0, None)  # the first ping


def test_next_deadline_with_idle_settings() -> None:
    reg, _ = make(replace(POLICY, away_after=3.0, inactivity_timeout=7.0), jitter=lambda: 0.0)
    reg.add(new_session(), 1000.0)
    assert reg.next_deadline() == 1003.0
    assert kinds(reg.advance(1003.0)) == [K.AWAY]
    assert reg.next_deadline() == 1007.0
    assert kinds(reg.advance(1007.0)) == [K.INACTIVITY]
    assert reg.next_deadline() is None


# --- a timer that fires late -------------------------------------------------------------------
# The node arms one timer at next_deadline(); under load it may fire late, so one advance()
# can pop several deadlines of one session. A deadline popped in the same batch after the
# session went to GRACE must not act on it as if it were still ACTIVE.


def test_late_timer_pong_and_next_ping_in_one_advance() -> None:
    reg, _ = make(jitter=lambda: 0.0)
    s = new_session()
    reg.add(s, 1000.0)
    assert kinds(reg.advance(1010.0)) == [K.PING]  # pong due 1015, next ping due 1020
    # The client is dead; the timer that should have fired at 1015 fires at 1025.
    fired = reg.advance(1025.0)
    assert s.state is SessionState.GRACE
    assert kinds(fired) == [K.PONG]  # no ping for a session whose transport is gone
    assert reg.deadline_of(K.PING, s.id) is None
    assert reg.deadline_of(K.PONG, s.id) is None
    # The rest of its life is grace running out, with no error on the way.
    grace_end = reg.deadline_of(K.GRACE, s.id)
    assert grace_end is not None
    assert reg.advance(grace_end) == [Deadline(K.GRACE, s)]
    assert state_of(s) is SessionState.CLOSED


def test_late_timer_pong_and_inactivity_in_one_advance() -> None:
    reg, _ = make(replace(POLICY, inactivity_timeout=18.0), jitter=lambda: 0.0)
    s = new_session()
    reg.add(s, 1000.0)
    assert kinds(reg.advance(1010.0)) == [K.PING]  # pong due 1015, inactivity due 1018
    # On time, advance(1015) would put the session in GRACE and cancel its inactivity
    # deadline; a timer 4 s late must not turn that into a force-leave.
    fired = reg.advance(1019.0)
    assert kinds(fired) == [K.PONG]
    assert s.state is SessionState.GRACE
    assert reg.get(s.id) is s


def one_session(interval: float, timeout: float) -> tuple[SessionRegistry, Session]:
    """A registry with no ping jitter and one session added at time 0."""
    policy = LivenessPolicy(
        heartbeat_interval=interval, heartbeat_timeout=timeout, grace=30, auth_timeout=5
    )
    registry = SessionRegistry(policy, lambda: 0.0)
    session = Session(SessionId("t"), UserId("a"), DeviceId("d"), "tok")
    registry.add(session, 0.0)
    return registry, session


def test_a_client_that_speaks_is_not_pinged_and_a_silent_one_is() -> None:
    policy = LivenessPolicy(heartbeat_interval=10, heartbeat_timeout=5, grace=30, auth_timeout=5)
    registry = SessionRegistry(policy, lambda: 0.0)
    talker = Session(SessionId("t"), UserId("a"), DeviceId("d"), "tok-t")
    silent = Session(SessionId("s"), UserId("b"), DeviceId("d"), "tok-s")
    registry.add(talker, 0.0)
    registry.add(silent, 0.0)
    fired: list[tuple[DeadlineKind, str]] = []
    for now in range(1, 60):
        registry.activity(talker.id, float(now))  # a heartbeat every second
        fired += [(d.kind, d.session.id) for d in registry.advance(float(now)) if d.session]
        if (DeadlineKind.PING, silent.id) in fired:
            registry.pong(silent.id)
    assert (DeadlineKind.PING, talker.id) not in fired
    assert fired.count((DeadlineKind.PING, silent.id)) >= 5
    assert talker.state is SessionState.ACTIVE and silent.state is SessionState.ACTIVE


def test_a_client_that_falls_silent_is_still_found_within_interval_plus_timeout() -> None:
    registry, session = one_session(10, 5)
    registry.activity(session.id, 7.0)  # its last word
    now = 7.0
    while session.state is SessionState.ACTIVE:
        now += 0.5
        registry.advance(now)
        assert now < 7.0 + 10 + 5 + 1, "not detected in time"
    assert session.state is SessionState.GRACE and now <= 7.0 + 10 + 5


def test_a_client_heartbeating_every_interval_is_never_pinged() -> None:
    """The protocol asks for a heartbeat every heartbeat_interval; such a client is heard
    again a little after the interval (its timer, the network), within the slack: no ping,
    so an idle connection costs two frames an interval, not four."""
    registry, session = one_session(25, 10)
    assert heard_slack(registry.policy) == 2.5
    pings: list[float] = []
    beat = 0.0
    for tick in range(1, 2000):  # 200 s in steps of 0.1 s
        now = tick / 10
        if now >= beat + 25.3:  # every interval, 0.3 s late
            beat = now
            registry.activity(session.id, now)
        for d in registry.advance(now):
            if d.kind is DeadlineKind.PING:
                pings.append(now)
                registry.pong(session.id)
    # The first ping comes before the first heartbeat (the session has said nothing since
    # its auth); none after it.
    assert pings == [25.0]
    assert session.state is SessionState.ACTIVE


def test_a_heartbeating_client_that_stops_is_found_within_interval_plus_timeout() -> None:
    """The ping waits for the slack, the pong has that much less time: the bound holds."""
    registry, session = one_session(25, 10)
    registry.activity(session.id, 3.0)  # its last word
    pinged_at = None
    now = 3.0
    while session.state is SessionState.ACTIVE:
        now = round(now + 0.1, 1)
        for d in registry.advance(now):
            if d.kind is DeadlineKind.PING:
                pinged_at = now
        assert now <= 3.0 + 25 + 10, "not detected in time"
    assert pinged_at == 3.0 + 25 + 2.5  # pinged once the slack was over, never answered
    assert session.state is SessionState.GRACE and now == 3.0 + 25 + 10


def test_a_heartbeat_moves_the_ping_so_the_timer_need_not_wake() -> None:
    """A frame that finds the ping due within half an interval moves it to interval + slack
    from now: a client heartbeating every interval leaves the node's one timer nothing to
    do (no deadline fires, pushed back or not), and a busy client moves it at most about
    twice an interval."""
    registry, session = one_session(25, 10)
    assert registry.deadline_of(DeadlineKind.PING, session.id) == 25.0
    registry.activity(session.id, 20.0)
    assert registry.next_deadline() == 20.0 + 25 + 2.5
    moves = 0
    last = registry.deadline_of(DeadlineKind.PING, session.id)
    for tick in range(201, 1001):  # a frame every 0.1 s, 20.1 s to 100 s
        registry.activity(session.id, tick / 10)
        when = registry.deadline_of(DeadlineKind.PING, session.id)
        if when != last:
            assert when == tick / 10 + 27.5
            moves, last = moves + 1, when
    assert 5 <= moves <= 7  # 80 s of frames: about two moves per 25 s interval
    assert registry.advance(100.0) == []  # and nothing came due meanwhile
    registry.activity(session.id, 100.0)
    for now in (110.0, 125.0, 127.0):  # a heartbeat every 25 s from 100 s on
        assert registry.advance(now) == []
    registry.activity(session.id, 125.0)
    assert registry.next_deadline() == 125.0 + 27.5
