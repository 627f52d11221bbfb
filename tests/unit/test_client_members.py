"""The client SDK's member lists, pure: the room version rule of docs/protocol.md ("Rooms and
room versions") applied to member events alone and inside ``room.batch``, snapshots from
``room.joined`` / ``room.members``, the own ``room.meta`` reply and ``room.summary`` counts.
No sockets: :class:`MemberViews` is fed frames and says what to surface and which
``room.members`` to ask for."""

from __future__ import annotations

from presenced.client.members import MemberList, MembersResynced, MemberViews
from presenced.protocol.messages import (
    Member,
    MemberJoined,
    MemberLeft,
    MemberUpdated,
    Presence,
    RoomBatch,
    RoomJoined,
    RoomMembersReply,
    RoomMetaUpdated,
    RoomSummary,
)

ME = "alice"


def member(user: str) -> Member:
    return Member(user=user, status="online", devices=1)


def joined(
    version: int, user: str, room: str = "r", meta: dict[str, object] | None = None
) -> MemberJoined:
    return MemberJoined(
        room=room, version=version, user=user, status="online", devices=1, meta=meta
    )


def left(version: int, user: str, room: str = "r") -> MemberLeft:
    return MemberLeft(room=room, version=version, user=user, reason="left")


def updated(version: int, user: str, status: str = "busy", room: str = "r") -> MemberUpdated:
    return MemberUpdated(room=room, version=version, user=user, status=status, devices=2)


def snapshot(version: int, *users: str, room: str = "r") -> RoomMembersReply:
    return RoomMembersReply(room=room, version=version, members=[member(u) for u in users], ref=9)


def seeded(version: int = 5, *users: str) -> MemberViews:
    """In room r at ``version`` with ``users`` (alice alone by default), as after a join."""
    views = MemberViews()
    views.expect("r")
    reply = RoomJoined(
        room="r", version=version, members=[member(u) for u in users or (ME,)], ref=1
    )
    assert views.reply(reply, ME) == []  # the first snapshot is the join's reply: no event
    return views


def listed(views: MemberViews, room: str = "r") -> MemberList:
    current = views.get(room)
    assert current is not None
    return current


def users(views: MemberViews, room: str = "r") -> list[str]:
    return sorted(listed(views, room).members)


def test_the_next_version_is_applied_and_surfaced() -> None:
    views = seeded(5)
    for event in (joined(6, "bob", meta={"seat": 1}), updated(7, "bob"), joined(8, "carol")):
        assert views.receive(event) == [event]
    current = listed(views)
    assert (current.version, current.count, current.synced) == (8, 3, True)
    bob = current.members["bob"]
    assert (bob.status, bob.devices, bob.meta) == ("busy", 2, None)  # the update replaced it
    assert views.receive(left(9, "bob")) == [left(9, "bob")]
    assert users(views) == ["alice", "carol"]
    assert views.take_requests() == []


def test_versions_at_or_below_the_list_are_skipped() -> None:
    views = seeded(5, ME, "bob")
    assert views.receive(joined(5, "bob")) == []  # the snapshot already has it
    assert views.receive(left(3, "bob")) == []  # older still
    assert users(views) == ["alice", "bob"] and listed(views).version == 5


def test_a_version_gap_asks_for_a_snapshot_and_holds_events_until_it_comes() -> None:
    views = seeded(5)
    assert views.receive(joined(7, "carol")) == []  # 6 is missing: not applied, not surfaced
    assert views.receive(joined(8, "dave")) == []
    assert views.take_requests() == ["r"]
    assert views.take_requests() == []  # asked once
    assert not listed(views).synced and users(views) == ["alice"]

    out = views.reply(snapshot(7, ME, "bob", "carol"), ME)
    # The list is replaced (bob's join at 6 was the missing event), then 8 follows.
    assert out == [
        MembersResynced(room="r", version=7, members=(member(ME), member("bob"), member("carol"))),
        joined(8, "dave"),
    ]
    assert users(views) == ["alice", "bob", "carol", "dave"]
    assert (listed(views).version, listed(views).synced) == (8, True)


def test_a_snapshot_still_behind_the_held_events_asks_again() -> None:
    views = seeded(5)
    views.receive(joined(9, "erin"))
    views.take_requests()
    out = views.reply(snapshot(6, ME, "bob"), ME)  # taken before 7 and 8 happened
    assert [type(e) for e in out] == [MembersResynced]
    assert views.take_requests() == ["r"]
    assert not listed(views).synced


def test_a_snapshot_equal_to_the_list_says_nothing() -> None:
    views = seeded(5, ME, "bob")
    views.receive(joined(7, "carol"))
    views.take_requests()
    # What happened at 6 to 8 (carol came and went) left the list as it was.
    assert views.reply(snapshot(8, ME, "bob"), ME) == []
    assert listed(views).version == 8 and listed(views).synced


def test_a_snapshot_older_than_the_list_is_ignored_unless_one_is_due() -> None:
    views = seeded(5, ME)
    views.receive(joined(6, "bob"))
    assert views.reply(snapshot(4, ME), ME) == []  # an app's room.members racing the events
    assert users(views) == ["alice", "bob"] and listed(views).version == 6
    views.reply(snapshot(6, ME, "bob"), ME)  # the same version: taken, nothing changes
    assert listed(views).version == 6


def test_batches_are_unpacked_by_the_caller_and_follow_the_same_rule() -> None:
    # A room.batch holds events in order; one that the join's snapshot covers is skipped.
    views = seeded(6, ME, "bob")
    batch = RoomBatch(room="r", events=[joined(6, "bob"), joined(7, "carol"), left(8, "bob")])
    out = [e for event in batch.events for e in views.receive(event)]
    assert out == batch.events[1:]
    assert users(views) == ["alice", "carol"]


def test_events_before_the_join_reply_wait_for_it() -> None:
    views = MemberViews()
    views.expect("r")
    assert views.get("r") is None
    # The room's channel is subscribed before the snapshot is taken: events may lead it.
    assert views.receive(joined(5, ME)) == []
    assert views.receive(joined(6, "bob")) == []
    reply = RoomJoined(room="r", version=5, members=[member(ME)], ref=1)
    assert views.reply(reply, ME) == [joined(6, "bob")]
    assert users(views) == ["alice", "bob"] and listed(views).version == 6


def test_rooms_not_joined_through_the_client_pass_through_untracked() -> None:
    views = MemberViews()
    event = joined(3, "bob", room="elsewhere")
    assert views.receive(event) == [event]
    assert views.reply(snapshot(3, "bob", room="elsewhere"), ME) == []  # room.members of it
    assert views.get("elsewhere") is None
    presence = Presence(user="bob", online=True, status="online", devices=1)
    assert views.receive(presence) == [presence]


def test_own_meta_reply_moves_the_version_and_the_meta() -> None:
    views = seeded(5, ME, "bob")
    views.reply(RoomMetaUpdated(room="r", version=6, meta={"seat": 2}, ref=3), ME)
    assert listed(views).version == 6 and listed(views).members[ME].meta == {"seat": 2}
    assert views.receive(joined(7, "carol")) == [joined(7, "carol")]  # no false gap
    views.reply(RoomMetaUpdated(room="r", version=9, meta={"seat": 3}, ref=4), ME)
    assert views.take_requests() == ["r"]  # 8 was missed


def test_members_keep_the_join_time_of_their_join_or_snapshot() -> None:
    views = MemberViews()
    views.expect("r")
    mine = Member(user=ME, status="online", devices=1, joined_at=100.5)
    views.reply(RoomJoined(room="r", version=5, members=[mine], ref=1), ME)
    assert listed(views).members[ME].joined_at == 100.5
    bob = MemberJoined(
        room="r", version=6, user="bob", status="online", devices=1, joined_at=200.25
    )
    views.receive(bob)
    assert listed(views).members["bob"].joined_at == 200.25
    # member.updated carries no join time: the member keeps its own...
    views.receive(updated(7, "bob"))
    assert (listed(views).members["bob"].status, listed(views).members["bob"].joined_at) == (
        "busy",
        200.25,
    )
    # ...and so does this user when its own meta moves.
    views.reply(RoomMetaUpdated(room="r", version=8, meta={"seat": 1}, ref=2), ME)
    assert listed(views).members[ME].joined_at == 100.5
    # A join from a server that does not say: unknown.
    views.receive(joined(9, "carol"))
    assert listed(views).members["carol"].joined_at is None


def test_summary_sets_the_count_and_the_next_member_event_resnapshots() -> None:
    views = seeded(5, ME, "bob")
    summary = RoomSummary(room="r", count=900, version=40)
    assert views.receive(summary) == [summary]
    current = listed(views)
    assert (current.count, current.version, current.synced) == (900, 5, True)
    assert views.receive(RoomSummary(room="r", count=800, version=39)) != []  # surfaced, stale
    assert listed(views).count == 900
    # Back under the limit: member events resume past the list's version: a gap.
    assert views.receive(left(41, "bob")) == []
    assert views.take_requests() == ["r"]
    views.reply(snapshot(41, *(f"u{i}" for i in range(3))), ME)
    assert listed(views).count == 3


def test_connection_lost_holds_every_list_until_the_welcome_decides() -> None:
    views = seeded(5, ME, "bob")
    views.connection_lost()
    assert not listed(views).synced
    assert views.receive(joined(6, "carol")) == []
    assert views.take_requests() == []  # refresh() or a re-join's room.joined will come
    views.refresh("r")
    assert views.take_requests() == ["r"]
    out = views.reply(snapshot(7, ME, "carol"), ME)
    assert out == [MembersResynced(room="r", version=7, members=(member(ME), member("carol")))]


def test_abandon_stops_holding_and_forget_drops_the_list() -> None:
    views = seeded(5)
    views.receive(joined(7, "carol"))
    views.abandon("r")  # the room.members request failed
    assert listed(views).synced and users(views) == ["alice"]
    assert views.take_requests() == []
    views.receive(joined(8, "dave"))  # still past the list: asks again
    assert views.take_requests() == ["r"]
    views.forget("r")
    assert views.get("r") is None and views.take_requests() == []
    views.expect("new")
    views.abandon("new")  # a first join that failed leaves nothing behind
    assert "new" not in views.views


def test_the_member_list_is_a_read_only_copy() -> None:
    views = seeded(5, ME, "bob")
    before = listed(views)
    views.receive(left(6, "bob"))
    assert sorted(before.members) == ["alice", "bob"]
    assert sorted(listed(views).members) == ["alice"]
