"""data_summary and %fl_data: per-site rows, labels, image sizes and modes, a heatmap and a skew verdict, from the
manifests of real shard ZIPs; bins below min_count withheld; a site without validation rows is a warning."""

from __future__ import annotations

import numpy as np
import pytest
from IPython.core.error import UsageError

from resontech_nb import data_summary, split_shards
from resontech_nb.errors import DataWarning, JobFailedError


def _arrays(count: int = 200, classes: int = 4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(count, 8, 8), dtype=np.uint8), np.arange(count) % classes


def test_iid_and_skewed_splits_are_told_apart_and_every_count_adds_up(tmp_path):
    images, labels = _arrays(400)
    iid = data_summary(split_shards((images, labels), 4, out=tmp_path / "iid"), sample=200)
    assert iid.verdict.startswith("close to IID"), iid.verdict
    assert [(s.train, s.val, s.test) for s in iid.sites] == [(85, 15, 0)] * 4  # 15 % of 100 marked val
    assert all(s.image_sizes == {(8, 8): 100} and s.image_modes == {"L": 100} for s in iid.sites)

    patho = split_shards((images, labels), 4, scheme="pathological", classes_per_site=1, out=tmp_path / "patho")
    skewed = data_summary(patho)
    assert skewed.verdict.startswith("strong label skew")
    assert [s.distance for s in skewed.sites] == pytest.approx([0.75] * 4)
    assert skewed.matrix() == [[100, 0, 0, 0], [0, 100, 0, 0], [0, 0, 100, 0], [0, 0, 0, 100]]
    rows = skewed.rows
    assert len(rows) == 16 and sum(r["count"] for r in rows) == 400
    assert {"site", "class", "count", "train_rows", "val_rows", "distance"} <= rows[0].keys()
    assert skewed._repr_png_().startswith(b"\x89PNG\r\n\x1a\n")


def test_bins_below_min_count_are_withheld_and_a_site_without_val_rows_warns(tmp_path):
    images, labels = _arrays(40, 4)
    labels = np.array([0] * 37 + [1, 2, 3])
    shards = split_shards((images, labels), 2, scheme="iid", val_fraction=0, out=tmp_path / "s")
    summary = data_summary(shards, {"val_fraction": 0.0}, min_count=5)
    counts = [c for row in summary.matrix() for c in row]
    assert None in counts and all(c is None or c == 0 or c >= 5 for c in counts)
    assert "-" in summary.describe()
    with pytest.warns(DataWarning, match="site-3 .* will have no validation rows"):
        data_summary([shards[0], shards[1], split_shards((images[:1], labels[:1]), 1, out=tmp_path / "one")[0]])


def test_fl_data_shows_the_summary_and_binds_it(ip, tmp_path):
    images, labels = _arrays(40, 4)
    split_shards((images, labels), 2, scheme="dirichlet", alpha=0.3, out=tmp_path / "shards")
    ip.run_line_magic("fl_data", "")  # default: ./shards, where split_shards writes
    summary = ip.user_ns["fl_data"]
    assert len(summary.sites) == 2 and sum(s.rows for s in summary.sites) == 40
    ip.run_line_magic("fl_data", "--target local --min-count 1000")  # counted on the sites, every bin withheld
    on_sites = ip.user_ns["fl_data"]
    assert [s.site for s in on_sites.sites] == ["site-1", "site-2"]
    assert all(c in (None, 0) for row in on_sites.matrix() for c in row) and None in on_sites.matrix()[0]
    with pytest.raises(UsageError, match="does not exist|no shard ZIPs"):
        ip.run_line_magic("fl_data", "--shards nowhere")


def server_files_hold_no_row(server_dir, shards) -> None:
    """No id or URI of any manifest row appears in anything the server kept (run folder, logs, results)."""
    import json
    import zipfile

    rows = []
    for shard in shards:
        with zipfile.ZipFile(shard) as archive:
            rows += [json.loads(line) for line in archive.read("manifest.ndjson").splitlines()]
    markers = {row["id"] for row in rows} | {row["uri"] for row in rows} | {row["uri"].split("//")[1] for row in rows}
    files = [p for p in server_dir.rglob("*") if p.is_file()]
    assert files
    for path in files:
        text = path.read_bytes().decode("utf-8", errors="replace")
        leaked = [m for m in markers if m in text]
        assert not leaked, f"{path} holds {leaked[:3]}"


def check_site_counts(remote, local, min_count: int) -> None:
    """The sites' counts are the manifests' counts, each below ``min_count`` (but not zero) withheld."""
    def shown(count):
        return None if count is not None and 0 < count < min_count else count

    assert [s.site for s in remote.sites] == [s.site for s in local.sites]
    assert remote.matrix() == [[shown(c) for c in row] for row in local.matrix()]
    assert any(c is None for row in remote.matrix() for c in row)  # the test's split has a small bin
    assert any(c is not None and c >= min_count for row in remote.matrix() for c in row)
    for got, want in zip(remote.sites, local.sites, strict=True):
        assert (got.train, got.val, got.test) == (shown(want.train), shown(want.val), shown(want.test))
        assert got.image_sizes == {size: shown(n) for size, n in want.image_sizes.items()}
        assert got.image_modes == {mode: shown(n) for mode, n in want.image_modes.items()}


def test_on_a_target_the_sites_send_counts_only_with_small_bins_withheld(clean_env, tmp_path):
    import json

    images, _ = _arrays(48, 4)
    labels = np.array([0] * 20 + [1] * 3 + [2] * 10 + [3] * 15)
    shards = split_shards((images, labels), 2, scheme="pathological", classes_per_site=2, out=tmp_path / "s")
    local = data_summary(shards, sample=100)
    remote = data_summary(shards, target="local", min_count=4, sample=100)
    check_site_counts(remote, local, 4)
    assert "label skew" in remote.verdict and remote.rows[0]["count"] == local.rows[0]["count"]

    (job_dir,) = (tmp_path / "rt_home" / "jobs").iterdir()  # the one statistics job so far
    run_dir = next((job_dir / "workspace" / "server").rglob("evaluation.json"))
    received = json.loads(run_dir.read_text())["data_summary"]
    fields = {"train", "val", "test", "multi_label", "labels", "image_sizes", "image_modes"}
    assert set(received) == {"site-1", "site-2"} and all(set(site) == fields for site in received.values())
    server_files_hold_no_row(job_dir / "workspace" / "server", shards)
    # {site: path on that site}: nothing is read here; a site without its shard fails the summary by name
    with pytest.raises(JobFailedError, match=r"site-2: no shard for site 'site-2' .*RESONTECH_SHARD"):
        data_summary({"site-1": shards[0], "site-2": tmp_path / "nowhere.zip"}, target="local")
