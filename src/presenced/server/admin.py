"""The app backend's actions, cluster-wide: the one entry point the HTTP admin API calls for
writes (``node.admin``).

Session actions (kick from the server or from a room, disconnect, watch and unwatch on a
user's behalf) find their target sessions in the store (every live session of the user, or
the one named, on every node), act on those this node owns through the
:class:`~presenced.server.lifecycle.Lifecycle`, and send each other owner node one notice on
its own channel, ``admin <json>`` (an :class:`AdminNotice`), which that node's
:meth:`AdminActions.on_notice` hands to the same lifecycle method. The owner decides: a
notice for a session that moved or ended since it was looked up (a resume elsewhere, grace
running out) is a no-op there, never an error, and each session's change is all or nothing.
The notice names the asking node and a request id: the owner answers on the asker's channel,
``admin-done <json>`` (an :class:`AdminDone`), once its part is done, and the action waits
for every owner's answer (up to :data:`REPLY_TIMEOUT`) so that what the backend reads next
shows the change (read your writes across nodes). An action answers what it reached
(:class:`Targeted`): zero sessions means the user, or the session, has no live session (the
API's 404).

Messages (publish, edit, delete) take a client's path (:mod:`presenced.server.messaging`):
one store step numbers the event in the room's stream, one publish on the room's channel
takes it to the members on every node, in offset order like any other. A message published
in no user's name is a system message: its author is :data:`SYSTEM_USER` (a reserved user
id), its device :data:`API_DEVICE`, as for every message the backend publishes. An
idempotency key is the message's ``temp_id``: the store's de-duplication (per author and
room, while the first message is kept) makes a repeated publish return the first message
and deliver nothing again.

Refusals raise :class:`AdminRefused` (a :class:`ProtocolError` with its wire code), always
before anything changed.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from presenced.errors import ProtocolError
from presenced.presence.session import Session, SessionState
from presenced.protocol.chat import API_DEVICE, SYSTEM_USER, MessageDeleted, MessageEdited
from presenced.protocol.codec import check_free_form
from presenced.protocol.codes import ErrorCode, LeaveReason
from presenced.protocol.fields import Name
from presenced.protocol.messages import PresenceSubscribed, PresenceUnsubscribed
from presenced.server.fanout import node_channel
from presenced.server.messaging import amend_message, check_body, notify_seen, post_message
from presenced.typing import RoomId, SessionId, UserId

if TYPE_CHECKING:
    from presenced.server.node import Node

__all__ = [
    "API_DEVICE",
    "DEFAULT_KICK_MESSAGE",
    "MAX_ADMIN_MESSAGE",
    "MAX_USERS",
    "REPLY_TIMEOUT",
    "SYSTEM_USER",
    "AdminActions",
    "AdminDone",
    "AdminNotice",
    "AdminRefused",
    "Amended",
    "Published",
    "Targeted",
]

log = logging.getLogger(__name__)

DEFAULT_KICK_MESSAGE = "removed by the server"
MAX_ADMIN_MESSAGE = 1024
"""The longest kick message, in characters (it goes to the client in force_leave or
room.removed)."""
MAX_USERS = 1000
"""The most users one watch or unwatch may name (as in presence.subscribe)."""

_DISCONNECTED = "disconnected by the server: reconnect with fresh credentials"  # < 123 bytes
Action = Literal["kick", "remove", "disconnect", "watch", "unwatch"]
REPLY_TIMEOUT = 2.0
"""How long, in seconds, an action waits for another owner node to say its part is done.
An owner that has not answered by then (a node dying, a broker link down) is counted as
reached: its notice was sent and it acts when it gets it, or its sessions are reaped."""


class AdminRefused(ProtocolError):
    """The action was refused before anything changed. ``code`` says why (an
    :class:`ErrorCode`: ``BAD_REQUEST`` for a malformed argument, named by ``field``;
    ``TOO_MANY_SUBSCRIPTIONS``; ``MESSAGE_TOO_LARGE``), ``message`` says it for people."""


@dataclass(frozen=True, slots=True)
class Targeted:
    """The live sessions an action reached, on every node: ``sessions`` of them, by id.
    Zero: the user (or the session named) has no live session there to act on."""

    sessions: int
    session_ids: tuple[SessionId, ...]

    @classmethod
    def of(cls, ids: Iterable[SessionId]) -> Targeted:
        found = tuple(sorted(ids))
        return cls(sessions=len(found), session_ids=found)


@dataclass(frozen=True, slots=True)
class Published:
    """A message the backend published: its id and place in the room's stream.
    ``duplicate``: the idempotency key was used before and this is that first message
    (nothing was delivered again)."""

    message_id: str
    offset: int
    epoch: str
    duplicate: bool


@dataclass(frozen=True, slots=True)
class Amended:
    """An edit or a delete the backend made: the message changed and the change's own
    place in the room's stream."""

    message_id: str
    offset: int
    epoch: str


class AdminNotice(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What one node asks another to do to the sessions it owns (``admin <json>`` on the
    owner's channel): ``action`` on ``sessions``, with the room (remove), the message (kick,
    remove) or the users (watch, unwatch) it needs."""

    action: Action
    sessions: list[str]
    room: str | None = None
    message: str = ""
    users: list[str] = []
    reply_to: str | None = None  # the asking node: answer on its channel ...
    request: int = 0  # ... with this id


class AdminDone(msgspec.Struct, kw_only=True):
    """An owner's answer to an :class:`AdminNotice` (``admin-done <json>`` on the asker's
    channel): its part of ``request`` is done, on these ``sessions`` (the others had moved
    or ended)."""

    request: int
    sessions: list[str]


_notice_encoder = msgspec.json.Encoder()
_notice_decoder = msgspec.json.Decoder(AdminNotice)
_done_decoder = msgspec.json.Decoder(AdminDone)


class AdminActions:
    """The backend's writes, for sessions and rooms on every node (see the module doc)."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.lifecycle = node.lifecycle
        self.backplane = node.backplane
        self.node_id = node.node_id
        self._requests = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[list[str]]] = {}

    # --- sessions ---------------------------------------------------------------------------

    async def kick(
        self,
        user: str | None = None,
        session: str | None = None,
        room: str | None = None,
        message: str = DEFAULT_KICK_MESSAGE,
    ) -> Targeted:
        """Kick ``user``'s live sessions, or the one ``session`` (of ``user``, when both are
        given).

        From the server (no ``room``): each gets ``force_leave`` (reason ``kicked``, this
        ``message``) and close 4003, connected or in grace, and ends at once: its rooms and
        watchers see it leave (reason ``kicked``). From a ``room``: the sessions in it leave
        that room only (member.left ``kicked`` when it was the user's last session there);
        a connected client stays up and gets ``room.removed``. Raises :class:`AdminRefused`
        (``BAD_REQUEST``) when neither ``user`` nor ``session`` is given or an argument is
        malformed."""
        text = _message(message)
        if room is None:
            return await self._act(await self._targets(user, session), "kick", message=text)
        name = RoomId(_name(room, "room"))
        targets = [s for s in await self._targets(user, session) if name in s.rooms]
        return await self._act(targets, "remove", room=name, message=text)

    async def disconnect(self, user: str | None = None, session: str | None = None) -> Targeted:
        """End ``user``'s live sessions (or the one ``session``) at once, on every node: no
        grace, their rooms and watchers see them leave (reason ``disconnected``), their
        connections close with 4010 (reconnect with fresh credentials, do not resume).
        Raises :class:`AdminRefused` as :meth:`kick` does."""
        return await self._act(await self._targets(user, session), "disconnect")

    async def watch(self, user: str, users: Iterable[str]) -> Targeted:
        """Make every live session of ``user`` (connected, or in grace: it watches them
        once it resumes) watch ``users``' presence, as its own ``presence.subscribe``
        would; a connected client is told with an unsolicited ``presence.subscribed``.

        Raises :class:`AdminRefused`: ``TOO_MANY_SUBSCRIPTIONS`` when any of the sessions
        would watch more than ``max_subscriptions_per_session`` users (then none is
        changed), ``BAD_REQUEST`` for a malformed user id or list (1 to 1000 users)."""
        watched = _users(users)
        targets = await self._targets(user, None)
        limit = self.node.settings.max_subscriptions_per_session
        for target in targets:
            extra = len(set(watched) - target.subscriptions)
            if len(target.subscriptions) + extra > limit:
                raise AdminRefused(
                    ErrorCode.TOO_MANY_SUBSCRIPTIONS,
                    f"session {target.id} of {user!r} watches {len(target.subscriptions)} "
                    f"users: {extra} more would pass the limit of {limit}; nothing was changed",
                    field="users",
                )
        return await self._act(targets, "watch", users=watched)

    async def unwatch(self, user: str, users: Iterable[str]) -> Targeted:
        """Make every live session of ``user`` stop watching ``users``; a connected client
        is told with an unsolicited ``presence.unsubscribed``. Raises :class:`AdminRefused`
        (``BAD_REQUEST``) for a malformed user id or list."""
        unwatched = _users(users)
        return await self._act(await self._targets(user, None), "unwatch", users=unwatched)

    # --- messages ---------------------------------------------------------------------------

    async def publish(
        self,
        room: str,
        body: Any,
        user: str | None = None,
        idempotency_key: str | None = None,
    ) -> Published:
        """Publish a message to ``room`` as ``user`` (from device :data:`API_DEVICE`), or as
        the system (no user: author :data:`SYSTEM_USER`). Every member, on every node, gets
        the ``message`` (the user's own devices too: no session sent it). The same
        ``idempotency_key`` (the message's ``temp_id``) again, for the same author and room
        while the first message is kept, returns the first message with ``duplicate`` true
        and delivers nothing. Raises :class:`AdminRefused`: ``MESSAGE_TOO_LARGE`` (over
        ``max_message_bytes``), ``BAD_REQUEST`` (a body that is not text or a JSON object,
        nests over 32 levels, or a malformed room, user or key)."""
        name = RoomId(_name(room, "room"))
        author = UserId(SYSTEM_USER if user is None else _name(user, "user"))
        key = None if idempotency_key is None else _name(idempotency_key, "idempotency_key")
        checked = self._body(body)
        lc = self.lifecycle
        result = await post_message(lc, name, author, API_DEVICE, key, checked, None)
        if author != SYSTEM_USER:  # a user's message marks the room seen by that user
            await notify_seen(lc, author, name, result)
        event = result.event
        return Published(event.message_id, event.offset, event.epoch, result.duplicate)

    async def edit(self, room: str, message_id: str, body: Any) -> Amended | None:
        """Replace the body of any author's kept message; members get ``message.edited``
        (``user`` :data:`SYSTEM_USER`). None when the room keeps no such message (unknown,
        trimmed or deleted). Raises :class:`AdminRefused` as :meth:`publish` does."""
        name = RoomId(_name(room, "room"))
        mid = _name(message_id, "message_id")
        return _amended(await self._amend(name, mid, self._body(body)))

    async def delete(self, room: str, message_id: str) -> Amended | None:
        """Delete any author's kept message; members get ``message.deleted`` (``user``
        :data:`SYSTEM_USER`). None when the room keeps no such message. Raises
        :class:`AdminRefused` (``BAD_REQUEST``) for a malformed room or id."""
        name = RoomId(_name(room, "room"))
        return _amended(await self._amend(name, _name(message_id, "message_id"), None))

    async def _amend(
        self, room: RoomId, message_id: str, body: Any
    ) -> MessageEdited | MessageDeleted | None:
        return await amend_message(
            self.lifecycle, room, message_id, UserId(SYSTEM_USER), body, None
        )

    def _body(self, body: Any) -> Any:
        """A message body as the store will keep it, or the refusal that says why not."""
        if not isinstance(body, str | dict):
            raise AdminRefused(
                ErrorCode.BAD_REQUEST, "`body` must be a string or a JSON object", field="body"
            )
        try:
            body = msgspec.json.decode(msgspec.json.encode(body))  # JSON values only
        except (TypeError, ValueError, msgspec.MsgspecError) as exc:
            raise AdminRefused(
                ErrorCode.BAD_REQUEST, f"`body` is not JSON: {exc}", field="body"
            ) from None
        with _as_refusal():
            if isinstance(body, dict):
                check_free_form(body, "body")
            check_body(self.lifecycle, body)
        return body

    # --- finding the sessions, acting on them -------------------------------------------------

    async def _targets(self, user: str | None, session: str | None) -> list[Session]:
        """The live sessions named: this node's own as it holds them now, the others' as
        their records say (their owner checks again)."""
        if user is None and session is None:
            raise AdminRefused(ErrorCode.BAD_REQUEST, "name a user or a session", field="user")
        owner = None if user is None else UserId(_name(user, "user"))
        store = self.backplane.sessions
        if session is not None:
            record = await store.get(SessionId(_name(session, "session")))
            found = [record] if record is not None and owner in (None, record.user) else []
        else:
            assert owner is not None
            found = await store.of_user(owner)
        live: list[Session] = []
        for record in found:
            if record.node == self.node_id:
                mine = self.lifecycle.registry.get(record.id)
                if mine is not None:  # else ending, or no longer here
                    live.append(mine)
            elif record.state is not SessionState.CLOSED:
                live.append(record)
        return live

    async def _act(
        self,
        targets: list[Session],
        action: Action,
        *,
        room: RoomId | None = None,
        message: str = "",
        users: list[UserId] | None = None,
    ) -> Targeted:
        """Tell every other owner node its part, do this node's, then wait for the others
        to say theirs is done (up to :data:`REPLY_TIMEOUT`)."""
        remote: dict[str, list[str]] = {}
        for target in targets:
            if target.node != self.node_id:
                remote.setdefault(target.node, []).append(target.id)
        loop = asyncio.get_running_loop()
        answers: dict[str, asyncio.Future[list[str]]] = {}
        requests: list[int] = []  # this action's, forgotten however it ends
        try:
            for owner, ids in sorted(remote.items()):
                request = next(self._requests)
                requests.append(request)
                answers[owner] = self._waiting[request] = loop.create_future()
                notice = AdminNotice(
                    action=action,
                    sessions=ids,
                    room=room,
                    message=message,
                    users=list(users or ()),
                    reply_to=self.node_id,
                    request=request,
                )
                data = b"admin " + _notice_encoder.encode(notice)
                await self.backplane.broker.publish(node_channel(owner), data)
            mine = [t.id for t in targets if t.node == self.node_id]
            done: list[SessionId] = await self._apply(action, mine, room, message, users or [])
            if answers:
                await asyncio.wait(answers.values(), timeout=REPLY_TIMEOUT)
            for owner, answer in answers.items():
                if answer.done():
                    done.extend(SessionId(i) for i in answer.result())
                else:  # no answer yet: it acts when the notice reaches it
                    log.warning("admin %s: node %s has not answered in time", action, owner)
                    done.extend(SessionId(i) for i in remote[owner])
        finally:
            for request in requests:
                self._waiting.pop(request, None)
        return Targeted.of(done)

    def on_notice(self, data: bytes) -> None:
        """Another node's ``admin`` notice (the JSON after the verb): do it to our sessions,
        then tell the asker which were done."""
        try:
            notice = _notice_decoder.decode(data)
        except msgspec.MsgspecError as exc:
            log.warning("ignoring a malformed admin notice: %s", exc)
            return
        self.node.spawn(self._apply_and_answer(notice))

    async def _apply_and_answer(self, notice: AdminNotice) -> None:
        done = await self._apply(
            notice.action,
            [SessionId(s) for s in notice.sessions],
            None if notice.room is None else RoomId(notice.room),
            notice.message,
            [UserId(u) for u in notice.users],
        )
        if notice.reply_to is None:
            return
        answer = AdminDone(request=notice.request, sessions=list(done))
        data = b"admin-done " + _notice_encoder.encode(answer)
        await self.backplane.broker.publish(node_channel(notice.reply_to), data)

    def on_done(self, data: bytes) -> None:
        """An owner's ``admin-done`` answer (the JSON after the verb) to one of our notices."""
        try:
            answer = _done_decoder.decode(data)
        except msgspec.MsgspecError as exc:
            log.warning("ignoring a malformed admin answer: %s", exc)
            return
        waiting = self._waiting.pop(answer.request, None)
        if waiting is not None and not waiting.done():
            waiting.set_result(answer.sessions)

    async def _apply(
        self,
        action: Action,
        sessions: list[SessionId],
        room: RoomId | None,
        message: str,
        users: list[UserId],
    ) -> list[SessionId]:
        """Do ``action`` to those of ``sessions`` this node owns; returns the ones done (a
        session that moved or ended meanwhile is skipped)."""
        lc = self.lifecycle
        done: list[SessionId] = []
        for sid in sessions:
            if action == "kick":
                ok = lc.end_by_backend(sid, LeaveReason.KICKED, message)
            elif action == "disconnect":
                ok = lc.end_by_backend(sid, LeaveReason.DISCONNECTED, _DISCONNECTED)
            elif action == "remove":
                assert room is not None
                ok = await lc.remove_from_room(sid, room, message)
            elif action == "watch":
                ok = await self._watch_here(sid, users)
            else:
                ok = await self._unwatch_here(sid, users)
            if ok:
                done.append(sid)
        return done

    async def _watch_here(self, sid: SessionId, users: list[UserId]) -> bool:
        lc = self.lifecycle
        session = lc.registry.get(sid)
        if session is None:
            return False
        limit = self.node.settings.max_subscriptions_per_session
        if len(session.subscriptions | set(users)) > limit:
            # It subscribed to others since the check: refused here, as its own request would.
            log.warning("admin watch refused for session %s: over %d subscriptions", sid, limit)
            return False
        presence = await lc.watch(lc.connection_of(sid), session, users)
        conn = lc.connection_of(sid)
        if conn is not None:
            conn.send(PresenceSubscribed(users=presence))
        return True

    async def _unwatch_here(self, sid: SessionId, users: list[UserId]) -> bool:
        lc = self.lifecycle
        session = lc.registry.get(sid)
        if session is None:
            return False
        await lc.unwatch(lc.connection_of(sid), session, users)
        conn = lc.connection_of(sid)
        if conn is not None:
            conn.send(PresenceUnsubscribed(users=list(users)))
        return True


@contextmanager
def _as_refusal() -> Iterator[None]:
    """Turn a :class:`ProtocolError` raised by a shared check into an :class:`AdminRefused`."""
    try:
        yield
    except AdminRefused:
        raise
    except ProtocolError as exc:
        raise AdminRefused(exc.code, exc.message, field=exc.field) from None


def _name(value: object, field: str) -> str:
    """A room, user, session, message id or key: a Name (1 to 256 characters, no white
    space), or the refusal naming ``field``."""
    try:
        return msgspec.convert(value, Name)
    except msgspec.ValidationError:
        raise AdminRefused(
            ErrorCode.BAD_REQUEST,
            f"`{field}` must be a string of 1 to 256 characters with no white space",
            field=field,
        ) from None


def _message(value: object) -> str:
    """A kick message: text the client will be sent, or the refusal."""
    try:
        ok = isinstance(value, str) and len(value) <= MAX_ADMIN_MESSAGE and bool(value.encode())
    except UnicodeEncodeError:  # a lone surrogate: no encoder would write it
        ok = False
    if not ok:
        raise AdminRefused(
            ErrorCode.BAD_REQUEST,
            f"`message` must be a non-empty string of at most {MAX_ADMIN_MESSAGE} characters "
            "of valid Unicode",
            field="message",
        )
    assert isinstance(value, str)
    return value


def _users(values: Iterable[str]) -> list[UserId]:
    if isinstance(values, str):
        raise AdminRefused(ErrorCode.BAD_REQUEST, "`users` must be a list of ids", field="users")
    users = [UserId(_name(u, f"users[{i}]")) for i, u in enumerate(values)]
    if not 1 <= len(users) <= MAX_USERS:
        raise AdminRefused(
            ErrorCode.BAD_REQUEST, f"`users` must name 1 to {MAX_USERS} users", field="users"
        )
    return list(dict.fromkeys(users))


def _amended(wire: MessageEdited | MessageDeleted | None) -> Amended | None:
    return None if wire is None else Amended(wire.id, wire.offset, wire.epoch)
