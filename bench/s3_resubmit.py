"""S3 bytes uploaded by the ``resontech`` target: first submit, re-submit unchanged, re-submit with one shard changed.

Everything runs on loopback: SeaweedFS (the embedded S3 server), a counting proxy in front of it (bytes are counted
where they arrive, not from the client's own report), and the reference platform server, which reaches S3 through the
proxy and so presigns the users' upload URLs for it. The client holds no S3 keys. Jobs are aborted right after
submission; only the uploads are measured (all_requests counts the platform's HEADs of the upload plans too).

Prints a table and writes bench/results/s3_resubmit.json.   .venv/bin/python bench/s3_resubmit.py
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from resontech_nb.building import builder as jobbuilder  # noqa: E402
from resontech_nb.config.settings import FederationConfig, ResonTechConfig, TrainingConfig  # noqa: E402
from resontech_nb.data.shards import validate_shards  # noqa: E402
from resontech_nb.data.synthetic import make_synthetic_shards  # noqa: E402
from resontech_nb.platform import PlatformServer  # noqa: E402
from resontech_nb.platform.loopback import EmbeddedS3, ForwardingProxy  # noqa: E402
from resontech_nb.targets.base import BuiltJob  # noqa: E402
from resontech_nb.targets.resontech.target import ResonTechTarget  # noqa: E402

MODEL = """
import torch
import torch.nn as nn


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        return self.head(self.body(x))
"""
BUCKET = "bench-resubmit"
EMAIL = "bench@example.com"
PASSWORD = "bench-Password-1"


def build(work: Path, shards: list[Path]) -> BuiltJob:
    training = TrainingConfig(img_size=64)
    federation = FederationConfig(num_rounds=1, min_clients=len(shards), job_name="bench")
    shard_set = validate_shards(shards, training)
    spec = SimpleNamespace(source=MODEL, class_name="SmallCNN", has_train_fn=False, input_shape=None)
    job_dir = jobbuilder.build_job(spec, shard_set, training, federation, out=work / f"job-{time.time_ns()}")
    return BuiltJob(job_dir, dict(shard_set.shards), training, federation, "SmallCNN")


def measured_submit(target: ResonTechTarget, built: BuiltJob, proxy: ForwardingProxy, label: str) -> dict:
    proxy.reset_counts()
    started = time.perf_counter()
    job = target.submit(built)
    seconds = time.perf_counter() - started
    job.abort()
    writes = [m for m, _, _ in proxy.requests if m in ("PUT", "POST")]
    return {
        "case": label,
        "bytes_received_by_s3": proxy.bytes_by_method["PUT"] + proxy.bytes_by_method["POST"],
        "write_requests": len(writes),
        "all_requests": len(proxy.requests),
        "client_reported_uploaded": job.upload_report.bytes_uploaded,
        "client_reported_skipped": job.upload_report.bytes_skipped,
        "submit_seconds": round(seconds, 3),
    }


def main() -> dict:
    with tempfile.TemporaryDirectory(prefix="rt_bench_s3_") as tmp:
        work = Path(tmp)
        os.environ["RESONTECH_NB_HOME"] = str(work / "home")
        shards = make_synthetic_shards(work / "shards", n_clients=3, samples_per_client=(200, 300, 400), img_size=64)
        total_shard_bytes = sum(p.stat().st_size for p in shards)
        with EmbeddedS3(work / "s3", bucket=BUCKET) as s3, ForwardingProxy(s3.endpoint_url) as proxy:
            os.environ.update(s3.env())  # the platform's keys, taken when it starts ...
            server = PlatformServer(work / "platform", s3_endpoint=proxy.url, bucket=BUCKET).start()
            for name in s3.env():
                del os.environ[name]  # ... and none for the client

            try:
                server.add_user(EMAIL, PASSWORD)
                config = ResonTechConfig(base_url=server.url, email=EMAIL, password=PASSWORD)
                target = ResonTechTarget(config)
                rows = [
                    measured_submit(target, build(work, shards), proxy, "first submit"),
                    measured_submit(target, build(work, shards), proxy, "re-submit, nothing changed"),
                ]
                changed = make_synthetic_shards(work / "changed", n_clients=1, samples_per_client=(250,), img_size=64)
                one_new = [*shards[:2], changed[0]]
                rows.append(measured_submit(target, build(work, one_new), proxy, "re-submit, one shard changed"))
                server.runner.join(timeout=60)
            finally:
                server.stop()
    result = {"shards": len(shards), "total_shard_bytes": total_shard_bytes, "runs": rows}
    print(f"{'case':32} {'bytes to S3':>12} {'PUT/POST':>9} {'requests':>9} {'seconds':>8}")
    for row in rows:
        print(
            f"{row['case']:32} {row['bytes_received_by_s3']:>12,} {row['write_requests']:>9} "
            f"{row['all_requests']:>9} {row['submit_seconds']:>8.3f}"
        )
    out = HERE / "results" / "s3_resubmit.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
