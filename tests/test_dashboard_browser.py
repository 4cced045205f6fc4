"""The dashboard in a real browser: JupyterLab on loopback, Debian's chromium driven by Playwright.

A notebook submits a real job to the local target (NVFlare's simulator, three sites) whose
``fl_train_model`` reports an accuracy beside the loss and fails once on one site. The test runs
it in JupyterLab, watches the live widget reach the final state (status, training and validation
charts, the metric dropdown, the participation grid, the failure named), switches the metric, saves
the notebook and checks that the saved file keeps the static picture and records of the final state.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from kernels import write_kernelspec

from resontech_nb.targets.nvflare.poc_project import free_port as _free_port

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
KERNEL = "rtnb-browser"

pytestmark = [
    pytest.mark.slow,
    # Skipped only outside CI: in CI (scripts/setup.sh installs chromium) a missing browser is a failure.
    pytest.mark.skipif(
        not CHROMIUM.exists() and not os.environ.get("CI"),
        reason="needs Debian's chromium at /usr/bin/chromium (apt-get install -y chromium)",
    ),
]

# The model and training function live in a module beside the notebook: capture() takes them from there.
MODELS_SOURCE = textwrap.dedent(
    """
    import time

    import torch
    import torch.nn as nn

    SAMPLES = {"site-1": 10, "site-2": 20, "site-3": 30}


    class MetricNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(2, 3))

        def forward(self, x):
            return x @ self.w


    def metric_train(payload):
        \"\"\"Each site adds k to the weights; loss falls and accuracy rises with the round; site-2 fails round 2.\"\"\"
        site, r = payload["site_name"], payload["round"]
        time.sleep(1.0)  # rounds of a tiny model take 0.4 s: slow them so the live view is seen between rounds
        if site == "site-2" and r == 1:
            raise RuntimeError("disk full on site-2")
        k = int(site.rsplit("-", 1)[1])
        weights = {name: t + float(k) for name, t in payload["initial_weights"].items()}
        metrics = {"loss": 1.0 / (r + 1) + 0.1 * k, "accuracy": 0.5 + 0.1 * r + 0.01 * k}
        return {"weights": weights, "samples": SAMPLES[site], "metrics": metrics}


    def metric_evaluate(payload):
        \"\"\"Validation of a global model: the larger its weights (the later the round), the better.\"\"\"
        mean_w = float(payload["weights"]["w"].mean())
        return {"metrics": {"loss": 1.0 / (1.0 + mean_w), "accuracy": mean_w / (1.0 + mean_w)}, "samples": 5}
    """
)

NOTEBOOK_SOURCE = textwrap.dedent(
    """
    from resontech_nb import FederationConfig, TrainingConfig, capture, make_synthetic_shards, submit
    from browser_models import MetricNet, metric_evaluate, metric_train

    shards = make_synthetic_shards("shards", n_clients=3, img_size=8, seed=5)
    federation = FederationConfig(num_rounds=4, min_clients=2, wait_time_after_min_received=5, job_name="browser-demo")
    spec = capture(MetricNet, metric_train, eval_fn=metric_evaluate)
    job = submit(spec, shards, training=TrainingConfig(img_size=8), federation=federation)
    dashboard = job.dashboard()
    """
)



@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    """A JupyterLab server on loopback with a kernelspec for this interpreter; yields (url, token, root)."""
    root = tmp_path / "root"
    root.mkdir()
    jupyter = tmp_path / "jupyter"
    write_kernelspec(jupyter / "data", KERNEL)
    settings = jupyter / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))  # no news toast
    env = dict(
        os.environ,
        JUPYTER_PATH=str(jupyter / "data"),
        JUPYTER_CONFIG_DIR=str(jupyter / "config"),
        JUPYTER_RUNTIME_DIR=str(jupyter / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(jupyter / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(jupyter / "workspaces"),
    )
    token, port = secrets.token_hex(16), _free_port()
    log = open(tmp_path / "jupyterlab.log", "wb")
    process = subprocess.Popen(
        [
            sys.executable, "-m", "jupyter", "lab", "--no-browser",
            f"--IdentityProvider.token={token}", "--ServerApp.ip=127.0.0.1", f"--port={port}",
            "--ServerApp.allow_root=True",
            f"--ServerApp.root_dir={root}", "--LabApp.expose_app_in_browser=True",
            "--ServerApp.port_retries=0",
        ],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                pytest.fail(f"JupyterLab exited: {(tmp_path / 'jupyterlab.log').read_text()[-2000:]}")
            try:
                if requests.get(f"{url}/api/status", params={"token": token}, timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("JupyterLab did not start within 90 s")
            time.sleep(0.3)
        yield url, token, root
    finally:
        try:  # a clean shutdown also stops the kernels it started
            requests.post(f"{url}/api/shutdown", headers={"Authorization": f"token {token}"}, timeout=5)
            process.wait(timeout=20)
        except (requests.RequestException, subprocess.TimeoutExpired):
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()


RECORD_STATUS_TEXTS = """() => {
    window.rtSeen = [];
    new MutationObserver(() => {
        for (const e of document.querySelectorAll('.rt-status')) {
            if (window.rtSeen[window.rtSeen.length - 1] !== e.textContent) window.rtSeen.push(e.textContent);
        }
    }).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""

KERNEL_IDLE = """() => {
    const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
    const kernel = panel && panel.sessionContext && panel.sessionContext.session && panel.sessionContext.session.kernel;
    return !!kernel && kernel.status === 'idle' && kernel.connectionStatus === 'connected';
}"""


SIDE_BY_SIDE = """() => {
    const box = css => document.querySelector('.rt-dashboard ' + css)?.getBoundingClientRect();
    const train = box('img.rt-train-chart'), val = box('img.rt-val-chart');
    return !!train && !!val && val.width > 200 && val.left > train.left + 200 && Math.abs(val.top - train.top) < 5;
}"""


def _wait_until_settled(page) -> None:  # noqa: ANN001
    """Wait until the output stops being replaced: the final display update re-renders the widget once."""
    for _ in range(20):
        page.evaluate("() => { const d = document.querySelector('.rt-dashboard'); if (d) d.dataset.rtMark = '1'; }")
        time.sleep(1.5)
        if page.evaluate("() => document.querySelector('.rt-dashboard')?.dataset.rtMark === '1'"):
            return
    pytest.fail("the dashboard output kept being replaced")


def _image_src(page, css: str) -> str:  # noqa: ANN001
    return page.evaluate(f"() => document.querySelector('.rt-dashboard {css}').getAttribute('src')")


def test_dashboard_of_a_real_job_renders_live_in_jupyterlab_and_is_saved_as_a_picture(
    lab: tuple[str, str, Path], tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    url, token, root = lab
    (root / "browser_models.py").write_text(MODELS_SOURCE)
    notebook = {
        "cells": [
            {"cell_type": "code", "execution_count": None, "id": "dash", "metadata": {}, "outputs": [],
             "source": NOTEBOOK_SOURCE},
            # Runs right after the dashboard cell: the job must still be going, the kernel free.
            {"cell_type": "code", "execution_count": None, "id": "free", "metadata": {}, "outputs": [],
             "source": "print('kernel free while the job is', job._state.status)"},
        ],
        "metadata": {"kernelspec": {"name": KERNEL, "display_name": "resontech_nb browser test",
                                    "language": "python"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }  # fmt: skip
    (root / "dashboard.ipynb").write_text(json.dumps(notebook))

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1800})
            page.goto(f"{url}/lab/tree/dashboard.ipynb?token={token}")
            page.wait_for_function(KERNEL_IDLE, timeout=90_000)
            page.evaluate(RECORD_STATUS_TEXTS)
            page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")

            status = page.locator(".rt-dashboard .rt-status")
            status.wait_for(timeout=120_000)
            free = page.locator(".jp-OutputArea-output pre", has_text="kernel free while the job is")
            free.wait_for(timeout=60_000)
            assert any(word in free.inner_text() for word in ("SUBMITTED", "RUNNING")), free.inner_text()
            page.wait_for_function(
                "() => [...document.querySelectorAll('.rt-status')].some(e => e.textContent.includes('FINISHED'))",
                timeout=300_000,
            )
            _wait_until_settled(page)
            text = status.inner_text()
            assert "FINISHED" in text and "round 4 of 4" in text and "global loss" in text
            seen = page.evaluate("window.rtSeen")
            live = [t for t in seen if "RUNNING" in t and any(f"round {k} of 4" in t for k in (1, 2, 3))]
            assert live, seen  # seen while it ran
            title = page.locator(".rt-dashboard .rt-title").inner_text()
            assert "browser-demo" in title and "local" in title

            # Training and validation charts side by side, the other parts below.
            for css in (".rt-train-chart", ".rt-val-chart", ".rt-durations", ".rt-grid-image"):
                image = page.locator(f".rt-dashboard img{css}")
                image.wait_for()
                assert page.evaluate("img => img.naturalWidth", image.element_handle()) >= 400, css
            page.wait_for_function(SIDE_BY_SIDE, timeout=20_000)
            assert page.locator(".rt-dashboard img.rt-cross-site").is_hidden()  # no cross-site evaluation ran

            # The metric dropdown offers every recorded metric; choosing one redraws the charts.
            select = page.locator(".rt-dashboard .rt-metric select")
            assert select.locator("option").all_inner_texts() == ["loss", "accuracy"]
            before = _image_src(page, "img.rt-train-chart"), _image_src(page, "img.rt-grid-image")
            select.select_option("accuracy")
            page.wait_for_function(
                "src => document.querySelector('.rt-dashboard img.rt-train-chart').getAttribute('src') !== src",
                arg=before[0],
                timeout=20_000,
            )
            assert _image_src(page, "img.rt-grid-image") == before[1]  # only the metric charts were redrawn

            # The failed site's error is named under the grid.
            failures = page.locator(".rt-dashboard .rt-failures").inner_text()
            assert "round 2 \u00b7 site-2: training failed" in failures and "disk full on site-2" in failures
            button = page.locator(".rt-dashboard button", has_text="Ended")
            assert button.is_disabled()

            page.locator(".rt-dashboard").first.screenshot(path=str(tmp_path / "dashboard.png"))
            page.screenshot(path=str(tmp_path / "jupyterlab.png"), full_page=True)

            # Save: the file must keep the static picture and records of the final state.
            page.evaluate("window.jupyterapp.commands.execute('docmanager:save')")
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                saved = json.loads((root / "dashboard.ipynb").read_text())
                outputs = [o for o in saved["cells"][0]["outputs"] if o["output_type"] == "display_data"]
                if outputs and outputs[-1]["metadata"].get("resontech_nb", {}).get("status") == "FINISHED":
                    break
                time.sleep(0.3)
            else:
                pytest.fail(f"saved notebook lacks the final picture: {saved['cells'][0]['outputs']}")
        finally:
            browser.close()

    assert len(outputs) == 1
    output = outputs[0]
    assert {"application/vnd.jupyter.widget-view+json", "image/png", "text/plain"} <= set(output["data"])
    saved_rounds = output["metadata"]["resontech_nb"]["rounds"]
    assert len(saved_rounds) == 4
    assert saved_rounds[1]["clients"]["site-2"]["status"] == "failed"
    assert saved_rounds[0]["metrics"]["accuracy"] == pytest.approx((10 * 0.51 + 20 * 0.52 + 30 * 0.53) / 60)
    validation = [r["validation"]["accuracy"] for r in saved_rounds]  # every global model was validated
    assert len(validation) == 4 and validation == sorted(validation), validation
    assert base64.b64decode(output["data"]["image/png"]).startswith(b"\x89PNG")
    text_plain = output["data"]["text/plain"]
    text_plain = "".join(text_plain) if isinstance(text_plain, list) else text_plain
    assert "FINISHED \u00b7 round 4 of 4" in text_plain and "accuracy" in text_plain
    assert "site-2: training failed: " in text_plain
