"""``PlatformClient``: the ResonTech REST API over ``requests``.

The password is sent in the login request's body and nowhere else; it is never stored. The
bearer token is cached in ``<jobs home>/tokens/<host>.json`` (mode 0600) and reused until it
expires or the server answers 401; then the client logs in again if it holds the password,
else it asks for ``%fl_login``. 5xx answers and dropped connections are retried with backoff;
retrying a submit is safe because it carries an ``Idempotency-Key``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from ...config.settings import ResonTechConfig
from ...errors import AuthError, ConfigError, JobNotFoundError, PlatformError
from ...job.handle import jobs_home
from ...records.rounds import RoundRecord

log = logging.getLogger(__name__)

API = "/api/v1"
_EXPIRY_MARGIN_S = 60


class _Retry(Retry):
    """urllib3's retries, except that a 429 (login throttled) is answered at once, never slept through."""

    RETRY_AFTER_STATUS_CODES = frozenset({503})


def token_cache_path(base_url: str, email: str = "") -> Path:
    """Where the token of ``email`` at ``base_url`` is cached (one file per account, so users never evict
    each other's sessions)."""
    host = urlsplit(base_url).netloc or base_url
    account = hashlib.sha256(email.strip().lower().encode()).hexdigest()[:16]
    return jobs_home() / "tokens" / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', host)}-{account}.json"


class PlatformClient:
    """A session with the platform at ``config.base_url`` as ``config.email``."""

    def __init__(
        self,
        config: ResonTechConfig,
        *,
        retries: int = 4,
        backoff: float = 0.3,
        timeout: float = 30.0,
    ) -> None:
        if not config.base_url:
            raise ConfigError("no platform base_url: set it with %fl_config base_url=https://...")
        self.base_url = config.base_url.rstrip("/")
        self.email = config.email
        self._password = config.password or None
        self.timeout = timeout
        self._token: str | None = None
        self._expires_at = 0.0
        self.session = requests.Session()
        retry = _Retry(
            total=retries,
            connect=retries,
            read=retries,
            status=retries,
            backoff_factor=backoff,
            status_forcelist=(500, 502, 503, 504),
            allowed_methods=None,  # POSTs too: submits carry an Idempotency-Key
            raise_on_status=False,
            respect_retry_after_header=True,
        )
        adapter = HTTPAdapter(max_retries=retry)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers["User-Agent"] = "resontech_nb"

    def __repr__(self) -> str:
        return f"PlatformClient({self.base_url!r}, email={self.email!r})"

    # -- auth -------------------------------------------------------------------------
    @property
    def logged_in(self) -> bool:
        return self._valid_token() is not None

    def login(self, password: str | None = None) -> None:
        """Log in (POST email/password) and cache the token; the password is not kept on disk."""
        if password is not None:
            self._password = password
        if not self.email:
            raise ConfigError("no email set for the platform: %fl_config email=you@example.com")
        if not self._password:
            raise AuthError(f"no password for {self.email}: run %fl_login first (or set RESONTECH_PASSWORD)")
        response = self._send("POST", "/auth/login", json={"email": self.email, "password": self._password}, auth=False)
        if response.status_code == 429:
            wait = response.headers.get("Retry-After", "60")
            raise AuthError(
                f"too many failed logins at {self.base_url}: wait {wait} s, then check the password and run %fl_login"
            )
        if response.status_code == 401:
            raise AuthError(f"wrong email or password for {self.base_url}: check them and run %fl_login again")
        self._raise_for(response)
        data = response.json()
        self._token = data["token"]
        self._expires_at = float(data.get("expires_at") or time.time() + 3600)
        self._save_token()
        log.info("logged in to %s as %s", self.base_url, self.email)

    def ensure_login(self) -> None:
        """Make sure a usable token is at hand (cached or fresh)."""
        if self._valid_token() is None:
            if not self._password:
                raise AuthError(
                    f"not logged in to {self.base_url} as {self.email or '(no email)'}: run %fl_login first "
                    "(or set RESONTECH_PASSWORD)"
                )
            self.login()

    def logout(self) -> None:
        """End the session on the server (the token is revoked there), then forget it here and on disk."""
        token = self._valid_token()
        if token is not None:
            try:
                self._send("POST", "/auth/logout")
            except PlatformError:
                log.warning("could not reach %s to revoke the session; it ends when the token expires", self.base_url)
        self._forget_token()

    def _forget_token(self) -> None:
        self._token = None
        self._expires_at = 0.0
        token_cache_path(self.base_url, self.email or "").unlink(missing_ok=True)

    def _valid_token(self) -> str | None:
        if self._token and self._expires_at - _EXPIRY_MARGIN_S > time.time():
            return self._token
        cached = self._load_token()
        if cached:
            self._token, self._expires_at = cached
            return self._token
        return None

    def _load_token(self) -> tuple[str, float] | None:
        path = token_cache_path(self.base_url, self.email or "")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if data.get("email") != (self.email or "").lower() or data.get("base_url") != self.base_url:
            return None
        expires_at = float(data.get("expires_at") or 0)
        if expires_at - _EXPIRY_MARGIN_S <= time.time():
            return None
        return str(data["token"]), expires_at

    def _save_token(self) -> None:
        path = token_cache_path(self.base_url, self.email or "")
        path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
        data = {
            "base_url": self.base_url,
            "email": (self.email or "").lower(),
            "token": self._token,
            "expires_at": self._expires_at,
        }
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")  # 0600, unique per writer
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f)
        os.replace(tmp, path)

    # -- uploads ----------------------------------------------------------------------
    def plan_uploads(self, objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """For each ``{"sha256", "size"}``: present in this account's prefix, or a presigned PUT URL.

        Safe to retry (it changes nothing on the server)."""
        return self._call("POST", "/uploads", json={"objects": objects}).json()["objects"]

    # -- jobs -------------------------------------------------------------------------
    def submit(self, job_spec: dict[str, Any], idempotency_key: str) -> dict[str, Any]:
        """POST the job; retries with the same key give back the same job."""
        return self._call("POST", "/jobs", json=job_spec, headers={"Idempotency-Key": idempotency_key}).json()

    def list_jobs(self) -> list[dict[str, Any]]:
        return self._call("GET", "/jobs").json()["jobs"]

    def status(self, job_id: str) -> dict[str, Any]:
        return self._call("GET", f"/jobs/{job_id}").json()

    def rounds(self, job_id: str) -> list[RoundRecord]:
        data = self._call("GET", f"/jobs/{job_id}/rounds").json()
        return [RoundRecord.from_dict(r) for r in data.get("rounds", [])]

    def abort(self, job_id: str) -> dict[str, Any]:
        return self._call("POST", f"/jobs/{job_id}/abort").json()

    def evaluation(self, job_id: str) -> dict[str, Any]:
        """``{"best_round": int | None, "cross_site": {model: {site: metrics}}}``."""
        return self._call("GET", f"/jobs/{job_id}/evaluation").json()

    def result(self, job_id: str, which: str = "final") -> bytes:
        """The global model (``which``: "final" or "best") as saved by ``torch.save`` (a state_dict)."""
        return self._call("GET", f"/jobs/{job_id}/result", params={"which": which}).content

    def openapi(self) -> dict[str, Any]:
        return self._send("GET", "/openapi.json", auth=False, prefix="").json()

    # -- transport --------------------------------------------------------------------
    def _call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        self.ensure_login()
        response = self._send(method, path, **kwargs)
        if response.status_code == 401:
            self._forget_token()
            if not self._password:
                raise AuthError(f"session expired for {self.base_url}: run %fl_login")
            self.login()
            response = self._send(method, path, **kwargs)
            if response.status_code == 401:
                raise AuthError(f"{self.base_url} rejected the new session: run %fl_login again")
        self._raise_for(response)
        return response

    def _send(
        self, method: str, path: str, *, auth: bool = True, prefix: str = API, **kwargs: Any
    ) -> requests.Response:
        headers = dict(kwargs.pop("headers", None) or {})
        if auth and self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        url = f"{self.base_url}{prefix}{path}"
        try:
            return self.session.request(method, url, headers=headers, timeout=self.timeout, **kwargs)
        except requests.ConnectionError:
            raise PlatformError(
                f"cannot reach the platform at {self.base_url}: check base_url and that the server is running"
            ) from None
        except requests.Timeout:
            raise PlatformError(
                f"the platform at {self.base_url} did not answer in {self.timeout:.0f} s: retry later"
            ) from None
        except requests.RequestException as exc:
            raise PlatformError(f"request to {self.base_url} failed: {type(exc).__name__}") from None

    def _raise_for(self, response: requests.Response) -> None:
        if response.ok:
            return
        message = _server_message(response)
        status = response.status_code
        if status == 401:
            raise AuthError(f"{self.base_url} refused the session ({message}): run %fl_login")
        if status == 403:
            raise AuthError(f"{self.base_url} does not allow this for {self.email}: {message}")
        if status == 503:
            raise PlatformError(f"{self.base_url} is unavailable: {message}")
        if status == 404:
            raise JobNotFoundError(f"{message} on {self.base_url}: check the job id (%fl_status lists jobs)")
        raise PlatformError(f"{self.base_url} answered {status}: {message}")


def _server_message(response: requests.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return (response.text or response.reason or "").strip()[:300]
    if isinstance(data, dict):
        error = data.get("error") or data.get("message") or data.get("detail")
        if isinstance(error, dict):
            error = error.get("message")
        if error:
            return str(error)[:300]
    return str(data)[:300]
