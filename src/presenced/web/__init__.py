"""The browser pages presenced serves, as static files: no framework, no build of their own.

- ``demo/``: the demo chat page, on the client port when the ``demo`` setting is on
  (``presenced serve --demo``): ``/`` (and ``/demo/``) is the page, ``/demo/*`` its script
  and style. It imports ``/client/index.js``.
- ``client/``: the TypeScript client (``clients/js``) compiled by its own build, one ES module
  per source file. The copy is committed so that ``pip install`` and ``presenced serve
  --demo`` need no Node; ``npm run build:web`` in clients/js refreshes it, and
  ``tests/js/test_js_client.py`` fails when it is not the current build.
- ``dashboard/``: the live dashboard, on the admin port at ``/dashboard/``. It calls the HTTP
  API with the key the operator types in; the page itself holds no data.

:class:`Pages` reads a set of these files once, at start, and answers by URL path.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from importlib.resources import files

__all__ = ["DASHBOARD", "DEMO", "Page", "Pages"]

Page = tuple[bytes, str]
"""A file's bytes and its content type."""

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}

DEMO: Mapping[str, str] = {"/": "demo/index.html", "/demo": "demo/index.html"}
"""The demo's URL aliases (besides ``/demo/<file>`` and ``/client/<file>``)."""

DASHBOARD: Mapping[str, str] = {"/dashboard": "dashboard/index.html"}


class Pages:
    """The files of ``folders`` (under this package) by URL path: ``/<folder>/<name>``, and
    ``/<folder>/`` for its ``index.html``; ``aliases`` map more paths to files."""

    def __init__(self, folders: Iterable[str], aliases: Mapping[str, str] | None = None) -> None:
        root = files(__name__)
        self._pages: dict[str, Page] = {}
        for folder in folders:
            for entry in root.joinpath(folder).iterdir():
                kind = _TYPES.get("." + entry.name.rpartition(".")[2])
                if kind is None or not entry.is_file():
                    continue
                page = (entry.read_bytes(), kind)
                self._pages[f"/{folder}/{entry.name}"] = page
                if entry.name == "index.html":
                    self._pages[f"/{folder}/"] = page
        for path, name in (aliases or {}).items():
            self._pages[path] = self._pages[f"/{name}"]

    def get(self, path: str) -> Page | None:
        """The file served at ``path``, or None."""
        return self._pages.get(path)

    def __contains__(self, path: object) -> bool:
        return path in self._pages

    @property
    def paths(self) -> list[str]:
        return sorted(self._pages)
