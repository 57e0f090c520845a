"""Telemetry history of one device point from the store's 1-minute rollups."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Final

from fastapi import APIRouter, HTTPException, Query, status

from drivers.profiles import load_profile
from service.api.deps import ServicesDep, Viewer
from service.api.models import ErrorOut, TelemetryOut
from service.api.params import AwareTime
from service.services import Services

router = APIRouter(prefix="/api", tags=["telemetry"])

EVERY_PATTERN: Final = r"^([1-9][0-9]{0,3})(m|h|d)$"
UNIT_MINUTES: Final = {"m": 1, "h": 60, "d": 24 * 60}
DEFAULT_RANGE: Final = timedelta(hours=24)
MAX_RANGE: Final = timedelta(days=400)  # a year and a bit: enough for year-on-year views
MAX_EVERY: Final = timedelta(days=31)
MAX_BUCKETS: Final = 10_000  # one week of 1-minute buckets

ERRORS: Final[dict[int | str, dict[str, object]]] = {
    401: {"model": ErrorOut, "description": "no or invalid API key"},
    403: {"model": ErrorOut, "description": "the key's role is too low"},
    422: {"model": ErrorOut, "description": "unknown device or point, bad time range or bucket size"},
}


def _bad(where: str, problem: str) -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"{where}: {problem}")


def parse_every(text: str) -> timedelta:
    """'15m', '1h', '1d' -> timedelta (the pattern is checked by the query parameter)."""
    m = re.fullmatch(EVERY_PATTERN, text)
    if m is None:
        raise _bad("every", f"'{text}' is not a bucket size like 1m, 15m, 1h or 1d")
    return timedelta(minutes=int(m.group(1)) * UNIT_MINUTES[m.group(2)])


def point_unit(svc: Services, device: str, point: str) -> str:
    """The unit of a device point; 422 naming what exists when the device or point does not."""
    try:
        dev = svc.site.device(device)
    except KeyError:
        raise _bad("device", f"no device '{device}' in site {svc.site.site.id}") from None
    units = {p.name: p.unit for p in load_profile(dev.profile).points}
    # Drivers also derive points (e.g. counter deltas) that are not in the profile.
    units |= {p.point: p.unit for p in svc.core.state.points(svc.clock.now()) if p.device == device}
    if point not in units:
        raise _bad("point", f"device '{device}' has no point '{point}' (points: {', '.join(sorted(units))})")
    return units[point]


@router.get(
    "/telemetry",
    response_model=TelemetryOut,
    summary="History of one device point",
    responses=ERRORS,
)
async def telemetry(
    svc: ServicesDep,
    _: Viewer,
    device: Annotated[str, Query(min_length=1, max_length=64, description="device id", examples=["meter-grid-a"])],
    point: Annotated[str, Query(min_length=1, max_length=64, description="point name", examples=["power"])],
    start: Annotated[
        AwareTime | None,
        Query(description="ISO 8601 with zone (default: `end` - 24 h)", examples=["2026-11-29T00:00:00+08:00"]),
    ] = None,
    end: Annotated[
        AwareTime | None,
        Query(description="ISO 8601 with zone, exclusive (default: now)", examples=["2026-11-29T12:00:00+08:00"]),
    ] = None,
    every: Annotated[
        str,
        Query(pattern=EVERY_PATTERN, description="bucket size: minutes, hours or days (1m to 31d)", examples=["15m"]),
    ] = "1m",
) -> dict[str, object]:
    """min, max, mean, last and count per bucket of `every`, from the 1-minute rollups in [start, end).

    Buckets count from `start` floored to the minute; the range may span at most 400 days and
    10,000 buckets; buckets with no readings are left out.
    """
    unit = point_unit(svc, device, point)
    size = parse_every(every)
    if size > MAX_EVERY:
        raise _bad("every", "at most 31d")
    end = end or svc.clock.now()
    try:
        start = start or end - DEFAULT_RANGE
    except OverflowError:
        raise _bad("end", "too early to look back 24 h from; give start") from None
    # Rollups are whole minutes; buckets count from `start` floored to its minute.
    start = start.replace(second=0, microsecond=0)
    if start >= end:
        raise _bad("start", f"must be before end ({end.isoformat()})")
    if end - start > MAX_RANGE:
        raise _bad("end", f"the range may span at most {MAX_RANGE.days} days")
    buckets = (end - start) / size
    if buckets > MAX_BUCKETS:
        raise _bad("every", f"{buckets:.0f} buckets of {every} in the range; at most {MAX_BUCKETS}: use a larger every")
    rollups = await svc.store.telemetry(device, point, start, end, size)
    return {
        "device": device,
        "point": point,
        "unit": unit,
        "every": every,
        "start": start,
        "end": end,
        "points": [
            {"ts": r.minute, "min": r.min, "max": r.max, "mean": r.mean, "last": r.last, "count": r.count}
            for r in rollups
        ],
    }
