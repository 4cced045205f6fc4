"""Model capture: model_def.py holds exactly the imports and helpers the class needs, and runs on its own.

Cells run in a real IPython shell; each generated model_def.py is imported in a fresh Python process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import fl_models
import pytest
import torch

from resontech_nb.capture import capture, component_source
from resontech_nb.errors import CaptureError, PreflightError

JOBCODE = Path(__file__).resolve().parents[1] / "resontech_nb" / "jobcode"

ALIAS_CELL = "import torch\nimport torch.nn as nn\nfrom torch import nn as tnn"
HELPER_CELL = "import torch.nn.functional as F\n\ndef act(x):\n    return F.relu(x)"
CONSTANT_CELL = "HIDDEN = 16\nSIZES = {'in': 4, 'out': 3}"
NET_CELL = """
class Net(tnn.Module):
    def __init__(self, hidden: int = HIDDEN):
        super().__init__()
        self.fc1 = nn.Linear(SIZES["in"], hidden)
        self.fc2 = nn.Linear(hidden, SIZES["out"])

    def forward(self, x):
        return self.fc2(act(self.fc1(x)))
"""


def run_cells(shell, *cells: str) -> None:
    for cell in cells:
        result = shell.run_cell(cell, store_history=True)  # as a notebook does: the cell lands in In[]
        assert result.success, result.error_in_exec or result.error_before_exec


def run_in_fresh_process(folder: Path, source: str, code: str) -> str:
    (folder / "model_def.py").write_text(source, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(JOBCODE)}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=folder, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_names_from_earlier_cells_are_written_into_model_def(ip, tmp_path):
    run_cells(ip, ALIAS_CELL, HELPER_CELL, CONSTANT_CELL, NET_CELL)
    spec = capture(ip.user_ns["Net"], namespace=ip.user_ns, input_shape=(2, 4))

    assert spec.imports == [
        "import torch.nn as nn",
        "import torch.nn as tnn",
        "import torch.nn.functional as F",
        "from rt_default_train import default_evaluate_model, default_train_model",
    ]
    assert "import torch\n" not in spec.source  # torch itself is not used by the class
    assert spec.helpers == ["HIDDEN", "SIZES", "act"]
    assert "HIDDEN = 16\n" in spec.source and "def act(x):" in spec.source
    assert spec.param_count == 4 * 16 + 16 + 16 * 3 + 3
    assert spec.size_bytes == spec.param_count * 4
    assert spec.output_shape == (2, 3)
    assert "Net" in repr(spec) and "131 parameters" in spec.summary()

    out = run_in_fresh_process(
        tmp_path,
        spec.source,
        "import torch, model_def\nm = model_def.Net()\n"
        "print(tuple(m(torch.ones(5, 4)).shape), callable(model_def.fl_train_model))",
    )
    assert out.strip() == "(5, 3) True"


def test_default_training_loop_is_appended_when_no_train_fn(ip):
    run_cells(ip, ALIAS_CELL, HELPER_CELL, CONSTANT_CELL, NET_CELL)
    spec = capture(ip.user_ns["Net"], namespace=ip.user_ns)
    assert not spec.has_train_fn and not spec.has_eval_fn
    assert spec.source.rstrip().endswith(
        "from rt_default_train import default_evaluate_model, default_train_model\n\n\n"
        "def fl_train_model(payload):\n    return default_train_model(Net, payload)\n\n\n"
        "def fl_evaluate_model(payload):\n    return default_evaluate_model(Net, payload)"
    )
    net = spec.load_class()()  # the class comes back from the source alone
    assert isinstance(net, torch.nn.Module) and sum(p.numel() for p in net.parameters()) == spec.param_count


def test_train_fn_is_written_as_fl_train_model_with_its_own_needs(ip, tmp_path):
    run_cells(
        ip,
        ALIAS_CELL,
        HELPER_CELL,
        CONSTANT_CELL,
        NET_CELL,
        "import math\nSCALE = 0.5\n"
        "def my_train(payload):\n"
        "    model = Net()\n"
        "    model.load_state_dict(payload['initial_weights'])\n"
        "    weights = {k: v * SCALE for k, v in model.state_dict().items()}\n"
        "    return {'weights': weights, 'samples': 3, 'metrics': {'loss': math.sqrt(4.0)}}\n",
    )
    spec = capture(ip.user_ns["Net"], ip.user_ns["my_train"], namespace=ip.user_ns)
    assert spec.has_train_fn and "import math" in spec.imports and "SCALE = 0.5" in spec.source
    assert "fl_train_model = my_train" in spec.source and "rt_default_train" not in spec.source
    out = run_in_fresh_process(
        tmp_path,
        spec.source,
        "import model_def\n"
        "w = model_def.Net().state_dict()\n"
        "r = model_def.fl_train_model({'initial_weights': w, 'round': 0})\n"
        "print(r['samples'], r['metrics']['loss'], float(r['weights']['fc1.bias'].sum() / w['fc1.bias'].sum()))",
    )
    assert out.split() == ["3", "2.0", "0.5"]


def test_class_and_helper_classes_without_methods_found_in_the_cells(ip, tmp_path):
    run_cells(
        ip,
        "import torch.nn as nn",
        "class Block(nn.Sequential):\n    pass",
        "class Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.body = Block(nn.Linear(2, 2), nn.Tanh())\n\n"
        "    def forward(self, x):\n        return self.body(x)",
    )
    spec = capture(ip.user_ns["Net"], namespace=ip.user_ns, input_shape=(1, 2))
    assert spec.helpers == ["Block"]
    assert spec.source.index("class Block") < spec.source.index("class Net")
    out = run_in_fresh_process(tmp_path, spec.source, "import model_def\nprint(type(model_def.Net().body).__name__)")
    assert out.strip() == "Block"


def test_redefined_class_captures_the_latest_cell(ip):
    run_cells(ip, "import torch.nn as nn", "class Net(nn.Module):\n    def forward(self, x):\n        return x + 1")
    run_cells(ip, "class Net(nn.Module):\n    def forward(self, x):\n        return x + 2")
    spec = capture(ip.user_ns["Net"], namespace=ip.user_ns)
    assert "x + 2" in spec.source and "x + 1" not in spec.source


def test_module_classes_and_functions_capture_from_their_file(tmp_path):
    spec = capture(fl_models.DeltaNet, fl_models.delta_train, input_shape=(4, 2))
    assert spec.imports == ["import torch", "import torch.nn as nn"]
    assert "SAMPLES = {'site-1': 10, 'site-2': 20, 'site-3': 50}" in spec.source
    assert spec.output_shape == (4, 3) and spec.param_count == 9
    out = run_in_fresh_process(
        tmp_path,
        spec.source,
        "import model_def\nm = model_def.DeltaNet()\n"
        "r = model_def.fl_train_model({'site_name': 'site-2', 'initial_weights': m.state_dict()})\n"
        "print(r['samples'], float(r['weights']['b'][0]))",
    )
    assert out.split() == ["20", "3.0"]


@pytest.mark.parametrize(
    "setup, body, message",
    [
        ("fh = open('notes.txt', 'w')", "fh.write('x')", r"`fh` used by Net is an open file \(_io.TextIOWrapper\)"),
        (
            "t = torch.ones(2)",
            "x = x * t",
            r"`t` used by Net is a tensor \(torch.Tensor\) and cannot be written into model_def.py: "
            r"create it inside Net.__init__ \(self.register_buffer keeps a tensor with the model\)",
        ),
        ("", "x = undefined_thing(x)", r"name 'undefined_thing' used by Net is not defined in the notebook"),
        (
            "scale = [1.0, torch.ones(1)]",
            "x = x * scale[0]",
            r"`scale` used by Net holds a tensor \(torch.Tensor\) at scale\[1\], which cannot be written",
        ),
        (
            "",
            "display(x)",
            r"`display` used by Net is IPython's display\(\), which exists only in the notebook, not where "
            r"model_def.py runs \(a plain Python process on each FL site\): use print\(\) in Net instead",
        ),
    ],
    ids=["open-file", "tensor", "undefined", "list-with-tensor", "ipython-builtin"],
)
def test_names_that_cannot_be_written_fail_at_capture_naming_the_fix(ip, setup, body, message):
    run_cells(ip, "import torch\nimport torch.nn as nn\n" + setup)
    run_cells(ip, f"class Net(nn.Module):\n    def forward(self, x):\n        {body}\n        return x")
    with pytest.raises(CaptureError, match=message):
        capture(ip.user_ns["Net"], namespace=ip.user_ns)


def test_preflight_reports_a_failing_constructor_and_forward_pass(ip):
    run_cells(
        ip,
        "import torch.nn as nn",
        "class NeedsArgs(nn.Module):\n    def __init__(self, width):\n        super().__init__()",
        "class Small(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.fc = nn.Linear(8, 2)\n\n    def forward(self, x):\n        return self.fc(x)",
    )
    with pytest.raises(
        PreflightError, match=r"FL sites build the model as NeedsArgs\(\).*give every __init__ argument a default"
    ):
        capture(ip.user_ns["NeedsArgs"], namespace=ip.user_ns)
    with pytest.raises(PreflightError, match=r"forward pass on input shape \(1, 3\) failed: RuntimeError"):
        capture(ip.user_ns["Small"], namespace=ip.user_ns, input_shape=(1, 3))


def test_not_a_model_class_is_refused(ip):
    run_cells(ip, "import torch.nn as nn\nclass Plain:\n    pass\nnet = nn.Linear(1, 1)")
    with pytest.raises(CaptureError, match="not a torch.nn.Module subclass"):
        capture(ip.user_ns["Plain"], namespace=ip.user_ns)
    with pytest.raises(CaptureError, match="pass the class"):
        capture(ip.user_ns["net"], namespace=ip.user_ns)


def test_component_source_makes_a_notebook_class_self_contained(ip, tmp_path):
    run_cells(
        ip,
        "from collections import OrderedDict\nLIMIT = 3",
        "class Registry(OrderedDict):\n    def add(self, k, v):\n"
        "        if len(self) < LIMIT:\n            self[k] = v\n        return self",
    )
    source = component_source(ip.user_ns["Registry"], namespace=ip.user_ns)
    (tmp_path / "user_registry.py").write_text(source)
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import user_registry as u\nr = u.Registry()\nfor i in range(5): r.add(i, i)\nprint(len(r))",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert done.stdout.strip() == "3", done.stderr


def test_decorated_helpers_and_postponed_annotations(ip, tmp_path):
    run_cells(
        ip,
        "import functools\nimport torch\nimport torch.nn as nn",
        "@functools.lru_cache\ndef width():\n    return 4",
        "from __future__ import annotations\n\n"
        "class Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.fc = nn.Linear(width(), 2)\n\n"
        "    def forward(self, x: torch.Tensor, hint: NotImportedType = None) -> torch.Tensor:\n"
        "        return self.fc(x)",
    )
    spec = capture(ip.user_ns["Net"], namespace=ip.user_ns, input_shape=(1, 4))
    assert spec.source.splitlines()[2] == "from __future__ import annotations"
    assert "@functools.lru_cache\ndef width():" in spec.source and "import functools" in spec.imports
    out = run_in_fresh_process(tmp_path, spec.source, "import model_def\nprint(model_def.Net().fc.in_features)")
    assert out.strip() == "4"
