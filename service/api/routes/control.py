"""Control: schedules (list, run, policy), room overrides, device commands.

HTTP statuses of `POST /api/devices/{id}/commands` (the body is always `{status, observed, ...}`
once the command is understood):

- 200 `confirmed`, or `failed` (sent, but the device did not report the new value in time);
- 403 `refused` by the allow-list (role critical or life_safety, a server room, a read-only point),
  or a command to supply-side equipment (generator controllers, transfer switches, any device a
  `sources`/`generators`/`transfer_switches` entry names) from a key below admin;
- 409 `refused` by the drivers (not running, or the driver's own check);
- 404 unknown device; 422 unknown command, a value the point does not take, or a command to
  supply-side equipment without a `reason` (the audit keeps the reason).

`command` is a writable point of the device's profile (`on`, `system_mode`, `cooling_setpoint`,
`heating_setpoint`, `control_key`) or an alias: `switch`/`state`/`power_state` -> `on`,
`mode` -> `system_mode`, `setpoint` -> `cooling_setpoint`, `key` -> `control_key`. `on` takes
true/false or "on"/"off"; `control_key` a key name (stop, auto, manual, start, reset_alarms) or
its number.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Body, HTTPException, Path, Query, Response, status
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

from service.api.deps import Admin, Operator, PageLimit, PageOffset, ServicesDep, Viewer, paged
from service.api.models import RunOut, ScheduleOut, SchedulePatchOut, ScheduleRun
from service.control.path import InvalidCommand, OccupiedPolicy, UnknownDevice
from service.control.scheduler import SWEEP_ID, UnknownSchedule
from service.store.db import Override

router = APIRouter(prefix="/api", tags=["control"])

ScheduleId = Annotated[str, Path(max_length=64, description="schedule id, e.g. after-hours")]
DeviceId = Annotated[str, Path(max_length=64, description="device id of the site file")]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RunIn(_In):
    """Options of a manual run."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"month": "2026-10"}, {}]})

    month: str | None = Field(
        None, pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="monthly-report only: the month (default: last month)"
    )


class SchedulePatch(_In):
    """Settings of the after-hours sweep."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"occupied_rooms": "notify_then_off"}]})

    occupied_rooms: OccupiedPolicy = Field(
        description="skip: leave occupied rooms on; notify_then_off: warn, switch off at the next sweep"
    )


class OverrideIn(_In):
    """Hold a room on after hours ("working late")."""

    room: str = Field(max_length=64, examples=["r2119"])
    until: datetime = Field(description="timezone-aware end; capped at override_max_h from now")
    reason: str = Field("", max_length=500, examples=["board meeting runs late"])


@dataclass(frozen=True, slots=True, kw_only=True)
class OverrideOut(Override):
    """A room override."""

    __pydantic_config__ = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 17,
                    "room": "r2119",
                    "until": "2026-11-29T20:00:00+08:00",
                    "reason": "board meeting runs late",
                    "created_by": "key:3f9c2a7d51e04b68",
                    "created_at": "2026-11-29T18:10:00+08:00",
                    "ended_at": "2026-11-29T19:20:00+08:00",
                    "active": False,
                }
            ]
        }
    )

    active: bool
    requested_until: datetime | None = None
    capped: bool | None = None


class CommandIn(_In):
    """A command for one device point."""

    command: str = Field(max_length=64, examples=["on"])
    value: StrictBool | StrictInt | StrictFloat | StrictStr = Field(examples=[False])
    reason: str | None = Field(
        None, max_length=500, description="why; required for supply-side equipment", examples=["monthly test run"]
    )


class CommandOut(BaseModel):
    """The outcome of a command: `status` and the value the device reported (`observed`)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "status": "confirmed",
                    "observed": False,
                    "device": "r2119-light",
                    "point": "on",
                    "requested": False,
                    "old": True,
                    "detail": "",
                    "at": "2026-11-29T18:41:07+08:00",
                },
                {
                    "status": "refused",
                    "observed": True,
                    "device": "srv1-ups",
                    "point": "on",
                    "requested": False,
                    "old": True,
                    "detail": "role critical: never commanded",
                    "at": "2026-11-29T18:41:09+08:00",
                },
            ]
        }
    )

    status: Literal["confirmed", "failed", "refused"]
    observed: bool | int | float | str | None
    device: str
    point: str
    requested: bool | int | float | str | None
    old: bool | int | float | str | None
    detail: str
    at: datetime


# -- schedules ------------------------------------------------------------------------------------


TOTAL_COUNT: Final = paged("a page; X-Total-Count holds the number of items in all pages", "items in all pages")


@router.get(
    "/schedules",
    response_model=list[ScheduleOut],
    response_model_exclude_unset=True,
    summary="Schedules: sweeps, reports, retention",
)
async def schedules(svc: ServicesDep, _: Viewer) -> list[dict[str, Any]]:
    """Every schedule with its trigger, next run and last run; `after-hours` always exists."""
    return await svc.scheduler.schedules()


@router.get(
    "/schedules/{schedule_id}/history",
    response_model=list[ScheduleRun],
    response_model_exclude_unset=True,
    summary="Latest runs of a schedule",
    responses=TOTAL_COUNT,
)
async def history(
    schedule_id: ScheduleId,
    svc: ServicesDep,
    _: Viewer,
    response: Response,
    limit: PageLimit = 100,
    offset: PageOffset = 0,
) -> list[dict[str, Any]]:
    """The latest runs (scheduled and manual; the last 50 are kept), newest first."""
    scheduler = svc.scheduler
    if schedule_id not in scheduler.schedule_ids():
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no schedule '{schedule_id}'")
    runs = list(reversed(await scheduler.history(schedule_id)))
    response.headers["X-Total-Count"] = str(len(runs))
    return runs[offset : offset + limit]


@router.post(
    "/schedules/{schedule_id}/run",
    response_model=RunOut,
    response_model_exclude_unset=True,
    summary="Run a schedule now",
)
async def run(
    schedule_id: ScheduleId, svc: ServicesDep, who: Operator, body: Annotated[RunIn | None, Body()] = None
) -> dict[str, Any]:
    """Run now. A sweep returns what it did per device: `{device, room, action, observed, detail}`."""
    try:
        return await svc.scheduler.run_now(schedule_id, who=who.who, month=body.month if body else None)
    except UnknownSchedule as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None


@router.patch(
    "/schedules/{schedule_id}",
    response_model=SchedulePatchOut,
    response_model_exclude_unset=True,
    summary="Change the after-hours sweep's occupied-room policy",
)
async def patch_schedule(schedule_id: ScheduleId, body: SchedulePatch, svc: ServicesDep, who: Admin) -> dict[str, Any]:
    """Set what the sweep does with occupied rooms (audited)."""
    if schedule_id != SWEEP_ID:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"only '{SWEEP_ID}' has settings")
    scheduler = svc.scheduler
    old = await scheduler.sweeper.policy(SWEEP_ID)
    await scheduler.sweeper.set_policy(SWEEP_ID, body.occupied_rooms)
    await svc.store.append_audit(
        at=svc.clock.now(),
        who=who.who,
        old={"occupied_rooms": old.value},
        new={"occupied_rooms": body.occupied_rooms.value},
        result="settings",
        detail=f"{SWEEP_ID}: occupied rooms {old.value} -> {body.occupied_rooms.value}",
    )
    return {"id": SWEEP_ID, "policy": {"occupied_rooms": body.occupied_rooms.value}}


# -- overrides ------------------------------------------------------------------------------------


def _override_out(o: Override, now: datetime) -> dict[str, Any]:
    return {**asdict(o), "active": o.ended_at is None and o.created_at <= now < o.until}


@router.post(
    "/overrides", response_model=OverrideOut, status_code=status.HTTP_201_CREATED, summary="Hold a room on after hours"
)
async def add_override(body: OverrideIn, svc: ServicesDep, who: Operator) -> dict[str, Any]:
    """Exempt a room from the after-hours sweeps until `until`, at most its override_max_h from now.

    Office alarms keep running in the room: an override is no permission to break an office rule."""
    if body.until.tzinfo is None or body.until.utcoffset() is None:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, "until: needs a time zone, e.g. 2026-11-30T20:00:00+08:00"
        )
    room = next((r for r in svc.site.rooms if r.id == body.room), None)
    if room is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no room '{body.room}'")
    now = svc.clock.now()
    if body.until <= now:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "until: must be in the future")
    limit = now + timedelta(hours=svc.site.thresholds_of(room).override_max_h)
    until = min(body.until, limit)
    override = await svc.store.add_override(
        room=body.room, until=until, reason=body.reason, created_by=who.who, created_at=now
    )
    await svc.store.append_audit(
        at=now,
        who=who.who,
        new={"room": body.room, "until": until.isoformat(), "reason": body.reason},
        result="override",
        detail=f"override {override.id} of {body.room}" + (" (capped at override_max_h)" if until < body.until else ""),
    )
    await svc.scheduler.refresh_overrides()
    out = {**_override_out(override, now), "requested_until": body.until, "capped": until < body.until}
    svc.events.publish("override", jsonable_encoder(out))
    return out


@router.get("/overrides", response_model=list[OverrideOut], summary="Room overrides", responses=TOTAL_COUNT)
async def list_overrides(
    svc: ServicesDep,
    _: Viewer,
    response: Response,
    active: Annotated[bool, Query(description="only those in force now")] = False,
    limit: PageLimit = 100,
    offset: PageOffset = 0,
) -> list[dict[str, Any]]:
    """Overrides newest first (`active=true`: only those in force now, soonest end first)."""
    now = svc.clock.now()
    if active:
        items = [_override_out(o, now) for o in await svc.store.active_overrides(now)]
        response.headers["X-Total-Count"] = str(len(items))
        return items[offset : offset + limit]
    response.headers["X-Total-Count"] = str(await svc.store.count_overrides())
    return [_override_out(o, now) for o in await svc.store.list_overrides(limit=limit, offset=offset)]


@router.delete("/overrides/{override_id}", status_code=status.HTTP_204_NO_CONTENT, summary="End an override early")
async def end_override(
    override_id: Annotated[int, Path(ge=1, le=2**63 - 1, description="override id")], svc: ServicesDep, who: Operator
) -> Response:
    """End a running override now; the next sweep treats the room as any other."""
    now = svc.clock.now()
    if not await svc.store.expire_override(override_id, now):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no running override {override_id}")
    await svc.store.append_audit(
        at=now,
        who=who.who,
        old={"override": override_id},
        result="override_ended",
        detail=f"override {override_id} ended early",
    )
    await svc.scheduler.refresh_overrides()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# -- device commands ------------------------------------------------------------------------------


@router.post(
    "/devices/{device_id}/commands",
    response_model=CommandOut,
    summary="Command a device point (verified by readback, audited)",
    responses={
        403: {"model": CommandOut, "description": "refused by the allow-list, or supply-side equipment without admin"},
        409: {"model": CommandOut, "description": "refused by the drivers"},
        404: {"description": "unknown device"},
        422: {"description": "unknown command, bad value, or supply-side equipment without a reason"},
    },
)
async def command(device_id: DeviceId, body: CommandIn, svc: ServicesDep, who: Operator) -> JSONResponse:
    """Send a command through the one control path; see the module docstring for statuses and aliases."""
    try:
        outcome = await svc.control.command(
            device_id, body.command, body.value, who=who.who, role=who.role, reason=body.reason
        )
    except UnknownDevice as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    except InvalidCommand as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    code = {
        "allow-list": status.HTTP_403_FORBIDDEN,
        "permission": status.HTTP_403_FORBIDDEN,
        "driver": status.HTTP_409_CONFLICT,
    }.get(outcome.refused_by or "", status.HTTP_200_OK)
    out = CommandOut(
        status=outcome.status,
        observed=outcome.observed,
        device=outcome.device,
        point=outcome.point,
        requested=outcome.requested,
        old=outcome.old,
        detail=outcome.detail,
        at=outcome.at,
    )
    return JSONResponse(out.model_dump(mode="json"), status_code=code)
