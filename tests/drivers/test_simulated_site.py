"""The drivers against the site simulators over real sockets and the real broker (the demo site)."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from drivers.hub import DriverHub
from drivers.profiles import load_profile
from drivers.types import Quality
from service.config.site import Device, Site
from simulators.runner import Simulation
from tests.drivers.helpers import FAST, Recorder, wait_until
from tests.drivers.modbus_tap import ModbusTap

WORKDAY_10AM = datetime(2026, 7, 15, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
# GenComm page 3 control mode codes, from DSE's table (not the simulator's), for the simulator's mode names
GENCOMM_MODES = {"stop": 0, "auto": 1, "manual": 2}
State = dict[str, Any]


def fast_site(demo_site: Site) -> Site:
    """The demo site, Modbus polled every 0.2 s, with the IT department meter an SDM120 (every profile in use)."""
    devices: list[Device] = []
    for d in demo_site.devices:
        if d.driver == "modbus":
            d = d.model_copy(update={"poll_s": 0.2})
        if d.id == "meter-dept-it":
            d = d.model_copy(update={"profile": "sdm120"})
        devices.append(d)
    return demo_site.model_copy(update={"devices": devices})


@dataclass
class Running:
    site: Site
    sim: Simulation
    hub: DriverHub
    recorder: Recorder

    def device(self, device_id: str) -> State:
        return dict(self.sim.state()["devices"][device_id])


@pytest.fixture
async def running(demo_site: Site) -> AsyncIterator[Running]:
    """The drivers first, then the simulated devices coming up (as when a building's devices power on)."""
    site = fast_site(demo_site)
    recorder = Recorder()
    hub = DriverHub(
        site.devices, mqtt_url=site.mqtt.url, emit=recorder, client_id=f"wk-{uuid.uuid4().hex[:8]}", settings=FAST
    )
    async with hub:
        await wait_until(lambda: hub.mqtt_connected, what="broker")
        async with Simulation(site, control_port=None, speed=0, seed=3, start=WORKDAY_10AM) as sim:
            yield Running(site, sim, hub, recorder)


def _close(tol: float) -> Callable[[float], Any]:
    return lambda expected: pytest.approx(expected, rel=2e-7, abs=tol)


# Each profile point, matched to the simulator's model: (value in GET /sim/state terms, tolerance of the
# rounding on either side). Points the model does not expose are checked by physics in RELATIONS.
Direct = dict[str, tuple[Callable[[State, State], Any], float]]
DIRECT: dict[str, Direct] = {
    "sdm630": {
        "voltage_l1": (lambda d, w: d["voltage_v"], 0.06),
        "power": (lambda d, w: d["power_w"], 0.06),
        "frequency": (lambda d, w: d["frequency_hz"], 0.006),
        "import_energy": (lambda d, w: d["import_kwh"], 0.005),
        "export_energy": (lambda d, w: d["export_kwh"], 0.005),
        "total_energy": (lambda d, w: d["import_kwh"] + d["export_kwh"], 0.01),
    },
    "sdm120": {
        "voltage": (lambda d, w: d["voltage_v"], 0.06),
        "power": (lambda d, w: d["power_w"], 0.06),
        "frequency": (lambda d, w: d["frequency_hz"], 0.006),
        "import_energy": (lambda d, w: d["import_kwh"], 0.005),
        "export_energy": (lambda d, w: d["export_kwh"], 0.005),
        "total_energy": (lambda d, w: d["import_kwh"] + d["export_kwh"], 0.01),
    },
    "dse-gencomm": {
        "control_mode": (lambda d, w: GENCOMM_MODES[w["generators"]["gen-1"]["mode"]], 0),
        "power": (lambda d, w: d["power_w"], 0.6),
        "engine_state": (lambda d, w: d["engine_state"], 0),
        "breaker_status": (lambda d, w: d["breaker_status"], 0),
        "frequency": (lambda d, w: w["generators"]["gen-1"]["frequency_hz"], 0.06),
        "voltage_l1": (lambda d, w: w["generators"]["gen-1"]["voltage_v"], 0.06),
        "voltage_l2": (lambda d, w: w["generators"]["gen-1"]["voltage_v"], 0.06),
        "voltage_l3": (lambda d, w: w["generators"]["gen-1"]["voltage_v"], 0.06),
        "energy": (lambda d, w: w["generators"]["gen-1"]["energy_kwh"], 0.06),
        "starts": (lambda d, w: w["generators"]["gen-1"]["starts"], 0),
        "mains_voltage_l1": (
            lambda d, w: w["sources"][w["transfer_switches"]["ats-1"]["connected"]]["voltage_v"],
            0.06,
        ),
        "mains_frequency": (
            lambda d, w: w["sources"][w["transfer_switches"]["ats-1"]["connected"]]["frequency_hz"],
            0.06,
        ),
    },
    "atys-pm": {
        "position": (lambda d, w: d["position_code"], 0),
        "cycle_count": (lambda d, w: d["cycles"], 0),
        "source1_state": (lambda d, w: 2 if w["sources"]["grid-a"]["available"] else 0, 0),
        "source2_state": (lambda d, w: 2 if w["sources"]["grid-b"]["available"] else 0, 0),
    },
    "z2m-occupancy": {
        "occupancy": (lambda d, w: d["occupancy"], 0),
        "illuminance": (lambda d, w: d["illuminance"], 0),
        "battery": (lambda d, w: d["battery"], 0.5),
    },
    "z2m-contact": {"contact": (lambda d, w: d["contact"], 0), "battery": (lambda d, w: d["battery"], 0.5)},
    "z2m-thermostat": {
        "system_mode": (lambda d, w: d["system_mode"], 0),
        "local_temperature": (lambda d, w: d["local_temperature"], 0),
        "cooling_setpoint": (lambda d, w: d["cooling_setpoint"], 0),
        "heating_setpoint": (lambda d, w: d["heating_setpoint"], 0),
        "running_state": (lambda d, w: d["running_state"], 0),
        "power": (lambda d, w: d["power_w"], 0.6),
    },
    "z2m-plug": {
        "on": (lambda d, w: d["on"], 0),
        "power": (lambda d, w: d["power_w"], 0.06),
        "energy": (lambda d, w: d["energy_kwh"], 0.006),
    },
    "tasmota-relay": {
        "on": (lambda d, w: d["on"], 0),
        "power": (lambda d, w: d["power_w"], 0.6),
        "energy": (lambda d, w: d["energy_kwh"], 0.0006),
        "voltage": (lambda d, w: d["voltage_v"], 0.6),
    },
    "shelly-plug": {
        "on": (lambda d, w: d["on"], 0),
        "power": (lambda d, w: d["power_w"], 0.06),
        "energy": (lambda d, w: d["energy_kwh"], 0.0002),
        "voltage": (lambda d, w: d["voltage_v"], 0.06),
    },
}

Values = dict[str, Any]


def _sdm630_physics(v: Values, d: State) -> None:
    for phase in ("l2", "l3"):
        assert v[f"voltage_{phase}"] == pytest.approx(d["voltage_v"], rel=0.03)
    assert v["power_l1"] + v["power_l2"] + v["power_l3"] == pytest.approx(v["power"], rel=1e-4, abs=0.5)
    assert -1 <= v["power_factor"] <= 1
    for phase in ("l1", "l2", "l3"):
        apparent = v[f"current_{phase}"] * v[f"voltage_{phase}"] * abs(v["power_factor"])
        assert apparent == pytest.approx(abs(v[f"power_{phase}"]), rel=1e-3, abs=0.5)


def _sdm120_physics(v: Values, d: State) -> None:
    assert -1 <= v["power_factor"] <= 1
    assert v["current"] * v["voltage"] * abs(v["power_factor"]) == pytest.approx(abs(v["power"]), rel=1e-3, abs=0.5)


def _gencomm_physics(v: Values, d: State) -> None:
    assert 20 <= v["battery_voltage"] <= 30  # a 24 V starter battery


def _atys_physics(v: Values, d: State) -> None:
    assert v["mode"] in (0, 1, 2, 3)


RELATIONS: dict[str, tuple[frozenset[str], Callable[[Values, State], None]]] = {
    "sdm630": (
        frozenset(
            {
                "voltage_l2",
                "voltage_l3",
                "current_l1",
                "current_l2",
                "current_l3",
                "power_l1",
                "power_l2",
                "power_l3",
                "power_factor",
            }
        ),
        _sdm630_physics,
    ),
    "sdm120": (frozenset({"current", "power_factor"}), _sdm120_physics),
    "dse-gencomm": (frozenset({"battery_voltage"}), _gencomm_physics),
    "atys-pm": (frozenset({"mode"}), _atys_physics),
}


def test_every_point_of_every_profile_has_a_check() -> None:
    for name, direct in DIRECT.items():
        profile = load_profile(name)
        polled = {p.name for p in profile.points if getattr(p, "polled", True)}
        covered = set(direct) | RELATIONS.get(name, (frozenset(), None))[0]
        assert covered == polled, name


async def test_every_point_of_every_profile_matches_the_simulated_world(running: Running) -> None:
    devices = {d.id: d for d in running.site.devices}
    assert {d.profile for d in devices.values()} == set(DIRECT)

    def complete() -> bool:
        return all(set(DIRECT[d.profile]) <= set(running.recorder.latest(d.id)) for d in devices.values())

    await wait_until(complete, timeout_s=20, what="every point of every device")
    world = running.sim.state()
    for device_id, dev in devices.items():
        latest = running.recorder.latest(device_id)
        state = world["devices"][device_id]
        values = {p: r.value for p, r in latest.items()}
        assert all(r.quality is Quality.good for r in latest.values()), device_id
        for point, (expected, tol) in DIRECT[dev.profile].items():
            want = expected(state, world)
            assert values[point] == (_close(tol)(want) if tol else want), f"{device_id}.{point}"
        if dev.profile in RELATIONS:
            RELATIONS[dev.profile][1](values, state)
    assert all(h.online and h.rejects == 0 for h in running.hub.health().values())


async def test_device_offline_and_back_online(running: Running) -> None:
    rec, targets = running.recorder, ["meter-grid-a", "genset-1", "r2119-light", "r2119-ac", "r2119-plug"]
    await wait_until(lambda: all(rec.online(t) for t in targets), what="all online")
    for target in targets:
        running.sim.fault("device_offline", target)
    await wait_until(lambda: not any(rec.online(t) for t in targets), timeout_s=15, what="all offline")
    assert rec.online("meter-grid-b") is True  # the others are untouched
    running.sim.clear_faults()
    await wait_until(lambda: all(rec.online(t) for t in targets), timeout_s=15, what="all back online")
    for target in targets:
        changes = [s.online for s in rec.statuses if s.device == target]
        assert changes[-2:] == [False, True], target
        assert all(a != b for a, b in itertools.pairwise(changes)), f"{target}: repeated transition"


async def test_device_garbage_reads_bad_or_is_rejected_never_a_number(running: Running) -> None:
    rec, hub = running.recorder, running.hub
    await wait_until(
        lambda: "import_energy" in rec.latest("meter-grid-a") and rec.value("r2119-ac", "power") is not None,
        what="first readings",
    )
    modbus_targets = ["meter-grid-a", "genset-1", "ats-1-ctrl"]
    mqtt_targets = ["r2119-ac", "r2119-light", "r2119-plug"]
    for target in modbus_targets + mqtt_targets:
        running.sim.fault("device_garbage", target)
    mark = len(rec.readings)
    # make the MQTT devices report: the room warms, the lights and the projector go on
    running.sim.set_room("r2119", temperature=29.5, lights=True, plugs={"r2119-plug": 240.0})

    def modbus_bad() -> bool:
        latest = {t: rec.latest(t) for t in modbus_targets}
        return all(
            latest[t] and all(r.quality is Quality.bad for p, r in latest[t].items() if not p.endswith("_delta"))
            for t in modbus_targets
        )

    await wait_until(modbus_bad, timeout_s=15, what="every polled point bad")
    await wait_until(
        lambda: all(hub.health()[t].rejects >= 1 for t in mqtt_targets),
        timeout_s=15,
        what="malformed MQTT payloads counted",
    )
    for r in rec.readings[mark:]:
        if r.device in mqtt_targets and r.quality is Quality.good and isinstance(r.value, float):
            assert r.value == r.value  # never NaN
    assert all(hub.health()[t].online for t in modbus_targets)  # garbage is not offline


async def test_read_only_writes_are_refused_and_never_reach_the_simulator(demo_site: Site) -> None:
    site = fast_site(demo_site)
    modbus = [d for d in site.devices if d.id in ("meter-grid-a", "genset-1", "ats-1-ctrl")]
    recorder = Recorder()
    async with Simulation(site, control_port=None, speed=0, seed=3, start=WORKDAY_10AM) as sim:
        taps = {d.id: ModbusTap(d.port or 0) for d in modbus}
        for tap in taps.values():
            await tap.__aenter__()
        try:
            tapped = [d.model_copy(update={"port": taps[d.id].port}) for d in modbus]
            hub = DriverHub(tapped, mqtt_url=None, emit=recorder, settings=FAST)
            async with hub:
                await wait_until(lambda: all(recorder.online(d.id) for d in modbus), what="online through the taps")
                refused = [
                    await hub.command("meter-grid-a", "power", 0),
                    await hub.command("meter-grid-a", "import_energy", 0),
                    await hub.command("genset-1", "engine_state", 3),
                    await hub.command("genset-1", "breaker_status", 2),
                    await hub.command("ats-1-ctrl", "position", 3),
                ]
                assert [r.status for r in refused] == ["refused"] * 5
                assert all("read-only" in r.detail for r in refused)
                assert all(t.writes == [] for t in taps.values())
                assert all(t.functions for t in taps.values())  # the taps do see the polls
                # the one writable register does go through, and the controller obeys it
                manual = await hub.command("genset-1", "control_key", "manual")
                assert (manual.status, manual.observed) == ("confirmed", 2)
                assert taps["genset-1"].writes == [16]
                assert sim.state()["generators"]["gen-1"]["mode"] == "manual"
        finally:
            for tap in taps.values():
                await tap.__aexit__()


async def test_verified_commands_on_all_three_mqtt_conventions(running: Running) -> None:
    hub, rec = running.hub, running.recorder
    await wait_until(
        lambda: all(rec.online(d) for d in ("r2119-light", "r2119-ac", "r2119-plug", "r1102-pc")), what="online"
    )
    results = {
        "light off (Tasmota)": await hub.command("r2119-light", "on", False),
        "light on (Tasmota)": await hub.command("r2119-light", "on", True),
        "AC mode (Zigbee2MQTT)": await hub.command("r2119-ac", "system_mode", "cool"),
        "AC setpoint (Zigbee2MQTT)": await hub.command("r2119-ac", "cooling_setpoint", 27),
        "plug off (Shelly)": await hub.command("r2119-plug", "on", False),
        "plug off again (Shelly)": await hub.command("r2119-plug", "on", False),
        "PC plug off (Zigbee2MQTT)": await hub.command("r1102-pc", "on", False),
    }
    assert {k: (r.status, r.observed) for k, r in results.items()} == {
        "light off (Tasmota)": ("confirmed", False),
        "light on (Tasmota)": ("confirmed", True),
        "AC mode (Zigbee2MQTT)": ("confirmed", "cool"),
        "AC setpoint (Zigbee2MQTT)": ("confirmed", 27.0),
        "plug off (Shelly)": ("confirmed", False),
        "plug off again (Shelly)": ("confirmed", False),
        "PC plug off (Zigbee2MQTT)": ("confirmed", False),
    }
    assert running.device("r2119-light")["on"] is True
    assert running.device("r2119-ac")["system_mode"] == "cool"
    assert running.device("r2119-ac")["cooling_setpoint"] == 27.0
    assert running.device("r2119-plug")["on"] is False
    assert running.device("r1102-pc")["on"] is False
    # an unreachable device: no confirmation, a clear failure within the timeout
    running.sim.fault("device_offline", "r3102-light")
    await wait_until(lambda: rec.online("r3102-light") is False, what="offline")
    failed = await hub.command("r3102-light", "on", False, timeout_s=1.5)
    assert failed.status == "failed" and "no report" in failed.detail


async def test_gencomm_keys_are_confirmed_by_their_effect_on_the_controller(running: Running) -> None:
    """A control key is consumed by the controller: each is verified by reading back what it does."""
    hub, rec, sim = running.hub, running.recorder, running.sim
    await wait_until(lambda: rec.online("genset-1") is True, what="online")

    def generator() -> State:
        return dict(sim.state()["generators"]["gen-1"])

    assert (generator()["mode"], generator()["engine_state"]) == ("auto", 0)
    # In auto with the grid healthy the controller ignores a start key (GenComm starts the engine in
    # manual or test mode only): written and acknowledged, but no effect, so the command fails.
    ignored = await hub.command("genset-1", "control_key", "start", timeout_s=1.5)
    assert (ignored.status, ignored.observed) == ("failed", 0)
    assert "no effect within 1.5 s" in ignored.detail and "engine_state = 0 (stopped)" in ignored.detail
    assert generator()["engine_state"] == 0

    manual = await hub.command("genset-1", "control_key", "manual")
    assert (manual.status, manual.observed, manual.detail) == ("confirmed", 2, "control_mode = 2 (manual)")
    assert generator()["mode"] == "manual"

    # Simulated time stands still in this fixture (speed 0): move it on while the start key waits.
    start = asyncio.create_task(hub.command("genset-1", "control_key", "start"))
    while not start.done():
        sim.world.step(0.5)
        await asyncio.sleep(0.05)
    assert start.result().status == "confirmed"
    assert start.result().observed in (1, 2, 3)  # pre-start, warming or running
    assert generator()["engine_state"] != 0

    stop = await hub.command("genset-1", "control_key", "stop")
    assert (stop.status, stop.observed) == ("confirmed", 0)
    assert generator()["mode"] == "stop"
