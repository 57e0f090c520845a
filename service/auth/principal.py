"""Who is calling: an API key's principal, and the short-lived cache of verified keys and failed attempts."""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from dataclasses import dataclass

from service.config.settings import Role

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
