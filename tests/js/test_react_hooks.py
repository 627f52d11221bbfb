"""The React hooks (clients/react, npm ``@presenced/react``) against a real presenced.

``npm ci`` installs react, react-test-renderer, their types and typescript, and links the
sibling ``@presenced/client`` (``file:../js``); ``npm test`` builds clients/js and then the
hooks with that typescript, and runs ``node --test``, whose suite starts ``python -m
presenced serve`` (this interpreter) itself and renders the hooks without a DOM.
"""

from __future__ import annotations

import os
import sys

from tests.js.npm import REPO, install, npm, passed, run

PACKAGE = REPO / "clients" / "react"


def test_react_hooks_suite() -> None:
    npm_path = npm()
    env = {**os.environ, "PRESENCED_PYTHON": sys.executable, "NO_COLOR": "1"}
    install(npm_path, PACKAGE, env)
    done = run(PACKAGE, [npm_path, "test"], env)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"npm test failed:\n{output[-12000:]}"
    assert passed(output) >= 7, f"too few React hook tests ran:\n{output[-4000:]}"
    built = {p.name for p in (PACKAGE / "dist").glob("*.js")}
    assert {"index.js", "hooks.js", "rooms.js"} <= built, f"an incomplete build: {sorted(built)}"
