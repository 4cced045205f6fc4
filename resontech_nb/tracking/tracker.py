"""``Tracker``: follows one job from a daemon thread and logs its round records to its sinks.

It works from the round records alone, so it is the same for every target and for a job reattached after
a kernel restart: each sink finds the job's run again and only the points it lacks are logged. A sink
that fails (a tracking server gone away) never fails the job: the job gets a note, the sink is tried again
on the next look and, once back, gets everything it missed; still gone a while after the job ended, the
note says what is missing there.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from typing import Any

from ..records.status import FINAL_STATES, FINISHED
from .base import RunInfo, Sink
from .points import round_points

log = logging.getLogger(__name__)

_RUNNING: dict[str, Tracker] = {}  # job id -> its tracker in this process (one per job)
_LOCK = threading.Lock()


class _SinkState:
    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.opened = False
        self.written: set[tuple[str, int]] = set()
        self.down_since: int | None = None  # the round after which it stopped answering
        self.was_down = False
        self.finished = False
        self.models_logged = False
        self.error = ""


class Tracker:
    """Logs ``job``'s rounds to ``sinks`` until the job ends (``wait()`` blocks until then)."""

    def __init__(
        self,
        job: Any,
        sinks: list[Sink],
        run: RunInfo,
        *,
        models: bool = False,
        interval: float = 2.0,
        grace_s: float = 60.0,
    ) -> None:
        self.job = job
        self.run = run
        self.models = models
        self.interval = interval
        self.grace_s = grace_s  # how long a sink still down at the job's end is tried again
        self.states = [_SinkState(s) for s in sinks]
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._done = threading.Event()

    @property
    def sinks(self) -> list[Sink]:
        return [s.sink for s in self.states]

    def start(self) -> Tracker:
        with _LOCK:
            running = _RUNNING.get(self.run.job_id)
            if running is not None and running.running:
                return running  # already followed in this process (e.g. attach after submit)
            _RUNNING[self.run.job_id] = self
        self._thread = threading.Thread(target=self._follow, name=f"resontech-tracking-{self.run.job_id}", daemon=True)
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until everything is logged (or given up on); False when ``timeout`` passed first."""
        return self._done.wait(timeout)

    def stop(self) -> None:
        self._stop.set()

    # -- the thread ------------------------------------------------------------------------------
    def _follow(self) -> None:
        try:
            status = ""
            while not self._stop.is_set():
                observed = self.job.observe()
                self._sync(list(observed.rounds))
                status = observed.state.status
                if status in FINAL_STATES:
                    break
                self._stop.wait(self.interval)
            if status in FINAL_STATES:
                self._finish(status, list(self.job.observe().rounds))
        except Exception as exc:  # never the job's problem: say so and stop following
            log.warning("tracking of job %s stopped: %s", self.run.job_id, exc)
            self._note("tracking", f"tracking stopped following the job: {exc}")
        finally:
            for state in self.states:
                try:
                    state.sink.close()
                except Exception:  # closing a writer of a gone server
                    pass
            self._done.set()

    def _finish(self, status: str, rounds: list) -> None:
        deadline = time.monotonic() + self.grace_s
        while True:
            self._sync(rounds, status)
            pending = [s for s in self.states if not s.finished]
            if not pending or time.monotonic() > deadline or self._stop.is_set():
                break
            self._stop.wait(min(self.interval, 2.0))
        for state in self.states:
            if not state.finished:
                last = rounds[-1].round + 1 if rounds else 0
                first = (state.down_since or 0) + 1
                self._note(
                    state.sink.label,
                    f"tracking {state.sink.label} did not answer ({state.error}): rounds {first}-{last} and the "
                    f"job's end ({status}) are missing there; attach the job again (api.attach) with the server "
                    "back to log them",
                )

    def _sync(self, rounds: list, status: str | None = None) -> None:
        points = round_points(rounds)
        for state in self.states:
            if state.finished:
                continue
            try:
                self._log_to(state, points, status)
            except Exception as exc:
                state.error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
                if state.down_since is None:
                    state.down_since = rounds[-1].round + 1 if rounds else 0
                    state.was_down = True
                    log.warning("tracking %s failed: %s", state.sink.label, state.error)
                    self._note(
                        state.sink.label,
                        f"tracking {state.sink.label} stopped answering after round {state.down_since} "
                        f"({state.error}): what it misses is logged when it is back",
                    )
                state.opened = False  # find the run again (and what it holds) when it is back
                continue
            if state.down_since is not None:
                self._note(
                    state.sink.label,
                    f"tracking {state.sink.label} did not answer for a while (from round {state.down_since + 1}); "
                    "everything it missed was logged when it was back",
                )
                state.down_since = None

    def _log_to(self, state: _SinkState, points: list, status: str | None) -> None:
        sink = state.sink
        if not state.opened:
            state.written = sink.open(self.run)
            state.opened = True
        missing = [p for p in points if (p[0], p[2]) not in state.written]
        if missing:
            missing.sort(key=lambda p: (p[0], p[2]))
            sink.log(missing)
            state.written.update((p[0], p[2]) for p in missing)
        if status is None:
            return
        if self.models and status == FINISHED and not state.models_logged:
            sink.log_model("final", self.job.result("final"))
            if self.job.best_round is not None:
                sink.log_model("best", self.job.result("best"))
            state.models_logged = True
        sink.set_tags({"status": status})
        sink.finish(status)
        state.finished = True

    def _note(self, key: str, text: str) -> None:
        set_note = getattr(self.job, "set_note", None)
        if set_note is not None:
            set_note(key, text)


def follow(job: Any, tracking: str, *, models: bool = False, interval: float = 2.0) -> Tracker:
    """Start logging ``job`` to the sinks ``tracking`` names (``job.settings`` become the run's parameters)."""
    from . import parse_sinks
    from .points import flat_params

    settings = dict(getattr(job, "settings", {}) or {})
    federation = settings.get("federation") or {}
    params = flat_params({k: v for k, v in settings.items() if k != "federation"})
    params.update(flat_params({"federation": {k: v for k, v in federation.items() if not k.startswith("tracking")}}))
    if "algorithm" in federation:
        params["algorithm"] = federation["algorithm"]
    run = RunInfo(
        job_id=job.id,
        name=str(federation.get("job_name") or job.name),
        params=params,
        tags={"target": str(getattr(job, "target", "")), "job_name": str(job.name)},
    )
    tracker = Tracker(job, parse_sinks(tracking), run, models=models, interval=interval).start()
    job.tracking = tracker
    return tracker


def _wait_for_all(timeout: float = 30.0) -> None:
    """At interpreter exit: give running trackers a little time to log the end of their jobs."""
    deadline = time.monotonic() + timeout
    for tracker in list(_RUNNING.values()):
        if tracker.running and not tracker.job.done:
            continue  # a job still running: nothing more to log now
        tracker.wait(max(0.0, deadline - time.monotonic()))


atexit.register(_wait_for_all)
