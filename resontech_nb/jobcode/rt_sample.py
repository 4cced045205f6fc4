"""A manifest line (``Sample``) and the error for a bad shard (``ManifestError``).

Shipped inside every job's ``custom/`` folder and imported there as the top-level module
``rt_sample``; the notebook side imports it as ``resontech_nb.jobcode.rt_sample``. Standard library
only; it never imports resontech_nb.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field
from typing import Any


class ManifestError(ValueError):
    """A shard or its manifest is invalid; the message names the fix."""


@dataclass(frozen=True)
class Sample:
    """One manifest line: ``y`` is always a tuple of label indices; ``line`` is its 1-based line number."""

    id: str
    uri: str
    y: tuple[int, ...]
    meta: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    line: int = 0

    @property
    def is_remote(self) -> bool:
        return self.uri.startswith("https://")

    @property
    def relative_path(self) -> str:
        """The shard-relative path of a ``file://`` URI ("" for https)."""
        return "" if self.is_remote else urllib.parse.unquote(self.uri[len("file://") :])
