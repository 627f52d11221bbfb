"""Every test here that starts in-process servers through ``make_server`` (tests/conftest.py)
runs twice, ``test_x[memory]`` and ``test_x[valkey]``: the memory store runs requests inline
and hides the concurrency that Redis exposes (design.md section 7). A module that picks its
store itself (it passes ``redis=`` or builds its nodes its own way) says so with
``pytestmark = pytest.mark.own_backend`` and runs once; ``@pytest.mark.gateway_backends(...)``
narrows one test to the backends named.
"""

from __future__ import annotations

import pytest

from tests.conftest import BACKENDS

__all__: list[str] = []


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize ``gateway_backend`` (so ``make_server``, ``server``, ``connect``) over
    BACKENDS, unless the test or its module is marked ``own_backend``."""
    if "gateway_backend" not in metafunc.fixturenames:
        return
    if metafunc.definition.get_closest_marker("own_backend") is not None:
        return
    backends = list(BACKENDS)
    narrowed = metafunc.definition.get_closest_marker("gateway_backends")
    if narrowed is not None:
        unknown = set(narrowed.args) - set(BACKENDS)
        if unknown or not narrowed.args:
            raise ValueError(f"gateway_backends{narrowed.args}: expected some of {BACKENDS}")
        backends = [b for b in BACKENDS if b in narrowed.args]
    metafunc.parametrize("gateway_backend", backends, indirect=True, ids=backends)
