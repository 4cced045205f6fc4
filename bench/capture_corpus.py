"""Capture + preflight latency on the capture corpus (tests/corpus/), and the clean-process preflight alone.

For every corpus model: the cells run in an in-process IPython shell, then ``capture`` (writing model_def.py
and the clean-process preflight, which also builds the notebook's own instance to compare) is timed, and
the clean-process check alone (fork of the warm process, import model_def.py, build, state_dict, forward).
Also: the first check of a session (the warm process starting and importing torch) and a cold one-shot
``python -I fresh_import.py`` (what machines without fork pay every time).

Prints a table and writes bench/results/capture_corpus.json.   .venv/bin/python bench/capture_corpus.py
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from IPython.core.interactiveshell import InteractiveShell  # noqa: E402
from traitlets.config import Config  # noqa: E402

from resontech_nb.capture import EVAL_FN_NAME, TRAIN_FN_NAME, capture, clean_process  # noqa: E402

CORPUS = ROOT / "tests" / "corpus"


def cells_of(path: Path) -> list[tuple[str, str]]:
    parts = re.split(r"^# %%(.*)$", path.read_text(encoding="utf-8"), flags=re.M)
    return [(marker.strip(), body.strip() + "\n") for marker, body in zip(parts[1::2], parts[2::2], strict=True)]


def input_shape(marker: str) -> tuple[int, ...] | None:
    found = re.search(r"--input-shape\s+(\S+)", marker)
    return tuple(int(d) for d in found.group(1).split(",")) if found else None


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def one_model(shell: InteractiveShell, path: Path, repeat: int) -> dict:
    shell.reset(new_session=True)
    marker, model_cell = "", ""
    for marker_, body in cells_of(path):
        if marker_.startswith("fl_model"):
            marker, model_cell = marker_, body
        result = shell.run_cell(body, store_history=True)
        assert result.success, (path.name, result.error_in_exec)
    ns = shell.user_ns
    defined = re.findall(r"^class (\w+)", model_cell, flags=re.M)
    model_cls = ns[defined[-1]]
    shape = input_shape(marker)
    functions = (
        ns.get(TRAIN_FN_NAME) if f"def {TRAIN_FN_NAME}" in model_cell else None,
        ns.get(EVAL_FN_NAME) if f"def {EVAL_FN_NAME}" in model_cell else None,
    )
    captures, checks = [], []
    for _ in range(repeat):
        started = time.perf_counter()
        spec = capture(model_cls, *functions, namespace=ns, input_shape=shape, cell_source=model_cell)
        captures.append(time.perf_counter() - started)
        names = [TRAIN_FN_NAME] + ([EVAL_FN_NAME] if spec.has_eval_fn else [])
        started = time.perf_counter()
        clean_process.inspect_source(spec.source, spec.class_name, names, shape)
        checks.append(time.perf_counter() - started)
    return {
        "class": spec.class_name,
        "parameters": spec.param_count,
        "forward_pass": shape is not None,
        "capture_with_preflight_ms": ms(statistics.median(captures)),
        "clean_process_preflight_ms": ms(statistics.median(checks)),
        "clean_process_preflight_max_ms": ms(max(checks)),
    }


def cold_one_shot() -> float:
    """One ``python -I fresh_import.py request.json`` on a tiny model: torch imported from scratch."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "model_def.py").write_text("import torch.nn as nn\n\n\nclass Net(nn.Module):\n    pass\n")
        request = {
            "custom_dir": tmp,
            "class_name": "Net",
            "functions": [],
            "input_shape": None,
            "result": str(folder / "result.json"),
        }
        (folder / "request.json").write_text(json.dumps(request))
        started = time.perf_counter()
        subprocess.run([sys.executable, "-I", str(clean_process.SCRIPT), str(folder / "request.json")], check=True)
        return time.perf_counter() - started


TINY = "import torch.nn as nn\n\n\nclass Net(nn.Module):\n    pass\n"


def first_check_of_a_session() -> float:
    """A check with no warm process: it starts one and waits for it to import torch."""
    clean_process.shutdown()
    started = time.perf_counter()
    clean_process.inspect_source(TINY, "Net", [], None)
    return time.perf_counter() - started


AFTER_LOAD_EXT = f"""
import sys, time
sys.path.insert(0, {str(ROOT)!r})
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config
from resontech_nb.capture import clean_process
config = Config()
config.HistoryManager.hist_file = ":memory:"
shell = InteractiveShell.instance(config=config)
shell.run_line_magic("load_ext", "resontech_nb")
assert shell.run_cell("import torch\\nimport torch.nn as nn\\n").success
started = time.perf_counter()
clean_process.inspect_source({TINY!r}, "Net", [], None)
print(time.perf_counter() - started)
"""


def first_check_after_load_ext() -> float:
    """The user's path in a fresh kernel: ``%load_ext resontech_nb`` (which starts the warm process), a cell
    that imports torch, then the first check, timed alone."""
    done = subprocess.run([sys.executable, "-c", AFTER_LOAD_EXT], capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def main(repeat: int = 3) -> None:
    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    shell = InteractiveShell.instance(config=config)
    first_check = first_check_of_a_session()
    after_load_ext = statistics.median(first_check_after_load_ext() for _ in range(3))
    models = {path.stem: one_model(shell, path, repeat) for path in sorted(CORPUS.glob("*.py"))}
    cold = statistics.median(cold_one_shot() for _ in range(3))
    checks = [m["clean_process_preflight_ms"] for m in models.values()]
    captures = [m["capture_with_preflight_ms"] for m in models.values()]
    results = {
        "machine": "2-core development machine shared with other jobs (timings are noisy)",
        "repeat_per_model": repeat,
        "first_check_of_a_session_ms": ms(first_check),
        "first_check_after_load_ext_and_an_import_cell_ms": ms(after_load_ext),
        "cold_one_shot_process_ms": ms(cold),
        "clean_process_preflight_median_ms": round(statistics.median(checks), 1),
        "clean_process_preflight_max_ms": max(m["clean_process_preflight_max_ms"] for m in models.values()),
        "capture_with_preflight_median_ms": round(statistics.median(captures), 1),
        "capture_with_preflight_max_ms": max(captures),
        "models": models,
    }
    print(f"{'model':40} {'params':>10} {'capture+preflight ms':>21} {'clean process ms':>17}")
    for name, m in models.items():
        print(
            f"{name:40} {m['parameters']:>10,} {m['capture_with_preflight_ms']:>21} "
            f"{m['clean_process_preflight_ms']:>17}"
        )
    print(f"first check of a session (warm process start): {results['first_check_of_a_session_ms']} ms")
    print(
        "first check after %load_ext and an `import torch` cell: "
        f"{results['first_check_after_load_ext_and_an_import_cell_ms']} ms"
    )
    print(f"cold one-shot process (no fork): {results['cold_one_shot_process_ms']} ms")
    print(
        f"clean-process preflight: median {results['clean_process_preflight_median_ms']} ms, "
        f"max {results['clean_process_preflight_max_ms']} ms"
    )
    out = HERE / "results" / "capture_corpus.json"
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
