"""S3 uploads: content addressing, multipart, checksums, retries, clear errors (SeaweedFS over HTTP).

Bytes are counted where they arrive: a forwarding proxy sits between boto3 and the S3 server.
"""

from __future__ import annotations

import os
import socket
import time
import zipfile

import boto3
import pytest

from resontech_nb.config.settings import ResonTechConfig
from resontech_nb.errors import StorageError
from resontech_nb.platform.loopback import ForwardingProxy
from resontech_nb.targets.resontech.storage import MiB, S3Storage, sha256_file, zip_dir_deterministic

pytestmark = pytest.mark.usefixtures("aws_env")
BUCKET = "storage-tests"


@pytest.fixture
def proxy(s3):
    with ForwardingProxy(s3.endpoint_url) as p:
        yield p


def storage_via(url: str, bucket: str = BUCKET, prefix: str = "", **kwargs) -> S3Storage:
    config = ResonTechConfig(s3_bucket=bucket, s3_endpoint_url=url, s3_prefix=prefix or f"t{time.time_ns()}")
    return S3Storage(config, **kwargs)


def put_requests(proxy: ForwardingProxy) -> list[str]:
    return [path for method, path, _ in proxy.requests if method in ("PUT", "POST")]


def test_unchanged_files_are_not_uploaded_again(proxy, tmp_path):
    files = {}
    for site, size in (("site-1", 30_000), ("site-2", 50_000)):
        files[site] = tmp_path / f"{site}.zip"
        files[site].write_bytes(os.urandom(size))
    storage = storage_via(proxy.url)

    first = storage.upload_files(files)
    assert proxy.bytes_by_method["PUT"] >= 80_000
    assert first.bytes_uploaded == 80_000 and first.bytes_skipped == 0
    assert first.keys["site-1"].endswith("/blobs/sha256/" + sha256_file(files["site-1"]))

    proxy.reset_counts()
    again = storage_via(proxy.url, prefix=storage.prefix).upload_files(files)
    assert put_requests(proxy) == []  # the S3 server received nothing to store
    assert proxy.bytes_by_method["PUT"] == 0
    assert again.bytes_uploaded == 0 and again.bytes_skipped == 80_000
    assert again.keys == first.keys

    # the same content under another name is the same blob, a changed file is a new one
    copy = tmp_path / "renamed.zip"
    copy.write_bytes(files["site-1"].read_bytes())
    files["site-2"].write_bytes(os.urandom(50_000))
    proxy.reset_counts()
    third = storage.upload_files({"renamed": copy, "site-2": files["site-2"]})
    assert third.skipped == ["renamed"] and third.uploaded == ["site-2"]
    assert proxy.bytes_by_method["PUT"] >= 50_000


def test_large_files_go_up_in_parts_and_come_back_intact(proxy, tmp_path):
    big = tmp_path / "big.zip"
    big.write_bytes(os.urandom(11 * MiB))
    storage = storage_via(
        proxy.url, multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB, max_concurrency=3, progress_threshold=MiB
    )

    blob = storage.upload_file(big)
    parts = [p for p in put_requests(proxy) if "partNumber=" in p]
    assert len(parts) == 3, put_requests(proxy)
    assert any("uploads" in p for p in put_requests(proxy))  # CreateMultipartUpload

    back = storage.download(blob.key, tmp_path / "back.zip")
    assert sha256_file(back) == sha256_file(big)


def test_a_corrupt_object_is_detected_on_download(s3, tmp_path):
    path = tmp_path / "shard.zip"
    path.write_bytes(b"the real bytes" * 1000)
    storage = storage_via(s3.endpoint_url)
    blob = storage.upload_file(path)
    # the object changes behind our back (bit rot, a bad copy) but keeps its metadata
    raw = boto3.client("s3", endpoint_url=s3.endpoint_url, region_name="us-east-1")
    raw.put_object(Bucket=BUCKET, Key=blob.key, Body=b"other bytes" * 1000, Metadata={"sha256": blob.sha256})

    with pytest.raises(StorageError, match="checksum mismatch"):
        storage.download(blob.key, tmp_path / "dl.zip")
    assert not (tmp_path / "dl.zip").exists()


def test_missing_bucket_names_the_fix(s3, tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"x")
    storage = storage_via(s3.endpoint_url, bucket="no-such-bucket")
    with pytest.raises(
        StorageError, match="bucket 'no-such-bucket' does not exist at http://127.0.0.1:.*create it or fix s3_bucket"
    ):
        storage.upload_file(path)


def test_unreachable_endpoint_names_the_fix(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    path = tmp_path / "f.bin"
    path.write_bytes(b"x")
    storage = storage_via(f"http://127.0.0.1:{port}", connect_timeout=1)
    with pytest.raises(StorageError, match="cannot reach the S3 endpoint .* check s3_endpoint_url"):
        storage.upload_file(path)


def test_a_job_folder_zips_to_the_same_blob_every_time(proxy, tmp_path):
    folder = tmp_path / "job"
    (folder / "app" / "config").mkdir(parents=True)
    (folder / "meta.json").write_text('{"name": "j"}')
    (folder / "app" / "config" / "config_fed_server.json").write_text("{}")
    first = zip_dir_deterministic(folder, tmp_path / "a.zip")
    time.sleep(1.1)  # file times change nothing
    (folder / "meta.json").touch()
    second = zip_dir_deterministic(folder, tmp_path / "b.zip")
    assert sha256_file(first) == sha256_file(second)
    assert zipfile.ZipFile(first).namelist() == ["app/config/config_fed_server.json", "meta.json"]

    storage = storage_via(proxy.url)
    assert storage.upload_dir_as_zip(folder).bytes_uploaded > 0
    assert storage.upload_dir_as_zip(folder).bytes_uploaded == 0


def test_missing_credentials_name_the_fix(s3, tmp_path, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    path = tmp_path / "f.bin"
    path.write_bytes(b"x")
    with pytest.raises(StorageError, match="no S3 credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"):
        storage_via(s3.endpoint_url).upload_file(path)


class FirstUploadsFail:
    """Answers ``statuses`` in turn to the first PUTs of object data, without forwarding them to S3."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = list(statuses)
        self.injected: list[tuple[str, int]] = []

    def __call__(self, method: str, path: str) -> int | None:
        if method != "PUT" or not self.statuses:
            return None
        status = self.statuses.pop(0)
        self.injected.append((path, status))
        return status


@pytest.mark.parametrize("multipart", [False, True], ids=["single-put", "multipart"])
def test_uploads_retry_through_500_and_503_and_the_stored_content_verifies(s3, tmp_path, multipart):
    faults = FirstUploadsFail([500, 503, 503])
    size = 11 * MiB if multipart else 200_000
    path = tmp_path / "shard.zip"
    path.write_bytes(os.urandom(size))
    with ForwardingProxy(s3.endpoint_url, fail_before_forward=faults) as flaky:
        storage = storage_via(flaky.url, multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB, max_concurrency=1)
        blob = storage.upload_file(path)
        puts = [(p, status) for method, p, status in flaky.requests if method == "PUT"]
    assert [status for _, status in faults.injected] == [500, 503, 503]  # every fault was seen by the client
    assert [status for _, status in puts[:3]] == [500, 503, 503]
    assert all(status == 200 for _, status in puts[3:]) and puts[3:], puts  # then the retries went through
    assert blob.uploaded and blob.size == size

    # what the S3 server holds (read directly, not through the proxy) is the file, byte for byte
    raw = boto3.client("s3", endpoint_url=s3.endpoint_url, region_name="us-east-1")
    head = raw.head_object(Bucket=BUCKET, Key=blob.key)
    assert head["ContentLength"] == size and head["Metadata"]["sha256"] == sha256_file(path)
    back = storage_via(s3.endpoint_url, prefix=storage.prefix).download(blob.key, tmp_path / "back.zip")
    assert sha256_file(back) == sha256_file(path)


def test_an_upload_that_keeps_failing_names_the_fix(s3, tmp_path):
    path = tmp_path / "shard.zip"
    path.write_bytes(os.urandom(10_000))
    with ForwardingProxy(s3.endpoint_url, fail_before_forward=lambda method, _: 503 if method == "PUT" else None) as p:
        with pytest.raises(StorageError, match="kept failing while trying to upload shard.zip .*check that it is"):
            storage_via(p.url).upload_file(path)
        attempts = sum(1 for method, _, _ in p.requests if method == "PUT")
    assert 5 <= attempts <= 10  # boto3's standard retries (5 attempts a call), then it gives up
