"""Repairs: the store steps a failed transition left, kept until done, oldest first, bounded."""

from __future__ import annotations

import logging

import pytest

from presenced.server.repairs import Repairs


class Flaky:
    """A step that fails its first ``failures`` runs, then works."""

    def __init__(self, name: str, failures: int, log: list[str]) -> None:
        self.name, self.failures, self.log = name, failures, log

    async def __call__(self) -> None:
        self.log.append(self.name)
        if self.failures:
            self.failures -= 1
            raise ConnectionError(f"{self.name}: store away")


async def test_steps_run_oldest_first_and_go_once_done() -> None:
    ran: list[str] = []
    repairs = Repairs()
    repairs.add("a", "step a", Flaky("a", 0, ran))
    repairs.add("b", "step b", Flaky("b", 0, ran))
    assert len(repairs) == 2 and "a" in repairs
    assert await repairs.run() == 2
    assert ran == ["a", "b"] and not repairs
    assert await repairs.run() == 0


async def test_a_failing_step_stops_the_round_and_is_kept() -> None:
    ran: list[str] = []
    repairs = Repairs()
    repairs.add("a", "step a", Flaky("a", 1, ran))
    repairs.add("b", "step b", Flaky("b", 0, ran))
    with pytest.raises(ConnectionError):
        await repairs.run()
    assert ran == ["a"] and len(repairs) == 2  # b waits: the store is likely away again
    assert await repairs.run() == 2
    assert ran == ["a", "a", "b"] and not repairs


async def test_a_newer_step_for_a_key_replaces_the_older() -> None:
    ran: list[str] = []
    repairs = Repairs()
    repairs.add("k", "old", Flaky("old", 0, ran))
    repairs.add("other", "other", Flaky("other", 0, ran))
    repairs.add("k", "new", Flaky("new", 0, ran))
    assert len(repairs) == 2
    await repairs.run()
    assert ran == ["other", "new"]


async def test_bounded_the_oldest_goes(caplog: pytest.LogCaptureFixture) -> None:
    ran: list[str] = []
    repairs = Repairs(limit=2)
    with caplog.at_level(logging.ERROR):
        for name in "abc":
            repairs.add(name, f"step {name}", Flaky(name, 0, ran))
    assert len(repairs) == 2 and "a" not in repairs
    assert "step a dropped" in caplog.text
    await repairs.run()
    assert ran == ["b", "c"]


async def test_a_step_that_keeps_failing_is_given_up(caplog: pytest.LogCaptureFixture) -> None:
    ran: list[str] = []
    repairs = Repairs(tries=3)
    repairs.add("a", "step a", Flaky("a", 100, ran))
    repairs.add("b", "step b", Flaky("b", 0, ran))
    for _ in range(2):
        with pytest.raises(ConnectionError):
            await repairs.run()
    with caplog.at_level(logging.ERROR):
        assert await repairs.run() == 1  # a given up on its third failure, then b done
    assert "giving up taking back step a after 3 tries" in caplog.text
    assert ran == ["a", "a", "a", "b"] and not repairs
