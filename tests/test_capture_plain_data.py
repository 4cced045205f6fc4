"""Plain-data globals are written so they rebuild exactly: argparse/SimpleNamespace, dataclasses, enums, paths, lambdas.

The written text of each value is evaluated and compared with the notebook's value before it is accepted.
Cells run in a real IPython shell; preflight builds every model_def.py in a clean Python process.
"""

from __future__ import annotations

import math

import torch
from cells import ok

CONFIG_CELL = """
import argparse
import enum
import pathlib
import types
from dataclasses import dataclass

import torch
import torch.nn as nn


class Norm(enum.Enum):
    BATCH = "batch"
    LAYER = "layer"


@dataclass
class Block:
    width: int = 8
    norm: Norm = Norm.LAYER
    dropout: float = 0.1


parser = argparse.ArgumentParser(description="a training script pasted into a notebook")
parser.add_argument("--hidden", type=int, default=16)
parser.add_argument("--lr", type=float, default=1.0)
parser.add_argument("--no-cuda", action="store_true")
parser.add_argument("--save-dir", type=pathlib.Path, default=pathlib.Path("runs/mnist"))
args = parser.parse_args(["--hidden", "12"])
opt = types.SimpleNamespace(
    blocks=(Block(), Block(width=4, norm=Norm.BATCH)),
    layout={"head": Norm.BATCH, "root": pathlib.PurePosixPath("/data")},
    eps=float("nan"),
)
odd = argparse.Namespace(**{"with-dash": 1, "class": 2})
"""

CONFIG_NET = """%%fl_model --input-shape 2,3
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, args.hidden)
        self.blocks = nn.ModuleList(nn.Linear(args.hidden, b.width) for b in opt.blocks[:1])
        self.norm = nn.LayerNorm(opt.blocks[0].width) if opt.layout["head"] is Norm.LAYER else nn.Identity()
        self.extra = getattr(odd, "with-dash") + getattr(odd, "class")

    def forward(self, x):
        return self.norm(self.blocks[0](self.fc(x)))
"""


def test_namespaces_dataclasses_enums_and_paths_are_written_and_rebuild_the_same_values(ip):
    ok(ip, CONFIG_CELL)
    ok(ip, CONFIG_NET)
    spec = ip.user_ns["fl_model"]
    assert (
        "args = argparse.Namespace(hidden=12, lr=1.0, no_cuda=False, save_dir=pathlib.Path('runs/mnist'))\n"
        in spec.source
    )
    assert (
        "opt = types.SimpleNamespace(blocks=(Block(width=8, norm=Norm.LAYER, dropout=0.1), "
        "Block(width=4, norm=Norm.BATCH, dropout=0.1)), layout={'head': Norm.BATCH, "
        "'root': pathlib.PurePosixPath('/data')}, eps=float('nan'))\n" in spec.source
    )
    assert "odd = argparse.Namespace(**{'with-dash': 1, 'class': 2})\n" in spec.source
    assert {"import argparse", "import pathlib", "import types"} <= set(spec.imports)
    assert spec.source.index("class Norm(enum.Enum):") < spec.source.index("class Block:") < spec.source.index("opt =")
    assert spec.param_count == sum(p.numel() for p in ip.user_ns["Net"]().parameters())

    module = spec.load_module()
    assert module.args == ip.user_ns["args"] and vars(module.odd) == vars(ip.user_ns["odd"])
    blocks = module.opt.blocks
    assert [(b.width, b.norm.value, b.dropout) for b in blocks] == [(8, "layer", 0.1), (4, "batch", 0.1)]
    assert module.opt.layout["root"] == ip.user_ns["opt"].layout["root"] and math.isnan(module.opt.eps)


def test_a_table_of_lambdas_is_written_with_each_lambdas_own_text(ip):
    ok(
        ip,
        "import math\nimport torch\nimport torch.nn as nn\nimport torch.nn.functional as F\nSLOPE = 0.2\n"
        "ACTIVATIONS = {\n"
        '    "gelu": lambda x: 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0))),\n'
        '    "relu": F.relu,\n'
        '    "neg": lambda x: -x, "leaky": lambda x: torch.where(x > 0, x, SLOPE * x),\n'
        "}",
    )
    ok(
        ip,
        "%%fl_model --input-shape 1,2\nclass Net(nn.Module):\n    def __init__(self, act='gelu'):\n"
        "        super().__init__()\n        self.fc = nn.Linear(2, 2)\n        self.act = ACTIVATIONS[act]\n\n"
        "    def forward(self, x):\n        return self.act(self.fc(x))\n",
    )
    spec = ip.user_ns["fl_model"]
    assert "'gelu': (lambda x: 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0))))" in spec.source
    assert "'neg': (lambda x: -x), 'leaky': (lambda x: torch.where(x > 0, x, SLOPE * x))" in spec.source
    assert "'relu': torch.nn.functional.relu" in spec.source and "SLOPE = 0.2" in spec.source
    table = spec.load_module().ACTIVATIONS
    x = torch.tensor([-1.0, 2.0])
    for key, live in ip.user_ns["ACTIVATIONS"].items():
        assert torch.equal(table[key](x), live(x)), key
