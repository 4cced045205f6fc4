"""Tasks handed to waiting sites as soon as they exist: the local target's rounds paced by events, not polls.

In NVFlare's simulator a round is a chain of polls. A site asks for the next task; if the server has not made
it yet, the answer is "try again" and the site sleeps (``task_request_interval``, and 0.5 s in the simulator's
worker, cut to ``SITE_POLL_S``) before it asks again; after each task it also sleeps before it asks at all. On
the server, the task monitor and the workflow waiting for a round's answers each sleep ``task_check_period``
between looks. A tiny round spent about 0.15 s in those sleeps and a few milliseconds working.

Here, in the simulator's processes only (``install_server`` in the simulator launcher, ``install_site`` in the
site worker), the same waits end as soon as what they wait for happens:

- the server holds a site's request for a task while there is none for it (NVFlare's ``ServerRunner`` has the
  loop for it, ``_try_to_get_task``'s ``timeout``, which NVFlare 2.9 leaves unused), and answers it the moment
  a workflow schedules one, or "try again" after ``HOLD_S`` as before. At most ``MAX_HELD`` requests are
  held at once (each holds one of the transport's threads); beyond that a request is answered at once.
- the task monitor and the workflow's wait for a task (``wf_comm_server``) sleep at most ``task_check_period``
  as before, but wake when a site's answer arrives or when the monitor has finished a task.
- a site asks for its next task right after it has sent its answer (the server holds the request).

What a site gets, when, and in which order is unchanged, so the results are the same bit for bit; only the
idle gaps between the steps are gone. A deployment keeps NVFlare's protocol: nothing here is shipped in a job.
``RESONTECH_HANDOVER=0`` in the environment of the simulator turns it off (for side-by-side measurements).
"""

from __future__ import annotations

import os
import threading
import time
import types
from typing import Any

ENV = "RESONTECH_HANDOVER"
HOLD_S = 1.0  # longest a request for a task is held (then "try again", as NVFlare answers at once)
MAX_HELD = 16


def enabled(environ: dict[str, str] | None = None) -> bool:
    """Whether the local target's processes hand tasks over (on unless ``RESONTECH_HANDOVER=0``)."""
    return (environ if environ is not None else os.environ).get(ENV, "1").strip() not in ("0", "false", "no", "off")


class Changes:
    """Something a waiting thread may be waiting for has happened: a generation count and a condition."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._generation = 0

    @property
    def generation(self) -> int:
        return self._generation

    def notify(self) -> None:
        with self._condition:
            self._generation += 1
            self._condition.notify_all()

    def wait_after(self, generation: int, timeout: float) -> bool:
        """Wait until a change after ``generation`` (True) or ``timeout`` seconds (False)."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while self._generation == generation:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._condition.wait(left)
            return True


class WakingSleep(types.ModuleType):
    """The ``time`` module as one module sees it: a sleep ends early at a change (``Changes``) made meanwhile."""

    def __init__(self, changes: Changes) -> None:
        super().__init__("time")
        self.changes = changes

    def __getattr__(self, name: str):
        return getattr(time, name)

    def sleep(self, seconds: float) -> None:
        self.changes.wait_after(self.changes.generation, seconds)


TASKS = Changes()  # a task was scheduled: held requests look again
ANSWERS = Changes()  # an answer arrived, or the monitor finished a task: the server's loops look again


def install_server() -> None:
    """Patch NVFlare's server side of this process (the simulator's server): held requests, waking loops."""
    from nvflare.apis.event_type import EventType
    from nvflare.apis.impl import wf_comm_server
    from nvflare.private.fed.server import server_runner

    comm = wf_comm_server.WFCommServer
    if getattr(comm, "_rt_handover", False):
        return
    comm._rt_handover = True
    wf_comm_server.time = WakingSleep(ANSWERS)

    schedule, submission, check = comm._schedule_task, comm.process_submission, comm.check_tasks

    def _schedule_task(self, *args: Any, **kwargs: Any):
        try:
            return schedule(self, *args, **kwargs)
        finally:
            TASKS.notify()

    def process_submission(self, *args: Any, **kwargs: Any):
        try:
            return submission(self, *args, **kwargs)
        finally:
            ANSWERS.notify()

    def check_tasks(self):
        before = len(self._tasks)
        try:
            return check(self)
        finally:
            if len(self._tasks) != before:  # a task ended: its workflow's wait_for_task looks again
                ANSWERS.notify()
                TASKS.notify()

    comm._schedule_task, comm.process_submission, comm.check_tasks = _schedule_task, process_submission, check_tasks

    runner = server_runner.ServerRunner
    try_to_get = runner._try_to_get_task
    held = threading.BoundedSemaphore(MAX_HELD)

    def _try_to_get_task(self, client, fl_ctx, timeout=None, retry_interval=0.005):
        deadline = time.monotonic() + HOLD_S
        holding = False
        try:
            while True:
                generation = TASKS.generation
                found = try_to_get(self, client, fl_ctx, timeout, retry_interval)
                if found[0] or self.status == "done" or self.abort_signal.triggered:
                    return found
                if not holding:
                    holding = held.acquire(blocking=False)
                    if not holding:  # too many held already: answer now, as NVFlare does
                        return found
                left = deadline - time.monotonic()
                if left <= 0 or not TASKS.wait_after(generation, left):
                    return found
        finally:
            if holding:
                held.release()

    runner._try_to_get_task = _try_to_get_task
    fire_event, abort = runner.fire_event, runner.abort

    def fire_event_and_wake(self, event_type: str, fl_ctx):
        try:
            return fire_event(self, event_type, fl_ctx)
        finally:
            if event_type == EventType.ABOUT_TO_END_RUN:  # the run is done: held requests get END_RUN
                TASKS.notify()

    def abort_and_wake(self, *args: Any, **kwargs: Any):
        try:
            return abort(self, *args, **kwargs)
        finally:
            TASKS.notify()

    runner.fire_event, runner.abort = fire_event_and_wake, abort_and_wake


def install_site() -> None:
    """Patch NVFlare's simulator site worker of this process: ask for the next task right after an answer."""
    from nvflare.private.fed.app.simulator import simulator_worker

    worker = simulator_worker.ClientTaskWorker
    if getattr(worker, "_rt_handover", False):
        return
    worker._rt_handover = True
    do_one_task = worker.do_one_task

    def do_one_task_then_ask(self, client, args):
        _interval, stop_run, end_run_client = do_one_task(self, client, args)
        return 0.0, stop_run, end_run_client  # the server holds the next request until there is a task

    worker.do_one_task = do_one_task_then_ask
