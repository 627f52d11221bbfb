"""What a user installs is what is tested: the sdist and the wheel built as a release would
be (``python -m build``), the wheel installed into a fresh virtual environment, and the
server started from it, answering ``/health`` on the embedded default."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import venv
import zipfile
from pathlib import Path

import pytest

import presenced

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(*argv: str | Path, timeout: float = 300) -> str:
    done = subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{argv}: {done.stdout}\n{done.stderr}"
    return done.stdout


def test_the_built_wheel_installs_and_serves(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    run(sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", dist, ROOT)
    (wheel,) = dist.glob("presenced-*.whl")
    (sdist,) = dist.glob("presenced-*.tar.gz")
    assert wheel.name.startswith(f"presenced-{presenced.__version__}-")
    assert sdist.name == f"presenced-{presenced.__version__}.tar.gz"
    names = zipfile.ZipFile(wheel).namelist()
    assert "presenced/store/redis/lua/presence_set.lua" in names  # the scripts ship
    assert "presenced/web/demo/index.html" in names  # and the pages, with the built client
    assert any(n.startswith("presenced/web/client/") and n.endswith(".js") for n in names)
    assert any(n.endswith("licenses/LICENSE") for n in names)

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    run(python, "-m", "pip", "install", "--quiet", wheel)
    assert run(env_dir / "bin" / "presenced", "version").strip() == presenced.__version__
    assert run(python, "-m", "presenced", "version").strip() == presenced.__version__

    port, admin = free_port(), free_port()
    log = tmp_path / "server.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [
                env_dir / "bin" / "presenced",
                "serve",
                "--port",
                str(port),
                "--admin-port",
                str(admin),
            ],
            cwd=tmp_path,  # away from the checkout: only the installed package can be imported
            env={k: v for k, v in os.environ.items() if not k.startswith("PRESENCED_")},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        health = None
        deadline = time.monotonic() + 30
        while health is None:
            assert server.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "no /health from the installed server"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    health = json.loads(r.read())
            except OSError:
                time.sleep(0.1)  # poll pacing, bounded by the deadline
        assert health["status"] == "ok"
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=15) == 0
