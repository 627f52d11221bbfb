"""presenced's settings: one :class:`Settings` object, defaults in one place, validated as a
whole.

Import from here: :mod:`presenced.config.settings` holds the settings themselves (every
setting, its default and its rule) and the loaders; :mod:`presenced.config.values` parses one
value, :mod:`presenced.config.sources` reads the file, environment and flags, and
:mod:`presenced.config.rules` checks the rules across settings.
"""

from presenced.config.settings import (
    API_SCOPES,
    ENV_PREFIX,
    JWT_ALGORITHMS,
    ApiKey,
    AuthMode,
    LogFormat,
    LogLevel,
    SettingInfo,
    Settings,
    load_settings,
    load_settings_with_origins,
    parse_duration,
    parse_size,
    settings_info,
)

__all__ = [
    "API_SCOPES",
    "ENV_PREFIX",
    "JWT_ALGORITHMS",
    "ApiKey",
    "AuthMode",
    "LogFormat",
    "LogLevel",
    "SettingInfo",
    "Settings",
    "load_settings",
    "load_settings_with_origins",
    "parse_duration",
    "parse_size",
    "settings_info",
]
