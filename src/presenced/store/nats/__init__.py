"""The NATS broker: fan-out of events between nodes over NATS instead of Redis pub/sub.

Only the broker: presence state stays in Redis/Valkey, so ``--broker nats://...`` is valid only
together with ``--redis`` (make_backplane swaps the Redis backplane's broker for this one).
Needs the ``nats`` extra (nats-py).
"""

from __future__ import annotations

from presenced.store.nats.broker import NatsBroker, escape_channel, unescape_channel

__all__ = ["NatsBroker", "escape_channel", "unescape_channel"]
