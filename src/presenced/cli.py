"""The ``presenced`` command: ``serve``, ``config`` and ``version``.

Every setting gets a flag generated from :class:`presenced.config.Settings` (``--heartbeat-
interval`` for ``heartbeat_interval``), with its help, allowed values and default taken from
the same field, so a new setting needs no change here. ``presenced config`` prints the
effective settings after file, environment and flags are merged, secrets hidden, so a
deployment can be checked before it starts. A bad setting prints one line naming the key and
exits with status 2 (as argparse does for a bad flag), never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from presenced import __version__
from presenced.config import SettingInfo, Settings, load_settings_with_origins, settings_info
from presenced.errors import ConfigError
from presenced.logs import TEXT_FORMAT, setup_logging

__all__ = ["LOG_FORMAT", "main"]

LOG_FORMAT = TEXT_FORMAT

_METAVARS = {
    "duration": "DURATION",
    "size": "SIZE",
    "int": "N",
    "float": "RATE",
    "algorithms": "ALGS",
    "pem": "KEY",
    "bool": "BOOL",
}
_EXIT_CONFIG = 2  # the same status argparse uses for a bad command line


def _metavar(info: SettingInfo) -> str:
    if info.kind == "choice":
        return "{" + info.allowed.split(" (")[0].replace(", ", ",") + "}"
    return _METAVARS.get(info.kind, "TEXT")


def _default_text(info: SettingInfo) -> str:
    value = info.default
    if value is None:
        return {"duration": "off", "choice": "auto"}.get(info.kind, "not set")
    if info.kind == "duration" and isinstance(value, float):
        return f"{value:g}s"
    if info.kind == "size" and isinstance(value, int):
        for unit, size in (("MiB", 1024 * 1024), ("KiB", 1024)):
            if value % size == 0:
                return f"{value // size}{unit}"
    return str(value)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="presenced",
        description="Realtime presence gateway: who is online, on which devices, in which rooms.",
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"presenced {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    # The settings flags, shared by `serve` and `config`. Flags not given stay absent from the
    # namespace (SUPPRESS), so they do not override the environment or the config file.
    flags = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    group = flags.add_argument_group(
        "settings",
        "Each flag overrides its PRESENCED_<KEY> environment variable, which overrides the "
        "config file. Durations: 25, 1.5, 500ms, 25s, 10m, 6h. Sizes: 65536, 64KiB, 1MiB.",
    )
    group.add_argument(
        "--config",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="TOML config file: flat keys or a [presenced] table (default: $PRESENCED_CONFIG)",
    )
    for info in settings_info():
        text = (
            f"{info.help}; allowed: {info.allowed} "
            f"(default: {_default_text(info)}; env {info.env_var})"
        )
        # A yes/no setting's flag alone means true (`--demo`); `--demo false` turns it off.
        switch: dict[str, str] = {"nargs": "?", "const": "true"} if info.kind == "bool" else {}
        group.add_argument(
            info.flag,
            dest=info.name,
            metavar=_metavar(info),
            default=argparse.SUPPRESS,
            help=text.replace("%", "%%"),  # argparse formats help with %
            **switch,  # type: ignore[arg-type]
        )

    commands.add_parser(
        "serve", parents=[flags], allow_abbrev=False, help="run the gateway until Ctrl-C/SIGTERM"
    )
    commands.add_parser(
        "config",
        parents=[flags],
        allow_abbrev=False,
        help="print the effective settings (secrets hidden) and exit",
    )
    commands.add_parser("version", help="print the version and exit")
    return parser


def _load(args: argparse.Namespace) -> tuple[Settings, dict[str, str]]:
    given = vars(args)
    cli = {info.name: given[info.name] for info in settings_info() if info.name in given}
    return load_settings_with_origins(cli=cli, config_file=given.get("config"))


def _toml_value(info: SettingInfo, settings: Settings) -> str | None:
    """The setting as a TOML value, or None when it is not set."""
    value = getattr(settings, info.name)
    if info.name == "auth_mode":
        value = settings.effective_auth_mode
    elif info.name == "jwt_algorithms":
        value = settings.effective_jwt_algorithms or None
    if value is None:
        return '"off"' if info.kind == "duration" else None
    if info.secret:
        return '"***"'
    if isinstance(value, tuple):
        # Entries that are objects (webhook receivers, sinks) are shown as they are written.
        items = (item if isinstance(item, str | int | float) else str(item) for item in value)
        return "[" + ", ".join(json.dumps(item) for item in items) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    return repr(value)


def _render(settings: Settings, origins: dict[str, str]) -> str:
    lines = [f"# presenced {__version__}: effective settings"]
    for info in settings_info():
        value = _toml_value(info, settings)
        auto = info.name in ("auth_mode", "jwt_algorithms") and getattr(settings, info.name) is None
        notes = ["auto"] if auto and value is not None else []  # shown resolved, not as set
        if info.name in origins:
            notes.append(f"from {origins[info.name]}")
        comment = f"  # {', '.join(notes)}" if notes else ""
        if value is None:
            lines.append(f"# {info.name} is not set{comment}")
        else:
            lines.append(f"{info.name} = {value}{comment}")
    return "\n".join(lines)


def _serve(args: argparse.Namespace) -> int:
    settings, _ = _load(args)
    setup_logging(settings.log_level, settings.log_format)
    # Imported here: the server pulls in the event loop and transport, which `config` and
    # `version` do not need.
    from presenced.server.workers import run

    try:
        return run(settings)
    except KeyboardInterrupt:  # Ctrl-C before the server installed its own handlers
        return 130
    except OSError as exc:  # the port is taken, the host is not ours...
        print(
            f"presenced: cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}",
            file=sys.stderr,
        )
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``presenced`` command line; returns the process exit status."""
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version or a bad flag: argparse already printed
        return exc.code if isinstance(exc.code, int) else 2
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "config":
            print(_render(*_load(args)))
            return 0
        if args.command == "version":
            print(__version__)
            return 0
    except ConfigError as exc:
        print(f"presenced: config error: {exc.key}: {exc.message}", file=sys.stderr)
        return _EXIT_CONFIG
    parser.print_help(sys.stderr)
    return 2
