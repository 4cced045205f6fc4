"""FedAvg: the sample-weighted mean of the sites' models (McMahan et al. 2017)."""

from __future__ import annotations

from .base import Algorithm


class FedAvg(Algorithm):
    name = "fedavg"
