"""The admin's presence reads, on every backend: ``PresenceStore.online`` and
``online_count``: the users with a present session, invisible ones included, sorted by id
and keyset-paginated; a user whose last session went is no longer listed (its last seen is
kept, but that is not being online). And ``sessions_of``, the session ids a user's presence
is made of, which cleanup checks against the session records. And ``get_many`` /
``get_private`` of many users at once (the admin's presence query, a members page, a join
snapshot), which Redis reads in chunked script calls on one server."""

from __future__ import annotations

from presenced.presence.status import UserPresence
from presenced.store.base import Backplane, PresenceStore
from presenced.store.redis.presence import READ_CHUNK
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


async def test_get_many_of_many_users_of_every_kind(backplane: Backplane) -> None:
    """``get_many`` and ``get_private`` of more users than one Redis read call takes
    (READ_CHUNK), in the order asked, duplicates and unknown users included, every kind of
    user on either side of a chunk's end: online, several devices (a text that contains
    "invisible", and a last seen from before), offline with a last seen only, invisible after
    being seen (last seen to others, online to itself), invisible the whole time, unknown."""
    store = backplane.presence
    n = 2 * READ_CHUNK + 50
    users = [UserId(f"u{i:04d}") for i in range(n)]
    public: dict[UserId, UserPresence] = {}
    private: dict[UserId, UserPresence] = {}

    async def make(i: int, user: UserId) -> None:
        wall = WALL + i
        kind = i % 6
        if kind == 0:
            await store.set(user, SessionId(f"{user}-a"), "online", None, WALL)
            public[user] = private[user] = UserPresence(user, True, "online", 1)
        elif kind == 1:
            await store.set(user, SessionId(f"{user}-a"), "online", None, WALL)
            await store.remove(user, SessionId(f"{user}-a"), wall)  # a last seen, kept
            await store.set(user, SessionId(f"{user}-b"), "away", "x", wall + 1)
            await store.set(user, SessionId(f"{user}-c"), "busy", "invisible ink", wall + 2)
            public[user] = private[user] = UserPresence(user, True, "busy", 2, "invisible ink")
        elif kind == 2:
            await store.set(user, SessionId(f"{user}-a"), "dnd", "t", WALL)
            await store.remove(user, SessionId(f"{user}-a"), wall)
            public[user] = private[user] = UserPresence(user, False, "offline", 0, None, wall)
        elif kind == 3:
            await store.set(user, SessionId(f"{user}-a"), "online", None, WALL)
            await store.set(user, SessionId(f"{user}-a"), "invisible", None, wall)
            public[user] = UserPresence(user, False, "offline", 0, None, wall)
            private[user] = UserPresence(user, True, "invisible", 1)
        elif kind == 4:
            await store.set(user, SessionId(f"{user}-a"), "invisible", "hidden", WALL)
            public[user] = UserPresence(user, False, "offline", 0)
            private[user] = UserPresence(user, True, "invisible", 1, "hidden")
        else:  # never seen
            public[user] = private[user] = UserPresence(user, False, "offline", 0)

    for i, user in enumerate(users):
        await make(i, user)
    asked = users + users[READ_CHUNK - 3 : READ_CHUNK + 3][::-1] + [UserId("ghost"), users[0]]
    public[UserId("ghost")] = UserPresence(UserId("ghost"), False, "offline", 0)
    assert await store.get_many(asked) == [public[u] for u in asked]
    assert await store.get_many(users[::-1]) == [public[u] for u in users[::-1]]
    for user in users[:12] + users[READ_CHUNK - 6 : READ_CHUNK + 6]:
        assert await store.get_private(user) == private[user], user
