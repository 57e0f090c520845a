"""GET /api/events (SSE): a simulator fault becomes an `alarm` event; devices, rooms and supply follow."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

from tests.api.conftest import Live

Event = tuple[str, Any]


async def events(response: httpx.Response) -> AsyncIterator[Event]:
    """(event, data) pairs from a text/event-stream response; comment lines skipped."""
    kind, data = "message", []
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
