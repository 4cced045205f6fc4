"""``Dashboard``: ties a ``Job`` to its views and keeps them up to date.

In a Jupyter kernel it displays one output (with a ``display_id``) whose mime bundle holds the live
widget, a composed PNG of the latest state and the text summary; every change updates that output,
so the saved notebook keeps a picture of the latest state. Elsewhere (terminal IPython, scripts)
it prints text.

Updates come from a daemon thread polling the job (the kernel stays free), or, with ``wait=True``,
from the calling thread until the job ends, which also works under nbclient/nbconvert.

A change redraws only the widget parts whose data changed. The display output itself (composed
PNG plus records, hundreds of kB at 50 clients x 100 rounds) is republished at most every
``publish_interval`` seconds while the job runs, and always once it ends: the saved notebook
keeps the final state, and a fast job does not flood the frontend.
"""

from __future__ import annotations

import base64
import contextvars
import logging
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

from .picture import DashboardPictures
from .snapshot import DashboardSnapshot, take_snapshot
from .text import ProgressLines, render_text, status_line, title_line

if TYPE_CHECKING:  # pragma: no cover
    from .widgets import DashboardView

log = logging.getLogger(__name__)

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
METADATA_KEY = "resontech_nb"


def in_widget_frontend() -> bool:
    """True inside a Jupyter kernel (JupyterLab, Notebook 7, VS Code, Colab), where widgets can render."""
    try:
        from ipykernel.zmqshell import ZMQInteractiveShell
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and isinstance(shell, ZMQInteractiveShell)


class Dashboard:
    """The live dashboard of one job. ``show()`` displays it; ``start()``/``wait()`` keep it current."""

    publish_interval = 3.0

    def __init__(self, job: Any, *, poll_interval: float | None = None, widgets: bool | None = None) -> None:
        self.job = job
        self.poll_interval = float(poll_interval or getattr(job, "poll_interval", 1.0) or 1.0)
        self.pictures = DashboardPictures()
        self.use_widgets = in_widget_frontend() if widgets is None else widgets
        self.display_id = f"resontech-nb-{job.id}-{uuid.uuid4().hex[:8]}"
        self.snapshot: DashboardSnapshot | None = None
        self.redraws = 0
        self.view: DashboardView | None = None
        self._ended_at: float | None = None
        self._shown = False
        self._progress = ProgressLines.for_job(job)  # the text view's columns, fixed from the job's configuration
        self._printed_status = ""
        self._png: bytes = b""
        self._png_of: tuple | None = None  # what the composed PNG shows: (snapshot fingerprint, metric)
        self._text = ""
        self._published_at = 0.0
        self._publish_pending = False
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if self.use_widgets:
            from .widgets import DashboardView

            self.view = DashboardView(on_abort=self.abort, pictures=self.pictures, lock=self._lock)

    # -- reading the job ------------------------------------------------------------------
    def refresh(self) -> bool:
        """Poll the job once; redraw everything if records or status changed. Returns whether they did."""
        with self._lock:
            try:
                snap = take_snapshot(self.job, ended_at=self._ended_at)
            except Exception as exc:  # a network hiccup must not kill the live view
                log.warning("dashboard could not refresh job %s: %s", self.job.id, exc)
                if self.view is not None:
                    self.view.problem = f"cannot reach the job right now: {exc}"
                return False
            if snap.final and self._ended_at is None:
                ends = [r.finished_at for r in snap.rounds if r.finished_at is not None]
                # A job that had ended before the first look (a reattach): its records know when.
                self._ended_at = max(ends) if self.snapshot is None and ends else time.time()
                snap = take_snapshot(self.job, ended_at=self._ended_at)
            if self.view is not None and self.view.problem:
                self.view.problem = ""
            changed = self.snapshot is None or snap.fingerprint() != self.snapshot.fingerprint()
            self.snapshot = snap
            if changed:
                self._redraw(snap)
            elif self.view is not None:
                self.view.update(snap, redraw=False)  # the elapsed time ticks on
                if self._publish_pending and time.monotonic() - self._published_at >= self.publish_interval:
                    self._publish(update=True)
            return changed

    def _redraw(self, snap: DashboardSnapshot) -> None:
        self.redraws += 1
        self._text = ""  # drawn when first asked for: the widget does not need it
        if self.use_widgets:
            assert self.view is not None
            self.view.update(snap)
            if self._shown:
                due = snap.final or time.monotonic() - self._published_at >= self.publish_interval
                if due:
                    self._publish(update=True)
                else:
                    self._publish_pending = True
        elif self._shown:
            self._print_progress(snap)

    # -- what gets displayed --------------------------------------------------------------
    def text(self) -> str:
        with self._lock:
            if self.snapshot is None:
                self.refresh()
            assert self.snapshot is not None
            if not self._text:
                self._text = render_text(self.snapshot)
            return self._text

    def png(self) -> bytes:
        """The composed PNG of the latest state, in the metric the charts show (drawn when first asked for)."""
        with self._lock:
            if self.snapshot is None:
                self.refresh()
            assert self.snapshot is not None
            metric = self.view.metric if self.view is not None else None
            shows = (self.snapshot.fingerprint(), metric)
            if shows != self._png_of:
                self._png = self.pictures.compose(self.snapshot, metric)
                self._png_of = shows
            return self._png

    def mimebundle(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(data, metadata)`` of the display output: widget view, static PNG, text, and the records behind them."""
        with self._lock:
            if self.snapshot is None:
                self.refresh()
            assert self.snapshot is not None
            data: dict[str, Any] = {
                "image/png": base64.b64encode(self.png()).decode("ascii"),
                "text/plain": self.text(),
            }
            if self.view is not None:
                data[WIDGET_MIME] = {"version_major": 2, "version_minor": 0, "model_id": self.view.widget.model_id}
            metadata = {METADATA_KEY: self.snapshot.to_dict()}
            return data, metadata

    def _publish(self, update: bool) -> None:
        from IPython.display import display

        data, metadata = self.mimebundle()
        self._published_at, self._publish_pending = time.monotonic(), False
        display(data, raw=True, metadata=metadata, display_id=self.display_id, update=update)

    def show(self) -> Dashboard:
        """Display the dashboard once (widgets and static picture in a kernel, text elsewhere)."""
        if self.snapshot is None:
            self.refresh()
        if self._shown:
            return self
        self._shown = True
        if self.use_widgets:
            self._publish(update=False)
        elif self.snapshot is not None and self.snapshot.final:
            print(self.text(), flush=True)  # an ended job (a reattach): the whole table at once
            self._progress.printed = self.snapshot.rounds_done
        else:
            print(title_line(self.snapshot), flush=True)
            self._print_progress(self.snapshot, status=True)
        return self

    def _ipython_display_(self) -> None:
        # Showing the return value of show_dashboard() again would only duplicate the output.
        if not self._shown:
            self.show()
            self.start()

    def __repr__(self) -> str:
        return self.text() if self.snapshot is not None else f"<Dashboard for job {self.job.id}>"

    # -- text progress (no widgets) -------------------------------------------------------
    def _print_progress(self, snap: DashboardSnapshot, status: bool = False) -> None:
        """One aligned line per round finished since the last print; the status when it changes (not the
        RUNNING -> RUNNING of every round); the summary once the job has ended."""
        lines = self._progress.new_lines(snap)
        if not snap.final and (status or snap.status != self._printed_status):
            lines.append(status_line(snap) + (f" \u00b7 error: {snap.error}" if snap.error else ""))
        self._printed_status = snap.status
        if lines:
            print("\n".join(lines), flush=True)

    # -- keeping it current ---------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> Dashboard:
        """Poll the job from a daemon thread until it reaches a final state (the kernel stays free)."""
        if self.running or (self.snapshot is not None and self.snapshot.final):
            return self
        self._stop.clear()
        # Run in a copy of this context so that, in ipykernel, the thread's display updates carry the
        # parent header of the cell that showed the dashboard and land in that cell's output.
        context = contextvars.copy_context()
        self._thread = threading.Thread(
            target=context.run, args=(self._poll_until_final,), name=f"resontech-dashboard-{self.job.id}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stop the background updates (the job itself keeps running)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _poll_until_final(self) -> None:
        while not self._stop.wait(self.poll_interval):
            self.refresh()
            if self.snapshot is not None and self.snapshot.final:
                break

    def wait(self) -> str:
        """Poll from the calling thread until the job ends; return its final status.

        An interrupt (Ctrl-C, the kernel's stop button) stops waiting, not the job: the
        dashboard then carries on from a background thread.
        """
        self.stop()
        try:
            while self.snapshot is None or not self.snapshot.final:
                time.sleep(self.poll_interval)
                self.refresh()
        except KeyboardInterrupt:
            log.warning("stopped waiting for job %s; it keeps running (abort it with job.abort())", self.job.id)
            print(f"Stopped waiting; job {self.job.id} keeps running. Abort it with the button or %fl_abort.")
            self.start()
        assert self.snapshot is not None
        return self.snapshot.status

    def abort(self) -> None:
        """Abort the job (what the Abort button calls) and show the new state at once."""
        self.job.abort()
        self.refresh()


def show_dashboard(job: Any, wait: bool = False, display: bool = True) -> Dashboard:
    """Show the live dashboard of ``job`` under the current cell.

    ``wait=True`` blocks until the job ends, updating the same display from this thread.
    ``display=False`` builds it without showing it (display the returned object to show it).
    """
    dashboard = Dashboard(job)
    dashboard.refresh()
    if display:
        dashboard.show()
    if wait:
        dashboard.wait()
    elif display:
        dashboard.start()
    return dashboard
