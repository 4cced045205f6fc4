"""Comparing real jobs: the table and figure from job.rounds, only the differing settings, ids after a restart,
the comparison following a job that still runs, and %fl_compare."""

from __future__ import annotations

from pathlib import Path

import fl_models
import pytest

from resontech_nb import FederationConfig, TrainingConfig, capture, compare, make_synthetic_shards, submit

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """Two jobs that differ in learning rate and rounds; the comparison is made while the second still runs."""
    with pytest.MonkeyPatch.context() as mp:
        root = tmp_path_factory.mktemp("compare")
        mp.setenv("RESONTECH_NB_HOME", str(root / "rt_home"))
        mp.setenv("RESONTECH_NB_CONFIG", str(root / "no-config.toml"))
        shards = make_synthetic_shards(root / "shards", n_clients=2, img_size=8, seed=6)
        spec = capture(fl_models.DeltaNet, fl_models.delta_train, fl_models.delta_evaluate)

        def run(name: str, rounds: int, lr: float):
            return submit(
                spec,
                shards,
                training=TrainingConfig(img_size=8, learning_rate=lr),
                federation=FederationConfig(
                    num_rounds=rounds, min_clients=2, wait_time_after_min_received=0, job_name=name
                ),
            )

        first = run("first", 2, 0.001)
        assert first.wait(timeout=400) == "FINISHED", first.error
        second = run("second", 3, 0.01)
        live = compare([first, second], metric="score", display=False)
        assert second.wait(timeout=400) == "FINISHED", second.error
        yield first, second, live


def test_the_table_holds_each_jobs_final_and_best_and_only_the_settings_that_differ(pair):
    first, second, _ = pair
    table = compare([first, second], metric="score", display=False).table
    assert [row["job"] for row in table] == [first.id, second.id]
    for row, job in zip(table, (first, second), strict=True):
        scores = {r.round: r.validation["score"] for r in job.rounds}
        best = max(scores, key=scores.get)
        assert row["final_score"] == pytest.approx(scores[max(scores)])
        assert row["best_score"] == pytest.approx(scores[best])
        assert row["best_round"] == best + 1
        assert row["rounds"] == len(job.rounds) == job.num_rounds
        assert row["algorithm"] == "fedavg"
        assert row["status"] == "FINISHED"
        assert row["wall_s"] > 0
    # learning rate and rounds differ; the job's name and everything equal are no columns of their own
    differing = set(table[0]) - {
        "job",
        "name",
        "status",
        "rounds",
        "num_rounds",
        "wall_s",
        "algorithm",
        "final_score",
        "best_score",
        "best_round",
    }
    assert differing == {"training.learning_rate", "federation.num_rounds"}
    assert [row["training.learning_rate"] for row in table] == [0.001, 0.01]


def test_ids_after_a_restart_give_the_same_table(pair, tmp_path_factory):
    first, second, _ = pair
    with pytest.MonkeyPatch.context() as mp:  # the jobs home the jobs were submitted under
        mp.setenv("RESONTECH_NB_HOME", str(first.state_dir.parent.parent))
        by_id = compare([first.id, second.id], metric="score", display=False)
    assert by_id.table == compare([first, second], metric="score", display=False).table


def test_the_figure_draws_each_jobs_curves_on_shared_axes_with_the_best_round_marked(pair):
    first, second, _ = pair
    figure = compare([first, second], metric="loss", display=False).figure
    (axes,) = figure.axes
    lines = {line.get_label(): line for line in axes.lines}
    # training loss (dashed) for both jobs; the validation has no "loss", so the best round is the training one's
    assert {"first training", "second training"} <= set(lines)
    assert list(lines["second training"].get_xdata()) == [1, 2, 3]
    assert list(lines["second training"].get_ydata()) == pytest.approx([r.metrics["loss"] for r in second.rounds])
    stars = [line for line in axes.lines if line.get_marker() == "*"]
    assert len(stars) == 2


def test_a_comparison_made_while_a_job_ran_follows_it(pair):
    first, second, live = pair
    assert len(live.curves[1].rounds) < 3 or live.curves[1].status != "FINISHED"
    live.refresh()
    assert not live.running
    assert live.table[1]["rounds"] == 3 and live.table[1]["status"] == "FINISHED"


def test_fl_compare_shows_the_table_of_job_variables(pair, ip, capsys):
    first, second, _ = pair
    ip.user_ns.update(a=first, b=second)
    ip.run_line_magic("fl_compare", "a b --metric score")
    shown = capsys.readouterr().out
    assert first.id in shown and second.id in shown and "training.learning_rate" in shown


def _rounds_of(text: str, job_id: str) -> tuple[int, str]:
    """The ``rounds`` and ``status`` cells of ``job_id``'s row in a comparison's text table."""
    header, *rows = text.splitlines()
    columns = header.split()
    (row,) = [r.split() for r in rows if r.split() and r.split()[0] == job_id]
    return int(row[columns.index("rounds")]), row[columns.index("status")]


def test_a_comparison_shown_in_a_kernel_updates_until_its_jobs_end(pair, kernel_name, tmp_path):
    """A real ipykernel: the displayed comparison is redrawn (same display id) as rounds arrive, then no more."""
    from jupyter_client import KernelManager

    first, _, _ = pair
    shards = first.state_dir.parent.parent.parent / "shards"  # the module's: <root>/rt_home/jobs/<id>
    manager = KernelManager(kernel_name=kernel_name)
    manager.start_kernel(cwd=str(tmp_path))  # the module's jobs home travels in the environment
    client = manager.client()
    client.start_channels()
    shown: list[dict] = []
    printed: list[str] = []

    def keep(msg):
        if msg["msg_type"] == "stream" and msg["content"]["name"] == "stdout":
            printed.append(msg["content"]["text"])
        elif msg["msg_type"] in ("display_data", "update_display_data"):
            if msg["content"].get("transient", {}).get("display_id", "").startswith("resontech-nb-compare"):
                shown.append(msg)
        elif msg["msg_type"] == "error":
            raise AssertionError(msg["content"]["evalue"])

    try:
        client.wait_for_ready(timeout=60)
        code = (
            f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
            "import fl_models\n"
            "from resontech_nb import FederationConfig, TrainingConfig, capture, compare, submit\n"
            f"job = submit(capture(fl_models.DeltaNet, fl_models.slow_logging_train, fl_models.delta_evaluate), "
            f"{str(shards)!r}, TrainingConfig(img_size=8), FederationConfig(num_rounds=5, min_clients=2, "
            "wait_time_after_min_received=0, job_name='live'))\n"
            f"shown = compare([{first.id!r}, job], metric='score')\n"
            "print(job.id)"
        )
        reply = client.execute_interactive(code, timeout=180, output_hook=keep)
        assert reply["content"]["status"] == "ok", printed
        job_id = "".join(printed).split()[-1]
        (display,) = [m for m in shown if m["msg_type"] == "display_data"]
        display_id = display["content"]["transient"]["display_id"]
        # the redraws come from the kernel's daemon thread, between cells: read them off the iopub channel
        while not shown or _rounds_of(shown[-1]["content"]["data"]["text/plain"], job_id)[1] != "FINISHED":
            keep(client.get_iopub_msg(timeout=300))
        updates = [m for m in shown if m["msg_type"] == "update_display_data"]
        assert updates and {m["content"]["transient"]["display_id"] for m in updates} == {display_id}
        seen = [_rounds_of(m["content"]["data"]["text/plain"], job_id) for m in shown]
        rounds = [r for r, _ in seen]
        assert rounds == sorted(rounds) and len(set(rounds)) >= 2, seen  # the table followed the rounds
        assert seen[0][1] != "FINISHED" and seen[-1] == (5, "FINISHED"), seen
        assert "updating while jobs run" in display["content"]["data"]["text/html"]
        assert "updating while jobs run" not in shown[-1]["content"]["data"]["text/html"]
        assert all(_rounds_of(m["content"]["data"]["text/plain"], first.id) == (2, "FINISHED") for m in shown)
        # once every job has ended the thread is gone: nothing redraws the output any more
        printed.clear()
        client.execute_interactive(
            "shown._thread.join(30); print(shown._thread.is_alive(), shown.running)",
            timeout=60,
            output_hook=keep,
        )
        assert "".join(printed).split() == ["False", "False"]
        count = len(shown)
        while True:  # two poll intervals more: no update arrives
            try:
                keep(client.get_iopub_msg(timeout=4.5))
            except Exception:  # queue.Empty
                break
        assert len(shown) == count
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
