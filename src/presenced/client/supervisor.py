"""What the client does between connections: decide, back off, reconnect, restore.

:class:`Supervised` adds to :class:`~presenced.client.connection.Connection` the supervisor
task that owns the connection after the first welcome. It waits for the reader to end,
asks :mod:`presenced.client.policy` whether and how soon to reconnect, reconnects
(resuming the session with its resume token, or, when the server could not resume it or
ended it with 4010, re-joining rooms, re-subscribing and re-setting the status), waits for
the rooms' recovery to settle, and goes on until a stop (close, logout, force leave, or a
close code that says stop). Kept apart from the per-connection machinery so each module
reads on its own.
"""

from __future__ import annotations

import asyncio
import itertools
import logging

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import WebSocketException

from presenced.client.connection import Connection
from presenced.client.events import ClientError, Connected, ConnectionClosed, Disconnected
from presenced.client.policy import (
    Decision,
    Restore,
    auth_failure_decision,
    may_resume,
    reconnect_decision,
    retry_delay,
)
from presenced.protocol.codes import ErrorCode
from presenced.protocol.messages import (
    Heartbeat,
    HeartbeatAck,
    PresenceSubscribed,
    RoomJoined,
    StatusUpdated,
)

__all__ = ["Supervised"]

log = logging.getLogger(__name__)

_CONNECT_ERRORS = (OSError, TimeoutError, WebSocketException)


class Supervised(Connection):
    """A :class:`~presenced.client.connection.Connection` kept alive by a supervisor task.

    Not used on its own: :class:`~presenced.client.Client` starts the supervisor
    (:meth:`_supervise`) after the first welcome and stops it on close.
    """

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
                if not may_resume(code):  # 4010: the backend ended the session
                    self._state.session_ended()
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
        awaited = dict(streams.awaiting)  # a gap found meanwhile starts a recovery of its own
        try:
            await self._request_on(ws, Heartbeat(), HeartbeatAck)
        except ClientError as exc:  # RATE_LIMITED and the like: do not hold events forever
            log.debug("settle heartbeat refused: %s", exc)
        for room in awaited:
            if streams.awaiting.get(room) is awaited[room]:
                log.debug("no room.recovered for %s after the reconnect", room)
        for event in streams.settle(awaited):
            self._received(event)
        self._sync_rooms(ws)
