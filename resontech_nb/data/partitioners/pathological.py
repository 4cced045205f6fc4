"""Pathological label skew: each site holds only ``classes_per_site`` classes.

Site k (from 0) holds classes k x classes_per_site, ... (wrapping around), and each class's rows are shared
evenly among the sites that hold it; rows of a class no site holds are left out, with a warning.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from ...errors import ConfigError, DataWarning
from .base import Partitioner


class PathologicalPartitioner(Partitioner):
    name = "pathological"

    def __init__(self, n_sites: int, classes_per_site: int = 2, **options: Any) -> None:
        super().__init__(n_sites)
        if classes_per_site < 1:
            raise ConfigError(f"classes_per_site must be >= 1 for a pathological split, got {classes_per_site}")
        self.classes_per_site = int(classes_per_site)

    def assign(self, primary: np.ndarray, num_classes: int, rng: np.random.Generator) -> list[np.ndarray]:
        if self.classes_per_site > num_classes:
            raise ConfigError(
                f"classes_per_site={self.classes_per_site} but the data has {num_classes} classes: "
                f"use at most {num_classes}"
            )
        holders: dict[int, list[int]] = {c: [] for c in range(num_classes)}
        for site in range(self.n_sites):
            for j in range(self.classes_per_site):
                holders[(site * self.classes_per_site + j) % num_classes].append(site)
        parts: list[list[int]] = [[] for _ in range(self.n_sites)]
        orphans = [c for c, sites in holders.items() if not sites and np.any(primary == c)]
        if orphans:
            warnings.warn(
                f"no site holds class(es) {orphans} ({self.n_sites} sites x {self.classes_per_site} classes): their "
                "rows are left out; raise classes_per_site or the number of sites",
                DataWarning,
                stacklevel=4,
            )
        for label, sites in holders.items():
            rows = rng.permutation(np.flatnonzero(primary == label))
            if sites:
                for site, chunk in zip(sites, np.array_split(rows, len(sites)), strict=True):
                    parts[site].extend(int(r) for r in chunk)
        return [np.array(part, dtype=np.int64) for part in parts]
