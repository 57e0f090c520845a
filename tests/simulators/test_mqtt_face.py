"""The simulated office devices on a real Mosquitto, seen and commanded with mosquitto_sub / mosquitto_pub."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable

import pytest

from service.config.site import Site
from simulators.runner import Simulation
from tests import servers
from tests.simulators.conftest import WORKDAY_10AM, Watch, json_has, pub, run


@pytest.fixture
async def watch(fresh_mosquitto: servers.Mosquitto) -> AsyncIterator[Watch]:
    """Everything published on the test's broker."""
    w = await Watch(fresh_mosquitto.port).start("#")
    yield w
    await w.stop()


async def retained(port: int, topic: str) -> str:
    """The retained message on a topic (mosquitto_sub --retained-only)."""
    code, out, _ = await run("mosquitto_sub", "-p", str(port), "-t", topic, "--retained-only", "-C", "1", "-W", "5")
    assert code == 0, f"nothing retained on {topic}"
    return out.strip()


async def test_devices_announce_themselves_retained(sim: Simulation, fresh_mosquitto: servers.Mosquitto) -> None:
    port = fresh_mosquitto.port
    assert await retained(port, "tele/r2119-light/LWT") == "Online"
    assert await retained(port, "shellyplus-r2119/online") == "true"
    assert json.loads(await retained(port, "zigbee2mqtt/r2119-occ/availability")) == {"state": "online"}
    assert json.loads(await retained(port, "zigbee2mqtt/bridge/state")) == {"state": "online"}


async def test_zigbee2mqtt_state_payloads(sim: Simulation, fresh_mosquitto: servers.Mosquitto, watch: Watch) -> None:
    port = fresh_mosquitto.port
    await pub(port, "zigbee2mqtt/r2119-occ/get", json.dumps({"occupancy": ""}))
    occ = json.loads(await watch.expect("zigbee2mqtt/r2119-occ"))
    assert occ["occupancy"] is sim.state()["rooms"]["r2119"]["occupied"]
    assert {"illuminance", "battery", "linkquality"} <= set(occ)
    await pub(port, "zigbee2mqtt/r2119-door/get", "{}")
    door = json.loads(await watch.expect("zigbee2mqtt/r2119-door"))
    assert door["contact"] is not sim.state()["rooms"]["r2119"]["door_open"]
    await pub(port, "zigbee2mqtt/r3101-ac/get", "{}")
    ac = json.loads(await watch.expect("zigbee2mqtt/r3101-ac"))
    assert ac["local_temperature"] == pytest.approx(sim.state()["rooms"]["r3101"]["temperature_c"], abs=0.1)
    assert ac["system_mode"] == sim.state()["devices"]["r3101-ac"]["system_mode"]


async def test_zigbee2mqtt_commands(sim: Simulation, fresh_mosquitto: servers.Mosquitto, watch: Watch) -> None:
    port = fresh_mosquitto.port
    await pub(port, "zigbee2mqtt/r1102-pc/set", json.dumps({"state": "OFF"}))
    plug = json.loads(await watch.expect("zigbee2mqtt/r1102-pc", json_has(state="OFF")))
    assert plug["power"] == 0 and sim.state()["devices"]["r1102-pc"]["on"] is False
    await pub(port, "zigbee2mqtt/r1102-pc/set/state", "ON")
    await watch.expect("zigbee2mqtt/r1102-pc", json_has(state="ON"))
    await pub(port, "zigbee2mqtt/r3101-ac/set", json.dumps({"system_mode": "cool", "occupied_cooling_setpoint": 26}))
    await watch.expect("zigbee2mqtt/r3101-ac", json_has(system_mode="cool", occupied_cooling_setpoint=26.0))
    await pub(port, "zigbee2mqtt/r3101-ac/set", json.dumps({"occupied_cooling_setpoint": 5}))
    log = await watch.expect("zigbee2mqtt/bridge/logging", json_has(level="error"))
    assert "occupied_cooling_setpoint" in log
    assert sim.state()["devices"]["r3101-ac"]["cooling_setpoint"] == 26.0


async def test_tasmota_command_and_telemetry(sim: Simulation, fresh_mosquitto: servers.Mosquitto, watch: Watch) -> None:
    port = fresh_mosquitto.port
    assert sim.state()["devices"]["r3101-light"]["on"] is True
    await pub(port, "cmnd/r3101-light/POWER", "OFF")
    assert json.loads(await watch.expect("stat/r3101-light/RESULT", json_has(POWER="OFF"))) == {"POWER": "OFF"}
    await watch.expect("stat/r3101-light/POWER", lambda p: p == "OFF")
    assert sim.state()["devices"]["r3101-light"]["on"] is False
    await pub(port, "cmnd/r3101-light/POWER", "TOGGLE")
    await watch.expect("stat/r3101-light/POWER", lambda p: p == "ON")
    sim.world.step(60)  # one TelePeriod of simulated time
    sensor = json.loads(await watch.expect("tele/r3101-light/SENSOR", lambda p: '"Power": 1200' in p))
    assert {"Total", "Voltage", "Today", "Current"} <= set(sensor["ENERGY"])
    await watch.expect("tele/r3101-light/STATE", json_has(POWER="ON"))
    await pub(port, "cmnd/r3101-light/POWER", "BRIGHT")
    await watch.expect("stat/r3101-light/RESULT", json_has(Command="Error"))


async def test_shelly_rpc(sim: Simulation, fresh_mosquitto: servers.Mosquitto, watch: Watch) -> None:
    port = fresh_mosquitto.port
    request = {"id": 7, "src": "tester", "method": "Switch.Set", "params": {"id": 0, "on": False}}
    await pub(port, "shellyplus-r2119/rpc", json.dumps(request))
    answer = json.loads(await watch.expect("tester/rpc"))
    assert answer == {"id": 7, "src": "shellyplus-r2119", "dst": "tester", "result": {"was_on": True}}
    status = json.loads(await watch.expect("shellyplus-r2119/status/switch:0", json_has(output=False)))
    assert status["apower"] == 0 and "total" in status["aenergy"]
    watch.clear()
    await pub(
        port,
        "shellyplus-r2119/rpc",
        json.dumps({"id": 8, "src": "tester", "method": "Switch.GetStatus", "params": {"id": 0}}),
    )
    assert json.loads(await watch.expect("tester/rpc"))["result"]["output"] is False
    await pub(port, "shellyplus-r2119/rpc", json.dumps({"id": 9, "src": "tester", "method": "Switch.Fly"}))
    assert json.loads(await watch.expect("tester/rpc", json_has(id=9)))["error"]["code"] == 404


async def test_offline_devices_say_so_and_ignore_commands(
    sim: Simulation, fresh_mosquitto: servers.Mosquitto, watch: Watch
) -> None:
    port = fresh_mosquitto.port
    assert sim.state()["devices"]["r3101-light"]["on"] and sim.state()["devices"]["r1102-pc"]["on"]
    for device in ("r3101-light", "r2119-plug", "r1102-pc"):
        sim.fault("device_offline", device)
    await watch.expect("tele/r3101-light/LWT", lambda p: p == "Offline")
    await watch.expect("shellyplus-r2119/online", lambda p: p == "false")
    await watch.expect("zigbee2mqtt/r1102-pc/availability", json_has(state="offline"))
    await pub(port, "cmnd/r3101-light/POWER", "OFF")
    await pub(port, "zigbee2mqtt/r1102-pc/set", json.dumps({"state": "OFF"}))
    await watch.expect("zigbee2mqtt/bridge/logging", lambda p: "r1102-pc" in p)
    assert sim.state()["devices"]["r3101-light"]["on"] is True
    assert sim.state()["devices"]["r1102-pc"]["on"] is True
    assert not any(t == "stat/r3101-light/RESULT" for t, _ in watch.lines)
    watch.clear()
    sim.clear_faults()
    await watch.expect("tele/r3101-light/LWT", lambda p: p == "Online")
    await watch.expect("shellyplus-r2119/online", lambda p: p == "true")
    await watch.expect("zigbee2mqtt/r1102-pc/availability", json_has(state="online"))
    await watch.expect("zigbee2mqtt/r1102-pc", json_has(state="ON"))


def malformed(key: str) -> Callable[[str], bool]:
    """A payload check: not JSON, a NaN in it, or `key` not a boolean."""

    def check(payload: str) -> bool:
        if "NaN" in payload:
            return True
        try:
            data = json.loads(payload)
        except ValueError:
            return True
        return not isinstance(data, dict) or not isinstance(data.get(key), bool)

    return check


async def test_garbage_payloads(sim: Simulation, watch: Watch) -> None:
    sim.fault("device_garbage", "r2119-occ")
    sim.fault("device_garbage", "r2119-plug")
    sim.world.step(180)
    await watch.expect("zigbee2mqtt/r2119-occ", malformed("occupancy"))
    await watch.expect("shellyplus-r2119/status/switch:0", malformed("output"))


async def test_devices_report_changes_made_in_the_room(sim: Simulation, watch: Watch) -> None:
    assert not sim.state()["rooms"]["r2119"]["occupied"] and not sim.state()["rooms"]["r2119"]["lights_on"]
    sim.set_room("r2119", occupied=True, lights=True)
    await watch.expect("zigbee2mqtt/r2119-occ", json_has(occupancy=True))
    await watch.expect("stat/r2119-light/POWER", lambda p: p == "ON")
    sim.set_room("r2119", occupied=False, lights=False)
    await watch.expect("zigbee2mqtt/r2119-occ", json_has(occupancy=False))
    await watch.expect("stat/r2119-light/POWER", lambda p: p == "OFF")


async def test_devices_reconnect_after_a_broker_restart(sim: Simulation, fresh_mosquitto: servers.Mosquitto) -> None:
    fresh_mosquitto.restart()
    watch = await Watch(fresh_mosquitto.port).start("tester/rpc")
    request = json.dumps({"id": 1, "src": "tester", "method": "Switch.GetStatus", "params": {"id": 0}})
    try:
        for _ in range(30):  # the plug comes back within its reconnect interval
            await pub(fresh_mosquitto.port, "shellyplus-r2119/rpc", request)
            if any(topic == "tester/rpc" for topic, _ in watch.lines):
                break
            await asyncio.sleep(0.5)
        assert json.loads(await watch.expect("tester/rpc"))["result"]["id"] == 0
    finally:
        await watch.stop()


async def test_goodbye_on_shutdown(demo_site: Site, fresh_mosquitto: servers.Mosquitto) -> None:
    async with Simulation(demo_site, control_port=None, speed=0, start=WORKDAY_10AM):
        assert await retained(fresh_mosquitto.port, "tele/c1-light/LWT") == "Online"
    assert await retained(fresh_mosquitto.port, "tele/c1-light/LWT") == "Offline"
    assert await retained(fresh_mosquitto.port, "shellyplus-srv1-ups/online") == "false"
    assert json.loads(await retained(fresh_mosquitto.port, "zigbee2mqtt/bridge/state")) == {"state": "offline"}
