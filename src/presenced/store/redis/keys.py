"""Every Redis key presenced uses, built in this one module.

Keys of one room share the hash tag ``{r:ROOM}`` and keys of one user share ``{u:USER}``, so a
room (or a user) lives in one Cluster slot and a Lua script may touch all of its keys. Nothing
atomic ever spans a room and a user. Ids are used verbatim inside the tag; they cannot contain
white space (protocol rule) but may contain braces, which would break hash tags, so ``{`` and
``}`` are escaped.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Keys"]


def _tag(text: str) -> str:
    return text.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")


@dataclass(frozen=True, slots=True)
class Keys:
    """Key names under one prefix (one presenced deployment per prefix)."""

    prefix: str = "pd"

    # --- sessions --------------------------------------------------------------------------

    def session(self, session_id: str) -> str:
        """The session record (a serialized Session)."""
        return f"{self.prefix}:{{s:{_tag(session_id)}}}"

    def resume_token(self, token: str) -> str:
        """Resume token -> session id."""
        return f"{self.prefix}:{{t:{_tag(token)}}}"

    def user_sessions(self, user: str) -> str:
        """Set of the user's session ids."""
        return f"{self.prefix}:{{u:{_tag(user)}}}:sessions"

    # --- presence (one user's keys share a slot) ---------------------------------------

    def user_statuses(self, user: str) -> str:
        """Hash session id -> status record, for aggregation."""
        return f"{self.prefix}:{{u:{_tag(user)}}}:status"

    def user_meta(self, user: str) -> str:
        """Hash: last_seen, seq."""
        return f"{self.prefix}:{{u:{_tag(user)}}}:meta"

    # --- rooms (one room's keys share a slot) ------------------------------------------

    def room(self, room: str, part: str) -> str:
        """A part of a room's state: members, devices, meta, hidden, version, log, ..."""
        return f"{self.prefix}:{{r:{_tag(room)}}}:{part}"

    # --- nodes -------------------------------------------------------------------------

    def node_lease(self, node_id: str) -> str:
        return f"{self.prefix}:node:{_tag(node_id)}"

    def channel(self, name: str) -> str:
        """A pub/sub channel; the part in braces picks the shard in sharded pub/sub."""
        return f"{self.prefix}:{{c:{_tag(name)}}}"
