"""The servers under test: how to start each one, which dialect its clients speak, versions.

Every server gets the same liveness settings for a scenario: a transport ping every
``interval`` s and ``timeout`` s for its answer. presenced adds ``grace`` (a dropped
session may come back unseen for that long; the peers have no such thing and announce a
leave at once). presenced runs in insecure dev mode with ``--inactivity-timeout off``.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

__all__ = [
    "NODE_DIR",
    "REPO",
    "SERVERS",
    "Liveness",
    "ServerKind",
    "ensure_node_modules",
    "versions",
]

REPO = Path(__file__).resolve().parent.parent
NODE_DIR = REPO / "bench" / "peers" / "socketio-node"


@dataclass(frozen=True, slots=True)
class Liveness:
    """Heartbeat settings of one scenario (seconds)."""

    interval: float
    timeout: float
    grace: float


@dataclass(frozen=True, slots=True)
class ServerKind:
    """One server under test."""

    name: str
    dialect: str

    def argv(self, port: int | None, live: Liveness, admin_port: int = 0) -> list[str]:
        """Command line that serves on 127.0.0.1:``port``.

        presenced's admin port goes on ``admin_port`` (0: any free one, unknown to the
        suite; the api_load scenario passes a free port it picked); ``port`` None is
        presenced's ``--port off``, an admin-only node (the api_offload scenario).
        """
        i, t = f"{live.interval:g}", f"{live.timeout:g}"
        if self.name == "presenced":
            return [
                sys.executable,
                "-m",
                "presenced",
                "serve",
                "--port",
                "off" if port is None else str(port),
                "--admin-port",
                str(admin_port),
                "--heartbeat-interval",
                i,
                "--heartbeat-timeout",
                t,
                "--grace",
                f"{live.grace:g}",
                "--inactivity-timeout",
                "off",
                "--log-level",
                "warning",
            ]
        if port is None:
            raise ValueError(f"{self.name} has no admin-only mode")
        if self.name == "socketio-node":
            return ["node", str(NODE_DIR / "server.js"), str(port), i, t]
        if self.name == "ws-node":
            return ["node", str(NODE_DIR / "ws_server.js"), str(port), i, t]
        if self.name == "python-socketio":
            return [sys.executable, "-m", "bench.peers.socketio_py", str(port), i, t]
        if self.name == "websockets-bare":
            return [sys.executable, "-m", "bench.peers.ws_bare", str(port), i, t]
        raise ValueError(self.name)

    def bound(self, live: Liveness) -> float:
        """Configured worst case to notice a vanished client (interval + timeout + grace)."""
        return live.interval + live.timeout + (live.grace if self.name == "presenced" else 0.0)


SERVERS: dict[str, ServerKind] = {
    s.name: s
    for s in (
        ServerKind("presenced", "presenced"),
        ServerKind("socketio-node", "socketio"),
        ServerKind("python-socketio", "socketio"),
        ServerKind("websockets-bare", "presenced"),
        ServerKind("ws-node", "presenced"),
    )
}


def ensure_node_modules() -> None:
    """Install the Node peer's locked dependencies (``npm ci``) if they are missing."""
    if not (NODE_DIR / "node_modules" / "socket.io").is_dir():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, check=True)


def _pkg(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def _node_pkg(name: str) -> str:
    path = NODE_DIR / "node_modules" / name / "package.json"
    if not path.exists():
        return "not installed"
    import json

    return str(json.loads(path.read_text())["version"])


def _git_state() -> str:
    """`` @ <commit>`` of the work tree, with the source files changed since, if any."""
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    )
    if head.returncode != 0:
        return ""
    dirty = subprocess.run(
        ["git", "status", "--short", "src"], cwd=REPO, capture_output=True, text=True
    ).stdout.split("\n")
    changed = [line[3:] for line in dirty if line.strip()]
    extra = f" (+ changes to {', '.join(changed)})" if changed else ""
    return f" @ {head.stdout.strip()}{extra}"


def versions(servers: list[str]) -> dict[str, str]:
    """Versions of everything that matters to the figures."""
    out = {
        "python": sys.version.split()[0],
        "presenced": _pkg("presenced") + _git_state(),
        "picows": _pkg("picows"),
        "aiofastnet": _pkg("aiofastnet"),
        "msgspec": _pkg("msgspec"),
        "uvloop": _pkg("uvloop"),
        "websockets": _pkg("websockets"),
    }
    if "python-socketio" in servers:
        out |= {
            "python-socketio": _pkg("python-socketio"),
            "python-engineio": _pkg("python-engineio"),
            "uvicorn": _pkg("uvicorn"),
        }
    if "socketio-node" in servers or "ws-node" in servers:
        node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False)
        out |= {
            "node": node.stdout.strip(),
            "socket.io": _node_pkg("socket.io"),
            "engine.io": _node_pkg("engine.io"),
            "ws": _node_pkg("ws"),
            "bufferutil": _node_pkg("bufferutil"),
        }
    return out
