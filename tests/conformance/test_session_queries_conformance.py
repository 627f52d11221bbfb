"""The admin's session reads, on every backend: ``SessionStore.watchers`` and ``count``.

- ``watchers(user)``: every present session (ACTIVE or GRACE, on any node) subscribed to the
  user's presence, as its record is now, by session id; the index behind it follows puts
  (subscribing, unsubscribing), deletes and takes, and a closed record is no watcher.
- ``count()``: every session record, once, on any node.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from presenced.presence.session import Session, SessionState
from presenced.store.base import Backplane
from presenced.store.redis import redis_backplane
from presenced.typing import DeviceId, SessionId, UserId
from tests.conformance.conftest import open_backend

__all__: list[str] = []

BOB, CAROL = UserId("bob"), UserId("carol")
ODD = UserId("{odd}%7B%")  # braces and percent signs, escaped in Redis keys


def session(sid: str, user: str, watching: set[UserId], node: str = "n1", **extra: Any) -> Session:
    return Session(
        id=SessionId(sid),
        user=UserId(user),
        device=DeviceId("d"),
        resume_token=f"tok-{sid}",
        subscriptions=set(watching),
        node=node,
        **extra,
    )


async def test_nobody_watches(backplane: Backplane) -> None:
    assert await backplane.sessions.watchers(BOB) == []
    await backplane.sessions.put(session("s1", "alice", set()))
    assert await backplane.sessions.watchers(BOB) == []


async def test_watchers_on_every_node_in_session_order(backplane: Backplane) -> None:
    store = backplane.sessions
    a1 = session("s1", "alice", {BOB, CAROL}, node="n1")
    a2 = session("s2", "alice", {BOB}, node="n2", state=SessionState.GRACE)  # still present
    d1 = session("s0{x}", "dave", {CAROL, ODD}, node="n2")
    e1 = session("s3", "erin", set())
    for s in (a2, e1, d1, a1):
        assert await store.put(s)
    assert await store.watchers(BOB) == [a1, a2]
    assert await store.watchers(CAROL) == [d1, a1]
    assert await store.watchers(ODD) == [d1]
    assert await store.watchers(UserId("alice")) == []
    # Taken by another node: still watching, as the record now says.
    assert await store.take(SessionId("s2"), "n2", "n3")
    a2.node = "n3"
    assert await store.watchers(BOB) == [a1, a2]


async def test_watchers_follow_subscriptions_and_records(backplane: Backplane) -> None:
    store = backplane.sessions
    a1 = session("s1", "alice", {BOB, CAROL})
    b1 = session("s2", "bob", {CAROL})
    await store.put(a1)
    await store.put(b1)
    # Unsubscribing from bob: no longer his watcher, still carol's.
    a1.subscriptions = {CAROL}
    await store.put(a1)
    assert await store.watchers(BOB) == []
    assert await store.watchers(CAROL) == [a1, b1]
    # Subscribing again (after a read dropped the stale entry): a watcher again.
    a1.subscriptions = {BOB, CAROL}
    await store.put(a1)
    assert await store.watchers(BOB) == [a1]
    # A closed record watches nobody.
    a1.state = SessionState.CLOSED
    await store.put(a1)
    assert await store.watchers(BOB) == []
    assert await store.watchers(CAROL) == [b1]
    # Deleted: gone everywhere.
    await store.delete(SessionId("s2"))
    assert await store.watchers(CAROL) == []
    # A put refused (another node owns the record) changes nothing either.
    c1 = session("s4", "carol", {BOB}, node="n1")
    await store.put(c1)
    intruder = session("s4", "carol", {BOB, CAROL}, node="n2")
    assert not await store.put(intruder)
    assert await store.watchers(BOB) == [c1]
    assert await store.watchers(CAROL) == []


@pytest.mark.parametrize("backend", ["redis", "redis-cluster"])
async def test_redis_watchers_sets_do_not_keep_what_is_gone(
    request: pytest.FixtureRequest, backend: str
) -> None:
    """Redis internals: a delete takes the session out of every set its record listed, and a
    read drops the entries of sessions no longer subscribed; nothing piles up."""
    bp = await open_backend(request, backend)
    try:
        store = bp.sessions
        client, keys = store._client, store._keys  # type: ignore[attr-defined]
        a1 = session("s1", "alice", {BOB, ODD})
        await store.put(a1)
        assert await client.smembers(keys.user_watchers(ODD)) == {b"s1"}
        a1.subscriptions = {ODD}
        await store.put(a1)
        assert await client.smembers(keys.user_watchers(BOB)) == {b"s1"}  # until read
        assert await store.watchers(BOB) == []
        assert await client.smembers(keys.user_watchers(BOB)) == set()
        await store.delete(SessionId("s1"))
        assert await client.smembers(keys.user_watchers(ODD)) == set()
    finally:
        await bp.close()


# --- count ------------------------------------------------------------------------------------


async def test_count_counts_every_record_once(backplane: Backplane) -> None:
    store = backplane.sessions
    assert await store.count() == 0
    a1 = session("s1", "alice", {BOB}, node="n1")
    a2 = session("s{2}%", "alice", set(), node="n2", state=SessionState.GRACE)
    b1 = session("*", "bob", set(), node="n2")
    for s in (a1, a2, b1):
        await store.put(s)
    assert await store.count() == 3
    a1.status = "away"
    await store.put(a1)  # replaced, not added
    assert await store.take(SessionId("*"), "n2", "n1")
    assert await store.count() == 3
    await store.delete(SessionId("s{2}%"))
    assert await store.count() == 2
    await store.delete(SessionId("s1"))
    await store.delete(SessionId("*"))
    assert await store.count() == 0


@pytest.mark.parametrize("backend", ["redis", "redis-cluster"])
async def test_redis_count_is_of_records_not_index_entries(
    request: pytest.FixtureRequest, backend: str
) -> None:
    """A record that expires (its node died and nobody took it) is no longer counted, though
    the node's index, kept alive by another session's puts, still lists it."""
    if backend == "redis":
        url = request.getfixturevalue("valkey").url
    else:
        url = "redis+cluster://" + ",".join(request.getfixturevalue("valkey_cluster").seeds)
    bp = redis_backplane(url, prefix=f"conf-{uuid.uuid4().hex[:12]}", session_ttl=0.5)
    try:
        store = bp.sessions
        gone, kept = session("s1", "alice", set()), session("s2", "bob", set())
        await store.put(gone)
        await store.put(kept)
        assert await store.count() == 2
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5.0
        while await store.count() != 1:
            assert loop.time() < deadline, "the unrefreshed record did not expire"
            await store.put(kept)  # keeps its record and the node's index alive
            await asyncio.sleep(0.05)  # poll pacing, bounded by the deadline
        client, keys = store._client, store._keys  # type: ignore[attr-defined]
        assert await client.smembers(keys.node_sessions("n1")) == {b"s1", b"s2"}
    finally:
        await bp.close()
