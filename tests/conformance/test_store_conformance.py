"""Store conformance: what every backend (memory, Valkey/Redis, Valkey Cluster) must do.

Each test takes the ``backplane`` fixture (tests/conformance/conftest.py), so it runs once per
backend, and goes only through the store Protocols of presenced.store.base: the semantics
checked here are the contract, and the memory backend (over presence/roster.py and
presence/status.py) is the reference a networked backend must match.

- SessionStore: records are values (copies in, copies out), findable by id, resume token and
  user; a replaced resume token no longer finds the session.
- RoomStore: each call returns its transition (JOINED / UPDATED / LEFT / NONE); the room
  version goes up by one on every visible change and stays put on NONE, so a client that sees
  a gap knows to ask for a snapshot (design note, section 3); hidden members are invisible
  to snapshots and counts; ``count`` always agrees with ``snapshot``.
- PresenceStore: before/after/aggregate of each change, status precedence over devices,
  invisible users offline to others, last seen as the wall time the caller passed in.
- Broker: delivery with payload and origin, per channel, nothing after unsubscribe.

Backends may deliver broker messages asynchronously, so the broker tests wait for each
message with a timeout and prove an absence by waiting for a later marker instead.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from presenced.errors import SessionLimitReached
from presenced.presence.roster import ChangeKind, MemberEntry, RoomChange
from presenced.presence.session import RoomOptions, Session, SessionState
from presenced.presence.status import STATUS_PRECEDENCE, UserPresence
from presenced.store.base import Backplane, RoomStore
from presenced.typing import DeviceId, RoomId, SessionId, UserId

__all__: list[str] = []

R1, R2 = RoomId("room-1"), RoomId("room-2")
ALICE, BOB, CAROL = UserId("alice"), UserId("bob"), UserId("carol")
S1, S2, S3, S4 = SessionId("s1"), SessionId("s2"), SessionId("s3"), SessionId("s4")
WAIT = 2.0  # seconds to wait for a broker message before failing
WALL = 1_700_000_000.5  # the callers' wall clock, unless a test says otherwise


def make_session(sid: SessionId, user: UserId, token: str, **extra: Any) -> Session:
    """A session record with some nested state, so copies have something to get wrong."""
    return Session(
        id=sid,
        user=user,
        device=DeviceId(f"dev-{sid}"),
        resume_token=token,
        device_info={"os": "linux", "app": {"version": "1.2"}},
        rooms={R1: RoomOptions(meta={"role": "host"}, device_events=True)},
        subscriptions={BOB, CAROL},
        **extra,
    )


def by_id(sessions: list[Session]) -> list[Session]:
    return sorted(sessions, key=lambda s: s.id)


def members(snapshot_members: list[MemberEntry]) -> list[MemberEntry]:
    """Snapshot members in a fixed order (the Protocol does not promise one)."""
    return sorted(snapshot_members, key=lambda m: m.user)


class RoomWatch:
    """Checks each change against the room's version: +1 when visible, unchanged on NONE.

    After every check, ``count`` must agree with ``snapshot`` and, while the room has members,
    both must be at the version of the last change.
    """

    def __init__(self, rooms: RoomStore, room: RoomId) -> None:
        self.rooms, self.room = rooms, room
        self.last: int | None = None

    async def start(self) -> RoomWatch:
        self.last = (await self.rooms.count(self.room))[1]
        return self

    async def check(self, change: RoomChange, kind: ChangeKind) -> RoomChange:
        assert change.room == self.room
        assert change.kind is kind, change
        assert self.last is not None
        if kind is ChangeKind.NONE:
            assert change.version == self.last
        else:
            assert change.version == self.last + 1
            self.last = change.version
        snap = await self.rooms.snapshot(self.room)
        count = await self.rooms.count(self.room)
        assert count == (len(snap.members), snap.version)
        if snap.members:
            assert snap.version == self.last
        return change


# --- SessionStore ------------------------------------------------------------------------------


async def test_session_put_get(backplane: Backplane) -> None:
    store = backplane.sessions
    assert await store.get(S1) is None
    record = make_session(S1, ALICE, "tok-1", status="dnd", text="focus", moderator=True)
    await store.put(record)
    got = await store.get(S1)
    assert got == record
    assert got is not record
    assert await store.get(S2) is None


async def test_session_is_stored_by_value(backplane: Backplane) -> None:
    store = backplane.sessions
    record = make_session(S1, ALICE, "tok-1")
    expected = make_session(S1, ALICE, "tok-1")
    await store.put(record)
    # Changing the caller's object (deep inside too) does not change the stored record...
    record.status = "away"
    record.state = SessionState.GRACE
    record.rooms[R2] = RoomOptions()
    record.rooms[R1].meta = {"role": "guest"}
    assert record.device_info is not None
    record.device_info["app"]["version"] = "9.9"
    record.subscriptions.add(ALICE)
    assert await store.get(S1) == expected
    # ...nor does changing what the store handed out...
    got = await store.get(S1)
    assert got is not None
    got.status = "busy"
    got.subscriptions.clear()
    got.rooms.clear()
    assert await store.get(S1) == expected
    assert await store.by_resume_token("tok-1") == expected
    assert await store.of_user(ALICE) == [expected]
    # ...until it is put again.
    await store.put(record)
    assert await store.get(S1) == record
    assert await store.of_user(ALICE) == [record]


async def test_session_by_resume_token(backplane: Backplane) -> None:
    store = backplane.sessions
    a = make_session(S1, ALICE, "tok-a")
    b = make_session(S2, BOB, "tok-b")
    await store.put(a)
    await store.put(b)
    assert await store.by_resume_token("tok-a") == a
    assert await store.by_resume_token("tok-b") == b
    assert await store.by_resume_token("tok-unknown") is None
    assert await store.by_resume_token("") is None


async def test_new_resume_token_retires_the_old(backplane: Backplane) -> None:
    store = backplane.sessions
    record = make_session(S1, ALICE, "tok-old")
    await store.put(record)
    record.resume_token = "tok-new"
    record.state = SessionState.GRACE
    await store.put(record)
    assert await store.by_resume_token("tok-old") is None
    assert await store.by_resume_token("tok-new") == record
    assert await store.get(S1) == record
    assert await store.of_user(ALICE) == [record]  # replaced, not added
    # Deleting it removes the new token; the old one stays gone.
    await store.delete(S1)
    assert await store.by_resume_token("tok-new") is None
    assert await store.by_resume_token("tok-old") is None


async def test_session_delete(backplane: Backplane) -> None:
    store = backplane.sessions
    a1 = make_session(S1, ALICE, "tok-1")
    a2 = make_session(S2, ALICE, "tok-2")
    await store.put(a1)
    await store.put(a2)
    await store.delete(S1)
    assert await store.get(S1) is None
    assert await store.by_resume_token("tok-1") is None
    assert await store.of_user(ALICE) == [a2]
    assert await store.get(S2) == a2
    # Deleting what is not there is not an error.
    await store.delete(S1)
    await store.delete(SessionId("never"))
    await store.delete(S2)
    assert await store.of_user(ALICE) == []
    assert await store.by_resume_token("tok-2") is None


async def test_sessions_of_user(backplane: Backplane) -> None:
    store = backplane.sessions
    assert await store.of_user(ALICE) == []
    a1 = make_session(S1, ALICE, "tok-1")
    a2 = make_session(S2, ALICE, "tok-2", state=SessionState.GRACE)
    a3 = make_session(S3, ALICE, "tok-3", status="away")
    b1 = make_session(S4, BOB, "tok-4")
    for record in (a1, a2, a3, b1):
        await store.put(record)
    assert by_id(await store.of_user(ALICE)) == [a1, a2, a3]
    assert await store.of_user(BOB) == [b1]
    assert await store.of_user(CAROL) == []
    # A record put again shows its new value, once.
    a2.state = SessionState.ACTIVE
    await store.put(a2)
    assert by_id(await store.of_user(ALICE)) == [a1, a2, a3]
    await store.delete(S4)
    assert await store.of_user(BOB) == []
    assert by_id(await store.of_user(ALICE)) == [a1, a2, a3]


# --- RoomStore: membership transitions ---------------------------------------------------------


async def test_first_second_and_last_device(backplane: Backplane) -> None:
    rooms = backplane.rooms
    watch = await RoomWatch(rooms, R1).start()
    c = await watch.check(
        await rooms.add(R1, ALICE, S1, {"role": "host"}, False, WALL), ChangeKind.JOINED
    )
    assert (c.user, c.devices, c.meta) == (ALICE, 1, {"role": "host"})
    assert (await rooms.snapshot(R1)).members == [MemberEntry(ALICE, 1, {"role": "host"}, WALL)]

    c = await watch.check(await rooms.add(R1, ALICE, S2, None, False, WALL), ChangeKind.UPDATED)
    assert (c.user, c.devices, c.meta) == (ALICE, 2, {"role": "host"})  # None keeps the meta
    assert (await rooms.snapshot(R1)).members == [MemberEntry(ALICE, 2, {"role": "host"}, WALL)]
    assert (await rooms.count(R1))[0] == 1  # one member, two devices

    c = await watch.check(await rooms.remove(R1, ALICE, S1), ChangeKind.UPDATED)
    assert (c.user, c.devices, c.meta) == (ALICE, 1, {"role": "host"})
    assert (await rooms.snapshot(R1)).members == [MemberEntry(ALICE, 1, {"role": "host"}, WALL)]

    c = await watch.check(await rooms.remove(R1, ALICE, S2), ChangeKind.LEFT)
    assert c.user == ALICE
    assert (await rooms.snapshot(R1)).members == []
    assert (await rooms.count(R1))[0] == 0


async def test_several_members(backplane: Backplane) -> None:
    rooms = backplane.rooms
    watch = await RoomWatch(rooms, R1).start()
    await watch.check(await rooms.add(R1, ALICE, S1, {"n": 1}, False, WALL), ChangeKind.JOINED)
    await watch.check(await rooms.add(R1, BOB, S2, None, False, WALL), ChangeKind.JOINED)
    await watch.check(await rooms.add(R1, CAROL, S3, {"n": 3}, False, WALL), ChangeKind.JOINED)
    await watch.check(await rooms.add(R1, BOB, S4, None, False, WALL), ChangeKind.UPDATED)
    snap = await rooms.snapshot(R1)
    assert snap.room == R1
    assert members(snap.members) == [
        MemberEntry(ALICE, 1, {"n": 1}, WALL),
        MemberEntry(BOB, 2, None, WALL),
        MemberEntry(CAROL, 1, {"n": 3}, WALL),
    ]
    assert await rooms.count(R1) == (3, snap.version)
    await watch.check(await rooms.remove(R1, BOB, S2), ChangeKind.UPDATED)
    await watch.check(await rooms.remove(R1, ALICE, S1), ChangeKind.LEFT)
    snap = await rooms.snapshot(R1)
    assert members(snap.members) == [
        MemberEntry(BOB, 1, None, WALL),
        MemberEntry(CAROL, 1, {"n": 3}, WALL),
    ]


async def test_adding_the_same_session_again(backplane: Backplane) -> None:
    rooms = backplane.rooms
    watch = await RoomWatch(rooms, R1).start()
    await watch.check(
        await rooms.add(R1, ALICE, S1, {"role": "host"}, False, WALL), ChangeKind.JOINED
    )
    # Same session, same meta (or no meta): nothing others can see changed.
    c = await watch.check(
        await rooms.add(R1, ALICE, S1, {"role": "host"}, False, WALL), ChangeKind.NONE
    )
    assert c.devices == 1
    await watch.check(await rooms.add(R1, ALICE, S1, None, False, WALL), ChangeKind.NONE)
    assert (await rooms.snapshot(R1)).members == [MemberEntry(ALICE, 1, {"role": "host"}, WALL)]
    # Same session, new meta: UPDATED, still one device.
    c = await watch.check(
        await rooms.add(R1, ALICE, S1, {"role": "guest"}, False, WALL), ChangeKind.UPDATED
    )
    assert (c.devices, c.meta) == (1, {"role": "guest"})
    assert (await rooms.snapshot(R1)).members == [MemberEntry(ALICE, 1, {"role": "guest"}, WALL)]
    # A second device with new meta: one UPDATED carrying both.
    c = await watch.check(
        await rooms.add(R1, ALICE, S2, {"role": "x"}, False, WALL), ChangeKind.UPDATED
    )
    assert (c.devices, c.meta) == (2, {"role": "x"})


async def test_set_meta(backplane: Backplane) -> None:
    rooms = backplane.rooms
    watch = await RoomWatch(rooms, R1).start()
    await watch.check(await rooms.add(R1, ALICE, S1, None, False, WALL), ChangeKind.JOINED)
    await watch.check(await rooms.add(R1, ALICE, S2, None, False, WALL), ChangeKind.UPDATED)
    c = await watch.check(await rooms.set_meta(R1, ALICE, {"cursor": [1, 2]}), ChangeKind.UPDATED)
    assert (c.user, c.devices, c.meta) == (ALICE, 2, {"cursor": [1, 2]})
    assert (await rooms.snapshot(R1)).members == [MemberEntry(ALICE, 2, {"cursor": [1, 2]}, WALL)]
    await watch.check(await rooms.set_meta(R1, ALICE, {"cursor": [1, 2]}), ChangeKind.NONE)
    # Not a member, or no such room: NONE, and nothing is created.
    await watch.check(await rooms.set_meta(R1, BOB, {"x": 1}), ChangeKind.NONE)
    c = await rooms.set_meta(R2, ALICE, {"x": 1})
    assert c.kind is ChangeKind.NONE
    assert (await rooms.snapshot(R2)).members == []
    assert (await rooms.snapshot(R1)).members == [MemberEntry(ALICE, 2, {"cursor": [1, 2]}, WALL)]


async def test_remove_what_is_not_there(backplane: Backplane) -> None:
    rooms = backplane.rooms
    assert (await rooms.remove(R1, ALICE, S1)).kind is ChangeKind.NONE  # no such room
    watch = await RoomWatch(rooms, R1).start()
    await watch.check(await rooms.add(R1, ALICE, S1, {"a": 1}, False, WALL), ChangeKind.JOINED)
    await watch.check(await rooms.remove(R1, BOB, S1), ChangeKind.NONE)  # not a member
    await watch.check(await rooms.remove(R1, ALICE, S2), ChangeKind.NONE)  # not her session
    assert (await rooms.remove(R2, ALICE, S1)).kind is ChangeKind.NONE  # other room
    assert (await rooms.snapshot(R1)).members == [MemberEntry(ALICE, 1, {"a": 1}, WALL)]
    await watch.check(await rooms.remove(R1, ALICE, S1), ChangeKind.LEFT)
    # Removing it a second time: NONE.
    assert (await rooms.remove(R1, ALICE, S1)).kind is ChangeKind.NONE
    assert await rooms.count(R1) == (0, (await rooms.snapshot(R1)).version)


async def test_unknown_room_is_empty(backplane: Backplane) -> None:
    snap = await backplane.rooms.snapshot(R1)
    assert (snap.room, snap.version, snap.members) == (R1, 0, [])
    assert await backplane.rooms.count(R1) == (0, 0)


# --- RoomStore: hidden (invisible) members -----------------------------------------------------


async def test_hidden_member_is_not_seen(backplane: Backplane) -> None:
    rooms = backplane.rooms
    watch = await RoomWatch(rooms, R1).start()
    await watch.check(await rooms.add(R1, BOB, S3, None, False, WALL), ChangeKind.JOINED)
    await watch.check(await rooms.add(R1, ALICE, S1, {"a": 1}, True, WALL), ChangeKind.NONE)
    await watch.check(await rooms.add(R1, ALICE, S2, None, True, WALL), ChangeKind.NONE)
    await watch.check(await rooms.set_meta(R1, ALICE, {"a": 2}), ChangeKind.NONE)
    await watch.check(await rooms.touch(R1, ALICE), ChangeKind.NONE)
    assert (await rooms.snapshot(R1)).members == [MemberEntry(BOB, 1, None, WALL)]
    assert (await rooms.count(R1))[0] == 1
    await watch.check(await rooms.remove(R1, ALICE, S1), ChangeKind.NONE)
    await watch.check(await rooms.remove(R1, ALICE, S2), ChangeKind.NONE)  # left unseen
    assert (await rooms.snapshot(R1)).members == [MemberEntry(BOB, 1, None, WALL)]
    # Gone for good: revealing her now does nothing.
    await watch.check(await rooms.set_hidden(R1, ALICE, False), ChangeKind.NONE)
    assert (await rooms.snapshot(R1)).members == [MemberEntry(BOB, 1, None, WALL)]


async def test_hidden_only_room_is_empty(backplane: Backplane) -> None:
    rooms = backplane.rooms
    watch = await RoomWatch(rooms, R1).start()
    await watch.check(await rooms.add(R1, ALICE, S1, None, True, WALL), ChangeKind.NONE)
    snap = await rooms.snapshot(R1)
    assert snap.members == []
    assert await rooms.count(R1) == (0, snap.version)


async def test_set_hidden(backplane: Backplane) -> None:
    rooms = backplane.rooms
    watch = await RoomWatch(rooms, R1).start()
    await watch.check(await rooms.add(R1, ALICE, S1, {"a": 1}, False, WALL), ChangeKind.JOINED)
    await watch.check(await rooms.add(R1, BOB, S3, None, False, WALL), ChangeKind.JOINED)
    # Hiding is a leave for the others...
    c = await watch.check(await rooms.set_hidden(R1, ALICE, True), ChangeKind.LEFT)
    assert c.user == ALICE
    assert (await rooms.snapshot(R1)).members == [MemberEntry(BOB, 1, None, WALL)]
    assert (await rooms.count(R1))[0] == 1
    await watch.check(await rooms.set_hidden(R1, ALICE, True), ChangeKind.NONE)  # idempotent
    # ...changes while hidden are not seen...
    await watch.check(await rooms.add(R1, ALICE, S2, None, True, WALL), ChangeKind.NONE)
    await watch.check(await rooms.set_meta(R1, ALICE, {"a": 2}), ChangeKind.NONE)
    # ...and revealing is a join carrying what changed meanwhile.
    c = await watch.check(await rooms.set_hidden(R1, ALICE, False), ChangeKind.JOINED)
    assert (c.user, c.devices, c.meta) == (ALICE, 2, {"a": 2})
    assert members((await rooms.snapshot(R1)).members) == [
        MemberEntry(ALICE, 2, {"a": 2}, WALL),
        MemberEntry(BOB, 1, None, WALL),
    ]
    await watch.check(await rooms.set_hidden(R1, ALICE, False), ChangeKind.NONE)  # idempotent
    # Not a member, or no such room: NONE.
    await watch.check(await rooms.set_hidden(R1, CAROL, True), ChangeKind.NONE)
    await watch.check(await rooms.set_hidden(R1, CAROL, False), ChangeKind.NONE)
    assert (await rooms.set_hidden(R2, ALICE, True)).kind is ChangeKind.NONE
    assert (await rooms.count(R1))[0] == 2


async def test_hidden_member_last_device_leaves_unseen(backplane: Backplane) -> None:
    rooms = backplane.rooms
    watch = await RoomWatch(rooms, R1).start()
    await watch.check(await rooms.add(R1, ALICE, S1, None, False, WALL), ChangeKind.JOINED)
    await watch.check(await rooms.add(R1, BOB, S3, None, False, WALL), ChangeKind.JOINED)
    await watch.check(await rooms.set_hidden(R1, ALICE, True), ChangeKind.LEFT)
    await watch.check(await rooms.remove(R1, ALICE, S1), ChangeKind.NONE)  # no second LEFT
    await watch.check(await rooms.set_hidden(R1, ALICE, False), ChangeKind.NONE)
    assert (await rooms.snapshot(R1)).members == [MemberEntry(BOB, 1, None, WALL)]


async def test_touch(backplane: Backplane) -> None:
    rooms = backplane.rooms
    assert (await rooms.touch(R1, ALICE)).kind is ChangeKind.NONE  # no such room
    watch = await RoomWatch(rooms, R1).start()
    await watch.check(await rooms.add(R1, ALICE, S1, {"a": 1}, False, WALL), ChangeKind.JOINED)
    await watch.check(await rooms.add(R1, ALICE, S2, None, False, WALL), ChangeKind.UPDATED)
    # A status change: UPDATED with a new version even though the roster itself is unchanged.
    c = await watch.check(await rooms.touch(R1, ALICE), ChangeKind.UPDATED)
    assert (c.user, c.devices, c.meta) == (ALICE, 2, {"a": 1})
    await watch.check(await rooms.touch(R1, ALICE), ChangeKind.UPDATED)
    await watch.check(await rooms.touch(R1, BOB), ChangeKind.NONE)  # not a member
    await watch.check(await rooms.set_hidden(R1, ALICE, True), ChangeKind.LEFT)
    await watch.check(await rooms.touch(R1, ALICE), ChangeKind.NONE)  # hidden
    assert (await rooms.snapshot(R1)).members == []


async def test_rooms_are_independent(backplane: Backplane) -> None:
    rooms = backplane.rooms
    w1 = await RoomWatch(rooms, R1).start()
    w2 = await RoomWatch(rooms, R2).start()
    await w1.check(await rooms.add(R1, ALICE, S1, {"in": 1}, False, WALL), ChangeKind.JOINED)
    await w2.check(await rooms.add(R2, ALICE, S1, {"in": 2}, False, WALL), ChangeKind.JOINED)
    await w1.check(await rooms.add(R1, BOB, S3, None, False, WALL), ChangeKind.JOINED)
    await w1.check(await rooms.touch(R1, BOB), ChangeKind.UPDATED)
    before = await rooms.snapshot(R2)
    assert before.members == [MemberEntry(ALICE, 1, {"in": 2}, WALL)]
    # Everything in R1 leaves R2 alone.
    await w1.check(await rooms.set_meta(R1, ALICE, {"in": 9}), ChangeKind.UPDATED)
    await w1.check(await rooms.set_hidden(R1, ALICE, True), ChangeKind.LEFT)
    await w1.check(await rooms.remove(R1, ALICE, S1), ChangeKind.NONE)
    await w1.check(await rooms.remove(R1, BOB, S3), ChangeKind.LEFT)
    assert await rooms.snapshot(R2) == before
    assert await rooms.count(R2) == (1, before.version)
    # And a change in R2 does not touch R1's version.
    r1 = await rooms.count(R1)
    await w2.check(await rooms.set_hidden(R2, ALICE, True), ChangeKind.LEFT)
    assert await rooms.count(R1) == r1


async def test_joined_at_is_the_first_sessions_time(backplane: Backplane) -> None:
    """A member's joined_at is the wall time its first session joined, exactly as the caller
    passed it; kept through more devices, updates, hiding and revealing; new after it left."""
    rooms = backplane.rooms
    t0 = 1_700_000_000.123456  # more digits than cjson keeps in a number
    watch = await RoomWatch(rooms, R1).start()
    c = await watch.check(await rooms.add(R1, ALICE, S1, None, False, t0), ChangeKind.JOINED)
    assert c.joined_at == t0
    c = await watch.check(
        await rooms.add(R1, ALICE, S2, {"a": 1}, False, t0 + 5), ChangeKind.UPDATED
    )
    assert c.joined_at == t0  # a second device is no new join
    assert (await watch.check(await rooms.touch(R1, ALICE), ChangeKind.UPDATED)).joined_at == t0
    c = await watch.check(await rooms.set_meta(R1, ALICE, {"a": 2}), ChangeKind.UPDATED)
    assert c.joined_at == t0
    # A hidden member has its time too, and keeps it when revealed.
    c = await watch.check(await rooms.add(R1, BOB, S3, None, True, t0 + 6), ChangeKind.NONE)
    assert c.joined_at == t0 + 6
    c = await watch.check(await rooms.set_hidden(R1, BOB, False), ChangeKind.JOINED)
    assert c.joined_at == t0 + 6
    assert (
        await watch.check(await rooms.set_hidden(R1, ALICE, True), ChangeKind.LEFT)
    ).joined_at is None
    c = await watch.check(await rooms.set_hidden(R1, ALICE, False), ChangeKind.JOINED)
    assert c.joined_at == t0
    assert members((await rooms.snapshot(R1)).members) == [
        MemberEntry(ALICE, 2, {"a": 2}, t0),
        MemberEntry(BOB, 1, None, t0 + 6),
    ]
    # The last device leaving ends the membership; coming back is a new join with a new time.
    c = await watch.check(await rooms.remove(R1, ALICE, S1), ChangeKind.UPDATED)
    assert c.joined_at == t0
    assert (await watch.check(await rooms.remove(R1, ALICE, S2), ChangeKind.LEFT)).joined_at is None
    c = await watch.check(await rooms.add(R1, ALICE, S2, None, False, t0 + 10), ChangeKind.JOINED)
    assert c.joined_at == t0 + 10
    # So does a deleted room made again.
    await rooms.delete(R1)
    assert (await rooms.add(R1, BOB, S3, None, False, t0 + 20)).joined_at == t0 + 20
    assert (await rooms.snapshot(R1)).members == [MemberEntry(BOB, 1, None, t0 + 20)]


async def test_room_meta_is_stored_by_value(backplane: Backplane) -> None:
    rooms = backplane.rooms
    meta: dict[str, Any] = {"role": "host", "tags": ["a"]}
    await rooms.add(R1, ALICE, S1, meta, False, WALL)
    # The caller's dict changing afterwards does not change the member...
    meta["role"] = "guest"
    meta["tags"].append("b")
    assert (await rooms.snapshot(R1)).members == [
        MemberEntry(ALICE, 1, {"role": "host", "tags": ["a"]}, WALL)
    ]
    # ...and neither does changing a snapshot handed out.
    snap = await rooms.snapshot(R1)
    member_meta = snap.members[0].meta
    assert member_meta is not None
    member_meta["role"] = "spy"
    assert (await rooms.snapshot(R1)).members == [
        MemberEntry(ALICE, 1, {"role": "host", "tags": ["a"]}, WALL)
    ]
    # So setting the changed dict is seen as the change it is.
    assert (await rooms.set_meta(R1, ALICE, meta)).kind is ChangeKind.UPDATED


# --- PresenceStore -----------------------------------------------------------------------------


async def test_first_and_last_session(backplane: Backplane) -> None:
    presence = backplane.presence
    change = await presence.set(ALICE, S1, "online", "hi", 100.0)
    assert change.before == UserPresence(ALICE, False, "offline", 0)
    assert change.after == UserPresence(ALICE, True, "online", 1, "hi", None)
    assert change.aggregate == "online"
    assert change.went_online and not change.went_offline

    change = await presence.set(ALICE, S2, "online", None, 110.0)
    assert not change.went_online
    assert change.after == UserPresence(ALICE, True, "online", 2, None, None)  # newest text

    change = await presence.remove(ALICE, S1, 120.0)
    assert not change.went_offline
    assert change.after.devices == 1

    change = await presence.remove(ALICE, S2, 130.0)
    assert change.went_offline and not change.went_online
    assert change.before.online
    gone = UserPresence(ALICE, False, "offline", 0, None, 130.0)
    assert change.after == gone
    assert change.aggregate == "offline"
    assert await presence.get_many([ALICE]) == [gone]
    assert await presence.get_private(ALICE) == gone

    # Back online: last_seen is cleared while online, and kept through the next goodbye.
    change = await presence.set(ALICE, S3, "away", None, 200.0)
    assert change.went_online
    assert change.after == UserPresence(ALICE, True, "away", 1, None, None)
    change = await presence.remove(ALICE, S3, 250.5)
    assert change.after.last_seen == 250.5


async def test_a_limit_refuses_a_new_session_only(backplane: Backplane) -> None:
    """``limit`` (max_connections_per_user) is checked in the same step as the add: a new
    session over it is refused with nothing written; one already there never is."""
    presence = backplane.presence
    await presence.set(ALICE, S1, "online", None, 1.0, limit=2)
    await presence.set(ALICE, S2, "away", None, 2.0, limit=2)
    with pytest.raises(SessionLimitReached) as err:
        await presence.set(ALICE, S3, "online", None, 3.0, limit=2)
    assert (err.value.limit, err.value.count) == (2, 2)
    assert await presence.sessions_of(ALICE) == [S1, S2]  # nothing written
    assert (await presence.get_private(ALICE)).status == "online"
    change = await presence.set(ALICE, S2, "dnd", None, 4.0, limit=2)  # already there
    assert change.after.status == "dnd"
    await presence.set(BOB, S4, "online", None, 4.0, limit=1)  # per user
    await presence.set(ALICE, S3, "online", None, 5.0)  # no limit asked: added
    await presence.remove(ALICE, S1, 6.0)
    await presence.remove(ALICE, S2, 6.0)
    await presence.set(ALICE, S1, "online", None, 7.0, limit=2)  # a slot freed: fits
    assert await presence.sessions_of(ALICE) == [S1, S3]


async def test_presence_changes_are_numbered_in_order_per_user(backplane: Backplane) -> None:
    presence = backplane.presence
    seqs = [
        (await presence.set(ALICE, S1, "online", None, 5.0)).seq,
        (await presence.set(ALICE, S2, "away", None, 5.0)).seq,  # same wall time: greater
        (await presence.set(ALICE, S1, "dnd", "focus", 4.0)).seq,  # the clock went back
        (await presence.remove(ALICE, S1, 5.0)).seq,
        (await presence.set(ALICE, S2, "away", None, 5.0)).seq,  # no visible change: numbered
        (await presence.remove(ALICE, S2, 5.0)).seq,  # the last session: offline
        (await presence.set(ALICE, S1, "online", None, 6.0)).seq,  # back later
    ]
    assert seqs == sorted(set(seqs)), seqs
    assert seqs[0] >= 5000 and seqs[-1] >= 6000  # at least the wall time in milliseconds
    assert (await presence.remove(ALICE, S1, 6.0)).seq == seqs[-1] + 1
    # Each user numbers its own changes.
    assert (await presence.set(BOB, S3, "online", None, 1.0)).seq == 1000
    # A user forgotten by the store (never seen online: invisible the whole time) still
    # numbers on from the wall clock, after its previous numbers.
    first = (await presence.set(CAROL, S4, "invisible", None, 7.0)).seq
    gone = (await presence.remove(CAROL, S4, 7.0)).seq
    again = (await presence.set(CAROL, S4, "invisible", None, 8.0)).seq
    assert first < gone < again and again >= 8000


async def test_status_change_of_one_session(backplane: Backplane) -> None:
    presence = backplane.presence
    await presence.set(ALICE, S1, "online", None, 1.0)
    change = await presence.set(ALICE, S1, "dnd", "focus", 2.0)
    assert (change.before.status, change.after.status) == ("online", "dnd")
    assert change.after.devices == 1
    assert change.after.text == "focus"
    assert change.changed and not change.went_online and not change.went_offline
    change = await presence.set(ALICE, S1, "dnd", "focus", 3.0)
    assert not change.changed


@pytest.mark.parametrize(
    ("low", "high"),
    [
        (low, high)
        for low, high in itertools.permutations(STATUS_PRECEDENCE, 2)
        if STATUS_PRECEDENCE[low] < STATUS_PRECEDENCE[high]
    ],
)
async def test_status_precedence(backplane: Backplane, low: str, high: str) -> None:
    presence = backplane.presence
    # Whichever device set it first, the higher status wins.
    await presence.set(ALICE, S1, low, None, 1.0)
    change = await presence.set(ALICE, S2, high, None, 2.0)
    assert change.aggregate == high
    await presence.set(BOB, S3, high, None, 1.0)
    change = await presence.set(BOB, S4, low, None, 2.0)
    assert change.aggregate == high
    for user in (ALICE, BOB):
        private = await presence.get_private(user)
        assert (private.online, private.status, private.devices) == (True, high, 2)
    # The winner leaves: the other device's status is what is left.
    change = await presence.remove(ALICE, S2, 3.0)
    assert change.aggregate == low
    assert (await presence.get_private(ALICE)).status == low


async def test_aggregate_over_several_devices(backplane: Backplane) -> None:
    presence = backplane.presence
    await presence.set(ALICE, S1, "away", "idle", 1.0)
    change = await presence.set(ALICE, S2, "online", "desk", 2.0)
    assert change.after == UserPresence(ALICE, True, "online", 2, "desk")
    change = await presence.set(ALICE, S3, "busy", "meeting", 3.0)
    assert change.after == UserPresence(ALICE, True, "busy", 3, "meeting")
    # The text is the winning status's, not the newest overall.
    change = await presence.set(ALICE, S2, "online", "back", 4.0)
    assert change.after == UserPresence(ALICE, True, "busy", 3, "meeting")
    change = await presence.remove(ALICE, S3, 5.0)
    assert change.after == UserPresence(ALICE, True, "online", 2, "back")
    change = await presence.remove(ALICE, S2, 6.0)
    assert change.after == UserPresence(ALICE, True, "away", 1, "idle")


async def test_invisible_is_offline_to_others(backplane: Backplane) -> None:
    presence = backplane.presence
    await presence.set(ALICE, S1, "online", None, 10.0)
    await presence.set(ALICE, S2, "online", None, 11.0)
    change = await presence.set(ALICE, S1, "invisible", None, 20.0)
    # Others see her leave, at the time passed in; her devices see the truth.
    assert change.went_offline
    assert change.after == UserPresence(ALICE, False, "offline", 0, None, 20.0)
    assert change.aggregate == "invisible"
    assert await presence.get_many([ALICE]) == [change.after]
    private = await presence.get_private(ALICE)
    assert (private.online, private.status, private.devices) == (True, "invisible", 2)
    # Her other device's status does not leak.
    change = await presence.set(ALICE, S2, "dnd", "secret", 25.0)
    assert not change.changed
    assert (await presence.get_many([ALICE]))[0].online is False
    # Visible again: online to everyone.
    change = await presence.set(ALICE, S1, "online", None, 30.0)
    assert change.went_online
    assert change.after == UserPresence(ALICE, True, "dnd", 2, "secret", None)
    assert await presence.get_many([ALICE]) == [change.after]


async def test_invisible_the_whole_time_leaves_no_trace(backplane: Backplane) -> None:
    presence = backplane.presence
    change = await presence.set(ALICE, S1, "invisible", None, 10.0)
    assert not change.changed and not change.went_online
    assert change.aggregate == "invisible"
    change = await presence.remove(ALICE, S1, 20.0)
    assert not change.changed and not change.went_offline
    never = UserPresence(ALICE, False, "offline", 0, None, None)
    assert await presence.get_many([ALICE]) == [never]
    assert await presence.get_private(ALICE) == never


async def test_remove_unknown_session(backplane: Backplane) -> None:
    presence = backplane.presence
    change = await presence.remove(ALICE, S1, 5.0)  # unknown user
    assert not change.changed
    assert await presence.get_private(ALICE) == UserPresence(ALICE, False, "offline", 0)
    await presence.set(ALICE, S1, "online", None, 10.0)
    change = await presence.remove(ALICE, S2, 11.0)  # unknown session
    assert not change.changed
    assert change.after == UserPresence(ALICE, True, "online", 1)


async def test_get_many_order_and_unknown_users(backplane: Backplane) -> None:
    presence = backplane.presence
    await presence.set(ALICE, S1, "online", "a", 1.0)
    await presence.set(BOB, S2, "busy", "b", 1.0)
    await presence.set(CAROL, S3, "online", None, 1.0)
    await presence.remove(CAROL, S3, 7.0)
    ghost = UserId("ghost")
    got = await presence.get_many([CAROL, ghost, BOB, ALICE, BOB])
    assert got == [
        UserPresence(CAROL, False, "offline", 0, None, 7.0),
        UserPresence(ghost, False, "offline", 0, None, None),
        UserPresence(BOB, True, "busy", 1, "b"),
        UserPresence(ALICE, True, "online", 1, "a"),
        UserPresence(BOB, True, "busy", 1, "b"),
    ]
    assert await presence.get_many([]) == []
    assert await presence.get_many(iter([ALICE])) == [UserPresence(ALICE, True, "online", 1, "a")]


# --- Broker ------------------------------------------------------------------------------------


@dataclass
class Inbox:
    """A broker handler that records what it gets and lets a test wait for the next one."""

    got: list[tuple[bytes, str | None]] = field(default_factory=list)
    queue: asyncio.Queue[tuple[bytes, str | None]] = field(default_factory=asyncio.Queue)

    def __call__(self, payload: bytes, origin: str | None) -> None:
        self.got.append((payload, origin))
        self.queue.put_nowait((payload, origin))

    async def next(self) -> tuple[bytes, str | None]:
        return await asyncio.wait_for(self.queue.get(), WAIT)


async def test_publish_reaches_subscriber(backplane: Backplane) -> None:
    broker = backplane.broker
    inbox = Inbox()
    await broker.subscribe("room:r1", inbox)
    await broker.publish("room:r1", b'{"type":"member.joined"}', "s1")
    assert await inbox.next() == (b'{"type":"member.joined"}', "s1")
    await broker.publish("room:r1", b"\x00\xff binary", None)
    assert await inbox.next() == (b"\x00\xff binary", None)
    await broker.publish("room:r1", b"no origin")  # origin defaults to None
    assert await inbox.next() == (b"no origin", None)
    # In order, all of them.
    for i in range(20):
        await broker.publish("room:r1", str(i).encode(), f"s{i}")
    for i in range(20):
        assert await inbox.next() == (str(i).encode(), f"s{i}")
    assert len(inbox.got) == 23


async def test_nothing_after_unsubscribe(backplane: Backplane) -> None:
    broker = backplane.broker
    old = Inbox()
    await broker.subscribe("ch", old)
    await broker.publish("ch", b"first", None)
    assert await old.next() == (b"first", None)
    await broker.unsubscribe("ch")
    await broker.publish("ch", b"while away", "s1")
    # Subscribing again and waiting for a marker proves "while away" went nowhere.
    new = Inbox()
    await broker.subscribe("ch", new)
    await broker.publish("ch", b"marker", None)
    assert await new.next() == (b"marker", None)
    assert old.got == [(b"first", None)]
    assert new.got == [(b"marker", None)]
    # Unsubscribing what is not subscribed is fine.
    await broker.unsubscribe("never-subscribed")


async def test_channels_are_independent(backplane: Backplane) -> None:
    broker = backplane.broker
    a, b = Inbox(), Inbox()
    await broker.subscribe("room:a", a)
    await broker.subscribe("room:b", b)
    await broker.publish("room:a", b"for a", "s1")
    assert await a.next() == (b"for a", "s1")
    await broker.publish("room:b", b"for b", "s2")
    assert await b.next() == (b"for b", "s2")
    assert a.got == [(b"for a", "s1")]
    assert b.got == [(b"for b", "s2")]
    # Unsubscribing one leaves the other subscribed.
    await broker.unsubscribe("room:a")
    await broker.publish("room:b", b"still", None)
    assert await b.next() == (b"still", None)
    assert a.got == [(b"for a", "s1")]


async def test_publish_without_subscriber(backplane: Backplane) -> None:
    broker = backplane.broker
    await broker.publish("nobody-listens", b"lost", "s1")
    inbox = Inbox()
    await broker.subscribe("nobody-listens", inbox)
    await broker.publish("nobody-listens", b"marker", None)
    assert await inbox.next() == (b"marker", None)
    assert inbox.got == [(b"marker", None)]  # nothing kept for later subscribers


# --- RoomStore against a model -----------------------------------------------------------------

N_ROOMS, N_USERS, N_DEVICES = 3, 3, 2
OPS = st.lists(
    st.tuples(
        st.sampled_from(["add", "remove", "hide", "reveal"]),
        st.integers(0, N_ROOMS - 1),
        st.integers(0, N_USERS - 1),
        st.integers(0, N_DEVICES - 1),
        st.booleans(),  # hidden, for an add that creates the member
    ),
    max_size=40,
)
_examples: Iterator[int] = itertools.count()


@dataclass
class _Entry:
    """The model of one member: its sessions in the room and whether it is hidden."""

    sessions: set[SessionId] = field(default_factory=set)
    hidden: bool = False


def _expected(op: str, entry: _Entry | None, session: SessionId, hidden: bool) -> ChangeKind:
    """The change the model predicts for ``op``, before the model applies it."""
    if entry is None:
        return ChangeKind.JOINED if op == "add" and not hidden else ChangeKind.NONE
    visible = not entry.hidden
    if op == "add":
        return ChangeKind.UPDATED if visible and session not in entry.sessions else ChangeKind.NONE
    if op == "remove":
        if session not in entry.sessions or not visible:
            return ChangeKind.NONE
        return ChangeKind.UPDATED if len(entry.sessions) > 1 else ChangeKind.LEFT
    if op == "hide":
        return ChangeKind.LEFT if visible else ChangeKind.NONE
    return ChangeKind.NONE if visible else ChangeKind.JOINED  # reveal


# Each example uses room/user/session ids no other example used, so one backplane (the
# function-scoped fixture) serves every example: nothing needs resetting between them, which
# also keeps a networked backend fast.
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(ops=OPS)
async def test_rooms_follow_a_simple_model(
    backplane: Backplane, ops: list[tuple[str, int, int, int, bool]]
) -> None:
    rooms = backplane.rooms
    ns = f"x{next(_examples)}-"
    room_ids = [RoomId(f"{ns}r{i}") for i in range(N_ROOMS)]
    user_ids = [UserId(f"{ns}u{i}") for i in range(N_USERS)]
    model: dict[RoomId, dict[UserId, _Entry]] = {r: {} for r in room_ids}
    versions: dict[RoomId, int] = {}  # last version seen, while the room has members

    for op, ri, ui, di, new_hidden in ops:
        room, user = room_ids[ri], user_ids[ui]
        session = SessionId(f"{user}-d{di}")  # a session belongs to one user
        entry = model[room].get(user)
        expected = _expected(op, entry, session, new_hidden)
        occupied = bool(model[room])
        if op == "add":
            # A consistent caller: an existing member's hidden flag is whatever it is now.
            hidden = entry.hidden if entry is not None else new_hidden
            change = await rooms.add(room, user, session, None, hidden, WALL)
            if entry is None:
                entry = model[room][user] = _Entry(hidden=hidden)
            entry.sessions.add(session)
        elif op == "remove":
            change = await rooms.remove(room, user, session)
            if entry is not None and session in entry.sessions:
                entry.sessions.discard(session)
                if not entry.sessions:
                    del model[room][user]
        else:
            change = await rooms.set_hidden(room, user, op == "hide")
            if entry is not None:
                entry.hidden = op == "hide"

        assert (change.room, change.user, change.kind) == (room, user, expected)
        if occupied:
            step = 0 if expected is ChangeKind.NONE else 1
            assert change.version == versions[room] + step
        versions[room] = change.version
        if not model[room]:
            del versions[room]  # where an emptied room's version goes on from is not specified

        for r in room_ids:
            snap = await rooms.snapshot(r)
            assert await rooms.count(r) == (len(snap.members), snap.version)
            want = {u: len(e.sessions) for u, e in model[r].items() if not e.hidden}
            assert {m.user: m.devices for m in snap.members} == want
            assert len(snap.members) == len(want)  # no user listed twice
            if model[r]:
                assert snap.version == versions[r]


# --- RoomStore: deleting a room --------------------------------------------------------------


async def test_delete_removes_every_member_and_moves_the_version_on(backplane: Backplane) -> None:
    rooms = backplane.rooms
    await rooms.add(R1, ALICE, S1, {"seat": 1}, False, WALL)
    await rooms.add(R1, ALICE, S2, None, False, WALL)
    await rooms.add(R1, BOB, S3, None, False, WALL)
    await rooms.add(R1, CAROL, S4, None, True, WALL)  # hidden: deleted too
    await rooms.add(R2, BOB, S3, None, False, WALL)
    _, before = await rooms.count(R1)
    deletion = await rooms.delete(R1)
    assert deletion.room == R1
    assert deletion.version == before + 1
    assert {u: sorted(s) for u, s in deletion.members.items()} == {
        ALICE: [S1, S2],
        BOB: [S3],
        CAROL: [S4],
    }
    snap = await rooms.snapshot(R1)
    assert snap.members == []
    assert (await rooms.count(R1))[0] == 0
    # Another room is left alone.
    assert [m.user for m in (await rooms.snapshot(R2)).members] == [BOB]
    # Leaving a deleted room is nothing.
    assert (await rooms.remove(R1, ALICE, S1)).kind is ChangeKind.NONE
    # Joining again makes a new room: a first join.
    again = await rooms.add(R1, ALICE, S1, None, False, WALL)
    assert again.kind is ChangeKind.JOINED


async def test_deleting_a_room_nobody_is_in_changes_nothing(backplane: Backplane) -> None:
    deletion = await backplane.rooms.delete(RoomId("nobody-here"))
    assert deletion.members == {}
    assert (await backplane.rooms.snapshot(RoomId("nobody-here"))).members == []
