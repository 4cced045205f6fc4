"""The OpenAPI 3.1 schema, generated from the routes' own definitions.

``app.py`` declares each route once as an ``Operation`` (its request model, its responses as
models, its parameters and links) and validates requests with those same models. Here the list
of operations becomes ``paths`` and the pydantic models become ``components/schemas`` (pydantic
writes JSON Schema 2020-12, which OpenAPI 3.1 uses as is).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from .. import __version__
from .models import REQUEST_MODELS, RESPONSE_MODELS

BINARY = "binary"  # a response model meaning: application/octet-stream bytes
REF = "#/components/schemas/{model}"


@dataclass(frozen=True)
class Operation:
    """One method on one path, as the schema and the server both see it."""

    method: str
    path: str  # OpenAPI form: /api/v1/jobs/{job_id}
    operation_id: str
    summary: str
    responses: dict[int, tuple[Any, str]]  # status -> (model | BINARY | None, description)
    body: type[BaseModel] | None = None
    auth: bool = True
    parameters: list[dict[str, Any]] = field(default_factory=list)
    links: dict[str, dict[str, Any]] = field(default_factory=dict)  # applied to 200 and 201 answers

    @property
    def flask_rule(self) -> str:
        return self.path.replace("{", "<").replace("}", ">")


def _content(model: Any) -> dict[str, Any] | None:
    if model is None:
        return None
    if model == BINARY:
        return {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
    return {"application/json": {"schema": {"$ref": REF.format(model=model.__name__)}}}


def _response(op: Operation, status: int, model: Any, description: str) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": description}
    content = _content(model)
    if content:
        answer["content"] = content
    if status == 429:
        answer["headers"] = {
            "Retry-After": {"description": "seconds to wait", "required": True, "schema": {"type": "integer"}}
        }
    if status in (200, 201) and op.links:
        answer["links"] = op.links
    return answer


def _operation(op: Operation) -> dict[str, Any]:
    data: dict[str, Any] = {"operationId": op.operation_id, "summary": op.summary}
    if op.parameters:
        data["parameters"] = op.parameters
    if op.body is not None:
        data["requestBody"] = {"required": True, "content": _content(op.body)}
    data["responses"] = {
        str(status): _response(op, status, model, description)
        for status, (model, description) in sorted(op.responses.items())
    }
    data["security"] = [{"bearer": []}] if op.auth else []
    return data


def _closed_maps(node: Any) -> Any:
    """A map with constrained keys (``patternProperties``) allows no other keys, as pydantic validates it."""
    if isinstance(node, dict):
        if "patternProperties" in node:
            node.setdefault("additionalProperties", False)
        for value in node.values():
            _closed_maps(value)
    elif isinstance(node, list):
        for value in node:
            _closed_maps(value)
    return node


def component_schemas() -> dict[str, Any]:
    models = [(m, "validation") for m in REQUEST_MODELS] + [(m, "serialization") for m in RESPONSE_MODELS]
    _, top = models_json_schema(models, ref_template=REF)
    return _closed_maps(top.get("$defs", {}))


def openapi_schema(operations: list[Operation], server_url: str = "") -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op)
    schema: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "ResonTech reference platform",
            "version": __version__,
            "description": "Submit NVFlare jobs whose files are in S3, follow their rounds, fetch the models.",
        },
        "paths": paths,
        "components": {
            "schemas": component_schemas(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
    if server_url:
        schema["servers"] = [{"url": server_url}]
    return schema
