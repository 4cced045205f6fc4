"""A refusal names the user's own name (the global, the attribute or key inside it, the file) and one fitting fix.

Cells run in a real IPython shell; preflight builds every model_def.py in a clean Python process.
"""

from __future__ import annotations

import pytest
from cells import ok

from resontech_nb.capture import capture
from resontech_nb.errors import CaptureError, PreflightError

NET_USING = (
    "class Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n        self.fc = nn.Linear(2, 2)\n"
    "        self.extra = {use}\n"
)


def refusal(ip, setup: str, use: str) -> str:
    ok(ip, "import torch\nimport torch.nn as nn\n" + setup)
    ok(ip, NET_USING.format(use=use))
    with pytest.raises(CaptureError) as error:
        capture(ip.user_ns["Net"], namespace=ip.user_ns)
    return str(error.value)


def test_a_lambda_without_source_in_a_table_names_the_table_and_its_key(ip):
    text = refusal(ip, "ACTIVATIONS = {'relu': torch.relu, 'id': eval('lambda x: x')}", "ACTIVATIONS['id']")
    assert text == (
        "`ACTIVATIONS` used by Net holds a lambda whose source cannot be found (function) at ACTIVATIONS['id'], "
        "which cannot be written into model_def.py: define it with def in a notebook cell"
    )


def test_a_tensor_in_a_namespace_attribute_names_the_attribute(ip):
    text = refusal(ip, "import argparse\nargs = argparse.Namespace(lr=0.1, weights=torch.ones(2))", "args.lr")
    assert text == (
        "`args` used by Net holds a tensor (torch.Tensor) at args.weights, which cannot be written into "
        "model_def.py: create it inside Net.__init__ (self.register_buffer keeps a tensor with the model)"
    )


def test_a_value_whose_written_form_rebuilds_another_value_is_refused(ip):
    text = refusal(
        ip,
        "from dataclasses import dataclass\n\n@dataclass\nclass Scaled:\n    width: int = 4\n\n"
        "    def __post_init__(self):\n        self.width = self.width * 2\n\nSCALED = Scaled()",
        "SCALED.width",
    )
    assert text == (
        "`SCALED` used by Net is a __main__.Scaled that model_def.py would not rebuild as the notebook has it "
        "(SCALED.width would be 16 instead of 8): create it inside Net.__init__"
    )


def test_a_lambda_reading_an_undefined_name_names_the_table(ip):
    text = refusal(ip, "ACTS = {'scaled': lambda x: x * factor}", "ACTS")
    assert text == "name 'factor' used by ACTS is not defined in the notebook: define or import it in the cell"


def test_a_file_next_to_the_notebook_read_by_init_is_named_by_preflight(ip, tmp_path):
    (tmp_path / "vocab.txt").write_text("the cat sat on the mat\n")  # the notebook's folder (the shell's cwd)
    ok(
        ip,
        "import torch.nn as nn\n\nclass Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        with open('vocab.txt') as fh:\n            words = sorted(set(fh.read().split()))\n"
        "        self.emb = nn.Embedding(len(words), 4)\n",
    )
    with pytest.raises(PreflightError) as error:
        capture(ip.user_ns["Net"], namespace=ip.user_ns)
    assert str(error.value) == (
        "Net() needs the file 'vocab.txt', which a clean Python process (as on an FL site) does not have "
        "(FileNotFoundError: [Errno 2] No such file or directory: 'vocab.txt'): FL sites get only model_def.py and "
        "their shard, so write what Net needs from that file into the cell (a constant or an __init__ default)"
    )
