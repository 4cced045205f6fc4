"""A partitioner: which rows of a data set go to which site. A subclass per scheme, found by name in the registry.

Each row is given by its labels; a multi-label row is partitioned by its primary label, the rarest of its
labels in the whole data set (so that the rare classes are spread as the scheme says). Every partitioner
draws only from the ``numpy.random.Generator`` it is handed, so a split is the same under the same seed.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from ...errors import DataWarning

REGISTRY: dict[str, type[Partitioner]] = {}


class Partitioner(ABC):
    """Splits row indices into ``n_sites`` parts; subclasses set ``name`` and implement ``assign``."""

    name: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name:
            REGISTRY[cls.name] = cls

    def __init__(self, n_sites: int, **options: Any) -> None:
        self.n_sites = n_sites

    @abstractmethod
    def assign(self, primary: np.ndarray, num_classes: int, rng: np.random.Generator) -> list[np.ndarray]:
        """Row indices per site, from each row's primary label."""

    def split(self, labels: Sequence[Sequence[int]], rng: np.random.Generator) -> list[np.ndarray]:
        """Row indices per site (each sorted); every site gets at least one row (a DataWarning says when rows had
        to be moved for that)."""
        num_classes = max(max(row) for row in labels) + 1
        counts = np.zeros(num_classes, dtype=np.int64)
        for row in labels:
            counts[list(row)] += 1
        primary = np.array([min(row, key=lambda c: (counts[c], c)) for row in labels], dtype=np.int64)
        parts = [np.sort(np.asarray(part, dtype=np.int64)) for part in self.assign(primary, num_classes, rng)]
        return every_site_one_row(parts, self.name)


def every_site_one_row(parts: list[np.ndarray], scheme: str) -> list[np.ndarray]:
    """Move one row from the largest site to each empty one, saying so."""
    empty = [index for index, part in enumerate(parts) if len(part) == 0]
    for index in empty:
        largest = max(range(len(parts)), key=lambda i: len(parts[i]))
        parts[index], parts[largest] = parts[largest][-1:], parts[largest][:-1]
    if empty:
        names = ", ".join(f"site-{i + 1}" for i in empty)
        warnings.warn(
            f"the {scheme} split left {names} without rows: each got one row from the largest site; "
            "use fewer sites, or a larger alpha / more classes per site",
            DataWarning,
            stacklevel=4,
        )
    return parts
