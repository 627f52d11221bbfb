"""The TypeScript client (clients/js) against real presenced processes, run by its own tests.

``npm ci`` installs its one dev dependency (typescript) when ``node_modules`` is missing or was
installed from another ``package-lock.json``; ``npm test`` builds it and runs ``node --test``,
whose suites start presenced (``python -m presenced serve`` with this interpreter) and
valkey-server themselves. So the README's one test command covers the JS client too.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CLIENT = REPO / "clients" / "js"
WEB_CLIENT = REPO / "src" / "presenced" / "web" / "client"  # the demo page's copy (committed)
STAMP = CLIENT / "node_modules" / ".presenced-lock.sha256"  # the lock node_modules came from
TIMEOUT = 300.0  # seconds, for each npm command; the suite takes well under a minute


def _npm() -> str:
    npm = shutil.which("npm")
    # Not a skip: a machine without Node (18+) and npm cannot check the JS client, and must
    # say so (.ci/run runs on machines that have them; see README.md).
    assert npm is not None and shutil.which("node") is not None, (
        "node and npm are needed for the clients/js tests: install Node.js 18+ with npm"
    )
    return npm


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        cwd=CLIENT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def _install(npm: str, env: dict[str, str]) -> None:
    lock = hashlib.sha256((CLIENT / "package-lock.json").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text().strip() == lock:
        return
    done = _run([npm, "ci", "--no-audit", "--no-fund"], env)
    assert done.returncode == 0, f"npm ci failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    STAMP.write_text(lock + "\n")


def test_js_client_suite() -> None:
    npm = _npm()
    env = {**os.environ, "PRESENCED_PYTHON": sys.executable, "NO_COLOR": "1"}
    _install(npm, env)
    done = _run([npm, "test"], env)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"npm test failed:\n{output[-12000:]}"
    passed = re.search(r"^# pass (\d+)$", output, re.MULTILINE)
    failed = re.search(r"^# fail (\d+)$", output, re.MULTILINE)
    assert passed is not None and failed is not None, f"no test summary:\n{output[-4000:]}"
    assert int(failed.group(1)) == 0
    assert int(passed.group(1)) >= 30, f"too few JS tests ran:\n{output[-4000:]}"
    # npm test built dist/: the copy presenced serves to its demo page must be that build.
    built = {p.name: p.read_bytes() for p in (CLIENT / "dist").glob("*.js")}
    served = {p.name: p.read_bytes() for p in WEB_CLIENT.glob("*.js")}
    stale = sorted(n for n in built.keys() | served.keys() if built.get(n) != served.get(n))
    assert not stale, (
        f"src/presenced/web/client/ is not the current build of clients/js ({', '.join(stale)}): "
        "run `npm run build:web` in clients/js and commit the result"
    )
