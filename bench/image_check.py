"""What the image-header check adds to shard validation, against decoding every image.

``validate_shards`` opens every ``file://`` image's header and runs Pillow's ``verify`` (no pixel
decoding). This compares, on the same shard: reading the manifest only, the image check, and a full
decode of every image (what the sites do), at a small and a large image size.

    python bench/image_check.py [--images 2000] [--sizes 32,224] [--repeats 3]

Prints a table and writes bench/results/image_check.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from resontech_nb.data.making import make_shard  # noqa: E402
from resontech_nb.data.shards import check_images
from resontech_nb.data.synthetic import synthetic_image
from resontech_nb.jobcode import rt_manifest

RESULTS = Path(__file__).resolve().parent / "results" / "image_check.json"


def build_shard(folder: Path, count: int, size: int) -> Path:
    rng = np.random.default_rng(0)
    pairs = []
    for index in range(count):
        path = folder / f"img-{index:05d}.png"
        synthetic_image([index % 4], 4, size, rng).save(path, format="PNG")
        pairs.append((path, index % 4))
    return make_shard(pairs, folder / "shard.zip", root=folder)


def decode_all(shard: Path, samples: list[rt_manifest.Sample]) -> None:
    with zipfile.ZipFile(shard) as archive:
        for sample in samples:
            with archive.open(sample.relative_path) as stream, Image.open(stream) as image:
                image.convert("RGB").load()


def timed(fn, repeats: int) -> float:
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def measure(size: int, images: int, repeats: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="rt_bench_img_") as tmp:
        shard = build_shard(Path(tmp), images, size)
        samples = rt_manifest.read_manifest(shard)
        return {
            "img_size": size,
            "images": images,
            "shard_bytes": shard.stat().st_size,
            "manifest_s": timed(lambda: rt_manifest.read_manifest(shard), repeats),
            "image_check_s": timed(lambda: check_images(shard, samples, rt_manifest.MANIFEST_FILE), repeats),
            "full_decode_s": timed(lambda: decode_all(shard, samples), repeats),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--sizes", default="32,224")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = [measure(int(size), args.images, args.repeats) for size in args.sizes.split(",")]
    print(f"{'px':>5} {'images':>7} {'MB':>7} {'manifest s':>11} {'check s':>9} {'decode s':>9} {'per image ms':>13}")
    for r in rows:
        per_image = 1000 * r["image_check_s"] / r["images"]
        print(
            f"{r['img_size']:>5} {r['images']:>7} {r['shard_bytes'] / 1e6:>7.1f} {r['manifest_s']:>11.3f} "
            f"{r['image_check_s']:>9.3f} {r['full_decode_s']:>9.3f} {per_image:>13.3f}"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    meta = {"python": sys.version.split()[0], "machine": platform.machine(), "repeats": args.repeats}
    RESULTS.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
