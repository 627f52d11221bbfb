"""User presence in Redis: the PresenceStore Protocol, with presence/status.py's semantics.

A user is two keys under its hash tag (one Cluster slot): a hash of its sessions' status
records (status, rank, text, and a per-user sequence number that orders the texts) and a meta
hash (last seen, the sequence counter, the number of the latest presence change). ``set`` and
``remove`` are each one Lua script that applies the change, numbers it
(PresenceChange.seq: ``max(previous + 1, wall ms)``), records last seen on the edge where the
user stops being visible online (and forgets a user never seen online), and returns the number
and the records before and after. The views
are then derived by presence/status.py's :func:`derive_view`, the one rule PresenceBook uses too:
status by STATUS_PRECEDENCE, text of the newest session with the winning status, invisible
users offline to others. Reads (``get_many``, ``get_private``) are one read-only script
(presence_read) per READ_CHUNK users on one server, and a pipeline of plain reads on Cluster.
The admin's ``online`` and ``online_count`` SCAN the statuses hashes: one exists exactly while
its user has a session (presence_remove takes out the last record and Redis drops the empty
hash).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec
from redis.asyncio.cluster import RedisCluster

from presenced.errors import SessionLimitReached
from presenced.presence.status import (
    STATUS_PRECEDENCE,
    PresenceChange,
    UserPresence,
    derive_view,
)
from presenced.store.base import Exported
from presenced.store.redis.keys import Keys, _tag
from presenced.store.redis.outbox import RedisOutbox, ScriptEvent
from presenced.store.redis.scan import scan_keys
from presenced.store.redis.scripts import Scripts
from presenced.typing import SessionId, UserId

__all__ = [
    "LAST_SEEN_TTL",
    "PRESENCE_TTL",
    "READ_CHUNK",
    "DeviceStatus",
    "RedisPresenceStore",
    "view",
]

PRESENCE_TTL = 86400.0
"""Seconds a user's status records live after its last presence change (a failsafe)."""
LAST_SEEN_TTL = 30 * 86400.0
"""Seconds a user's last seen lives after its last presence change."""
READ_CHUNK = 250
"""Users per presence_read call. A script holds the single-threaded server for the whole of
its run, and every other command waits behind it: the room messages a node publishes, the
joins, the lease renewals. 250 users take Valkey about a millisecond (~3.5 - 4.5 us a user,
bench/results/2026-12-03-presence-read-variants), 1,000 about four, where a pipeline of
plain reads lets other clients' commands in between the batches the server reads off its
socket. So a large read (a big room's join snapshot, a page of 1,000) is several calls, one
after another, each a short wait for the others."""


_USER_EVENTS = ("user.online", "user.offline", "user.status")
"""The events the presence scripts make themselves, in their pairs' order (_presence.lua)."""


class DeviceStatus(msgspec.Struct, frozen=True):
    """One session's status record as presence_*.lua keeps it (cjson)."""

    s: str  # status
    r: int  # its rank in STATUS_PRECEDENCE
    q: int  # sequence number: higher was set later
    t: str | None = None  # text


_record_decoder = msgspec.json.Decoder(DeviceStatus)
_read_decoder = msgspec.json.Decoder(list[tuple[str | None, list[DeviceStatus]]])
"""presence_read.lua's reply: per user, its last seen (as written, or null) and records."""


def view(
    user: UserId, devices: list[DeviceStatus], last_seen: float | None, *, public: bool
) -> UserPresence:
    """The user's presence from its sessions' records (presence/status.py's one rule)."""
    return derive_view(user, [(d.s, d.t, d.q) for d in devices], last_seen, public=public)


class RedisPresenceStore:
    """PresenceStore on Redis or Redis Cluster: each change is one script on the user's slot."""

    def __init__(
        self,
        client: Any,
        keys: Keys,
        scripts: Scripts,
        ttl: float = PRESENCE_TTL,
        last_seen_ttl: float = LAST_SEEN_TTL,
        outbox: RedisOutbox | None = None,
    ) -> None:
        self._client = client
        self._keys = keys
        self._scripts = scripts
        self._ttl_ms = max(1, round(ttl * 1000))
        self._last_seen_ttl_ms = max(1, round(last_seen_ttl * 1000))
        self._outbox = outbox
        self._cluster = isinstance(client, RedisCluster)

    async def set(
        self,
        user: UserId,
        session: SessionId,
        status: str,
        text: str | None,
        wall: float,
        exported: Exported = None,
        *,
        quiet: bool = False,
        limit: int | None = None,
    ) -> PresenceChange:
        """Add a session or change its status; with an outbox, the script writes the
        change's user.* event and, for a new session, ``exported["session.opened"]``
        (``quiet``: no event at all). ``limit``: the script refuses a new session when the
        user's hash already has that many (SessionLimitReached), in the same step."""
        rank = STATUS_PRECEDENCE[status]  # an unknown status is a KeyError, as in memory
        args = [
            session,
            status,
            rank,
            "0" if text is None else "1",
            text or "",
            repr(float(wall)),
            self._ttl_ms,
            self._last_seen_ttl_ms,
            int(wall * 1000),
            limit or 0,
        ]
        events = () if quiet else ("session.opened", *_USER_EVENTS)
        result = await self._run("presence_set", user, args, wall, events, exported)
        if int(result[0]) == -1:
            raise SessionLimitReached(user, limit or 0, int(result[1]))
        return _change(user, result)

    async def remove(
        self, user: UserId, session: SessionId, wall: float, exported: Exported = None
    ) -> PresenceChange:
        """Remove a closed session; the last visible one leaves ``last_seen = wall``. With an
        outbox, the script writes the change's user.* event and, if the session was there,
        ``exported["force_leave"]`` (when given) and ``exported["session.closed"]``."""
        args = [session, repr(float(wall)), self._ttl_ms, self._last_seen_ttl_ms, int(wall * 1000)]
        events = ("force_leave", "session.closed", *_USER_EVENTS)
        return _change(user, await self._run("presence_remove", user, args, wall, events, exported))

    async def _run(
        self,
        script: str,
        user: UserId,
        args: list[Any],
        wall: float,
        events: tuple[str, ...],
        exported: Exported,
    ) -> Any:
        """Run a presence script; with an outbox, with the events it may write (those whose
        data the caller gives, and the user.* ones, whose data the script makes)."""
        keys = self._user_keys(user)
        outbox = self._outbox
        if outbox is None or not outbox.exporting or not events:
            return await self._scripts.run(script, keys, args)
        given = exported or {}
        key = f"user:{user}"
        planned = [ScriptEvent(t, key, user, None, given.get(t)) for t in events]
        tail = outbox.script_args(wall, planned)
        for i, event_type in enumerate(events):  # given data or none: not to be written
            if event_type not in _USER_EVENTS and event_type not in given:
                tail[2 + 2 * i] = ""
        tag = f"u:{_tag(user)}"
        result = await self._scripts.run(script, keys + outbox.script_keys(tag), args + tail)
        await outbox.script_wrote(tag, tail)
        return result

    async def get_many(self, users: Iterable[UserId]) -> list[UserPresence]:
        """What others see of each user (invisible users appear offline), in order."""
        wanted = list(users)
        if not wanted:
            return []
        unique = list(dict.fromkeys(wanted))
        found = await self._read(unique)
        views = {u: view(u, *found[u], public=True) for u in unique}
        return [views[u] for u in wanted]

    async def get_private(self, user: UserId) -> UserPresence:
        """What the user's own devices see."""
        return view(user, *(await self._read([user]))[user], public=False)

    async def online(self, after: UserId | None, limit: int) -> list[UserId]:
        """A page of the users with a session (invisible ones included: the admin's view),
        from a SCAN of every statuses hash (all of them, on every Cluster primary)."""
        if limit <= 0:
            return []
        users = await self._online_users()
        return sorted(u for u in users if after is None or u > after)[:limit]

    async def online_count(self) -> int:
        """Users with a session: the size of the same SCAN (counted as it goes)."""
        return len(await scan_keys(self._client, self._keys.match_user_statuses()))

    async def sessions_of(self, user: UserId) -> list[SessionId]:
        """The fields of the user's statuses hash: one per session."""
        fields = await self._client.hkeys(self._keys.user_statuses(user))
        return sorted(SessionId(f.decode() if isinstance(f, bytes) else f) for f in fields)

    async def _online_users(self) -> list[UserId]:
        keys = self._keys
        found = await scan_keys(self._client, keys.match_user_statuses())
        return [UserId(keys.parse_user_statuses(k.decode())) for k in found]

    def _user_keys(self, user: UserId) -> list[str]:
        return [self._keys.user_statuses(user), self._keys.user_meta(user)]

    async def _read(
        self, users: list[UserId]
    ) -> dict[UserId, tuple[list[DeviceStatus], float | None]]:
        """Each user's records and last seen: on one server, one presence_read script per
        READ_CHUNK users; on Cluster, one pipeline of HVALS and HGET per user (split per
        node by redis-py), as a user's keys share a slot but different users' do not.

        In the script a user's records and last seen are read at one instant (as are all
        the users of one call), and last seen only where it counts: when the records show no
        visible session (the script's header). In the pipeline the two reads are not one
        instant, and need not be: last seen is read second, and it changes only when the
        user stops being visible (its hash goes only with a user that has no sessions and no
        last seen). So either way a view read here is one the user had at some instant of
        the read; different users' views, in different calls, may be of different instants.
        """
        if self._cluster:
            return await self._read_pipelined(users)
        found: dict[UserId, tuple[list[DeviceStatus], float | None]] = {}
        for start in range(0, len(users), READ_CHUNK):
            chunk = users[start : start + READ_CHUNK]
            keys = [key for user in chunk for key in self._user_keys(user)]
            rows = _read_decoder.decode(await self._scripts.run("presence_read", keys, []))
            for user, (seen, records) in zip(chunk, rows, strict=True):
                found[user] = (records, float(seen) if seen else None)
        return found

    async def _read_pipelined(
        self, users: list[UserId]
    ) -> dict[UserId, tuple[list[DeviceStatus], float | None]]:
        pipe = self._client.pipeline(transaction=False)
        for user in users:
            statuses, meta = self._user_keys(user)
            pipe.hvals(statuses)
            pipe.hget(meta, "ls")
        rows = await pipe.execute()
        return {
            user: (_records(rows[2 * i]), _last_seen(rows[2 * i + 1]))
            for i, user in enumerate(users)
        }


def _records(raws: Iterable[bytes]) -> list[DeviceStatus]:
    return [_record_decoder.decode(raw) for raw in raws]


def _last_seen(raw: bytes | None) -> float | None:
    return float(raw) if raw else None


def _change(user: UserId, result: list[Any]) -> PresenceChange:
    """A presence_set/remove reply as PresenceChange: public and private views before and
    after, and the change's number."""
    seq, seen_before, seen_after = int(result[0]), _last_seen(result[1]), _last_seen(result[2])
    count = int(result[3])
    before = _records(result[4 : 4 + count])
    after = _records(result[4 + count :])
    return PresenceChange(
        view(user, before, seen_before, public=True),
        view(user, after, seen_after, public=True),
        view(user, before, seen_before, public=False),
        view(user, after, seen_after, public=False),
        seq,
    )
