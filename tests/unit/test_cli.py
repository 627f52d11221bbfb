"""The ``presenced`` command line: ``config``, ``version``, flags, and config errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from presenced import __version__
from presenced.cli import main
from presenced.config import settings_info


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI reads os.environ: keep the developer's PRESENCED_* variables out."""
    for name in list(os.environ):
        if name.startswith("PRESENCED_"):
            monkeypatch.delenv(name)


def config_lines(capsys: pytest.CaptureFixture[str], *argv: str) -> list[str]:
    assert main(["config", *argv]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    return out.splitlines()


def test_config_prints_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    lines = config_lines(capsys)
    assert lines[0] == f"# presenced {__version__}: effective settings"
    for line in [
        'host = "127.0.0.1"',
        "port = 7400",
        "# node_id is not set",
        'auth_mode = "insecure"  # auto',
        "# jwt_secret is not set",
        "# jwt_algorithms is not set",
        "heartbeat_interval = 25.0",
        "inactivity_timeout = 21600.0",
        'away_after = "off"',
        "max_frame_bytes = 65536",
        "# redis is not set",
        'log_level = "info"',
    ]:
        assert line in lines
    # one line per setting, plus the header
    assert len(lines) == len(settings_info()) + 1


def test_config_shows_sources_and_hides_secrets(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "presenced.toml"
    path.write_text('[presenced]\nport = 9000\ngrace = "30s"\n', encoding="utf-8")
    monkeypatch.setenv("PRESENCED_JWT_SECRET", "hunter2-very-secret")
    monkeypatch.setenv("PRESENCED_GRACE", "20s")
    lines = config_lines(capsys, "--config", str(path), "--away-after", "5m")
    assert "hunter2" not in "\n".join(lines)
    assert 'jwt_secret = "***"  # from PRESENCED_JWT_SECRET' in lines
    assert 'auth_mode = "jwt"  # auto' in lines
    assert 'jwt_algorithms = ["HS256"]  # auto' in lines
    assert f"port = 9000  # from {path}" in lines
    assert "grace = 20.0  # from PRESENCED_GRACE" in lines
    assert "away_after = 300.0  # from --away-after" in lines


def test_config_shows_receivers_and_sinks_as_written(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRESENCED_WEBHOOKS", "http://a/h#events=member.* http://b/h")
    monkeypatch.setenv("PRESENCED_WEBHOOK_SECRET", "0123456789abcdef")
    monkeypatch.setenv("PRESENCED_KAFKA_SINKS", "kafka://k:9092?topic=t#events=user.*")
    monkeypatch.setenv("PRESENCED_REDIS_STREAM_SINKS", "redis://:hunter2@r:6379/0?stream=s")
    lines = config_lines(capsys)
    assert (
        'webhooks = ["http://a/h#events=member.*", "http://b/h"]  # from PRESENCED_WEBHOOKS'
    ) in lines
    assert (
        'kafka_sinks = ["kafka://k:9092?topic=t#events=user.*"]  # from PRESENCED_KAFKA_SINKS'
    ) in lines
    assert 'redis_stream_sinks = "***"  # from PRESENCED_REDIS_STREAM_SINKS' in lines
    assert "hunter2" not in "\n".join(lines)


def test_config_reads_presenced_config_env(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "presenced.toml"
    path.write_text("rate_burst = 5\n", encoding="utf-8")
    monkeypatch.setenv("PRESENCED_CONFIG", str(path))
    assert f"rate_burst = 5  # from {path}" in config_lines(capsys)


def test_config_error_exit_code_and_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "--port", "70000"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        "presenced: config error: port: 70000 is out of range; allowed: 0..65535 "
        "(0 = any free port; off = no client port: an admin API node); set by --port\n"
    )


def test_config_error_from_env(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRESENCED_HEARTBEAT_TIMEOUT", "1m")
    assert main(["config"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("presenced: config error: heartbeat_timeout: 60s is more than ")
    assert "heartbeat_interval" in err


def test_serve_with_a_bad_value_returns_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--heartbeat-interval", "soon"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        "presenced: config error: heartbeat_interval: 'soon' (from --heartbeat-interval) is "
        "not a duration; use seconds (25, 1.5) or a number with a unit: 500ms, 25s, 10m, 6h\n"
    )
    assert "Traceback" not in err


def test_serve_with_a_bad_config_file_returns_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "presenced.toml"
    path.write_text("port = 1\nprot = 2\n", encoding="utf-8")
    assert main(["serve", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"presenced: config error: prot: unknown setting 'prot' in {str(path)!r}")
    assert "known settings: host, port" in err


def test_serve_with_jwt_mode_and_no_key_returns_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--auth-mode", "jwt"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("presenced: config error: auth_mode: 'jwt' needs a key")


def test_a_yes_no_flag_alone_means_true(capsys: pytest.CaptureFixture[str]) -> None:
    assert "demo = true  # from --demo" in config_lines(capsys, "--demo")
    assert "demo = false  # from --demo" in config_lines(capsys, "--demo", "off")
    assert "demo = false" in config_lines(capsys)


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    assert capsys.readouterr().out == f"{__version__}\n"
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"presenced {__version__}\n"


def test_no_command_prints_help_and_returns_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "serve" in capsys.readouterr().err


def test_unknown_flag_returns_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--heartbeat", "5s"]) == 2  # no abbreviations
    assert "unrecognized arguments" in capsys.readouterr().err


def test_serve_help_lists_every_setting(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--help"]) == 0
    out = capsys.readouterr().out
    for info in settings_info():
        assert info.flag in out
        assert info.env_var in out
    assert "--config FILE" in out
    assert "(default: 25s; env PRESENCED_HEARTBEAT_INTERVAL)" in " ".join(out.split())


def test_python_dash_m(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRESENCED_")}
    done = subprocess.run(
        [sys.executable, "-m", "presenced", "version"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout) == (0, f"{__version__}\n")
