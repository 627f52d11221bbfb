"""The asyncio client: one presenced session over a ``websockets`` connection, kept alive.

:class:`Client` authenticates with an ``auth`` message, matches every request to its reply
by ``ref``, sends application heartbeats, and when the connection is lost reconnects as
:mod:`presenced.client.policy` decides, resuming the session with its resume token (or, when
the server could not resume it, re-joining rooms, re-subscribing and re-setting the status).
Server events reach the application through :meth:`Client.events` and/or :meth:`Client.on`.
The messaging requests (send, edit, receipts, typing, history) live in
:mod:`presenced.client.messaging`; room stream positions make the recovery after a
reconnect exact (see :class:`~presenced.client.policy.StreamPositions`).

This module holds the public surface: the constructor, the lifecycle (connect, close,
logout), the events and the presence requests. The machinery underneath is split by what it
works on: :mod:`presenced.client.connection` the current connection (handshake, reader,
request/reply matching, heartbeats), :mod:`presenced.client.supervisor` the time between
connections (reconnect, restore).

Lifecycle: one supervisor task per client owns the connection after the first welcome. It
waits for the reader to end, decides, backs off, reconnects and restores, until a stop
(close, logout, force leave, or a close code that says stop). After a close 4010 (the app's
backend ended the session) it reconnects at once as a new session: no resume, credentials
asked for again (a token function is called, as before every connect), rooms and
subscriptions restored. The backend's other actions reach the application as events: a
``room.removed`` (the room is forgotten, never re-joined), and ``presence.subscribed`` /
``presence.unsubscribed`` without a request (the watched set follows them).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from websockets.exceptions import ConnectionClosed as WSConnectionClosed

from presenced.client.connection import TokenSource
from presenced.client.events import Callback, ClientError, Connected, Event
from presenced.client.members import MemberList
from presenced.client.policy import Backoff
from presenced.client.supervisor import Supervised
from presenced.protocol.codec import encode
from presenced.protocol.codes import CloseCode, ErrorCode
from presenced.protocol.fields import ClientStatus
from presenced.protocol.messages import (
    Activity,
    Heartbeat,
    HeartbeatAck,
    Logout,
    PresenceSubscribe,
    PresenceSubscribed,
    PresenceUnsubscribe,
    PresenceUnsubscribed,
    Refresh,
    Refreshed,
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
    StatusSet,
    StatusUpdated,
    Welcome,
)

__all__ = ["Callback", "Client", "TokenSource"]

log = logging.getLogger(__name__)

_DEFAULT_BACKOFF = Backoff()


class Client(Supervised):
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
        super().__init__(
            url,
            device=device,
            token=token,
            user=user,
            device_info=device_info,
            heartbeat_interval=heartbeat_interval,
            backoff=backoff,
            request_timeout=request_timeout,
        )
        self._init_messaging(auto_delivered=auto_delivered, typing_throttle=typing_throttle)

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
        """Join ``room`` (again: updates meta); returns the members now in it.

        From then on :meth:`member_list` keeps the room's members up to date.
        """
        self._state.members.expect(room)  # member events before the reply wait for it
        try:
            reply = await self._request(
                RoomJoin(room=room, meta=meta, device_events=device_events), RoomJoined
            )
        except BaseException:
            self._state.join_failed(room)
            raise
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
        """Ask the server for the visible members of ``room`` (membership not needed).

        For a room this client is in, the reply also refreshes :meth:`member_list`.
        """
        return await self._request(RoomMembers(room=room), RoomMembersReply)

    def member_list(self, room: str) -> MemberList | None:
        """The members of ``room`` as this client knows them now, without asking the server.

        Kept for every room joined through this client: seeded by ``room.joined``, moved by
        each ``member.*`` event (alone or in a ``room.batch``) by the version rule of
        docs/protocol.md (an event at or below the list's version is skipped, the next one
        applied), and replaced by a ``room.members`` snapshot when a version is skipped or
        after a reconnect (a ``members_resynced`` event says so when the list changed).
        ``room.summary`` sets ``count`` only. The returned :class:`MemberList` is a copy:
        call again for the latest. ``None`` for a room this client is not in (or before its
        ``room.joined``); ``synced`` is false while a snapshot is due.
        """
        return self._state.members.get(room)

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

    async def refresh(self, token: str) -> Refreshed:
        """Move the session onto a fresh JWT before the current one expires
        (``Welcome.expires_at``); without it the server closes with 4011 at ``exp`` and this
        client reconnects at once with its token source's next token, and resumes."""
        return await self._request(Refresh(token=token), Refreshed)

    async def heartbeat(self) -> HeartbeatAck:
        """Send an application heartbeat now and wait for its ack."""
        return await self._request(Heartbeat(), HeartbeatAck)
