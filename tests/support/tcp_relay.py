"""A TCP relay on loopback that can be cut: a server that becomes unreachable, then comes back.

Clients connect to :attr:`TcpRelay.port` instead of the server's; each connection is
relayed byte for byte to ``127.0.0.1:upstream``. :meth:`cut` closes every relayed
connection and stops listening (a client then gets "connection refused", as from a server
that is down); :meth:`mend` listens again on the same port. The server behind it keeps its
state, so a test sees what a client did during the outage without a server restart that
would lose it (tansu keeps its topics in memory only).

:meth:`lose_reply` makes the outage start at the worst moment: the next request a rule picks
reaches the server, which does what it asks, and the relay is cut as the reply comes back, so
the client never learns that its write landed. :meth:`drop_reply` is the short version of
the same: only the link that carried the request is closed, and the relay goes on listening,
so a client that retries on a new connection reaches the server at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable

__all__ = ["TcpRelay"]


class TcpRelay:
    """Relays loopback TCP connections on a port of its own to ``upstream``."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.port = 0
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        # The rule picking a request, the event set once its reply is dropped, and whether
        # the whole relay is then cut (else only that link is closed).
        self._rule: tuple[Callable[[bytes], bool], asyncio.Event, bool] | None = None
        self._cutting: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> TcpRelay:
        await self.mend()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.cut()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def mend(self) -> None:
        """Listen (again, on the same port once it had one)."""
        if self._server is not None:
            return
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        self._server = await asyncio.start_server(self._relay, sock=sock)

    def lose_reply(self, rule: Callable[[bytes], bool]) -> asyncio.Event:
        """The next chunk a client sends for which ``rule`` is true reaches the server; its
        reply is dropped and the relay cut (as :meth:`cut`) as it arrives. The event is set
        once the relay is cut. One rule at a time; it is spent once it matched."""
        cut = asyncio.Event()
        self._rule = (rule, cut, True)
        return cut

    def drop_reply(self, rule: Callable[[bytes], bool]) -> asyncio.Event:
        """The next chunk a client sends for which ``rule`` is true reaches the server; its
        reply is dropped and that one link closed (a connection reset mid-request); the
        relay keeps listening. The event is set once the link is closed."""
        dropped = asyncio.Event()
        self._rule = (rule, dropped, False)
        return dropped

    async def cut(self) -> None:
        """Stop listening and close every relayed connection (both ends)."""
        if self._server is not None:
            self._server.close()
            self._server = None
        writers = list(self._writers)
        for writer in writers:
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for writer in writers:  # closed for real before the caller goes on (or blocks)
            self._writers.discard(writer)
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _relay(self, down_r: asyncio.StreamReader, down_w: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:
            down_w.close()
            return
        if self._server is None:  # cut while this one was being connected
            down_w.close()
            up_w.close()
            return
        self._writers.update((down_w, up_w))
        # What to do when this link's reply comes back: (the event to set, cut everything)
        losing: list[tuple[asyncio.Event, bool]] = []
        pumps = [
            asyncio.create_task(self._pump_up(down_r, up_w, losing)),
            asyncio.create_task(self._pump_down(up_r, down_w, losing)),
        ]
        self._tasks.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
                self._tasks.discard(task)
            for writer in (down_w, up_w):
                writer.close()
                self._writers.discard(writer)

    async def _pump_up(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        losing: list[tuple[asyncio.Event, bool]],
    ) -> None:
        """Client to server; a chunk the rule picks marks this link's next reply as lost."""
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                rule = self._rule
                if rule is not None and rule[0](data):
                    self._rule = None
                    losing.append((rule[1], rule[2]))
                writer.write(data)
                await writer.drain()

    async def _pump_down(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        losing: list[tuple[asyncio.Event, bool]],
    ) -> None:
        """Server to client; the reply to a picked request is dropped and the relay cut (or
        only this link closed: returning ends the link)."""
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                if losing:
                    done, cut_all = losing[0]
                    if not cut_all:
                        writer.transport.abort()  # a reset, not a clean close
                        done.set()
                        return
                    task = asyncio.get_running_loop().create_task(self._cut_then(done))
                    self._cutting.add(task)
                    task.add_done_callback(self._cutting.discard)
                    return
                writer.write(data)
                await writer.drain()

    async def _cut_then(self, done: asyncio.Event) -> None:
        await self.cut()
        done.set()
