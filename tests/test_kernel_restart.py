"""A kernel restart in the middle of a job (a real ipykernel, NVFlare's simulator really running):
the job goes on outside the kernel, ``%fl_dashboard <id>`` in the new kernel shows its live rounds,
and the final weights come back there.
"""

from __future__ import annotations

import re

import pytest
from jupyter_client import KernelManager

from resontech_nb import make_synthetic_shards

pytestmark = pytest.mark.slow

MODEL_CELL = '''%%fl_model
import time
import torch
import torch.nn as nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(3))

    def forward(self, x):
        return x * self.w

def fl_train_model(payload):
    time.sleep(1.5)
    weights = {k: v + 1.0 for k, v in payload["initial_weights"].items()}
    return {"weights": weights, "samples": 4, "metrics": {"loss": 1.0}}
'''
ROUNDS = 8


def run(client, code: str, timeout: float = 120) -> str:
    """Execute ``code``; return everything it printed or displayed as text."""
    texts: list[str] = []

    def keep(msg):
        content = msg["content"]
        if msg["msg_type"] == "stream":
            texts.append(content["text"])
        elif msg["msg_type"] in ("display_data", "execute_result", "update_display_data"):
            texts.append(content["data"].get("text/plain", ""))
        elif msg["msg_type"] == "error":
            texts.append("ERROR " + content["ename"] + ": " + content["evalue"])

    reply = client.execute_interactive(code, timeout=timeout, output_hook=keep)
    out = "".join(texts)
    assert reply["content"]["status"] == "ok", out
    return out


def test_a_kernel_restart_mid_job_keeps_the_job_and_its_weights(kernel_name, clean_env, tmp_path):
    shards = make_synthetic_shards(tmp_path / "shards", n_clients=2, img_size=8, seed=2)
    manager = KernelManager(kernel_name=kernel_name)
    manager.start_kernel(cwd=str(tmp_path))
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        run(client, "%load_ext resontech_nb")
        run(client, MODEL_CELL)
        out = run(client, f"%fl_submit --shards {shards[0].parent} --rounds {ROUNDS} --min-clients 2 --img-size 8")
        job_id = re.search(r"submitted job (\S+)", out).group(1)
        # wait inside the kernel for the first rounds, then restart it while the job runs
        run(client, "import time\nwhile len(fl_job.rounds) < 2:\n    time.sleep(0.3)", timeout=180)

        client.stop_channels()
        manager.restart_kernel(now=True)
        client = manager.client()
        client.start_channels()
        client.wait_for_ready(timeout=60)

        run(client, "%load_ext resontech_nb")
        shown = run(client, f"%fl_dashboard {job_id}")
        assert "RUNNING" in shown, shown
        live = int(re.search(r"round (\d+) of " + str(ROUNDS), shown).group(1))
        assert 2 <= live < ROUNDS, shown
        out = run(
            client,
            f"import resontech_nb\njob = resontech_nb.attach({job_id!r})\nprint(job.wait(timeout=240))\n"
            "w = job.result()\nprint('w', w['w'].tolist(), len(job.rounds))",
            timeout=300,
        )
        assert "FINISHED" in out, out
        assert f"w [{float(ROUNDS)}, {float(ROUNDS)}, {float(ROUNDS)}] {ROUNDS}" in out
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
