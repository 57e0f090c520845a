"""Dashboard sessions: a login exchanges an API key for a signed, HttpOnly cookie.

Browsers cannot put `Authorization: Bearer` on an EventSource or a page load, so the login page
trades the key for a cookie `<session id>.<key id>.<role>.<expiry>.<hmac>`. The key itself never
leaves the login request. The signing secret is never in the database (a backup of it would let
anyone forge an admin cookie): it is WATTKEEPER_SESSION_SECRET when set (the same value on every
core instance of a deployment), else the file `<data_dir>/session.key`, made with mode 0600 on
first start. `wattkeeper rotate-session-secret` writes a new file; the service notices the change
at the next request, and every session signed with the old secret ends. A session ends at its expiry; at logout, which
records its id as ended in the state store (so a copy of the cookie is refused too: at once in
this process, within KEY_CHECK_S in another instance on the same store); and as soon as its key is
revoked or changes role (at once when that happens in this process, else within KEY_CHECK_S).

Cookie-authenticated requests that change something must carry `HX-Request` or
`X-Requested-With`: a cross-site form cannot set those headers, and a cross-site script that
tries needs a CORS preflight, which this service never grants. The cookie is SameSite=Lax, the
second wall: browsers leave it off cross-site POSTs and subrequests, yet a link into the
dashboard (from an alarm e-mail or a DingTalk message) opens it logged in, which Strict would not.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

from service.config.settings import ROLES, Role, Settings
from service.store.db import Store

COOKIE: Final = "wk_session"
SAMESITE: Final = "lax"
TTL: Final = timedelta(hours=12)  # one shift; then log in again
KEY_CHECK_S: Final = 30.0
SECRET_STATE_KEY: Final = "web.session_secret"  # where older versions kept it; removed on start
SECRET_FILE: Final = "session.key"
MIN_SECRET_CHARS: Final = 32
ENDED_STATE_PREFIX: Final = "web.session_ended."
CSRF_HEADERS: Final = ("hx-request", "x-requested-with")
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_COOKIE_CHARS: Final = 256
_MAX_REMEMBERED: Final = 10_000


log = logging.getLogger(__name__)


class SecretFile:
    """The signing secret in a 0600 file: made on first use, read again whenever the file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._secret = b""

    def __call__(self) -> bytes:
        """The current secret (one stat per call; the file is read only when it changed)."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            rotate_secret(self.path)
            st = self.path.stat()
        stamp = (st.st_ino, st.st_mtime_ns)
        if stamp != self._stamp:
            if st.st_mode & 0o077:
                log.warning("%s was readable by others (mode %o); made it 0600", self.path, st.st_mode & 0o777)
                self.path.chmod(0o600)
            text = self.path.read_text(encoding="ascii").strip()
            if len(text) < MIN_SECRET_CHARS:
                raise ValueError(f"{self.path}: a session secret needs >= {MIN_SECRET_CHARS} characters")
            self._secret, self._stamp = text.encode(), stamp
        return self._secret


def rotate_secret(path: Path) -> None:
    """Write a new random secret to `path` (mode 0600, replaced atomically): every session ends."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(secrets.token_hex(32) + "\n")
    os.replace(tmp, path)


def secret_source(env_secret: str | None, data_dir: Path) -> Callable[[], bytes]:
    """WATTKEEPER_SESSION_SECRET when set, else the secret file in data_dir."""
    if env_secret:
        if len(env_secret) < MIN_SECRET_CHARS:
            raise ValueError(f"WATTKEEPER_SESSION_SECRET needs >= {MIN_SECRET_CHARS} characters")
        fixed = env_secret.encode()
        return lambda: fixed
    return SecretFile(data_dir / SECRET_FILE)


@dataclass(frozen=True, slots=True)
class Session:
    """A verified session: its id, whose key and which role."""

    id: str
    key_id: str
    role: Role
    expires: datetime


class Sessions:
    """Issues, checks and ends session cookies with one secret."""

    def __init__(self, secret: bytes | Callable[[], bytes], store: Store, *, key_check_s: float = KEY_CHECK_S) -> None:
        self._secret = secret if callable(secret) else (lambda: secret)
        self._store = store
        self._key_check_s = key_check_s
        self._keys: dict[str, Role] = {}
        self._keys_at = -key_check_s
        self._keys_revision = -1
        self._ended: dict[str, float] = {}  # session id -> its expiry (Unix s): known to be ended
        self._live: dict[str, float] = {}  # session id -> monotonic time the store last said "not ended"

    async def start(self, now: datetime) -> None:
        """Make the secret now, so a bad file or variable fails the start loudly, and remove the
        secret an older version left in the database: it signs nothing any more."""
        self._secret()
        await self._store.forget_state(SECRET_STATE_KEY, updated_before=datetime.max.replace(tzinfo=now.tzinfo))

    def _sign(self, payload: str) -> str:
        return hmac.new(self._secret(), payload.encode(), hashlib.sha256).hexdigest()

    def issue(self, key_id: str, role: Role, now: datetime) -> tuple[str, int]:
        """A cookie value for a key that has just been verified, and its lifetime in seconds."""
        expires = int((now + TTL).timestamp())
        payload = f"{secrets.token_hex(16)}.{key_id}.{role}.{expires}"
        return f"{payload}.{self._sign(payload)}", int(TTL.total_seconds())

    def verify(self, cookie: str, now: datetime) -> Session | None:
        """The session a cookie claims, if its signature holds and it has not expired (no store lookup)."""
        parts = cookie.split(".")
        if len(parts) != 5 or len(cookie) > MAX_COOKIE_CHARS:
            return None
        sid, key_id, role, expires, sig = parts
        if not hmac.compare_digest(sig, self._sign(f"{sid}.{key_id}.{role}.{expires}")):
            return None
        if role not in ROLES or not expires.isdigit() or int(expires) <= now.timestamp():
            return None
        return Session(id=sid, key_id=key_id, role=role, expires=datetime.fromtimestamp(int(expires), now.tzinfo))

    async def check(self, cookie: str, now: datetime) -> Session | None:
        """The session a cookie stands for, or None if forged, expired, ended, or its key is gone."""
        found = self.verify(cookie, now)
        if found is None or await self._is_ended(found, now):
            return None
        if await self._live_role(found.key_id) != found.role:
            return None
        return found

    async def end(self, cookie: str, now: datetime) -> bool:
        """End the session of a cookie for every copy of it; False if the cookie was no valid session."""
        found = self.verify(cookie, now)
        if found is None:
            return False
        self._ended[found.id] = found.expires.timestamp()
        self._live.pop(found.id, None)
        await self._store.set_state(ENDED_STATE_PREFIX + found.id, found.expires.isoformat(), at=now)
        # A session ended more than TTL ago has expired anyway: its record is no longer needed.
        await self._store.forget_state(ENDED_STATE_PREFIX, updated_before=now - TTL)
        return True

    async def _is_ended(self, found: Session, now: datetime) -> bool:
        if found.id in self._ended:
            return True
        seen = self._live.get(found.id)
        if seen is not None and time.monotonic() - seen <= self._key_check_s:
            return False
        if len(self._live) >= _MAX_REMEMBERED or len(self._ended) >= _MAX_REMEMBERED:
            self._forget_old(now)
        if await self._store.get_state(ENDED_STATE_PREFIX + found.id) is not None:
            self._ended[found.id] = found.expires.timestamp()
            return True
        self._live[found.id] = time.monotonic()
        return False

    def _forget_old(self, now: datetime) -> None:
        fresh = time.monotonic() - self._key_check_s
        self._live = {sid: at for sid, at in self._live.items() if at > fresh}
        self._ended = {sid: exp for sid, exp in self._ended.items() if exp > now.timestamp()}

    async def _live_role(self, key_id: str) -> Role | None:
        stale = time.monotonic() - self._keys_at > self._key_check_s
        if stale or key_id not in self._keys or self._keys_revision != self._store.keys_revision:
            revision = self._store.keys_revision
            self._keys = {k.id: k.role for k in await self._store.list_keys() if k.revoked_at is None}
            self._keys_at = time.monotonic()
            self._keys_revision = revision
        return self._keys.get(key_id)


def sessions_for(settings: Settings, store: Store) -> Sessions:
    """The service's Sessions, signed with the secret of `secret_source` (never one from the database)."""
    env_secret = settings.session_secret.get_secret_value() if settings.session_secret else None
    return Sessions(secret_source(env_secret, settings.data_dir), store)


def csrf_ok(method: str, headers: Mapping[str, str]) -> bool:
    """Whether a cookie-authenticated request may proceed: safe methods always, others with a custom header."""
    return method.upper() in SAFE_METHODS or any(h in headers for h in CSRF_HEADERS)
