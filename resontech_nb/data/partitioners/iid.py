"""IID: rows shuffled and dealt into sites of (nearly) equal size, so every site sees the pooled distribution."""

from __future__ import annotations

import numpy as np

from .base import Partitioner


class IidPartitioner(Partitioner):
    name = "iid"

    def assign(self, primary: np.ndarray, num_classes: int, rng: np.random.Generator) -> list[np.ndarray]:
        return list(np.array_split(rng.permutation(len(primary)), self.n_sites))
