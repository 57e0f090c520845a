"""Reports: monthly energy per department (JSON or CSV), violations and fines, the quarterly summary."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, HTTPException, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field

from service.api.deps import Admin, ServicesDep, Viewer
from service.energy.exports import XLSX_TYPE, Lang, Sheet, default_lang, people_csv, xlsx
from service.energy.quarterly import QuarterlyReport, build_quarterly, quarter_bounds
from service.energy.quarterly import machine_csv as quarter_machine_csv
from service.energy.quarterly import sheets as quarter_sheets
from service.energy.reports import EnergyReport, energy_report, energy_sheets, report_csv
from service.energy.violations import ViolationsReport, find_violation, violations_report
from service.energy.violations import machine_csv as violations_machine_csv
from service.energy.violations import sheets as violation_sheets
from service.store.db import FineDecision, month_bounds

router = APIRouter(prefix="/api/reports", tags=["reports"])

Month = Annotated[str, Query(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="site-local month, YYYY-MM")]
ExportFormat = Annotated[Literal["json", "csv", "xlsx"], Query(description="json, csv or xlsx")]
ExportLang = Annotated[
    Literal["zh", "en"] | None,
    Query(description="csv: zh for people (BOM, Chinese headers, names), en for programs; default by site"),
]
R = TypeVar("R", bound=BaseModel)


@router.get(
    "/energy",
    response_model=EnergyReport,
    summary="Monthly kWh, time-of-use cost, after-hours kWh and violations per department",
    responses={200: {"content": {"text/csv": {}, XLSX_TYPE: {}}, "description": "the report (JSON, CSV or xlsx)"}},
)
async def energy(
    svc: ServicesDep,
    _: Viewer,
    month: Month,
    by: Annotated[Literal["department"], Query(description="grouping (department)")] = "department",
    format: ExportFormat = "json",
    lang: ExportLang = None,
) -> Any:
    """The stored report of a closed month, or one computed now; `totals` reconcile departments with site meters."""
    report = await energy_report(svc.store, svc.site, month, now=svc.clock.now())
    return answer(svc, report, (energy_sheets, report_csv), fmt=format, lang=lang, file=("energy", month))


def _not_future(month: str, svc: ServicesDep) -> None:
    """422 for a month that has not begun yet (nothing stored, nothing computed)."""
    start, _ = month_bounds(month, svc.site.site.tz)
    if start > svc.clock.now():
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"month: {month} has not begun yet")


def _download(body: bytes | str, media_type: str, name: str) -> Response:
    return Response(body, media_type=media_type, headers={"Content-Disposition": f'attachment; filename="{name}"'})


def answer(
    svc: ServicesDep,
    report: R,
    forms: tuple[Callable[[R, Lang], list[Sheet]], Callable[[R], str]],
    *,
    fmt: str,
    lang: Lang | None,
    file: tuple[str, str],
) -> R | Response:
    """The report itself for JSON, else a file `<kind>-<site>-<period>` (`file` = kind, period) of
    one of its two `forms`: its sheets (xlsx, or CSV for people) or its machine CSV."""
    if fmt == "json":
        return report
    to_sheets, machine_csv = forms
    chosen = lang or default_lang(svc.site)
    kind, period = file
    name = f"{kind}-{svc.site.site.id}-{period}"
    return export(svc, to_sheets(report, chosen), machine_csv(report), fmt=fmt, lang=chosen, name=name)


def export(svc: ServicesDep, sheets: list[Sheet], machine: str, *, fmt: str, lang: str | None, name: str) -> Response:
    """A report as a file: xlsx, CSV for people (BOM, Chinese headers) or the machine CSV."""
    tz = svc.site.site.tz
    chosen: Lang = (lang or default_lang(svc.site)) if lang in (None, "zh", "en") else "en"  # type: ignore[assignment]
    if fmt == "xlsx":
        return _download(xlsx(sheets, chosen, tz), XLSX_TYPE, f"{name}.xlsx")
    if chosen == "zh":
        return _download(people_csv(sheets, chosen, tz), "text/csv; charset=utf-8", f"{name}.csv")
    return _download(machine, "text/csv; charset=utf-8", f"{name}.csv")


@router.get(
    "/violations",
    response_model=ViolationsReport,
    summary="Violations per department: counts per type, fines proposed/confirmed/waived, every incident",
    responses={200: {"content": {"text/csv": {}, XLSX_TYPE: {}}, "description": "JSON, CSV or xlsx"}},
)
async def violations(
    svc: ServicesDep, _: Viewer, month: Month, format: ExportFormat = "json", lang: ExportLang = None
) -> Any:
    """A month's violations; fines count once the administration office confirms them."""
    _not_future(month, svc)
    report = await violations_report(svc.store, svc.site, month, now=svc.clock.now())
    forms = (violation_sheets, violations_machine_csv)
    return answer(svc, report, forms, fmt=format, lang=lang, file=("violations", month))


class FineDecisionIn(BaseModel):
    """The administration office's decision on one violation's fine."""

    model_config = ConfigDict(extra="forbid")

    violation: str = Field(min_length=1, max_length=256, description="the incident id from the violations report")
    status: Literal["confirmed", "waived"]
    reason: str = Field(min_length=1, max_length=2000, description="why (required)")
    amount: float | None = Field(None, ge=0, description="confirmed amount; default the site's price for the type")


class FineDecisionOut(BaseModel):
    """The decision as stored."""

    violation: str
    type: str
    room: str
    department: str
    status: str
    amount: float
    decided_by: str
    decided_at: datetime
    reason: str


@router.post(
    "/violations/fines",
    response_model=FineDecisionOut,
    summary="Confirm or waive a violation's fine (admin), with the reason; audited",
)
async def decide_fine(svc: ServicesDep, who: Admin, body: FineDecisionIn) -> FineDecisionOut:
    """A proposed fine counts once confirmed; a waived one is kept with who waived it and why."""
    found = await find_violation(svc.store, svc.site, body.violation)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no violation '{body.violation}'")
    kind, room = found
    price = svc.site.penalties.get(kind)
    amount = body.amount if body.amount is not None else price
    if amount is None:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"amount: '{kind}' has no price in penalties; give the amount"
        )
    now = svc.clock.now()
    before = (await svc.store.fine_decisions([body.violation])).get(body.violation)
    decision = FineDecision(
        violation=body.violation,
        status=body.status,
        amount=float(amount),
        decided_by=who.who,
        decided_at=now,
        reason=body.reason,
    )
    await svc.store.decide_fine(decision)
    await svc.store.append_audit(
        at=now,
        who=who.who,
        old=None if before is None else {"status": before.status, "amount": before.amount, "reason": before.reason},
        new={"violation": body.violation, "status": body.status, "amount": float(amount), "reason": body.reason},
        result=f"fine_{body.status}",
        detail=f"{kind} in {room.id} ({room.department}): fine {amount:g} {body.status}: {body.reason}",
    )
    return FineDecisionOut(
        violation=body.violation,
        type=kind,
        room=room.id,
        department=room.department,
        status=body.status,
        amount=float(amount),
        decided_by=who.who,
        decided_at=now,
        reason=body.reason,
    )


Quarter = Annotated[str, Query(pattern=r"^\d{4}-Q[1-4]$", description="site-local quarter, YYYY-Qn (n 1 to 4)")]


@router.get(
    "/quarterly",
    response_model=QuarterlyReport,
    summary="The quarter's summary: energy vs previous quarter and a year before, violations, supply events, hazards",
    responses={200: {"content": {"text/csv": {}, XLSX_TYPE: {}}, "description": "JSON, CSV or xlsx"}},
)
async def quarterly(
    svc: ServicesDep, _: Viewer, quarter: Quarter, format: ExportFormat = "json", lang: ExportLang = None
) -> Any:
    """The quarterly work summary (季度小结) of the administration office."""
    start, _end = quarter_bounds(quarter, svc.site)
    if start > svc.clock.now():
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"quarter: {quarter} has not begun yet")
    report = await build_quarterly(svc.store, svc.site, quarter, now=svc.clock.now())
    forms = (quarter_sheets, quarter_machine_csv)
    return answer(svc, report, forms, fmt=format, lang=lang, file=("quarterly", quarter))
