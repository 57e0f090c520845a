"""Every route of the OpenAPI document (and the hidden ones) with no key and with each role.

No key: 401, except the open routes. A role below the route's: 403. A role at or above it: success
(2xx, or the 303 of a login form), proven on things that exist: each call of a route with an id gets
an existing one (a fresh alarm to acknowledge or shelve, a fresh override to end, the after-hours
sweep, a real device of the simulated site), and a body the route takes. Which role a route needs is
written down here, not read from the code under test; a changing route that is not listed fails
the walk.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.routing import Route

from service.alarms import rules
from service.api.routes import ROUTERS
from service.auth import sessions as session
from service.config.settings import Role
from service.config.site import Site
from service.store.db import AfterHoursFinding
from tests.api.conftest import Live
from tests.harness import RunningService, running_service

ROLES: tuple[Role, ...] = ("viewer", "operator", "admin")
RANK = {"": -1, "viewer": 0, "operator": 1, "admin": 2}
OPEN = "open"

# Routes that need more than viewer, or nothing at all; every other GET needs viewer.
NEEDS: dict[tuple[str, str], str] = {
    ("GET", "/healthz"): OPEN,
    ("GET", "/metrics"): OPEN,
    ("GET", "/login"): OPEN,
    ("POST", "/login"): OPEN,
    ("POST", "/logout"): OPEN,
    ("GET", "/static/{path}"): OPEN,
    ("POST", "/api/alarms/{alarm_id}/ack"): "operator",
    ("POST", "/api/alarms/{alarm_id}/shelve"): "operator",
    ("POST", "/api/schedules/{schedule_id}/run"): "operator",
    ("PATCH", "/api/schedules/{schedule_id}"): "admin",
    ("POST", "/api/overrides"): "operator",
    ("DELETE", "/api/overrides/{override_id}"): "operator",
    ("POST", "/api/devices/{device_id}/commands"): "operator",
    ("GET", "/api/audit"): "operator",
    ("GET", "/ui/audit"): "operator",
    ("POST", "/api/reports/violations/fines"): "admin",
    ("POST", "/api/hazards"): "operator",
    ("PATCH", "/api/hazards/{hazard_id}"): "operator",
    ("GET", "/api/hazards/from-alarm/{alarm_id}"): "operator",
}
# Values for path and required query parameters that exist; alarm and override ids are made per call.
PATH_VALUES = {"schedule_id": "after-hours", "device_id": "r2119-light", "path": "app.css"}
QUERY_VALUES = {"device": "meter-grid-a", "point": "power", "month": "2026-11", "quarter": "2026-Q3"}


def needs(method: str, path: str) -> str:
    """The least role a route admits ('open' for none)."""
    if (method, path) in NEEDS:
        return NEEDS[(method, path)]
    assert method == "GET", f"{method} {path} changes something: say in NEEDS which role it needs"
    return "viewer"


def _resolve(schema: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        node: Any = doc
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def minimal(schema: dict[str, Any], doc: dict[str, Any]) -> Any:
    """The smallest value a JSON schema accepts, from its examples or its type."""
    schema = _resolve(schema, doc)
    if schema.get("examples"):
        return schema["examples"][0]
    if "anyOf" in schema:
        return minimal(schema["anyOf"][0], doc)
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type", "")
    if kind == "object":
        props = schema.get("properties", {})
        return {k: minimal(props[k], doc) for k in schema.get("required", [])}
    if schema.get("format") == "date-time":
        return "2030-01-01T00:00:00+08:00"
    return {"string": "x", "integer": 1, "number": 1.0, "boolean": False, "array": []}.get(kind)


def routes(doc: dict[str, Any], hidden: list[tuple[str, str]]) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path template, operation) of every documented route and every hidden one."""
    out = [(m.upper(), p, op) for p, ops in doc["paths"].items() for m, op in ops.items()]
    documented = {(m, p) for m, p, _ in out}
    out += [(m, p, {}) for m, p in hidden if (m, p) not in documented]
    return out


class Things:
    """Existing things for the routes' ids, a fresh one per call where a call uses it up."""

    def __init__(self, svc: RunningService) -> None:
        self.svc = svc
        self.made = 0

    async def alarm(self) -> str:
        """A new open alarm (a dropped-telemetry finding on a subject of its own)."""
        self.made += 1
        subject = f"walk-{self.made}"
        await self.svc.services.core.report_now(rules.telemetry_dropped(subject, dropped=1))
        return next(a.id for a in self.svc.services.core.engine.active() if a.subject == subject)

    async def override(self) -> str:
        """A new running override of a room."""
        now = self.svc.services.clock.now()
        made = await self.svc.services.store.add_override(
            room="r2119", until=now + timedelta(hours=1), reason="walk", created_by="test", created_at=now
        )
        return str(made.id)

    async def hazard(self) -> str:
        """A new open hazard."""
        now = self.svc.services.clock.now()
        made = await self.svc.services.store.add_hazard(
            title="walk", location="", department="admin", severity="low", due=now + timedelta(days=1),
            source_alarm=None, created_by="test", created_at=now,
        )  # fmt: skip
        return str(made.id)

    async def violation(self) -> str:
        """A new violation: a room found on by an after-hours sweep on a night of its own."""
        self.made += 1
        night = (self.svc.services.clock.now() - timedelta(days=self.made)).date().isoformat()
        at = datetime.fromisoformat(f"{night}T20:00:00+08:00")
        await self.svc.services.store.add_after_hours_finding(
            AfterHoursFinding(room="r2119", night=night, at=at, department="marketing", devices=[], job="walk")
        )
        return f"sweep:r2119:{night}"

    async def path_value(self, name: str) -> str:
        if name == "alarm_id":
            return await self.alarm()
        if name == "override_id":
            return await self.override()
        if name == "hazard_id":
            return await self.hazard()
        return PATH_VALUES[name]

    async def body(self, path: str) -> dict[str, Any] | None:
        """Bodies the schema's examples would get wrong today: times relative to now, things that exist."""
        soon = (self.svc.services.clock.now() + timedelta(hours=1)).isoformat()
        if path.endswith("/shelve"):
            return {"until": soon}
        if path == "/api/overrides":
            return {"room": "r2119", "until": soon, "reason": "auth walk"}
        if path == "/api/hazards":
            return {"title": "walk", "department": "admin", "due": soon}
        if path == "/api/hazards/{hazard_id}":
            return {"status": "rectifying"}
        if path == "/api/reports/violations/fines":
            return {"violation": await self.violation(), "status": "waived", "reason": "auth walk", "amount": 0}
        return None


async def request_for(
    method: str, path: str, op: dict[str, Any], doc: dict[str, Any], login_key: str, things: Things
) -> dict[str, Any]:
    """URL, query and body for one call of a route (the login form gets a real key)."""
    values = {name: await things.path_value(name) for name in re.findall(r"{(\w+)(?::\w+)?}", path)}
    url = re.sub(r"{(\w+)(:\w+)?}", lambda m: values[m.group(1)], path)
    params = {
        p["name"]: QUERY_VALUES.get(p["name"], minimal(p.get("schema", {}), doc))
        for p in op.get("parameters", [])
        if p["in"] == "query" and p.get("required")
    }
    kw: dict[str, Any] = {"params": params}
    content = op.get("requestBody", {}).get("content", {})
    if "application/json" in content:
        kw["json"] = await things.body(path) or minimal(content["application/json"]["schema"], doc)
    elif "application/x-www-form-urlencoded" in content:
        kw["data"] = {"key": login_key}
    elif method in ("POST", "PATCH", "PUT"):
        kw["json"] = {}
    return {"method": method, "url": url, **kw}


async def call(client: httpx.AsyncClient, req: dict[str, Any]) -> httpx.Response:
    """One request; an event stream is closed as soon as its status is known."""
    req = dict(req)
    async with client.stream(req.pop("method"), req.pop("url"), **req) as response:
        if "text/event-stream" not in response.headers.get("content-type", ""):
            await response.aread()
        return response


def hidden_routes() -> list[tuple[str, str]]:
    """Routes the app mounts but does not document (dashboard fragments, static files, logout)."""
    out = []
    for route in (r for router in ROUTERS for r in router.routes if isinstance(r, Route)):
        if route.include_in_schema:
            continue
        for method in sorted(route.methods or ()):
            if method != "HEAD":
                out.append((method, route.path))
    return out


async def test_every_route_with_every_role(live: Live) -> None:
    """401 without a key, 403 below the route's role, success at or above it, on ids that exist."""
    svc = live.svc
    async with svc.client("") as anon:
        assert (await anon.get("/openapi.json")).status_code == 401
    async with svc.client("viewer") as viewer:
        doc = (await viewer.get("/openapi.json")).json()
    hidden = hidden_routes()
    assert ("GET", "/ui/rooms") in hidden and ("GET", "/static/{path:path}") in hidden
    assert {("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/redoc")} <= set(hidden)
    walked = routes(doc, [(m, p.replace(":path", "")) for m, p in hidden])
    assert len(walked) >= 30
    things = Things(svc)
    problems: list[str] = []
    proven: set[tuple[str, str]] = set()
    for method, path, op in walked:
        need = needs(method, path)
        for role in ("", *ROLES):
            req = await request_for(method, path, op, doc, svc.keys["viewer"], things)
            async with svc.client(role) as client:
                r = await call(client, req)
            who = role or "no key"
            if need == OPEN or RANK[role] >= RANK[need]:
                if not 200 <= r.status_code < 400:
                    problems.append(f"{method} {req['url']} as {who}: {r.status_code}, expected success: {r.text[:99]}")
                elif RANK[role] == RANK.get(need, -1) or (need == OPEN and not role):
                    proven.add((method, path))
            elif not role and r.status_code != 401:
                problems.append(f"{method} {path} without a key: {r.status_code}, expected 401")
            elif role and r.status_code != 403:
                problems.append(f"{method} {path} as {who}: {r.status_code}, expected 403")
    assert not problems, "\n".join(problems)
    with_ids = {(m, p) for m, p, _ in walked if "{" in p}
    assert len(with_ids) >= 8 and with_ids <= proven


async def test_bad_keys_and_cors(demo_site: Site, tmp_path: Path) -> None:
    """A wrong key or scheme is 401 with WWW-Authenticate; no CORS headers are ever granted."""
    async with running_service(demo_site, tmp_path, drivers=False) as svc, svc.client("") as c:
        for header in ("Bearer not-a-key", "Basic dXNlcjpwYXNz", "Bearer"):
            r = await c.get("/api/rooms", headers={"Authorization": header})
            assert r.status_code == 401, header
            assert r.headers["www-authenticate"] == "Bearer"
            assert "key" in r.json()["detail"].lower() or "authorization" in r.json()["detail"].lower()
        origin = {"Origin": "https://evil.example"}
        asks = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
        preflight = await c.options("/api/devices/r2119-light/commands", headers={**origin, **asks})
        assert "access-control-allow-origin" not in preflight.headers
        r = await c.get("/healthz", headers=origin)
        assert r.status_code == 200 and "access-control-allow-origin" not in r.headers


async def _login(c: httpx.AsyncClient, key: str) -> httpx.Response:
    return await c.post("/login", data={"key": key, "next": "/?view=rooms"})


async def test_session_cookie_login_roles_and_csrf(demo_site: Site, tmp_path: Path) -> None:
    """The login exchanges a key for an HttpOnly cookie that the API accepts with the key's role; a change
    made with the cookie needs a custom header; a forged cookie is refused; a logout ends the session for
    every copy of the cookie."""
    async with running_service(demo_site, tmp_path, drivers=False) as svc:
        async with svc.client("") as c:
            r = await _login(c, "wrong-key")
            assert r.status_code == 401 and 'name="key"' in r.text
            assert session.COOKIE not in c.cookies
            r = await c.post("/login", data={"key": svc.keys["viewer"], "next": "//evil.example/"})
            assert r.status_code == 303 and r.headers["location"] == "/"
            cookie = r.headers["set-cookie"]
            assert "HttpOnly" in cookie and "SameSite=lax" in cookie and svc.keys["viewer"] not in cookie
            assert (await c.get("/api/rooms")).status_code == 200
            page = await c.get("/?view=alarms")
            assert page.status_code == 200 and "<nav" in page.text
            # A viewer's cookie may look but not act, even with the CSRF header.
            r = await c.post("/api/alarms/x/ack", headers={"HX-Request": "true"})
            assert r.status_code == 403 and "operator" in r.json()["detail"]
            assert (await c.get("/api/audit")).status_code == 403

        async with svc.client("") as c:
            r = await _login(c, svc.keys["operator"])
            assert r.status_code == 303 and r.headers["location"] == "/?view=rooms"
            # No custom header: a cross-site form could have sent this.
            r = await c.post("/api/alarms/x/ack")
            assert r.status_code == 403 and "X-Requested-With" in r.json()["detail"]
            r = await c.post("/api/alarms/x/ack", headers={"X-Requested-With": "fetch"})
            assert r.status_code == 404
            assert (await c.get("/api/audit")).status_code == 200
            forged = c.cookies[session.COOKIE].replace("operator", "admin")
            c.cookies.set(session.COOKIE, forged)
            assert (await c.get("/api/rooms")).status_code == 401
            assert (await c.get("/")).status_code == 401

        async with svc.client("") as c, svc.client("") as thief:
            await _login(c, svc.keys["admin"])
            assert (await c.get("/api/rooms")).status_code == 200
            copied = c.cookies[session.COOKIE]
            thief.cookies.set(session.COOKIE, copied)
            assert (await thief.get("/api/rooms")).status_code == 200
            r = await c.post("/logout")
            assert r.status_code == 303
            assert (await c.get("/api/rooms")).status_code == 401
            # The session ended on the server: a copy of the cookie no longer works either.
            assert (await thief.get("/api/rooms")).status_code == 401
            assert (await thief.get("/api/events")).status_code == 401
            assert (await thief.get("/")).status_code == 401
            # The key itself still logs in.
            r = await _login(c, svc.keys["admin"])
            assert r.status_code == 303 and (await c.get("/api/rooms")).status_code == 200


@pytest.mark.parametrize("role", ["viewer", "operator"])
async def test_dashboard_shows_controls_by_role(demo_site: Site, tmp_path: Path, role: str) -> None:
    """Viewers get no control buttons (ack, shelve, override, sweep, commands) nor the audit tab."""
    markers = ("hx-post=", "hx-delete=", 'id="override-form"', 'id="run-sweep"')
    async with running_service(demo_site, tmp_path, drivers=False) as svc, svc.client(role) as c:
        pages = [(await c.get(f"/?view={v}")).text for v in ("supply", "rooms", "alarms", "schedule", "energy")]
        fragments = [(await c.get(f"/ui/{v}")).text for v in ("rooms", "alarms/active", "schedule")]
        found = [m for text in pages + fragments for m in markers if m in text]
        if role == "viewer":
            assert not found
            assert 'data-view="audit"' not in pages[0]
        else:
            assert 'id="override-form"' in pages[3] and 'id="run-sweep"' in pages[3]
            assert 'data-view="audit"' in pages[0]
