"""The admin API against its own OpenAPI document, with schemathesis: thousands of generated
requests (valid, invalid, and stateful sequences) at a live server, on memory and on Valkey.
No answer may be a 5xx, and every answer must match the document (status, content type,
body schema, Allow header); schema-valid input must be accepted, invalid input refused."""

from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path

from tests.conftest import ServerFactory

SECRET = "schema-admin-key-0123456789"


async def test_schemathesis_finds_nothing(make_server: ServerFactory, tmp_path: Path) -> None:
    node = await make_server(api_keys=f"admin:{SECRET}")
    exe = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert exe is not None, "schemathesis is in the test extra: pip install -e '.[test]'"
    process = await asyncio.create_subprocess_exec(
        exe,
        "run",
        f"{node.admin_url}/openapi.json",
        "--checks",
        "all",
        "--header",
        f"Authorization: Bearer {SECRET}",
        "--max-examples",
        "25",
        "--workers",
        "1",
        "--seed",
        "20261202",
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=240)
    text = output.decode(errors="replace")
    assert process.returncode == 0, text[-6000:]
    assert "passed" in text and "failures" not in text.split("SUMMARY")[-1], text[-3000:]
