"""Recognising devices from what they announce: recorded payloads of real devices -> profiles (pure)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from drivers.discovery import (
    BY_FEATURES,
    BY_MODEL,
    ReadBlock,
    UnitAnswers,
    describe_answers,
    match_modbus,
    match_shelly,
    match_tasmota,
    match_z2m,
    plan_reads,
    z2m_properties,
)
from drivers.probe import RateLimiter, parse_target
from drivers.profiles import Discovery, ModbusProfile, RegisterCheck, known_profiles, load_profile
from simulators import announce

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
PROFILES = [load_profile(name) for name in sorted(known_profiles())]


def fixture(path: str) -> Any:
    return json.loads((FIXTURES / path).read_text(encoding="utf-8"))


def z2m_entry(profile: str) -> dict[str, Any]:
    if profile == "z2m-occupancy":
        devices = fixture("z2m-occupancy/bridge_devices.json")
        return next(d for d in devices if d["type"] != "Coordinator")
    entry: dict[str, Any] = fixture(f"{profile}/bridge_devices_entry.json")
    return entry


@pytest.mark.parametrize("profile", ["z2m-occupancy", "z2m-contact", "z2m-plug", "z2m-thermostat"])
def test_recorded_zigbee2mqtt_entries_match_their_profile_by_model(profile: str) -> None:
    match = match_z2m(z2m_entry(profile), PROFILES)
    assert match is not None
    assert (match.profile, match.confidence) == (profile, BY_MODEL)
    assert match.also == ()


@pytest.mark.parametrize("profile", ["z2m-occupancy", "z2m-contact", "z2m-plug", "z2m-thermostat"])
def test_an_unlisted_model_matches_by_what_it_exposes(profile: str) -> None:
    entry = z2m_entry(profile)
    entry["definition"]["model"] = "XYZ-123"
    match = match_z2m(entry, PROFILES)
    assert match is not None
    assert (match.profile, match.confidence) == (profile, BY_FEATURES)


def test_an_unknown_model_exposing_nothing_known_is_unmatched() -> None:
    entry = z2m_entry("z2m-contact")
    entry["definition"] = {"model": "WXKG11LM", "vendor": "Aqara", "exposes": [{"type": "enum", "property": "action"}]}
    assert match_z2m(entry, PROFILES) is None
    entry["definition"] = None  # unsupported by Zigbee2MQTT
    assert match_z2m(entry, PROFILES) is None


def test_exposed_properties_include_features_of_composite_exposes() -> None:
    props = z2m_properties(z2m_entry("z2m-thermostat")["definition"]["exposes"])
    assert {"system_mode", "local_temperature", "occupied_cooling_setpoint", "battery"} <= props


def test_recorded_tasmota_discovery_matches_by_module_and_by_sensors() -> None:
    config, sensors = fixture("tasmota-relay/discovery_config.json"), fixture("tasmota-relay/discovery_sensors.json")
    match = match_tasmota(config, sensors, PROFILES)
    assert match is not None and (match.profile, match.confidence, match.role) == (
        "tasmota-relay",
        BY_MODEL,
        "lighting",
    )
    other = {**config, "md": "Generic"}
    match = match_tasmota(other, sensors, PROFILES)
    assert match is not None and (match.profile, match.confidence) == ("tasmota-relay", BY_FEATURES)
    assert match_tasmota(other, None, PROFILES) is None  # no module we know, no energy sensor: unmatched


def test_recorded_shelly_device_info_matches() -> None:
    info = fixture("shelly-plug/rpc_get_device_info_reply.json")["result"]
    match = match_shelly(info, PROFILES)
    assert match is not None and match.profile == "shelly-plug"
    assert match_shelly({"model": "SNSW-001X16EU", "app": "Plus1", "gen": 2}, PROFILES) is None


def answers_from(path: str) -> UnitAnswers:
    data = fixture(path)
    answers = UnitAnswers()
    for address, value in data["registers"].items():
        answers.registers[(data["table"], int(address))] = value
    return answers


@pytest.mark.parametrize(
    ("path", "profile"),
    [
        ("sdm630/input_registers.json", "sdm630"),
        ("sdm120/input_registers.json", "sdm120"),
        ("atys-pm/holding_registers.json", "atys-pm"),
    ],
)
def test_recorded_registers_match_their_profile(path: str, profile: str) -> None:
    match = match_modbus(answers_from(path), PROFILES)
    assert match is not None and match.profile == profile


def test_gencomm_is_identified_by_its_manufacturer_code() -> None:
    answers = answers_from("dse-gencomm/holding_registers.json")
    assert match_modbus(answers, PROFILES) is None  # page 3 not in that dump: not identified
    for address, value in fixture("dse-gencomm/identification_registers.json")["registers"].items():
        answers.registers[("holding", int(address))] = value
    match = match_modbus(answers, PROFILES)
    assert match is not None and match.profile == "dse-gencomm" and match.confidence == 0.9
    answers.registers[("holding", 768)] = 7  # another manufacturer's GenComm controller
    assert match_modbus(answers, PROFILES) is None


def test_nan_and_out_of_range_registers_match_nothing_and_are_described() -> None:
    answers = UnitAnswers()
    for address in range(0, 0x48, 2):
        answers.registers[("input", address)] = 0x7FC0  # NaN, as an Eastron meter reports a failed measurement
        answers.registers[("input", address + 1)] = 0
    assert match_modbus(answers, PROFILES) is None
    sdm = load_profile("sdm630")
    assert sdm.discovery is not None
    assert "input 0 (float32): nan" in describe_answers(answers, sdm.discovery.registers)
    answers.refuse(ReadBlock("holding", 20481, 7), 2)
    atys = load_profile("atys-pm")
    assert atys.discovery is not None
    assert describe_answers(answers, atys.discovery.registers).startswith("holding 20481: exception 2")


def test_reads_are_planned_in_few_blocks_of_one_table_each() -> None:
    checks = [c for p in PROFILES if p.discovery is not None for c in p.discovery.registers]
    blocks = plan_reads(checks)
    assert blocks == [
        ReadBlock("holding", 768, 1),
        ReadBlock("holding", 1031, 1),
        ReadBlock("holding", 1408, 1),
        ReadBlock("holding", 20481, 7),
        ReadBlock("input", 0, 6),
        ReadBlock("input", 0x46, 2),
    ]


def test_profiles_declare_only_evidence_of_their_own_kind() -> None:
    data = load_profile("sdm630").model_dump()
    data["discovery"] = {"z2m_models": ["X"]}
    with pytest.raises(ValueError, match="zigbee2mqtt evidence does not fit a modbus profile"):
        ModbusProfile.model_validate(data)
    with pytest.raises(ValueError, match="give equals, or both min and max"):
        RegisterCheck(table="input", address=0, type="float32", min=0)
    assert Discovery(registers=[]).uses() == set()


def test_every_shipped_profile_can_be_discovered() -> None:
    assert all(p.discovery is not None and p.discovery.uses() for p in PROFILES)


def test_the_simulator_announces_what_the_recorded_devices_announce() -> None:
    """Same keys as the recordings, and each announcement matches its profile by model."""
    for profile in ("z2m-occupancy", "z2m-contact", "z2m-plug", "z2m-thermostat"):
        (entry,) = announce.z2m_bridge_devices([("dev", "dev", profile)])[1:]
        recorded = z2m_entry(profile)
        assert set(recorded) <= set(entry) | {"description", "software_build_id", "date_code"}
        assert set(recorded["definition"]) <= set(entry["definition"])
        match = match_z2m(entry, PROFILES)
        assert match is not None and match.profile == profile
    config = announce.tasmota_config("r2119-light", "r2119-light")
    assert set(config) == set(fixture("tasmota-relay/discovery_config.json"))
    info = announce.shelly_device_info("r2119-plug", "shellyplus-r2119")
    assert set(info) == set(fixture("shelly-plug/rpc_get_device_info_reply.json")["result"])


@pytest.mark.parametrize(
    ("text", "host", "port", "units"),
    [
        ("192.168.1.20:502", "192.168.1.20", 502, (1,)),
        ("gw.local:502/1-3,7", "gw.local", 502, (1, 2, 3, 7)),
        ("[::1]:1502/2", "::1", 1502, (2,)),
    ],
)
def test_modbus_targets_parse(text: str, host: str, port: int, units: tuple[int, ...]) -> None:
    target = parse_target(text)
    assert (target.host, target.port, target.units) == (host, port, units)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("192.168.1.20", "HOST:PORT"),
        ("h:x", "not a number"),
        ("h:70000", "1..65535"),
        ("h:502/0", "1..247"),
        ("h:502/5-2", "1..247"),
        ("h:502/a", "not a number or a range"),
    ],
)
def test_bad_modbus_targets_are_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_target(text)


async def test_the_rate_limiter_spaces_requests_by_its_interval() -> None:
    now = [100.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(4, clock=lambda: now[0], sleep=sleep)
    for _ in range(5):
        await limiter.wait()
    assert limiter.stamps == [100.0, 100.25, 100.5, 100.75, 101.0]
    now[0] += 10  # idle for a while: the next request goes at once
    await limiter.wait()
    assert limiter.stamps[-1] == 111.0 and len(slept) == 4
    with pytest.raises(ValueError):
        RateLimiter(0)
