"""Responses checked against the OpenAPI document (jsonschema, after turning OpenAPI 3.0
``nullable`` into JSON Schema): `validate` for every test that checks a real response."""
from __future__ import annotations

import re
from typing import Any

import jsonschema


def template_of(document: dict[str, Any], path: str) -> str:
    """The document's path template that a concrete path matches."""
    for template in document["paths"]:
        pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path):
            return template
    raise AssertionError(f"{path} matches no documented path")


def json_schema(schema: Any, document: dict[str, Any]) -> Any:
    """An OpenAPI 3.0 schema as plain JSON Schema: $refs inlined, ``nullable`` as a null branch."""
    if isinstance(schema, list):
        return [json_schema(s, document) for s in schema]
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        section = "responses" if "/responses/" in schema["$ref"] else "schemas"
        return json_schema(document["components"][section][name], document)
    out = {k: json_schema(v, document) for k, v in schema.items() if k != "nullable"}
    if schema.get("nullable"):
        return {"anyOf": [out, {"type": "null"}]}
    return out


def validate(document: dict[str, Any], method: str, path: str, status: int, data: Any) -> None:
    """Validate a response body against the documented schema of (path, method, status)."""
    operation = document["paths"][template_of(document, path)][method.lower()]
    response = operation["responses"].get(str(status))
    assert response is not None, f"{method} {path}: status {status} is not documented"
    response = json_schema(response, document)
    schema = response["content"]["application/json"]["schema"]
    jsonschema.validate(data, schema, cls=jsonschema.Draft7Validator)
