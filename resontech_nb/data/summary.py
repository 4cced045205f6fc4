"""``data_summary``: how different the sites' data are, before training: counts, labels, image sizes and modes.

Per site: training / validation / test rows (split the way the default loop splits them), the label histogram
(a multi-label row counts once for each of its labels), the image sizes and modes seen in a sample of entries,
and the site's distance from the pooled label distribution (total variation: half the sum of the absolute
differences of the label shares, 0 for the same distribution, 1 for disjoint ones). ``rows`` is a tidy table
(one dict per site and class) for pandas; in a notebook the summary draws a site x class heatmap.

``data_summary`` reads the manifests, so it needs the shards at hand. ``summary_from_counts`` builds the same
summary from what the sites sent back from a statistics job (``jobcode/rt_statistics.py``, run by
``resontech_nb.api.data_summary`` on a target): counts only. Either way a bin below ``min_count`` rows is withheld
(``None``); on the sites it never leaves the site.
"""

from __future__ import annotations

import io
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config.settings import TrainingConfig, as_config
from ..jobcode import rt_manifest
from .shards import ShardSet, check_images, validate_shards

log = logging.getLogger(__name__)

# Skew: a site's total variation from the pooled labels beyond twice what a random draw of its size gives by chance
# (100 rows over 4 classes are about 0.07 off by chance). Below CLOSE "close to IID", below MILD "mild".
CLOSE, MILD = 0.1, 0.3


@dataclass
class SiteData:
    """One site's counts."""

    site: str
    shard: Path
    train: int | None  # None: withheld, below min_count
    val: int | None
    test: int | None
    labels: dict[int, int | None]  # class -> rows (None: withheld, below min_count)
    image_sizes: dict[tuple[int, int], int] = field(default_factory=dict)
    image_modes: dict[str, int] = field(default_factory=dict)
    distance: float = 0.0
    chance: float = 0.0  # the distance a random draw of this many rows from the pool has on average

    @property
    def skew(self) -> float:
        """The distance beyond twice the chance level (0: as close as a random draw)."""
        return max(0.0, self.distance - 2 * self.chance)

    @property
    def rows(self) -> int:
        return (self.train or 0) + (self.val or 0) + (self.test or 0)


@dataclass
class DataSummary:
    """What ``data_summary`` found: ``sites`` (one ``SiteData`` each), ``verdict``, ``rows`` for pandas."""

    sites: list[SiteData]
    num_classes: int
    multi_label: bool
    min_count: int = 0

    @property
    def verdict(self) -> str:
        """One line: how skewed the split is, by each site's distance from the pooled label distribution."""
        if len(self.sites) < 2:
            return "one site: nothing to compare"
        worst = max(self.sites, key=lambda s: s.skew)
        mean = sum(s.distance for s in self.sites) / len(self.sites)
        kind = "close to IID" if worst.skew < CLOSE else "mild label skew" if worst.skew < MILD else "strong label skew"
        return (
            f"{kind}: {worst.site} is {worst.distance:.2f} from the pooled label distribution ({worst.chance:.2f} "
            f"by chance at its size), the mean site {mean:.2f} (total variation; 0 = same labels, 1 = disjoint)"
        )

    @property
    def rows(self) -> list[dict[str, Any]]:
        """One dict per (site, class): ``pandas.DataFrame(summary.rows)``."""
        out = []
        for site in self.sites:
            for label in range(self.num_classes):
                out.append(
                    {
                        "site": site.site,
                        "class": label,
                        "count": site.labels.get(label, 0),
                        "train_rows": site.train,
                        "val_rows": site.val,
                        "distance": round(site.distance, 4),
                    }
                )
        return out

    def matrix(self) -> list[list[int | None]]:
        """Counts, a row per site and a column per class (None where withheld)."""
        return [[site.labels.get(label, 0) for label in range(self.num_classes)] for site in self.sites]

    def brief(self) -> dict[str, Any]:
        """Plain data for a job's dashboard: ``sites``, ``num_classes``, ``counts`` (``matrix()``), ``verdict``."""
        return {
            "sites": [site.site for site in self.sites],
            "num_classes": self.num_classes,
            "counts": self.matrix(),
            "verdict": self.verdict,
        }

    def describe(self) -> str:
        kind = "multi-label" if self.multi_label else "single-label"
        lines = [f"{len(self.sites)} site(s), {self.num_classes} classes, {kind}; {self.verdict}"]
        for site in self.sites:
            sizes = ", ".join(f"{w}x{h}" for w, h in sorted(site.image_sizes)) or "?"
            modes = ", ".join(sorted(site.image_modes)) or "?"
            counts = " ".join("-" if c is None else str(c) for c in self.matrix()[self.sites.index(site)])
            lines.append(
                f"  {site.site}: {_shown(site.train)} train, {_shown(site.val)} val, {_shown(site.test)} test; "
                f"labels [{counts}]; "
                f"images {sizes} {modes}; distance {site.distance:.2f}"
            )
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.describe()

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(self.describe())

    def heatmap(self, ax: Any = None) -> Any:
        """Draw the site x class counts on ``ax`` (a new figure when None); return the figure."""
        import matplotlib

        if ax is None:
            from matplotlib.figure import Figure

            figure = Figure(figsize=(1.2 + 0.45 * self.num_classes, 0.9 + 0.4 * len(self.sites)), dpi=100)
            ax = figure.add_subplot()
        else:
            figure = ax.figure
        values = [[float("nan") if c is None else c for c in row] for row in self.matrix()]
        image = ax.imshow(values, cmap=matplotlib.colormaps["Blues"], aspect="auto")
        ax.set_xticks(range(self.num_classes))
        ax.set_yticks(range(len(self.sites)), [s.site for s in self.sites])
        ax.set_xlabel("class")
        ax.set_title("rows per site and class", fontsize=9)
        top = max((c for row in self.matrix() for c in row if c is not None), default=0)
        for y, row in enumerate(self.matrix()):
            for x, count in enumerate(row):
                text = "-" if count is None else str(count)
                colour = "white" if (count or 0) > top / 2 else "black"
                ax.text(x, y, text, ha="center", va="center", fontsize=7, color=colour)
        figure.colorbar(image, ax=ax, fraction=0.04)
        figure.tight_layout()
        return figure

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.heatmap().savefig(buffer, format="png")
        return buffer.getvalue()


def _shown(count: int | None) -> str:
    return "-" if count is None else str(count)


def _chance(rows: int, pooled: list[int]) -> float:
    """The expected total variation of a random draw of ``rows`` rows from the pooled labels (normal approximation)."""
    total = sum(pooled)
    if not rows or not total:
        return 0.0
    return 0.5 * sum(math.sqrt(2 / math.pi) * math.sqrt(p / total * (1 - p / total) / rows) for p in pooled)


def _distance(counts: dict[int, int | None], pooled: list[int]) -> float:
    total = sum(c or 0 for c in counts.values())
    pooled_total = sum(pooled)
    if not total or not pooled_total:
        return 0.0
    return 0.5 * sum(abs((counts.get(c) or 0) / total - pooled[c] / pooled_total) for c in range(len(pooled)))


def data_summary(
    shards: Any,
    training: TrainingConfig | dict[str, Any] | None = None,
    *,
    sample: int = 64,
    min_count: int = 0,
) -> DataSummary:
    """Summarise each site's shard (see the module docstring); ``shards`` as ``validate_shards`` takes them.

    ``sample``: how many entries per site are opened for image sizes and modes. ``min_count``: a label bin
    with fewer rows (but not none) is withheld.
    """
    training = as_config(TrainingConfig, training)
    shard_set = shards if isinstance(shards, ShardSet) else validate_shards(shards, training, check_remote=False)
    sites = []
    for site, path in shard_set.shards.items():
        samples = rt_manifest.read_manifest(path, training.manifest_file, training.num_classes)
        train, val = rt_manifest.split_samples(samples, training.val_fraction)
        test = len(samples) - len(train) - len(val)
        labels: dict[int, int | None] = {}
        for label, count in shard_set.label_counts.get(site, {}).items():
            labels[label] = None if 0 < count < min_count else count
        modes: dict[str, int] = {}
        sizes: dict[tuple[int, int], int] = {}
        check_images(path, samples[: max(sample, 0)], training.manifest_file, modes, sizes)
        sites.append(SiteData(site, path, len(train), len(val), test, labels, sizes, modes))
    pooled = [0] * shard_set.num_classes
    for site_counts in shard_set.label_counts.values():
        for label, count in site_counts.items():
            if label < len(pooled):
                pooled[label] += count
    return _finish(DataSummary(sites, shard_set.num_classes, shard_set.multi_label, min_count), pooled)


def _finish(summary: DataSummary, pooled: list[int]) -> DataSummary:
    for site_data in summary.sites:
        site_data.distance = _distance(site_data.labels, pooled)
        site_data.chance = _chance(sum(c or 0 for c in site_data.labels.values()), pooled)
    log.info("data summary: %s", summary.verdict)
    return summary


def summary_from_counts(
    counts: dict[str, dict[str, Any]],
    shards: dict[str, Any] | None = None,
    num_classes: int = 0,
    min_count: int = 0,
) -> DataSummary:
    """The summary from the sites' counts (``{site: {"train", "val", "test", "labels", "image_sizes",
    "image_modes", "multi_label"}}`` as ``jobcode/rt_statistics.py`` sends them; a withheld count is None).

    ``shards``: each site's shard path as the job named it; ``num_classes`` 0: one past the highest class seen.
    The pooled label distribution (for the skew verdict) is what the sites showed: withheld bins count 0.
    """
    shards = shards or {}
    seen = [int(label) for site in counts.values() for label in site.get("labels", {})]
    num_classes = num_classes or (max(seen) + 1 if seen else 0)
    sites = []
    for name, site in counts.items():
        sizes = {}
        for key, count in site.get("image_sizes", {}).items():
            width, _, height = key.partition("x")
            sizes[(int(width), int(height))] = count
        labels = {int(label): count for label, count in site.get("labels", {}).items()}
        sites.append(
            SiteData(name, Path(shards.get(name, "")), site.get("train"), site.get("val"), site.get("test"), labels,
                     sizes, dict(site.get("image_modes", {})))
        )
    pooled = [0] * num_classes
    for site_data in sites:
        for label, count in site_data.labels.items():
            if label < num_classes:
                pooled[label] += count or 0
    multi_label = any(site.get("multi_label") for site in counts.values())
    return _finish(DataSummary(sites, num_classes, multi_label, min_count), pooled)
