"""Payload renderers by the vendors' conventions, and the malformed versions device_garbage sends."""

from __future__ import annotations

import json
import math

import pytest

from service.config.site import Site
from simulators import payloads
from simulators.mqtt_face import Broker, changed
from tests.simulators.conftest import WORKDAY_10AM, make_world


def test_zigbee2mqtt_state_keys(demo: Site) -> None:
    w = make_world(demo)
    dev = w.state()["devices"]
    occ = payloads.z2m_state("z2m-occupancy", dev["r2119-occ"], 120)
    assert set(occ) >= {"occupancy", "illuminance", "battery", "linkquality"} and isinstance(occ["occupancy"], bool)
    ac = payloads.z2m_state("z2m-thermostat", dev["r2119-ac"], 120)
    assert set(ac) >= {
        "system_mode",
        "local_temperature",
        "occupied_cooling_setpoint",
        "occupied_heating_setpoint",
        "running_state",
    }
    plug = payloads.z2m_state("z2m-plug", dev["r1102-pc"], 120)
    assert plug["state"] in ("ON", "OFF") and {"power", "energy"} <= set(plug)
    door = payloads.z2m_state("z2m-contact", dev["r2119-door"], 120)
    assert isinstance(door["contact"], bool)


def test_tasmota_payloads(demo: Site) -> None:
    dev = make_world(demo).state()["devices"]["r2119-light"]
    state = payloads.tasmota_state(dev, WORKDAY_10AM, 3723, 70)
    assert state["Time"] == "2026-07-15T10:00:00" and state["Uptime"] == "0T01:02:03"
    assert state["POWER"] in ("ON", "OFF")
    energy = payloads.tasmota_sensor(dev, WORKDAY_10AM, 0.5, 1.2)["ENERGY"]
    assert energy["Total"] == round(dev["energy_kwh"], 3) and energy["Power"] == round(dev["power_w"])
    assert payloads.tasmota_command("on", False) is True
    assert payloads.tasmota_command("TOGGLE", True) is False
    assert payloads.tasmota_command("", True) is None
    with pytest.raises(ValueError):
        payloads.tasmota_command("BRIGHT", True)


def test_shelly_status(demo: Site) -> None:
    dev = make_world(demo).state()["devices"]["r2119-plug"]
    status = payloads.shelly_status(dev, WORKDAY_10AM, 36.0)
    assert status["id"] == 0 and status["output"] is dev["on"]
    assert status["apower"] == round(dev["power_w"], 1)
    assert status["aenergy"]["total"] == pytest.approx(dev["energy_kwh"] * 1000, abs=0.001)  # Wh
    with pytest.raises(ValueError, match="no switch 1"):
        payloads.shelly_params_id({"id": 1})


def test_garbage_comes_in_three_kinds() -> None:
    good = {"state": "ON", "power": 12.5, "energy": {"total": 3.0}, "ok": True}
    truncated, wrong, nan = (payloads.garbage(good, n).decode() for n in (0, 1, 2))
    with pytest.raises(ValueError):
        json.loads(truncated)
    assert json.loads(wrong) == {"state": 12345, "power": "n/a", "energy": {"total": "n/a"}, "ok": "maybe"}
    with pytest.raises(ValueError):
        json.loads(nan, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    assert math.isnan(json.loads(nan)["power"])


def test_reports_on_real_change_only() -> None:
    before = {"power": 100.0, "state": "ON", "local_temperature": 25.0, "energy": 1.0}
    assert not changed(before, {**before, "power": 104.0, "energy": 1.2})
    assert changed(before, {**before, "power": 115.0})
    assert changed(before, {**before, "state": "OFF"})
    assert changed(before, {**before, "local_temperature": 25.2})
    assert changed(None, before)


def test_broker_urls() -> None:
    assert Broker.from_url("mqtt://127.0.0.1:1884") == Broker("127.0.0.1", 1884)
    assert Broker.from_url("mqtts://u:p%40ss@broker.example") == Broker("broker.example", 8883, "u", "p@ss", True)
    with pytest.raises(ValueError):
        Broker.from_url("http://x")
