"""The facility-manager dashboard: the page at `/`, the login, static files and the HTML fragments htmx loads.

Reads come from the running services directly; every change the page makes (ack, shelve,
override, sweep, command) is an htmx request to the JSON API with the session cookie, so the
dashboard gets exactly the checks, audit and answers an API client gets.
"""

from __future__ import annotations

import json
import mimetypes
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Final, Literal
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from service.alarms.record import AlarmState
from service.alarms.rules import AlarmType
from service.api.deps import RANK, PageOffset, ServicesDep, Viewer, get_principal, require
from service.api.routes.hazards import hazard_out
from service.api.routes.hazards import prefill as hazard_prefill
from service.auth import sessions as session
from service.auth.principal import Principal
from service.config.calendar import WorkCalendar
from service.config.settings import Role
from service.config.site import VIOLATION_TYPES
from service.energy.quarterly import build_quarterly
from service.energy.violations import violations_report
from service.onboard.unassigned import unassigned_of
from service.services import Services
from service.web import accountability, i18n, messages, views
from service.web.render import STATIC, Formatter, render

router = APIRouter(tags=["dashboard"])

VIEWS: Final = ("supply", "rooms", "alarms", "energy", "schedule", "audit", "reports")
HISTORY_PAGE: Final = 20
AUDIT_PAGE: Final = 50
MAX_LOGIN_BODY: Final = 4096
CHART_EVERY: Final = timedelta(minutes=15)
# Pages hold role-specific live data (no caching) and buttons that act (never inside another site's
# frame). Scripts come only from /static: htmx runs without eval here.
PAGE_HEADERS: Final = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
}
HTML: Final[dict[int | str, dict[str, Any]]] = {200: {"content": {"text/html": {}}, "description": "an HTML page"}}
Lang = Annotated[Literal["zh", "en"] | None, Query(description="label language; remembered in a cookie")]


def _lang(request: Request) -> i18n.Lang:
    return i18n.pick(
        request.query_params.get("lang"), request.cookies.get(i18n.COOKIE), request.headers.get("accept-language")
    )


def _base(request: Request, svc: Services, role: Role | None) -> dict[str, Any]:
    """What every template gets: language, labels, role, site and a formatter."""
    lang = _lang(request)
    t = i18n.translator(lang)
    now = svc.clock.now()
    return {
        "lang": lang,
        "t": t,
        "role": role,
        "can_act": role is not None and RANK[role] >= RANK["operator"],
        "site": svc.site.site,
        "f": Formatter(svc.site.site.tz, now, t),
        "now": now,
        "violation_types": VIOLATION_TYPES,
        "say": lambda a: messages.alarm_message(svc.site, a.type, a.subject, a.value, t),
        "name_of": lambda subject: messages.subject_name(svc.site, subject, t),
        "who": lambda key: key or "",
    }


async def _people(svc: Services, ctx: dict[str, Any]) -> None:
    """Show API keys by their label (or role) instead of `key:<id>` wherever a person is named."""
    t = ctx["t"]
    names = {
        f"key:{k.id}": t("keylabel." + k.label, default=k.label) if k.label else f"{t('role.' + k.role)} {k.id[:6]}"
        for k in await svc.store.list_keys()
    }
    ctx["who"] = lambda key: names.get(key, key) if key else ""


def _html(body: str, status_code: int = 200, lang: str | None = None) -> HTMLResponse:
    response = HTMLResponse(body, status_code=status_code, headers=PAGE_HEADERS)
    if lang is not None:
        response.set_cookie(i18n.COOKIE, lang, max_age=365 * 86400, samesite="lax")
    return response


def _login_page(
    request: Request,
    svc: Services,
    *,
    error: str | None,
    status_code: int,
    next_url: str = "/",
    lang: str | None = None,
) -> Response:
    ctx = _base(request, svc, None)
    return _html(render("login.html", **ctx, error=error, next_url=next_url), status_code, lang)


def _safe_next(raw: str | None) -> str:
    """Only a local path: never another host (`//evil`, `https://...`)."""
    if not raw or not raw.startswith("/") or raw.startswith("//") or "\\" in raw:
        return "/"
    return raw


# -- page, login, logout, static ------------------------------------------------------------------


@router.get(
    "/",
    response_class=HTMLResponse,
    summary="The dashboard (HTML); the login page with 401 when not logged in",
    responses={**HTML, 401: {"content": {"text/html": {}}, "description": "not logged in: the login page"}},
)
async def page(
    request: Request,
    svc: ServicesDep,
    view: Annotated[str, Query(max_length=20, description=f"panel: {', '.join(VIEWS)}")] = "supply",
    lang: Lang = None,
) -> Response:
    """The whole page with one panel; the panels then stay live through `/api/events`."""
    try:
        principal = await get_principal(request, svc)
    except HTTPException as exc:
        if exc.status_code != status.HTTP_401_UNAUTHORIZED:
            raise
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return _login_page(request, svc, error=None, status_code=401, next_url=_safe_next(here), lang=lang)
    forbidden = view in OPERATOR_VIEWS and RANK[principal.role] < RANK["operator"]
    asked = view
    if view not in VIEWS or forbidden:
        view = "supply"
    ctx = await _render(PANELS[view], request, svc, principal.role)
    ctx["forbidden"] = (
        ctx["t"]("forbidden.view", view=ctx["t"]("nav." + asked), role=ctx["t"]("role." + principal.role))
        if forbidden
        else ""
    )
    ctx["view"] = view
    ctx["views"] = [v for v in VIEWS if v not in OPERATOR_VIEWS or ctx["can_act"]]
    ctx["badge"] = _badge(svc)
    ctx["sweep_labels"] = {k.removeprefix("sweep."): ctx["t"](k) for k in i18n.LABELS if k.startswith("sweep.")}
    return _html(render("page.html", **ctx), lang=lang)


@router.get("/login", response_class=HTMLResponse, summary="The login page", responses=HTML)
async def login_page(
    request: Request,
    svc: ServicesDep,
    lang: Lang = None,
    next: Annotated[str | None, Query(max_length=200, description="where to go after logging in")] = None,
) -> Response:
    """A form that exchanges an API key for a session cookie (POST /login)."""
    return _login_page(request, svc, error=None, status_code=200, next_url=_safe_next(next), lang=lang)


@router.post(
    "/login",
    response_class=HTMLResponse,
    summary="Exchange an API key for a dashboard session cookie",
    status_code=303,
    responses={
        303: {"description": "logged in: `wk_session` cookie set, redirect to `next`"},
        401: {"content": {"text/html": {}}, "description": "bad key: the login page again"},
        413: {"description": "form too large"},
        429: {"content": {"text/html": {}}, "description": "too many failed attempts"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "required": ["key"],
                        "properties": {
                            "key": {"type": "string", "maxLength": 512, "description": "an API key"},
                            "next": {"type": "string", "maxLength": 200, "description": "local path to go to"},
                        },
                    }
                }
            },
        }
    },
)
async def login(request: Request, svc: ServicesDep) -> Response:
    """Verify the key (failures count towards the same rate limit as API calls) and set an HttpOnly cookie.

    The cookie is SameSite=Lax so a link into the dashboard works; changes made with it need the
    `X-Requested-With` or `HX-Request` header (see service.auth.sessions). /login, /logout and
    /static are open: they are how a browser without a session gets one.
    """
    if int(request.headers.get("content-length") or 0) > MAX_LOGIN_BODY:
        raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, "a login form is a key and a path")
    body = (await request.body())[:MAX_LOGIN_BODY].decode("utf-8", "replace")
    form = parse_qs(body, max_num_fields=10)
    key = (form.get("key") or [""])[0].strip()
    next_url = _safe_next((form.get("next") or ["/"])[0])
    t = i18n.translator(_lang(request))
    cache = svc.key_cache
    client = request.client.host if request.client else "unknown"
    if cache.blocked(client):
        return _login_page(request, svc, error=t("login.blocked"), status_code=429, next_url=next_url)
    if not key:
        return _login_page(request, svc, error=t("login.missing"), status_code=401, next_url=next_url)
    found = await svc.store.find_key(key) if len(key) <= 512 else None
    if found is None:
        cache.fail(client)
        return _login_page(request, svc, error=t("login.bad"), status_code=401, next_url=next_url)
    cookie, max_age = svc.sessions.issue(found.id, found.role, svc.clock.now())
    response = RedirectResponse(next_url, status_code=status.HTTP_303_SEE_OTHER)
    response.set_cookie(
        session.COOKIE,
        cookie,
        max_age=max_age,
        httponly=True,
        samesite=session.SAMESITE,
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout", include_in_schema=False)
async def logout(request: Request, svc: ServicesDep) -> Response:
    """End the session server-side (a copied cookie stops working too) and delete the cookie."""
    cookie = request.cookies.get(session.COOKIE)
    if cookie:
        await svc.sessions.end(cookie, svc.clock.now())
    response = RedirectResponse("/login", status_code=status.HTTP_303_SEE_OTHER)
    response.delete_cookie(session.COOKIE, httponly=True, samesite=session.SAMESITE)
    return response


@router.get("/static/{path:path}", include_in_schema=False)
async def static(path: str) -> Response:
    """The dashboard's CSS, JavaScript and vendored libraries (no key needed)."""
    file = (STATIC / path).resolve()
    if not file.is_relative_to(STATIC) or not file.is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no static file '{path}'")
    media = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
    # Pages link static files with ?v=<content hash>, so a day of caching never serves stale code.
    return FileResponse(file, media_type=media, headers={"Cache-Control": "public, max-age=86400"})


# -- panels ------------------------------------------------------------------------------------------


def _badge(svc: Services) -> dict[str, int]:
    return views.badge_counts(svc.core.engine.active())


async def _supply(request: Request, svc: Services, ctx: dict[str, Any]) -> dict[str, Any]:
    now = ctx["now"]
    supply = svc.core.state.supply(now)
    alarms = [a for a in svc.core.engine.active() if a.type in views.SUPPLY_TYPES or a.subject in _supply_devices(svc)]
    return {
        "diagram": views.diagram(svc.site, supply),
        "layout": views,
        "supply": supply,
        "conf": svc.site,
        "compliance": views.compliance(svc.site, supply, svc.core.last_transfers),
        "supply_alarms": views.alarm_rows(svc.site, alarms),
        "detail_text": lambda detail: messages.compliance_detail(detail, ctx["lang"]),
    }


def _supply_devices(svc: Services) -> set[str]:
    site = svc.site
    ids = {s.meter for s in site.sources} | {g.device for g in site.generators} | {g.meter for g in site.generators}
    ids |= {t.device for t in site.transfer_switches}
    return {i for i in ids if i}


async def _rooms(request: Request, svc: Services, ctx: dict[str, Any]) -> dict[str, Any]:
    now = ctx["now"]
    department = request.query_params.get("department") or ""
    state = svc.core.state

    def on_of(device: str) -> bool | None:
        point = state.point(device, "on", now)
        return point.value if point is not None and isinstance(point.value, bool) else None

    room_views = [v for v in state.rooms(now) if not department or v.department == department]
    cards = views.room_cards(svc.site, room_views, svc.core.overrides, svc.core.engine.active(), on_of, ctx["t"])
    return {
        "cards": cards,
        "department": department,
        "departments": [(d.id, d.name) for d in svc.site.departments],
        "lit_empty": sum(1 for c in cards if c.view.lights_on and c.view.occupied is False),
        "acs_on": sum(1 for c in cards for a in c.view.acs if a.on),
        "office_kw": sum(c.view.power_w or 0.0 for c in cards if not c.critical) / 1000,
        "violations": sum(1 for c in cards if c.alarms),
        "unassigned": [] if department else unassigned_of(svc.site, svc.broker_watch, svc.core.state),
        "thresholds": svc.site.site.thresholds,
    }


async def _alarms(request: Request, svc: Services, ctx: dict[str, Any]) -> dict[str, Any]:
    await _people(svc, ctx)
    return {
        "active": views.alarm_rows(svc.site, svc.core.engine.active()),
        "flood": svc.core.flood_now(),
        "types": [(t.value, ctx["t"](f"type.{t.value}")) for t in AlarmType],
        "states": [(s.value, ctx["t"](f"state.{s.value}")) for s in AlarmState],
    }


async def _energy(request: Request, svc: Services, ctx: dict[str, Any]) -> dict[str, Any]:
    now: datetime = ctx["now"]
    calendar = WorkCalendar(svc.site.calendar, svc.site.site.tz)
    day_start, day_end = views.day_bounds(now, calendar)
    month, month_start, month_end = views.month_of(now, calendar)
    today = views.energy_rows(svc.site, await svc.store.energy_by_department(day_start, day_end))
    this_month = views.energy_rows(svc.site, await svc.store.energy_by_department(month_start, month_end))
    chart: dict[str, Any] = {"x": [], "series": []}
    buckets = int((min(now, day_end) - day_start) / CHART_EVERY) + 1
    chart["x"] = [int((day_start + i * CHART_EVERY).timestamp()) for i in range(buckets)]
    for d in svc.site.departments:
        if d.meter is None:
            continue
        rollups = await svc.store.telemetry(d.meter, "power", day_start, day_end, CHART_EVERY)
        by_ts = {int(r.minute.timestamp()): round(r.mean / 1000, 2) for r in rollups}
        chart["series"].append({"label": d.name, "values": [by_ts.get(x) for x in chart["x"]]})
    bands = [b.name for b in svc.site.tariff.bands] if svc.site.tariff else []
    return {
        "today": today,
        "month_rows": this_month,
        "month": month,
        "bands": bands,
        "prices": {b.name: b.price for b in svc.site.tariff.bands} if svc.site.tariff else {},
        "currency": svc.site.tariff.currency if svc.site.tariff else "",
        "strip": views.tariff_strip(svc.site),
        "hour_now": now.astimezone(svc.site.site.tz).hour,
        "chart_json": json.dumps(chart),
        "has_chart": any(v is not None for series in chart["series"] for v in series["values"]),
        "has_data": any(r.kwh for r in this_month),
    }


async def _schedule(request: Request, svc: Services, ctx: dict[str, Any]) -> dict[str, Any]:
    now: datetime = ctx["now"]
    calendar = WorkCalendar(svc.site.calendar, svc.site.site.tz)
    try:
        schedules: list[dict[str, Any]] | None = await svc.scheduler.schedules()
    except RuntimeError:  # a service assembled without the scheduler (e.g. a read-only replica)
        schedules = None
    overrides = await svc.store.list_overrides(limit=20)
    await _people(svc, ctx)
    return {
        "working_now": calendar.is_working(now),
        "today_hours": views.today_hours(calendar, now),
        "sweeps": svc.site.calendar.sweeps,
        "next_sweep": calendar.next_sweep(now),
        "schedules": schedules,
        "overrides": views.override_rows(svc.site, overrides, now),
        "rooms": views.overridable_rooms(svc.site),
        "hours": views.override_hours(svc.site),
        "max_h": svc.site.site.thresholds.override_max_h,
    }


async def _audit(request: Request, svc: Services, ctx: dict[str, Any]) -> dict[str, Any]:
    await _people(svc, ctx)
    ctx["change"] = lambda value: messages.change_text(value, svc.site, ctx["t"], ctx["f"].when)
    ctx["detail_text"] = lambda detail: messages.audit_detail(detail, ctx["lang"], svc.site, ctx["f"].when)
    q = request.query_params
    device = q.get("device") or None
    result = q.get("result") or None
    offset = int(q["offset"]) if q.get("offset", "").isdigit() else 0
    total = await svc.store.count_audit(device=device, result=result)
    entries = await svc.store.list_audit(device=device, result=result, limit=AUDIT_PAGE, offset=offset)
    return {
        "entries": entries,
        "total": total,
        "offset": offset,
        "page": AUDIT_PAGE,
        "device": device or "",
        "result": result or "",
        "devices": [d.id for d in svc.site.devices],
    }


async def _reports(request: Request, svc: Services, ctx: dict[str, Any]) -> dict[str, Any]:
    """Violations and fines of a month, the quarter's key figures, the hazard register."""
    now: datetime = ctx["now"]
    site = svc.site
    t = ctx["t"]
    month, quarter, problems = accountability.pick_periods(
        site, now, request.query_params.get("month"), request.query_params.get("quarter")
    )
    notices = [t("reports.bad_period", what=t(f"reports.{what}"), value=value) for what, value in problems]
    violations = await violations_report(svc.store, site, month, now=now)
    summary = await build_quarterly(svc.store, site, quarter, now=now)
    hazards = [hazard_out(site, h, now) for h in await svc.store.list_hazards()]
    hazards.sort(key=lambda h: (h.status == "closed", not h.overdue, h.due))
    prefill = None
    source = request.query_params.get("hazard_from")
    if source and ctx["can_act"]:
        alarm = await svc.store.get_alarm(source[:200])
        if alarm is not None and alarm.type not in VIOLATION_TYPES:
            prefill = hazard_prefill(site, alarm.type, alarm.subject, alarm.severity, alarm.message, alarm.id, now)
    return {
        "month": month,
        "quarter": quarter,
        "months": accountability.recent_months(site, now),
        "quarters": accountability.recent_quarters(site, now),
        "notices": notices,
        "violations": violations,
        "summary": summary,
        "hazards": hazards,
        "prefill": prefill,
        "departments": [(d.id, d.name) for d in site.departments],
        "is_admin": ctx["role"] == "admin",
        "currency": site.tariff.currency if site.tariff else "",
    }


async def _badge_counts(request: Request, svc: Services, ctx: dict[str, Any]) -> dict[str, Any]:
    return {"badge": _badge(svc)}


PanelBuilder = Callable[[Request, Services, dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class Fragment:
    """One HTML fragment the page loads with htmx: its path, its template, the least role that sees
    it, and what the template gets beside the common context (`_base`)."""

    path: str
    template: str
    role: Role
    build: PanelBuilder
    about: str


FRAGMENTS: Final[tuple[Fragment, ...]] = (
    # path, template, least role, what the template gets, what it shows
    Fragment("/ui/badge", "_badge.html", "viewer", _badge_counts, "The alarm counts in the header."),
    Fragment(
        "/ui/supply", "_supply.html", "viewer", _supply, "The single-line diagram, supply figures and compliance."
    ),
    Fragment("/ui/rooms", "_rooms.html", "viewer", _rooms, "The room grid."),
    Fragment("/ui/alarms", "_alarms.html", "viewer", _alarms, "Active alarms and the history filters."),
    Fragment(
        "/ui/alarms/active",
        "_alarms_active.html",
        "viewer",
        _alarms,
        "Only the active alarm list (refreshed on alarm events).",
    ),
    Fragment(
        "/ui/energy",
        "_energy.html",
        "viewer",
        _energy,
        "Energy by department today and this month, tariff bands, load chart.",
    ),
    Fragment(
        "/ui/schedule", "_schedule.html", "viewer", _schedule, "Working calendar, sweeps, scheduled jobs, overrides."
    ),
    Fragment(
        "/ui/reports", "_reports.html", "viewer", _reports, "Violations and fines, the quarter, the hazard register."
    ),
    Fragment("/ui/audit", "_audit.html", "operator", _audit, "The audit log (operator, admin)."),
)
# The page's panels: the fragment of each view.
PANELS: Final = {f.path.removeprefix("/ui/"): f for f in FRAGMENTS if f.path.removeprefix("/ui/") in VIEWS}
OPERATOR_VIEWS: Final = frozenset(view for view, f in PANELS.items() if RANK[f.role] > RANK["viewer"])


async def _render(fragment: Fragment, request: Request, svc: Services, role: Role) -> dict[str, Any]:
    """The context of a fragment's template for a caller of `role`."""
    ctx = _base(request, svc, role)
    ctx.update(await fragment.build(request, svc, ctx))
    return ctx


def _fragment_route(fragment: Fragment) -> Callable[..., Awaitable[Response]]:
    """The GET endpoint of one fragment, admitting callers of at least its role."""

    async def endpoint(request: Request, svc: ServicesDep, who: Principal) -> Response:
        return _html(render(fragment.template, **await _render(fragment, request, svc, who.role)))

    # Annotations are strings here (postponed evaluation) that FastAPI resolves in this module's
    # globals, where this fragment's role check is not: hand it the alias itself.
    endpoint.__annotations__["who"] = Annotated[Principal, Depends(require(fragment.role))]
    endpoint.__doc__ = fragment.about
    return endpoint


for _fragment in FRAGMENTS:
    router.add_api_route(
        _fragment.path,
        _fragment_route(_fragment),
        methods=["GET"],
        name="ui" + _fragment.path.removeprefix("/ui").replace("/", "_"),
        include_in_schema=False,
    )


@router.get("/ui/alarms/history", include_in_schema=False)
async def ui_alarm_history(
    request: Request,
    svc: ServicesDep,
    who: Viewer,
    type: Annotated[str, Query(max_length=64)] = "",
    state: Annotated[str, Query(max_length=32)] = "",
    offset: PageOffset = 0,
) -> Response:
    """One page of stored alarms, newest first, by type and state."""
    ctx = _base(request, svc, who.role)
    await _people(svc, ctx)
    states = [state] if state in AlarmState.__members__ else None
    kind = type if type in AlarmType.__members__ else None
    stored = await svc.store.list_alarms(states=states, type=kind, limit=HISTORY_PAGE + 1, offset=offset)
    return _html(
        render(
            "_alarm_history.html",
            **ctx,
            rows=stored[:HISTORY_PAGE],
            more=len(stored) > HISTORY_PAGE,
            offset=offset,
            page=HISTORY_PAGE,
            type=kind or "",
            state=state if states else "",
            where=lambda subject: views.where(svc.site, subject),
        )
    )


@router.get("/reports/quarterly/print", include_in_schema=False)
async def quarterly_print(request: Request, svc: ServicesDep, who: Viewer, lang: Lang = None) -> Response:
    """The quarterly summary as a printable A4 document (Chinese unless asked otherwise)."""
    ctx = _base(request, svc, who.role)
    if lang is None and request.cookies.get(i18n.COOKIE) is None:
        ctx["lang"], ctx["t"] = "zh", i18n.translator("zh")
        ctx["f"] = Formatter(svc.site.site.tz, ctx["now"], ctx["t"])
    _, quarter, _ = accountability.pick_periods(svc.site, ctx["now"], None, request.query_params.get("quarter"))
    summary = await build_quarterly(svc.store, svc.site, quarter, now=ctx["now"])
    return _html(render("report_quarterly.html", **ctx, summary=summary), lang=lang)
