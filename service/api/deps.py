"""Request dependencies: the running services and the caller's role (API keys, viewer < operator < admin)."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Query, Request, status

from service.auth import sessions as session
from service.auth.principal import Principal
from service.config.settings import Role
from service.services import Services

RANK: dict[str, int] = {"viewer": 0, "operator": 1, "admin": 2}


def services(request: Request) -> Services:
    """The running services of this app, for routes that take the request itself."""
    svc: Services = request.app.state.services
    return svc


async def get_services(request: Request) -> Services:
    """The running services of this app (async: a plain def would cost a worker-thread hop per request)."""
    return services(request)


ServicesDep = Annotated[Services, Depends(get_services)]

# The page of a list route: at most `limit` items after skipping `offset`.
PageLimit = Annotated[int, Query(ge=1, le=1000)]
PageOffset = Annotated[int, Query(ge=0, le=10_000_000)]


def paged(description: str, counted: str, *, link: bool = False) -> dict[int | str, dict[str, Any]]:
    """The documented 200 response of a list route: its X-Total-Count header (`counted`), and a Link if `link`."""
    headers = {"X-Total-Count": {"schema": {"type": "integer"}, "description": counted}}
    if link:
        headers["Link"] = {"schema": {"type": "string"}, "description": 'next page, rel="next"'}
    return {200: {"description": description, "headers": headers}}


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"})


async def get_principal(request: Request, svc: Services) -> Principal:
    """The caller, from `Authorization: Bearer <key>` or else the dashboard's session cookie;
    401 without a valid key or session, 429 after repeated failures."""
    cache = svc.key_cache
    client = request.client.host if request.client else "unknown"
    if cache.blocked(client):
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, "too many failed logins; wait a minute")
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        cookie = request.cookies.get(session.COOKIE)
        if cookie:
            return await _session_principal(request, svc, cookie)
        raise _unauthorized("missing API key: send 'Authorization: Bearer <key>'")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("malformed Authorization header: expected 'Bearer <key>'")
    token = token.strip()
    if len(token) > 512:
        cache.fail(client)
        raise _unauthorized("invalid API key")
    digest = hashlib.sha256(token.encode()).hexdigest()
    revision = svc.store.keys_revision
    hit = cache.get(digest, revision)
    if hit is not None:
        return hit
    found = await svc.store.find_key(token)
    if found is None:
        cache.fail(client)
        raise _unauthorized("invalid API key")
    principal = Principal(key_id=found.id, role=found.role)
    cache.put(digest, principal, revision)
    return principal


async def _session_principal(request: Request, svc: Services, cookie: str) -> Principal:
    """The caller from a dashboard session; changes need a custom header (CSRF, see service.auth.sessions)."""
    found = await svc.sessions.check(cookie, svc.clock.now())
    if found is None:
        raise _unauthorized("session expired or ended: log in again")
    if not session.csrf_ok(request.method, request.headers):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, "a change made with a session needs an 'X-Requested-With' or 'HX-Request' header"
        )
    return Principal(key_id=found.key_id, role=found.role)


def require(role: Role) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency admitting callers of at least `role`.

    One dependency rather than a chain (services -> principal -> role): FastAPI resolves every
    dependency of every request anew, and on the small, often polled live views the resolving
    took longer than the answer.
    """

    async def check(request: Request) -> Principal:
        principal = await get_principal(request, services(request))
        if RANK[principal.role] < RANK[role]:
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"this needs the {role} role; your key is {principal.role}")
        return principal

    return check


Viewer = Annotated[Principal, Depends(require("viewer"))]
Operator = Annotated[Principal, Depends(require("operator"))]
Admin = Annotated[Principal, Depends(require("admin"))]
