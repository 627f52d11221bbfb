"""The README's two commands for a newcomer: each makes its own virtual environment (Debian's
Python refuses a bare ``pip install``), and CI runs the test command verbatim."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def first_shell_block(section: str) -> str:
    """The first ``sh`` block after the README heading ``section``."""
    text = (ROOT / "README.md").read_text().split(f"## {section}\n", 1)[1]
    match = re.search(r"```sh\n(.*?)\n```", text, re.S)
    assert match, f"README: no sh block under '{section}'"
    return match.group(1)


def test_each_command_makes_its_venv_first() -> None:
    for section in ("Run it", "Run the tests"):
        command = first_shell_block(section)
        assert "\n" not in command, f"{section}: one line"
        assert command.startswith("python3 -m venv .venv && . .venv/bin/activate && pip install")


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    command = first_shell_block("Run the tests")
    assert command.endswith("python -m pytest -q -n 2")
    assert command in (ROOT / ".ci" / "run").read_text().splitlines()


def test_the_start_command_serves_on_the_embedded_default() -> None:
    command = first_shell_block("Run it")
    assert command.endswith("&& presenced serve")  # no store or broker flag: memory
