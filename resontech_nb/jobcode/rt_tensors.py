"""Tensors over numpy arrays without a copy, also over the read-only arrays weights arrive as (``rt_arrays``).

Plain numpy + torch, so that the checks can use it on the notebook side without importing NVFlare.
Shipped in the job's ``custom/`` folder.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch


def as_tensor(array: Any) -> torch.Tensor:
    """A tensor over a numpy array's memory (no copy), also over a read-only one as received.

    torch warns that writing to a tensor over read-only memory is undefined. The received bytes belong to
    their array alone (nothing else reads them, nothing hashes them), so an in-place op of a user's
    training code on such a tensor changes only that tensor.
    """
    array = np.asarray(array, order="C")  # not ascontiguousarray, which makes a 0-d array 1-d
    if array.flags.writeable:
        return torch.from_numpy(array)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(array)
