"""Request dependencies: the running services and the caller's role (API keys, viewer < operator < admin)."""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from service.app import Services
from service.auth import sessions as session
from service.config.settings import Role

RANK: dict[str, int] = {"viewer": 0, "operator": 1, "admin": 2}
CACHE_S = 30.0
FAILED_LIMIT = 10
FAILED_WINDOW_S = 60.0
# Clients and verified keys remembered; beyond, the least recently seen is forgotten first.
MAX_REMEMBERED = 10_000


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key's public id and its role."""

    key_id: str
    role: Role

    @property
    def who(self) -> str:
        """How the audit log and the alarm journal name the caller."""
        return f"key:{self.key_id}"


class KeyCache:
    """Verified keys by digest for a short while, and failed attempts per client (rate limit).

    Both tables are bounded LRU: past MAX_REMEMBERED entries the least recently seen one goes, so
    a flood of new addresses forgets the oldest quiet client, never every counter at once, and a
    blocked client that keeps trying stays remembered. A verified key is trusted for CACHE_S, or
    until the store's keys change in this process (a revocation here takes effect at once).

    The client is the TCP peer as uvicorn reports it: behind a reverse proxy, every client has the
    proxy's address unless uvicorn trusts the proxy's X-Forwarded-For (FORWARDED_ALLOW_IPS, see
    deploy/README.md); otherwise one client's failures would block everyone.
    """

    def __init__(self, max_remembered: int = MAX_REMEMBERED) -> None:
        self._max = max_remembered
        self._ok: OrderedDict[str, tuple[Principal, float, int]] = OrderedDict()
        self._failed: OrderedDict[str, deque[float]] = OrderedDict()

    def get(self, digest: str, revision: int) -> Principal | None:
        hit = self._ok.get(digest)
        if hit is None or hit[2] != revision or time.monotonic() - hit[1] > CACHE_S:
            return None
        return hit[0]

    def put(self, digest: str, principal: Principal, revision: int) -> None:
        self._ok[digest] = (principal, time.monotonic(), revision)
        self._ok.move_to_end(digest)
        while len(self._ok) > self._max:
            self._ok.popitem(last=False)

    def blocked(self, client: str) -> bool:
        q = self._failed.get(client)
        if q is None:
            return False
        now = time.monotonic()
        while q and now - q[0] > FAILED_WINDOW_S:
            q.popleft()
        if not q:
            del self._failed[client]
            return False
        if len(q) < FAILED_LIMIT:
            return False
        self._failed.move_to_end(client)
        return True

    def fail(self, client: str) -> None:
        q = self._failed.get(client)
        if q is None:
            q = self._failed[client] = deque(maxlen=FAILED_LIMIT)
        else:
            self._failed.move_to_end(client)
        q.append(time.monotonic())
        while len(self._failed) > self._max:
            self._failed.popitem(last=False)

    @property
    def clients(self) -> int:
        """Clients with failures remembered."""
        return len(self._failed)


def services(request: Request) -> Services:
    """The running services of this app, for routes that take the request itself."""
    svc: Services = request.app.state.services
    return svc


async def get_services(request: Request) -> Services:
    """The running services of this app (async: a plain def would cost a worker-thread hop per request)."""
    return services(request)


ServicesDep = Annotated[Services, Depends(get_services)]


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"})


async def get_principal(request: Request, svc: Services) -> Principal:
    """The caller, from `Authorization: Bearer <key>` or else the dashboard's session cookie;
    401 without a valid key or session, 429 after repeated failures."""
    cache: KeyCache = svc.extras.setdefault("key_cache", KeyCache())
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
    found = await (await session.sessions_of(svc)).check(cookie, svc.clock.now())
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
