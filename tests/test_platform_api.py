"""The platform's HTTP surface: production server, login throttling, logout, token expiry, 405s, schema.

Everything is real: the SeaweedFS S3 server, the platform on waitress on a loopback port, and
schemathesis (all phases, all checks) run as its CLI against the running server.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from resontech_nb.config.settings import ResonTechConfig
from resontech_nb.errors import AuthError
from resontech_nb.platform import PlatformServer
from resontech_nb.platform.models import JobSpec
from resontech_nb.platform.operations import OPERATIONS
from resontech_nb.platform.throttle import ThrottleLimits
from resontech_nb.targets.resontech.rest import PlatformClient, token_cache_path

pytestmark = pytest.mark.usefixtures("aws_env")

BUCKET = "api-tests"
EMAIL, PASSWORD = "erin@example.com", "erin-Secret-3310"
TESTS = Path(__file__).resolve().parent


def start_platform(tmp_path: Path, s3, **kwargs) -> PlatformServer:
    server = PlatformServer(tmp_path / "platform", s3_endpoint=s3.endpoint_url, bucket=BUCKET, **kwargs).start()
    server.add_user(EMAIL, PASSWORD)
    return server


@pytest.fixture
def platform(s3, tmp_path):
    server = start_platform(tmp_path, s3)
    yield server
    server.stop()


def login(url: str, password: str = PASSWORD, email: str = EMAIL) -> requests.Response:
    return requests.post(f"{url}/api/v1/auth/login", json={"email": email, "password": password}, timeout=30)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_production_server_answers(platform):
    response = requests.get(f"{platform.url}/health", timeout=10)
    assert response.json() == {"status": "ok"}
    server = response.headers["Server"]
    assert "werkzeug" not in server.lower() and "python" not in server.lower()
    assert server == "resontech-platform"  # waitress, with our name


def test_the_sixth_wrong_password_in_a_row_gets_429_with_retry_after(platform):
    for attempt in range(5):
        assert login(platform.url, "wrong-password").status_code == 401, attempt
    sixth = login(platform.url, "wrong-password")
    assert sixth.status_code == 429
    assert 0 < int(sixth.headers["Retry-After"]) <= 60
    assert "try again in" in sixth.json()["error"]
    # while throttled, even the right password waits: the attacker learns nothing from it
    assert login(platform.url).status_code == 429
    # another account from the same client is not locked by it
    platform.add_user("frank@example.com", "frank-Secret-77")
    assert login(platform.url, "frank-Secret-77", email="frank@example.com").status_code == 200


def test_the_throttle_lets_the_user_back_in_after_the_window(s3, tmp_path):
    server = start_platform(tmp_path, s3, login_limits=ThrottleLimits(window_s=6.0, per_pair=2))
    try:
        assert [login(server.url, "nope").status_code for _ in range(3)] == [401, 401, 429]
        client = PlatformClient(ResonTechConfig(base_url=server.url, email=EMAIL, password=PASSWORD))
        with pytest.raises(AuthError, match=r"too many failed logins .* wait \d+ s"):
            client.login()
        time.sleep(6.5)  # the window passes: no lasting lock-out
        client.login()
        assert client.list_jobs() == []
    finally:
        server.stop()


def test_logout_revokes_the_token(platform):
    client = PlatformClient(ResonTechConfig(base_url=platform.url, email=EMAIL, password=PASSWORD))
    client.login()
    token = client._token
    assert requests.get(f"{platform.url}/api/v1/jobs", headers=bearer(token), timeout=10).status_code == 200
    client.logout()
    assert not token_cache_path(platform.url, EMAIL).exists()
    refused = requests.get(f"{platform.url}/api/v1/jobs", headers=bearer(token), timeout=10)
    assert refused.status_code == 401 and "logged out" in refused.json()["error"]


def test_tokens_expire(s3, tmp_path):
    server = start_platform(tmp_path, s3, token_ttl_s=1.5)
    try:
        token = login(server.url).json()["token"]
        assert requests.get(f"{server.url}/api/v1/jobs", headers=bearer(token), timeout=10).status_code == 200
        time.sleep(2.0)
        assert requests.get(f"{server.url}/api/v1/jobs", headers=bearer(token), timeout=10).status_code == 401
    finally:
        server.stop()


def test_unsupported_methods_get_405_with_allow(platform):
    token = login(platform.url).json()["token"]
    for method, path, allowed in [
        ("DELETE", "/api/v1/jobs", {"GET", "POST"}),
        ("PUT", "/api/v1/auth/login", {"POST"}),
        ("HEAD", "/api/v1/jobs", {"GET", "POST"}),
        ("PATCH", "/api/v1/jobs/x-1/result", {"GET"}),
    ]:
        response = requests.request(method, platform.url + path, headers=bearer(token), timeout=10)
        assert response.status_code == 405, (method, path)
        assert set(response.headers["Allow"].replace(" ", "").split(",")) - {"OPTIONS"} == allowed


def test_the_schema_is_generated_from_the_validating_models(platform):
    schema = requests.get(f"{platform.url}/openapi.json", timeout=10).json()
    assert schema["openapi"] == "3.1.0"
    assert {(op.method.lower(), op.path) for op in OPERATIONS} == {
        (method, path) for path, item in schema["paths"].items() for method in item
    }
    body = schema["paths"]["/api/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/JobSpec"}
    assert sorted(schema["components"]["schemas"]["JobSpec"]["required"]) == sorted(
        name for name, field in JobSpec.model_fields.items() if field.is_required()
    )
    links = schema["paths"]["/api/v1/jobs"]["post"]["responses"]["201"]["links"]
    assert {link["operationId"] for link in links.values()} >= {"getJob", "getRounds", "getResult", "abortJob"}
    assert "which" in {p["name"] for p in schema["paths"]["/api/v1/jobs/{job_id}/result"]["get"]["parameters"]}


def test_schemathesis_finds_nothing(s3, tmp_path):
    # The fuzzer sends hundreds of wrong logins from this one address: lift the per-client limit for it.
    server = start_platform(tmp_path, s3, max_running=2, login_limits=ThrottleLimits(per_client=10**6))
    env = dict(
        os.environ,
        RT_ST_BASE_URL=server.url,
        RT_ST_EMAIL=EMAIL,
        RT_ST_PASSWORD=PASSWORD,
        SCHEMATHESIS_HOOKS="schemathesis_hooks",
        PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    )
    command = [
        str(Path(sys.executable).parent / "st"),
        "run",
        f"{server.url}/openapi.json",
        "--phases=examples,coverage,fuzzing,stateful",
        "--checks=all",
        "--mode=all",
        "--max-examples=40",
        "--seed=7",
        "--workers=1",
        "--no-color",
    ]
    try:
        run = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    finally:
        server.stop()
    report = run.stdout + run.stderr
    assert PASSWORD not in report
    assert run.returncode == 0, report[-6000:]
    assert "Stateful" in report and "Coverage" in report and "Fuzzing" in report
