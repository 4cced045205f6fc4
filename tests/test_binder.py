"""binder/ as repo2docker reads it: its files are ones repo2docker knows, runtime.txt names a Python the package
supports, and its install steps (requirements.txt where present, then postBuild, run in a copy of the repository)
leave a fresh venv where ``import resontech_nb`` and ``resontech-nb --version`` work, with an importable torch left
alone. The fresh venv reuses this venv's packages through a ``.pth`` line (nothing big downloaded). PyTorch's CPU
index may be unreachable (it is on the test machines): the torch step then says so in one line and goes on."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import resontech_nb

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
BINDER = REPO / "binder"
# repo2docker's configuration files (https://repo2docker.readthedocs.io/en/latest/configuration/)
REPO2DOCKER = {"runtime.txt", "requirements.txt", "postBuild", "start", "apt.txt", "environment.yml", "README.md"}


def _env(venv: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PIP_REQUIRE_VIRTUALENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def _venv(root: Path, reuse_this_venv: bool) -> Path:
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    if reuse_this_venv:  # torch, nvflare, pip ... importable there; its own site-packages come first
        site = next((venv / "lib").glob("python3*/site-packages"))
        (site / "_reuse_parent_venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    return venv


def test_binder_follows_repo2dockers_conventions():
    names = {p.name for p in BINDER.iterdir()}
    assert names <= REPO2DOCKER, f"binder/ has files repo2docker does not read: {names - REPO2DOCKER}"
    assert "environment.yml" not in names, "an environment.yml makes repo2docker use conda and ignore runtime.txt"
    runtime = (BINDER / "runtime.txt").read_text(encoding="utf-8").strip()
    match = re.fullmatch(r"python-3\.(\d+)", runtime)
    assert match, f"runtime.txt must be python-3.X, is {runtime!r}"
    requires = re.search(r'^requires-python = "(.*)"$', (REPO / "pyproject.toml").read_text(encoding="utf-8"), re.M)
    assert requires and requires.group(1) == ">=3.10" and 10 <= int(match.group(1)) <= 13
    post = BINDER / "postBuild"
    assert os.access(post, os.X_OK) and post.read_text(encoding="utf-8").startswith("#!/usr/bin/env bash")
    assert "git+" not in post.read_text(encoding="utf-8")  # the repository itself, not a URL


def test_binders_install_steps_in_a_fresh_venv(tmp_path):
    checkout = tmp_path / "checkout"  # what Binder clones: the tracked and new (not ignored) files
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    for name in filter(None, listed):
        if (REPO / name).is_file():
            (checkout / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, checkout / name)
    venv = _venv(tmp_path, reuse_this_venv=True)
    env = _env(venv)
    python = str(venv / "bin" / "python")
    torch_before = subprocess.run(
        [python, "-c", "import torch; print(torch.__version__, torch.__file__)"],
        env=env,
        capture_output=True,
        text=True,
    ).stdout
    assert torch_before, "the fresh venv does not see this venv's torch"
    steps = []
    if (checkout / "binder" / "requirements.txt").exists():
        steps.append([python, "-m", "pip", "install", "-r", "binder/requirements.txt"])
    steps.append(["bash", "binder/postBuild"])  # repo2docker runs it from the repository's folder
    for step in steps:
        done = subprocess.run(step, cwd=checkout, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"{step}: {done.stdout[-2000:]}\n{done.stderr[-3000:]}"

    where = tmp_path / "elsewhere"
    where.mkdir()
    shown = subprocess.run(
        [
            python,
            "-c",
            "import resontech_nb, torch; print(resontech_nb.__file__); print(torch.__version__, torch.__file__)",
        ],
        cwd=where,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert shown[0].startswith(str(venv)), f"resontech_nb came from {shown[0]}, not the venv Binder's steps installed"
    assert shown[1] == torch_before.strip(), "the steps replaced the torch that was importable"
    version = subprocess.run(
        [str(venv / "bin" / "resontech-nb"), "--version"],
        cwd=where,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert version.startswith(f"resontech-nb {resontech_nb.__version__} ")


def test_the_torch_step_falls_back_in_one_line_where_the_cpu_index_is_unreachable(tmp_path):
    venv = _venv(tmp_path, reuse_this_venv=False)  # no torch importable
    with socket.socket() as s:  # a port nobody listens on: the index "cannot be reached"
        s.bind(("127.0.0.1", 0))
        index = f"http://127.0.0.1:{s.getsockname()[1]}/whl/cpu"
    env = _env(venv) | {"RESONTECH_TORCH_CPU_INDEX": index}
    done = subprocess.run(
        ["bash", "scripts/cpu_torch.sh", str(venv / "bin" / "python")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    if shutil.which("nvidia-smi"):  # a GPU machine: the package index's CUDA build, said in one line
        assert done.stderr.strip().startswith("note: an NVIDIA GPU is present")
    else:
        assert done.stderr.splitlines() == [
            f"note: {index} cannot be reached; torch comes from the default package index"
        ]
    assert done.stdout == ""
    no_torch = subprocess.run([str(venv / "bin" / "python"), "-c", "import torch"], env=env, capture_output=True)
    assert no_torch.returncode != 0  # nothing was installed by the fallback itself
