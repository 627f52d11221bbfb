"""DeadlineQueue: the node's one timer as data.

Order of firing, rescheduling and cancelling (lazy deletion of the stale heap entries), the
compaction that keeps those entries bounded, and ties (fired in scheduling order). A
Hypothesis test checks the queue against a plain dict model.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from presenced.presence.deadlines import DeadlineQueue

__all__: list[str] = []


def test_empty_queue() -> None:
    q: DeadlineQueue[str] = DeadlineQueue()
    assert len(q) == 0
    assert "a" not in q
    assert q.when("a") is None
    assert q.next_deadline() is None
    assert q.pop_due(1e9) == []


def test_pops_in_deadline_order() -> None:
    q: DeadlineQueue[str] = DeadlineQueue()
    q.schedule("a", 3.0)
    q.schedule("b", 1.0)
    q.schedule("c", 2.0)
    assert len(q) == 3
    assert q.next_deadline() == 1.0
    assert q.pop_due(10.0) == ["b", "c", "a"]
    assert len(q) == 0
    assert q.next_deadline() is None


def test_pop_due_is_inclusive_and_leaves_later_ones() -> None:
    q: DeadlineQueue[str] = DeadlineQueue()
    q.schedule("a", 1.0)
    q.schedule("b", 2.0)
    q.schedule("c", 3.0)
    assert q.pop_due(0.999) == []
    assert q.pop_due(2.0) == ["a", "b"]  # "b" is due exactly at 2.0
    assert "a" not in q and "b" not in q
    assert "c" in q
    assert q.when("c") == 3.0
    assert q.next_deadline() == 3.0


def test_reschedule_later_moves_the_deadline() -> None:
    q: DeadlineQueue[str] = DeadlineQueue()
    q.schedule("a", 1.0)
    q.schedule("b", 2.0)
    q.schedule("a", 5.0)
    assert len(q) == 2
    assert q.when("a") == 5.0
    assert q.next_deadline() == 2.0
    # The stale (1.0, "a") entry is skipped, not fired.
    assert q.pop_due(4.0) == ["b"]
    assert q.pop_due(5.0) == ["a"]


def test_reschedule_earlier_moves_the_deadline() -> None:
    q: DeadlineQueue[str] = DeadlineQueue()
    q.schedule("a", 10.0)
    q.schedule("b", 5.0)
    q.schedule("a", 1.0)
    assert q.next_deadline() == 1.0
    assert q.pop_due(1.0) == ["a"]
    # The stale (10.0, "a") entry must not fire "a" a second time.
    assert q.pop_due(100.0) == ["b"]


def test_cancel() -> None:
    q: DeadlineQueue[str] = DeadlineQueue()
    q.schedule("a", 1.0)
    q.schedule("b", 2.0)
    q.cancel("a")
    assert "a" not in q
    assert q.when("a") is None
    assert len(q) == 1
    assert q.next_deadline() == 2.0
    assert q.pop_due(10.0) == ["b"]


def test_cancel_unknown_key_is_a_no_op() -> None:
    q: DeadlineQueue[str] = DeadlineQueue()
    q.cancel("nope")
    q.schedule("a", 1.0)
    q.cancel("nope")
    assert q.pop_due(1.0) == ["a"]


def test_cancel_then_schedule_again() -> None:
    q: DeadlineQueue[str] = DeadlineQueue()
    q.schedule("a", 1.0)
    q.cancel("a")
    q.schedule("a", 3.0)
    assert q.next_deadline() == 3.0
    assert q.pop_due(2.0) == []
    assert q.pop_due(3.0) == ["a"]


def test_schedule_again_after_firing() -> None:
    q: DeadlineQueue[str] = DeadlineQueue()
    q.schedule("a", 1.0)
    assert q.pop_due(1.0) == ["a"]
    q.schedule("a", 2.0)
    assert q.pop_due(2.0) == ["a"]
    assert q.pop_due(100.0) == []


def test_lazy_deletion_leaves_stale_entries_until_reached() -> None:
    q: DeadlineQueue[str] = DeadlineQueue()
    for i in range(10):
        q.schedule("a", float(i))
    # Stale entries stay in the heap (that is the point: no heap rebuild per reschedule) ...
    assert len(q._heap) == 10  # white-box: the lazily deleted entries are still there
    assert len(q) == 1
    # ... and next_deadline() discards the ones at the top as it meets them.
    assert q.next_deadline() == 9.0
    assert len(q._heap) == 1
    assert q.pop_due(9.0) == ["a"]


def test_same_key_same_time_rescheduled_fires_once() -> None:
    q: DeadlineQueue[str] = DeadlineQueue()
    q.schedule("a", 1.0)
    q.schedule("a", 1.0)
    assert q.pop_due(1.0) == ["a"]


def test_compaction_keeps_the_heap_bounded() -> None:
    q: DeadlineQueue[int] = DeadlineQueue()
    for key in range(5):
        q.schedule(key, 1000.0 + key)
    # A heartbeat-like load: the same keys rescheduled over and over, never reaching the top.
    for i in range(10_000):
        key = i % 5
        q.schedule(key, 2000.0 + i)
        assert len(q._heap) <= max(64, 4 * len(q))  # white-box: stale entries are bounded
    assert len(q) == 5
    # Compaction kept every live deadline and nothing else.
    expected = {key: 2000.0 + 9995 + key for key in range(5)}
    assert {key: q.when(key) for key in range(5)} == expected
    assert q.next_deadline() == 2000.0 + 9995
    assert q.pop_due(1e9) == [0, 1, 2, 3, 4]


def test_compaction_after_cancels() -> None:
    q: DeadlineQueue[int] = DeadlineQueue()
    for key in range(200):
        q.schedule(key, float(key))
    for key in range(10, 200):
        q.cancel(key)
    # 200 heap entries for 10 live keys: the next schedule compacts the heap to the live ones.
    q.schedule(3, 3.5)
    assert len(q._heap) == 10  # white-box: cancelled entries are gone after compaction
    assert len(q) == 10
    assert q.when(3) == 3.5
    assert q.pop_due(1e9) == list(range(10))


def test_ties_fire_in_scheduling_order() -> None:
    q: DeadlineQueue[str] = DeadlineQueue()
    for key in ["c", "a", "d", "b"]:
        q.schedule(key, 5.0)
    assert q.pop_due(5.0) == ["c", "a", "d", "b"]


def test_rescheduled_key_goes_behind_its_ties() -> None:
    q: DeadlineQueue[str] = DeadlineQueue()
    q.schedule("a", 5.0)
    q.schedule("b", 5.0)
    q.schedule("a", 5.0)  # rescheduled to the same time: now after "b"
    assert q.pop_due(5.0) == ["b", "a"]


def test_keys_need_not_be_orderable() -> None:
    # Ties are broken by a sequence number, so keys are never compared with each other.
    q: DeadlineQueue[object] = DeadlineQueue()
    k1, k2 = object(), object()
    q.schedule(k1, 1.0)
    q.schedule(k2, 1.0)
    assert q.pop_due(1.0) == [k1, k2]


def test_tuple_keys() -> None:
    q: DeadlineQueue[tuple[str, str]] = DeadlineQueue()
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


@settings(max_examples=300, deadline=None)
@given(st.lists(_op, max_size=120))
def test_matches_a_dict_model(ops: list[tuple[str, int, int]]) -> None:
    q: DeadlineQueue[int] = DeadlineQueue()
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
