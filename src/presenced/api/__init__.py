"""The typed Python client of presenced's admin HTTP API, for backends.

:class:`ApiClient` (in :mod:`presenced.api.client`) calls every endpoint and returns the
bodies as the Structs of :mod:`presenced.api.models`; errors raise :class:`ApiError` with
the status, code, message and field the server sent.
"""

from presenced.api.client import ApiClient, ApiError

__all__ = ["ApiClient", "ApiError"]
