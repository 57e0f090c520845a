"""Dashboard parts for the people on duty: data freshness, trends and the energy explorer (issue 18).

`/ui/freshness` and `/ui/trend` answer JSON for the page's scripts; `/ui/explorer` an HTML fragment.
Bad input is a 422 naming the field. A trend longer than the store keeps its 1-minute rollups reads
the rest from InfluxDB where the telemetry sink writes (service.telemetry.history).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Final

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import JSONResponse, Response

from service.api.deps import ServicesDep, Viewer
from service.api.routes.dashboard import _base, _html
from service.energy.reports import ROLLUP_RETENTION
from service.services import Services
from service.telemetry.history import HistoryUnavailable, InfluxHistory, Point
from service.web import duty
from service.web.render import render

log = logging.getLogger(__name__)

router = APIRouter(tags=["dashboard"], include_in_schema=False)

NO_STORE: Final = {"Cache-Control": "no-store"}


def _bad(where: str, problem: str) -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"{where}: {problem}")


@router.get("/ui/freshness")
async def ui_freshness(svc: ServicesDep, _: Viewer) -> Response:
    """Per panel: whether its polled devices reported within three poll periods, and when they last did."""
    now = svc.clock.now()
    tz = svc.site.site.tz
    views = svc.core.state.devices()
    supply = duty.freshness(svc.site, views, duty.supply_devices(svc.site), now)
    body: dict[str, Any] = {
        "at": now.astimezone(tz).strftime("%H:%M:%S"),
        "panels": {
            "supply": {
                "stale": supply.stale,
                "last": supply.last.astimezone(tz).strftime("%H:%M:%S") if supply.last else None,
                "devices": list(supply.devices),
            }
        },
    }
    return JSONResponse(body, headers=NO_STORE)


@router.get("/ui/trend")
async def ui_trend(
    request: Request,
    svc: ServicesDep,
    _: Viewer,
    kind: Annotated[str, Query(max_length=20, description="room, source, generator or department")] = "source",
    id: Annotated[str, Query(max_length=64, description="its id (default: the first source)")] = "",
    span: Annotated[str, Query(alias="range", max_length=4, description="24h, 7d, 30d or 12m")] = "24h",
) -> Response:
    """The series of one room, source, generator or department over 24 h, 7 d, 30 d or 12 months; `note`
    says why a range longer than the rollups are kept shows only what the store has (no InfluxDB, or
    InfluxDB not answering)."""
    if not id and kind == "source" and svc.site.sources:
        id = svc.site.sources[0].id
    now = svc.clock.now()
    try:
        spec = duty.trend_spec(svc.site, kind, id)
        start, end, every = duty.trend_window(now, span)
    except ValueError as exc:
        raise _bad(*str(exc).split(": ", 1)) from None
    t = _base(request, svc, None)["t"]
    beyond = duty.beyond_rollups(start, now)
    stored = [await _stored(svc, s, beyond, start, end, every) for s in spec.series]
    # What the store cannot draw back to `start` (all but a meter's power with its energy intervals).
    short = [(s.device, s.point) for s, (_values, complete) in zip(spec.series, stored, strict=True) if not complete]
    history, note = await _history(svc, short, start, end, every, t) if beyond and short else ({}, None)
    step = int(every.total_seconds())
    x = list(range(int(start.timestamp()), int(end.timestamp()), step))
    series = []
    for s, (by_ts, _complete) in zip(spec.series, stored, strict=True):
        by_ts.update({ts: round(v * s.scale, 3) for ts, v in history.get((s.device, s.point), {}).items()})
        series.append({"label": f"{t(s.label)} · {s.device}", "unit": s.unit, "values": [by_ts.get(ts) for ts in x]})
    body = {
        "title": spec.title,
        "unit": spec.unit,
        "range": span,
        "step_s": step,
        "x": x,
        "series": series,
        "note": note,
    }
    return JSONResponse(body, headers=NO_STORE)


async def _stored(
    svc: Services, s: duty.SeriesSpec, beyond: bool, start: datetime, end: datetime, every: timedelta
) -> tuple[dict[int, float], bool]:
    """A series' bucket values from the store, and whether they reach back to `start`: beyond the
    rollups a meter's power comes from its 15-minute energy, anything else only as far as the rollups."""
    if beyond and s.metered_power:
        by_ts = duty.mean_kw(await svc.store.energy_intervals(start, end, meter=s.device), start, every)
        if by_ts:
            return by_ts, True
    means = await svc.store.rollup_means(s.device, s.point, start, end, every)
    return {int(at.timestamp()): round(mean * s.scale, 3) for at, mean in means}, not beyond


async def _history(
    svc: Services,
    points: list[Point],
    start: datetime,
    end: datetime,
    every: timedelta,
    t: Callable[..., str],
) -> tuple[dict[Point, dict[int, float]], str | None]:
    """The points' bucket means from InfluxDB, where the sink writes; without it, or when it does not
    answer, none and the chart's note saying so."""
    influx = InfluxHistory.from_settings(svc.settings)
    if influx is None:
        return {}, t("trend.influx_missing", days=ROLLUP_RETENTION.days)
    try:
        return await influx.means(svc.site.site.id, points, start, end, every), None
    except HistoryUnavailable as exc:
        log.warning("trend beyond the rollups without InfluxDB's history: %s", exc)
        return {}, t(f"trend.influx_{exc.reason}")


@router.get("/ui/explorer")
async def ui_explorer(
    request: Request,
    svc: ServicesDep,
    who: Viewer,
    period: Annotated[str, Query(max_length=8)] = "month",
    day: Annotated[date | None, Query(description="a date in the period (site time)")] = None,
    department: Annotated[str, Query(max_length=64)] = "",
) -> Response:
    """Energy explorer: kWh bars by tariff band for a day, week, month or year, with the period before and top rooms."""
    ctx = _base(request, svc, who.role)
    now: datetime = ctx["now"]
    tz = svc.site.site.tz
    anchor = day or now.astimezone(tz).date()
    if department and department not in {d.id for d in svc.site.departments}:
        raise _bad("department", f"no department '{department}' in this site")
    try:
        start, end, prev, _size = duty.explorer_window(period, anchor)
    except ValueError as exc:
        raise _bad(*str(exc).split(": ", 1)) from None
    t0, t1, tp = (duty.local_midnight(d, tz) for d in (start, end, prev))
    intervals = await svc.store.energy_intervals(t0, t1, department=department or None)
    dept_meters = {d.meter for d in svc.site.departments if d.meter}
    if not department:
        intervals = [i for i in intervals if i.meter in dept_meters]  # not the incomers again
    previous = await svc.store.energy_intervals(tp, t0, department=department or None)
    previous_kwh = sum(i.kwh for i in previous if department or i.meter in dept_meters)
    rooms = [r for r in svc.site.rooms if not department or r.department == department]
    room_kwh: list[tuple[str, float]] = []
    until = min(t1, now.replace(second=0, microsecond=0))
    hours = max((until - t0).total_seconds() / 3600, 0.0)
    for room in rooms:
        total_w = 0.0
        for device in room.devices:
            if svc.site.device(device).role.value in ("critical", "life_safety"):
                continue
            rollups = await svc.store.telemetry(device, "power", t0, until, until - t0) if hours else []
            total_w += sum(r.mean for r in rollups)
        if total_w:
            room_kwh.append((room.name, total_w * hours / 1000))
    ex = duty.explorer(svc.site, period, anchor, intervals, previous_kwh, room_kwh)
    chart = {
        "x": [int(s.timestamp()) for s in ex.starts],
        "labels": ex.labels,
        "series": [
            {"band": b, "label": ctx["t"]("band." + b), "values": [round(v, 2) for v in vals]}
            for b, vals in ex.bands.items()
        ],
    }
    change = (ex.total_kwh - ex.previous_kwh) / ex.previous_kwh * 100 if ex.previous_kwh else None
    return _html(
        render(
            "_explorer.html",
            **ctx,
            ex=ex,
            chart=chart,
            change=change,
            anchor=anchor,
            start=start,
            last_day=end - timedelta(days=1),
            period=period,
            periods=duty.PERIODS,
            department=department,
            departments=[(d.id, d.name) for d in svc.site.departments],
            currency=svc.site.tariff.currency if svc.site.tariff else "",
        )
    )
