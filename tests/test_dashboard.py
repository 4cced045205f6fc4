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
import numpy as np
import pytest
from matplotlib.colors import to_rgb
from nbclient import NotebookClient
from PIL import Image

from resontech_nb.dashboard import Dashboard, DashboardSnapshot, render_png, render_text, show_dashboard
from resontech_nb.dashboard.charts import column_quantiles
from resontech_nb.dashboard.matrices import CELL_COLOURS, cross_site_matrix, paint_cells
from resontech_nb.dashboard.series import TRAIN, VALIDATION, metric_series
from resontech_nb.dashboard.snapshot import CELL_ABSENT, CELL_FAILED, CELL_TOOK_PART, NOT_RUN
from resontech_nb.job.handle import Job, JobState
from resontech_nb.records.rounds import ClientRound, RoundRecord

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

    def __init__(
        self,
        steps: list[tuple[str, int]],
        *,
        error: str | None = None,
        rounds: list[RoundRecord] | None = None,
        evaluation: dict | None = None,
    ) -> None:
        super().__init__("feed-42", num_rounds=3, clients=CLIENTS, name="feed demo")
        self.records = ROUNDS if rounds is None else rounds
        self.evaluation = evaluation or {}
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
        return self.records[: self._visible]

    def _fetch_evaluation(self) -> dict:
        return self.evaluation

    def _fetch_result(self, which="final") -> dict:
        return {}

    def _abort(self) -> None:
        self.abort_calls += 1


def running_job() -> FeedJob:
    return FeedJob([("RUNNING", 2)])


def finishing_job() -> FeedJob:
    return FeedJob([("SUBMITTED", 0), ("RUNNING", 1), ("RUNNING", 2), ("RUNNING", 3), ("FINISHED", 3)])


# -- the data behind the pictures ------------------------------------------------------
def test_participation_grid_marks_failed_and_absent_clients_and_names_the_error() -> None:
    dashboard = Dashboard(finishing_job(), widgets=True)
    dashboard.job.steps = [("RUNNING", 3)]
    dashboard.refresh()
    cells = dict(zip(dashboard.view.participation["clients"], dashboard.view.participation["cells"], strict=True))
    assert cells["site-2"] == ["ok", "failed", "ok"]
    assert cells["site-3"] == ["ok", "ok", "absent"]
    assert dashboard.view.participation["rounds"] == [1, 2, 3]  # shown to users from 1
    # The failed client's error is in the widget's traits and under the grid, and in the text.
    assert dashboard.view.failures == [
        {"round": 2, "client": "site-2", "stage": "training", "error": "CUDA out of memory"}
    ]
    assert "round 2 \u00b7 site-2: training failed: CUDA out of memory" in dashboard.view.failures_box.value
    assert "round 2 \u00b7 site-2: training failed: CUDA out of memory" in dashboard.text()


def test_grid_image_paints_each_cell_in_its_state_colour() -> None:
    codes = np.array([[CELL_TOOK_PART, CELL_FAILED, NOT_RUN], [CELL_ABSENT, CELL_TOOK_PART, NOT_RUN]], dtype=np.uint8)
    pixels = paint_cells(codes, 40, 90)  # 20 x 30 pixels a cell: big enough for white separators
    rgb = {code: tuple(int(round(255 * v)) for v in to_rgb(CELL_COLOURS[code])) for code in range(4)}
    for (row, col), code in np.ndenumerate(codes):
        assert tuple(pixels[row * 20 + 10, col * 30 + 15]) == rgb[code]
    assert tuple(pixels[20, 5]) == (255, 255, 255) and tuple(pixels[5, 30]) == (255, 255, 255)


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


# -- metrics, validation, best round, cross-site, divergence -------------------------------
def metric_round(index: int, *, global_loss: float | None = None, validated: bool = True) -> RoundRecord:
    """site-1 and site-2 (10 and 30 samples) with loss and accuracy; validation of the round's global model."""
    clients = {}
    for name, samples, val_samples in (("site-1", 10, 5), ("site-2", 30, 15)):
        base = 0.1 * (1 if name == "site-1" else 2)
        clients[name] = {
            "status": "ok",
            "samples": samples,
            "metrics": {"loss": 1.0 / (index + 1) + base, "accuracy": 0.5 + 0.1 * index + base},
            **(
                {"validation": {"loss": 1.2 / (index + 1) + base, "accuracy": 0.4 + 0.1 * index + base},
                 "validation_samples": val_samples}
                if validated else {}
            ),
        }  # fmt: skip
    record = RoundRecord.from_dict({"round": index, "num_rounds": 3, "clients": clients, "started_at": 10.0 * index,
                                    "finished_at": 10.0 * index + 2})  # fmt: skip
    if global_loss is not None:
        record = RoundRecord(record.round, 3, global_loss, record.clients, record.started_at, record.finished_at,
                             {**record.metrics, "loss": global_loss}, record.validation)  # fmt: skip
    return record


METRIC_ROUNDS = [metric_round(0), metric_round(1), metric_round(2)]
BEST = "#d4a017"
NOT_FINITE = "#d7263d"


def pixels_of(png: bytes, colour: str, tolerance: int = 12) -> int:
    """How many pixels of a PNG are (about) ``colour``."""
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=int)
    target = np.array([int(round(255 * v)) for v in to_rgb(colour)])
    return int((np.abs(rgb - target).max(axis=-1) <= tolerance).sum())


def metric_dashboard(rounds=METRIC_ROUNDS, evaluation=None, status="RUNNING") -> Dashboard:  # noqa: ANN001
    dashboard = Dashboard(FeedJob([(status, len(rounds))], rounds=rounds, evaluation=evaluation), widgets=True)
    dashboard.refresh()
    return dashboard


def test_validation_curve_holds_the_sample_weighted_validation_of_each_global_model() -> None:
    snap = metric_dashboard().snapshot
    val = metric_series(snap, "accuracy", VALIDATION)
    # round 1: (5 validation samples * 0.5 + 15 * 0.6) / 20
    assert val.global_values.tolist() == pytest.approx([0.575, 0.675, 0.775])
    assert val.per_client[0].tolist() == pytest.approx([0.5, 0.6, 0.7])
    train = metric_series(snap, "loss", TRAIN)
    assert train.global_values.tolist() == pytest.approx([1.175, 0.675, 1 / 3 + 0.175])  # (10*1.1 + 30*1.2) / 40


def test_metric_dropdown_offers_every_recorded_metric_and_redraws_only_the_metric_charts() -> None:
    dashboard = metric_dashboard()
    view = dashboard.view
    assert list(view.metric_dropdown.options) == ["loss", "accuracy"] == view.metric_options
    assert view.metric == "loss" and bytes(view.images["val"].value).startswith(PNG_SIGNATURE)
    before = {part: bytes(image.value) for part, image in view.images.items()}
    view.metric_dropdown.value = "accuracy"  # what a user's click does
    assert view.metric == "accuracy"
    after = {part: bytes(image.value) for part, image in view.images.items()}
    assert after["train"] != before["train"] and after["val"] != before["val"]
    assert after["grid"] == before["grid"] and after["durations"] == before["durations"]
    # The saved picture follows the chosen metric too.
    assert "accuracy" in render_text(dashboard.snapshot).splitlines()[3]


def test_validation_arriving_later_redraws_the_validation_chart_only() -> None:
    late = [METRIC_ROUNDS[0], metric_round(1, validated=False)]
    job = FeedJob([("RUNNING", 2)], rounds=late)
    dashboard = Dashboard(job, widgets=True)
    dashboard.refresh()
    before = {part: bytes(image.value) for part, image in dashboard.view.images.items()}
    job.records = METRIC_ROUNDS[:2]  # the same rounds, now with the second round's validation
    assert dashboard.refresh()
    after = {part: bytes(image.value) for part, image in dashboard.view.images.items()}
    changed = {part for part in after if after[part] != before[part]}
    assert changed == {"val"}


def test_best_round_is_marked_in_charts_status_text_and_picture() -> None:
    plain = metric_dashboard()
    best = metric_dashboard(evaluation={"best_round": 1})
    assert best.view.best_round == 2 and plain.view.best_round is None  # shown from 1
    assert "best round <b>2</b>" in best.view.status_line.value
    text = best.text()
    assert re.search(r"^\s*2 \*\s", text, re.M) and "* best round (by select_metric): 2" in text
    for part in ("train", "val"):
        assert pixels_of(bytes(best.view.images[part].value), BEST) > 50
        assert pixels_of(bytes(plain.view.images[part].value), BEST) == 0
    assert pixels_of(best.png(), BEST) > 100 and pixels_of(plain.png(), BEST) == 0
    assert best.mimebundle()[1]["resontech_nb"]["best_round"] == 1


def test_a_non_finite_global_loss_is_flagged() -> None:
    rounds = [METRIC_ROUNDS[0], metric_round(1, global_loss=float("nan")), metric_round(2, global_loss=float("inf"))]
    dashboard = metric_dashboard(rounds)
    view = dashboard.view
    assert view.nonfinite_rounds == [2, 3]
    assert 'class="rt-warning"' in view.status_line.value and "not finite" in view.status_line.value
    text = dashboard.text()
    assert "warning: the global loss is not finite (NaN or inf) in rounds 2, 3" in text
    assert re.search(r"^\s*2\s+NaN\s", text, re.M) and re.search(r"^\s*3\s+inf\s", text, re.M)
    assert pixels_of(bytes(view.images["train"].value), NOT_FINITE) > 20  # the red crosses
    assert pixels_of(bytes(metric_dashboard().view.images["train"].value), NOT_FINITE) == 0
    assert "not finite" in render_text(dashboard.snapshot) and pixels_of(dashboard.png(), NOT_FINITE) > 20


def test_a_failed_validation_is_named() -> None:
    record = METRIC_ROUNDS[0].to_dict()
    record["clients"]["site-2"]["validation_error"] = "fl_evaluate_model returned no samples"
    dashboard = metric_dashboard([RoundRecord.from_dict(record)])
    assert dashboard.view.failures[0]["stage"] == "validation"
    assert "round 1 \u00b7 site-2: validation failed: fl_evaluate_model returned no samples" in dashboard.text()


CROSS_SITE = {
    "global": {"site-1": {"accuracy": 0.81, "loss": 0.4}, "site-2": {"accuracy": 0.77, "loss": 0.5}},
    "site-1 local": {"site-1": {"accuracy": 0.9, "loss": 0.2}, "site-2": {"accuracy": 0.52, "loss": 1.3}},
}


def test_cross_site_evaluation_shows_as_a_heatmap_and_a_table() -> None:
    plain = metric_dashboard(status="FINISHED")
    dashboard = metric_dashboard(evaluation={"cross_site": CROSS_SITE}, status="FINISHED")
    image = dashboard.view.images["cross_site"]
    assert plain.view.images["cross_site"].layout.display == "none"
    assert image.layout.display != "none" and bytes(image.value).startswith(PNG_SIGNATURE)
    assert dashboard.view.cross_site == CROSS_SITE
    models, sites, values = cross_site_matrix(dashboard.snapshot.cross_site, "accuracy")
    assert models == ["global", "site-1 local"] and sites == ["site-1", "site-2"]
    assert values.tolist() == [[0.81, 0.77], [0.9, 0.52]]
    text = dashboard.text()
    assert re.search(r"^\s*site-1 local\s+0\.9000\s+0\.5200$", text, re.M)
    tall, short = (Image.open(io.BytesIO(d.png())).size[1] for d in (dashboard, plain))
    assert tall > short + 150  # the heatmap is part of the saved picture
    saved = DashboardSnapshot.from_dict(dashboard.mimebundle()[1]["resontech_nb"])
    assert saved.cross_site == CROSS_SITE


def test_the_sites_data_shows_as_a_heatmap_above_the_curves_and_a_verdict_line(tmp_path) -> None:
    from resontech_nb import data_summary, split_shards

    images = np.zeros((60, 8, 8), dtype=np.uint8)
    labels = np.arange(60) % 3
    shards = split_shards((images, labels), 3, scheme="pathological", classes_per_site=1, out=tmp_path / "s")
    brief = data_summary(shards, min_count=0).brief()
    brief["counts"][0][1] = None  # a bin a site withheld
    plain = metric_dashboard(status="FINISHED")
    job = FeedJob([("FINISHED", len(METRIC_ROUNDS))], rounds=METRIC_ROUNDS)
    job.settings = {"data_summary": brief}  # what api.submit keeps with the job
    dashboard = Dashboard(job, widgets=True)
    dashboard.refresh()

    view = dashboard.view
    image = view.images["data"]
    assert plain.view.images["data"].layout.display == "none"
    assert image.layout.display != "none" and bytes(image.value).startswith(PNG_SIGNATURE)
    children = list(view.widget.children)
    assert children.index(image) < children.index(view.metric_dropdown)  # above the curves
    assert view.data_summary["counts"] == [[20, None, 0], [0, 20, 0], [0, 0, 20]]
    sites, values = dashboard.snapshot.data_counts
    assert sites == ["site-1", "site-2", "site-3"] and np.isnan(values[0, 1]) and values[1, 1] == 20
    verdict = [line for line in dashboard.text().splitlines() if line.startswith("data: ")]
    assert verdict == [f"data: {brief['verdict']}"] and "strong label skew" in verdict[0]
    tall, short = (Image.open(io.BytesIO(d.png())).size[1] for d in (dashboard, plain))
    assert tall > short + 100  # the heatmap is part of the saved picture
    saved = DashboardSnapshot.from_dict(dashboard.mimebundle()[1]["resontech_nb"])
    assert saved.data_summary == dashboard.snapshot.data_summary
    other = {**brief, "counts": [[20, 0, 0], [0, 20, 0], [0, 0, 20]]}
    redrawn = dashboard.view.pictures.data.pixels(DashboardSnapshot.from_dict({"data_summary": other}))
    assert redrawn[1] and not np.array_equal(redrawn[0], dashboard.view.pictures.data.pixels(saved)[0])


def test_a_queued_job_shows_as_queued_and_is_still_followed() -> None:
    job = FeedJob([("QUEUED", 0), ("QUEUED", 0), ("RUNNING", 1), ("FINISHED", 3)])
    dashboard = Dashboard(job, widgets=True, poll_interval=0.01)
    dashboard.refresh()
    assert dashboard.view.status == "QUEUED" and not dashboard.view.abort_button.disabled
    assert "QUEUED</span>" in dashboard.view.status_line.value and "waiting for a free worker" in (
        dashboard.view.status_line.value
    )
    assert re.fullmatch(
        r"QUEUED · round 0 of 3 · elapsed \d+s · waiting for a free worker", dashboard.text().splitlines()[1]
    )
    assert pixels_of(dashboard.png(), "#7c3aed") > 100  # the badge in its own colour
    dashboard.start()
    dashboard._thread.join(timeout=20)
    assert dashboard.view.status == "FINISHED"


def test_band_quantiles_match_numpy_and_skip_missing_values() -> None:
    values = np.array([[1.0, np.nan, 3.0], [2.0, np.nan, np.nan], [4.0, np.nan, 5.0]])
    lo, mid, hi = column_quantiles(values, (0.0, 0.5, 1.0))
    assert lo.tolist()[::2] == [1.0, 3.0] and hi.tolist()[::2] == [4.0, 5.0] and mid[0] == 2.0
    assert np.isnan(lo[1]) and np.isnan(hi[1])


def test_round_durations_are_bars_whose_height_is_the_duration_and_failed_rounds_stand_out() -> None:
    dashboard = Dashboard(FeedJob([("RUNNING", 3)]), widgets=True)
    dashboard.refresh()
    png = bytes(dashboard.view.images["durations"].value)
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=int)
    columns = {}
    for colour in ("#5b8def", "#e07b39"):  # a round; a round where a client failed
        target = np.array([int(round(255 * v)) for v in to_rgb(colour)])
        hits = np.abs(rgb - target).max(axis=-1) <= 12
        columns[colour] = hits.sum(axis=0)[hits.sum(axis=0) > 0]  # bar height in pixels, per pixel column
    assert columns["#e07b39"].size > 0  # round 2 (site-2 failed)
    tallest_ok, failed = columns["#5b8def"].max(), columns["#e07b39"].max()
    # durations 2.5 s, 3.5 s (the failed one) and 4.5 s: the failed bar is between the other two
    assert columns["#5b8def"].min() < failed < tallest_ok


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
    row = next(line for line in text.splitlines() if line.split()[:1] == ["1"]).split()
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
    assert re.search(r"^\s*3 of 3\s+0\.3333", out, re.M)  # the third round's row
    assert out.rstrip().splitlines()[-1].startswith("FINISHED \u00b7 round 3 of 3")


def test_the_saved_output_is_republished_at_most_every_publish_interval_and_always_at_the_end(monkeypatch) -> None:
    job = FeedJob([("RUNNING", 1), ("RUNNING", 2), ("RUNNING", 3), ("RUNNING", 3), ("FINISHED", 3)])
    dashboard = Dashboard(job, widgets=True)
    published = []
    monkeypatch.setattr(dashboard, "_publish", lambda update: published.append((update, dashboard.snapshot.status)))
    dashboard.publish_interval = 3600.0
    dashboard.refresh()
    dashboard._shown, dashboard._published_at = True, time.monotonic()  # as show() leaves it
    assert dashboard.refresh() and dashboard.refresh()  # rounds 2 and 3 arrive: the widget redraws ...
    assert published == [] and dashboard._publish_pending  # ... the saved output waits
    dashboard.publish_interval = 0.0
    assert not dashboard.refresh()  # nothing new, but a change is pending and the interval has passed
    assert published == [(True, "RUNNING")]
    dashboard.publish_interval = 3600.0
    assert dashboard.refresh()  # the final state is published at once
    assert published[-1] == (True, "FINISHED")


# -- the display output a saved notebook keeps -----------------------------------------
def test_mimebundle_holds_widget_png_text_and_records() -> None:
    dashboard = Dashboard(running_job(), widgets=True)
    data, metadata = dashboard.mimebundle()
    assert data["application/vnd.jupyter.widget-view+json"]["model_id"] == dashboard.view.widget.model_id
    assert data["text/plain"].splitlines()[1].startswith("RUNNING")
    records = metadata["resontech_nb"]["rounds"]
    assert [r["round"] for r in records] == [0, 1]
    assert records[1]["clients"]["site-2"]["status"] == "failed"
    assert DashboardSnapshot.from_dict(metadata["resontech_nb"]).rounds == dashboard.snapshot.rounds  # all kept


def test_core_does_not_import_ipywidgets() -> None:
    code = "import sys, resontech_nb.job.handle, resontech_nb.dashboard; print('ipywidgets' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


NOTEBOOK_CELL = textwrap.dedent(
    """
    import json
    from resontech_nb.dashboard import show_dashboard
    from resontech_nb.job.handle import Job, JobState
    from resontech_nb.records.rounds import RoundRecord

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
