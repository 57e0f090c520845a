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
        ("control_mode", "holding", 3 * 256 + 4, "uint16"),  # page 3 offset 4, current control mode -> 772
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
    # every key names the register that shows it took effect (GenComm page 3 control mode, page 5 engine state)
    assert {k: (e.point, e.values) for k, e in key.effects.items() if k != 35707} == {
        35700: ("control_mode", [0]),
        35701: ("control_mode", [1]),
        35702: ("control_mode", [2]),
        35705: ("engine_state", [1, 2, 3]),
    }
    assert gencomm.point("control_mode").enum.items() >= {0: "stop", 1: "auto", 2: "manual"}.items()
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


def _key_profile(**key: Any) -> dict[str, Any]:
    """A controller with a mode register, a measurement and a complement-pair key (keys 1 and 2)."""
    return {
        "name": "x",
        "driver": "modbus",
        "device": "d",
        "documentation": "doc",
        "points": [
            {"name": "mode", "table": "holding", "address": 0, "type": "uint16", "kind": "state"},
            {"name": "volts", "table": "holding", "address": 1, "type": "uint16", "scale": 0.1, "unit": "V"},
            {
                "name": "key",
                "table": "holding",
                "address": 8,
                "type": "uint16",
                "writable": True,
                "write_as": "complement_pair",
                "enum": {1: "one", 2: "two"},
                **key,
            },
        ],
    }


def _modbus(**point: Any) -> dict[str, Any]:
    base = {"name": "p", "table": "input", "address": 0, "type": "float32", "unit": "V"}
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
                    {"name": "a", "table": "input", "address": 0, "type": "float32", "unit": "V"},
                    {"name": "b", "table": "input", "address": 1, "type": "uint16", "unit": "A"},
                ],
            },
            "overlap at input register 1",
        ),
        (
            {
                **_modbus(),
                "points": [
                    {"name": "e", "table": "input", "address": 0, "type": "float32", "unit": "kWh", "kind": "counter"},
                    {"name": "e_delta", "table": "input", "address": 2, "type": "float32", "unit": "kWh"},
                ],
            },
            "clashes with the delta",
        ),
        ({**_modbus(), "sentinels": {"int16": [70000]}}, "does not fit a int16"),
        ({**_modbus(), "points": [{"name": "p", "table": "input", "address": 0, "type": "float32"}]}, "give its unit"),
        (_modbus(type="uint32", rollover=1e6), "rollover is for counters"),
        (_modbus(kind="counter", rollover=0), "greater than 0"),
        (_modbus(effects={1: {"point": "p", "values": [1]}}), "effects are for complement_pair keys"),
        (_key_profile(enum={}, effects={}), "needs its keys listed in enum"),
        (_key_profile(effects={1: {"point": "mode", "values": [1]}}), "key 2 needs an effect"),
        (
            _key_profile(effects={1: {"point": "mode", "values": [1]}, 2: {"point": "x", "values": [2]}}),
            "effect point 'x', not in profile",
        ),
        (
            _key_profile(effects={1: {"point": "mode", "values": [1]}, 2: {"point": "volts", "values": [2]}}),
            "effect point 'volts' must be a polled integer code",
        ),
        (
            _key_profile(
                effects={
                    1: {"point": "mode", "values": [1]},
                    2: {"point": "mode", "values": [2]},
                    3: {"point": "mode", "values": [3]},
                }
            ),
            "effect for key 3, which enum does not list",
        ),
    ],
)
def test_modbus_profile_errors(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ModbusProfile.model_validate(data)


def test_same_address_in_different_tables_is_fine() -> None:
    data = {
        **_modbus(),
        "points": [
            {"name": "a", "table": "input", "address": 0, "type": "uint16", "unit": "V"},
            {"name": "b", "table": "holding", "address": 0, "type": "uint16", "unit": "V"},
        ],
    }
    assert len(ModbusProfile.model_validate(data).points) == 2


def test_a_unit_is_given_explicitly_for_every_measured_number() -> None:
    """`unit: ""` declares a dimensionless number; leaving the unit out is an error (codes and keys need none)."""
    dimensionless = ModbusProfile.model_validate(_modbus(unit=""))
    assert dimensionless.points[0].unit == ""
    assert ModbusProfile.model_validate(
        _key_profile(effects={1: {"point": "mode", "values": [1]}, 2: {"point": "mode", "values": [2]}})
    )
    with pytest.raises(ValidationError, match="'p': give its unit"):
        MqttProfile.model_validate({**_mqtt("zigbee2mqtt"), "points": [{"name": "p", "key": "k", "type": "int"}]})
    assert MqttProfile.model_validate({**_mqtt("zigbee2mqtt"), "points": [{"name": "p", "key": "k", "type": "bool"}]})
    for name in known_profiles():
        for p in load_profile(name).points:
            if p.kind != "state" and getattr(p, "polled", True) and getattr(p, "type", "float") not in ("bool", "str"):
                assert "unit" in p.model_fields_set, f"{name}.{p.name}"


def test_integer_counters_wrap_at_their_register_range_times_the_scale() -> None:
    gencomm = load_profile("dse-gencomm")
    assert isinstance(gencomm, ModbusProfile)
    assert gencomm.point("energy").wraps_at == pytest.approx(2**32 * 0.1)  # uint32, kWh x 10
    assert gencomm.point("starts").wraps_at == 2**32
    sdm = load_profile("sdm630")
    assert isinstance(sdm, ModbusProfile)
    assert sdm.point("import_energy").wraps_at is None  # a float has no fixed wrap
    declared = ModbusProfile.model_validate(_modbus(kind="counter", unit="kWh", rollover=100000.0))
    assert declared.points[0].wraps_at == 100000.0
    assert ModbusProfile.model_validate(_modbus(type="int16", kind="counter", scale=0.01)).points[0].wraps_at == 655.36


def _mqtt(convention: str, **point: Any) -> dict[str, Any]:
    base = {"name": "p", "key": "k", "type": "float", "unit": "W"}
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
                    {"name": "b", "channel": "stat/POWER", "key": "X", "type": "float", "unit": "W"},
                ],
            },
            "mixes a plain-text point with JSON keys",
        ),
        (
            {
                **_mqtt("zigbee2mqtt"),
                "points": [
                    {"name": "a", "key": "a", "type": "float", "unit": "W"},
                    {"name": "a", "key": "b", "type": "float", "unit": "W"},
                ],
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
