"""Every route of the OpenAPI document (and the dashboard's hidden ones) with no key and with each role.

No key: 401, except the open routes. A role below the route's: 403. A role at or above it: anything
but 401/403/5xx (a made-up id may well be 404 or 422). Which role a route needs is written down here,
not read from the code under test; a changing route that is not listed fails the walk.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.api.routes import ROUTERS
from service.settings import Role
from service.site import Site
from service.web import session
from tests.harness import running_service

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
}
# Values for path and required query parameters: made up where a miss is harmless, real where needed.
PATH_VALUES = {"alarm_id": "no-such-alarm", "schedule_id": "no-such-schedule", "override_id": "987654321"}
PATH_VALUES |= {"device_id": "no-such-device", "path": "app.css"}
QUERY_VALUES = {"device": "meter-grid-a", "point": "power", "month": "2026-11"}


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
    kind = schema.get("type")
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


def request_for(method: str, path: str, op: dict[str, Any], doc: dict[str, Any], login_key: str) -> dict[str, Any]:
    """URL, query and body for one call of a route (the login form gets a real key)."""
    url = re.sub(r"{(\w+)(:\w+)?}", lambda m: PATH_VALUES.get(m.group(1), "x"), path)
    params = {
        p["name"]: QUERY_VALUES.get(p["name"], minimal(p.get("schema", {}), doc))
        for p in op.get("parameters", [])
        if p["in"] == "query" and p.get("required")
    }
    kw: dict[str, Any] = {"params": params}
    content = op.get("requestBody", {}).get("content", {})
    if "application/json" in content:
        kw["json"] = minimal(content["application/json"]["schema"], doc)
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
    for route in (r for router in ROUTERS for r in router.routes):
        if getattr(route, "include_in_schema", True):
            continue
        for method in sorted(getattr(route, "methods", ()) or ()):
            if method != "HEAD":
                out.append((method, route.path))
    return out


async def test_every_route_with_every_role(demo_site: Site, tmp_path: Path) -> None:
    """401 without a key, 403 below the route's role, neither (nor 5xx) at or above it."""
    async with running_service(demo_site, tmp_path, drivers=False) as svc:
        async with svc.client("") as anon:
            doc = (await anon.get("/openapi.json")).json()
        hidden = hidden_routes()
        assert ("GET", "/ui/rooms") in hidden and ("GET", "/static/{path:path}") in hidden
        walked = routes(doc, [(m, p.replace(":path", "")) for m, p in hidden])
        assert len(walked) >= 30
        problems: list[str] = []
        for method, path, op in walked:
            need = needs(method, path)
            req = request_for(method, path, op, doc, svc.keys["viewer"])
            for role in ("", *ROLES):
                async with svc.client(role) as client:
                    r = await call(client, req)
                who = role or "no key"
                if r.status_code >= 500:
                    problems.append(f"{method} {path} as {who}: {r.status_code}")
                elif need == OPEN or RANK[role] >= RANK[need]:
                    if r.status_code in (401, 403):
                        problems.append(f"{method} {path} as {who}: {r.status_code}, expected access")
                elif not role and r.status_code != 401:
                    problems.append(f"{method} {path} without a key: {r.status_code}, expected 401")
                elif role and r.status_code != 403:
                    problems.append(f"{method} {path} as {who}: {r.status_code}, expected 403")
        assert not problems, "\n".join(problems)


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
    made with the cookie needs a custom header; a forged cookie or a logout ends access."""
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

        async with svc.client("") as c:
            await _login(c, svc.keys["admin"])
            assert (await c.get("/api/rooms")).status_code == 200
            r = await c.post("/logout")
            assert r.status_code == 303
            assert (await c.get("/api/rooms")).status_code == 401
            assert (await c.get("/api/events")).status_code == 401


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
