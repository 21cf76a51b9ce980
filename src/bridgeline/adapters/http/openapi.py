"""The OpenAPI 3.1 description, built from the route table and the pydantic body models."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel

from bridgeline.adapters.http.idempotency import DESCRIPTION as IDEMPOTENCY_KEY_DESCRIPTION
from bridgeline.adapters.http.idempotency import HEADER as IDEMPOTENCY_KEY
from bridgeline.adapters.http.idempotency import REPLAYED
from bridgeline.adapters.http.routing import Route

_ERROR = {
    "description": "Plivo error shape",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {"api_id": {"type": "string"}, "error": {"type": "string"}},
                "required": ["api_id", "error"],
            }
        }
    },
}


_REF_TEMPLATE = "#/components/schemas/{model}"

_IDEMPOTENCY_KEY_PARAMETER = {
    "name": IDEMPOTENCY_KEY,
    "in": "header",
    "required": False,
    "description": IDEMPOTENCY_KEY_DESCRIPTION,
    "schema": {"type": "string", "minLength": 1, "maxLength": 257},  # 255, or 255 in quotes
}
_REPLAYED_HEADER = {
    REPLAYED: {
        "description": "`true` when the answer is the one kept with the Idempotency-Key (nothing ran again)",
        "schema": {"type": "string", "enum": ["true"]},
    }
}


def openapi_document(routes: list[Route]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {}
    for route in routes:
        path = re.sub(r"\{(\w+):path\}", r"{\1}", route.path)
        operation: dict[str, Any] = {
            "summary": route.summary,
            "operationId": route.handler.__name__,
            "parameters": [
                {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                for name in re.findall(r"\{(\w+)\}", path)
            ],
            "responses": {str(route.status): {"description": "success"}, "4XX": _ERROR},
        }
        if route.idempotent_retries:
            operation["parameters"].append(_IDEMPOTENCY_KEY_PARAMETER)
            operation["responses"][str(route.status)]["headers"] = _REPLAYED_HEADER
        if route.authenticated:
            operation["security"] = [{"basic": []}]
        if route.body is not None and issubclass(route.body, BaseModel):
            operation["requestBody"] = {
                "content": {"application/json": {"schema": _schema(route.body, schemas)}}
            }
        paths.setdefault(path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "Bridgeline", "version": "0.1.0", "description": "Plivo PHLO MPC-compatible API"},
        "components": {"securitySchemes": {"basic": {"type": "http", "scheme": "basic"}}, "schemas": schemas},
        "paths": paths,
    }


def _schema(model: type[BaseModel], schemas: dict[str, Any]) -> dict[str, Any]:
    """A reference to the model's schema, which goes to components/schemas with the models it uses.

    Pydantic puts nested models under the schema's own `$defs` and points at `#/$defs/...`, which
    does not resolve once the schema sits inside an OpenAPI document."""
    schema = model.model_json_schema(ref_template=_REF_TEMPLATE)
    schemas.update(schema.pop("$defs", {}))
    schemas[model.__name__] = schema
    return {"$ref": _REF_TEMPLATE.format(model=model.__name__)}
