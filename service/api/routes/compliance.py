"""Compliance: the static check plus what the live state says now."""

from __future__ import annotations

from fastapi import APIRouter

from service.api.deps import ServicesDep, Viewer
from service.api.models import ComplianceOut
from service.compliance import check_site

router = APIRouter(prefix="/api", tags=["compliance"])


@router.get("/compliance", response_model=ComplianceOut, summary="Static compliance and live status")
async def compliance(svc: ServicesDep, _: Viewer) -> dict[str, object]:
    """Every supply-side rule for the site's grade, with sources available now, generator readiness and
    the last transfer time against `allowed_interruption_s`."""
    report = check_site(svc.site).to_dict()
    now = svc.clock.now()
    supply = svc.core.state.supply(now)
    available = [s.id for s in supply.sources if s.available]
    last_transfer = svc.extras.get("last_transfer")
    report["live"] = {
        "at": now.isoformat(),
        "sources_available": available,
        "sources_total": len(supply.sources),
        "substations_available": sorted({s.substation for s in svc.site.sources if s.id in available}),
        "generators_ready": [g.id for g in supply.generators if g.ready],
        "load_kw": supply.load_kw,
        "security_load_kw": svc.site.site.security_load_kw,
        "allowed_interruption_s": svc.site.site.allowed_interruption_s,
        "last_transfer": last_transfer,
        "active_supply_alarms": [
            a.to_dict()
            for a in svc.core.engine.active()
            if a.type in ("source_transfer_failed", "backfeed", "redundancy_lost", "generator_start_failed")
        ],
    }
    return report
