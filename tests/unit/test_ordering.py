"""The receive order of one numbered stream (presence/ordering.py), pure."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from presenced.presence.ordering import Sequence


def test_in_order_numbers_go_out_at_once() -> None:
    seq: Sequence[str] = Sequence(0)
    assert seq.offer(1, "a") == ["a"]
    assert seq.offer(2, "b") == ["b"]
    assert not seq.waiting


def test_an_early_number_is_held_until_the_missing_one_comes() -> None:
    seq: Sequence[str] = Sequence(0)
    assert seq.offer(2, "b") == []
    assert seq.offer(3, "c") == []
    assert seq.waiting
    assert seq.offer(1, "a") == ["a", "b", "c"]
    assert seq.last == 3 and not seq.waiting


def test_repeats_and_older_numbers_are_dropped() -> None:
    seq: Sequence[str] = Sequence(5)
    assert seq.offer(5, "old") == []
    assert seq.offer(3, "older") == []
    assert seq.offer(6, "new") == ["new"]
    assert seq.offer(6, "again") == []


def test_everything_is_held_until_the_baseline_is_known() -> None:
    seq: Sequence[str] = Sequence()
    assert seq.offer(4, "d") == []
    assert seq.offer(3, "c") == []
    # The baseline says 3 was before this receiver's time: only 4 goes.
    assert seq.start(3) == ["d"]
    assert seq.last == 4


def test_skip_gives_up_on_the_gap_in_number_order() -> None:
    seq: Sequence[str] = Sequence(1)
    seq.offer(5, "e")
    seq.offer(3, "c")
    assert seq.skip() == ["c", "e"]
    assert seq.last == 5
    assert seq.offer(4, "late") == []  # given up: never delivered out of order


def test_a_summary_jumps_past_what_it_covers() -> None:
    seq: Sequence[str] = Sequence(10)
    seq.offer(12, "m12")
    assert seq.jump(15, "summary") == ["m12", "summary"]
    assert seq.last == 15
    assert seq.jump(14, "stale summary") == []


def test_reset_starts_over() -> None:
    seq: Sequence[str] = Sequence(500)
    seq.offer(502, "x")
    seq.reset(0)
    assert not seq.waiting
    assert seq.offer(1, "first of the new stream") == ["first of the new stream"]


@given(st.permutations(list(range(1, 40))), st.lists(st.integers(1, 39), max_size=20))
def test_any_arrival_order_comes_out_in_order_once(order: list[int], repeats: list[int]) -> None:
    seq: Sequence[int] = Sequence(0)
    out: list[int] = []
    for number in [*order[:20], *repeats, *order[20:]]:
        out.extend(seq.offer(number, number))
    assert out == list(range(1, 40))
    assert not seq.waiting


@given(st.lists(st.integers(1, 60), max_size=60))
def test_with_losses_skip_keeps_order_and_never_repeats(arrivals: list[int]) -> None:
    seq: Sequence[int] = Sequence(0)
    out: list[int] = []
    for i, number in enumerate(arrivals):
        out.extend(seq.offer(number, number))
        if i % 7 == 6:  # the hold timer fired
            out.extend(seq.skip())
    out.extend(seq.skip())
    assert out == sorted(set(out))
    assert set(out) <= set(arrivals)
