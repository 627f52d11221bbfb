"""Redis key names (store/redis/keys.py): hash tags that keep a room, or a user, in one slot.

A Lua script may only touch keys of one Cluster slot, so every key of one room must hash to
the same slot (and every key of one user), whatever the id holds: braces in an id would end
the hash tag early, so they are escaped, and the escaping must stay reversible so two ids never
share keys. The slot is computed as Redis Cluster does (redis.crc.key_slot).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.crc import key_slot

from presenced.store.redis.keys import Keys, glob_escape

__all__: list[str] = []

KEYS = Keys(prefix="pd")
# Any text an id may be made of, braces and percent signs included (no lone surrogates:
# keys go to the server as UTF-8).
IDS = st.text(st.characters(exclude_categories=["Cs"]), max_size=20) | st.sampled_from(
    ["{", "}", "{}", "}{", "a{b}c", "%7B", "%", "%25", "{r:x}", "x}"]
)


def slot(key: str) -> int:
    return key_slot(key.encode())


def hash_tag(key: str) -> str:
    """The part of ``key`` Redis Cluster hashes: between the first ``{`` and the next ``}``."""
    start = key.index("{")
    end = key.index("}", start + 1)
    assert end > start + 1, key
    return key[start + 1 : end]


def unescape(tag_text: str) -> str:
    return tag_text.replace("%7D", "}").replace("%7B", "{").replace("%25", "%")


def keys_of(keys: Keys, family: str, ident: str) -> list[str]:
    """The key every one-argument ``family_*`` method of Keys builds for ``ident``, so a key
    method added later is checked too (methods returning lists gather these; left out)."""
    found: list[str] = []
    for name, method in inspect.getmembers(keys, inspect.ismethod):
        if name.startswith(f"{family}_") and len(inspect.signature(method).parameters) == 1:
            built = method(ident)
            if isinstance(built, str):
                found.append(built)
    return found


def test_key_methods_are_found() -> None:
    rooms = keys_of(KEYS, "room", "r1")
    assert KEYS.room_state("r1") in rooms
    assert KEYS.room_members("r1") in rooms
    users = keys_of(KEYS, "user", "u1")
    assert KEYS.user_sessions("u1") in users
    assert KEYS.user_statuses("u1") in users
    assert KEYS.user_meta("u1") in users


@given(room=IDS)
def test_a_rooms_keys_share_one_slot(room: str) -> None:
    keys = [*keys_of(KEYS, "room", room), KEYS.room(room, "anything")]
    assert len(set(keys)) == len(keys)  # distinct keys...
    assert {slot(k) for k in keys} == {slot(KEYS.room_state(room))}  # ...one slot
    for key in keys:
        assert hash_tag(key) == hash_tag(KEYS.room_state(room))


@given(user=IDS)
def test_a_users_keys_share_one_slot(user: str) -> None:
    keys = keys_of(KEYS, "user", user)
    assert len(set(keys)) == len(keys)
    assert {slot(k) for k in keys} == {slot(KEYS.user_statuses(user))}


@given(ident=IDS)
def test_braces_are_escaped_and_the_id_comes_back(ident: str) -> None:
    builders: list[tuple[Callable[[str], str], str]] = [
        (KEYS.room_state, "r:"),
        (KEYS.user_meta, "u:"),
        (KEYS.session, "s:"),
        (KEYS.resume_token, "t:"),
        (KEYS.node_sessions, "n:"),
        (KEYS.channel, "c:"),
    ]
    for build, kind in builders:
        key = build(ident)
        tag = hash_tag(key)
        assert tag.startswith(kind)
        inner = tag.removeprefix(kind)
        assert "{" not in inner and "}" not in inner
        assert unescape(inner) == ident
        assert slot(key) == key_slot(tag.encode())  # the whole tag, not a piece of the id


@given(ident=IDS, prefix=st.sampled_from(["pd", "p*d", "a:{b}"]))
def test_scanned_keys_give_their_id_back(ident: str, prefix: str) -> None:
    keys = Keys(prefix=prefix)
    assert keys.parse_room_members(keys.room_members(ident)) == ident
    assert keys.parse_user_statuses(keys.user_statuses(ident)) == ident


def test_a_key_of_another_kind_is_no_id() -> None:
    for key in ("pd:{r:x}:state", "other:{r:x}:members", "pd:{r:"):
        with pytest.raises(ValueError, match="not a key of the form"):
            KEYS.parse_room_members(key)


def test_scan_patterns_escape_glob_characters() -> None:
    assert glob_escape("a*b?c[d]e\\f") == "a\\*b\\?c\\[d\\]e\\\\f"
    assert KEYS.match_room_members() == "pd:{r:*}:members"
    assert KEYS.match_user_statuses() == "pd:{u:*}:status"
    assert KEYS.match_sessions() == "pd:{s:*}"
    # The id prefix is tagged as the ids are, then escaped: it matches only itself.
    assert KEYS.match_room_members("a{*") == "pd:{r:a%7B\\**}:members"
    assert Keys(prefix="p?").match_room_members() == "p\\?:{r:*}:members"


@given(a=IDS, b=IDS)
def test_different_ids_never_share_keys(a: str, b: str) -> None:
    if a == b:
        assert KEYS.room_members(a) == KEYS.room_members(b)
    else:
        assert KEYS.room_members(a) != KEYS.room_members(b)
        assert KEYS.user_statuses(a) != KEYS.user_statuses(b)
        assert KEYS.session(a) != KEYS.session(b)


def test_escaping_examples() -> None:
    assert KEYS.room_state("a{b}c") == "pd:{r:a%7Bb%7Dc}:state"
    assert KEYS.room_state("%7B") == "pd:{r:%257B}:state"  # not the same room as "{"
    assert KEYS.room_state("{") == "pd:{r:%7B}:state"
    assert KEYS.user_sessions("}") == "pd:{u:%7D}:sessions"


@given(room=IDS)
def test_the_prefix_does_not_move_a_room(room: str) -> None:
    # Deployments side by side (and each conformance test's own prefix) keep a room's slot.
    assert slot(Keys(prefix="a").room_members(room)) == slot(Keys(prefix="other").room_state(room))


def test_rooms_and_users_spread_over_slots() -> None:
    rooms = {slot(KEYS.room_state(f"room-{i}")) for i in range(200)}
    users = {slot(KEYS.user_meta(f"user-{i}")) for i in range(200)}
    assert len(rooms) > 150 and len(users) > 150
    # A room and a user of the same name are different tags, so usually different slots.
    assert KEYS.room_state("x") != KEYS.user_meta("x")
    assert hash_tag(KEYS.room_state("x")) != hash_tag(KEYS.user_meta("x"))
