"""Run the real service (uvicorn on a free loopback port) and the simulators inside a test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import uvicorn

from service.api.server import Server
from service.app import create_app
from service.config.settings import Settings
from service.config.site import Site
from service.services import Services
from tests.servers import free_port

T = TypeVar("T")


@dataclass
class RunningService:
    """A service listening on `url` with one key per role."""

    url: str
    services: Services
    keys: dict[str, str]
    app: Any

    def client(self, role: str = "admin", **kw: Any) -> httpx.AsyncClient:
        """An HTTP client with the key of `role` (or none for role='')."""
        headers = {"Authorization": f"Bearer {self.keys[role]}"} if role else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=kw.pop("timeout", 15.0), **kw)


class _Server(Server):
    def install_signal_handlers(self) -> None:  # the test runner owns signals
        pass


@contextlib.asynccontextmanager
async def running_service(
    site: Site,
    tmp_path: Path,
    *,
    database_url: str | None = None,
    influx: dict[str, str] | None = None,
    drivers: bool = True,
    clock: Any = None,
    env: dict[str, Any] | None = None,
    alarm_config: Any = None,
) -> AsyncIterator[RunningService]:
    """Start the whole service for `site` with SQLite under tmp_path (or `database_url`)."""
    keys = {role: f"test-{role}-{secrets.token_hex(12)}" for role in ("viewer", "operator", "admin")}
    fields: dict[str, Any] = {
        "database_url": database_url or f"sqlite:///{tmp_path}/wattkeeper.db",
        "api_keys": {v: k for k, v in keys.items()},
        "data_dir": tmp_path / "var",
        "mqtt_url": site.mqtt.url,
        "env": "test",
    }
    if influx:
        fields.update(influx)
    fields.update(env or {})
    settings = Settings(_env_file=None, **fields)
    app = create_app(site, settings, clock=clock, drivers=drivers, alarm_config=alarm_config)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = _Server(config, app.state.services.events)
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 30
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("service exited during start-up")
        if time.monotonic() > deadline:
            raise TimeoutError("service did not start")
        await asyncio.sleep(0.05)
    try:
        yield RunningService(f"http://127.0.0.1:{port}", app.state.services, keys, app)
    finally:
        server.should_exit = True
        # Not asyncio.wait_for: on its timeout it cancels and then waits for the task without bound,
        # so a shutdown that swallows the cancellation would hang the test instead of failing it.
        _, pending = await asyncio.wait({task}, timeout=20)
        if pending:
            task.cancel()
            _, pending = await asyncio.wait({task}, timeout=10)
        if pending:
            raise RuntimeError("the service did not stop within 30 s, nor when cancelled")
        with contextlib.suppress(Exception, asyncio.CancelledError):
            task.result()


async def eventually(check: Callable[[], Awaitable[T | None]], timeout_s: float = 20.0, every_s: float = 0.2) -> T:
    """Poll an async check until it returns something truthy; fail with its last value after timeout."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(every_s)
    raise AssertionError(f"condition not met within {timeout_s}s (last: {last!r})")
