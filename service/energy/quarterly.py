"""The quarterly summary (季度小结) for the administration office.

Quarters are calendar quarters in the site's time zone (`2026-Q1` = January to March). Energy comes
from the same 15-minute intervals as the monthly reports (so a quarter is exactly the sum of its
three months), compared with the previous quarter and with the same quarter a year before;
violations and fines from the same incidents as the monthly violations report. Supply events:
source transfers as the core logs them (interruption against `allowed_interruption_s`), grid
losses and backfeed as the alarm lifecycles of `grid_lost` and `backfeed`, generator starts and
run hours from the generator controller's `starts` counter and `engine_state` in the 1-minute
rollups (kept for ROLLUP_RETENTION: a quarter's generator figures need the summary within that),
generator kWh from its meter's intervals. Hazards opened, closed, and overdue at the quarter's end.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Final

from pydantic import BaseModel

from service.config.site import VIOLATION_TYPES, Site
from service.energy.exports import BAND_NAMES_ZH, Column, Lang, Sheet
from service.energy.reports import BandEnergy, RoomEnergy, room_kwh, site_meters, table
from service.energy.violations import Fines, fines_sheet, incidents
from service.store.db import Hazard, Store, month_bounds

QUARTER: Final = re.compile(r"^(\d{4})-Q([1-4])$")
TOP_ROOMS: Final = 5
ENGINE_RUNNING: Final = 3.0  # dse-gencomm engine_state 3: running
SUPPLY_ALARMS: Final = ("grid_lost", "backfeed", "source_transfer_failed", "redundancy_lost", "generator_start_failed")
_EXAMPLE: Final = "2026-Q1"


def parse_quarter(quarter: str) -> tuple[int, int]:
    """'2026-Q1' -> (2026, 1); ValueError naming the expected form otherwise (e.g. '2026-Q5')."""
    m = QUARTER.fullmatch(quarter)
    if not m:
        raise ValueError(f"'{quarter}' is not a quarter YYYY-Qn with n 1 to 4 (e.g. {_EXAMPLE})")
    return int(m.group(1)), int(m.group(2))


def quarter_months(quarter: str) -> list[str]:
    """The three months of a quarter, YYYY-MM."""
    year, q = parse_quarter(quarter)
    return [f"{year}-{m:02d}" for m in range(3 * q - 2, 3 * q + 1)]


def quarter_bounds(quarter: str, site: Site) -> tuple[datetime, datetime]:
    """[first instant, first instant of the next quarter) in site time, as UTC."""
    months = quarter_months(quarter)
    return month_bounds(months[0], site.site.tz)[0], month_bounds(months[-1], site.site.tz)[1]


def previous_quarter(quarter: str) -> str:
    """'2026-Q1' -> '2025-Q4'."""
    year, q = parse_quarter(quarter)
    return f"{year - 1}-Q4" if q == 1 else f"{year}-Q{q - 1}"


def year_before(quarter: str) -> str:
    """'2026-Q1' -> '2025-Q1'."""
    year, q = parse_quarter(quarter)
    return f"{year - 1}-Q{q}"


def quarter_of(t: datetime, site: Site) -> str:
    """The site-local quarter holding `t`."""
    local = t.astimezone(site.site.tz)
    return f"{local.year}-Q{(local.month - 1) // 3 + 1}"


def _pct(part: float, whole: float | None) -> float | None:
    return round(100.0 * part / whole, 1) if whole else None


def _change(now: float, before: float | None) -> float | None:
    return round(100.0 * (now - before) / before, 1) if before else None


class DepartmentQuarter(BaseModel):
    """One department's quarter."""

    department: str
    name: str
    kwh: float
    bands: dict[str, BandEnergy]
    cost: float
    after_hours_kwh: float
    after_hours_share_pct: float | None
    previous_kwh: float | None
    previous_cost: float | None
    change_pct: float | None
    year_before_kwh: float | None
    year_before_cost: float | None
    year_change_pct: float | None
    top_rooms: list[RoomEnergy]
    violations: dict[str, int]
    violations_total: int
    fines: Fines


class TransferEvent(BaseModel):
    """One source transfer of the quarter."""

    switch: str
    kind: str
    from_source: str
    to_source: str
    at: datetime
    interruption_s: float
    allowed_interruption_s: float
    within_allowed: bool


class GeneratorQuarter(BaseModel):
    """A generator's quarter: starts, run hours, energy."""

    generator: str
    starts: int | None
    run_h: float | None
    kwh: float | None


class SupplyEvents(BaseModel):
    """Supply-side events of the quarter."""

    transfers: list[TransferEvent]
    transfers_count: int
    transfers_over_allowance: int
    longest_interruption_s: float | None
    allowed_interruption_s: float
    alarms: dict[str, int]
    grid_lost_h: float
    generators: list[GeneratorQuarter]


class HazardLine(BaseModel):
    """A hazard as the quarter saw it."""

    id: int
    title: str
    department: str
    severity: str
    status: str
    due: datetime
    created_at: datetime
    closed_at: datetime | None
    overdue: bool


class HazardSummary(BaseModel):
    """Hazards opened and closed in the quarter, and those overdue at its end."""

    opened: int
    closed: int
    overdue: int
    open_at_end: int
    hazards: list[HazardLine]


class QuarterTotals(BaseModel):
    """The site's quarter."""

    kwh: float
    cost: float
    after_hours_kwh: float
    after_hours_share_pct: float | None
    previous_kwh: float | None
    year_before_kwh: float | None
    change_pct: float | None
    year_change_pct: float | None
    site_meters_kwh: float
    difference_pct: float | None


class QuarterlyReport(BaseModel):
    """GET /api/reports/quarterly: the quarter's summary."""

    site: str
    name: str
    quarter: str
    months: list[str]
    start: datetime
    end: datetime
    previous_quarter: str
    year_before_quarter: str
    currency: str
    bands: list[str]
    departments: list[DepartmentQuarter]
    totals: QuarterTotals
    top_rooms: list[RoomEnergy]
    violations: dict[str, int]
    violations_total: int
    fines: Fines
    supply: SupplyEvents
    hazards: HazardSummary
    generated_at: datetime


async def _energy(store: Store, start: datetime, end: datetime) -> dict[str, dict[str, tuple[float, float, float]]]:
    """department -> band -> (kWh, cost, after-hours kWh)."""
    out: dict[str, dict[str, tuple[float, float, float]]] = {}
    for t in await store.energy_by_department(start, end):
        if t.department is None:
            continue
        bands = out.setdefault(t.department, {})
        k, c, a = bands.get(t.band, (0.0, 0.0, 0.0))
        bands[t.band] = (k + t.kwh, c + t.cost, a + t.after_hours_kwh)
    return out


def _sum(bands: dict[str, tuple[float, float, float]] | None, i: int) -> float | None:
    return None if bands is None else sum(v[i] for v in bands.values())


async def _supply(store: Store, site: Site, start: datetime, end: datetime) -> SupplyEvents:
    transfers = []
    for record in await store.transfers(start, end):
        if isinstance(record, dict):
            try:
                transfers.append(TransferEvent.model_validate(record))
            except ValueError:
                continue  # a record written by another version
    counts: dict[str, int] = {}
    grid_lost_s = 0.0
    for a in await store.alarms_touched(SUPPLY_ALARMS, start, end):
        if not start <= a.raised_at < end:
            continue
        counts[a.type] = counts.get(a.type, 0) + 1
        if a.type == "grid_lost":
            grid_lost_s += ((a.cleared_at or min(end, a.updated_at)) - a.raised_at).total_seconds()
    generators = []
    for g in site.generators:
        starts = run_min = None
        if g.device:
            rise = await store.rollup_rise(g.device, "starts", start, end)
            starts = None if rise is None else round(rise)
            run_min = await store.rollup_minutes_at(g.device, "engine_state", ENGINE_RUNNING, start, end)
        kwh = None
        if g.meter:
            kwh = round(sum(i.kwh for i in await store.energy_intervals(start, end, meter=g.meter)), 3)
        generators.append(
            GeneratorQuarter(
                generator=g.id, starts=starts, run_h=None if run_min is None else round(run_min / 60.0, 2), kwh=kwh
            )
        )
    over = [t for t in transfers if not t.within_allowed]
    return SupplyEvents(
        transfers=transfers,
        transfers_count=len(transfers),
        transfers_over_allowance=len(over),
        longest_interruption_s=max((t.interruption_s for t in transfers), default=None),
        allowed_interruption_s=site.site.allowed_interruption_s,
        alarms=counts,
        grid_lost_h=round(grid_lost_s / 3600.0, 2),
        generators=generators,
    )


def _hazards(found: Sequence[Hazard], start: datetime, end: datetime, now: datetime) -> HazardSummary:
    upto = min(end, now)
    lines = []
    opened = closed = overdue = open_at_end = 0
    for h in found:
        if h.created_at >= upto:
            continue
        closed_in = h.closed_at is not None and start <= h.closed_at < upto
        open_then = h.closed_at is None or h.closed_at >= upto
        late = open_then and h.due <= upto
        if h.created_at < start and not open_then and not closed_in:
            continue  # closed before the quarter
        opened += start <= h.created_at
        closed += closed_in
        overdue += late
        open_at_end += open_then
        lines.append(
            HazardLine(
                id=h.id,
                title=h.title,
                department=h.department,
                severity=h.severity,
                status=h.status if not open_then or h.closed_at is None else "open",
                due=h.due,
                created_at=h.created_at,
                closed_at=h.closed_at if not open_then else None,
                overdue=late,
            )
        )
    return HazardSummary(opened=opened, closed=closed, overdue=overdue, open_at_end=open_at_end, hazards=lines)


def _most(r: RoomEnergy) -> float:
    return -r.kwh


def _bands(bands: dict[str, tuple[float, float, float]], names: list[str]) -> dict[str, BandEnergy]:
    """Every tariff band (zero where none was used), then any other band the intervals carry."""
    out = {}
    for b in [*names, *(x for x in bands if x not in names)]:
        kwh, cost, _ = bands.get(b, (0.0, 0.0, 0.0))
        out[b] = BandEnergy(kwh=round(kwh, 3), cost=round(cost, 2))
    return out


async def build_quarterly(store: Store, site: Site, quarter: str, *, now: datetime) -> QuarterlyReport:
    """Compute a quarter's summary (ValueError for a bad quarter)."""
    start, end = quarter_bounds(quarter, site)
    prev_q, year_q = previous_quarter(quarter), year_before(quarter)
    current = await _energy(store, start, end)
    previous = await _energy(store, *quarter_bounds(prev_q, site))
    a_year_ago = await _energy(store, *quarter_bounds(year_q, site))
    band_names = [b.name for b in site.tariff.bands] if site.tariff else []
    rooms_kwh = await room_kwh(store, site, start, end)
    found = await incidents(store, site, start, end)
    departments = []
    for dept in site.departments:
        bands = current.get(dept.id, {})
        kwh = _sum(bands, 0) or 0.0
        after = _sum(bands, 2) or 0.0
        prev_kwh, year_kwh = _sum(previous.get(dept.id), 0), _sum(a_year_ago.get(dept.id), 0)
        mine = [i for i in found if i.department == dept.id]
        counts: dict[str, int] = {}
        fines = Fines()
        for i in mine:
            counts[i.type] = counts.get(i.type, 0) + 1
            fines.add(i)
        mine_rooms = [r for r in site.rooms if r.department == dept.id]
        rooms = sorted(
            (RoomEnergy(room=r.id, name=r.name, kwh=round(rooms_kwh[r.id], 3)) for r in mine_rooms), key=_most
        )
        departments.append(
            DepartmentQuarter(
                department=dept.id,
                name=dept.name,
                kwh=round(kwh, 3),
                bands=_bands(bands, band_names),
                cost=round(_sum(bands, 1) or 0.0, 2),
                after_hours_kwh=round(after, 3),
                after_hours_share_pct=_pct(after, kwh),
                previous_kwh=None if prev_kwh is None else round(prev_kwh, 3),
                previous_cost=None
                if previous.get(dept.id) is None
                else round(_sum(previous.get(dept.id), 1) or 0.0, 2),
                change_pct=_change(kwh, prev_kwh),
                year_before_kwh=None if year_kwh is None else round(year_kwh, 3),
                year_before_cost=None
                if a_year_ago.get(dept.id) is None
                else round(_sum(a_year_ago.get(dept.id), 1) or 0.0, 2),
                year_change_pct=_change(kwh, year_kwh),
                top_rooms=[r for r in rooms if r.kwh > 0][:TOP_ROOMS],
                violations={t: counts[t] for t in VIOLATION_TYPES if t in counts},
                violations_total=len(mine),
                fines=fines,
            )
        )
    total_kwh = sum(d.kwh for d in departments)
    after_kwh = sum(d.after_hours_kwh for d in departments)
    prev_total = sum(_sum(v, 0) or 0.0 for v in previous.values()) if previous else None
    year_total = sum(_sum(v, 0) or 0.0 for v in a_year_ago.values()) if a_year_ago else None
    site_kwh = 0.0
    for meter in site_meters(site):
        site_kwh += sum(i.kwh for i in await store.energy_intervals(start, end, meter=meter))
    all_rooms = sorted(
        (RoomEnergy(room=r.id, name=r.name, kwh=round(rooms_kwh[r.id], 3)) for r in site.rooms), key=lambda r: -r.kwh
    )
    counts_all: dict[str, int] = {}
    fines_all = Fines()
    for i in found:
        counts_all[i.type] = counts_all.get(i.type, 0) + 1
        fines_all.add(i)
    supply = await _supply(store, site, start, end)
    hazards = _hazards(await store.list_hazards(created_before=end), start, end, now)
    return QuarterlyReport(
        site=site.site.id,
        name=site.site.name,
        quarter=quarter,
        months=quarter_months(quarter),
        start=start,
        end=end,
        previous_quarter=prev_q,
        year_before_quarter=year_q,
        currency=site.tariff.currency if site.tariff else "CNY",
        bands=band_names,
        departments=departments,
        totals=QuarterTotals(
            kwh=round(total_kwh, 3),
            cost=round(sum(d.cost for d in departments), 2),
            after_hours_kwh=round(after_kwh, 3),
            after_hours_share_pct=_pct(after_kwh, total_kwh),
            previous_kwh=None if prev_total is None else round(prev_total, 3),
            year_before_kwh=None if year_total is None else round(year_total, 3),
            change_pct=_change(total_kwh, prev_total),
            year_change_pct=_change(total_kwh, year_total),
            site_meters_kwh=round(site_kwh, 3),
            difference_pct=round(100.0 * (total_kwh - site_kwh) / site_kwh, 2) if site_kwh else None,
        ),
        top_rooms=[r for r in all_rooms if r.kwh > 0][:TOP_ROOMS],
        violations={t: counts_all[t] for t in VIOLATION_TYPES if t in counts_all},
        violations_total=len(found),
        fines=fines_all,
        supply=supply,
        hazards=hazards,
        generated_at=now,
    )


# -- rendering ------------------------------------------------------------------------------------


def sheets(report: QuarterlyReport, lang: Lang) -> list[Sheet]:
    """The summary as tables: energy, violations and fines, supply events, hazards."""
    zh = lang == "zh"
    energy = Sheet(
        f"{report.quarter} 各部门用电",
        f"Energy {report.quarter}",
        [
            Column("部门", "department"),
            Column("电量 kWh", "kWh", "kwh"),
            *(Column(f"{BAND_NAMES_ZH.get(b, b)}时段 kWh", f"{b} kWh", "kwh") for b in report.bands),
            Column("电费 元", "cost", "money"),
            Column("非工作时间占比 %", "after-hours share %", "pct"),
            Column(f"上季度 {report.previous_quarter} kWh", f"{report.previous_quarter} kWh", "kwh"),
            Column("环比 %", "vs previous %", "pct"),
            Column(f"去年同期 {report.year_before_quarter} kWh", f"{report.year_before_quarter} kWh", "kwh"),
            Column("同比 %", "vs a year before %", "pct"),
            Column("用电最多的房间", "top rooms"),
        ],
    )
    for d in report.departments:
        energy.rows.append(
            [
                d.name,
                d.kwh,
                *(d.bands[b].kwh if b in d.bands else 0.0 for b in report.bands),
                d.cost,
                d.after_hours_share_pct,
                d.previous_kwh,
                d.change_pct,
                d.year_before_kwh,
                d.year_change_pct,
                "、".join(f"{r.name} {r.kwh:g} kWh" for r in d.top_rooms[:3]),
            ]
        )
    t = report.totals
    energy.rows.append(
        ["合计" if zh else "total", t.kwh, *(sum(d.bands[b].kwh for d in report.departments if b in d.bands)
         for b in report.bands), t.cost, t.after_hours_share_pct, t.previous_kwh, t.change_pct,
         t.year_before_kwh, t.year_change_pct, ""]
    )  # fmt: skip
    violations = fines_sheet(
        "违规与罚款",
        "Violations and fines",
        VIOLATION_TYPES,
        [(d.name, d.violations, d.violations_total, d.fines) for d in report.departments],
    )
    s = report.supply
    supply = Sheet(
        "供电事件",
        "Supply events",
        [Column("事件", "event"), Column("数量", "count", "pct"), Column("说明", "detail")],
    )
    allowed = f"{s.allowed_interruption_s:g} s"
    longest = ""
    if s.longest_interruption_s is not None:
        longest = f"最长中断 {s.longest_interruption_s:g} 秒" if zh else f"longest {s.longest_interruption_s:g} s"
    supply.rows += [
        ["电源切换" if zh else "source transfers", s.transfers_count, longest],
        ["超过允许中断时间" if zh else "over the allowed interruption", s.transfers_over_allowance, allowed],
        ["全部电网电源失去" if zh else "grid lost", s.alarms.get("grid_lost", 0), f"{s.grid_lost_h:g} h"],
        ["倒送电" if zh else "backfeed", s.alarms.get("backfeed", 0), ""],
        ["电源切换失败" if zh else "transfer failed", s.alarms.get("source_transfer_failed", 0), ""],
    ]
    for g in s.generators:
        supply.rows.append([f"{g.generator} 启动次数" if zh else f"{g.generator} starts", g.starts, ""])
        supply.rows.append(
            [f"{g.generator} 运行小时" if zh else f"{g.generator} run hours", g.run_h, f"{g.kwh or 0:g} kWh"]
        )
    hazards = Sheet(
        "隐患",
        "Hazards",
        [
            Column("编号", "id", "count"),
            Column("隐患", "title"),
            Column("部门", "department"),
            Column("级别", "severity"),
            Column("状态", "status"),
            Column("整改期限", "due", "time"),
            Column("上报时间", "reported", "time"),
            Column("关闭时间", "closed", "time"),
            Column("逾期", "overdue"),
        ],
    )
    names = {d.department: d.name for d in report.departments}
    status_zh = {"open": "待整改", "rectifying": "整改中", "closed": "已关闭"}
    for h in report.hazards.hazards:
        hazards.rows.append(
            [h.id, h.title, names.get(h.department, h.department), h.severity,
             status_zh.get(h.status, h.status) if zh else h.status, h.due, h.created_at, h.closed_at,
             ("是" if zh else "yes") if h.overdue else ""]
        )  # fmt: skip
    return [energy, violations, supply, hazards]


def machine_csv(report: QuarterlyReport) -> str:
    """One row per department with ids and the quarter's figures (for programs)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        ["quarter", "department", "kwh", *(f"{b}_kwh" for b in report.bands), "cost", "after_hours_kwh",
         "previous_kwh", "year_before_kwh", "violations", "fines_proposed", "fines_confirmed", "fines_waived"]
    )  # fmt: skip
    for d in report.departments:
        w.writerow(
            [report.quarter, d.department, d.kwh, *(d.bands[b].kwh if b in d.bands else 0.0 for b in report.bands),
             d.cost, d.after_hours_kwh, "" if d.previous_kwh is None else d.previous_kwh,
             "" if d.year_before_kwh is None else d.year_before_kwh, d.violations_total,
             d.fines.proposed, d.fines.confirmed, d.fines.waived]
        )  # fmt: skip
    return buf.getvalue()


def text_table(report: QuarterlyReport) -> str:
    """The summary for a terminal."""
    cur = report.currency
    header = ["department", "kWh", f"cost {cur}", "after-hours %", f"vs {report.previous_quarter} %",
              f"vs {report.year_before_quarter} %", "violations", f"fines confirmed {cur}"]  # fmt: skip
    rows = [
        [d.name, d.kwh, f"{d.cost:,.2f}", d.after_hours_share_pct, d.change_pct, d.year_change_pct,
         d.violations_total, f"{d.fines.confirmed:,.2f}"]
        for d in report.departments
    ]  # fmt: skip
    t, s, h = report.totals, report.supply, report.hazards
    lines = [f"{report.name} ({report.site}) quarterly summary {report.quarter}"]
    lines += table(header, rows)
    lines += [
        "",
        f"total {t.kwh:,.1f} kWh, {t.cost:,.2f} {cur}; after hours {t.after_hours_share_pct or 0:g} %; "
        f"site meters {t.site_meters_kwh:,.1f} kWh",
        f"violations {report.violations_total}; fines proposed {report.fines.proposed:,.2f}, "
        f"confirmed {report.fines.confirmed:,.2f}, waived {report.fines.waived:,.2f} {cur}",
        f"transfers {s.transfers_count} ({s.transfers_over_allowance} over {s.allowed_interruption_s:g} s); "
        f"grid lost {s.alarms.get('grid_lost', 0)} ({s.grid_lost_h:g} h); backfeed {s.alarms.get('backfeed', 0)}",
        *(f"generator {g.generator}: {g.starts if g.starts is not None else '-'} starts, "
          f"{g.run_h if g.run_h is not None else '-'} h, {g.kwh or 0:g} kWh" for g in s.generators),
        f"hazards opened {h.opened}, closed {h.closed}, overdue {h.overdue}, open at the end {h.open_at_end}",
    ]  # fmt: skip
    return "\n".join(lines)
