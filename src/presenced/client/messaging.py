"""The messaging half of :class:`~presenced.client.Client`: send, edit, delete, receipts,
typing, history and read state.

Kept apart from :mod:`presenced.client.client` (the presence requests),
:mod:`presenced.client.connection` (the connection) and :mod:`presenced.client.supervisor`
(reconnecting) so no module grows past a few hundred lines. :class:`MessagingMixin`
holds the methods and their small state; the connection plumbing it needs is declared
abstract here and provided by ``Client``. Its pure rules (the typing throttle, coalescing
of delivered receipts, stream positions) live in :mod:`presenced.client.policy`.

Exactly-once sending: :meth:`MessagingMixin.send` gives every message a ``temp_id``. If the
connection drops before the ack, the same ``temp_id`` is sent again on the next session; the
server recognises it and answers with the first ack (``duplicate`` true) instead of storing
the message twice, so the caller gets one ack and every reader one message.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import uuid
from typing import TypeVar

from websockets.asyncio.client import ClientConnection

from presenced.client.events import ConnectionClosed, Event
from presenced.client.policy import (
    DeliveredReceipts,
    ResumeState,
    TypingThrottle,
    delivered_receipt,
)
from presenced.protocol.chat import (
    Body,
    MessageAck,
    MessageDelete,
    MessageDeleted,
    MessageEdit,
    MessageEdited,
    MessageSend,
    ReceiptDelivered,
    ReceiptSeen,
    RoomHistory,
    RoomHistoryReply,
    RoomRead,
    RoomReadReply,
    TypingStart,
    TypingStop,
)
from presenced.protocol.messages import ClientMessage, ServerMessage

__all__ = ["SEND_ATTEMPTS", "MessagingMixin", "new_temp_id"]

log = logging.getLogger(__name__)

_R = TypeVar("_R", bound=ServerMessage)

SEND_ATTEMPTS = 5
"""How many connections one :meth:`MessagingMixin.send` tries before giving up."""


def new_temp_id() -> str:
    """A fresh temporary message id: random, so re-sends after a restart cannot collide."""
    return uuid.uuid4().hex


class MessagingMixin(abc.ABC):
    """Room messaging requests, automatic delivered receipts and the typing throttle."""

    _state: ResumeState
    _ready: bool
    _ws: ClientConnection | None

    # --- what Client provides ------------------------------------------------------------

    @property
    @abc.abstractmethod
    def user(self) -> str | None:
        """The authenticated user id."""

    @abc.abstractmethod
    async def _request(self, message: ClientMessage, expect: type[_R]) -> _R:
        """Send ``message`` once the session is ready and wait for its ``expect`` reply."""

    @abc.abstractmethod
    async def _post(self, message: ClientMessage) -> None:
        """Send a request that has no reply once the session is ready (errors are logged)."""

    @abc.abstractmethod
    async def _post_on(self, ws: ClientConnection, message: ClientMessage) -> None:
        """Send a request that has no reply on ``ws`` now."""

    @abc.abstractmethod
    def _emit(self, event: Event) -> None:
        """Hand an event to the application."""

    # --- state -----------------------------------------------------------------------------

    def _init_messaging(self, *, auto_delivered: bool, typing_throttle: float) -> None:
        self._auto_delivered = auto_delivered
        self._typing = TypingThrottle(typing_throttle)
        self._delivered = DeliveredReceipts()
        self._flush_scheduled = False
        self._receipt_tasks: set[asyncio.Task[None]] = set()

    def _messaging_reset(self) -> None:
        """A new connection: the server has no typing indicator of ours any more."""
        self._typing.clear()

    # --- requests --------------------------------------------------------------------------

    async def send(self, room: str, body: Body, temp_id: str | None = None) -> MessageAck:
        """Send ``body`` (text or a JSON object) to ``room``; returns the server's ack.

        ``temp_id`` (generated when not given) names the message until the ack maps it to
        its ``id`` and ``offset``. A connection lost before the ack re-sends it with the same
        ``temp_id`` once the session is back: the server stores it once, and the ack then
        has ``duplicate`` true if the first attempt had arrived. After a ``TimeoutError`` the
        caller may call again with the same ``temp_id`` to the same effect.
        """
        message = MessageSend(room=room, body=body, temp_id=temp_id or new_temp_id())
        for attempt in range(1, SEND_ATTEMPTS + 1):
            try:
                ack = await self._request(message, MessageAck)
            except ConnectionClosed as exc:
                if not exc.will_reconnect or attempt == SEND_ATTEMPTS:
                    raise
                log.debug("connection lost before the ack of %s: re-sending", message.temp_id)
                continue
            self._typing.reset(room)  # sending clears the indicator on the server
            return ack
        raise AssertionError("unreachable")

    async def edit(self, room: str, id: str, body: Body) -> MessageEdited:
        """Replace the body of message ``id`` (the author's, or as a moderator)."""
        return await self._request(MessageEdit(room=room, id=id, body=body), MessageEdited)

    async def delete(self, room: str, id: str) -> MessageDeleted:
        """Delete message ``id`` (the author's, or as a moderator)."""
        return await self._request(MessageDelete(room=room, id=id), MessageDeleted)

    async def seen(self, room: str, offset: int) -> None:
        """Tell the server the user has read ``room`` up to ``offset``; no reply.

        Authors of the messages newly covered get a ``receipt`` (kind seen).
        """
        await self._post(ReceiptSeen(room=room, offset=offset))

    async def typing(self, room: str) -> None:
        """The user is typing in ``room``: call it on every keystroke.

        ``typing.start`` goes out at most once per ``typing_throttle`` seconds per room; the
        server turns the indicator off by itself when the renewals stop.
        """
        if not self._typing.start(room, asyncio.get_running_loop().time()):
            return
        try:
            await self._post(TypingStart(room=room))
        except BaseException:
            self._typing.reset(room)  # not sent: let the next call try
            raise

    async def stop_typing(self, room: str) -> None:
        """The user stopped typing in ``room`` (sending a message stops it too)."""
        self._typing.reset(room)
        await self._post(TypingStop(room=room))

    async def history(
        self, room: str, limit: int = 50, before: int | None = None
    ) -> RoomHistoryReply:
        """The last ``limit`` messages of ``room`` as they are now (edits applied, deletes
        left out), oldest first; ``before`` an offset to page back from."""
        return await self._request(
            RoomHistory(room=room, limit=limit, before=before), RoomHistoryReply
        )

    async def read_state(self, room: str) -> RoomReadReply:
        """The user's read position in ``room`` and how many messages are unread."""
        return await self._request(RoomRead(room=room), RoomReadReply)

    # --- delivered receipts ------------------------------------------------------------------

    def _received(self, event: Event) -> None:
        """Surface a server event; note a delivered receipt for messages by others."""
        if self._auto_delivered:
            receipt = delivered_receipt(event, self.user)
            if receipt is not None:
                self._delivered.note(receipt.room, receipt.offset)
                self._schedule_delivered()
        self._emit(event)

    def _schedule_delivered(self) -> None:
        """Flush pending receipts after this event-loop turn (one per room, coalesced)."""
        if self._delivered.pending and not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_delivered)

    def _flush_delivered(self) -> None:
        self._flush_scheduled = False
        ws = self._ws
        if not self._ready or ws is None:
            return  # kept: flushed when the session is ready again
        batch = self._delivered.take()
        if batch:
            task = asyncio.create_task(self._send_receipts(ws, batch))
            self._receipt_tasks.add(task)
            task.add_done_callback(self._receipt_tasks.discard)

    async def _send_receipts(self, ws: ClientConnection, batch: list[ReceiptDelivered]) -> None:
        for index, receipt in enumerate(batch):
            try:
                await self._post_on(ws, receipt)
            except ConnectionClosed:
                for unsent in batch[index:]:  # for the next session
                    self._delivered.note(unsent.room, unsent.offset)
                return

    async def _drain_messaging(self, timeout: float) -> None:
        """Wait for receipts being written (the connection is closing), then cancel them."""
        tasks = list(self._receipt_tasks)
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
        for task in tasks:
            task.cancel()
