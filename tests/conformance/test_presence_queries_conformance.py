"""The admin's presence reads, on every backend: ``PresenceStore.online`` and
``online_count``: the users with a present session, invisible ones included, sorted by id
and keyset-paginated; a user whose last session went is no longer listed (its last seen is
kept, but that is not being online). And ``sessions_of``, the session ids a user's presence
is made of, which cleanup checks against the session records."""

from __future__ import annotations

from presenced.store.base import Backplane, PresenceStore
from presenced.typing import SessionId, UserId

__all__: list[str] = []

WALL = 1_700_000_000.5


async def pages(store: PresenceStore, limit: int) -> list[list[UserId]]:
    found: list[list[UserId]] = []
    after: UserId | None = None
    while True:
        page = await store.online(after, limit)
        found.append(page)
        if len(page) < limit:
            return found
        after = page[-1]


async def test_nobody_online(backplane: Backplane) -> None:
    assert await backplane.presence.online(None, 10) == []
    assert await backplane.presence.online_count() == 0


async def test_online_users_include_invisible_ones(backplane: Backplane) -> None:
    store = backplane.presence
    await store.set(UserId("carol"), SessionId("c1"), "away", None, WALL)
    await store.set(UserId("alice"), SessionId("a1"), "online", None, WALL)
    await store.set(UserId("alice"), SessionId("a2"), "busy", "x", WALL)  # two devices: once
    await store.set(UserId("bob"), SessionId("b1"), "invisible", None, WALL)  # admin sees him
    await store.set(UserId("dave"), SessionId("d1"), "online", None, WALL)
    await store.remove(UserId("dave"), SessionId("d1"), WALL + 1)  # offline, last seen kept
    assert await store.online(None, 10) == ["alice", "bob", "carol"]
    assert await store.online_count() == 3
    # Until the last session goes.
    await store.remove(UserId("alice"), SessionId("a1"), WALL + 2)
    assert await store.online(None, 10) == ["alice", "bob", "carol"]
    await store.remove(UserId("alice"), SessionId("a2"), WALL + 3)
    await store.remove(UserId("bob"), SessionId("b1"), WALL + 3)  # never seen: forgotten
    assert await store.online(None, 10) == ["carol"]
    assert await store.online_count() == 1


async def test_online_pages_see_each_user_once(backplane: Backplane) -> None:
    store = backplane.presence
    users = [f"user-{i:02d}" for i in range(17)] + [
        "{", "}", "%", "%7B", "a{b}", "*", "?", "[x]", "\\", "é", "😀", "Z",
    ]  # fmt: skip
    for i, user in enumerate(users):
        await store.set(UserId(user), SessionId(f"s{i}"), "online", None, WALL)
    for limit in (1, 5, len(users), 100):
        found = await pages(store, limit)
        assert [u for page in found for u in page] == sorted(users), limit
        assert all(len(page) == limit for page in found[:-1]) and len(found[-1]) < limit
    assert await store.online_count() == len(users)
    assert await store.online(UserId("user-05"), 2) == ["user-06", "user-07"]
    assert await store.online(UserId("user-05x"), 1) == ["user-06"]
    assert await store.online(UserId("😀"), 5) == []
    assert await store.online(None, 0) == []


async def test_sessions_of_lists_the_sessions_presence_is_made_of(backplane: Backplane) -> None:
    """``sessions_of``: each session id the user's presence entry holds, sorted, once each
    (a status change keeps it), invisible ones too; none for a user never seen or whose last
    session went (its last seen kept). Ids are the store's, with no session record needed:
    cleanup compares them with the records."""
    store = backplane.presence
    alice, bob, carol = UserId("alice"), UserId("bob"), UserId("carol")
    assert await store.sessions_of(alice) == []
    for session in ("a2", "a1", "a{3}"):
        await store.set(alice, SessionId(session), "online", None, WALL)
    await store.set(alice, SessionId("a1"), "busy", "x", WALL + 1)  # a change, not a second
    await store.set(bob, SessionId("b1"), "invisible", None, WALL)
    assert await store.sessions_of(alice) == ["a1", "a2", "a{3}"]
    assert await store.sessions_of(bob) == ["b1"]
    assert await store.sessions_of(carol) == []
    await store.remove(alice, SessionId("a2"), WALL + 2)
    await store.remove(alice, SessionId("never"), WALL + 2)  # not there: nothing changes
    assert await store.sessions_of(alice) == ["a1", "a{3}"]
    await store.remove(bob, SessionId("b1"), WALL + 3)
    assert await store.sessions_of(bob) == []
    for session in ("a1", "a{3}"):
        await store.remove(alice, SessionId(session), WALL + 4)
    assert await store.sessions_of(alice) == []
    assert (await store.get_many([alice]))[0].last_seen is not None
