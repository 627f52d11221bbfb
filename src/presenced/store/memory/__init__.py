"""The in-memory backend: the default, for one process."""

from presenced.store.memory.stores import (
    MemoryBroker,
    MemoryPresenceStore,
    MemoryRoomStore,
    MemorySessionStore,
    memory_backplane,
)

__all__ = [
    "MemoryBroker",
    "MemoryPresenceStore",
    "MemoryRoomStore",
    "MemorySessionStore",
    "memory_backplane",
]
