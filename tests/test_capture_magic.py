"""%%fl_model in a real IPython shell: fl_evaluate_model from the cell, and every bad input as a one-line UsageError."""

from __future__ import annotations

import pytest
from cells import cell, ok, usage_error  # noqa: F401

NET = (
    "class Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n        self.fc = nn.Linear(4, 2)\n\n"
    "    def forward(self, x):\n        return self.fc(x)\n"
)




@pytest.fixture
def with_nn(ip):
    ok(ip, "import torch\nimport torch.nn as nn")
    return ip


def test_fl_model_captures_fl_evaluate_model_from_the_cell(with_nn, capsys):
    ip = with_nn
    ok(
        ip,
        "%%fl_model --input-shape 3,4\n" + NET + "\n"
        "def fl_train_model(payload):\n    return {'weights': Net().state_dict(), 'samples': 1}\n\n"
        "def evaluate(payload):\n    return {'metrics': {'loss': 1.0}, 'samples': 4}\n\n"
        "fl_evaluate_model = evaluate\n",
    )
    spec = ip.user_ns["fl_model"]
    assert spec.has_train_fn and spec.has_eval_fn and spec.output_shape == (3, 2)
    assert "def evaluate(payload):" in spec.source and "fl_evaluate_model = evaluate" in spec.source
    assert "fl_evaluate_model: from the cell" in capsys.readouterr().out
    assert spec.load_module().fl_evaluate_model({})["samples"] == 4


def test_fl_model_without_eval_fn_keeps_the_contract(with_nn):
    ip = with_nn
    ok(ip, "%%fl_model\n" + NET + "\ndef fl_train_model(payload):\n    return {'weights': {}, 'samples': 1}\n")
    spec = ip.user_ns["fl_model"]
    assert not spec.has_eval_fn and "fl_evaluate_model" not in spec.source


def test_fl_model_shows_the_device_warning(with_nn, capsys):
    ip = with_nn
    ok(ip, "device = 'cpu'")
    ok(
        ip,
        "%%fl_model\n" + NET + "\ndef fl_train_model(payload):\n    m = Net().to(device)\n"
        "    return {'weights': m.state_dict(), 'samples': 1}\n",
    )
    assert "warning: fl_train_model reads the global `device` ('cpu')" in capsys.readouterr().out


@pytest.mark.parametrize(
    "source, message",
    [
        ("%%fl_model\nx = 1\n", "the cell defines no torch.nn.Module subclass: define your model class in this cell"),
        (
            "%%fl_model\nclass Plain:\n    pass\n",
            "the cell defines no torch.nn.Module subclass (Plain does not derive from nn.Module): derive your model",
        ),
        (
            "%%fl_model\n" + NET.replace("nn.Linear(4, 2)", "nn.Linear(4, missing_width)"),
            "name 'missing_width' used by Net is not defined in the notebook: define or import it in the cell",
        ),
        (
            "%%fl_model\n" + NET + "\ndef fl_train_model(payload):\n    return helper_not_defined(payload)\n",
            "name 'helper_not_defined' used by fl_train_model is not defined in the notebook",
        ),
        (
            "%%fl_model\n" + NET + "\ndef fl_evaluate_model(payload):\n    return score_it(payload)\n",
            "name 'score_it' used by fl_evaluate_model is not defined in the notebook",
        ),
        (
            "%%fl_model --name Plain\nclass Plain:\n    pass\n",
            "no torch.nn.Module subclass called Plain (class Plain does not derive from nn.Module): derive it",
        ),
        ("%%fl_model --name Nope\n" + NET, "(nothing of that name is defined; model classes in the notebook: Net)"),
        (
            "%%fl_model --name width\nwidth = 3\n" + NET,
            "--name width: no torch.nn.Module subclass called width (width is",
        ),
        (
            "%%fl_model\nclass Wide(nn.Module):\n    def __init__(self, width, depth=2):\n        super().__init__()\n",
            "Wide.__init__ needs arguments (width): FL sites build the model as Wide(), "
            "so give every __init__ argument a default",
        ),
    ],
    ids=[
        "no-model-class",
        "plain-class",
        "undefined-in-model",
        "undefined-in-train",
        "undefined-in-eval",
        "name-not-a-module",
        "name-undefined",
        "name-not-a-class",
        "init-needs-arguments",
    ],
)
def test_bad_cells_fail_with_one_line_naming_the_fix(with_nn, source, message):
    ip = with_nn
    ok(ip, "%%fl_model\n" + NET)
    previous = ip.user_ns["fl_model"]
    assert message in usage_error(ip, source)
    assert ip.user_ns["fl_model"] is previous


@pytest.mark.parametrize(
    "shape, message",
    [
        ("1,x,3", "--input-shape '1,x,3' is not a shape: 'x' is not an integer"),
        ("0,3", "--input-shape '0,3' is not a shape: dimension 0 is not positive"),
        ("-1,3", "--input-shape '-1,3' is not a shape: dimension -1 is not positive"),
        ("1,,3", "--input-shape '1,,3' is not a shape: '' is not an integer"),
        ('""', "--input-shape '' is empty"),
        ("2.5,4", "--input-shape '2.5,4' is not a shape: '2.5' is not an integer"),
    ],
    ids=["letter", "zero", "negative", "empty-part", "empty", "float"],
)
def test_malformed_input_shapes_are_refused(with_nn, shape, message):
    text = usage_error(with_nn, f"%%fl_model --input-shape {shape}\n" + NET)
    assert message in text and "give positive integers like 1,3,32,32 (separated by commas)" in text


@pytest.mark.parametrize("shape", ["2,4", '"(2, 4)"', "[2,4]", "'2,4'"])
def test_well_formed_input_shapes_run_the_forward_pass(with_nn, shape):
    ok(with_nn, f"%%fl_model --input-shape {shape!s}\n" + NET)
    assert with_nn.user_ns["fl_model"].output_shape == (2, 2)
