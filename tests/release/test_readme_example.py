"""The README's SDK example, run as a user would against a real server: it works, and what
it prints holds no secret (the welcome's resume token takes over the session)."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

from tests.conftest import ServerFactory

README = Path(__file__).resolve().parents[2] / "README.md"


def sdk_example() -> str:
    """The first Python block of the README's "Talk to it" section."""
    section = README.read_text().split("## Talk to it", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README: no Python example under 'Talk to it'"
    return match.group(1)


async def test_the_readme_example_runs_and_prints_no_resume_token(
    make_server: ServerFactory,
) -> None:
    server = await make_server()
    code = sdk_example()
    assert "ws://127.0.0.1:7400/ws" in code
    code = code.replace("ws://127.0.0.1:7400/ws", server.url)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(20):
            while not any(line.startswith("in the lobby:") for line in lines) or not any(
                "Welcome(" in line for line in lines
            ):
                raw = await proc.stdout.readline()
                assert raw, f"the example ended early: {lines}"
                lines.append(raw.decode())
    finally:
        proc.terminate()
        await proc.wait()
    printed = "".join(lines)
    assert "in the lobby: ['alice']" in printed
    assert "resume_token=<hidden>" in printed
    assert not re.search(r"resume_token='", printed)
