"""Identifier types shared by every layer.

They are ``NewType`` aliases of ``str``: free at run time, distinct to the type checker, so a
room id cannot be passed where a user id is expected.
"""

from typing import NewType

__all__ = ["DeviceId", "NodeId", "RoomId", "SessionId", "UserId"]

UserId = NewType("UserId", str)
SessionId = NewType("SessionId", str)
RoomId = NewType("RoomId", str)
NodeId = NewType("NodeId", str)
DeviceId = NewType("DeviceId", str)
