"""A bounded chaos run on three presenced nodes and one Valkey, then the no-ghost invariant.

A seeded random sequence of actions (seed from ``PRESENCED_CHAOS_SEED``, default fixed) runs
for ``PRESENCED_CHAOS_SECONDS`` (default 30, so CI stays well under a few minutes): clients of
a small pool of users connect to a random node and join rooms, leave rooms, vanish without a
goodbye, come back within grace on a random node with their resume token and positions, log
out and send messages; nodes are killed with SIGKILL or drained with SIGTERM and started again
later (a new process, under its old node id or a new one). Node ``n1`` is never killed: it hosts one
observer per room, which records every membership event it sees (and resumes if its own
connection is ever dropped, starting a new segment of observation).

Most actions run one at a time, each awaited with a bound, so the test knows for every
message who was a member when it was sent. A *burst* runs several actors at once
(``asyncio.gather``): two sessions on two nodes joining and leaving one room in a race (one
may be a new connection of the same user), senders firing several messages each without
waiting for the acks, and now and then one of the senders vanishing in the middle. For those,
every connection records when (and at which index of what it received) each of its room
memberships began and ended, so the checks below that need "who was in the room" use those
times rather than the order of the actions.

Then the chaos stops, the test waits until every grace and lease has run out and all nodes
agree on every room for a while, and checks:

(a) every node reports, for every room, exactly the users of the sessions the test still
    holds live (including resumed ones) plus the observers;
(b) every acked message reached every other session that was in the room from before the send
    until the end (live events, or events replayed by ``room.recovered`` after a resume);
(c) for each observer, per (room, user), member.joined and member.left alternate in version
    order over what it could see while connected, and what it saw adds up to the final room;
(d) nothing else surprising happened: resumes well within grace succeeded and restored the
    rooms, recoveries were complete, requests of members were not refused;
(e) per connection and per unbroken membership of a room (a *span*: from its room.joined, or
    from the welcome of a resume that restored it, to its room.left or the connection's end),
    the stream: live events arrive in strictly increasing offset order within an epoch, and
    together with the span's ``room.recovered`` events and its own acks they cover every
    offset from the first to the last exactly once (no hole, no repeat). A live event at or
    below what a recovery already gave is the overlap docs/protocol.md tells a client to skip
    (``N <= last``) and is allowed if it is the same message. An own ack is a reply, not a
    stream event, and may overtake held events of lower offsets: it bounds the hole check
    only if the span stayed healthy ``DELIVER_WITHIN`` after it;
(f) per span, the member events (alone or out of a ``room.batch``) arrive in strictly
    increasing version order, no repeat, from the moment the span's snapshot was asked for
    (an event newer than ``room.joined`` may be written just before it; a client holds it
    until the snapshot, as the SDK does: counted in the report). Holes after the snapshot are
    allowed (the protocol has clients take a new snapshot on a version gap, and a node gives
    up on a version whose publisher died): they are listed in the report, not failed;
(g) every acked message reached, exactly once (live or in the span's ``room.recovered``),
    every other connection whose span of the room began before the send and lasted, with the
    connection open and its node not being stopped, until ``DELIVER_WITHIN`` after the ack.

On failure the report gives the seed, the action list and the nodes' error lines; for (e),
(f) and (g) each failure names the connection, the room and the numbers around it, first one
first.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from presenced.protocol.chat import (
    MessageAck,
    MessageDeleted,
    MessageEdited,
    MessageEvent,
    RoomReadReply,
    RoomRecovered,
)
from presenced.protocol.messages import (
    Error,
    MemberJoined,
    MemberLeft,
    MemberUpdated,
    RoomJoined,
    RoomLeft,
    RoomMembersReply,
    ServerMessage,
    Welcome,
)
from presenced.store.redis.keys import Keys
from presenced.testing import ProtocolClient
from tests.multinode.conftest import NODE_SETTINGS
from tests.support.nodes import PresencedNode
from tests.support.valkey import ValkeyProcess

__all__: list[str] = []

pytestmark = pytest.mark.slow

SEED = int(os.environ.get("PRESENCED_CHAOS_SEED", "20261123"))
SECONDS = float(os.environ.get("PRESENCED_CHAOS_SECONDS", "30"))

GRACE = 3.0
LEASE = float(NODE_SETTINGS["lease_ttl"])
LEASE_INTERVAL = float(NODE_SETTINGS["lease_interval"])
SETTINGS: dict[str, Any] = {
    **NODE_SETTINGS,
    "grace": str(GRACE),
    # Slower pings than NODE_SETTINGS: this test process juggles many clients on 2 cores.
    "heartbeat_interval": "1",
    "heartbeat_timeout": "0.5",
    "history_size": "5000",  # never trimmed during a run: every recovery can be exact
}
RESUME_WITHIN = GRACE - 1.0  # resumes are tried only this soon after a drop
QUIET = LEASE + LEASE_INTERVAL + GRACE + 1.0  # after the last drop, every grace has run out
STABLE_FOR = 1.5  # the nodes must agree, unchanged, this long
SETTLE_TIMEOUT = 60.0
REQUEST_TIMEOUT = 5.0
DRAIN_TIMEOUT = 15.0  # a drain waits up to 5 s for background work, then exits
USERS = ("ann", "ben", "cat", "dan", "eve")
ROOMS = ("r0", "r1", "r2")
STABLE_NODE = "n1"
CHAOS_SLOTS = ("n2", "n3")
MAX_LIVE = 12
# An acked message is due at a healthy member this long after the ack: a receiving node holds
# an event that came ahead of its number for up to 1 s, then fills the gap from the store.
DELIVER_WITHIN = 3.0
BURST_SENDS = (2, 6)  # messages each burst sender fires at once (message_burst is 20)
SHOWN = 5  # failures shown per check (e), (f), (g); the first is the first seen
STREAM = (MessageEvent, MessageEdited, MessageDeleted)
MEMBER = (MemberJoined, MemberLeft, MemberUpdated)


@dataclass
class Span:
    """One unbroken membership of a room on one connection: from the reply that began it
    (``room.joined``, or the ``welcome`` of a resume that restored the room) to the
    ``room.left`` (or the end of the connection). Indexes are into ``client.received``."""

    room: str
    start: int  # index of the room.joined or welcome
    since: float  # when the test had that reply
    snap: int | None = None  # index of the snapshot reply (room.joined or room.members)
    version: int | None = None  # the snapshot's version
    asked: int | None = None  # how much had been received when that snapshot was asked for
    resumed: bool = False
    position: tuple[str, int] | None = None  # (epoch, offset) given in auth.positions
    end: int | None = None  # index of the room.left reply (None: to the connection's end)
    until: float | None = None  # when the test asked to leave (or logged out)


@dataclass
class Conn:
    """One WebSocket connection, the node it went to, and when it was seen to close."""

    client: ProtocolClient
    node: str
    closed_at: float | None = None
    stopped_at: float | None = None  # when its node was told to stop (kill or SIGTERM)
    label: str = "?"
    spans: list[Span] = field(default_factory=list)

    @property
    def open(self) -> bool:
        return not self.client.closed.is_set()

    def index(self, message: ServerMessage) -> int:
        """Where ``message`` (this very object) is in what the connection received."""
        received = self.client.received
        for i in range(len(received) - 1, -1, -1):
            if received[i] is message:
                return i
        raise AssertionError(f"{message} is not among what {self.label} received")

    def current(self, room: str) -> Span | None:
        for span in reversed(self.spans):
            if span.room == room:
                return span if span.until is None and span.end is None else None
        return None

    def ended(self, span: Span) -> float:
        """When the span stopped being a healthy membership (inf: it is one still)."""
        ends = [t for t in (span.until, self.closed_at, self.stopped_at) if t is not None]
        return min(ends, default=float("inf"))


@dataclass
class Since:
    """Where a session's unbroken membership of a room began: the step, and the room's
    stream position then (epoch None: unknown, so a resume cannot give a position)."""

    step: int
    epoch: str | None
    offset: int


@dataclass
class Sess:
    """A logical session: its connections in order (resumes add one) and its rooms
    (a room mapped to None: a request about it died with the connection, outcome unknown)."""

    name: str
    user: str
    token: str
    conns: list[Conn]
    rooms: dict[str, Since | None] = field(default_factory=dict)
    state: str = "live"  # live | dropped | ended
    dropped_at: float = 0.0

    @property
    def conn(self) -> Conn:
        return self.conns[-1]


@dataclass
class Segment:
    """What an observer saw over one connection: a snapshot, then the events after it."""

    conn: Conn
    members: set[str]
    version: int


@dataclass
class Observer:
    """A member of one room on the stable node, recording every membership event."""

    room: str
    user: str
    token: str
    segments: list[Segment]


@dataclass
class Sent:
    """A message.send: when (step, and the time it was sent and acked), where, by whom (and
    on which connection), and its ack if one came."""

    step: int
    room: str
    sender: Sess
    temp_id: str
    conn: Conn
    sent_at: float
    ack: MessageAck | None = None
    acked_at: float | None = None


class Chaos:
    """The nodes, the clients, the random actions, and what the checks need to know."""

    def __init__(self, valkey_url: str, seed: int) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.settings = {**SETTINGS, "redis": valkey_url, "redis_prefix": "chaos"}
        self.nodes: dict[str, PresencedNode] = {}  # slot -> its current process
        self.down: dict[str, float] = {}  # slot -> when to start it again
        self.spawned: list[PresencedNode] = []
        self.generation = itertools.count(1)
        self.ids = itertools.count(1)
        self.sessions: list[Sess] = []
        self.observers: list[Observer] = []
        self.probes: dict[str, Conn] = {}
        self.sends: list[Sent] = []
        self.log: list[str] = []
        self.anomalies: list[str] = []
        self.holes: list[str] = []  # member version holes seen by (f): allowed, reported
        self.counts: Counter[str] = Counter()
        self.watchers: list[asyncio.Task[None]] = []
        self.step = 0
        self.t0 = asyncio.get_running_loop().time()
        self.last_change = 0.0

    # --- bookkeeping ---------------------------------------------------------------------

    def now(self) -> float:
        return asyncio.get_running_loop().time() - self.t0

    def note(self, text: str) -> None:
        self.log.append(f"{self.step:4d} {self.now():7.2f}s {text}")

    def anomaly(self, text: str) -> None:
        self.note(f"ANOMALY {text}")
        self.anomalies.append(f"step {self.step}: {text}")

    def running(self) -> list[PresencedNode]:
        return [node for slot, node in sorted(self.nodes.items()) if slot not in self.down]

    def live(self) -> list[Sess]:
        return [s for s in self.sessions if s.state == "live"]

    def all_conns(self) -> list[Conn]:
        conns = [c for s in self.sessions for c in s.conns]
        conns += [seg.conn for o in self.observers for seg in o.segments]
        return conns + list(self.probes.values())

    # --- nodes -----------------------------------------------------------------------------

    async def start_node(self, slot: str, node_id: str) -> None:
        node = PresencedNode(node_id, **self.settings)
        self.spawned.append(node)
        await asyncio.to_thread(node.start)  # off the loop: clients keep answering pings
        self.nodes[slot] = node
        self.down.pop(slot, None)
        self.last_change = self.now()

    async def restart_due(self, *, every: bool = False) -> None:
        for slot, due in sorted(self.down.items()):
            if every or self.now() >= due:
                # Half the time under its old id (a supervisor restarting it in place: it
                # must take over what its previous life left), else under a new one.
                old = self.nodes[slot].node_id
                same = self.rng.random() < 0.5
                node_id = old if same else f"{slot}r{next(self.generation)}"
                self.note(f"start {node_id} in place of {old}")
                await self.start_node(slot, node_id)

    # --- connections -----------------------------------------------------------------------

    async def open(self, node: PresencedNode, query: str = "", label: str = "") -> Conn | None:
        url = f"{node.url}?{query}" if query else node.url
        try:
            client = await ProtocolClient.connect(url, open_timeout=REQUEST_TIMEOUT)
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            self.note(f"  could not connect to {node.node_id}: {exc!r}")
            return None
        conn = Conn(client, node.node_id, label=f"{label} on {node.node_id}")
        self.watchers.append(asyncio.get_running_loop().create_task(self._watch(conn)))
        return conn

    async def _watch(self, conn: Conn) -> None:
        await conn.client.closed.wait()
        conn.closed_at = self.now()

    async def welcome(self, conn: Conn, auth: dict[str, Any] | None = None) -> Welcome | None:
        try:
            if auth is not None:
                await conn.client.send({"type": "auth", **auth})
            welcome = await conn.client.wait_for("welcome", timeout=REQUEST_TIMEOUT * 2)
        except (AssertionError, ConnectionClosed):
            conn.client.abort()
            return None
        assert isinstance(welcome, Welcome)
        return welcome

    async def ask(self, conn: Conn, message: dict[str, Any]) -> ServerMessage | None:
        """The reply, or None when the connection died first. A reply that never comes on a
        live connection drops it, so the outcome is settled like any drop (resume or grace)."""
        try:
            return await conn.client.request(message, timeout=REQUEST_TIMEOUT)
        except (AssertionError, ConnectionClosed):
            if conn.open:
                self.note(f"  no reply to {message['type']} in time: dropping the connection")
                conn.client.abort()
            return None

    def refresh(self) -> None:
        """Notice sessions whose connection closed under them (node died, drain, pings)."""
        for sess in self.live():
            if sess.conn.open:
                continue
            code = sess.conn.client.close_code
            if code == 1000:
                sess.state = "ended"
                self.note(f"  {sess.name} closed 1000")
                continue
            sess.state = "dropped"
            sess.dropped_at = sess.conn.closed_at or self.now()
            self.note(f"  {sess.name} dropped by the server side: close {code}")

    # --- observers -------------------------------------------------------------------------

    async def add_observer(self, index: int, room: str) -> None:
        user = f"watch{index}"
        label = f"observer {user} segment 0"
        conn = await self.open(self.nodes[STABLE_NODE], f"user={user}&device=w", label)
        assert conn is not None
        welcome = await self.welcome(conn)
        assert welcome is not None
        asked = len(conn.client.received)
        reply = await conn.client.request({"type": "room.join", "room": room})
        assert isinstance(reply, RoomJoined), reply
        at = conn.index(reply)
        conn.spans.append(Span(room, at, self.now(), at, reply.version, asked))
        segment = Segment(conn, {m.user for m in reply.members}, reply.version)
        self.observers.append(Observer(room, user, welcome.resume_token, [segment]))

    async def mend_observers(self) -> None:
        """Reconnect (resume) an observer whose connection was dropped: a new segment."""
        for obs in self.observers:
            if obs.segments[-1].conn.open:
                continue
            self.note(f"observer {obs.user} dropped ({obs.segments[-1].conn.client.close_code})")
            label = f"observer {obs.user} segment {len(obs.segments)}"
            conn = await self.open(self.nodes[STABLE_NODE], label=label)
            if conn is None:
                continue
            auth = {"user": obs.user, "device": "w", "resume": obs.token}
            welcome = await self.welcome(conn, auth)
            if welcome is None:
                continue
            obs.token = welcome.resume_token
            span = None
            asked = len(conn.client.received)
            if welcome.resumed and obs.room in welcome.rooms:
                span = Span(obs.room, conn.index(welcome), self.now(), resumed=True)
                conn.spans.append(span)
                reply = await self.ask(conn, {"type": "room.members", "room": obs.room})
            else:
                reply = await self.ask(conn, {"type": "room.join", "room": obs.room})
            if isinstance(reply, RoomJoined | RoomMembersReply):
                if span is not None:
                    span.snap, span.version = conn.index(reply), reply.version
                else:
                    at = conn.index(reply)
                    conn.spans.append(Span(obs.room, at, self.now(), at, reply.version, asked))
                members = {m.user for m in reply.members}
                obs.segments.append(Segment(conn, members, reply.version))
                self.note(f"  observer {obs.user} back, resumed={welcome.resumed}")
            else:
                conn.client.abort()

    # --- the actions -----------------------------------------------------------------------

    async def act_connect(self) -> None:
        if len(self.live()) >= MAX_LIVE:
            await self.act_logout()
            return
        node = self.rng.choice(self.running())
        user = self.rng.choice(USERS)
        rooms = self.rng.sample(ROOMS, self.rng.randint(1, 2))
        await self.connect(node, user, rooms)

    async def connect(self, node: PresencedNode, user: str, rooms: list[str]) -> None:
        name = f"s{next(self.ids)}"
        self.note(f"connect {name} ({user}) to {node.node_id}, join {rooms}")
        conn = await self.open(node, f"user={user}&device={name}", f"{name} ({user}) conn 0")
        if conn is None:
            return
        welcome = await self.welcome(conn)
        if welcome is None:
            self.note("  no welcome")
            return
        sess = Sess(name, user, welcome.resume_token, [conn])
        self.sessions.append(sess)
        for room in rooms:
            await self.join(sess, room)

    async def join(self, sess: Sess, room: str) -> None:
        asked = len(sess.conn.client.received)
        reply = await self.ask(sess.conn, {"type": "room.join", "room": room})
        if reply is None:
            sess.rooms[room] = None
            return
        if not isinstance(reply, RoomJoined):
            self.anomaly(f"{sess.name} join {room}: {reply}")
            return
        at = sess.conn.index(reply)
        sess.conn.spans.append(Span(room, at, self.now(), at, reply.version, asked))
        sess.rooms[room] = await self.since(sess.conn, room)

    async def since(self, conn: Conn, room: str) -> Since:
        read = await self.ask(conn, {"type": "room.read", "room": room})
        if isinstance(read, RoomReadReply):
            return Since(self.step, read.epoch, read.offset)
        return Since(self.step, None, 0)

    async def act_join(self) -> None:
        choices = [s for s in self.live() if len(s.rooms) < 2]
        if not choices:
            return
        sess = self.rng.choice(choices)
        room = self.rng.choice([r for r in ROOMS if r not in sess.rooms])
        self.note(f"{sess.name} joins {room}")
        await self.join(sess, room)

    async def act_leave(self) -> None:
        choices = [(s, r) for s in self.live() for r, v in sorted(s.rooms.items()) if v]
        if not choices:
            return
        sess, room = self.rng.choice(choices)
        await self.leave(sess, room)

    async def leave(self, sess: Sess, room: str) -> None:
        self.note(f"{sess.name} ({sess.user}) leaves {room}")
        conn = sess.conn
        span = conn.current(room)
        if span is not None:
            span.until = self.now()
        reply = await self.ask(conn, {"type": "room.leave", "room": room})
        if reply is None:
            sess.rooms[room] = None
        elif isinstance(reply, RoomLeft):
            del sess.rooms[room]
            if span is not None:
                span.end = conn.index(reply)
        else:
            self.anomaly(f"{sess.name} leave {room}: {reply}")

    async def act_abort(self) -> None:
        if not self.live():
            return
        sess = self.rng.choice(self.live())
        self.note(f"abort {sess.name} ({sess.user}) on {sess.conn.node}")
        sess.conn.client.abort()
        sess.state = "dropped"
        sess.dropped_at = self.now()

    async def act_logout(self) -> None:
        if not self.live():
            return
        sess = self.rng.choice(self.live())
        self.note(f"logout {sess.name} ({sess.user}) on {sess.conn.node}")
        sess.state = "ended"  # whatever happens next, it never comes back
        for span in sess.conn.spans:
            if span.until is None:
                span.until = self.now()
        try:
            await sess.conn.client.send({"type": "logout"})
            code = await sess.conn.client.wait_closed(REQUEST_TIMEOUT)
        except (ConnectionClosed, TimeoutError):
            code = None
        if code != 1000:
            self.note(f"  logout closed with {code}")
            sess.conn.client.abort()

    async def act_send(self) -> None:
        choices = [(s, r) for s in self.live() for r, v in sorted(s.rooms.items()) if v]
        if not choices:
            return
        sess, room = self.rng.choice(choices)
        await self.send(sess, room)

    async def send(self, sess: Sess, room: str) -> None:
        conn = sess.conn
        sent = Sent(self.step, room, sess, f"t{next(self.ids)}", conn, self.now())
        self.sends.append(sent)
        body = {"text": f"from {sess.name}", "temp": sent.temp_id}
        message = {"type": "message.send", "room": room, "body": body, "temp_id": sent.temp_id}
        reply = await self.ask(conn, message)
        if isinstance(reply, MessageAck) and not reply.duplicate:
            sent.ack, sent.acked_at = reply, self.now()
            self.note(f"{sess.name} sent {sent.temp_id} to {room}: offset {reply.offset}")
        elif isinstance(reply, Error) and reply.code == "MESSAGE_RATE_LIMITED":
            self.note(f"{sess.name} send {sent.temp_id}: rate limited")
        elif reply is None:
            self.note(f"{sess.name} send {sent.temp_id} to {room}: no ack (connection died)")
        else:
            self.anomaly(f"{sess.name} send {sent.temp_id} to {room}: {reply}")

    async def act_burst(self) -> None:
        """Several actors at once, on one room: two sessions on two nodes join or leave it in
        a race (a new connection of the same user or of another one when no second session
        fits), up to three senders in it each fire a few messages without waiting for the
        acks, and now and then one of those senders vanishes in the middle."""
        room = self.rng.choice(ROOMS)
        live = [s for s in self.live() if s.conn.open]
        self.rng.shuffle(live)
        racers: list[Sess] = []
        for sess in live:
            if len(racers) == 2:
                break
            if sess.conn.node in {r.conn.node for r in racers}:
                continue
            if room in sess.rooms and sess.rooms[room] is None:
                continue  # outcome unknown (a request died with a connection)
            if room in sess.rooms or len(sess.rooms) < 2:
                racers.append(sess)
        senders = [s for s in live if s not in racers and s.rooms.get(room) is not None][
            : self.rng.randint(1, 3)
        ]
        actors: list[Awaitable[None]] = [
            self.race(sess, room, self.rng.randint(1, 3)) for sess in racers
        ]
        used = {r.conn.node for r in racers}
        if len(racers) < 2 and len(self.live()) < MAX_LIVE:
            nodes = [n for n in self.running() if n.node_id not in used] or self.running()
            user = racers[0].user if racers and self.rng.random() < 0.5 else None
            actors.append(
                self.connect(self.rng.choice(nodes), user or self.rng.choice(USERS), [room])
            )
        for sess in senders:
            actors.append(self.fire(sess, room, self.rng.randint(*BURST_SENDS)))
        if senders and self.rng.random() < 0.2:
            actors.append(self.vanish(self.rng.choice(senders), self.rng.uniform(0.0, 0.05)))
        self.note(
            f"burst on {room}: racers {[s.name for s in racers]}, senders "
            f"{[s.name for s in senders]}, {len(actors)} actors"
        )
        self.counts["concurrent actors"] += len(actors)
        await asyncio.gather(*actors)

    async def race(self, sess: Sess, room: str, times: int) -> None:
        """Join or leave ``room``, ``times`` times in a row (each awaited)."""
        for _ in range(times):
            if not sess.conn.open or sess.state != "live":
                return
            if room in sess.rooms:
                if sess.rooms[room] is None:
                    return
                await self.leave(sess, room)
            else:
                self.note(f"{sess.name} joins {room}")
                await self.join(sess, room)

    async def fire(self, sess: Sess, room: str, count: int) -> None:
        """``count`` message.send at once on one connection, then all their acks."""
        await asyncio.gather(*(self.send(sess, room) for _ in range(count)))

    async def vanish(self, sess: Sess, delay: float) -> None:
        await asyncio.sleep(delay)  # part of the scenario: a drop in the middle of the sends
        if sess.state != "live" or not sess.conn.open:
            return
        self.note(f"abort {sess.name} ({sess.user}) on {sess.conn.node}, in the burst")
        sess.conn.client.abort()
        sess.state = "dropped"
        sess.dropped_at = self.now()

    async def act_resume(self) -> None:
        now = self.now()
        choices = [
            s for s in self.sessions if s.state == "dropped" and now - s.dropped_at < RESUME_WITHIN
        ]
        if not choices:
            await self.act_abort()
            return
        sess = self.rng.choice(choices)
        node = self.rng.choice(self.running())
        positions = self.positions(sess)
        self.note(
            f"resume {sess.name} ({sess.user}) on {node.node_id} "
            f"{now - sess.dropped_at:.2f}s after its drop, positions {positions}"
        )
        conn = await self.open(node, label=f"{sess.name} ({sess.user}) conn {len(sess.conns)}")
        if conn is None:
            return
        auth = {"user": sess.user, "device": sess.name, "resume": sess.token}
        welcome = await self.welcome(conn, {**auth, "positions": positions})
        if welcome is None:
            self.note("  no welcome")
            return
        if not welcome.resumed:
            late = self.now() - sess.dropped_at
            self.anomaly(f"{sess.name} resume refused {late:.2f}s after its drop: {welcome}")
            sess.state = "ended"
            fresh = Sess(f"s{next(self.ids)}", sess.user, welcome.resume_token, [conn])
            conn.label = f"{fresh.name} ({fresh.user}) conn 0 on {conn.node}"
            self.sessions.append(fresh)
            return
        sess.conns.append(conn)
        sess.state = "live"
        sess.token = welcome.resume_token
        at, since = conn.index(welcome), self.now()
        for room in sorted(welcome.rooms):
            pos = positions.get(room)
            where = (pos["epoch"], pos["offset"]) if pos else None
            conn.spans.append(Span(room, at, since, resumed=True, position=where))
        await self.restored(sess, set(welcome.rooms), positions)

    async def restored(
        self, sess: Sess, rooms: set[str], positions: dict[str, dict[str, Any]]
    ) -> None:
        """Reconcile a resumed session's rooms with what the server restored."""
        for room, since in list(sess.rooms.items()):
            if room not in rooms:
                if since is not None:
                    self.anomaly(f"{sess.name} resumed without its room {room}")
                del sess.rooms[room]
        for room in sorted(rooms):
            if room not in sess.rooms:
                self.anomaly(f"{sess.name} resumed into {room}, which it never joined")
            since = sess.rooms.get(room)
            if since is None or room not in positions:
                sess.rooms[room] = await self.since(sess.conn, room)  # continuity starts now
                continue
            try:
                got = await sess.conn.client.wait_for(
                    lambda m, room=room: isinstance(m, RoomRecovered) and m.room == room,  # type: ignore[misc]
                    timeout=REQUEST_TIMEOUT,
                )
            except AssertionError as exc:
                self.note(f"  no room.recovered for {room}: {exc}")
                sess.rooms[room] = None
                continue
            assert isinstance(got, RoomRecovered)
            if not got.recovered:
                self.anomaly(f"{sess.name} recovery of {room} refused: {got}")
                sess.rooms[room] = await self.since(sess.conn, room)

    def positions(self, sess: Sess) -> dict[str, dict[str, Any]]:
        """Per room, the offset up to which the session has everything acked so far (what a
        client that tracks gaps would give: events may arrive out of offset order across
        nodes, so "the last offset seen" could skip one still in flight)."""
        out: dict[str, dict[str, Any]] = {}
        for room, since in sess.rooms.items():
            if since is None or since.epoch is None:
                continue
            seen = self.offsets(sess, room) | {
                s.ack.offset for s in self.sends if s.sender is sess and s.ack and s.room == room
            }
            expected = {
                s.ack.offset
                for s in self.sends
                if s.ack and s.room == room and s.ack.offset > since.offset
            }
            missing = sorted(expected - seen)
            offset = missing[0] - 1 if missing else max(seen | {since.offset})
            out[room] = {"epoch": since.epoch, "offset": max(offset, since.offset)}
        return out

    def received(self, sess: Sess, room: str) -> list[MessageEvent]:
        found: list[MessageEvent] = []
        for conn in sess.conns:
            for m in conn.client.received:
                if isinstance(m, MessageEvent) and m.room == room:
                    found.append(m)
                elif isinstance(m, RoomRecovered) and m.room == room:
                    found += [e for e in m.events if isinstance(e, MessageEvent)]
        return found

    def offsets(self, sess: Sess, room: str) -> set[int]:
        return {m.offset for m in self.received(sess, room)}

    async def act_kill(self) -> None:
        await self.stop_a_node(kill=True)

    async def act_term(self) -> None:
        await self.stop_a_node(kill=False)

    async def stop_a_node(self, *, kill: bool) -> None:
        up = [slot for slot in CHAOS_SLOTS if slot not in self.down]
        if not up:
            return
        slot = self.rng.choice(up)
        node = self.nodes[slot]
        self.counts["kill" if kill else "term"] += 1
        for conn in self.all_conns():
            if conn.node == node.node_id and conn.open and conn.stopped_at is None:
                conn.stopped_at = self.now()
        if kill:
            self.note(f"kill -9 {node.node_id}")
            await asyncio.to_thread(node.kill)
        else:
            self.note(f"SIGTERM {node.node_id}")
            try:
                code = await asyncio.to_thread(node.terminate, DRAIN_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.anomaly(
                    f"{node.node_id} still running {DRAIN_TIMEOUT:g}s after SIGTERM; its log "
                    f"ends: {node.log_tail(1500)!r}"
                )
                await asyncio.to_thread(node.kill)
                code = 0
            if code != 0:
                self.anomaly(f"{node.node_id} exited {code} on SIGTERM")
        self.down[slot] = self.now() + self.rng.uniform(0.5, 4.0)
        self.last_change = self.now()

    # --- the run -----------------------------------------------------------------------------

    async def start(self) -> None:
        for slot in (STABLE_NODE, *CHAOS_SLOTS):
            await self.start_node(slot, slot)
        for index, room in enumerate(ROOMS):
            await self.add_observer(index, room)
        self.note(f"started: seed {self.seed}, {SECONDS:g}s")

    def pick(self, elapsed: float, seconds: float) -> Callable[[], Awaitable[None]]:
        # At least one crash and one drain in every run, whatever the dice say.
        if not self.counts["kill"] and elapsed > seconds * 0.3:
            return self.act_kill
        if not self.counts["term"] and elapsed > seconds * 0.6:
            return self.act_term
        actions: dict[Callable[[], Awaitable[None]], float] = {
            self.act_connect: 4,
            self.act_join: 1,
            self.act_leave: 2,
            self.act_abort: 2.5,
            self.act_resume: 3,
            self.act_logout: 1,
            self.act_send: 6,
            self.act_burst: 2.5,
            self.act_kill: 0.25,
            self.act_term: 0.2,
        }
        return self.rng.choices(list(actions), weights=list(actions.values()))[0]

    async def run(self, seconds: float) -> None:
        begin = self.now()
        max_steps = int(seconds * 100)
        while self.now() - begin < seconds and self.step < max_steps:
            self.step += 1
            await self.restart_due()
            self.refresh()
            await self.mend_observers()
            action = self.pick(self.now() - begin, seconds)
            self.counts[action.__name__] += 1
            await action()
            # The chaos's own pace (not a wait for anything): leaves the nodes some CPU.
            await asyncio.sleep(self.rng.uniform(0.01, 0.08))
        self.step += 1
        self.note("chaos over: waiting for quiet")
        self.last_change = self.now()

    async def settle(self) -> dict[str, dict[str, frozenset[str] | None]]:
        """Start every node that is down, then poll every node's rooms until all agree,
        unchanged, for STABLE_FOR, and QUIET has passed since the last drop or restart."""
        await self.restart_due(every=True)
        deadline = self.now() + SETTLE_TIMEOUT
        previous: object = None
        stable_since = self.now()
        while True:
            self.refresh()
            await self.mend_observers()
            views = {node.node_id: await self.view(node) for node in self.running()}
            answers = list(views.values())
            agreed = bool(answers) and all(v == answers[0] for v in answers)
            current = answers[0] if agreed and None not in answers[0].values() else None
            if current is None or current != previous:
                previous, stable_since = current, self.now()
            closed = [c.closed_at for c in self.all_conns() if c.closed_at is not None]
            last = max([self.last_change, *closed])
            now = self.now()
            if current is not None and now - stable_since >= STABLE_FOR and now - last >= QUIET:
                self.note(f"quiet: {views}")
                return views
            if now > deadline:
                self.note(f"never quiet: {views}")
                return views
            await asyncio.sleep(0.25)  # polling pace; the deadline bounds the wait

    async def view(self, node: PresencedNode) -> dict[str, frozenset[str] | None]:
        probe = self.probes.get(node.node_id)
        if probe is None or not probe.open:
            probe = await self.open(node, f"user=probe&device={node.node_id}")
            if probe is None or await self.welcome(probe) is None:
                return dict.fromkeys(ROOMS)
            self.probes[node.node_id] = probe
        found: dict[str, frozenset[str] | None] = {}
        for room in ROOMS:
            reply = await self.ask(probe, {"type": "room.members", "room": room})
            ok = isinstance(reply, RoomMembersReply)
            found[room] = frozenset(m.user for m in reply.members) if ok else None  # type: ignore[union-attr]
        return found

    # --- the checks ----------------------------------------------------------------------------

    def check(self, views: dict[str, dict[str, frozenset[str] | None]]) -> list[str]:
        self.refresh()
        failures: list[str] = []
        live = [s for s in self.live() if s.conn.open]
        expected: dict[str, set[str]] = {room: set() for room in ROOMS}
        for obs in self.observers:
            expected[obs.room].add(obs.user)
        for sess in live:
            for room, since in sess.rooms.items():
                if since is None:
                    failures.append(f"{sess.name}: membership of {room} unknown at the end")
                expected[room].add(sess.user)
        # (a) every node reports exactly the live members
        for node_id, view in sorted(views.items()):
            for room in ROOMS:
                if view[room] != frozenset(expected[room]):
                    failures.append(
                        f"(a) {node_id} reports {room} = {sorted(view[room] or ['<no answer>'])},"
                        f" expected {sorted(expected[room])} (extra: "
                        f"{sorted((view[room] or set()) - expected[room])}, missing: "
                        f"{sorted(expected[room] - (view[room] or set()))})"
                    )
        # (b) every acked message reached every session in the room from before it to the end
        for sent in self.sends:
            if sent.ack is None:
                continue
            for sess in live:
                since = sess.rooms.get(sent.room)
                if sess is sent.sender or since is None or since.step >= sent.step:
                    continue
                if sent.ack.id not in {m.id for m in self.received(sess, sent.room)}:
                    failures.append(
                        f"(b) {sent.temp_id} (offset {sent.ack.offset} in {sent.room}, sent by "
                        f"{sent.sender.name} at step {sent.step}) never reached {sess.name} "
                        f"({sess.user}, in the room since step {since.step}, connections "
                        f"{[(c.node, c.client.close_code) for c in sess.conns]})"
                    )
        # (c) membership events alternate per observer, and add up to the final room
        final = next(iter(views.values()), {})
        for obs in self.observers:
            for index, seg in enumerate(obs.segments):
                last = index == len(obs.segments) - 1
                failures += self.check_segment(
                    obs, index, seg, final.get(obs.room) if last else None
                )
        # (d) nothing surprising along the way
        failures += [f"(d) {a}" for a in self.anomalies]
        # (e), (f), (g) order and delivery per connection
        failures += self.check_order()
        acked = sum(1 for s in self.sends if s.ack)
        seen = sum(len(events(seg, obs.room)) for obs in self.observers for seg in obs.segments)
        happened = [self.counts[k] for k in ("act_burst", "kill", "term")]
        if acked < 10 or seen < 10 or not all(happened):
            failures.append(f"too little happened: {acked} acked, {seen} events, {self.counts}")
        return failures

    def member_conns(self) -> list[Conn]:
        conns = [c for s in self.sessions for c in s.conns]
        return conns + [seg.conn for o in self.observers for seg in o.segments]

    def check_order(self) -> list[str]:
        """(e) the stream and (f) the member versions of every span, (g) acked messages
        delivered exactly once to every healthy span of their room."""
        spans = [(c, i, span) for c in self.member_conns() for i, span in enumerate(c.spans)]
        spans.sort(key=lambda item: item[2].since)  # the first failure shown is the earliest
        streams: list[str] = []
        versions: list[str] = []
        got: dict[tuple[int, int], list[StreamEvent]] = {}
        holes = 0
        known: dict[tuple[str, int], str] = {}  # (room, version) -> what it was, seen anywhere
        for c in self.member_conns():
            for m in c.client.received:
                if isinstance(m, MEMBER):
                    known.setdefault((m.room, m.version), f"{_tag(m)} {m.user} ({c.label})")
        acked_at = {
            (s.room, s.ack.epoch, s.ack.offset): s.acked_at
            for s in self.sends
            if s.ack is not None and s.acked_at is not None
        }
        for conn, i, span in spans:
            end = conn.ended(span)
            settled = {
                (epoch, offset)
                for (room, epoch, offset), at in acked_at.items()
                if room == span.room and at + DELIVER_WITHIN < end
            }
            stream_failures, applied = check_stream(conn, span, settled)
            streams += stream_failures
            got[id(conn), i] = applied
            version_failures, missing, early = check_versions(conn, span)
            self.counts["member events ahead of their snapshot"] += early
            versions += version_failures
            holes += len(missing)
            if missing:
                what = [f"v{v} = {known.get((span.room, v), 'seen nowhere')}" for v in missing]
                self.holes.append(
                    f"  {conn.label}, room {span.room} (span from {span.since:.2f}s, snapshot "
                    f"v{span.version}): never got {', '.join(what)}"
                )
            self.counts["spans checked"] += 1
            self.counts["stream events checked"] += len(applied)
        self.counts["version holes (allowed)"] = holes
        delivery: list[str] = []
        for sent in sorted(self.sends, key=lambda s: s.sent_at):
            if sent.ack is None or sent.acked_at is None:
                continue
            due = sent.acked_at + DELIVER_WITHIN
            for conn, i, span in spans:
                if span.room != sent.room or conn is sent.conn:
                    continue
                if span.since >= sent.sent_at or conn.ended(span) <= due:
                    continue
                self.counts["deliveries checked"] += 1
                applied = got[id(conn), i]
                times = sum(1 for m in applied if m.id == sent.ack.id)
                if times == 1:
                    continue
                end = conn.ended(span)
                offsets = [m.offset for m in applied if m.epoch == sent.ack.epoch]
                near = [o for o in offsets if abs(o - sent.ack.offset) <= 4]
                delivery.append(
                    f"(g) {sent.temp_id} (offset {sent.ack.offset} in {sent.room}, sent by "
                    f"{sent.sender.name} on {sent.conn.node} at {sent.sent_at:.2f}s, acked at "
                    f"{sent.acked_at:.2f}s) reached {conn.label} {times} times; that span of "
                    f"{sent.room}: from {span.since:.2f}s to "
                    f"{'the end' if end == float('inf') else f'{end:.2f}s'}, offsets it applied "
                    f"near {sent.ack.offset}: {near}"
                )
        failures: list[str] = []
        for found in (streams, versions, delivery):
            failures += found[:SHOWN]
            if len(found) > SHOWN:
                failures.append(f"... and {len(found) - SHOWN} more like the above")
        return failures

    def check_segment(
        self, obs: Observer, index: int, seg: Segment, final: frozenset[str] | None
    ) -> list[str]:
        where = f"(c) observer {obs.user} of {obs.room}, segment {index} from v{seg.version}"
        found = events(seg, obs.room)
        versions = [m.version for m in found]
        failures: list[str] = []
        if len(set(versions)) != len(versions):
            failures.append(f"{where}: versions repeat: {versions}")
        gaps = sorted(
            set(range(seg.version + 1, max(versions, default=seg.version) + 1)) - set(versions)
        )
        present = set(seg.members)
        for m in found:
            if isinstance(m, MemberJoined):
                if m.user in present:
                    failures.append(f"{where}: {m.user} joined again (v{m.version}) without a left")
                present.add(m.user)
            elif isinstance(m, MemberLeft):
                if m.user not in present:
                    failures.append(f"{where}: {m.user} left (v{m.version}) without a join")
                present.discard(m.user)
            elif m.user not in present:
                failures.append(f"{where}: {m.user} updated (v{m.version}) while not a member")
        if final is not None and present != final:
            failures.append(
                f"{where}: its events add up to {sorted(present)}, the room is {sorted(final)}"
            )
        if failures and gaps:
            failures.append(f"{where}: versions never seen: {gaps}")
        return failures

    def report(self, failures: list[str]) -> str:
        lines = [
            f"chaos seed {self.seed} (PRESENCED_CHAOS_SEED={self.seed} "
            f"PRESENCED_CHAOS_SECONDS={SECONDS:g} to replay), actions: {dict(self.counts)}",
            f"{len(failures)} failures:",
            *failures,
            "version holes (allowed, see (f)):",
            *self.holes,
            "actions:",
            *self.log,
            "node errors:",
        ]
        for node in self.spawned:
            lines += [f"  {node.node_id}: {ln}" for ln in node_errors(node)[-60:]]
        return "\n".join(lines)

    async def close(self) -> None:
        for conn in self.all_conns():
            if conn.open:
                conn.client.abort()
        for task in self.watchers:
            task.cancel()
        await asyncio.gather(*self.watchers, return_exceptions=True)
        for node in self.spawned:
            node.cleanup()


def node_errors(node: PresencedNode) -> list[str]:
    """A node's ERROR log lines, each with the traceback that follows it."""
    text = node.log_path.read_text(errors="replace") if node.log_path.exists() else ""
    found: list[str] = []
    in_error = False
    for line in text.splitlines():
        if line[:4].isdigit():  # a new log record starts with its date
            in_error = " ERROR " in line or " CRITICAL " in line
        if in_error:
            found.append(line)
    return found


StreamEvent = MessageEvent | MessageEdited | MessageDeleted


def span_messages(conn: Conn, span: Span, start: int | None = None) -> list[ServerMessage]:
    """What the connection received about the span's room over the span, in arrival order."""
    received = conn.client.received
    stop = span.end if span.end is not None else len(received)
    begin = span.start if start is None else start
    return [m for m in received[begin:stop] if getattr(m, "room", None) == span.room]


def near(numbers: list[int], i: int) -> list[int]:
    return numbers[max(0, i - 4) : i + 4]


def check_stream(
    conn: Conn, span: Span, settled: set[tuple[str, int]] | None = None
) -> tuple[list[str], list[StreamEvent]]:
    """(e) for one span: its failures (the first of each kind), and the stream events it
    applied as a client following docs/protocol.md would: the recovered ones, then the live
    ones not already covered by the recovery.

    An own ack fills its offset, but it is a reply, not a stream event: it can overtake
    the events of lower offsets still held on their way (the room's receive order). So the
    offsets are checked for holes up to the last event, or up to an own ack only if it is in
    ``settled`` (the span stayed healthy ``DELIVER_WITHIN`` after it; None: every ack)."""
    where = f"(e) {conn.label}, room {span.room} (span from {span.since:.2f}s)"
    found = span_messages(conn, span)
    live: list[StreamEvent] = [m for m in found if isinstance(m, STREAM)]
    acks = {(m.epoch, m.offset) for m in found if isinstance(m, MessageAck) and not m.duplicate}
    failures: list[str] = []
    offsets = [m.offset for m in live]
    for i in range(1, len(live)):
        a, b = live[i - 1], live[i]
        if a.epoch == b.epoch and b.offset <= a.offset:
            kind = "a repeat" if b.offset == a.offset else "out of order"
            failures.append(
                f"{where}: live offset {b.offset} after {a.offset} ({kind}, epoch {b.epoch}); "
                f"live offsets around it: {near(offsets, i)}"
            )
            break
    recovery = None
    if span.resumed:
        recovery = next((m for m in found if isinstance(m, RoomRecovered)), None)
    recovered: dict[tuple[str, int], StreamEvent] = {}
    base: tuple[str, int] | None = None
    top: tuple[str, int] | None = None
    if recovery is not None and recovery.recovered:
        got = [e for e in recovery.events if isinstance(e, STREAM)]
        if span.position is not None and span.position[0] == recovery.epoch:
            base = span.position
        numbers = [e.offset for e in got]
        due = base[1] + 1 if base else (numbers[0] if numbers else recovery.offset + 1)
        for i, number in enumerate(numbers):
            if number != due:
                failures.append(
                    f"{where}: room.recovered after position {base} has offset {number} "
                    f"where {due} was due; its offsets around it: {near(numbers, i)}"
                )
                break
            due += 1
        else:
            if due != recovery.offset + 1:
                failures.append(
                    f"{where}: room.recovered after position {base} says offset "
                    f"{recovery.offset}, its events end at {due - 1}"
                )
        recovered = {(e.epoch, e.offset): e for e in got}
        top = (recovery.epoch, recovery.offset)
    applied: list[StreamEvent] = list(recovered.values())
    for m in live:
        key = (m.epoch, m.offset)
        if key in recovered:  # the overlap a client skips (N <= last): the same message?
            if recovered[key].id != m.id:
                failures.append(
                    f"{where}: offset {m.offset} came live as {m.id} but recovered as "
                    f"{recovered[key].id}"
                )
            continue
        if top is not None and m.epoch == top[0] and m.offset <= top[1]:
            continue  # at or below the resume position: the client had it already
        applied.append(m)
    for m in applied:
        if (m.epoch, m.offset) in acks:
            failures.append(
                f"{where}: offset {m.offset} came as an event and as this connection's own ack"
            )
            break
    for epoch in dict.fromkeys(m.epoch for m in applied):
        have = {m.offset for m in applied if m.epoch == epoch}
        if base is not None and base[0] == epoch:
            have.add(base[1])
        upto = max(have)
        upto = max(
            [upto, *(o for e, o in acks if e == epoch and (settled is None or (e, o) in settled))]
        )
        have |= {offset for e, offset in acks if e == epoch}
        missing = sorted(set(range(min(have), upto + 1)) - have)
        if missing:
            ordered = sorted(have)
            i = next(i for i, o in enumerate(ordered) if o > missing[0])
            failures.append(
                f"{where}: offset {missing[0]} of epoch {epoch} never came (no live event, "
                f"none recovered, no own ack; {len(missing)} missing in all); offsets around "
                f"it: {near(ordered, i)}, in arrival order: "
                f"{[m.offset for m in live if abs(m.offset - missing[0]) <= 4]}, acked here: "
                f"{sorted(o for e, o in acks if e == epoch and abs(o - missing[0]) <= 4)}"
            )
    return failures, applied


def check_versions(conn: Conn, span: Span) -> tuple[list[str], list[int], int]:
    """(f) for one span: the first member event out of version order (or repeated), the
    versions after the snapshot that never came (allowed holes), and how many events newer
    than the snapshot arrived before it.

    The events are taken in arrival order from the moment the snapshot was asked for: the
    node may write an event newer than the snapshot before the reply (it reads the snapshot,
    then the members' presence, then replies), which a client holds until the snapshot
    comes, as the SDK does, and applies then by the version rule."""
    where = f"(f) {conn.label}, room {span.room} (span from {span.since:.2f}s)"
    start = span.asked if span.asked is not None else span.start
    received = conn.client.received
    stop = span.end if span.end is not None else len(received)
    found: list[tuple[int, Any]] = [
        (i, m)
        for i, m in enumerate(received[start:stop], start)
        if isinstance(m, MEMBER) and m.room == span.room
    ]
    early = sum(
        1
        for i, m in found
        if span.snap is not None and i < span.snap and m.version > (span.version or 0)
    )
    versions = [m.version for _, m in found]
    failures: list[str] = []
    for i in range(1, len(found)):
        a, b = found[i - 1][1], found[i][1]
        if b.version <= a.version:
            kind = "a repeat" if b.version == a.version else "out of order"
            failures.append(
                f"{where}: {_tag(b)} {b.user} v{b.version} after {_tag(a)} {a.user} "
                f"v{a.version} ({kind}); snapshot v{span.version}; versions around it: "
                f"{near(versions, i)}"
            )
            break
    floor = span.version if span.version is not None else min(versions, default=0)
    after = {v for v in versions if v > floor}
    missing = sorted(set(range(floor + 1, max(after, default=floor) + 1)) - after)
    return failures, missing, early


def _tag(message: ServerMessage) -> str:
    return str(type(message).__struct_config__.tag)


def events(seg: Segment, room: str) -> list[MemberJoined | MemberLeft | MemberUpdated]:
    """The membership events of ``room`` newer than the segment's snapshot, in version order."""
    found = [
        m
        for m in seg.conn.client.received
        if isinstance(m, MemberJoined | MemberLeft | MemberUpdated)
        and m.room == room
        and m.version > seg.version
    ]
    return sorted(found, key=lambda m: m.version)


@pytest.fixture
def valkey() -> Iterator[ValkeyProcess]:
    server = ValkeyProcess().start()
    yield server
    server.cleanup()


@pytest.fixture
async def chaos(valkey: ValkeyProcess) -> AsyncIterator[Chaos]:
    run = Chaos(valkey.url, SEED)
    try:
        yield run
    finally:
        await run.close()


async def test_chaos_leaves_no_ghosts_and_loses_no_message(chaos: Chaos) -> None:
    await chaos.start()
    await chaos.run(SECONDS)
    views = await chaos.settle()
    failures = chaos.check(views)
    for node in chaos.running():
        health = await asyncio.to_thread(node.health)
        if health is None or health.get("status") != "ok":
            failures.append(f"{node.node_id} is not healthy at the end: {health}")
    report = chaos.report(failures)
    print(report)  # shown by pytest with the failure; the seed and every action
    assert not failures, report


def _wait_gone(client: Any, key: str, timeout: float) -> None:
    """Poll (bounded) until ``key`` has expired."""
    deadline = time.monotonic() + timeout
    while client.exists(key):
        if time.monotonic() > deadline:
            pytest.fail(f"{key} did not expire within {timeout:g} s")
        time.sleep(0.005)  # poll pacing, bounded by the deadline


def test_drain_exits_while_other_leases_expire(valkey: ValkeyProcess) -> None:
    """SIGTERM during lease churn (the chaos run above once hung here): a node draining
    while other nodes' leases expire, each expiry waking its lease keeper, still exits.

    Lease keys of made-up nodes expire all through the drain, one every half millisecond,
    so the keeper is being woken at the moment it is told to stop. Up to 8 drains, since a
    drain hits the bad moment only now and then; each must end within the drain's own
    bound (at most 5 s of waiting for background work) plus a margin."""
    keys = Keys("churn")
    client = valkey.client()
    try:
        for attempt in range(8):
            settings = {**SETTINGS, "redis": valkey.url, "redis_prefix": "churn"}
            node = PresencedNode(f"d{attempt}", **settings)
            try:
                node.start()
                pipe = client.pipeline()
                for i in range(3000):
                    pipe.set(keys.node_lease(f"gone{attempt}-{i}"), b"1", px=1 + i // 2)
                pipe.execute()
                # The scenario: SIGTERM in the middle of the expiries (a third of them gone).
                _wait_gone(client, keys.node_lease(f"gone{attempt}-1000"), timeout=10)
                try:
                    code = node.terminate(DRAIN_TIMEOUT / 2)
                except subprocess.TimeoutExpired:
                    pytest.fail(
                        f"drain {attempt} still running {DRAIN_TIMEOUT / 2:g}s after SIGTERM "
                        f"(the lease keeper never stopped?); log: {node.log_tail(800)}"
                    )
                assert code == 0, node.log_tail(800)
            finally:
                node.cleanup()
    finally:
        client.close()
