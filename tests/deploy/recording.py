"""Telemetry of the demo site as the boards will see it: the simulators, wattkeeper's drivers and the
service's own core (live state, rules, alarm engine, energy accounting, line protocol).

The simulation runs fast (SPEED simulated seconds per real second) and the service runs on the
simulation's clock, so a few real seconds give a quarter hour of data: two 15-minute energy
intervals either side of the end of the working day, a lost grid source, an offline sensor and a
plug sending garbage, and the alarms those raise and clear. Polls are SPEED times further apart
in simulated time than on site, so the live state's staleness limit is stretched to match.

The lines the core hands its telemetry sink are collected here and written to InfluxDB 1.x by
the caller: the sink itself speaks the /api/v2/write of InfluxDB 1.8+, and the test server is 1.6.
"""

from __future__ import annotations

import asyncio
import math
import warnings
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from drivers.base import DriverSettings
from drivers.hub import DriverHub
from service.app import build_services, start_services, stop_services
from service.config.settings import Settings
from service.config.site import Site
from service.live.state import LiveState
from simulators.runner import Simulation

SPEED: Final = 90.0
SEED: Final = 8
# A working Wednesday, ten minutes before the end of the working day (17:30 in the demo site).
START_LOCAL: Final = (2026, 3, 11, 17, 20)
FAULTY_SOURCE: Final = "grid-a"
OFFLINE_DEVICE: Final = "r2119-occ"
GARBAGE_DEVICE: Final = "r2101-pc1"
WAIT_S: Final = 20.0  # real seconds any one phase may take before the recording gives up
STOP_S: Final = 10.0


@dataclass
class CollectingSink:
    """Stands in for service.telemetry.sink.TelemetrySink: keeps the lines the core puts."""

    lines: list[str] = field(default_factory=list)
    outbox_depth: int = 0
    dropped: int = 0
    written: int = 0

    def put(self, line: str) -> None:
        self.lines.append(line)

    def put_many(self, lines: Iterable[str]) -> None:
        self.lines.extend(lines)


@dataclass
class Recording:
    """The service's line protocol and what the run went through."""

    site: Site
    lines: list[str]
    first: datetime
    last: datetime
    raised: set[tuple[str, str]]
    cleared: set[tuple[str, str]]


class SimulatedClock:
    """The service's clock (service.clock.Clock) reading the simulated world's time."""

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim

    def now(self) -> datetime:
        return self.sim.world.now.astimezone(UTC)


async def _until(what: str, done: Callable[[], bool]) -> None:
    try:
        async with asyncio.timeout(WAIT_S):
            while not done():
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"the simulated site never got to: {what}") from None


async def _bounded(what: str, stopping: Awaitable[None]) -> None:
    # Now and then a driver or simulator task loses the cancellation its stop() sends and runs on
    # (seen in drivers.modbus and simulators.runner; Python 3.11's asyncio.wait_for is one known
    # way, bpo-42130), so stop() never returns. Cancelling the stop cancels that task once more;
    # the recording is complete either way.
    try:
        await asyncio.wait_for(stopping, STOP_S)
    except TimeoutError:
        warnings.warn(f"{what} did not finish within {STOP_S:g} s: a task lost its cancellation", stacklevel=1)


async def record(site: Site, mqtt_url: str, workdir: Path) -> Recording:
    """Run the site's simulators against wattkeeper's drivers and core; the lines the core writes."""
    start = datetime(*START_LOCAL, tzinfo=site.site.tz)
    sim = Simulation(site, control_port=None, speed=SPEED, seed=SEED, mqtt_url=mqtt_url, start=start)
    settings = Settings(
        _env_file=None, mqtt_url=mqtt_url, database_url=f"sqlite:///{workdir}/wattkeeper.db", data_dir=workdir
    )
    clock = SimulatedClock(sim)
    # Staleness counts polls; the simulation runs SPEED times faster than the polls' wall time.
    live_state = LiveState(site, stale_polls=math.ceil(3 * SPEED))
    svc = build_services(site, settings, clock=clock, drivers=False, live_state=live_state)
    sink = CollectingSink()
    svc.core.sink = sink  # type: ignore[assignment]
    hub = DriverHub(
        site.devices,
        mqtt_url=mqtt_url,
        emit=svc.core.emit,
        client_id="wattkeeper-boards",
        clock=clock.now,
        settings=DriverSettings(device_timezone=site.site.timezone),  # as the service sets it
    )
    svc.hub = hub

    def alarms(active: bool) -> set[tuple[str, str]]:
        return {(a.type, a.subject) for a in svc.core.engine.all() if active or a.cleared_at is not None}

    def scrape() -> None:
        # What a Prometheus scrape of /metrics does: the drivers' reject counters into the core.
        svc.core.record_rejects({d: h.rejects + h.rejected_deltas for d, h in hub.health().items()})

    await sim.__aenter__()
    try:
        await start_services(svc)
        every = {d.id for d in site.devices}
        await _until(
            "every device reporting",
            lambda: (
                all(h.online for h in hub.health().values())
                and {p.device for p in svc.core.state.points(clock.now())} >= every
            ),
        )
        sim.fault("source_loss", FAULTY_SOURCE)
        sim.fault("device_offline", OFFLINE_DEVICE)
        sim.fault("device_garbage", GARBAGE_DEVICE)
        await _until(
            "redundancy_lost and device_offline raised, a payload rejected",
            lambda: (
                {("redundancy_lost", site.site.id), ("device_offline", OFFLINE_DEVICE)} <= alarms(True)
                and hub.health()[GARBAGE_DEVICE].rejects > 0
            ),
        )
        scrape()
        sim.clear_faults()
        await _until("device_offline cleared", lambda: ("device_offline", OFFLINE_DEVICE) in alarms(False))
        # Past 17:30 local, so the last energy interval is after hours.
        end = start + timedelta(minutes=15)
        await _until("the end of the working day", lambda: clock.now() >= end)
        scrape()
        await svc.core.tick()
    finally:
        # The core first: its stop writes the last, unfinished energy intervals.
        await svc.core.stop()
        await _bounded("stopping the service", stop_services(svc))
        await _bounded("stopping the simulation", sim.__aexit__(None, None, None))
    stamps = [datetime.fromtimestamp(int(line.rsplit(" ", 1)[1]) / 1e9, UTC) for line in sink.lines]
    return Recording(site, sink.lines, min(stamps), max(stamps), alarms(True), alarms(False))
