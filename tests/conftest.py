"""Shared fixtures: an isolated settings environment and a real IPython shell with the extension loaded."""

from __future__ import annotations
import __future__

import os
import shutil
import sys
import tempfile

import pytest
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config

_WORKER_TMP = pytest.StashKey[str]()


def pytest_configure(config):
    """Job state and settings of the whole run stay out of the user's home (kernels and subprocesses inherit them).

    Each parallel worker gets a temp dir of its own, so a test that checks the temp dir for leftovers sees only
    what its own worker made, not another worker's job build in flight.
    """
    if not os.environ.get("RESONTECH_NB_HOME"):
        os.environ["RESONTECH_NB_HOME"] = tempfile.mkdtemp(prefix="rt_home_")
    os.environ.setdefault("RESONTECH_NB_CONFIG", os.path.join(os.environ["RESONTECH_NB_HOME"], "no-config.toml"))
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker:
        config.stash[_WORKER_TMP] = os.environ["TMPDIR"] = tempfile.mkdtemp(prefix=f"rt_tmp_{worker}_")
        tempfile.tempdir = None  # the next gettempdir() reads TMPDIR again


def pytest_unconfigure(config):
    worker_tmp = config.stash.get(_WORKER_TMP, None)
    if worker_tmp:
        shutil.rmtree(worker_tmp, ignore_errors=True)


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No RESONTECH_* variables, no user config file, job state under tmp_path."""
    for name in list(os.environ):
        if name.startswith("RESONTECH_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("RESONTECH_NB_CONFIG", str(tmp_path / "no-config.toml"))
    monkeypatch.setenv("RESONTECH_NB_HOME", str(tmp_path / "rt_home"))
    return monkeypatch


@pytest.fixture
def aws_env(monkeypatch, tmp_path):
    """Credentials for the loopback S3 server, no AWS files from the machine, job state under tmp_path."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("RESONTECH_NB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RESONTECH_NB_CONFIG", str(tmp_path / "no-config.toml"))
    monkeypatch.delenv("RESONTECH_PASSWORD", raising=False)
    return monkeypatch


# The loopback S3 server's keys: the ones ``aws_env`` puts into the environment.
S3_TEST_KEYS = {"access_key": "testing", "secret_key": "testing"}


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """One real S3 server (SeaweedFS ``weed mini``) on free loopback ports for the whole test run."""
    from resontech_nb.platform.embedded_s3 import EmbeddedS3

    server = EmbeddedS3(tmp_path_factory.mktemp("seaweedfs"), bucket="session", **S3_TEST_KEYS).start()
    yield server
    server.stop(grace=3.0)  # its data is thrown away: no need to wait out a slow shutdown


@pytest.fixture(scope="module")
def s3(request, s3_server):
    """The session's S3 server, with the test module's own bucket (``BUCKET`` in the module) created."""
    from types import SimpleNamespace

    s3_server.create_bucket(request.module.BUCKET)
    return SimpleNamespace(endpoint_url=s3_server.endpoint_url, bucket=request.module.BUCKET, server=s3_server)


@pytest.fixture
def kernel_name(tmp_path, monkeypatch) -> str:
    """A kernelspec for this interpreter, found through JUPYTER_PATH (for nbclient)."""
    from kernels import write_kernelspec

    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return write_kernelspec(tmp_path / "jupyter", "rtnb-test")


@pytest.fixture(scope="session")
def ipython_shell():
    """One in-process IPython shell for the session (history in memory; process hooks left as they were)."""
    saved = sys.modules.get("__main__"), sys.displayhook, sys.excepthook
    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    shell = InteractiveShell.instance(config=config)
    sys.modules["__main__"], sys.displayhook, sys.excepthook = saved
    return shell


@pytest.fixture
def ip(ipython_shell, clean_env, tmp_path):
    """The shell with an empty namespace and ``%load_ext resontech_nb`` done, working in tmp_path."""
    clean_env.chdir(tmp_path)
    ipython_shell.reset(new_session=True)
    for feature in __future__.all_feature_names:  # a `from __future__` cell of an earlier test sticks otherwise
        ipython_shell.compile.flags &= ~getattr(__future__, feature).compiler_flag
    ipython_shell.extension_manager.load_extension("resontech_nb")
    yield ipython_shell
    ipython_shell.extension_manager.unload_extension("resontech_nb")
    ipython_shell.config.pop("FLMagics", None)  # %config settings do not leak into the next test
    ipython_shell.reset(new_session=True)
