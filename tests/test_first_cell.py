"""The notebooks' first cell (the one that installs resontech_nb where it is missing), run in a real kernel of a fresh
venv: where the install fails it ends in one line naming the fix (no traceback wall); where the package is already
importable it installs nothing and leaves torch alone. The venv reuses this venv's packages (torch, ipykernel, pip)
through a ``.pth`` line; resontech_nb is not among them (the editable install's own ``.pth`` is not read there).
Also ``%load_ext resontech_nb`` in such a venv with an ipywidgets older than 7.6: one line naming the fix."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import nbformat
import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]

RUN = """
import sys, nbformat
from nbclient import NotebookClient
nb = nbformat.read(sys.argv[1], as_version=4)
NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=True).execute()
nbformat.write(nb, sys.argv[1])
"""
PROBE = "import importlib.util, torch; print(importlib.util.find_spec('resontech_nb') is not None, torch.__file__)"


def _first_cell(source: str) -> str:
    nb = nbformat.read(REPO / "notebooks" / "quickstart.ipynb", as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "code")
    code, n = re.subn(r"^SOURCE = .*$", f"SOURCE = {source!r}", cell.source, flags=re.M)
    assert n == 1, "the first code cell has no `SOURCE = ...` line"
    return code


def _run_cells(venv: Path, env: dict[str, str], folder: Path, cells: list[str]) -> list[dict]:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    path = folder / "first_cell.ipynb"
    nbformat.write(nb, path)
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-c", RUN, str(path)], cwd=folder, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return [o for c in nbformat.read(path, as_version=4).cells for o in c.outputs]


def _site_packages(venv: Path) -> list[str]:
    return sorted(p.name for p in next((venv / "lib").glob("python3*/site-packages")).iterdir())


@pytest.fixture
def fresh(tmp_path) -> tuple[Path, dict[str, str]]:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "_reuse_parent_venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "JUPYTER_PATH")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return venv, env


def _probe(venv: Path, env: dict[str, str]) -> list[str]:
    return subprocess.run(
        [str(venv / "bin" / "python"), "-c", PROBE], cwd=venv, env=env, capture_output=True, text=True, check=True
    ).stdout.split()


def test_a_failed_install_is_one_line_naming_the_fix(fresh, tmp_path):
    venv, env = fresh
    assert _probe(venv, env)[0] == "False", "resontech_nb is importable in the fresh venv: the test would not install"
    before = _site_packages(venv), _probe(venv, env)
    missing = str(tmp_path / "uploads" / "resontech_nb-0.1.0-py3-none-any.whl")
    outputs = _run_cells(venv, env, tmp_path, [_first_cell(missing), "print('next cell ran')"])
    errors = [o for o in outputs if o["output_type"] == "error"]
    assert len(errors) == 1, json.dumps(outputs)[:3000]
    shown = errors[0]["traceback"]
    assert len(shown) == 1, "a traceback wall instead of one line:\n" + "\n".join(shown)
    assert shown[0].startswith(f"InstallFailed: pip could not install {missing} (")
    assert shown[0].endswith("set SOURCE to a git URL or the path of an uploaded wheel and run this cell again")
    assert "\n" not in shown[0]
    assert (_site_packages(venv), _probe(venv, env)) == before  # nothing installed, torch as it was


def test_an_importable_package_is_left_as_it_is(fresh, tmp_path):
    venv, env = fresh
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "_the_checkout.pth").write_text(str(REPO) + "\n", encoding="utf-8")  # resontech_nb importable
    before = _site_packages(venv), _probe(venv, env)
    assert before[1][0] == "True"
    # a SOURCE that cannot install: any install attempt would fail the cell
    outputs = _run_cells(venv, env, tmp_path, [_first_cell(str(tmp_path / "missing.whl")), "import resontech_nb"])
    assert outputs == [], json.dumps(outputs)[:3000]
    assert (_site_packages(venv), _probe(venv, env)) == before


def test_load_ext_with_ipywidgets_older_than_7_6_is_one_line_naming_the_fix(fresh, tmp_path):
    venv, env = fresh  # ipywidgets 7.5.1 (and the package it imports) in front of this venv's 8.x
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q", "--no-deps"]
    subprocess.run([*pip, "ipywidgets==7.5.1", "ipython_genutils"], env=env, capture_output=True, check=True)
    env = env | {"PYTHONPATH": str(REPO)}
    shell = [str(venv / "bin" / "python"), "-m", "IPython", "--colors=nocolor", "-c"]
    seen = subprocess.run(
        [*shell, "import ipywidgets; print(ipywidgets.__version__)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert seen.stdout.strip() == "7.5.1", seen.stderr[-2000:]
    done = subprocess.run([*shell, "%load_ext resontech_nb"], cwd=tmp_path, env=env, capture_output=True, text=True)
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert lines == [
        "UsageError: resontech_nb needs ipywidgets 7.6 or newer, this kernel has 7.5.1: "
        "run  %pip install 'ipywidgets>=7.6'  and restart the kernel"
    ]
