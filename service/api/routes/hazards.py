"""The hazard register (隐患): operators report and update, admins close, viewers read; all audited.

- `POST /api/hazards` `{title, location, department, severity, due, source_alarm?}` -> 201
- `GET /api/hazards?status=open|overdue|closed` (`open`: not yet closed, rectifying included)
- `PATCH /api/hazards/{id}` `{status: rectifying|closed, rectification}`; closing needs admin
- `GET /api/hazards/from-alarm/{alarm_id}`: a hazard prefilled from a supply or safety alarm
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import date, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Query, status
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from service.alarms.hazards import MOVES, HazardSeverity, due_time, is_overdue
from service.api.deps import RANK, Operator, ServicesDep, Viewer
from service.config.site import VIOLATION_TYPES, Site
from service.store.db import Hazard

router = APIRouter(prefix="/api/hazards", tags=["hazards"])

# Alarm types that are energy waste, not hazards: an office violation is fined, not rectified.
NOT_HAZARDS: frozenset[str] = frozenset(VIOLATION_TYPES)


def _due(value: object) -> object:
    # A bare date is a day (its end, site time); anything longer must be a full ISO 8601 time.
    if isinstance(value, str):
        text = value.strip()
        try:
            return date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"'{text[:40]}' is not an ISO 8601 date or time, e.g. 2026-12-31") from None
    return value


Due = Annotated[datetime | date, BeforeValidator(_due)]


class HazardIn(BaseModel):
    """A hazard as reported."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=500)
    location: str = Field("", max_length=500)
    department: str = Field(min_length=1, max_length=64, description="a department id of the site")
    severity: HazardSeverity = "warning"
    due: Due = Field(description="ISO 8601; a date alone is the end of that day, site time")
    source_alarm: str | None = Field(None, max_length=200, description="the alarm it was reported from")


class HazardPatch(BaseModel):
    """A move in the hazard's life."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["rectifying", "closed"]
    rectification: str | None = Field(None, max_length=5000, description="what was done; required to close")


class HazardOut(BaseModel):
    """A hazard in the register."""

    id: int
    title: str
    location: str
    department: str
    department_name: str
    severity: str
    due: datetime
    status: str
    overdue: bool
    rectification: str
    source_alarm: str | None
    created_by: str
    created_at: datetime
    updated_at: datetime
    closed_by: str | None
    closed_at: datetime | None


def hazard_out(site: Site, h: Hazard, now: datetime) -> HazardOut:
    """The API form of a stored hazard, times in site time."""
    names = {d.id: d.name for d in site.departments}
    tz = site.site.tz
    fields = {k: v.astimezone(tz) if isinstance(v, datetime) else v for k, v in asdict(h).items()}
    return HazardOut(**fields, department_name=names.get(h.department, h.department), overdue=is_overdue(h, now))


def _unprocessable(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail)


@router.post("", response_model=HazardOut, status_code=status.HTTP_201_CREATED, summary="Report a hazard")
async def create(svc: ServicesDep, who: Operator, body: HazardIn) -> HazardOut:
    """Open a hazard; 422 naming the field for an unknown department or a `due` not after now."""
    site = svc.site
    if not any(d.id == body.department for d in site.departments):
        known = ", ".join(d.id for d in site.departments)
        raise _unprocessable(f"department: unknown department '{body.department}' (known: {known})")
    now = svc.clock.now()
    due = due_time(body.due, site)
    if due <= now:
        reported = now.astimezone(site.site.tz).isoformat(timespec="seconds")
        raise _unprocessable(f"due: {due.isoformat()} is not after the hazard is reported ({reported})")
    if body.source_alarm is not None and await svc.store.get_alarm(body.source_alarm) is None:
        raise _unprocessable(f"source_alarm: no alarm '{body.source_alarm}'")
    hazard = await svc.store.add_hazard(
        title=body.title,
        location=body.location,
        department=body.department,
        severity=body.severity,
        due=due,
        source_alarm=body.source_alarm,
        created_by=who.who,
        created_at=now,
    )
    await svc.store.append_audit(
        at=now,
        who=who.who,
        new={"hazard": hazard.id, "title": hazard.title, "department": hazard.department, "due": due.isoformat()},
        result="hazard_opened",
        detail=f"hazard {hazard.id} '{hazard.title}' ({hazard.severity}) due {due.isoformat()}",
    )
    await svc.hazards.check()
    return hazard_out(site, hazard, now)


@router.get("", response_model=list[HazardOut], summary="The hazard register")
async def list_hazards(
    svc: ServicesDep,
    _: Viewer,
    status_: Annotated[
        Literal["open", "overdue", "closed"] | None,
        Query(alias="status", description="open (not closed), overdue (not closed, past due), closed"),
    ] = None,
) -> list[HazardOut]:
    """Hazards oldest first, optionally only open, overdue or closed ones."""
    now = svc.clock.now()
    if status_ == "closed":
        found = await svc.store.list_hazards(statuses=("closed",))
    elif status_ == "overdue":
        found = await svc.store.list_hazards(statuses=("open", "rectifying"), due_by=now)
    elif status_ == "open":
        found = await svc.store.list_hazards(statuses=("open", "rectifying"))
    else:
        found = await svc.store.list_hazards()
    return [hazard_out(svc.site, h, now) for h in found]


@router.get("/from-alarm/{alarm_id}", response_model=HazardIn, summary="A hazard prefilled from an alarm")
async def from_alarm(svc: ServicesDep, _: Operator, alarm_id: Annotated[str, Path(max_length=200)]) -> HazardIn:
    """Title, location, department, severity and a due date from a supply, safety or equipment alarm
    (not stored; an office violation is refused)."""
    alarm = await svc.store.get_alarm(alarm_id)
    if alarm is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no alarm '{alarm_id}'")
    if alarm.type in NOT_HAZARDS:
        raise _unprocessable(f"alarm_id: a {alarm.type} alarm is an office violation, not a hazard")
    return prefill(svc.site, alarm.type, alarm.subject, alarm.severity, alarm.message, alarm.id, svc.clock.now())


def prefill(site: Site, kind: str, subject: str, severity: str, message: str, alarm_id: str, now: datetime) -> HazardIn:
    """A hazard from an alarm: its room's department (else the first department), due in 7 days (3 if urgent)."""
    room = next((r for r in site.rooms if r.id == subject), None) or site.room_of(subject)
    department = room.department if room is not None else (site.departments[0].id if site.departments else "")
    location = room.name if room is not None else subject
    sev: HazardSeverity = "warning"
    for known in ("critical", "high", "warning", "low"):
        if severity == known:
            sev = known
    days = 3 if sev in ("critical", "high") else 7
    due = (now.astimezone(site.site.tz)).date()
    return HazardIn(
        title=f"{kind}: {message}"[:500] if message else kind,
        location=location,
        department=department,
        severity=sev,
        due=date.fromordinal(due.toordinal() + days),
        source_alarm=alarm_id,
    )


@router.patch("/{hazard_id}", response_model=HazardOut, summary="Rectifying or closed (closing needs admin)")
async def update(
    svc: ServicesDep, who: Operator, hazard_id: Annotated[int, Path(ge=1)], body: HazardPatch
) -> HazardOut:
    """Move a hazard on; closing needs the admin role and the rectification text."""
    if body.status == "closed" and RANK[who.role] < RANK["admin"]:
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"closing a hazard needs the admin role; your key is {who.role}")
    hazard = await svc.store.get_hazard(hazard_id)
    if hazard is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no hazard {hazard_id}")
    if body.status not in MOVES[hazard.status]:
        raise HTTPException(status.HTTP_409_CONFLICT, f"status: hazard {hazard_id} is {hazard.status}")
    text = body.rectification if body.rectification is not None else None
    if body.status == "closed" and not (text or hazard.rectification).strip():
        raise _unprocessable("rectification: say what was done to close the hazard")
    now = svc.clock.now()
    updated = await svc.store.update_hazard(hazard_id, status=body.status, rectification=text, who=who.who, at=now)
    if updated is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no hazard {hazard_id}")
    await svc.store.append_audit(
        at=now,
        who=who.who,
        old={"hazard": hazard_id, "status": hazard.status},
        new={"hazard": hazard_id, "status": updated.status, "rectification": updated.rectification},
        result=f"hazard_{updated.status}",
        detail=f"hazard {hazard_id} '{hazard.title}': {hazard.status} -> {updated.status}",
    )
    await svc.hazards.check()
    return hazard_out(svc.site, updated, now)
