"""The connection half of :class:`~presenced.client.Client`: one connection at a time.

:class:`Connection` holds the client's state and the machinery that works on the current
WebSocket connection: the ``auth`` handshake (resuming when it holds a resume token), the
reader task that decodes server frames and matches every reply to its request by ``ref``,
the application heartbeats that notice a half-dead connection, and the ready / stopped
state that requests wait on. What happens *between* connections (deciding, backing off,
reconnecting, restoring) is :mod:`presenced.client.supervisor`; the public requests are
:mod:`presenced.client.client`.

It implements the plumbing that :class:`~presenced.client.messaging.MessagingMixin`
declares abstract (``_request``, ``_post``, ``_post_on``, ``_emit``), so the classes stack
in one line, each the base of the next: ``MessagingMixin``, ``Connection``, ``Supervised``
(:mod:`presenced.client.supervisor`), ``Client``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed as WSConnectionClosed

from presenced.client.events import (
    ClientError,
    ConnectionClosed,
    Disconnected,
    Event,
    EventHub,
    ForcedLeave,
    ForceLeaveError,
    event_type,
)
from presenced.client.messaging import MessagingMixin
from presenced.client.policy import Backoff, Decision, ResumeState, reconnect_decision
from presenced.protocol.chat import Position
from presenced.protocol.codec import decode_server, encode
from presenced.protocol.messages import (
    Auth,
    ClientMessage,
    Error,
    ForceLeave,
    Heartbeat,
    HeartbeatAck,
    MemberJoined,
    MemberLeft,
    MemberUpdated,
    PresenceSubscribed,
    PresenceUnsubscribed,
    RoomBatch,
    RoomDeleted,
    RoomJoin,
    RoomJoined,
    RoomMembers,
    RoomMembersReply,
    RoomRemoved,
    RoomSummary,
    ServerMessage,
    Welcome,
)

__all__ = ["Connection", "TokenSource"]

log = logging.getLogger(__name__)

TokenSource = str | Callable[[], Awaitable[str]] | None
"""A JWT, or an async function returning a fresh one (called before every connect)."""

_R = TypeVar("_R", bound=ServerMessage)

_MAX_QUEUED_EVENTS = 10_000  # events() unread beyond this: the oldest are dropped
_MAX_FRAME = 16 * 2**20  # a room.members reply for a big room can be large


class Connection(MessagingMixin):
    """The client's state, and the work done on the current connection.

    Not used on its own: :class:`~presenced.client.Client` is the class to use. The
    arguments are :class:`~presenced.client.Client`'s, minus the messaging ones.
    """

    def __init__(
        self,
        url: str,
        *,
        device: str,
        token: TokenSource,
        user: str | None,
        device_info: dict[str, Any] | None,
        heartbeat_interval: float | None,
        backoff: Backoff,
        request_timeout: float,
    ) -> None:
        if (token is None) == (user is None):
            raise ValueError("give exactly one of token= (a JWT) or user= (insecure dev mode)")
        if request_timeout <= 0:
            raise ValueError(f"request_timeout must be > 0 seconds, got {request_timeout!r}")
        self.url = url
        self.device = device
        self._token = token
        self._user = user
        self._device_info = device_info
        self._heartbeat_interval = heartbeat_interval
        self._backoff = backoff
        self._request_timeout = request_timeout
        self._random = random.Random()

        self._state = ResumeState()
        self._ws: ClientConnection | None = None
        self._welcome: Welcome | None = None
        self._ready = False  # welcomed and restored: requests may go
        self._pending: dict[int, asyncio.Future[ServerMessage]] = {}
        self._refs = itertools.count(1)
        self._hub = EventHub(_MAX_QUEUED_EVENTS)
        self._changed = asyncio.Event()  # replaced on every state change; see _notify

        self._started = False
        self._closing = False  # close() or logout() asked for the end
        self._stopped: ConnectionClosed | None = None  # set once, when the client is done
        self._forced: ForcedLeave | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._reconnecting = False  # the supervisor is between connections
        self._reader: asyncio.Task[tuple[int | None, str]] | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._sync_tasks: set[asyncio.Task[None]] = set()  # recoveries and re-snapshots

    # --- request plumbing ------------------------------------------------------------------

    async def _request(self, message: ClientMessage, expect: type[_R]) -> _R:
        ws = await self._wait_ready()
        return await self._request_on(ws, message, expect)

    async def _request_on(
        self, ws: ClientConnection, message: ClientMessage, expect: type[_R]
    ) -> _R:
        ref = next(self._refs)
        message = msgspec.structs.replace(message, ref=ref)
        future: asyncio.Future[ServerMessage] = asyncio.get_running_loop().create_future()
        self._pending[ref] = future
        try:
            await self._send(ws, message)
            async with asyncio.timeout(self._request_timeout):
                reply = await future
        except TimeoutError:
            raise TimeoutError(
                f"no reply to {_request_type(message)} (ref {ref}) "
                f"within {self._request_timeout:g}s"
            ) from None
        finally:
            self._pending.pop(ref, None)
        if isinstance(reply, Error):
            raise ClientError(reply.code, reply.message, reply.field, reply.ref)
        if not isinstance(reply, expect):
            raise ClientError(
                "UNEXPECTED_REPLY",
                f"expected {expect.__struct_config__.tag} for ref {ref}, got {event_type(reply)}",
                ref=ref,
            )
        return reply

    async def _post(self, message: ClientMessage) -> None:
        await self._post_on(await self._wait_ready(), message)

    async def _post_on(self, ws: ClientConnection, message: ClientMessage) -> None:
        # A ref nobody waits for: an error answering it is logged, not surfaced as an event.
        await self._send(ws, msgspec.structs.replace(message, ref=next(self._refs)))

    async def _send(self, ws: ClientConnection, message: ClientMessage) -> None:
        try:
            await ws.send(encode(message).decode())
        except WSConnectionClosed:
            raise self._closed_error(ws.close_code, ws.close_reason or "") from None

    async def _wait_ready(self) -> ClientConnection:
        """The live connection, waiting through a reconnect (up to request_timeout)."""
        if not self._started:
            raise ConnectionClosed(None, "not connected: use `async with` or await connect()")
        async with asyncio.timeout(self._request_timeout):
            while True:
                if self._stopped is not None:
                    raise self._stopped
                if self._ready and self._ws is not None:
                    return self._ws
                await self._changed.wait()

    def _closed_error(self, code: int | None, reason: str) -> ConnectionClosed:
        if self._forced is not None:
            return ForceLeaveError(self._forced.reason, self._forced.message)
        if self._stopped is not None:
            return self._stopped
        will = not self._closing and reconnect_decision(code) is not Decision.STOP
        return ConnectionClosed(code, reason, will_reconnect=will)

    # --- connection ------------------------------------------------------------------------

    async def _token_value(self) -> str | None:
        if self._token is None or isinstance(self._token, str):
            return self._token
        return await self._token()

    async def _open(self) -> tuple[ClientConnection, Welcome]:
        """Connect, authenticate (resuming if we hold a token) and return the welcome."""
        auth = Auth(
            device=self.device,
            token=await self._token_value(),
            user=self._user,
            device_info=self._device_info,
            resume=self._state.resume_token,
            positions=self._state.auth_positions(),
        )
        ws = await connect(
            self.url,
            ping_interval=None,  # the server pings us; our heartbeats watch the server
            open_timeout=self._request_timeout,
            close_timeout=self._request_timeout,
            compression=None,
            max_size=_MAX_FRAME,
        )
        try:
            await ws.send(encode(auth).decode())
            async with asyncio.timeout(self._request_timeout):
                while True:
                    message = self._decode(await ws.recv())
                    if isinstance(message, Welcome):
                        return ws, message
                    if isinstance(message, Error):
                        raise ClientError(message.code, message.message, message.field, message.ref)
        except WSConnectionClosed:
            raise ConnectionClosed(ws.close_code, ws.close_reason or "") from None
        except BaseException:
            ws.transport.abort()
            raise

    def _attach(self, ws: ClientConnection, welcome: Welcome) -> None:
        self._ws = ws
        self._welcome = welcome
        self._messaging_reset()
        self._reader = asyncio.create_task(self._read(ws), name="presenced-client-reader")
        interval = self._heartbeat_interval
        if interval is None:
            interval = welcome.heartbeat_interval
        if interval > 0:
            self._heartbeat = asyncio.create_task(
                self._heartbeats(ws, interval), name="presenced-client-heartbeat"
            )
        self._sync_rooms(ws)  # the member snapshots a resume asks for

    def _detach(self, code: int | None, reason: str) -> None:
        """The connection is gone: stop its heartbeats, fail the requests waiting on it."""
        self._ready = False
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            self._heartbeat = None
        self._ws = None
        self._state.members.connection_lost()  # member events of the outage will be lost
        error = self._closed_error(code, reason)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error)
        self._pending.clear()
        self._notify()

    async def _read(self, ws: ClientConnection) -> tuple[int | None, str]:
        try:
            async for raw in ws:
                self._dispatch(self._decode(raw))
                self._sync_rooms(ws)
        except WSConnectionClosed:
            pass
        return ws.close_code, ws.close_reason or ""

    @staticmethod
    def _decode(raw: str | bytes) -> ServerMessage | None:
        try:
            return decode_server(raw)
        except msgspec.MsgspecError as exc:
            # A newer server may send types this SDK does not know yet: skip, do not die.
            log.warning("ignoring undecodable server message: %s", exc)
            return None

    def _dispatch(self, message: ServerMessage | None) -> None:
        if message is None:
            return
        if isinstance(message, RoomBatch):  # membership events coalesced by the server
            for member_event in message.events:
                self._dispatch(member_event)
            return
        ref = getattr(message, "ref", None)
        if isinstance(ref, int):  # every ref we send is an int: this answers one of ours
            self._state.streams.reply(message)  # an ack moves the room's position
            for surfaced in self._state.members.reply(message, self.user):  # a snapshot
                self._emit(surfaced)
            future = self._pending.get(ref)
            if future is not None and not future.done():
                future.set_result(message)
            elif isinstance(message, Error):  # a request without reply (receipt, typing)
                log.warning("request ref %d refused: %s: %s", ref, message.code, message.message)
            else:  # its request timed out or was cancelled: not an event
                log.debug("dropping a late reply: %s (ref %d)", event_type(message), ref)
            return
        if isinstance(message, ForceLeave):
            self._forced = ForcedLeave(message.reason, message.message)
            self._state.clear()
            self._emit(self._forced)
        elif isinstance(message, RoomDeleted | RoomRemoved):
            # Every member left at once, or the backend took this session out: it is in the
            # room no more (and will not re-join it after a reconnect).
            self._state.left(message.room)
            self._emit(message)
        elif isinstance(message, PresenceSubscribed):  # the backend watched on our behalf
            self._state.subscribed([p.user for p in message.users])
            self._emit(message)
        elif isinstance(message, PresenceUnsubscribed):
            self._state.unsubscribed(message.users)
            self._emit(message)
        elif isinstance(message, MemberJoined | MemberLeft | MemberUpdated | RoomSummary):
            # The version rule: skipped when already in the list, held across a snapshot.
            for surfaced in self._state.members.receive(message):
                self._emit(surfaced)
        elif not isinstance(message, HeartbeatAck | Welcome):
            # The offset rule: duplicates dropped, held while a room.recovered is due.
            for event in self._state.streams.receive(message):
                self._received(event)

    # --- room recoveries and member snapshots -----------------------------------------------

    def _sync_rooms(self, ws: ClientConnection) -> None:
        """Send the recoveries (offset gaps) and snapshots (version gaps, resumes) now due."""
        for room, since in self._state.streams.take_recoveries():
            self._spawn(self._recover(ws, room, since))
        for room in self._state.members.take_requests():
            self._spawn(self._resnapshot(ws, room))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._sync_tasks.add(task)
        task.add_done_callback(self._sync_tasks.discard)

    async def _recover(self, ws: ClientConnection, room: str, since: Position) -> None:
        """``room.join`` with ``since``: the ``room.recovered`` that follows fills the gap."""
        joined = self._state.rooms.get(room)
        if joined is None:  # not (or no longer) a room of ours: nothing to recover
            self._state.streams.forget(room)
            return
        join = RoomJoin(room=room, device_events=joined.device_events, since=since)
        try:
            await self._request_on(ws, join, RoomJoined)
        except ConnectionClosed:
            return  # the next welcome recovers from the same position
        except (ClientError, TimeoutError) as exc:
            log.warning("could not recover room %s from %s: %s", room, since, exc)
            if ws is self._ws:
                for event in self._state.streams.abandon(room):
                    self._received(event)

    async def _resnapshot(self, ws: ClientConnection, room: str) -> None:
        """``room.members``: its reply replaces the room's member list."""
        try:
            await self._request_on(ws, RoomMembers(room=room), RoomMembersReply)
        except ConnectionClosed:
            return
        except (ClientError, TimeoutError) as exc:
            log.warning("could not refresh the members of room %s: %s", room, exc)
            if ws is self._ws:
                self._state.members.abandon(room)

    async def _heartbeats(self, ws: ClientConnection, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self._request_on(ws, Heartbeat(), HeartbeatAck)
            except TimeoutError:
                # The server stopped answering: the connection is half dead. Drop it so the
                # supervisor reconnects and resumes while the session is still in grace.
                log.warning(
                    "no heartbeat ack within %gs: dropping the connection", self._request_timeout
                )
                ws.transport.abort()
                return
            except ConnectionClosed:
                return
            except ClientError as exc:  # RATE_LIMITED and the like: try again next time
                log.debug("heartbeat refused: %s", exc)

    # --- state and events ------------------------------------------------------------------

    def _set_ready(self) -> None:
        self._ready = True
        self._notify()
        self._schedule_delivered()  # receipts noted while the session was not ready

    def _notify(self) -> None:
        """Wake every waiter of ``_changed`` and arm a new event for the next change."""
        self._changed.set()
        self._changed = asyncio.Event()

    def _stop(self, code: int | None, reason: str) -> None:
        """The client is done (idempotent): final Disconnected, end of events()."""
        if self._stopped is not None:
            return
        if self._forced is not None:
            self._stopped = ForceLeaveError(self._forced.reason, self._forced.message)
        else:
            self._stopped = ConnectionClosed(code, reason)
        self._ready = False
        for task in self._sync_tasks:
            task.cancel()
        self._hub.release()  # stopped during a restore: deliver what it brought
        if self._supervisor is not None or self._welcome is not None:
            self._emit(Disconnected(code, reason, will_reconnect=False))
        self._hub.end()
        self._notify()

    def _emit(self, event: Event) -> None:
        self._hub.emit(event)


def _request_type(message: ClientMessage) -> str:
    """The wire type of a request, for error messages."""
    return str(type(message).__struct_config__.tag)
