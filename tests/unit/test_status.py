"""PresenceBook and aggregate_status: a user's presence derived from its sessions.

Precedence invisible > dnd > busy > online > away over the user's devices, the text of the
winning status, invisible users shown offline to others but not to themselves, last seen kept
when the last session goes (or the user turns invisible), and the went_online / went_offline
flags the shell turns into presence events.
"""

from __future__ import annotations

import itertools

import pytest

from presenced.presence.status import (
    OFFLINE,
    STATUS_PRECEDENCE,
    PresenceBook,
    UserPresence,
    aggregate_status,
)
from presenced.typing import SessionId, UserId

__all__: list[str] = []

ALICE, BOB = UserId("alice"), UserId("bob")
S1, S2, S3 = SessionId("s1"), SessionId("s2"), SessionId("s3")
ORDER = ["invisible", "dnd", "busy", "online", "away"]  # strongest first


# --- aggregate_status ------------------------------------------------------------------------


def test_precedence_table() -> None:
    assert sorted(STATUS_PRECEDENCE, key=STATUS_PRECEDENCE.__getitem__, reverse=True) == ORDER


def test_no_devices_is_offline() -> None:
    assert aggregate_status([]) == OFFLINE == "offline"


@pytest.mark.parametrize("status", ORDER)
def test_single_device(status: str) -> None:
    assert aggregate_status([status]) == status


@pytest.mark.parametrize(("stronger", "weaker"), list(itertools.combinations(ORDER, 2)))
def test_stronger_status_wins_in_any_order(stronger: str, weaker: str) -> None:
    assert aggregate_status([stronger, weaker]) == stronger
    assert aggregate_status([weaker, stronger]) == stronger
    assert aggregate_status([weaker, weaker, stronger, weaker]) == stronger


def test_online_beats_away() -> None:
    # A phone idle in a pocket does not make a user at a laptop look away.
    assert aggregate_status(["away", "online", "away"]) == "online"
    assert aggregate_status(["away", "away"]) == "away"


def test_aggregate_accepts_any_iterable() -> None:
    assert aggregate_status(s for s in ["away", "busy"]) == "busy"


# --- PresenceBook: aggregation ---------------------------------------------------------------


def test_unknown_user_is_offline_never_seen() -> None:
    book = PresenceBook()
    expected = UserPresence(ALICE, False, OFFLINE, 0, None, None)
    assert book.public(ALICE) == expected
    assert book.private(ALICE) == expected
    assert book.online_users() == []
    assert book.sessions(ALICE) == []


def test_first_session_goes_online() -> None:
    book = PresenceBook()
    change = book.set(ALICE, S1, "online", "hi", 100.0)
    assert change.went_online
    assert not change.went_offline
    assert change.changed
    assert change.before == UserPresence(ALICE, False, OFFLINE, 0)
    assert change.after == UserPresence(ALICE, True, "online", 1, "hi", None)
    assert change.aggregate == "online"
    assert book.online_users() == [ALICE]
    assert book.sessions(ALICE) == [S1]


def test_multi_device_aggregation() -> None:
    book = PresenceBook()
    book.set(ALICE, S1, "away", "phone idle", 1.0)
    change = book.set(ALICE, S2, "online", "at my desk", 2.0)
    assert not change.went_online  # already online
    assert change.changed
    assert change.after == UserPresence(ALICE, True, "online", 2, "at my desk")
    change = book.set(ALICE, S3, "busy", "in a meeting", 3.0)
    assert change.after.status == "busy"
    assert change.after.text == "in a meeting"
    assert change.after.devices == 3
    # The busy device goes: back to online.
    change = book.remove(ALICE, S3, 4.0)
    assert change.after == UserPresence(ALICE, True, "online", 2, "at my desk")
    assert not change.went_offline
    # The online device goes too: away is what is left.
    change = book.remove(ALICE, S2, 5.0)
    assert change.after == UserPresence(ALICE, True, "away", 1, "phone idle")


def test_text_of_the_winning_status_newest_first() -> None:
    book = PresenceBook()
    book.set(ALICE, S1, "dnd", "focus", 1.0)
    book.set(ALICE, S2, "online", "free", 2.0)
    assert book.public(ALICE).text == "focus"  # dnd wins, so its text
    book.set(ALICE, S3, "dnd", "really focused", 3.0)
    assert book.public(ALICE).text == "really focused"  # newest among the winners
    book.set(ALICE, S1, "dnd", "focus again", 4.0)
    assert book.public(ALICE).text == "focus again"
    book.set(ALICE, S1, "dnd", None, 5.0)
    assert book.public(ALICE).text is None


def test_changing_a_session_status() -> None:
    book = PresenceBook()
    book.set(ALICE, S1, "online", None, 1.0)
    change = book.set(ALICE, S1, "dnd", None, 2.0)
    assert change.before.status == "online"
    assert change.after.status == "dnd"
    assert change.after.devices == 1
    assert not change.went_online and not change.went_offline
    # Setting the same thing again changes nothing visible.
    change = book.set(ALICE, S1, "dnd", None, 3.0)
    assert not change.changed


def test_users_are_independent() -> None:
    book = PresenceBook()
    book.set(ALICE, S1, "online", None, 1.0)
    book.set(BOB, S2, "busy", None, 1.0)
    assert sorted(book.online_users()) == [ALICE, BOB]
    book.remove(BOB, S2, 2.0)
    assert book.online_users() == [ALICE]
    assert book.public(ALICE).status == "online"


# --- last seen and going offline -------------------------------------------------------------


def test_last_seen_when_the_last_session_goes() -> None:
    book = PresenceBook()
    book.set(ALICE, S1, "online", None, 100.0)
    book.set(ALICE, S2, "online", None, 110.0)
    change = book.remove(ALICE, S1, 120.0)
    assert not change.went_offline
    assert change.after.last_seen is None
    change = book.remove(ALICE, S2, 130.0)
    assert change.went_offline
    assert not change.went_online
    assert change.after == UserPresence(ALICE, False, OFFLINE, 0, None, 130.0)
    assert change.aggregate == OFFLINE
    assert book.public(ALICE).last_seen == 130.0
    assert book.private(ALICE).last_seen == 130.0
    assert book.online_users() == []


def test_online_again_clears_last_seen_from_the_view_and_keeps_it_after() -> None:
    book = PresenceBook()
    book.set(ALICE, S1, "online", None, 100.0)
    book.remove(ALICE, S1, 130.0)
    change = book.set(ALICE, S2, "away", None, 200.0)
    assert change.went_online
    assert change.before.last_seen == 130.0
    assert change.after.last_seen is None  # online users have no "last seen"
    change = book.remove(ALICE, S2, 250.0)
    assert change.after.last_seen == 250.0


def test_remove_of_unknown_session_changes_nothing() -> None:
    book = PresenceBook()
    change = book.remove(ALICE, S1, 1.0)
    assert not change.changed and not change.went_offline
    book.set(ALICE, S1, "online", None, 1.0)
    change = book.remove(ALICE, S2, 2.0)
    assert not change.changed
    assert book.public(ALICE).online


# --- invisible -------------------------------------------------------------------------------


def test_invisible_appears_offline_publicly_but_not_privately() -> None:
    book = PresenceBook()
    book.set(ALICE, S1, "online", "hello", 100.0)
    change = book.set(ALICE, S2, "invisible", "shh", 110.0)
    # Others see her go offline, with the moment as last seen.
    assert change.went_offline
    assert change.after == UserPresence(ALICE, False, OFFLINE, 0, None, 110.0)
    assert change.aggregate == "invisible"
    assert book.public(ALICE) == UserPresence(ALICE, False, OFFLINE, 0, None, 110.0)
    # Her own devices see the truth.
    assert book.private(ALICE) == UserPresence(ALICE, True, "invisible", 2, "shh", None)
    # She is still online as far as sessions go.
    assert book.online_users() == [ALICE]
    # Closing the last session while invisible: nothing new for others, last seen unchanged.
    book.remove(ALICE, S1, 120.0)
    change = book.remove(ALICE, S2, 130.0)
    assert not change.changed
    assert not change.went_offline
    assert book.public(ALICE).last_seen == 110.0
    assert book.online_users() == []


def test_leaving_invisible_goes_online() -> None:
    book = PresenceBook()
    book.set(ALICE, S1, "invisible", None, 100.0)
    change = book.set(ALICE, S1, "online", "back", 200.0)
    assert change.went_online
    assert change.after == UserPresence(ALICE, True, "online", 1, "back")


def test_invisible_the_whole_time_leaves_no_trace() -> None:
    book = PresenceBook()
    change = book.set(ALICE, S1, "invisible", None, 100.0)
    assert not change.changed  # nobody saw anything
    assert not change.went_online
    assert change.aggregate == "invisible"
    change = book.remove(ALICE, S1, 200.0)
    assert not change.changed
    assert book.public(ALICE) == UserPresence(ALICE, False, OFFLINE, 0, None, None)
    assert book.private(ALICE).last_seen is None


def test_invisible_wins_over_every_other_device() -> None:
    book = PresenceBook()
    for n, status in enumerate(["online", "busy", "dnd", "away"]):
        book.set(ALICE, SessionId(f"d{n}"), status, None, 1.0)
    assert book.public(ALICE).status == "dnd"
    book.set(ALICE, SessionId("hidden"), "invisible", None, 2.0)
    assert not book.public(ALICE).online
    assert book.private(ALICE).status == "invisible"
    assert book.private(ALICE).devices == 5
