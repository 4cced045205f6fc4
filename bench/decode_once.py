"""The default loop's images/s with decode once (``rt_samplecache``) against a plain folder loader, same batches.

One site's shard of PNG files, trained by the default loop for ``--rounds`` rounds of ``--epochs`` local epochs
(a site keeps its process, so its sample store lives from the first round to the last), three ways, interleaved:

- ``cached``: ``rt_default_train.default_train_model`` with the default ``cache_mb`` (each image decoded once);
- ``uncached``: the same with ``cache_mb=0`` (every image decoded in every epoch, as before);
- ``folder``: a plain folder loader as torchvision's ``ImageFolder`` + ``Resize`` + ``ToTensor`` + ``Normalize``
  would do it (one PIL decode per item, default collate), fed the same rows in the same shuffled order (the same
  seeded ``DataLoader`` over the same training rows) to the same model and the same training epochs.

images/s counts every training image of every epoch of every round, over the whole call (manifest reading, model
building and training included). Prints a table and writes bench/results/decode_once.json.

    python bench/decode_once.py [--images 1200] [--sizes 32,224] [--rounds 5] [--epochs 2] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "resontech_nb" / "jobcode"))

import rt_default_train  # noqa: E402
import rt_samplecache  # noqa: E402
import rt_zip  # noqa: E402

from resontech_nb.data.making import make_shard_from_folder  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from manifest_throughput import FolderBaseline  # noqa: E402  (the same plain folder loader)

from resontech_nb.data.synthetic import synthetic_image  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "decode_once.json"
NUM_CLASSES = 4
SITE = "site-1"


class Net(nn.Module):
    """A small CNN whose cost grows with the image like a real one's, but stays below the decoding's."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 4, stride=4), nn.ReLU(), nn.AdaptiveAvgPool2d(4))
        self.head = nn.Linear(8 * 16, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


def _payload(data: Path, work: Path, round_number: int, weights, img_size: int, epochs: int, cache_mb: float) -> dict:
    return {
        "data_path": str(data),
        "round": round_number,
        "site_name": SITE,
        "initial_weights": weights,
        "device": "cpu",
        "work_dir": str(work),
        "hyperparams": {
            "num_classes": NUM_CLASSES,
            "local_epochs": epochs,
            "batch_size": 32,
            "learning_rate": 0.001,
            "img_size": img_size,
            "cache_mb": cache_mb,
        },
    }


def run_default(data: Path, work: Path, img_size: int, rounds: int, epochs: int, cache_mb: float) -> tuple[float, int]:
    rt_samplecache.clear()  # a new site process
    torch.manual_seed(0)
    weights = Net().state_dict()
    start = time.perf_counter()
    seen = 0
    for round_number in range(rounds):
        result = rt_default_train.default_train_model(
            Net, _payload(data, work, round_number, weights, img_size, epochs, cache_mb)
        )
        weights = result["weights"]
        seen += result["samples"] * epochs
    elapsed = time.perf_counter() - start
    rt_samplecache.clear()
    return elapsed, seen


def run_folder(data: Path, work: Path, img_size: int, rounds: int, epochs: int) -> tuple[float, int]:
    torch.manual_seed(0)
    weights = Net().state_dict()
    start = time.perf_counter()
    seen = 0
    for round_number in range(rounds):
        shard = rt_default_train._ShardData(_payload(data, work, round_number, weights, img_size, epochs, 0))
        paths = [(Path(data) / row.relative_path, row.y[0]) for row in shard.train_rows]
        generator = torch.Generator()
        generator.manual_seed(shard.seed)  # the default loop's order: the same batches
        loader = DataLoader(FolderBaseline(paths, img_size), batch_size=32, shuffle=True, generator=generator)
        torch.manual_seed(shard.seed)
        model = Net()
        model.load_state_dict(weights)
        model.train()
        rt_default_train._train_epochs(model, loader, torch.device("cpu"), epochs, 0.001, NUM_CLASSES, False)
        weights = model.state_dict()
        seen += len(paths) * epochs
    return time.perf_counter() - start, seen


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=1200)
    parser.add_argument("--source-size", type=int, default=64, help="pixel size of the PNG files")
    parser.add_argument("--sizes", default="32,224")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # a site's share of the 2 cores, as the local target sets it

    rows = []
    with tempfile.TemporaryDirectory(prefix="rt_decode_") as tmp:
        tmp_path = Path(tmp)
        rng = np.random.default_rng(0)
        for index in range(args.images):
            folder = tmp_path / "folder" / f"class_{index % NUM_CLASSES}"
            folder.mkdir(parents=True, exist_ok=True)
            label = index % NUM_CLASSES
            synthetic_image([label], NUM_CLASSES, args.source_size, rng).save(folder / f"{index:05d}.png")
        shard, _ = make_shard_from_folder(tmp_path / "folder", tmp_path / "shard.zip")
        data = rt_zip.safe_extract(shard, tmp_path / "data")
        work = tmp_path / "work"
        work.mkdir()
        cache_mb = float(rt_default_train.DEFAULTS["cache_mb"])
        for size in (int(s) for s in args.sizes.split(",")):
            run_default(data, work, size, 1, 1, 0)  # warm-up, not counted: torch's first passes at this size
            run_folder(data, work, size, 1, 1)
            times: dict[str, list[float]] = {"cached": [], "uncached": [], "folder": []}
            seen = 0
            for repeat in range(args.repeats):
                order = ["cached", "uncached", "folder"] if repeat % 2 == 0 else ["folder", "uncached", "cached"]
                for way in order:
                    if way == "folder":
                        elapsed, seen = run_folder(data, work, size, args.rounds, args.epochs)
                    else:
                        ways_mb = cache_mb if way == "cached" else 0
                        elapsed, seen = run_default(data, work, size, args.rounds, args.epochs, ways_mb)
                    times[way].append(elapsed)
                    print(f"  {size} px {way}: {elapsed:.2f} s, {seen / elapsed:.0f} img/s", flush=True)
            rates = {way: seen / statistics.median(values) for way, values in times.items()}
            rows.append(
                {
                    "img_size": size,
                    "images_trained": seen,
                    "seconds": times,
                    "images_per_s": rates,
                    "cached_over_folder": rates["cached"] / rates["folder"],
                    "uncached_over_folder": rates["uncached"] / rates["folder"],
                }
            )

    result = {
        "benchmark": "decode_once",
        "images": args.images,
        "source_image_size": args.source_size,
        "rounds": args.rounds,
        "local_epochs": args.epochs,
        "repeats": args.repeats,
        "cache_mb": cache_mb,
        "load_average": os.getloadavg(),
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "machine": platform.platform(),
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(
        f"{args.rounds} rounds x {args.epochs} epochs, {args.images} PNGs of {args.source_size} px, median of "
        f"{args.repeats}, load {result['load_average'][0]:.1f}"
    )
    print(f"{'img_size':>8} {'cached img/s':>13} {'uncached img/s':>15} {'folder img/s':>13} {'cached/folder':>14}")
    for row in rows:
        r = row["images_per_s"]
        print(
            f"{row['img_size']:>8} {r['cached']:>13.0f} {r['uncached']:>15.0f} {r['folder']:>13.0f} "
            f"{row['cached_over_folder']:>14.2f}"
        )
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
