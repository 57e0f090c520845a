"""The audit log of control actions (operator and admin).

Operators see it because they are the ones acting: the electrician and the facility manager need to
see what the after-hours sweep or a colleague switched, and what came of it. Viewers (wall displays,
visitors) do not: the log names keys and shows who worked late.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any, Final

from fastapi import APIRouter, HTTPException, Query, Request, Response, status

from service.api.deps import Operator, ServicesDep, paged
from service.api.models import AuditOut, ErrorOut
from service.api.params import AwareTime

router = APIRouter(prefix="/api", tags=["audit"])

ERRORS: Final[dict[int | str, dict[str, object]]] = {
    401: {"model": ErrorOut, "description": "no or invalid API key"},
    403: {"model": ErrorOut, "description": "viewers may not read the audit log"},
    422: {"model": ErrorOut, "description": "bad filter or page"},
}


def next_link(request: Request, offset: int, limit: int, total: int) -> str | None:
    """An RFC 8288 `Link` header value to the next page, or None on the last page."""
    if offset + limit >= total:
        return None
    url = request.url.include_query_params(offset=offset + limit, limit=limit)
    return f'<{url.path}?{url.query}>; rel="next"'


@router.get(
    "/audit",
    response_model=list[AuditOut],
    summary="Audit log of control actions (operator, admin)",
    responses={
        **paged(
            "newest first; X-Total-Count holds the number of matching records, Link the next page",
            "matching records",
            link=True,
        ),
        **ERRORS,
    },
)
async def audit(
    svc: ServicesDep,
    _: Operator,
    request: Request,
    response: Response,
    device: Annotated[str | None, Query(min_length=1, max_length=64, description="only this device")] = None,
    who: Annotated[
        str | None, Query(min_length=1, max_length=128, description="only this actor, e.g. key:1a2b3c4d")
    ] = None,
    job: Annotated[
        str | None, Query(min_length=1, max_length=128, description="only this job, e.g. after-hours")
    ] = None,
    result: Annotated[
        str | None, Query(min_length=1, max_length=32, description="only this result: confirmed, failed, refused")
    ] = None,
    start: Annotated[AwareTime | None, Query(description="ISO 8601 with zone; records at or after")] = None,
    end: Annotated[AwareTime | None, Query(description="ISO 8601 with zone; records before")] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="page size")] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000, description="records to skip")] = 0,
) -> list[dict[str, Any]]:
    """Every control action: who (key or schedule), job, device point, old and new value, result, detail."""
    since, until = start, end
    if since is not None and until is not None and since >= until:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "start: must be before end")
    total = await svc.store.count_audit(device=device, since=since, until=until, who=who, job=job, result=result)
    entries = await svc.store.list_audit(
        device=device, since=since, until=until, who=who, job=job, result=result, limit=limit, offset=offset
    )
    response.headers["X-Total-Count"] = str(total)
    link = next_link(request, offset, limit, total)
    if link is not None:
        response.headers["Link"] = link
    return [asdict(e) for e in entries]
