"""Alarms: list, acknowledge, shelve."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Response, status

from service.alarms.engine import AlarmStateError
from service.alarms.record import AlarmState
from service.alarms.rules import AlarmType
from service.api.deps import Operator, PageLimit, PageOffset, ServicesDep, Viewer, paged
from service.api.models import AlarmOut, FloodOut, ShelveIn

router = APIRouter(prefix="/api/alarms", tags=["alarms"])

AlarmId = Annotated[str, Path(max_length=200, description="alarm id as listed")]


@router.get(
    "",
    response_model=list[AlarmOut],
    summary="Alarms, active or all",
    responses=paged("newest first; X-Total-Count holds the number of matching alarms", "matching alarms"),
)
async def list_alarms(
    svc: ServicesDep,
    _: Viewer,
    response: Response,
    state: Annotated[Literal["active", "all"], Query(description="active: open lifecycles; all: history")] = "active",
    type: Annotated[AlarmType | None, Query(description="only this alarm type")] = None,
    limit: PageLimit = 100,
    offset: PageOffset = 0,
) -> list[dict[str, object]]:
    """Open alarms from the engine (`state=active`) or every stored lifecycle, newest first (`state=all`).

    `X-Alarm-Flood: 1` while more alarms than the flood threshold were raised in the flood window
    (details at GET /api/alarms/flood).
    """
    response.headers["X-Alarm-Flood"] = "1" if svc.core.flood_now().active else "0"
    bus = svc.bus
    if state == "active" and (bus is None or bus.owner):
        items = [a.to_dict() for a in reversed(svc.core.engine.active()) if type is None or a.type == type]
        response.headers["X-Total-Count"] = str(len(items))
        return items[offset : offset + limit]
    kind = type.value if type else None
    # A core of the bus that does not own the site answers from the store the owner writes to.
    states = _OPEN_STATES if state == "active" else None
    response.headers["X-Total-Count"] = str(await svc.store.count_alarms(states=states, type=kind))
    stored = await svc.store.list_alarms(states=states, type=kind, limit=limit, offset=offset)
    return [a.to_dict() for a in stored]


_OPEN_STATES = tuple(s.value for s in AlarmState if s is not AlarmState.cleared)


@router.get("/flood", response_model=FloodOut, summary="The alarm flood indicator")
async def flood(svc: ServicesDep, _: Viewer) -> dict[str, object]:
    """Whether more than `threshold` (10) alarms were raised within `window_s` (10 min), and since when.

    Its start and end are also `alarm_flood` events on GET /api/events.
    """
    return svc.core.flood_now().to_dict()


@router.post("/{alarm_id}/ack", response_model=AlarmOut, summary="Acknowledge an alarm")
async def ack(alarm_id: AlarmId, svc: ServicesDep, who: Operator) -> dict[str, object]:
    """Acknowledge: active_unacked -> active_acked, cleared_unacked -> cleared; journaled with who."""
    try:
        alarm = await svc.core.ack(alarm_id, who.who)
    except KeyError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no open alarm '{alarm_id}'") from None
    if alarm is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no open alarm '{alarm_id}'")
    return alarm.to_dict()


@router.post("/{alarm_id}/shelve", response_model=AlarmOut, summary="Shelve an alarm until a time")
async def shelve(alarm_id: AlarmId, body: ShelveIn, svc: ServicesDep, who: Operator) -> dict[str, object]:
    """Hide an open alarm until `until` (at most 24 h); it returns by itself when the shelf ends."""
    if body.until.tzinfo is None:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, "until: needs a time zone, e.g. 2026-11-29T18:00:00+08:00"
        )
    if body.until - svc.clock.now() > timedelta(hours=24):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "until: a shelf may last at most 24 h")
    try:
        alarm = await svc.core.shelve(alarm_id, body.until, who.who)
    except KeyError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no open alarm '{alarm_id}'") from None
    except AlarmStateError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    return alarm.to_dict()
