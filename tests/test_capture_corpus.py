"""The capture corpus: real model definitions from public sources, split into cells as users paste them.

Each runs in a real IPython shell through %%fl_model; its model_def.py is imported in a fresh Python
process (only the job code next to it) and must build a model with the notebook's parameter count.
Six of them train for 2 rounds on the local target (NVFlare's simulator) on small synthetic shards.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from IPython.core.error import UsageError

CORPUS = Path(__file__).parent / "corpus"
MODELS = sorted(CORPUS.glob("*.py"))
JOBCODE = Path(__file__).resolve().parents[1] / "resontech_nb" / "jobcode"


def cells_of(path: Path) -> list[str]:
    """The file's cells; ``# %% fl_model ARGS`` starts the one run as ``%%fl_model ARGS``."""
    parts = re.split(r"^# %%(.*)$", path.read_text(encoding="utf-8"), flags=re.M)
    cells = []
    for marker, body in zip(parts[1::2], parts[2::2], strict=True):
        marker = marker.strip()
        cells.append((f"%%{marker}\n" if marker.startswith("fl_model") else "") + body.strip() + "\n")
    return cells


def run_notebook(ip, path: Path):
    for cell in cells_of(path):
        result = ip.run_cell(cell, store_history=True)
        error = result.error_in_exec or result.error_before_exec
        assert result.success, f"{path.name}: {error}" if isinstance(error, UsageError) else error
    return ip.user_ns["fl_model"]


def test_the_corpus_holds_at_least_20_models_each_saying_where_it_comes_from():
    assert len(MODELS) >= 20
    for path in MODELS:
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
        assert doc and re.search(r"Source: https://\S+", doc), f"{path.name} does not say where it comes from"
        cells = cells_of(path)
        assert len(cells) >= 2 and cells[-1].startswith("%%fl_model"), f"{path.name}: split it into cells"


@pytest.mark.parametrize("path", MODELS, ids=[p.stem for p in MODELS])
def test_corpus_model_imports_in_a_fresh_process_with_the_notebooks_parameter_count(ip, path, tmp_path):
    spec = run_notebook(ip, path)
    notebook_model = ip.user_ns[spec.class_name]()
    expected = sum(p.numel() for p in notebook_model.parameters())
    assert spec.param_count == expected
    (tmp_path / "model_def.py").write_text(spec.source, encoding="utf-8")
    code = (
        f"import sys; sys.path[:0] = [{str(tmp_path)!r}, {str(JOBCODE)!r}]\n"
        "import json, model_def\n"
        f"m = model_def.{spec.class_name}()\n"
        "print(json.dumps([sum(p.numel() for p in m.parameters()), sorted(m.state_dict())]))"
    )
    done = subprocess.run([sys.executable, "-I", "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    count, keys = json.loads(done.stdout)
    assert count == expected and keys == sorted(notebook_model.state_dict())


TRAINED = {
    # corpus model -> (image size of the synthetic shards, classes the model outputs)
    "pt_blitz_cifar10_net": (32, 10),
    "torchvision_style_resnet": (16, 10),
    "vit_einops": (16, 10),
    "lstm_text_classifier": (16, 4),  # its own fl_train_model (token sequences; num_classes unused)
    "nanogpt_style_gpt": (16, 64),  # its own fl_train_model and fl_evaluate_model
    "pt_examples_mnist_argparse_training": (16, 4),  # its own loop: args, open() on the manifest, PIL images
}


@pytest.mark.slow
@pytest.mark.parametrize("stem", sorted(TRAINED))
def test_corpus_model_trains_two_rounds_on_the_local_target(ip, stem, tmp_path):
    from resontech_nb import submit
    from resontech_nb.config.settings import FederationConfig, TrainingConfig
    from resontech_nb.data.synthetic import make_synthetic_shards

    spec = run_notebook(ip, CORPUS / f"{stem}.py")
    img_size, num_classes = TRAINED[stem]
    shards = make_synthetic_shards(tmp_path / "shards", n_clients=2, samples_per_client=(12, 16), img_size=img_size)
    job = submit(
        spec,
        shards,
        training=TrainingConfig(img_size=img_size, num_classes=num_classes, local_epochs=1, batch_size=8),
        federation=FederationConfig(num_rounds=2, min_clients=2, wait_time_after_min_received=0, job_name=stem),
    )
    assert job.wait(timeout=600) == "FINISHED", job.error
    assert [r.round for r in job.rounds] == [0, 1]
    assert all(r.global_loss is not None and r.global_loss == r.global_loss for r in job.rounds)
    model = ip.user_ns[spec.class_name]()
    model.load_state_dict(job.result())  # the trained weights fit the notebook's own class
    assert all(torch.isfinite(v).all() for v in job.result().values() if v.is_floating_point())
