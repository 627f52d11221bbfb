"""The event export's rules without a network: filters, keys and sequence numbers, the queue
bound, backoff, signatures, dead letters and replay (a sink that is a list)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Sequence

import pytest

from presenced.config import Settings
from presenced.errors import ConfigError
from presenced.events.export import EventExport, SinkPolicy, _backoff
from presenced.events.model import CATALOGUE, Event, EventFilter
from presenced.events.webhook import sign
from presenced.store.redis.outbox import STORE_WRITTEN
from presenced.testing import ManualClock


class ListSink:
    """Accepts batches into a list; refuses the next ``fail`` deliveries."""

    def __init__(self, name: str = "list", fail: int = 0, close_fails: bool = False) -> None:
        self.name = name
        self.fail = fail
        self.close_fails = close_fails
        self.closed = False
        self.batches: list[list[Event]] = []
        self.arrived = asyncio.Event()

    async def deliver(self, events: Sequence[Event]) -> None:
        if self.fail:
            self.fail -= 1
            raise ConnectionError("receiver down")
        self.batches.append(list(events))
        self.arrived.set()

    async def close(self) -> None:
        self.closed = True
        if self.close_fails:
            raise ConnectionResetError("Connection lost")  # as nats-py's close on a lost link


FAST = {"linger": 0.0, "backoff_min": 0.001, "backoff_max": 0.002}


def test_the_default_filter_takes_everything_but_typing() -> None:
    default = EventFilter()
    assert all(default(t) for t in CATALOGUE if not t.startswith("typing."))
    assert not default("typing.started") and not default("typing.stopped")
    assert EventFilter(["typing.*"])("typing.started")
    assert EventFilter(["typing.started"])("typing.started")
    members = EventFilter(["member.*", "user.offline"])
    assert members("member.left") and members("user.offline") and not members("user.online")
    assert EventFilter.unknown(["member.*", "membr.*", "user.offline"]) == ["membr.*"]


def test_keys_and_sequence_numbers() -> None:
    clock = ManualClock()
    sink = ListSink()
    export = EventExport("n1", clock, [(sink, SinkPolicy())])
    runner = export.runners[0]
    export.emit("member.joined", room="r", user="u")
    export.emit("member.joined", room="r", user="v")
    export.emit("user.online", user="u")
    export.emit("session.opened", user="u", room=None)
    first, second, online, opened = runner.queue
    assert first.key == second.key == "room:r" and online.key == opened.key == "user:u"
    assert first.seq == int(clock.wall() * 1000) and second.seq == first.seq + 1
    assert opened.seq == online.seq + 1
    assert len({e.id for e in runner.queue}) == 4 and first.node == "n1" and first.v == 1
    # A key is forgotten when its room goes: the next number comes from the wall clock,
    # still above every number the key had.
    export.emit("room.vacated", room="r")
    clock.advance(0.5)
    export.emit("room.occupied", room="r")
    vacated, occupied = list(runner.queue)[-2:]
    assert occupied.seq > vacated.seq > second.seq


def test_no_sink_no_work_and_a_full_queue_drops_the_newest() -> None:
    quiet = EventExport("n1", ManualClock())
    quiet.emit("user.online", user="u")
    assert not quiet.enabled
    sink = ListSink()
    export = EventExport("n1", ManualClock(), [(sink, SinkPolicy(queue_size=2))])
    for n in range(5):
        export.emit("user.status", user="u", data={"n": n})
    runner = export.runners[0]
    assert [e.data["n"] for e in runner.queue] == [0, 1] and runner.stats.dropped == 3


def test_backoff_doubles_with_jitter_up_to_the_limit() -> None:
    policy = SinkPolicy(backoff_min=1.0, backoff_max=8.0)
    for attempt, step in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)]:
        delays = [_backoff(attempt, policy) for _ in range(50)]
        assert all(step / 2 <= d <= step for d in delays)
        assert len(set(delays)) > 1


def test_the_signature_is_hmac_sha256_over_timestamp_and_body() -> None:
    body = b'{"events":[]}'
    expected = hmac.new(b"k" * 16, b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign("k" * 16, 1_700_000_000, body) == expected


async def test_batches_keep_the_order_and_a_refused_batch_is_retried() -> None:
    sink = ListSink(fail=2)
    export = EventExport("n1", ManualClock(), [(sink, SinkPolicy(batch_size=3, **FAST))])
    for n in range(7):
        export.emit("member.joined", room="r", user=f"u{n}")
    export.start()
    assert await export.runners[0].drained(2.0)
    assert [len(b) for b in sink.batches] == [3, 3, 1]
    assert [e.user for b in sink.batches for e in b] == [f"u{n}" for n in range(7)]
    assert export.runners[0].stats.failures == 2 and export.runners[0].stats.delivered == 7
    await export.close()


async def test_a_sink_that_fails_to_close_does_not_stop_the_shutdown(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broken, healthy = ListSink("broken", close_fails=True), ListSink("healthy")
    export = EventExport(
        "n1", ManualClock(), [(broken, SinkPolicy(**FAST)), (healthy, SinkPolicy(**FAST))]
    )
    export.emit("member.joined", room="r", user="u")
    export.start()
    await export.close()
    assert broken.closed and healthy.closed  # the next sink was still closed
    assert [e.user for b in healthy.batches for e in b] == ["u"]
    assert "sink broken: closing failed: ConnectionResetError" in caplog.text


async def test_a_dead_letter_is_kept_and_replayed_ahead_of_the_queue() -> None:
    sink = ListSink(fail=3)
    policy = SinkPolicy(batch_size=10, tries=3, **FAST)
    export = EventExport("n1", ManualClock(), [(sink, policy)])
    export.emit("member.joined", room="r", user="first")
    export.start()
    assert await export.runners[0].drained(2.0)
    (letter,) = export.dead_letters()
    assert letter.tries == 3 and "receiver down" in letter.error and sink.batches == []
    assert export.replay("nope") is None
    assert export.replay(letter.id) is letter and export.dead_letters() == []
    assert await export.runners[0].drained(2.0)
    assert [e.id for b in sink.batches for e in b] == [letter.events[0].id]
    await export.close()


def test_webhook_settings_are_checked() -> None:
    hooks = Settings().replace(
        webhooks="http://a.example/h https://b.example/h#events=member.*+user.offline",
        webhook_secret="old-secret-123456,new-secret-123456",
    )
    assert [(h.url, h.events) for h in hooks.webhooks or ()] == [
        ("http://a.example/h", ("*",)),
        ("https://b.example/h", ("member.*", "user.offline")),
    ]
    assert hooks.webhook_secret == ("old-secret-123456", "new-secret-123456")
    for value, said in [
        ("a.example/h", "is not an http(s) URL"),
        ("http://a/h#evts=member.*", "is not #events="),
        ("http://a/h#events=members.*", "matches no event type"),
    ]:
        with pytest.raises(ConfigError) as err:
            Settings().replace(webhooks=value, webhook_secret="x" * 16)
        assert err.value.key == "webhooks" and said in str(err.value)
    with pytest.raises(ConfigError) as err:
        Settings().replace(webhooks="http://a/h", webhook_secret="short")
    assert err.value.key == "webhook_secret" and "fewer than 16" in str(err.value)
    with pytest.raises(ConfigError) as err:
        Settings().replace(webhooks="http://a/h")
    assert err.value.key == "webhook_secret"


def test_every_event_type_is_written_by_the_script_of_its_transition() -> None:
    # On Valkey/Redis no type is left to the node's writer (a kill -9 after the change
    # would lose it): a new type needs its script's export (store/redis/lua/_export.lua).
    assert set(CATALOGUE) == STORE_WRITTEN
