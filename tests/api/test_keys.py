"""API keys end to end: the `wattkeeper keys` CLI against a real database, ids, env keys, revocation."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import secrets
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from service.auth.keys import import_env_keys
from service.config.settings import Role
from service.config.site import Site
from service.store.db import Store
from tests.harness import running_service

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)


def wattkeeper(args: list[str], database_url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The real CLI in a child process, its database given only by WATTKEEPER_DATABASE_URL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATTKEEPER_")}
    env |= {"WATTKEEPER_DATABASE_URL": database_url, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "service", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )


async def test_keys_create_operator_end_to_end(demo_site: Site, tmp_path: Path) -> None:
    """`keys create --role operator` prints a key once; the service on that database takes it with
    operator rights (audit, overrides; its id in the audit) and refuses admin-only changes."""
    database_url = f"sqlite:///{tmp_path}/cli.db"
    done = wattkeeper(
        ["keys", "create", "--role", "operator", "--name", "duty tablet", "--create-store"], database_url, tmp_path
    )
    assert done.returncode == 0, done.stderr
    key = done.stdout.strip()
    assert re.fullmatch(r"wk_[0-9a-f]{16}_[A-Za-z0-9_-]{43}", key), key
    assert key not in done.stderr and "shown only this once" in done.stderr
    listed = wattkeeper(["keys", "list"], database_url, tmp_path)
    key_id = key.split("_")[1]
    assert listed.returncode == 0 and key not in listed.stdout
    assert re.search(rf"^{key_id}\toperator\t.*\tlive\tduty tablet$", listed.stdout, re.M), listed.stdout

    async with (
        running_service(demo_site, tmp_path, database_url=database_url, drivers=False) as svc,
        httpx.AsyncClient(base_url=svc.url, headers={"Authorization": f"Bearer {key}"}, timeout=15) as c,
    ):
        until = (svc.services.clock.now() + timedelta(hours=1)).isoformat()
        audit = await c.get("/api/audit")
        made = await c.post("/api/overrides", json={"room": "r2119", "until": until})
        admin_only = await c.patch("/api/schedules/after-hours", json={"occupied_rooms": "notify_then_off"})
        viewer_ok = await c.get("/api/rooms")
        entries = (await c.get("/api/audit", params={"who": f"key:{key_id}"})).json()
    assert audit.status_code == 200 and viewer_ok.status_code == 200
    assert made.status_code == 201, made.text
    assert admin_only.status_code == 403 and "admin" in admin_only.json()["detail"]
    assert [e["result"] for e in entries] == ["override"]


async def test_keys_revoke_cli(tmp_path: Path) -> None:
    """`keys revoke ID` ends a key; an unknown id is exit 1 with a reason."""
    database_url = f"sqlite:///{tmp_path}/cli.db"
    key = wattkeeper(["keys", "create", "--role", "viewer", "--create-store"], database_url, tmp_path).stdout.strip()
    key_id = key.split("_")[1]
    revoked = wattkeeper(["keys", "revoke", key_id], database_url, tmp_path)
    again = wattkeeper(["keys", "revoke", key_id], database_url, tmp_path)
    store = Store(database_url)
    await store.open()
    try:
        assert await store.verify(key) is None
    finally:
        await store.close()
    assert revoked.returncode == 0, revoked.stderr
    assert again.returncode == 1 and "no live key" in again.stderr


@pytest.mark.parametrize("args", [["keys", "create", "--role", "admin"], ["keys", "list"], ["keys", "revoke", "abc"]])
def test_keys_never_make_a_new_store_unasked(tmp_path: Path, args: list[str]) -> None:
    """Run where no store exists (another directory, a mistyped URL), `keys` says so and makes none."""
    done = wattkeeper(args, "sqlite:///./var/wattkeeper.db", tmp_path)
    assert done.returncode == 1, done.stderr
    assert f"no state store at {tmp_path / 'var' / 'wattkeeper.db'}" in done.stderr
    assert "wattkeeper config" in done.stderr
    assert not (tmp_path / "var").exists()
    assert done.stdout == ""


async def test_a_generated_id_that_collides_is_drawn_again_never_replacing_a_key(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = await store.create_key("admin", at=NOW)
    taken = first.split("_")[1]
    draws = iter([taken, taken, "0123456789abcdef"])
    real = secrets.token_hex  # the store draws ids from the secrets module
    monkeypatch.setattr(secrets, "token_hex", lambda n=None: next(draws) if n == 8 else real(n))
    second = await store.create_key("viewer", at=NOW)
    assert second.split("_")[1] == "0123456789abcdef"
    assert await store.verify(first) == "admin" and await store.verify(second) == "viewer"
    assert len(await store.list_keys()) == 2


async def test_env_key_ids_reveal_nothing_of_the_key_and_stay_put(store: Store) -> None:
    """An env key's id is random (not a digest prefix), the same at every start, and the audit name."""
    key = "a-bootstrap-key-from-the-environment"
    digest = hashlib.sha256(key.encode()).hexdigest()
    first = await store.import_key(key, "admin", at=NOW)
    again = await store.import_key(key, "operator", at=NOW)
    found = await store.find_key(key)
    assert first == again and first.startswith("env-")
    assert first.removeprefix("env-") not in digest
    assert found is not None and found.id == first and found.role == "operator"


async def test_keys_removed_from_the_variable_are_revoked_at_start(store: Store) -> None:
    kept, dropped = "kept-key-0123456789abcdef", "dropped-key-0123456789abcdef"
    issued = await store.create_key("operator", at=NOW)
    await import_env_keys(store, {kept: "admin", dropped: "viewer"}, at=NOW)
    assert await store.verify(dropped) == "viewer"
    revoked = await import_env_keys(store, {kept: "admin"}, at=NOW)
    dropped_id = next(k.id for k in await store.list_keys() if k.revoked_at is not None)
    assert revoked == [dropped_id]
    assert await store.verify(dropped) is None
    assert await store.verify(kept) == "admin" and await store.verify(issued) == "operator"
    # Put back into the variable, it works again under its old id.
    await import_env_keys(store, {kept: "admin", dropped: "viewer"}, at=NOW)
    found = await store.find_key(dropped)
    assert found is not None and found.id == dropped_id


async def test_a_key_revoked_in_this_process_is_refused_at_once(demo_site: Site, tmp_path: Path) -> None:
    """The verified-key cache (30 s) gives way to a revocation made through the service's store."""
    async with running_service(demo_site, tmp_path, drivers=False) as svc:
        key = await svc.services.store.create_key("operator", at=svc.services.clock.now())
        async with httpx.AsyncClient(base_url=svc.url, headers={"Authorization": f"Bearer {key}"}) as c:
            before = [(await c.get("/api/rooms")).status_code for _ in range(2)]  # the second from the cache
            assert await svc.services.store.revoke_key(key.split("_")[1], svc.services.clock.now())
            after = (await c.get("/api/rooms")).status_code
    assert before == [200, 200] and after == 401


async def test_cores_starting_at_once_share_the_env_keys(postgres_url: str) -> None:
    """Three cores on one PostgreSQL import WATTKEEPER_API_KEYS at the same instant, five times over:
    one live row per key, the same id everywhere, none revoked; then a key dropped from the variable
    is revoked once, by whichever core starts first."""
    keys: dict[str, Role] = {f"env-key-{role}-0123456789abcdef": role for role in ("viewer", "operator", "admin")}
    stores = [Store(postgres_url) for _ in range(3)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        for _ in range(5):
            results = await asyncio.gather(*(import_env_keys(s, keys, at=NOW) for s in stores))
            assert results == [[], [], []]
        rows = await stores[0].list_keys()
        assert len(rows) == 3 and all(r.revoked_at is None for r in rows)
        for s in stores:
            for key, role in keys.items():
                assert await s.verify(key) == role
        fewer = {k: r for k, r in keys.items() if r != "viewer"}
        results = await asyncio.gather(*(import_env_keys(s, fewer, at=NOW) for s in stores))
        assert sorted(len(r) for r in results) == [0, 0, 1]
        viewer_key = next(k for k, r in keys.items() if r == "viewer")
        assert all([await s.verify(viewer_key) is None for s in stores])
        assert all([await s.verify(k) == r for s in stores for k, r in fewer.items()])
    finally:
        await asyncio.gather(*(s.close() for s in stores))
