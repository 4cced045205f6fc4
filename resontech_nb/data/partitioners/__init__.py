"""Partitioners: how ``split_shards`` deals one data set's rows into sites; a module per scheme, a registry by name."""

from .base import REGISTRY, Partitioner
from .dirichlet import DirichletPartitioner
from .iid import IidPartitioner
from .pathological import PathologicalPartitioner

__all__ = ["REGISTRY", "DirichletPartitioner", "IidPartitioner", "Partitioner", "PathologicalPartitioner"]
