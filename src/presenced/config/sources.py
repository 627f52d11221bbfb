"""Setting sources: the TOML file, ``PRESENCED_*`` environment variables and CLI flags.

:func:`read_sources` gathers the values set in each source, later wins::

    defaults  <  TOML file  <  PRESENCED_<KEY> environment variables  <  CLI flags

and remembers where each came from; :func:`presenced.config.load_settings` builds the
:class:`~presenced.config.Settings` from them. :class:`SettingInfo` names each setting the
way every source does (``--flag``, ``PRESENCED_<KEY>``), for the CLI. Which settings exist
and how their values are parsed is passed in (a name to
:class:`~presenced.config.values.Spec` mapping), so this module does not depend on the
settings themselves.

The TOML file (``--config FILE`` or ``PRESENCED_CONFIG``) holds flat top-level keys, or keys
under a ``[presenced]`` table (then other tables in the file are ignored, so the file may be
shared with other tools). An unknown key in the file is an error; an unknown ``PRESENCED_*``
environment variable is ignored (other tools may share the prefix), and an empty one counts as
unset.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from presenced.config.values import Spec, check_known, coerce
from presenced.errors import ConfigError

__all__ = ["CONFIG_ENV", "ENV_PREFIX", "SettingInfo", "describe", "read_sources"]

ENV_PREFIX = "PRESENCED_"
CONFIG_ENV = ENV_PREFIX + "CONFIG"


def _read_toml(path: Path) -> dict[str, object]:
    """The settings table of a TOML file (flat, or under ``[presenced]``)."""
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError("config", f"config file {str(path)!r} not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("config", f"cannot parse config file {str(path)!r}: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("config", f"cannot read config file {str(path)!r}: {exc}") from None
    table = data.get("presenced")
    if not isinstance(table, dict):
        return data
    stray = [k for k, v in data.items() if k != "presenced" and not isinstance(v, dict)]
    if stray:
        raise ConfigError(
            stray[0],
            f"{stray[0]!r} is outside the [presenced] table in "
            f"{str(path)!r}; move it under [presenced]",
        )
    return table


def read_sources(
    fields: Mapping[str, Spec],
    *,
    cli: Mapping[str, object] | None = None,
    env: Mapping[str, str] | None = None,
    config_file: str | Path | None = None,
) -> tuple[dict[str, object], dict[str, str]]:
    """The values set for ``fields`` in every source, merged, and where each came from.

    Returns the values, each already coerced to its setting's type (but not range-checked:
    that is done on the merged values), and the origins, which map a key to ``"<path>"``,
    ``"PRESENCED_<KEY>"`` or ``"--<flag>"``. ``env`` defaults to ``os.environ``; the config
    file comes from ``config_file`` or else ``PRESENCED_CONFIG``; ``None`` values in ``cli``
    count as not given. Raises :class:`ConfigError` on the first problem found.
    """
    env = os.environ if env is None else env
    raw: dict[str, object] = {}
    origins: dict[str, str] = {}

    def take(key: str, value: object, origin: str, where: str) -> None:
        check_known(key, where, fields)
        raw[key] = coerce(key, fields[key], value, f" ({where.strip()})")
        origins[key] = origin

    if config_file is None and env.get(CONFIG_ENV):
        config_file = env[CONFIG_ENV]
    if config_file is not None:
        path = Path(config_file).expanduser()
        for key, value in _read_toml(path).items():
            take(key, value, str(path), f" in {str(path)!r}")
    for key in fields:
        name = ENV_PREFIX + key.upper()
        text = env.get(name)
        if text:  # an empty variable counts as unset
            take(key, text, name, f" from {name}")
    for key, value in (cli or {}).items():
        if value is not None:  # None: the flag was not given
            flag = "--" + key.replace("_", "-")
            take(key, value, flag, f" from {flag}")
    return raw, origins


# --- description, for the CLI ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SettingInfo:
    """What the CLI needs to know about one setting: its flag, help and how to show it."""

    name: str
    kind: str
    help: str
    allowed: str
    default: object
    secret: bool

    @property
    def flag(self) -> str:
        """The command-line flag, e.g. ``--heartbeat-interval``."""
        return "--" + self.name.replace("_", "-")

    @property
    def env_var(self) -> str:
        """The environment variable, e.g. ``PRESENCED_HEARTBEAT_INTERVAL``."""
        return ENV_PREFIX + self.name.upper()


def describe(fields: Mapping[str, Spec], defaults: object) -> tuple[SettingInfo, ...]:
    """One :class:`SettingInfo` per field, in order; defaults are read from ``defaults``."""
    return tuple(
        SettingInfo(
            name, spec.kind, spec.help, spec.allowed(), getattr(defaults, name), spec.secret
        )
        for name, spec in fields.items()
    )
