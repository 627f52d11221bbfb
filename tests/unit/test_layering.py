"""The one dependency rule: the core and the protocol know nothing of I/O.

Importing :mod:`presenced.presence` in a fresh interpreter must pull in no asyncio, socket,
Redis, WebSocket or JSON module; importing the protocol package (messages, codes, codec) no
asyncio, socket, Redis or WebSocket module (msgspec does the JSON). A fresh interpreter is
needed because this test process has long since imported all of them. A static check also
keeps the core's own imports pointing inward.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import presenced.presence

__all__: list[str] = []

IO_MODULES = ("asyncio", "socket", "redis", "websockets", "picows")
CORE_FORBIDDEN = (*IO_MODULES, "json")
PROTOCOL_MODULES = (
    "presenced.protocol.codes",
    "presenced.protocol.messages",
    "presenced.protocol.codec",
)

# Print the loaded modules one per line (no json: it must not be loaded by the probe itself).
_PROBE = """
import sys
{imports}
print("\\n".join(sorted(sys.modules)))
"""


def loaded_after(*modules: str) -> set[str]:
    """The names in sys.modules of a fresh interpreter after importing ``modules``."""
    code = _PROBE.format(imports="\n".join(f"import {m}" for m in modules))
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return set(result.stdout.split())


def offenders(loaded: set[str], forbidden: tuple[str, ...]) -> list[str]:
    return sorted(m for m in loaded if any(m == f or m.startswith(f + ".") for f in forbidden))


def test_presence_core_imports_no_io() -> None:
    loaded = loaded_after("presenced.presence")
    # The probe really imported the whole core ...
    for sub in ("session", "deadlines", "liveness", "roster", "status", "ratelimit"):
        assert f"presenced.presence.{sub}" in loaded
    # ... and nothing it must not.
    assert offenders(loaded, CORE_FORBIDDEN) == []


def test_protocol_imports_no_io() -> None:
    loaded = loaded_after(*PROTOCOL_MODULES)
    assert set(PROTOCOL_MODULES) <= loaded
    assert offenders(loaded, IO_MODULES) == []


def test_the_probe_does_see_io_modules() -> None:
    # The check is not vacuous: a module that does use asyncio and json is caught.
    loaded = loaded_after("presenced.testing")
    assert {"asyncio", "json"} <= set(offenders(loaded, CORE_FORBIDDEN))


# Parts of presenced that sit outside the core: the core may not import any of them.
_OUTER = ("server", "store", "http", "events", "client", "web", "cli", "testing")


def _imports_of(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


CORE_FILES = sorted(Path(presenced.presence.__file__).parent.glob("*.py"))


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: p.name)
def test_core_imports_point_inward(path: Path) -> None:
    bad = [
        name
        for name in _imports_of(path)
        if name.split(".")[0] in CORE_FORBIDDEN
        or any(name == f"presenced.{o}" or name.startswith(f"presenced.{o}.") for o in _OUTER)
    ]
    assert bad == [], f"{path.name} imports {bad}"


def test_core_files_were_found() -> None:
    assert {p.name for p in CORE_FILES} >= {
        "__init__.py",
        "session.py",
        "deadlines.py",
        "liveness.py",
        "roster.py",
        "status.py",
        "ratelimit.py",
    }
