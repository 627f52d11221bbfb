"""Many presenced nodes on one Valkey: shared presence, and no ghosts when anything dies."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

from presenced.protocol.messages import (
    MemberJoined,
    MemberLeft,
    Presence,
    RoomMembersReply,
    Welcome,
)
from presenced.testing import ProtocolClient
from tests.multinode.conftest import Dial, StartNodes
from tests.support.nodes import PresencedNode
from tests.support.valkey import ValkeyProcess

GRACE = 1.5
LEASE = 1.0
LEASE_INTERVAL = 0.2


async def members(client: ProtocolClient, room: str = "r") -> set[str]:
    reply = await client.request({"type": "room.members", "room": room})
    return {m.user for m in reply.members}  # type: ignore[union-attr]


async def wait_members(client: ProtocolClient, expected: set[str], timeout: float = 10) -> None:
    """Poll the room through requests (each a round trip) until it shows ``expected``; while
    the store is down the requests fail with an error, which counts as not yet."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        reply = await client.request({"type": "room.members", "room": "r"})
        found = {m.user for m in reply.members} if isinstance(reply, RoomMembersReply) else None
        if found == expected:
            return
        if loop.time() > deadline:
            raise AssertionError(f"room shows {found}, expected {expected}")
        await asyncio.sleep(0.05)  # poll pacing; the deadline above bounds the wait


async def test_presence_messages_typing_and_watches_cross_nodes(
    start_nodes: StartNodes, dial: Dial
) -> None:
    n1, n2, n3 = start_nodes(3)
    alice = await dial(n1, "alice")
    bob = await dial(n2, "bob")
    carol = await dial(n3, "carol")
    await carol.request({"type": "presence.subscribe", "users": ["alice"]})
    for client in (alice, bob, carol):
        await client.request({"type": "room.join", "room": "r"})
    joined = await alice.wait_for(lambda m: isinstance(m, MemberJoined) and m.user == "carol")
    assert isinstance(joined, MemberJoined)
    assert await members(bob) == {"alice", "bob", "carol"}
    ack = await alice.request({"type": "message.send", "room": "r", "body": "hi", "temp_id": "t"})
    for other in (bob, carol):
        got = await other.wait_for("message")
        assert got.id == ack.id and got.body == "hi"  # type: ignore[union-attr]
    await bob.send({"type": "typing.start", "room": "r"})
    typing = await alice.wait_for("typing")
    assert typing.users == ["bob"]  # type: ignore[union-attr]
    await alice.request({"type": "status.set", "status": "busy"})
    busy = await carol.wait_for(lambda m: isinstance(m, Presence) and m.status == "busy")
    assert isinstance(busy, Presence) and busy.online


async def test_killed_node_users_leave_within_lease_and_grace(
    start_nodes: StartNodes, dial: Dial
) -> None:
    n1, n2 = start_nodes(2)
    bob = await dial(n2, "bob")
    await bob.request({"type": "room.join", "room": "r"})
    alice = await dial(n1, "alice")
    await alice.request({"type": "room.join", "room": "r"})
    await bob.wait_for("member.joined")
    loop = asyncio.get_running_loop()
    killed_at = loop.time()
    n1.kill()
    left = await bob.wait_for("member.left", timeout=LEASE + LEASE_INTERVAL + GRACE + 5)
    took = loop.time() - killed_at
    assert isinstance(left, MemberLeft) and (left.user, left.reason) == ("alice", "node_lost")
    assert took < LEASE + LEASE_INTERVAL + GRACE + 2, took
    assert took > GRACE * 0.8, took  # it went through grace, not straight out
    assert await members(bob) == {"bob"}


async def test_killed_node_users_resume_elsewhere_without_a_leave(
    start_nodes: StartNodes, dial: Dial
) -> None:
    n1, n2 = start_nodes(2)
    bob = await dial(n2, "bob")
    await bob.request({"type": "room.join", "room": "r"})
    alice = await dial(n1, "alice")
    await alice.request({"type": "room.join", "room": "r"})
    await bob.wait_for("member.joined")
    welcome = alice.of_type("welcome")[0]
    assert isinstance(welcome, Welcome)
    mark = len(bob.received)
    n1.kill()
    back = await dial(n2, "alice", resume=welcome.resume_token)
    again = back.of_type("welcome")[0]
    assert isinstance(again, Welcome) and again.resumed and again.rooms == ["r"]
    # Long after the dead node's lease and the grace: alice never left.
    await _wait(LEASE + LEASE_INTERVAL + GRACE + 1)
    assert await members(bob) == {"alice", "bob"}
    assert not [m for m in bob.received[mark:] if isinstance(m, MemberLeft | MemberJoined)]
    ack = await back.request({"type": "message.send", "room": "r", "body": "still here"})
    assert type(ack).__name__ == "MessageAck"


async def test_sigterm_drain_shows_no_leave(start_nodes: StartNodes, dial: Dial) -> None:
    n1, n2 = start_nodes(2)
    bob = await dial(n2, "bob")
    await bob.request({"type": "room.join", "room": "r"})
    alice = await dial(n1, "alice")
    await alice.request({"type": "room.join", "room": "r"})
    await bob.wait_for("member.joined")
    welcome = alice.of_type("welcome")[0]
    assert isinstance(welcome, Welcome)
    mark = len(bob.received)
    assert n1.terminate() == 0
    assert await alice.wait_closed() == 1012
    back = await dial(n2, "alice", resume=welcome.resume_token)
    assert back.of_type("welcome")[0].resumed  # type: ignore[union-attr]
    await _wait(GRACE + LEASE)
    assert await members(bob) == {"alice", "bob"}
    assert not [m for m in bob.received[mark:] if isinstance(m, MemberLeft | MemberJoined)]


async def test_drained_node_users_that_do_not_come_back_leave_after_grace(
    start_nodes: StartNodes, dial: Dial
) -> None:
    n1, n2 = start_nodes(2)
    bob = await dial(n2, "bob")
    await bob.request({"type": "room.join", "room": "r"})
    alice = await dial(n1, "alice")
    await alice.request({"type": "room.join", "room": "r"})
    await bob.wait_for("member.joined")
    assert n1.terminate() == 0
    left = await bob.wait_for("member.left", timeout=GRACE + LEASE + 5)
    assert isinstance(left, MemberLeft) and left.user == "alice"


async def test_valkey_restarted_empty_converges_without_ghosts(
    start_nodes: StartNodes, dial: Dial, valkey: ValkeyProcess
) -> None:
    n1, n2 = start_nodes(2)
    alice = await dial(n1, "alice")
    bob = await dial(n2, "bob")
    await alice.request({"type": "room.join", "room": "r"})
    await bob.request({"type": "room.join", "room": "r"})
    await wait_members(bob, {"alice", "bob"})
    valkey.restart_empty()
    # The nodes notice the empty store and re-assert their live sessions.
    await wait_members(bob, {"alice", "bob"}, timeout=15)
    await wait_members(alice, {"alice", "bob"}, timeout=15)
    # And the state is real, not a ghost: alice leaving is seen, and leaves nothing behind.
    mark = len(bob.received)
    await alice.send({"type": "logout"})
    left = await bob.wait_for("member.left", start=mark, timeout=10)
    assert isinstance(left, MemberLeft) and left.user == "alice"
    assert await members(bob) == {"bob"}
    health = n1.health()
    assert health is not None and health["status"] == "ok"


CLIENT = """
import asyncio, sys
from presenced.testing import ProtocolClient
async def main():
    c = await ProtocolClient.connect(sys.argv[1])
    await c.wait_for("welcome", timeout=10)
    await c.request({"type": "room.join", "room": "r"})
    print("ready", flush=True)
    # Idle (answering pings) until the test pauses it, or closes its stdin.
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
asyncio.run(main())
"""


async def test_paused_client_process_is_detected_and_removed(
    start_nodes: StartNodes, dial: Dial
) -> None:
    n1, n2 = start_nodes(2)
    bob = await dial(n2, "bob")
    await bob.request({"type": "room.join", "room": "r"})
    proc = subprocess.Popen(
        [sys.executable, "-c", CLIENT, f"{n1.url}?user=zed&device=phone"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 15)
        assert line.strip() == b"ready"
        await bob.wait_for(lambda m: isinstance(m, MemberJoined) and m.user == "zed")
        loop = asyncio.get_running_loop()
        paused_at = loop.time()
        os.kill(proc.pid, signal.SIGSTOP)  # no FIN: the kernel keeps the socket open
        left = await bob.wait_for("member.left", timeout=10)
        took = loop.time() - paused_at
        assert isinstance(left, MemberLeft) and left.user == "zed"
        assert took < 0.5 + 0.25 + GRACE + 1.0, took  # interval + timeout + grace + 1 s
    finally:
        proc.kill()
        proc.wait(10)
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()


async def _wait(seconds: float) -> None:
    """Let time pass that the scenario needs to pass (a deadline that must NOT fire)."""
    await asyncio.sleep(seconds)


_ = PresencedNode
