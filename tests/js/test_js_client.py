"""The TypeScript client (clients/js) against real presenced processes, run by its own tests.

``npm ci`` installs its one dev dependency (typescript) when ``node_modules`` is missing or was
installed from another ``package-lock.json``; ``npm test`` builds it and runs ``node --test``,
whose suites start presenced (``python -m presenced serve`` with this interpreter) and
valkey-server themselves. So the README's one test command covers the JS client too.
"""

from __future__ import annotations

import os
import sys

from tests.js.npm import REPO, install, npm, passed, run

CLIENT = REPO / "clients" / "js"
WEB_CLIENT = REPO / "src" / "presenced" / "web" / "client"  # the demo page's copy (committed)


def test_js_client_suite() -> None:
    npm_path = npm()
    env = {**os.environ, "PRESENCED_PYTHON": sys.executable, "NO_COLOR": "1"}
    install(npm_path, CLIENT, env)
    done = run(CLIENT, [npm_path, "test"], env)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"npm test failed:\n{output[-12000:]}"
    assert passed(output) >= 30, f"too few JS tests ran:\n{output[-4000:]}"
    # npm test built dist/: the copy presenced serves to its demo page must be that build.
    built = {p.name: p.read_bytes() for p in (CLIENT / "dist").glob("*.js")}
    served = {p.name: p.read_bytes() for p in WEB_CLIENT.glob("*.js")}
    stale = sorted(n for n in built.keys() | served.keys() if built.get(n) != served.get(n))
    assert not stale, (
        f"src/presenced/web/client/ is not the current build of clients/js ({', '.join(stale)}): "
        "run `npm run build:web` in clients/js and commit the result"
    )
