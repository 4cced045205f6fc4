"""A setting: one config field's name, type, default, help, ``%fl_submit`` flag and check, declared once.

The configuration classes declare their fields with ``setting(...)``; an algorithm or another unit that brings
settings of its own declares ``Setting`` objects, which the configuration class adds as fields. The
notebook's traits (``%config``), ``%fl_config`` and the ``%fl_submit`` flags and their help are generated
from these, and the config class runs each field's check.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Setting:
    """One config field.

    ``ok(value)`` says whether a value is usable; when it is not, the error reads
    ``"<field> " + problem.format(value=value)``. ``flag`` is the ``%fl_submit`` flag's name (``"rounds"`` for
    ``--rounds``), ``True`` for the field's own name, ``None`` for no flag.
    """

    default: Any
    help: str
    flag: str | bool | None = None
    ok: Callable[[Any], bool] | None = None
    problem: str = ""

    @property
    def kind(self) -> str:
        """The field's type name: ``bool``, ``int``, ``float`` or ``str``."""
        return type(self.default).__name__

    def field(self) -> Any:
        """This setting as a dataclass field (its description kept in the field's metadata)."""
        return dataclasses.field(default=self.default, metadata={"setting": self})

    def check(self, name: str, value: Any) -> str:
        """What is wrong with ``value`` for the field ``name``; "" when it is usable."""
        if self.ok is None or self.ok(value):
            return ""
        return f"{name} {self.problem.format(value=value)}"

    def flag_name(self, name: str) -> str | None:
        """The flag's name as the user types it (``--min-clients``), or None."""
        if self.flag is None or self.flag is False:
            return None
        return (name if self.flag is True else str(self.flag)).replace("_", "-")


def setting(
    default: Any,
    help: str,
    *,
    flag: str | bool | None = None,
    ok: Callable[[Any], bool] | None = None,
    problem: str = "",
) -> Any:
    """A config field: ``num_rounds: int = setting(5, "Total FL training rounds", flag="rounds", ...)``."""
    return Setting(default, help, flag, ok, problem).field()


def setting_of(field: dataclasses.Field) -> Setting:
    """The ``Setting`` behind a dataclass field (a plain field gets one with no help, flag or check)."""
    found = field.metadata.get("setting")
    if found is not None:
        return found
    return Setting(field.default, "")


def declare(namespace: MutableMapping[str, Any], settings: Mapping[str, Setting]) -> None:
    """Add ``settings`` as fields to a class body that is being defined (``declare(locals(), ...)``)."""
    annotations = namespace.setdefault("__annotations__", {})
    for name, described in settings.items():
        annotations[name] = described.kind
        namespace[name] = described.field()
