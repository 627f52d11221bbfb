"""``python -m presenced``: the same as the ``presenced`` command."""

from presenced.cli import main

__all__: list[str] = []

if __name__ == "__main__":
    raise SystemExit(main())
