"""Session records in Redis: the SessionStore Protocol, with the memory store's semantics.

Each session is one hash (``Keys.session``) holding the msgspec-serialized record and, beside
it, the owner node, resume token and user, so the ownership rule (only the owner writes; a
take moves it; exactly one taker wins) is one small Lua script on that one key. The owner in
the hash wins over the one inside the record, which ``take`` leaves as it was.

The lookups by resume token, user and node, and the reverse index of presence subscriptions
(``watchers``: per watched user, the sessions subscribed to it), are index keys in other slots
(a token, a user and a node each hash elsewhere on Cluster), so they cannot change in the same
script. The record is
written first and the indexes after; readers treat an index as a hint and check every record
it points to (a token must still be the session's, a session must still be the user's or the
node's), and stale entries are pruned as they are met. Records and indexes expire after the
session ttl unless written again (the owner's refresh pushes it back), a failsafe against a
whole deployment vanishing.

A put adds the session to the watchers set of each user it subscribes to (it does not know
what the record it replaces subscribed to: a subscription dropped since is left for readers
to prune); a delete removes it from those its record listed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from presenced.presence.session import Session
from presenced.store.redis.keys import Keys
from presenced.store.redis.scan import scan_keys
from presenced.store.redis.scripts import Scripts
from presenced.typing import SessionId, UserId

__all__ = ["SESSION_TTL", "RedisSessionStore"]

SESSION_TTL = 60.0
"""Seconds a session record and its indexes live unless written or refreshed again."""


class RedisSessionStore:
    """SessionStore on Redis or Redis Cluster (records by value, owner-only writes)."""

    def __init__(self, client: Any, keys: Keys, scripts: Scripts, ttl: float = SESSION_TTL) -> None:
        self._client = client
        self._keys = keys
        self._scripts = scripts
        self._ttl_ms = max(1, round(ttl * 1000))
        self._encoder = msgspec.json.Encoder()
        self._decoder = msgspec.json.Decoder(Session)

    async def put(self, session: Session) -> bool:
        """Insert, or replace if ``session.node`` owns the record; False if another node does."""
        keys = self._keys
        done = await self._scripts.run(
            "session_put",
            [keys.session(session.id)],
            [
                self._encoder.encode(session),
                session.node,
                session.resume_token,
                session.user,
                self._ttl_ms,
            ],
        )
        if not int(done[0]):
            return False
        pipe = self._client.pipeline(transaction=False)
        pipe.set(keys.resume_token(session.resume_token), session.id, px=self._ttl_ms)
        self._index(pipe, keys.user_sessions(session.user), session.id)
        self._index(pipe, keys.node_sessions(session.node), session.id)
        for user in session.subscriptions:
            self._index(pipe, keys.user_watchers(user), session.id)
        if len(done) == 3:  # replaced: retire what the old record had that this one has not
            old_token, old_user = done[1].decode(), done[2].decode()
            if old_token != session.resume_token:
                pipe.delete(keys.resume_token(old_token))
            if old_user != session.user:
                pipe.srem(keys.user_sessions(old_user), session.id)
        await pipe.execute()
        return True

    async def get(self, session_id: SessionId) -> Session | None:
        data, node = await self._client.hmget(self._keys.session(session_id), "d", "n")
        return self._decode(data, node)

    async def by_resume_token(self, token: str) -> Session | None:
        found = await self._client.get(self._keys.resume_token(token))
        if found is None:
            return None
        session = await self.get(SessionId(found.decode()))
        # The token index is written after the record: trust only what the record says.
        if session is None or session.resume_token != token:
            return None
        return session

    async def take(self, session_id: SessionId, from_node: str, to_node: str) -> bool:
        """Move ownership if ``from_node`` still owns the record; True for exactly one taker."""
        keys = self._keys
        taken = await self._scripts.run(
            "session_take", [keys.session(session_id)], [from_node, to_node, self._ttl_ms]
        )
        if not int(taken):
            return False
        pipe = self._client.pipeline(transaction=False)
        pipe.srem(keys.node_sessions(from_node), session_id)
        self._index(pipe, keys.node_sessions(to_node), session_id)
        await pipe.execute()
        return True

    async def delete(self, session_id: SessionId, owner: str | None = None) -> bool:
        """Remove the record (only if ``owner`` owns it, when given); True if removed."""
        keys = self._keys
        gone = await self._scripts.run(
            "session_delete",
            [keys.session(session_id)],
            ["0" if owner is None else "1", owner or ""],
        )
        if not gone:
            return False
        node, token, user = (part.decode() for part in gone[:3])
        pipe = self._client.pipeline(transaction=False)
        pipe.delete(keys.resume_token(token))
        pipe.srem(keys.user_sessions(user), session_id)
        pipe.srem(keys.node_sessions(node), session_id)
        if len(gone) > 3 and gone[3]:  # (a record from before the script returned it: none)
            for watched in self._decoder.decode(gone[3]).subscriptions:
                pipe.srem(keys.user_watchers(watched), session_id)
        await pipe.execute()
        return True

    async def of_user(self, user: UserId) -> list[Session]:
        """Every live session of ``user``, on every node (and every Cluster slot)."""
        return await self._indexed(self._keys.user_sessions(user), lambda s: s.user == user)

    async def of_node(self, node: str) -> list[Session]:
        """Every session ``node`` owns."""
        return await self._indexed(self._keys.node_sessions(node), lambda s: s.node == node)

    async def count(self) -> int:
        """Live records: a SCAN of the session hashes (counted as it goes, not one instant)."""
        return len(await scan_keys(self._client, self._keys.match_sessions()))

    async def watchers(self, user: UserId) -> list[Session]:
        """The present sessions subscribed to ``user``: the user's watchers set, each entry
        checked against its record (one pipelined read per entry; stale ones pruned)."""
        return await self._indexed(
            self._keys.user_watchers(user), lambda s: s.present and user in s.subscriptions
        )

    # --- helpers ---------------------------------------------------------------------------

    def _index(self, pipe: Any, index: str, session_id: str) -> None:
        pipe.sadd(index, session_id)
        pipe.pexpire(index, self._ttl_ms)

    def _decode(self, data: bytes | None, node: bytes | None) -> Session | None:
        if data is None:
            return None
        session = self._decoder.decode(data)
        if node is not None:
            session.node = node.decode()
        return session

    async def _records(self, ids: list[bytes]) -> list[Session | None]:
        """The records of ``ids``, in one pipeline (split per node on Cluster)."""
        pipe = self._client.pipeline(transaction=False)
        for sid in ids:
            pipe.hmget(self._keys.session(sid.decode()), "d", "n")
        rows = await pipe.execute()
        return [self._decode(data, node) for data, node in rows]

    async def _indexed(self, index: str, belongs: Callable[[Session], bool]) -> list[Session]:
        """The sessions an index lists that still exist and still belong to it."""
        ids = sorted(await self._client.smembers(index))
        if not ids:
            return []
        found: list[Session] = []
        stale: list[bytes] = []
        for sid, session in zip(ids, await self._records(ids), strict=True):
            if session is not None and belongs(session):
                found.append(session)
            else:
                stale.append(sid)
        if stale:
            await self._prune(index, stale, belongs)
        return found

    async def _prune(
        self, index: str, stale: list[bytes], belongs: Callable[[Session], bool]
    ) -> None:
        """Drop stale index entries without losing one a writer is adding back right now.

        Writers write the record, then add the index entry. Removing first and reading the
        record again afterwards means: either this read sees the new record (and the entry is
        put back here), or the writer's add comes after this removal (and stands).
        """
        await self._client.srem(index, *stale)
        back = [
            sid
            for sid, session in zip(stale, await self._records(stale), strict=True)
            if session is not None and belongs(session)
        ]
        if back:
            await self._client.sadd(index, *back)
