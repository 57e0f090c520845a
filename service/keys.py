"""`wattkeeper keys create`: a new API key, printed once and stored hashed in the state store."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import typer

from service.settings import Role, Settings
from service.store import Store


async def create_key(database_url: str, role: Role, label: str = "") -> str:
    """Create a key in the store at `database_url`; return the plaintext (shown once)."""
    store = Store(database_url)
    await store.open()
    try:
        return await store.create_key(role, at=datetime.now(UTC), label=label)
    finally:
        await store.close()


def cli_create_key(role: str, name: str) -> int:
    """CLI entry: print the new key; exit code."""
    settings = Settings()
    if role not in ("viewer", "operator", "admin"):
        typer.echo(f"role must be viewer, operator or admin, not {role!r}", err=True)
        return 2
    key = asyncio.run(create_key(settings.database_url, role, name))  # type: ignore[arg-type]
    typer.echo(key)
    typer.echo(f"{role} key created in {settings.database_url}; it is shown only this once.", err=True)
    return 0
