"""Log formats and the client address the logs show."""

from __future__ import annotations

import json
import logging

import pytest

from presenced.config import Settings
from presenced.errors import ConfigError
from presenced.logs import JsonFormatter, TextFormatter, fields
from presenced.server.client_ip import ClientAddress


def _record(message: str, **values: object) -> logging.LogRecord:
    logger = logging.getLogger("presenced.test")
    return logger.makeRecord(
        "presenced.test", logging.INFO, __file__, 1, message, (), None, extra=fields(**values)
    )


def test_json_lines_have_time_level_logger_message_and_fields() -> None:
    line = JsonFormatter().format(_record("session opened", user="alice", ip="10.0.0.1"))
    entry = json.loads(line)
    assert entry["level"] == "info" and entry["logger"] == "presenced.test"
    assert entry["message"] == "session opened"
    assert (entry["user"], entry["ip"]) == ("alice", "10.0.0.1")
    assert entry["time"].endswith("Z") and "T" in entry["time"]
    assert "\n" not in line


def test_text_lines_append_fields() -> None:
    line = TextFormatter().format(_record("auth failed", reason="expired", ip="::1", note="a b"))
    assert line.endswith('presenced.test: auth failed reason=expired ip=::1 note="a b"')


def test_plain_lines_are_unchanged() -> None:
    record = logging.getLogger("x").makeRecord(
        "x", logging.WARNING, __file__, 1, "hi %s", ("there",), None
    )
    assert TextFormatter().format(record).endswith("WARNING x: hi there")
    assert json.loads(JsonFormatter().format(record))["message"] == "hi there"


def test_forwarded_for_is_believed_only_from_trusted_proxies() -> None:
    resolve = ClientAddress(["10.0.0.0/8", "::1"])
    xff = {"x-forwarded-for": "203.0.113.9, 10.1.1.1"}
    assert resolve.of("10.2.3.4", xff) == "203.0.113.9"  # both hops trusted proxies
    assert resolve.of("::1", {"x-forwarded-for": "198.51.100.7"}) == "198.51.100.7"
    assert resolve.of("192.0.2.1", xff) == "192.0.2.1"  # not a proxy of ours: header ignored
    # a client that writes its own header in front of the proxy's cannot hide
    spoof = {"x-forwarded-for": "1.2.3.4, 198.51.100.7"}
    assert resolve.of("10.0.0.5", spoof) == "198.51.100.7"
    assert resolve.of("10.0.0.5", {"x-forwarded-for": "garbage"}) == "10.0.0.5"
    assert resolve.of("10.0.0.5", {}) == "10.0.0.5"
    assert ClientAddress(None).of("10.0.0.5", xff) == "10.0.0.5"  # no proxies: never
    assert ClientAddress(None).of("::ffff:192.0.2.1", {}) == "192.0.2.1"
    assert ClientAddress(None).of("", {}) == ""


def test_settings_log_format_and_trusted_proxies() -> None:
    s = Settings().replace(log_format="JSON", trusted_proxies="10.1.2.3/8, ::1,10.0.0.0/8")
    assert s.log_format == "json"
    assert s.trusted_proxies == ("10.0.0.0/8", "::1/128")
    assert Settings().trusted_proxies is None and Settings().log_format == "text"
    assert Settings().replace(trusted_proxies=["192.0.2.1"]).trusted_proxies == ("192.0.2.1/32",)
    with pytest.raises(ConfigError) as err:
        Settings().replace(trusted_proxies="10.0.0.0/33")
    assert err.value.key == "trusted_proxies" and "CIDR" in err.value.message
    with pytest.raises(ConfigError) as err:
        Settings().replace(log_format="xml")
    assert err.value.key == "log_format"
