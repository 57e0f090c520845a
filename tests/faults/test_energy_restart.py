"""Quarter-hour energy across a service restart and a crash: the counter keeps what the service missed.

A department meter draws a steady 30 kW (0.5 kWh a minute) and is read every minute. The service
stops at 10:07 (or, as a crash would leave it, has its loops cancelled at 10:07:30 with nothing
flushed and no last checkpoint: in-process, not a killed process; test_service_kill.py kills a real
one) and is back at 10:11. The energy of 10:00-10:15
must be the whole 7.5 kWh the counter shows, not the 2 kWh read after the restart: the stop writes
the open quarter hour partly, and the service that comes back must complete it rather than write it
again with only what it saw itself.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from drivers.types import Reading
from service.app import build_services, start_services, stop_services
from service.clock import ManualClock
from service.config.settings import Settings
from service.energy.rollups import ENERGY_CHECKPOINT
from service.services import Services
from tests.faults.helpers import figure, make_site
from tests.faults.test_energy_counters import SITE

KW = 30.0
T0 = datetime(2026, 10, 5, 2, 0, tzinfo=UTC)  # 10:00 site time (Asia/Shanghai)


def minute(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


def counter_at(t: datetime) -> float:
    return 1000.0 + KW * (t - T0).total_seconds() / 3600.0


class Run:
    """One life of the service on the test's database and clock."""

    def __init__(self, tmp_path: Path, clock: ManualClock) -> None:
        settings = Settings(_env_file=None, database_url=f"sqlite:///{tmp_path}/wk.db", data_dir=tmp_path)
        self.svc: Services = build_services(make_site(SITE), settings, clock=clock, drivers=False)
        self.clock = clock

    async def read(self, t: datetime) -> None:
        """The meter polled at `t`; the core takes it and does its second's work."""
        self.clock.set(t)
        core = self.svc.core
        taken = core.stats.readings + 1
        core.emit([Reading(device="meter-ops", point="import_energy", value=counter_at(t), unit="kWh", ts=t)])
        for _ in range(2000):
            if core.stats.readings >= taken:
                break
            await asyncio.sleep(0.001)
        assert core.stats.readings >= taken, "the core did not take the reading"
        await core.tick()

    async def crash(self) -> None:
        """What a crash leaves behind, in-process: the loops cancelled, nothing flushed, no last checkpoint."""
        tasks = self.svc.core._tasks
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        tasks.clear()
        await self.svc.store.close()


async def quarters(tmp_path: Path, clock: ManualClock) -> dict[datetime, float]:
    run = Run(tmp_path, clock)
    await run.svc.store.open()
    try:
        rows = await run.svc.store.energy_intervals(minute(-120), minute(60), meter="meter-ops")
    finally:
        await run.svc.store.close()
    return {r.start: r.kwh for r in rows}


@pytest.mark.parametrize("ending", ["stop", "crash"])
async def test_the_quarter_hour_across_a_restart_holds_all_the_counter_shows(tmp_path: Path, ending: str) -> None:
    clock = ManualClock(T0)
    first = Run(tmp_path, clock)
    await start_services(first.svc)
    for n in range(8):  # 10:00 .. 10:07, a checkpoint with each second's work at most once a minute
        await first.read(minute(n))
    if ending == "stop":
        await stop_services(first.svc)
        written = await quarters(tmp_path, clock)
        assert written[T0] == pytest.approx(3.5)  # the stop wrote the open quarter hour so far
    else:
        clock.set(minute(7.5))
        await first.crash()

    clock.set(minute(11))
    second = Run(tmp_path, clock)
    await start_services(second.svc)
    try:
        assert await second.svc.store.get_state(ENERGY_CHECKPOINT) is not None
        for n in range(11, 32):  # back at 10:11 .. 10:31
            await second.read(minute(n))
    finally:
        await stop_services(second.svc)

    got = await quarters(tmp_path, clock)
    away = "stopped at 10:07" if ending == "stop" else "loops cancelled at 10:07:30, no flush (last checkpoint 10:07)"
    figure(
        f"energy-restart-{ending}",
        f"{away}, back at 10:11: 10:00-10:15 holds {got[T0]:.2f} kWh of the {7.5:.2f} the counter shows "
        f"(the readings after the restart alone: 2.00); {sum(got.values()):.2f} of "
        f"{counter_at(minute(31)) - counter_at(T0):.2f} kWh over 10:00-10:31",
    )
    assert got[T0] == pytest.approx(7.5)  # 10:00-10:15, the four minutes away included
    assert got[T0 + timedelta(minutes=15)] == pytest.approx(7.5)
    assert got[T0 + timedelta(minutes=30)] == pytest.approx(0.5)  # open at the last stop
    assert sum(got.values()) == pytest.approx(counter_at(minute(31)) - counter_at(T0))


async def test_a_checkpoint_from_a_clock_now_behind_is_not_used(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="service.energy.rollups")
    clock = ManualClock(T0)
    first = Run(tmp_path, clock)
    await start_services(first.svc)
    for n in range(3):
        await first.read(minute(n))
    await stop_services(first.svc)

    clock.set(minute(-60))  # the host clock was set back an hour
    second = Run(tmp_path, clock)
    await start_services(second.svc)
    try:
        for n in range(-60, -44):
            await second.read(minute(n))
    finally:
        await stop_services(second.svc)
    got = await quarters(tmp_path, clock)
    refused = [r for r in caplog.records if "energy checkpoint not used" in r.getMessage()]
    back = T0 - timedelta(minutes=60)
    shows = counter_at(minute(-45)) - counter_at(minute(-60))
    local = make_site(SITE).site.tz
    figure(
        "energy-restart-clock-behind",
        f"checkpoint written at {minute(2).astimezone(local):%H:%M}, the host clock then set back to "
        f"{back.astimezone(local):%H:%M}: {len(refused)} checkpoint refused as later than now; "
        f"{back.astimezone(local):%H:%M}-{minute(-45).astimezone(local):%H:%M} holds {got[back]:.2f} kWh "
        f"of the {shows:.2f} the counter shows",
    )
    assert len(refused) == 1 and "meter-ops" in refused[0].getMessage()
    # Counting started afresh: readings before the checkpoint are not taken as replays of it.
    assert got[back] == pytest.approx(shows) == pytest.approx(7.5)
