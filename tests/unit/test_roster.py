"""Roster: room membership per user, backed by sessions, with the change each operation causes.

First session JOINED, more devices UPDATED, last session LEFT; the room version goes up on
every visible change and never on NONE; invisible (hidden) members cause no visible change
until revealed, and are left out of snapshots and counts; empty rooms disappear.
"""

from __future__ import annotations

import pytest

from presenced.presence.roster import ChangeKind, MemberEntry, RoomChange, Roster
from presenced.typing import RoomId, SessionId, UserId

__all__: list[str] = []

ROOM, OTHER = RoomId("lobby"), RoomId("other")
ALICE, BOB = UserId("alice"), UserId("bob")
S1, S2, S3 = SessionId("s1"), SessionId("s2"), SessionId("s3")
WALL = 1_700_000_000.5  # the callers' wall clock, unless a test says otherwise


class VersionWatch:
    """Checks that a room's version rises by exactly one on each visible change, else stays."""

    def __init__(self, roster: Roster, room: RoomId) -> None:
        self.roster, self.room = roster, room
        self.last = roster.version(room)

    def check(self, change: RoomChange) -> RoomChange:
        assert change.room == self.room
        if change.kind is ChangeKind.NONE:
            assert change.version == self.last
        else:
            assert change.version == self.last + 1
            self.last = change.version
        if self.room in self.roster.rooms():
            assert self.roster.version(self.room) == self.last
        return change


def test_first_second_and_last_device() -> None:
    roster = Roster()
    watch = VersionWatch(roster, ROOM)
    c = watch.check(roster.add(ROOM, ALICE, S1, {"role": "host"}, False, WALL))
    assert (c.kind, c.user, c.devices, c.meta) == (ChangeKind.JOINED, ALICE, 1, {"role": "host"})
    assert c.version == 1
    c = watch.check(roster.add(ROOM, ALICE, S2, None, False, WALL))
    assert (c.kind, c.devices, c.meta) == (ChangeKind.UPDATED, 2, {"role": "host"})
    assert roster.sessions_in(ROOM, ALICE) == [S1, S2]
    assert roster.count(ROOM) == 1  # one member, two devices
    c = watch.check(roster.remove(ROOM, ALICE, S1))
    assert (c.kind, c.devices) == (ChangeKind.UPDATED, 1)
    assert roster.is_member(ROOM, ALICE)
    c = watch.check(roster.remove(ROOM, ALICE, S2))
    assert c.kind is ChangeKind.LEFT
    assert c.version == 4
    assert not roster.is_member(ROOM, ALICE)
    assert roster.count(ROOM) == 0


def test_same_session_added_twice_is_none() -> None:
    roster = Roster()
    watch = VersionWatch(roster, ROOM)
    watch.check(roster.add(ROOM, ALICE, S1, None, False, WALL))
    c = watch.check(roster.add(ROOM, ALICE, S1, None, False, WALL))
    assert c.kind is ChangeKind.NONE
    assert c.devices == 1


def test_remove_of_unknown_is_none() -> None:
    roster = Roster()
    assert roster.remove(ROOM, ALICE, S1) == RoomChange(ROOM, ALICE, ChangeKind.NONE, 0)
    watch = VersionWatch(roster, ROOM)
    watch.check(roster.add(ROOM, ALICE, S1, None, False, WALL))
    watch.check(roster.remove(ROOM, BOB, S1))  # not a member
    watch.check(roster.remove(ROOM, ALICE, S2))  # not this session
    assert roster.remove(ROOM, BOB, S1).kind is ChangeKind.NONE
    assert roster.is_member(ROOM, ALICE)


def test_two_users() -> None:
    roster = Roster()
    watch = VersionWatch(roster, ROOM)
    assert watch.check(roster.add(ROOM, ALICE, S1, None, False, WALL)).kind is ChangeKind.JOINED
    assert watch.check(roster.add(ROOM, BOB, S2, None, False, WALL)).kind is ChangeKind.JOINED
    assert roster.members_of(ROOM) == {ALICE, BOB}
    assert roster.count(ROOM) == 2
    assert watch.check(roster.remove(ROOM, ALICE, S1)).kind is ChangeKind.LEFT
    assert roster.members_of(ROOM) == {BOB}
    assert roster.rooms() == [ROOM]


def test_rooms_are_independent() -> None:
    roster = Roster()
    roster.add(ROOM, ALICE, S1, None, False, WALL)
    c = roster.add(OTHER, ALICE, S1, None, False, WALL)
    assert (c.kind, c.version) == (ChangeKind.JOINED, 1)
    assert roster.remove(ROOM, ALICE, S1).kind is ChangeKind.LEFT
    assert roster.is_member(OTHER, ALICE)
    assert roster.rooms() == [OTHER]


def test_empty_room_disappears() -> None:
    roster = Roster()
    roster.add(ROOM, ALICE, S1, None, False, WALL)
    roster.add(ROOM, ALICE, S2, None, False, WALL)
    roster.remove(ROOM, ALICE, S1)
    assert roster.rooms() == [ROOM]
    roster.remove(ROOM, ALICE, S2)
    assert roster.rooms() == []
    assert roster.version(ROOM) == 0
    assert roster.count(ROOM) == 0
    assert roster.members_of(ROOM) == set()
    assert roster.sessions_in(ROOM, ALICE) == []
    snap = roster.snapshot(ROOM)
    assert (snap.room, snap.version, snap.members) == (ROOM, 0, [])


def test_room_with_only_hidden_members_disappears_when_they_go() -> None:
    roster = Roster()
    roster.add(ROOM, ALICE, S1, None, True, WALL)
    assert roster.rooms() == [ROOM]
    assert roster.remove(ROOM, ALICE, S1).kind is ChangeKind.NONE
    assert roster.rooms() == []


# --- metadata --------------------------------------------------------------------------------


def test_meta_updates() -> None:
    roster = Roster()
    watch = VersionWatch(roster, ROOM)
    watch.check(roster.add(ROOM, ALICE, S1, {"a": 1}, False, WALL))
    # Same meta: nothing to tell.
    assert watch.check(roster.set_meta(ROOM, ALICE, {"a": 1})).kind is ChangeKind.NONE
    c = watch.check(roster.set_meta(ROOM, ALICE, {"a": 2}))
    assert (c.kind, c.meta, c.devices) == (ChangeKind.UPDATED, {"a": 2}, 1)
    # Re-adding the same session with new meta replaces it.
    c = watch.check(roster.add(ROOM, ALICE, S1, {"a": 3}, False, WALL))
    assert (c.kind, c.meta) == (ChangeKind.UPDATED, {"a": 3})
    # Re-adding with meta None keeps the meta and changes nothing.
    c = watch.check(roster.add(ROOM, ALICE, S1, None, False, WALL))
    assert (c.kind, c.meta) == (ChangeKind.NONE, {"a": 3})
    # A second device with meta replaces the user's meta too.
    c = watch.check(roster.add(ROOM, ALICE, S2, {"a": 4}, False, WALL))
    assert (c.kind, c.meta, c.devices) == (ChangeKind.UPDATED, {"a": 4}, 2)
    assert roster.snapshot(ROOM).members == [MemberEntry(ALICE, 2, {"a": 4}, WALL)]


def test_set_meta_and_touch_of_non_members_are_none() -> None:
    roster = Roster()
    assert roster.set_meta(ROOM, ALICE, {"a": 1}).kind is ChangeKind.NONE
    assert roster.touch(ROOM, ALICE).kind is ChangeKind.NONE
    roster.add(ROOM, BOB, S1, None, False, WALL)
    assert roster.set_meta(ROOM, ALICE, {"a": 1}) == RoomChange(ROOM, ALICE, ChangeKind.NONE, 1)
    assert roster.touch(ROOM, ALICE) == RoomChange(ROOM, ALICE, ChangeKind.NONE, 1)


def test_touch_is_updated() -> None:
    roster = Roster()
    watch = VersionWatch(roster, ROOM)
    watch.check(roster.add(ROOM, ALICE, S1, {"x": 1}, False, WALL))
    c = watch.check(roster.touch(ROOM, ALICE))
    assert (c.kind, c.devices, c.meta) == (ChangeKind.UPDATED, 1, {"x": 1})
    c = watch.check(roster.touch(ROOM, ALICE))
    assert c.kind is ChangeKind.UPDATED


# --- hidden (invisible) members --------------------------------------------------------------


def test_hidden_member_add_and_remove_are_none() -> None:
    roster = Roster()
    watch = VersionWatch(roster, ROOM)
    watch.check(roster.add(ROOM, BOB, S3, None, False, WALL))
    c = watch.check(roster.add(ROOM, ALICE, S1, {"m": 1}, True, WALL))
    assert c.kind is ChangeKind.NONE
    c = watch.check(roster.add(ROOM, ALICE, S2, None, True, WALL))  # second device, still hidden
    assert c.kind is ChangeKind.NONE
    assert watch.check(roster.set_meta(ROOM, ALICE, {"m": 2})).kind is ChangeKind.NONE
    assert watch.check(roster.touch(ROOM, ALICE)).kind is ChangeKind.NONE
    assert roster.is_member(ROOM, ALICE)
    assert roster.members_of(ROOM) == {BOB}
    assert roster.members_of(ROOM, include_hidden=True) == {ALICE, BOB}
    assert roster.count(ROOM) == 1
    assert [m.user for m in roster.snapshot(ROOM).members] == [BOB]
    assert watch.check(roster.remove(ROOM, ALICE, S1)).kind is ChangeKind.NONE
    assert watch.check(roster.remove(ROOM, ALICE, S2)).kind is ChangeKind.NONE
    assert not roster.is_member(ROOM, ALICE)
    assert roster.count(ROOM) == 1


def test_set_hidden_is_left_then_joined() -> None:
    roster = Roster()
    watch = VersionWatch(roster, ROOM)
    watch.check(roster.add(ROOM, ALICE, S1, {"m": 1}, False, WALL))
    watch.check(roster.add(ROOM, ALICE, S2, None, False, WALL))
    assert roster.count(ROOM) == 1
    c = watch.check(roster.set_hidden(ROOM, ALICE, True))
    assert c.kind is ChangeKind.LEFT
    assert roster.count(ROOM) == 0
    assert roster.snapshot(ROOM).members == []
    assert roster.is_member(ROOM, ALICE)  # still a member, just not seen
    assert watch.check(roster.set_hidden(ROOM, ALICE, True)).kind is ChangeKind.NONE
    c = watch.check(roster.set_hidden(ROOM, ALICE, False))
    assert (c.kind, c.devices, c.meta) == (ChangeKind.JOINED, 2, {"m": 1})
    assert roster.count(ROOM) == 1
    assert watch.check(roster.set_hidden(ROOM, ALICE, False)).kind is ChangeKind.NONE


def test_hidden_from_the_start_then_revealed() -> None:
    roster = Roster()
    watch = VersionWatch(roster, ROOM)
    watch.check(roster.add(ROOM, ALICE, S1, None, True, WALL))
    c = watch.check(roster.set_hidden(ROOM, ALICE, False))
    assert (c.kind, c.devices) == (ChangeKind.JOINED, 1)
    assert watch.check(roster.remove(ROOM, ALICE, S1)).kind is ChangeKind.LEFT


def test_hidden_then_last_session_leaves_is_none() -> None:
    roster = Roster()
    watch = VersionWatch(roster, ROOM)
    watch.check(roster.add(ROOM, BOB, S3, None, False, WALL))
    watch.check(roster.add(ROOM, ALICE, S1, None, False, WALL))
    assert watch.check(roster.set_hidden(ROOM, ALICE, True)).kind is ChangeKind.LEFT
    # Others already saw her leave: closing her session tells them nothing new.
    assert watch.check(roster.remove(ROOM, ALICE, S1)).kind is ChangeKind.NONE
    assert roster.count(ROOM) == 1


def test_set_hidden_of_a_non_member_is_none() -> None:
    roster = Roster()
    assert roster.set_hidden(ROOM, ALICE, True).kind is ChangeKind.NONE
    roster.add(ROOM, BOB, S1, None, False, WALL)
    assert roster.set_hidden(ROOM, ALICE, True) == RoomChange(ROOM, ALICE, ChangeKind.NONE, 1)


def test_hidden_flag_of_later_devices_is_ignored() -> None:
    # Hiding is per user in a room (set_hidden), not per device: a later add keeps it as is.
    roster = Roster()
    roster.add(ROOM, ALICE, S1, None, False, WALL)
    roster.add(ROOM, ALICE, S2, None, True, WALL)
    assert roster.members_of(ROOM) == {ALICE}
    assert roster.count(ROOM) == 1


# --- snapshot, count, versions ---------------------------------------------------------------


def test_snapshot_lists_visible_members_with_devices_and_meta() -> None:
    roster = Roster()
    roster.add(ROOM, ALICE, S1, {"r": "a"}, False, WALL)
    roster.add(ROOM, ALICE, S2, None, False, WALL)
    roster.add(ROOM, BOB, S3, None, False, WALL)
    roster.add(ROOM, UserId("carol"), SessionId("s4"), None, True, WALL)
    snap = roster.snapshot(ROOM)
    assert snap.room == ROOM
    assert snap.version == roster.version(ROOM) == 3
    assert snap.members == [
        MemberEntry(ALICE, 2, {"r": "a"}, WALL),
        MemberEntry(BOB, 1, None, WALL),
    ]
    assert roster.count(ROOM) == len(snap.members) == 2


@pytest.mark.parametrize("n", [1, 10, 100])
def test_count_tracks_visible_members(n: int) -> None:
    roster = Roster()
    for i in range(n):
        roster.add(ROOM, UserId(f"u{i}"), SessionId(f"s{i}"), None, hidden=i % 3 == 0, wall=WALL)
    visible = sum(1 for i in range(n) if i % 3 != 0)
    assert roster.count(ROOM) == visible == len(roster.snapshot(ROOM).members)
    for i in range(0, n, 2):
        roster.remove(ROOM, UserId(f"u{i}"), SessionId(f"s{i}"))
    visible = sum(1 for i in range(1, n, 2) if i % 3 != 0)
    assert roster.count(ROOM) == visible == len(roster.snapshot(ROOM).members)


def test_versions_strictly_increase_over_a_long_run() -> None:
    roster = Roster()
    watch = VersionWatch(roster, ROOM)
    seen: list[int] = []
    for i in range(50):
        user = UserId(f"u{i % 4}")
        # One operation at a time: each change is checked against the state it left.
        changes = [watch.check(roster.add(ROOM, user, SessionId(f"a{i}"), None, False, WALL))]
        second = roster.add(ROOM, user, SessionId(f"b{i}"), {"i": i}, False, WALL)
        changes.append(watch.check(second))
        changes.append(watch.check(roster.set_hidden(ROOM, user, i % 2 == 0)))
        changes.append(watch.check(roster.remove(ROOM, user, SessionId(f"a{i}"))))
        seen.extend(c.version for c in changes if c.kind is not ChangeKind.NONE)
    assert seen == sorted(set(seen))
    assert len(seen) > 50
