"""What the three configuration classes share: coercion, each field's check, loading, copying, a safe repr.

Values come, in rising order of precedence, from the defaults, the user config file
(``~/.config/resontech_nb/config.toml`` or ``$RESONTECH_NB_CONFIG``), environment variables
(``RESONTECH_<FIELD>``, e.g. ``RESONTECH_BATCH_SIZE``) and explicit arguments. Strings are coerced to the
field's type, so the same path serves ``%fl_config`` and env vars (the file and the coercion: ``sources.py``).
Every field is a ``Setting`` (``resontech_nb/fields.py``): its check runs on every new value.

The password is kept out of ``repr``, ``to_dict`` and every saved form.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, fields
from typing import Any, ClassVar, TypeVar

from ..errors import ConfigError
from ..fields import Setting, setting_of
from .sources import coerce, config_file_path, read_config_section

SECRET_FIELDS = frozenset({"password"})
_KINDS = {"int": int, "float": float, "str": str, "bool": bool}

C = TypeVar("C", bound="Config")


@dataclass
class Config:
    """Shared machinery: coercion, validation, loading from file and environment."""

    section: ClassVar[str] = ""

    def __post_init__(self) -> None:
        hints = {f.name: f.type for f in fields(self)}
        for f in fields(self):
            kind = _KINDS[str(hints[f.name])]
            object.__setattr__(self, f.name, coerce(type(self).__name__, f.name, kind, getattr(self, f.name)))
        for f in fields(self):
            problem = setting_of(f).check(f.name, getattr(self, f.name))
            self._require(not problem, problem)
        self.validate()

    def validate(self) -> None:
        """Checks that span several fields, or that adjust a value; raise ConfigError naming the fix."""

    def _require(self, ok: bool, message: str) -> None:
        if not ok:
            raise ConfigError(f"{type(self).__name__}: {message}")

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def settings(cls) -> dict[str, Setting]:
        """Each field's ``Setting``: type, default, help, flag and check."""
        return {f.name: setting_of(f) for f in fields(cls)}

    @classmethod
    def load(cls: type[C], **overrides: Any) -> C:
        """Defaults, then the user config file, then ``RESONTECH_*`` env vars, then ``overrides``."""
        values: dict[str, Any] = {}
        names = set(cls.field_names())
        for key, value in read_config_section(cls.section).items():
            if key not in names:
                raise ConfigError(
                    f"unknown key {key!r} in [{cls.section}] of {config_file_path()}; "
                    f"known keys: {', '.join(sorted(names))}"
                )
            values[key] = value
        for name in names:
            env = os.environ.get(f"RESONTECH_{name.upper()}")
            if env is not None and env != "":
                values[name] = env
        values.update({k: v for k, v in overrides.items() if v is not None})
        unknown = set(values) - names
        if unknown:
            raise ConfigError(f"unknown {cls.__name__} field(s) {sorted(unknown)}; known: {sorted(names)}")
        return cls(**values)

    def replace(self: C, **changes: Any) -> C:
        """A copy with ``changes`` applied (and validated)."""
        unknown = set(changes) - set(self.field_names())
        if unknown:
            raise ConfigError(f"unknown {type(self).__name__} field(s) {sorted(unknown)}; known: {self.field_names()}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Every field but secrets: safe to write into a job folder, S3 or a notebook."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in SECRET_FIELDS}

    def __repr__(self) -> str:
        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in SECRET_FIELDS:
                value = "'***'" if value else "''"
            else:
                value = repr(value)
            parts.append(f"{f.name}={value}")
        return f"{type(self).__name__}({', '.join(parts)})"

    __str__ = __repr__
