"""The read API against the simulated demo site: shapes of DESIGN.md §4, pagination, and bad input
answered with a 4xx that says what is wrong."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from service.config.site import Site
from service.store.db import Rollup
from tests.api.conftest import Live
from tests.harness import eventually, running_service

DEVICE_KEYS = {"id", "profile", "driver", "online", "last_seen"}
ROOM_KEYS = {"id", "name", "department", "kind", "occupied", "lights_on", "temperature_c", "ac", "plugs_w"}
ROOM_KEYS |= {"power_w", "override_until"}
ALARM_KEYS = {"id", "type", "severity", "subject", "state", "raised_at", "cleared_at", "acked_by", "message", "value"}
AUDIT_KEYS = {"id", "at", "who", "job", "device", "point", "old", "new", "result", "detail"}


async def test_devices_state_rooms_supply(live: Live) -> None:
    """Devices, points, rooms and supply as the contract shapes them, paged with X-Total-Count."""
    site = live.sim.site
    async with live.client("viewer") as c:
        r = await c.get("/api/devices")
        devices = r.json()
        assert r.status_code == 200 and int(r.headers["x-total-count"]) == len(site.devices) == len(devices)
        assert all(set(d) >= DEVICE_KEYS for d in devices)
        page = await c.get("/api/devices", params={"limit": 5, "offset": 5})
        assert [d["id"] for d in page.json()] == [d["id"] for d in devices][5:10]
        assert page.headers["x-total-count"] == str(len(devices))
        meter = next(d for d in devices if d["id"] == "meter-grid-a")
        assert meter["driver"] == "modbus" and meter["profile"] == "sdm630" and meter["online"] and meter["last_seen"]

        points = {p["point"]: p for p in (await c.get("/api/state", params={"device": "meter-grid-a"})).json()}
        assert points["power"]["unit"] == "W" and points["power"]["quality"] == "good"
        assert 200 < points["voltage_l1"]["value"] < 260

        supply = (await c.get("/api/supply")).json()
        assert [s["id"] for s in supply["sources"]] == ["grid-a", "grid-b"]
        assert all(s["available"] and 200 < s["voltage_v"] < 260 for s in supply["sources"])
        assert supply["transfer_switches"] == [{"id": "ats-1", "position": "grid-a"}]
        gen = supply["generators"][0]
        assert gen["id"] == "gen-1" and gen["state"] == "stopped" and gen["breaker_closed"] is False
        assert set(gen) >= {"ready", "power_kw"} and supply["load_kw"] > 0

        rooms = (await c.get("/api/rooms")).json()
        assert [r["id"] for r in rooms] == [r.id for r in site.rooms]
        assert all(set(r) >= ROOM_KEYS for r in rooms)
        paged = await c.get("/api/rooms", params={"limit": 2, "offset": 1})
        assert [r["id"] for r in paged.json()] == [r["id"] for r in rooms][1:3]
        assert paged.headers["x-total-count"] == str(len(rooms))
        assert [r["id"] for r in (await c.get("/api/rooms")).json()] == [r["id"] for r in rooms]
        # Sensors report on change (and once a minute): flip what the room is doing now.
        before = live.sim.state()["rooms"]["r2119"]
        occupied, lights = not before["occupied"], not before["lights_on"]
        live.sim.set_room("r2119", occupied=occupied, lights=lights, ac={"mode": "cool", "setpoint": 27})

        async def r2119() -> dict[str, Any] | None:
            room = next(r for r in (await c.get("/api/rooms")).json() if r["id"] == "r2119")
            ac = room["ac"]
            held = (room["occupied"], room["lights_on"], ac["mode"], ac["setpoint_c"]) == (occupied, lights, "cool", 27)
            return room if held else None

        room = await eventually(r2119, 20)
        assert room["name"] == "2119 会议室" and room["department"] == "marketing" and room["kind"] == "meeting"
        assert room["ac"]["on"] is True and room["temperature_c"] is not None


async def test_alarm_lifecycle_and_compliance(live: Live) -> None:
    """A lost grid source: redundancy_lost raised, seen by compliance, acknowledged, kept in history."""
    async with live.client("viewer") as viewer, live.client("operator") as operator:
        report = (await viewer.get("/api/compliance")).json()
        assert report["status"] == "PASS" and report["grade"] == "first" and report["live"]["sources_total"] == 2
        live.sim.fault("source_loss", "grid-a")

        async def raised() -> dict[str, Any] | None:
            active = (await viewer.get("/api/alarms", params={"type": "redundancy_lost"})).json()
            return active[0] if active else None

        alarm = await eventually(raised, 30)
        assert set(alarm) >= ALARM_KEYS and alarm["state"] == "active_unacked" and alarm["severity"] == "high"
        assert alarm["subject"] == "hq" and "grid-b" in alarm["message"]
        live_view = (await viewer.get("/api/compliance")).json()["live"]
        assert live_view["sources_available"] == ["grid-b"]
        assert [a["type"] for a in live_view["active_supply_alarms"]] == ["redundancy_lost"]
        assert (await viewer.get("/api/supply")).json()["sources"][0]["available"] is False

        assert (await viewer.post(f"/api/alarms/{alarm['id']}/ack")).status_code == 403
        acked = await operator.post(f"/api/alarms/{alarm['id']}/ack")
        assert acked.status_code == 200 and acked.json()["state"] == "active_acked"
        assert acked.json()["acked_by"].startswith("key:")
        too_long = datetime.now(UTC) + timedelta(hours=30)
        r = await operator.post(f"/api/alarms/{alarm['id']}/shelve", json={"until": too_long.isoformat()})
        assert r.status_code == 422 and "24 h" in r.json()["detail"]

        history = (await viewer.get("/api/alarms", params={"state": "all", "type": "redundancy_lost"})).json()
        assert alarm["id"] in [a["id"] for a in history]
        other = (await viewer.get("/api/alarms", params={"state": "all", "type": "backfeed"})).json()
        assert alarm["id"] not in [a["id"] for a in other]


async def test_telemetry_buckets_from_rollups(live: Live) -> None:
    """1-minute rollups merged into buckets of `every` from `start`; unit from the profile."""
    start = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
    await live.svc.services.store.upsert_rollups(
        Rollup(
            device="meter-dept-it",
            point="power",
            minute=start + timedelta(minutes=i),
            min=1000.0 + i,
            max=2000.0 + i,
            mean=1500.0 + i,
            last=1600.0 + i,
            count=60,
        )
        for i in range(30)
    )
    async with live.client("viewer") as c:
        end = start + timedelta(minutes=30)
        params = {"device": "meter-dept-it", "point": "power", "start": start.isoformat(), "end": end.isoformat()}
        r = await c.get("/api/telemetry", params={**params, "every": "15m"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["unit"] == "W" and body["every"] == "15m" and len(body["points"]) == 2
        first, second = body["points"]
        assert datetime.fromisoformat(first["ts"]) == start
        assert datetime.fromisoformat(second["ts"]) == start + timedelta(minutes=15)
        assert (first["min"], first["max"], first["last"], first["count"]) == (1000.0, 2014.0, 1614.0, 900)
        assert first["mean"] == pytest.approx(1507.0)
        r = await c.get("/api/telemetry", params={**params, "every": "1h"})
        assert [p["count"] for p in r.json()["points"]] == [1800]
        # Live data: the default range (the last 24 h) answers with the same shape.
        r = await c.get("/api/telemetry", params={"device": "meter-grid-a", "point": "power"})
        assert r.status_code == 200 and set(r.json()) == {"device", "point", "unit", "every", "start", "end", "points"}


BAD_TELEMETRY = [
    ({"device": "no-such-meter", "point": "power"}, "device"),
    ({"device": "meter-grid-a", "point": "nope"}, "voltage_l1"),
    ({"point": "power"}, "device"),
    ({"device": "meter-grid-a", "point": "power", "every": "0m"}, "every"),
    ({"device": "meter-grid-a", "point": "power", "every": "5s"}, "every"),
    ({"device": "meter-grid-a", "point": "power", "every": "1w"}, "every"),
    ({"device": "meter-grid-a", "point": "power", "every": "40d"}, "31d"),
    ({"device": "meter-grid-a", "point": "power", "start": "2026-11-01T08:00:00"}, "time zone"),
    ({"device": "meter-grid-a", "point": "power", "start": "yesterday"}, "start"),
    (
        {"device": "meter-grid-a", "point": "power", "start": "2026-11-02T00:00:00Z", "end": "2026-11-01T00:00:00Z"},
        "before end",
    ),
    ({"device": "meter-grid-a", "point": "power", "start": "2024-01-01T00:00:00Z", "every": "1d"}, "400 days"),
    ({"device": "meter-grid-a", "point": "power", "start": "2026-10-01T00:00:00Z", "every": "1m"}, "buckets"),
    ({"device": "meter-grid-a", "point": "power", "end": "0001-01-01T00:00:00Z"}, "start"),
]


async def test_audit_commands_and_metrics(live: Live) -> None:
    """Commands land in the audit log (operator and admin only), filterable and paged; /metrics counts them."""
    async with live.client("operator") as op:
        r = await op.post("/api/devices/r2119-light/commands", json={"command": "on", "value": False})
        assert r.status_code == 200 and r.json()["status"] == "confirmed", r.text
        r = await op.post("/api/devices/srv1-ups/commands", json={"command": "on", "value": False})
        assert r.status_code == 403 and r.json()["status"] == "refused"

        r = await op.get("/api/audit")
        entries = r.json()
        assert r.status_code == 200 and int(r.headers["x-total-count"]) == len(entries) >= 2
        assert all(set(e) == AUDIT_KEYS for e in entries)
        assert [e["at"] for e in entries] == sorted((e["at"] for e in entries), reverse=True)
        light = next(e for e in entries if e["device"] == "r2119-light")
        assert light["point"] == "on" and light["new"] is False and light["who"].startswith("key:")

        only = (await op.get("/api/audit", params={"device": "srv1-ups"})).json()
        assert [e["result"] for e in only] == ["refused"] and "critical" in only[0]["detail"]
        assert (await op.get("/api/audit", params={"result": "refused", "device": "r2119-light"})).json() == []
        first = await op.get("/api/audit", params={"limit": 1})
        assert len(first.json()) == 1 and 'rel="next"' in first.headers["link"]
        next_url = urlparse(first.headers["link"].split(";")[0].strip("<>"))
        assert parse_qs(next_url.query)["offset"] == ["1"]
        second = await op.get(next_url.path, params=parse_qs(next_url.query))
        assert second.json()[0]["id"] != first.json()[0]["id"]
        before = datetime.fromisoformat(entries[-1]["at"]) - timedelta(seconds=1)
        empty = await op.get("/api/audit", params={"end": before.isoformat()})
        assert empty.json() == [] and empty.headers["x-total-count"] == "0" and "link" not in empty.headers
        for params, says in (
            ({"start": "2026-11-01T08:00:00"}, "time zone"),
            ({"start": "2026-11-02T00:00:00Z", "end": "2026-11-01T00:00:00Z"}, "before end"),
            ({"limit": "0"}, "limit"),
            ({"offset": "-1"}, "offset"),
        ):
            r = await op.get("/api/audit", params=params)
            assert r.status_code == 422 and says in r.json()["detail"], (params, r.text)

    async with live.client("viewer") as viewer:
        r = await viewer.get("/api/audit")
        assert r.status_code == 403 and "operator" in r.json()["detail"]

    async with live.client("") as anon:

        async def metrics() -> str | None:
            # The gauges are set by the core's once-a-second tick.
            text = (await anon.get("/metrics")).text
            return text if "wattkeeper_alarms{" in text else None

        text = await eventually(metrics, 10)
        health = (await anon.get("/healthz")).json()
    for name in (
        "wattkeeper_readings_ingested_total",
        "# HELP wattkeeper_payload_rejects",
        "wattkeeper_outbox_depth",
        "wattkeeper_telemetry_dropped",
        'wattkeeper_alarms{state="active_unacked"}',
        'wattkeeper_alarms{state="shelved"}',
        'wattkeeper_commands_total{status="confirmed"} 1.0',
        'wattkeeper_commands_total{status="refused"} 1.0',
    ):
        assert name in text, name
    # the drivers' own running totals: Modbus requests answered (the site's meters are polled), MQTT loop failures
    totals = dict(
        line.split(" ", 1)
        for line in text.splitlines()
        if line.startswith(("wattkeeper_modbus_requests ", "wattkeeper_mqtt_loop_errors "))
    )
    assert float(totals["wattkeeper_modbus_requests"]) > 0, totals
    assert float(totals["wattkeeper_mqtt_loop_errors"]) == 0, totals
    assert health["status"] == "ok" and health["devices_online"] > 0 and health["mqtt_connected"] is True


BAD_QUERIES = [
    ("/api/alarms", {"state": "bogus"}, "state"),
    ("/api/alarms", {"type": "not_a_type"}, "type"),
    ("/api/alarms", {"limit": "1e3"}, "limit"),
    ("/api/devices", {"limit": "0"}, "limit"),
    ("/api/rooms", {"offset": "-5"}, "offset"),
    ("/api/state", {"device": "x" * 65}, "device"),
    ("/api/reports/energy", {"month": "2026-13"}, "month"),
    ("/api/overrides", {"limit": "abc"}, "limit"),
    ("/", {"lang": "fr"}, "lang"),
    *(("/api/telemetry", params, says) for params, says in BAD_TELEMETRY),
]


async def test_bad_query_parameters(demo_site: Site, tmp_path: Path) -> None:
    """Odd parameters get a 422 whose detail names what is wrong (unknown device or point, bucket size,
    time zone, range, enum values, page bounds), never a 500."""
    problems = []
    async with running_service(demo_site, tmp_path, drivers=False) as svc, svc.client("admin") as c:
        for path, params, says in BAD_QUERIES:
            r = await c.get(path, params=params)
            detail = r.json().get("detail", "") if r.headers.get("content-type") == "application/json" else ""
            if r.status_code != 422 or says not in detail:
                problems.append(f"{path} {params}: {r.status_code} {r.text[:200]}")
    assert not problems, "\n".join(problems)
