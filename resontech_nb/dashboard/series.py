"""Metric curves out of round records: what the training and validation charts plot.

A chart shows one metric (``loss``, ``accuracy``, ...) of one kind: ``"train"`` (what
``fl_train_model`` reported, per client and sample-weighted per round) or ``"val"`` (each global
model evaluated on every site's data). Values are numpy arrays, NaN where a round or client has
none, so a chart can draw them and a cache can compare them cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..records.rounds import FAILED, RoundRecord
from .snapshot import DashboardSnapshot

TRAIN = "train"
VALIDATION = "val"
KIND_TITLES = {TRAIN: "Training", VALIDATION: "Validation"}
DEFAULT_METRIC = "loss"


def lower_is_better(metric: str) -> bool:
    """As for ``FederationConfig.select_metric``: a name ending in ``loss`` is better low, anything else high."""
    return metric.lower().endswith("loss")


def metric_names(snap: DashboardSnapshot) -> list[str]:
    """Every metric any round or client recorded, training or validation; ``loss`` first, then by name."""
    names: set[str] = set()
    for record in snap.rounds:
        names.update(record.metrics)
        names.update(record.validation)
        if record.global_loss is not None:
            names.add(DEFAULT_METRIC)
        if record.metrics and (record.validation or not any(c.validation for c in record.clients.values())):
            continue  # the round's own metrics are the clients' means: they name every client metric
        for client in record.clients.values():
            names.update(client.metrics)
            names.update(client.validation)
            if client.loss is not None:
                names.add(DEFAULT_METRIC)
    for per_site in snap.cross_site.values():
        for metrics in per_site.values():
            names.update(metrics)
    return sorted(names, key=lambda n: (n != DEFAULT_METRIC, n.lower()))


def _global_value(record: RoundRecord, metric: str, kind: str) -> float | None:
    if kind == VALIDATION:
        return record.validation.get(metric)
    if metric == DEFAULT_METRIC and record.global_loss is not None:
        return record.global_loss
    return record.metrics.get(metric)


@dataclass(frozen=True, eq=False)
class MetricSeries:
    """One metric of one kind over the rounds: ``x`` holds rounds from 1, ``per_client`` one row per client.

    ``recorded`` says which rounds have a global value at all (it may still be NaN or infinite).
    """

    metric: str
    kind: str
    x: np.ndarray
    global_values: np.ndarray
    recorded: np.ndarray
    clients: tuple[str, ...]
    per_client: np.ndarray

    @property
    def empty(self) -> bool:
        return not self.recorded.any() and not np.isfinite(self.per_client).any()

    @property
    def nonfinite_rounds(self) -> list[int]:
        """Rounds (from 1) whose global value was recorded but is NaN or infinite."""
        bad = self.recorded & ~np.isfinite(self.global_values)
        return [int(x) for x in self.x[bad]]

    def key(self) -> tuple:
        """Equal whenever a chart of this series would look the same."""
        arrays = (self.x, self.global_values, self.recorded, self.per_client)
        return (self.metric, self.kind, self.clients, *(a.tobytes() for a in arrays))


def metric_series(snap: DashboardSnapshot, metric: str, kind: str) -> MetricSeries:
    """The curves of ``metric`` of ``kind`` (``"train"`` or ``"val"``) for every round of ``snap``."""
    clients = tuple(snap.all_clients)
    rounds = snap.rounds
    x = np.fromiter((r.round + 1 for r in rounds), dtype=float, count=len(rounds))
    values = np.full(len(rounds), np.nan)
    recorded = np.zeros(len(rounds), dtype=bool)
    per_client = np.full((len(clients), len(rounds)), np.nan)
    row_of = {name: i for i, name in enumerate(clients)}
    is_loss = kind == TRAIN and metric == DEFAULT_METRIC
    attribute = "validation" if kind == VALIDATION else "metrics"
    rows: list[int] = []
    cols: list[int] = []
    found: list[float] = []
    for col, record in enumerate(rounds):
        value = _global_value(record, metric, kind)
        if value is not None:
            values[col] = value
            recorded[col] = True
        for name, client in record.clients.items():  # the hot loop at 50 x 100: plain lists, one numpy store
            if client.status == FAILED:
                continue
            value = client.loss if is_loss and client.loss is not None else getattr(client, attribute).get(metric)
            if value is not None:
                rows.append(row_of[name])
                cols.append(col)
                found.append(value)
    if found:
        stored = np.array(found, dtype=float)
        finite = np.isfinite(stored)
        per_client[np.array(rows)[finite], np.array(cols)[finite]] = stored[finite]
    return MetricSeries(metric, kind, x, values, recorded, clients, per_client)
