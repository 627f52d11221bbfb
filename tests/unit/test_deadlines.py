"""DeadlineQueue: the node's one timer as data.

Order of firing, rescheduling and cancelling, ties (fired in scheduling order), infinite
deadlines, and the bucket bookkeeping (empty buckets go, dropped marks stay bounded). Every
behavioural test runs at three bucket widths: the width is a matter of cost, never of
timing, so a bucket holding many deadlines (width 10) must pop exactly what a fine one does.
A Hypothesis test checks the queue against a plain dict model, at each width.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from presenced.presence.deadlines import DeadlineQueue

__all__: list[str] = []

WIDTHS = (0.02, 1.0, 10.0)


@pytest.fixture(params=WIDTHS)
def width(request: pytest.FixtureRequest) -> float:
    """Seconds per bucket."""
    value: float = request.param
    return value


def test_empty_queue(width: float) -> None:
    q: DeadlineQueue[str] = DeadlineQueue(width)
    assert len(q) == 0
    assert "a" not in q
    assert q.when("a") is None
    assert q.next_deadline() is None
    assert q.pop_due(1e9) == []


def test_pops_in_deadline_order(width: float) -> None:
    q: DeadlineQueue[str] = DeadlineQueue(width)
    q.schedule("a", 3.0)
    q.schedule("b", 1.0)
    q.schedule("c", 2.0)
    assert len(q) == 3
    assert q.next_deadline() == 1.0
    assert q.pop_due(10.0) == ["b", "c", "a"]
    assert len(q) == 0
    assert q.next_deadline() is None


def test_pop_due_is_inclusive_and_leaves_later_ones(width: float) -> None:
    q: DeadlineQueue[str] = DeadlineQueue(width)
    q.schedule("a", 1.0)
    q.schedule("b", 2.0)
    q.schedule("c", 3.0)
    assert q.pop_due(0.999) == []
    assert q.pop_due(2.0) == ["a", "b"]  # "b" is due exactly at 2.0
    assert "a" not in q and "b" not in q
    assert "c" in q
    assert q.when("c") == 3.0
    assert q.next_deadline() == 3.0


def test_reschedule_later_moves_the_deadline(width: float) -> None:
    q: DeadlineQueue[str] = DeadlineQueue(width)
    q.schedule("a", 1.0)
    q.schedule("b", 2.0)
    q.schedule("a", 5.0)
    assert len(q) == 2
    assert q.when("a") == 5.0
    assert q.next_deadline() == 2.0
    # The stale (1.0, "a") entry is skipped, not fired.
    assert q.pop_due(4.0) == ["b"]
    assert q.pop_due(5.0) == ["a"]


def test_reschedule_earlier_moves_the_deadline(width: float) -> None:
    q: DeadlineQueue[str] = DeadlineQueue(width)
    q.schedule("a", 10.0)
    q.schedule("b", 5.0)
    q.schedule("a", 1.0)
    assert q.next_deadline() == 1.0
    assert q.pop_due(1.0) == ["a"]
    # The stale (10.0, "a") entry must not fire "a" a second time.
    assert q.pop_due(100.0) == ["b"]


def test_cancel(width: float) -> None:
    q: DeadlineQueue[str] = DeadlineQueue(width)
    q.schedule("a", 1.0)
    q.schedule("b", 2.0)
    q.cancel("a")
    assert "a" not in q
    assert q.when("a") is None
    assert len(q) == 1
    assert q.next_deadline() == 2.0
    assert q.pop_due(10.0) == ["b"]


def test_cancel_unknown_key_is_a_no_op(width: float) -> None:
    q: DeadlineQueue[str] = DeadlineQueue(width)
    q.cancel("nope")
    q.schedule("a", 1.0)
    q.cancel("nope")
    assert q.pop_due(1.0) == ["a"]


def test_cancel_then_schedule_again(width: float) -> None:
    q: DeadlineQueue[str] = DeadlineQueue(width)
    q.schedule("a", 1.0)
    q.cancel("a")
    q.schedule("a", 3.0)
    assert q.next_deadline() == 3.0
    assert q.pop_due(2.0) == []
    assert q.pop_due(3.0) == ["a"]


def test_schedule_again_after_firing(width: float) -> None:
    q: DeadlineQueue[str] = DeadlineQueue(width)
    q.schedule("a", 1.0)
    assert q.pop_due(1.0) == ["a"]
    q.schedule("a", 2.0)
    assert q.pop_due(2.0) == ["a"]
    assert q.pop_due(100.0) == []


def test_same_key_same_time_rescheduled_fires_once(width: float) -> None:
    q: DeadlineQueue[str] = DeadlineQueue(width)
    q.schedule("a", 1.0)
    q.schedule("a", 1.0)
    assert q.pop_due(1.0) == ["a"]


def test_reschedule_within_a_bucket_and_across(width: float) -> None:
    q: DeadlineQueue[str] = DeadlineQueue(width)
    q.schedule("a", 100.0)
    q.schedule("a", 100.0 + width / 4)  # most likely the same bucket
    q.schedule("a", 100.0 + 3 * width)  # another one
    assert q.when("a") == 100.0 + 3 * width
    assert q.pop_due(100.0 + 2 * width) == []
    assert q.pop_due(100.0 + 3 * width) == ["a"]


def test_a_busy_bucket_pops_only_what_is_due(width: float) -> None:
    q: DeadlineQueue[int] = DeadlineQueue(width)
    times = [10.0 + i * width / 10 for i in range(25)]  # ten deadlines per bucket
    for key, t in reversed(list(enumerate(times))):
        q.schedule(key, t)
    assert q.pop_due(times[12]) == list(range(13))
    assert q.next_deadline() == times[13]
    assert q.pop_due(times[12]) == []
    assert q.pop_due(1e9) == list(range(13, 25))


def test_infinite_deadlines(width: float) -> None:
    q: DeadlineQueue[str] = DeadlineQueue(width)
    q.schedule("never", math.inf)
    q.schedule("now", -math.inf)
    q.schedule("soon", 5.0)
    assert q.next_deadline() == -math.inf
    assert q.pop_due(0.0) == ["now"]
    assert q.pop_due(1e300) == ["soon"]
    assert q.when("never") == math.inf and len(q) == 1
    assert q.pop_due(math.inf) == ["never"]


def test_not_a_time_is_refused(width: float) -> None:
    q: DeadlineQueue[str] = DeadlineQueue(width)
    with pytest.raises(ValueError, match="nan"):
        q.schedule("a", math.nan)
    assert len(q) == 0 and q.next_deadline() is None


def test_a_width_must_be_positive() -> None:
    for bad in (0.0, -1.0, math.nan):
        with pytest.raises(ValueError, match="width"):
            DeadlineQueue(bad)


def test_buckets_go_when_emptied_and_marks_stay_bounded(width: float) -> None:
    q: DeadlineQueue[int] = DeadlineQueue(width)
    for key in range(5):
        q.schedule(key, 1000.0 + key * width)
    # A heartbeat-like load: the same keys moved on over and over, to ever later buckets,
    # and one key jumping back and forth between two far ones.
    for i in range(10_000):
        key = i % 5
        q.schedule(key, 2000.0 + i * width)
        q.schedule(99, 5.0 if i % 2 else 50_000.0)
        # white-box: a bucket per live deadline at most, dropped marks bounded
        assert len(q._buckets) <= len(q)
        assert len(q._marks) <= max(64, 4 * len(q._buckets))
    assert len(q) == 6
    expected = {key: 2000.0 + (9995 + key) * width for key in range(5)}
    assert {key: q.when(key) for key in range(5)} == expected
    assert q.next_deadline() == 5.0
    assert q.pop_due(1e9) == [99, 0, 1, 2, 3, 4]
    assert q._buckets == {} and q.next_deadline() is None
    assert q._marks == []


def test_cancelled_buckets_are_gone(width: float) -> None:
    q: DeadlineQueue[int] = DeadlineQueue(width)
    for key in range(200):
        q.schedule(key, key * width * 3)
    for key in range(10, 200):
        q.cancel(key)
    assert len(q._buckets) == 10  # white-box: emptied by cancels, deleted
    q.schedule(3, 3.5 * width * 3)
    assert len(q) == 10
    assert q.when(3) == 3.5 * width * 3
    assert q.pop_due(1e9) == list(range(10))


def test_ties_fire_in_scheduling_order(width: float) -> None:
    q: DeadlineQueue[str] = DeadlineQueue(width)
    for key in ["c", "a", "d", "b"]:
        q.schedule(key, 5.0)
    assert q.pop_due(5.0) == ["c", "a", "d", "b"]


def test_rescheduled_key_goes_behind_its_ties(width: float) -> None:
    q: DeadlineQueue[str] = DeadlineQueue(width)
    q.schedule("a", 5.0)
    q.schedule("b", 5.0)
    q.schedule("a", 5.0)  # rescheduled to the same time: now after "b"
    assert q.pop_due(5.0) == ["b", "a"]


def test_keys_need_not_be_orderable(width: float) -> None:
    # Ties are broken by a sequence number, so keys are never compared with each other.
    q: DeadlineQueue[object] = DeadlineQueue(width)
    k1, k2 = object(), object()
    q.schedule(k1, 1.0)
    q.schedule(k2, 1.0)
    assert q.pop_due(1.0) == [k1, k2]


def test_tuple_keys(width: float) -> None:
    q: DeadlineQueue[tuple[str, str]] = DeadlineQueue(width)
    q.schedule(("ping", "s1"), 2.0)
    q.schedule(("pong", "s1"), 1.0)
    assert ("ping", "s1") in q
    assert q.pop_due(2.0) == [("pong", "s1"), ("ping", "s1")]


# --- model-based check -----------------------------------------------------------------------

_op = st.one_of(
    st.tuples(st.just("schedule"), st.integers(0, 7), st.integers(0, 50)),
    st.tuples(st.just("cancel"), st.integers(0, 7), st.just(0)),
    st.tuples(st.just("pop"), st.just(0), st.integers(0, 50)),
)


@pytest.mark.parametrize("width", WIDTHS)
@settings(max_examples=300, deadline=None)
@given(st.lists(_op, max_size=120))
def test_matches_a_dict_model(width: float, ops: list[tuple[str, int, int]]) -> None:
    q: DeadlineQueue[int] = DeadlineQueue(width)
    model: dict[int, tuple[float, int]] = {}  # key -> (when, order of its last schedule)
    order = 0
    for name, key, t in ops:
        if name == "schedule":
            order += 1
            model[key] = (float(t), order)
            q.schedule(key, float(t))
        elif name == "cancel":
            model.pop(key, None)
            q.cancel(key)
        else:
            due = sorted((v, k) for k, v in model.items() if v[0] <= t)
            expected = [k for _, k in due]
            for k in expected:
                del model[k]
            assert q.pop_due(float(t)) == expected
        assert len(q) == len(model)
        assert q.next_deadline() == (min(w for w, _ in model.values()) if model else None)
        for k in range(8):
            assert q.when(k) == (model[k][0] if k in model else None)
            assert (k in q) is (k in model)
