"""The OpenAPI document as the service really behaves: its error bodies, its error statuses, its auth.

FastAPI documents validation errors as `{"detail": [...]}`; this service answers every error with
`{"detail": "what is wrong", ...}` (see service.api.install), may answer 400 for a value that
passes the schema but not the domain (e.g. year 0), and guards every /api route with a key or a
dashboard session. The generated document is corrected once, when first asked for.
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import FastAPI

ERROR_SCHEMA: Final[dict[str, Any]] = {
    "title": "Error",
    "type": "object",
    "required": ["detail"],
    "properties": {
        "detail": {"type": "string", "description": "what is wrong", "examples": ["limit: must be >= 1"]},
        "errors": {
            "type": "array",
            "description": "validation errors, one per bad field",
            "items": {
                "type": "object",
                "properties": {"where": {"type": "string"}, "problem": {"type": "string"}},
            },
        },
    },
}
ERROR_REF: Final = {"$ref": "#/components/schemas/Error"}
SECURITY_SCHEMES: Final[dict[str, Any]] = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "an API key: `wattkeeper keys create --role ...`"},
    "session": {
        "type": "apiKey",
        "in": "cookie",
        "name": "wk_session",
        "description": "the dashboard's session (POST /login); changes also need an X-Requested-With header",
    },
}
ERRORS: Final = {
    "400": "a value the schema allows but the domain does not",
    "401": "no valid API key or session",
    "403": "the key's role is too low, or a session change without X-Requested-With",
    "404": "no such resource",
    "422": "invalid parameters or body",
    "429": "too many failed logins from this client",
}
METHODS: Final = frozenset({"get", "post", "put", "patch", "delete"})


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ERROR_REF}}}


def correct(doc: dict[str, Any]) -> dict[str, Any]:
    """Error bodies and statuses, and the auth of /api routes, in a generated document (in place)."""
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas["Error"] = ERROR_SCHEMA
    schemas["HTTPValidationError"] = ERROR_SCHEMA
    doc["components"]["securitySchemes"] = SECURITY_SCHEMES
    for path, operations in doc.get("paths", {}).items():
        for method, op in operations.items():
            if method not in METHODS:
                continue
            codes = ["400", "422"]
            if path.startswith("/api/"):
                op["security"] = [{"bearer": []}, {"session": []}]
                codes += ["401", "403", "429"]
            elif path == "/":
                codes.append("429")
            if "{" in path or (method != "get" and path.startswith("/api/")):
                codes.append("404")  # an id in the path, or named in the body (a room, a device)
            responses = op.setdefault("responses", {})
            for code in codes:
                responses.setdefault(code, _error(ERRORS[code]))
    return doc


def install(app: FastAPI) -> None:
    """Serve the corrected document at /openapi.json."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = correct(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
