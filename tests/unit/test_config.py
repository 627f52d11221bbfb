"""Settings: defaults, the four sources and their order, parsing, and every validation rule."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from presenced.config import (
    JWT_ALGORITHMS,
    Settings,
    load_settings,
    load_settings_with_origins,
    parse_duration,
    parse_size,
    settings_info,
)
from presenced.errors import ConfigError

PORT_NOTE = "(0 = any free port; off = no client port: an admin API node)"


@pytest.fixture(scope="module")
def public_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def write(tmp_path: Path, text: str, name: str = "presenced.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- defaults ------------------------------------------------------------------------------


def test_defaults_are_valid_and_documented() -> None:
    s = Settings()
    assert (s.host, s.port, s.node_id) == ("127.0.0.1", 7400, None)
    assert s.auth_mode is None
    assert s.effective_auth_mode == "insecure"
    assert s.effective_jwt_algorithms == ()
    assert (s.heartbeat_interval, s.heartbeat_timeout, s.grace) == (25.0, 10.0, 15.0)
    assert (s.auth_timeout, s.jwt_leeway) == (10.0, 0.0)
    assert (s.inactivity_timeout, s.away_after) == (21600.0, None)
    assert (s.max_frame_bytes, s.max_rooms_per_session, s.max_subscriptions_per_session) == (
        65536,
        100,
        1000,
    )
    assert (s.rate_limit, s.rate_burst) == (50.0, 100)
    assert (s.send_queue_bytes, s.slow_consumer_timeout) == (1048576, 5.0)
    assert (s.store, s.log_level) == ("memory", "info")


def test_load_with_nothing_gives_defaults() -> None:
    assert load_settings(env={}) == Settings()


def test_every_setting_has_help_and_allowed_text() -> None:
    infos = settings_info()
    assert [i.name for i in infos] == [f.name for f in dataclasses.fields(Settings)]
    for info in infos:
        assert info.help and info.allowed
        assert info.flag == "--" + info.name.replace("_", "-")
        assert info.env_var == "PRESENCED_" + info.name.upper()
        assert info.default == getattr(Settings(), info.name)


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.port = 1  # type: ignore[misc]


def test_replace_returns_a_validated_copy() -> None:
    s = Settings()
    t = s.replace(port=8000, heartbeat_interval="30s", max_frame_bytes="1MiB")
    assert (t.port, t.heartbeat_interval, t.max_frame_bytes) == (8000, 30.0, 1048576)
    assert s.port == 7400
    with pytest.raises(ConfigError) as err:
        s.replace(port=70000)
    assert err.value.key == "port"
    with pytest.raises(ConfigError) as err:
        s.replace(prot=1)
    assert err.value.key == "prot"
    assert "did you mean 'port'?" in err.value.message


def test_a_node_without_a_client_port_needs_a_store_and_an_admin_port() -> None:
    shared = Settings().replace(redis="redis://127.0.0.1:6379")
    assert shared.replace(port="off").port is None  # an admin-only node
    cases = {
        "port": ({"port": "off"}, "needs shared state"),  # on the memory store: nothing to see
        "workers": ({"redis": "redis://x", "port": "off", "workers": 2}, "runs as 1 worker"),
    }
    for key, (values, words) in cases.items():
        with pytest.raises(ConfigError) as err:
            Settings().replace(**values)
        assert (err.value.key, words in err.value.message) == (key, True), err.value.message
    with pytest.raises(ConfigError) as err:
        shared.replace(port="off", admin_port="off")
    assert err.value.key == "port" and "nothing to serve" in err.value.message


# --- sources and precedence ----------------------------------------------------------------


def test_file_overrides_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, 'port = 1000\nheartbeat_interval = "20s"\ngrace = 5\n')
    s = load_settings(env={}, config_file=path)
    assert (s.port, s.heartbeat_interval, s.grace) == (1000, 20.0, 5.0)
    assert s.host == "127.0.0.1"


def test_env_overrides_file(tmp_path: Path) -> None:
    path = write(tmp_path, "port = 1000\ngrace = 5\n")
    s = load_settings(env={"PRESENCED_PORT": "2000"}, config_file=path)
    assert (s.port, s.grace) == (2000, 5.0)


def test_cli_overrides_env_and_file(tmp_path: Path) -> None:
    path = write(tmp_path, "port = 1000\ngrace = 5\nrate_burst = 7\n")
    env = {"PRESENCED_PORT": "2000", "PRESENCED_GRACE": "6s"}
    s, origins = load_settings_with_origins(
        cli={"port": "3000", "rate_limit": None}, env=env, config_file=path
    )
    assert (s.port, s.grace, s.rate_burst, s.rate_limit) == (3000, 6.0, 7, 50.0)
    assert origins == {"port": "--port", "grace": "PRESENCED_GRACE", "rate_burst": str(path)}


def test_config_file_from_env_and_flag_wins(tmp_path: Path) -> None:
    from_env = write(tmp_path, "port = 1111\n", "env.toml")
    from_flag = write(tmp_path, "port = 2222\n", "flag.toml")
    env = {"PRESENCED_CONFIG": str(from_env)}
    assert load_settings(env=env).port == 1111
    assert load_settings(env=env, config_file=from_flag).port == 2222


def test_presenced_table_and_other_tables(tmp_path: Path) -> None:
    path = write(tmp_path, "[tool.other]\nport = 1\n\n[presenced]\nport = 9000\ngrace = 1\n")
    assert load_settings(env={}, config_file=path).port == 9000


def test_key_outside_the_presenced_table_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "grace = 3\n[presenced]\nport = 9000\n")
    with pytest.raises(ConfigError) as err:
        load_settings(env={}, config_file=path)
    assert err.value.key == "grace"
    assert "move it under [presenced]" in err.value.message


def test_empty_and_unknown_env_variables_are_ignored() -> None:
    env = {"PRESENCED_PORT": "", "PRESENCED_SOMETHING_ELSE": "x", "PORT": "1"}
    assert load_settings(env=env) == Settings()


def test_env_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRESENCED_RATE_BURST", "42")
    monkeypatch.delenv("PRESENCED_CONFIG", raising=False)
    assert load_settings().rate_burst == 42


def test_toml_types(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "inactivity_timeout = 0\n"
        'away_after = "5m"\n'
        "heartbeat_timeout = 2.5\n"
        'jwt_secret = "k"\n'
        'jwt_algorithms = ["hs256", "HS512", "HS256"]\n'
        'max_frame_bytes = "128KiB"\n'
        "send_queue_bytes = 8192\n"
        'auth_mode = "auto"\n'
        'log_level = "DEBUG"\n',
    )
    s = load_settings(env={}, config_file=path)
    assert s.inactivity_timeout is None
    assert s.away_after == 300.0
    assert s.heartbeat_timeout == 2.5
    assert s.jwt_algorithms == ("HS256", "HS512")
    assert (s.max_frame_bytes, s.send_queue_bytes) == (131072, 8192)
    assert s.effective_auth_mode == "jwt"
    assert s.log_level == "debug"


def test_unknown_toml_key(tmp_path: Path) -> None:
    path = write(tmp_path, "port = 1\nheartbeat_intervall = 3\n")
    with pytest.raises(ConfigError) as err:
        load_settings(env={}, config_file=path)
    assert err.value.key == "heartbeat_intervall"
    message = err.value.message
    assert "unknown setting 'heartbeat_intervall'" in message
    assert str(path) in message
    assert "did you mean 'heartbeat_interval'?" in message
    assert "known settings: host, port, admin_host, admin_port, api_keys, workers," in message
    assert "log_level" in message


def test_bad_toml_syntax_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "port = = 1\n")
    with pytest.raises(ConfigError) as err:
        load_settings(env={}, config_file=path)
    assert err.value.key == "config"
    assert f"cannot parse config file {str(path)!r}" in err.value.message
    assert "line 1" in err.value.message


def test_missing_config_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as err:
        load_settings(env={}, config_file=path)
    assert err.value.key == "config"
    assert err.value.message == f"config file {str(path)!r} not found"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("env", "'x' (from PRESENCED_PORT) is not an integer"),
        ("cli", "'x' (from --port) is not an integer"),
        ("file", "'x' (in '{path}') is not an integer"),
    ],
)
def test_parse_errors_name_their_source(tmp_path: Path, source: str, expected: str) -> None:
    path = write(tmp_path, 'port = "x"\n')
    with pytest.raises(ConfigError) as err:
        if source == "env":
            load_settings(env={"PRESENCED_PORT": "x"})
        elif source == "cli":
            load_settings(env={}, cli={"port": "x"})
        else:
            load_settings(env={}, config_file=path)
    assert err.value.key == "port"
    assert err.value.message == (
        expected.format(path=path) + "; allowed: 0..65535 " + PORT_NOTE + ""
    )


def test_range_errors_name_where_the_value_was_set() -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(env={"PRESENCED_PORT": "70000"})
    assert err.value.message == (
        "70000 is out of range; allowed: 0..65535 " + PORT_NOTE + "; set by PRESENCED_PORT"
    )
    assert str(err.value).startswith("config port: 70000 is out of range")


# --- validation rules ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "key", "message"),
    [
        (
            {"port": 65536},
            "port",
            "65536 is out of range; allowed: 0..65535 " + PORT_NOTE,
        ),
        (
            {"port": -1},
            "port",
            "-1 is out of range; allowed: 0..65535 " + PORT_NOTE,
        ),
        (
            {"port": True},
            "port",
            "True is not an integer; allowed: 0..65535 " + PORT_NOTE,
        ),
        ({"host": ""}, "host", "'' is not allowed; allowed: a non-empty string"),
        (
            {"node_id": " "},
            "node_id",
            "' ' is not allowed; allowed: a non-empty string (leave it unset for none)",
        ),
        (
            {"auth_mode": "oauth"},
            "auth_mode",
            "'oauth' is not allowed; allowed values: jwt, insecure, auto",
        ),
        (
            {"jwt_algorithms": "HS256,none", "jwt_secret": "k"},
            "jwt_algorithms",
            "'none' in 'HS256,none' is not allowed; allowed values: " + ", ".join(JWT_ALGORITHMS),
        ),
        (
            {"jwt_algorithms": ","},
            "jwt_algorithms",
            "',' names no algorithm; allowed values: " + ", ".join(JWT_ALGORITHMS),
        ),
        (
            {"jwt_leeway": -1},
            "jwt_leeway",
            "-1s is out of range; allowed: >= 0 seconds (e.g. 500ms, 25s, 10m, 6h)",
        ),
        (
            {"auth_timeout": 0},
            "auth_timeout",
            "0s is out of range; allowed: > 0 seconds (e.g. 500ms, 25s, 10m, 6h)",
        ),
        (
            {"heartbeat_interval": "-5s"},
            "heartbeat_interval",
            "-5s is out of range; allowed: > 0 seconds (e.g. 500ms, 25s, 10m, 6h)",
        ),
        (
            {"heartbeat_interval": "off"},
            "heartbeat_interval",
            "'off' is not allowed: heartbeat_interval cannot be turned off; use seconds (25, 1.5)"
            " or a number with a unit: 500ms, 25s, 10m, 6h",
        ),
        (
            {"heartbeat_timeout": 0},
            "heartbeat_timeout",
            "0s is out of range; allowed: > 0 seconds (e.g. 500ms, 25s, 10m, 6h) and <= "
            "heartbeat_interval",
        ),
        (
            {"heartbeat_interval": 5, "heartbeat_timeout": 6},
            "heartbeat_timeout",
            "6s is more than heartbeat_interval (5s); allowed: > 0 and <= heartbeat_interval",
        ),
        (
            {"grace": -0.5},
            "grace",
            "-0.5s is out of range; allowed: >= 0 seconds (e.g. 500ms, 25s, 10m, 6h)",
        ),
        (
            {"inactivity_timeout": -1},
            "inactivity_timeout",
            "-1s is out of range; allowed: > 0 seconds (e.g. 500ms, 25s, 10m, 6h), or off",
        ),
        (
            {"away_after": "-1m"},
            "away_after",
            "-60s is out of range; allowed: > 0 seconds (e.g. 500ms, 25s, 10m, 6h) and < "
            "inactivity_timeout, or off",
        ),
        (
            {"away_after": "2h", "inactivity_timeout": "1h"},
            "away_after",
            "7200s is not less than inactivity_timeout (3600s); allowed: > 0 and < "
            "inactivity_timeout, or off",
        ),
        (
            {"max_frame_bytes": 511},
            "max_frame_bytes",
            "511 is out of range; allowed: 512 B..16 MiB",
        ),
        (
            {"max_frame_bytes": "17MiB"},
            "max_frame_bytes",
            "17825792 (17 MiB) is out of range; allowed: 512 B..16 MiB",
        ),
        (
            {"max_rooms_per_session": 0},
            "max_rooms_per_session",
            "0 is out of range; allowed: >= 1",
        ),
        (
            {"max_subscriptions_per_session": -1},
            "max_subscriptions_per_session",
            "-1 is out of range; allowed: >= 0",
        ),
        ({"rate_limit": 0}, "rate_limit", "0 is out of range; allowed: > 0"),
        ({"rate_limit": "fast"}, "rate_limit", "'fast' is not a number; allowed: > 0"),
        ({"rate_limit": "inf"}, "rate_limit", "'inf' is not a number; allowed: > 0"),
        ({"rate_burst": 0}, "rate_burst", "0 is out of range; allowed: >= 1"),
        (
            {"send_queue_bytes": "1KiB"},
            "send_queue_bytes",
            "1024 (1 KiB) is out of range; allowed: >= 4 KiB",
        ),
        (
            {"slow_consumer_timeout": 0},
            "slow_consumer_timeout",
            "0s is out of range; allowed: > 0 seconds (e.g. 500ms, 25s, 10m, 6h)",
        ),
        (
            {"redis": "http://localhost:6379"},
            "redis",
            "'http://localhost:6379' is not a Redis URL; allowed: redis://..., rediss://..., "
            "redis+cluster://..., rediss+cluster://..., unix://...",
        ),
        (
            {"lease_interval": 5, "lease_ttl": 10},
            "lease_interval",
            "5s is not less than half of lease_ttl (10s); allowed: > 0 and < lease_ttl / 2",
        ),
        (
            {"broker": "nats://127.0.0.1:4222"},
            "broker",
            "a NATS broker needs shared state: set redis as well, or neither",
        ),
        (
            {"log_level": "verbose"},
            "log_level",
            "'verbose' is not allowed; allowed values: debug, info, warning, error",
        ),
        (
            {"log_level": None},
            "log_level",
            "a value is required; allowed: debug, info, warning, error",
        ),
        (
            {"demo": "maybe"},
            "demo",
            "'maybe' is not allowed; allowed: true or false (also on/off, yes/no, 1/0)",
        ),
        (
            {"demo": True, "jwt_secret": "s" * 32},
            "demo",
            "the demo page lets anyone name their own user, which needs auth_mode 'insecure': "
            "unset the JWT keys (jwt_secret, jwt_public_key, jwt_jwks_url) or drop demo",
        ),
        (
            {"demo": True, "port": None, "redis": "redis://127.0.0.1:6379/0"},
            "demo",
            "the demo page is served on the client port: give a port",
        ),
    ],
)
def test_validation_rule(changes: dict[str, object], key: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        Settings().replace(**changes)
    assert err.value.key == key
    assert err.value.message == message
    assert str(err.value) == f"config {key}: {message}"


@pytest.mark.parametrize(
    ("text", "value"),
    [("true", True), ("ON", True), ("yes", True), ("1", True), ("false", False), ("off", False)],
)
def test_yes_no_settings_from_text(text: str, value: bool) -> None:
    assert load_settings(env={"PRESENCED_DEMO": text}).demo is value
    assert Settings().demo is False


def test_jwt_mode_needs_a_key() -> None:
    with pytest.raises(ConfigError) as err:
        Settings(auth_mode="jwt")
    assert err.value.key == "auth_mode"
    assert "jwt_secret" in err.value.message
    assert "jwt_public_key" in err.value.message


def test_jwt_algorithms_must_match_the_keys(public_pem: str) -> None:
    with pytest.raises(ConfigError) as err:
        Settings(jwt_secret="k", jwt_algorithms=("RS256",))
    assert err.value.key == "jwt_algorithms"
    assert err.value.message.startswith("'RS256' needs jwt_public_key, which is not set")
    with pytest.raises(ConfigError) as err:
        Settings(jwt_public_key=public_pem, jwt_algorithms=("HS256",))
    assert err.value.message.startswith("'HS256' needs jwt_secret, which is not set")
    # algorithms without any key: the key most likely failed to arrive, not a dev setup
    with pytest.raises(ConfigError) as err:
        Settings(jwt_algorithms=("HS256",))
    assert err.value.key == "jwt_algorithms"
    # explicitly insecure: the algorithms are not used, so not checked
    assert Settings(auth_mode="insecure", jwt_algorithms=("HS256",)).effective_jwt_algorithms


def test_auth_mode_resolution(public_pem: str) -> None:
    hs = Settings(jwt_secret="k")
    assert (hs.effective_auth_mode, hs.effective_jwt_algorithms) == ("jwt", ("HS256",))
    pk = Settings(jwt_public_key=public_pem)
    assert (pk.effective_auth_mode, pk.effective_jwt_algorithms) == ("jwt", ("RS256", "ES256"))
    both = Settings(jwt_secret="k", jwt_public_key=public_pem, jwt_algorithms=("ES256",))
    assert both.effective_jwt_algorithms == ("ES256",)
    off = Settings(jwt_secret="k", auth_mode="insecure")
    assert off.effective_auth_mode == "insecure"


def test_public_key_from_file(tmp_path: Path, public_pem: str) -> None:
    path = write(tmp_path, public_pem, "key.pem")
    s = load_settings(env={"PRESENCED_JWT_PUBLIC_KEY": f"@{path}"})
    assert s.jwt_public_key == public_pem
    assert s.effective_auth_mode == "jwt"
    assert s.replace(port=1).jwt_public_key == public_pem


def test_public_key_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.pem"
    with pytest.raises(ConfigError) as err:
        Settings(jwt_public_key=f"@{path}")
    assert err.value.key == "jwt_public_key"
    assert err.value.message == (
        f"cannot read {str(path)!r}: file not found; allowed: PEM text or @/path/to/key.pem"
    )


def test_public_key_that_is_not_pem(tmp_path: Path) -> None:
    path = write(tmp_path, "not a key", "key.pem")
    with pytest.raises(ConfigError) as err:
        Settings(jwt_public_key=f"@{path}")
    assert err.value.key == "jwt_public_key"
    assert "is not PEM text" in err.value.message
    with pytest.raises(ConfigError) as err:
        Settings(jwt_public_key="ssh-ed25519 AAAA")
    assert err.value.message.startswith("the value is not PEM text")


# --- durations and sizes -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (25, 25.0),
        (1.5, 1.5),
        ("25", 25.0),
        ("1.5", 1.5),
        ("500ms", 0.5),
        ("25s", 25.0),
        ("1.5s", 1.5),
        ("10m", 600.0),
        ("6h", 21600.0),
        (" 2 H ", 7200.0),
        (".5s", 0.5),
        ("0", 0.0),
        ("0s", 0.0),
        ("-3s", -3.0),
    ],
)
def test_parse_duration_good(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["off", "none", "OFF", "0", "0ms", 0, 0.0])
def test_parse_duration_off(text: str | float) -> None:
    assert parse_duration(text, allow_off=True) is None


@pytest.mark.parametrize("text", ["", "s", "abc", "10 minutes", "1d", "5x", "1,5s", "inf", "nan"])
def test_parse_duration_bad(text: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_duration(text, key="grace")
    assert err.value.key == "grace"
    assert err.value.message == (
        f"{text!r} is not a duration; use seconds (25, 1.5) or a number with a unit: "
        "500ms, 25s, 10m, 6h"
    )


def test_parse_duration_rejects_odd_types_and_off_when_not_allowed() -> None:
    with pytest.raises(ConfigError):
        parse_duration(True)
    with pytest.raises(ConfigError):
        parse_duration(float("inf"))
    with pytest.raises(ConfigError) as err:
        parse_duration("off", key="heartbeat_interval")
    assert "heartbeat_interval cannot be turned off" in err.value.message


@pytest.mark.parametrize(
    ("text", "size"),
    [
        (65536, 65536),
        ("65536", 65536),
        ("512B", 512),
        ("64KiB", 65536),
        ("64kib", 65536),
        ("1MiB", 1048576),
        ("1 MiB", 1048576),
        ("1.5MiB", 1572864),
        ("1GiB", 1024**3),
    ],
)
def test_parse_size_good(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "big", "64KB", "1M", "MiB", "64 KiBs", "1,024", True])
def test_parse_size_bad(text: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_size(text, key="max_frame_bytes")
    assert err.value.key == "max_frame_bytes"
    assert err.value.message == (
        f"{text!r} is not a size; use a number of bytes or a size: 512B, 64KiB, 1MiB"
    )


def test_sizes_only_for_byte_settings() -> None:
    with pytest.raises(ConfigError) as err:
        Settings().replace(rate_burst="1KiB")
    assert err.value.key == "rate_burst"
    assert err.value.message == "'1KiB' is not an integer; allowed: >= 1"


def test_public_key_with_escaped_newlines_from_env(public_pem: str) -> None:
    one_line = public_pem.replace("\n", "\\n")
    s = load_settings(env={"PRESENCED_JWT_PUBLIC_KEY": one_line})
    assert s.jwt_public_key == public_pem


# --- the admin port and its API keys -------------------------------------------------------


def test_api_keys_parse_with_scopes_and_hide_their_secrets(tmp_path: Path) -> None:
    settings = Settings(
        api_keys="read:aaaaaaaaaaaaaaaa, publish+read:bbbbbbbbbbbbbbbb admin:c" + "c" * 15
    )
    keys = settings.api_keys
    assert keys is not None and [sorted(k.scopes) for k in keys] == [
        ["read"],
        ["publish", "read"],
        ["admin"],
    ]
    assert keys[0].allows("read") and not keys[0].allows("publish")
    assert keys[1].allows("read") and keys[1].allows("publish") and not keys[1].allows("admin")
    assert all(keys[2].allows(s) for s in ("read", "publish", "admin"))
    assert "aaaa" not in repr(keys) and "<hidden>" in repr(keys)
    path = tmp_path / "keys"
    path.write_text(
        "# rotation: old and new\nadmin:old-secret-0123456789\nadmin:new-secret-0123456789\n"
    )
    from_file = Settings(api_keys=f"@{path}").api_keys
    assert from_file is not None and [k.secret for k in from_file] == [
        "old-secret-0123456789",
        "new-secret-0123456789",
    ]


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("adminadminadminadmin", "no 'SCOPES:'"),
        ("root:aaaaaaaaaaaaaaaa", "unknown scope 'root'"),
        ("admin:short", "fewer than 16"),
        ("@/no/such/file", "cannot read"),
    ],
)
def test_bad_api_keys_name_the_setting_and_the_rule(value: str, says: str) -> None:
    with pytest.raises(ConfigError) as err:
        Settings(api_keys=value)
    assert err.value.key == "api_keys" and says in err.value.message
    assert "SCOPES:SECRET" in err.value.message


def test_admin_port_off_loopback_needs_a_key() -> None:
    with pytest.raises(ConfigError) as err:
        Settings(admin_host="0.0.0.0")
    assert err.value.key == "api_keys" and "127.0.0.1" in err.value.message
    assert Settings(admin_host="0.0.0.0", api_keys="admin:" + "k" * 16).admin_host == "0.0.0.0"
    assert Settings(admin_host="0.0.0.0", admin_port="off").admin_port is None
    assert Settings(admin_host="::1").admin_host == "::1"


def test_a_jwks_url_is_a_key_source_of_its_own() -> None:
    s = Settings().replace(jwt_jwks_url="https://idp.example/.well-known/jwks.json")
    assert s.effective_auth_mode == "jwt" and s.effective_jwt_algorithms == ("RS256", "ES256")
    assert s.replace(jwt_algorithms="RS256").effective_jwt_algorithms == ("RS256",)
    with pytest.raises(ConfigError) as err:
        Settings().replace(jwt_jwks_url="ftp://idp.example/jwks")
    assert err.value.key == "jwt_jwks_url" and "http(s) URL" in err.value.message
