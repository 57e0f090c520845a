"""Compliance: the static check plus what the live state says now."""

from __future__ import annotations

from fastapi import APIRouter

from service.api.deps import ServicesDep, Viewer
from service.api.models import ComplianceOut
from service.config.compliance import check_site
from service.live.transfers import latest

router = APIRouter(prefix="/api", tags=["compliance"])


@router.get("/compliance", response_model=ComplianceOut, summary="Static compliance and live status")
async def compliance(svc: ServicesDep, _: Viewer) -> dict[str, object]:
    """Every supply-side rule for the site's grade, with sources available now, generator readiness and
    the last transfer time against `allowed_interruption_s`.

    `live.last_transfer` is the source transfer that ended last on any switch (null before the first
    one seen), `live.last_transfers` each switch's last, in site order: from and to which source,
    when the load was lost (`lost_at`) and fed again (`at`), `interruption_s` against
    `allowed_interruption_s` and `within_allowed`; `kind` is `transfer`, `retransfer` (back to the
    switch's preferred source) or `restored` (the same source back before the switch moved)."""
    report = check_site(svc.site).to_dict()
    now = svc.clock.now()
    supply = svc.core.state.supply(now)
    available = [s.id for s in supply.sources if s.available]
    transfers = svc.core.last_transfers
    last_transfer = latest(transfers.values())
    report["live"] = {
        "at": now.isoformat(),
        "sources_available": available,
        "sources_total": len(supply.sources),
        "substations_available": sorted({s.substation for s in svc.site.sources if s.id in available}),
        "generators_ready": [g.id for g in supply.generators if g.ready],
        "load_kw": supply.load_kw,
        "security_load_kw": svc.site.site.security_load_kw,
        "allowed_interruption_s": svc.site.site.allowed_interruption_s,
        "last_transfer": last_transfer.to_dict() if last_transfer else None,
        "last_transfers": [transfers[t.id].to_dict() for t in svc.site.transfer_switches if t.id in transfers],
        "active_supply_alarms": [
            a.to_dict()
            for a in svc.core.engine.active()
            if a.type
            in (
                "source_transfer_failed",
                "backfeed",
                "redundancy_lost",
                "generator_start_failed",
                "grid_lost",
                "security_load_exceeded",
            )
        ],
        "sources_unknown": [s.id for s in supply.sources if s.available is None],
    }
    return report
