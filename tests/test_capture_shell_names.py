"""Names the notebook's shell provides (IPython, ipykernel): a plain built-in is used as such, others refused by name.

``open`` in a notebook is IPython's wrapper, ``exit``/``quit`` its ExitAutocall, ``In``/``Out``/``_`` its
history: capture must not take them for the user's own functions. The last test enumerates what IPython
and ipykernel inject in a real Jupyter kernel and captures a cell that uses each one.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys

import nbformat
import pytest
from cells import ok, usage_error
from kernels import write_kernelspec
from nbclient import NotebookClient

from resontech_nb.capture import capture
from resontech_nb.errors import CaptureError

JOBCODE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "resontech_nb", "jobcode")
KERNEL = "resontech-nb-shell-names"

BUILTINS_EVERYWHERE = """
%%fl_model --input-shape 1,2
import os
import torch.nn as nn


def count_lines(path):
    with open(path) as fh:
        return sum(1 for _ in fh)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 2)

    def forward(self, x):
        if x is None:
            exit() if input() else quit()
        return self.fc(x)


def fl_train_model(payload):
    n = count_lines(os.path.join(payload["data_path"], "manifest.ndjson"))
    with open(os.path.join(payload["data_path"], "manifest.ndjson")) as fh:
        first = fh.readline()
    return {"weights": Net().state_dict(), "samples": n, "metrics": {"first": float(len(first))}}


def fl_evaluate_model(payload):
    with open(os.path.join(payload["data_path"], "manifest.ndjson")) as fh:
        n = len(fh.readlines())
    return {"metrics": {"lines": float(n)}, "samples": n}
"""


def top_level_names(source: str) -> set[str]:
    """Names model_def.py binds at its top level (defs, classes, assignments, imports)."""
    names = set()
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def run_fl_functions(folder, source: str) -> list:
    """model_def.py's fl_train_model and fl_evaluate_model on a folder with a 3-line manifest, in a plain process."""
    (folder / "data").mkdir()
    (folder / "data" / "manifest.ndjson").write_text('{"id": "a"}\n{"id": "b"}\n{"id": "c"}\n')
    (folder / "model_def.py").write_text(source, encoding="utf-8")
    code = (
        "import json, model_def\np = {'data_path': 'data'}\n"
        "t, e = model_def.fl_train_model(p), model_def.fl_evaluate_model(p)\n"
        "print(json.dumps([t['samples'], t['metrics']['first'], e['samples']]))"
    )
    env = {**os.environ, "PYTHONPATH": JOBCODE}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=folder, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_open_exit_quit_and_input_are_the_builtins_in_class_helper_and_fl_functions(ip, tmp_path):
    assert ip.user_ns["open"] is not open  # IPython's own wrapper, as in every notebook
    ok(ip, BUILTINS_EVERYWHERE)
    spec = ip.user_ns["fl_model"]
    assert not {"open", "exit", "quit", "input"} & top_level_names(spec.source)
    assert spec.helpers == ["count_lines"]
    assert run_fl_functions(tmp_path, spec.source) == [3, 12.0, 3]


def test_the_users_own_display_and_open_are_captured_as_theirs(ip, tmp_path):
    ok(ip, "import torch.nn as nn\n\ndef display(x):\n    return x * 2\n\nopen = display")
    ok(
        ip,
        "%%fl_model --input-shape 1,2\nclass Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.fc = nn.Linear(2, 2)\n\n    def forward(self, x):\n        return open(display(self.fc(x)))\n",
    )
    source = ip.user_ns["fl_model"].source
    assert "def display(x):" in source and "open = display" in source
    assert ip.user_ns["fl_model"].load_class()().forward.__globals__["open"].__name__ == "display"


@pytest.mark.parametrize(
    "use, message",
    [
        ("get_ipython()", "`get_ipython` used by fl_train_model is IPython's get_ipython()"),
        ("In[-1]", "`In` used by fl_train_model is the notebook's input history"),
        ("_i", "`_i` used by fl_train_model is the notebook's input history"),
        ("Out", "`Out` used by fl_train_model is the notebook's output history"),
        ("_", "`_` used by fl_train_model is the notebook's output history"),
        ("__", "`__` used by fl_train_model is the notebook's output history"),
        ("_dh", "`_dh` used by fl_train_model is the notebook's directory history"),
    ],
    ids=["get_ipython", "In", "_i", "Out", "_", "__", "_dh"],
)
def test_names_that_exist_only_in_the_notebook_are_refused_by_name(ip, use, message):
    ok(ip, "import torch.nn as nn")
    ok(ip, "1 + 1")  # an output, so Out and _ hold something
    text = usage_error(
        ip,
        "%%fl_model\nclass Net(nn.Module):\n    pass\n\ndef fl_train_model(payload):\n"
        f"    print({use})\n    return {{'weights': Net().state_dict(), 'samples': 1}}\n",
    )
    assert message in text
    assert "which exists only in the notebook, not where model_def.py runs (a plain Python process" in text


def test_history_names_in_a_helper_name_the_helper(ip):
    ok(ip, "import torch.nn as nn\n\ndef last_input():\n    return _ih[-1]")
    ok(
        ip,
        "class Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n        self.note = last_input()",
    )
    with pytest.raises(CaptureError, match=r"`_ih` used by last_input is the notebook's input history.*: remove it"):
        capture(ip.user_ns["Net"], namespace=ip.user_ns)


# -- in a real Jupyter kernel -------------------------------------------------------------------------------------

USES_NAME = """%%fl_model
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 2)

    def forward(self, x):
        if x is None:
            return {name}
        return self.fc(x)
"""

# Every name the kernel's shell injects (user_ns_hidden) or adds to or swaps in builtins, as JSON; module dunders
# left out.
INJECTED = (
    "print(__import__('json').dumps(sorted(n for n in set(get_ipython().user_ns_hidden) | {{"
    "n for n, v in vars(__import__('builtins')).items() if n not in {plain!r}"
    " or getattr(v, '__module__', 'builtins') not in ('builtins', '_sitebuiltins', 'io')}}"
    " if not (len(n) > 4 and n[:2] == n[-2:] == '__'))))"
)


def plain_builtins() -> set[str]:
    code = "import builtins, json; print(json.dumps(sorted(vars(builtins))))"
    return set(json.loads(subprocess.check_output([sys.executable, "-I", "-c", code], text=True)))


def output_text(cell) -> str:
    """What a cell printed (stdout, stderr, an error's message, a display's text)."""
    parts = [
        out.get("text", "") + out.get("evalue", "") + out.get("data", {}).get("text/plain", "") for out in cell.outputs
    ]
    return "\n".join(parts)


@pytest.mark.slow
def test_in_a_real_kernel_every_injected_name_is_a_builtin_or_refused_by_name(clean_env, tmp_path):
    write_kernelspec(tmp_path / "jupyter", KERNEL)
    clean_env.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    nb = nbformat.v4.new_notebook()
    client = NotebookClient(
        nb, kernel_name=KERNEL, timeout=180, allow_errors=True, resources={"metadata": {"path": str(tmp_path)}}
    )
    plain = plain_builtins()

    def run(source: str):
        nb.cells.append(nbformat.v4.new_code_cell(source))
        client.execute_cell(nb.cells[-1], len(nb.cells) - 1)
        return nb.cells[-1]

    with client.setup_kernel():
        assert "captured" in output_text(run("%load_ext resontech_nb\nimport torch.nn as nn\nprint('captured')"))
        run("1 + 1")  # an output: Out, _ and _2 hold something
        injected = json.loads(output_text(run(INJECTED.format(plain=sorted(plain)))).splitlines()[0])
        # what IPython and ipykernel put there, as this test was written; more may come with new versions
        assert {"open", "exit", "quit", "In", "Out", "_", "_i", "_ih", "_oh", "_dh", "get_ipython"} <= set(injected)
        assert {"display", "input"} <= set(injected)
        outcomes = {}
        for name in injected:
            text = output_text(run(USES_NAME.format(name=name)))
            if "UsageError" in text:
                outcomes[name] = text
            else:
                source = json.loads(output_text(run("print(__import__('json').dumps(fl_model.source))")))
                outcomes[name] = "captured" if name not in top_level_names(source) else f"wrote {name}: {source}"
        builtins_here = [n for n in injected if n in plain]
        assert {n: outcomes[n] for n in builtins_here} == dict.fromkeys(builtins_here, "captured")
        for name in (n for n in injected if n not in plain):
            assert f"`{name}` used by Net is " in outcomes[name], outcomes[name]
            assert "which exists only in the notebook, not where model_def.py runs" in outcomes[name], outcomes[name]

        # the same names in a helper, fl_train_model and fl_evaluate_model; the functions run in a plain process
        text = output_text(run(BUILTINS_EVERYWHERE.strip()))
        assert "ModelSpec Net" in text, text
        source = json.loads(output_text(run("print(__import__('json').dumps(fl_model.source))")))
        # a name the user defines is theirs, even one IPython also provides
        run("def display(x):\n    return x")
        text = output_text(run(USES_NAME.format(name="display(x)")))
        assert "ModelSpec Net" in text, text
        display_source = json.loads(output_text(run("print(__import__('json').dumps(fl_model.source))")))
    assert run_fl_functions(tmp_path, source) == [3, 12.0, 3]
    assert "def display(x):" in display_source
