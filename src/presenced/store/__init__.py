"""The backplane seam: shared state and event fan-out behind small Protocols.

:mod:`presenced.store.base` declares them; :mod:`presenced.store.memory` implements them in
process (the default); a Redis implementation passes the same conformance suite.
"""

from presenced.store.base import (
    Backplane,
    Broker,
    MessageHandler,
    PresenceStore,
    RoomStore,
    SessionStore,
)

__all__ = ["Backplane", "Broker", "MessageHandler", "PresenceStore", "RoomStore", "SessionStore"]
