"""Reports: monthly energy per department (JSON or CSV)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response

from service.api.deps import ServicesDep, Viewer
from service.reports import EnergyReport, energy_report, report_csv
from service.scheduler import scheduler_of

router = APIRouter(prefix="/api/reports", tags=["reports"])

Month = Annotated[str, Query(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="site-local month, YYYY-MM")]


@router.get(
    "/energy",
    response_model=EnergyReport,
    summary="Monthly kWh, time-of-use cost, after-hours kWh and violations per department",
    responses={200: {"content": {"text/csv": {}}, "description": "the report (JSON, or CSV with format=csv)"}},
)
async def energy(
    svc: ServicesDep,
    _: Viewer,
    month: Month,
    by: Annotated[Literal["department"], Query(description="grouping (department)")] = "department",
    format: Annotated[Literal["json", "csv"], Query(description="json or csv")] = "json",
) -> Any:
    """The stored report of a closed month, or one computed now; `totals` reconcile departments with site meters."""
    report = await energy_report(svc.store, svc.site, month, now=svc.clock.now(), rollups=scheduler_of(svc).rollups)
    if format == "csv":
        name = f"energy-{svc.site.site.id}-{month}.csv"
        return Response(
            report_csv(report),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    return report
