"""``presenced serve --workers N``: one port, N nodes, the kernel spreading connections."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess

from presenced.api import ApiClient
from presenced.protocol.messages import MemberLeft, RoomCountReply, Welcome
from presenced.testing import ProtocolClient
from tests.multinode.conftest import NODE_SETTINGS
from tests.support.nodes import PresencedNode
from tests.support.valkey import ValkeyProcess


def worker_pids(supervisor: int) -> list[int]:
    out = subprocess.run(
        ["pgrep", "-P", str(supervisor)], capture_output=True, text=True, check=False
    ).stdout
    # The spawn start method adds a resource tracker child too: keep the workers only.
    pids = []
    for pid in out.split():
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if b"resource_tracker" not in f.read():
                pids.append(int(pid))
    return pids


async def test_workers_share_the_port_and_replace_a_dead_one(valkey: ValkeyProcess) -> None:
    node = PresencedNode(
        "wk", **{**NODE_SETTINGS, "redis": valkey.url, "redis_prefix": "workers", "workers": 3}
    )
    node.start()
    clients: list[ProtocolClient] = []
    try:
        assert node.proc is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 15
        while len(worker_pids(node.proc.pid)) < 4:  # 3 workers and the admin API's node
            assert loop.time() < deadline, "workers did not start"
            await asyncio.sleep(0.05)  # polling process start-up
        # Every worker answers on the one port (the kernel spreads connections) once it is
        # up: ask until each has answered.
        pid_of: dict[str, int] = {}
        deadline = loop.time() + 20
        while len(pid_of) < 3:
            assert loop.time() < deadline, f"only {sorted(pid_of)} answered"
            health = await asyncio.to_thread(node.health) or {}
            if "node" in health:
                pid_of[str(health["node"])] = int(health["pid"])
        for i in range(24):
            client = await ProtocolClient.connect(f"{node.url}?user=u{i}&device=d")
            await client.wait_for("welcome", timeout=10)
            await client.request({"type": "room.join", "room": "r"})
            clients.append(client)
        count = await clients[0].request({"type": "room.count", "room": "r"})
        assert isinstance(count, RoomCountReply) and count.count == 24
        # The admin port is served by a node of its own, with no client port, off the
        # workers' fan-out; it speaks for all of them, and its kicks reach their clients.
        async with ApiClient(node.admin_url) as api:
            for _ in range(6):
                assert (await api.health()).node == "wk-api"
                members = [m.user async for m in api.iter_members("r", page=7)]
                assert sorted(members) == sorted(f"u{i}" for i in range(24))
                assert (await api.presence_of(["u0", "u23"])).users[1].online
            assert sorted(n.node for n in (await api.nodes()).nodes) == [
                "wk-api", "wk-w0", "wk-w1", "wk-w2",
            ]  # fmt: skip
            kicked = await api.kick("u23", message="bye")
            assert kicked.sessions == 1
            await clients[23].wait_for("force_leave", timeout=10)
            await clients[23].wait_closed(timeout=10)
            clients.pop()
        assert "wk-api" not in pid_of  # the client port's health never came from it
        # Kill one worker: its clients resume on the others (the kernel picks), nobody leaves.
        on_node = [_welcome(c).node for c in clients]
        known = [n for n in on_node if n in pid_of]
        victim_node = max(set(known), key=known.count)
        victim = pid_of[str(victim_node)]
        os.kill(victim, signal.SIGKILL)
        dropped = [c for c, n in zip(clients, on_node, strict=True) if n == victim_node]
        await asyncio.gather(*(c.wait_closed(timeout=10) for c in dropped))
        watcher = next(c for c, n in zip(clients, on_node, strict=True) if n != victim_node)
        mark = len(watcher.received)
        for index, client in enumerate(clients):
            if client.closed.is_set():
                welcome = _welcome(client)
                back = await ProtocolClient.connect(
                    f"{node.url}?user=u{index}&device=d&resume={welcome.resume_token}"
                )
                again = await back.wait_for("welcome", timeout=10)
                assert isinstance(again, Welcome) and again.resumed
                clients[index] = back
        await must_not_happen_for(1.0 + 1.5 + 0.5)  # lease + grace: no member.left may come
        left = [m for m in watcher.received[mark:] if isinstance(m, MemberLeft)]
        assert [m.user for m in left if m.user != "u23"] == []  # (u23 was kicked before)
        count = await watcher.request({"type": "room.count", "room": "r"})
        assert isinstance(count, RoomCountReply) and count.count == 23
        # The supervisor started a new worker in the dead one's place.
        deadline = loop.time() + 15
        while len(worker_pids(node.proc.pid)) < 4 or victim in worker_pids(node.proc.pid):
            assert loop.time() < deadline, "the dead worker was not replaced"
            await asyncio.sleep(0.05)  # polling process start-up
    finally:
        for client in clients:
            client.abort()
        assert node.terminate() == 0
        node.cleanup()


def _welcome(client: ProtocolClient) -> Welcome:
    welcome = client.of_type("welcome")[0]
    assert isinstance(welcome, Welcome)
    return welcome


async def must_not_happen_for(seconds: float) -> None:
    """Let time pass in which something must NOT happen (checked afterwards)."""
    await asyncio.sleep(seconds)
