"""Outside widgets: aligned progress lines with columns fixed before the first round; bad inputs name the fix."""

from __future__ import annotations

import os

import pytest

from resontech_nb.dashboard.snapshot import DashboardSnapshot
from resontech_nb.dashboard.text import ProgressLines
from resontech_nb.errors import ConfigError
from resontech_nb.notebook.widgets_support import check_ipywidgets
from resontech_nb.quickstart import writable_folder
from resontech_nb.records.rounds import ClientRound, RoundRecord


def _record(n: int, validation: dict[str, float]) -> RoundRecord:
    clients = {f"site-{i}": ClientRound(status="ok", loss=0.5 + i / 10, samples=10) for i in (1, 2)}
    return RoundRecord(n, 3, 1.0 / (n + 1), clients, 0.0, 1.5, {}, validation)


def test_a_round_with_more_metrics_than_round_one_stays_under_its_header():
    lines = ProgressLines(["site-1", "site-2"], 3)
    first = _record(0, {})  # round 1 without validation: the case that pushed values out of line
    later = _record(1, {"loss": 0.75, "accuracy": 0.5})
    out = lines.new_lines(DashboardSnapshot("RUNNING", 3, ("site-1", "site-2"), (first,)))
    out += lines.new_lines(DashboardSnapshot("FINISHED", 3, ("site-1", "site-2"), (first, later)))
    header, row1, row2 = out[0], out[1], out[2]
    assert header.split()[:6] == ["round", "global", "loss", "val", "loss", "val"]
    assert len(header) == len(row1) == len(row2)
    at = header.index("val loss") + len("val loss")
    assert row2[:at].endswith("0.7500") and row1[:at].endswith("\u2014")
    assert out[3].startswith("FINISHED")  # the final summary
    assert lines.new_lines(DashboardSnapshot("FINISHED", 3, ("site-1", "site-2"), (first, later)))[:-1] == []


def test_ipywidgets_older_than_7_6_is_refused_with_the_fix():
    with pytest.raises(ConfigError, match=r"%pip install 'ipywidgets>=7.6'"):
        check_ipywidgets("7.5.1")
    assert check_ipywidgets("7.7.1") == (7, 7)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes everywhere")
def test_quickstart_out_on_an_unwritable_folder_names_the_fix(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(SystemExit, match="choose a folder you can write with --out DIR"):
        writable_folder(locked / "out")


def test_quickstart_out_on_a_file_names_the_fix(tmp_path):
    file = tmp_path / "a-file"
    file.write_text("x")
    with pytest.raises(SystemExit, match=r"it is a file\): choose a folder you can write with --out DIR"):
        writable_folder(file)
