"""Outside widgets: aligned progress lines with columns fixed before the first round; bad inputs name the fix."""

from __future__ import annotations

import ast
import glob
import os
import re
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

import resontech_nb
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


def _python_guard() -> ast.If:
    """The ``if sys.version_info < ...: raise ImportError(...)`` at the top of resontech_nb/__init__.py."""
    tree = ast.parse(Path(resontech_nb.__file__).read_text(encoding="utf-8"))
    guards = [n for n in tree.body if isinstance(n, ast.If) and "sys.version_info" in ast.unparse(n.test)]
    assert len(guards) == 1, "resontech_nb/__init__.py has no Python version guard at its top level"
    return guards[0]


@pytest.mark.parametrize("version", [(3, 9, 18), (3, 8, 0), (2, 7, 18)])
def test_a_python_older_than_3_10_gets_one_line_naming_the_fix(version):
    fake_sys = SimpleNamespace(version_info=version, version=".".join(map(str, version)) + " (main) [GCC 12]")
    code = compile(ast.Module(body=[_python_guard()], type_ignores=[]), "resontech_nb/__init__.py", "exec")
    with pytest.raises(ImportError) as raised:
        exec(code, {"sys": fake_sys})
    assert str(raised.value) == (
        f"resontech_nb needs Python 3.10 or newer, this is {'.'.join(map(str, version))}: use Python 3.10+"
    )


@pytest.mark.parametrize("version", [(3, 10, 0), (3, 13, 1)])
def test_the_python_guard_lets_3_10_and_newer_through(version):
    code = compile(ast.Module(body=[_python_guard()], type_ignores=[]), "resontech_nb/__init__.py", "exec")
    exec(code, {"sys": SimpleNamespace(version_info=version, version="x")})


def test_the_guard_and_requires_python_name_the_same_floor():
    pyproject = (Path(resontech_nb.__file__).parents[1] / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(r'^requires-python = ">=3\.10"$', pyproject, re.M)
    assert ast.unparse(_python_guard().test) == "sys.version_info < (3, 10)"


def test_the_real_guard_on_an_installed_older_python():
    """Where pyenv has a 3.9 (the test machines do), ``import resontech_nb`` from this tree on it."""
    old = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.9.*/bin/python")))
    if not old:
        pytest.skip("no Python 3.9 under ~/.pyenv to try the import on (the guard's logic is tested above)")
    done = subprocess.run(
        [old[-1], "-c", "import resontech_nb"],
        env={**os.environ, "PYTHONPATH": str(Path(resontech_nb.__file__).parents[1])},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert re.fullmatch(
        r"ImportError: resontech_nb needs Python 3\.10 or newer, this is 3\.9\.\d+: use Python 3\.10\+", last
    )
