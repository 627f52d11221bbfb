"""Every Redis key presenced uses, built in this one module.

Keys of one room share the hash tag ``{r:ROOM}`` and keys of one user share ``{u:USER}``, so a
room (or a user) lives in one Cluster slot and a Lua script may touch all of its keys. Nothing
atomic ever spans a room and a user. Ids are used verbatim inside the tag; they cannot contain
white space (protocol rule) but may contain braces, which would break hash tags, so ``{`` and
``}`` are escaped.

The admin reads that list rooms, users or sessions have no index to read (see
store/base.py RoomStore.rooms): they SCAN with a MATCH pattern built here (``match_*``), and
take the ids back out of the keys found (``*_of_key``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Keys", "glob_escape"]


def _tag(text: str) -> str:
    return text.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")


_ESCAPED = re.compile("%(25|7B|7D)")
_UNESCAPE = {"25": "%", "7B": "{", "7D": "}"}


def _untag(text: str) -> str:
    """The id :func:`_tag` escaped (one pass, so ``%257B`` is ``%7B`` again, not ``{``)."""
    return _ESCAPED.sub(lambda m: _UNESCAPE[m.group(1)], text)


def glob_escape(text: str) -> str:
    """``text`` as a literal inside a Redis glob pattern (MATCH): ``* ? [ ] \\`` escaped."""
    return re.sub(r"([\\*?\[\]])", r"\\\1", text)


@dataclass(frozen=True, slots=True)
class Keys:
    """Key names under one prefix (one presenced deployment per prefix)."""

    prefix: str = "pd"

    # --- sessions --------------------------------------------------------------------------

    def session(self, session_id: str) -> str:
        """Hash of one session: ``d`` (the msgspec-serialized Session), ``n`` (the owner node;
        it wins over the node inside ``d``, which take() leaves as it was), ``t`` (resume
        token), ``u`` (user). TTL: the session ttl (60 s by default), refreshed by every put
        and by the owner's refresh."""
        return f"{self.prefix}:{{s:{_tag(session_id)}}}"

    def resume_token(self, token: str) -> str:
        """Resume token -> session id. TTL: the session ttl, like the record."""
        return f"{self.prefix}:{{t:{_tag(token)}}}"

    def user_sessions(self, user: str) -> str:
        """Set of the user's session ids (an index: readers check each record). TTL: the
        session ttl, refreshed by every put of one of them."""
        return f"{self.prefix}:{{u:{_tag(user)}}}:sessions"

    def user_watchers(self, user: str) -> str:
        """Set of the ids of the sessions subscribed to the user's presence (an index, like
        user_sessions: readers check each record). TTL: the session ttl, refreshed by every
        put of one of them and by the owner's refresh."""
        return f"{self.prefix}:{{u:{_tag(user)}}}:watchers"

    def match_sessions(self) -> str:
        """SCAN pattern of every session hash (:meth:`session`) of this prefix: the live
        records (an expired one is never returned)."""
        return f"{glob_escape(self.prefix)}:{{s:*}}"

    def node_sessions(self, node: str) -> str:
        """Set of the session ids a node owns (an index, like user_sessions). TTL: the session
        ttl, refreshed by every put of one of them."""
        return f"{self.prefix}:{{n:{_tag(node)}}}:sessions"

    # --- presence (one user's keys share a slot) ---------------------------------------

    def user_statuses(self, user: str) -> str:
        """Hash session id -> status record (JSON: status, rank, text, seq), for aggregation.
        TTL: 1 day by default (RedisPresenceStore), refreshed by every presence_* write."""
        return f"{self.prefix}:{{u:{_tag(user)}}}:status"

    def user_meta(self, user: str) -> str:
        """Hash: ``ls`` (last seen, the caller's wall time as written), ``seq`` (orders the
        statuses' texts), ``ch`` (the number of the user's latest presence change,
        PresenceChange.seq). TTL: 30 days by default, refreshed by every presence_* write, so a
        last seen outlives the statuses; deleted when the user has neither sessions nor one."""
        return f"{self.prefix}:{{u:{_tag(user)}}}:meta"

    def match_user_statuses(self) -> str:
        """SCAN pattern of every user's statuses hash: the users with a present session
        (presence_remove empties the hash with the last one, and Redis drops empty hashes)."""
        return f"{glob_escape(self.prefix)}:{{u:*}}:status"

    def parse_user_statuses(self, key: str) -> str:
        """The user id of a :meth:`user_statuses` key."""
        return _untag(_between(key, f"{self.prefix}:{{u:", "}:status"))

    # --- rooms (one room's keys share a slot) ------------------------------------------

    def room(self, room: str, part: str) -> str:
        """A part of a room's state: members, devices, meta, hidden, version, log, ..."""
        return f"{self.prefix}:{{r:{_tag(room)}}}:{part}"

    # Membership (RedisRoomStore, room_*.lua). TTL of both: 1 day by default, refreshed by
    # every room_* write; both are deleted when the room's last member (hidden or not) leaves.

    def room_state(self, room: str) -> str:
        """Hash: ``v`` (the room version), ``n`` (visible members, so count() is O(1))."""
        return self.room(room, "state")

    def room_members(self, room: str) -> str:
        """Hash user -> member record (JSON: ``s`` session ids, ``h`` hidden, ``m`` meta JSON,
        ``j`` joined-at: the wall time of the first session's join, as text)."""
        return self.room(room, "members")

    def match_room_members(self, id_prefix: str = "") -> str:
        """SCAN pattern of the members hashes of the rooms whose id starts with ``id_prefix``:
        the rooms with members (the hash goes with the last one; the state hash may stay)."""
        return f"{glob_escape(self.prefix)}:{{r:{glob_escape(_tag(id_prefix))}*}}:members"

    def parse_room_members(self, key: str) -> str:
        """The room id of a :meth:`room_members` key."""
        return _untag(_between(key, f"{self.prefix}:{{r:", "}:members"))

    # --- nodes -------------------------------------------------------------------------

    def nodes(self) -> str:
        """Set of the nodes that hold (or held) a lease: the reaper's list. TTL: 1 day,
        refreshed by every lease renewal."""
        return f"{self.prefix}:nodes"

    def node_lease(self, node_id: str) -> str:
        return f"{self.prefix}:node:{_tag(node_id)}"

    def node_info(self, node_id: str) -> str:
        """String: the node's last report (JSON, NodeStore.report). TTL: the one the node
        gave, renewed by each report; deleted when the node is claimed. Not under
        ``node:``, so its expiry is not taken for a lease's by the expiry watch."""
        return f"{self.prefix}:node-info:{_tag(node_id)}"

    def channel(self, name: str) -> str:
        """A pub/sub channel; the part in braces picks the shard in sharded pub/sub."""
        return f"{self.prefix}:{{c:{_tag(name)}}}"

    # --- messages and typing (RedisMessageStore, RedisTypingStore) --------------------------
    # One room's stream keys share the room's hash tag, so each message_*.lua script runs on
    # one slot. TTL: every write script refreshes all of them to history_ttl + 1 day (rounded
    # up), so a room quiet for that long, or a whole-cluster crash, leaves nothing behind.

    def room_stream(self, room: str) -> str:
        """Hash: ``epoch`` (the stream's name) and ``offset`` (the latest event's)."""
        return self.room(room, "msg:stream")

    def room_events(self, room: str) -> str:
        """List of the kept events, oldest first (JSON, see store/redis/messages.py)."""
        return self.room(room, "msg:events")

    def room_messages(self, room: str) -> str:
        """Hash message id -> the kept message's current state (JSON)."""
        return self.room(room, "msg:states")

    def room_message_order(self, room: str) -> str:
        """Sorted set of the kept message ids, scored by offset."""
        return self.room(room, "msg:order")

    def room_temp_ids(self, room: str) -> str:
        """Hash ``len(user):user temp_id`` -> message id, for the kept messages that have one."""
        return self.room(room, "msg:temp")

    def room_seen(self, room: str) -> str:
        """Hash user -> seen-up-to offset."""
        return self.room(room, "msg:seen")

    def room_delivered(self, room: str) -> str:
        """Hash user -> delivered-up-to offset."""
        return self.room(room, "msg:delivered")

    def room_message_keys(self, room: str) -> list[str]:
        """Every stream key of ``room``, in the KEYS order of the message_*.lua scripts."""
        return [
            self.room_stream(room),
            self.room_events(room),
            self.room_messages(room),
            self.room_message_order(room),
            self.room_temp_ids(room),
            self.room_seen(room),
            self.room_delivered(room),
        ]

    def room_typing(self, room: str) -> str:
        """List of the users typing in ``room``, in the order they started. TTL: 10 minutes,
        refreshed by every typing_start (a failsafe: the node stops typing long before)."""
        return self.room(room, "typing")

    def room_typing_seq(self, room: str) -> str:
        """String: the number of the room's latest typing change (store/base.py TypingChange).
        TTL: 10 minutes, refreshed with the list's."""
        return self.room(room, "typing:seq")

    # --- end of messages and typing ----------------------------------------------------------


def _between(key: str, head: str, tail: str) -> str:
    if not (key.startswith(head) and key.endswith(tail)) or len(key) < len(head) + len(tail):
        raise ValueError(f"{key!r} is not a key of the form {head}...{tail}")
    return key[len(head) : len(key) - len(tail)]
