"""The client SDK's pure rules: backoff bounds, close-code decisions, what a welcome restores."""

from __future__ import annotations

import pytest

from presenced.client.policy import (
    MAX_USERS_PER_SUBSCRIBE,
    Backoff,
    Decision,
    Restore,
    ResumeState,
    RoomState,
    auth_failure_decision,
    reconnect_decision,
    retry_delay,
)
from presenced.protocol.codes import CloseCode, ErrorCode
from presenced.protocol.messages import PresenceSubscribe, RoomJoin, StatusSet, Welcome

ALMOST_ONE = 1.0 - 2**-53  # the largest float below 1: what random() can return at most


def welcome(
    *,
    resumed: bool,
    rooms: list[str] | None = None,
    subscriptions: list[str] | None = None,
    token: str = "rt-2",
    resume_error: str | None = None,
) -> Welcome:
    return Welcome(
        session="s2",
        resume_token=token,
        user="alice",
        device="d1",
        protocol=1,
        heartbeat_interval=25.0,
        heartbeat_timeout=10.0,
        grace=15.0,
        resumed=resumed,
        status="online",
        rooms=rooms or [],
        subscriptions=subscriptions or [],
        resume_error=resume_error,
    )


# --- Backoff -------------------------------------------------------------------------------


def test_backoff_rand_zero_waits_nothing() -> None:
    backoff = Backoff()
    assert [backoff.delay(n, 0.0) for n in range(10)] == [0.0] * 10


def test_backoff_rand_almost_one_reaches_the_window_and_stays_inside() -> None:
    backoff = Backoff(initial=0.5, maximum=30.0, multiplier=2.0)
    for attempt in range(12):
        cap = min(30.0, 0.5 * 2.0**attempt)
        delay = backoff.delay(attempt, ALMOST_ONE)
        assert delay < cap
        assert delay == pytest.approx(cap)


def test_backoff_window_grows_by_the_multiplier_then_caps() -> None:
    backoff = Backoff(initial=0.5, maximum=30.0, multiplier=2.0)
    caps = [backoff.cap(n) for n in range(10)]
    assert caps == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0]


def test_backoff_full_jitter_is_linear_in_rand() -> None:
    backoff = Backoff(initial=1.0, maximum=100.0, multiplier=3.0)
    assert backoff.delay(2, 0.5) == pytest.approx(4.5)  # half of 1 * 3**2
    assert backoff.delay(0, 0.25) == pytest.approx(0.25)


def test_backoff_defaults() -> None:
    assert Backoff() == Backoff(initial=0.5, maximum=30.0, multiplier=2.0)


def test_backoff_huge_attempt_does_not_overflow() -> None:
    backoff = Backoff()
    assert backoff.cap(100_000) == 30.0
    assert backoff.delay(100_000, 0.5) == pytest.approx(15.0)


def test_backoff_multiplier_one_is_constant() -> None:
    backoff = Backoff(initial=2.0, maximum=10.0, multiplier=1.0)
    assert {backoff.cap(n) for n in range(20)} == {2.0}


@pytest.mark.parametrize("rand", [-0.1, 1.0, 1.5])
def test_backoff_rejects_rand_outside_unit_interval(rand: float) -> None:
    with pytest.raises(ValueError, match="rand must be in"):
        Backoff().delay(0, rand)


def test_backoff_rejects_negative_attempt() -> None:
    with pytest.raises(ValueError, match="attempt must be >= 0"):
        Backoff().delay(-1, 0.5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"initial": 0.0}, "initial must be > 0"),
        ({"initial": -1.0}, "initial must be > 0"),
        ({"initial": 5.0, "maximum": 1.0}, "maximum must be >= initial"),
        ({"multiplier": 0.5}, "multiplier must be >= 1"),
    ],
)
def test_backoff_rejects_bad_settings(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Backoff(**kwargs)


# --- close codes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "decision"),
    [
        (1000, Decision.STOP),
        (1012, Decision.RECONNECT_NOW),
        (4001, Decision.STOP),
        (4002, Decision.RECONNECT_BACKOFF),
        (4003, Decision.STOP),
        (4004, Decision.STOP),
        (4005, Decision.RECONNECT_BACKOFF),
        (4006, Decision.RECONNECT_BACKOFF),
        (4007, Decision.STOP),
        (4009, Decision.RECONNECT_BACKOFF),
        # any other / abnormal: backoff
        (1006, Decision.RECONNECT_BACKOFF),
        (1001, Decision.RECONNECT_BACKOFF),
        (1011, Decision.RECONNECT_BACKOFF),
        (4000, Decision.RECONNECT_BACKOFF),
        (4999, Decision.RECONNECT_BACKOFF),
        (None, Decision.RECONNECT_BACKOFF),
    ],
)
def test_close_code_table(code: int | None, decision: Decision) -> None:
    assert reconnect_decision(code) is decision


def test_every_close_code_presenced_sends_has_a_decision() -> None:
    for code in CloseCode:
        assert isinstance(reconnect_decision(code), Decision)


def test_auth_failed_is_retried_only_with_a_refreshable_token() -> None:
    assert reconnect_decision(4001, token_refreshable=True) is Decision.RECONNECT_BACKOFF
    # The flag changes nothing else.
    assert reconnect_decision(4003, token_refreshable=True) is Decision.STOP
    assert reconnect_decision(1012, token_refreshable=True) is Decision.RECONNECT_NOW


@pytest.mark.parametrize(
    ("code", "refreshable", "decision"),
    [
        (ErrorCode.AUTH_FAILED, False, Decision.STOP),
        (ErrorCode.AUTH_FAILED, True, Decision.RECONNECT_BACKOFF),
        (ErrorCode.AUTH_TIMEOUT, False, Decision.RECONNECT_BACKOFF),
        (ErrorCode.UNSUPPORTED_PROTOCOL, True, Decision.STOP),
        (ErrorCode.BAD_REQUEST, True, Decision.STOP),
        (ErrorCode.RATE_LIMITED, False, Decision.RECONNECT_BACKOFF),
        (ErrorCode.SHUTTING_DOWN, False, Decision.RECONNECT_BACKOFF),
        (ErrorCode.INTERNAL, False, Decision.RECONNECT_BACKOFF),
    ],
)
def test_auth_error_decisions(code: ErrorCode, refreshable: bool, decision: Decision) -> None:
    assert auth_failure_decision(code.value, token_refreshable=refreshable) is decision


def test_retry_delay_stop_is_none() -> None:
    assert retry_delay(Decision.STOP, 0, 0.5, Backoff()) is None


def test_retry_delay_now_stays_in_the_first_window() -> None:
    backoff = Backoff(initial=0.5)
    for attempt in (0, 3, 10):
        assert retry_delay(Decision.RECONNECT_NOW, attempt, ALMOST_ONE, backoff) == (
            pytest.approx(0.5)
        )


def test_retry_delay_backoff_grows_with_attempts() -> None:
    backoff = Backoff(initial=0.5, maximum=30.0)
    delays = [retry_delay(Decision.RECONNECT_BACKOFF, n, 0.5, backoff) for n in range(8)]
    assert delays == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 15.0]


# --- ResumeState ---------------------------------------------------------------------------


def populated() -> ResumeState:
    state = ResumeState(resume_token="rt-1")
    state.joined("doc:1", {"cursor": 3}, device_events=True)
    state.joined("doc:2")
    state.subscribed(["bob", "carol"])
    state.status_set("busy", "in a meeting")
    return state


def test_first_welcome_restores_nothing_and_keeps_the_token() -> None:
    state = ResumeState()
    plan = state.on_welcome(welcome(resumed=False, token="rt-1"))
    assert plan == Restore()
    assert plan.empty
    assert state.resume_token == "rt-1"


def test_resumed_welcome_restores_nothing() -> None:
    state = populated()
    plan = state.on_welcome(
        welcome(resumed=True, rooms=["doc:1", "doc:2"], subscriptions=["bob", "carol"])
    )
    assert plan.empty
    assert state.resume_token == "rt-2"
    assert set(state.rooms) == {"doc:1", "doc:2"}


def test_fresh_session_restores_rooms_subscriptions_and_status() -> None:
    state = populated()
    plan = state.on_welcome(welcome(resumed=False, resume_error="expired"))
    assert plan.joins == (
        RoomJoin(room="doc:1", meta={"cursor": 3}, device_events=True),
        RoomJoin(room="doc:2", meta=None, device_events=False),
    )
    assert plan.subscribes == (PresenceSubscribe(users=["bob", "carol"]),)
    assert plan.status == StatusSet(status="busy", text="in a meeting")
    assert not plan.empty
    assert state.resume_token == "rt-2"


def test_fresh_session_without_a_status_set_sends_no_status() -> None:
    state = ResumeState(resume_token="rt-1")
    state.joined("r")
    plan = state.on_welcome(welcome(resumed=False))
    assert plan.status is None
    assert plan.subscribes == ()
    assert [j.room for j in plan.joins] == ["r"]


def test_resumed_welcome_missing_a_room_or_user_re_sends_just_those() -> None:
    state = populated()
    plan = state.on_welcome(welcome(resumed=True, rooms=["doc:1"], subscriptions=["bob"]))
    assert plan.joins == (RoomJoin(room="doc:2"),)
    assert plan.subscribes == (PresenceSubscribe(users=["carol"]),)
    assert plan.status is None


def test_resumed_welcome_adopts_rooms_the_server_restored() -> None:
    state = ResumeState(resume_token="rt-1")
    plan = state.on_welcome(welcome(resumed=True, rooms=["lobby"]))
    assert plan.empty
    assert state.rooms == {"lobby": RoomState()}


def test_large_subscription_sets_are_chunked() -> None:
    state = ResumeState()
    users = [f"u{i:05d}" for i in range(2 * MAX_USERS_PER_SUBSCRIBE + 1)]
    state.subscribed(users)
    plan = state.on_welcome(welcome(resumed=False))
    assert [len(s.users) for s in plan.subscribes] == [1000, 1000, 1]
    assert [u for s in plan.subscribes for u in s.users] == sorted(users)


def test_rejoin_without_meta_keeps_meta_and_meta_set_replaces_it() -> None:
    state = ResumeState()
    state.joined("r", {"a": 1}, device_events=True)
    state.joined("r")
    assert state.rooms["r"] == RoomState(meta={"a": 1}, device_events=False)
    state.meta_set("r", {"b": 2})
    assert state.rooms["r"].meta == {"b": 2}
    state.meta_set("not-joined", {"c": 3})
    assert "not-joined" not in state.rooms


def test_leave_and_unsubscribe_are_forgotten() -> None:
    state = populated()
    state.left("doc:1")
    state.left("never-joined")
    state.unsubscribed(["bob", "nobody"])
    plan = state.on_welcome(welcome(resumed=False))
    assert [j.room for j in plan.joins] == ["doc:2"]
    assert plan.subscribes == (PresenceSubscribe(users=["carol"]),)


def test_clear_forgets_everything_including_the_token() -> None:
    state = populated()
    state.clear()
    assert state == ResumeState()
    assert state.on_welcome(welcome(resumed=False)).empty
