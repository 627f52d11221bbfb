"""Running an npm package's own tests from pytest: clients/js and clients/react.

Not a skip anywhere: a machine without Node (18+) and npm cannot check the JS packages, and
must say so (.ci/run runs on machines that have them; see README.md).
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 300.0  # seconds, for each npm command; each suite takes well under a minute


def npm() -> str:
    found = shutil.which("npm")
    assert found is not None and shutil.which("node") is not None, (
        "node and npm are needed for the clients/js and clients/react tests: "
        "install Node.js 18+ with npm"
    )
    return found


def run(package: Path, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        cwd=package,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def install(npm_path: str, package: Path, env: dict[str, str]) -> None:
    """`npm ci` unless node_modules was installed from this very package-lock.json."""
    stamp = package / "node_modules" / ".presenced-lock.sha256"
    lock = hashlib.sha256((package / "package-lock.json").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text().strip() == lock:
        return
    done = run(package, [npm_path, "ci", "--no-audit", "--no-fund"], env)
    assert done.returncode == 0, f"npm ci failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    stamp.write_text(lock + "\n")


def passed(output: str) -> int:
    """The number of passed tests in `node --test` output that failed none."""
    passes = re.search(r"^# pass (\d+)$", output, re.MULTILINE)
    fails = re.search(r"^# fail (\d+)$", output, re.MULTILINE)
    assert passes is not None and fails is not None, f"no test summary:\n{output[-4000:]}"
    assert int(fails.group(1)) == 0, f"failed tests:\n{output[-12000:]}"
    return int(passes.group(1))
