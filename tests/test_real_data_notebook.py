"""notebooks/real_data.ipynb runs headless in a real kernel on scikit-learn's bundled digits (two sites, one round of
FedAvg: each job costs NVFlare's start-up far more than its training, so the test runs three jobs, not the
notebook's nine): the data summaries, the splits, the federated and centralized jobs on the local target, the
comparison figure and the held-out accuracy table."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from resontech_nb.quickstart import run_notebook

pytestmark = pytest.mark.slow

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "real_data.ipynb"
SMALL = "\nROUNDS = 1\nEPOCHS = 1\nSITES = 2\nALGORITHMS = ['fedavg']\n"


def test_the_real_data_notebook_runs_and_reports_held_out_accuracy(tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    parameters = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(parameters) == 1
    parameters[0].source += SMALL
    small = tmp_path / "real_data.ipynb"
    nbformat.write(nb, small)
    executed = nbformat.read(run_notebook(small, tmp_path / "run"), as_version=4)

    outputs = [o for cell in executed.cells for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    pictures = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(pictures) >= 3  # two data summaries' heatmaps and the comparison figure
    texts = [o["data"]["text/plain"] for o in outputs if "text/plain" in o.get("data", {})]
    assert any("close to IID" in t for t in texts) and any("label skew" in t for t in texts)
    table = next(o["data"]["text/markdown"] for o in outputs if "text/markdown" in o.get("data", {}))
    rows = re.findall(r"\| ([^|]+) \| ([^|]+) \| ([0-9.]+) \|", table)
    assert {(s, a) for s, a, _ in rows} == {
        ("centralized", "-"),
        ("IID", "fedavg"),
        ("Dirichlet(0.3)", "fedavg"),
    }
    accuracy = {(s, a): float(v) for s, a, v in rows}
    assert accuracy[("centralized", "-")] > 0.5 and accuracy[("IID", "fedavg")] > 0.5  # chance is 0.1
