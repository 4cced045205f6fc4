"""split_shards: one data set dealt into site shards, IID, Dirichlet and pathological; deterministic under its seed;
multi-label aware; every site at least one row; bad arguments fail in one line naming the fix."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from resontech_nb import split_shards, validate_shards
from resontech_nb.errors import ConfigError, DataWarning, ManifestError


def _digits_like(count: int = 120, classes: int = 4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.integers(0, 17, size=(count, 8, 8)), np.arange(count) % classes


def _rows(path) -> list[dict]:
    with zipfile.ZipFile(path) as archive:
        return [json.loads(line) for line in archive.read("manifest.ndjson").decode().splitlines()]


def test_iid_split_of_arrays_writes_grayscale_shards_with_every_row_once(tmp_path):
    images, labels = _digits_like()
    paths = split_shards((images, labels), 3, out=tmp_path / "iid")
    assert [p.name for p in paths] == ["site-1.zip", "site-2.zip", "site-3.zip"]
    rows = [_rows(p) for p in paths]
    assert [len(r) for r in rows] == [40, 40, 40]
    ids = sorted(row["id"] for site in rows for row in site)
    assert ids == sorted(f"row-{i:06d}" for i in range(120))
    for site in rows:
        assert sum(row["meta"]["split"] == "val" for row in site) == 6  # 15 % of 40
        assert {row["y"][0] for row in site} == {0, 1, 2, 3}
    shard_set = validate_shards(tmp_path / "iid")
    assert shard_set.image_channels == 1 and shard_set.image_sizes == {(8, 8): 120}


def test_the_same_seed_writes_the_same_bytes_and_another_seed_another_split(tmp_path):
    images, labels = _digits_like()
    first = split_shards((images, labels), 4, scheme="dirichlet", alpha=0.3, seed=1, out=tmp_path / "a")
    again = split_shards((images, labels), 4, scheme="dirichlet", alpha=0.3, seed=1, out=tmp_path / "b")
    other = split_shards((images, labels), 4, scheme="dirichlet", alpha=0.3, seed=2, out=tmp_path / "c")
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in again]
    assert [p.read_bytes() for p in first] != [p.read_bytes() for p in other]


def test_dirichlet_skews_and_pathological_gives_each_site_its_classes(tmp_path):
    images, labels = _digits_like(400, 4)
    skewed = split_shards((images, labels), 4, scheme="dirichlet", alpha=0.1, out=tmp_path / "d")
    shares = [max(np.bincount([r["y"][0] for r in _rows(p)], minlength=4)) / len(_rows(p)) for p in skewed]
    assert np.mean(shares) > 0.5  # alpha 0.1: most of a site is one class
    paths = split_shards((images, labels), 4, scheme="pathological", classes_per_site=2, out=tmp_path / "p")
    held = [sorted({r["y"][0] for r in _rows(p)}) for p in paths]
    assert held == [[0, 1], [2, 3], [0, 1], [2, 3]]


def test_a_folder_of_class_folders_and_multi_label_pairs(tmp_path):
    for name in ("cat", "dog"):
        (tmp_path / "src" / name).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (6, 6), (i * 40, 0, 0)).save(tmp_path / "src" / name / f"{i}.png")
    paths = split_shards(tmp_path / "src", 2, val_fraction=0, out=tmp_path / "f")
    rows = [row for p in paths for row in _rows(p)]
    assert sorted(row["id"] for row in rows) == [f"{c}/{i}" for c in ("cat", "dog") for i in range(3)]
    assert all(row["y"] == [row["id"].startswith("dog")] or row["y"] == [int(row["id"].startswith("dog"))]
               for row in rows)

    files = sorted((tmp_path / "src").rglob("*.png"))
    pairs = [(f, [[0], [1], [0, 2]][i // 2]) for i, f in enumerate(files)]  # class 2 is rarer than 0: it leads
    multi = split_shards(pairs, 3, scheme="pathological", classes_per_site=1, val_fraction=0, out=tmp_path / "m")
    assert {tuple(r["y"]) for r in _rows(multi[2])} == {(0, 2)}  # site-3 holds class 2, the rows' rarest label
    assert validate_shards(tmp_path / "m").multi_label


def test_every_site_gets_a_row_and_the_warning_says_so(tmp_path):
    images, _ = _digits_like(8, 2)
    labels = np.array([0] * 7 + [1])  # class 1 has one row for the two sites that hold it
    with pytest.warns(DataWarning, match="left site-4 without rows: each got one row from the largest site"):
        paths = split_shards((images, labels), 4, scheme="pathological", classes_per_site=1, out=tmp_path / "x")
    assert all(len(_rows(p)) >= 1 for p in paths)
    with pytest.warns(DataWarning, match="no validation rows"):
        split_shards((images[:3], labels[:3]), 3, out=tmp_path / "one-each")


def test_bad_splits_are_one_line_errors_naming_the_fix(tmp_path):
    images, labels = _digits_like(10)
    cases = [
        (dict(n_sites=11), ConfigError, "a split into 11 sites needs at least 11 rows, the data has 10: use fewer"),
        (dict(n_sites=2, scheme="dirichlet", alpha=0), ConfigError, "alpha must be above 0"),
        (dict(n_sites=2, scheme="dirichlet", alpha=-1), ConfigError, "alpha must be above 0"),
        (dict(n_sites=2, scheme="shards"), ConfigError, "unknown; use one of: .*iid"),
        (dict(n_sites=2, scheme="pathological", classes_per_site=9), ConfigError, "use at most 4"),
        (dict(n_sites=2, val_fraction=1.0), ConfigError, "val_fraction must be at least 0 and below 1"),
    ]
    for kwargs, error, message in cases:
        with pytest.raises(error, match=message) as caught:
            split_shards((images, labels), out=tmp_path / "bad", **kwargs)
        assert "\n" not in str(caught.value)
    with pytest.raises(ManifestError, match="10 images but 9 labels"):
        split_shards((images, labels[:9]), 2, out=tmp_path / "bad")
    with pytest.raises(ManifestError, match=">= 0"):
        split_shards((images, labels - 1), 2, out=tmp_path / "bad")
