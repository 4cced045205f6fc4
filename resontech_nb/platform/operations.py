"""Every route of the platform's API, declared once: method, path, body model, answers, parameters, links.

``app.py`` registers these and validates with their models; ``openapi.py`` turns them into the schema.
"""

from __future__ import annotations

from . import models as m
from .openapi import BINARY, Operation

API = "/api/v1"
_JOB_ID = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string", "pattern": m.JOB_ID_PATTERN}}
_IDEMPOTENCY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Retries with the same key (same user) return the same job, never a second one",
    "schema": {"type": "string", "pattern": m.IDEMPOTENCY_KEY_PATTERN},
}
_WHICH = {
    "name": "which",
    "in": "query",
    "required": False,
    "description": "final: the last round's global model; best: the best by select_metric",
    "schema": {"type": "string", "enum": ["final", "best"], "default": "final"},
}
_JOB_LINKS = {
    name: {"operationId": op_id, "parameters": {"job_id": "$response.body#/id"}}
    for name, op_id in (
        ("GetJob", "getJob"),
        ("GetRounds", "getRounds"),
        ("GetEvaluation", "getEvaluation"),
        ("GetResult", "getResult"),
        ("AbortJob", "abortJob"),
    )
}
_AUTH_ERRORS = {401: (m.Error, "no valid bearer token")}
_JOB_ERRORS = {**_AUTH_ERRORS, 400: (m.Error, "bad job id"), 404: (m.Error, "no such job for this account")}

OPERATIONS = [
    Operation("GET", "/health", "health", "Liveness check", {200: (m.Health, "alive")}, auth=False),
    Operation(
        "POST",
        f"{API}/auth/login",
        "login",
        "Log in with email and password; returns a bearer token",
        {
            200: (m.Token, "a bearer token"),
            400: (m.Error, "malformed body"),
            401: (m.Error, "wrong email or password"),
            429: (m.Error, "too many failed logins: wait Retry-After seconds"),
        },
        body=m.LoginRequest,
        auth=False,
    ),
    Operation(
        "POST",
        f"{API}/auth/logout",
        "logout",
        "End this session: the token is revoked",
        {204: (None, "logged out"), **_AUTH_ERRORS},
    ),
    Operation(
        "POST",
        f"{API}/uploads",
        "planUploads",
        "For each object (sha256, size): already in the caller's own prefix, or a presigned PUT URL for it",
        {
            200: (m.UploadPlan, "one ticket per object, in the order asked"),
            400: (m.Error, "malformed body"),
            413: (m.Error, "body too large"),
            503: (m.Error, "the platform cannot reach its object store (the host's to fix)"),
            **_AUTH_ERRORS,
        },
        body=m.UploadRequest,
    ),
    Operation(
        "POST",
        f"{API}/jobs",
        "submitJob",
        "Submit a job whose files the caller uploaded (named by sha256; QUEUED while the platform is busy)",
        {
            201: (m.JobInfo, "the new job"),
            200: (m.JobInfo, "the job created earlier with this Idempotency-Key"),
            400: (m.Error, "malformed job spec"),
            409: (m.Error, "this Idempotency-Key was used for a different job"),
            413: (m.Error, "body too large"),
            **_AUTH_ERRORS,
        },
        body=m.JobSpec,
        parameters=[_IDEMPOTENCY],
        links=_JOB_LINKS,
    ),
    Operation(
        "GET", f"{API}/jobs", "listJobs", "The caller's jobs, newest first", {200: (m.JobList, "jobs"), **_AUTH_ERRORS}
    ),
    Operation(
        "GET",
        f"{API}/jobs/{{job_id}}",
        "getJob",
        "Status of one job",
        {200: (m.JobInfo, "the job"), **_JOB_ERRORS},
        parameters=[_JOB_ID],
    ),
    Operation(
        "GET",
        f"{API}/jobs/{{job_id}}/rounds",
        "getRounds",
        "The job's finished rounds, with metrics and validation",
        {200: (m.Rounds, "round records"), **_JOB_ERRORS},
        parameters=[_JOB_ID],
    ),
    Operation(
        "GET",
        f"{API}/jobs/{{job_id}}/evaluation",
        "getEvaluation",
        "The best round and the cross-site evaluation",
        {200: (m.Evaluation, "evaluation"), **_JOB_ERRORS},
        parameters=[_JOB_ID],
    ),
    Operation(
        "POST",
        f"{API}/jobs/{{job_id}}/abort",
        "abortJob",
        "Stop the job (a job that ended stays as it is)",
        {200: (m.JobInfo, "the job"), **_JOB_ERRORS},
        parameters=[_JOB_ID],
    ),
    Operation(
        "GET",
        f"{API}/jobs/{{job_id}}/result",
        "getResult",
        "The global model (torch.save of a state_dict)",
        {
            200: (BINARY, "the model file"),
            **_JOB_ERRORS,
            400: (m.Error, "bad job id or which"),
            409: (m.Error, "the job has no such model (yet)"),
        },
        parameters=[_JOB_ID, _WHICH],
    ),
]
