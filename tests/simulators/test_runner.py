"""Running simulations: simulated time, start-up and shutdown, a whole outage seen over real sockets."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from service.config.site import Site
from simulators.mqtt_face import MqttFace
from simulators.runner import Simulation, run
from tests import servers
from tests.simulators.conftest import WORKDAY_10AM, devices, make_world, read_float, read_holding, wait_until


async def test_simulated_time_runs_at_the_requested_speed(demo_site: Site) -> None:
    async with Simulation(demo_site, control_port=None, speed=200, start=WORKDAY_10AM) as sim:
        began = time.monotonic()
        await wait_until(lambda: sim.world.elapsed_s >= 300)
        assert sim.world.elapsed_s <= 200 * (time.monotonic() - began) + 0.5, "never ahead of speed x real time"
        assert sim.state()["time"] >= "2026-07-15T10:05"


async def test_a_blackout_seen_over_the_wire(demo_site: Site) -> None:
    """Both grids lost: generator starts, takes the load; grid back: hands back, cools down, stops."""
    by_id = devices(demo_site)
    ats, gen, gen_meter = (by_id[d].port or 0 for d in ("ats-1-ctrl", "genset-1", "meter-gen"))
    async with Simulation(demo_site, control_port=None, speed=40, start=WORKDAY_10AM) as sim:
        sim.fault("source_loss", "grid-a")
        sim.fault("source_loss", "grid-b")
        lost_at = sim.world.elapsed_s
        while (await read_holding(gen, 1408))[0] != 3:
            assert sim.world.elapsed_s - lost_at < 30, "generator did not become ready"
            await asyncio.sleep(0.05)
        assert sim.world.elapsed_s - lost_at >= 3 + 5 - 0.5, "mains-fail delay + start time"
        await wait_until(lambda: sim.state()["transfer_switches"]["ats-1"]["position"] == "gen-1")
        assert (await read_holding(gen, 1410))[0] & 0b11 == 0b10
        (power,) = await read_float(gen_meter, 0x0034)
        assert power > 10_000
        assert await read_holding(ats, 20482) == [2], "the switch stays in position I with no grid to go to"
        sim.fault("source_restore", "grid-a")
        while (await read_holding(gen, 1408))[0] != 0:
            await asyncio.sleep(0.1)
        assert sim.state()["transfer_switches"]["ats-1"]["position"] == "grid-a"
        assert sim.state()["generators"]["gen-1"]["starts"] == make_world(demo_site).generators["gen-1"].starts + 1


async def test_run_serves_until_cancelled(demo_site: Site, fresh_mosquitto: servers.Mosquitto) -> None:
    task = asyncio.create_task(run(demo_site, port=0, speed=10, seed=1))
    port = devices(demo_site)["meter-grid-a"].port or 0
    deadline = time.monotonic() + 15
    while True:
        try:
            await read_float(port, 0x0034)
            break
        except ConnectionError:
            assert time.monotonic() < deadline and not task.done()
            await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(ConnectionError):
        await read_float(port, 0x0034)


async def test_a_taken_port_is_reported_with_the_device(demo_site: Site) -> None:
    port = devices(demo_site)["genset-1"].port or 0
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        with pytest.raises(OSError, match=f"127.0.0.1:{port} for genset-1"):
            async with Simulation(demo_site, control_port=None):
                pass
    other = devices(demo_site)["meter-grid-a"].port or 0
    with pytest.raises(ConnectionError):
        await read_float(other, 0x0034)  # nothing left listening


async def test_an_unreachable_broker_is_reported(demo: Site) -> None:
    face = MqttFace(make_world(demo), f"mqtt://127.0.0.1:{servers.free_port()}", client_tag="t")
    with pytest.raises(ConnectionError, match="could not connect"):
        await face.start(timeout_s=1.5)


async def test_stopping_right_after_a_change_from_outside(demo_site: Site) -> None:
    """A change nudges the clock; a stop landing on the nudge must still end it (it used to hang for ever)."""
    async with asyncio.timeout(120):
        for _ in range(10):
            async with Simulation(demo_site, control_port=None, speed=0, start=WORKDAY_10AM) as sim:
                await asyncio.sleep(0.05)
                sim.clear_faults()
