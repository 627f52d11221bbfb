"""The admin's room reads, on every backend: ``RoomStore.rooms``, ``room_count``, ``members``.

- ``rooms(prefix, after, limit)``: rooms that have members (hidden ones count as members but
  not in ``members``), in code-point order of their ids, keyset-paginated: every page after
  the last id of the one before, each room exactly once, the last page short. The prefix is
  a literal: glob characters (``* ? [ ] \\``), braces and percent signs in it or in the ids
  match only themselves (Redis scans with a MATCH pattern, so this is where escaping shows).
- ``members(room, after, limit)``: the room version and its members sorted by user id,
  hidden ones included and flagged, with sessions, meta and joined_at.

The Redis backends share one server across tests (each with its own key prefix), so keys of
other tests are there while these run: a pattern that leaked past its prefix would show here.
"""

from __future__ import annotations

from typing import Any

from presenced.presence.roster import MemberRecord, RoomInfo
from presenced.store.base import Backplane, RoomStore
from presenced.typing import RoomId, SessionId, UserId

__all__: list[str] = []

WALL = 1_700_000_000.5


def room(text: str) -> RoomId:
    return RoomId(text)


async def join(rooms: RoomStore, r: str, user: str, *, hidden: bool = False) -> None:
    await rooms.add(RoomId(r), UserId(user), SessionId(f"{user}@{r}"), None, hidden, WALL)


async def all_pages(rooms: RoomStore, prefix: str, limit: int) -> list[list[RoomInfo]]:
    """Every page of a listing, following the keyset rule until a short page."""
    pages: list[list[RoomInfo]] = []
    after: RoomId | None = None
    while True:
        page = await rooms.rooms(prefix, after, limit)
        pages.append(page)
        if len(page) < limit:
            return pages
        after = page[-1].room


# --- rooms and room_count ---------------------------------------------------------------------


async def test_no_rooms(backplane: Backplane) -> None:
    rooms = backplane.rooms
    assert await rooms.rooms("", None, 10) == []
    assert await rooms.room_count() == 0


async def test_rooms_lists_rooms_with_members_and_their_counts(backplane: Backplane) -> None:
    rooms = backplane.rooms
    await join(rooms, "b", "alice")
    await join(rooms, "b", "bob")
    await rooms.add(room("b"), UserId("bob"), SessionId("bob-2"), None, False, WALL)  # 2 devices
    await join(rooms, "a", "carol")
    await join(rooms, "a", "dave", hidden=True)
    await join(rooms, "c", "erin", hidden=True)  # hidden members only: listed, 0 visible
    listed = await rooms.rooms("", None, 10)
    assert [(i.room, i.members) for i in listed] == [("a", 1), ("b", 2), ("c", 0)]
    for info in listed:
        assert info.version == (await rooms.count(info.room))[1]
    assert await rooms.room_count() == 3
    # A room whose last member left is gone from the listing; a deleted one too (on Redis its
    # version is kept after the members went).
    await rooms.remove(room("c"), UserId("erin"), SessionId("erin@c"))
    await rooms.delete(room("a"))
    assert [i.room for i in await rooms.rooms("", None, 10)] == ["b"]
    assert await rooms.room_count() == 1


async def test_rooms_are_in_code_point_order(backplane: Backplane) -> None:
    rooms = backplane.rooms
    ids = ["é", "Z", "a", "~", "B", "a-b", "a.b", "ab", "日本", "😀", "%", "{", "}"]
    for r in ids:
        await join(rooms, r, "u")
    assert [i.room for i in await rooms.rooms("", None, 100)] == sorted(ids)
    assert await rooms.room_count() == len(ids)


async def test_rooms_pages_see_each_room_once(backplane: Backplane) -> None:
    rooms = backplane.rooms
    ids = sorted(f"room-{i:02d}" for i in range(23))
    for r in ids:
        await join(rooms, r, "u")
    for limit in (1, 7, 23, 24, 100):
        pages = await all_pages(rooms, "", limit)
        seen = [i.room for page in pages for i in page]
        assert seen == ids, limit
        assert all(len(page) == limit for page in pages[:-1])
        assert len(pages[-1]) < limit
    # Boundaries of ``after``: an existing id is excluded, one between ids starts after it,
    # one past the end (or the last id) gives nothing.
    assert [i.room for i in await rooms.rooms("", room("room-05"), 2)] == ["room-06", "room-07"]
    assert [i.room for i in await rooms.rooms("", room("room-05x"), 1)] == ["room-06"]
    assert [i.room for i in await rooms.rooms("", room(""), 1)] == ["room-00"]
    assert await rooms.rooms("", room("room-22"), 5) == []
    assert await rooms.rooms("", room("zzz"), 5) == []
    assert await rooms.rooms("", None, 0) == []
    assert await rooms.rooms("", None, -1) == []


async def test_rooms_prefix_is_a_literal(backplane: Backplane) -> None:
    rooms = backplane.rooms
    ids = [
        "a*b", "a*c", "ab", "axb", "a?x", "aqx", "a[1]", "a1", "a[", "a]", "a\\z", "a\\\\z",
        "a{b}", "a{", "a}", "a%7B", "a%", "a%25", "b*", "{r:a}", "*", "?", "[a-z]", "a",
    ]  # fmt: skip
    for r in ids:
        await join(rooms, r, "u")

    async def listed(prefix: str) -> list[str]:
        return [i.room for i in await rooms.rooms(prefix, None, 100)]

    for prefix in [
        "a*", "a?", "a[", "a[1", "a]", "a\\", "a\\\\", "a{", "a}", "a%", "a%7", "a%7B",
        "a%2", "*", "?", "[", "[a-z]", "{", "{r:", "a", "", "nothing",
    ]:  # fmt: skip
        assert await listed(prefix) == sorted(r for r in ids if r.startswith(prefix)), prefix
    # Prefix and after together: pages within the prefix only.
    assert [i.room for i in await rooms.rooms("a*", room("a*b"), 10)] == ["a*c"]
    assert [i.room for i in await rooms.rooms("a%", room("a%"), 1)] == ["a%25"]


# --- members --------------------------------------------------------------------------------


async def test_members_of_an_unknown_room(backplane: Backplane) -> None:
    version, page = await backplane.rooms.members(room("nobody"), None, 10)
    assert (version, page) == (0, [])


async def test_members_include_hidden_ones_with_everything_known(backplane: Backplane) -> None:
    rooms = backplane.rooms
    r1 = room("r1")
    await rooms.add(r1, UserId("carol"), SessionId("c1"), None, False, WALL + 2)
    await rooms.add(r1, UserId("alice"), SessionId("a1"), {"seat": 1}, False, WALL)
    await rooms.add(r1, UserId("alice"), SessionId("a2"), None, False, WALL + 3)
    await rooms.add(r1, UserId("bob"), SessionId("b1"), {"x": [1]}, True, WALL + 1)
    version, page = await rooms.members(r1, None, 10)
    assert version == (await rooms.count(r1))[1]
    assert page == [
        MemberRecord(UserId("alice"), (SessionId("a1"), SessionId("a2")), False, {"seat": 1}, WALL),
        MemberRecord(UserId("bob"), (SessionId("b1"),), True, {"x": [1]}, WALL + 1),
        MemberRecord(UserId("carol"), (SessionId("c1"),), False, None, WALL + 2),
    ]
    # Handed out by value.
    meta: Any = page[0].meta
    meta["seat"] = 9
    assert (await rooms.members(r1, None, 1))[1][0].meta == {"seat": 1}
    # Boundaries.
    assert [m.user for m in (await rooms.members(r1, UserId("alice"), 10))[1]] == ["bob", "carol"]
    assert [m.user for m in (await rooms.members(r1, UserId("b"), 1))[1]] == ["bob"]
    assert (await rooms.members(r1, UserId("carol"), 10))[1] == []
    assert (await rooms.members(r1, None, 0))[1] == []
    # The version moves with the room.
    await rooms.remove(r1, UserId("carol"), SessionId("c1"))
    version2, page2 = await rooms.members(r1, None, 10)
    assert version2 == version + 1 and [m.user for m in page2] == ["alice", "bob"]


async def test_members_pages_over_a_thousand_members_see_each_once(backplane: Backplane) -> None:
    rooms = backplane.rooms
    r = room("big{room}%")
    users = [f"u{i:04d}" for i in range(990)] + [
        "{", "}", "%", "%7B", "a{b}", "*", "?", "[x]", "é", "😀",
    ]  # fmt: skip
    for i, user in enumerate(users):
        await rooms.add(r, UserId(user), SessionId(f"s{i}"), None, i % 10 == 0, WALL + i)
    seen: list[str] = []
    versions = set()
    after: UserId | None = None
    pages = 0
    while True:
        version, page = await rooms.members(r, after, 99)
        versions.add(version)
        seen += [m.user for m in page]
        pages += 1
        if len(page) < 99:
            break
        after = page[-1].user
    assert seen == sorted(users)  # each exactly once, in order
    assert pages == 11 and len(versions) == 1
    assert (await rooms.count(r))[0] == 900  # the hidden tenth is not counted, but listed
    joined = {m.user: m.joined_at for m in (await rooms.members(r, None, 2000))[1]}
    assert joined == {u: WALL + i for i, u in enumerate(users)}


# --- occupancy (the event export's room.occupied / room.vacated) ------------------------------


async def test_occupancy_marks_the_first_member_in_and_the_last_out(backplane: Backplane) -> None:
    rooms, r = backplane.rooms, RoomId("occ")
    wall = WALL
    first = await rooms.add(r, UserId("ann"), SessionId("a1"), None, True, wall)  # hidden: counts
    assert first.occupancy == "occupied"
    second = await rooms.add(r, UserId("bob"), SessionId("b1"), None, False, wall)
    again = await rooms.add(r, UserId("ann"), SessionId("a2"), None, True, wall)
    assert second.occupancy is None and again.occupancy is None
    assert (await rooms.remove(r, UserId("ann"), SessionId("a1"))).occupancy is None
    assert (await rooms.remove(r, UserId("ann"), SessionId("a2"))).occupancy is None
    assert (await rooms.remove(r, UserId("nobody"), SessionId("x"))).occupancy is None
    last = await rooms.remove(r, UserId("bob"), SessionId("b1"))
    assert last.occupancy == "vacated" and last.kind.value == "left"
    reborn = await rooms.add(r, UserId("bob"), SessionId("b2"), None, False, wall)
    assert reborn.occupancy == "occupied"
