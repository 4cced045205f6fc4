"""The bad-input catalogue: each row is a mistake a user makes, through a magic or the Python API.

Every row asserts an error that names the fix (a one-line IPython ``UsageError`` in magics; a specific
``resontech_nb.errors`` class in the API), raised before anything is built, uploaded or submitted, and
that nothing was left behind: no new process, nothing under ``jobs/``, ``index/`` or ``builds/`` of
RESONTECH_NB_HOME, no build folder in the temp dir, no new S3 object or bucket, no platform job.
The S3 and platform rows run against the real servers (the ``s3`` fixture and ``PlatformServer``).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import fl_models
import psutil
import pytest
import torch
from IPython.core.error import UsageError
from PIL import Image

from resontech_nb import api
from resontech_nb.capture import capture
from resontech_nb.config.settings import FederationConfig, ResonTechConfig
from resontech_nb.data.synthetic import make_synthetic_shards
from resontech_nb.errors import (
    AuthError,
    ConfigError,
    JobBuildError,
    JobNotFoundError,
    ManifestError,
    PlatformError,
    SubmitError,
)
from resontech_nb.platform import PlatformServer
from resontech_nb.targets.nvflare.poc import PocDeployment
from resontech_nb.targets.nvflare.poc_project import free_port as closed_port

BUCKET = "bad-input"
EMAIL = "erin@example.com"
PASSWORD = "erin-Secret-6203"
MISSING_BUCKET = "no-such-bucket-here"


# -- test data --------------------------------------------------------------------------------------



def png(size: int = 8) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), (120, 40, 200)).save(buf, format="PNG")
    return buf.getvalue()


def line(i: int = 0, uri: str | None = None, y: object = 0) -> str:
    return json.dumps({"id": f"s{i}", "uri": uri or f"file://images/{i}.png", "y": y})


def write_zip(path: Path, entries: dict[str, bytes | str]) -> str:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(zipfile.ZipInfo(name), data)
    return str(path)


def one_image_shard(path: Path, manifest: str, image: bytes | None = None) -> str:
    return write_zip(path, {"images/0.png": png() if image is None else image, "manifest.ndjson": manifest})


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> SimpleNamespace:
    """Two good shards, one bad shard per manifest mistake, and the paths the other rows need."""
    root = tmp_path_factory.mktemp("bad_input")
    good = root / "good"
    make_synthetic_shards(good, n_clients=2, img_size=8, seed=5)
    ok_line = line() + "\n"
    paths = {
        "good": str(good),
        "nowhere": str(root / "nowhere" / "site-1.zip"),
        "no_manifest": write_zip(root / "no_manifest.zip", {"images/0.png": png()}),
        "nested_manifest": write_zip(
            root / "nested_manifest.zip", {"shard/manifest.ndjson": ok_line, "shard/images/0.png": png()}
        ),
        "bad_json": one_image_shard(root / "bad_json.zip", ok_line + '{"id": "s1", "uri": \n'),
        "label_5": one_image_shard(root / "label_5.zip", line(y=5) + "\n"),
        "negative_label": one_image_shard(root / "negative_label.zip", line(y=-1) + "\n"),
        "uri_escapes": one_image_shard(root / "uri_escapes.zip", line(uri="file://../outside.png") + "\n"),
        "absolute_uri": one_image_shard(root / "absolute_uri.zip", line(uri="file:///etc/passwd") + "\n"),
        "entry_escapes": write_zip(
            root / "entry_escapes.zip", {"images/0.png": png(), "../evil.png": png(), "manifest.ndjson": ok_line}
        ),
        "unreachable_https": one_image_shard(
            root / "unreachable_https.zip", line(uri=f"https://127.0.0.1:{closed_port()}/a.png") + "\n"
        ),
        "http_uri": one_image_shard(root / "http_uri.zip", line(uri="http://example.com/a.png") + "\n"),
        "missing_file": one_image_shard(root / "missing_file.zip", line(uri="file://images/9.png") + "\n"),
        "not_an_image": one_image_shard(root / "not_an_image.zip", ok_line, image=b"just some text, not a picture\n"),
        "truncated_png": one_image_shard(root / "truncated_png.zip", ok_line, image=png(64)[:60]),
        "empty_manifest": one_image_shard(root / "empty_manifest.zip", ""),
        "duplicate_id": write_zip(
            root / "duplicate_id.zip",
            {
                "images/0.png": png(),
                "images/1.png": png(),
                "manifest.ndjson": f"{line(0)}\n{line(0, 'file://images/1.png')}\n",
            },
        ),
        "missing_fields": one_image_shard(root / "missing_fields.zip", '{"id": "s0"}\n'),
        "corrupt_zip": str(root / "corrupt.zip"),
        "not_zip": str(root / "shard.tar"),
        "empty_folder": str(root / "empty_folder"),
        "extracted": str(root / "extracted"),
        "nonempty": str(root / "nonempty"),
        "a_file": str(root / "a_file.txt"),
    }
    Path(paths["corrupt_zip"]).write_bytes(b"PK\x03\x04 this is not really a zip")
    Path(paths["not_zip"]).write_bytes(b"tar?")
    Path(paths["empty_folder"]).mkdir()
    Path(paths["extracted"]).mkdir()
    Path(paths["extracted"], "manifest.ndjson").write_text(ok_line)
    Path(paths["nonempty"]).mkdir()
    Path(paths["nonempty"], "notes.txt").write_text("keep me")
    Path(paths["a_file"]).write_text("a file, not a folder")
    spec = capture(fl_models.DeltaNet, fl_models.delta_train)
    return SimpleNamespace(paths=paths, spec=spec, root=root)


# -- "nothing left behind" --------------------------------------------------------------------------


def _home_entries() -> list[Path]:
    home = Path(os.environ["RESONTECH_NB_HOME"])
    if not home.is_dir():
        return []
    return sorted(p for sub in ("jobs", "index", "builds") for p in (home / sub).glob("*"))


def _build_dirs() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("rt_build_*"))


def _s3_state(s3, **credentials) -> tuple[set[str], set[str]] | None:
    """Every bucket, and every object key of the test bucket."""
    if s3 is None:
        return None
    client = s3_client(s3, **credentials)
    buckets = {b["Name"] for b in client.list_buckets()["Buckets"]}
    objects = {o["Key"] for o in client.list_objects_v2(Bucket=s3.bucket).get("Contents", [])}
    return buckets, objects


@contextmanager
def nothing_left(s3=None, platform: PlatformServer | None = None) -> Iterator[None]:
    me = psutil.Process()
    children = {p.pid for p in me.children(recursive=True)}
    builds = _build_dirs()
    home_before = _home_entries()
    s3_before = _s3_state(s3)
    jobs_before = {j.id for j in platform.store.jobs()} if platform else set()
    yield
    started = [p for p in me.children(recursive=True) if p.pid not in children]
    assert not started, f"processes left running: {[p.cmdline() for p in started]}"
    assert _home_entries() == home_before, "a job folder, index entry or build was left under RESONTECH_NB_HOME"
    assert _build_dirs() <= builds, "a build folder was left in the temp dir"
    assert _s3_state(s3) == s3_before, "an S3 object or bucket was created"
    if platform:
        assert {j.id for j in platform.store.jobs()} == jobs_before, "a platform job was created"


def one_line(message: str) -> str:
    assert message and "\n" not in message and "Traceback" not in message, message
    return message


# -- the magics --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """``line`` (formatted with the data paths) must fail with a UsageError containing ``fix``."""

    name: str
    line: str
    fix: str
    before: str = ""  # a cell run first
    model: bool = True  # fl_model is captured


SUBMIT = "%fl_submit --shards {good}"
MAGIC_ROWS = [
    # the shards (PRODUCT.md "Bad input")
    Row("manifest missing", "%fl_submit --shards {no_manifest}", "manifest.ndjson not found at the root"),
    Row("manifest not at the ZIP root", "%fl_submit --shards {nested_manifest}", "put it at the ZIP root"),
    Row("invalid JSON on line 2", "%fl_submit --shards {bad_json}", "line 2 of manifest.ndjson"),
    Row("label out of range", "%fl_submit --shards {label_5} --num-classes 2", "raise num_classes or set it to 0"),
    Row("negative label", "%fl_submit --shards {negative_label}", "class indices start at 0"),
    Row("file:// URI escaping the shard", "%fl_submit --shards {uri_escapes}", "use a path relative to the shard"),
    Row("absolute file:// URI", "%fl_submit --shards {absolute_uri}", "escapes the shard"),
    Row("ZIP entry escaping the shard", "%fl_submit --shards {entry_escapes}", "rebuild the ZIP with paths relative"),
    Row("unreachable https URI", "%fl_submit --shards {unreachable_https}", "check the URL"),
    Row("plain http URI", "%fl_submit --shards {http_uri}", "use https://"),
    Row("URI naming a file not in the ZIP", "%fl_submit --shards {missing_file}", "add the file or fix the uri"),
    Row("image entry that is not an image", "%fl_submit --shards {not_an_image}", "replace it with a PNG or JPEG"),
    Row("truncated PNG", "%fl_submit --shards {truncated_png}", "replace it with a PNG or JPEG"),
    Row("empty manifest", "%fl_submit --shards {empty_manifest}", "add samples or leave this shard out"),
    Row("duplicate sample id", "%fl_submit --shards {duplicate_id}", "give every sample its own id"),
    Row("manifest line missing fields", "%fl_submit --shards {missing_fields}", "every line needs id, uri and y"),
    Row("corrupt ZIP", "%fl_submit --shards {corrupt_zip}", "rebuild it"),
    Row("shards not a ZIP", "%fl_submit --shards {not_zip}", "shards are ZIPs with manifest.ndjson"),
    Row("shards path missing", "%fl_submit --shards {nowhere}", "check the path"),
    Row("folder without shard ZIPs", "%fl_submit --shards {empty_folder}", "put one ZIP per site there"),
    Row("extracted shard folder", "%fl_submit --shards {extracted}", "zip it"),
    # %fl_submit's own line
    Row("no --shards", "%fl_submit --rounds 2", "give the data with --shards"),
    # evaluation and starting weights (issue 10)
    Row("--init-weights naming no variable", SUBMIT + " --init-weights nosuch", "no variable 'nosuch' in the notebook"),
    Row(
        "--init-weights not a state_dict", SUBMIT + " --init-weights x", "x is a int, not a state_dict", before="x = 42"
    ),
    Row(
        "--init-weights of the wrong shape",
        SUBMIT + " --init-weights w",
        "initial_weights['b'] has shape (4,), the model's is (3,)",
        before="import torch\nw = {'w': torch.zeros(2, 3), 'b': torch.zeros(4)}",
    ),
    Row(
        "--select-metric without fl_evaluate_model",
        SUBMIT + " --select-metric accuracy",
        "define def fl_evaluate_model",
    ),
    Row("--cross-site without fl_evaluate_model", SUBMIT + " --cross-site", "define def fl_evaluate_model"),
    Row("--train-timeout 0", SUBMIT + " --train-timeout 0", "train_timeout must be >= 1 second"),
    Row("--select-metric with a space", SUBMIT + " --select-metric 'val acc'", "must be a validation metric name"),
    # algorithms and privacy filters (issue 13)
    Row("unknown --algorithm", SUBMIT + " --algorithm fedsgd", "use one of: fedavg, fedprox, fedopt, scaffold"),
    Row("negative --fedprox-mu", SUBMIT + " --algorithm fedprox --fedprox-mu -1", "fedprox_mu must be >= 0"),
    Row("unknown --fedopt-optimizer", SUBMIT + " --algorithm fedopt --fedopt-optimizer rms", "use one of: sgd, adam"),
    Row("negative --fedopt-lr", SUBMIT + " --algorithm fedopt --fedopt-lr -0.1", "fedopt_lr must be >= 0"),
    Row("--fedopt-momentum 1", SUBMIT + " --algorithm fedopt --fedopt-momentum 1", "fedopt_momentum must be"),
    Row("unknown privacy filter", SUBMIT + " --privacy blur", "use exclude, percentile, svt"),
    Row("privacy parameter without a value", SUBMIT + " --privacy percentile:gamma=", "write gamma=0.01"),
    Row("unknown privacy parameter", SUBMIT + " --privacy svt:budget=1", "its parameters: fraction, epsilon"),
    Row("negative privacy parameter", SUBMIT + " --privacy svt:epsilon=-1", "svt's epsilon must be above 0"),
    Row("exclude matching no key", SUBMIT + " --privacy exclude:^fc", "withholds none of the model's state_dict keys"),
    Row("exclude matching every key", SUBMIT + " --privacy 'exclude:.'", "no site would send anything"),
    Row("privacy with --cross-site", SUBMIT + " --privacy exclude:^b --cross-site", "use one or the other"),
    Row(
        "unbalanced quote",
        '%fl_submit --shards "{good}',
        "cannot split the line (No closing quotation): close the quote",
    ),
    Row(
        "quoted path with spaces",
        '%fl_submit --shards "{good}/no such dir/site-1.zip"',
        "no such dir/site-1.zip does not exist: check the path",
    ),
    Row("--shards without a path", "%fl_submit --shards", "expected one argument; %fl_submit? lists"),
    Row("no captured model", SUBMIT, "run a %%fl_model cell first", model=False),
    Row("zero rounds", SUBMIT + " --rounds 0", "num_rounds must be >= 1"),
    Row("negative rounds", SUBMIT + " --rounds -3", "num_rounds must be >= 1"),
    Row("rounds not a number", SUBMIT + " --rounds three", "invalid int value: 'three'; %fl_submit? lists its flags"),
    Row("zero batch size", SUBMIT + " --batch-size 0", "batch_size must be >= 1"),
    Row("negative batch size", SUBMIT + " --batch-size -8", "batch_size must be >= 1"),
    Row("zero learning rate", SUBMIT + " --lr 0", "learning_rate must be > 0"),
    Row("negative learning rate", SUBMIT + " --lr -0.01", "learning_rate must be > 0"),
    Row("zero epochs", SUBMIT + " --epochs 0", "local_epochs must be >= 1"),
    Row("zero min-clients", SUBMIT + " --min-clients 0", "min_clients must be >= 1"),
    Row("negative min-clients", SUBMIT + " --min-clients -1", "min_clients must be >= 1"),
    Row("min-clients above the shards", SUBMIT + " --min-clients 3", "lower --min-clients or add shards"),
    Row("tiny img-size", SUBMIT + " --img-size 2", "img_size must be between 4 and 4096"),
    Row("negative num-classes", SUBMIT + " --num-classes -1", "num_classes must be >= 0"),
    Row("unknown target", SUBMIT + " --target cloud", "use one of: local, nvflare, resontech"),
    Row("job name with bad characters", SUBMIT + " --job-name 'my job/1'", "job_name 'my job/1' must be 1-64 letters"),
    Row("unknown flag", SUBMIT + " --roundz 3", "--roundz 3 (did you mean --rounds?)"),
    Row("--as not an identifier", SUBMIT + " --as 1job", "is not a valid variable name"),
    Row("--as with a dash", SUBMIT + " --as my-job", "is not a valid variable name"),
    Row("--build-only to a non-empty folder", SUBMIT + " --build-only {nonempty}", "choose an empty folder"),
    Row("--build-only to a file", SUBMIT + " --build-only {a_file}", "give --build-only a folder path"),
    Row("resontech target not configured", SUBMIT + " --target resontech", "the resontech target needs base_url"),
    Row("nvflare target without a startup kit", SUBMIT + " --target nvflare", "needs the admin's startup kit"),
    # %fl_status / %fl_abort / %fl_dashboard
    Row("status of an unknown job id", "%fl_status nojob-20250101-000000-abcdef", "check the id"),
    Row("abort of an unknown job id", "%fl_abort nojob-20250101-000000-abcdef", "check the id"),
    Row("dashboard of an unknown job id", "%fl_dashboard nojob-20250101-000000-abcdef", "check the id"),
    Row("status with a ../ id", "%fl_status ../x", "is not a job id"),
    Row("abort with an absolute path id", "%fl_abort /etc", "is not a job id"),
    Row("dashboard with a slashed id", "%fl_dashboard jobs/rt_job-1", "is not a job id"),
    Row("status before any submit", "%fl_status", "run %fl_submit first"),
    Row("status of a variable that is no Job", "%fl_status answer", "not a Job", before="answer = 42"),
    Row("status with an unknown flag", "%fl_status --all", "%fl_status? lists its flags"),
    # %fl_config
    Row("config unknown key", "%fl_config batchsize=16", "unknown setting 'batchsize'"),
    Row("config not key=value", "%fl_config batch_size", "expected key=value"),
    Row("config int that is not one", "%fl_config batch_size=big", "must be an integer"),
    Row("config zero rounds", "%fl_config num_rounds=0", "num_rounds must be >= 1"),
    Row("config negative learning rate", "%fl_config learning_rate=-1", "learning_rate must be > 0"),
    Row("config unknown target", "%fl_config target=cloud", "use one of: local, nvflare, resontech"),
    Row("config base_url not http", "%fl_config base_url=ftp://example.com", "must start with http:// or https://"),
    Row("config bad bucket name", "%fl_config s3_bucket=My_Bucket", "is not a valid S3 bucket name"),
    Row("config bad email", "%fl_config email=erin", "is not an email address"),
    Row("config password", "%fl_config password=hunter2-Secret", "use %fl_login"),
    Row("config manifest in a subfolder", "%fl_config manifest_file=data/manifest.ndjson", "a file name at the"),
    Row("config zero download pieces", "%fl_config download_chunk_mb=0", "download_chunk_mb must be above 0"),
    Row("config negative gc rounds", "%fl_config memory_gc_rounds=-1", "memory_gc_rounds must be >= 0"),
    # %%fl_model (capture.py's own rows, included because they pass today)
    Row("cell defines no model class", "%%fl_model\nx = 1\n", "define your model class in this cell", model=False),
    Row(
        "--name not a Module",
        "%%fl_model --name Helper\nimport torch.nn as nn\nclass Helper:\n    pass\n",
        "no torch.nn.Module subclass called Helper",
        model=False,
    ),
    Row(
        "undefined name",
        "%%fl_model\nimport torch.nn as nn\nclass Net(nn.Module):\n    def __init__(self):\n"
        "        super().__init__()\n        self.fc = nn.Linear(4, 2)\n"
        "    def forward(self, x):\n        return undefined_helper(self.fc(x))\n",
        "define or import it in the cell",
        model=False,
    ),
    Row(
        "__init__ needs arguments",
        "%%fl_model\nimport torch.nn as nn\nclass Net(nn.Module):\n    def __init__(self, width):\n"
        "        super().__init__()\n        self.fc = nn.Linear(4, width)\n"
        "    def forward(self, x):\n        return self.fc(x)\n",
        "give every __init__ argument a default",
        model=False,
    ),
    Row(
        "--input-shape not numbers",
        "%%fl_model --input-shape abc\nimport torch.nn as nn\nclass Net(nn.Linear):\n    pass\n",
        "give positive integers like 1,3,32,32",
        model=False,
    ),
]


def run_usage_error(ip, source: str) -> str:
    result = ip.run_cell(source, store_history=True)
    assert isinstance(result.error_in_exec, UsageError), result.error_in_exec or result.error_before_exec
    return one_line(str(result.error_in_exec))


@pytest.mark.parametrize("row", MAGIC_ROWS, ids=[r.name for r in MAGIC_ROWS])
def test_magic_refuses_bad_input(ip, data, row, capsys):
    if row.model:
        ip.user_ns["fl_model"] = data.spec
    if row.before:
        assert ip.run_cell(row.before).success
    capsys.readouterr()
    ip.run_cell("%fl_config")
    shown_before = capsys.readouterr().out
    with nothing_left():
        message = run_usage_error(ip, row.line.format(**data.paths))
    assert row.fix in message, message
    assert "hunter2" not in message
    ip.run_cell("%fl_config")
    assert capsys.readouterr().out == shown_before, "a refused line changed a setting"
    if not row.model:
        assert "fl_model" not in ip.user_ns


@pytest.fixture
def home_is_a_file(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "home-file"
    home.write_text("not a folder")
    monkeypatch.setenv("RESONTECH_NB_HOME", str(home))
    return home


@pytest.fixture
def read_only_home(tmp_path, monkeypatch) -> Iterator[Path]:
    """A folder no one can write: mode 0555, and immutable for root (who ignores the mode)."""
    home = tmp_path / "read-only-home"
    home.mkdir()
    home.chmod(0o555)
    immutable = os.geteuid() == 0
    if immutable and subprocess.run(["chattr", "+i", str(home)], capture_output=True).returncode != 0:
        pytest.skip("running as root and chattr +i is not available: no folder is read-only for root here")
    monkeypatch.setenv("RESONTECH_NB_HOME", str(home))
    yield home
    if immutable:
        subprocess.run(["chattr", "-i", str(home)], check=True)
    home.chmod(0o755)


def test_magic_refuses_a_jobs_home_that_is_a_file(ip, data, home_is_a_file):
    ip.user_ns["fl_model"] = data.spec
    with nothing_left():
        message = run_usage_error(ip, "%fl_submit --shards {good}".format(**data.paths))
    assert "point RESONTECH_NB_HOME at a folder you can write" in message and "it is a file" in message
    assert home_is_a_file.read_text() == "not a folder"


def test_magic_refuses_a_read_only_jobs_home(ip, data, read_only_home):
    ip.user_ns["fl_model"] = data.spec
    with nothing_left():
        message = run_usage_error(ip, "%fl_submit --shards {good}".format(**data.paths))
    assert "point RESONTECH_NB_HOME at a folder you can write" in message
    assert list(read_only_home.iterdir()) == []


# -- the Python API ----------------------------------------------------------------------------------


def _submit(d, shards="good", **kwargs):
    return api.submit(d.spec, d.paths.get(shards, shards), **kwargs)


API_ROWS = [
    ("manifest missing", lambda d: _submit(d, "no_manifest"), ManifestError, "put it at the ZIP root"),
    ("invalid JSON", lambda d: _submit(d, "bad_json"), ManifestError, "line 2 of manifest.ndjson"),
    (
        "label out of range",
        lambda d: _submit(d, "label_5", training={"num_classes": 3}),
        ManifestError,
        "out of range for num_classes=3",
    ),
    ("URI escaping", lambda d: _submit(d, "uri_escapes"), ManifestError, "escapes the shard"),
    ("ZIP entry escaping", lambda d: _submit(d, "entry_escapes"), ManifestError, "escapes the shard"),
    ("unreachable https", lambda d: _submit(d, "unreachable_https"), ManifestError, "check the URL"),
    ("not an image", lambda d: _submit(d, "not_an_image"), ManifestError, "is not a readable image"),
    (
        "not an image, build only",
        lambda d: api.build_job(d.spec, d.paths["not_an_image"], out=d.root / "never"),
        ManifestError,
        "replace it with a PNG or JPEG",
    ),
    ("empty list of shards", lambda d: api.submit(d.spec, []), ManifestError, "no shards given"),
    (
        "same shard twice",
        lambda d: api.submit(d.spec, [d.paths["good"] + "/site-1.zip"] * 2),
        ManifestError,
        "every site needs its own ZIP",
    ),
    ("zero rounds", lambda d: _submit(d, federation={"num_rounds": 0}), ConfigError, "num_rounds must be >= 1"),
    ("zero batch size", lambda d: _submit(d, training={"batch_size": 0}), ConfigError, "batch_size must be >= 1"),
    (
        "negative learning rate",
        lambda d: _submit(d, training={"learning_rate": -0.1}),
        ConfigError,
        "learning_rate must be > 0",
    ),
    ("zero min_clients", lambda d: _submit(d, federation={"min_clients": 0}), ConfigError, "min_clients must be >= 1"),
    (
        "min_clients above the shards",
        lambda d: _submit(d, federation={"min_clients": 5}),
        JobBuildError,
        "lower --min-clients or add shards",
    ),
    ("unknown training field", lambda d: _submit(d, training={"epochs": 3}), ConfigError, "known:"),
    ("wrong config type", lambda d: _submit(d, training=42), ConfigError, "expected TrainingConfig or a dict"),
    ("unknown target", lambda d: _submit(d, target="cloud"), ConfigError, "use one of: local, nvflare, resontech"),
    ("bad job name", lambda d: _submit(d, federation={"job_name": "../escape"}), ConfigError, "must be 1-64 letters"),
    (
        "build into a non-empty folder",
        lambda d: api.build_job(d.spec, d.paths["good"], out=d.paths["nonempty"]),
        JobBuildError,
        "choose an empty folder",
    ),
    (
        "build into a file",
        lambda d: api.build_job(d.spec, d.paths["good"], out=d.paths["a_file"]),
        JobBuildError,
        "give --build-only a folder path",
    ),
    (
        "build under a file",
        lambda d: api.build_job(d.spec, d.paths["good"], out=Path(d.paths["a_file"]) / "job"),
        JobBuildError,
        "choose a folder you can write",
    ),
    ("attach ../x", lambda d: api.attach("../x"), JobNotFoundError, "is not a job id"),
    ("attach /etc", lambda d: api.attach("/etc"), JobNotFoundError, "is not a job id"),
    ("attach a/b on local", lambda d: api.attach("jobs/x", target="local"), JobNotFoundError, "is not a job id"),
    (
        "attach a path on resontech",
        lambda d: api.attach("x/../../admin", target="resontech"),
        JobNotFoundError,
        "is not a job id",
    ),
    ("attach an empty id", lambda d: api.attach(""), JobNotFoundError, "is not a job id"),
    ("attach an unknown id", lambda d: api.attach("nojob-20250101-000000-abcdef"), JobNotFoundError, "check the id"),
    ("attach an unknown local id", lambda d: api.attach("nojob-1", target="local"), JobNotFoundError, "check the id"),
    ("attach on an unknown target", lambda d: api.attach("nojob-1", target="cloud"), ConfigError, "use one of"),
    (
        "resontech target not configured",
        lambda d: _submit(d, target="resontech", config={}),
        ConfigError,
        "the resontech target needs base_url, email:",
    ),
    (
        "nvflare startup kit is a file",
        lambda d: _submit(d, target="nvflare", config={"nvflare_startup_kit": d.paths["a_file"]}),
        ConfigError,
        "is not a folder",
    ),
    (
        "nvflare startup kit without fed_admin.json",
        lambda d: _submit(d, target="nvflare", config={"nvflare_startup_kit": d.paths["empty_folder"]}),
        ConfigError,
        "is not an admin startup kit",
    ),
    ("base_url not http", lambda d: ResonTechConfig(base_url="ftp://x"), ConfigError, "must start with http://"),
    (
        "initial_weights not a dict",
        lambda d: _submit(d, initial_weights=[1, 2]),
        JobBuildError,
        "pass model.state_dict()",
    ),
    (
        "initial_weights missing a key",
        lambda d: _submit(d, initial_weights={"w": torch.zeros(2, 3)}),
        JobBuildError,
        "initial_weights lacks 'b'",
    ),
    (
        "initial_weights with NaN",
        lambda d: _submit(d, initial_weights={"w": torch.full((2, 3), float("nan")), "b": torch.zeros(3)}),
        JobBuildError,
        "initial_weights['w'] holds NaN",
    ),
    ("val_fraction of 1", lambda d: _submit(d, training={"val_fraction": 1}), ConfigError, "below 1"),
]


@pytest.mark.parametrize("call, error, fix", [r[1:] for r in API_ROWS], ids=[r[0] for r in API_ROWS])
def test_api_refuses_bad_input(clean_env, data, call, error, fix):
    with nothing_left(), pytest.raises(error) as info:
        call(data)
    assert fix in one_line(str(info.value)), info.value
    assert not Path(data.root, "never").exists()


def test_api_refuses_a_jobs_home_that_is_a_file(clean_env, data, home_is_a_file):
    with nothing_left(), pytest.raises(ConfigError, match="point RESONTECH_NB_HOME at a folder you can write"):
        api.submit(data.spec, data.paths["good"])
    with pytest.raises(ConfigError, match="it is a file"):
        api.list_jobs()


def test_api_refuses_a_read_only_jobs_home(clean_env, data, read_only_home):
    with nothing_left(), pytest.raises(ConfigError, match="not a writable folder"):
        api.submit(data.spec, data.paths["good"], federation=FederationConfig(num_rounds=1))
    assert list(read_only_home.iterdir()) == []


# -- the resontech target: the real S3 server and the real platform ----------------------------------


@pytest.fixture
def platform(s3, tmp_path, aws_env):
    server = PlatformServer(tmp_path / "platform", s3_endpoint=s3.endpoint_url, bucket=s3.bucket).start()
    server.add_user(EMAIL, PASSWORD)
    yield server
    server.stop()


def s3_client(s3, **keys):
    import boto3

    return boto3.session.Session().client("s3", endpoint_url=s3.endpoint_url, region_name="us-east-1", **keys)


def remote(platform, s3, **changes) -> ResonTechConfig:
    values = dict(base_url=platform.url, email=EMAIL, password=PASSWORD)  # a notebook user holds no S3 keys
    values.update(changes)
    return ResonTechConfig(**values)


REMOTE_ROWS = [
    ("wrong password", {"password": "not-the-password"}, AuthError, "wrong email or password"),
    ("unknown email", {"email": "nobody@example.com"}, AuthError, "wrong email or password"),
    ("no password", {"password": ""}, AuthError, "run %fl_login"),
    ("unreachable base_url", {"base_url": "closed"}, PlatformError, "check base_url and that the server is running"),
]


@pytest.mark.parametrize("changes, error, fix", [r[1:] for r in REMOTE_ROWS], ids=[r[0] for r in REMOTE_ROWS])
def test_resontech_target_refuses_before_uploading(platform, s3, data, changes, error, fix):
    changes = {k: (f"http://127.0.0.1:{closed_port()}" if v == "closed" else v) for k, v in changes.items()}
    with nothing_left(s3, platform), pytest.raises(error) as info:
        api.submit(data.spec, data.paths["good"], target="resontech", config=remote(platform, s3, **changes))
    assert fix in one_line(str(info.value)), info.value
    assert PASSWORD not in str(info.value) and "not-the-password" not in str(info.value)


PLATFORM_STORE_ROWS = [
    ("missing bucket", {"bucket": MISSING_BUCKET}),
    ("unreachable S3 endpoint", {"s3_endpoint": "closed"}),
    ("wrong S3 keys", {"keys": ("AKIAWRONGWRONG", "wrong-secret")}),
]


@pytest.mark.parametrize("changes", [r[1] for r in PLATFORM_STORE_ROWS], ids=[r[0] for r in PLATFORM_STORE_ROWS])
def test_a_platform_whose_store_fails_says_so_before_anything_is_uploaded(s3, data, tmp_path, aws_env, changes):
    """The store is the host's (users hold no S3 keys): its faults reach the user as 'tell the host'."""
    if "keys" in changes:
        aws_env.setenv("AWS_ACCESS_KEY_ID", changes["keys"][0])  # what the platform starts with
        aws_env.setenv("AWS_SECRET_ACCESS_KEY", changes["keys"][1])
    endpoint = f"http://127.0.0.1:{closed_port()}" if changes.get("s3_endpoint") else s3.endpoint_url
    server = PlatformServer(tmp_path / "p", s3_endpoint=endpoint, bucket=changes.get("bucket", s3.bucket)).start()
    server.add_user(EMAIL, PASSWORD)
    aws_env.setenv("AWS_ACCESS_KEY_ID", "testing")
    aws_env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    try:
        with nothing_left(s3, server), pytest.raises(PlatformError) as info:
            api.submit(data.spec, data.paths["good"], target="resontech", config=remote(server, s3))
    finally:
        server.stop()
    assert "cannot reach its object store: tell the platform's host" in one_line(str(info.value)), info.value
    assert "wrong-secret" not in str(info.value) and PASSWORD not in str(info.value)


def _remote_magics(ip, platform, s3, **changes) -> None:
    values = dict(base_url=platform.url, email=EMAIL)
    values.update(changes)
    assert ip.run_cell("%fl_config target=resontech " + " ".join(f"{k}={v}" for k, v in values.items())).success


def test_magic_submit_without_login(ip, platform, s3, data, aws_env):
    ip.user_ns["fl_model"] = data.spec
    _remote_magics(ip, platform, s3)
    with nothing_left(s3, platform):
        message = run_usage_error(ip, "%fl_submit --shards {good}".format(**data.paths))
    assert "run %fl_login" in message


def test_magic_login_with_a_wrong_password(ip, platform, s3, monkeypatch, aws_env):
    import getpass

    _remote_magics(ip, platform, s3)
    monkeypatch.setattr(getpass, "getpass", lambda prompt="": "not-the-password")
    with nothing_left(s3, platform):
        message = run_usage_error(ip, "%fl_login")
    assert "wrong email or password" in message and "not-the-password" not in message


@pytest.mark.parametrize("setting, fix", [("base_url", "check base_url")])
def test_magic_submit_to_a_closed_platform(ip, platform, s3, data, aws_env, setting, fix):
    ip.user_ns["fl_model"] = data.spec
    value = f"http://127.0.0.1:{closed_port()}"
    from resontech_nb.notebook.magics import FLMagics

    magics = next(c for c in ip.configurables if isinstance(c, FLMagics))
    magics.resontech = magics.resontech.replace(password=PASSWORD)  # what %fl_login keeps in memory
    _remote_magics(ip, platform, s3, **{setting: value})
    with nothing_left(s3, platform):
        message = run_usage_error(ip, "%fl_submit --shards {good}".format(**data.paths))
    assert fix in message and PASSWORD not in message


# -- the nvflare target: a provisioned deployment that is not running -------------------------------


@pytest.mark.slow
def test_nvflare_target_refuses_a_deployment_that_is_not_running(clean_env, data, tmp_path):
    deployment = PocDeployment(tmp_path / "workspace", n_clients=2).prepare()  # provisioned, never started
    config = ResonTechConfig(nvflare_startup_kit=str(deployment.admin_startup_kit))
    with nothing_left(), pytest.raises(SubmitError) as info:
        api.submit(data.spec, data.paths["good"], target="nvflare", config=config, federation={"min_clients": 2})
    assert "is it running? (nvflare poc start)" in one_line(str(info.value))
    assert not deployment.running
