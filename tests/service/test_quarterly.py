"""The quarterly summary on stored data: reconciling with the three monthly reports, the previous
quarter across a year boundary and the same quarter a year before, supply events, hazards."""

from __future__ import annotations

import io
from datetime import timedelta

import openpyxl
import pytest

from service.alarms.record import Alarm, AlarmState, Severity
from service.config.site import Site, load_site
from service.energy.exports import xlsx
from service.energy.quarterly import (
    build_quarterly,
    parse_quarter,
    previous_quarter,
    quarter_bounds,
    quarter_months,
    quarter_of,
    sheets,
    text_table,
    year_before,
)
from service.energy.reports import build_report
from service.energy.violations import violations_report
from service.store.db import EnergyInterval, Rollup, Store
from tests.conftest import DEMO_SITE
from tests.service.test_violations import TZ, local, simulate_march


@pytest.fixture
def site() -> Site:
    return load_site(DEMO_SITE)


def iv(meter: str, at: str, kwh: float, band: str, dept: str | None, *, after: bool = False) -> EnergyInterval:
    price = {"peak": 1.12, "flat": 0.68, "valley": 0.32}[band]
    return EnergyInterval(
        meter=meter, start=local(at), kwh=kwh, band=band, cost=kwh * price, after_hours=after, department=dept
    )


@pytest.mark.parametrize(
    ("quarter", "months", "previous", "a_year_before"),
    [
        ("2026-Q1", ["2026-01", "2026-02", "2026-03"], "2025-Q4", "2025-Q1"),
        ("2026-Q4", ["2026-10", "2026-11", "2026-12"], "2026-Q3", "2025-Q4"),
        ("2027-Q2", ["2027-04", "2027-05", "2027-06"], "2027-Q1", "2026-Q2"),
    ],
)
def test_quarter_arithmetic(quarter: str, months: list[str], previous: str, a_year_before: str) -> None:
    assert quarter_months(quarter) == months
    assert previous_quarter(quarter) == previous
    assert year_before(quarter) == a_year_before


@pytest.mark.parametrize("bad", ["2026-Q5", "2026-Q0", "2026Q1", "2026-q1", "26-Q1", ""])
def test_bad_quarters_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="YYYY-Qn"):
        parse_quarter(bad)


def test_quarter_bounds_are_site_time(site: Site) -> None:
    start, end = quarter_bounds("2026-Q1", site)
    assert start.astimezone(TZ).isoformat() == "2026-01-01T00:00:00+08:00"
    assert end.astimezone(TZ).isoformat() == "2026-04-01T00:00:00+08:00"
    assert quarter_of(local("2026-01-01 00:00"), site) == "2026-Q1"
    assert quarter_of(local("2025-12-31 23:59"), site) == "2025-Q4"


async def seed(store: Store) -> None:
    """Energy in 2025-Q1, 2025-Q4 (up to the last quarter hour of the year) and 2026-Q1 (from the first)."""
    await store.upsert_energy(
        [
            iv("meter-dept-admin", "2025-02-10 10:00", 40.0, "peak", "admin"),
            iv("meter-dept-marketing", "2025-03-10 10:00", 100.0, "peak", "marketing"),
            iv("meter-dept-admin", "2025-12-31 23:45", 50.0, "valley", "admin", after=True),  # 2025-Q4's last
            iv("meter-dept-marketing", "2025-11-03 10:00", 80.0, "flat", "marketing"),
            iv("meter-dept-admin", "2026-01-01 00:00", 20.0, "valley", "admin", after=True),  # 2026-Q1's first
            iv("meter-dept-admin", "2026-02-16 09:00", 40.0, "peak", "admin"),
            iv("meter-dept-marketing", "2026-03-10 10:00", 100.0, "peak", "marketing"),
            iv("meter-dept-marketing", "2026-03-31 23:45", 20.0, "valley", "marketing", after=True),  # Q1's last
            iv("meter-dept-marketing", "2026-04-01 00:00", 999.0, "valley", "marketing", after=True),  # Q2
            iv("meter-grid-a", "2026-01-01 00:00", 60.0, "valley", None),
            iv("meter-grid-a", "2026-03-10 10:00", 120.0, "peak", None),
            iv("meter-gen", "2026-03-20 10:00", 0.1, "peak", None),
        ]
    )


async def supply_and_hazards(store: Store) -> None:
    """Two transfers (one over the allowed 10 s), a grid loss of 30 min, a backfeed, generator rollups,
    and hazards around the quarter."""
    rec = {"kind": "transfer", "from_source": "grid-a", "to_source": "grid-b", "allowed_interruption_s": 10.0}
    await store.add_transfers(
        [
            ("ats-1", local("2026-02-03 10:00"), {**rec, "switch": "ats-1", "at": local("2026-02-03 10:00").isoformat(),
             "lost_at": local("2026-02-03 09:59").isoformat(), "interruption_s": 4.2, "within_allowed": True}),
            ("ats-1", local("2026-03-03 10:00"), {**rec, "switch": "ats-1", "at": local("2026-03-03 10:00").isoformat(),
             "lost_at": local("2026-03-03 09:59").isoformat(), "interruption_s": 14.0, "within_allowed": False}),
            ("ats-1", local("2025-12-03 10:00"), {**rec, "switch": "ats-1", "at": local("2025-12-03 10:00").isoformat(),
             "lost_at": local("2025-12-03 09:59").isoformat(), "interruption_s": 3.0, "within_allowed": True}),
        ]
    )  # fmt: skip
    for ident, kind, subject, raised, cleared in (
        ("g1", "grid_lost", "hq", "2026-03-03 09:59", "2026-03-03 10:29"),
        ("b1", "backfeed", "gen-1", "2026-03-04 09:00", "2026-03-04 09:01"),
        ("g0", "grid_lost", "hq", "2025-12-03 09:59", "2025-12-03 10:00"),  # the quarter before
    ):
        at, end = local(raised), local(cleared)
        await store.save_alarm(
            Alarm(id=ident, type=kind, severity=Severity.critical, subject=subject, state=AlarmState.cleared,
                  active=False, raised_at=at, updated_at=end, cleared_at=end)
        )  # fmt: skip
    minute = local("2026-03-03 09:59")
    await store.upsert_rollups(
        [Rollup(device="genset-1", point="engine_state", minute=minute + timedelta(minutes=i), min=3, max=3, mean=3,
                last=3, count=60) for i in range(90)]
        + [Rollup(device="genset-1", point="starts", minute=minute + timedelta(minutes=i), min=s, max=s, mean=s,
                  last=s, count=60) for i, s in ((0, 10), (1, 11), (60, 11), (89, 12))]
    )  # fmt: skip
    hazards = (
        ("fixed in the quarter", "2026-01-05 09:00", "2026-01-20", "2026-01-12 15:00"),
        ("still open, overdue", "2026-02-01 09:00", "2026-03-01", None),
        ("reported before, fixed in", "2025-12-20 09:00", "2026-01-31", "2026-01-10 10:00"),
        ("fixed before the quarter", "2025-10-20 09:00", "2025-11-30", "2025-11-10 10:00"),
        ("still open, not yet due", "2026-03-20 09:00", "2026-04-30", None),
    )
    for title, created, due, closed in hazards:
        h = await store.add_hazard(
            title=title, location="", department="admin", severity="high", due=local(f"{due} 23:59"),
            source_alarm=None, created_by="key:op", created_at=local(created),
        )  # fmt: skip
        if closed:
            await store.update_hazard(h.id, status="closed", rectification="done", who="key:admin", at=local(closed))


async def test_quarter_reconciles_with_its_months_and_compares_across_the_year(site: Site, store: Store) -> None:
    await seed(store)
    await simulate_march(site, store)
    await supply_and_hazards(store)
    now = local("2026-04-02 09:00")
    q = await build_quarterly(store, site, "2026-Q1", now=now)
    months = [await build_report(store, site, m, now=now) for m in quarter_months("2026-Q1")]
    viol = [await violations_report(store, site, m, now=now) for m in quarter_months("2026-Q1")]
    by = {d.department: d for d in q.departments}

    for d in q.departments:
        monthly = [next(x for x in m.departments if x.department == d.department) for m in months]
        assert d.kwh == pytest.approx(sum(x.kwh for x in monthly), abs=1e-6)
        assert d.cost == pytest.approx(sum(x.cost for x in monthly), abs=0.011)
        assert d.after_hours_kwh == pytest.approx(sum(x.after_hours_kwh for x in monthly), abs=1e-6)
        for band in q.bands:
            assert d.bands[band].kwh == pytest.approx(sum(x.bands[band].kwh for x in monthly), abs=1e-6)
        vm = [next(x for x in v.departments if x.department == d.department) for v in viol]
        assert d.violations_total == sum(x.total for x in vm)
        assert d.fines.proposed == pytest.approx(sum(x.fines.proposed for x in vm))
    assert q.totals.kwh == pytest.approx(sum(m.totals.departments_kwh for m in months), abs=1e-6)
    # The departments' meters against the site's: 180 kWh of 180.1 taken (the generator's 0.1).
    assert (q.totals.kwh, q.totals.site_meters_kwh) == (180.0, 180.1)
    assert abs(q.totals.difference_pct or 0) <= 0.1

    admin, marketing = by["admin"], by["marketing"]
    assert (admin.kwh, admin.previous_kwh, admin.year_before_kwh) == (60.0, 50.0, 40.0)  # 2025-12-31 23:45 is Q4
    assert (admin.change_pct, admin.year_change_pct) == (20.0, 50.0)
    assert (marketing.kwh, marketing.previous_kwh, marketing.year_before_kwh) == (120.0, 80.0, 100.0)
    assert admin.after_hours_share_pct == pytest.approx(33.3)
    assert (q.totals.previous_kwh, q.totals.year_before_kwh) == (130.0, 140.0)
    assert (q.previous_quarter, q.year_before_quarter) == ("2025-Q4", "2025-Q1")
    assert marketing.violations == {"lit_empty_room": 3, "left_on_after_hours": 1}  # February's and March's
    assert by["engineering"].violations == {"high_power_appliance": 1, "left_on_after_hours": 1}
    assert q.violations_total == 6 and q.fines.proposed == 450.0

    s = q.supply
    assert (s.transfers_count, s.transfers_over_allowance, s.longest_interruption_s) == (2, 1, 14.0)
    assert s.alarms == {"grid_lost": 1, "backfeed": 1}
    assert s.grid_lost_h == 0.5
    [gen] = s.generators
    assert (gen.generator, gen.starts, gen.run_h, gen.kwh) == ("gen-1", 2, 1.5, 0.1)

    h = q.hazards
    assert (h.opened, h.closed, h.overdue, h.open_at_end) == (3, 2, 1, 2)
    assert sorted(x.title for x in h.hazards if x.overdue) == ["still open, overdue"]
    assert "fixed before the quarter" not in {x.title for x in h.hazards}

    assert "2026-Q1" in text_table(q)
    tables = sheets(q, "zh")
    book = openpyxl.load_workbook(io.BytesIO(xlsx(tables, "zh", TZ)))
    assert book.sheetnames == ["2026-Q1 各部门用电", "违规与罚款", "供电事件", "隐患"]
    energy = book["2026-Q1 各部门用电"]
    assert [c.value for c in energy[1]][:2] == ["部门", "电量 kWh"]
    assert [energy.cell(row=r, column=1).value for r in range(2, 7)] == [
        "行政部",
        "市场营销部",
        "研发部",
        "信息技术部",
        "合计",
    ]
    assert energy.cell(row=2, column=2).value == 60.0 and energy.cell(row=2, column=2).number_format == "#,##0.000"
    assert energy.freeze_panes == "A2"


async def test_an_empty_quarter(site: Site, store: Store) -> None:
    q = await build_quarterly(store, site, "2026-Q3", now=local("2026-10-02 09:00"))
    assert q.totals.kwh == 0.0 and q.totals.change_pct is None and q.totals.previous_kwh is None
    assert all(d.after_hours_share_pct is None for d in q.departments)
    assert q.supply.transfers_count == 0 and q.hazards.opened == 0
    [gen] = q.supply.generators
    # No starts counter in the rollups: no starts; no minute with the engine running: no run hours.
    assert gen.starts is None and gen.run_h == 0.0
