"""API keys outside requests: `wattkeeper keys create|list|revoke`, and WATTKEEPER_API_KEYS at start."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import UTC, datetime

import typer

from service.config.credentials import redact_url
from service.config.settings import Role, Settings, sqlite_path
from service.store.db import ApiKeyInfo, Store

log = logging.getLogger(__name__)


async def import_env_keys(store: Store, keys: Mapping[str, Role], *, at: datetime) -> list[str]:
    """Store the keys of WATTKEEPER_API_KEYS and revoke the keys once imported from it that it no
    longer holds (removing a key from the variable and restarting ends it); the ids revoked."""
    _, revoked = await store.import_env_keys(keys, at=at)
    if revoked:
        log.warning("revoked %d API key(s) no longer in WATTKEEPER_API_KEYS: %s", len(revoked), ", ".join(revoked))
    return revoked


async def _with_store(database_url: str) -> Store:
    store = Store(database_url)
    await store.open()
    return store


async def create_key(database_url: str, role: Role, label: str = "") -> str:
    """Create a key in the store at `database_url`; return the plaintext (shown once)."""
    store = await _with_store(database_url)
    try:
        return await store.create_key(role, at=datetime.now(UTC), label=label)
    finally:
        await store.close()


async def list_keys(database_url: str) -> list[ApiKeyInfo]:
    """Every key of the store at `database_url` (ids, roles, dates; never a key)."""
    store = await _with_store(database_url)
    try:
        return await store.list_keys()
    finally:
        await store.close()


async def revoke_key(database_url: str, key_id: str) -> bool:
    """Revoke a key by id; False when there is no such live key."""
    store = await _with_store(database_url)
    try:
        return await store.revoke_key(key_id, datetime.now(UTC))
    finally:
        await store.close()


def missing_store(settings: Settings) -> str | None:
    """Why a maintenance command must not run here: its SQLite state store does not exist (it would
    silently make a new, empty one, e.g. when run from another directory); None when it exists."""
    path = sqlite_path(settings.database_url)
    if path is None or path.is_file():
        return None
    return (
        f"no state store at {path.resolve()} (WATTKEEPER_DATABASE_URL={redact_url(settings.database_url)}); "
        "run this where the service runs, or set WATTKEEPER_DATABASE_URL (`wattkeeper config` shows it)"
    )


def cli_create_key(role: str, name: str, *, create_store: bool = False) -> int:
    """CLI entry: print the new key; exit code. Makes a new state store only when `create_store`."""
    settings = Settings()
    if role not in ("viewer", "operator", "admin"):
        typer.echo(f"role must be viewer, operator or admin, not {role!r}", err=True)
        return 2
    missing = missing_store(settings)
    if missing and not create_store:
        typer.echo(f"{missing}; --create-store makes a new one", err=True)
        return 1
    key = asyncio.run(create_key(settings.database_url, role, name))  # type: ignore[arg-type]
    typer.echo(key)
    typer.echo(f"{role} key created in {_where(settings)}; it is shown only this once.", err=True)
    return 0


def cli_list_keys() -> int:
    """CLI entry: one line per key: id, role, created, revoked, label."""
    settings = Settings()
    missing = missing_store(settings)
    if missing:
        typer.echo(missing, err=True)
        return 1
    for k in asyncio.run(list_keys(settings.database_url)):
        revoked = k.revoked_at.isoformat(timespec="seconds") if k.revoked_at else "live"
        created = k.created_at.isoformat(timespec="seconds")
        typer.echo(f"{k.id}\t{k.role}\t{created}\t{revoked}\t{k.label}")
    return 0


def cli_revoke_key(key_id: str) -> int:
    """CLI entry: revoke a key; exit 1 when there is no such live key."""
    settings = Settings()
    missing = missing_store(settings)
    if missing:
        typer.echo(missing, err=True)
        return 1
    if not asyncio.run(revoke_key(settings.database_url, key_id)):
        typer.echo(f"no live key '{key_id}' in {_where(settings)} (see: wattkeeper keys list)", err=True)
        return 1
    typer.echo(
        f"key {key_id} revoked; a running service refuses it within 30 s (at once for a revocation it makes)",
        err=True,
    )
    return 0


def _where(settings: Settings) -> str:
    return redact_url(settings.database_url)
