"""HTTP API: routers per resource, error handlers that say what is wrong (never a bare 500)."""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Final
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import StatementError
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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


# What a database driver or the datetime module says about a value out of its range, in the API's words.
_OUT_OF_RANGE: Final = (
    ("too large to convert", "a number in the request is too large"),
    ("out of range", "a date or number in the request is out of range (dates: years 1 to 9999)"),
    ("year", "a date in the request is out of range (years 1 to 9999)"),
)


def api_words(exc: BaseException) -> str:
    """A ValueError/OverflowError as the API tells a client: our own messages as they are, a
    library's message about a value out of range (SQLite, asyncpg, datetime) in the API's words."""
    text = str(exc)
    if isinstance(exc, OverflowError) or type(exc).__module__ not in ("builtins", "service", "drivers"):
        for marker, words in _OUT_OF_RANGE:
            if marker in text:
                return words
        if isinstance(exc, OverflowError):
            return _OUT_OF_RANGE[1][1]
    return text


async def _value_error(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": api_words(exc)}, status_code=400)


async def _statement_error(request: Request, exc: Exception) -> JSONResponse:
    # A value the database driver could not take (SQLAlchemy wraps its OverflowError/ValueError).
    assert isinstance(exc, StatementError)
    if isinstance(exc.orig, ValueError | OverflowError):
        log.info("refused a request value the database cannot store: %s", exc.orig)
        return JSONResponse({"detail": api_words(exc.orig)}, status_code=400)
    raise exc


class _TooLarge(HTTPException):
    """The request body grew past the limit while being read (an HTTPException, so that the body
    parser passes it on and the API's handler answers it, JSON with a reason, like any other 4xx)."""

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=f"request body larger than {limit} bytes")


class RequestChecks:
    """Checks every request passes before routing, in one cheap ASGI layer:

    - a query parameter given more than once is refused (422): every parameter of this API takes
      one value, and silently using the last of several would hide a caller's mistake;
    - `?site=ID` naming a site this deployment does not serve is refused (404, naming the id and the
      sites there are): every route takes it (DESIGN.md §4), optional while there is one site;
    - a body larger than `max_body` bytes is refused (413) by its Content-Length before it is read,
      or, sent chunked, as soon as it grows past the limit; nothing of it is parsed.

    The connection stays open after a 413, so the server discards the rest of the body and the
    client, still sending, gets to read the answer (closing at once resets the connection under
    the client's feet and the 413 is lost). Only a declared length beyond DRAIN_FACTOR times the
    limit is answered with the connection closed: not worth reading to the end.
    """

    DRAIN_FACTOR = 16

    def __init__(self, app: ASGIApp, max_body: int, sites: Collection[str] = ()) -> None:
        self.app = app
        self.max_body = max_body
        self.sites = frozenset(sites)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope.get("query_string"):
            seen: set[str] = set()
            for key, value in parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True):
                if key in seen:
                    detail = f"query parameter '{key}' given more than once; it takes one value"
                    body = {"detail": detail, "errors": [{"where": f"query.{key}", "problem": "repeated"}]}
                    await JSONResponse(body, status_code=422)(scope, receive, send)
                    return
                seen.add(key)
                if key == "site" and self.sites and value not in self.sites:
                    served = ", ".join(sorted(self.sites))
                    detail = f"unknown site {value[:64]!r}: this deployment serves {served}"
                    body = {"detail": detail, "errors": [{"where": "query.site", "problem": "unknown site"}]}
                    await JSONResponse(body, status_code=404)(scope, receive, send)
                    return
        length: int | None = None
        chunked = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = int(value) if value.isdigit() else None
            elif name == b"transfer-encoding":
                chunked = True
        if length is None and not chunked:
            await self.app(scope, receive, send)  # no body
            return
        if length is not None and length > self.max_body:
            await self._refuse(scope, receive, send, close=length > self.DRAIN_FACTOR * self.max_body)
            return
        got = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal got
            message = await receive()
            if message["type"] == "http.request":
                got += len(message.get("body", b""))
                if got > self.max_body:
                    raise _TooLarge(self.max_body)
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, watched_send)
        except _TooLarge:
            if started:
                raise
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, *, close: bool = False) -> None:
        detail = f"request body larger than {self.max_body} bytes"
        body = {"detail": detail, "errors": [{"where": "body", "problem": "too large"}]}
        headers = {"Connection": "close"} if close else None
        await JSONResponse(body, status_code=413, headers=headers)(scope, receive, send)


def install(app: FastAPI, *, max_body: int, sites: Collection[str] = ()) -> None:
    """Add every router, the request checks and the error handlers; `sites` are the ids `?site=` may name."""
    app.add_middleware(RequestChecks, max_body=max_body, sites=sites)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ValueError, _value_error)
    # A number too large for the database (e.g. an offset of 10**30) is bad input, not a crash.
    app.add_exception_handler(OverflowError, _value_error)
    app.add_exception_handler(StatementError, _statement_error)
    for router in ROUTERS:
        app.include_router(router)
    openapi.install(app)
