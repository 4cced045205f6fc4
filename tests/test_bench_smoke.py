"""The speed benchmarks run end to end at small sizes (their ``--smoke`` mode), so that a change which breaks
one is seen in CI and not on the next measuring day. Nothing here asserts a timing: the figures are checked
for being there and being numbers, and the benchmarks' real runs live in bench/results/.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def smoke(tmp_path: Path, script: str) -> dict:
    out = tmp_path / f"{script}.json"
    done = subprocess.run(
        [sys.executable, str(BENCH / f"{script}.py"), "--smoke", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())


def positive(value) -> bool:  # noqa: ANN001 - a JSON value
    return isinstance(value, (int, float)) and value > 0


@pytest.mark.timeout(900)
def test_round_floor_smoke(tmp_path: Path) -> None:
    results = smoke(tmp_path, "round_floor")
    assert positive(results["floor_ours"]["round_gap_median_s"])
    startup = results["startup"][0]
    assert positive(startup["to_first_round_s"])
    assert startup["before_round_1_s"] < startup["to_first_round_s"] < startup["to_finished_s"]
    assert positive(startup["server_end_to_finished_s"])
    assert positive(results["idle_cpu"]["window_s"]) and results["idle_cpu"]["cpu_s_per_wall_s"] >= 0


@pytest.mark.timeout(900)
def test_model_scaling_smoke(tmp_path: Path) -> None:
    results = smoke(tmp_path, "model_scaling")
    row = results["by_size"]["1M"]
    assert row["params"] == 1_049_600 and row["model_mb"] == 4.2
    for job in ("resontech_nb", "hand_written"):
        assert positive(row[job]["per_round_s"]), row
        assert row[job]["peak_rss_site_mb"] > row["model_mb"] and positive(row[job]["peak_rss_server_mb"])
    assert positive(row["ours_per_round_over_save_load"])
    assert positive(results["baseline_tiny_model"]["peak_rss_site_mb"])


@pytest.mark.timeout(300)
def test_dashboard_redraw_smoke(tmp_path: Path) -> None:
    results = smoke(tmp_path, "dashboard_redraw")
    assert (results["clients"], results["rounds"]) == (3, 5)
    assert positive(results["redraw"]["median_ms"]) and positive(results["first_draw_ms"])
    assert all(positive(part["median_ms"]) for part in results["parts"].values())
