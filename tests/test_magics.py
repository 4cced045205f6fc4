"""The magics in a real IPython shell: %%fl_model, %fl_config, %config, %fl_login, and their errors.

%fl_submit's NVFlare path is covered by the job tests; here only what needs no NVFlare.
"""

from __future__ import annotations

import dataclasses
import getpass
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cells import cell, ok, usage_error  # noqa: F401

from resontech_nb.capture import ModelSpec
from resontech_nb.config.settings import SECRET_FIELDS, FederationConfig, ResonTechConfig, TrainingConfig
from resontech_nb.job.handle import Job, JobState
from resontech_nb.notebook.magics import FLMagics
from resontech_nb.notebook.settings import SUBMIT_FLAGS
from resontech_nb.records.rounds import ClientRound, RoundRecord
from resontech_nb.records.status import ABORTED, RUNNING

JOBCODE = Path(__file__).resolve().parents[1] / "resontech_nb" / "jobcode"
SECRET = "s3cr3t-PASSWORD"

MODEL_CELL = """%%fl_model --input-shape 2,4
class Net(tnn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, HIDDEN)

    def forward(self, x):
        return act(self.fc(x))
"""




def magics(ip) -> FLMagics:
    return next(c for c in ip.configurables if isinstance(c, FLMagics))


@pytest.fixture
def with_model(ip):
    """A notebook whose model uses an alias, a helper and a constant from earlier cells; fl_model captured."""
    ok(ip, "import torch.nn as nn\nfrom torch import nn as tnn")
    ok(ip, "import torch.nn.functional as F\n\ndef act(x):\n    return F.relu(x)")
    ok(ip, "HIDDEN = 16")
    ok(ip, MODEL_CELL)
    return ip


def test_fl_model_captures_the_cell_and_model_def_runs_in_a_fresh_process(capsys, with_model, tmp_path):
    spec = with_model.user_ns["fl_model"]
    assert isinstance(spec, ModelSpec) and spec.class_name == "Net"
    assert spec.output_shape == (2, 16) and spec.param_count == 4 * 16 + 16
    assert "ModelSpec Net: 80 parameters" in capsys.readouterr().out  # the summary is shown under the cell
    for line in ("import torch.nn as nn", "import torch.nn as tnn", "import torch.nn.functional as F", "HIDDEN = 16"):
        assert line in spec.source
    (tmp_path / "model_def.py").write_text(spec.source)
    done = subprocess.run(
        [sys.executable, "-c", "import torch, model_def; print(tuple(model_def.Net()(torch.ones(3, 4)).shape))"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(JOBCODE)},  # rt_default_train ships next to model_def.py in a job
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.stdout.strip() == "(3, 16)", done.stderr


def test_fl_model_captures_fl_train_model_from_the_cell(ip):
    ok(
        ip,
        "%%fl_model\nimport torch\nimport torch.nn as nn\n\nclass Tiny(nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n        self.w = nn.Parameter(torch.zeros(2))\n\n"
        "def fl_train_model(payload):\n    return {'weights': payload['initial_weights'], 'samples': 1}\n",
    )
    spec = ip.user_ns["fl_model"]
    assert spec.has_train_fn and "def fl_train_model(payload):" in spec.source
    assert "rt_default_train" not in spec.source


def test_name_picks_one_of_several_classes(ip):
    ok(ip, "import torch.nn as nn")
    ok(ip, "%%fl_model --name B\nclass A(nn.Module):\n    pass\n\nclass B(nn.Module):\n    pass\n")
    assert ip.user_ns["fl_model"].class_name == "B"


@pytest.mark.parametrize(
    "body, message",
    [
        ("x = 1\n", "the cell defines no torch.nn.Module subclass: define your model class in this cell"),
        (
            "class A(nn.Module):\n    pass\n\nclass B(nn.Module):\n    pass\n",
            "several nn.Module subclasses (A, B): say which is the model with %%fl_model --name",
        ),
        ("class Broken(nn.Module):\n    def forward(self, x)\n        return x\n", "syntax error in the cell, line 2"),
        (
            "class Leaky(nn.Module):\n    def forward(self, x):\n        log_file.write('x')\n        return x\n",
            "`log_file` used by Leaky is an open file (_io.TextIOWrapper) and cannot be written into model_def.py",
        ),
        (
            "class Lost(nn.Module):\n    def forward(self, x):\n        return missing_helper(x)\n",
            "name 'missing_helper' used by Lost is not defined in the notebook: define or import it in the cell",
        ),
        ("class Fails(nn.Module):\n    pass\nraise RuntimeError('boom')\n", "the cell raised an error"),
    ],
    ids=["no-model", "two-models", "syntax-error", "open-file", "undefined-name", "cell-raises"],
)
def test_fl_model_errors_are_one_line_and_keep_the_previous_model(with_model, body, message, tmp_path):
    ip = with_model
    previous = ip.user_ns["fl_model"]
    ok(ip, f"log_file = open({str(tmp_path / 'log.txt')!r}, 'w')")
    assert message in usage_error(ip, "%%fl_model\n" + body)
    assert ip.user_ns["fl_model"] is previous
    ip.user_ns["log_file"].close()


def test_bad_input_shape_and_failing_forward_pass(with_model):
    ip = with_model
    previous = ip.user_ns["fl_model"]
    assert "--input-shape 'a,b' is not a shape" in usage_error(ip, MODEL_CELL.replace("2,4", "a,b"))
    assert "forward pass on input shape (2, 5) failed" in usage_error(ip, MODEL_CELL.replace("2,4", "2,5"))
    assert ip.user_ns["fl_model"] is previous


def test_fl_config_shows_and_sets_settings_without_the_password(ip, capsys):
    ok(ip, "%fl_config batch_size=16 num_rounds=3 job_name=my_job target=local")
    m = magics(ip)
    assert (m.training.batch_size, m.federation.num_rounds, m.federation.job_name) == (16, 3, "my_job")
    capsys.readouterr()
    ok(ip, "%fl_config")
    shown = capsys.readouterr().out
    assert "batch_size = 16" in shown and "password = not set" in shown

    assert "use %fl_login" in usage_error(ip, f"%fl_config password={SECRET}")
    assert "batch_size must be >= 1" in usage_error(ip, "%fl_config batch_size=0 num_rounds=9")
    assert m.federation.num_rounds == 3  # a bad value in the line changes nothing
    assert "unknown setting 'batchsize'" in usage_error(ip, "%fl_config batchsize=8")
    assert "unknown target 'cloud'" in usage_error(ip, "%fl_config target=cloud")
    capsys.readouterr()
    ok(ip, "%fl_config sftp_key_file=~/.ssh/legacy_key")
    assert "SFTP is deprecated" in capsys.readouterr().out
    assert m.resontech.sftp_key_file == "~/.ssh/legacy_key"


def test_config_magic_sets_traits_that_reach_the_session_configs(ip, capsys):
    ok(ip, "%config FLMagics.learning_rate = 0.05")
    ok(ip, "%config FLMagics.s3_bucket = 'my-bucket'")
    m = magics(ip)
    assert m.training.learning_rate == 0.05 and m.resontech.s3_bucket == "my-bucket"
    ok(ip, "%config FLMagics.batch_size = 0")  # refused by validation: IPython logs it, the value stays
    assert m.training.batch_size == 32 and m.batch_size == 32
    ok(ip, "%config FLMagics")
    assert "learning_rate" in capsys.readouterr().out
    config_traits = set(m.trait_names(config=True)) - {"target"}
    expected = set(ResonTechConfig.field_names() + TrainingConfig.field_names() + FederationConfig.field_names())
    expected -= {"password"}
    assert expected <= config_traits


def test_every_config_field_but_the_password_is_a_setting_with_help(ip, capsys):
    """A field added to a config class becomes a trait, with the help its ``setting(...)`` declares."""
    traits = FLMagics.class_traits(config=True)
    kinds = {"int": int, "float": float, "str": str, "bool": bool}
    ok(ip, "%config FLMagics")
    shown = capsys.readouterr().out
    names = []
    for cls in (ResonTechConfig, TrainingConfig, FederationConfig):
        for f in dataclasses.fields(cls):
            names.append(f.name)
            if f.name in SECRET_FIELDS:
                assert f.name not in traits
                continue
            trait = traits[f.name]
            assert trait.help.strip(), f"{cls.__name__}.{f.name} has no help: give its setting(...) one"
            assert trait.default_value == f.default and type(trait.default_value) is kinds[f.type]
            assert f"FLMagics.{f.name}=" in shown and trait.help in shown
    flagged = {name for _, name in SUBMIT_FLAGS.values()}
    assert {"num_rounds", "local_epochs", "learning_rate", "algorithm", "fedprox_mu", "privacy"} <= flagged
    doc = ip.find_line_magic("fl_submit").__doc__
    for cls in (TrainingConfig, FederationConfig):
        for name, described in cls.settings().items():
            if described.flag_name(name):
                assert f"--{described.flag_name(name)}" in doc and f"{cls.__name__}.{name}" in doc
    assert set(traits) == set(names) - SECRET_FIELDS | {"target"}


def test_ipython_config_settings_apply_and_bad_ones_are_skipped(ipython_shell, clean_env, caplog):
    ipython_shell.config.FLMagics.num_rounds = 7
    ipython_shell.config.FLMagics.batch_size = 0
    ipython_shell.config.FLMagics.target = "cloud"
    try:
        with caplog.at_level(logging.WARNING, logger="resontech_nb.notebook.settings"):
            ipython_shell.extension_manager.load_extension("resontech_nb")
        m = magics(ipython_shell)
        assert (m.num_rounds, m.federation.num_rounds) == (7, 7)
        assert (m.batch_size, m.training.batch_size, m.target) == (32, 32, "local")
        assert "ignoring FLMagics.batch_size from the IPython config" in caplog.text
        assert "ignoring FLMagics.target from the IPython config: unknown target 'cloud'" in caplog.text
    finally:
        ipython_shell.extension_manager.unload_extension("resontech_nb")
        ipython_shell.config.pop("FLMagics", None)


def test_environment_settings_are_the_session_defaults(ipython_shell, clean_env):
    clean_env.setenv("RESONTECH_BATCH_SIZE", "8")
    clean_env.setenv("RESONTECH_PASSWORD", SECRET)
    ipython_shell.extension_manager.load_extension("resontech_nb")
    try:
        m = magics(ipython_shell)
        assert m.training.batch_size == 8 and m.batch_size == 8 and m.resontech.password == SECRET
        assert SECRET not in m._settings_text() and "password = set" in m._settings_text()
    finally:
        ipython_shell.extension_manager.unload_extension("resontech_nb")


def test_fl_login_keeps_the_password_in_memory_only(ip, monkeypatch, capfd):
    prompts = []
    monkeypatch.setattr(getpass, "getpass", lambda prompt="": prompts.append(prompt) or SECRET)
    ok(ip, "%fl_login --email me@example.com")
    ok(ip, "print([repr(c.resontech) for c in get_ipython().configurables if hasattr(c, 'resontech')])")
    ok(ip, "%fl_config")
    m = magics(ip)
    assert m.resontech.password == SECRET and m.resontech.email == "me@example.com"
    assert prompts == ["ResonTech password for me@example.com: "]

    out, err = capfd.readouterr()
    assert "password = set" in out and "password kept in memory" in out
    assert SECRET not in out + err
    history = [src for _, _, (src, _) in ip.history_manager.get_range(output=True)]
    assert history and all(SECRET not in src for src in history)
    assert all(SECRET not in repr(v) for k, v in ip.user_ns.items() if not k.startswith("_"))


def test_fl_login_with_no_password_changes_nothing(ip, monkeypatch):
    monkeypatch.setattr(getpass, "getpass", lambda prompt="": "")
    assert "no password entered" in usage_error(ip, "%fl_login")
    assert magics(ip).resontech.password == ""


def test_job_magics_need_a_model_or_a_job(ip):
    assert "run a %%fl_model cell first" in usage_error(ip, "%fl_submit --shards data")
    ok(ip, "import torch.nn as nn")
    ok(ip, "%%fl_model\nclass Net(nn.Module):\n    pass\n")
    assert "give the data with --shards" in usage_error(ip, "%fl_submit")
    assert "--shards" in usage_error(ip, "%fl_submit --shards no/such/folder --build-only out")
    assert "--rounds" in usage_error(ip, "%fl_submit --rounds many")
    for magic in ("fl_status", "fl_dashboard", "fl_abort"):
        assert "run %fl_submit first" in usage_error(ip, f"%{magic}")
    ok(ip, "not_a_job = 3")
    assert "not_a_job is a int, not a Job" in usage_error(ip, "%fl_status not_a_job")
    assert "no-such-job" in usage_error(ip, "%fl_status no-such-job")


def test_magic_help_lists_the_flags(ip):
    doc = ip.find_line_magic("fl_submit").__doc__
    for flag in ("--shards", "--rounds", "--min-clients", "--build-only", "--as", "--wait", "--target"):
        assert flag in doc
    assert "--input-shape" in ip.find_cell_magic("fl_model").__doc__


def test_unload_removes_the_magics(ipython_shell, clean_env):
    ipython_shell.extension_manager.load_extension("resontech_nb")
    ipython_shell.extension_manager.unload_extension("resontech_nb")
    assert ipython_shell.find_line_magic("fl_submit") is None
    assert not any(isinstance(c, FLMagics) for c in ipython_shell.configurables)


def test_fl_submit_build_only_writes_the_job_with_the_flags(with_model, tmp_path, capsys):
    from resontech_nb.data.synthetic import make_synthetic_shards

    make_synthetic_shards(tmp_path / "shards", n_clients=2, img_size=8, samples_per_client=[4, 6])
    ok(
        with_model,
        "%fl_submit --shards shards --rounds 3 --min-clients 2 --batch-size 4 --job-name nb_job --build-only job",
    )
    assert "nothing submitted" in capsys.readouterr().out
    job = tmp_path / "job"
    assert (job / "app/custom/model_def.py").read_text() == with_model.user_ns["fl_model"].source
    assert json.loads((job / "meta.json").read_text())["name"] == "nb_job"
    server = json.loads((job / "app/config/config_fed_server.json").read_text())
    assert server["workflows"][0]["args"]["num_rounds"] == 3
    client = json.loads((job / "app/config/config_fed_client.json").read_text())
    assert client["executors"][0]["executor"]["args"]["hyperparams"]["batch_size"] == 4
    assert "fl_job" not in with_model.user_ns  # nothing was submitted
    assert "min_clients=3 but only 2 shard(s)" in usage_error(
        with_model, "%fl_submit --shards shards --min-clients 3 --build-only job2"
    )


class ScriptedJob(Job):
    """A Job whose target is this test: running until aborted, with one finished round."""

    target = "scripted"

    def __init__(self) -> None:
        super().__init__("job-42", num_rounds=3, clients=["site-1"])
        self.aborted = False

    def _poll(self) -> JobState:
        return JobState(ABORTED if self.aborted else RUNNING)

    def _fetch_rounds(self) -> list[RoundRecord]:
        return [RoundRecord(0, 3, 0.5, {"site-1": ClientRound("ok", 0.5, 10)}, 0.0, 1.0)]

    def _fetch_result(self, which="final") -> dict:
        return {}

    def _abort(self) -> None:
        self.aborted = True


def test_status_dashboard_and_abort_act_on_the_named_job(ip, capsys):
    ip.user_ns["fl_job"] = ScriptedJob()
    ip.user_ns["other"] = other = ScriptedJob()
    ok(ip, "%fl_status")
    assert "job job-42 [scripted] RUNNING: round 1 of 3, global loss 0.5000" in capsys.readouterr().out
    ok(ip, "%fl_dashboard other")
    assert "job-42" in capsys.readouterr().out
    ok(ip, "%fl_abort other")
    assert "ABORTED" in capsys.readouterr().out
    assert other.aborted and not ip.user_ns["fl_job"].aborted
