"""The load generator: worker processes full of picows clients, and their controller.

``worker.py`` is one generator process (uvloop, picows clients, JSON-line commands on
stdin); ``pool.py`` starts several of them and drives them; ``protocols.py`` is what each
server's clients say on the wire.
"""

__all__: list[str] = []
