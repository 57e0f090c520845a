"""The API tests' running site: the demo site's simulators and the real service on a fresh broker."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from service.config.site import Site
from simulators.runner import Simulation
from tests.harness import RunningService, eventually, running_service

TZ = ZoneInfo("Asia/Shanghai")
# A working Wednesday morning: rooms in use, the grid on ATS position I, the generator at rest.
SIM_START = datetime(2026, 3, 11, 10, 0, tzinfo=TZ)
SEED = 11


@dataclass
class Live:
    """The simulators and the service of one test."""

    sim: Simulation
    svc: RunningService

    @property
    def url(self) -> str:
        """Base URL of the service."""
        return self.svc.url

    def client(self, role: str = "admin", **kw: Any) -> httpx.AsyncClient:
        """An HTTP client with the key of `role` ('' for none)."""
        return self.svc.client(role, **kw)


async def _supply_seen(svc: RunningService) -> None:
    async def fed() -> bool:
        supply = svc.services.core.state.supply(svc.services.clock.now())
        metered = all(s.voltage_v is not None for s in supply.sources)
        return metered and supply.load_kw is not None and all(t.position for t in supply.transfer_switches)

    await eventually(fed, 20)


@pytest.fixture
async def live(demo_site: Site, tmp_path: Path) -> AsyncIterator[Live]:
    """The demo site simulated in real time from SIM_START and the service reading it, supply data in."""
    async with (
        Simulation(demo_site, control_port=None, seed=SEED, start=SIM_START) as sim,
        running_service(demo_site, tmp_path) as svc,
    ):
        await _supply_seen(svc)
        yield Live(sim, svc)


@contextlib.contextmanager
def service_thread(site: Site, tmp_path: Path) -> Iterator[RunningService]:
    """Simulators and service on an event loop of their own, for synchronous clients (schemathesis)."""
    ready = threading.Event()
    holder: dict[str, Any] = {}

    async def main() -> None:
        stop = asyncio.Event()
        holder["loop"], holder["stop"] = asyncio.get_running_loop(), stop
        try:
            async with (
                Simulation(site, control_port=None, seed=SEED, start=SIM_START),
                running_service(site, tmp_path) as svc,
            ):
                await _supply_seen(svc)
                holder["svc"] = svc
                ready.set()
                await stop.wait()
        except BaseException as exc:
            holder["error"] = exc
            raise
        finally:
            ready.set()

    thread = threading.Thread(target=asyncio.run, args=(main(),), name="service", daemon=True)
    thread.start()
    ready.wait(60)
    if "svc" not in holder:
        raise RuntimeError(f"service did not start: {holder.get('error')!r}")
    try:
        yield holder["svc"]
    finally:
        holder["loop"].call_soon_threadsafe(holder["stop"].set)
        thread.join(30)
