"""The control API over HTTP (DESIGN.md §4) on a running simulation."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from service.site import Site
from simulators.control import create_app
from simulators.runner import Simulation
from tests.simulators.conftest import WORKDAY_10AM, devices, read_holding, wait_until


@pytest.fixture
async def app_client(demo: Site) -> AsyncIterator[httpx.AsyncClient]:
    """The control app in-process on a simulation that is not started (no sockets): for request validation."""
    app = create_app(Simulation(demo, control_port=None, speed=0, start=WORKDAY_10AM))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sim") as client:
        yield client


@pytest.fixture
async def api(demo_site: Site) -> AsyncIterator[tuple[Simulation, httpx.AsyncClient]]:
    """A simulation at 20x with its control API on a free port, and a client for it."""
    async with Simulation(demo_site, control_port=0, speed=20, seed=5, start=WORKDAY_10AM) as sim:
        assert sim.control_url is not None
        async with httpx.AsyncClient(base_url=sim.control_url, timeout=10) as client:
            yield sim, client


async def test_state_document(api: tuple[Simulation, httpx.AsyncClient]) -> None:
    _, client = api
    r = await client.get("/sim/state")
    assert r.status_code == 200
    state = r.json()
    assert {"time", "sources", "transfer_switches", "generators", "rooms", "devices"} <= set(state)
    assert state["sources"]["grid-a"]["available"] is True
    assert state["sources"]["grid-a"]["voltage_v"] == pytest.approx(220, abs=5)
    assert state["transfer_switches"]["ats-1"]["position"] == "grid-a"
    assert {"state", "breaker_closed", "power_kw"} <= set(state["generators"]["gen-1"])
    assert {"occupied", "temperature_c", "door_open"} <= set(state["rooms"]["r2119"])
    assert {"online", "on", "power_w"} <= set(state["devices"]["r2119-light"])
    assert state["devices"]["r2119-occ"]["on"] is None, "sensors have no on/off"
    assert state["time"].startswith("2026-07-15T10:0")


async def test_source_loss_over_http_moves_the_switch(api: tuple[Simulation, httpx.AsyncClient]) -> None:
    sim, client = api
    port = devices(sim.site)["ats-1-ctrl"].port
    assert port is not None
    r = await client.post("/sim/faults", json={"fault": "source_loss", "target": "grid-a"})
    assert r.status_code == 200 and r.json()["faults"][0]["target"] == "grid-a"
    lost_at = sim.world.elapsed_s
    await wait_until(lambda: sim.state()["transfer_switches"]["ats-1"]["position"] == "grid-b")
    assert sim.world.elapsed_s - lost_at >= 3, "not before the transfer delay (test_world pins the exact timing)"
    assert await read_holding(port, 20482) == [3]
    r = await client.delete("/sim/faults")
    assert r.json() == {"faults": []}
    assert (await client.get("/sim/state")).json()["sources"]["grid-a"]["available"] is True


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"fault": "meteor", "target": "grid-a"}, 422, "source_loss"),
        ({"fault": "source_loss", "target": "gen-1"}, 422, "'gen-1' is not a source"),
        ({"fault": "ats_stuck", "target": "ats-9"}, 422, "'ats-9' is not a transfer switch"),
        ({"fault": "source_loss", "target": "grid-a", "delay_s": 5}, 422, "generator_slow_start only"),
        ({"fault": "generator_slow_start", "target": "gen-1", "delay_s": -1}, 422, "greater than 0"),
        ({"fault": "device_offline"}, 422, "target"),
        ({"fault": "device_offline", "target": "x", "colour": "red"}, 422, "colour"),
    ],
)
async def test_bad_fault_requests_name_the_problem(
    app_client: httpx.AsyncClient, body: dict[str, object], status: int, needle: str
) -> None:
    r = await app_client.post("/sim/faults", json=body)
    assert r.status_code == status
    assert needle in r.text


async def test_room_override_holds_and_is_released(api: tuple[Simulation, httpx.AsyncClient]) -> None:
    sim, client = api
    r = await client.post(
        "/sim/rooms/r3102",
        json={"occupied": False, "lights": True, "ac": {"mode": "cool", "setpoint": 24}, "plugs": {"r3102-plug": 2000}},
    )
    assert r.status_code == 200, r.text
    room = r.json()
    assert (room["occupied"], room["lights_on"], room["ac"]["mode"], room["ac"]["setpoint_c"]) == (
        False,
        True,
        "cool",
        24,
    )
    await wait_until(lambda: sim.world.elapsed_s > 20)
    state = (await client.get("/sim/state")).json()
    assert state["rooms"]["r3102"]["occupied"] is False and state["devices"]["r3102-plug"]["power_w"] == 2000
    r = await client.delete("/sim/rooms/r3102")
    assert r.status_code == 200 and r.json()["overrides"] == []


@pytest.mark.parametrize(
    ("path", "body", "status", "needle"),
    [
        ("/sim/rooms/r9999", {"occupied": True}, 404, "'r9999' is not a room"),
        ("/sim/rooms/r2119", {"occupied": "maybe"}, 422, "occupied"),
        ("/sim/rooms/r2119", {"windows": True}, 422, "windows"),
        ("/sim/rooms/r2119", {}, 422, "at least one"),
        ("/sim/rooms/r2119", {"ac": {"mode": "turbo"}}, 422, "mode"),
        ("/sim/rooms/r2119", {"ac": {"setpoint": 40}}, 422, "setpoint"),
        ("/sim/rooms/r2119", {"ac": {"mode": "cool", "setpoint": 5}}, 422, "outside 16..32 in cool mode"),
        ("/sim/rooms/r2119", {"ac": {"mode": "heat", "setpoint": 31}}, 422, "outside 5..30 in heat mode"),
        ("/sim/rooms/r2119", {"plugs": {"r1102-pc": 10}}, 422, "'r1102-pc' is not a plug of room 'r2119'"),
        ("/sim/rooms/c1", {"ac": {"mode": "cool"}}, 422, "no AC"),
    ],
)
async def test_bad_room_requests_name_the_problem(
    app_client: httpx.AsyncClient, path: str, body: dict[str, object], status: int, needle: str
) -> None:
    r = await app_client.post(path, json=body)
    assert r.status_code == status
    assert needle in r.text
