"""The extension in a real Jupyter kernel (nbclient + ipykernel): capture works and no password reaches the file."""

from __future__ import annotations

import json

import nbformat
import pytest
from kernels import write_kernelspec
from nbclient import NotebookClient

pytestmark = pytest.mark.slow

LOGIN_SECRET = "s3cr3t-PASSWORD"
ENV_SECRET = "env-0nly-PASSWORD"
KERNEL = "resontech-nb-test"

CELLS = [
    "%load_ext resontech_nb",
    # the password given only through the environment is known to the session, never shown
    "import os\n"
    "session = next(c for c in get_ipython().configurables if type(c).__name__ == 'FLMagics')\n"
    "print('env password loaded:', session.resontech.password == os.environ['RESONTECH_PASSWORD'])\n"
    "%fl_config",
    "import torch.nn as nn",
    "import torch.nn.functional as F\n\nHIDDEN = 8\n\ndef act(x):\n    return F.relu(x)",
    "%%fl_model --input-shape 2,4\n"
    "class Net(nn.Module):\n"
    "    def __init__(self):\n"
    "        super().__init__()\n"
    "        self.fc = nn.Linear(4, HIDDEN)\n\n"
    "    def forward(self, x):\n"
    "        return act(self.fc(x))",
    "print('captured', fl_model.class_name, fl_model.param_count, 'import torch.nn as nn' in fl_model.source)",
    # getpass answers from an environment variable, so the password is not in the notebook's source
    "import getpass\n"
    "getpass.getpass = lambda prompt='': os.environ['RT_TEST_GETPASS']\n"
    "%fl_login --email me@example.com",
    "print('login password kept:', session.resontech.password == os.environ['RT_TEST_GETPASS'])\n"
    "print(session.resontech)\n"
    "session.resontech",
    "%fl_config",
]


@pytest.fixture
def kernel_env(clean_env, tmp_path):
    """A kernelspec running this interpreter, found through JUPYTER_PATH; secrets only in the environment."""
    write_kernelspec(tmp_path / "jupyter", KERNEL)
    clean_env.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    clean_env.setenv("RESONTECH_PASSWORD", ENV_SECRET)
    clean_env.setenv("RT_TEST_GETPASS", LOGIN_SECRET)
    return tmp_path


def test_notebook_captures_the_model_and_saves_no_password(kernel_env):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src) for src in CELLS])
    client = NotebookClient(nb, kernel_name=KERNEL, timeout=180, resources={"metadata": {"path": str(kernel_env)}})
    client.execute()
    saved = kernel_env / "executed.ipynb"
    nbformat.write(nb, saved)

    text = saved.read_text(encoding="utf-8")
    outputs = "\n".join(
        out.get("text", "") + json.dumps(out.get("data", {})) for c in nb.cells for out in c.get("outputs", [])
    )
    assert "env password loaded: True" in outputs
    assert "captured Net 40 True" in outputs
    assert "ModelSpec Net: 40 parameters" in outputs
    assert "password kept in memory" in outputs
    assert "login password kept: True" in outputs
    assert "password = set" in outputs
    assert LOGIN_SECRET not in text and ENV_SECRET not in text
