"""HTTP API: routers per resource, error handlers that say what is wrong (never a bare 500)."""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api import openapi
from service.api.routes import ROUTERS

log = logging.getLogger(__name__)


def _where(loc: tuple[object, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body",)]
    return ".".join(parts) or "request"


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [{"where": _where(tuple(e.get("loc", ()))), "problem": str(e.get("msg", "invalid"))} for e in exc.errors()]
    summary = "; ".join(f"{e['where']}: {e['problem']}" for e in errors)
    return JSONResponse({"detail": summary, "errors": errors}, status_code=422)


async def _value_error(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=400)


class SingleQueryValues:
    """Refuse a query parameter given more than once: every parameter of this API takes one value,
    and silently using the last of several would hide a caller's mistake."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("query_string"):
            seen: set[str] = set()
            for key, _ in parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True):
                if key in seen:
                    detail = f"query parameter '{key}' given more than once; it takes one value"
                    body = {"detail": detail, "errors": [{"where": f"query.{key}", "problem": "repeated"}]}
                    await JSONResponse(body, status_code=422)(scope, receive, send)
                    return
                seen.add(key)
        await self.app(scope, receive, send)


def install(app: FastAPI) -> None:
    """Add every router and the error handlers."""
    app.add_middleware(SingleQueryValues)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ValueError, _value_error)
    # A number too large for the database (e.g. an offset of 10**30) is bad input, not a crash.
    app.add_exception_handler(OverflowError, _value_error)
    for router in ROUTERS:
        app.include_router(router)
    openapi.install(app)
