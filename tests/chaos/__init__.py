"""Chaos tests: many nodes and clients on a real Valkey, with random failures, then checks."""

__all__: list[str] = []
