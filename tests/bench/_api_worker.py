"""The servers and the snapshot of bench_api (each started by it in its own process).

    python -m tests.bench._api_worker snapshot MQTT_URL OUT.json   # the demo site's readings, from its simulators
    python -m tests.bench._api_worker service CONFIG.json          # wattkeeper, readings injected
    python -m tests.bench._api_worker bare CONFIG.json             # bare Starlette, the same JSON

Both servers run under uvicorn as `wattkeeper serve` runs (uvloop, httptools, no access log).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvicorn

from tests.bench._common import report, service_settings

REFRESH_S = 1.0


async def snapshot(mqtt_url: str, out: Path, seconds: float = 8.0) -> None:
    """Every reading the demo site's simulators give the drivers within `seconds`."""
    from drivers.base import DriverSettings
    from drivers.hub import DriverHub
    from drivers.types import Reading
    from simulators.runner import Simulation
    from tests.conftest import site_for_test

    site = site_for_test(mqtt_url)
    latest: dict[tuple[str, str], Reading] = {}

    def keep(batch: Any) -> None:
        for e in batch:
            if isinstance(e, Reading):
                latest[(e.device, e.point)] = e

    hub = DriverHub(
        site.devices,
        mqtt_url=mqtt_url,
        emit=keep,
        client_id=f"bench-snap-{time.time_ns()}",
        settings=DriverSettings(device_timezone=site.site.timezone),  # as the service sets it
    )
    async with Simulation(site, control_port=None, speed=1.0, seed=7), hub:
        await asyncio.sleep(seconds)
    rows = [
        {"device": r.device, "point": r.point, "value": r.value, "unit": r.unit, "quality": r.quality.value}
        for r in latest.values()
    ]
    await asyncio.to_thread(out.write_text, json.dumps(rows))
    report({"points": len(rows)})


def service(cfg: dict[str, Any]) -> None:
    """wattkeeper's app for the demo site, drivers off, the snapshot re-injected every REFRESH_S (as polls would)."""
    from drivers.types import Quality, Reading
    from service.app import create_app
    from tests.conftest import site_for_test

    site = site_for_test(cfg["mqtt_url"])
    work = Path(cfg["workdir"])
    settings = service_settings(work, site.mqtt.url, api_keys={cfg["key"]: "viewer"})
    app = create_app(site, settings, drivers=False)
    rows = json.loads(Path(cfg["snapshot"]).read_text())
    svc = app.state.services

    def inject() -> None:
        now = datetime.now(UTC)
        svc.core.emit(
            [
                Reading(
                    device=r["device"],
                    point=r["point"],
                    value=r["value"],
                    unit=r["unit"],
                    ts=now,
                    quality=Quality(r["quality"]),
                )
                for r in rows
            ]
        )

    async def loop() -> None:
        while True:
            inject()
            await asyncio.sleep(REFRESH_S)

    service_lifespan = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def fed(app: Any) -> AsyncIterator[None]:
        """The service's lifespan with the snapshot fed in while it runs (after its start, before its stop)."""
        async with service_lifespan(app):
            task = asyncio.create_task(loop())
            try:
                yield
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    app.router.lifespan_context = fed
    uvicorn.run(app, host="127.0.0.1", port=cfg["port"], log_level="warning", access_log=False)


def bare(cfg: dict[str, Any]) -> None:
    """A Starlette app with one plain JSON route per path, each serving the payload wattkeeper served."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    payloads: dict[str, Any] = json.loads(Path(cfg["payloads"]).read_text())

    def route(path: str) -> Route:
        body = payloads[path]

        async def endpoint(request: Request) -> JSONResponse:
            return JSONResponse(body)

        return Route(path, endpoint)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield

    app = Starlette(routes=[route(p) for p in payloads], lifespan=lifespan)
    uvicorn.run(app, host="127.0.0.1", port=cfg["port"], log_level="warning", access_log=False)


def main(argv: list[str]) -> int:
    mode = argv[0]
    if mode == "snapshot":
        asyncio.run(snapshot(argv[1], Path(argv[2])))
    else:
        cfg = json.loads(Path(argv[1]).read_text())
        {"service": service, "bare": bare}[mode](cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
