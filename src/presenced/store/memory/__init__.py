"""The in-memory backend: the default, for one process."""

from presenced.store.memory.stores import (
    MemoryBroker,
    MemoryMessageStore,
    MemoryNodeStore,
    MemoryPresenceStore,
    MemoryRoomStore,
    MemorySessionStore,
    MemoryTypingStore,
    memory_backplane,
)

__all__ = [
    "MemoryBroker",
    "MemoryMessageStore",
    "MemoryNodeStore",
    "MemoryPresenceStore",
    "MemoryRoomStore",
    "MemorySessionStore",
    "MemoryTypingStore",
    "memory_backplane",
]
