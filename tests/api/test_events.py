"""GET /api/events (SSE): a simulator fault becomes an `alarm` event; devices, rooms and supply follow;
an alarm flood shows as `alarm_flood` events, on GET /api/alarms(/flood), /metrics and the dashboard;
a stream left open does not hold a stopping service up."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from service.alarms import rules
from service.alarms.engine import FLOOD_COUNT, FLOOD_WINDOW_S
from service.clock import ManualClock
from service.config.site import Site
from tests.api.conftest import Live
from tests.harness import RunningService, running_service

Event = tuple[str, Any]


async def events(response: httpx.Response) -> AsyncIterator[Event]:
    """(event, data) pairs from a text/event-stream response; comment lines skipped."""
    kind = "message"
    data: list[str] = []
    async for line in response.aiter_lines():
        if line.startswith(":"):
            continue
        if not line:
            if data:
                yield kind, json.loads("\n".join(data))
            kind, data = "message", []
        elif line.startswith("event:"):
            kind = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())


def alarm_about(subject: str) -> Callable[[Event], bool]:
    """Matches the alarm event of one subject."""
    return lambda e: e[0] == "alarm" and e[1]["subject"] == subject


async def first(stream: AsyncIterator[Event], match: Callable[[Event], bool], timeout_s: float) -> Event:
    """The first event that matches, within timeout_s."""

    async def scan() -> Event:
        async for event in stream:
            if match(event):
                return event
        raise AssertionError("the stream ended")

    return await asyncio.wait_for(scan(), timeout_s)


async def test_fault_becomes_alarm_event(live: Live) -> None:
    """hello first; then a lost grid source shows as a supply change and a raised redundancy_lost alarm."""
    async with live.client("viewer", timeout=httpx.Timeout(10, read=60)) as c, c.stream("GET", "/api/events") as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        stream = events(r)
        kind, hello = await first(stream, lambda e: True, 5)
        assert kind == "hello" and hello["site"] == "hq"
        live.sim.fault("source_loss", "grid-a")

        def grid_a_lost(e: Event) -> bool:
            return e[0] == "supply" and any(s["id"] == "grid-a" and s["available"] is False for s in e[1]["sources"])

        await first(stream, grid_a_lost, 15)
        _, alarm = await first(stream, lambda e: e[0] == "alarm" and e[1]["type"] == "redundancy_lost", 30)
        assert alarm["state"] == "active_unacked" and alarm["from_state"] is None and alarm["subject"] == "hq"
        assert alarm["severity"] == "high" and alarm["who"] == "system"


async def test_device_and_room_events(live: Live) -> None:
    """A device going offline and a room changing are pushed as they happen."""
    async with live.client("viewer", timeout=httpx.Timeout(10, read=60)) as c, c.stream("GET", "/api/events") as r:
        stream = events(r)
        await first(stream, lambda e: e[0] == "hello", 5)
        # Sensors report on change (and once a minute): flip what the room is doing now.
        before = live.sim.state()["rooms"]["r3102"]
        occupied, lights = not before["occupied"], not before["lights_on"]
        live.sim.set_room("r3102", occupied=occupied, lights=lights)

        def r3102_changed(e: Event) -> bool:
            kind, room = e
            state = (room.get("occupied"), room.get("lights_on"))
            return kind == "room" and room["id"] == "r3102" and state == (occupied, lights)

        _, room = await first(stream, r3102_changed, 15)
        assert room["name"] == "3102 研发经理室" and "override_until" in room
        live.sim.fault("device_offline", "r3102-occ")
        _, device = await first(stream, lambda e: e[0] == "device" and e[1]["id"] == "r3102-occ", 15)
        assert device["online"] is False


async def test_events_with_a_dashboard_session(live: Live) -> None:
    """EventSource cannot send a key: the session cookie from the login opens the stream too."""
    async with live.client("", timeout=httpx.Timeout(10, read=30)) as c:
        assert (await c.get("/api/events")).status_code == 401
        login = await c.post("/login", data={"key": live.svc.keys["viewer"]})
        assert login.status_code == 303
        async with c.stream("GET", "/api/events") as r:
            assert r.status_code == 200
            kind, _ = await first(events(r), lambda e: True, 5)
            assert kind == "hello"


def _gauge(metrics: str, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", metrics, re.MULTILINE)
    assert match, f"{name} not on /metrics"
    return float(match.group(1))


async def _flood_everywhere(svc: RunningService) -> tuple[dict[str, Any], str, float, str, str]:
    """The indicator as GET /api/alarms/flood, the X-Alarm-Flood header, the gauge and both banners."""
    async with svc.client("viewer") as c:
        flood = (await c.get("/api/alarms/flood")).json()
        header = (await c.get("/api/alarms")).headers["X-Alarm-Flood"]
        gauge = _gauge((await c.get("/metrics")).text, "wattkeeper_alarm_flood")
        zh = (await c.get("/ui/alarms/active", params={"lang": "zh"})).text
        en = (await c.get("/ui/alarms/active", params={"lang": "en"})).text
    return flood, header, gauge, zh, en


async def test_alarm_flood_starts_and_ends(demo_site: Site, tmp_path: Path) -> None:
    """More than FLOOD_COUNT alarms raised within FLOOD_WINDOW_S: an `alarm_flood` event, the API field,
    the header, the gauge and the banner; once the raises leave the window, the end the same ways."""
    clock = ManualClock(datetime(2026, 3, 11, 2, 0, tzinfo=UTC))
    async with (
        running_service(demo_site, tmp_path, drivers=False, clock=clock) as svc,
        svc.client("viewer", timeout=httpx.Timeout(10, read=60)) as c,
        c.stream("GET", "/api/events") as r,
    ):
        stream = events(r)
        await first(stream, lambda e: e[0] == "hello", 5)
        core = svc.services.core
        devices = [d.id for d in demo_site.devices][: FLOOD_COUNT + 1]
        for device in devices[:FLOOD_COUNT]:
            core.report(rules.shutdown_failed(device, failed=True))
        for device in devices[:FLOOD_COUNT]:
            await first(stream, alarm_about(device), 15)
        flood, header, gauge, zh, en = await _flood_everywhere(svc)
        assert (flood["active"], flood["raised"], header, gauge) == (False, FLOOD_COUNT, "0", 0.0)
        assert "flood-banner" not in en

        clock.advance(60)
        core.report(rules.shutdown_failed(devices[FLOOD_COUNT], failed=True))  # one more: a flood
        _, began = await first(stream, lambda e: e[0] == "alarm_flood", 15)
        assert began["active"] is True and began["raised"] == FLOOD_COUNT + 1
        assert (began["threshold"], began["window_s"], began["since"]) == (FLOOD_COUNT, FLOOD_WINDOW_S, began["at"])
        flood, header, gauge, zh, en = await _flood_everywhere(svc)
        assert (flood["active"], flood["raised"], header, gauge) == (True, FLOOD_COUNT + 1, "1", 1.0)
        assert datetime.fromisoformat(flood["since"]) == datetime.fromisoformat(began["since"]) == clock.now()
        assert "flood-banner" in zh and "告警泛滥" in zh and f"已发生 {FLOOD_COUNT + 1} 条告警" in zh
        assert "Alarm flood" in en and f"{FLOOD_COUNT + 1} alarms raised in {FLOOD_WINDOW_S / 60:g} min" in en

        clock.advance(FLOOD_WINDOW_S - 60)  # the first ten leave the window; the core's tick sees it
        _, ended = await first(stream, lambda e: e[0] == "alarm_flood", 15)
        assert (ended["active"], ended["raised"], ended["since"]) == (False, 1, None)
        flood, header, gauge, zh, en = await _flood_everywhere(svc)
        assert (flood["active"], header, gauge) == (False, "0", 0.0)
        assert "flood-banner" not in en and "flood-banner" not in zh


async def test_an_open_stream_ends_when_the_service_stops(demo_site: Site, tmp_path: Path) -> None:
    """A dashboard's open event stream ends cleanly as uvicorn stops, and the stop takes seconds, not the
    harness's 20 s wait (uvicorn waits for open connections before the application's shutdown)."""
    service = contextlib.AsyncExitStack()
    svc = await service.enter_async_context(running_service(demo_site, tmp_path, drivers=False))
    async with svc.client("viewer", timeout=httpx.Timeout(10, read=60)) as c, c.stream("GET", "/api/events") as r:
        stream = events(r)
        assert (await first(stream, lambda e: True, 5))[0] == "hello"
        began = time.monotonic()
        stopping = asyncio.create_task(service.aclose())

        async def rest() -> list[Event]:
            return [e async for e in stream]  # a stream cut off instead of ended would raise here

        assert await asyncio.wait_for(rest(), 10) == []
        ended_s = time.monotonic() - began
        await asyncio.wait_for(stopping, 15)
        stopped_s = time.monotonic() - began
    assert ended_s < 3 and stopped_s < 8, (ended_s, stopped_s)
    assert svc.services.events.subscribers == 0
