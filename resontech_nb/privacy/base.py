"""What a privacy filter is, to the notebook side: its name, its NVFlare filter and the arguments it takes.

``FederationConfig.privacy`` is a list of NVFlare result filters separated by ``;``, each ``name`` or
``name:args``; each site applies them, in order, to its update before it leaves the site (updates then travel
as ``local - global``). A filter is one small class over ``FilterKind`` plus one line in the registry
(``privacy/__init__.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

EXAMPLE = "exclude:^fc\\. ; percentile:percentile=10,gamma=0.01 ; svt:epsilon=0.1"


class PrivacySpecError(ValueError):
    """A privacy setting that cannot be turned into NVFlare filters."""


class FilterKind:
    """A filter taking numeric ``name=value`` arguments with ``defaults``; a subclass sets what differs."""

    name: ClassVar[str] = ""
    path: ClassVar[str] = ""  # the NVFlare filter class
    defaults: ClassVar[dict[str, float]] = {}

    @classmethod
    def parse(cls, text: str, spec: str) -> dict[str, Any]:
        """The arguments in ``text`` (what follows ``name:``), checked; raises PrivacySpecError naming the fix."""
        args: dict[str, Any] = dict(cls.defaults)
        for item in (i.strip() for i in text.split(",")):
            if not item:
                continue
            key, sep, value = item.partition("=")
            key = key.strip()
            if key not in cls.defaults:
                raise PrivacySpecError(
                    f"privacy={spec!r}: {cls.name} has no parameter {key!r}; its parameters: {', '.join(cls.defaults)}"
                )
            if not sep or not value.strip():
                raise PrivacySpecError(
                    f"privacy={spec!r}: {cls.name}'s {key} has no value: write {key}={cls.defaults[key]}"
                )
            try:
                args[key] = float(value)
            except ValueError:
                raise PrivacySpecError(
                    f"privacy={spec!r}: {cls.name}'s {key}={value.strip()!r} is not a number"
                ) from None
        problem = cls.range_problem(args)
        if problem:
            raise PrivacySpecError(f"privacy={spec!r}: {problem}")
        return args

    @classmethod
    def range_problem(cls, args: dict[str, Any]) -> str:
        """What is wrong with the parsed arguments; "" when they are usable."""
        return ""

    @classmethod
    def nvflare_args(cls, args: dict[str, Any]) -> dict[str, Any]:
        """The NVFlare filter's constructor arguments."""
        return dict(args)

    @classmethod
    def withheld(cls, args: dict[str, Any]) -> str:
        """A regular expression of the state_dict keys this filter never sends ("" for none)."""
        return ""


@dataclass(frozen=True)
class PrivacyFilter:
    """One filter of a privacy setting, its arguments parsed."""

    kind: type[FilterKind]
    args: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.kind.name

    def component(self) -> dict[str, Any]:
        """The filter as an NVFlare component (``{"path": ..., "args": ...}``)."""
        return {"path": self.kind.path, "args": self.kind.nvflare_args(self.args)}
