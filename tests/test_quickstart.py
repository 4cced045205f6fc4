"""The quickstart notebook runs headless in a real kernel; its saved outputs carry the dashboard;
a new kernel reattaches to the job by id and sees the same rounds."""

from __future__ import annotations

import nbformat
import pytest

from resontech_nb.quickstart import REPO_NOTEBOOK, dashboard_outputs, run_notebook

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def executed_quickstart(tmp_path_factory):
    out = tmp_path_factory.mktemp("quickstart")
    executed = run_notebook(REPO_NOTEBOOK, out)
    return nbformat.read(executed, as_version=4)


def test_quickstart_saves_the_dashboard_picture_with_every_round_and_client(executed_quickstart):
    pictures = dashboard_outputs(executed_quickstart)
    assert pictures, "no dashboard picture in the saved notebook"
    final = pictures[-1]
    assert final["png"].startswith(b"\x89PNG\r\n\x1a\n")
    meta = final["meta"]
    assert meta["status"] == "FINISHED"
    assert [r["round"] for r in meta["rounds"]] == [0, 1, 2, 3]
    for record in meta["rounds"]:
        assert sorted(record["clients"]) == ["site-1", "site-2", "site-3"]
        assert all(c["status"] == "ok" and c["samples"] > 0 for c in record["clients"].values())
        assert record["global_loss"] is not None
    assert meta["rounds"][-1]["global_loss"] < meta["rounds"][0]["global_loss"]


def test_quickstart_loads_the_trained_weights_and_predicts(executed_quickstart):
    text = "".join(
        output.get("text", "")
        for cell in executed_quickstart.cells
        for output in cell.get("outputs", [])
        if output.get("output_type") == "stream"
    )
    assert "predicted" in text
    assert "round 4: global loss" in text


def test_a_new_kernel_reattaches_by_job_id_and_sees_the_same_rounds(executed_quickstart, tmp_path):
    original = dashboard_outputs(executed_quickstart)[-1]["meta"]
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("%load_ext resontech_nb"),
        nbformat.v4.new_code_cell(f"%fl_dashboard {original['job_id']}"),
    ]
    path = tmp_path / "reattach.ipynb"
    nbformat.write(nb, path)
    reattached = dashboard_outputs(nbformat.read(run_notebook(path, tmp_path), as_version=4))
    assert reattached, "%fl_dashboard showed no dashboard in the new kernel"
    meta = reattached[-1]["meta"]
    assert meta["job_id"] == original["job_id"] and meta["status"] == "FINISHED"
    assert meta["rounds"] == original["rounds"]
