"""Manifest data loading throughput against an ImageFolder-style baseline, on the same images.

torchvision cannot be installed beside this torch build, so the baseline is a minimal stand-in
written here: it walks one folder per class like ``torchvision.datasets.ImageFolder`` and applies
the equivalent of ``Resize((s, s)) + ToTensor() + Normalize(0.5, 0.5)`` with PIL and torch, as
torchvision does. Both datasets read the same extracted PNG files through the same DataLoader.

    python bench/manifest_throughput.py [--images 1200] [--sizes 32,224] [--repeats 3]

Prints a table and writes bench/results/manifest_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from resontech_nb.data.making import IMAGE_EXTENSIONS, make_shard_from_folder
from resontech_nb.data.synthetic import synthetic_image
from resontech_nb.jobcode import rt_dataset, rt_manifest, rt_zip

RESULTS = Path(__file__).resolve().parent / "results" / "manifest_throughput.json"


class FolderBaseline(Dataset):
    """ImageFolder equivalent: (path, class index) samples, one PIL decode + resize + to-tensor + normalize per item
    (as torchvision's transforms would). ``from_root``: classes are the sorted subfolders."""

    def __init__(self, samples: list[tuple[Path, int]], img_size: int) -> None:
        self.samples = samples
        self.img_size = img_size

    @classmethod
    def from_root(cls, root: Path, img_size: int) -> FolderBaseline:
        classes = sorted(p.name for p in root.iterdir() if p.is_dir())
        samples = [
            (path, index)
            for index, name in enumerate(classes)
            for path in sorted((root / name).rglob("*"))
            if path.suffix.lower() in IMAGE_EXTENSIONS
        ]
        return cls(samples, img_size)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, target = self.samples[index]
        with Image.open(path) as img:
            img = img.convert("RGB").resize((self.img_size, self.img_size), Image.BILINEAR)
            tensor = torch.from_numpy(np.array(img)).permute(2, 0, 1).contiguous().float().div(255)
        return (tensor - 0.5) / 0.5, target


def write_images(root: Path, count: int, num_classes: int, size: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for index in range(count):
        label = index % num_classes
        folder = root / f"class_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        synthetic_image([label], num_classes, size, rng).save(folder / f"{index:05d}.png")


def images_per_second(dataset: Dataset, batch_size: int, workers: int, repeats: int) -> dict[str, float]:
    # The manifest dataset fetches whole batches (__getitems__): its own collate, as the default loop uses it.
    collate = rt_dataset.collate if isinstance(dataset, rt_dataset.ManifestDataset) else None
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=collate)
    rates = []
    for _ in range(repeats + 1):  # the first pass warms the file cache and is not counted
        start = time.perf_counter()
        seen = sum(images.shape[0] for images, _ in loader)
        rates.append(seen / (time.perf_counter() - start))
    timed = rates[1:]
    return {"median": statistics.median(timed), "min": min(timed), "max": max(timed)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=1200)
    parser.add_argument("--source-size", type=int, default=64, help="pixel size of the PNG files")
    parser.add_argument("--sizes", default="32,224", help="img_size values to load at")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", default="0,2", help="DataLoader num_workers values")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    rows = []
    with tempfile.TemporaryDirectory(prefix="rt_bench_") as tmp:
        tmp_path = Path(tmp)
        write_images(tmp_path / "folder", args.images, 4, args.source_size, seed=0)
        shard, _ = make_shard_from_folder(tmp_path / "folder", tmp_path / "shard.zip")
        extracted = rt_zip.safe_extract(shard, tmp_path / "extracted")
        image_root = extracted / "images"  # the same files for both datasets
        for size in (int(s) for s in args.sizes.split(",")):
            for workers in (int(w) for w in args.workers.split(",")):
                start = time.perf_counter()
                samples = rt_manifest.read_manifest(extracted)
                manifest_ds = rt_dataset.ManifestDataset(extracted, samples, 4, size, False)
                manifest_index_s = time.perf_counter() - start
                start = time.perf_counter()
                folder_ds = FolderBaseline.from_root(image_root, size)
                folder_index_s = time.perf_counter() - start
                assert len(manifest_ds) == len(folder_ds) == args.images
                manifest_rate = images_per_second(manifest_ds, args.batch_size, workers, args.repeats)
                folder_rate = images_per_second(folder_ds, args.batch_size, workers, args.repeats)
                rows.append(
                    {
                        "img_size": size,
                        "num_workers": workers,
                        "manifest_images_per_s": manifest_rate,
                        "imagefolder_equivalent_images_per_s": folder_rate,
                        "ratio_manifest_over_folder": manifest_rate["median"] / folder_rate["median"],
                        "manifest_index_s": manifest_index_s,
                        "folder_index_s": folder_index_s,
                    }
                )

    result = {
        "benchmark": "manifest_throughput",
        "baseline": "ImageFolder-equivalent folder-walking PIL dataset written in this script "
        "(torchvision is not installable beside this torch build)",
        "images": args.images,
        "source_image_size": args.source_size,
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "machine": platform.platform(),
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")

    print(f"Manifest dataset vs. {result['baseline']}")
    print(f"{args.images} PNG images of {args.source_size}px, batch {args.batch_size}, median of {args.repeats}")
    print(f"{'img_size':>8} {'workers':>7} {'manifest img/s':>15} {'folder img/s':>13} {'ratio':>6}")
    for row in rows:
        print(
            f"{row['img_size']:>8} {row['num_workers']:>7} {row['manifest_images_per_s']['median']:>15.0f} "
            f"{row['imagefolder_equivalent_images_per_s']['median']:>13.0f} {row['ratio_manifest_over_folder']:>6.2f}"
        )
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
