"""Capture never ships a different model than the notebook's: closures, rebuilt values, files next to the notebook.

Cells run in a real IPython shell; preflight builds every model_def.py in a clean Python process.
"""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest
import torch

from resontech_nb.capture import ModelSpec, capture, preflight
from resontech_nb.errors import CaptureError, CaptureWarning, PreflightError

FACTORY_CELL = """
def make_model(width):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, width)

        def forward(self, x):
            return self.fc(x)

    return Net

Net = make_model(32)
"""


def run_cells(shell, *cells: str) -> None:
    for cell in cells:
        result = shell.run_cell(cell, store_history=True)
        assert result.success, result.error_in_exec or result.error_before_exec


def fresh_param_count(folder, source: str, class_name: str) -> int:
    (folder / "model_def.py").write_text(source, encoding="utf-8")
    code = f"import model_def\nprint(sum(p.numel() for p in model_def.{class_name}().parameters()))"
    done = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, '.')\n{code}"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


def test_closure_variable_wins_over_a_global_of_the_same_name(ip, tmp_path):
    run_cells(ip, "import torch.nn as nn", "width = 8", FACTORY_CELL)
    spec = capture(ip.user_ns["Net"], namespace=ip.user_ns, input_shape=(2, 4))
    assert spec.param_count == 4 * 32 + 32 == sum(p.numel() for p in ip.user_ns["Net"]().parameters())
    assert "width = 32" in spec.source and "width = 8" not in spec.source
    assert spec.output_shape == (2, 32)
    assert fresh_param_count(tmp_path, spec.source.replace("from rt_default_train", "#"), "Net") == 4 * 32 + 32


def test_closure_and_global_of_one_name_in_one_model_is_a_named_error(ip):
    run_cells(ip, "import torch.nn as nn", "width = 8\ndef head():\n    return nn.Linear(width, 2)", FACTORY_CELL)
    run_cells(
        ip,
        "def make(width):\n    class Both(nn.Module):\n        def __init__(self):\n            super().__init__()\n"
        "            self.a = nn.Linear(width, 8)\n            self.b = head()\n    return Both\nBoth = make(4)",
    )
    with pytest.raises(CaptureError, match="name 'width' means two different things"):
        capture(ip.user_ns["Both"], namespace=ip.user_ns)


@pytest.mark.parametrize(
    "factory, message",
    [
        (
            "def make(width):\n    class Net(nn.Module):\n        size = width\n\n        def __init__(self):\n"
            "            super().__init__()\n            self.fc = nn.Linear(4, self.size)\n    return Net\n",
            r"Net reads `width`, a variable of the function make\(\) it is defined in",
        ),
        (
            "def make(scale):\n    class Net(nn.Module):\n        def forward(self, x):\n            return x * scale\n"
            "    return Net\n",
            r"Net reads `scale`, a variable of the function make\(\): `scale` used by Net is a tensor",
        ),
    ],
    ids=["class-body-variable", "tensor-in-closure"],
)
def test_closure_variables_that_cannot_be_written_are_named(ip, factory, message):
    run_cells(ip, "import torch\nimport torch.nn as nn\nwidth = 8\nscale = 2.0", factory)
    run_cells(ip, "Net = make(torch.ones(1)) if 'scale' in make.__code__.co_varnames else make(16)")
    with pytest.raises(CaptureError, match=message):
        capture(ip.user_ns["Net"], namespace=ip.user_ns)


def test_partial_layers_are_written_as_source(ip, tmp_path):
    run_cells(
        ip,
        "from functools import partial\nimport torch.nn as nn",
        "norm = partial(nn.BatchNorm2d, eps=1e-3, momentum=0.01)",
        "class Block(nn.Module):\n    def __init__(self, c=4, k=3):\n        super().__init__()\n"
        "        self.conv = nn.Conv2d(c, c, k, padding=k // 2)\n",
        "wide_block = partial(Block, 4, k=5)",
        "class Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.bn = norm(4)\n        self.block = wide_block()\n\n"
        "    def forward(self, x):\n        return self.block.conv(self.bn(x))",
    )
    spec = capture(ip.user_ns["Net"], namespace=ip.user_ns, input_shape=(1, 4, 6, 6))
    assert "norm = functools.partial(torch.nn.BatchNorm2d, eps=0.001, momentum=0.01)" in spec.source
    assert "wide_block = functools.partial(Block, 4, k=5)" in spec.source
    assert spec.source.index("class Block") < spec.source.index("wide_block =")
    net = spec.load_class()()
    assert net.bn.eps == 1e-3 and net.block.conv.kernel_size == (5, 5)
    assert spec.param_count == sum(p.numel() for p in ip.user_ns["Net"]().parameters())


def test_devices_dtypes_enums_and_dataclass_configs_are_rebuilt(ip, tmp_path):
    run_cells(
        ip,
        "import enum\nfrom dataclasses import dataclass\nimport torch\nimport torch.nn as nn",
        "class Act(enum.Enum):\n    RELU = 'relu'\n    TANH = 'tanh'",
        "@dataclass\nclass Config:\n    width: int = 4\n    act: Act = Act.RELU\n"
        "    dtype: torch.dtype = torch.float32\n"
        "    kernel: tuple = (1, 1)",
        "CFG = Config(width=6, act=Act.TANH, dtype=torch.float64, kernel=(3, 3))\nDEV = torch.device('cpu')\n"
        "LIMITS = {'low': float('-inf'), 'sizes': (CFG.width, 2)}",
        "class Net(nn.Module):\n    def __init__(self, cfg=CFG):\n        super().__init__()\n"
        "        self.fc = nn.Linear(LIMITS['sizes'][1], cfg.width, dtype=cfg.dtype, device=DEV)\n"
        "        self.act = nn.Tanh() if cfg.act is Act.TANH else nn.ReLU()\n"
        "        self.k = cfg.kernel\n\n    def forward(self, x):\n"
        "        return self.act(self.fc(x.to(self.fc.weight.dtype)))",
    )
    spec = capture(ip.user_ns["Net"], namespace=ip.user_ns, input_shape=(3, 2))
    assert "CFG = Config(width=6, act=Act.TANH, dtype=torch.float64, kernel=(3, 3))" in spec.source
    assert "DEV = torch.device('cpu')" in spec.source
    assert "LIMITS = {'low': float('-inf'), 'sizes': (6, 2)}" in spec.source
    net = spec.load_class()()
    assert net.fc.weight.dtype == torch.float64 and isinstance(net.act, torch.nn.Tanh)
    assert spec.size_bytes == (6 * 2 + 6) * 8 and spec.output_shape == (3, 6)


def test_values_without_a_source_form_are_refused_naming_value_and_type(ip):
    run_cells(
        ip,
        "import torch.nn as nn\nfrom functools import partial",
        "class Holder:\n    pass\nH = Holder()\nnorm = partial(nn.LayerNorm, eps=H)",
        "class Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n        self.n = norm(3)",
    )
    with pytest.raises(
        CaptureError,
        match=r"`norm` used by Net holds an object \(__main__.Holder\) at norm.keywords\['eps'\], which cannot be "
        r"written into model_def.py: create `norm` inside Net.__init__",
    ):
        capture(ip.user_ns["Net"], namespace=ip.user_ns)


def test_helpers_from_a_file_next_to_the_notebook_are_written_into_model_def(ip, tmp_path, monkeypatch):
    (tmp_path / "mylayers.py").write_text(
        "import torch.nn as nn\n\nWIDTH = 5\n\n\ndef act():\n    return nn.GELU()\n\n\n"
        "class Block(nn.Module):\n    def __init__(self, c=WIDTH):\n        super().__init__()\n"
        "        self.fc = nn.Linear(c, c)\n        self.act = act()\n\n"
        "    def forward(self, x):\n        return self.act(self.fc(x))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))  # importable in the kernel, as the notebook's folder is
    run_cells(
        ip,
        "import torch.nn as nn\nfrom mylayers import Block",
        "class Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n        self.body = Block()\n\n"
        "    def forward(self, x):\n        return self.body(x)",
    )
    spec = capture(ip.user_ns["Net"], namespace=ip.user_ns, input_shape=(2, 5))
    assert "mylayers" not in spec.source
    assert "WIDTH = 5" in spec.source and "def act():" in spec.source and "class Block(nn.Module):" in spec.source
    assert spec.param_count == 5 * 5 + 5 and spec.output_shape == (2, 5)


def test_a_module_next_to_the_notebook_used_as_a_module_is_named(ip, tmp_path, monkeypatch):
    (tmp_path / "mylayers2.py").write_text("import torch.nn as nn\n\n\ndef head():\n    return nn.Linear(2, 2)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    run_cells(
        ip,
        "import torch.nn as nn\nimport mylayers2",
        "class Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n        self.h = mylayers2.head()",
    )
    with pytest.raises(
        CaptureError,
        match=r"`mylayers2` used by Net is the module mylayers2 from .*mylayers2.py, "
        r"a file next to the notebook that the FL sites do not have: import what the model needs",
    ):
        capture(ip.user_ns["Net"], namespace=ip.user_ns)


def test_preflight_runs_without_the_notebook_folder_and_names_a_missing_module(ip, tmp_path, monkeypatch):
    (tmp_path / "only_here.py").write_text("SIZE = 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    run_cells(ip, "import torch.nn as nn", "class Net(nn.Module):\n    pass")
    spec = capture(ip.user_ns["Net"], namespace=ip.user_ns)
    spec.source = "import only_here\n" + spec.source  # what an import of a kernel-only module would give
    with pytest.raises(
        PreflightError,
        match=r"fails to import in a clean Python process .*ModuleNotFoundError: "
        r"No module named 'only_here'",
    ):
        preflight(spec)


def test_preflight_names_the_first_difference_from_the_notebooks_model(ip):
    run_cells(ip, "import torch.nn as nn", "width = 8", FACTORY_CELL)
    spec = capture(ip.user_ns["Net"], namespace=ip.user_ns)
    wrong = ModelSpec(
        class_name="Net",
        source=spec.source.replace("width = 32", "width = 8"),  # the value a global lookup would have found
        has_train_fn=False,
        model_cls=ip.user_ns["Net"],
    )
    with pytest.raises(
        PreflightError,
        match=r"model_def.py builds a different Net than the notebook: 'fc.weight' "
        r"has shape \(32, 4\) in the notebook but \(8, 4\) from model_def.py",
    ):
        preflight(wrong)


def test_imports_keep_the_public_module_path(ip):
    run_cells(
        ip,
        "import torch.nn as nn\nfrom torch.nn import TransformerEncoder, TransformerEncoderLayer",
        "class Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.enc = TransformerEncoder(TransformerEncoderLayer(8, 2, 16, batch_first=True), 1)\n\n"
        "    def forward(self, x):\n        return self.enc(x)",
    )
    spec = capture(ip.user_ns["Net"], namespace=ip.user_ns, input_shape=(1, 3, 8))
    assert "from torch.nn import TransformerEncoder" in spec.imports
    assert "from torch.nn import TransformerEncoderLayer" in spec.imports
    assert "torch.nn.modules" not in spec.source


def test_a_global_device_in_the_training_function_is_warned_about(ip):
    run_cells(
        ip,
        "import torch\nimport torch.nn as nn\ndevice = 'cuda' if torch.cuda.is_available() else 'cpu'",
        "class Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n        self.fc = nn.Linear(2, 2)",
        "def fl_train_model(payload):\n    model = Net().to(device)\n"
        "    return {'weights': model.state_dict(), 'samples': 1}",
        "def fl_evaluate_model(payload):\n    return {'metrics': {'n': 1.0}, 'samples': 1}",
    )
    with pytest.warns(
        CaptureWarning,
        match=r"fl_train_model reads the global `device` \('(cpu|cuda)'\).*"
        r"use payload\[\"device\"\] instead",
    ):
        spec = capture(
            ip.user_ns["Net"], ip.user_ns["fl_train_model"], ip.user_ns["fl_evaluate_model"], namespace=ip.user_ns
        )
    assert len(spec.warnings) == 1 and "warning: fl_train_model reads the global `device`" in spec.summary()
    with warnings.catch_warnings():
        warnings.simplefilter("error", CaptureWarning)  # the eval fn alone reads no device: no warning
        capture(ip.user_ns["Net"], None, ip.user_ns["fl_evaluate_model"], namespace=ip.user_ns)


def test_model_def_contract_for_evaluation(ip, tmp_path):
    run_cells(
        ip,
        "import torch.nn as nn",
        "class Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n        self.fc = nn.Linear(2, 2)",
        "def my_train(payload):\n    return {'weights': Net().state_dict(), 'samples': 1}",
        "def my_eval(payload):\n    return {'metrics': {'loss': 0.5}, 'samples': 2}",
    )
    ns = ip.user_ns
    both = capture(ns["Net"], ns["my_train"], ns["my_eval"], namespace=ns)
    assert both.has_train_fn and both.has_eval_fn
    assert "fl_evaluate_model = my_eval" in both.source and "rt_default_train" not in both.source
    assert both.load_module().fl_evaluate_model({})["samples"] == 2

    train_only = capture(ns["Net"], ns["my_train"], namespace=ns)
    assert not train_only.has_eval_fn and "fl_evaluate_model" not in train_only.source  # sites skip validation

    eval_only = capture(ns["Net"], None, ns["my_eval"], namespace=ns)
    assert "from rt_default_train import default_train_model\n" in eval_only.source
    assert "default_evaluate_model" not in eval_only.source and "fl_evaluate_model = my_eval" in eval_only.source

    default = capture(ns["Net"], namespace=ns)
    assert "def fl_evaluate_model(payload):\n    return default_evaluate_model(Net, payload)" in default.source


def test_the_clean_process_stops_a_model_that_hangs_and_keeps_user_prints_out_of_its_protocol():
    from resontech_nb.capture import clean_process

    slow = "import time\nimport torch.nn as nn\n\n\nclass Slow(nn.Module):\n"
    slow += "    def __init__(self):\n        time.sleep(60)\n"
    with pytest.raises(PreflightError, match=r"took over 3 s in a clean process: make the class's __init__"):
        clean_process.inspect_source(slow, "Slow", [], None, timeout=3)
    chatty = (
        "import sys\nimport torch.nn as nn\n\n\nclass Chatty(nn.Module):\n    def __init__(self):\n"
        "        super().__init__()\n        print('ready')\n        print('{}', file=sys.stderr)\n"
        "        self.fc = nn.Linear(2, 3)\n\n"
        "    def forward(self, x):\n        print('done')\n        return self.fc(x)\n"
    )
    fresh = clean_process.inspect_source(chatty, "Chatty", [], (1, 2))
    assert fresh["ok"] and fresh["param_count"] == 9 and fresh["output_shape"] == [1, 3]
    assert ["fc.weight", [3, 2]] in fresh["state"]
