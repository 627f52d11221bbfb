"""The five scenarios of the suite, each run once per server per round by ``bench.run``.

``idle`` (capacity), ``room`` (fan-out latency and presence propagation on one big
room), ``throughput`` (fan-out rate search) and ``detection`` (vanished and closed
clients); ``base`` holds what they share.
"""

__all__: list[str] = []
