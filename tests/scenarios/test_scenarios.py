"""User-visible behaviours, end to end over real loopback sockets, one scenario per test.

Each test is named after what a user of an app built on presenced would notice: who stays,
who is removed, when and why. The servers run with millisecond liveness settings; tests wait
for the event they expect with a timeout. The only sleeps stand for idle time inside a
scenario (the pause between a backgrounded app's heartbeats), never for "let it happen".
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from websockets.exceptions import ConnectionClosed

from presenced.protocol.messages import (
    DeviceBack,
    DeviceDropped,
    DeviceGone,
    Error,
    ForceLeave,
    HeartbeatAck,
    MemberJoined,
    MemberLeft,
    MemberUpdated,
    Presence,
    PresenceSubscribed,
    RoomCountReply,
    RoomJoined,
    RoomLeft,
    RoomMembersReply,
    ServerMessage,
    Welcome,
)
from presenced.testing import ProtocolClient
from tests.conftest import ServerFactory
from tests.scenarios.conftest import Dial

__all__: list[str] = []

M = TypeVar("M")

ROOM = "standup"


# --- helpers ---------------------------------------------------------------------------------


def now() -> float:
    """The event loop's clock (the server's monotonic clock runs in the same process)."""
    return asyncio.get_running_loop().time()


async def ask(client: ProtocolClient, message: dict[str, Any], cls: type[M]) -> M:
    """Send a request and return its reply, which must be a ``cls``."""
    reply = await client.request(message)
    assert isinstance(reply, cls), reply
    return reply


async def expect(
    client: ProtocolClient,
    cls: type[M],
    where: Callable[[M], bool] = lambda _: True,
    *,
    start: int = 0,
    timeout: float = 3.0,
) -> M:
    """Wait for the first ``cls`` message from index ``start`` on that satisfies ``where``."""

    def match(message: ServerMessage) -> bool:
        return isinstance(message, cls) and where(message)

    found = await client.wait_for(match, start=start, timeout=timeout)
    assert isinstance(found, cls)
    return found


def welcome_of(client: ProtocolClient) -> Welcome:
    welcome = client.of_type("welcome")[-1]
    assert isinstance(welcome, Welcome)
    return welcome


def not_replies(messages: list[ServerMessage]) -> list[str]:
    """Type names of the messages nobody asked for (replies carry the request's ref)."""
    return [type(m).__name__ for m in messages if getattr(m, "ref", None) is None]


async def join(client: ProtocolClient, room: str = ROOM, **options: Any) -> RoomJoined:
    return await ask(client, {"type": "room.join", "room": room, **options}, RoomJoined)


async def members_of(client: ProtocolClient, room: str = ROOM) -> dict[str, int]:
    """The room's members as the server lists them: user -> device count."""
    reply = await ask(client, {"type": "room.members", "room": room}, RoomMembersReply)
    return {m.user: m.devices for m in reply.members}


async def count_of(client: ProtocolClient, room: str = ROOM) -> int:
    return (await ask(client, {"type": "room.count", "room": room}, RoomCountReply)).count


@contextlib.asynccontextmanager
async def heartbeating(client: ProtocolClient, every: float = 0.05) -> AsyncIterator[None]:
    """Keep ``client`` active the way a backgrounded app does: a heartbeat every ``every`` s."""

    async def beat() -> None:
        with contextlib.suppress(ConnectionClosed):
            while not client.closed.is_set():
                await client.send({"type": "heartbeat"})
                await asyncio.sleep(every)  # idle time between beats, not a wait for an event

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# --- inactivity ------------------------------------------------------------------------------


async def test_minimized_app_that_keeps_heartbeating_stays(
    make_server: ServerFactory, dial: Dial
) -> None:
    inactivity = 0.3
    running = await make_server(inactivity_timeout=inactivity, grace=0.3)
    minimized = await dial(running.url, user="mina", device="phone")
    silent = await dial(running.url, user="sam", device="tablet")
    await join(minimized)
    await join(silent)

    # The minimized app only heartbeats, every 50 ms, for five inactivity periods.
    started, beats = now(), 0
    while now() - started < 5 * inactivity:
        ack = await ask(minimized, {"type": "heartbeat"}, HeartbeatAck)
        assert ack.time > 0
        beats += 1
        await asyncio.sleep(0.05)  # the app idles between heartbeats
    assert beats >= 15

    # Meanwhile the silent one was force-left, and the minimized one saw it go.
    force = await expect(silent, ForceLeave, timeout=0.5)
    assert force.reason == "inactivity_timeout"
    assert await silent.wait_closed() == 4003
    left = await expect(minimized, MemberLeft, lambda m: m.user == "sam", timeout=0.5)
    assert left.reason == "inactivity_timeout"

    # The heartbeating one is still connected, still a member, and was never told to leave.
    assert not minimized.closed.is_set()
    assert not minimized.of_type("force_leave")
    assert await members_of(minimized) == {"mina": 1}


async def test_idle_app_is_force_left_with_reason_inactivity_timeout(
    make_server: ServerFactory, dial: Dial
) -> None:
    inactivity = 0.3
    running = await make_server(inactivity_timeout=inactivity, grace=30)
    watcher = await dial(running.url, user="carol", device="web")
    idle = await dial(running.url, user="ivan", device="tab")
    async with heartbeating(watcher):
        await join(watcher)
        await join(idle)
        last_active = now()  # the join was the idle app's last request
        await expect(watcher, MemberJoined, lambda m: m.user == "ivan")

        force = await expect(idle, ForceLeave, timeout=inactivity + 2)
        told_at = now()
        assert force.reason == "inactivity_timeout"
        # A message the app can show as is: what happened, and after how long.
        assert "activity" in force.message.lower() and f"{inactivity:g}" in force.message
        assert await idle.wait_closed() == 4003
        assert told_at - last_active >= 0.8 * inactivity

        # The room learns at once: no grace (30 s) applies to a force-left session.
        left = await expect(watcher, MemberLeft, lambda m: m.user == "ivan", timeout=1.0)
        assert left.reason == "inactivity_timeout"
        assert now() - told_at < 1.0
        assert await members_of(watcher) == {"carol": 1}
        assert await count_of(watcher) == 1
        assert not watcher.closed.is_set()


# --- leaving: lost transport, grace, manual leave ------------------------------------------


async def test_force_closed_app_is_removed_after_the_grace(
    make_server: ServerFactory, dial: Dial
) -> None:
    grace = 0.6
    running = await make_server(grace=grace)
    watcher = await dial(running.url, user="carol", device="web")
    alice = await dial(running.url, user="alice", device="phone")
    await join(watcher)
    await join(alice)
    await expect(watcher, MemberJoined, lambda m: m.user == "alice")
    mark = len(watcher.received)

    alice.abort()  # the app is killed: no close frame, no logout
    dropped_at = now()
    # During the grace she still counts.
    assert await members_of(watcher) == {"alice": 1, "carol": 1}

    left = await expect(watcher, MemberLeft, start=mark, timeout=grace + 2)
    elapsed = now() - dropped_at
    assert (left.user, left.reason) == ("alice", "grace_expired")
    assert 0.8 * grace <= elapsed < grace + 1.0, elapsed
    # Until then the room saw nothing at all.
    assert not_replies(watcher.received[mark:]) == ["MemberLeft"]
    assert await count_of(watcher) == 1


async def test_manual_leave_is_immediate(make_server: ServerFactory, dial: Dial) -> None:
    running = await make_server(grace=30)
    watcher = await dial(running.url, user="carol", device="web")
    alice = await dial(running.url, user="alice", device="phone")
    bob = await dial(running.url, user="bob", device="laptop")
    for client in (watcher, alice, bob):
        await join(client)
    await expect(watcher, MemberJoined, lambda m: m.user == "bob")

    # room.leave: the room sees her go at once, and she stays connected.
    mark = len(watcher.received)
    await ask(alice, {"type": "room.leave", "room": ROOM}, RoomLeft)
    left = await expect(watcher, MemberLeft, start=mark, timeout=0.5)
    assert (left.user, left.reason) == ("alice", "left")
    assert not alice.closed.is_set()

    # logout: the same, and the connection ends normally.
    mark = len(watcher.received)
    await bob.send({"type": "logout"})
    left = await expect(watcher, MemberLeft, start=mark, timeout=0.5)
    assert (left.user, left.reason) == ("bob", "left")
    assert await bob.wait_closed() == 1000
    assert await members_of(watcher) == {"carol": 1}


# --- restart ----------------------------------------------------------------------------------


async def test_restarted_server_starts_with_nobody_present(
    make_server: ServerFactory, dial: Dial
) -> None:
    first = await make_server(grace=30)
    alice = await dial(first.url, user="alice", device="phone")
    bob = await dial(first.url, user="bob", device="laptop")
    await join(alice)
    await join(bob)
    assert await count_of(alice) == 2
    token = welcome_of(alice).resume_token

    await first.stop()
    assert await alice.wait_closed() == 1012
    assert await bob.wait_closed() == 1012

    try:
        second = await make_server(port=first.port, grace=30)
    except OSError:  # the port was taken in between: any port shows the same
        second = await make_server(grace=30)
    carol = await dial(second.url, user="carol", device="web")
    assert await members_of(carol) == {}
    assert await count_of(carol) == 0
    subscribed = await ask(
        carol, {"type": "presence.subscribe", "users": ["alice", "bob"]}, PresenceSubscribed
    )
    assert [(p.user, p.online) for p in subscribed.users] == [("alice", False), ("bob", False)]

    # A client that reconnects to resume gets a fresh session and must re-join by itself.
    again = await dial(second.url, user="alice", device="phone", resume=token)
    welcome = welcome_of(again)
    assert not welcome.resumed and welcome.resume_error and welcome.rooms == []
    assert await count_of(carol) == 0


# --- the count never lies --------------------------------------------------------------------

USERS = tuple(f"u{i}" for i in range(6))
DEVICES = ("phone", "laptop")
# How often each action is drawn: waiting out a grace costs real time, so it is the rarest.
ACTIONS = {
    "join": 3,
    "second_device": 2,
    "leave": 2,
    "abort": 3,
    "resume": 3,
    "expire": 1,
    "logout": 2,
}
SAFETY = 0.25  # an in-grace session this close to its grace expiry is neither resumed nor
# counted on: the test waits for its expiry first (each action takes milliseconds)


@dataclass
class Seat:
    """One session in the test's own model: a user's device, in the room or not."""

    user: str
    device: str
    client: ProtocolClient
    resume_token: str
    in_room: bool = False
    dropped_mark: int | None = None  # watcher's message index when its transport was dropped
    deadline: float = math.inf  # earliest loop time at which its grace can run out

    @property
    def in_grace(self) -> bool:
        return self.dropped_mark is not None


class Crowd:
    """Six users acting on one room at random while a watcher checks the count after each
    step against the test's own model of who is present (live or in grace)."""

    def __init__(self, url: str, dial: Dial, watcher: ProtocolClient, grace: float) -> None:
        self.url = url
        self.dial = dial
        self.watcher = watcher
        self.grace = grace
        self.seats: dict[tuple[str, str], Seat] = {}
        self.done: Counter[str] = Counter()
        self.checks_with_user_only_in_grace = 0
        self.expired = 0

    # --- the model ---------------------------------------------------------------------------

    def in_room(self, user: str) -> list[Seat]:
        return [s for s in self.seats.values() if s.user == user and s.in_room]

    def expected(self) -> dict[str, int]:
        """user -> sessions in the room (live or in grace), the watcher included."""
        present = Counter(s.user for s in self.seats.values() if s.in_room)
        return {"carol": 1, **present}

    def candidates(self) -> dict[str, list[Any]]:
        t = now()
        live = [s for s in self.seats.values() if not s.in_grace]
        present = {s.user for s in self.seats.values() if s.in_room}
        free = [(u, d) for u in USERS for d in DEVICES if (u, d) not in self.seats]
        return {
            "join": [u for u in USERS if u not in present],  # absent users have only live seats
            "second_device": [(u, d) for u, d in free if u in present],
            "leave": [s for s in live if s.in_room],
            "abort": [s for s in live if s.in_room],
            "resume": [s for s in self.seats.values() if s.in_grace and s.deadline - t > SAFETY],
            "expire": [s for s in self.seats.values() if s.in_grace],
            "logout": live,
        }

    # --- checking ------------------------------------------------------------------------

    async def check(self) -> None:
        """room.count == len(room.members) == users with a live or in-grace session there."""
        expected = self.expected()
        count = await count_of(self.watcher)
        members = await members_of(self.watcher)
        assert count == len(members) == len(expected), (count, members, expected)
        assert members == expected
        if any(all(s.in_grace for s in self.in_room(u)) for u in expected if u != "carol"):
            self.checks_with_user_only_in_grace += 1

    def mark(self) -> int:
        return len(self.watcher.received)

    async def member_change(
        self, user: str, devices_after: int, mark: int, reason: str = "left"
    ) -> None:
        """The watcher saw ``user`` leave (no devices left) or its device count change."""
        if devices_after == 0:
            left = await expect(self.watcher, MemberLeft, lambda m: m.user == user, start=mark)
            assert left.reason == reason
        else:
            await expect(
                self.watcher,
                MemberUpdated,
                lambda m: m.user == user and m.devices == devices_after,
                start=mark,
            )

    # --- actions -------------------------------------------------------------------------

    async def connect(self, user: str, device: str) -> Seat:
        client = await self.dial(self.url, user=user, device=device)
        seat = Seat(user, device, client, welcome_of(client).resume_token)
        self.seats[user, device] = seat
        return seat

    async def act(self, action: str, target: Any) -> None:
        mark = self.mark()
        if action == "join":
            user: str = target
            idle = [s for s in self.seats.values() if s.user == user]
            seat = idle[0] if idle else await self.connect(user, DEVICES[0])
            await join(seat.client)
            seat.in_room = True
            await expect(self.watcher, MemberJoined, lambda m: m.user == user, start=mark)
        elif action == "second_device":
            user, device = target
            seat = await self.connect(user, device)
            await join(seat.client)
            seat.in_room = True
            await self.member_change(user, len(self.in_room(user)), mark)
        elif action == "leave":
            seat = target
            await ask(seat.client, {"type": "room.leave", "room": ROOM}, RoomLeft)
            seat.in_room = False
            await self.member_change(seat.user, len(self.in_room(seat.user)), mark)
        elif action == "abort":
            seat = target
            seat.client.abort()
            seat.dropped_mark, seat.deadline = mark, now() + self.grace
            await expect(
                self.watcher,
                DeviceDropped,
                lambda m: (m.user, m.device) == (seat.user, seat.device),
                start=mark,
            )
        elif action == "resume":
            seat = target
            seat.client = await self.dial(
                self.url, user=seat.user, device=seat.device, resume=seat.resume_token
            )
            welcome = welcome_of(seat.client)
            assert welcome.resumed and welcome.rooms == [ROOM], welcome
            seat.resume_token = welcome.resume_token
            seat.dropped_mark, seat.deadline = None, math.inf
            await expect(
                self.watcher,
                DeviceBack,
                lambda m: (m.user, m.device) == (seat.user, seat.device),
                start=mark,
            )
        elif action == "expire":
            # Leave it to its grace; sessions dropped before it run out first.
            await self.settle(until=target.deadline)
        elif action == "logout":
            seat = target
            await seat.client.send({"type": "logout"})
            assert await seat.client.wait_closed() == 1000
            del self.seats[seat.user, seat.device]
            if seat.in_room:
                await self.member_change(seat.user, len(self.in_room(seat.user)), mark)
        else:  # pragma: no cover - ACTIONS lists every branch
            raise AssertionError(action)
        self.done[action] += 1

    async def expire(self, seat: Seat) -> None:
        """Wait (with a timeout) for an in-grace session's expiry, as the watcher sees it."""
        assert seat.dropped_mark is not None
        gone = await expect(
            self.watcher,
            DeviceGone,
            lambda m: (m.user, m.device) == (seat.user, seat.device),
            start=seat.dropped_mark,
            timeout=self.grace + 2,
        )
        assert gone.reason == "grace_expired"
        assert now() >= seat.deadline - 0.05  # not before its grace ran out
        del self.seats[seat.user, seat.device]
        self.expired += 1
        if not self.in_room(seat.user):
            left = await expect(
                self.watcher,
                MemberLeft,
                lambda m: m.user == seat.user,
                start=seat.dropped_mark,
                timeout=0.5,
            )
            assert left.reason == "grace_expired"

    async def settle(self, until: float = -math.inf) -> None:
        """Wait out every in-grace session due by ``until`` or too close to its expiry to be
        counted on, earliest first, then check the room once."""
        expired = False
        while True:
            horizon = max(until, now() + SAFETY)
            due = [s for s in self.seats.values() if s.in_grace and s.deadline <= horizon]
            if not due:
                break
            await self.expire(min(due, key=lambda s: s.deadline))
            expired = True
        if expired:
            await self.check()


async def test_viewer_count_always_equals_live_members(
    make_server: ServerFactory, dial: Dial
) -> None:
    grace = 0.5
    running = await make_server(grace=grace)
    watcher = await dial(running.url, user="carol", device="web")
    await join(watcher, device_events=True)  # device events pin each drop, resume and expiry
    crowd = Crowd(running.url, dial, watcher, grace)
    rng = random.Random(7)

    for _ in range(32):
        await crowd.settle()
        options = {k: v for k, v in crowd.candidates().items() if v}
        kinds = [k for k in ACTIONS if k in options]
        (action,) = rng.choices(kinds, [ACTIONS[k] for k in kinds])
        await crowd.act(action, rng.choice(options[action]))
        await crowd.check()
    await crowd.settle(until=math.inf)
    await crowd.check()

    # The sequence exercised every kind of change, and in-grace sessions were counted.
    assert set(crowd.done) == set(ACTIONS), crowd.done
    assert crowd.expired > 0 and crowd.checks_with_user_only_in_grace > 0


# --- device events -------------------------------------------------------------------------


async def test_dropped_device_is_announced_then_back(
    make_server: ServerFactory, dial: Dial
) -> None:
    grace = 0.6
    running = await make_server(grace=grace)
    watcher = await dial(running.url, user="carol", device="web")
    await join(watcher, device_events=True)
    alice = await dial(running.url, user="alice", device="phone")
    await join(alice)
    await expect(watcher, MemberJoined, lambda m: m.user == "alice")
    mark = len(watcher.received)

    alice.abort()
    dropped = await expect(watcher, DeviceDropped, start=mark)
    assert (dropped.room, dropped.user, dropped.device, dropped.grace) == (
        ROOM,
        "alice",
        "phone",
        grace,
    )
    token = welcome_of(alice).resume_token
    back = await dial(running.url, user="alice", device="phone", resume=token)
    assert welcome_of(back).resumed
    returned = await expect(watcher, DeviceBack, start=mark)
    assert (returned.room, returned.user, returned.device) == (ROOM, "alice", "phone")

    # Nothing else: she never left and is still listed.
    assert not_replies(watcher.received[mark:]) == ["DeviceDropped", "DeviceBack"]
    assert await members_of(watcher) == {"alice": 1, "carol": 1}


async def test_dropped_device_is_announced_then_gone_after_grace(
    make_server: ServerFactory, dial: Dial
) -> None:
    grace = 0.6
    running = await make_server(grace=grace)
    watcher = await dial(running.url, user="carol", device="web")
    await join(watcher, device_events=True)
    alice = await dial(running.url, user="alice", device="phone")
    await join(alice)
    await expect(watcher, MemberJoined, lambda m: m.user == "alice")
    mark = len(watcher.received)

    alice.abort()
    dropped_at = now()
    await expect(watcher, DeviceDropped, lambda m: m.user == "alice", start=mark)
    gone = await expect(watcher, DeviceGone, start=mark, timeout=grace + 2)
    assert now() - dropped_at >= 0.8 * grace
    assert (gone.user, gone.device, gone.reason) == ("alice", "phone", "grace_expired")
    left = await expect(watcher, MemberLeft, start=mark, timeout=0.5)
    assert (left.user, left.reason) == ("alice", "grace_expired")
    assert sorted(not_replies(watcher.received[mark:])) == [
        "DeviceDropped",
        "DeviceGone",
        "MemberLeft",
    ]
    assert await members_of(watcher) == {"carol": 1}


# --- connecting --------------------------------------------------------------------------


async def test_connect_without_device_id_is_refused_with_a_clear_error(
    make_server: ServerFactory, dial: Dial
) -> None:
    running = await make_server(auth_timeout=5)

    # In the connect URL, missing or empty: the server answers at once, and keeps the
    # connection open for a corrected auth.
    for query in ({"user": "a"}, {"user": "a", "device": ""}):
        by_url = await dial(running.url, welcome=False, **query)
        error = await expect(by_url, Error)
        assert (error.code, error.field) == ("BAD_REQUEST", "device"), (query, error)
        assert "device" in error.message
        retried = await by_url.request({"type": "auth", "user": "a", "device": "phone"})
        assert isinstance(retried, Welcome) and retried.device == "phone"

    # In the auth message: the same error, echoing the request's ref.
    by_message = await dial(running.url, welcome=False)
    error = await ask(by_message, {"type": "auth", "user": "b"}, Error)
    assert (error.code, error.field) == ("BAD_REQUEST", "device")
    assert "device" in error.message
    assert not by_message.closed.is_set()


# --- liveness ------------------------------------------------------------------------------


async def test_half_open_client_is_removed_within_heartbeat_timeout_and_grace(
    make_server: ServerFactory, dial: Dial
) -> None:
    running = await make_server()
    settings = running.node.settings
    watcher = await dial(running.url, user="carol", device="web")
    zombie = await dial(running.url, user="zed", device="phone")
    await join(watcher)
    await join(zombie)
    await expect(watcher, MemberJoined, lambda m: m.user == "zed")
    mark = len(watcher.received)

    # The client stops reading without closing: pings go unanswered, no FIN is ever sent.
    zombie.ws.transport.pause_reading()
    paused_at = now()
    bound = settings.heartbeat_interval + settings.heartbeat_timeout + settings.grace
    left = await expect(watcher, MemberLeft, start=mark, timeout=bound + 2)
    elapsed = now() - paused_at
    assert (left.user, left.reason) == ("zed", "grace_expired")
    assert 0.8 * settings.grace <= elapsed < bound + 1.0, elapsed
    assert not_replies(watcher.received[mark:]) == ["MemberLeft"]
    assert await members_of(watcher) == {"carol": 1}


async def test_two_devices_one_closes_the_other_keeps_the_user_present(
    make_server: ServerFactory, dial: Dial
) -> None:
    grace = 0.4
    running = await make_server(grace=grace)
    watcher = await dial(running.url, user="carol", device="web")
    await join(watcher)
    await ask(watcher, {"type": "presence.subscribe", "users": ["alice"]}, PresenceSubscribed)
    phone = await dial(running.url, user="alice", device="phone")
    laptop = await dial(running.url, user="alice", device="laptop")
    await join(phone)
    await join(laptop)
    await expect(watcher, MemberUpdated, lambda m: m.user == "alice" and m.devices == 2)
    mark = len(watcher.received)

    await phone.close()  # a clean close, not a logout: the phone's session goes to grace
    closed_at = now()
    updated = await expect(watcher, MemberUpdated, start=mark, timeout=grace + 2)
    assert (updated.user, updated.devices) == ("alice", 1)
    assert now() - closed_at >= 0.8 * grace  # only once the phone's grace ran out
    presence = await expect(watcher, Presence, lambda m: m.user == "alice", start=mark)
    assert presence.online and presence.devices == 1

    assert not watcher.of_type("member.left")
    assert await members_of(watcher) == {"alice": 1, "carol": 1}
    assert await count_of(watcher) == 2
    assert not laptop.closed.is_set()
