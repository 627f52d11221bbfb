"""presenced: a realtime presence gateway.

Who is online, on which devices, in which rooms, with which status, and who is typing,
with one promise: no ghosts, no flicker. See docs/architecture.md for the layout.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
