"""Monthly energy reports: month aggregation on stored intervals, rendering, the CLI, and department
meters reconciling with the site meters over a simulated day through the real core energy path."""

from __future__ import annotations

import asyncio
import csv
import io
import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

from drivers.types import Reading
from service.alarms import Alarm, AlarmState
from service.cli import app
from service.clock import ManualClock
from service.core import Core
from service.events import EventBus
from service.metrics import Metrics
from service.reports import (
    RollupTable,
    build_report,
    energy_report,
    generate_report,
    previous_month,
    report_csv,
    report_table,
    site_meters,
)
from service.rules import Severity
from service.site import Site, load_site
from service.store import EnergyInterval, Rollup, Store
from simulators.world import World
from tests.conftest import DEMO_SITE

TZ = ZoneInfo("Asia/Shanghai")


@pytest.fixture
def site() -> Site:
    return load_site(DEMO_SITE)


@pytest.fixture
async def store(tmp_path: Path) -> Store:
    s = Store(f"sqlite:///{tmp_path}/wk.db")
    await s.open()
    yield s  # type: ignore[misc]
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
    rollups = RollupTable(store.url)
    try:
        report = await build_report(store, site, "2026-03", now=utc("2026-04-02 09:00"), rollups=rollups)
    finally:
        await rollups.close()
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

    rollups = RollupTable(store.url)
    try:
        for month in ("2026-03", "2026-04"):
            report = await build_report(store, site, month, now=clock.now(), rollups=rollups)
            t = report.totals
            assert t.site_meters_kwh > 100, (month, t)
            assert all(d.kwh > 0 for d in report.departments)
            assert t.difference_pct is not None and abs(t.difference_pct) < 0.5, (month, t)
            assert sum(d.kwh for d in report.departments) == pytest.approx(t.departments_kwh, abs=0.01)
            for d in report.departments:
                assert sum(b.kwh for b in d.bands.values()) == pytest.approx(d.kwh, abs=0.01)
                assert sum(r.kwh for r in d.top_rooms) <= d.kwh
            assert any(d.top_rooms for d in report.departments)
    finally:
        await rollups.close()


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
        await core._flush_rollups()
        await core._flush_energy()
    assert core.stats.store_errors > 0
    assert await store.telemetry(meter, "import_energy", start, start + timedelta(hours=2)) == []
    away = False
    clock.set(start + timedelta(minutes=62))
    await core._flush_rollups()
    await core._flush_energy()
    minutes = await store.telemetry(meter, "import_energy", start, start + timedelta(hours=2))
    assert [r.minute for r in minutes] == [start + timedelta(minutes=m) for m in range(0, 61, 5)]
    intervals = await store.energy_intervals(start, start + timedelta(hours=2), meter=meter)
    assert [i.start for i in intervals] == [start + timedelta(minutes=m) for m in (0, 15, 30, 45)]
    assert sum(i.kwh for i in intervals) == pytest.approx(30.0)
