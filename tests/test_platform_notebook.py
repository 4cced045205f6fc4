"""``notebooks/remote_platform.ipynb`` end to end in a real kernel, against ``resontech-nb serve --embedded-s3``.

The notebook's own "start the platform here" cell runs the CLI (platform on waitress, SeaweedFS
under the notebook's folder); uploads, submit, the live dashboard, the weights and the re-submit
then go through it exactly as a user's would.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from resontech_nb.targets.processes import processes_using

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "remote_platform.ipynb"


def test_the_remote_platform_notebook_runs_end_to_end(tmp_path, kernel_name, monkeypatch):
    for name in list(os.environ):
        if name.startswith(("RESONTECH_", "AWS_")) and name not in ("RESONTECH_NB_HOME", "RESONTECH_NB_CONFIG"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("RESONTECH_NB_HOME", str(tmp_path / "home"))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    settings = nb.cells[3]
    assert "START_PLATFORM_HERE = False" in settings.source
    settings.source = settings.source.replace("START_PLATFORM_HERE = False", "START_PLATFORM_HERE = True")
    client = NotebookClient(nb, kernel_name=kernel_name, timeout=900, resources={"metadata": {"path": str(tmp_path)}})
    try:
        client.execute()
    finally:
        leftovers = processes_using(tmp_path / "platform-data")
        for proc in leftovers:
            proc.kill()
    assert leftovers == []  # the last cell stopped the platform and its S3 server

    def text(index: int) -> str:
        return "".join(o.get("text", "") for o in nb.cells[index].outputs if o.output_type == "stream")

    assert re.search(r"platform at http://127\.0\.0\.1:\d+$", text(3).strip())  # no S3 keys taken
    dashboards = [
        o.metadata["resontech_nb"]
        for o in nb.cells[12].outputs
        if o.output_type == "display_data" and "resontech_nb" in o.get("metadata", {})
    ]
    assert dashboards and dashboards[-1]["status"] == "FINISHED"
    assert [r["round"] for r in dashboards[-1]["rounds"]] == [0, 1, 2]
    first = int(re.search(r"uploaded ([\d,]+) bytes", text(13)).group(1).replace(",", ""))
    again = int(re.search(r"second submit uploaded (\d+) bytes", text(17)).group(1))
    assert first > 0 and again < first / 10  # the shards were not sent again
    params = nb.cells[15].outputs[0]["data"]["text/plain"]
    assert int(params) > 1000
    # nothing secret in the saved notebook, and the store kept its data under the notebook's folder
    saved = nbformat.writes(nb)
    assert "AWS_SECRET_ACCESS_KEY=" not in saved and "secret_key" not in saved
    assert (tmp_path / "platform-data" / "s3" / "weed").is_dir()
