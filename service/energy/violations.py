"""Violations and fines per department, for the administration office (行政部).

A violation is charged to the department of the room it happened in:

- one alarm lifecycle of an office rule (a type in `VIOLATION_TYPES`), its subject a room or a
  device in one, counted from its raise; a lifecycle left unacknowledged that clears and is raised
  again counts again (the journal says when); id `alarm:<alarm id>@<raise time, UTC>`;
- a room an after-hours sweep found on — a device in it switched off, or failing to — recorded
  once per room and night as `left_on_after_hours`; id `sweep:<room>:<night>`. A room left on
  because it is occupied or held by an override is not a violation.

`penalties` in the site file prices each type. A priced violation's fine is *proposed* until the
administration office confirms it (at the proposed amount or another) or waives it, saying who and
why; only confirmed fines count. Each decision is audited. The night of a sweep is the site-local
date on which the evening began: a sweep at 01:30 belongs to the night before.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Final, Literal

from pydantic import BaseModel, Field

from service.alarms.record import Alarm
from service.config.site import VIOLATION_TYPES, Room, Site
from service.energy.exports import FINE_STATUS_NAMES, TYPE_NAMES, Column, Lang, Sheet, name_of
from service.energy.reports import table
from service.store.db import AfterHoursFinding, FineDecision, Store, StoredTransition, month_bounds

SWEEP_TYPE: Final = "left_on_after_hours"
ALARM_TYPES: Final = tuple(t for t in VIOLATION_TYPES if t != SWEEP_TYPE)
NIGHT_STARTS: Final = timedelta(hours=12)  # a night runs from noon to noon, site time
FineStatus = Literal["none", "proposed", "confirmed", "waived"]


def night_of(at: datetime, site: Site) -> str:
    """The night a moment belongs to: the site-local date on which that evening began (noon to noon)."""
    return (at.astimezone(site.site.tz) - NIGHT_STARTS).date().isoformat()


class Incident(BaseModel):
    """One violation: when, where, what, for how long, the evidence, and its fine."""

    id: str
    type: str
    department: str
    room: str
    room_name: str
    at: datetime
    cleared_at: datetime | None
    duration_s: float | None = Field(description="from raised to cleared; null while still active")
    evidence: str = Field(description="the readings that raised it")
    fine: float = Field(description="proposed, confirmed or waived amount; 0 when the type has no price")
    fine_status: FineStatus
    decided_by: str | None = None
    decided_at: datetime | None = None
    reason: str | None = None


class Fines(BaseModel):
    """Fine amounts by status, and how many violations are in each."""

    proposed: float = 0.0
    confirmed: float = 0.0
    waived: float = 0.0
    proposed_count: int = 0
    confirmed_count: int = 0
    waived_count: int = 0

    def add(self, incident: Incident) -> None:
        """Count one incident's fine under its status."""
        if incident.fine_status == "proposed":
            self.proposed = round(self.proposed + incident.fine, 2)
            self.proposed_count += 1
        elif incident.fine_status == "confirmed":
            self.confirmed = round(self.confirmed + incident.fine, 2)
            self.confirmed_count += 1
        elif incident.fine_status == "waived":
            self.waived = round(self.waived + incident.fine, 2)
            self.waived_count += 1


class DepartmentViolations(BaseModel):
    """One department's violations in the period."""

    department: str
    name: str
    counts: dict[str, int]
    total: int
    fines: Fines
    incidents: list[Incident]


class ViolationsReport(BaseModel):
    """GET /api/reports/violations: per department counts per type, fines and incidents."""

    site: str
    period: str
    start: datetime
    end: datetime
    currency: str
    types: list[str]
    penalties: dict[str, float]
    departments: list[DepartmentViolations]
    counts: dict[str, int]
    total: int
    fines: Fines
    generated_at: datetime


def _room_of(site: Site, rooms: Mapping[str, Room], subject: str) -> Room | None:
    return rooms.get(subject) or site.room_of(subject)


def _duration(raised: datetime, cleared: datetime | None) -> float | None:
    return None if cleared is None else round((cleared - raised).total_seconds(), 1)


def _fine(
    site: Site, kind: str, decision: FineDecision | None
) -> tuple[float, FineStatus, str | None, datetime | None, str | None]:
    if decision is not None and decision.status in ("confirmed", "waived"):
        status: FineStatus = "confirmed" if decision.status == "confirmed" else "waived"
        return decision.amount, status, decision.decided_by, decision.decided_at, decision.reason
    price = site.penalties.get(kind)
    return (0.0, "none", None, None, None) if price is None else (float(price), "proposed", None, None, None)


def _evidence_of_alarm(alarm: Alarm, raised_value: object) -> str:
    value = alarm.value if raised_value is None else raised_value
    shown = "" if value is None else f" (value at raise: {value})"
    return f"{alarm.message}{shown}"


def _evidence_of_sweep(finding: AfterHoursFinding) -> str:
    devices = finding.devices if isinstance(finding.devices, list) else []
    parts = []
    for d in devices:
        if isinstance(d, dict):
            outcome = "switched off" if d.get("action") == "switched_off" else "did not switch off"
            parts.append(f"{d.get('device')} on, {outcome}")
    return f"sweep {finding.job}: " + "; ".join(parts)


_ACTIVE: Final = frozenset({"active_unacked", "active_acked"})
_CLEARED: Final = frozenset({"cleared_unacked", "cleared"})


def raises(alarm: Alarm, journal: Sequence[StoredTransition]) -> list[tuple[datetime, datetime | None, object]]:
    """Each time an alarm lifecycle became active — (raised, cleared or None, value at raise) — from its
    journal: an unacknowledged lifecycle that clears and comes back is raised again. Without a journal,
    the alarm's own raise."""
    out: list[tuple[datetime, datetime | None, object]] = []
    active = False
    for t in journal:
        became = (t.to_state in _ACTIVE and t.from_state not in _ACTIVE) or t.note == "active while shelved"
        ended = (t.to_state in _CLEARED and t.from_state in _ACTIVE) or t.note == "returned to normal while shelved"
        if became and not active:
            out.append((t.at, None, t.value))
            active = True
        elif ended and active:
            out[-1] = (out[-1][0], t.at, out[-1][2])
            active = False
    if not out:
        out.append((alarm.raised_at, alarm.cleared_at, alarm.value))
    return out


async def incidents(store: Store, site: Site, start: datetime, end: datetime) -> list[Incident]:
    """Every violation in [start, end) with its fine, oldest first."""
    rooms = {r.id: r for r in site.rooms}
    found: list[tuple[str, str, Room, datetime, datetime | None, str]] = []
    for a in await store.alarms_touched(ALARM_TYPES, start, end):
        room = _room_of(site, rooms, a.subject)
        if room is None:
            continue
        for raised, cleared, value in raises(a, await store.journal(a.id)):
            if start <= raised < end:
                ident = f"alarm:{a.id}@{raised.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}"
                found.append((ident, a.type, room, raised, cleared, _evidence_of_alarm(a, value)))
    for f in await store.after_hours_findings(start, end):
        room = rooms.get(f.room)
        if room is None:
            continue  # a room since removed from the site file
        found.append((f"sweep:{f.room}:{f.night}", SWEEP_TYPE, room, f.at, None, _evidence_of_sweep(f)))
    decisions = await store.fine_decisions([x[0] for x in found])
    out = []
    for ident, kind, room, at, cleared, evidence in found:
        fine, status, by, when, why = _fine(site, kind, decisions.get(ident))
        out.append(
            Incident(
                id=ident,
                type=kind,
                department=room.department,
                room=room.id,
                room_name=room.name,
                at=at,
                cleared_at=cleared,
                duration_s=_duration(at, cleared) if kind != SWEEP_TYPE else None,
                evidence=evidence,
                fine=fine,
                fine_status=status,
                decided_by=by,
                decided_at=when,
                reason=why,
            )
        )
    out.sort(key=lambda i: (i.at, i.id))
    return out


def summarise(
    site: Site, period: str, start: datetime, end: datetime, found: Sequence[Incident], *, now: datetime
) -> ViolationsReport:
    """Group incidents per department (every department of the site, in site-file order)."""
    departments = []
    total_counts: dict[str, int] = {}
    total_fines = Fines()
    for dept in site.departments:
        mine = [i for i in found if i.department == dept.id]
        counts: dict[str, int] = {}
        fines = Fines()
        for i in mine:
            counts[i.type] = counts.get(i.type, 0) + 1
            total_counts[i.type] = total_counts.get(i.type, 0) + 1
            fines.add(i)
            total_fines.add(i)
        departments.append(
            DepartmentViolations(
                department=dept.id,
                name=dept.name,
                counts={t: counts[t] for t in VIOLATION_TYPES if t in counts},
                total=len(mine),
                fines=fines,
                incidents=mine,
            )
        )
    return ViolationsReport(
        site=site.site.id,
        period=period,
        start=start,
        end=end,
        currency=site.tariff.currency if site.tariff else "CNY",
        types=list(VIOLATION_TYPES),
        penalties=dict(site.penalties),
        departments=departments,
        counts={t: total_counts[t] for t in VIOLATION_TYPES if t in total_counts},
        total=sum(d.total for d in departments),
        fines=total_fines,
        generated_at=now,
    )


async def violations_report(store: Store, site: Site, month: str, *, now: datetime) -> ViolationsReport:
    """A month's violations (ValueError for a bad month)."""
    start, end = month_bounds(month, site.site.tz)
    return summarise(site, month, start, end, await incidents(store, site, start, end), now=now)


async def find_violation(store: Store, site: Site, violation: str) -> tuple[str, Room] | None:
    """The type and room of a violation id, or None when there is no such violation."""
    rooms = {r.id: r for r in site.rooms}
    kind, _, rest = violation.partition(":")
    if kind == "alarm":
        alarm_id, _, stamp = rest.rpartition("@")
        alarm = await store.get_alarm(alarm_id)
        if alarm is None or alarm.type not in ALARM_TYPES:
            return None
        room = _room_of(site, rooms, alarm.subject)
        stamps = {r[0].astimezone(UTC).strftime("%Y%m%dT%H%M%SZ") for r in raises(alarm, await store.journal(alarm.id))}
        return None if room is None or stamp not in stamps else (alarm.type, room)
    if kind == "sweep":
        room_id, _, night = rest.rpartition(":")
        room = rooms.get(room_id)
        if room is None:
            return None
        try:
            day = datetime.fromisoformat(night).replace(tzinfo=site.site.tz)
        except ValueError:
            return None
        window = await store.after_hours_findings(day - timedelta(days=1), day + timedelta(days=3))
        if any(f.room == room_id and f.night == night for f in window):
            return SWEEP_TYPE, room
    return None


# -- rendering ------------------------------------------------------------------------------------


def fines_sheet(
    title_zh: str, title_en: str, types: Sequence[str], rows: Iterable[tuple[str, Mapping[str, int], int, Fines]]
) -> Sheet:
    """Violations per type and fines by status, a row per (name, counts by type, total, fines): the
    monthly report's and the quarterly summary's table for the administration office."""
    sheet = Sheet(
        title_zh,
        title_en,
        [
            Column("部门", "department"),
            *(Column(name_of(TYPE_NAMES, t, "zh"), t, "count") for t in types),
            Column("违规合计", "violations", "count"),
            Column("待确认罚款", "fines proposed", "money"),
            Column("已确认罚款", "fines confirmed", "money"),
            Column("已免除罚款", "fines waived", "money"),
        ],
    )
    for name, counts, total, f in rows:
        sheet.rows.append([name, *(counts.get(t, 0) for t in types), total, f.proposed, f.confirmed, f.waived])
    return sheet


def sheets(report: ViolationsReport, lang: Lang) -> list[Sheet]:
    """The report as two tables: departments (counts per type, fines) and every incident."""
    total = ("合计" if lang == "zh" else "total", report.counts, report.total, report.fines)
    summary = fines_sheet(
        "各部门违规与罚款",
        "Violations and fines by department",
        report.types,
        [*((d.name, d.counts, d.total, d.fines) for d in report.departments), total],
    )
    detail = Sheet(
        "违规明细",
        "Incidents",
        [
            Column("时间", "time", "time"),
            Column("部门", "department"),
            Column("房间", "room"),
            Column("违规类型", "type"),
            Column("持续分钟", "minutes", "pct"),
            Column("证据", "evidence"),
            Column("罚款", "fine", "money"),
            Column("罚款状态", "fine status"),
            Column("处理人", "decided by"),
            Column("理由", "reason"),
            Column("编号", "id"),
        ],
    )
    names = {d.department: d.name for d in report.departments}
    for d in report.departments:
        for i in d.incidents:
            detail.rows.append(
                [
                    i.at,
                    names.get(i.department, i.department),
                    i.room_name,
                    name_of(TYPE_NAMES, i.type, lang),
                    None if i.duration_s is None else round(i.duration_s / 60.0, 1),
                    i.evidence,
                    i.fine,
                    name_of(FINE_STATUS_NAMES, i.fine_status, lang),
                    i.decided_by,
                    i.reason,
                    i.id,
                ]
            )
    detail.rows.sort(key=lambda r: (r[0], r[-1]))
    return [summary, detail]


MACHINE_COLUMNS: Final = (
    "id",
    "type",
    "department",
    "room",
    "at",
    "cleared_at",
    "duration_s",
    "fine",
    "fine_status",
    "decided_by",
    "reason",
    "evidence",
)


def machine_csv(report: ViolationsReport) -> str:
    """One incident per row with ids and ISO 8601 times (for programs)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(MACHINE_COLUMNS)
    for d in report.departments:
        for i in d.incidents:
            w.writerow(
                [
                    i.id,
                    i.type,
                    i.department,
                    i.room,
                    i.at.isoformat(),
                    "" if i.cleared_at is None else i.cleared_at.isoformat(),
                    "" if i.duration_s is None else i.duration_s,
                    i.fine,
                    i.fine_status,
                    i.decided_by or "",
                    i.reason or "",
                    i.evidence,
                ]
            )
    return buf.getvalue()


def text_table(report: ViolationsReport, site: Site) -> str:
    """The report for a terminal: departments with counts and fines, then the incidents."""
    tz = site.site.tz
    cur = report.currency
    header = ["department", "name", *report.types, "total", f"proposed {cur}", f"confirmed {cur}", f"waived {cur}"]
    rows = [
        [d.department, d.name, *(d.counts.get(t, 0) for t in report.types), d.total,
         f"{d.fines.proposed:,.2f}", f"{d.fines.confirmed:,.2f}", f"{d.fines.waived:,.2f}"]
        for d in report.departments
    ]  # fmt: skip
    lines = [f"{report.site} violations {report.period}"]
    lines += table(header, rows)
    lines.append("")
    f = report.fines
    lines.append(
        f"{report.total} violations; fines proposed {f.proposed:,.2f} {cur} ({f.proposed_count}), "
        f"confirmed {f.confirmed:,.2f} {cur} ({f.confirmed_count}), waived {f.waived:,.2f} {cur} ({f.waived_count})"
    )
    incident_rows = [
        [i.at.astimezone(tz).strftime("%Y-%m-%d %H:%M"), i.room_name, i.type,
         "-" if i.duration_s is None else f"{i.duration_s / 60:.0f} min", f"{i.fine:,.2f}", i.fine_status, i.id]
        for d in report.departments
        for i in d.incidents
    ]  # fmt: skip
    if incident_rows:
        lines.append("")
        lines += table(["time", "room", "type", "duration", "fine", "status", "id"], sorted(incident_rows))
    return "\n".join(lines)
