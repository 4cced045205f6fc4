"""The reference platform's REST API (Flask), under ``/api/v1``.

Each route is declared once as an ``Operation`` in ``operations.py``: the server registers it here,
validates its body with the operation's pydantic model, and ``/openapi.json`` is generated from
the same list. Every job route checks the bearer token and answers 404 for jobs of other users,
so a job id reveals nothing. Request bodies are never logged (the login body holds a password).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, g, jsonify, request, send_file
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from ..errors import JobNotFoundError, StorageError
from ..records.status import QUEUED
from . import models as m
from .openapi import openapi_schema
from .operations import API, OPERATIONS
from .runner import JobRunner
from .store import JobRow, Store
from .throttle import LoginThrottle

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    response = jsonify(m.Error(error=message).model_dump())
    response.status_code = status
    response.headers.update(headers or {})
    return response


def _parse(model: type[BaseModel]) -> Any:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise ApiError(400, "the request body must be a JSON object (Content-Type: application/json)")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise ApiError(400, f"invalid {where}: {first['msg']} (see /openapi.json)") from None


def create_app(store: Store, runner: JobRunner, throttle: LoginThrottle | None = None) -> Flask:
    """The Flask app serving ``store`` and running jobs with ``runner``."""
    app = Flask("resontech_platform")
    app.config["MAX_CONTENT_LENGTH"] = 1024 * 1024  # job specs are small; files go through S3
    throttle = throttle or LoginThrottle()

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        return _error(exc.status, exc.message, exc.headers)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        if isinstance(exc, MethodNotAllowed):
            allow = ", ".join(sorted(set(exc.valid_methods or []) - {"HEAD"}))
            return _error(405, f"{request.method} is not allowed on {request.path}: use {allow}", {"Allow": allow})
        if status == 404:
            return _error(404, f"no such endpoint: {request.method} {request.path} (see /openapi.json)")
        if status == 413:
            return _error(413, "request body too large: upload files via POST /api/v1/uploads, send their sha256")
        return _error(status, f"{exc.name}: {exc.description}")

    @app.before_request
    def _only_documented_methods() -> None:
        """HEAD is not part of the API (Flask would answer it for every GET route)."""
        if request.method == "HEAD" and request.url_rule is not None:
            raise MethodNotAllowed(valid_methods=app.url_map.bind_to_environ(request.environ).allowed_methods())

    def _user() -> str:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "missing bearer token: log in at POST /api/v1/auth/login")
        email = store.user_for_token(token.strip())
        if email is None:
            raise ApiError(401, "the token is invalid, expired or logged out: log in again")
        g.user, g.token = email, token.strip()
        return email

    def _own_job(job_id: str) -> JobRow:
        user = _user()
        if not re.fullmatch(m.JOB_ID_PATTERN.strip("^$"), job_id):
            raise ApiError(400, f"{job_id!r} is not a job id: ids are letters, digits, '_', '.' and '-'")
        job = store.job(job_id)
        if job is None or job.owner != user:
            raise ApiError(404, f"no job {job_id!r} for this account")
        return runner.status(job)

    def _info(job: JobRow, **extra: Any) -> dict[str, Any]:
        return m.JobInfo(**job.public(), queue_position=runner.queue_position(job), **extra).model_dump()

    # -- handlers, by operation id --------------------------------------------------
    def health() -> Any:
        return jsonify(m.Health(status="ok").model_dump())

    def login() -> Any:
        body = _parse(m.LoginRequest)
        client = request.remote_addr or "unknown"
        wait = throttle.retry_after(body.email, client)
        if wait:
            log.warning("login of %s from %s throttled for %d s", body.email, client, wait)
            raise ApiError(429, f"too many failed logins: try again in {wait} s", {"Retry-After": str(wait)})
        if not store.check_password(body.email, body.password):
            throttle.failed(body.email, client)
            log.info("failed login for %s from %s", body.email, client)
            raise ApiError(401, "wrong email or password")
        throttle.succeeded(body.email, client)
        token, expires_at = store.issue_token(body.email)
        log.info("login of %s", body.email)
        return jsonify(m.Token(token=token, expires_at=expires_at, email=body.email.lower()).model_dump())

    def logout() -> Any:
        _user()
        store.revoke_token(g.token)
        log.info("logout of %s", g.user)
        return Response(status=204)

    def plan_uploads() -> Any:
        user = _user()
        body = _parse(m.UploadRequest)
        try:
            tickets = runner.objects.plan(user, [(o.sha256, o.size) for o in body.objects])
        except StorageError as exc:
            log.error("upload plan for %s failed: %s", user, exc)
            raise ApiError(503, "the platform cannot reach its object store: tell the platform's host") from None
        return jsonify(m.UploadPlan(objects=[m.UploadTicket(**t) for t in tickets]).model_dump())

    def submit_job() -> Any:
        user = _user()
        spec = _parse(m.JobSpec).model_dump(exclude_unset=True)
        key = request.headers.get("Idempotency-Key")
        if key is not None and not re.fullmatch(m.IDEMPOTENCY_KEY_PATTERN.strip("^$"), key):
            raise ApiError(400, "Idempotency-Key must be 8-200 letters, digits, '_', '.', ':' or '-'")
        job, created = store.create_job(
            owner=user,
            name=spec["name"],
            num_rounds=spec["num_rounds"],
            sites=sorted(spec["shards"]),
            request=spec,
            idempotency_key=key,
            status=QUEUED,
        )
        if not created and job.request != spec:
            raise ApiError(409, "this Idempotency-Key was already used for a different job: use a new key")
        if created:
            log.info("job %s accepted for %s (%d sites)", job.id, user, len(job.sites))
            runner.schedule()  # starts it now when a slot is free, else it waits QUEUED
        job = runner.status(store.job(job.id) or job)
        return jsonify(_info(job)), 201 if created else 200

    def list_jobs() -> Any:
        user = _user()
        jobs = [runner.status(job) for job in store.jobs(user)]
        return jsonify(m.JobList(jobs=[m.JobInfo(**_info(job)) for job in jobs]).model_dump())

    def get_job(job_id: str) -> Any:
        job = _own_job(job_id)
        return jsonify(_info(job, rounds_done=len(runner.rounds(job))))

    def get_rounds(job_id: str) -> Any:
        job = _own_job(job_id)
        return jsonify(m.Rounds(rounds=[m.Round(**r.to_dict()) for r in runner.rounds(job)]).model_dump())

    def get_evaluation(job_id: str) -> Any:
        job = _own_job(job_id)
        return jsonify(m.Evaluation(**runner.evaluation(job)).model_dump())

    def abort_job(job_id: str) -> Any:
        job = runner.abort(_own_job(job_id))
        log.info("job %s aborted by %s", job.id, g.user)
        return jsonify(_info(job))

    def get_result(job_id: str) -> Any:
        job = _own_job(job_id)
        which = request.args.get("which", "final")
        if which not in ("final", "best"):
            raise ApiError(400, f"which must be 'final' or 'best', not {which!r}")
        try:
            path = runner.result_path(job, which)
        except JobNotFoundError as exc:
            raise ApiError(409, str(exc)) from None
        if path is None:
            job = runner.status(job)
            detail = f": {job.error}" if job.error else ""
            raise ApiError(409, f"job {job.id} is {job.status} and has no result yet{detail}")
        return send_file(path, mimetype="application/octet-stream", download_name=f"{job.id}-{which}.pt")

    handlers: dict[str, Callable[..., Any]] = {
        "health": health,
        "login": login,
        "logout": logout,
        "planUploads": plan_uploads,
        "submitJob": submit_job,
        "listJobs": list_jobs,
        "getJob": get_job,
        "getRounds": get_rounds,
        "getEvaluation": get_evaluation,
        "abortJob": abort_job,
        "getResult": get_result,
    }
    for op in OPERATIONS:
        app.add_url_rule(op.flask_rule, op.operation_id, handlers[op.operation_id], methods=[op.method])
    app.add_url_rule(f"{API}/health", "health_v1", health, methods=["GET"])

    @app.get("/openapi.json")
    def openapi() -> Response:
        return jsonify(openapi_schema(OPERATIONS, request.host_url.rstrip("/")))

    return app
