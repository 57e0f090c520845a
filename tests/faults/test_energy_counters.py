"""A month of a department meter with a rollover, a meter replacement and one-sample glitches.

Ground truth is the simulator's own meter model (`simulators.power.MeterModel`) integrating an
office load minute by minute through October 2026 (site time). What the meter *shows* is that
truth passed through what real counters do: the register rolls over at 100,000 kWh, the meter is
replaced on the 20th (circuit isolated for two minutes, the new meter starting from 0), and single
polls read 0, 3e38, NaN, and 50 kWh too little. The service's own Modbus coordinator polls it
every simulated minute through an in-memory link (the transport is tested in
test_modbus_faults.py; a month over TCP would take too long), on the service's clock, into the
service's core, which prices quarter hours into the state store. The monthly report must equal
the truth within 0.1 %.
"""

from __future__ import annotations

import asyncio
import math
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from drivers.base import DeviceStats, DriverContext, DriverSettings
from drivers.codec import codec_for
from drivers.modbus import Coordinator, Link, LinkDown, ModbusDevice, Table
from drivers.profiles import ModbusProfile, load_profile
from drivers.types import DeviceStatus, Reading
from service.app import build_services, start_services, stop_services
from service.clock import ManualClock
from service.config.settings import Settings
from service.store.db import month_bounds
from simulators.power import MeterModel
from tests.faults.helpers import figure, make_site

MONTH = "2026-10"
STEP_S = 60
ROLL_KWH = 100_000.0
START_KWH = 99_000.0  # rolls over on the second day
RATED_KW = 100.0
SITE = f"""
site: {{id: energy, name: energy counters, timezone: Asia/Shanghai, allowed_interruption_s: 10}}
departments: [{{id: ops, name: Operations, meter: meter-ops}}]
devices:
  - {{id: meter-ops, driver: modbus, profile: sdm120, host: 127.0.0.1, port: 1502, poll_s: 60, rated_kw: {RATED_KW}}}
tariff:
  currency: CNY
  bands:
    - {{name: peak, hours: ["08:00-11:00", "18:00-21:00"], price: 1.12}}
    - {{name: flat, hours: ["07:00-08:00", "11:00-18:00", "21:00-23:00"], price: 0.68}}
    - {{name: valley, hours: ["23:00-07:00"], price: 0.32}}
"""


def office_load_kw(local: datetime, rng: random.Random) -> float:
    """20 kW at night, 55 kW in working hours on weekdays, a few kW of noise."""
    working = local.weekday() < 5 and (8 * 60 + 30) <= local.hour * 60 + local.minute < (17 * 60 + 30)
    return (55.0 if working else 20.0) + rng.uniform(-4.0, 4.0)


class MemoryLink(Link):
    """The coordinator's link to one meter, answered from registers the test sets (no socket)."""

    def __init__(self, settings: DriverSettings) -> None:
        super().__init__("meter", 0, settings)
        self.registers: dict[tuple[str, int], int] = {}
        self.down = False

    async def read(self, table: Table, address: int, count: int, unit: int) -> list[int]:
        if self.down:
            raise LinkDown("meter being replaced")
        return [self.registers.get((table, a), 0) for a in range(address, address + count)]


@pytest.mark.slow
async def test_monthly_energy_survives_rollover_replacement_and_glitches(tmp_path: Path) -> None:
    site = make_site(SITE)
    tz = site.site.tz
    start, end = month_bounds(MONTH, tz)
    clock = ManualClock(start)
    settings = Settings(_env_file=None, database_url=f"sqlite:///{tmp_path}/wk.db", data_dir=tmp_path)
    svc = build_services(site, settings, clock=clock, drivers=False)
    profile = load_profile("sdm120")
    assert isinstance(profile, ModbusProfile)
    device = site.device("meter-ops")
    link = MemoryLink(DriverSettings())
    stats = DeviceStats(device.id, device.rated_kw)
    deltas: list[float] = []

    def emit(batch: list[Reading | DeviceStatus]) -> None:
        deltas.extend(float(r.value) for r in batch if isinstance(r, Reading) and r.point == "import_energy_delta")  # type: ignore[arg-type]
        svc.core.emit(batch)

    ctx = DriverContext(
        emit=emit,  # type: ignore[arg-type]
        clock=clock.now,
        settings=DriverSettings(),
        stats={device.id: stats},
        profiles={device.id: profile},
        client_id="energy-test",
        mqtt_url=None,
    )
    meter = ModbusDevice(device, profile, link, stats)
    coordinator = Coordinator(link, [meter], ctx)
    codecs = {p.name: codec_for(profile, p) for p in profile.points}

    def show(name: str, value: float) -> None:
        p = profile.point(name)
        for i, reg in enumerate(codecs[name].encode(value)):
            link.registers[(p.table, p.address + i)] = reg

    def show_raw(name: str, registers: list[int]) -> None:
        p = profile.point(name)
        for i, reg in enumerate(registers):
            link.registers[(p.table, p.address + i)] = reg

    for name, value in (("voltage", 230.0), ("current", 0.0), ("power_factor", 0.95), ("frequency", 50.0)):
        show(name, value)
    show("export_energy", 0.0)

    def local(day: int, hour: int, minute: int = 0) -> datetime:
        return datetime(2026, 10, day, hour, minute, tzinfo=tz).astimezone(UTC)

    glitches = {
        local(10, 12): ("zero", 0.0),
        local(14, 12): ("huge", 3.0e38),
        local(16, 12): ("nan", math.nan),
        local(25, 12): ("low", -50.0),
    }
    swap_from, swap_to = local(20, 10), local(20, 10, 2)
    truth = MeterModel("meter-ops", import_kwh=0.0, export_kwh=0.0)
    rng = random.Random(2026)
    new_meter_from: float | None = None  # truth (kWh) when the replacement meter started counting
    rollovers = 0
    shown_first = shown_last = 0.0

    await start_services(svc)
    try:
        t = start
        steps = 0
        while t <= end:
            clock.set(t)
            if new_meter_from is None and t >= swap_to:
                new_meter_from = truth.import_kwh
            on_new_meter = new_meter_from is not None
            counted = truth.import_kwh - new_meter_from if new_meter_from is not None else START_KWH + truth.import_kwh
            shown = counted % ROLL_KWH if not on_new_meter else counted
            if not on_new_meter and int(counted // ROLL_KWH) > rollovers:
                rollovers = int(counted // ROLL_KWH)
            glitch = glitches.get(t)
            if glitch is None:
                show("import_energy", shown)
            elif glitch[0] == "nan":
                show_raw("import_energy", [0x7FC0, 0x0000])
            elif glitch[0] == "low":
                show("import_energy", shown + glitch[1])
            else:
                show("import_energy", glitch[1])
            show("total_energy", shown)
            link.down = swap_from <= t < swap_to
            if t == start:
                shown_first = shown
            shown_last = shown
            await coordinator.poll(meter)
            steps += 1
            if steps % (24 * 3600 // STEP_S) == 0:
                # A simulated day: let the core ingest it and write its rollups and quarter hours
                # (what its 1 s tick does; a day of minutes at once is more than one tick keeps up with).
                await asyncio.sleep(0)
                await svc.core.tick()
            # The minute that follows: the load (none while the circuit is isolated for the swap).
            load_kw = 0.0 if swap_from <= t < swap_to else office_load_kw(t.astimezone(tz), rng)
            truth.power_w = load_kw * 1000
            show("power", truth.power_w)
            t += timedelta(seconds=STEP_S)
            if t <= end:
                truth.integrate(STEP_S)
    finally:
        await stop_services(svc)  # the core takes what is queued and writes its last quarter hours
    svc_store = type(svc.store)(settings.database_url)
    await svc_store.open()
    try:
        totals = await svc_store.energy_by_month([MONTH], tz)
    finally:
        await svc_store.close()

    true_kwh = truth.import_kwh
    reported = sum(t.kwh for t in totals if t.department == "ops")
    counted_by_drivers = sum(deltas)
    naive = shown_last - shown_first
    error = abs(reported - true_kwh) / true_kwh
    drivers_error = abs(counted_by_drivers - true_kwh) / true_kwh
    figure(
        "energy-counters",
        f"{MONTH}: report {reported:,.1f} kWh vs simulator truth {true_kwh:,.1f} kWh ({error:.3%} off; drivers' "
        f"deltas {drivers_error:.3%} off) through {rollovers} rollover, 1 meter replacement and 4 one-sample "
        f"glitches ({stats.health().counter_resets} counter resets and {stats.health().rejected_deltas} steps "
        f"refused by the drivers); last-minus-first of the register would say {naive:,.1f} kWh",
    )
    assert rollovers == 1
    assert error < 0.001
    assert drivers_error < 0.001
    # The run is deterministic (seeded load, injected minutes): the published figures exactly.
    assert (round(reported, 1), round(true_kwh, 1), f"{error:.3%}") == (21786.9, 21792.2, "0.024%")
