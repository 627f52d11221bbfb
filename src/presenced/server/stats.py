"""The node's counters: plain integers bumped on the hot path, read at scrape time.

Counting must cost next to nothing per event, so a counter here is an ``int`` attribute of a
slotted object that the code which sees the event increments (``stats.deliveries += 1``), and
a labelled counter is a small dict. Nothing here knows Prometheus: the admin port's collector
(:mod:`presenced.http.metrics`) turns these into metric families when it is scraped, and
``--workers`` sums them across processes from there.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable

from presenced.protocol.codes import CloseCode

__all__ = [
    "LATENCY_BUCKETS",
    "Histogram",
    "NodeStats",
    "close_code_label",
    "event_type",
    "frame_type",
]

LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip
"""Upper bounds (seconds) of the latency histograms' buckets; +Inf is implied. Fixed, so
histograms of several processes add up bucket by bucket."""

_KNOWN_CLOSE = frozenset(
    [1000, 1001, 1002, 1003, 1005, 1006, 1007, 1008, 1009, 1010, 1011, 1012, 1013]
    + [int(c) for c in CloseCode]
)
_TYPE_PREFIX = b'{"type":"'


def close_code_label(code: int) -> str:
    """The label of a close code: known codes by number, anything a client made up is
    ``other`` (so a client cannot create series at will)."""
    return str(code) if code in _KNOWN_CLOSE else "other"


def frame_type(payload: bytes) -> bytes | None:
    """The ``type`` of an encoded server event, as the bytes the codec wrote first, or None
    for a frame that is not one (node notices). No decoding: this runs per publish."""
    if not payload.startswith(_TYPE_PREFIX):
        return None
    end = payload.find(b'"', 9, 64)
    return payload[9:end] if end > 0 else None


def event_type(payload: bytes) -> str | None:
    """:func:`frame_type` as text."""
    kind = frame_type(payload)
    return None if kind is None else kind.decode("ascii", "replace")


class Histogram:
    """Counts of observations per bucket of :data:`LATENCY_BUCKETS` (not cumulative; the
    last slot is +Inf), their sum and count."""

    __slots__ = ("buckets", "count", "sum")

    def __init__(self) -> None:
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        self.buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.sum += seconds
        self.count += 1

    def add(self, buckets: Iterable[int], total: float, count: int) -> None:
        """Add another histogram's counts (same buckets) to this one."""
        self.buckets = [a + b for a, b in zip(self.buckets, buckets, strict=True)]
        self.sum += total
        self.count += count


def _bump(counts: dict[str, int], key: str) -> None:
    counts[key] = counts.get(key, 0) + 1


class NodeStats:
    """Every counter of one node. The code that sees an event increments its attribute;
    the collector reads them when Prometheus scrapes."""

    __slots__ = (
        "auth_failures",
        "closed",
        "connections_opened",
        "connections_refused",
        "deliveries",
        "heartbeats",
        "messages_in",
        "published",
        "pubsub_lag",
        "pubsub_lag_last",
        "rate_limited",
        "read_pauses",
        "slow_consumer_closes",
        "store_calls",
        "unsent",
    )

    def __init__(self) -> None:
        self.connections_opened = 0
        self.closed: dict[str, int] = {}  # by close code label
        self.connections_refused: dict[str, int] = {}  # by limit: "ip", "user"
        self.auth_failures: dict[str, int] = {}  # by reason
        self.heartbeats = 0
        self.messages_in = 0  # message.send accepted
        # Frames handed to client sockets: counted by the caller, once per broadcast for the
        # fan-out (server/fanout.py); those a socket did not take (closing, or far over its
        # send buffer) are counted in ``unsent``, so written = deliveries - unsent.
        self.deliveries = 0
        self.unsent = 0
        # Events published, by type (the type's bytes: decoded when scraped).
        self.published: dict[bytes, int] = {}
        self.slow_consumer_closes = 0
        self.rate_limited: dict[str, int] = {}  # "request" (rate_limit), "message"
        self.read_pauses = 0  # reads paused for a flooder (Connection._strike)
        self.store_calls: dict[str, Histogram] = {}  # latency by store operation
        self.pubsub_lag = Histogram()  # round trip of a ping on the node's own channel
        self.pubsub_lag_last: float | None = None

    def connection_closed(self, code: int) -> None:
        _bump(self.closed, close_code_label(code))

    def connection_refused(self, limit: str) -> None:
        """A connection refused over a connection limit (4012): ``ip`` or ``user``."""
        _bump(self.connections_refused, limit)

    def auth_failed(self, reason: str) -> None:
        _bump(self.auth_failures, reason)

    def was_rate_limited(self, kind: str) -> None:
        _bump(self.rate_limited, kind)

    def event_published(self, payload: bytes) -> None:
        """Count one published frame by its type (the broker wrapper inlines this)."""
        kind = frame_type(payload)
        if kind is not None:
            self.published[kind] = self.published.get(kind, 0) + 1

    def published_by_type(self) -> dict[str, int]:
        return {k.decode("ascii", "replace"): n for k, n in self.published.items()}

    def store_histogram(self, operation: str) -> Histogram:
        histogram = self.store_calls.get(operation)
        if histogram is None:
            histogram = self.store_calls[operation] = Histogram()
        return histogram

    def lag_measured(self, seconds: float) -> None:
        self.pubsub_lag.observe(seconds)
        self.pubsub_lag_last = seconds
