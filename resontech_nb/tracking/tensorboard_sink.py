"""``tensorboard:DIR``: one run folder per job id under DIR (``%tensorboard --logdir DIR`` shows every job)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .base import Point, RunInfo, Sink, require


class TensorBoardSink(Sink):
    scheme = "tensorboard"
    module = "tensorboard"

    def __init__(self, where: str) -> None:
        super().__init__(where)
        self._writer: Any = None
        self.run_dir: Path | None = None

    def check_reachable(self) -> None:
        super().check_reachable()
        require("torch.utils.tensorboard", self.scheme)

    def open(self, run: RunInfo) -> set[tuple[str, int]]:
        self.run_dir = Path(self.where).expanduser() / run.job_id
        written = read_points(self.run_dir) if self.run_dir.is_dir() else set()
        summary = require("torch.utils.tensorboard", self.scheme)
        self._writer = summary.SummaryWriter(log_dir=str(self.run_dir))
        if not written:  # a new run: its configuration once, as text
            self._writer.add_text("job/config", "```\n" + json.dumps(run.params, indent=1, default=str) + "\n```", 0)
            self.set_tags(run.tags)
        return written

    def log(self, points: list[Point]) -> None:
        for key, value, step in points:
            self._writer.add_scalar(key, value, step)
        self._writer.flush()

    def set_tags(self, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self._writer.add_text(f"job/{key}", str(value), 0)
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def read_points(run_dir: Path) -> set[tuple[str, int]]:
    """The ``(tag, step)`` scalars already in a run folder's event files, read with TensorBoard's own reader."""
    accumulator_module = require("tensorboard.backend.event_processing.event_accumulator", "tensorboard")
    accumulator = accumulator_module.EventAccumulator(
        str(run_dir), size_guidance={"scalars": 0}, purge_orphaned_data=False
    )
    accumulator.Reload()
    return {(tag, event.step) for tag in accumulator.Tags().get("scalars", []) for event in accumulator.Scalars(tag)}
