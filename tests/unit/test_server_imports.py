"""presenced.server has no import cycle and no import hidden inside a function.

Each module's run-time imports (module level, outside ``if TYPE_CHECKING:``) of other
presenced.server modules form a graph that must have no cycle: the lifecycle owns the
transitions, handlers and the node depend on it, never the other way round. An import inside
a function is how a cycle is usually dodged, so there must be none either (optional
third-party dependencies may still be imported where they are used).
"""

from __future__ import annotations

import ast
from pathlib import Path

import presenced.server

SERVER = Path(presenced.server.__file__).parent


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(tree: ast.Module) -> set[str]:
    found: set[str] = set()
    for stmt in tree.body:
        if isinstance(stmt, ast.If) and _is_type_checking(stmt):
            continue
        for node in ast.walk(stmt):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module.startswith("presenced.server."):
                    found.add(node.module)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("presenced.server."))
    return found


def _graph() -> dict[str, set[str]]:
    graph = {}
    for path in SERVER.glob("*.py"):
        name = f"presenced.server.{path.stem}"
        graph[name] = _runtime_imports(ast.parse(path.read_text()))
    return graph


def test_no_import_cycle_in_the_server_package() -> None:
    graph = _graph()
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for dep in sorted(graph.get(module, ())):
            if state.get(dep) == 1:
                cycle = [*path[path.index(dep) :], dep]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep, [*path, dep])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_no_import_inside_a_function_in_the_server_package() -> None:
    hidden = []
    for path in sorted(SERVER.glob("*.py")):
        tree = ast.parse(path.read_text())
        for fn in ast.walk(tree):
            if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                for node in ast.walk(fn):
                    # (An optional dependency may be imported where it is used: redis,
                    # nats, uvloop. A module of this package may not.)
                    if isinstance(node, ast.ImportFrom) and (
                        node.level or (node.module or "").startswith("presenced.server")
                    ):
                        hidden.append(f"{path.name}:{node.lineno}")
    assert hidden == []


def test_the_lifecycle_depends_on_no_request_layer() -> None:
    """Handlers, messaging, connections and the node call the lifecycle, not the reverse."""
    deps = _graph()["presenced.server.lifecycle"]
    for upper in ("handlers", "messaging", "connection", "node", "cluster", "serve"):
        assert f"presenced.server.{upper}" not in deps
