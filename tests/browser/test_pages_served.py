"""The pages' files as served (no browser): the demo only with ``demo`` on, on the client
port; the dashboard always, on the admin port, with a strict Content-Security-Policy."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable

from presenced.web import DASHBOARD, DEMO, Pages
from tests.support.nodes import PresencedNode


def get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_the_pages_and_their_aliases() -> None:
    demo = Pages(("demo", "client"), DEMO)
    for path in ("/", "/demo", "/demo/", "/demo/index.html"):
        assert demo.get(path) == demo.get("/demo/index.html")
    assert demo.get("/demo/demo.js") is not None
    body, kind = demo.get("/client/index.js") or (b"", "")
    assert kind == "text/javascript; charset=utf-8" and b"PresencedClient" in body
    assert demo.get("/dashboard/") is None and demo.get("/client/") is None
    board = Pages(("dashboard",), DASHBOARD)
    assert board.get("/dashboard") == board.get("/dashboard/")
    assert {"/dashboard/dashboard.js", "/dashboard/dashboard.css"} <= set(board.paths)


def test_demo_on_the_client_port_only_when_asked(
    start_node: Callable[..., PresencedNode],
) -> None:
    plain = start_node()
    assert get(f"http://127.0.0.1:{plain.port}/")[0] == 404
    assert get(f"http://127.0.0.1:{plain.port}/client/index.js")[0] == 404
    demo = start_node(demo="true")
    status, headers, body = get(f"http://127.0.0.1:{demo.port}/")
    assert (status, headers["Content-Type"]) == (200, "text/html; charset=utf-8")
    assert b'src="/demo/demo.js"' in body
    assert get(f"http://127.0.0.1:{demo.port}/client/client.js")[0] == 200
    assert get(f"http://127.0.0.1:{demo.port}/demo/nope.js")[0] == 404
    assert get(f"http://127.0.0.1:{demo.port}/health")[0] == 200


def test_dashboard_on_the_admin_port(start_node: Callable[..., PresencedNode]) -> None:
    node = start_node(api_keys="read:dashboard-files-need-no-key-0123")
    status, headers, body = get(f"{node.admin_url}/dashboard/")
    assert status == 200 and b"/dashboard/dashboard.js" in body
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert get(f"{node.admin_url}/dashboard")[0] == 200
    assert get(f"{node.admin_url}/dashboard/dashboard.js")[1]["Content-Type"].startswith(
        "text/javascript"
    )
    status, _, body = get(f"{node.admin_url}/dashboard/nope.js")
    assert status == 404 and b"NOT_FOUND" in body
    assert get(f"{node.admin_url}/v1/stats")[0] == 401  # the data still needs the key
