"""``presenced serve`` under tracemalloc, dumping a snapshot on each SIGUSR1.

Run as ``python -m bench.traced_serve DUMP_PREFIX [serve arguments...]``. The first SIGUSR1
starts tracing (tracing from the start would make the start-up take half a minute, and
only what is allocated after the first snapshot counts anyway); every SIGUSR1 then
writes ``DUMP_PREFIX.<n>.snap`` (``tracemalloc.Snapshot.dump``) after a full garbage
collection, then ``DUMP_PREFIX.<n>.types`` (live objects counted by type, with their
``sys.getsizeof`` total) and ``DUMP_PREFIX.<n>.done``, which the driver waits for. Only
:mod:`bench.memory_sites` uses it; the server itself knows nothing of it.
"""

from __future__ import annotations

import gc
import json
import signal
import sys
import tracemalloc
from collections import Counter
from types import FrameType

from presenced.cli import main as presenced_main

FRAMES = 30


def _types() -> dict[str, list[int]]:
    """Live gc-tracked objects (and the dicts' and lists' contents) counted by type."""
    count: Counter[str] = Counter()
    size: Counter[str] = Counter()
    for obj in gc.get_objects():
        name = type(obj).__qualname__
        module = type(obj).__module__
        key = name if module == "builtins" else f"{module}.{name}"
        count[key] += 1
        size[key] += sys.getsizeof(obj)
    return {k: [count[k], size[k]] for k in count}


def _holders(obj: object, depth: int = 3) -> str:
    """What keeps ``obj`` alive: the types of its referrers, ``depth`` levels up."""
    chain = []
    for _ in range(depth):
        # Frames and lists are this function's own and gc.get_objects()'s result.
        refs = [r for r in gc.get_referrers(obj) if not isinstance(r, (FrameType, list))]
        if not refs:
            break
        obj = refs[0]
        chain.append(f"{type(obj).__module__}.{type(obj).__qualname__}")
    return " <- ".join(chain)


def _sites() -> dict[str, list[str]]:
    """For a few objects per allocation line (presenced's and picows's), what holds them."""
    out: dict[str, list[str]] = {}
    for obj in gc.get_objects():
        tb = tracemalloc.get_object_traceback(obj)
        if tb is None:
            continue
        frame = next(
            (f for f in reversed(tb) if "/presenced/" in f.filename or "/picows/" in f.filename),
            tb[-1],
        )
        key = f"{frame.filename.split('/')[-1]}:{frame.lineno}"
        samples = out.setdefault(key, [])
        if len(samples) < 2:
            samples.append(f"{type(obj).__qualname__}: {_holders(obj)}")
    return out


def main() -> int:
    prefix = sys.argv[1]
    dumps = 0

    def dump(signum: int, frame: FrameType | None) -> None:
        nonlocal dumps
        dumps += 1
        if not tracemalloc.is_tracing():
            tracemalloc.start(FRAMES)
        gc.collect()
        tracemalloc.take_snapshot().dump(f"{prefix}.{dumps}.snap")
        with open(f"{prefix}.{dumps}.types", "w") as f:
            json.dump(_types(), f)
        if dumps > 1:
            with open(f"{prefix}.{dumps}.holders", "w") as f:
                json.dump(_sites(), f, indent=1)
        with open(f"{prefix}.{dumps}.done", "w") as f:
            f.write("ok")

    signal.signal(signal.SIGUSR1, dump)
    return presenced_main(["serve", *sys.argv[2:]])


if __name__ == "__main__":
    sys.exit(main())
