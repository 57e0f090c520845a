"""Who may do what: keys on every route, roles, hashed keys, rate limits, the allow-list, audit, secrets.

Routes are enumerated from the application itself (every router the API mounts and every path of
its OpenAPI schema), so a route added later is checked without editing this file. The public
allow-list is the contract: `/healthz`, `/metrics`, and what the dashboard needs before a login
(its login and logout form and its static files). The API description (`/openapi.json`, `/docs`,
`/redoc`) needs a key like the data.

Writes are watched where they would land: a Modbus tap in front of the simulated meters, switch
and generator records every function code the service sends, and an MQTT client subscribed to
every command topic records every command published.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import pytest
import yaml
from pydantic import ValidationError

from service.alarms.record import Alarm, AlarmState, Severity
from service.api.routes import ROUTERS
from service.auth import principal
from service.clock import SystemClock
from service.config.settings import Settings
from service.config.site import Device, DeviceRole, Site, SiteError, parse_site
from service.notify.notifier import Notifier
from simulators.runner import Simulation
from tests import servers
from tests.conftest import DEMO_SITE, site_for_test
from tests.drivers.modbus_tap import ModbusTap
from tests.faults.helpers import ROOT, ServiceProcess, figure
from tests.harness import RunningService, eventually, running_service
from tests.smtp import SmtpSink

VALID_SITE = DEMO_SITE.read_text(encoding="utf-8").split("\nnotifications:", 1)[0] + "\n"

PUBLIC = {
    ("GET", "/healthz"),
    ("GET", "/metrics"),
    ("GET", "/login"),
    ("POST", "/login"),
    ("POST", "/logout"),
    ("GET", "/static/{path:path}"),
}
DESCRIPTION = {("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/redoc")}
SAMPLE_PARAMS = {
    "alarm_id": "redundancy_lost:hq:20260101T000000.000000Z",
    "schedule_id": "after-hours",
    "override_id": "1",
    "hazard_id": "1",
    "device_id": "r2119-light",
    "path": "htmx.min.js",
}
MUTATING = {"POST", "PUT", "PATCH", "DELETE"}


def routes(svc: RunningService) -> list[tuple[str, str]]:
    """(method, path template) of every route the app serves."""
    found: set[tuple[str, str]] = set()
    for router in ROUTERS:
        for r in router.routes:
            for m in getattr(r, "methods", None) or ():
                if m != "HEAD":
                    found.add((m, r.path))  # type: ignore[attr-defined]
    for path, ops in svc.app.openapi()["paths"].items():
        found |= {(m.upper(), path) for m in ops}
    found |= DESCRIPTION  # served by a router of ours, not FastAPI's open defaults
    return sorted(found)


def concrete(path: str) -> str:
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: SAMPLE_PARAMS[m.group(1)], path)


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[RunningService]:
    """The service of the demo site without drivers: the API alone."""
    site = site_for_test(f"mqtt://127.0.0.1:{servers.free_port()}")
    async with running_service(site, tmp_path, drivers=False) as svc:
        yield svc


async def test_every_route_needs_a_key_except_health_and_metrics(api: RunningService) -> None:
    table = routes(api)
    leaks: list[str] = []
    checked = 0
    async with api.client("") as c:
        for method, path in table:
            if (method, path) in PUBLIC:
                continue
            checked += 1
            r = await c.request(method, concrete(path), json={} if method in MUTATING else None)
            if r.status_code != 401:
                leaks.append(f"{method} {path}: {r.status_code}")
        r = await c.get("/api/devices", headers={"Authorization": "Bearer not-a-key-of-this-site"})
        bad_key = r.status_code
        open_health = (await c.get("/healthz")).status_code
        open_metrics = (await c.get("/metrics")).status_code
    async with api.client("viewer") as viewer:
        described = {path: (await viewer.get(path)).status_code for _, path in sorted(DESCRIPTION)}
        # FastAPI's own open description routes are not mounted at all.
        assert (await viewer.get("/docs/oauth2-redirect")).status_code == 404
    public_served = sorted({p for m, p in PUBLIC if (m, p) in table})
    figure(
        "routes-need-a-key",
        f"{checked} of {len(table)} routes answer 401 without a key ({len(leaks)} do not), the API description "
        f"({', '.join(described)}) among them, served to a viewer key ({sorted(set(described.values()))}); an "
        f"unknown key gets {bad_key}; open by design: {', '.join(public_served)}",
    )
    assert leaks == []
    assert bad_key == 401 and open_health == 200 and open_metrics == 200
    assert set(described.values()) == {200}
    assert checked >= 25, "the route table looks incomplete"


async def test_a_viewer_gets_403_on_every_control_route(api: RunningService) -> None:
    control = [
        (m, p) for m, p in routes(api) if (m, p) not in PUBLIC and (m in MUTATING or p in ("/api/audit", "/ui/audit"))
    ]
    allowed: list[str] = []
    admin_refused: list[str] = []
    async with api.client("viewer") as viewer, api.client("admin") as admin:
        for method, path in control:
            body: dict[str, object] | None = {} if method in MUTATING else None
            r = await viewer.request(method, concrete(path), json=body)
            if r.status_code != 403:
                allowed.append(f"{method} {path}: {r.status_code}")
            r = await admin.request(method, concrete(path), json=body)
            if r.status_code in (401, 403):
                admin_refused.append(f"{method} {path}: {r.status_code}")
    audit = await api.services.store.list_audit(limit=100)
    overrides = await api.services.store.list_overrides()
    figure(
        "viewer-403",
        f"a viewer key gets 403 on {len(control) - len(allowed)} of {len(control)} control routes "
        f"({', '.join(sorted({p for _, p in control}))}); an admin key passes the role check on all of them",
    )
    assert allowed == []
    assert admin_refused == []
    assert overrides == [] and not [a for a in audit if a.who.startswith("key:") and "viewer" in a.who]


async def test_keys_are_stored_hashed_and_compared_in_constant_time(
    api: RunningService, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = api.services.store
    generated = await store.create_key("operator", at=api.services.clock.now(), label="issued")
    plaintexts = [*api.keys.values(), generated]
    db = Path(store.url.removeprefix("sqlite:///"))
    raw = b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))
    stored_plain = [k for k in plaintexts if k.encode() in raw]
    with sqlite3.connect(db) as conn:
        digests = {row[0] for row in conn.execute("SELECT digest FROM api_keys")}
    hashed = [k for k in plaintexts if hashlib.sha256(k.encode()).hexdigest() in digests]

    compared: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    key_id = generated.split("_")[1]
    forged = f"wk_{key_id}_{secrets.token_urlsafe(32)}"  # the right public id, the wrong secret
    async with api.client("") as c:
        good = await c.get("/api/devices", headers={"Authorization": f"Bearer {generated}"})
        bad = await c.get("/api/devices", headers={"Authorization": f"Bearer {forged}"})
    figure(
        "keys-hashed",
        f"{len(hashed)} of {len(plaintexts)} keys stored as SHA-256 digests, {len(stored_plain)} in plain text "
        f"anywhere in the database files; verification went through hmac.compare_digest {len(compared)} times "
        f"(issued key {good.status_code}, same id with a forged secret {bad.status_code})",
    )
    assert stored_plain == [] and len(hashed) == len(plaintexts)
    assert good.status_code == 200 and bad.status_code == 401
    assert len(compared) >= 2


async def test_failed_logins_are_rate_limited(api: RunningService) -> None:
    statuses = []
    async with api.client("") as c:
        for i in range(principal.FAILED_LIMIT + 2):
            r = await c.get("/api/devices", headers={"Authorization": f"Bearer wrong-{i}-{secrets.token_hex(8)}"})
            statuses.append(r.status_code)
        with_a_good_key = (
            await c.get("/api/devices", headers={"Authorization": f"Bearer {api.keys['admin']}"})
        ).status_code
        health = (await c.get("/healthz")).status_code
    figure(
        "login-rate-limit",
        f"{statuses.count(401)} failed logins answered 401, then {statuses.count(429)} with 429; while blocked "
        f"even a valid key gets {with_a_good_key} for {principal.FAILED_WINDOW_S:g} s; /healthz still {health}",
    )
    assert statuses == [401] * principal.FAILED_LIMIT + [429, 429]
    assert with_a_good_key == 429 and health == 200


def test_a_flood_of_new_addresses_does_not_reset_the_rate_limit() -> None:
    """The failed-login table is a bounded LRU: a blocked client that keeps trying, and the latest
    clients, stay counted while more than the table's size of new addresses fail once each."""
    cache = principal.KeyCache()
    size = principal.MAX_REMEMBERED
    for _ in range(principal.FAILED_LIMIT):
        cache.fail("10.0.0.1")
    for _ in range(principal.FAILED_LIMIT - 1):
        cache.fail("10.0.0.2")  # one short of blocked, then quiet
    blocked_throughout = True
    for i in range(2 * size):
        cache.fail(f"172.16.{i // 256}.{i % 256}")
        if i % 500 == 0:
            blocked_throughout &= cache.blocked("10.0.0.1")  # the attacker keeps knocking
    recent = [f"172.16.{i // 256}.{i % 256}" for i in range(2 * size - 100, 2 * size)]
    for address in recent:
        for _ in range(principal.FAILED_LIMIT - 1):
            cache.fail(address)
    recent_blocked = sum(cache.blocked(a) for a in recent)
    quiet_forgotten = not cache.blocked("10.0.0.2")
    figure(
        "login-rate-limit-lru",
        f"{2 * size:,} new addresses failing once each against a table of {size:,}: the blocked client that kept "
        f"trying stayed blocked: {blocked_throughout and cache.blocked('10.0.0.1')}; {recent_blocked} of "
        f"{len(recent)} recent clients blocked after their 10th failure; the table holds {cache.clients:,}; "
        f"the oldest quiet client forgotten: {quiet_forgotten}",
    )
    assert blocked_throughout and cache.blocked("10.0.0.1")
    assert recent_blocked == len(recent)
    assert cache.clients <= size


# -- the allow-list, at the devices --------------------------------------------------------------

EXIT_SIGN = "r2119-exit"  # an emergency-exit light: role life_safety
TAPPED = ("meter-grid-a", "genset-1", "ats-1-ctrl")


class CommandSniffer:
    """Every command-shaped message on the broker: Zigbee2MQTT /set, Tasmota cmnd, Shelly RPC."""

    def __init__(self, broker: servers.Mosquitto) -> None:
        self.broker = broker
        self.seen: list[tuple[str, bytes]] = []
        self.ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        async with aiomqtt.Client(self.broker.host, self.broker.port, identifier="sniffer") as c:
            for topic in ("zigbee2mqtt/+/set", "cmnd/#", "+/rpc"):
                await c.subscribe(topic, qos=1)
            self.ready.set()
            async for m in c.messages:
                self.seen.append((str(m.topic), bytes(m.payload or b"")))

    async def __aenter__(self) -> CommandSniffer:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self.ready.wait(), 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    def writes_to(self, device_topic: str) -> list[tuple[str, bytes]]:
        """Messages that would change the device (queries for its state excluded)."""
        out = []
        for topic, payload in self.seen:
            if (
                topic == f"zigbee2mqtt/{device_topic}/set"
                or topic == device_topic + "/set"
                or (topic.startswith(f"cmnd/{device_topic}/") and payload.strip())
                or (topic == f"{device_topic}/rpc" and b'"Switch.Set"' in payload)
            ):
                out.append((topic, payload))
        return out


def with_exit_sign(site: Site) -> Site:
    sign = Device(id=EXIT_SIGN, driver="mqtt", profile="tasmota-relay", topic=EXIT_SIGN, role=DeviceRole.life_safety)
    rooms = [r.model_copy(update={"devices": [*r.devices, EXIT_SIGN]}) if r.id == "r2119" else r for r in site.rooms]
    return site.model_copy(update={"devices": [*site.devices, sign], "rooms": rooms})


@pytest.mark.slow
async def test_refused_writes_never_reach_a_device_and_every_action_is_audited(
    fresh_mosquitto: servers.Mosquitto, tmp_path: Path
) -> None:
    sim_site = with_exit_sign(site_for_test(fresh_mosquitto.url))
    taps = {d: ModbusTap(sim_site.device(d).port or 0) for d in TAPPED}
    async with Simulation(sim_site, control_port=None, seed=4) as sim, CommandSniffer(fresh_mosquitto) as sniffer:
        for t in taps.values():
            await t.__aenter__()
        try:
            devices = [d.model_copy(update={"port": taps[d.id].port}) if d.id in taps else d for d in sim_site.devices]
            svc_site = sim_site.model_copy(update={"devices": devices})
            protected_on = {d: sim.state()["devices"][d]["on"] for d in ("srv1-ups", "srv1-light", EXIT_SIGN)}
            sim.set_room("r2119", occupied=False, lights=True)
            async with running_service(svc_site, tmp_path) as svc:
                await eventually(lambda: _all_online(svc), 30)
                attempts = [
                    ("meter-grid-a", "power", 5.0, "read-only register"),
                    ("genset-1", "power", 100, "read-only register"),
                    ("ats-1-ctrl", "position", 2, "read-only register"),
                    ("r2119-occ", "occupancy", True, "read-only MQTT point"),
                    ("srv1-ups", "on", False, "role critical"),
                    ("srv1-ac", "system_mode", "off", "role critical"),
                    ("srv1-light", "on", False, "server room"),
                    (EXIT_SIGN, "on", False, "role life_safety"),
                ]
                results: dict[str, tuple[int, dict[str, Any]]] = {}
                async with svc.client("operator") as op:
                    for device, point, value, _ in attempts:
                        r = await op.post(f"/api/devices/{device}/commands", json={"command": point, "value": value})
                        results[device] = (r.status_code, r.json())
                    allowed = await op.post("/api/devices/r2119-light/commands", json={"command": "on", "value": False})
                    sweep = (await op.post("/api/schedules/after-hours/run")).json()
                    audit = (await op.get("/api/audit", params={"limit": 1000})).json()
                hub = svc.services.hub
                assert hub is not None
                direct = await hub.command("meter-grid-a", "import_energy", 0.0)
                await asyncio.sleep(1.0)  # anything sent would have reached the tap and the broker by now
                found = await svc.services.store.find_key(svc.keys["operator"])
                assert found is not None
                operator_id = found.id
            state_after = {d: sim.state()["devices"][d]["on"] for d in protected_on}
        finally:
            for t in taps.values():
                await t.__aexit__(None, None, None)

    refused = {d: status for d, (status, body) in results.items() if status == 403 and body["status"] == "refused"}
    modbus_writes = {d: t.writes for d, t in taps.items() if t.writes}
    through_taps = sum(len(t.functions) for t in taps.values())
    mqtt_writes = {
        d: sniffer.writes_to(t)
        for d, t in (
            ("r2119-occ", "r2119-occ"),
            ("srv1-ups", "shellyplus-srv1-ups"),
            ("srv1-ac", "srv1-ac"),
            ("srv1-light", "srv1-light"),
            (EXIT_SIGN, EXIT_SIGN),
        )
        if sniffer.writes_to(t)
    }
    swept = {d["device"]: d["action"] for d in sweep["devices"]}
    protected_swept = {d: swept.get(d) for d in ("srv1-ac", "srv1-ups", "srv1-light", EXIT_SIGN)}
    light_off_sent = sniffer.writes_to("r2119-light")
    entries = {(e["device"], e["point"]): e for e in audit}
    complete = [
        e
        for e in audit
        if e["who"] and e["at"] and e["result"] and e["device"] and e["point"] and "old" in e and "new" in e
    ]
    ours = [e for e in audit if e["who"] == f"key:{operator_id}"]
    figure(
        "allow-list",
        f"{len(refused)} of {len(attempts)} forbidden commands refused with 403 (read-only registers and points, "
        f"critical, life_safety, server room); {sum(len(w) for w in modbus_writes.values())} Modbus writes among "
        f"{through_taps} requests tapped in front of the simulated devices, "
        f"{sum(len(w) for w in mqtt_writes.values())} MQTT commands to refused devices; "
        f"the sweep skipped all {len(protected_swept)} protected devices; a permitted switch-off went through "
        f"({allowed.json()['status']}, {len(light_off_sent)} command message(s)); a read-only write asked of the "
        f"driver hub directly: {direct.status}",
    )
    figure(
        "audit",
        f"{len(ours)} control actions by the operator key audited, {len(complete)} of {len(audit)} audit records "
        f"with who, device, point, old, new, result and time (refused ones included)",
    )
    assert refused.keys() == {d for d, *_ in attempts}, results
    assert modbus_writes == {} and mqtt_writes == {}
    assert through_taps > 0, "the taps were not in the service's path"
    assert state_after == protected_on
    assert all(a == "skipped_exempt" for a in protected_swept.values()), protected_swept
    assert allowed.json()["status"] == "confirmed" and light_off_sent
    assert direct.status == "refused"
    assert {(d, p) for d, p, *_ in attempts} <= entries.keys()
    assert entries[("r2119-light", "on")]["result"] == "confirmed" and entries[("r2119-light", "on")]["new"] is False
    assert all(entries[(d, p)]["result"] == "refused" for d, p, *_ in attempts)
    assert len(ours) >= len(attempts) + 1 and len(complete) == len(audit)


async def _all_online(svc: RunningService) -> bool:
    async with svc.client("viewer") as c:
        devices = (await c.get("/api/devices")).json()
    wanted = {"meter-grid-a", "genset-1", "ats-1-ctrl", "srv1-ups", "r2119-light", EXIT_SIGN}
    return all(d["online"] for d in devices if d["id"] in wanted)


# -- secrets ---------------------------------------------------------------------------------------


class HookReceiver:
    """A local webhook endpoint: records path, query and Authorization of each POST; the first fails."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        box = self.seen

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                box.append((self.path, self.headers.get("Authorization") or ""))
                self.send_response(503 if len(box) == 1 else 200)  # a failure, so a retry is logged
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> HookReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _error_text(make: Any) -> str:
    try:
        make()
    except (ValidationError, SiteError, ValueError) as exc:
        return str(exc)
    raise AssertionError("no error raised")


async def test_notification_secrets_come_from_the_environment_and_no_message_shows_a_credential(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    token, hook_password, smtp_password = (f"{p}-{secrets.token_hex(12)}" for p in ("dt", "hk", "sm"))
    db_password, mqtt_password, short_key = "S3cret" + secrets.token_hex(6), "S3cretPass", "tooshort-secret"
    monkeypatch.setenv("WK_TEST_DINGTALK_TOKEN", token)
    monkeypatch.setenv("WK_TEST_HOOK_PASSWORD", hook_password)
    monkeypatch.setenv("WK_TEST_SMTP_PASSWORD", smtp_password)
    monkeypatch.delenv("WK_TEST_UNSET", raising=False)
    caplog.set_level(logging.DEBUG)
    smtp = SmtpSink()  # no STARTTLS: the notifier refuses to send the password, and says so in the log
    smtp.start()
    try:
        with HookReceiver() as hook:
            text = VALID_SITE + (
                "notifications:\n"
                "  webhooks:\n"
                f'    - {{url: "http://127.0.0.1:{hook.port}/robot/send?access_token=${{WK_TEST_DINGTALK_TOKEN}}",'
                " format: dingtalk}\n"
                f'    - {{url: "http://hook:${{WK_TEST_HOOK_PASSWORD}}@127.0.0.1:{hook.port}/basic", format: json}}\n'
                f'  email: {{url: "smtp://wk:${{WK_TEST_SMTP_PASSWORD}}@127.0.0.1:{smtp.port}", from: "wk@example.com",'
                ' to: ["duty@example.com"]}\n'
            )
            site = parse_site(text, "site.yaml")
            notifier = Notifier(site.notifications, site_id="hq", site_name="HQ", clock=SystemClock(), backoff_s=0.05)
            await notifier.start()
            try:
                await notifier.notify(
                    Alarm(
                        id="lit_empty_room:r2119:20260302T020000Z",
                        type="lit_empty_room",
                        severity=Severity.warning,
                        subject="r2119",
                        state=AlarmState.active_unacked,
                        active=True,
                        raised_at=datetime(2026, 3, 2, 2, 0, tzinfo=UTC),
                        updated_at=datetime(2026, 3, 2, 2, 0, tzinfo=UTC),
                        message="2119 lights on, nobody there",
                        value=1.0,
                    )
                )
                await eventually(lambda: _delivered(hook, notifier), 20)
            finally:
                await notifier.stop()
            channel_names = [ch.name for ch in notifier.channels]
            delivered = list(hook.seen)
    finally:
        smtp.stop()

    line = next(n for n, ln in enumerate(text.splitlines(), start=1) if "robot/send" in ln)
    missing = _error_text(lambda: parse_site(text.replace("WK_TEST_DINGTALK_TOKEN", "WK_TEST_UNSET"), "site.yaml"))
    errors = {
        "Settings mqtt_url": _error_text(lambda: Settings(_env_file=None, mqtt_url=f"tcp://wk:{mqtt_password}@host")),
        "Settings database_url": _error_text(
            lambda: Settings(_env_file=None, database_url=f"mysql://wk:{db_password}@db.example/wk")
        ),
        "Settings database_url, no scheme": _error_text(
            lambda: Settings(_env_file=None, database_url=f"wk:{db_password}@db.example/wk")
        ),
        "Settings influx_url": _error_text(lambda: Settings(_env_file=None, influx_url=f"ftp://wk:{db_password}@h")),
        "site mqtt.url": _error_text(
            lambda: parse_site(VALID_SITE.replace("mqtt://127.0.0.1:1883", f"tcp://wk:{mqtt_password}@host"))
        ),
        "short production key": _error_text(
            lambda: Settings(_env_file=None, env="production", api_keys={short_key: "admin"})
        ),
        "key and role swapped": _error_text(lambda: Settings(_env_file=None, api_keys=f"admin:{short_key}")),
    }
    shown = {
        name: [p for p in (mqtt_password, db_password, short_key[:4], short_key) if p in message]
        for name, message in errors.items()
    }
    logged = caplog.text
    secrets_used = (token, hook_password, smtp_password)
    in_logs = [p for p in secrets_used if p in logged]
    in_names = [p for p in (*secrets_used, "@") if any(p in n for n in channel_names)]
    token_sent = any(f"access_token={token}" in path for path, _ in delivered)
    basic = "Basic " + base64.b64encode(f"hook:{hook_password}".encode()).decode()
    basic_sent = any(path == "/basic" and auth == basic for path, auth in delivered)
    figure(
        "notification-secrets",
        f"DingTalk token, webhook password and SMTP password read from ${{NAME}} in the site file (token sent: "
        f"{token_sent}, basic auth sent: {basic_sent}); a missing variable: '{missing}'; "
        f"{sum(map(len, shown.values()))} credential fragments in {len(errors)} validator errors, "
        f"{len(in_logs)} secrets in {len(logged.splitlines())} log lines (a failed and a retried webhook, a refused "
        f"e-mail), {len(in_names)} in channel names ({', '.join(channel_names)})",
    )
    assert token_sent and basic_sent
    assert "WK_TEST_UNSET" in missing and "notifications.webhooks[0].url" in missing and f"site.yaml:{line}" in missing
    assert {k: v for k, v in shown.items() if v} == {}
    assert "***" in errors["Settings mqtt_url"] and "***" in errors["site mqtt.url"]
    assert "entries too short: 1" in errors["short production key"]
    assert in_logs == [] and in_names == []
    assert "attempt 1 failed" in logged and "STARTTLS" in logged, "the failures meant to be logged did not happen"


async def _delivered(hook: HookReceiver, notifier: Notifier) -> bool:
    email = next(ch for ch in notifier.channels if ch.name == "email")
    return len(hook.seen) >= 3 and email.failed == 1


@pytest.mark.slow
def test_secrets_come_from_the_environment_and_are_never_logged(
    fresh_mosquitto: servers.Mosquitto, tmp_path: Path
) -> None:
    api_key = "wk-admin-" + secrets.token_hex(16)
    mqtt_password = "mq-" + secrets.token_hex(12)
    influx_token = "ix-" + secrets.token_hex(16)
    wrong_key = "wrong-" + secrets.token_hex(12)
    dingtalk_token = "dt-" + secrets.token_hex(16)
    smtp_password = "sm-" + secrets.token_hex(12)
    site = site_for_test(fresh_mosquitto.url)
    # The site file names its notification secrets; the service reads them from its environment.
    data = site.model_dump(mode="json", by_alias=True)
    hook = f"http://127.0.0.1:{servers.free_port()}/robot/send?access_token=${{WATTKEEPER_DINGTALK_TOKEN}}"
    mail = f"smtp://wk:${{WATTKEEPER_SMTP_PASSWORD}}@127.0.0.1:{servers.free_port()}"
    data["notifications"]["webhooks"] = [{"url": hook, "format": "dingtalk"}]
    data["notifications"]["email"] = {"url": mail, "from": "wk@example.com", "to": ["duty@example.com"]}
    site_file = tmp_path / "site.yaml"
    site_file.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    svc = ServiceProcess(
        site_file,
        tmp_path / "svc",
        {
            "WATTKEEPER_ENV": "production",
            "WATTKEEPER_MQTT_URL": f"mqtt://wattkeeper:{mqtt_password}@127.0.0.1:{fresh_mosquitto.port}",
            "WATTKEEPER_INFLUX_URL": f"http://127.0.0.1:{servers.free_port()}",  # down: writes fail and are logged
            "WATTKEEPER_INFLUX_TOKEN": influx_token,
            "WATTKEEPER_DINGTALK_TOKEN": dingtalk_token,
            "WATTKEEPER_SMTP_PASSWORD": smtp_password,
        },
        keys={"admin": api_key},
    )
    try:
        svc.start()
        with httpx.Client(base_url=svc.url, timeout=10) as c:
            ok = c.get("/api/devices", headers={"Authorization": f"Bearer {api_key}"}).status_code
            refused = c.get("/api/devices", headers={"Authorization": f"Bearer {wrong_key}"}).status_code
            health = c.get("/healthz").json()
            metrics = c.get("/metrics").text
        time.sleep(3)  # failed telemetry writes, MQTT traffic, ticks: whatever the service logs
    finally:
        svc.stop()
    log = svc.log.read_text()
    site_text = site_file.read_text()
    short = subprocess.run(
        [sys.executable, "-m", "service", "serve", "--site", str(site_file)],
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("WATTKEEPER_")},
            "WATTKEEPER_ENV": "production",
            "WATTKEEPER_API_KEYS": "tooshort-secret:admin",
            "WATTKEEPER_DINGTALK_TOKEN": dingtalk_token,
            "WATTKEEPER_SMTP_PASSWORD": smtp_password,
            "WATTKEEPER_HTTP_PORT": str(servers.free_port()),
        },
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    shipped = {p.name: p.read_text() for p in (ROOT / "deploy" / "sites").glob("*.yaml")}
    # user:password@ or a token parameter whose value is not a ${NAME} reference
    credentials = re.compile(
        r"://[^/\s:@\"']+:(?!\$\{\w+\}@)[^/\s@\"']+@|[?&](access_token|token|key)=(?!\$\{\w+\}(&|\"|$))"
    )
    with_credentials = [name for name, text in shipped.items() if credentials.search(text)]
    references = [name for name, text in shipped.items() if "${WATTKEEPER_" in text]
    every_secret = (api_key, mqtt_password, influx_token, wrong_key, dingtalk_token, smtp_password)
    secrets_in = {
        name: [s for s in every_secret if s in text]
        for name, text in (
            ("log", log),
            ("site file", site_text),
            ("/healthz", json.dumps(health)),
            ("/metrics", metrics),
        )
    }
    leaked = {k: v for k, v in secrets_in.items() if v}
    figure(
        "secrets",
        f"API key, MQTT password, InfluxDB token, DingTalk token and SMTP password taken from the environment "
        f"(the last two named as ${{NAME}} in the site file; key accepted: {ok}, wrong key: {refused}, broker "
        f"connected: {health['mqtt_connected']}); {sum(map(len, leaked.values()))} of {len(every_secret)} secrets "
        f"found in {len(log.splitlines())} log lines, the site file, /healthz or /metrics; a production start with "
        f"a short key refused (exit {short.returncode}) without echoing any of it; {len(with_credentials)} shipped "
        f"site files carry credentials, {len(references)} name them from the environment",
    )
    assert ok == 200 and refused == 401 and health["mqtt_connected"] is True
    assert "telemetry write failed" in log, "the outage the test relies on to provoke logging did not happen"
    assert leaked == {}
    said = short.stdout + short.stderr
    assert short.returncode != 0 and "tooshort" not in said and "toos" not in said and "too short: 1" in said
    assert with_credentials == [] and "production.example.yaml" in references
    assert DEMO_SITE.name in shipped
