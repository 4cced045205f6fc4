"""A refusal names the user's own name (the global, the attribute or key inside it, the file) and one fitting fix.

Cells run in a real IPython shell; preflight builds every model_def.py in a clean Python process.
"""

from __future__ import annotations

import pytest
from cells import ok

from resontech_nb.capture import capture
from resontech_nb.errors import PreflightError


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
