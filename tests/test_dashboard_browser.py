"""The dashboard in a real browser: JupyterLab on loopback, Debian's chromium driven by Playwright.

A notebook replays round records from a JSON file through a small ``Job`` subclass; the test runs
it in JupyterLab, waits for the live widget to reach the final state, looks at the DOM, saves the
notebook and checks that the saved file keeps the static picture of the final state.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from kernels import write_kernelspec

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
CLIENTS = ["site-1", "site-2", "site-3"]

pytestmark = [
    pytest.mark.slow,
    # Skipped only outside CI: in CI (scripts/setup.sh installs chromium) a missing browser is a failure.
    pytest.mark.skipif(
        not CHROMIUM.exists() and not os.environ.get("CI"),
        reason="needs Debian's chromium at /usr/bin/chromium (apt-get install -y chromium)",
    ),
]

NOTEBOOK_SOURCE = textwrap.dedent(
    """
    import json
    from resontech_nb.dashboard import show_dashboard
    from resontech_nb.job import Job, JobState
    from resontech_nb.records import RoundRecord


    class ReplayJob(Job):
        \"\"\"Replays recorded rounds, one more per poll, then finishes.\"\"\"

        target = "replay"
        poll_interval = 0.4

        def __init__(self, path):
            data = json.load(open(path))
            super().__init__(data["id"], num_rounds=data["num_rounds"], clients=data["clients"], name=data["name"])
            self.recorded, self.step = data["rounds"], 0

        def _poll(self):
            self.step += 1
            return JobState("FINISHED" if self.step > len(self.recorded) else "RUNNING")

        def _fetch_rounds(self):
            return [RoundRecord.from_dict(r) for r in self.recorded[: self.step]]

        def _fetch_result(self, which="final"):
            return {}

        def _abort(self):
            pass


    job = ReplayJob("records.json")
    show_dashboard(job)
    """
)


def _records() -> list[dict]:
    rounds = []
    for index in range(4):
        clients = {}
        for i, name in enumerate(CLIENTS):
            if (index, name) == (1, "site-2"):
                clients[name] = {"status": "failed", "error": "CUDA out of memory: lower batch_size"}
            elif (index, name) == (2, "site-3"):
                clients[name] = {"status": "absent"}
            else:
                clients[name] = {
                    "status": "ok",
                    "loss": round(1.2 / (index + 1) + 0.04 * (i + 1), 4),
                    "samples": 40 + i,
                }
        start = 1_700_000_000.0 + 20 * index
        rounds.append(
            {
                "round": index,
                "num_rounds": 4,
                "global_loss": round(1.2 / (index + 1), 4),
                "clients": clients,
                "started_at": start,
                "finished_at": start + 3.0 + index,
            }
        )
    return rounds


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


def test_dashboard_renders_live_in_jupyterlab_and_is_saved_as_a_picture(
    lab: tuple[str, str, Path], tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    url, token, root = lab
    (root / "records.json").write_text(
        json.dumps({"id": "replay-browser", "name": "browser demo", "num_rounds": 4, "clients": CLIENTS,
                    "rounds": _records()})
    )  # fmt: skip
    notebook = {
        "cells": [
            {"cell_type": "code", "execution_count": None, "id": "dash", "metadata": {}, "outputs": [],
             "source": NOTEBOOK_SOURCE},
            # Runs right after the dashboard cell: the job must still be running, the kernel free.
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
            page = browser.new_page(viewport={"width": 1400, "height": 1500})
            page.goto(f"{url}/lab/tree/dashboard.ipynb?token={token}")
            page.wait_for_function(KERNEL_IDLE, timeout=90_000)
            page.evaluate(RECORD_STATUS_TEXTS)
            page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")

            status = page.locator(".rt-dashboard .rt-status")
            status.wait_for(timeout=60_000)
            page.wait_for_function(
                "() => [...document.querySelectorAll('.rt-status')].some(e => e.textContent.includes('FINISHED'))",
                timeout=60_000,
            )
            text = status.inner_text()
            assert "FINISHED" in text and "round 4 of 4" in text and "global loss 0.3000" in text
            seen = page.evaluate("window.rtSeen")
            assert any("RUNNING" in t for t in seen) and any("round 2 of 4" in t for t in seen), seen  # live
            page.get_by_text("kernel free while the job is RUNNING").wait_for(timeout=10_000)
            title = page.locator(".rt-dashboard .rt-title").inner_text()
            assert "browser demo" in title and "replay-browser" in title

            image = page.locator(".rt-dashboard img").first
            image.wait_for()
            assert page.evaluate("img => img.naturalWidth", image.element_handle()) >= 800

            grid = page.locator(".rt-dashboard table.rt-grid")
            assert grid.locator("tbody tr").count() == 3
            site2 = grid.locator('tr[data-client="site-2"] td')
            assert [site2.nth(i).get_attribute("data-state") for i in range(4)] == ["ok", "failed", "ok", "ok"]
            site3 = grid.locator('tr[data-client="site-3"] td')
            assert site3.nth(2).get_attribute("data-state") == "absent"
            assert "took part" in page.locator(".rt-dashboard .rt-legend").last.inner_text()
            button = page.locator(".rt-dashboard button", has_text="Ended")
            assert button.is_disabled()

            page.locator(".rt-dashboard").first.screenshot(path=str(tmp_path / "dashboard.png"))
            page.screenshot(path=str(tmp_path / "jupyterlab.png"))

            # Save: the file must keep the static picture and records of the final state.
            page.evaluate("window.jupyterapp.commands.execute('docmanager:save')")
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                saved = json.loads((root / "dashboard.ipynb").read_text())
                outputs = [o for o in saved["cells"][0]["outputs"] if o["output_type"] == "display_data"]
                if outputs and outputs[0]["metadata"].get("resontech_nb", {}).get("status") == "FINISHED":
                    break
                time.sleep(0.3)
            else:
                pytest.fail(f"saved notebook lacks the final picture: {saved['cells'][0]['outputs']}")
        finally:
            browser.close()

    assert len(outputs) == 1
    output = outputs[0]
    assert {"application/vnd.jupyter.widget-view+json", "image/png", "text/plain"} <= set(output["data"])
    assert len(output["metadata"]["resontech_nb"]["rounds"]) == 4
    assert base64.b64decode(output["data"]["image/png"]).startswith(b"\x89PNG")
    text_plain = output["data"]["text/plain"]
    text_plain = "".join(text_plain) if isinstance(text_plain, list) else text_plain
    assert "FINISHED \u00b7 round 4 of 4" in text_plain
