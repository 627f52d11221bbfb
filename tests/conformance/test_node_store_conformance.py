"""NodeStore and session ownership: the same contract on every backend."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from presenced.presence.session import RoomOptions, Session, SessionState
from presenced.store.base import Backplane, NodeRecord
from presenced.typing import DeviceId, RoomId, SessionId, UserId


def session(sid: str, node: str, user: str = "alice", token: str | None = None) -> Session:
    return Session(
        id=SessionId(sid),
        user=UserId(user),
        device=DeviceId("d"),
        resume_token=token or f"tok-{sid}",
        node=node,
    )


async def until(predicate_coro: object, timeout: float = 5.0) -> None:
    """Poll an async predicate (a zero-argument coroutine function) until true."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await predicate_coro():  # type: ignore[operator]
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)  # poll pacing, bounded by the deadline


async def test_a_renewed_lease_is_held_and_a_lapsed_one_expires(backplane: Backplane) -> None:
    nodes = backplane.nodes
    assert await nodes.renew("n1", 5.0) is False  # first time: nothing was held
    assert await nodes.renew("n1", 5.0) is True
    assert await nodes.renew("n2", 0.2) is False
    assert "n1" not in await nodes.expired()

    async def n2_expired() -> bool:
        return "n2" in await nodes.expired()

    await until(n2_expired)
    assert "n1" not in await nodes.expired()
    # Exactly one claimer reaps it; a claimed node is no longer listed.
    claims = await asyncio.gather(*(nodes.claim("n2") for _ in range(5)))
    assert sorted(claims) == [False, False, False, False, True]
    assert "n2" not in await nodes.expired()


async def test_dropping_a_lease_expires_the_node_at_once(backplane: Backplane) -> None:
    nodes = backplane.nodes
    await nodes.renew("n1", 30.0)
    await nodes.drop("n1")
    assert "n1" in await nodes.expired()
    assert await nodes.renew("n1", 30.0) is False  # the lease was gone


async def test_only_the_owner_writes_and_take_moves_ownership(backplane: Backplane) -> None:
    sessions = backplane.sessions
    s = session("s1", "n1")
    assert await sessions.put(s)
    assert [x.id for x in await sessions.of_node("n1")] == ["s1"]
    assert await sessions.take(SessionId("s1"), "n9", "n2") is False  # n9 does not own it
    takes = await asyncio.gather(*(sessions.take(SessionId("s1"), "n1", "n2") for _ in range(4)))
    assert sorted(takes) == [False, False, False, True]
    assert await sessions.of_node("n1") == []
    assert [x.id for x in await sessions.of_node("n2")] == ["s1"]
    # The old owner can no longer write it back...
    s.rooms[RoomId("r")] = RoomOptions()
    assert await sessions.put(s) is False
    stored = await sessions.get(SessionId("s1"))
    assert stored is not None and stored.node == "n2" and not stored.rooms
    # ...nor delete it; the owner can.
    assert await sessions.delete(SessionId("s1"), owner="n1") is False
    assert await sessions.delete(SessionId("s1"), owner="n2") is True
    assert await sessions.get(SessionId("s1")) is None


async def test_closed_records_are_found_for_the_reaper(backplane: Backplane) -> None:
    sessions = backplane.sessions
    s = session("s2", "n1")
    await sessions.put(s)
    s.state = SessionState.CLOSED
    assert await sessions.put(s)
    (found,) = await sessions.of_node("n1")
    assert found.state is SessionState.CLOSED


async def test_refresh_accepts_live_sessions(backplane: Backplane) -> None:
    s = session("s3", "n1")
    s.rooms[RoomId("r")] = RoomOptions()
    await backplane.sessions.put(s)
    await backplane.rooms.add(RoomId("r"), s.user, s.id, None, False, 1_700_000_000.0)
    await backplane.nodes.refresh([s], 60.0)
    assert await backplane.sessions.get(SessionId("s3")) is not None
    assert (await backplane.rooms.count(RoomId("r")))[0] == 1


# --- node reports (the admin's node listing) ---------------------------------------------------


async def test_no_nodes_listed(backplane: Backplane) -> None:
    assert await backplane.nodes.nodes() == []


async def test_nodes_list_leases_and_reports(backplane: Backplane) -> None:
    nodes = backplane.nodes
    odd = "n{2}%7B"  # braces and percent signs, escaped in Redis keys
    info: dict[str, Any] = {"sessions": 3, "version": "1.2", "load": [0.5, 0.25], "ok": True}
    await nodes.renew("n1", 30.0)
    await nodes.renew(odd, 30.0)
    await nodes.report("n1", info, 30.0)
    await nodes.report("n9", {"sessions": 1}, 30.0)  # never renewed: not listed
    assert await nodes.nodes() == [
        NodeRecord("n1", True, {"sessions": 3, "version": "1.2", "load": [0.5, 0.25], "ok": True}),
        NodeRecord(odd, True, {}),
    ]
    # Stored by value: neither the caller's dict nor one handed out changes it.
    info["sessions"] = 99
    (first, _) = await nodes.nodes()
    first.info["load"].append(1)
    assert (await nodes.nodes())[0].info["sessions"] == 3
    assert (await nodes.nodes())[0].info["load"] == [0.5, 0.25]
    # A new report replaces the last.
    await nodes.report(odd, {"sessions": 0}, 30.0)
    assert (await nodes.nodes())[1] == NodeRecord(odd, True, {"sessions": 0})
    # A dropped lease: listed, not alive, until claimed (its report goes with it).
    await nodes.drop(odd)
    assert (await nodes.nodes())[1] == NodeRecord(odd, False, {"sessions": 0})
    assert await nodes.claim(odd)
    assert [r.node for r in await nodes.nodes()] == ["n1"]
    await nodes.renew(odd, 30.0)
    assert (await nodes.nodes())[1] == NodeRecord(odd, True, {})


async def test_a_report_expires_after_its_ttl(backplane: Backplane) -> None:
    nodes = backplane.nodes
    await nodes.renew("n1", 30.0)
    await nodes.report("n1", {"sessions": 1}, 0.2)
    assert (await nodes.nodes())[0].info == {"sessions": 1}

    async def forgotten() -> bool:
        return (await nodes.nodes())[0].info == {}

    await until(forgotten)
    assert (await nodes.nodes())[0].alive


async def test_a_report_must_be_json(backplane: Backplane) -> None:
    with pytest.raises(TypeError):
        await backplane.nodes.report("n1", {"when": object()}, 30.0)
