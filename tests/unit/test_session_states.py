"""The session state machine: every transition in the table, and every one that is not.

The table in :mod:`presenced.presence.session` is the single source of the session's life
(design note, section 3): ACTIVE -> GRACE on a lost transport, GRACE -> ACTIVE on resume,
GRACE -> CLOSED when grace runs out, and explicit leave / force-leave / kick / node loss straight
to CLOSED. Anything else must raise :class:`InvalidTransition` naming state and event.
"""

from __future__ import annotations

import itertools

import pytest

from presenced.errors import InvalidTransition, PresencedError
from presenced.presence.session import (
    TRANSITIONS,
    RoomOptions,
    Session,
    SessionEvent,
    SessionState,
    next_state,
)
from presenced.typing import DeviceId, RoomId, SessionId, UserId

__all__: list[str] = []

S, E = SessionState, SessionEvent

# The design note's table, written out independently of the code's.
EXPECTED: dict[tuple[SessionState, SessionEvent], SessionState] = {
    (S.ACTIVE, E.TRANSPORT_LOST): S.GRACE,
    (S.GRACE, E.RESUMED): S.ACTIVE,
    (S.GRACE, E.GRACE_EXPIRED): S.CLOSED,
    (S.ACTIVE, E.LEAVE): S.CLOSED,
    (S.GRACE, E.LEAVE): S.CLOSED,
    (S.ACTIVE, E.FORCE_LEAVE): S.CLOSED,
    (S.GRACE, E.FORCE_LEAVE): S.CLOSED,
    (S.ACTIVE, E.KICK): S.CLOSED,
    (S.GRACE, E.KICK): S.CLOSED,
    (S.ACTIVE, E.NODE_LOST): S.CLOSED,
    (S.GRACE, E.NODE_LOST): S.CLOSED,
}

INVALID = [
    (state, event)
    for state, event in itertools.product(SessionState, SessionEvent)
    if (state, event) not in EXPECTED
]


def make_session(state: SessionState = S.ACTIVE) -> Session:
    return Session(
        id=SessionId("s1"),
        user=UserId("alice"),
        device=DeviceId("phone"),
        resume_token="tok",
        state=state,
    )


def test_table_is_exactly_the_designed_one() -> None:
    assert TRANSITIONS == EXPECTED


def test_invalid_pairs_are_the_complement() -> None:
    # 3 states x 7 events = 21 pairs, 11 allowed: 10 must be refused.
    assert len(INVALID) == 10
    assert {(s, e) for s, e in INVALID if s is S.CLOSED} == {(S.CLOSED, e) for e in E}
    assert {(s, e) for s, e in INVALID if s is S.ACTIVE} == {
        (S.ACTIVE, E.RESUMED),
        (S.ACTIVE, E.GRACE_EXPIRED),
    }
    assert {(s, e) for s, e in INVALID if s is S.GRACE} == {(S.GRACE, E.TRANSPORT_LOST)}


@pytest.mark.parametrize(("state", "event"), list(EXPECTED), ids=lambda v: v.value)
def test_valid_transition(state: SessionState, event: SessionEvent) -> None:
    assert next_state(state, event) is EXPECTED[(state, event)]


@pytest.mark.parametrize(("state", "event"), list(EXPECTED), ids=lambda v: v.value)
def test_session_apply_moves_the_session(state: SessionState, event: SessionEvent) -> None:
    session = make_session(state)
    assert session.apply(event) is EXPECTED[(state, event)]
    assert session.state is EXPECTED[(state, event)]


@pytest.mark.parametrize(("state", "event"), INVALID, ids=lambda v: v.value)
def test_invalid_transition_names_state_and_event(state: SessionState, event: SessionEvent) -> None:
    with pytest.raises(InvalidTransition) as info:
        next_state(state, event)
    err = info.value
    assert isinstance(err, PresencedError)
    assert err.state is state
    assert err.event is event
    assert str(state) in str(err)
    assert str(event) in str(err)


@pytest.mark.parametrize(("state", "event"), INVALID, ids=lambda v: v.value)
def test_invalid_apply_leaves_the_session_unchanged(
    state: SessionState, event: SessionEvent
) -> None:
    session = make_session(state)
    with pytest.raises(InvalidTransition):
        session.apply(event)
    assert session.state is state


def test_closed_is_final() -> None:
    for event in SessionEvent:
        with pytest.raises(InvalidTransition):
            next_state(S.CLOSED, event)


def test_full_life_with_a_resume() -> None:
    session = make_session()
    assert session.state is S.ACTIVE
    assert session.apply(E.TRANSPORT_LOST) is S.GRACE
    assert session.apply(E.RESUMED) is S.ACTIVE
    assert session.apply(E.TRANSPORT_LOST) is S.GRACE
    assert session.apply(E.GRACE_EXPIRED) is S.CLOSED


@pytest.mark.parametrize(
    ("state", "present"), [(S.ACTIVE, True), (S.GRACE, True), (S.CLOSED, False)]
)
def test_present_while_active_or_in_grace(state: SessionState, present: bool) -> None:
    assert make_session(state).present is present


def test_defaults_of_a_new_session() -> None:
    session = make_session()
    assert session.state is S.ACTIVE
    assert session.status == "online"
    assert session.rooms == {}
    assert session.subscriptions == set()
    assert session.auto_away is False
    # Mutable defaults are per instance.
    other = make_session()
    session.rooms[RoomId("r")] = RoomOptions()
    assert other.rooms == {}


@pytest.mark.parametrize(
    ("status", "auto_away", "effective"),
    [
        ("online", False, "online"),
        ("online", True, "away"),
        ("away", False, "away"),
        # An explicit status is never overridden by idleness.
        ("busy", True, "busy"),
        ("dnd", True, "dnd"),
        ("invisible", True, "invisible"),
    ],
)
def test_effective_status(status: str, auto_away: bool, effective: str) -> None:
    session = make_session()
    session.status = status
    session.auto_away = auto_away
    assert session.effective_status == effective
