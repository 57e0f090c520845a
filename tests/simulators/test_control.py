"""The control API over HTTP (DESIGN.md §4) on a running simulation."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime

import httpx
import pytest

from service.config.site import Site
from simulators.control import create_app
from simulators.runner import Simulation
from tests.simulators.conftest import WORKDAY_10AM, devices, read_float, read_holding, wait_until


def port_of(sim: Simulation, device_id: str) -> int:
    port = devices(sim.site)[device_id].port
    assert port is not None
    return port


async def post_fault(client: httpx.AsyncClient, body: dict[str, object]) -> datetime:
    """Inject a fault over HTTP; the simulated time it took effect (the world may move on before we look)."""
    r = await client.post("/sim/faults", json=body)
    assert r.status_code == 200, r.text
    return datetime.fromisoformat(next(f["since"] for f in r.json()["faults"] if f["fault"] == body["fault"]))


def since_s(sim: Simulation, at: datetime) -> float:
    """Simulated seconds from `at` to now."""
    return (sim.world.now - at).total_seconds()


async def holding_until(port: int, address: int, check: Callable[[int], bool], timeout_s: float = 30) -> list[int]:
    """Every value mbpoll read from one holding register until one passed `check` (the last)."""
    seen: list[int] = []
    deadline = time.monotonic() + timeout_s
    while not seen or not check(seen[-1]):
        assert time.monotonic() < deadline, f"register {address} never passed the check; read {seen[-10:]}"
        if seen:
            await asyncio.sleep(0.05)
        seen += await read_holding(port, address)
    return seen


async def poll_float(port: int, address: int, check: Callable[[float], bool], timeout_s: float = 30) -> float:
    """Read an SDM float until it passes `check`."""
    deadline = time.monotonic() + timeout_s
    while True:
        (value,) = await read_float(port, address)
        if check(value):
            return value
        assert time.monotonic() < deadline, f"float at {address:#x} never passed the check; last {value}"
        await asyncio.sleep(0.1)


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
    lost_at = await post_fault(client, {"fault": "source_loss", "target": "grid-a"})
    await wait_until(lambda: sim.state()["transfer_switches"]["ats-1"]["position"] == "grid-b")
    assert since_s(sim, lost_at) >= 3, "not before the transfer delay (test_world pins the exact timing)"
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
        ("/sim/rooms/r2119", {"illuminance": -5}, 422, "illuminance"),
        ("/sim/rooms/srv1", {"illuminance": 900}, 422, "no occupancy sensor"),
    ],
)
async def test_bad_room_requests_name_the_problem(
    app_client: httpx.AsyncClient, path: str, body: dict[str, object], status: int, needle: str
) -> None:
    r = await app_client.post(path, json=body)
    assert r.status_code == status
    assert needle in r.text


async def test_stuck_switch_over_the_wire(api: tuple[Simulation, httpx.AsyncClient]) -> None:
    """ats_stuck then source_loss of the feeding grid: the ATyS stays in position I, the load stays dead."""
    sim, client = api
    ats, dept = port_of(sim, "ats-1-ctrl"), port_of(sim, "meter-dept-it")
    cycles = await read_holding(ats, 20489, 2)
    await post_fault(client, {"fault": "ats_stuck", "target": "ats-1"})
    lost_at = await post_fault(client, {"fault": "source_loss", "target": "grid-a"})
    await wait_until(lambda: since_s(sim, lost_at) >= 3 + 0.5 + 10)  # well past transfer delay + operation
    assert await read_holding(ats, 20482) == [2], "still in position I, on the dead grid"
    assert await read_holding(ats, 20486, 2) == [0, 2], "source I under threshold, source II available"
    assert await read_holding(ats, 20489, 2) == cycles, "the mechanism never operated"
    assert await read_float(dept, 0x0000) == [0.0] and await read_float(dept, 0x0034) == [0.0]
    state = (await client.get("/sim/state")).json()
    assert state["transfer_switches"]["ats-1"]["position"] is None and state["load_kw"] == 0
    assert state["generators"]["gen-1"]["state"] == "stopped", "grid-b is healthy: no start demand"
    assert (await client.delete("/sim/faults")).status_code == 200
    await poll_float(dept, 0x0034, lambda w: w > 0)


async def test_slow_start_over_the_wire(api: tuple[Simulation, httpx.AsyncClient]) -> None:
    """generator_slow_start: still cranking when a healthy set would be on load; ready delay_s later."""
    sim, client = api
    gen, dept = port_of(sim, "genset-1"), port_of(sim, "meter-dept-it")
    await post_fault(client, {"fault": "generator_slow_start", "target": "gen-1", "delay_s": 200})
    await post_fault(client, {"fault": "source_loss", "target": "grid-a"})
    lost_at = await post_fault(client, {"fault": "source_loss", "target": "grid-b"})
    await wait_until(lambda: since_s(sim, lost_at) >= 3 + 5 + 10)  # a healthy set: ready 8 s after the loss
    assert await read_holding(gen, 1408) == [1], "still in pre-start (cranking)"
    assert (await read_holding(gen, 1410))[0] & 0b11_1010 == 0b01_0000, "start demand; not available, not on load"
    assert await read_float(dept, 0x0034) == [0.0], "the load waits, unpowered"
    seen = await holding_until(gen, 1408, lambda v: v == 3, timeout_s=60)
    assert since_s(sim, lost_at) >= 3 + 5 + 200 - 0.5, "ready only after the extra delay"
    assert set(seen) <= {1, 2, 3}, "pre-start, warming, running: never a failure"
    await poll_float(dept, 0x0034, lambda w: w > 0)
    assert (await client.get("/sim/state")).json()["transfer_switches"]["ats-1"]["position"] == "gen-1"


async def test_fail_to_start_over_the_wire(api: tuple[Simulation, httpx.AsyncClient]) -> None:
    """generator_fail_start: three crank attempts, then the latched fail-to-start alarm; never ready."""
    sim, client = api
    gen, ats, dept = port_of(sim, "genset-1"), port_of(sim, "ats-1-ctrl"), port_of(sim, "meter-dept-it")
    await post_fault(client, {"fault": "generator_fail_start", "target": "gen-1"})
    await post_fault(client, {"fault": "source_loss", "target": "grid-a"})
    lost_at = await post_fault(client, {"fault": "source_loss", "target": "grid-b"})
    bits = await holding_until(gen, 1410, lambda v: bool(v & 0b10_0000))
    assert since_s(sim, lost_at) >= 3 + 3 * 5 - 0.5, "not before the mains-fail delay and three attempts"
    assert not any(b & 0b1010 for b in bits), "never available, never on load"
    assert await read_holding(gen, 1408) == [0]
    assert await read_holding(ats, 20482) == [2] and await read_holding(ats, 20486, 2) == [0, 0]
    assert await read_float(dept, 0x0034) == [0.0]
    gen_state = (await client.get("/sim/state")).json()["generators"]["gen-1"]
    assert gen_state["fail_to_start"] and not gen_state["ready"]
    await wait_until(lambda: since_s(sim, lost_at) >= 60)
    assert await read_holding(gen, 1408) == [0], "latched: no further attempts"
    assert (await client.delete("/sim/faults")).status_code == 200
    assert not (await read_holding(gen, 1410))[0] & 0b10_0000, "cleared with the faults"


async def test_illuminance_held_over_http(app_client: httpx.AsyncClient) -> None:
    r = await app_client.post("/sim/rooms/r2119", json={"illuminance": 1200})
    assert r.status_code == 200, r.text
    assert (r.json()["illuminance"], r.json()["overrides"]) == (1200, ["illuminance"])
    state = (await app_client.get("/sim/state")).json()
    assert state["devices"]["r2119-occ"]["illuminance"] == 1200
    r = await app_client.delete("/sim/rooms/r2119")
    assert r.json()["overrides"] == [] and r.json()["illuminance"] != 1200
