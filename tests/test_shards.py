"""Shards and manifests: every bad shard is refused with its own message before anything runs;
good shards validate; helpers build shards; https URIs are fetched once over real TLS."""

from __future__ import annotations

import datetime
import http.server
import io
import ipaddress
import json
import ssl
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from PIL import Image

from resontech_nb.config.settings import TrainingConfig
from resontech_nb.data.making import make_shard, make_shard_from_folder
from resontech_nb.data.shards import ShardSet, validate_shards
from resontech_nb.data.synthetic import make_synthetic_shards
from resontech_nb.errors import ManifestError, ResonTechError
from resontech_nb.jobcode import rt_dataset, rt_https, rt_manifest, rt_zip
from resontech_nb.targets.nvflare.poc_project import free_port as closed_port


def png_bytes(colour: tuple[int, int, int] = (200, 30, 30), size: int = 8) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buf, format="PNG")
    return buf.getvalue()


def write_zip(path: Path, entries: dict[str, bytes | str]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(zipfile.ZipInfo(name), data)
    return path


def manifest(*records: dict | str) -> str:
    return "\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n"


def good_shard(path: Path, labels: list[int | list[int]] = (0, 1, 2)) -> Path:
    entries: dict[str, bytes | str] = {}
    records = []
    for i, y in enumerate(labels):
        entries[f"images/{i}.png"] = png_bytes((40 * i % 255, 100, 100))
        records.append({"id": f"s{i}", "uri": f"file://images/{i}.png", "y": y})
    entries["manifest.ndjson"] = manifest(*records)
    return write_zip(path, entries)


def refused(shard: Path, **kwargs) -> str:
    """Validate ``shard``; it must fail with resontech_nb's ManifestError starting with its file name."""
    training = kwargs.pop("training", TrainingConfig())
    with pytest.raises(ManifestError) as info:
        validate_shards(shard, training, **kwargs)
    message = str(info.value)
    assert message.startswith(shard.name), message
    assert isinstance(info.value, ResonTechError)
    return message


IMG = {"images/a.png": png_bytes()}


# -- bad manifests -----------------------------------------------------------------------------


def test_missing_manifest_names_the_fix(tmp_path: Path) -> None:
    shard = write_zip(tmp_path / "nomani.zip", IMG)
    message = refused(shard)
    assert "manifest.ndjson not found at the root of shard nomani.zip" in message
    assert "put it at the ZIP root, not in a subfolder" in message


def test_nested_manifest_says_where_it_is(tmp_path: Path) -> None:
    record = {"id": "a", "uri": "file://images/a.png", "y": 0}
    shard = write_zip(tmp_path / "nested.zip", {**IMG, "data/manifest.ndjson": manifest(record)})
    message = refused(shard)
    assert "found at data/manifest.ndjson" in message
    assert "ZIP root" in message


def test_invalid_json_names_the_line(tmp_path: Path) -> None:
    text = manifest({"id": "a", "uri": "file://images/a.png", "y": 0}, "", '{"id": "b", "uri": ')
    shard = write_zip(tmp_path / "badjson.zip", {**IMG, "manifest.ndjson": text})
    message = refused(shard)
    assert "line 3 of manifest.ndjson in badjson.zip is not valid JSON" in message


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"uri": "file://images/a.png", "y": 0}, "missing field(s) id"),
        ({"id": "a", "y": 0}, "missing field(s) uri"),
        ({"id": "a", "uri": "file://images/a.png"}, "missing field(s) y"),
        ({"id": 5, "uri": "file://images/a.png", "y": 0}, "'id' must be a non-empty string"),
        ({"id": "a", "uri": "file://images/a.png", "y": "cat"}, "'y' must be a label index"),
        ({"id": "a", "uri": "file://images/a.png", "y": [0, 1.5]}, "is not an integer"),
        ({"id": "a", "uri": "file://images/a.png", "y": 0, "meta": [1]}, "'meta' must be a JSON object"),
        ([1, 2], "expected a JSON object"),
    ],
)
def test_invalid_fields(tmp_path: Path, record: object, expected: str) -> None:
    shard = write_zip(tmp_path / "fields.zip", {**IMG, "manifest.ndjson": json.dumps(record) + "\n"})
    message = refused(shard)
    assert expected in message
    assert "line 1 of manifest.ndjson in fields.zip" in message


def test_duplicate_id(tmp_path: Path) -> None:
    rec = {"id": "a", "uri": "file://images/a.png", "y": 0}
    shard = write_zip(tmp_path / "dup.zip", {**IMG, "manifest.ndjson": manifest(rec, rec)})
    message = refused(shard)
    assert "duplicate id 'a' (first on line 1)" in message and "line 2" in message


def test_label_out_of_range(tmp_path: Path) -> None:
    recs = [{"id": "a", "uri": "file://images/a.png", "y": 1}, {"id": "b", "uri": "file://images/a.png", "y": [7]}]
    shard = write_zip(tmp_path / "range.zip", {**IMG, "manifest.ndjson": manifest(*recs)})
    message = refused(shard, training=TrainingConfig(num_classes=5))
    assert "label 7 on line 2" in message
    assert "out of range for num_classes=5: raise num_classes or set it to 0 to infer it" in message
    # with num_classes=0 the same shard is fine and the count is inferred
    assert validate_shards(shard, TrainingConfig(num_classes=0)).num_classes == 8


def test_negative_label(tmp_path: Path) -> None:
    rec = {"id": "a", "uri": "file://images/a.png", "y": -1}
    shard = write_zip(tmp_path / "neg.zip", {**IMG, "manifest.ndjson": manifest(rec)})
    assert "label -1 is negative" in refused(shard)


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("file://../outside.png", "escapes the shard (it contains '..')"),
        ("file://images/../../outside.png", "escapes the shard (it contains '..')"),
        ("file:///etc/passwd", "escapes the shard (it is an absolute path)"),
        ("file://C:/Windows/x.png", "escapes the shard (it starts with a drive letter)"),
        ("file://images/missing.png", "which is not in uris.zip: add the file or fix the uri"),
        ("http://example.com/a.png", "plain http:// URIs are refused (http://example.com/a.png): use https://"),
        ("s3://bucket/a.png", "unsupported URI 's3://bucket/a.png'"),
        ("images/a.png", "unsupported URI"),
    ],
)
def test_bad_uris(tmp_path: Path, uri: str, expected: str) -> None:
    shard = write_zip(tmp_path / "uris.zip", {**IMG, "manifest.ndjson": manifest({"id": "a", "uri": uri, "y": 0})})
    message = refused(shard)
    assert expected in message
    assert "line 1" in message


@pytest.mark.parametrize(
    "entry", ["../evil.txt", "/abs/evil.txt", "images/../../evil.txt", "C:/evil.txt", "..\\evil.txt"]
)
def test_zip_slip_entries_are_refused(tmp_path: Path, entry: str) -> None:
    rec = {"id": "a", "uri": "file://images/a.png", "y": 0}
    shard = write_zip(tmp_path / "slip.zip", {**IMG, "manifest.ndjson": manifest(rec), entry: "pwned"})
    message = refused(shard)
    assert f"ZIP entry {entry!r} in slip.zip escapes the shard" in message
    dest = tmp_path / "out" / "x"
    with pytest.raises(rt_manifest.ManifestError, match="escapes the shard"):
        rt_zip.safe_extract(shard, dest)
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "out" / "evil.txt").exists()
    assert not dest.exists()
    assert list((tmp_path / "out").iterdir()) == []  # no staging folder left behind


def test_not_a_zip_and_empty_shard(tmp_path: Path) -> None:
    (tmp_path / "junk.zip").write_text("not a zip")
    assert "is not a readable ZIP file" in refused(tmp_path / "junk.zip")
    empty = write_zip(tmp_path / "empty.zip", {"manifest.ndjson": "\n"})
    assert "the shard has no samples" in refused(empty)


def test_no_shards_in_folder_names_folder_and_fix(tmp_path: Path) -> None:
    folder = tmp_path / "shards"
    folder.mkdir()
    expected = r"no shard ZIPs \(\*\.zip\) found in folder .*shards: put one ZIP per site"
    with pytest.raises(ManifestError, match=expected):
        validate_shards(folder, TrainingConfig())
    with pytest.raises(ManifestError, match="does not exist"):
        validate_shards(tmp_path / "nope", TrainingConfig())
    good = good_shard(tmp_path / "a.zip")
    with pytest.raises(ManifestError, match="listed twice"):
        validate_shards([good, good], TrainingConfig())


def test_first_bad_shard_stops_validation(tmp_path: Path) -> None:
    folder = tmp_path / "shards"
    folder.mkdir()
    good_shard(folder / "a.zip")
    write_zip(folder / "b.zip", IMG)
    with pytest.raises(ManifestError, match=r"^b\.zip: manifest\.ndjson not found"):
        validate_shards(folder, TrainingConfig())


def test_custom_manifest_file_name(tmp_path: Path) -> None:
    rec = {"id": "a", "uri": "file://images/a.png", "y": 1}
    shard = write_zip(tmp_path / "custom.zip", {**IMG, "labels.ndjson": manifest(rec)})
    assert validate_shards(shard, TrainingConfig(manifest_file="labels.ndjson")).samples == {"site-1": 1}
    assert "manifest.ndjson not found" in refused(shard)


# -- good shards -------------------------------------------------------------------------------


def test_folder_of_shards_sites_counts_and_inferred_classes(tmp_path: Path) -> None:
    folder = tmp_path / "shards"
    folder.mkdir()
    good_shard(folder / "b_second.zip", [0, 5])
    good_shard(folder / "a_first.zip", [0, 1, 2])
    result = validate_shards(folder, TrainingConfig(num_classes=0))
    assert isinstance(result, ShardSet)
    assert list(result.shards) == ["site-1", "site-2"]
    assert result.shards["site-1"].name == "a_first.zip" and result.shards["site-2"].name == "b_second.zip"
    assert result.samples == {"site-1": 3, "site-2": 2}
    assert result.num_classes == 6  # max(y) + 1 over all shards
    assert result.multi_label is False
    explicit = validate_shards(folder, TrainingConfig(num_classes=10))
    assert explicit.num_classes == 10
    single = validate_shards(folder / "a_first.zip", TrainingConfig())
    assert single.samples == {"site-1": 3} and single.num_classes == 3
    listed = validate_shards([folder / "b_second.zip", folder / "a_first.zip"], TrainingConfig())
    assert listed.shards["site-1"].name == "b_second.zip"


def test_multi_label_detected_across_shards(tmp_path: Path) -> None:
    a = good_shard(tmp_path / "a.zip", [0, 1])
    b = good_shard(tmp_path / "b.zip", [[0, 3], [1]])
    result = validate_shards([a, b], TrainingConfig())
    assert result.multi_label is True and result.num_classes == 4


def test_make_shard_from_pairs(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "x").mkdir(parents=True)
    (src / "y").mkdir(parents=True)
    for name in ("x/one.png", "y/one.png", "y/two.jpg"):
        Image.new("RGB", (10, 6), (10, 200, 30)).save(src / name)
    pairs = [(src / "x/one.png", 2), (src / "y/one.png", [0, 3]), (src / "y/two.jpg", [1])]
    out = make_shard(pairs, tmp_path / "pairs.zip")
    samples = rt_manifest.read_manifest(out)
    assert [s.y for s in samples] == [(2,), (0, 3), (1,)]
    assert len({s.id for s in samples}) == 3
    assert all(s.uri.startswith("file://images/") for s in samples)
    with zipfile.ZipFile(out) as archive:
        assert "manifest.ndjson" in archive.namelist()
    rooted = make_shard([("x/one.png", 0), ("y/one.png", 1)], tmp_path / "rooted.zip", root=src)
    assert [s.id for s in rt_manifest.read_manifest(rooted)] == ["x/one", "y/one"]
    with pytest.raises(ManifestError, match="does not exist"):
        make_shard([(src / "nope.png", 0)], tmp_path / "bad.zip")
    with pytest.raises(ManifestError, match="class index >= 0"):
        make_shard([(src / "x/one.png", -2)], tmp_path / "bad.zip")
    assert not (tmp_path / "bad.zip").exists()


def test_make_shard_from_folder(tmp_path: Path) -> None:
    folder = tmp_path / "pets"
    for cls, n in (("dogs", 2), ("cats", 3)):
        (folder / cls).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (12, 12), (i * 40, 0, 0)).save(folder / cls / f"{i}.png")
    (folder / "cats" / "notes.txt").write_text("not an image")
    out, classes = make_shard_from_folder(folder, tmp_path / "pets.zip")
    assert classes == ["cats", "dogs"]
    samples = rt_manifest.read_manifest(out)
    assert sorted(s.y[0] for s in samples) == [0, 0, 0, 1, 1]
    assert {s.id for s in samples if s.y == (1,)} == {"dogs/0", "dogs/1"}
    result = validate_shards(out, TrainingConfig())
    assert result.num_classes == 2 and result.samples == {"site-1": 5}
    (tmp_path / "flat").mkdir()
    with pytest.raises(ManifestError, match="no class subfolders"):
        make_shard_from_folder(tmp_path / "flat", tmp_path / "flat.zip")


def test_synthetic_shards_are_deterministic_and_valid(tmp_path: Path) -> None:
    first = make_synthetic_shards(tmp_path / "a", seed=3)
    again = make_synthetic_shards(tmp_path / "b", seed=3)
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in again]
    result = validate_shards(tmp_path / "a", TrainingConfig())
    assert result.samples == {"site-1": 40, "site-2": 60, "site-3": 80}
    assert result.num_classes == 4 and not result.multi_label
    multi = make_synthetic_shards(tmp_path / "m", n_clients=2, samples_per_client=(10, 12), multi_label=True)
    result = validate_shards(multi, TrainingConfig())
    assert result.multi_label and result.samples == {"site-1": 10, "site-2": 12}


def test_safe_extract_skips_unchanged_zip(tmp_path: Path) -> None:
    shard = good_shard(tmp_path / "s.zip")
    dest = rt_zip.safe_extract(shard, tmp_path / "data" / "site-1")
    assert (dest / "manifest.ndjson").is_file() and (dest / "images" / "0.png").is_file()
    (dest / "images" / "0.png").write_bytes(b"changed")
    rt_zip.safe_extract(shard, dest)  # unchanged ZIP: nothing extracted again
    assert (dest / "images" / "0.png").read_bytes() == b"changed"
    good_shard(shard, [1, 1, 1, 1])  # rewritten ZIP: extracted again
    rt_zip.safe_extract(shard, dest)
    assert (dest / "images" / "3.png").is_file()
    assert (dest / "images" / "0.png").read_bytes() != b"changed"
    assert len(rt_manifest.read_manifest(dest)) == 4  # an extracted folder reads like its ZIP


def test_rt_manifest_keeps_the_public_names_of_the_shard_modules() -> None:
    assert rt_manifest.safe_extract is rt_zip.safe_extract
    assert rt_manifest.fetch_https is rt_https.fetch_https and rt_manifest.check_remote is rt_https.check_remote
    assert rt_manifest.ManifestDataset is rt_dataset.ManifestDataset
    assert rt_manifest.ManifestError is rt_zip.ManifestError is rt_https.ManifestError is rt_dataset.ManifestError
    assert rt_manifest.Sample is rt_https.Sample is rt_dataset.Sample


def test_manifest_dataset_tensors_and_targets(tmp_path: Path) -> None:
    shard = good_shard(tmp_path / "s.zip", [[0, 2], [1]])
    dest = rt_zip.safe_extract(shard, tmp_path / "x")
    samples = rt_manifest.read_manifest(dest)
    multi = rt_dataset.ManifestDataset(dest, samples, 3, 16, True)
    image, target = multi[0]
    assert image.shape == (3, 16, 16) and image.dtype == torch.float32
    assert float(image.min()) >= -1.0 and float(image.max()) <= 1.0
    assert target.tolist() == [1.0, 0.0, 1.0]
    with pytest.raises(rt_manifest.ManifestError, match="set multi_label=True"):
        rt_dataset.ManifestDataset(dest, samples, 3, 16, False)
    single = rt_dataset.ManifestDataset(dest, samples[1:], 3, 16, False)
    assert single[0][1].dtype == torch.long and int(single[0][1]) == 1


# -- https -------------------------------------------------------------------------------------


class TLSServer:
    """A real HTTPS server on 127.0.0.1 with a self-signed certificate the tests trust."""

    def __init__(self, tmp: Path) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        cert_file, key_file = tmp / "cert.pem", tmp / "key.pem"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        self.client_context = ssl.create_default_context(cafile=str(cert_file))
        server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_context.load_cert_chain(cert_file, key_file)
        self.hits: dict[str, int] = {}
        self.image = png_bytes((0, 0, 255), 12)
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _answer(self, body: bool) -> None:
                server.hits[self.path] = server.hits.get(self.path, 0) + 1
                if self.path.startswith("/img"):
                    data = server.image
                elif self.path == "/big.png":
                    data = b"x" * 5000
                elif self.path == "/slow.png":
                    time.sleep(1.5)
                    data = server.image
                elif self.path == "/nohead.png" and not body:
                    self.send_error(405)
                    return
                elif self.path == "/nohead.png":
                    data = server.image
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if body:
                    self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                self._answer(True)

            def do_HEAD(self) -> None:  # noqa: N802
                self._answer(False)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.block_on_close = False
        self.httpd.socket = server_context.wrap_socket(self.httpd.socket, server_side=True)
        self.base = f"https://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def tls(tmp_path: Path) -> Iterator[TLSServer]:
    server = TLSServer(tmp_path)
    yield server
    server.stop()



def test_fetch_https_downloads_once_into_cache(tls: TLSServer, tmp_path: Path) -> None:
    uri = f"{tls.base}/img.png"
    cache = tmp_path / "cache"
    first = rt_https.fetch_https(uri, cache, ssl_context=tls.client_context)
    second = rt_https.fetch_https(uri, cache, ssl_context=tls.client_context)
    assert first == second and first.read_bytes() == tls.image
    assert first.name.endswith(".png") and tls.hits["/img.png"] == 1
    assert [p.name for p in cache.iterdir()] == [first.name]  # no temp files left


def test_fetch_https_size_cap_timeout_and_errors(tls: TLSServer, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    ctx = tls.client_context
    with pytest.raises(rt_manifest.ManifestError, match="more than the 1000-byte cap"):
        rt_https.fetch_https(f"{tls.base}/big.png", cache, max_bytes=1000, ssl_context=ctx)
    with pytest.raises(rt_manifest.ManifestError, match=r"could not download .*/slow\.png: .*timed out"):
        rt_https.fetch_https(f"{tls.base}/slow.png", cache, timeout=0.3, ssl_context=ctx)
    with pytest.raises(rt_manifest.ManifestError, match="HTTP 404"):
        rt_https.fetch_https(f"{tls.base}/gone.png", cache, ssl_context=ctx)
    with pytest.raises(rt_manifest.ManifestError, match="CERTIFICATE_VERIFY_FAILED"):
        rt_https.fetch_https(f"{tls.base}/img.png", cache)  # untrusted self-signed cert
    port = closed_port()
    with pytest.raises(rt_manifest.ManifestError) as info:
        rt_https.fetch_https(f"https://127.0.0.1:{port}/a.png", cache, timeout=2)
    assert str(info.value).startswith(f"could not download https://127.0.0.1:{port}/a.png: ")
    assert "check the URL or make the file part of the shard" in str(info.value)
    assert list(cache.iterdir()) == []


def remote_shard(path: Path, uris: list[str]) -> Path:
    recs = [{"id": f"r{i}", "uri": uri, "y": i % 2} for i, uri in enumerate(uris)]
    recs.append({"id": "local", "uri": "file://images/a.png", "y": 1})
    return write_zip(path, {**IMG, "manifest.ndjson": manifest(*recs)})


def test_validate_shards_checks_https_uris(tls: TLSServer, tmp_path: Path) -> None:
    ctx = tls.client_context
    ok = remote_shard(tmp_path / "ok.zip", [f"{tls.base}/img1.png", f"{tls.base}/nohead.png", f"{tls.base}/img1.png"])
    result = validate_shards(ok, TrainingConfig(), ssl_context=ctx)
    assert result.remote_uris == 2 and result.samples == {"site-1": 4}
    port = closed_port()
    bad = remote_shard(tmp_path / "bad.zip", [f"{tls.base}/img1.png", f"https://127.0.0.1:{port}/x.png"])
    message = refused(bad, ssl_context=ctx, timeout=2)
    assert f"could not download https://127.0.0.1:{port}/x.png (line 2)" in message
    assert "check the URL or make the file part of the shard" in message
    missing = remote_shard(tmp_path / "missing.zip", [f"{tls.base}/gone.png"])
    assert "HTTP 404" in refused(missing, ssl_context=ctx)
    assert validate_shards(bad, TrainingConfig(), check_remote=False).samples == {"site-1": 3}


def test_dataset_loads_https_images_through_cache(tls: TLSServer, tmp_path: Path) -> None:
    shard = remote_shard(tmp_path / "r.zip", [f"{tls.base}/img7.png"])
    dest = rt_zip.safe_extract(shard, tmp_path / "x")
    samples = rt_manifest.read_manifest(dest)
    dataset = rt_dataset.ManifestDataset(dest, samples, 2, 8, False, ssl_context=tls.client_context)
    for _ in range(3):
        image, target = dataset[0]
    assert image.shape == (3, 8, 8) and int(target) == 0
    assert tls.hits["/img7.png"] == 1
    assert float(image[2].mean()) > 0.9  # the blue image came through


def test_safe_extract_never_overwrites_a_foreign_folder(tmp_path: Path) -> None:
    shard = good_shard(tmp_path / "s.zip")
    precious = tmp_path / "mydata"
    precious.mkdir()
    (precious / "thesis.txt").write_text("keep me")
    with pytest.raises(rt_manifest.ManifestError, match="choose a new or empty folder"):
        rt_zip.safe_extract(shard, precious)
    assert (precious / "thesis.txt").read_text() == "keep me"
