"""The OpenAPI 3 description of the platform's REST API, served at ``/openapi.json``."""

from __future__ import annotations

from typing import Any

from .. import __version__

_ERROR = {"$ref": "#/components/responses/Error"}


def _job_path(summary: str, ok: dict[str, Any], method_doc: str = "") -> dict[str, Any]:
    return {
        "summary": summary,
        "description": method_doc or summary,
        "security": [{"bearer": []}],
        "parameters": [{"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}],
        "responses": {"200": ok, "401": _ERROR, "404": _ERROR},
    }


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def openapi_schema(server_url: str = "") -> dict[str, Any]:
    job = {"$ref": "#/components/schemas/Job"}
    paths: dict[str, Any] = {
        "/health": {"get": {"summary": "Liveness check", "responses": {"200": _json({"type": "object"}, "alive")}}},
        "/api/v1/auth/login": {
            "post": {
                "summary": "Log in with email and password; returns a bearer token",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Login"}}},
                },
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/Token"}, "a bearer token"),
                    "400": _ERROR,
                    "401": _ERROR,
                },
            }
        },
        "/api/v1/jobs": {
            "post": {
                "summary": "Submit a job whose files were uploaded to S3",
                "security": [{"bearer": []}],
                "parameters": [
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "description": "Retries with the same key (same user) return the same job, never a second one",
                        "schema": {"type": "string", "minLength": 8, "maxLength": 200},
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/JobSpec"}}},
                },
                "responses": {
                    "201": _json(job, "the new job"),
                    "200": _json(job, "the job created earlier with this Idempotency-Key"),
                    "400": _ERROR,
                    "401": _ERROR,
                    "409": _ERROR,
                },
            },
            "get": {
                "summary": "The caller's jobs, newest first",
                "security": [{"bearer": []}],
                "responses": {
                    "200": _json({"type": "object", "properties": {"jobs": {"type": "array", "items": job}}}, "jobs"),
                    "401": _ERROR,
                },
            },
        },
        "/api/v1/jobs/{job_id}": {"get": _job_path("Status of one job", _json(job, "the job"))},
        "/api/v1/jobs/{job_id}/rounds": {
            "get": _job_path(
                "Per-round metrics",
                _json(
                    {
                        "type": "object",
                        "properties": {
                            "rounds": {"type": "array", "items": {"$ref": "#/components/schemas/RoundRecord"}}
                        },
                    },
                    "one record per finished round",
                ),
            )
        },
        "/api/v1/jobs/{job_id}/abort": {"post": _job_path("Abort a job", _json(job, "the job, now ABORTED"))},
        "/api/v1/jobs/{job_id}/result": {
            "get": {
                **_job_path(
                    "The final global model",
                    {
                        "description": "a PyTorch state_dict saved with torch.save",
                        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
                    },
                ),
            }
        },
        "/openapi.json": {"get": {"summary": "This schema", "responses": {"200": _json({"type": "object"}, "")}}},
    }
    paths["/api/v1/jobs/{job_id}/result"]["get"]["responses"]["409"] = _ERROR
    schemas = {
        "Login": {
            "type": "object",
            "required": ["email", "password"],
            "properties": {"email": {"type": "string", "format": "email"}, "password": {"type": "string"}},
        },
        "Token": {
            "type": "object",
            "properties": {
                "token": {"type": "string"},
                "token_type": {"type": "string", "enum": ["Bearer"]},
                "expires_at": {"type": "number", "description": "Unix time"},
                "email": {"type": "string"},
            },
        },
        "JobSpec": {
            "type": "object",
            "required": ["name", "job_key", "shards", "num_rounds"],
            "properties": {
                "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"},
                "job_key": {"type": "string", "description": "S3 key of the NVFlare job folder as a ZIP"},
                "shards": {
                    "type": "object",
                    "additionalProperties": {"type": "string"},
                    "description": "site name -> S3 key of its shard ZIP",
                },
                "num_rounds": {"type": "integer", "minimum": 1},
                "min_clients": {"type": "integer", "minimum": 1},
                "class_name": {"type": "string"},
                "job_sha256": {"type": "string"},
                "shard_sha256": {"type": "object", "additionalProperties": {"type": "string"}},
                "training": {"type": "object"},
            },
        },
        "Job": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "name": {"type": "string"},
                "status": {"type": "string", "enum": ["SUBMITTED", "RUNNING", "FINISHED", "FAILED", "ABORTED"]},
                "error": {"type": "string", "nullable": True},
                "num_rounds": {"type": "integer"},
                "sites": {"type": "array", "items": {"type": "string"}},
                "rounds_done": {"type": "integer"},
                "created_at": {"type": "number"},
                "updated_at": {"type": "number"},
            },
        },
        "ClientRound": {
            "type": "object",
            "properties": {
                "status": {"type": "string", "enum": ["ok", "failed", "absent"]},
                "loss": {"type": "number", "nullable": True},
                "samples": {"type": "integer"},
                "error": {"type": "string", "nullable": True},
            },
        },
        "RoundRecord": {
            "type": "object",
            "properties": {
                "round": {"type": "integer", "description": "from 0, as in NVFlare"},
                "num_rounds": {"type": "integer"},
                "global_loss": {"type": "number", "nullable": True},
                "clients": {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/ClientRound"}},
                "started_at": {"type": "number", "nullable": True},
                "finished_at": {"type": "number", "nullable": True},
                "duration_s": {"type": "number", "nullable": True},
            },
        },
        "Error": {"type": "object", "properties": {"error": {"type": "string"}}},
    }
    schema: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {
            "title": "ResonTech reference platform",
            "version": __version__,
            "description": "Submit NVFlare jobs whose files are in S3, follow their rounds, fetch the trained model.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {
                "Error": {
                    "description": "an error, with a message that names the fix",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                }
            },
        },
    }
    if server_url:
        schema["servers"] = [{"url": server_url}]
    return schema
