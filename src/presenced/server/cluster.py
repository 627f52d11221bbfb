"""Being one of many nodes: the lease, the reaper, and convergence after a store outage.

One task per node (never one per session) ticks every ``lease_interval``:

1. renew this node's lease;
2. now and then, push back the failsafe expiry of everything its sessions keep alive (one
   batch);
3. reap every node whose lease is gone: its sessions enter grace here, from this moment, so
   clients that reconnect anywhere resume without a leave, and those that do not are removed
   when the grace runs out; sessions it was in the middle of ending are finished;
4. if the store could not be reached, report degraded; when it answers again, first take
   back what transitions that failed meanwhile may have left in it (the lifecycle's
   ``repairs``: a connect's record and presence entry, a join's membership, an ending that
   could not be written), then, when it is back or when this node's lease was gone at
   renewal (the store restarted empty, or this node stalled past its ttl), re-assert every
   local session so shared state converges, without events, since nothing changed for the
   clients. A session another node took meanwhile is refused by the owner check and let go
   here. The node is healthy again only once both are done;
5. ping this node's own broker channel: the round trip is the pub/sub lag
   (``presenced_pubsub_lag_seconds``).

Every store or broker call of the task is in this loop, which stops on a flag as well as on
its cancellation: redis-py can swallow a cancellation (the command then returns as if
nothing happened), and a loop that stopped on the cancellation alone would run on and hang
the node's shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import TYPE_CHECKING, Any

from presenced import __version__

if TYPE_CHECKING:
    from presenced.server.node import Node

__all__ = ["LeaseKeeper"]

log = logging.getLogger(__name__)


class LeaseKeeper:
    """The node's membership of the cluster, kept by one periodic task."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.degraded = False
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._ticks = 0
        self.started_at = node.clock.wall()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="lease-keeper")

    async def watch(self) -> None:
        """Tick at once when the store reports an expired lease (the sweep stays on)."""
        await self.node.backplane.nodes.watch(self.poke)

    def poke(self) -> None:
        """Tick now (a lease expired, or a node announced it is leaving)."""
        self._wake.set()

    async def stop(self, *, hand_over: bool) -> None:
        """Stop ticking; with ``hand_over`` drop the lease so survivors reap at once."""
        # The flag as well as the cancel: on Python 3.11 asyncio.wait_for can swallow a
        # cancellation that lands as its wait completes (a poke at that very moment).
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if hand_over:
            try:
                await self.node.backplane.nodes.drop(self.node.node_id)
            except Exception:
                log.warning("could not drop the lease; survivors will reap after it expires")

    async def _run(self) -> None:
        interval = self.node.settings.lease_interval
        while not self._stopping:
            # Cleared before the tick, not after: a poke (or a stop) that comes during the
            # tick is not lost, the next round starts at once. (A cancellation swallowed by a
            # store call in the tick used to leave the stop waiting a whole interval.)
            self._wake.clear()
            await self.tick()
            if self._stopping:
                break
            await self.node.ping_broker()
            if self._stopping:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), interval)

    async def tick(self) -> None:
        """One round: renew, refresh, reap, and converge after an outage."""
        node = self.node
        nodes = node.backplane.nodes
        settings = node.settings
        try:
            held = await nodes.renew(node.node_id, settings.lease_ttl)
            if node.lifecycle.repairs:
                await node.lifecycle.repairs.run()
            if self._ticks == 0:
                # A node restarted under the same id may find its lease still held: what
                # its previous life owned is not in this process, so reap it like a dead
                # node's.
                await self.reap_previous_life()
            elif self.degraded or not held:
                await self.reassert()
            if self.degraded:
                log.warning("store reachable again: node %s is healthy", node.node_id)
                self.degraded = False
            if node.backplane.broker.connected:
                node.link_stale = False
            self._ticks += 1
            every = max(1, int(settings.session_ttl / 4 / settings.lease_interval))
            if self._ticks % every == 0:
                await nodes.refresh(node.registry, settings.session_ttl)
            await nodes.report(node.node_id, self.report(), settings.lease_ttl)
            await self.sweep()
            # Old history goes by age even in rooms nobody touches (memory store).
            expire_every = max(
                1, int(min(60.0, settings.history_ttl / 4) / settings.lease_interval)
            )
            if self._ticks % expire_every == 0:
                await node.backplane.messages.expire(node.clock.wall())
        except Exception as exc:
            if not self.degraded:
                log.error("store unreachable, node %s is degraded: %s", node.node_id, exc)
            self.degraded = True
        finally:
            node.rearm()

    def report(self) -> dict[str, Any]:
        """What this node says about itself each tick (the admin API's ``/v1/nodes``)."""
        node = self.node
        return {
            "status": "draining" if node.draining else "degraded" if node.degraded else "ok",
            "version": __version__,
            "pid": os.getpid(),
            "connections": node.connection_count,
            "sessions": node.session_count,
            "rooms": len(node.fanout.rooms.keys()),
            "started_at": self.started_at,
            "reported_at": node.clock.wall(),
        }

    async def sweep(self) -> dict[str, int]:
        """Reap every node whose lease is gone and that no survivor claimed yet; returns
        each reaped node with the number of its sessions taken over here."""
        node = self.node
        nodes = node.backplane.nodes
        reaped: dict[str, int] = {}
        for dead in await nodes.expired():
            if dead != node.node_id and await nodes.claim(dead):
                reaped[dead] = await self.reap(dead)
        return reaped

    async def reap(self, dead: str) -> int:
        """Adopt a dead node's sessions into grace here; finish the ones it was ending.
        Returns how many sessions that was, both kinds."""
        adopted, finished = await self.node.lifecycle.reap(dead)
        log.info(
            "reaped node %s: %d sessions in grace here, %d endings finished",
            dead,
            adopted,
            finished,
        )
        return adopted + finished

    async def reap_previous_life(self) -> None:
        """Sessions recorded under this node's id that this process never had (it restarted
        with the same id): into grace here, or finish ending them."""
        node = self.node
        count = await node.lifecycle.reap_previous_life()
        if count:
            log.info("node %s took over %d sessions of its previous life", node.node_id, count)

    async def reassert(self) -> None:
        """Write every local session back into the store (after an outage or an empty
        restart), silently; then check every room's streams against the store."""
        node = self.node
        count = await node.lifecycle.reassert()
        log.info("re-asserted %d sessions of node %s", count, node.node_id)
        # Streams may have moved on (or started over) while the store was away.
        node.resync_rooms()
