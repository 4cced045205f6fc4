"""Comparing jobs in the notebook: one figure (each job's validation and training curves of one metric on
shared axes, its best round marked) and one table (final and best metric, rounds, wall time, algorithm, and
only the settings that differ between the jobs).

``Comparison(jobs, metric)`` reads each job through its public names (``observe()``, ``id``, ``name``,
``num_rounds``, ``settings``). In a kernel ``show()`` displays it under the cell and redraws it while any job
still runs; ``table`` is a list of row dicts (``pandas.DataFrame(comparison.table)``).
"""

from __future__ import annotations

import contextvars
import html
import io
import threading
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from ..records.status import FINAL_STATES

# Settings that name a job rather than describe how it learned: never a column of their own.
_NOT_SETTINGS = {"federation.job_name", "federation.tracking", "federation.tracking_models"}


def _flat(settings: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, Mapping):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _higher_is_better(metric: str) -> bool:
    return not metric.lower().endswith("loss")


class JobCurves:
    """One job's curves of ``metric`` (validation and training, by round) from one look at it."""

    def __init__(self, job: Any, metric: str) -> None:
        observed = job.observe()
        self.job = job
        self.status = observed.state.status
        self.rounds = list(observed.rounds)
        self.validation = {r.round: r.validation[metric] for r in self.rounds if metric in r.validation}
        self.training = {r.round: r.metrics[metric] for r in self.rounds if metric in r.metrics}
        self.started_at = observed.started_at
        curve = self.validation or self.training
        pick = max if _higher_is_better(metric) else min
        self.best_round = pick(curve, key=lambda k: curve[k]) if curve else None
        self.best = curve[self.best_round] if curve else None
        self.final = curve[max(curve)] if curve else None
        ends = [r.finished_at for r in self.rounds if r.finished_at is not None]
        self.wall_s = (max(ends) - self.started_at) if ends and self.started_at is not None else None


class Comparison:
    """Several jobs side by side on one ``metric``; ``refresh()`` looks at them again."""

    def __init__(self, jobs: Sequence[Any], metric: str = "accuracy", *, poll_interval: float = 2.0) -> None:
        if not jobs:
            raise ValueError("compare needs at least one job (handles or ids)")
        self.jobs = list(jobs)
        self.metric = metric
        self.poll_interval = poll_interval
        self.display_id = f"resontech-nb-compare-{uuid.uuid4().hex[:8]}"
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.curves: list[JobCurves] = []
        self.refresh()

    def refresh(self) -> Comparison:
        self.curves = [JobCurves(job, self.metric) for job in self.jobs]
        return self

    @property
    def running(self) -> bool:
        return any(c.status not in FINAL_STATES for c in self.curves)

    # -- the table ------------------------------------------------------------------------------
    def differing_settings(self) -> list[str]:
        """The setting names whose values are not the same for every job."""
        flats = [_flat(getattr(c.job, "settings", {}) or {}) for c in self.curves]
        names = sorted(set().union(*flats) - _NOT_SETTINGS) if flats else []
        return [n for n in names if len({repr(f.get(n)) for f in flats}) > 1]

    @property
    def table(self) -> list[dict[str, Any]]:
        """One row per job: ready for ``pandas.DataFrame``."""
        differing = self.differing_settings()
        rows = []
        for c in self.curves:
            settings = _flat(getattr(c.job, "settings", {}) or {})
            row: dict[str, Any] = {
                "job": c.job.id,
                "name": c.job.name,
                "status": c.status,
                "rounds": len(c.rounds),
                "num_rounds": c.job.num_rounds,
                "wall_s": None if c.wall_s is None else round(c.wall_s, 2),
                "algorithm": settings.get("federation.algorithm"),
                f"final_{self.metric}": c.final,
                f"best_{self.metric}": c.best,
                "best_round": None if c.best_round is None else c.best_round + 1,
            }
            row.update({name: settings.get(name) for name in differing})
            rows.append(row)
        return rows

    def text(self) -> str:
        rows = self.table
        columns = list(rows[0])
        cells = [[_cell(row.get(col)) for col in columns] for row in rows]
        widths = [max(len(col), *(len(r[i]) for r in cells)) for i, col in enumerate(columns)]
        lines = ["  ".join(col.ljust(w) for col, w in zip(columns, widths, strict=True))]
        lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
        return "\n".join(lines)

    def html(self) -> str:
        rows = self.table
        head = "".join(f"<th>{html.escape(col)}</th>" for col in rows[0])
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(_cell(row.get(col)))}</td>" for col in rows[0]) + "</tr>"
            for row in rows
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    # -- the figure -----------------------------------------------------------------------------
    @property
    def figure(self) -> Any:
        """A matplotlib ``Figure``: solid lines validation, dashed training, a star on each job's best round."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=(7.5, 4.2), dpi=100)
        ax = fig.add_subplot()
        colors = [f"C{i % 10}" for i in range(len(self.curves))]
        for c, color in zip(self.curves, colors, strict=True):
            label = c.job.name if c.job.name != c.job.id else c.job.id
            if c.validation:
                xs = sorted(c.validation)
                ax.plot(
                    [x + 1 for x in xs],
                    [c.validation[x] for x in xs],
                    "-o",
                    ms=3,
                    color=color,
                    label=f"{label} validation",
                )
            if c.training:
                xs = sorted(c.training)
                ax.plot([x + 1 for x in xs], [c.training[x] for x in xs], "--", color=color, label=f"{label} training")
            if c.best_round is not None:
                ax.plot([c.best_round + 1], [c.best], "*", ms=14, color=color, markeredgecolor="black")
        ax.set_xlabel("round")
        ax.set_ylabel(self.metric)
        ax.set_title(f"{self.metric} per round (★ best round)")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
        fig.tight_layout()
        return fig

    def png(self) -> bytes:
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png")
        return buffer.getvalue()

    # -- showing it -----------------------------------------------------------------------------
    def mimebundle(self) -> dict[str, Any]:
        import base64

        image = base64.b64encode(self.png()).decode()
        note = "<p><i>updating while jobs run</i></p>" if self.running else ""
        return {
            "text/plain": self.text(),
            "text/html": f'<img src="data:image/png;base64,{image}"/>{self.html()}{note}',
        }

    def _ipython_display_(self) -> None:
        self.show()

    def show(self) -> Comparison:
        """Display under the cell (in a kernel); while a job runs, redraw the same output from a daemon thread."""
        from IPython import get_ipython
        from IPython.display import display

        if get_ipython() is None:
            print(self.text())
            return self
        display(self.mimebundle(), raw=True, display_id=self.display_id)
        if self.running and (self._thread is None or not self._thread.is_alive()):
            context = contextvars.copy_context()  # updates land in the cell that showed it
            self._thread = threading.Thread(
                target=context.run, args=(self._follow,), daemon=True, name=f"resontech-compare-{self.display_id}"
            )
            self._thread.start()
        return self

    def _follow(self) -> None:
        from IPython.display import update_display

        while not self._stop.wait(self.poll_interval):
            self.refresh()
            update_display(self.mimebundle(), raw=True, display_id=self.display_id)
            if not self.running:
                break

    def stop(self) -> None:
        self._stop.set()

    def __repr__(self) -> str:
        return self.text()


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
