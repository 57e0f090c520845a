"""Violations and fines: a simulated month of office alarms (rules and alarm engine on injected time,
lifecycles in the real store) and after-hours sweep findings in two departments, reconciled exactly;
the night of a sweep; the people's CSV and xlsx read back."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from zoneinfo import ZoneInfo

import openpyxl
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from drivers.types import Reading, Value
from service.alarms.engine import AlarmEngine
from service.alarms.evaluate import journal_entry
from service.alarms.rules import evaluate
from service.config.settings import async_database_url
from service.config.site import Site, load_site
from service.control.path import DeviceActionName, DeviceResult, OccupiedPolicy, SweepResult, sweep_findings
from service.energy.exports import BOM, people_csv, xlsx
from service.energy.violations import machine_csv, night_of, sheets, text_table, violations_report
from service.live.state import LiveState
from service.store.db import MIGRATIONS, FineDecision, Store
from tests.conftest import DEMO_SITE

TZ = ZoneInfo("Asia/Shanghai")


def local(text: str) -> datetime:
    """A site-local 'YYYY-MM-DD HH:MM' as UTC."""
    return datetime.fromisoformat(text).replace(tzinfo=TZ).astimezone(UTC)


@pytest.fixture
def site() -> Site:
    return load_site(DEMO_SITE)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = Store(f"sqlite:///{tmp_path}/wk.db")
    await s.open()
    yield s
    await s.close()


class Month:
    """The office rules and the alarm engine on injected time, every transition saved to the store."""

    def __init__(self, site: Site, store: Store) -> None:
        self.site, self.store = site, store
        self.state = LiveState(site)
        self.engine = AlarmEngine()

    def feed(self, t: datetime, device: str, **points: Value) -> None:
        for name, value in points.items():
            self.state.apply(Reading(device=device, point=name, value=value, unit="", ts=t))

    async def run(self, start: datetime, minutes: int, readings: dict[str, dict[str, Value]]) -> datetime:
        """Feed `readings` every minute for `minutes` and evaluate; returns the end time."""
        t = start
        for _ in range(minutes):
            for device, points in readings.items():
                self.feed(t, device, **points)
            for tr in self.engine.update(evaluate(self.site, self.state, t), t):
                await self.store.save_alarm(tr.alarm, journal_entry(tr))
            t += timedelta(minutes=1)
        return t

    async def lights_left_on(self, room: str, at: str) -> None:
        """Lights on in the empty room for 15 minutes, then off for 5."""
        t = await self.run(local(at), 15, {f"{room}-occ": {"occupancy": False}, f"{room}-light": {"on": True}})
        await self.run(t, 5, {f"{room}-occ": {"occupancy": False}, f"{room}-light": {"on": False}})

    async def heater(self, plug: str, at: str, watts: float) -> None:
        """An appliance of `watts` on an office plug for 10 minutes, then unplugged for 5."""
        t = await self.run(local(at), 10, {plug: {"on": True, "power": watts}})
        await self.run(t, 5, {plug: {"on": True, "power": 40.0}})


def sweep(
    site: Site, at: str, found_on: dict[str, list[str]], *, also: dict[str, DeviceActionName] | None = None
) -> SweepResult:
    """A sweep run at site-local `at` that found the listed devices on (switched off), rooms by id."""
    started = local(at)
    devices = [DeviceResult(d, room, "switched_off", False) for room, ds in found_on.items() for d in ds]
    for d, action in (also or {}).items():
        room = site.room_of(d)
        assert room is not None, d
        devices.append(DeviceResult(d, room.id, action))
    return SweepResult(
        sweep="after-hours",
        job=f"after-hours@{started.isoformat()}",
        who="scheduler",
        policy=OccupiedPolicy.skip,
        started_at=started,
        finished_at=started + timedelta(seconds=2),
        devices=devices,
    )


@pytest.mark.parametrize(
    ("at", "night"),
    [
        ("2026-03-10 18:30", "2026-03-10"),
        ("2026-03-10 23:59", "2026-03-10"),
        ("2026-03-11 01:30", "2026-03-10"),  # after midnight: the same night
        ("2026-03-11 11:59", "2026-03-10"),
        ("2026-03-11 12:00", "2026-03-11"),
        ("2026-03-01 02:00", "2026-02-28"),
    ],
)
def test_night_of(site: Site, at: str, night: str) -> None:
    assert night_of(local(at), site) == night


async def simulate_march(site: Site, store: Store) -> None:
    """Known violations in marketing and engineering, and what must not count."""
    month = Month(site, store)
    await month.lights_left_on("r2119", "2026-02-28 23:30")  # February: not March's
    await month.lights_left_on("r2119", "2026-03-03 19:00")  # marketing
    await month.lights_left_on("r2119", "2026-03-17 12:10")  # marketing
    await month.heater("r3102-plug", "2026-03-05 10:00", 2000.0)  # engineering
    await month.heater("r3102-plug", "2026-03-06 10:00", 1100.0)  # under plug_max_w: nothing
    await month.lights_left_on("r2101", "2026-04-01 08:00")  # April
    for result in (
        sweep(site, "2026-03-10 18:30", {"r3101": ["r3101-light", "r3101-pc1"]}),
        sweep(site, "2026-03-10 20:00", {"r3101": ["r3101-pc2"]}),  # same room, same night: once
        sweep(site, "2026-03-11 01:00", {"r3101": ["r3101-light"]}),  # after midnight: still that night
        sweep(site, "2026-03-12 22:00", {"r2101": ["r2101-printer"]}, also={"r3101-light": "skipped_occupied"}),
        sweep(site, "2026-03-13 22:00", {}, also={"r2119-light": "skipped_override", "r2101-pc1": "already_off"}),
    ):
        for finding in sweep_findings(site, result):
            await store.add_after_hours_finding(finding)


async def test_a_simulated_month_reconciles_counts_and_fines(site: Site, store: Store) -> None:
    await simulate_march(site, store)
    now = local("2026-04-02 09:00")
    report = await violations_report(store, site, "2026-03", now=now)
    by = {d.department: d for d in report.departments}
    assert by["marketing"].counts == {"lit_empty_room": 2, "left_on_after_hours": 1}
    assert by["engineering"].counts == {"high_power_appliance": 1, "left_on_after_hours": 1}
    assert by["admin"].total == by["it"].total == 0
    assert report.total == 5
    # Before any decision every priced violation is a proposal: 50 + 50 + 50 and 200 + 50.
    assert (by["marketing"].fines.proposed, by["engineering"].fines.proposed) == (150.0, 250.0)
    assert report.fines.confirmed == 0.0

    lit = [i for i in by["marketing"].incidents if i.type == "lit_empty_room"]
    assert [i.at.astimezone(TZ).strftime("%m-%d %H:%M") for i in lit] == [
        "03-03 19:06",
        "03-17 12:16",
    ]  # empty_room_delay_s 300, then the next minute
    assert lit[0].room_name == "2119 会议室"
    assert lit[0].duration_s is not None and 9 * 60 <= lit[0].duration_s <= 12 * 60
    assert "r2119" in lit[0].evidence
    [heater] = by["engineering"].incidents[:1]
    assert heater.type == "high_power_appliance" and "2000" in heater.evidence
    [found] = [i for i in by["engineering"].incidents if i.type == "left_on_after_hours"]
    assert found.id == "sweep:r3101:2026-03-10" and "r3101-light" in found.evidence

    decided = local("2026-04-02 10:00")
    office = partial(FineDecision, decided_by="key:office", decided_at=decided)
    await store.decide_fine(office(violation=lit[1].id, status="waived", amount=50.0, reason="overran"))
    await store.decide_fine(office(violation=heater.id, status="confirmed", amount=300.0, reason="heater"))
    report = await violations_report(store, site, "2026-03", now=now)
    by = {d.department: d for d in report.departments}
    m, e = by["marketing"].fines, by["engineering"].fines
    assert (m.proposed, m.confirmed, m.waived) == (100.0, 0.0, 50.0)
    assert (m.proposed_count, m.confirmed_count, m.waived_count) == (2, 0, 1)
    assert (e.proposed, e.confirmed, e.waived) == (50.0, 300.0, 0.0)
    assert (report.fines.proposed, report.fines.confirmed, report.fines.waived) == (150.0, 300.0, 50.0)
    waived = next(i for i in by["marketing"].incidents if i.id == lit[1].id)
    assert (waived.fine_status, waived.decided_by, waived.reason) == ("waived", "key:office", "overran")

    # February and April stand alone.
    feb = await violations_report(store, site, "2026-02", now=now)
    assert {d.department: d.counts for d in feb.departments if d.total} == {"marketing": {"lit_empty_room": 1}}
    apr = await violations_report(store, site, "2026-04", now=now)
    assert {d.department: d.counts for d in apr.departments if d.total} == {"marketing": {"lit_empty_room": 1}}


async def test_people_csv_and_xlsx_read_back(site: Site, store: Store) -> None:
    await simulate_march(site, store)
    report = await violations_report(store, site, "2026-03", now=local("2026-04-02 09:00"))
    tables = sheets(report, "zh")

    raw = people_csv(tables, "zh", TZ)
    assert raw.startswith(BOM.encode("utf-8"))
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert rows[0] == ["各部门违规与罚款"]
    assert rows[1][0] == "部门" and "长明灯" in rows[1] and "下班未关电器" in rows[1]
    marketing = next(r for r in rows if r and r[0] == "市场营销部")
    assert marketing[rows[1].index("长明灯")] == "2"
    assert marketing[rows[1].index("待确认罚款")] == "150.00"
    detail_at = rows.index(["违规明细"])
    header = rows[detail_at + 1]
    details = rows[detail_at + 2 :]
    assert len(details) == 5
    assert details[0][header.index("时间")] == "2026-03-03 19:06"
    assert details[0][header.index("房间")] == "2119 会议室"
    assert details[0][header.index("违规类型")] == "长明灯"

    book = openpyxl.load_workbook(io.BytesIO(xlsx(tables, "zh", TZ)))
    assert book.sheetnames == ["各部门违规与罚款", "违规明细"]
    summary, detail = book["各部门违规与罚款"], book["违规明细"]
    assert summary.freeze_panes == detail.freeze_panes == "A2"
    assert [c.value for c in summary[1]] == [c.zh for c in tables[0].columns]
    for r, expected in enumerate(tables[0].rows, start=2):
        assert [c.value for c in summary[r]] == expected
    money = summary.cell(row=2, column=len(tables[0].columns) - 2)
    assert money.number_format == '#,##0.00" 元"'
    assert detail.cell(row=2, column=1).value == datetime(2026, 3, 3, 19, 6)
    assert detail.cell(row=2, column=1).number_format == "yyyy-mm-dd hh:mm"
    assert detail.cell(row=2, column=7).number_format == '#,##0.00" 元"'
    assert [detail.cell(row=r, column=11).value for r in range(2, 7)] == [row[-1] for row in tables[1].rows]

    machine = list(csv.reader(io.StringIO(machine_csv(report))))
    assert machine[0][:4] == ["id", "type", "department", "room"]
    assert len(machine) == 6 and not machine_csv(report).startswith(BOM)
    assert "2119 会议室" in text_table(report, site)


@pytest.fixture(params=["sqlite", "postgresql"])
async def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    url = f"sqlite:///{tmp_path}/wk.db" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    s = Store(url)
    await s.open()
    yield s
    await s.close()


async def test_migration_3_keeps_an_older_database(any_store: Store, site: Site) -> None:
    """A database made before migration 3 gets the findings, fines, hazards and transfers tables when
    opened again, and keeps its alarms; a room is found on once per night; hazards round-trip."""
    store = any_store
    month = Month(site, store)
    await month.lights_left_on("r2119", "2026-03-03 19:00")
    await store.close()
    engine = create_async_engine(async_database_url(store.url))
    async with engine.begin() as conn:
        for table in ("after_hours_findings", "fine_decisions", "hazards", "transfers"):
            await conn.execute(text(f"DROP TABLE {table}"))
        await conn.execute(text("DELETE FROM schema_version WHERE version >= 3"))
    await engine.dispose()
    await store.open()
    assert await store.schema_version() == MIGRATIONS[-1][0] >= 3
    report = await violations_report(store, site, "2026-03", now=local("2026-04-01 09:00"))
    assert report.counts == {"lit_empty_room": 1}
    result = sweep(site, "2026-03-10 18:30", {"r3101": ["r3101-light"]})
    [finding] = sweep_findings(site, result)
    assert await store.add_after_hours_finding(finding) is True
    assert await store.add_after_hours_finding(finding) is False
    created = local("2026-03-11 10:00")
    h = await store.add_hazard(
        title="配电室门锁损坏", location="B1", department="admin", severity="high", due=created + timedelta(days=2),
        source_alarm=None, created_by="key:op", created_at=created,
    )  # fmt: skip
    with pytest.raises(ValueError, match="due"):
        await store.add_hazard(
            title="x", location="", department="admin", severity="low", due=created, source_alarm=None,
            created_by="key:op", created_at=created,
        )  # fmt: skip
    assert [x.id for x in await store.list_hazards(statuses=("open",))] == [h.id]
    done = await store.update_hazard(h.id, status="closed", rectification="换锁", who="key:admin", at=created)
    assert done is not None and (done.status, done.closed_by, done.rectification) == ("closed", "key:admin", "换锁")
    assert await store.list_hazards(statuses=("open", "rectifying")) == []
