"""Decorated code from the notebook is written with its decorators: TorchScript, torch.no_grad, functools.wraps.

``@torch.jit.script`` turns a def into a ScriptFunction without source of its own; capture writes the def
it came from, decorator included. ``torch.autograd.Function`` subclasses are captured like any class.
Cells run in a real IPython shell; every model_def.py is built in a clean process by preflight.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from cells import ok

from resontech_nb.capture import capture
from resontech_nb.errors import CaptureError

SWISH_JIT = """
import torch
import torch.nn as nn


@torch.jit.script
def _swish_jit_fwd(x):
    return x.mul(torch.sigmoid(x))


@torch.jit.script
def _swish_jit_bwd(x, grad_output):
    x_sigmoid = torch.sigmoid(x)
    return grad_output * (x_sigmoid * (1 + x * (1 - x_sigmoid)))


class _SwishJitAutoFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return _swish_jit_fwd(x)

    @staticmethod
    def backward(ctx, grad_output):
        x = ctx.saved_tensors[0]
        return _swish_jit_bwd(x, grad_output)
"""

NET_WITH_SWISH = """%%fl_model --input-shape 2,3
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 4)

    def forward(self, x):
        return _SwishJitAutoFn.apply(self.fc(x))
"""


def gradients_in_a_fresh_process(folder, source: str) -> list[float]:
    (folder / "model_def.py").write_text(source.replace("from rt_default_train", "# "), encoding="utf-8")
    code = (
        "import json, torch, model_def\ntorch.manual_seed(0)\nm = model_def.Net()\n"
        "x = torch.linspace(-2, 2, 6).reshape(2, 3)\nm(x).sum().backward()\n"
        "print(type(model_def._swish_jit_fwd).__name__, json.dumps(m.fc.weight.grad.flatten().tolist()))"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, '.')\n{code}"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    kind, grads = done.stdout.split(" ", 1)
    assert kind == "ScriptFunction"
    return [float(g) for g in grads.strip("[]\n").split(",")]


def test_torchscript_helpers_used_by_an_autograd_function_are_written_with_their_decorator(ip, tmp_path):
    ok(ip, SWISH_JIT)
    ok(ip, NET_WITH_SWISH)
    spec = ip.user_ns["fl_model"]
    assert "@torch.jit.script\ndef _swish_jit_fwd(x):" in spec.source
    assert "@torch.jit.script\ndef _swish_jit_bwd(x, grad_output):" in spec.source
    assert "class _SwishJitAutoFn(torch.autograd.Function):" in spec.source
    assert spec.helpers == ["_swish_jit_fwd", "_swish_jit_bwd", "_SwishJitAutoFn"]
    assert spec.output_shape == (2, 4) and spec.param_count == 16

    torch.manual_seed(0)
    notebook = ip.user_ns["Net"]()
    notebook(torch.linspace(-2, 2, 6).reshape(2, 3)).sum().backward()
    expected = notebook.fc.weight.grad.flatten().tolist()
    assert gradients_in_a_fresh_process(tmp_path, spec.source) == pytest.approx(expected)


def test_a_function_scripted_by_a_call_is_scripted_again_in_model_def(ip):
    ok(
        ip,
        "import torch\nimport torch.nn as nn\n\ndef hard_swish(x):\n    return x * torch.clamp(x + 3, 0, 6) / 6\n\n"
        "fast_hard_swish = torch.jit.script(hard_swish)\n\ndef gate(x):\n    return torch.sigmoid(x)\n\n"
        "gate = torch.jit.script(gate)",
    )
    ok(
        ip,
        "%%fl_model --input-shape 1,2\nclass Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.fc = nn.Linear(2, 2)\n\n    def forward(self, x):\n"
        "        return gate(fast_hard_swish(self.fc(x))) + hard_swish(x)\n",
    )
    spec = ip.user_ns["fl_model"]
    assert "def hard_swish(x):" in spec.source and "fast_hard_swish = torch.jit.script(hard_swish)\n" in spec.source
    assert spec.source.count("def hard_swish(x):") == 1
    assert "def gate(x):" in spec.source and "gate = torch.jit.script(gate)\n" in spec.source
    module = spec.load_module()
    assert type(module.fast_hard_swish).__name__ == "ScriptFunction" and type(module.gate).__name__ == "ScriptFunction"
    assert type(module.hard_swish).__name__ == "function"


def test_no_grad_jit_ignore_and_functools_wraps_decorators_are_kept(ip, tmp_path):
    ok(
        ip,
        "import functools\nimport torch\nimport torch.nn as nn\n\n"
        "def traced(fn):\n    @functools.wraps(fn)\n    def wrapper(*args, **kwargs):\n"
        "        wrapper.calls += 1\n        return fn(*args, **kwargs)\n\n"
        "    wrapper.calls = 0\n    return wrapper\n\n"
        "@traced\ndef act(x):\n    return torch.relu(x)\n\n"
        "@torch.no_grad()\ndef init_constant(module, value=0.5):\n    for p in module.parameters():\n"
        "        p.fill_(value)\n    return module\n\n"
        "@torch.jit.ignore\ndef describe(x):\n    return str(x.shape)",
    )
    ok(
        ip,
        "%%fl_model --input-shape 1,2\nclass Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.fc = init_constant(nn.Linear(2, 3))\n\n"
        "    @torch.jit.ignore\n    def debug(self, x):\n        return describe(x)\n\n"
        "    @torch.no_grad()\n    def predict(self, x):\n        return self(x).argmax(-1)\n\n"
        "    def forward(self, x):\n        return act(self.fc(x))\n",
    )
    spec = ip.user_ns["fl_model"]
    for text in (
        "@traced\ndef act(x):",
        "def traced(fn):",
        "@torch.no_grad()\ndef init_constant(module, value=0.5):",
        "@torch.jit.ignore\ndef describe(x):",
        "    @torch.jit.ignore\n    def debug(self, x):",
        "    @torch.no_grad()\n    def predict(self, x):",
    ):
        assert text in spec.source, text
    module = spec.load_module()
    net = module.Net()
    assert float(net.fc.weight.detach().sum()) == 3.0 and net.fc.weight.requires_grad
    out = net(torch.ones(1, 2))
    assert out.requires_grad and float(out.detach().sum()) == 3 * 1.5
    assert net.predict(torch.ones(1, 2)).requires_grad is False and net.debug(torch.ones(1, 2)) == "torch.Size([1, 2])"
    assert module.act.calls == 2 and module.act.__wrapped__.__name__ == "act"


def test_a_torchscript_function_without_source_is_refused_with_its_type_printed_once(ip):
    ok(
        ip,
        "import torch\nimport torch.nn as nn\n_double = torch.jit.CompilationUnit('def f(x):\\n    return x * 2\\n').f",
    )
    ok(ip, "class Net(nn.Module):\n    def forward(self, x):\n        return _double(x)")
    with pytest.raises(CaptureError) as error:
        capture(ip.user_ns["Net"], namespace=ip.user_ns)
    assert str(error.value) == (
        "`_double` used by Net is a TorchScript function whose source cannot be found (torch.jit.ScriptFunction) "
        "and cannot be written into model_def.py: define it in a notebook cell with def under @torch.jit.script"
    )
