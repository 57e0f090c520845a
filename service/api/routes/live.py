"""Live views: devices, points, rooms, supply.

These are what dashboards poll, so their routes take the request and find the services on it
(`services(request)`) rather than through a dependency: each dependency costs its resolution on
every request, which on these small answers was a large part of the time.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request, Response

from service.api.deps import Viewer, services
from service.api.models import DeviceOut, PointOut, RoomOut, SupplyOut, UnassignedDeviceOut
from service.onboard.unassigned import placed_ids, unassigned_of

router = APIRouter(prefix="/api", tags=["live"])

Limit = Annotated[int, Query(ge=1, le=10_000, description="page size")]
Offset = Annotated[int, Query(ge=0, le=10_000_000, description="items to skip")]


def page(items: list[Any], response: Response, limit: int, offset: int) -> list[Any]:
    """One page of a list; the total goes in X-Total-Count."""
    response.headers["X-Total-Count"] = str(len(items))
    return items[offset : offset + limit]


def json_page(items: list[dict[str, object]], limit: int, offset: int) -> Response:
    """One page as a finished JSON response, the total in X-Total-Count.

    For the large, frequently polled live lists: the items come from the live state in the response
    model's shape already, and checking them against it again took most of a request's time. The
    JSON is what FastAPI would write (orjson, UTC datetimes with Z, as pydantic writes them).
    """
    return _json_response(orjson.dumps(items[offset : offset + limit], option=orjson.OPT_UTC_Z), len(items))


def _json_response(body: bytes, total: int) -> Response:
    return Response(body, media_type="application/json", headers={"X-Total-Count": str(total)})


@router.get("/devices", response_model=list[DeviceOut | UnassignedDeviceOut], summary="Devices and their link state")
async def devices(
    request: Request,
    _: Viewer,
    response: Response,
    limit: Limit = 1000,
    offset: Offset = 0,
    assigned: Annotated[
        bool | None,
        Query(
            description="false: devices left to place (no room or supply role holds them, or seen on the broker "
            "and not in the site file); true: the site's devices that have a place"
        ),
    ] = None,
) -> list[dict[str, object]]:
    """Every device of the site: id, profile, driver, online, last_seen."""
    svc = services(request)
    if assigned is False:
        return page(unassigned_of(svc.site, svc.broker_watch, svc.core.state), response, limit, offset)
    items = [d.to_dict() for d in svc.core.state.devices()]
    if assigned:
        placed = placed_ids(svc.site)
        items = [i for i in items if i["id"] in placed]
    return page(items, response, limit, offset)


@router.get("/state", response_model=list[PointOut], summary="Latest value of every device point")
async def state(
    request: Request,
    _: Viewer,
    device: Annotated[str | None, Query(max_length=64, description="only this device")] = None,
    limit: Limit = 10_000,
    offset: Offset = 0,
) -> Response:
    """Latest value, unit, time and quality (good, bad, stale) per device point."""
    svc = services(request)
    return json_page(svc.core.state.point_rows(svc.clock.now(), device), limit, offset)


@router.get("/rooms", response_model=list[RoomOut], summary="Rooms now")
async def rooms(request: Request, _: Viewer, limit: Limit = 1000, offset: Offset = 0) -> Response:
    """Occupancy, lights, temperature, AC, plug power and override of every room."""
    svc = services(request)
    now = svc.clock.now()
    return _json_response(*svc.rooms_answer.answer(svc.core.state, svc.core.overrides, svc.site, now, limit, offset))


@router.get("/supply", response_model=SupplyOut, summary="Sources, transfer switches, generators, load")
async def supply(request: Request, _: Viewer) -> dict[str, object]:
    """The supply side now; a transfer switch's `position` is the source feeding the load, or null.

    A source's `available` is null (unknown) while its meter or the switch status reporting it is
    offline or stale."""
    svc = services(request)
    return svc.core.state.supply(svc.clock.now()).to_dict()
