"""Dirichlet label skew: each class's rows shared among the sites in proportions drawn from Dir(alpha).

A small ``alpha`` (0.1) gives each site a few dominant classes; a large one (100) is close to IID.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import ConfigError
from .base import Partitioner


class DirichletPartitioner(Partitioner):
    name = "dirichlet"

    def __init__(self, n_sites: int, alpha: float = 0.5, **options: Any) -> None:
        super().__init__(n_sites)
        if not alpha > 0:
            raise ConfigError(
                f"alpha must be above 0 for a Dirichlet split (e.g. 0.5; smaller is more skewed), got {alpha}"
            )
        self.alpha = float(alpha)

    def assign(self, primary: np.ndarray, num_classes: int, rng: np.random.Generator) -> list[np.ndarray]:
        parts: list[list[int]] = [[] for _ in range(self.n_sites)]
        for label in range(num_classes):
            rows = rng.permutation(np.flatnonzero(primary == label))
            if not len(rows):
                continue
            shares = rng.dirichlet(np.full(self.n_sites, self.alpha))
            cuts = (np.cumsum(shares)[:-1] * len(rows)).round().astype(int)
            for site, chunk in enumerate(np.split(rows, cuts)):
                parts[site].extend(int(r) for r in chunk)
        return [np.array(part, dtype=np.int64) for part in parts]
