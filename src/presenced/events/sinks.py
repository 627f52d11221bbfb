"""The sinks a node's settings ask for, each with its policy (filter, batching, retries).

Sinks are named by kind and place in their setting (``webhook-1``, ``redis-stream-1``,
``nats-1``, ``kafka-1``, ...): with a shared store each sink reads the outbox through a
consumer group of that name, so the names must be the same on every node and across
restarts; configure the same sinks on every node. The stream sinks' modules import their
client packages (redis, nats-py, aiokafka) only when they first deliver.
"""

from __future__ import annotations

from presenced.clock import Clock
from presenced.config import Settings
from presenced.config.sinks import Delivery
from presenced.events.export import EventExport, Sink, SinkPolicy
from presenced.events.jetstream import JetStreamSink
from presenced.events.kafka import KafkaSink
from presenced.events.model import EventFilter
from presenced.events.outbox_feed import Outbox
from presenced.events.redis_stream import RedisStreamSink
from presenced.events.webhook import WebhookSink

__all__ = ["export_from_settings", "sinks_from_settings"]


def export_from_settings(
    settings: Settings, node_id: str, clock: Clock, outbox: Outbox | None = None
) -> EventExport:
    """The node's export: every configured sink, through the shared store's ``outbox``
    when there is one."""
    sinks = sinks_from_settings(settings, clock)
    return EventExport(node_id, clock, sinks, outbox=outbox, lead_lease=settings.lease_ttl)


def sinks_from_settings(settings: Settings, clock: Clock) -> list[tuple[Sink, SinkPolicy]]:
    """One sink per webhook receiver and per stream sink, in the settings' order."""
    sinks: list[tuple[Sink, SinkPolicy]] = []
    for number, hook in enumerate(settings.webhooks or (), 1):
        webhook = WebhookSink(
            f"webhook-{number}",
            hook.url,
            settings.webhook_secret or (),
            timeout=settings.webhook_timeout,
            wall=clock.wall,
        )
        delivery = Delivery(
            settings.webhook_batch,
            settings.webhook_tries,
            settings.webhook_backoff,
            settings.webhook_timeout,
        )
        sinks.append((webhook, _policy(hook.events, delivery)))
    for number, stream in enumerate(settings.redis_stream_sinks or (), 1):
        redis = RedisStreamSink(
            f"redis-stream-{number}",
            stream.url,
            stream.stream,
            maxlen=stream.maxlen,
            timeout=stream.delivery.timeout,
        )
        sinks.append((redis, _policy(stream.events, stream.delivery)))
    for number, target in enumerate(settings.nats_sinks or (), 1):
        nats = JetStreamSink(
            f"nats-{number}",
            target.url,
            target.stream,
            target.subject,
            timeout=target.delivery.timeout,
        )
        sinks.append((nats, _policy(target.events, target.delivery)))
    for number, topic in enumerate(settings.kafka_sinks or (), 1):
        kafka = KafkaSink(
            f"kafka-{number}",
            topic.servers,
            topic.topic,
            dead_letter_topic=topic.dead_letter_topic,
            idempotent=topic.idempotent,
            timeout=topic.delivery.timeout,
        )
        sinks.append((kafka, _policy(topic.events, topic.delivery)))
    return sinks


def _policy(events: tuple[str, ...], delivery: Delivery) -> SinkPolicy:
    return SinkPolicy(
        filter=EventFilter(events),
        batch_size=delivery.batch,
        tries=delivery.tries,
        backoff_min=delivery.backoff,
        backoff_max=max(60.0, delivery.backoff),
    )
