"""Where settings come from besides code, and how a string becomes a field's value.

The user config file (``~/.config/resontech_nb/config.toml`` or ``$RESONTECH_NB_CONFIG``, one TOML table per
configuration class) and the coercion of strings from it, from ``RESONTECH_<FIELD>`` environment variables and
from ``%fl_config`` to a field's type, with an error that names the field and what it takes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import ConfigError


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
    """``value`` (from a file, the environment, a magic or code) as a ``kind`` field's value, or a ConfigError."""
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
    if kind in (int, float):
        number = _number(kind, value)
        if number is None:
            what = "an integer" if kind is int else "a number"
            raise ConfigError(f"{cls_name}.{name} must be {what}, got {value!r}")
        return number
    if value is None:
        return ""
    return str(value)


def _number(kind: type, value: Any) -> int | float | None:
    """An int or float field's value: a number (for an int, a whole one) or a string of one; None if not."""
    if isinstance(value, str):
        try:
            return kind(value.strip())
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if kind is int:
        return int(value) if isinstance(value, int) or value.is_integer() else None
    return float(value)
