"""TokenBucket: a full burst at once, refill at ``rate`` per second, never beyond ``burst``."""

from __future__ import annotations

import pytest

from presenced.presence.ratelimit import TokenBucket

__all__: list[str] = []


def test_burst_then_refused() -> None:
    bucket = TokenBucket(rate=2.0, burst=5, now=0.0)
    assert [bucket.take(0.0) for _ in range(6)] == [True] * 5 + [False]
    assert bucket.take(0.0) is False


def test_refill_over_time() -> None:
    bucket = TokenBucket(rate=2.0, burst=5, now=0.0)
    for _ in range(5):
        assert bucket.take(0.0)
    assert not bucket.take(0.25)  # half a token
    assert bucket.take(0.5)  # one token after 0.5 s at 2/s
    assert not bucket.take(0.5)
    assert [bucket.take(2.0) for _ in range(4)] == [True, True, True, False]  # 1.5 s -> 3


def test_no_refill_beyond_burst() -> None:
    bucket = TokenBucket(rate=10.0, burst=3, now=0.0)
    assert bucket.take(0.0)
    # An hour idle still leaves at most a burst.
    assert [bucket.take(3600.0) for _ in range(4)] == [True, True, True, False]


def test_steady_rate_is_sustained() -> None:
    bucket = TokenBucket(rate=4.0, burst=1, now=0.0)
    granted = sum(bucket.take(i * 0.25) for i in range(400))  # exactly the rate: all pass
    assert granted == 400
    bucket = TokenBucket(rate=4.0, burst=1, now=0.0)
    granted = sum(bucket.take(i * 0.125) for i in range(800))  # twice the rate: about half
    assert granted == pytest.approx(400, abs=2)


def test_cost() -> None:
    bucket = TokenBucket(rate=1.0, burst=10, now=0.0)
    assert bucket.take(0.0, cost=7.5)
    assert not bucket.take(0.0, cost=3.0)  # 2.5 left: refused, nothing taken
    assert bucket.take(0.0, cost=2.5)
    assert not bucket.take(0.0)


def test_time_going_backwards_adds_nothing() -> None:
    bucket = TokenBucket(rate=1.0, burst=2, now=10.0)
    assert bucket.take(10.0)
    assert bucket.take(10.0)
    assert not bucket.take(5.0)
    assert not bucket.take(10.5)  # refill counts from 10.0, not from 5.0
    assert bucket.take(11.0)
