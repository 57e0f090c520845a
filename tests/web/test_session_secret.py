"""The session signing secret: from the environment or a 0600 file, never from the database; rotation
ends every session; the demo database is created 0600. Against the running service (uvicorn, SQLite)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from service.auth.sessions import COOKIE, SECRET_FILE, SECRET_STATE_KEY, SecretFile, rotate_secret
from service.config.site import Site
from service.demo import private_sqlite_file
from service.store.db import Store
from tests.harness import RunningService, running_service

ROOT = Path(__file__).resolve().parents[2]


def forge(secret: bytes, key_id: str, role: str, expires: int) -> str:
    payload = f"{secrets.token_hex(16)}.{key_id}.{role}.{expires}"
    return f"{payload}.{hmac.new(secret, payload.encode(), hashlib.sha256).hexdigest()}"


async def log_in(svc: RunningService, role: str) -> str:
    async with httpx.AsyncClient(base_url=svc.url) as c:
        r = await c.post("/login", data={"key": svc.keys[role]})
        assert r.status_code == 303, r.text
        return r.cookies[COOKIE]


async def with_cookie(svc: RunningService, cookie: str) -> int:
    async with httpx.AsyncClient(base_url=svc.url, cookies={COOKIE: cookie}) as c:
        return (await c.get("/api/audit")).status_code  # admin and operator only


async def admin_id(svc: RunningService) -> str:
    found = await svc.services.store.find_key(svc.keys["admin"])
    assert found is not None
    return found.id


async def test_a_cookie_forged_with_a_secret_from_the_database_no_longer_works(demo_site: Site, tmp_path: Path) -> None:
    # What an older version left in the database, and what a backup of it gives an attacker.
    leaked = secrets.token_hex(32)
    older = Store(f"sqlite:///{tmp_path}/wattkeeper.db")  # the database running_service uses
    await older.open()
    await older.set_state(SECRET_STATE_KEY, leaked, at=datetime.now(UTC) - timedelta(days=30))
    await older.close()
    async with running_service(demo_site, tmp_path, drivers=False) as svc:
        store, now = svc.services.store, svc.services.clock.now()
        expires = int((now + timedelta(hours=1)).timestamp())
        key_id = await admin_id(svc)

        assert await with_cookie(svc, await log_in(svc, "admin")) == 200  # sessions work
        assert await with_cookie(svc, forge(bytes.fromhex(leaked), key_id, "admin", expires)) == 401
        assert await with_cookie(svc, forge(leaked.encode(), key_id, "admin", expires)) == 401
        assert await store.get_state(SECRET_STATE_KEY) is None  # removed when sessions started
        # The method is right: with the real secret (from the file, which needs the host) it is accepted.
        secret = (tmp_path / "var" / SECRET_FILE).read_text().strip().encode()
        assert await with_cookie(svc, forge(secret, key_id, "admin", expires)) == 200
        assert oct((tmp_path / "var" / SECRET_FILE).stat().st_mode & 0o777) == "0o600"


async def test_rotation_ends_every_session(demo_site: Site, tmp_path: Path) -> None:
    async with running_service(demo_site, tmp_path, drivers=False) as svc:
        cookie = await log_in(svc, "operator")
        assert await with_cookie(svc, cookie) == 200
        env = {**os.environ, "WATTKEEPER_DATA_DIR": str(tmp_path / "var")}
        env.pop("WATTKEEPER_SESSION_SECRET", None)
        proc = await asyncio.create_subprocess_exec(
            str(ROOT / ".venv/bin/wattkeeper"),
            "rotate-session-secret",
            env=env,
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        assert proc.returncode == 0, err
        assert b"every dashboard session has ended" in out
        assert await with_cookie(svc, cookie) == 401
        assert await with_cookie(svc, await log_in(svc, "operator")) == 200


async def test_the_secret_from_the_environment(demo_site: Site, tmp_path: Path) -> None:
    secret = secrets.token_hex(24)
    async with running_service(demo_site, tmp_path, drivers=False, env={"session_secret": secret}) as svc:
        cookie = await log_in(svc, "admin")
        assert await with_cookie(svc, cookie) == 200
        expires = int((svc.services.clock.now() + timedelta(hours=1)).timestamp())
        assert await with_cookie(svc, forge(secret.encode(), await admin_id(svc), "admin", expires)) == 200
        assert not (tmp_path / "var" / SECRET_FILE).exists()


def test_secret_file_is_made_0600_and_tightened(tmp_path: Path) -> None:
    path = tmp_path / "d" / SECRET_FILE
    source = SecretFile(path)
    first = source()
    assert len(first) == 64 and oct(path.stat().st_mode & 0o777) == "0o600"
    assert source() == first
    path.chmod(0o644)
    rotate_secret(path)
    assert source() != first and oct(path.stat().st_mode & 0o777) == "0o600"
    path.write_text("short\n")
    with pytest.raises(ValueError, match="32 characters"):
        SecretFile(path)()


def test_demo_database_is_created_0600(tmp_path: Path) -> None:
    db = tmp_path / "var" / "wattkeeper.db"
    private_sqlite_file(f"sqlite:///{db}")
    assert oct(db.stat().st_mode & 0o777) == "0o600"
    private_sqlite_file("postgresql://u@h/db")  # not a file: nothing to do
