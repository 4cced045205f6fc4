"""The dashboard: participation grid, text fallback, static PNG, live updates, abort, saved-notebook output.

The dashboard is target-agnostic, so it is driven here by a small ``Job`` subclass whose state
and round records are fed from a list; real jobs on real targets are tested in their own files.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from PIL import Image

from resontech_nb.dashboard import Dashboard, DashboardSnapshot, render_png, render_text, show_dashboard
from resontech_nb.job import Job, JobState
from resontech_nb.records import ClientRound, RoundRecord

CLIENTS = ["site-1", "site-2", "site-3"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def make_round(index: int, num_rounds: int = 3, *, failed: str | None = None, absent: str | None = None) -> RoundRecord:
    clients = {}
    for i, name in enumerate(CLIENTS):
        if name == failed:
            clients[name] = ClientRound("failed", error="CUDA out of memory")
        elif name == absent:
            clients[name] = ClientRound("absent")
        else:
            clients[name] = ClientRound("ok", loss=1.0 / (index + 1) + 0.01 * i, samples=40 + i)
    start = 1000.0 + 10 * index
    return RoundRecord(index, num_rounds, 1.0 / (index + 1), clients, start, start + 2.5 + index)


ROUNDS = [make_round(0), make_round(1, failed="site-2"), make_round(2, absent="site-3")]


class FeedJob(Job):
    """A job whose states and records come from a list, one step per poll; the last step repeats."""

    target = "feed"
    poll_interval = 0.01

    def __init__(self, steps: list[tuple[str, int]], *, error: str | None = None) -> None:
        super().__init__("feed-42", num_rounds=3, clients=CLIENTS, name="feed demo")
        self.steps = steps  # (status, how many of ROUNDS are finished)
        self.polls = 0
        self.abort_calls = 0
        self._error = error
        self._visible = 0

    def _poll(self) -> JobState:
        status, self._visible = self.steps[min(self.polls, len(self.steps) - 1)]
        self.polls += 1
        return JobState(status, self._error if status == "FAILED" else None)

    def _fetch_rounds(self) -> list[RoundRecord]:
        return ROUNDS[: self._visible]

    def _fetch_result(self, which="final") -> dict:
        return {}

    def _abort(self) -> None:
        self.abort_calls += 1


def running_job() -> FeedJob:
    return FeedJob([("RUNNING", 2)])


def finishing_job() -> FeedJob:
    return FeedJob([("SUBMITTED", 0), ("RUNNING", 1), ("RUNNING", 2), ("RUNNING", 3), ("FINISHED", 3)])


def grid_row_states(grid_html: str, client: str) -> list[str]:
    row = re.search(rf'<tr data-client="{client}">(.*?)</tr>', grid_html)
    assert row, f"no grid row for {client}"
    return re.findall(r'data-state="(\w+)"', row.group(1))


# -- the data behind the pictures ------------------------------------------------------
def test_participation_grid_marks_failed_and_absent_clients() -> None:
    dashboard = Dashboard(finishing_job(), widgets=True)
    dashboard.job.steps = [("RUNNING", 3)]
    dashboard.refresh()
    cells = dict(zip(dashboard.view.participation["clients"], dashboard.view.participation["cells"], strict=True))
    assert cells["site-2"] == ["ok", "failed", "ok"]
    assert cells["site-3"] == ["ok", "ok", "absent"]
    assert dashboard.view.participation["rounds"] == [1, 2, 3]  # shown to users from 1
    # The HTML grid in the widget says the same, and names the failure on hover.
    assert grid_row_states(dashboard.view.grid.value, "site-2") == ["ok", "failed", "ok"]
    assert "site-2 \u00b7 round 2: failed (CUDA out of memory)" in dashboard.view.grid.value


def test_grid_leaves_future_rounds_empty_and_counts_missing_clients_absent() -> None:
    partial = RoundRecord(0, 4, 0.5, {"site-1": ClientRound("ok", loss=0.5, samples=3)}, 0.0, 1.0)
    snap = DashboardSnapshot("RUNNING", 4, ("site-1", "site-2"), (partial,))
    clients, grid = snap.participation()
    assert clients == ["site-1", "site-2"]
    assert grid == [[1, 0, 0, 0], [3, 0, 0, 0]]  # took part / absent in round 1, rounds 2-4 not run yet


def test_status_line_and_abort_button_follow_the_job() -> None:
    dashboard = Dashboard(running_job(), widgets=True)
    dashboard.refresh()
    view = dashboard.view
    assert (view.status, view.rounds_done, view.num_rounds) == ("RUNNING", 2, 3)
    assert view.last_global_loss == pytest.approx(0.5)
    assert "round 2 of 3" in view.status_line.value and "global loss" in view.status_line.value
    assert not view.abort_button.disabled


# -- text fallback ---------------------------------------------------------------------
def test_text_fallback_shows_status_and_a_table_of_rounds() -> None:
    job = running_job()
    job.refresh()
    text = render_text(
        {
            "status": "RUNNING",
            "num_rounds": 3,
            "clients": CLIENTS,
            "rounds": job._rounds,
            "job_id": "feed-42",
            "name": "feed demo",
        }
    )
    lines = text.splitlines()
    assert lines[0] == "Federated job feed demo (id feed-42)"
    assert lines[1].startswith("RUNNING \u00b7 round 2 of 3")
    header = next(line for line in lines if line.startswith("round"))
    assert header.split() == ["round", "global", "loss", "duration", *CLIENTS]
    row2 = next(line for line in lines if line.split()[:1] == ["2"])  # second round, shown as 2
    assert "FAILED" in row2.split() and "3.5s" in row2


def test_text_fallback_summarises_many_clients() -> None:
    clients = [f"site-{i}" for i in range(1, 51)]
    record = RoundRecord(
        0, 100, 0.9, {c: ClientRound("failed" if c == "site-7" else "ok", loss=0.9, samples=1) for c in clients}
    )
    text = render_text(DashboardSnapshot("RUNNING", 100, tuple(clients), (record,)))
    row = text.splitlines()[-1].split()
    assert row[:2] == ["1", "0.9000"] and "49" in row and "(site-7)" in row


def test_text_without_rounds_says_so_and_shows_the_error() -> None:
    text = render_text(DashboardSnapshot("FAILED", 3, tuple(CLIENTS), (), error="no client connected"))
    assert "FAILED \u00b7 round 0 of 3" in text
    assert "error: no client connected" in text and "no round finished yet" in text


# -- static picture --------------------------------------------------------------------
@pytest.mark.parametrize("rounds", [0, 3])
def test_png_is_a_valid_picture_about_1000_px_wide(rounds: int) -> None:
    png = render_png(DashboardSnapshot("RUNNING", 3, tuple(CLIENTS), tuple(ROUNDS[:rounds]), "feed-42", "demo"))
    assert png.startswith(PNG_SIGNATURE)
    image = Image.open(io.BytesIO(png))
    image.verify()
    assert 900 <= image.size[0] <= 1100 and 600 <= image.size[1] <= 1600


def test_png_accepts_plain_record_dicts() -> None:
    data = {"status": "FINISHED", "num_rounds": 3, "clients": CLIENTS, "rounds": [r.to_dict() for r in ROUNDS]}
    assert render_png(data).startswith(PNG_SIGNATURE)


# -- live updates and abort ------------------------------------------------------------
def test_live_thread_follows_the_job_and_stops_at_its_final_state() -> None:
    job = finishing_job()
    dashboard = Dashboard(job, widgets=True, poll_interval=0.01)
    dashboard.refresh()
    assert dashboard.view.status == "SUBMITTED"
    dashboard.start()
    dashboard._thread.join(timeout=20)
    assert not dashboard.running
    assert dashboard.view.status == "FINISHED" and dashboard.view.rounds_done == 3
    assert dashboard.view.abort_button.disabled
    assert dashboard.redraws >= 3  # one per change, not one per poll
    polls = job.polls
    time.sleep(0.1)
    assert job.polls == polls  # nothing polls a finished job


def test_elapsed_time_of_an_already_finished_job_comes_from_its_records() -> None:
    job = FeedJob([("FINISHED", 3)])
    job.submitted_at = time.time()  # as after attach(): the handle is younger than the job
    dashboard = Dashboard(job, widgets=True)
    dashboard.refresh()
    assert dashboard.snapshot.elapsed_s == pytest.approx(ROUNDS[-1].finished_at - ROUNDS[0].started_at)
    assert "elapsed 24s" in dashboard.view.status_line.value  # 24.5 s


def test_redraw_happens_only_when_records_or_status_change() -> None:
    dashboard = Dashboard(running_job(), widgets=True)
    assert dashboard.refresh() is True
    assert [dashboard.refresh() for _ in range(3)] == [False, False, False]
    assert dashboard.redraws == 1


def test_abort_button_aborts_the_job() -> None:
    job = running_job()
    dashboard = Dashboard(job, widgets=True)
    dashboard.refresh()
    dashboard.view.abort_button.click()
    assert job.abort_calls == 1
    assert dashboard.view.status == "ABORTED"
    assert dashboard.view.abort_button.disabled


def test_abort_failure_is_shown_not_raised() -> None:
    class StubbornJob(FeedJob):
        def _abort(self) -> None:
            raise RuntimeError("the server said no")

    dashboard = Dashboard(StubbornJob([("RUNNING", 1)]), widgets=True)
    dashboard.refresh()
    dashboard.view.abort_button.click()
    assert "abort failed: the server said no" in dashboard.view.status_line.value
    assert not dashboard.view.abort_button.disabled


def test_outside_a_kernel_wait_prints_text_progress(capsys: pytest.CaptureFixture[str]) -> None:
    dashboard = show_dashboard(finishing_job(), wait=True)
    assert dashboard.snapshot.status == "FINISHED" and dashboard.view is None
    out = capsys.readouterr().out
    assert "Federated job feed demo" in out and "SUBMITTED \u00b7 round 0 of 3" in out
    assert re.search(r"^\s*3\s+0\.3333", out, re.M)  # the third round's row
    assert out.rstrip().splitlines()[-1].startswith("FINISHED \u00b7 round 3 of 3")


# -- the display output a saved notebook keeps -----------------------------------------
def test_mimebundle_holds_widget_png_text_and_records() -> None:
    dashboard = Dashboard(running_job(), widgets=True)
    data, metadata = dashboard.mimebundle()
    assert data["application/vnd.jupyter.widget-view+json"]["model_id"] == dashboard.view.widget.model_id
    assert data["text/plain"].splitlines()[1].startswith("RUNNING")
    records = metadata["resontech_nb"]["rounds"]
    assert [r["round"] for r in records] == [0, 1]
    assert records[1]["clients"]["site-2"]["status"] == "failed"


def test_core_does_not_import_ipywidgets() -> None:
    code = "import sys, resontech_nb.job, resontech_nb.dashboard; print('ipywidgets' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


NOTEBOOK_CELL = textwrap.dedent(
    """
    import json
    from resontech_nb.dashboard import show_dashboard
    from resontech_nb.job import Job, JobState
    from resontech_nb.records import RoundRecord

    class ReplayJob(Job):
        target = "replay"
        poll_interval = 0.05

        def __init__(self, path):
            data = json.load(open(path))
            super().__init__(data["id"], num_rounds=data["num_rounds"], clients=data["clients"], name="replay")
            self.rounds_data, self.step = data["rounds"], 0

        def _poll(self):
            self.step += 1
            return JobState("FINISHED" if self.step > len(self.rounds_data) else "RUNNING")

        def _fetch_rounds(self):
            return [RoundRecord.from_dict(r) for r in self.rounds_data[: self.step]]

        def _fetch_result(self, which="final"):
            return {}

        def _abort(self):
            pass

    dashboard = show_dashboard(ReplayJob("records.json"), wait=True)
    """
)




@pytest.mark.slow
def test_wait_mode_in_a_real_kernel_leaves_the_latest_picture_and_records(tmp_path: Path, kernel_name: str) -> None:
    records = [r.to_dict() for r in ROUNDS]
    (tmp_path / "records.json").write_text(
        json.dumps({"id": "replay-7", "num_rounds": 3, "clients": CLIENTS, "rounds": records})
    )
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(NOTEBOOK_CELL)])
    NotebookClient(nb, kernel_name=kernel_name, timeout=120, resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for o in nb.cells[0].outputs if o.output_type == "display_data"]
    assert len(outputs) == 1, nb.cells[0].outputs  # one output, updated in place
    output = outputs[0]
    assert set(output.data) == {"application/vnd.jupyter.widget-view+json", "image/png", "text/plain"}
    saved = output.metadata["resontech_nb"]
    assert saved["status"] == "FINISHED" and saved["job_id"] == "replay-7"
    assert [r["round"] for r in saved["rounds"]] == [0, 1, 2]
    assert saved["rounds"][1]["clients"]["site-2"]["status"] == "failed"
    assert output.data["text/plain"].splitlines()[1].startswith("FINISHED \u00b7 round 3 of 3")
    import base64

    assert base64.b64decode(output.data["image/png"]).startswith(PNG_SIGNATURE)
