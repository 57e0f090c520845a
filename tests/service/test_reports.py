"""Monthly energy reports: month aggregation on stored intervals, rendering, the CLI, and department
meters reconciling with the site meters through the real core energy path: over a simulated day
(the world stepped in-process) and over a simulated month (the simulators on their Modbus sockets,
polled by the Modbus driver)."""

from __future__ import annotations

import asyncio
import csv
import io
import struct
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

import simulators.runner
import simulators.world
from drivers.hub import DriverHub
from drivers.types import Reading
from service.alarms.record import Alarm, AlarmState, Severity
from service.cli import app
from service.clock import ManualClock
from service.config.site import Site, load_site
from service.core import Core
from service.energy.reports import (
    build_report,
    energy_report,
    generate_report,
    previous_month,
    report_csv,
    report_table,
    site_meters,
)
from service.live.events import EventBus
from service.metrics import Metrics
from service.store.db import EnergyInterval, Rollup, Store, month_bounds
from simulators.runner import Simulation
from simulators.world import World
from tests.conftest import DEMO_SITE
from tests.harness import eventually

TZ = ZoneInfo("Asia/Shanghai")


@pytest.fixture
def site() -> Site:
    return load_site(DEMO_SITE)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = Store(f"sqlite:///{tmp_path}/wk.db")
    await s.open()
    yield s
    await s.close()


def utc(local: str) -> datetime:
    """A site-local 'YYYY-MM-DD HH:MM' as UTC."""
    return datetime.fromisoformat(local).replace(tzinfo=TZ).astimezone(UTC)


def iv(meter: str, local: str, kwh: float, band: str, *, dept: str | None, after: bool = False) -> EnergyInterval:
    price = {"peak": 1.12, "flat": 0.68, "valley": 0.32}[band]
    return EnergyInterval(
        meter=meter, start=utc(local), kwh=kwh, band=band, cost=kwh * price, after_hours=after, department=dept
    )


def alarm(type_: str, subject: str, local: str) -> Alarm:
    at = utc(local)
    return Alarm(
        id=f"{type_}:{subject}:{local}",
        type=type_,
        severity=Severity.low,
        subject=subject,
        state=AlarmState.cleared,
        active=False,
        raised_at=at,
        updated_at=at,
    )


async def seed(store: Store) -> None:
    """February and March intervals on both sides of the site-local month boundaries, alarms, rollups."""
    await store.upsert_energy(
        [
            # admin: 1 kWh in February (23:45 local on the 28th), 2 + 3 in March, 4 in April
            iv("meter-dept-admin", "2026-02-28 23:45", 1.0, "valley", dept="admin", after=True),
            iv("meter-dept-admin", "2026-03-01 00:00", 2.0, "valley", dept="admin", after=True),
            iv("meter-dept-admin", "2026-03-31 23:45", 3.0, "valley", dept="admin", after=True),
            iv("meter-dept-admin", "2026-04-01 00:00", 4.0, "valley", dept="admin", after=True),
            # marketing: peak in working hours, flat after hours
            iv("meter-dept-marketing", "2026-03-10 09:00", 10.0, "peak", dept="marketing"),
            iv("meter-dept-marketing", "2026-03-10 19:00", 2.5, "peak", dept="marketing", after=True),
            iv("meter-dept-marketing", "2026-03-10 21:00", 1.5, "flat", dept="marketing", after=True),
            # site meters: grid and generator; the generator controller's own counter is not a site meter
            iv("meter-grid-a", "2026-03-10 09:00", 12.0, "peak", dept=None),
            iv("meter-grid-b", "2026-03-10 19:00", 4.0, "peak", dept=None),
            iv("meter-gen", "2026-03-31 23:45", 3.1, "valley", dept=None),
            iv("genset-1", "2026-03-31 23:45", 500.0, "valley", dept=None),
            iv("meter-grid-a", "2026-04-01 00:00", 4.0, "valley", dept=None),
        ]
    )
    for a in [
        alarm("lit_empty_room", "r2119", "2026-03-05 20:00"),
        alarm("lit_empty_room", "r2101", "2026-03-06 20:00"),
        alarm("ac_too_cold", "r2119", "2026-03-07 14:00"),
        alarm("high_power_appliance", "r3101-pc1", "2026-03-08 10:00"),  # a device: its room's department
        alarm("redundancy_lost", "hq", "2026-03-09 03:00"),  # supply side: the site's
        alarm("lit_empty_room", "r2119", "2026-02-28 23:00"),  # February
        alarm("lit_empty_room", "r2119", "2026-04-01 00:10"),  # April
    ]:
        await store.save_alarm(a)
    minute = utc("2026-03-10 19:00")
    await store.upsert_rollups(
        Rollup(device=d, point="power", minute=minute + timedelta(minutes=i), min=w, max=w, mean=w, last=w, count=5)
        for i in range(60)
        for d, w in (("r2101-light", 1200.0), ("r2119-ac", 3000.0), ("r3101-pc1", 150.0), ("meter-grid-a", 9e4))
    )


async def test_month_aggregation_on_stored_intervals(site: Site, store: Store, tmp_path: Path) -> None:
    await seed(store)
    report = await build_report(store, site, "2026-03", now=utc("2026-04-02 09:00"))
    by = {d.department: d for d in report.departments}
    assert [d.department for d in report.departments] == ["admin", "marketing", "engineering", "it"]

    admin = by["admin"]
    assert admin.kwh == 5.0  # local month boundaries: Feb 28 23:45 and Apr 1 00:00 are not March
    assert admin.bands["valley"].kwh == 5.0 and admin.bands["peak"].kwh == 0.0
    assert admin.after_hours_kwh == 5.0
    assert admin.cost == pytest.approx(5.0 * 0.32, abs=0.01)
    assert (admin.previous_kwh, admin.change_pct) == (1.0, 400.0)

    mkt = by["marketing"]
    assert mkt.kwh == 14.0
    assert {b: (e.kwh, e.cost) for b, e in mkt.bands.items()} == {
        "peak": (12.5, 14.0),
        "flat": (1.5, 1.02),
        "valley": (0.0, 0.0),
    }
    assert mkt.after_hours_kwh == 4.0
    assert (mkt.previous_kwh, mkt.change_pct) == (None, None)
    assert [(r.room, r.kwh) for r in mkt.top_rooms] == [("r2119", 3.0), ("r2101", 1.2)]
    assert mkt.violations == {"lit_empty_room": 2, "ac_too_cold": 1}

    eng = by["engineering"]
    assert (eng.kwh, eng.violations) == (0.0, {"high_power_appliance": 1})
    assert [(r.room, r.kwh) for r in eng.top_rooms] == [("r3101", 0.15)]
    assert report.site_violations == {"redundancy_lost": 1}

    assert site_meters(site) == ["meter-grid-a", "meter-grid-b", "meter-gen"]
    assert report.totals.departments_kwh == 19.0
    assert report.totals.site_meters_kwh == 19.1  # 12 + 4 + 3.1; never the genset's own counter
    assert report.totals.difference_pct == pytest.approx(100 * (19.0 - 19.1) / 19.1, abs=0.01)
    assert report.totals.after_hours_kwh == 9.0
    assert (report.currency, report.bands) == ("CNY", ["peak", "flat", "valley"])


async def test_stored_report_served_once_the_month_is_over(site: Site, store: Store) -> None:
    await seed(store)
    early = await generate_report(store, site, "2026-03", now=utc("2026-03-20 12:00"))
    assert early.source == "live"
    again = await energy_report(store, site, "2026-03", now=utc("2026-03-21 12:00"))
    assert (again.source, again.generated_at) == ("live", utc("2026-03-21 12:00"))  # month not over: computed
    await generate_report(store, site, "2026-03", now=utc("2026-04-01 00:30"))
    stored = await energy_report(store, site, "2026-03", now=utc("2026-04-05 12:00"))
    assert (stored.source, stored.generated_at) == ("stored", utc("2026-04-01 00:30"))
    assert stored.model_copy(update={"source": "live"}) == await build_report(
        store, site, "2026-03", now=utc("2026-04-01 00:30")
    )
    rows = await store.list_reports("2026-03")
    assert set(rows) == {"_site", "admin", "marketing", "engineering", "it"}
    assert rows["admin"]["kwh"] == 5.0


async def test_csv_and_table(site: Site, store: Store) -> None:
    await seed(store)
    report = await build_report(store, site, "2026-03", now=utc("2026-04-02 09:00"))
    rows = list(csv.reader(io.StringIO(report_csv(report))))
    header = rows[0]
    assert header[:5] == ["department", "name", "kwh", "peak_kwh", "flat_kwh"]
    assert "violations_lit_empty_room" in header and "cost_CNY" in header
    body = {r[0]: dict(zip(header, r, strict=True)) for r in rows[1:]}
    assert body["marketing"]["kwh"] == "14.0"
    assert body["marketing"]["name"] == "市场营销部"
    assert body["marketing"]["violations_lit_empty_room"] == "2"
    assert body["admin"]["change_pct"] == "400.0"
    assert body["TOTAL"]["kwh"] == "19.0" and body["SITE"]["kwh"] == "19.1"
    table = report_table(report)
    lines = table.splitlines()
    assert lines[1].split()[:3] == ["department", "name", "kWh"]
    # the CSV's band columns: kWh, then cost, per band, then the total cost
    assert "peak kWh  flat kWh  valley kWh  peak CNY  flat CNY  valley CNY  cost CNY" in lines[1]
    marketing = next(line.split() for line in lines if line.startswith("marketing"))
    assert marketing[:10] == ["marketing", "市场营销部", "14.0", "12.5", "1.5", "0.0", "14.00", "1.02", "0.00", "15.02"]
    assert [body["marketing"][k] for k in ("peak_CNY", "flat_CNY", "valley_CNY", "cost_CNY")] == [
        "14.0",
        "1.02",
        "0.0",
        "15.02",
    ]
    assert "-0.52 %" in table


def test_previous_month() -> None:
    assert previous_month("2026-01") == "2025-12"
    assert previous_month("2026-03") == "2026-02"


def test_cli_prints_the_table_and_csv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path}/wk.db"

    async def prepare() -> None:
        s = Store(url)
        await s.open()
        await seed(s)
        await s.close()

    asyncio.run(prepare())
    monkeypatch.setenv("WATTKEEPER_DATABASE_URL", url)
    runner = CliRunner()
    ok = runner.invoke(app, ["report", "energy", "--month", "2026-03", "--site", str(DEMO_SITE)])
    assert ok.exit_code == 0, ok.output
    assert "marketing" in ok.output and "site meters 19.1 kWh" in ok.output
    assert "peak CNY  flat CNY  valley CNY  cost CNY" in ok.output
    as_csv = runner.invoke(app, ["report", "energy", "--month", "2026-03", "--csv", "--site", str(DEMO_SITE)])
    assert as_csv.exit_code == 0
    assert as_csv.output.splitlines()[0].startswith("department,name,kwh,")
    bad = runner.invoke(app, ["report", "energy", "--month", "2026-13", "--site", str(DEMO_SITE)])
    assert bad.exit_code == 2
    assert "YYYY-MM" in bad.output
    monkeypatch.setenv("WATTKEEPER_DATABASE_URL", f"sqlite:///{tmp_path}/missing.db")
    missing = runner.invoke(app, ["report", "energy", "--month", "2026-03", "--site", str(DEMO_SITE)])
    assert missing.exit_code == 1
    assert "no state store" in missing.output


def float32(x: float) -> float:
    """What a float32 Modbus register pair holds of x."""
    return float(struct.unpack(">f", struct.pack(">f", x))[0])


async def test_departments_reconcile_with_site_meters_over_a_simulated_day(site: Site, store: Store) -> None:
    """The simulated site runs 24 h (noon March 31 to noon April 1) in 5-minute steps; every meter's
    counter reading goes through the core's energy path (counter tracker, 15-minute intervals, tariff)
    into the store, with room device power for the rollups; both months' reports reconcile within 0.5 %."""
    start = datetime(2026, 3, 31, 12, 0, tzinfo=TZ)
    world = World(site, seed=11, start=start)
    clock = ManualClock(start)
    core = Core(site, store=store, clock=clock, events=EventBus(), metrics=Metrics())
    await core.start()
    meters = [d.id for d in site.devices if d.profile == "sdm630"]
    room_devices = [
        d for r in site.rooms for d in r.devices if d in world.office.relays or d in world.office.thermostats
    ]
    try:
        for _ in range(24 * 12):
            world.step(300.0)
            at = world.now.astimezone(UTC)
            clock.set(at)
            batch = [
                Reading(device=m, point="import_energy", value=float32(world.meters[m].import_kwh), unit="kWh", ts=at)
                for m in meters
            ]
            for d in room_devices:
                model = world.office.relays.get(d) or world.office.thermostats[d]
                batch.append(Reading(device=d, point="power", value=round(model.power_w, 1), unit="W", ts=at))
            core.emit(batch)
            await asyncio.sleep(0)
    finally:
        await core.stop()

    for month in ("2026-03", "2026-04"):
        report = await build_report(store, site, month, now=clock.now())
        t = report.totals
        assert t.site_meters_kwh > 100, (month, t)
        assert all(d.kwh > 0 for d in report.departments)
        assert t.difference_pct is not None and abs(t.difference_pct) < 0.5, (month, t)
        assert sum(d.kwh for d in report.departments) == pytest.approx(t.departments_kwh, abs=0.01)
        for dept in report.departments:
            assert sum(b.kwh for b in dept.bands.values()) == pytest.approx(dept.kwh, abs=0.01)
            assert sum(r.kwh for r in dept.top_rooms) <= dept.kwh
        assert any(d.top_rooms for d in report.departments)


async def test_rows_the_store_refused_are_written_at_the_next_flush(
    site: Site, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store away for a while loses no rollup minute and no energy interval: they are kept and
    written with the next flush."""
    start = datetime(2026, 4, 1, 9, 0, tzinfo=TZ).astimezone(UTC)
    clock = ManualClock(start)
    core = Core(site, store=store, clock=clock, events=EventBus(), metrics=Metrics())
    meter = next(d.id for d in site.devices if d.profile == "sdm630")
    real_rollups, real_energy = store.upsert_rollups, store.upsert_energy
    away = True

    async def refuse_rollups(rows: list[Rollup]) -> None:
        if away:
            raise ConnectionError("store away")
        await real_rollups(rows)

    async def refuse_energy(rows: list[EnergyInterval]) -> None:
        if away:
            raise ConnectionError("store away")
        await real_energy(rows)

    monkeypatch.setattr(store, "upsert_rollups", refuse_rollups)
    monkeypatch.setattr(store, "upsert_energy", refuse_energy)
    kwh = 1000.0
    for minute in range(0, 61, 5):  # an hour of readings: four 15-minute intervals, 12 minutes of rollups
        at = start + timedelta(minutes=minute)
        clock.set(at)
        kwh += 2.5
        core.emit([Reading(device=meter, point="import_energy", value=kwh, unit="kWh", ts=at)])
        core._apply(core._drain(len(core._pending)))
        await core.rollups.flush_minutes(clock.now())
        await core.rollups.flush_energy()
    assert core.stats.store_errors > 0
    assert await store.telemetry(meter, "import_energy", start, start + timedelta(hours=2)) == []
    away = False
    clock.set(start + timedelta(minutes=62))
    await core.rollups.flush_minutes(clock.now())
    await core.rollups.flush_energy()
    minutes = await store.telemetry(meter, "import_energy", start, start + timedelta(hours=2))
    assert [r.minute for r in minutes] == [start + timedelta(minutes=m) for m in range(0, 61, 5)]
    intervals = await store.energy_intervals(start, start + timedelta(hours=2), meter=meter)
    assert [i.start for i in intervals] == [start + timedelta(minutes=m) for m in (0, 15, 30, 45)]
    assert sum(i.kwh for i in intervals) == pytest.approx(30.0)


class WorldClock:
    """The service's clock when it reads a simulation: the simulated world's time."""

    def __init__(self, world: World) -> None:
        self.world = world

    def now(self) -> datetime:
        """The world's time, in UTC."""
        return self.world.now.astimezone(UTC)


MONTH_START = datetime(2026, 3, 1, 0, 0, tzinfo=TZ)
MONTH_END = datetime(2026, 4, 1, 0, 0, tzinfo=TZ)
RUN_PAST_END = timedelta(hours=3)  # the quarter hours around midnight are complete before the service stops
SPEED = 40_000.0  # simulated seconds per real second: the month in about 70 s
WORLD_STEP_S = 60.0  # the world's integration step in this test (the simulators use 0.5 s)
CATCH_UP_S = 0.2  # real seconds of lag the simulators' clock makes up in one step (they allow 2 s)
METER_POLL_S = 0.2  # real seconds between polls of one meter: about 2 simulated hours
MONTH_BUDGET_S = 240.0  # real seconds before the test gives up on reaching the month's end
# Faults on a working Tuesday: grid-b carries the load, then the generator, then grid-a again.
MONTH_FAULTS: list[tuple[datetime, str | None, str]] = [
    (datetime(2026, 3, 10, 9, 0, tzinfo=TZ), "source_loss", "grid-a"),
    (datetime(2026, 3, 10, 13, 0, tzinfo=TZ), "source_loss", "grid-b"),
    (datetime(2026, 3, 10, 17, 0, tzinfo=TZ), None, ""),  # every fault cleared, both grids back
]


def stepping_through(world: World, events: list[tuple[datetime, Callable[[], None]]]) -> Callable[[float], None]:
    """`world.step` that stops at each event's time (in order) to run it, then goes on.

    A loaded machine can hold the simulators' clock back for a while; the clock then catches up in
    one long step, and a fault injected from outside would land hours late.
    """
    step = world.step

    def step_through(dt_s: float) -> None:
        while events and (events[0][0] - world.now).total_seconds() <= dt_s:
            at, action = events.pop(0)
            to_s = max((at - world.now).total_seconds(), 0.0)
            step(to_s)
            dt_s -= to_s
            action()
        step(dt_s)

    return step_through


@pytest.mark.slow
async def test_departments_reconcile_with_site_meters_over_a_simulated_month(
    demo_site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """March 2026 run by the simulators over their Modbus sockets, polled by wattkeeper's Modbus driver,
    turned into 15-minute intervals by the core and stored; then the month's energy report: the
    departments' kWh within 0.5 % of the site meters' (both grid incomers and the generator, which the
    simulator has carry every department's load, nothing else, no losses), and the site meters' kWh
    within 0.5 % of the simulator's own counters at the month's bounds.

    Why these settings. The simulated world moves in 0.5 s steps; a month of them costs about 270 s
    of one core on an idle machine here (14 s per simulated day under load), beyond a test's budget
    before anything polls it. For this test the step is 60 s (monkeypatched, both in the world and in
    the runner's clock): the month then costs about 13 s of world stepping, and a two-day run gives
    the same energy as with 0.5 s steps to 0.03 % — nothing here depends on sub-minute dynamics.

    At SPEED 40,000 the month passes in about 70 real seconds (measured: 76 to 92 s on a 2-core
    machine shared with a load average of 2.5 to 4.5), within the budget. Only the seven energy
    meters are polled, every METER_POLL_S real seconds (about 2 simulated hours): counters need no
    finer polls to be exact, the core spreads each step over the quarter hours it spans, and the
    readings are stamped with the world's time. The core's copy of the site states the meters' poll
    interval in simulated seconds, so it judges staleness in the same time.

    A reading is stamped when its poll ends, and the world may have stepped since its registers were
    read: by a tick (4,000 simulated seconds) as a rule, but after a stall of the event loop by all
    the lag the simulators' clock makes up at once — 2 s, 80,000 simulated seconds, by default. The
    core would then refuse the next counter step as above the meter's rated power, and the energy
    in it would be lost (seen once in a few runs, -0.06 %). The catch-up is bounded to CATCH_UP_S
    here (a stall then costs simulated time instead), which keeps every step within about 3x the
    power the meter measured.

    The world is held at 00:00 on March 1 until every meter has been read once, so the month starts
    at a reading; its end falls between polls, where the core interpolates, as it does for a real
    month. The faults and the reading of the simulator's counters at 00:00 on April 1 happen at
    their simulated times, inside the world's steps (`stepping_through`).
    """
    monkeypatch.setattr(simulators.world, "QUANTUM_S", WORLD_STEP_S)
    monkeypatch.setattr(simulators.runner, "QUANTUM_S", WORLD_STEP_S)
    monkeypatch.setattr(simulators.runner, "MAX_LAG_S", CATCH_UP_S)
    meters = [d.id for d in demo_site.devices if d.profile == "sdm630"]
    polled = [d.model_copy(update={"poll_s": METER_POLL_S}) for d in demo_site.devices if d.id in meters]
    core_site = demo_site.model_copy(
        update={
            "devices": [
                d.model_copy(update={"poll_s": METER_POLL_S * SPEED}) if d.id in meters else d
                for d in demo_site.devices
            ]
        }
    )
    store = Store(f"sqlite:///{tmp_path}/wk.db")
    await store.open()
    try:
        async with Simulation(demo_site, control_port=None, speed=0, seed=11, start=MONTH_START) as sim:
            world = sim.world
            truth_start = {m: world.meters[m].import_kwh for m in meters}
            truth_end: dict[str, float] = {}

            def fault(name: str | None, target: str) -> Callable[[], None]:
                return world.clear_faults if name is None else lambda: world.fault(name, target)

            events = [(at, fault(name, target)) for at, name, target in MONTH_FAULTS]
            events.append((MONTH_END, lambda: truth_end.update({m: world.meters[m].import_kwh for m in meters})))
            monkeypatch.setattr(world, "step", stepping_through(world, events))
            clock = WorldClock(world)
            core = Core(core_site, store=store, clock=clock, events=EventBus(), metrics=Metrics())
            await core.start()
            hub = DriverHub(polled, mqtt_url=None, emit=core.emit, clock=clock.now)
            await hub.start()
            try:

                async def every_meter_read() -> bool:
                    return all(core.state.point(m, "import_energy", clock.now()) for m in meters)

                await eventually(every_meter_read, 30)
                sim.speed = SPEED
                deadline = time.monotonic() + MONTH_BUDGET_S
                while world.now < MONTH_END + RUN_PAST_END:
                    assert time.monotonic() < deadline, f"simulated time reached only {world.now}"
                    await asyncio.sleep(0.05)
                sim.speed = 0
            finally:
                await hub.stop()
                await core.stop()

        start, end = month_bounds("2026-03", TZ)
        per_meter = {m: sum(i.kwh for i in await store.energy_intervals(start, end, meter=m)) for m in meters}
        quarters = {m: len(await store.energy_intervals(start, end, meter=m)) for m in meters}
        report = await build_report(store, demo_site, "2026-03", now=clock.now())
    finally:
        await store.close()

    truth = {m: truth_end[m] - truth_start[m] for m in meters}
    site_truth = sum(truth[m] for m in site_meters(demo_site))
    t = report.totals
    assert all(n == 31 * 96 for n in quarters.values()), quarters  # every quarter hour of every meter
    assert not events, f"simulated time never reached {events}"
    assert truth["meter-grid-b"] > 100 and truth["meter-gen"] > 100, truth  # the faults moved the load
    assert t.site_meters_kwh == pytest.approx(site_truth, rel=0.005), (t, truth)
    assert t.difference_pct is not None and abs(t.difference_pct) < 0.5, (t, truth)
    for m in meters:
        assert per_meter[m] == pytest.approx(truth[m], rel=0.005), (m, per_meter, truth)
    for d in report.departments:
        assert sum(b.kwh for b in d.bands.values()) == pytest.approx(d.kwh, abs=0.01)
        assert d.after_hours_kwh < d.kwh
