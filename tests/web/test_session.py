"""Dashboard session cookies: signed, expiring, bound to a live key and its role."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from service.auth.sessions import ENDED_STATE_PREFIX, TTL, Sessions, csrf_ok
from service.store.db import Store, _key_id

NOW = datetime(2026, 11, 29, 18, 0, tzinfo=UTC)


def key_id(key: str) -> str:
    """The id in a key the store generated (a key given from outside has none to read)."""
    found = _key_id(key)
    assert found is not None, "not a generated key"
    return found


async def test_issue_and_check(store: Store) -> None:
    """A fresh cookie names its key and role; the key itself is not in it."""
    key = await store.create_key("operator", at=NOW)
    sessions = Sessions(b"s" * 32, store, key_check_s=0)
    cookie, max_age = sessions.issue(key_id(key), "operator", NOW)
    assert key not in cookie and max_age == TTL.total_seconds()
    found = await sessions.check(cookie, NOW + timedelta(minutes=5))
    assert found is not None and found.key_id == key_id(key) and found.role == "operator"


@pytest.mark.parametrize(
    "tamper",
    [
        lambda c: c.replace("operator", "admin"),
        lambda c: c[:-1] + ("0" if c[-1] != "0" else "1"),
        lambda c: c + ".x",
        lambda c: "",
        lambda c: "a" * 500,
    ],
)
async def test_forged_cookies_are_refused(store: Store, tamper: Callable[[str], str]) -> None:
    """Any change to the cookie breaks its signature."""
    key = await store.create_key("operator", at=NOW)
    sessions = Sessions(b"s" * 32, store, key_check_s=0)
    cookie, _ = sessions.issue(key_id(key), "operator", NOW)
    assert await sessions.check(tamper(cookie), NOW) is None


async def test_expiry_revocation_and_role_change(store: Store) -> None:
    """A session ends at TTL, when its key is revoked, and when its key's role changes."""
    key = await store.create_key("operator", at=NOW)
    sessions = Sessions(b"s" * 32, store, key_check_s=0)
    cookie, _ = sessions.issue(key_id(key), "operator", NOW)
    assert await sessions.check(cookie, NOW + TTL + timedelta(seconds=1)) is None
    assert await sessions.check(cookie, NOW + TTL - timedelta(seconds=1)) is not None
    await store.import_key(key, "viewer", at=NOW)
    assert await sessions.check(cookie, NOW) is None
    await store.import_key(key, "operator", at=NOW)
    assert await sessions.check(cookie, NOW) is not None
    assert await store.revoke_key(key_id(key), NOW)
    assert await sessions.check(cookie, NOW) is None


async def test_other_secret_other_signature(store: Store) -> None:
    """A cookie signed by another instance's secret is not accepted."""
    key = await store.create_key("admin", at=NOW)
    cookie, _ = Sessions(b"a" * 32, store).issue(key_id(key), "admin", NOW)
    assert await Sessions(b"b" * 32, store).check(cookie, NOW) is None


@pytest.mark.parametrize(
    ("method", "headers", "ok"),
    [
        ("GET", {}, True),
        ("HEAD", {}, True),
        ("POST", {}, False),
        ("DELETE", {}, False),
        ("POST", {"hx-request": "true"}, True),
        ("PATCH", {"x-requested-with": "XMLHttpRequest"}, True),
    ],
)
def test_csrf_header_rule(method: str, headers: dict[str, str], ok: bool) -> None:
    """Cookie-authenticated changes need a header a cross-site form cannot send."""
    assert csrf_ok(method, headers) is ok


async def test_logout_ends_every_copy_of_the_cookie(store: Store) -> None:
    """Ending a session refuses the same cookie from then on, here at once and in another instance
    on the same store; other sessions of the same key go on."""
    key = await store.create_key("operator", at=NOW)
    here, there = Sessions(b"s" * 32, store), Sessions(b"s" * 32, store, key_check_s=0)
    cookie, _ = here.issue(key_id(key), "operator", NOW)
    other, _ = here.issue(key_id(key), "operator", NOW)
    assert await here.check(cookie, NOW) is not None and await there.check(cookie, NOW) is not None
    assert await here.end(cookie, NOW)
    assert await here.check(cookie, NOW) is None
    assert await there.check(cookie, NOW) is None
    assert await here.check(other, NOW) is not None
    assert not await here.end("forged.cookie", NOW)


async def test_ended_session_records_are_forgotten_once_expired(store: Store) -> None:
    """The store keeps an ended session's record only while the cookie could still be valid."""
    key = await store.create_key("viewer", at=NOW)
    sessions = Sessions(b"s" * 32, store)
    old, _ = sessions.issue(key_id(key), "viewer", NOW)
    await sessions.end(old, NOW)
    later = NOW + TTL + timedelta(minutes=1)
    new, _ = sessions.issue(key_id(key), "viewer", later)
    await sessions.end(new, later)
    old_id, new_id = old.split(".")[0], new.split(".")[0]
    assert await store.get_state(ENDED_STATE_PREFIX + old_id) is None
    assert await store.get_state(ENDED_STATE_PREFIX + new_id) is not None


async def test_a_revocation_in_this_process_ends_sessions_at_once(store: Store) -> None:
    """Keys are re-read at most every KEY_CHECK_S, except after a key change made through this store."""
    key = await store.create_key("admin", at=NOW)
    sessions = Sessions(b"s" * 32, store)  # the default 30 s between key checks
    cookie, _ = sessions.issue(key_id(key), "admin", NOW)
    assert await sessions.check(cookie, NOW) is not None
    assert await store.revoke_key(key_id(key), NOW)
    assert await sessions.check(cookie, NOW) is None
