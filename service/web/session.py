"""Dashboard sessions: a login exchanges an API key for a signed, HttpOnly cookie.

Browsers cannot put `Authorization: Bearer` on an EventSource or a page load, so the login page
trades the key for a cookie `<key id>.<role>.<expiry>.<hmac>`. The key itself never leaves the
login request. The signing secret lives in the state store (shared by every core instance on one
database, kept across restarts). A session ends at its expiry, at logout, or as soon as its key
is revoked or changes role (checked against the store at most every KEY_CHECK_S).

Cookie-authenticated requests that change something must carry `HX-Request` or
`X-Requested-With`: a cross-site form cannot set those headers, and a cross-site script that
tries needs a CORS preflight, which this service never grants. SameSite=Strict is the second wall.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final

from service.settings import ROLES, Role
from service.store import Store

if TYPE_CHECKING:
    from service.app import Services

COOKIE: Final = "wk_session"
TTL: Final = timedelta(hours=12)  # one shift; then log in again
KEY_CHECK_S: Final = 30.0
SECRET_STATE_KEY: Final = "web.session_secret"
CSRF_HEADERS: Final = ("hx-request", "x-requested-with")
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class Session:
    """A verified session: whose key and which role."""

    key_id: str
    role: Role
    expires: datetime


class Sessions:
    """Issues and checks session cookies with one secret."""

    def __init__(self, secret: bytes, store: Store, *, key_check_s: float = KEY_CHECK_S) -> None:
        self._secret = secret
        self._store = store
        self._key_check_s = key_check_s
        self._keys: dict[str, Role] = {}
        self._keys_at = -key_check_s

    def _sign(self, payload: str) -> str:
        return hmac.new(self._secret, payload.encode(), hashlib.sha256).hexdigest()

    def issue(self, key_id: str, role: Role, now: datetime) -> tuple[str, int]:
        """A cookie value for a key that has just been verified, and its lifetime in seconds."""
        expires = int((now + TTL).timestamp())
        payload = f"{key_id}.{role}.{expires}"
        return f"{payload}.{self._sign(payload)}", int(TTL.total_seconds())

    async def check(self, cookie: str, now: datetime) -> Session | None:
        """The session a cookie stands for, or None if forged, expired, or its key is gone."""
        parts = cookie.split(".")
        if len(parts) != 4 or len(cookie) > 200:
            return None
        key_id, role, expires, sig = parts
        if not hmac.compare_digest(sig, self._sign(f"{key_id}.{role}.{expires}")):
            return None
        if role not in ROLES or not expires.isdigit() or int(expires) <= now.timestamp():
            return None
        if await self._live_role(key_id) != role:
            return None
        return Session(key_id=key_id, role=role, expires=datetime.fromtimestamp(int(expires), now.tzinfo))

    async def _live_role(self, key_id: str) -> Role | None:
        if time.monotonic() - self._keys_at > self._key_check_s or key_id not in self._keys:
            self._keys = {k.id: k.role for k in await self._store.list_keys() if k.revoked_at is None}
            self._keys_at = time.monotonic()
        return self._keys.get(key_id)


async def sessions_of(svc: Services) -> Sessions:
    """The service's Sessions, signed with the store's secret (created on first use)."""
    found = svc.extras.get("sessions")
    if isinstance(found, Sessions):
        return found
    lock: asyncio.Lock = svc.extras.setdefault("sessions_lock", asyncio.Lock())
    async with lock:
        found = svc.extras.get("sessions")
        if isinstance(found, Sessions):
            return found
        secret = await svc.store.get_state(SECRET_STATE_KEY)
        if not isinstance(secret, str):
            secret = secrets.token_hex(32)
            await svc.store.set_state(SECRET_STATE_KEY, secret, at=svc.clock.now())
        sessions = Sessions(bytes.fromhex(secret), svc.store)
        svc.extras["sessions"] = sessions
        return sessions


def csrf_ok(method: str, headers: Mapping[str, str]) -> bool:
    """Whether a cookie-authenticated request may proceed: safe methods always, others with a custom header."""
    return method.upper() in SAFE_METHODS or any(h in headers for h in CSRF_HEADERS)
