"""The event export: what happens in presenced, sent to the app's backend (docs/events.md)."""

from presenced.events.export import DeadLetter, EventExport, Sink, SinkPolicy, SinkStats
from presenced.events.model import CATALOGUE, EVENTS_VERSION, Event, EventFilter

__all__ = [
    "CATALOGUE",
    "EVENTS_VERSION",
    "DeadLetter",
    "Event",
    "EventExport",
    "EventFilter",
    "Sink",
    "SinkPolicy",
    "SinkStats",
]
