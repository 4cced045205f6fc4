"""data_summary and %fl_data: per-site rows, labels, image sizes and modes, a heatmap and a skew verdict, from the
manifests of real shard ZIPs; bins below min_count withheld; a site without validation rows is a warning."""

from __future__ import annotations

import numpy as np
import pytest
from IPython.core.error import UsageError

from resontech_nb import data_summary, split_shards
from resontech_nb.errors import DataWarning


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
    with pytest.raises(UsageError, match="does not exist|no shard ZIPs"):
        ip.run_line_magic("fl_data", "--shards nowhere")
