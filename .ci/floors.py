"""Print pip constraints pinning each runtime dependency to the lowest version pyproject.toml
allows (its ``>=`` floor): the project's own dependencies and its runtime extras (redis,
nats, kafka). The test tools stay at their newest: what is tested is what a user may get.

``python .ci/floors.py > floors.txt && pip install -c floors.txt -e '.[test]'``
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

RUNTIME_EXTRAS = ("redis", "nats", "kafka", "fast")


def floors(pyproject: Path) -> dict[str, str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    wanted = list(project["dependencies"])
    for extra in RUNTIME_EXTRAS:
        wanted += project["optional-dependencies"].get(extra, [])
    pins: dict[str, str] = {}
    for spec in wanted:
        match = re.match(r"^\s*([A-Za-z0-9_.-]+)(\[[^\]]*\])?\s*>=\s*([0-9][^,;\s]*)", spec)
        if match is None:
            sys.exit(f"{spec!r}: every runtime dependency needs a >= floor")
        name, version = match.group(1).lower(), match.group(3)
        if name in pins and pins[name] != version:
            sys.exit(f"{name}: two floors ({pins[name]}, {version})")
        pins[name] = version
    return pins


if __name__ == "__main__":
    root = Path(__file__).resolve().parents[1]
    for name, version in sorted(floors(root / "pyproject.toml").items()):
        print(f"{name}=={version}")
