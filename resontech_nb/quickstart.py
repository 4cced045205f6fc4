"""Run the quickstart notebook headless: ``python -m resontech_nb.quickstart --out DIR``.

Executes ``notebooks/quickstart.ipynb`` in a real kernel (nbclient) inside DIR, saves the
executed notebook there and extracts the dashboard's static picture to ``DIR/dashboard.png``.
"""

from __future__ import annotations

import argparse
import base64
import logging
import shutil
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)

REPO_NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"


def dashboard_outputs(nb) -> list[dict]:
    """The dashboard display outputs of an executed notebook, with the records behind each picture."""
    found = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            meta = output.get("metadata", {}).get("resontech_nb")
            if meta and "image/png" in output.get("data", {}):
                found.append({"png": base64.b64decode(output["data"]["image/png"]), "meta": meta})
    return found


def run_notebook(notebook: Path, out: Path, timeout: int = 900) -> Path:
    """Execute ``notebook`` with its working directory in ``out``; return the executed copy."""
    import nbformat
    from nbclient import NotebookClient

    out.mkdir(parents=True, exist_ok=True)
    nb = nbformat.read(notebook, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(out)}})
    try:
        client.execute()
    finally:
        executed = out / notebook.name
        nbformat.write(nb, executed)
    return executed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="quickstart-output", help="folder for the executed notebook and picture")
    parser.add_argument("--notebook", default=str(REPO_NOTEBOOK), help="notebook to run")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = Path(args.out).resolve()
    if (out / "data").exists():
        shutil.rmtree(out / "data")
    started = time.monotonic()
    print(f"running {args.notebook} on the local target (NVFlare simulator)...", flush=True)
    executed = run_notebook(Path(args.notebook), out)
    import nbformat

    pictures = dashboard_outputs(nbformat.read(executed, as_version=4))
    if not pictures:
        print(f"the notebook ran but shows no dashboard picture: see {executed}", file=sys.stderr)
        return 1
    (out / "dashboard.png").write_bytes(pictures[-1]["png"])
    rounds = pictures[-1]["meta"].get("rounds", [])
    status = pictures[-1]["meta"].get("status")
    print(f"done in {time.monotonic() - started:.0f} s: {len(rounds)} rounds, status {status}")
    for record in rounds:
        print(f"  round {record['round'] + 1}: global loss {record['global_loss']:.4f}")
    print(f"executed notebook: {executed}")
    print(f"dashboard picture: {out / 'dashboard.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
