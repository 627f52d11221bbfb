"""The stream sinks' settings: ``redis_stream_sinks``, ``nats_sinks``, ``kafka_sinks``.

Their forms and defaults, the errors (each names the setting and the allowed form, never a
password), a missing client package, and the sinks built from them: names stable across
nodes, the delivery parameters in each policy, and no client package imported until a sink
delivers.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from presenced.clock import SystemClock
from presenced.config import Settings, load_settings
from presenced.config.sinks import Delivery, JetStreamTarget, KafkaTarget, RedisStreamTarget
from presenced.errors import ConfigError
from presenced.events.sinks import sinks_from_settings


def test_each_kind_with_its_defaults() -> None:
    s = Settings(
        redis_stream_sinks="redis://127.0.0.1:6379",
        nats_sinks="nats://127.0.0.1:4222",
        kafka_sinks="kafka://k1:9092,k2",
    )
    assert s.redis_stream_sinks == (
        RedisStreamTarget("redis://127.0.0.1:6379/0", entry="redis://127.0.0.1:6379"),
    )
    assert s.nats_sinks == (
        JetStreamTarget("nats://127.0.0.1:4222", entry="nats://127.0.0.1:4222"),
    )
    (kafka,) = s.kafka_sinks or ()
    assert kafka.servers == ("k1:9092", "k2:9092") and kafka.topic == "presenced.events"
    assert kafka.dead_letter_topic is None and not kafka.idempotent
    assert kafka.delivery == Delivery(batch=100, tries=8, backoff=0.5, timeout=10.0)


def test_every_parameter_and_several_sinks_of_a_kind() -> None:
    s = Settings(
        redis_stream_sinks=(
            "rediss://:pw@r:6380/2?stream=app:events&maxlen=5000&batch=500&tries=3"
            "&backoff=250ms&timeout=2s#events=member.*+user.* redis://r2:6379/0"
        ),
        nats_sinks="tls://n:4222?stream=EVENTS&subject=app.events#events=message.*",
        kafka_sinks="kafka://k:9092?topic=t&dead_letter_topic=t.dead&idempotent=1",
    )
    first, second = s.redis_stream_sinks or ()
    assert first.url == "rediss://:pw@r:6380/2" and first.stream == "app:events"
    assert first.maxlen == 5000 and first.events == ("member.*", "user.*")
    assert first.delivery == Delivery(batch=500, tries=3, backoff=0.25, timeout=2.0)
    assert second.url == "redis://r2:6379/0" and second.events == ("*",)
    (nats,) = s.nats_sinks or ()
    assert (nats.url, nats.stream, nats.subject) == ("tls://n:4222", "EVENTS", "app.events")
    (kafka,) = s.kafka_sinks or ()
    assert kafka == KafkaTarget(
        ("k:9092",),
        "t",
        "t.dead",
        True,
        entry="kafka://k:9092?topic=t&dead_letter_topic=t.dead&idempotent=1",
    )


def test_from_a_toml_list_and_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "presenced.toml"
    path.write_text(
        'kafka_sinks = ["kafka://a:9092?topic=x", "kafka://b:9092?topic=y#events=user.*"]\n',
        encoding="utf-8",
    )
    s = load_settings(config_file=path, env={"PRESENCED_NATS_SINKS": "nats://n:4222 nats://m:4222"})
    assert [k.topic for k in s.kafka_sinks or ()] == ["x", "y"]
    assert [n.url for n in s.nats_sinks or ()] == ["nats://n:4222", "nats://m:4222"]


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        ("redis_stream_sinks", "http://r:6379", "is not a redis or rediss URL"),
        ("redis_stream_sinks", "redis://r:6379/x", "database 'x' is not a number"),
        ("redis_stream_sinks", "redis://r?maxlen=0", "maxlen='0' is not a whole number"),
        ("redis_stream_sinks", "redis://r?stream=a&stream=b", "stream is given twice"),
        ("redis_stream_sinks", "redis://r?subject=a", "unknown parameter 'subject'"),
        ("redis_stream_sinks", "redis://r#events=membr.*", "'membr.*' matches no event type"),
        ("redis_stream_sinks", "redis://r#types=member.*", "is not #events="),
        ("nats_sinks", "nats://n?stream=a.b", "is not a JetStream name"),
        ("nats_sinks", "nats://n?subject=a.*", "is not a subject prefix"),
        ("nats_sinks", "nats://n/path", "a NATS URL has no path"),
        ("nats_sinks", "nats://n?backoff=soon", "backoff='soon' is not a duration"),
        ("nats_sinks", "nats://n?timeout=0", "timeout='0' is not a duration > 0"),
        ("kafka_sinks", "kafka://k:port", "'k:port' is not HOST:PORT"),
        ("kafka_sinks", "kafka://k?topic=a/b", "topic 'a/b' is not a Kafka topic name"),
        ("kafka_sinks", "kafka://k?topic=t&dead_letter_topic=t", "is the topic itself"),
        ("kafka_sinks", "kafka://k?idempotent=maybe", "idempotent='maybe' is not 0 or 1"),
        ("kafka_sinks", "kafka://k?batch=20000", "batch='20000' is not a whole number 1..10000"),
        ("kafka_sinks", "kafka://k?tries=0", "tries='0' is not a whole number 1..100"),
        ("kafka_sinks", "", "no URL given"),
        ("kafka_sinks", 5, "a int is not a list of URLs"),
    ],
)
def test_a_bad_value_names_the_setting_and_the_allowed_form(
    key: str, value: object, says: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings().replace(**{key: value})
    assert caught.value.key == key
    assert says in caught.value.message
    scheme = {"redis_stream_sinks": "redis://", "nats_sinks": "nats://", "kafka_sinks": "kafka://"}
    assert f"allowed: {scheme[key]}" in caught.value.message  # the form, with its defaults


def test_a_password_is_never_in_a_message() -> None:
    for key, value in [
        ("redis_stream_sinks", "redis://:hunter2@r:port/0"),
        ("nats_sinks", "nats://me:hunter2@n:port"),
    ]:
        with pytest.raises(ConfigError) as caught:
            Settings().replace(**{key: value})
        assert "hunter2" not in str(caught.value) and "***" in str(caught.value)
    (target,) = Settings(redis_stream_sinks="redis://:hunter2@r:6379").redis_stream_sinks or ()
    assert "hunter2" not in str(target)


def test_a_missing_client_package_says_which_extra_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key, module, extra in [
        ("kafka_sinks", "aiokafka", "kafka"),
        ("nats_sinks", "nats", "nats"),
        ("redis_stream_sinks", "redis", "redis"),
    ]:
        monkeypatch.setitem(sys.modules, module, None)  # what an absent package looks like
        scheme = {"kafka_sinks": "kafka", "nats_sinks": "nats", "redis_stream_sinks": "redis"}
        with pytest.raises(ConfigError) as caught:
            Settings().replace(**{key: f"{scheme[key]}://h:1"})
        assert caught.value.key == key
        assert f"needs the {module} package" in caught.value.message
        assert f"pip install 'presenced[{extra}]'" in caught.value.message


def test_sinks_are_named_by_kind_and_place_with_their_own_policies() -> None:
    s = Settings(
        webhooks="http://h/hook",
        webhook_secret="0123456789abcdef",
        webhook_tries=4,
        redis_stream_sinks="redis://r redis://r2?tries=2&batch=7#events=member.*",
        nats_sinks="nats://n?backoff=2s",
        kafka_sinks="kafka://k?dead_letter_topic=dead",
    )
    sinks = sinks_from_settings(s, SystemClock())
    names = [sink.name for sink, _ in sinks]
    assert names == ["webhook-1", "redis-stream-1", "redis-stream-2", "nats-1", "kafka-1"]
    policies = {sink.name: policy for sink, policy in sinks}
    assert policies["webhook-1"].tries == 4
    assert (policies["redis-stream-1"].tries, policies["redis-stream-1"].batch_size) == (8, 100)
    second = policies["redis-stream-2"]
    assert (second.tries, second.batch_size) == (2, 7)
    assert second.filter("member.joined") and not second.filter("user.online")
    assert policies["nats-1"].backoff_min == 2.0


def test_no_client_package_is_imported_until_a_sink_delivers() -> None:
    code = (
        "import sys\n"
        "from presenced.clock import SystemClock\n"
        "from presenced.config import Settings\n"
        "from presenced.events.sinks import sinks_from_settings\n"
        "s = Settings(redis_stream_sinks='redis://r', nats_sinks='nats://n', "
        "kafka_sinks='kafka://k')\n"
        "assert len(sinks_from_settings(s, SystemClock())) == 3\n"
        "loaded = sorted(m for m in ('redis', 'nats', 'aiokafka') if m in sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
