"""The asyncio client: one presenced session over a ``websockets`` connection, kept alive.

:class:`Client` authenticates with an ``auth`` message, matches every request to its reply
by ``ref``, sends application heartbeats, and when the connection is lost reconnects as
:mod:`presenced.client.policy` decides, resuming the session with its resume token (or, when
the server could not resume it, re-joining rooms, re-subscribing and re-setting the status).
Server events reach the application through :meth:`Client.events` and/or :meth:`Client.on`.
The messaging requests (send, edit, receipts, typing, history) live in
:mod:`presenced.client.messaging`; room stream positions make the recovery after a
reconnect exact (see :class:`~presenced.client.policy.StreamPositions`).

Lifecycle: one supervisor task per client owns the connection after the first welcome. It
waits for the reader to end, decides, backs off, reconnects and restores, until a stop
(close, logout, force leave, or a close code that says stop).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed as WSConnectionClosed
from websockets.exceptions import WebSocketException

from presenced.client.events import (
    Callback,
    ClientError,
    Connected,
    ConnectionClosed,
    Disconnected,
    Event,
    EventHub,
    ForcedLeave,
    ForceLeaveError,
    event_type,
)
from presenced.client.messaging import MessagingMixin
from presenced.client.policy import (
    Backoff,
    Decision,
    Restore,
    ResumeState,
    auth_failure_decision,
    reconnect_decision,
    retry_delay,
)
from presenced.protocol.codec import decode_server, encode
from presenced.protocol.codes import CloseCode, ErrorCode
from presenced.protocol.fields import ClientStatus
from presenced.protocol.messages import (
    Activity,
    Auth,
    ClientMessage,
    Error,
    ForceLeave,
    Heartbeat,
    HeartbeatAck,
    Logout,
    RoomBatch,
    PresenceSubscribe,
    PresenceSubscribed,
    PresenceUnsubscribe,
    PresenceUnsubscribed,
    RoomCount,
    RoomCountReply,
    RoomJoin,
    RoomJoined,
    RoomLeave,
    RoomLeft,
    RoomMembers,
    RoomMembersReply,
    RoomMeta,
    RoomMetaUpdated,
    ServerMessage,
    StatusSet,
    StatusUpdated,
    Welcome,
)

__all__ = ["Callback", "Client", "TokenSource"]

log = logging.getLogger(__name__)

TokenSource = str | Callable[[], Awaitable[str]] | None
"""A JWT, or an async function returning a fresh one (called before every connect)."""

_R = TypeVar("_R", bound=ServerMessage)

_DEFAULT_BACKOFF = Backoff()
_MAX_QUEUED_EVENTS = 10_000  # events() unread beyond this: the oldest are dropped
_MAX_FRAME = 16 * 2**20  # a room.members reply for a big room can be large
_CONNECT_ERRORS = (OSError, TimeoutError, WebSocketException)


class Client(MessagingMixin):
    """A presenced session that survives connection losses.

    ``token`` (a JWT, or an async function returning one) or ``user`` (insecure development
    mode only) must be given, not both. ``heartbeat_interval`` overrides the server's value
    from ``welcome``; ``0`` turns application heartbeats off (WebSocket pings are still
    answered). Request methods raise :class:`ClientError` when the server refuses,
    :class:`ConnectionClosed` when the connection is gone (``will_reconnect`` says whether
    to retry), :class:`ForceLeaveError` after a force leave and ``TimeoutError`` after
    ``request_timeout`` seconds without a reply. While reconnecting, requests wait (up to
    ``request_timeout``) for the session to be back.

    ``auto_delivered`` sends ``receipt.delivered`` for every message received (one per room
    per event-loop turn, for the highest offset). ``typing_throttle`` is the least time in
    seconds between two ``typing.start`` that :meth:`typing` sends for one room.

    Messaging (:class:`~presenced.client.messaging.MessagingMixin`): :meth:`send`,
    :meth:`edit`, :meth:`delete`, :meth:`seen`, :meth:`typing`, :meth:`stop_typing`,
    :meth:`history`, :meth:`read_state`.

    Use ``async with Client(...) as client:``, or ``await client.connect()`` and
    ``await client.close()``. The first connect raises if it fails; later losses are
    handled by reconnecting.
    """

    def __init__(
        self,
        url: str,
        *,
        device: str,
        token: TokenSource = None,
        user: str | None = None,
        device_info: dict[str, Any] | None = None,
        heartbeat_interval: float | None = None,
        backoff: Backoff = _DEFAULT_BACKOFF,
        request_timeout: float = 10.0,
        auto_delivered: bool = True,
        typing_throttle: float = 2.0,
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
        self._init_messaging(auto_delivered=auto_delivered, typing_throttle=typing_throttle)

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

    # --- properties ------------------------------------------------------------------------

    @property
    def session(self) -> str | None:
        """The session id from the last welcome (it changes when a resume failed)."""
        return self._welcome.session if self._welcome else None

    @property
    def user(self) -> str | None:
        """The authenticated user id."""
        return self._welcome.user if self._welcome else None

    @property
    def welcome(self) -> Welcome | None:
        """The last welcome received."""
        return self._welcome

    @property
    def rooms(self) -> frozenset[str]:
        """The rooms this session is in, as confirmed by the server."""
        return frozenset(self._state.rooms)

    @property
    def connected(self) -> bool:
        """True while a session is established and restored; false while reconnecting."""
        return self._ready and self._stopped is None

    # --- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def connect(self) -> Welcome:
        """Open the connection and wait for the welcome; raise if that fails.

        Raises :class:`ClientError` (AUTH_FAILED, BAD_REQUEST...) when the server refuses the
        auth, :class:`ConnectionClosed` when it closes the connection, ``OSError`` /
        ``TimeoutError`` / a ``websockets`` handshake error when it cannot be reached.
        """
        if self._started:
            raise RuntimeError("Client.connect() may be called once per client")
        self._started = True
        try:
            ws, welcome = await self._open()
        except BaseException as exc:
            self._stop(None, f"connect failed: {exc!r}")
            raise
        self._state.on_welcome(welcome)  # first session: nothing to restore
        self._attach(ws, welcome)
        self._supervisor = asyncio.create_task(self._supervise(), name="presenced-client")
        self._set_ready()
        self._emit(Connected(welcome))
        return welcome

    async def close(self) -> None:
        """Close the connection (1000) and stop. The server keeps the session in grace."""
        self._closing = True
        supervisor = self._supervisor
        ws = self._ws
        if supervisor is not None and self._reconnecting:
            supervisor.cancel()  # between connections: stop the reconnect loop
        elif ws is not None:
            try:
                async with asyncio.timeout(self._request_timeout):
                    await ws.close()
            except TimeoutError:
                ws.transport.abort()
        if supervisor is not None and not supervisor.done():
            try:
                async with asyncio.timeout(self._request_timeout):
                    await asyncio.shield(supervisor)
            except TimeoutError:
                supervisor.cancel()
            except asyncio.CancelledError:
                if not supervisor.cancelled():
                    raise
        self._stop(CloseCode.NORMAL, "closed by client")
        await self._drain_messaging(self._request_timeout)
        await self._hub.drain(self._request_timeout)

    async def logout(self) -> None:
        """End the session now: rooms see member.left at once; the client stops."""
        self._closing = True
        self._state.clear()
        ws = self._ws
        if ws is not None and self._ready:
            try:
                await ws.send(encode(Logout()).decode())
            except WSConnectionClosed:
                pass
            else:
                # The server closes with 1000 once the session is gone; wait for that.
                reader = self._reader
                if reader is not None:
                    try:
                        async with asyncio.timeout(self._request_timeout):
                            await asyncio.shield(reader)
                    except TimeoutError:
                        log.warning("server did not close after logout; closing")
        await self.close()

    def simulate_drop(self) -> None:
        """Abort the connection without a close frame, as a network failure would.

        For tests and chaos drills: the client then reconnects and resumes exactly as after
        a real drop. Requests made from now on wait for the new session.
        """
        ws = self._ws
        if ws is None:
            return
        self._ready = False
        self._notify()
        ws.transport.abort()

    def simulate_stall(self) -> None:
        """Stop reading from the connection, as a network that went silent would.

        For tests and chaos drills: replies and events stay in the socket unread, and are
        lost with it at the next :meth:`simulate_drop` (or when the heartbeat gives up).
        """
        ws = self._ws
        if ws is not None:
            ws.transport.pause_reading()

    # --- events ----------------------------------------------------------------------------

    def events(self) -> AsyncIterator[Event]:
        """Iterate over events as they come; the iteration ends when the client stops.

        Events are queued from the moment the client is created, so nothing is lost between
        ``connect()`` and the first iteration. Meant for one consumer.
        """
        return self._hub.events()

    def on(self, type_: str, callback: Callback) -> Callable[[], None]:
        """Call ``callback(event)`` for every event of type ``type_`` (``"*"``: all).

        ``type_`` is a wire type (``"member.joined"``, ``"message"``) or ``"connected"``,
        ``"disconnected"``, ``"forced_leave"``. Async callbacks run as tasks. Returns a
        function that removes the callback.
        """
        return self._hub.on(type_, callback)

    # --- requests --------------------------------------------------------------------------

    async def join(
        self, room: str, meta: dict[str, Any] | None = None, device_events: bool = False
    ) -> RoomJoined:
        """Join ``room`` (again: updates meta); returns the members now in it."""
        reply = await self._request(
            RoomJoin(room=room, meta=meta, device_events=device_events), RoomJoined
        )
        self._state.joined(room, meta, device_events)
        return reply

    async def leave(self, room: str) -> RoomLeft:
        """Leave ``room``; others see member.left (or member.updated: other devices)."""
        try:
            reply = await self._request(RoomLeave(room=room), RoomLeft)
        except ClientError as exc:
            if exc.code == ErrorCode.NOT_IN_ROOM:
                self._state.left(room)
            raise
        self._state.left(room)
        return reply

    async def members(self, room: str) -> RoomMembersReply:
        """The visible members of ``room`` (membership not needed)."""
        return await self._request(RoomMembers(room=room), RoomMembersReply)

    async def count(self, room: str) -> int:
        """How many visible members ``room`` has."""
        reply = await self._request(RoomCount(room=room), RoomCountReply)
        return reply.count

    async def set_status(self, status: ClientStatus, text: str | None = None) -> StatusUpdated:
        """Set this device's status (online, away, busy, dnd, invisible) and status text."""
        reply = await self._request(StatusSet(status=status, text=text), StatusUpdated)
        self._state.status_set(status, text)
        return reply

    async def subscribe(self, users: list[str]) -> PresenceSubscribed:
        """Watch ``users``: returns their presence now; ``presence`` events follow."""
        reply = await self._request(PresenceSubscribe(users=list(users)), PresenceSubscribed)
        self._state.subscribed(list(users))
        return reply

    async def unsubscribe(self, users: list[str]) -> PresenceUnsubscribed:
        """Stop watching ``users``."""
        reply = await self._request(PresenceUnsubscribe(users=list(users)), PresenceUnsubscribed)
        self._state.unsubscribed(list(users))
        return reply

    async def set_meta(self, room: str, meta: dict[str, Any]) -> RoomMetaUpdated:
        """Replace this session's metadata in ``room``; others see member.updated."""
        reply = await self._request(RoomMeta(room=room, meta=meta), RoomMetaUpdated)
        self._state.meta_set(room, meta)
        return reply

    async def activity(self) -> None:
        """Tell the server the user did something (resets the idle clock); no reply."""
        ws = await self._wait_ready()
        await self._send(ws, Activity())

    async def heartbeat(self) -> HeartbeatAck:
        """Send an application heartbeat now and wait for its ack."""
        return await self._request(Heartbeat(), HeartbeatAck)

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

    def _detach(self, code: int | None, reason: str) -> None:
        """The connection is gone: stop its heartbeats, fail the requests waiting on it."""
        self._ready = False
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            self._heartbeat = None
        self._ws = None
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
        elif not isinstance(message, HeartbeatAck | Welcome):
            # Room stream events are held while their room awaits a room.recovered.
            for event in self._state.streams.receive(message):
                self._received(event)

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

    # --- supervision -----------------------------------------------------------------------

    async def _supervise(self) -> None:
        code: int | None = None
        reason = ""
        try:
            while True:
                assert self._reader is not None
                code, reason = await self._reader
                self._detach(code, reason)
                if self._closing:
                    return
                if self._forced is not None:
                    self._stop(code, reason)
                    return
                decision = reconnect_decision(code, token_refreshable=callable(self._token))
                if decision is Decision.STOP:
                    self._stop(code, reason)
                    return
                self._emit(Disconnected(code, reason, will_reconnect=True))
                self._reconnecting = True
                try:
                    if not await self._reconnect(decision, code, reason):
                        return
                finally:
                    self._reconnecting = False
        finally:
            self._reconnecting = False
            if self._ws is not None:  # cancelled while a connection was up
                self._ws.transport.abort()
            if self._reader is not None and not self._reader.done():
                self._reader.cancel()
            self._detach(code, reason)
            self._stop(code, reason or ("closed by client" if self._closing else "stopped"))

    async def _reconnect(self, decision: Decision, code: int | None, reason: str) -> bool:
        """Try until a session is back (True) or the policy says stop (False)."""
        refreshable = callable(self._token)
        auth_failures = 0
        for attempt in itertools.count():
            delay = retry_delay(decision, attempt, self._random.random(), self._backoff)
            if delay is None or self._closing:
                self._stop(code, reason)
                return False
            await asyncio.sleep(delay)
            try:
                ws, welcome = await self._open()
            except ClientError as exc:
                code, reason = None, str(exc)
                decision = auth_failure_decision(exc.code, token_refreshable=refreshable)
                if exc.code == ErrorCode.AUTH_FAILED:
                    auth_failures += 1
                    if auth_failures > 1:  # a fresh token did not help either
                        decision = Decision.STOP
                continue
            except ConnectionClosed as exc:
                code, reason = exc.code, exc.reason
                decision = reconnect_decision(code, token_refreshable=refreshable)
                continue
            except _CONNECT_ERRORS as exc:
                code, reason = None, repr(exc)
                decision = Decision.RECONNECT_BACKOFF
                log.debug("reconnect attempt %d failed: %r", attempt, exc)
                continue
            if self._closing:
                ws.transport.abort()
                return False
            plan = self._state.on_welcome(welcome)
            self._hub.hold()  # what the new session brings comes after Connected
            self._attach(ws, welcome)
            try:
                await self._restore(ws, plan)
                await self._settle(ws)
            except (ConnectionClosed, TimeoutError) as exc:
                log.warning("connection lost while restoring the session: %r", exc)
                ws.transport.abort()  # a timeout means a half-dead connection: drop it
                self._hub.release()
                return True  # the reader ends: the supervisor loop goes on
            self._set_ready()
            self._hub.release(Connected(welcome))
            return True
        raise AssertionError("unreachable")

    async def _restore(self, ws: ClientConnection, plan: Restore) -> None:
        """Send what a fresh session lacks. A request the server now refuses is dropped."""
        for join in plan.joins:
            try:
                await self._request_on(ws, join, RoomJoined)
            except ClientError as exc:
                log.warning("could not re-join room %s: %s", join.room, exc)
                self._state.left(join.room)
        for subscribe in plan.subscribes:
            try:
                await self._request_on(ws, subscribe, PresenceSubscribed)
            except ClientError as exc:
                log.warning("could not re-subscribe: %s", exc)
                self._state.unsubscribed(subscribe.users)
        if plan.status is not None:
            try:
                await self._request_on(ws, plan.status, StatusUpdated)
            except ClientError as exc:
                log.warning("could not re-set status: %s", exc)

    async def _settle(self, ws: ClientConnection) -> None:
        """Wait until every room.recovered due after this welcome has been read.

        The server answers requests in order, and sends a resume's or a join's
        room.recovered before it reads the next request: once a heartbeat is acknowledged,
        any room still awaiting one will not get it (the server had no mark to recover it
        from), and its held events are released as they are.
        """
        streams = self._state.streams
        if not streams.awaiting:
            return
        try:
            await self._request_on(ws, Heartbeat(), HeartbeatAck)
        except ClientError as exc:  # RATE_LIMITED and the like: do not hold events forever
            log.debug("settle heartbeat refused: %s", exc)
        for room in streams.awaiting:
            log.debug("no room.recovered for %s after the reconnect", room)
        for event in streams.settle():
            self._received(event)

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
