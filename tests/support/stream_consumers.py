"""Real consumers of the three stream sinks, for tests: what an app's backend would run.

Each reads everything its sink wrote so far, keeps it in order of arrival and is polled
(tests wait on what it has read, with a timeout): :class:`RedisStreamConsumer` with
``XRANGE`` after the last entry read, :class:`JetStreamConsumer` with an ephemeral pull
consumer from the stream's start, :class:`KafkaConsumer` with an aiokafka consumer on every
partition of the topic from the earliest offset. Each :class:`Got` holds the decoded event
and what the transport carried beside it (the id field or header, the subject, the record
key and partition), so a test checks both.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from typing import Any

__all__ = ["Got", "JetStreamConsumer", "KafkaConsumer", "RedisStreamConsumer", "first_copies"]


@dataclass(frozen=True)
class Got:
    event: dict[str, Any]
    id: str
    """The id the transport carries: the entry's ``id`` field, ``Nats-Msg-Id``, header ``id``."""
    where: str = ""
    """The NATS subject, or the Kafka partition (as text)."""
    key: str | None = None
    """The Kafka record key."""
    headers: dict[str, str] | None = None


def first_copies(got: list[Got]) -> list[Got]:
    """What a consumer that de-duplicates on the id keeps: each event's first copy."""
    seen: set[str] = set()
    kept = []
    for g in got:
        if g.id not in seen:
            seen.add(g.id)
            kept.append(g)
    return kept


class RedisStreamConsumer:
    """Reads a Redis stream with XRANGE, from its start."""

    def __init__(self, port: int, stream: str) -> None:
        from redis.asyncio import Redis

        self.stream = stream
        self.got: list[Got] = []
        self._last = "-"
        self._redis = Redis(host="127.0.0.1", port=port)

    async def poll(self) -> list[Got]:
        start = "-" if self._last == "-" else f"({self._last}"
        for entry_id, fields in await self._redis.xrange(self.stream, start, "+"):
            self._last = entry_id.decode()
            assert set(fields) == {b"id", b"event"}, fields
            self.got.append(Got(json.loads(fields[b"event"]), fields[b"id"].decode()))
        return self.got

    async def length(self) -> int:
        return int(await self._redis.xlen(self.stream))

    async def close(self) -> None:
        await self._redis.aclose()


class JetStreamConsumer:
    """Reads a JetStream stream from its start through an ephemeral pull consumer (once the
    stream exists: the sink creates it)."""

    def __init__(self, url: str, stream: str, subject: str) -> None:
        self.url = url
        self.stream = stream
        self.subject = subject
        self.got: list[Got] = []
        self._nc: Any = None
        self._sub: Any = None

    async def poll(self) -> list[Got]:
        import nats
        from nats.js.errors import NotFoundError

        if self._nc is None:
            self._nc = await nats.connect(self.url)
        if self._sub is None:
            try:
                self._sub = await self._nc.jetstream().pull_subscribe(
                    f"{self.subject}.>", stream=self.stream
                )
            except NotFoundError:
                return self.got  # not created yet
        while True:
            try:
                msgs = await self._sub.fetch(batch=500, timeout=0.2)
            except TimeoutError:  # nats-py's, or asyncio's (raised by fetch too)
                return self.got
            for msg in msgs:
                await msg.ack()
                headers = dict(msg.headers or {})
                self.got.append(
                    Got(json.loads(msg.data), headers["Nats-Msg-Id"], msg.subject, None, headers)
                )

    async def close(self) -> None:
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.close()


class KafkaConsumer:
    """Reads a Kafka topic from the earliest offset of each partition (no group). The
    topic is created first, with ``partitions``, so that keys spread over several."""

    def __init__(self, bootstrap: str, topic: str, partitions: int = 3) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.partitions = partitions
        self.got: list[Got] = []
        self._consumer: Any = None

    async def create(self) -> KafkaConsumer:
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic

        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(self.topic, self.partitions, 1)])
        finally:
            await admin.close()
        return self

    async def poll(self) -> list[Got]:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        if self._consumer is None:
            self._consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
            )
            await self._consumer.start()
            parts = [TopicPartition(self.topic, p) for p in range(self.partitions)]
            self._consumer.assign(parts)
        batches = await self._consumer.getmany(timeout_ms=100)
        for part, records in sorted(batches.items(), key=lambda item: item[0].partition):
            for r in records:
                headers = {k: v.decode() for k, v in r.headers}
                self.got.append(
                    Got(json.loads(r.value), headers["id"], str(part.partition),
                        r.key.decode(), headers)
                )  # fmt: skip
        return self.got

    async def close(self) -> None:
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                await self._consumer.stop()
