"""The bus in a process: a core that owns its site by lease (`serve` with WATTKEEPER_BUS_URL), and
the edge collector (`wattkeeper collect`). The protocol itself is in service.bus.protocol."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Awaitable, Callable

from drivers.base import DriverSettings
from drivers.hub import DriverHub
from drivers.types import CommandResult, Value
from service.alarms import rules
from service.bus.protocol import BusCommands, BusConfig, Collector, FencedError, SiteOwner
from service.clock import Clock
from service.config.settings import Settings
from service.config.site import Site
from service.control.path import refusal
from service.core import Core
from service.store.db import Store

log = logging.getLogger(__name__)

POSITION_STATE = "bus_position"  # the stream sequence of the last batch applied, beside the checkpoint
TIMERS_STATE = "alarm_timers"  # the alarm engine's on/off-delays counting, beside the position
BUFFER_SUBJECT = "collector-buffer"  # telemetry_dropped subject for readings the collector dropped
EXIT_FENCED = 3  # a collector another collector took the site from
EXIT_LEASE_LOST = 4  # a core that lost its site (uvicorn itself exits 3 when it cannot start)


def bus_config(settings: Settings) -> BusConfig:
    """The bus part of the settings."""
    assert settings.bus_url
    return BusConfig(
        url=settings.bus_url,
        stream=settings.bus_stream,
        lease_s=settings.bus_lease_s,
        buffer_max_bytes=settings.bus_buffer_max_bytes,
        buffer_policy=settings.bus_buffer_policy,
        batch_s=settings.bus_batch_s,
    )


class BusCore:
    """A core that owns its site by lease (`serve` with WATTKEEPER_BUS_URL): no drivers; the core,
    the scheduler and the other site parts start when this core takes the site's lease; commands
    go to the collector over the bus (`commands`, the control path's hub)."""

    def __init__(self, site: Site, settings: Settings, *, core: Core, store: Store, clock: Clock) -> None:
        self.site_id = site.site.id
        self.core = core
        self.store = store
        self.clock = clock
        self.lost = False  # service.app.serve exits EXIT_LEASE_LOST: Restart=on-failure restarts it
        self._start_site: Callable[[], Awaitable[None]] | None = None
        self.site_owner = SiteOwner(
            self.site_id,
            bus_config(settings),
            apply=core.apply_now,
            on_acquired=self._acquired,
            on_lost=self._lost,
            on_dropped=self._dropped,
            position=(self._get_position, self._set_position),
        )
        self.commands = BusCommands(self.site_id, lambda: self.site_owner.nc)

    @property
    def owner(self) -> bool:
        """Whether this core owns its site now."""
        return self.site_owner.owner

    async def start(self, start_site: Callable[[], Awaitable[None]]) -> None:
        """Wait for the site's lease in the background; `start_site` runs once it is taken."""
        self._start_site = start_site
        await self.site_owner.start()

    async def halt(self) -> None:
        """No more batches; the lease is released once the core wrote its last (`stop`)."""
        await self.site_owner.halt()

    async def stop(self) -> None:
        """Release the lease and leave the bus."""
        await self.site_owner.stop()

    # The position is the stream sequence of the last batch applied and the collector-lease epoch
    # of the batches applied so far (the fence goes on across a takeover).
    async def _position(self) -> dict[str, int]:
        value = await self.store.get_state(POSITION_STATE)
        if isinstance(value, dict) and isinstance(value.get("seq"), int) and isinstance(value.get("epoch"), int):
            return {"seq": value["seq"], "epoch": value["epoch"]}
        return {"seq": 0, "epoch": 0}

    async def _get_position(self) -> int:
        return (await self._position())["seq"]

    async def _set_position(self, seq: int) -> None:
        epoch = self.site_owner.fence.epoch
        await self.store.set_state(POSITION_STATE, {"seq": seq, "epoch": epoch}, at=self.clock.now())

    async def _acquired(self) -> None:
        fence = self.site_owner.fence
        fence.epoch = max(fence.epoch, (await self._position())["epoch"])
        if self._start_site is not None:
            await self._start_site()

    async def _lost(self) -> None:
        # Crash-only: a core that lost its site writes nothing more of it; its supervisor restarts it.
        log.error("site %s: lease lost; stopping this core (exit %d)", self.site_id, EXIT_LEASE_LOST)
        self.lost = True
        os.kill(os.getpid(), signal.SIGTERM)

    def _dropped(self, total: int) -> None:
        finding = rules.telemetry_dropped(BUFFER_SUBJECT, dropped=total, detail="the collector's disk buffer was full")
        self.core.report(finding)


async def run_collector(site: Site, settings: Settings) -> int:
    """Run the collector of one site until cancelled (0) or fenced by another collector (EXIT_FENCED)."""
    config = bus_config(settings)
    hub: DriverHub | None = None
    collector: Collector | None = None

    async def command(device: str, point: str, value: Value, timeout_s: float) -> CommandResult:
        # The core's control path checked and will audit it; the allow-list is checked here again,
        # next to the devices, so nothing on the bus can command a protected device.
        try:
            site.device(device)
        except KeyError:
            return CommandResult(device=device, point=point, requested=value, status="refused", detail="unknown device")
        why = refusal(site, device, point)
        if why is not None:
            return CommandResult(device=device, point=point, requested=value, status="refused", detail=why)
        if hub is None:
            return CommandResult(
                device=device, point=point, requested=value, status="refused", detail="drivers are not running"
            )
        return await hub.command(device, point, value, timeout_s=timeout_s)

    async def start_drivers() -> None:
        nonlocal hub
        assert collector is not None
        hub = DriverHub(
            site.devices,
            mqtt_url=settings.mqtt_url or site.mqtt.url,
            emit=collector.emit,
            client_id=f"wattkeeper-{site.site.id}-collector",
            settings=DriverSettings(device_timezone=site.site.timezone),
        )
        await hub.start()

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    collector = Collector(site.site.id, config, settings.data_dir, start_drivers=start_drivers, command=command)
    try:
        await collector.run()
    except FencedError as exc:
        log.error("%s; this collector stops (exit %d)", exc, EXIT_FENCED)
        return EXIT_FENCED
    finally:
        if hub is not None:
            with contextlib.suppress(Exception):
                await hub.stop()
        with contextlib.suppress(Exception):
            await asyncio.shield(collector.close())
    return 0
