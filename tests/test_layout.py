"""The package's shape: every module imports on its own, and importing the package stays light."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import resontech_nb

# Modules that are scripts run inside a job (they import their siblings top-level) or need a running kernel.
NOT_ALONE = ("resontech_nb.jobcode.",)

MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(resontech_nb.__path__, prefix="resontech_nb.")
    if not m.name.startswith(NOT_ALONE)
)


IMPORT_EACH = """
import importlib, sys, traceback
failed = []
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except Exception:
        failed.append(name + ": " + traceback.format_exc(limit=2).strip().splitlines()[-1])
print("\\n".join(failed))
"""


def test_every_module_imports():
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_EACH, *MODULES], capture_output=True, text=True, timeout=300, check=True
    )
    assert done.stdout.strip() == "", done.stdout
    assert len(MODULES) > 60


def test_importing_the_package_loads_neither_torch_nor_nvflare_nor_ipywidgets():
    code = "import sys, resontech_nb; print(sorted({'torch', 'nvflare', 'ipywidgets'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"


def test_every_lazy_name_resolves():
    for name in resontech_nb._LAZY:
        assert getattr(resontech_nb, name) is not None
        assert name in dir(resontech_nb)
    assert importlib.import_module("resontech_nb").__all__
