"""The client SDK's pure rules: backoff bounds, close-code decisions, what a welcome restores
(rooms, subscriptions, status, stream positions and member snapshots), delivered receipts and
the typing throttle. The stream and member rules themselves: test_client_streams.py and
test_client_members.py."""

from __future__ import annotations

import pytest

from presenced.client.policy import (
    MAX_USERS_PER_SUBSCRIBE,
    UNKNOWN_EPOCH,
    Backoff,
    Decision,
    DeliveredReceipts,
    Restore,
    ResumeState,
    RoomState,
    StreamPositions,
    TypingThrottle,
    auth_failure_decision,
    delivered_receipt,
    may_resume,
    reconnect_decision,
    retry_delay,
)
from presenced.client.streams import RecoveryFailed
from presenced.protocol.chat import Position, ReceiptDelivered, RoomEvent
from presenced.protocol.codes import CloseCode, ErrorCode
from presenced.protocol.messages import (
    Member,
    MemberJoined,
    PresenceSubscribe,
    RoomJoin,
    RoomJoined,
    RoomMembersReply,
    StatusSet,
    Welcome,
)
from tests.unit.test_client_streams import ack, edited, msg, pos, recovered

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
        (4010, Decision.RECONNECT_NOW),  # as a new session: see may_resume
        (4011, Decision.RECONNECT_NOW),  # a fresh token, and resume
        # any other / abnormal: backoff
        (1006, Decision.RECONNECT_BACKOFF),
        (1001, Decision.RECONNECT_BACKOFF),
        (1011, Decision.RECONNECT_BACKOFF),
        (4000, Decision.RECONNECT_BACKOFF),
        (4012, Decision.RECONNECT_BACKOFF),  # a connection limit: not at once
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
        (ErrorCode.TOO_MANY_CONNECTIONS, True, Decision.RECONNECT_BACKOFF),
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
    unknown = Position(epoch=UNKNOWN_EPOCH, offset=0)  # nothing seen in either room yet
    assert plan.joins == (
        RoomJoin(room="doc:1", meta={"cursor": 3}, device_events=True, since=unknown),
        RoomJoin(room="doc:2", meta=None, device_events=False, since=unknown),
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


def test_resumed_welcome_missing_a_room_or_user_forgets_them() -> None:
    """The server took the session out while it was away (a kick from the room, a deletion,
    an unwatch by the backend): its lists stand, nothing is re-sent."""
    state = populated()
    plan = state.on_welcome(welcome(resumed=True, rooms=["doc:1"], subscriptions=["bob"]))
    assert plan.empty
    assert set(state.rooms) == {"doc:1"}
    assert state.subscriptions == {"bob"}
    assert "doc:2" not in state.streams.awaiting


def test_resumed_welcome_adopts_users_the_backend_watched_meanwhile() -> None:
    state = populated()
    plan = state.on_welcome(
        welcome(resumed=True, rooms=["doc:1", "doc:2"], subscriptions=["bob", "carol", "dave"])
    )
    assert plan.empty
    assert state.subscriptions == {"bob", "carol", "dave"}


def test_a_disconnect_makes_the_next_connect_a_fresh_session_restoring_the_rest() -> None:
    state = populated()
    assert not may_resume(CloseCode.DISCONNECTED) and may_resume(CloseCode.SLOW_CONSUMER)
    state.session_ended()
    assert state.resume_token is None and state.auth_positions() is None
    plan = state.on_welcome(welcome(resumed=False))
    assert [j.room for j in plan.joins] == ["doc:1", "doc:2"]
    assert plan.subscribes == (PresenceSubscribe(users=["bob", "carol"]),)


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


# --- what a reconnect sends: resume vs re-join -------------------------------------------


def chatting() -> ResumeState:
    """In rooms a (messages seen up to 3), b (own message acked at 7) and quiet (nothing)."""
    state = ResumeState(resume_token="rt-1")
    for room in ("a", "b", "quiet"):
        state.joined(room)
    for event in (msg(1, room="a"), msg(2, room="a"), edited(3, room="a")):
        state.streams.receive(event)
    state.streams.reply(ack(7, room="b", epoch="eb"))
    return state


def test_first_connect_sends_no_positions() -> None:
    state = ResumeState()
    assert state.auth_positions() is None
    state.on_welcome(welcome(resumed=False, token="rt-1"))
    assert state.auth_positions() is None  # no rooms, nothing seen


def test_resume_sends_positions_in_auth_and_awaits_every_restored_room() -> None:
    state = chatting()
    assert state.auth_positions() == {"a": pos("e1", 3), "b": pos("eb", 7)}

    plan = state.on_welcome(welcome(resumed=True, rooms=["a", "b", "quiet"]))
    assert plan.empty  # nothing to re-join: the recovery follows the welcome
    assert set(state.streams.awaiting) == {"a", "b", "quiet"}
    # The recovery for a arrives: exactly what was missed.
    missed = recovered(5, [msg(4, room="a"), msg(5, room="a")], room="a")
    assert state.streams.receive(missed) == [missed]
    assert state.streams.position("a") == pos("e1", 5)


def test_failed_resume_re_joins_with_since_and_awaits_the_answers() -> None:
    state = chatting()
    plan = state.on_welcome(welcome(resumed=False, resume_error="expired"))
    assert plan.joins == (
        RoomJoin(room="a", since=pos("e1", 3)),
        RoomJoin(room="b", since=pos("eb", 7)),
        RoomJoin(room="quiet", since=pos(UNKNOWN_EPOCH, 0)),
    )
    assert set(state.streams.awaiting) == {"a", "b", "quiet"}


def test_resumed_welcome_missing_a_room_forgets_its_position() -> None:
    state = chatting()
    plan = state.on_welcome(welcome(resumed=True, rooms=["a", "quiet"]))
    assert plan.joins == ()
    assert set(state.streams.awaiting) == {"a", "quiet"}
    assert "b" not in state.auth_positions()


def test_a_left_room_is_neither_resumed_nor_re_joined_with_an_old_position() -> None:
    state = chatting()
    state.left("a")
    assert state.auth_positions() == {"b": pos("eb", 7)}
    state.joined("a")  # joined again later, nothing seen since
    plan = state.on_welcome(welcome(resumed=False))
    assert RoomJoin(room="a", since=pos(UNKNOWN_EPOCH, 0)) in plan.joins


def test_server_restart_new_epoch_then_next_resume_uses_it() -> None:
    state = chatting()
    state.on_welcome(welcome(resumed=False, resume_error="unknown session", token="rt-9"))
    # The new server's stream has a new epoch: the recovery fails and says so.
    failed = recovered(0, [], room="a", epoch="e-new", ok=False)
    assert state.streams.receive(failed) == [
        failed,
        RecoveryFailed(room="a", epoch="e-new", offset=0),
    ]
    state.streams.receive(msg(1, room="a", epoch="e-new"))
    awaited = dict(state.streams.awaiting)
    assert state.streams.settle(awaited) == []  # b and quiet got no answer: nothing was held
    positions = state.auth_positions()
    assert positions is not None
    assert positions["a"] == pos("e-new", 1)


def test_a_new_welcome_drops_events_held_for_the_previous_connection() -> None:
    state = chatting()
    state.on_welcome(welcome(resumed=True, rooms=["a", "b", "quiet"]))
    state.streams.receive(msg(4, room="a"))  # held; then the connection dropped again
    assert state.auth_positions() == {"a": pos("e1", 3), "b": pos("eb", 7)}
    state.on_welcome(welcome(resumed=True, rooms=["a", "b", "quiet"], token="rt-3"))
    assert state.streams.awaiting["a"] == []


def test_clear_forgets_positions() -> None:
    state = chatting()
    state.clear()
    assert state.streams == StreamPositions()
    assert state.auth_positions() is None


# --- what a reconnect does to member lists ------------------------------------------------------


def member(user: str) -> Member:
    return Member(user=user, status="online", devices=1)


def in_rooms(*rooms: str) -> ResumeState:
    state = ResumeState(resume_token="rt-1")
    for room in rooms:
        state.members.expect(room)
        state.members.reply(RoomJoined(room=room, version=3, members=[member("me")], ref=1), "me")
        state.joined(room)
    return state


def test_resume_asks_a_snapshot_of_every_restored_room_and_holds_their_events() -> None:
    state = in_rooms("a", "b")
    state.on_welcome(welcome(resumed=True, rooms=["a", "b", "adopted"]))
    assert state.members.take_requests() == ["a", "adopted", "b"]
    for room in ("a", "b"):
        listed = state.members.get(room)
        assert listed is not None and not listed.synced
    assert state.members.get("adopted") is None  # seeded by its snapshot
    state.members.reply(
        RoomMembersReply(room="adopted", version=9, members=[member("x")], ref=2), "me"
    )
    adopted = state.members.get("adopted")
    assert adopted is not None and adopted.version == 9 and set(adopted.members) == {"x"}


def test_a_failed_resume_waits_for_the_re_joins_snapshots_without_asking() -> None:
    state = in_rooms("a")
    plan = state.on_welcome(welcome(resumed=False, resume_error="expired"))
    assert [j.room for j in plan.joins] == ["a"]
    assert state.members.take_requests() == []  # the room.joined of the re-join is the snapshot
    # A restarted server counts versions from scratch: the snapshot is taken all the same.
    state.members.reply(RoomJoined(room="a", version=1, members=[member("me")], ref=3), "me")
    listed = state.members.get("a")
    assert listed is not None and (listed.version, listed.synced) == (1, True)


def test_leaving_or_a_failed_first_join_forgets_the_member_list() -> None:
    state = in_rooms("a", "b")
    state.left("a")
    assert state.members.get("a") is None
    state.members.expect("c")
    state.join_failed("c")  # never joined: nothing kept
    assert "c" not in state.members.views
    state.members.expect("b")
    state.join_failed("b")  # joined before: the list stays, no longer held
    listed = state.members.get("b")
    assert listed is not None and listed.synced
    state.clear()
    assert state.members.views == {}


# --- delivered receipts ----------------------------------------------------------------------


def test_delivered_receipt_for_messages_by_others() -> None:
    assert delivered_receipt(msg(3), "alice") == ReceiptDelivered(room="r", offset=3)
    assert delivered_receipt(msg(3, user="alice"), "alice") is None  # our own, other device
    assert delivered_receipt(edited(4), "alice") is None
    assert (
        delivered_receipt(
            MemberJoined(room="r", version=1, user="x", status="online", devices=1), "alice"
        )
        is None
    )


def test_delivered_receipt_for_a_recovery_is_its_last_message_by_others() -> None:
    events: list[RoomEvent] = [msg(2), msg(3, user="alice"), msg(4), edited(5)]
    assert delivered_receipt(recovered(5, events), "alice") == ReceiptDelivered(room="r", offset=4)
    assert delivered_receipt(recovered(5, [edited(5)]), "alice") is None
    assert delivered_receipt(recovered(5, [], ok=False), "alice") is None


def test_delivered_receipts_coalesce_to_the_highest_offset_per_room() -> None:
    batch = DeliveredReceipts()
    assert batch.take() == []
    for room, offset in (("a", 1), ("a", 3), ("b", 2), ("a", 2)):
        batch.note(room, offset)
    assert batch.take() == [
        ReceiptDelivered(room="a", offset=3),
        ReceiptDelivered(room="b", offset=2),
    ]
    assert batch.take() == []


# --- typing throttle ---------------------------------------------------------------------------


def test_typing_throttle_sends_once_per_interval_per_room() -> None:
    throttle = TypingThrottle(interval=2.0)
    assert throttle.start("r", 10.0)
    assert not throttle.start("r", 11.9)
    assert throttle.start("other", 11.9)
    assert throttle.start("r", 12.0)


def test_typing_throttle_reset_and_clear_let_the_next_start_through() -> None:
    throttle = TypingThrottle(interval=2.0)
    assert throttle.start("a", 0.0) and throttle.start("b", 0.0)
    throttle.reset("a")  # stopped, or a message was sent
    assert throttle.start("a", 0.5)
    assert not throttle.start("b", 0.5)
    throttle.clear()  # a new connection
    assert throttle.start("b", 0.6)


def test_typing_throttle_zero_interval_never_throttles() -> None:
    throttle = TypingThrottle(interval=0.0)
    assert throttle.start("r", 1.0) and throttle.start("r", 1.0)


def test_typing_throttle_rejects_negative_interval() -> None:
    with pytest.raises(ValueError, match="typing throttle must be >= 0"):
        TypingThrottle(interval=-1.0)
