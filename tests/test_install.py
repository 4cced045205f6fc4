"""The package as a new user gets it: a wheel built with ``python -m build``, installed into a fresh venv in a
temporary folder outside the checkout, used from there (the command, the quickstart, a notebook under ipywidgets
7.7.1 and the newest 8.x). The fresh venvs reuse this venv's torch/nvflare through a ``.pth`` line, so nothing big is
downloaded; their own site-packages come first, so the wheel's resontech_nb (not the checkout) is what runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import nbformat
import pytest

import resontech_nb

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: int = 600) -> str:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> dict[str, Path]:
    """sdist and wheel, built once for the module (twine-checked)."""
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(REPO)], cwd=out)
    wheel, sdist = next(out.glob("*.whl")), next(out.glob("*.tar.gz"))
    _run([sys.executable, "-m", "twine", "check", "--strict", str(wheel), str(sdist)], cwd=out)
    return {"wheel": wheel, "sdist": sdist}


def _fresh_venv(root: Path, wheel: Path, *extra: str) -> tuple[Path, dict[str, str]]:
    """A venv under ``root`` with the wheel (and ``extra`` requirements) installed; this venv's packages behind."""
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "_reuse_parent_venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    python = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-warn-script-location"]
    _run([*pip, "--force-reinstall", "--no-deps", str(wheel)], cwd=root)
    _run([*pip, str(wheel), *extra], cwd=root)  # resolves the wheel's requirements against what is there
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", RESONTECH_NB_HOME=str(root / "home"))
    return venv, env


def test_the_wheel_carries_the_notebooks_license_and_one_version(dist):
    names = zipfile.ZipFile(dist["wheel"]).namelist()
    assert {"resontech_nb/notebooks/quickstart.ipynb", "resontech_nb/notebooks/remote_platform.ipynb"} <= set(names)
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert f"resontech_nb-{resontech_nb.__version__}-" in dist["wheel"].name


@pytest.fixture(scope="module")
def installed(dist, tmp_path_factory) -> tuple[Path, dict[str, str], Path]:
    root = tmp_path_factory.mktemp("newest-widgets")
    venv, env = _fresh_venv(root, dist["wheel"])
    return venv, env, root


def test_the_command_shows_the_version_and_every_command(installed):
    venv, env, root = installed
    version = _run([str(venv / "bin" / "resontech-nb"), "--version"], cwd=root, env=env)
    assert version.startswith(f"resontech-nb {resontech_nb.__version__} ")
    helptext = _run([str(venv / "bin" / "resontech-nb"), "--help"], cwd=root, env=env)
    for command in ("quickstart", "notebooks", "serve", "add-user", "s3-env"):
        assert f"\n    {command} " in helptext
    copied = root / "copied"
    _run([str(venv / "bin" / "resontech-nb"), "notebooks", str(copied)], cwd=root, env=env)
    examples = sorted(p.name for p in (Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
    assert {"quickstart.ipynb", "custom_training.ipynb", "remote_platform.ipynb"} <= set(examples)
    assert sorted(p.name for p in copied.glob("*.ipynb")) == examples  # every example notebook


def test_quickstart_runs_from_the_installed_package_in_any_folder(installed):
    venv, env, root = installed
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    out = _run(
        [str(venv / "bin" / "resontech-nb"), "quickstart", "--rounds", "2", "--out", "qs"], cwd=elsewhere, env=env
    )
    results = elsewhere / "qs"
    assert (results / "dashboard.png").read_bytes().startswith(b"\x89PNG")
    assert (results / "quickstart.ipynb").is_file()
    assert str(results / "quickstart_weights.pt") in out
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("round "))
    rows = [line for line in lines[header + 1 :] if line.startswith(("1 of 2", "2 of 2"))]
    assert [r[:6] for r in rows] == ["1 of 2", "2 of 2"]  # one line per round
    assert len({len(lines[header]), *(len(r) for r in rows)}) == 1  # aligned under the header
    check = (
        "import torch, sys; sd = torch.load(sys.argv[1]); import resontech_nb; print(len(sd), resontech_nb.__file__)"
    )
    printed = _run(
        [str(venv / "bin" / "python"), "-c", check, str(results / "quickstart_weights.pt")], cwd=root, env=env
    )
    assert int(printed.split()[0]) > 0 and str(venv) in printed.split()[1]


NOTEBOOK = [
    "import ipywidgets, resontech_nb; print('widgets', ipywidgets.__version__, resontech_nb.__file__)",
    "%load_ext resontech_nb",
    "from resontech_nb import make_synthetic_shards\n"
    "shards = make_synthetic_shards('data/shards', n_clients=2, num_classes=3, img_size=16,\n"
    "                               samples_per_client=[24, 24], seed=0)",
    "%%fl_model --input-shape 1,3,16,16\nimport torch.nn as nn\n\nclass Tiny(nn.Module):\n"
    "    def __init__(self, num_classes: int = 3):\n        super().__init__()\n"
    "        self.net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, num_classes))\n\n"
    "    def forward(self, x):\n        return self.net(x)",
    "%fl_submit --shards data/shards --rounds 1 --min-clients 2 --epochs 1 --batch-size 8 --img-size 16 --wait",
]

RUN_NOTEBOOK = """
import sys, nbformat
from nbclient import NotebookClient
nb = nbformat.read(sys.argv[1], as_version=4)
try:
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": sys.argv[2]}}).execute()
finally:
    nbformat.write(nb, sys.argv[1])
"""


def _headless_notebook(venv: Path, env: dict[str, str], root: Path) -> tuple[str, dict]:
    work = root / "nb"
    work.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in NOTEBOOK]
    path = work / "headless.ipynb"
    nbformat.write(nb, path)
    _run([str(venv / "bin" / "python"), "-c", RUN_NOTEBOOK, str(path), str(work)], cwd=work, env=env)
    executed = nbformat.read(path, as_version=4)
    first = "".join(o.get("text", "") for o in executed.cells[0].outputs)
    metas = [
        o["metadata"]["resontech_nb"]
        for cell in executed.cells
        for o in cell.get("outputs", [])
        if "resontech_nb" in o.get("metadata", {})
    ]
    assert metas, "no dashboard output in the executed notebook"
    return first, metas[-1]


@pytest.mark.parametrize("widgets", ["newest", "7.7.1"])
def test_a_headless_notebook_trains_with_each_widgets_version(dist, installed, tmp_path, widgets):
    if widgets == "newest":
        venv, env, _ = installed
    else:  # Colab's version: the wheel must install next to it without upgrading it
        venv, env = _fresh_venv(tmp_path, dist["wheel"], f"ipywidgets=={widgets}")
    first, meta = _headless_notebook(venv, env, tmp_path)
    shown = first.split()
    assert str(venv) in shown[2], f"the notebook imported resontech_nb from {shown[2]}, not the wheel"
    if widgets == "newest":
        assert int(shown[1].split(".")[0]) >= 8
    else:
        assert shown[1] == widgets
    assert meta["status"] == "FINISHED", json.dumps(meta)[:2000]
    assert len(meta["rounds"]) == 1
