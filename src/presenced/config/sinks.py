"""Stream sinks of the event export: parsing ``redis_stream_sinks``, ``nats_sinks`` and
``kafka_sinks``.

Each setting lists one or more sinks separated by white space (or a TOML list), each a URL
of its kind whose query says where the events go and how they are delivered, optionally
followed by the same ``#events=PATTERN+PATTERN`` filter as a webhook's:

- ``redis://[:PASSWORD@]HOST:PORT[/DB]?stream=NAME&maxlen=N`` (or ``rediss://``): ``XADD``
  to the stream ``NAME``, capped at about ``N`` entries (``MAXLEN ~``);
- ``nats://[USER:PASSWORD@]HOST:PORT?stream=NAME&subject=PREFIX`` (or ``tls://``): publish
  to JetStream as ``PREFIX.<type>``, into the stream ``NAME`` (created when missing);
- ``kafka://HOST:PORT[,HOST:PORT...]?topic=T&dead_letter_topic=T2&idempotent=0|1``:
  produce to the topic ``T``, each event keyed by its ``key``; a batch that used up its
  tries is also produced to ``T2`` when given.

Every kind also takes the delivery parameters ``batch`` (most events per delivery),
``tries`` (attempts before a batch becomes a dead letter), ``backoff`` (first retry delay,
doubled each try) and ``timeout`` (how long one delivery may take), with the webhook
settings' defaults. A kind's package (redis, nats-py, aiokafka) must be installed when its
setting is used; it is imported only by the sink itself.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import SplitResult, parse_qsl, urlsplit

from presenced.config.values import parse_duration
from presenced.config.webhooks import event_patterns
from presenced.errors import ConfigError

__all__ = [
    "Delivery",
    "JetStreamTarget",
    "KafkaTarget",
    "RedisStreamTarget",
    "parse_kafka_sinks",
    "parse_nats_sinks",
    "parse_redis_stream_sinks",
]

_DELIVERY_PARAMS = ("batch", "tries", "backoff", "timeout")
_DELIVERY_FORM = "batch=1..10000, tries=1..100, backoff=DURATION, timeout=DURATION"
_EVENTS_FORM = "optionally followed by #events=PATTERN+PATTERN (as in webhooks)"

_NATS_NAME = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_NATS_SUBJECT = re.compile(r"^[^\s.*>]+(?:\.[^\s.*>]+)*$")
_KAFKA_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True, slots=True)
class Delivery:
    """How a sink's batches are delivered (the webhook settings' defaults)."""

    batch: int = 100
    tries: int = 8
    backoff: float = 0.5
    timeout: float = 10.0


@dataclass(frozen=True, slots=True)
class RedisStreamTarget:
    """A Redis stream the events are appended to, one entry per event."""

    url: str
    """Where the server is: ``redis://...`` without the sink's query."""
    stream: str = "presenced:events"
    maxlen: int = 1_000_000
    events: tuple[str, ...] = ("*",)
    delivery: Delivery = field(default_factory=Delivery)
    entry: str = ""
    """The entry as written, its password hidden (what ``presenced config`` shows)."""

    def __str__(self) -> str:
        return self.entry


@dataclass(frozen=True, slots=True)
class JetStreamTarget:
    """A NATS JetStream stream the events are published to, one message per event."""

    url: str
    stream: str = "PRESENCED_EVENTS"
    subject: str = "presenced.events"
    """The subject prefix: an event goes to ``<subject>.<type>``."""
    events: tuple[str, ...] = ("*",)
    delivery: Delivery = field(default_factory=Delivery)
    entry: str = ""

    def __str__(self) -> str:
        return self.entry


@dataclass(frozen=True, slots=True)
class KafkaTarget:
    """A Kafka topic the events are produced to, one record per event keyed by its key."""

    servers: tuple[str, ...]
    """The bootstrap servers, ``host:port`` each."""
    topic: str = "presenced.events"
    dead_letter_topic: str | None = None
    idempotent: bool = False
    events: tuple[str, ...] = ("*",)
    delivery: Delivery = field(default_factory=Delivery)
    entry: str = ""

    def __str__(self) -> str:
        return self.entry


_REDIS_HINT = (
    "allowed: redis:// or rediss:// URLs separated by spaces, "
    "redis://[:PASSWORD@]HOST:PORT[/DB]?stream=NAME&maxlen=N (defaults stream=presenced:events, "
    f"maxlen=1000000; also {_DELIVERY_FORM}), {_EVENTS_FORM}"
)
_NATS_HINT = (
    "allowed: nats:// or tls:// URLs separated by spaces, "
    "nats://[USER:PASSWORD@]HOST:PORT?stream=NAME&subject=PREFIX (defaults "
    f"stream=PRESENCED_EVENTS, subject=presenced.events; also {_DELIVERY_FORM}), {_EVENTS_FORM}"
)
_KAFKA_HINT = (
    "allowed: kafka:// URLs separated by spaces, "
    "kafka://HOST:PORT[,HOST:PORT]?topic=T&dead_letter_topic=T2&idempotent=0|1 (defaults "
    f"topic=presenced.events, no dead-letter topic, idempotent=0; also {_DELIVERY_FORM}), "
    f"{_EVENTS_FORM}"
)

_Target = TypeVar("_Target")


@dataclass(frozen=True, slots=True)
class _Entry:
    """What every kind's entry has besides its URL."""

    events: tuple[str, ...]
    shown: str
    hint: str


def parse_redis_stream_sinks(key: str, value: object) -> tuple[RedisStreamTarget, ...]:
    """The Redis stream sinks a setting value lists (text or a TOML list of entries)."""
    return _parse(key, value, RedisStreamTarget, _REDIS_HINT, _redis, ("redis", "redis"))


def parse_nats_sinks(key: str, value: object) -> tuple[JetStreamTarget, ...]:
    """The NATS JetStream sinks a setting value lists."""
    return _parse(key, value, JetStreamTarget, _NATS_HINT, _nats, ("nats", "nats"))


def parse_kafka_sinks(key: str, value: object) -> tuple[KafkaTarget, ...]:
    """The Kafka sinks a setting value lists."""
    return _parse(key, value, KafkaTarget, _KAFKA_HINT, _kafka, ("aiokafka", "kafka"))


def _parse(
    key: str,
    value: object,
    kind: type[_Target],
    hint: str,
    one: Callable[[str, int, str, _Entry], _Target],
    package: tuple[str, str],
) -> tuple[_Target, ...]:
    if isinstance(value, list | tuple) and value and all(isinstance(v, kind) for v in value):
        return tuple(value)
    if isinstance(value, str):
        entries = value.split()
    elif isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        entries = [part for v in value for part in str(v).split()]
    else:
        raise ConfigError(key, f"a {type(value).__name__} is not a list of URLs; {hint}")
    if not entries:
        raise ConfigError(key, f"no URL given; {hint} (leave it unset for none)")
    targets = []
    for number, entry in enumerate(entries, 1):
        url, _, fragment = entry.partition("#")
        shown = _hidden(url) + (f"#{fragment}" if fragment else "")
        targets.append(
            one(key, number, url, _Entry(event_patterns(key, number, fragment, hint), shown, hint))
        )
    module, extra = package
    if importlib.util.find_spec(module) is None:
        raise ConfigError(
            key,
            f"a sink of this kind needs the {module} package, which is not installed: "
            f"pip install 'presenced[{extra}]'",
        )
    return tuple(targets)


# --- one entry of each kind ---------------------------------------------------------------


def _redis(key: str, number: int, url: str, entry: _Entry) -> RedisStreamTarget:
    hint = entry.hint
    parts = _split(key, number, url, ("redis", "rediss"), hint)
    query = _query(key, number, parts, ("stream", "maxlen"), hint)
    db = parts.path.strip("/") or "0"
    if not db.isdigit():
        raise ConfigError(key, f"entry {number}: database {db!r} is not a number; {hint}")
    stream = query.pop("stream", "presenced:events")
    if not stream or any(c.isspace() for c in stream):
        raise ConfigError(key, f"entry {number}: stream {stream!r} is not a key name; {hint}")
    maxlen = _int(key, number, "maxlen", query.pop("maxlen", "1000000"), 1, 10**9, hint)
    bare = parts._replace(path=f"/{db}", query="", fragment="").geturl()
    delivery = _delivery(key, number, query, hint)
    return RedisStreamTarget(bare, stream, maxlen, entry.events, delivery, entry.shown)


def _nats(key: str, number: int, url: str, entry: _Entry) -> JetStreamTarget:
    hint = entry.hint
    parts = _split(key, number, url, ("nats", "tls"), hint)
    query = _query(key, number, parts, ("stream", "subject"), hint)
    if parts.path not in ("", "/"):
        raise ConfigError(key, f"entry {number}: a NATS URL has no path; {hint}")
    stream = query.pop("stream", "PRESENCED_EVENTS")
    if not _NATS_NAME.match(stream):
        raise ConfigError(
            key,
            f"entry {number}: stream {stream!r} is not a JetStream name (letters, digits, "
            f"_ and -); {hint}",
        )
    subject = query.pop("subject", "presenced.events")
    if not _NATS_SUBJECT.match(subject):
        raise ConfigError(
            key,
            f"entry {number}: subject {subject!r} is not a subject prefix (dot-separated "
            f"tokens, no wildcards or spaces); {hint}",
        )
    bare = parts._replace(path="", query="", fragment="").geturl()
    delivery = _delivery(key, number, query, hint)
    return JetStreamTarget(bare, stream, subject, entry.events, delivery, entry.shown)


def _kafka(key: str, number: int, url: str, entry: _Entry) -> KafkaTarget:
    hint = entry.hint
    parts = _split(key, number, url, ("kafka",), hint)
    query = _query(key, number, parts, ("topic", "dead_letter_topic", "idempotent"), hint)
    if "@" in parts.netloc or parts.path not in ("", "/"):
        raise ConfigError(key, f"entry {number}: a Kafka URL has only hosts and a query; {hint}")
    servers = []
    for hostport in parts.netloc.split(","):
        host, sep, port = hostport.rpartition(":")
        if not sep:
            host, port = hostport, "9092"
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(key, f"entry {number}: {hostport!r} is not HOST:PORT; {hint}")
        servers.append(f"{host}:{port}")
    topic = _topic(key, number, "topic", query.pop("topic", "presenced.events"), hint)
    dead = query.pop("dead_letter_topic", None)
    if dead is not None:
        dead = _topic(key, number, "dead_letter_topic", dead, hint)
        if dead == topic:
            raise ConfigError(
                key, f"entry {number}: dead_letter_topic is the topic itself ({topic!r}); {hint}"
            )
    flag = query.pop("idempotent", "0").lower()
    if flag not in _TRUE + _FALSE:
        raise ConfigError(key, f"entry {number}: idempotent={flag!r} is not 0 or 1; {hint}")
    return KafkaTarget(
        tuple(servers),
        topic,
        dead,
        flag in _TRUE,
        entry.events,
        _delivery(key, number, query, hint),
        entry.shown,
    )


# --- shared pieces ------------------------------------------------------------------------


def _split(key: str, number: int, url: str, schemes: Sequence[str], hint: str) -> SplitResult:
    try:
        parts = urlsplit(url)
        if "kafka" not in schemes:  # Kafka's hosts (several) are checked by its parser
            parts.port  # noqa: B018  # a bad port raises here
    except ValueError as exc:
        raise ConfigError(key, f"entry {number} {_hidden(url)!r}: {exc}; {hint}") from None
    if parts.scheme not in schemes or not parts.hostname:
        raise ConfigError(
            key,
            f"entry {number} {_hidden(url)!r} is not a {' or '.join(schemes)} URL with a "
            f"host; {hint}",
        )
    return parts


def _query(
    key: str, number: int, parts: SplitResult, own: Sequence[str], hint: str
) -> dict[str, str]:
    """The query's parameters, each given once and each one this kind knows."""
    known = (*own, *_DELIVERY_PARAMS)
    query: dict[str, str] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name not in known:
            raise ConfigError(
                key,
                f"entry {number}: unknown parameter {name!r}; known: {', '.join(known)}; {hint}",
            )
        if name in query:
            raise ConfigError(key, f"entry {number}: {name} is given twice; {hint}")
        query[name] = value
    return query


def _delivery(key: str, number: int, query: dict[str, str], hint: str) -> Delivery:
    default = Delivery()

    def duration(name: str, fallback: float) -> float:
        if name not in query:
            return fallback
        text = query[name]
        try:
            seconds = parse_duration(text, key=key)
        except ConfigError:
            seconds = None
        if seconds is None or seconds <= 0:
            raise ConfigError(
                key,
                f"entry {number}: {name}={text!r} is not a duration > 0 (500ms, 2s); {hint}",
            )
        return seconds

    return Delivery(
        batch=_int(key, number, "batch", query.get("batch", str(default.batch)), 1, 10_000, hint),
        tries=_int(key, number, "tries", query.get("tries", str(default.tries)), 1, 100, hint),
        backoff=duration("backoff", default.backoff),
        timeout=duration("timeout", default.timeout),
    )


def _int(key: str, number: int, name: str, text: str, lo: int, hi: int, hint: str) -> int:
    if not text.isdigit() or not lo <= int(text) <= hi:
        raise ConfigError(
            key, f"entry {number}: {name}={text!r} is not a whole number {lo}..{hi}; {hint}"
        )
    return int(text)


def _topic(key: str, number: int, name: str, topic: str, hint: str) -> str:
    if not _KAFKA_TOPIC.match(topic) or topic in (".", ".."):
        raise ConfigError(
            key,
            f"entry {number}: {name} {topic!r} is not a Kafka topic name (up to 249 letters, "
            f"digits, '.', '_' and '-'); {hint}",
        )
    return topic


def _hidden(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***`` (for messages)."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not sep or not at:
        return url
    user, colon, _ = userinfo.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}@{host}"
