"""``POST /v1/cleanup`` on real node processes sharing one Valkey, after ``kill -9``.

What a backend sees through the admin API when it asks for a cleanup: after a node was
killed, the cleanup reaps exactly that node's sessions (into grace on the node that answered,
so they can still resume; when the grace runs out the rooms see ``member.left`` with reason
``node_lost``) and touches nobody else's; after a whole-cluster crash a fresh node answers
with no ghost; memberships and presence entries that no session record backs are removed and
counted, one per (room, session) and per (user, session). A second cleanup removes nothing.

This module's Valkey refuses ``CONFIG`` and emits no keyspace events, as many managed Redis
services do: nodes then find dead nodes by their lease sweep alone (``RedisNodeStore.watch``
carries on without the events). With a long ``lease_interval`` on the survivor, the cleanup
call is what reaps the dead node, not a race with the survivor's own sweep.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from presenced.api import ApiClient
from presenced.api.models import CleanupReport
from presenced.protocol.messages import MemberJoined, MemberLeft, Welcome
from presenced.store.redis import redis_backplane
from presenced.testing import ProtocolClient
from presenced.typing import RoomId, SessionId, UserId
from tests.multinode.conftest import Dial, StartNodes
from tests.support.nodes import PresencedNode
from tests.support.valkey import ValkeyProcess
from tests.support.waiting import eventually

# The survivor sweeps at start and then only every 10 s: within a test, only the cleanup
# call reaps. The nodes that get killed lose their lease 1 s after the kill.
SURVIVOR = {"lease_ttl": "30", "lease_interval": "10", "grace": "1"}
DOOMED = {"lease_ttl": "1", "lease_interval": "0.2"}
NOTHING = CleanupReport(nodes_reaped=[], sessions_reaped=0, members_removed=0, presence_removed=0)


@pytest.fixture(scope="module")
def valkey() -> Iterator[ValkeyProcess]:
    """A Valkey without keyspace events that refuses CONFIG (so no node can turn them on)."""
    server = ValkeyProcess(
        args=["--notify-keyspace-events", "", "--rename-command", "CONFIG", ""]
    ).start()
    yield server
    server.cleanup()


def session_of(client: ProtocolClient) -> str:
    welcome = client.of_type("welcome")[0]
    assert isinstance(welcome, Welcome)
    return welcome.session


def joined(user: str, room: str = "r") -> Callable[[object], bool]:
    return lambda m: isinstance(m, MemberJoined) and (m.user, m.room) == (user, room)


def left(user: str, room: str = "r") -> Callable[[object], bool]:
    return lambda m: isinstance(m, MemberLeft) and (m.user, m.room) == (user, room)


def leaves(client: ProtocolClient) -> list[tuple[str, str, str]]:
    return sorted((m.room, m.user, m.reason) for m in client.received if isinstance(m, MemberLeft))


async def members(api: ApiClient, room: str) -> dict[str, list[str]]:
    """The room as the API lists it: each member user with its session ids."""
    return {m.user: sorted(m.sessions) for m in (await api.members(room, hidden=True)).members}


async def presence(api: ApiClient, user: str) -> tuple[bool, list[tuple[str, str, str]]]:
    """Whether the user is online, and each of its sessions as (id, node, state)."""
    detail = await api.presence(user)
    return detail.online, sorted((s.session, s.node, s.state) for s in detail.sessions)


async def lease_gone(api: ApiClient, *dead: PresencedNode) -> bool:
    """Every node in ``dead`` is listed without a lease (expired, not yet reaped)."""
    listed = {n.node: n.alive for n in (await api.nodes()).nodes}
    return all(listed.get(node.node_id) is False for node in dead)


async def test_cleanup_after_kill_9_reaps_exactly_the_dead_nodes_sessions(
    start_nodes: StartNodes, dial: Dial
) -> None:
    """A holds alice, dave and one of erin's devices; B holds bob (two devices), carol and
    erin's other device. B is killed; once its lease is gone, a cleanup on A reports B
    reaped with its four sessions, which are now in grace on A (not ghosts: nothing else is
    removed). When A's grace runs out, A's clients see bob and carol leave with reason
    ``node_lost``; erin stays a member on her one device left; A's own users are untouched."""
    (a,) = start_nodes(1, **SURVIVOR)
    (b,) = start_nodes(1, **DOOMED)
    alice = await dial(a, "alice", "a")
    dave = await dial(a, "dave", "a")
    erin_a = await dial(a, "erin", "a")
    bob1 = await dial(b, "bob", "b1")
    bob2 = await dial(b, "bob", "b2")
    carol = await dial(b, "carol", "b")
    erin_b = await dial(b, "erin", "b")
    for client in (alice, dave, erin_a, bob1, bob2, carol, erin_b):
        await client.request({"type": "room.join", "room": "r"})
    await alice.request({"type": "room.join", "room": "s"})
    await bob1.request({"type": "room.join", "room": "s"})
    for user in ("bob", "carol", "erin"):
        await alice.wait_for(joined(user))
    await alice.wait_for(joined("bob", "s"))
    on_a = {u: session_of(c) for u, c in (("alice", alice), ("dave", dave), ("erin", erin_a))}
    on_b = [session_of(c) for c in (bob1, bob2, carol, erin_b)]
    mark = len(alice.received)

    async with ApiClient(a.admin_url) as api:
        b.kill()
        await eventually(lambda: lease_gone(api, b), "B's lease expired")
        report = await api.cleanup()
        assert report == CleanupReport(
            nodes_reaped=[b.node_id], sessions_reaped=4, members_removed=0, presence_removed=0
        )
        # B's sessions are A's now, in grace (they could resume here or anywhere).
        bob_in_grace = (True, sorted((s, a.node_id, "grace") for s in on_b[:2]))

        async def adopted() -> bool:
            return await presence(api, "bob") == bob_in_grace

        await eventually(adopted, "bob's sessions in grace on A", timeout=0.9)
        # What A's users see when the grace has run out: B's users left, nobody else.
        for user in ("bob", "carol"):
            await alice.wait_for(left(user), start=mark, timeout=5)
        await alice.wait_for(left("bob", "s"), start=mark, timeout=5)

        async def erin_down_to_one() -> bool:
            return (await presence(api, "erin"))[1] == [(on_a["erin"], a.node_id, "active")]

        await eventually(erin_down_to_one, "erin's device on B ended")
        assert leaves(alice) == [
            ("r", "bob", "node_lost"),
            ("r", "carol", "node_lost"),
            ("s", "bob", "node_lost"),
        ]
        for watcher in (dave, erin_a):
            await watcher.wait_for(left("bob"), timeout=5)
            await watcher.wait_for(left("carol"), timeout=5)
            assert leaves(watcher) == [("r", "bob", "node_lost"), ("r", "carol", "node_lost")]
        assert await members(api, "r") == {u: [s] for u, s in on_a.items()}
        assert await members(api, "s") == {"alice": [on_a["alice"]]}
        for user, session in on_a.items():
            assert await presence(api, user) == (True, [(session, a.node_id, "active")])
        for user in ("bob", "carol"):
            assert await presence(api, user) == (False, [])
        assert await api.cleanup() == NOTHING


async def test_whole_cluster_crash_leaves_no_ghost_on_a_fresh_node(
    start_nodes: StartNodes, dial: Dial
) -> None:
    """Both nodes are killed; a fresh node on the same Valkey and prefix reaps them (its own
    sweep or the cleanup, whichever comes first: both are bounded) and, once its grace has
    run out, the API shows nobody of the old cluster, and its own new client is untouched."""
    n1, n2 = start_nodes(2, **DOOMED)
    alice = await dial(n1, "alice")
    bob = await dial(n2, "bob")
    carol = await dial(n2, "carol")
    for client in (alice, bob, carol):
        await client.request({"type": "room.join", "room": "r"})
    for user in ("bob", "carol"):
        await alice.wait_for(joined(user))
    n1.kill()
    n2.kill()
    (fresh,) = start_nodes(1, grace="0.5")
    dave = await dial(fresh, "dave")
    await dave.request({"type": "room.join", "room": "r"})
    dave_session = session_of(dave)

    async with ApiClient(fresh.admin_url) as api:

        async def old_leases_gone() -> bool:
            return all(
                n.alive is False for n in (await api.nodes()).nodes if n.node != fresh.node_id
            )

        await eventually(old_leases_gone, "the old nodes' leases expired")
        report = await api.cleanup()
        assert set(report.nodes_reaped) <= {n1.node_id, n2.node_id}
        assert report.members_removed == 0 and report.presence_removed == 0
        assert [n.node for n in (await api.nodes()).nodes] == [fresh.node_id]

        async def no_ghosts() -> bool:
            if await members(api, "r") != {"dave": [dave_session]}:
                return False
            for user in ("alice", "bob", "carol"):
                if await presence(api, user) != (False, []):
                    return False
            stats = await api.stats()
            return (stats.users_online, stats.sessions, stats.nodes) == (1, 1, 1)

        await eventually(no_ghosts, "no member or presence of the old cluster left")
        for user in ("alice", "bob", "carol"):
            await dave.wait_for(left(user))
        assert leaves(dave) == [
            ("r", "alice", "node_lost"),
            ("r", "bob", "node_lost"),
            ("r", "carol", "node_lost"),
        ]
        assert await presence(api, "dave") == (True, [(dave_session, fresh.node_id, "active")])
        assert await api.cleanup() == NOTHING


async def test_cleanup_removes_and_counts_orphan_members_and_presence(
    start_nodes: StartNodes, dial: Dial, valkey: ValkeyProcess
) -> None:
    """Memberships and presence entries whose session record is gone: what a whole-cluster
    crash leaves when session records expired before the room and presence keys (their
    failsafe TTLs are set at different moments), and no node was alive to reap them.

    The ghosts are written here through the store API of a Backplane on the node's Valkey
    and key prefix, as a node writes them, minus the session record: a ghost user in two
    rooms and online; an invisible ghost (a hidden member); a stale session of alice, who is
    also connected (she must stay a member and online); a user online in no room. The
    cleanup removes each and counts one per (room, session) and one per (user, session);
    live clients see ``member.left`` (``node_lost``) for the visible ghost only."""
    (node,) = start_nodes(1)
    wall = time.time()
    r, s = RoomId("r"), RoomId("s")
    ghosts = redis_backplane(valkey.url, prefix=str(node.settings["redis_prefix"]))
    try:
        for room in (r, s):
            await ghosts.rooms.add(room, UserId("ghost"), SessionId("ghost-1"), None, False, wall)
        await ghosts.rooms.add(r, UserId("shade"), SessionId("shade-1"), None, True, wall)
        await ghosts.rooms.add(r, UserId("alice"), SessionId("alice-old"), None, False, wall)
        for user, session, status in (
            ("ghost", "ghost-1", "online"),
            ("shade", "shade-1", "invisible"),
            ("alice", "alice-old", "online"),
            ("phantom", "phantom-1", "away"),
        ):
            await ghosts.presence.set(UserId(user), SessionId(session), status, None, wall)
    finally:
        await ghosts.close()
    alice = await dial(node, "alice")
    bob = await dial(node, "bob")
    for client in (alice, bob):
        await client.request({"type": "room.join", "room": "r"})
    await bob.request({"type": "room.join", "room": "s"})
    mark = len(bob.received)

    async with ApiClient(node.admin_url) as api:
        assert set(await members(api, "r")) == {"alice", "bob", "ghost", "shade"}
        assert (await api.presence("phantom")).online
        report = await api.cleanup()
        assert report == CleanupReport(
            nodes_reaped=[], sessions_reaped=0, members_removed=4, presence_removed=4
        )
        await bob.wait_for(left("ghost"), start=mark)
        await bob.wait_for(left("ghost", "s"), start=mark)
        assert await members(api, "r") == {"alice": [session_of(alice)], "bob": [session_of(bob)]}
        assert await members(api, "s") == {"bob": [session_of(bob)]}
        for user in ("ghost", "shade", "phantom"):
            assert await presence(api, user) == (False, [])
        assert await presence(api, "alice") == (True, [(session_of(alice), node.node_id, "active")])
        assert (await api.presence("alice")).devices == 1
        assert (await api.stats()).users_online == 2
        assert leaves(bob) == [("r", "ghost", "node_lost"), ("s", "ghost", "node_lost")]
        assert not [m for m in alice.received if isinstance(m, MemberLeft) and m.user == "alice"]
        assert await api.cleanup() == NOTHING
