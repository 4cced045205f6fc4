"""An algorithm is one unit: its settings, flags, checks and job parts come from its class and one registry line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import resontech_nb as rt
from resontech_nb.algorithms import REGISTRY, Algorithm
from resontech_nb.privacy import REGISTRY as PRIVACY_REGISTRY

# A fifth algorithm, added as the architecture says: one new module in algorithms/ and one registry line, in a copy
# of the package. Everything else (field, flag, check, job parts) must follow from them.
FEDADAM_MODULE = """
from ..fields import Setting
from .fedopt import FedOpt


class FedAdam(FedOpt):
    name = "fedadam"
    settings = {"fedadam_beta": Setting(0.9, "FedAdam's server beta", flag=True, ok=lambda v: 0 <= v < 1,
                                        problem="must be in [0, 1), got {value}")}

    def optimizer_args(self):
        beta = self.federation.fedadam_beta
        return {"path": "torch.optim.Adam", "args": {"lr": 0.01, "betas": [beta, 0.99]}, "config_type": "dict"}
"""

USE_IT = """
import json, sys, tempfile
import torch.nn as nn
import resontech_nb as rt
from resontech_nb.config import FederationConfig
from resontech_nb.data.synthetic import make_synthetic_shards
from resontech_nb.errors import ConfigError
from resontech_nb.notebook.settings import SUBMIT_FLAGS

assert rt.__file__.startswith(sys.argv[1]), rt.__file__
out = {"flag": SUBMIT_FLAGS.get("fedadam_beta")}
try:
    FederationConfig(algorithm="fedadam", fedadam_beta=1.5)
except ConfigError as exc:
    out["refused"] = str(exc)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(x)


spec = rt.capture(Net)
work = tempfile.mkdtemp()
shards = make_synthetic_shards(work + "/shards", n_clients=2, samples_per_client=[4, 4], num_classes=2, img_size=8)
job = rt.build_job(spec, shards, federation={"algorithm": "fedadam", "fedadam_beta": 0.8}, out=work + "/job")
server = json.loads((job / "app" / "config" / "config_fed_server.json").read_text())
out["generator"] = next(c for c in server["components"] if c["id"] == "shareable_generator")
print(json.dumps(out))
"""


def test_a_fifth_algorithm_is_one_module_and_one_registry_line(tmp_path):
    package = tmp_path / "site" / "resontech_nb"
    shutil.copytree(Path(rt.__file__).parent, package, ignore=shutil.ignore_patterns("__pycache__"))
    (package / "algorithms" / "fedadam.py").write_text(FEDADAM_MODULE)
    registry = package / "algorithms" / "__init__.py"
    text = registry.read_text()
    text = text.replace("from .fedavg import FedAvg\n", "from .fedadam import FedAdam\nfrom .fedavg import FedAvg\n")
    text = text.replace("    Scaffold.name: Scaffold,\n", "    Scaffold.name: Scaffold,\n    FedAdam.name: FedAdam,\n")
    registry.write_text(text)
    script = tmp_path / "use_it.py"  # a file, so that capture can read the model's source
    script.write_text(USE_IT)
    env = {**os.environ, "PYTHONPATH": str(package.parent)}
    done = subprocess.run(
        [sys.executable, str(script), str(package)], capture_output=True, text=True, timeout=180, cwd=tmp_path, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["flag"] == ["federation", "fedadam_beta"]
    assert "fedadam_beta must be in [0, 1), got 1.5" in out["refused"]
    assert out["generator"]["args"]["optimizer_args"]["args"]["betas"] == [0.8, 0.99]


def test_every_algorithm_and_filter_is_a_registered_unit():
    assert list(REGISTRY) == ["fedavg", "fedprox", "fedopt", "scaffold"]
    for name, cls in REGISTRY.items():
        assert issubclass(cls, Algorithm) and cls.name == name
        for setting_name in cls.settings:  # an algorithm's settings are FederationConfig's fields
            assert setting_name in rt.FederationConfig.field_names()
    assert list(PRIVACY_REGISTRY) == ["exclude", "percentile", "svt"]


def test_the_package_lists_its_whole_api():
    names = dir(rt)
    for name in ("submit", "attach", "build_job", "make_synthetic_shards", "make_shard", "Job", "capture"):
        assert name in names
    assert "job folder" in (rt.build_job.__doc__ or "")
