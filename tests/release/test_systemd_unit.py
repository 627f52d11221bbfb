"""The systemd unit shipped in deploy/ is one systemd accepts as it is (``systemd-analyze
verify``: no error, no warning), pointed at this environment's ``presenced``."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "presenced.service"
INSTALLED = "/opt/presenced/bin/presenced"


def exec_start() -> list[str]:
    (line,) = [ln for ln in UNIT.read_text().splitlines() if ln.startswith("ExecStart=")]
    return line.removeprefix("ExecStart=").split()


def test_the_unit_verifies_clean(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: .ci/run installs systemd"
    here = Path(sys.executable).parent / "presenced"
    assert exec_start()[0] == INSTALLED
    unit = tmp_path / "presenced.service"
    unit.write_text(UNIT.read_text().replace(INSTALLED, str(here)))
    done = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    assert (done.returncode, done.stderr, done.stdout) == (0, "", "")


def test_the_unit_starts_the_server_with_flags_it_has() -> None:
    _, *argv = exec_start()
    assert argv[:1] == ["serve"]
    flags = [a for a in argv if a.startswith("--")]
    here = Path(sys.executable).parent / "presenced"
    usage = subprocess.run(
        [str(here), "serve", "--help"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    for flag in flags:
        assert flag in usage, flag
