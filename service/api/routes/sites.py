"""The sites of this deployment: `GET /api/sites`, one summary row per site (DESIGN.md §4).

A deployment serves one site today (`serve --site F`); the route answers in the shape a deployment
of many sites will (a list), so that a fleet view and outside checks read one contract. Every
other route takes `?site=ID`: optional while there is one site, 404 naming an unknown id
(checked once for every request in `service.api.RequestChecks`).
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter

from service.alarms.record import Severity
from service.api.deps import ServicesDep, Viewer
from service.api.models import SiteOut
from service.config.compliance import check_site
from service.energy.reports import month_of, site_meters
from service.live.state import SupplyView
from service.services import Services
from service.store.db import month_bounds

router = APIRouter(prefix="/api", tags=["sites"])


def grid_available(supply: SupplyView) -> bool | None:
    """Whether any grid source is available now; None while no source is known either way."""
    known = [s.available for s in supply.sources if s.available is not None]
    if any(known):
        return True
    return False if known else None


def on_generator(supply: SupplyView) -> bool | None:
    """Whether a transfer switch feeds its load from a generator now; None while no switch is known."""
    generators = {g.id for g in supply.generators}
    known = [t for t in supply.transfer_switches if t.known]
    if any(t.position in generators for t in known):
        return True
    return False if known else None


async def month_kwh(svc: Services, now: datetime) -> float:
    """kWh the whole site took this site-local month so far, from its grid and generator meters."""
    start, _ = month_bounds(month_of(now, svc.site), svc.site.site.tz)
    total = 0.0
    for meter in site_meters(svc.site):
        total += sum(i.kwh for i in await svc.store.energy_intervals(start, now, meter=meter))
    return round(total, 3)


async def site_summary(svc: Services) -> dict[str, object]:
    """One site's row of `GET /api/sites`."""
    now = svc.clock.now()
    supply = svc.core.state.supply(now)
    alarms = [a for a in svc.core.engine.active() if a.open]
    return {
        "id": svc.site.site.id,
        "name": svc.site.site.name,
        "grade": svc.site.site.grade.value,
        "timezone": svc.site.site.timezone,
        "compliance": check_site(svc.site).status,
        "grid_available": grid_available(supply),
        "on_generator": on_generator(supply),
        "alarms": {
            "active": len(alarms),
            "unacked": sum(1 for a in alarms if not a.acked),
            "critical": sum(1 for a in alarms if a.severity is Severity.critical),
        },
        "energy_month_kwh": await month_kwh(svc, now),
    }


@router.get("/sites", response_model=list[SiteOut], summary="The sites of this deployment")
async def sites(svc: ServicesDep, _: Viewer) -> list[dict[str, object]]:
    """Each site with its grade, static compliance (`PASS`/`WARN`/`FAIL`), whether the grid is there
    and whether a generator carries load now (null while unknown), its open alarms (active, not yet
    acknowledged, critical) and the kWh its site meters counted this month (site-local)."""
    return [await site_summary(svc)]
