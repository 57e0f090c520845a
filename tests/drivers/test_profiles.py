"""Profiles are data validated on load; the shipped register maps match the vendors' published numbers."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from drivers.profiles import ModbusProfile, MqttProfile, known_profiles, load_profile

README = Path(__file__).resolve().parent.parent.parent / "drivers" / "README.md"

SHIPPED = {
    "sdm630",
    "sdm120",
    "dse-gencomm",
    "atys-pm",
    "z2m-occupancy",
    "z2m-thermostat",
    "z2m-plug",
    "z2m-contact",
    "tasmota-relay",
    "shelly-plug",
}

# Written out from the vendors' documents, not from the profiles, so a wrong profile cannot hide:
# (point, table, 0-based PDU address, datatype)
PUBLISHED: dict[str, list[tuple[str, str, int, str]]] = {
    # Eastron SDM630 Modbus protocol: 3xxxx input registers, float32; 30001 is address 0.
    "sdm630": [
        ("voltage_l1", "input", 0x0000, "float32"),  # 30001 Phase 1 line to neutral volts
        ("current_l1", "input", 0x0006, "float32"),  # 30007 Phase 1 current
        ("power_l1", "input", 0x000C, "float32"),  # 30013 Phase 1 power
        ("power", "input", 0x0034, "float32"),  # 30053 Total system power
        ("power_factor", "input", 0x003E, "float32"),  # 30063 Total system power factor
        ("frequency", "input", 0x0046, "float32"),  # 30071 Frequency of supply voltages
        ("import_energy", "input", 0x0048, "float32"),  # 30073 Import Wh since last reset (kWh)
        ("export_energy", "input", 0x004A, "float32"),  # 30075 Export Wh since last reset (kWh)
        ("total_energy", "input", 0x0156, "float32"),  # 30343 Total kWh
    ],
    # DSE GenComm: holding register = page * 256 + offset.
    "dse-gencomm": [
        ("frequency", "holding", 4 * 256 + 7, "uint16"),  # page 4 offset 7, Hz x 10 -> 1031
        ("engine_state", "holding", 1408, "uint16"),  # engine operating state
        ("power", "holding", 6 * 256 + 0, "int32"),  # page 6 offset 0, total watts, signed -> 1536
        ("energy", "holding", 7 * 256 + 8, "uint32"),  # page 7 offset 8, kWh x 10 -> 1800
        ("starts", "holding", 7 * 256 + 16, "uint32"),  # page 7 offset 16, number of starts -> 1808
        ("control_key", "holding", 16 * 256 + 8, "uint16"),  # page 16 offset 8/9, key + complement -> 4104
    ],
    # Socomec ATyS p M status table (0x5001 = 20481).
    "atys-pm": [
        ("mode", "holding", 0x5001, "uint16"),
        ("position", "holding", 0x5002, "uint16"),
        ("source1_state", "holding", 0x5006, "uint16"),
        ("source2_state", "holding", 0x5007, "uint16"),
        ("cycle_count", "holding", 0x5009, "uint32"),
    ],
}


def test_every_issue_profile_ships_and_names_its_documentation() -> None:
    assert known_profiles() >= SHIPPED
    for name in known_profiles():
        profile = load_profile(name)
        assert profile.documentation and profile.device, name


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_addresses_match_the_published_register_maps(name: str) -> None:
    profile = load_profile(name)
    assert isinstance(profile, ModbusProfile)
    for point, table, address, dtype in PUBLISHED[name]:
        p = profile.point(point)
        assert (p.table, p.address, p.type) == (table, address, dtype), point


def test_published_scales_and_control_key_layout() -> None:
    gencomm = load_profile("dse-gencomm")
    assert isinstance(gencomm, ModbusProfile)
    assert gencomm.point("frequency").scale == 0.1
    assert gencomm.point("energy").scale == 0.1
    key = gencomm.point("control_key")
    assert key.writable and key.write_as == "complement_pair" and key.count == 2
    assert {35700: "stop", 35701: "auto", 35705: "start"}.items() <= key.enum.items()
    assert set(gencomm.sentinels_for(gencomm.point("power"))) >= {0x7FFFFFFF}
    assert set(gencomm.sentinels_for(gencomm.point("frequency"))) >= {0xFFFF}
    atys = load_profile("atys-pm")
    assert isinstance(atys, ModbusProfile)
    assert atys.point("position").enum == {0: "unknown", 1: "pos 0", 2: "pos I", 3: "pos II"}


def test_only_the_listed_points_are_writable() -> None:
    writable = {
        name: sorted(p.name for p in load_profile(name).points if p.writable) for name in sorted(known_profiles())
    }
    assert writable == {
        "atys-pm": [],
        "dse-gencomm": ["control_key"],
        "sdm120": [],
        "sdm630": [],
        "shelly-plug": ["on"],
        "tasmota-relay": ["on"],
        "z2m-contact": [],
        "z2m-occupancy": [],
        "z2m-plug": ["on"],
        "z2m-thermostat": ["cooling_setpoint", "heating_setpoint", "system_mode"],
    }


def _modbus(**point: Any) -> dict[str, Any]:
    base = {"name": "p", "table": "input", "address": 0, "type": "float32"}
    return {
        "name": "x",
        "driver": "modbus",
        "device": "d",
        "documentation": "doc",
        "points": [{**base, **point}],
    }


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_modbus(type="float64", address=65533), "runs past register 65535"),
        (_modbus(type="int24"), "type"),
        (_modbus(writable=True), "only holding registers can be written"),
        (
            _modbus(table="holding", write_as="complement_pair", writable=True),
            "complement_pair needs a writable uint16",
        ),
        (_modbus(type="uint16", sentinels=[70000]), "does not fit a uint16"),
        (_modbus(scale=0), "scale must not be 0"),
        (_modbus(unknown_key=1), "Extra inputs"),
        (
            {
                **_modbus(),
                "points": [
                    {"name": "a", "table": "input", "address": 0, "type": "float32"},
                    {"name": "b", "table": "input", "address": 1, "type": "uint16"},
                ],
            },
            "overlap at input register 1",
        ),
        (
            {
                **_modbus(),
                "points": [
                    {"name": "e", "table": "input", "address": 0, "type": "float32", "kind": "counter"},
                    {"name": "e_delta", "table": "input", "address": 2, "type": "float32"},
                ],
            },
            "clashes with the delta",
        ),
        ({**_modbus(), "sentinels": {"int16": [70000]}}, "does not fit a int16"),
    ],
)
def test_modbus_profile_errors(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ModbusProfile.model_validate(data)


def test_same_address_in_different_tables_is_fine() -> None:
    data = {
        **_modbus(),
        "points": [
            {"name": "a", "table": "input", "address": 0, "type": "uint16"},
            {"name": "b", "table": "holding", "address": 0, "type": "uint16"},
        ],
    }
    assert len(ModbusProfile.model_validate(data).points) == 2


def _mqtt(convention: str, **point: Any) -> dict[str, Any]:
    base = {"name": "p", "key": "k", "type": "float"}
    return {
        "name": "x",
        "driver": "mqtt",
        "convention": convention,
        "device": "d",
        "documentation": "doc",
        "points": [{**base, **point}],
    }


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_mqtt("zigbee2mqtt", channel="tele/SENSOR"), "not a zigbee2mqtt channel"),
        (_mqtt("tasmota", channel="state"), "not a tasmota channel"),
        (_mqtt("shelly-gen2", channel="stat/POWER"), "not a shelly-gen2 channel"),
        (_mqtt("zigbee2mqtt", writable=True), "a writable number needs min and max"),
        (_mqtt("zigbee2mqtt", type="str", writable=True), "a writable string needs choices"),
        (_mqtt("zigbee2mqtt", key="a.b", writable=True, min=0, max=1), "top-level key"),
        (_mqtt("tasmota", channel="tele/SENSOR", type="bool", writable=True), "ON/OFF on a stat/<COMMAND>"),
        (_mqtt("shelly-gen2", channel="status/switch:0", key="apower", writable=True, min=0, max=1), "Switch.Set"),
        (_mqtt("zigbee2mqtt", type="bool", true_values=[]), "needs true_values and false_values"),
        (
            {
                **_mqtt("tasmota"),
                "points": [
                    {"name": "a", "channel": "stat/POWER", "key": "", "type": "bool"},
                    {"name": "b", "channel": "stat/POWER", "key": "X", "type": "float"},
                ],
            },
            "mixes a plain-text point with JSON keys",
        ),
        (
            {
                **_mqtt("zigbee2mqtt"),
                "points": [{"name": "a", "key": "a", "type": "float"}, {"name": "a", "key": "b", "type": "float"}],
            },
            "appears twice",
        ),
    ],
)
def test_mqtt_profile_errors(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        MqttProfile.model_validate(data)


def test_readme_worked_example_is_a_valid_profile(tmp_path: Path) -> None:
    text = README.read_text(encoding="utf-8")
    block = re.search(r"<!-- example-profile -->\s*```yaml\n(.*?)```", text, re.S)
    assert block, "drivers/README.md lost its worked example"
    data = yaml.safe_load(block.group(1))
    (tmp_path / f"{data['name']}.yaml").write_text(block.group(1))
    profile = load_profile(data["name"], tmp_path)
    assert isinstance(profile, ModbusProfile)
    assert profile.point("power").address == 0x0034
