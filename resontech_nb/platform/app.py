"""The reference platform's REST API (Flask), under ``/api/v1``; see ``openapi.py`` for the schema.

Every job route checks the bearer token and answers 404 for jobs of other users, so a job id
reveals nothing. Request bodies are never logged (the login body holds a password).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from flask import Flask, Response, g, jsonify, request, send_file

from ..job import SUBMITTED
from .openapi import openapi_schema
from .runner import JobRunner
from .store import Store

log = logging.getLogger(__name__)

API = "/api/v1"
_SITE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_KEY = re.compile(r"^[A-Za-z0-9!_.*'()/-]{1,1024}$")


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def create_app(store: Store, runner: JobRunner) -> Flask:
    """The Flask app serving ``store`` and running jobs with ``runner``."""
    app = Flask("resontech_platform")
    app.config["MAX_CONTENT_LENGTH"] = 1024 * 1024  # job specs are small; files go through S3

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> tuple[Response, int]:
        return jsonify(error=exc.message), exc.status

    @app.errorhandler(404)
    def _not_found(_exc: Exception) -> tuple[Response, int]:
        return jsonify(error=f"no such endpoint: {request.method} {request.path} (see /openapi.json)"), 404

    @app.errorhandler(405)
    def _not_allowed(_exc: Exception) -> tuple[Response, int]:
        return jsonify(error=f"{request.method} is not allowed on {request.path} (see /openapi.json)"), 405

    @app.errorhandler(413)
    def _too_large(_exc: Exception) -> tuple[Response, int]:
        return jsonify(error="request body too large: upload files to S3 and send their keys"), 413

    def _body() -> dict[str, Any]:
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            raise ApiError(400, "the request body must be a JSON object")
        return data

    def _user() -> str:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise ApiError(401, "missing bearer token: log in at POST /api/v1/auth/login")
        email = store.user_for_token(token.strip())
        if email is None:
            raise ApiError(401, "the token is invalid or expired: log in again")
        g.user = email
        return email

    def _own_job(job_id: str) -> Any:
        user = _user()
        job = store.job(job_id)
        if job is None or job.owner != user:
            raise ApiError(404, f"no job {job_id!r} for this account")
        return job

    # -- public ---------------------------------------------------------------------
    @app.get("/health")
    @app.get(f"{API}/health")
    def health() -> Response:
        return jsonify(status="ok")

    @app.get("/openapi.json")
    @app.get(f"{API}/openapi.json")
    def openapi() -> Response:
        return jsonify(openapi_schema(request.host_url.rstrip("/")))

    @app.post(f"{API}/auth/login")
    def login() -> tuple[Response, int]:
        body = _body()
        email, password = body.get("email"), body.get("password")
        if not isinstance(email, str) or not isinstance(password, str) or not email or not password:
            raise ApiError(400, "send a JSON body with email and password")
        if not store.check_password(email, password):
            log.info("failed login for %s", email)
            raise ApiError(401, "wrong email or password")
        token, expires_at = store.issue_token(email)
        log.info("login of %s", email)
        return jsonify(token=token, token_type="Bearer", expires_at=expires_at, email=email.lower()), 200

    # -- jobs -------------------------------------------------------------------------
    @app.post(f"{API}/jobs")
    def submit_job() -> tuple[Response, int]:
        user = _user()
        spec = _validated_spec(_body())
        key = request.headers.get("Idempotency-Key") or None
        if key is not None and not re.fullmatch(r"[A-Za-z0-9_.:-]{8,200}", key):
            raise ApiError(400, "Idempotency-Key must be 8-200 letters, digits, '_', '.', ':' or '-'")
        job, created = store.create_job(
            owner=user,
            name=spec["name"],
            num_rounds=spec["num_rounds"],
            sites=sorted(spec["shards"]),
            request=spec,
            idempotency_key=key,
            status=SUBMITTED,
        )
        if not created and job.request != spec:
            raise ApiError(409, "this Idempotency-Key was already used for a different job: use a new key")
        if created:
            log.info("job %s accepted for %s (%d sites)", job.id, user, len(job.sites))
            runner.start(job)
        return jsonify(runner.status(job).public()), 201 if created else 200

    @app.get(f"{API}/jobs")
    def list_jobs() -> Response:
        user = _user()
        return jsonify(jobs=[runner.status(job).public() for job in store.jobs(user)])

    @app.get(f"{API}/jobs/<job_id>")
    def job_status(job_id: str) -> Response:
        job = runner.status(_own_job(job_id))
        data = job.public()
        data["rounds_done"] = len(runner.rounds(job))
        return jsonify(data)

    @app.get(f"{API}/jobs/<job_id>/rounds")
    def job_rounds(job_id: str) -> Response:
        job = _own_job(job_id)
        return jsonify(rounds=[r.to_dict() for r in runner.rounds(job)])

    @app.post(f"{API}/jobs/<job_id>/abort")
    def job_abort(job_id: str) -> Response:
        job = runner.abort(_own_job(job_id))
        log.info("job %s aborted by %s", job.id, g.user)
        return jsonify(job.public())

    @app.get(f"{API}/jobs/<job_id>/result")
    def job_result(job_id: str) -> Response:
        job = runner.status(_own_job(job_id))
        path = runner.result_path(job)
        if path is None:
            detail = f": {job.error}" if job.error else ""
            raise ApiError(409, f"job {job.id} is {job.status} and has no result yet{detail}")
        return send_file(path, mimetype="application/octet-stream", download_name=f"{job.id}.pt")

    return app


def _validated_spec(body: dict[str, Any]) -> dict[str, Any]:
    """Check a job spec; keep only the fields the platform understands."""
    name = body.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ApiError(400, "name must be 1-64 letters, digits, '_', '.' or '-'")
    job_key = body.get("job_key")
    if not isinstance(job_key, str) or not _KEY.match(job_key):
        raise ApiError(400, "job_key must be the S3 key of the uploaded job ZIP")
    shards = body.get("shards")
    if not isinstance(shards, dict) or not shards:
        raise ApiError(400, "shards must map each site name to the S3 key of its shard ZIP")
    for site, key in shards.items():
        if not _SITE.match(str(site)) or not isinstance(key, str) or not _KEY.match(key):
            raise ApiError(400, f"bad shard entry {site!r}: site names are 1-64 letters/digits, keys S3 keys")
    num_rounds = body.get("num_rounds")
    if not isinstance(num_rounds, int) or isinstance(num_rounds, bool) or not 1 <= num_rounds <= 10_000:
        raise ApiError(400, "num_rounds must be an integer between 1 and 10000")
    spec: dict[str, Any] = {"name": name, "job_key": job_key, "shards": dict(shards), "num_rounds": num_rounds}
    for optional in ("min_clients", "class_name", "job_sha256", "shard_sha256", "training"):
        if optional in body:
            spec[optional] = body[optional]
    return spec
