"""Monthly energy reports per department: kWh and time-of-use cost, after-hours kWh, top rooms,
month-over-month change and violations by alarm type; as JSON, CSV, a text table and the CLI.

Where the numbers come from:

- department kWh, band split, cost and after-hours kWh: the 15-minute intervals of each
  department's meter (`departments[].meter`), as the core stores them;
- the site's kWh: the intervals of the site meters — every grid source's meter plus every
  generator's meter — so `totals.difference_pct` shows how well the department meters
  reconcile with what the site took (unmetered loads, losses, missing meters);
- top rooms: each room's devices' `power` from the 1-minute rollups (mean W per minute), which the
  rollup retention keeps for ROLLUP_RETENTION — older months have no top rooms;
- violations: alarm lifecycles raised in the month, counted per type and attributed to the
  department of their subject's room; supply-side alarms are the site's.

Months are calendar months in the site's time zone. A report is stored when the monthly job
generates it after the month has ended; until then, and for months never generated, it is
computed on request.
"""

from __future__ import annotations

import csv
import io
import unicodedata
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from service.alarms.rules import AlarmType
from service.config.site import Site
from service.energy.exports import BAND_NAMES_ZH, TYPE_NAMES, Column, Lang, Sheet, name_of
from service.store.db import Store, month_bounds

TOP_ROOMS: Final = 3
ROLLUP_RETENTION: Final = timedelta(days=90)
SITE_ROW: Final = "_site"  # the stored report row holding the whole report
# Alarm types whose subject is a room or a device in one: counted per department, in this order.
DEPARTMENT_ALARMS: Final = (
    AlarmType.lit_empty_room,
    AlarmType.ac_too_cold,
    AlarmType.ac_heating_too_warm,
    AlarmType.ac_door_open,
    AlarmType.high_power_appliance,
    AlarmType.shutdown_failed,
    AlarmType.device_offline,
    AlarmType.ac_left_on,
    AlarmType.lit_in_daylight,
)
_ALARM_PAGE: Final = 1000


_BAND_EXAMPLE: Final[dict[str, Any]] = {"kwh": 1904.3, "cost": 2028.08}
_ROOM_EXAMPLE: Final[dict[str, Any]] = {"room": "r2119", "name": "2119 会议室", "kwh": 412.6}
_DEPARTMENT_EXAMPLE: Final[dict[str, Any]] = {
    "department": "marketing",
    "name": "市场营销部",
    "metered": True,
    "kwh": 5120.4,
    "bands": {
        "peak": _BAND_EXAMPLE,
        "flat": {"kwh": 2710.9, "cost": 1740.40},
        "valley": {"kwh": 505.2, "cost": 150.55},
    },
    "cost": 3919.03,
    "after_hours_kwh": 1088.7,
    "previous_kwh": 4876.0,
    "change_pct": 5.01,
    "top_rooms": [_ROOM_EXAMPLE],
    "violations": {"lit_empty_room": 12, "ac_too_cold": 3},
}
_TOTALS_EXAMPLE: Final[dict[str, Any]] = {
    "departments_kwh": 21786.9,
    "site_meters_kwh": 21840.2,
    "difference_pct": -0.24,
    "cost": 16702.11,
    "after_hours_kwh": 4470.5,
}


class BandEnergy(BaseModel):
    """Energy and cost in one time-of-use band."""

    model_config = ConfigDict(json_schema_extra={"examples": [_BAND_EXAMPLE]})

    kwh: float
    cost: float


class RoomEnergy(BaseModel):
    """A room's energy in the month (from its devices' power)."""

    model_config = ConfigDict(json_schema_extra={"examples": [_ROOM_EXAMPLE]})

    room: str
    name: str
    kwh: float


class DepartmentEnergy(BaseModel):
    """One department's month."""

    model_config = ConfigDict(json_schema_extra={"examples": [_DEPARTMENT_EXAMPLE]})

    department: str
    name: str
    metered: bool
    kwh: float
    bands: dict[str, BandEnergy]
    cost: float
    after_hours_kwh: float
    previous_kwh: float | None
    change_pct: float | None
    top_rooms: list[RoomEnergy]
    violations: dict[str, int]


class EnergyTotals(BaseModel):
    """Site totals and how the department meters reconcile with the site meters."""

    model_config = ConfigDict(json_schema_extra={"examples": [_TOTALS_EXAMPLE]})

    departments_kwh: float
    site_meters_kwh: float
    difference_pct: float | None
    cost: float
    after_hours_kwh: float


class EnergyReport(BaseModel):
    """GET /api/reports/energy: the month of every department."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "site": "hq",
                    "month": "2026-10",
                    "by": "department",
                    "currency": "CNY",
                    "bands": ["peak", "flat", "valley"],
                    "departments": [_DEPARTMENT_EXAMPLE],
                    "totals": _TOTALS_EXAMPLE,
                    "site_violations": {"redundancy_lost": 1},
                    "generated_at": "2026-11-01T00:05:00+08:00",
                    "source": "stored",
                }
            ]
        }
    )

    site: str
    month: str
    by: Literal["department"] = "department"
    currency: str
    bands: list[str]
    departments: list[DepartmentEnergy]
    totals: EnergyTotals
    site_violations: dict[str, int]
    generated_at: datetime
    source: Literal["stored", "live"] = "live"


def previous_month(month: str) -> str:
    """'2026-01' -> '2025-12'."""
    year, mon = int(month[:4]), int(month[5:7])
    return f"{year - 1}-12" if mon == 1 else f"{year}-{mon - 1:02d}"


def month_of(t: datetime, site: Site) -> str:
    """The site-local calendar month holding `t`, as YYYY-MM."""
    return t.astimezone(site.site.tz).strftime("%Y-%m")


def site_meters(site: Site) -> list[str]:
    """The meters that measure what the whole site takes: grid sources' and generators' meters."""
    meters = [s.meter for s in site.sources if s.meter] + [g.meter for g in site.generators if g.meter]
    return list(dict.fromkeys(meters))


async def build_report(store: Store, site: Site, month: str, *, now: datetime) -> EnergyReport:
    """Compute a month's report from the stored intervals, rollups and alarms (ValueError for a bad month)."""
    tz = site.site.tz
    start, end = month_bounds(month, tz)
    prev_start, prev_end = month_bounds(previous_month(month), tz)
    band_names = [b.name for b in site.tariff.bands] if site.tariff else []
    totals = await store.energy_by_department(start, end)
    previous: dict[str, float] = {}
    for t in await store.energy_by_department(prev_start, prev_end):
        if t.department is not None:
            previous[t.department] = previous.get(t.department, 0.0) + t.kwh
    site_kwh = 0.0
    for meter in site_meters(site):
        site_kwh += sum(i.kwh for i in await store.energy_intervals(start, end, meter=meter))
    rooms_kwh = await room_kwh(store, site, start, end)
    violations, site_violations = await _violations(store, site, start, end)
    departments = []
    for dept in site.departments:
        rows = [t for t in totals if t.department == dept.id]
        bands = {name: BandEnergy(kwh=0.0, cost=0.0) for name in band_names}
        for t in rows:
            had = bands.get(t.band, BandEnergy(kwh=0.0, cost=0.0))
            bands[t.band] = BandEnergy(kwh=had.kwh + t.kwh, cost=had.cost + t.cost)
        kwh = sum(t.kwh for t in rows)
        prev = previous.get(dept.id)
        rooms = sorted(
            (
                RoomEnergy(room=r.id, name=r.name, kwh=_kwh(rooms_kwh[r.id]))
                for r in site.rooms
                if r.department == dept.id
            ),
            key=lambda r: -r.kwh,
        )
        departments.append(
            DepartmentEnergy(
                department=dept.id,
                name=dept.name,
                metered=dept.meter is not None,
                kwh=_kwh(kwh),
                bands={k: BandEnergy(kwh=_kwh(v.kwh), cost=_money(v.cost)) for k, v in bands.items()},
                cost=_money(sum(t.cost for t in rows)),
                after_hours_kwh=_kwh(sum(t.after_hours_kwh for t in rows)),
                previous_kwh=None if prev is None else _kwh(prev),
                change_pct=round(100.0 * (kwh - prev) / prev, 1) if prev else None,
                top_rooms=[r for r in rooms if r.kwh > 0][:TOP_ROOMS],
                violations=violations.get(dept.id, {}),
            )
        )
    dept_kwh = sum(t.kwh for t in totals if t.department is not None)
    return EnergyReport(
        site=site.site.id,
        month=month,
        currency=site.tariff.currency if site.tariff else "",
        bands=band_names,
        departments=departments,
        totals=EnergyTotals(
            departments_kwh=_kwh(dept_kwh),
            site_meters_kwh=_kwh(site_kwh),
            difference_pct=round(100.0 * (dept_kwh - site_kwh) / site_kwh, 2) if site_kwh else None,
            cost=_money(sum(d.cost for d in departments)),
            after_hours_kwh=_kwh(sum(d.after_hours_kwh for d in departments)),
        ),
        site_violations=site_violations,
        generated_at=now,
        source="live",
    )


def _kwh(x: float) -> float:
    return round(x, 3)


def _money(x: float) -> float:
    return round(x, 2)


async def room_kwh(store: Store, site: Site, start: datetime, end: datetime) -> dict[str, float]:
    """kWh per room in [start, end) from its devices' `power` rollups (0 without rollups)."""
    by_device = await store.rollup_kwh_by_device("power", start, end)
    return {room.id: sum(by_device.get(d, 0.0) for d in room.devices) for room in site.rooms}


async def _violations(
    store: Store, site: Site, start: datetime, end: datetime
) -> tuple[dict[str, dict[str, int]], dict[str, int]]:
    """Alarm lifecycles raised in [start, end): per department and type, and the site's own."""
    rooms = {r.id: r for r in site.rooms}
    per_department: dict[str, dict[str, int]] = {}
    site_level: dict[str, int] = {}
    offset = 0
    while True:
        page = await store.list_alarms(limit=_ALARM_PAGE, offset=offset)  # newest first
        for a in page:
            if not start <= a.raised_at < end:
                continue
            room = rooms.get(a.subject) or site.room_of(a.subject)
            counts = site_level if room is None else per_department.setdefault(room.department, {})
            counts[a.type] = counts.get(a.type, 0) + 1
        if len(page) < _ALARM_PAGE or page[-1].raised_at < start:
            break
        offset += _ALARM_PAGE
    return per_department, site_level


async def generate_report(store: Store, site: Site, month: str, *, now: datetime) -> EnergyReport:
    """Compute a month's report and store it: each department's row and the whole report."""
    report = await build_report(store, site, month, now=now)
    for dept in report.departments:
        await store.save_report(month, dept.department, dept.model_dump(mode="json"), at=now)
    await store.save_report(month, SITE_ROW, report.model_dump(mode="json"), at=now)
    return report


async def energy_report(store: Store, site: Site, month: str, *, now: datetime) -> EnergyReport:
    """The stored report of a month generated after it ended, else one computed now."""
    _, end = month_bounds(month, site.site.tz)
    body = await store.load_report(month, SITE_ROW)
    if body is not None:
        try:
            stored = EnergyReport.model_validate(body)
        except ValidationError:
            stored = None  # written by another version; compute afresh
        if stored is not None and stored.generated_at >= end:
            return stored.model_copy(update={"source": "stored"})
    return await build_report(store, site, month, now=now)


# -- rendering ------------------------------------------------------------------------------------


def _columns(report: EnergyReport) -> list[str]:
    cur = report.currency or "cost"
    bands = [f"{b}_kwh" for b in report.bands] + [f"{b}_{cur}" for b in report.bands]
    alarms = [f"violations_{t.value}" for t in DEPARTMENT_ALARMS]
    return [
        "department",
        "name",
        "kwh",
        *bands,
        f"cost_{cur}",
        "after_hours_kwh",
        "previous_kwh",
        "change_pct",
        "top_rooms",
        *alarms,
    ]


def _department_cells(report: EnergyReport, d: DepartmentEnergy, top_rooms: str) -> list[Any]:
    """A department's figures after its name, in the order of the CSV's and the sheet's columns."""
    return [
        d.kwh,
        *(d.bands[b].kwh if b in d.bands else 0.0 for b in report.bands),
        *(d.bands[b].cost if b in d.bands else 0.0 for b in report.bands),
        d.cost,
        d.after_hours_kwh,
        d.previous_kwh,
        d.change_pct,
        top_rooms,
        *(d.violations.get(t.value, 0) for t in DEPARTMENT_ALARMS),
    ]


def _rows(report: EnergyReport) -> list[list[Any]]:
    out: list[list[Any]] = []
    for d in report.departments:
        top_rooms = "; ".join(f"{r.room} {r.kwh:g}" for r in d.top_rooms)
        out.append([d.department, d.name, *_department_cells(report, d, top_rooms)])
    return out


def report_csv(report: EnergyReport) -> str:
    """One row per department, then the department total and the site meters."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    columns = _columns(report)
    w.writerow(columns)
    for row in _rows(report):
        w.writerow(["" if v is None else v for v in row])
    t = report.totals
    blank = [""] * (len(columns) - 3)
    w.writerow(["TOTAL", "departments", t.departments_kwh, *blank])
    w.writerow(["SITE", "site meters", t.site_meters_kwh, *blank])
    return buf.getvalue()


def _width(text: str) -> int:
    """Display width in a terminal: East Asian wide characters take two columns."""
    return sum(2 if unicodedata.east_asian_width(c) in ("W", "F") else 1 for c in text)


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.1f}"
    return str(v)


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    cells = [[_cell(v) for v in r] for r in rows]
    widths = [max([_width(h)] + [_width(r[i]) for r in cells]) for i, h in enumerate(header)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v + " " * (w - _width(v)) for v, w in zip(values, widths, strict=True)).rstrip()

    return [line(header), line(["-" * w for w in widths]), *(line(r) for r in cells)]


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    """Lines of a text table for a terminal (East Asian wide characters take two columns)."""
    return _table(header, rows)


def _money_cell(v: float) -> str:
    return f"{v:,.2f}"


def report_table(report: EnergyReport) -> str:
    """The report as a text table for a terminal: the CSV's kWh and cost per band, total cost, after-hours
    kWh, the change against the previous month, top rooms and violations (one column each)."""
    cur = report.currency
    header = [
        "department",
        "name",
        "kWh",
        *(f"{b} kWh" for b in report.bands),
        *(f"{b} {cur or 'cost'}" for b in report.bands),
        f"cost {cur}".strip(),
        "after-hours kWh",
        "vs prev %",
        "top rooms",
        "violations",
    ]
    rows = []
    for d in report.departments:
        rows.append(
            [
                d.department,
                d.name,
                d.kwh,
                *(d.bands[b].kwh if b in d.bands else 0.0 for b in report.bands),
                *(_money_cell(d.bands[b].cost if b in d.bands else 0.0) for b in report.bands),
                _money_cell(d.cost),
                d.after_hours_kwh,
                d.change_pct,
                ", ".join(r.room for r in d.top_rooms) or "-",
                ", ".join(f"{k} {n}" for k, n in sorted(d.violations.items())) or "-",
            ]
        )
    t = report.totals
    diff = "-" if t.difference_pct is None else f"{t.difference_pct:+.2f} %"
    when = f"{report.generated_at:%Y-%m-%d %H:%M} UTC"
    lines = [f"{report.site} energy {report.month} by department ({report.source}, {when})"]
    lines += _table(header, rows)
    lines.append("")
    lines.append(f"departments {t.departments_kwh:,.1f} kWh, {t.cost:,.2f} {cur}")
    lines.append(f"after hours {t.after_hours_kwh:,.1f} kWh")
    lines.append(f"site meters {t.site_meters_kwh:,.1f} kWh; departments vs site meters {diff}")
    if report.site_violations:
        lines.append("site alarms: " + ", ".join(f"{k} {n}" for k, n in sorted(report.site_violations.items())))
    return "\n".join(lines)


# -- for people: CSV with a BOM and Chinese headers, xlsx -------------------------------------------


def energy_sheets(report: EnergyReport, lang: Lang) -> list[Sheet]:
    """The month as a table per department (names, not ids) for Excel/WPS: kWh and 元 per band."""
    zh = lang == "zh"

    def band(b: str) -> str:
        return BAND_NAMES_ZH.get(b, b) if zh else b

    sheet = Sheet(
        f"{report.month} 各部门用电",
        f"Energy by department {report.month}",
        [
            Column("部门", "department"),
            Column("电量 kWh", "kWh", "kwh"),
            *(Column(f"{band(b)}时段 kWh", f"{b} kWh", "kwh") for b in report.bands),
            *(Column(f"{band(b)}时段电费 元", f"{b} cost", "money") for b in report.bands),
            Column("电费 元", "cost", "money"),
            Column("非工作时间 kWh", "after-hours kWh", "kwh"),
            Column("上月 kWh", "previous month kWh", "kwh"),
            Column("环比 %", "change %", "pct"),
            Column("用电最多的房间", "top rooms"),
            *(Column(name_of(TYPE_NAMES, t.value, "zh"), f"violations {t.value}", "count") for t in DEPARTMENT_ALARMS),
        ],
    )
    for d in report.departments:
        top_rooms = "、".join(f"{r.name} {r.kwh:g} kWh" for r in d.top_rooms)
        sheet.rows.append([d.name, *_department_cells(report, d, top_rooms)])
    t = report.totals
    blank: list[Any] = [None] * (len(sheet.columns) - 2)
    sheet.rows.append(["各部门合计" if zh else "departments total", t.departments_kwh, *blank])
    sheet.rows.append(["全站进线电表" if zh else "site meters", t.site_meters_kwh, *blank])
    return [sheet]
