"""``Job``: the handle every target returns.

A target implements four small methods (``_poll``, ``_fetch_rounds``, ``_fetch_result``,
``_abort``); waiting, caching and the dashboard live here once for all targets.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, JobFailedError, JobNotFoundError
from ..records.rounds import RoundRecord, history_rows, participation_notes
from ..records.status import ABORTED, FAILED, FINAL_STATES, FINISHED, SUBMITTED

if TYPE_CHECKING:  # pragma: no cover
    import torch


@dataclass(frozen=True)
class JobState:
    status: str
    error: str | None = None
    note: str | None = None  # something a finished job wants the user to know, e.g. a site it lost


def statistics_end(evaluation: dict[str, Any]) -> JobState | None:
    """How a statistics job (``building/statistics_job.py``: no rounds, no model) ended, judged by what its server
    wrote (``evaluation.json``); None for a training job, whose end the rounds and the model tell."""
    if "data_summary" not in evaluation:
        return None
    errors = evaluation.get("data_summary_errors") or {}
    if errors:
        detail = "; ".join(f"{site}: {error}" for site, error in errors.items())
        return JobState(FAILED, f"the data summary failed on a site ({detail}): fix the site's shard and run it again")
    if not evaluation["data_summary"]:
        return JobState(FAILED, "no site sent its counts: check that the sites joined the job and run it again")
    return JobState(FINISHED)


@dataclass(frozen=True)
class JobObservation:
    """One look at a job: its state, records and evaluation as fetched together (what a view draws)."""

    state: JobState
    rounds: tuple[RoundRecord, ...]
    best_round: int | None
    cross_site: dict[str, Any]
    started_at: float | None


_WRITABLE_HOMES: set[Path] = set()


def jobs_home() -> Path:
    """Where local job state lives (``$RESONTECH_NB_HOME``, default ``~/.resontech_nb``).

    Raises ``ConfigError`` when it is not a folder this process can write (checked once per path),
    so nothing starts that could not record its state.
    """
    home = Path(os.environ.get("RESONTECH_NB_HOME") or Path.home() / ".resontech_nb").expanduser()
    if home in _WRITABLE_HOMES and home.is_dir():
        return home
    reason = unwritable_reason(home)
    if reason:
        raise ConfigError(
            f"the jobs home {home} is not a writable folder ({reason}): "
            "point RESONTECH_NB_HOME at a folder you can write, or unset it"
        )
    _WRITABLE_HOMES.add(home)
    return home


def unwritable_reason(folder: Path) -> str:
    """Make ``folder`` and probe it with a file; why this process cannot write there, or "" when it can."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(prefix=".rt_probe-", dir=folder):
            pass
    except OSError as exc:
        return "it is a file" if folder.is_file() else (exc.strerror or type(exc).__name__).lower()
    return ""


class Job(ABC):
    """A submitted federated job.

    ``status`` is one of SUBMITTED, RUNNING, FINISHED, FAILED, ABORTED; ``rounds`` holds one
    ``RoundRecord`` per finished round; ``result()`` returns the final global ``state_dict``.
    """

    target: str = ""
    poll_interval: float = 1.0
    # The validation metrics its rounds are expected to report: the text progress's columns (``submit`` sets
    # them from the configuration; a reattached handle assumes what the default loop reports).
    validation_metrics: tuple[str, ...] = ("loss", "accuracy")

    def __init__(self, job_id: str, *, num_rounds: int, clients: list[str] | None = None, name: str = "") -> None:
        self.id = job_id
        self.num_rounds = num_rounds
        self.clients = list(clients or [])
        self.name = name or job_id
        self.submitted_at = time.time()
        self._state = JobState(SUBMITTED)
        self._rounds: list[RoundRecord] = []
        self._results: dict[str, dict[str, Any]] = {}
        self._evaluation: dict[str, Any] = {}
        self._extra_notes: dict[str, str] = {}  # e.g. a tracking server that stopped answering, by source
        # What the job was built from (target, model, training, federation): set by api.submit / api.attach.
        self.settings: dict[str, Any] = {}
        self.tracking: Any = None  # the job's Tracker when FederationConfig.tracking is set

    # -- what a target implements -------------------------------------------------
    @abstractmethod
    def _poll(self) -> JobState:
        """Ask the target for the current state."""

    @abstractmethod
    def _fetch_rounds(self) -> list[RoundRecord]:
        """All round records so far."""

    @abstractmethod
    def _fetch_result(self, which: str = "final") -> dict[str, Any]:
        """The global state_dict, ``which`` is "final" or "best" (only called once FINISHED)."""

    def _fetch_evaluation(self) -> dict[str, Any]:
        """What the server knows beyond the rounds: ``{"best_round": int | None, "cross_site": {...}}``.

        A target that can read the server's evaluation file overrides this; empty means nothing is known.
        """
        return {}

    @abstractmethod
    def _abort(self) -> None:
        """Stop the job and everything it started."""

    # -- the public surface ----------------------------------------------------------
    def refresh(self) -> JobState:
        if self._state.status not in FINAL_STATES:
            self._state = self._poll()
            self._rounds = self._fetch_rounds()
            self._evaluation = self._fetch_evaluation() or self._evaluation
        return self._state

    def observe(self) -> JobObservation:
        """Poll the target once and return the state, records and evaluation from that one poll."""
        state = self.refresh()
        rounds = tuple(self._rounds)
        # A handle made by attach() starts its clock late; the first round's start is then earlier.
        starts = [t for t in (self.submitted_at, *(r.started_at for r in rounds[:1])) if t is not None]
        best = self._evaluation.get("best_round")
        return JobObservation(
            state=state,
            rounds=rounds,
            best_round=None if best is None else int(best),
            cross_site=dict(self._evaluation.get("cross_site") or {}),
            started_at=min(starts) if starts else None,
        )

    @property
    def status(self) -> str:
        return self.refresh().status

    @property
    def error(self) -> str | None:
        return self.refresh().error

    @property
    def notes(self) -> list[str]:
        """What went wrong without failing the job: sites that failed or dropped out, a metric never reported."""
        state = self.refresh()
        notes = [state.note] if state.note else []
        notes += participation_notes(self._rounds)
        if self._evaluation.get("error"):
            notes.append(str(self._evaluation["error"]))
        return notes + list(self._extra_notes.values())

    def set_note(self, key: str, text: str) -> None:
        """Add a note from ``key`` (e.g. a tracking sink), replacing that source's earlier one."""
        self._extra_notes[key] = text

    @property
    def done(self) -> bool:
        return self.status in FINAL_STATES

    @property
    def rounds(self) -> list[RoundRecord]:
        self.refresh()
        return list(self._rounds)

    def history(self) -> list[dict[str, Any]]:
        """One row per round x client with every metric; ``pandas.DataFrame(job.history())`` takes it as is."""
        return history_rows(self.rounds)

    def wait(self, timeout: float | None = None, progress: bool | None = None) -> str:
        """Block until the job ends; return its final status. Raises TimeoutError.

        ``progress`` prints one aligned line per finished round and a final summary; by default it is on when
        standard output is a terminal (a script run from a shell), off in a notebook, a pipe or a log file.
        """
        if progress is None:
            progress = _stdout_is_terminal()
        lines = None
        if progress:
            from ..dashboard.text import ProgressLines

            lines = ProgressLines.for_job(self)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            status = self.status
            if lines is not None:
                self._print_progress(lines)
            if status in FINAL_STATES:
                return self._state.status
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {self.id} still {self._state.status} after {timeout} s")
            time.sleep(self.poll_interval)

    def _print_progress(self, lines: Any) -> None:
        from ..dashboard.snapshot import take_snapshot

        new = lines.new_lines(take_snapshot(self))
        if new:
            print("\n".join(new), flush=True)

    @property
    def best_round(self) -> int | None:
        """The round whose global model scored best on ``FederationConfig.select_metric`` (None when off)."""
        self.refresh()
        best = self._evaluation.get("best_round")
        return None if best is None else int(best)

    @property
    def server_report(self) -> dict[str, Any]:
        """All the server wrote beyond the rounds (its ``evaluation.json``: best round, cross-site results, a
        statistics job's ``data_summary`` counts)."""
        self.refresh()
        return dict(self._evaluation)

    @property
    def cross_site(self) -> dict[str, dict[str, dict[str, float]]]:
        """Cross-site evaluation: ``{model name: {site: metrics}}`` (empty unless ``cross_site_eval`` ran)."""
        self.refresh()
        return dict(self._evaluation.get("cross_site") or {})

    def result(self, which: str = "final", timeout: float | None = None) -> dict[str, torch.Tensor]:
        """The global model's ``state_dict``: ``which="final"`` (default) or ``"best"`` by ``select_metric``.

        Waits for the job to end.
        """
        if which not in ("final", "best"):
            raise ValueError(f"which must be 'final' or 'best', got {which!r}")
        status = self.wait(timeout, progress=False)
        if status != FINISHED:
            detail = f": {self._state.error}" if self._state.error else ""
            raise JobFailedError(f"job {self.id} ended {status} and has no result{detail}")
        if which == "best" and self.best_round is None:
            reason = self._evaluation.get("error") or (
                "no best model was kept: set FederationConfig.select_metric to a validation metric (e.g. 'accuracy')"
            )
            raise JobNotFoundError(f"job {self.id}: {reason}")
        if which not in self._results:
            self._results[which] = self._fetch_result(which)
        return self._results[which]

    def abort(self) -> None:
        """Stop the job; a job that already ended is left as it is."""
        if self.status in FINAL_STATES:
            return
        self._abort()
        self._state = JobState(ABORTED)

    def dashboard(self, wait: bool = False, display: bool = True) -> Any:
        """Show the live dashboard for this job (see ``resontech_nb.dashboard``)."""
        from ..dashboard import show_dashboard

        return show_dashboard(self, wait=wait, display=display)

    def summary(self) -> str:
        state = self.refresh()
        done = len(self._rounds)
        line = f"job {self.id} [{self.target}] {state.status}: round {done} of {self.num_rounds}"
        if self._rounds and self._rounds[-1].global_loss is not None:
            line += f", global loss {self._rounds[-1].global_loss:.4f}"
        if state.error:
            line += f" ({state.error})"
        return line

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} {self._state.status}>"


def _stdout_is_terminal() -> bool:
    stream = sys.stdout
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):  # a replaced or closed stdout
        return False
