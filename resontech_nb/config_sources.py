"""Where settings come from besides code, and how a string becomes a field's value.

The user config file (``~/.config/resontech_nb/config.toml`` or ``$RESONTECH_NB_CONFIG``, one TOML table per
configuration class) and the coercion of strings from it, from ``RESONTECH_<FIELD>`` environment variables and
from ``%fl_config`` to a field's type, with an error that names the field and what it takes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .errors import ConfigError


def config_file_path() -> Path:
    """Where the user config file lives (``$RESONTECH_NB_CONFIG`` overrides)."""
    override = os.environ.get("RESONTECH_NB_CONFIG")
    if override:
        return Path(override).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "resontech_nb" / "config.toml"


def read_config_section(section: str) -> dict[str, Any]:
    path = config_file_path()
    if not path.is_file():
        return {}
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}; fix or remove it") from None
    table = data.get(section, {})
    if not isinstance(table, dict):
        raise ConfigError(f"[{section}] in {path} must be a table of key = value lines")
    return table


def coerce(cls_name: str, name: str, kind: type, value: Any) -> Any:
    if kind is bool:
        if isinstance(value, str):
            lowered = value.strip().lower()
            if lowered in {"1", "true", "yes", "on"}:
                return True
            if lowered in {"0", "false", "no", "off"}:
                return False
        elif isinstance(value, bool):
            return value
        raise ConfigError(f"{cls_name}.{name} must be true or false, got {value!r}")
    if kind is int:
        if isinstance(value, bool):
            raise ConfigError(f"{cls_name}.{name} must be an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise ConfigError(f"{cls_name}.{name} must be an integer, got {value!r}")
    if kind is float:
        if isinstance(value, bool):
            raise ConfigError(f"{cls_name}.{name} must be a number, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
        raise ConfigError(f"{cls_name}.{name} must be a number, got {value!r}")
    if value is None:
        return ""
    return str(value)
