"""The Kafka sink: each event one record on the topic, keyed by the event's ``key``.

The record's key is the event's ``key`` (``room:<id>`` or ``user:<id>``), so the default
partitioner (murmur2, as the Java client's) puts a room's or a user's events on one
partition, in order; its value is the event as JSON (exactly as in a webhook body); its
header ``id`` is the event id (a consumer de-duplicates on it). The producer waits for
every in-sync replica (``acks=all``); the idempotent producer is used only when asked
(``idempotent=1``: Apache Kafka and Redpanda have it, Kafka-compatible brokers such as
tansu do not).

A batch is split by partition and each partition's part is sent as one record batch, which
the broker appends whole or not at all: a failed delivery leaves no partial tail on a
partition that its retry would follow out of order (the retry may append again what another
partition had taken: at least once, de-duplicate on ``id``). A part too large for one
record batch goes as several, each after the previous one was acked.

With a ``dead_letter_topic``, a batch that used up its tries is also produced there, once,
as the same records plus the headers ``dead_letter`` (the letter's id, as the admin API
lists it), ``sink`` and ``error``: the store's dead letters are still kept, and are what a
replay uses. The ``aiokafka`` package is imported when the sink first delivers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from presenced.events.model import Event, encode_event

if TYPE_CHECKING:
    from presenced.events.export import DeadLetter

__all__ = ["KafkaSink"]

MAX_BATCH_BYTES = 1024 * 1024
"""The size of one record batch (and of one produce request): aiokafka's request limit,
so that a sink batch of the default 100 events is one record batch per partition."""


class KafkaSink:
    """Produces each batch to ``topic`` on the cluster that ``servers`` bootstrap."""

    def __init__(
        self,
        name: str,
        servers: Sequence[str],
        topic: str,
        *,
        dead_letter_topic: str | None = None,
        idempotent: bool = False,
        timeout: float = 10.0,
    ) -> None:
        self.name = name
        self.servers = list(servers)
        self.topic = topic
        self.dead_letter_topic = dead_letter_topic
        self.idempotent = idempotent
        self.timeout = timeout
        self._producer: Any = None
        self._partitioner: Any = None

    async def _started(self) -> Any:
        if self._producer is None:
            from aiokafka import AIOKafkaProducer
            from aiokafka.partitioner import DefaultPartitioner

            producer = AIOKafkaProducer(
                bootstrap_servers=self.servers,
                client_id=f"presenced-{self.name}",
                acks="all",
                enable_idempotence=self.idempotent,
                request_timeout_ms=int(self.timeout * 1000),
                max_batch_size=MAX_BATCH_BYTES,
                max_request_size=MAX_BATCH_BYTES,
                linger_ms=0,
            )
            try:
                await asyncio.wait_for(producer.start(), self.timeout)
            except BaseException:
                with contextlib.suppress(Exception):
                    await producer.stop()
                raise
            self._producer = producer
            self._partitioner = DefaultPartitioner()
        return self._producer

    async def deliver(self, events: Sequence[Event]) -> None:
        await self._produce(self.topic, events, [])

    async def dead_letter(self, letter: DeadLetter) -> None:
        """Produce a batch that used up its tries to the dead-letter topic, if there is one."""
        if self.dead_letter_topic is None or not letter.events:
            return
        headers = [
            ("dead_letter", letter.id.encode()),
            ("sink", letter.sink.encode()),
            ("error", letter.error.encode()),
        ]
        await self._produce(self.dead_letter_topic, letter.events, headers)

    async def _produce(
        self, topic: str, events: Sequence[Event], headers: list[tuple[str, bytes]]
    ) -> None:
        producer = await self._started()
        async with asyncio.timeout(self.timeout):
            partitions = sorted(await producer.partitions_for(topic))
            parts: dict[int, list[Event]] = {}
            for event in events:
                key = event.key.encode()
                parts.setdefault(self._partitioner(key, partitions, partitions), []).append(event)
            await asyncio.gather(
                *(self._send_part(producer, topic, p, part, headers) for p, part in parts.items())
            )

    async def _send_part(
        self,
        producer: Any,
        topic: str,
        partition: int,
        events: list[Event],
        headers: list[tuple[str, bytes]],
    ) -> None:
        """One partition's events, as few record batches as fit, each acked before the next."""
        batch = producer.create_batch()
        count = 0
        for event in events:
            record = {
                "key": event.key.encode(),
                "value": encode_event(event),
                "timestamp": None,
                "headers": [("id", event.id.encode()), *headers],
            }
            if batch.append(**record) is None:  # full
                if count == 0:
                    raise ValueError(f"event {event.id} is larger than a record batch")
                await self._send_batch(producer, batch, topic, partition)
                batch, count = producer.create_batch(), 0
                if batch.append(**record) is None:
                    raise ValueError(f"event {event.id} is larger than a record batch")
            count += 1
        if count:
            await self._send_batch(producer, batch, topic, partition)

    @staticmethod
    async def _send_batch(producer: Any, batch: Any, topic: str, partition: int) -> None:
        batch.close()
        acked = await producer.send_batch(batch, topic, partition=partition)
        # Waited on without being cancelled along with this task (a timed-out delivery):
        # aiokafka hands out a shield of its batch's future, and a cancelled shield leaves
        # the batch's eventual failure unretrieved ("Future exception was never retrieved").
        acked.add_done_callback(_retrieve)
        await asyncio.wait([acked])
        acked.result()  # raises the broker's refusal or aiokafka's error

    async def close(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            with contextlib.suppress(Exception):
                await producer.stop()

    def __repr__(self) -> str:
        return f"KafkaSink({self.name!r}, topic={self.topic!r})"


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a batch's outcome as seen (the delivery that gave up on it has its own error)."""
    if not future.cancelled():
        future.exception()
