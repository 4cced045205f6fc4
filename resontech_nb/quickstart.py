"""The quickstart, from the installed package in any folder: ``resontech-nb quickstart [--out DIR] [--rounds N]``.

Executes the packaged ``quickstart.ipynb`` in a real kernel (nbclient) with DIR as its working folder: it makes
synthetic shards there, trains on the local target (NVFlare's simulator) and saves the trained weights. While it
runs, one line per finished round; at the end DIR holds the executed notebook, ``dashboard.png`` and the weights.
"""

from __future__ import annotations

import argparse
import base64
import logging
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from .job.handle import unwritable_reason

log = logging.getLogger(__name__)

PACKAGE_NOTEBOOKS = Path(__file__).resolve().parent / "notebooks"  # in the wheel (setup.py copies them there)
REPO_NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"  # in a checkout or an editable install
WEIGHTS_FILE = "quickstart_weights.pt"  # what the quickstart notebook's last cell saves
DEFAULT_OUT = "quickstart-output"


def notebooks_dir() -> Path:
    """The folder of the example notebooks: inside the installed package, else the checkout's ``notebooks/``."""
    return PACKAGE_NOTEBOOKS if (PACKAGE_NOTEBOOKS / "quickstart.ipynb").is_file() else REPO_NOTEBOOKS


REPO_NOTEBOOK = notebooks_dir() / "quickstart.ipynb"


def dashboard_outputs(nb: Any) -> list[dict]:
    """The dashboard display outputs of an executed notebook, with the records behind each picture."""
    found = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            meta = output.get("metadata", {}).get("resontech_nb")
            if meta and "image/png" in output.get("data", {}):
                found.append({"png": base64.b64decode(output["data"]["image/png"]), "meta": meta})
    return found


def _progress_client(nb: Any, timeout: int, out: Path, on_records: Any) -> Any:
    """An nbclient that also hands every dashboard update (its records) to ``on_records`` as it arrives."""
    from nbclient import NotebookClient

    class ProgressClient(NotebookClient):
        def process_message(self, msg: dict, cell: Any, cell_index: int) -> Any:
            if msg.get("msg_type") in ("display_data", "update_display_data"):
                meta = (msg.get("content", {}).get("metadata") or {}).get("resontech_nb")
                if meta:
                    on_records(meta)
            return super().process_message(msg, cell, cell_index)

    return ProgressClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(out)}})


def run_notebook(
    notebook: Path, out: Path, timeout: int = 900, rounds: int | None = None, progress: bool = False
) -> Path:
    """Execute ``notebook`` with its working directory in ``out``; return the executed copy.

    ``rounds`` replaces the ``--rounds`` of its ``%fl_submit``; ``progress`` prints a line per finished round.
    """
    import nbformat

    from .dashboard.text import ProgressLines

    out.mkdir(parents=True, exist_ok=True)
    nb = nbformat.read(notebook, as_version=4)
    if rounds is not None:
        for cell in nb.cells:
            if cell.cell_type == "code" and "%fl_submit" in cell.source:
                cell.source = re.sub(r"--rounds \d+", f"--rounds {rounds}", cell.source)
    lines: list[ProgressLines] = []

    def on_records(meta: dict) -> None:
        if not progress:
            return
        if not lines:
            lines.append(ProgressLines(meta.get("clients") or (), int(meta.get("num_rounds") or 0)))
        for line in lines[0].new_lines(meta):
            print(line, flush=True)

    client = _progress_client(nb, timeout, out, on_records)
    try:
        client.execute()
    finally:
        executed = out / notebook.name
        nbformat.write(nb, executed)
    return executed


def writable_folder(path: Path) -> Path:
    """``path`` made and probed; a ``SystemExit`` naming the fix when this process cannot write there."""
    reason = unwritable_reason(path)
    if reason:
        raise SystemExit(f"error: cannot write to {path} ({reason}): choose a folder you can write with --out DIR")
    return path


def run_quickstart(out: str | Path = DEFAULT_OUT, rounds: int | None = None) -> int:
    """What ``resontech-nb quickstart`` does; returns the exit status."""
    if rounds is not None and rounds < 1:
        raise SystemExit(f"error: --rounds must be 1 or more, got {rounds}")
    out = writable_folder(Path(out).expanduser().resolve())
    if (out / "data").exists():
        shutil.rmtree(out / "data")  # fresh shards each run
    notebook = notebooks_dir() / "quickstart.ipynb"
    started = time.monotonic()
    print(f"running the quickstart in {out} on the local target (NVFlare's simulator)...", flush=True)
    executed = run_notebook(notebook, out, rounds=rounds, progress=True)
    import nbformat

    pictures = dashboard_outputs(nbformat.read(executed, as_version=4))
    if not pictures:
        print(f"error: the notebook ran but shows no dashboard picture: see {executed}", file=sys.stderr)
        return 1
    (out / "dashboard.png").write_bytes(pictures[-1]["png"])
    meta = pictures[-1]["meta"]
    print(f"done in {time.monotonic() - started:.0f} s: {len(meta.get('rounds', []))} rounds, {meta.get('status')}")
    print(f"executed notebook: {executed}")
    print(f"dashboard picture: {out / 'dashboard.png'}")
    weights = out / WEIGHTS_FILE
    if weights.is_file():
        print(f"trained weights:   {weights}  (torch.load it into the notebook's TinyCNN)")
    return 0 if meta.get("status") == "FINISHED" else 1


def copy_notebooks(folder: str | Path) -> list[Path]:
    """``resontech-nb notebooks DIR``: the example notebooks, copied out of the package (existing files kept)."""
    target = writable_folder(Path(folder).expanduser().resolve())
    copied = []
    for notebook in sorted(notebooks_dir().glob("*.ipynb")):
        dest = target / notebook.name
        if dest.exists():
            print(f"kept {dest} (it exists; remove it to get the packaged one)")
            continue
        shutil.copy2(notebook, dest)
        copied.append(dest)
        print(f"wrote {dest}")
    return copied


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=DEFAULT_OUT, help="folder for the executed notebook, picture and weights")
    parser.add_argument("--rounds", type=int, default=None, help="federated rounds (default: the notebook's 4)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    return run_quickstart(args.out, args.rounds)


if __name__ == "__main__":
    sys.exit(main())
