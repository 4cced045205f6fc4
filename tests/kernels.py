"""A Jupyter kernelspec that runs this interpreter, so notebook kernels see the packages under test."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def write_kernelspec(jupyter_data: Path, name: str) -> str:
    """Write ``<jupyter_data>/kernels/<name>/kernel.json``; put ``jupyter_data`` on JUPYTER_PATH to use it."""
    spec_dir = jupyter_data / "kernels" / name
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": f"resontech_nb tests ({name})",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    return name
