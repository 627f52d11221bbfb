"""The one owner of every session and room transition on a node.

Sockets (through :mod:`handlers`), the node's timer, the lease keeper and the backend's
actions (:mod:`presenced.server.admin`, which the HTTP API calls and which finds the sessions
on every node) all change sessions and rooms through a :class:`Lifecycle`, and nothing else
does: open, authenticate, resume (here or from another node), join, leave, meta, status,
watch, typing, grace, adoption from a dead node, re-assertion after a store outage,
inactivity, force-leave, kick, disconnect, removal from a room and end. Each transition
follows the same rules:

- **validate first**: what the codec could not check (rights, limits, ownership of a resumed
  session) is checked before anything is written;
- **an order whose every crash point leaves no ghost**: a session's record is written before
  its presence and its memberships (and the CLOSED record before they are removed), so a node
  that dies half-way leaves the rest to the node that reaps it;
- **undo on failure**: a step that fails takes back the steps before it (a connect leaves
  nothing, a join restores the session's rooms). A step that failed because the store went
  away may have landed all the same (its reply was lost), and the undo cannot reach the store
  either: the store's part of the undo, and of an ending that failed the same way, is then
  kept in :attr:`Lifecycle.repairs` and run again when the store answers, before the node
  reports healthy (:mod:`presenced.server.repairs`).

Events are published once per change, by the store transition that caused them
(:class:`~presenced.server.room_events.RoomEvents`); local delivery is
:class:`~presenced.server.fanout.LocalFanout`'s. The lifecycle holds the node's local view:
the sessions (the :class:`SessionRegistry`) and which connection serves each.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any

from presenced.auth import Identity, TokenVerifier, room_allowed
from presenced.clock import Clock
from presenced.config import Settings
from presenced.errors import AuthError, ProtocolError, SessionLimitReached
from presenced.events.export import EventExport
from presenced.logs import fields
from presenced.presence.liveness import DeadlineKind, SessionRegistry
from presenced.presence.roster import RoomChange, RoomDeletion
from presenced.presence.session import RoomOptions, Session, SessionEvent, SessionState
from presenced.presence.status import PresenceChange
from presenced.presence.typing_book import TypingBook, typing_key, typing_of_key
from presenced.protocol.chat import Position, RoomRecovered, TypingEvent
from presenced.protocol.codec import encode
from presenced.protocol.codes import CloseCode, ErrorCode, LeaveReason
from presenced.protocol.messages import (
    Auth,
    DeviceBack,
    DeviceDropped,
    DeviceGone,
    ForceLeave,
    Presence,
    RoomDeleted,
    RoomJoined,
    RoomRemoved,
)
from presenced.server.auth_flow import check_protocol, identify, too_many_sessions, welcome
from presenced.server.fanout import LocalFanout, device_channel, node_channel, room_channel
from presenced.server.repairs import Repairs, Step
from presenced.server.room_events import RoomEvents
from presenced.server.wire import wire_event
from presenced.store.base import Backplane, TypingChange
from presenced.typing import DeviceId, NodeId, RoomId, SessionId, UserId

if TYPE_CHECKING:
    from presenced.server.connection import Connection

__all__ = ["Lifecycle"]

log = logging.getLogger(__name__)

Spawn = Callable[[Coroutine[Any, Any, Any]], None]

_CLOSE_CODES: dict[LeaveReason, int] = {
    LeaveReason.LEFT: CloseCode.NORMAL,
    LeaveReason.KICKED: CloseCode.FORCE_LEAVE,
    LeaveReason.INACTIVITY_TIMEOUT: CloseCode.FORCE_LEAVE,
    LeaveReason.DISCONNECTED: CloseCode.DISCONNECTED,
}
"""The code the server closed a session's connection with, by the reason it ended (none for
a session whose transport was lost and whose grace ran out: it had no connection then)."""


class Lifecycle:
    """Every session and room transition of one node, and its local view of them."""

    def __init__(
        self,
        settings: Settings,
        backplane: Backplane,
        clock: Clock,
        node_id: NodeId,
        registry: SessionRegistry,
        fanout: LocalFanout,
        spawn: Spawn,
        rearm: Callable[[], None],
        verifier: TokenVerifier | None,
        export: EventExport | None = None,
    ) -> None:
        self.settings = settings
        self.backplane = backplane
        self.clock = clock
        self.node_id = node_id
        self.registry = registry
        self.fanout = fanout
        self.events = RoomEvents(backplane, settings.room_summary_above, export)
        self.export = self.events.export
        self.typing = TypingBook(settings.typing_throttle)
        self.spawn = spawn
        self.rearm = rearm
        self.verifier = verifier
        self.insecure = settings.effective_auth_mode == "insecure"
        self.pending: dict[str, Connection] = {}  # not yet authenticated, by connection id
        self.by_session: dict[SessionId, Connection] = {}
        # Sessions in grace here because their node died (or drained) and not resumed since:
        # when that grace runs out, they leave with reason node_lost.
        self.adopted: set[SessionId] = set()
        # The store's part of undos and endings that failed (the store went away): run again
        # by the lease keeper until done; the node is degraded while any is pending.
        self.repairs = Repairs()

    # --- the local view -----------------------------------------------------------------------

    def connection_of(self, session_id: SessionId) -> Connection | None:
        return self.by_session.get(session_id)

    async def attach(self, conn: Connection, session: Session) -> None:
        """Bind a session to its (new) connection and its user's event channel."""
        conn.session = session
        self.by_session[session.id] = conn
        await self.fanout.users.add(session.user, conn)

    def detach(self, conn: Connection, session: Session) -> None:
        """Unbind a connection from its session and every local fan-out table."""
        if self.by_session.get(session.id) is conn:
            del self.by_session[session.id]
        fanout = self.fanout
        fanout.users.discard(session.user, conn)
        for room in session.rooms:
            fanout.leave_room(conn, room)
        for user in session.subscriptions:
            fanout.watchers.discard(user, conn)
        conn.session = None

    def waiting_for_auth(self, conn: Connection) -> None:
        """A new connection, or one whose authentication was undone: its auth clock runs."""
        if conn.closing or conn.session is not None:
            return
        self.pending[conn.id] = conn
        deadline = self.clock.monotonic() + self.settings.auth_timeout
        self.registry.arm(DeadlineKind.AUTH, conn.id, deadline)
        self.rearm()

    def authenticated(self, conn: Connection) -> None:
        self.registry.disarm(DeadlineKind.AUTH, conn.id)
        self.pending.pop(conn.id, None)
        if conn.transport is not None:
            conn.transport.authenticated()

    # --- open and resume ----------------------------------------------------------------------

    async def authenticate(self, conn: Connection, msg: Auth) -> None:
        """Answer ``auth`` with ``welcome`` (a new session or a resumed one), or raise the error
        that says why not. A step that fails undoes the ones before it and leaves the
        connection unauthenticated (it may try again)."""
        check_protocol(msg)
        if self.verifier is not None:
            await self.verifier.prepare(msg.token)  # a JWKS key rotated in: fetched first
        identity = identify(msg, self.verifier, self.insecure, self.clock.wall())
        self.authenticated(conn)
        try:
            now = self.clock.monotonic()
            resume_error: str | None = None
            if msg.resume is None or not await self._resume(conn, identity, msg, now):
                if msg.resume is not None:
                    resume_error = "resume token unknown or grace expired: a new session was opened"
                await self._open(conn, identity, msg, now, resume_error)
        except BaseException:
            if conn.session is None:
                self.waiting_for_auth(conn)
            raise
        if conn.session is not None:
            self.token_expires(conn.session, identity.expires_at)

    def token_expires(self, session: Session, expires_at: float | None) -> None:
        """Arm (or, with no ``exp``, disarm) the TOKEN deadline of a session: when it fires
        the session's connection is closed with TOKEN_EXPIRED unless a refresh re-armed it."""
        if expires_at is None:
            self.registry.disarm(DeadlineKind.TOKEN, session.id)
            return
        left = max(0.0, expires_at - self.clock.wall())
        self.registry.arm(DeadlineKind.TOKEN, session.id, self.clock.monotonic() + left)
        self.rearm()

    async def refresh(self, session: Session, token: str) -> float | None:
        """Move the session onto a fresh ``token`` (its user's; rooms claim and moderation
        taken from it); the new expiry. A token that fails is refused without closing: the
        session runs on until the old one expires."""
        if self.verifier is None:
            raise ProtocolError(
                ErrorCode.BAD_REQUEST,
                "this server runs in insecure development mode: there is no token to refresh",
                field="token",
            )
        await self.verifier.prepare(token)
        try:
            identity = self.verifier.verify(token, self.clock.wall())
        except AuthError as exc:
            raise AuthError(exc.code, exc.message, field="token", reason=exc.reason) from None
        if identity.user != session.user:
            raise AuthError(
                ErrorCode.AUTH_FAILED,
                f"the token is for user {identity.user!r}, not this session's",
                field="token",
                reason="other_user",
            )
        session.room_patterns = identity.rooms
        session.watch_patterns = identity.watch
        session.moderator = identity.moderator
        self.token_expires(session, identity.expires_at)
        return identity.expires_at

    async def _open(
        self, conn: Connection, identity: Identity, msg: Auth, now: float, resume_error: str | None
    ) -> None:
        """A fresh session: record first, then presence; undone whole if a step fails.
        The presence step is where ``max_connections_per_user`` is checked: it counts the
        user's sessions in the store (every node's, active or in grace) in the same atomic
        step that adds this one; a resume never comes here, so it is never refused."""
        wall = self.clock.wall()
        session = Session(
            id=SessionId(secrets.token_urlsafe(12)),
            user=identity.user,
            device=DeviceId(msg.device),
            resume_token=secrets.token_urlsafe(24),
            device_info=msg.device_info,
            moderator=identity.moderator,
            room_patterns=identity.rooms,
            watch_patterns=identity.watch,
            node=self.node_id,
            connected_at=wall,
            last_active=wall,
        )
        self.registry.add(session, now)
        opened: dict[str, Any] | None = None
        if self.export.enabled:
            opened = {"session": session.id, "device": session.device, "node": self.node_id}
            if session.device_info:
                opened["device_info"] = session.device_info
        try:
            await self.attach(conn, session)
            if not await self.save(session):
                return  # not reached: a fresh id has no other owner
            change = await self.backplane.presence.set(
                session.user, session.id, session.effective_status, None, wall,
                exported=None if opened is None else {"session.opened": opened},
                limit=self.settings.max_connections_per_user or None,
            )  # fmt: skip
        except BaseException as exc:
            await self._undo_open(conn, session)
            if isinstance(exc, SessionLimitReached):
                log.info(
                    "connection refused",
                    extra=fields(limit="user", user=session.user, ip=conn.client_ip),
                )
                raise too_many_sessions(exc) from None
            raise
        exp = identity.expires_at
        conn.send(welcome(self.settings, self.node_id, session, msg, False, resume_error, exp))
        if opened is not None:  # (a store with an outbox wrote it with the change)
            self.export.emit("session.opened", user=session.user, data=opened)
        await self.events.presence_changed(session.user, change)

    async def _undo_open(self, conn: Connection, session: Session) -> None:
        """Take back a session that failed half way: registry entry and fan-out binding here,
        then in the store (:meth:`_take_back_open`), which may have done a step whose reply
        was lost. If the store cannot be reached that part is kept in :attr:`repairs` and
        done when it answers."""
        self.registry.release(session.id)
        self.detach(conn, session)
        what = f"the failed connect of session {session.id}"
        try:
            await self.until_done(("open", session.id), what, lambda: self._take_back_open(session))
        except Exception:
            log.exception("undoing a failed authentication (again when the store answers)")
        self.rearm()

    async def _take_back_open(self, session: Session) -> None:
        """The store's part of an open undone: its presence entry (with the session.closed
        that pairs the session.opened a store with an outbox wrote with it), then its record
        (so never a presence entry without a record); watchers are told if it was online."""
        backplane = self.backplane
        closed = self._closed_event(session, "open_failed", None)
        change = await backplane.presence.remove(
            session.user, session.id, self.clock.wall(), closed
        )
        await backplane.sessions.delete(session.id, owner=self.node_id)
        await self.events.presence_changed(session.user, change)

    async def until_done(self, key: tuple[str, ...], what: str, step: Step) -> None:
        """Run ``step``, store writes that take something back; if it fails, keep it in
        :attr:`repairs` (to be run again when the store answers) and raise the error."""
        try:
            await step()
        except Exception:
            self.repairs.add(key, what, step)
            raise

    async def _resume(self, conn: Connection, identity: Identity, msg: Auth, now: float) -> bool:
        assert msg.resume is not None
        registry = self.registry
        session = registry.by_resume_token(msg.resume)
        if session is None:
            session = await self._take_from_another_node(msg.resume, identity.user, now)
        if session is None or session.user != identity.user:
            return False
        old = self.by_session.get(session.id)
        if old is not None:
            # Resumed while the old transport still looks alive (half-open): the new one wins.
            self.detach(old, session)
            old.close(CloseCode.SESSION_REPLACED, "session resumed on another connection")
            registry.transport_lost(session.id, now)
            await self.entered_grace(session)
        registry.resume(session.id, now, secrets.token_urlsafe(24))
        self.adopted.discard(session.id)
        session.last_active = self.clock.wall()  # coming back is activity
        try:
            await self.attach(conn, session)
            # The rights are the credentials' presented now, not the first token's.
            session.room_patterns = identity.rooms
            session.watch_patterns = identity.watch
            session.moderator = identity.moderator
            await self._leave_forbidden_rooms(session)
            forbidden = self.watch_forbidden(session)
            if forbidden:  # (the record is saved after, with the rest of the resume)
                await self.unwatch(conn, session, forbidden)
            if session.auto_away:  # coming back is activity
                session.auto_away = False
                await self.set_status(session)
            for room, options in session.rooms.items():
                await self.fanout.join_room(conn, room, options.device_events)
            for user in session.subscriptions:
                await self.fanout.watchers.add(user, conn)
            if not await self.save(session):
                return True  # taken by another node meanwhile: ``save`` closed this connection
        except BaseException:
            self._back_to_grace(conn, session)
            raise
        exp = identity.expires_at
        conn.send(welcome(self.settings, self.node_id, session, msg, True, None, exp))
        positions = msg.positions or {}
        for room in session.rooms:
            await self.recover(conn, session, room, positions.get(room))
        session.marks.clear()
        await self.publish_device(session, DeviceBack)
        return True

    async def _leave_forbidden_rooms(self, session: Session) -> None:
        """Leave (with the usual member.left) each room the session's rights no longer allow;
        membership goes before the record (saved by the caller), as in a leave."""
        for room in [r for r in session.rooms if not room_allowed(session.room_patterns, r)]:
            await self._remove_member(session, room, LeaveReason.LEFT)
            del session.rooms[room]
            session.marks.pop(room, None)

    def _back_to_grace(self, conn: Connection, session: Session) -> None:
        """A resume failed half way: the session goes back to grace (it ends when grace does)."""
        if conn.session is session:
            self.detach(conn, session)
        if self.registry.get(session.id) is session and session.state is SessionState.ACTIVE:
            self.registry.transport_lost(session.id, self.clock.monotonic())
            self.spawn(self.entered_grace(session))
        self.rearm()

    async def _take_from_another_node(self, token: str, user: UserId, now: float) -> Session | None:
        """Resume anywhere: a session of ``user`` owned by another node (alive, or dead and not
        yet reaped) moves here if it is still live; its old owner is told to let it go.
        Ownership is checked first: another user's token takes nothing from anyone."""
        sessions = self.backplane.sessions
        record = await sessions.by_resume_token(token)
        if (
            record is None
            or record.user != user
            or record.state is SessionState.CLOSED
            or record.node == self.node_id
        ):
            return None
        previous = record.node
        if not await sessions.take(record.id, previous, self.node_id):
            return None
        record.node = self.node_id
        record.state = SessionState.GRACE
        self.registry.adopt_in_grace(record, now)
        await self.backplane.broker.publish(node_channel(previous), b"moved " + record.id.encode())
        return record

    # --- ownership ----------------------------------------------------------------------------

    async def save(self, session: Session) -> bool:
        """Write the session's record; if another node owns it now, let it go here."""
        if await self.backplane.sessions.put(session):
            return True
        self.lost(session)
        return False

    def lost(self, session: Session) -> None:
        """Another node took this session (it resumed there): drop it without ending it."""
        if self.registry.get(session.id) is session:
            self.registry.release(session.id)
        self.adopted.discard(session.id)
        conn = self.by_session.get(session.id)
        if conn is not None:
            self.detach(conn, session)
            conn.close(CloseCode.SESSION_REPLACED, "session resumed on another connection")
        log.info("session %s moved to another node", session.id)

    def moved_away(self, session_id: SessionId) -> None:
        """Another node announced it took one of our sessions."""
        session = self.registry.get(session_id)
        if session is not None:
            self.lost(session)
            self.rearm()

    # --- grace --------------------------------------------------------------------------------

    def transport_lost(self, conn: Connection) -> None:
        """A connection's socket is gone: its ACTIVE session enters grace."""
        self.pending.pop(conn.id, None)
        session = conn.session
        if session is None:
            return
        self.detach(conn, session)
        if session.state is SessionState.ACTIVE:
            self.registry.transport_lost(session.id, self.clock.monotonic())
            self.spawn(self.entered_grace(session))

    def pong_missed(self, session: Session) -> None:
        """The registry put a silent session in grace: drop its transport, announce it."""
        conn = self.by_session.get(session.id)
        if conn is not None:
            self.detach(conn, session)
            conn.close(CloseCode.HEARTBEAT_TIMEOUT, "no pong: reconnect and resume", abort=True)
        self.spawn(self.entered_grace(session))

    async def entered_grace(self, session: Session, *, adopted: bool = False) -> None:
        """Note where each room's stream was, stop its typing, save, tell device-event rooms.

        An ``adopted`` session (its node died) has its user's indicators stopped whether or
        not this node started them: their owner cannot end them any more."""
        for room in session.rooms:
            session.marks[room] = await self.backplane.messages.position(room)
            await self.clear_typing(session, room, owned=not adopted)
        await self.save(session)
        await self.publish_device(session, DeviceDropped)

    def adopt(self, session: Session, now: float) -> None:
        """Own a session whose node died: it enters grace here from ``now``."""
        session.marks.clear()
        self.registry.adopt_in_grace(session, now)
        self.adopted.add(session.id)
        self.spawn(self.entered_grace(session, adopted=True))

    def grace_reason(self, session: Session) -> LeaveReason:
        """Why a session whose grace ran out here leaves: ``node_lost`` when it was adopted
        from a dead node and never came back, else ``grace_expired``."""
        return LeaveReason.NODE_LOST if session.id in self.adopted else LeaveReason.GRACE_EXPIRED

    # --- ending -------------------------------------------------------------------------------

    async def end(
        self, session: Session, reason: LeaveReason, farewell: dict[str, Any] | None = None
    ) -> None:
        """A CLOSED session leaves every room and its user's presence, at once. The CLOSED
        record is written first, so that a node dying half-way leaves the job to its reaper.
        The session is gone from this node already: if the store fails, the ending is kept
        in :attr:`repairs` and done again, whole, when it answers."""

        async def ending() -> None:
            if await self.save(session):
                await self._finish(session, reason, farewell)

        await self.until_done(("end", session.id), f"the ending of session {session.id}", ending)

    async def finish(
        self, session: Session, reason: LeaveReason, farewell: dict[str, Any] | None = None
    ) -> None:
        """Remove a CLOSED session from its rooms and its user's presence, then its record
        (kept in :attr:`repairs` and done again if the store fails). ``farewell``: the data
        of the force_leave that ended it, which a store with an outbox writes with
        session.closed, in the step that takes the session out of presence."""
        await self.until_done(
            ("end", session.id),
            f"the ending of session {session.id}",
            lambda: self._finish(session, reason, farewell),
        )

    async def _finish(
        self, session: Session, reason: LeaveReason, farewell: dict[str, Any] | None
    ) -> None:
        self.adopted.discard(session.id)
        self.registry.disarm(DeadlineKind.TOKEN, session.id)
        backplane = self.backplane
        for room in list(session.rooms):
            await self._remove_member(session, room, reason)
        exported = self._closed_event(session, reason.value, _CLOSE_CODES.get(reason))
        if exported is not None and farewell is not None:
            exported = {"force_leave": farewell, **exported}
        wall = self.clock.wall()
        presence = await backplane.presence.remove(session.user, session.id, wall, exported)
        await backplane.sessions.delete(session.id, owner=self.node_id)
        if exported is not None:  # (a store with an outbox wrote it with the change)
            self.export.emit("session.closed", user=session.user, data=exported["session.closed"])
        await self.events.presence_changed(session.user, presence)

    def _closed_event(
        self, session: Session, reason: str, close_code: int | None
    ) -> dict[str, dict[str, Any]] | None:
        """The session.closed a removal from presence reports (None: no sink listens)."""
        if not self.export.enabled:
            return None
        data = {
            "session": session.id,
            "device": session.device,
            "reason": reason,
            "close_code": close_code,
            "duration": round(self.clock.wall() - session.connected_at, 3),
        }
        return {"session.closed": data}

    def force_leave(self, session: Session, reason: LeaveReason, message: str) -> None:
        """Tell the client why, close its socket, and remove the (already CLOSED) session."""
        conn = self.by_session.get(session.id)
        if conn is not None:
            self.detach(conn, session)
            conn.send(ForceLeave(reason=reason.value, message=message))
            conn.close(CloseCode.FORCE_LEAVE, reason.value)
        farewell = None
        if self.export.enabled:
            farewell = {"session": session.id, "reason": reason.value, "message": message}
            self.export.emit("force_leave", user=session.user, data=farewell)
        self.spawn(self.end(session, reason, farewell))

    async def logout(self, conn: Connection, session: Session) -> None:
        self.registry.close(session.id, SessionEvent.LEAVE)
        self.detach(conn, session)
        await self.end(session, LeaveReason.LEFT)
        conn.close(CloseCode.NORMAL, "logged out")

    def kick(self, user: UserId, message: str = "removed by the server") -> int:
        """Force-leave every local session of ``user``; returns how many were ended."""
        sessions = [s.id for s in self.registry if s.user == user]
        return sum(self.end_by_backend(sid, LeaveReason.KICKED, message) for sid in sessions)

    def end_by_backend(self, session_id: SessionId, reason: LeaveReason, message: str) -> bool:
        """The backend ended a local session, connected or in grace, at once: a kick
        (``kicked``) sends ``force_leave`` and closes 4003; a disconnect (``disconnected``)
        closes 4010 with ``message`` (reconnect afresh, do not resume). False when this node
        does not own the session (it moved or ended meanwhile): nothing to do here."""
        if self.registry.get(session_id) is None:
            return False
        session = self.registry.close(session_id, SessionEvent.KICK)
        if reason is LeaveReason.KICKED:
            self.force_leave(session, reason, message)
        else:
            conn = self.by_session.get(session.id)
            if conn is not None:
                self.detach(conn, session)
                conn.close(CloseCode.DISCONNECTED, message)
            self.spawn(self.end(session, reason))
        self.rearm()
        return True

    # --- rooms --------------------------------------------------------------------------------

    async def join(
        self,
        conn: Connection,
        session: Session,
        room: RoomId,
        meta: dict[str, Any] | None,
        device_events: bool,
        ref: Any,
    ) -> None:
        """Join (or re-join with new options): record first, then the room; the joiner gets
        the snapshot. Undone if the room add fails."""
        previous = session.rooms.get(room)
        kept = meta if meta is not None else (previous.meta if previous else None)
        session.rooms[room] = RoomOptions(meta=kept, device_events=device_events)
        try:
            if not await self.save(session):
                return
            change = await self._add_member(session, room, meta)
        except BaseException:
            await self._undo_join(session, room, previous)
            raise
        await self.fanout.join_room(conn, room, device_events)
        await self.events.publish_change(change, origin=session.id)
        snapshot = await self.backplane.rooms.snapshot(room)
        members = await self.events.members(snapshot)
        conn.send(RoomJoined(room=room, version=snapshot.version, members=members, ref=ref))

    async def _add_member(
        self,
        session: Session,
        room: RoomId,
        meta: dict[str, Any] | None,
        hidden: bool | None = None,
        *,
        quiet: bool = False,
    ) -> RoomChange:
        """The store's room add for a session (hidden while its user is invisible);
        ``quiet``: reported to no one (a store with an outbox writes no event)."""
        if hidden is None:
            hidden = await self._invisible(session.user)
        return await self.backplane.rooms.add(
            room, session.user, session.id, meta, hidden, self.clock.wall(), quiet=quiet
        )

    async def _invisible(self, user: UserId) -> bool:
        return (await self.backplane.presence.get_private(user)).status == "invisible"

    async def _undo_join(
        self, session: Session, room: RoomId, previous: RoomOptions | None
    ) -> None:
        """The room add failed: the session's rooms become what they were, and the store is
        made to match (:meth:`_settle_room`; kept in :attr:`repairs` if the store fails)."""
        if previous is not None:
            session.rooms[room] = previous
        else:
            session.rooms.pop(room, None)
        key, what = ("room", session.id, room), f"the failed join of session {session.id} to {room}"
        try:
            await self.until_done(key, what, lambda: self._settle_room(session, room))
        except Exception:
            log.exception("undoing a failed room.join of %s (again when the store answers)", room)

    async def _settle_room(self, session: Session, room: RoomId) -> None:
        """Make the store's membership of ``room`` match the session, after a join that
        failed: a session that is not in the room (now: it may have joined again since) is
        taken out of it, with the member.left that pairs any member.joined seen (the add may
        have landed anyway), and its record is saved again while this node owns it. A session
        that moved to another node meanwhile is its new owner's to settle."""
        mine = self.registry.get(session.id) is session
        if room not in session.rooms and (mine or session.state is SessionState.CLOSED):
            change = await self.backplane.rooms.remove(
                room, session.user, session.id, LeaveReason.LEFT.value
            )
            await self.events.publish_change(change, reason=LeaveReason.LEFT, origin=session.id)
        if mine:
            await self.save(session)

    async def leave(self, conn: Connection, session: Session, room: RoomId) -> None:
        """Leave a room: membership first, then the record."""
        await self._remove_member(session, room, LeaveReason.LEFT)
        del session.rooms[room]
        self.fanout.leave_room(conn, room)
        await self.save(session)

    async def remove_from_room(self, session_id: SessionId, room: RoomId, message: str) -> bool:
        """The backend took a local session (connected or in grace) out of a room. Out of
        the room in the session first (its requests for the room are refused from now on),
        then in the store (others see member.left ``kicked``, or member.updated; undone if
        that fails), then the client is told (``room.removed``) and the record saved. False
        when this node does not own the session or it is not in the room."""
        session = self.registry.get(session_id)
        if session is None or room not in session.rooms:
            return False
        options = session.rooms.pop(room)
        mark = session.marks.pop(room, None)
        try:
            await self._remove_member(session, room, LeaveReason.KICKED)
        except BaseException:
            if self.registry.get(session_id) is session:
                session.rooms.setdefault(room, options)
                if mark is not None:
                    session.marks.setdefault(room, mark)
            raise
        conn = self.by_session.get(session.id)
        if conn is not None:
            self.fanout.leave_room(conn, room)
            conn.send(RoomRemoved(room=room, reason=LeaveReason.KICKED.value, message=message))
        if self.registry.get(session_id) is session:  # not ended meanwhile: no record again
            await self.save(session)
        return True

    async def _remove_member(self, session: Session, room: RoomId, reason: LeaveReason) -> None:
        """Stop its typing, take the session out of the room; device.gone (for an ending that
        is not a plain leave) then the member event."""
        await self.clear_typing(session, room)
        change = await self.backplane.rooms.remove(room, session.user, session.id, reason.value)
        if reason is not LeaveReason.LEFT:
            gone = DeviceGone(room=room, user=session.user, device=session.device, reason=reason)
            await self.backplane.broker.publish(device_channel(room), encode(gone), session.id)
        await self.events.publish_change(change, reason=reason, origin=session.id)

    async def remove_orphan(self, room: RoomId, user: UserId, session_id: SessionId) -> None:
        """Cleanup: a room membership that no live session record backs (its node died and
        nobody reaped it in time) leaves the room, with ``member.left`` (reason
        ``node_lost``) when it was the user's last session there."""
        reason = LeaveReason.NODE_LOST
        change = await self.backplane.rooms.remove(room, user, session_id, reason.value)
        await self.events.publish_change(change, reason=reason, origin=None)

    async def remove_orphan_presence(self, user: UserId, session_id: SessionId) -> None:
        """Cleanup: a presence entry whose session record is gone leaves the user's presence
        (watchers see the user go offline when it was the last)."""
        change = await self.backplane.presence.remove(user, session_id, self.clock.wall())
        await self.events.presence_changed(user, change)

    async def delete_room(self, room: RoomId, reason: str = "deleted") -> RoomDeletion:
        """Delete a room, cluster-wide: its members all leave at once and its history goes.

        The store first (membership and stream, each one step), then one ``room.deleted`` on
        the room's channel with the version the deletion took: every node that has members
        there delivers it to them and takes the room out of its own sessions
        (:meth:`room_deleted`), this node included. No member.left is sent: the one event
        says it for everyone."""
        backplane = self.backplane
        deletion = await backplane.rooms.delete(room, reason)
        if deletion.members or deletion.version:
            gone = {"reason": reason, "members": sorted(deletion.members)}
            self.export.emit("room.deleted", room=room, data=gone)
        await backplane.messages.drop(room)
        data = encode(RoomDeleted(room=room, version=deletion.version, reason=reason))
        await backplane.broker.publish(room_channel(room), data, None)
        # Nodes with no connected member there are not on the room's channel, yet may own
        # members' sessions in grace: each owner is told on its own channel too.
        owners: set[str] = set()
        for sessions in deletion.members.values():
            for session_id in sessions:
                record = await backplane.sessions.get(session_id)
                if record is not None:
                    owners.add(record.node)
        for owner in sorted(owners):
            await backplane.broker.publish(node_channel(owner), b"deleted " + data)
        return deletion

    def room_deleted(self, room: RoomId, data: bytes) -> None:
        """A ``room.deleted`` (``data``) reached this node, on the room's channel in its turn
        or on the node's own: each local session in the room, connected or in grace, gets it
        and is in the room no more. Idempotent: a session told once is out of the room."""
        for session in list(self.registry):
            if room not in session.rooms:
                continue
            conn = self.by_session.get(session.id)
            if conn is not None:
                conn.send_bytes(data)
            del session.rooms[room]
            session.marks.pop(room, None)
            if conn is not None:
                self.fanout.leave_room(conn, room)
            key = self.typing.stop(session.id, room)
            if key is not None:
                self.registry.disarm(DeadlineKind.TYPING, key)
            self.spawn(self._saved_after_deletion(session, room))

    async def _saved_after_deletion(self, session: Session, room: RoomId) -> None:
        await self.save(session)
        # Its typing indicator went with the room's members; the store's list too.
        await self.backplane.typing.stop(room, session.user, self.clock.wall())

    async def set_meta(self, session: Session, room: RoomId, meta: dict[str, Any]) -> int:
        """A member's metadata changed; returns the room version."""
        change = await self.backplane.rooms.set_meta(room, session.user, meta)
        session.rooms[room].meta = meta
        await self.events.publish_change(change, origin=session.id)
        await self.save(session)
        return change.version

    # --- presence -----------------------------------------------------------------------------

    async def set_status(self, session: Session) -> PresenceChange:
        """Push this session's effective status to the store and tell everyone concerned."""
        change = await self.backplane.presence.set(
            session.user, session.id, session.effective_status, session.text, self.clock.wall()
        )
        await self.save(session)
        await self.events.presence_changed(session.user, change)
        return change

    async def watch(
        self, conn: Connection | None, session: Session, users: list[UserId]
    ) -> list[Presence]:
        """Start watching ``users`` (limits checked by the caller); their presence now.
        ``conn`` is None for a session in grace: it watches them once it resumes."""
        for user in users:
            if user not in session.subscriptions:
                session.subscriptions.add(user)
                if conn is not None:
                    await self.fanout.watchers.add(user, conn)
        await self.save(session)
        return await self.events.presence_of(users)

    def may_watch(self, session: Session, user: UserId) -> bool:
        """Whether the session's credentials let it watch ``user``: the token's ``watch``
        patterns, or without that claim the ``watch_without_claim`` setting."""
        if user == session.user:  # one's own other devices
            return True
        if session.watch_patterns is not None:
            return room_allowed(session.watch_patterns, user)
        return self.settings.watch_without_claim == "any"

    def watch_forbidden(self, session: Session) -> list[UserId]:
        """The users the session watches that its credentials no longer allow."""
        return sorted(u for u in session.subscriptions if not self.may_watch(session, u))

    async def unwatch(
        self, conn: Connection | None, session: Session, users: Iterable[UserId]
    ) -> None:
        for user in users:
            if user in session.subscriptions:
                session.subscriptions.discard(user)
                if conn is not None:
                    self.fanout.watchers.discard(user, conn)
        await self.save(session)

    async def publish_device(
        self, session: Session, kind: type[DeviceDropped] | type[DeviceBack]
    ) -> None:
        """A device-level event for each of the session's rooms (to sessions that asked)."""
        for room in session.rooms:
            event: DeviceDropped | DeviceBack
            if kind is DeviceDropped:
                grace = self.settings.grace
                event = DeviceDropped(
                    room=room, user=session.user, device=session.device, grace=grace
                )
            else:
                event = DeviceBack(room=room, user=session.user, device=session.device)
            await self.backplane.broker.publish(device_channel(room), encode(event), session.id)

    # --- typing -------------------------------------------------------------------------------

    async def start_typing(self, session: Session, room: RoomId) -> None:
        now = self.clock.monotonic()
        key = self.typing.start(session.id, room, now)
        if key is None:  # throttled: on and renewed just now, or stopped and started just now
            until = self.typing.deferred_until(session.id, room)
            if until is not None:  # applied then, unless a stop comes first
                self.registry.arm(DeadlineKind.TYPING_DEFERRED, typing_key(session.id, room), until)
                self.rearm()
            return
        self.registry.arm(DeadlineKind.TYPING, key, now + self.settings.typing_timeout)
        change = await self.backplane.typing.start(room, session.user, self.clock.wall())
        if change is not None:
            self.export.emit("typing.started", room=room, user=session.user)
            await self._publish_typing(room, change, session.id)

    async def clear_typing(self, session: Session, room: RoomId, *, owned: bool = True) -> None:
        """Stop the session's typing indicator in a room, if it has one (``owned=False``: in
        the store whether or not this node started it, as for an adopted session)."""
        self.registry.disarm(DeadlineKind.TYPING_DEFERRED, typing_key(session.id, room))
        key = self.typing.stop(session.id, room)
        if key is not None:
            self.registry.disarm(DeadlineKind.TYPING, key)
        elif owned:
            return
        change = await self.backplane.typing.stop(room, session.user, self.clock.wall())
        if change is not None:
            self.export.emit("typing.stopped", room=room, user=session.user)
            await self._publish_typing(room, change, session.id if key is not None else None)

    async def typing_deferred(self, key: str) -> None:
        """A start the throttle held back may go now (no stop came meanwhile)."""
        session_id, room = typing_of_key(key)
        session = self.registry.get(session_id)
        if session is not None and room in session.rooms and session.id in self.by_session:
            await self.start_typing(session, room)

    async def typing_expired(self, key: str) -> None:
        """A TYPING deadline fired: the session stopped renewing."""
        session_id, room = self.typing.expired(key)
        session = self.registry.get(session_id)
        if session is None:
            return
        change = await self.backplane.typing.stop(
            room, session.user, self.clock.wall(), expired=True
        )
        if change is not None:
            self.export.emit("typing.stopped", room=room, user=session.user, data={"expired": True})
            await self._publish_typing(room, change, None)

    async def _publish_typing(self, room: RoomId, change: TypingChange, origin: str | None) -> None:
        event = TypingEvent(room=room, users=list(change.users), seq=change.seq)
        await self.backplane.broker.publish(room_channel(room), encode(event), origin)

    # --- recovery -----------------------------------------------------------------------------

    async def recover(
        self, conn: Connection, session: Session, room: RoomId, since: Position | None
    ) -> None:
        """Send the events of ``room`` after ``since`` (or after the session's mark)."""
        if since is None:
            mark = session.marks.get(room)
            if mark is None:
                return
            since = Position(epoch=mark[0], offset=mark[1])
        found = await self.backplane.messages.since(
            room, since.epoch, since.offset, self.clock.wall()
        )
        conn.send(
            RoomRecovered(
                room=room,
                epoch=found.epoch,
                offset=found.offset,
                recovered=found.recovered,
                events=[wire_event(e) for e in found.events],
            )
        )

    # --- the cluster --------------------------------------------------------------------------

    async def reap(self, dead: str) -> tuple[int, int]:
        """Adopt a dead node's sessions into grace here; finish the ones it was ending.
        Returns (adopted, finished)."""
        sessions = self.backplane.sessions
        now = self.clock.monotonic()
        adopted = finished = 0
        for record in await sessions.of_node(dead):
            if not await sessions.take(record.id, dead, self.node_id):
                continue  # resumed elsewhere meanwhile
            record.node = self.node_id
            if record.state is SessionState.CLOSED:
                self.spawn(self.finish(record, LeaveReason.NODE_LOST))
                finished += 1
            else:
                self.adopt(record, now)
                adopted += 1
        return adopted, finished

    async def reap_previous_life(self) -> int:
        """Sessions recorded under this node's id that this process never had (it restarted
        with the same id): into grace here, or finish ending them."""
        now = self.clock.monotonic()
        count = 0
        for record in await self.backplane.sessions.of_node(self.node_id):
            if self.registry.get(record.id) is not None:
                continue
            if record.state is SessionState.CLOSED:
                self.spawn(self.finish(record, LeaveReason.NODE_LOST))
            else:
                self.adopt(record, now)
            count += 1
        return count

    async def reassert(self) -> int:
        """Write every local session back into the store (after an outage or an empty
        restart), silently: clients saw no change, so nobody is told of one. A session another
        node took meanwhile is refused by the owner check and let go here."""
        backplane = self.backplane
        count = 0
        wall = self.clock.wall()
        registry = self.registry
        for session in list(registry):
            # Each write checks that the session is still this node's and still in the room:
            # one that ended, failed or left meanwhile is its own transition's to take out,
            # and writing it back here would leave a ghost.
            if registry.get(session.id) is not session or not await self.save(session):
                continue
            if registry.get(session.id) is not session:
                continue
            await backplane.presence.set(
                session.user, session.id, session.effective_status, session.text, wall,
                quiet=True,
            )  # fmt: skip
            hidden = await self._invisible(session.user)
            for room, options in list(session.rooms.items()):
                if registry.get(session.id) is session and session.rooms.get(room) is options:
                    await self._add_member(session, room, options.meta, hidden, quiet=True)
            count += 1
        return count
