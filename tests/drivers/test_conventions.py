"""MQTT conventions, pure: topics, parsing of recorded payloads, availability, command messages."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
import pytest

from drivers.conventions import (
    AVAILABILITY,
    Availability,
    Binding,
    Malformed,
    Parsed,
    Publish,
    ShellyGen2,
    Tasmota,
    bind,
    command_value,
    matches,
    parse_rpc_reply,
)
from drivers.profiles import MqttProfile, load_profile

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def binding(profile: str, topic: str) -> Binding:
    prof = load_profile(profile)
    assert isinstance(prof, MqttProfile)
    return bind(prof, topic, "wattkeeper")


def fixture(profile: str, name: str) -> bytes:
    return (FIXTURES / profile / name).read_bytes()


def parse(b: Binding, channel: str, payload: bytes) -> Parsed:
    out = b.parse(channel, payload)
    assert isinstance(out, Parsed)
    return out


@pytest.mark.parametrize(
    ("profile", "topic", "subscriptions"),
    [
        (
            "z2m-thermostat",
            "zigbee2mqtt/r2119-ac",
            {"zigbee2mqtt/r2119-ac": "state", "zigbee2mqtt/r2119-ac/availability": AVAILABILITY},
        ),
        (
            "tasmota-relay",
            "r2119-light",
            {
                "stat/r2119-light/POWER": "stat/POWER",
                "stat/r2119-light/RESULT": "stat/RESULT",
                "tele/r2119-light/STATE": "tele/STATE",
                "tele/r2119-light/SENSOR": "tele/SENSOR",
                "tele/r2119-light/LWT": AVAILABILITY,
            },
        ),
        (
            "shelly-plug",
            "shellyplus-r2119",
            {"shellyplus-r2119/status/switch:0": "status/switch:0", "shellyplus-r2119/online": AVAILABILITY},
        ),
    ],
)
def test_subscriptions(profile: str, topic: str, subscriptions: dict[str, str]) -> None:
    assert binding(profile, topic).subscriptions == subscriptions


@pytest.mark.parametrize(
    ("profile", "channel", "payload", "values", "order"),
    [
        ("z2m-occupancy", "state", "state.json", {"occupancy": True, "illuminance": 381.0, "battery": 100.0}, None),
        (
            "z2m-thermostat",
            "state",
            "state.json",
            {
                "system_mode": "cool",
                "local_temperature": 27.5,
                "cooling_setpoint": 26.0,
                "heating_setpoint": 20.0,
                "running_state": "cool",
                "power": 1180.0,
            },
            1784020353.12,
        ),
        ("z2m-plug", "state", "state.json", {"on": True, "power": 85.0, "energy": 12.37}, None),
        ("z2m-contact", "state", "state.json", {"contact": False, "battery": 91.0}, None),
        ("tasmota-relay", "stat/POWER", "stat_POWER.txt", {"on": True}, None),
        ("tasmota-relay", "stat/RESULT", "stat_RESULT.json", {"on": False}, None),
        ("tasmota-relay", "tele/STATE", "tele_STATE.json", {"on": True}, 1784020353.0),
        (
            "tasmota-relay",
            "tele/SENSOR",
            "tele_SENSOR.json",
            {"power": 118.0, "energy": 126.418, "voltage": 229.0},
            1784020353.0,
        ),
        (
            "shelly-plug",
            "status/switch:0",
            "status_switch_0.json",
            {"on": True, "power": 43.2, "energy": pytest.approx(5.814093), "voltage": 229.8},
            1784020320.0,
        ),
    ],
)
def test_recorded_payloads(
    profile: str, channel: str, payload: str, values: dict[str, object], order: float | None
) -> None:
    topic = {"z2m": "zigbee2mqtt/x", "tasmota-relay": "x", "shelly-plug": "x"}
    b = binding(profile, topic["z2m" if profile.startswith("z2m") else profile])
    parsed = parse(b, channel, fixture(profile, payload))
    assert parsed.values == values
    assert not parsed.errors and not parsed.unavailable and not parsed.implausible
    assert parsed.order == (pytest.approx(order) if order else None)


@pytest.mark.parametrize(
    ("profile", "payload", "online"),
    [
        ("z2m-occupancy", b'{"state":"online"}', True),
        ("z2m-occupancy", b'{"state":"offline"}', False),
        ("z2m-occupancy", b"online", True),  # legacy plain availability
        ("z2m-occupancy", b"offline", False),
        ("tasmota-relay", b"Online", True),
        ("tasmota-relay", b"Offline", False),
        ("shelly-plug", b"true", True),
        ("shelly-plug", b"false", False),
    ],
)
def test_availability(profile: str, payload: bytes, online: bool) -> None:
    b = binding(profile, "zigbee2mqtt/x" if profile.startswith("z2m") else "x")
    assert b.parse(AVAILABILITY, payload) == Availability(online)


@pytest.mark.parametrize(
    ("profile", "channel", "payload", "message"),
    [
        ("z2m-plug", "state", b"\xff\xfe{", "UTF-8"),
        ("z2m-plug", "state", b'{"power": 12', "invalid JSON"),
        ("z2m-plug", "state", b'{"power": NaN}', "invalid JSON"),
        ("z2m-plug", "state", b"[1, 2]", "expected a JSON object"),
        ("z2m-plug", "state", b"", "invalid JSON"),
        ("z2m-plug", AVAILABILITY, b"maybe", "not online/offline"),
        ("z2m-plug", AVAILABILITY, b'{"state": 1}', "without a 'state'"),
        ("tasmota-relay", "stat/POWER", b"\xc3\x28", "UTF-8"),
        ("shelly-plug", AVAILABILITY, b"1", "not true/false"),
    ],
)
def test_malformed_payloads(profile: str, channel: str, payload: bytes, message: str) -> None:
    b = binding(profile, "zigbee2mqtt/x" if profile.startswith("z2m") else "x")
    with pytest.raises(Malformed, match=message):
        b.parse(channel, payload)


def test_wrong_types_and_nan_are_errors_per_point_null_is_unavailable() -> None:
    b = binding("z2m-thermostat", "zigbee2mqtt/ac")
    payload = orjson.dumps(
        {
            "system_mode": 3,
            "local_temperature": None,
            "occupied_cooling_setpoint": "26",
            "occupied_heating_setpoint": True,
            "running_state": "defrost",
            "power": 900,
        }
    )
    parsed = parse(b, "state", payload)
    assert parsed.values == {"power": 900.0}
    assert parsed.unavailable == ("local_temperature",)
    assert parsed.implausible == ("running_state",)
    assert len(parsed.errors) == 3


def test_out_of_range_is_implausible() -> None:
    parsed = parse(binding("z2m-contact", "zigbee2mqtt/d"), "state", b'{"battery": 180, "contact": true}')
    assert parsed.values == {"contact": True}
    assert parsed.implausible == ("battery",)


def test_bool_words_are_case_insensitive_but_not_numbers() -> None:
    b = binding("tasmota-relay", "x")
    assert parse(b, "stat/POWER", b"on").values == {"on": True}
    assert parse(b, "stat/RESULT", b'{"POWER": 1}').errors  # 1 is not "ON"


def test_extra_keys_and_unrelated_results_are_ignored() -> None:
    b = binding("tasmota-relay", "x")
    parsed = parse(b, "stat/RESULT", b'{"Dimmer": 40}')
    assert parsed.values == {} and not parsed.errors


@pytest.mark.parametrize(
    ("profile", "topic", "point", "value", "messages"),
    [
        ("z2m-plug", "zigbee2mqtt/pc", "on", False, [Publish("zigbee2mqtt/pc/set", b'{"state":"OFF"}')]),
        ("z2m-plug", "zigbee2mqtt/pc", "on", True, [Publish("zigbee2mqtt/pc/set", b'{"state":"ON"}')]),
        (
            "z2m-thermostat",
            "zigbee2mqtt/ac",
            "system_mode",
            "off",
            [Publish("zigbee2mqtt/ac/set", b'{"system_mode":"off"}')],
        ),
        (
            "z2m-thermostat",
            "zigbee2mqtt/ac",
            "cooling_setpoint",
            26.0,
            [Publish("zigbee2mqtt/ac/set", b'{"occupied_cooling_setpoint":26.0}')],
        ),
        ("tasmota-relay", "r1-light", "on", False, [Publish("cmnd/r1-light/POWER", b"OFF")]),
        ("tasmota-relay", "r1-light", "on", True, [Publish("cmnd/r1-light/POWER", b"ON")]),
        (
            "shelly-plug",
            "shellyplus-r1",
            "on",
            False,
            [
                Publish(
                    "shellyplus-r1/rpc",
                    b'{"id":5,"src":"wattkeeper","method":"Switch.Set","params":{"id":0,"on":false}}',
                )
            ],
        ),
    ],
)
def test_commands(profile: str, topic: str, point: str, value: object, messages: list[Publish]) -> None:
    b = binding(profile, topic)
    p = b.profile.point(point)
    assert b.command(p, command_value(p, value), 5) == messages  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("profile", "topic", "point", "messages"),
    [
        ("z2m-plug", "zigbee2mqtt/pc", "on", [Publish("zigbee2mqtt/pc/get", b'{"state":""}')]),
        ("tasmota-relay", "r1", "on", [Publish("cmnd/r1/POWER", b"")]),
        (
            "shelly-plug",
            "s1",
            "on",
            [Publish("s1/rpc", b'{"id":9,"src":"wattkeeper","method":"Switch.GetStatus","params":{"id":0}}')],
        ),
    ],
)
def test_queries(profile: str, topic: str, point: str, messages: list[Publish]) -> None:
    b = binding(profile, topic)
    assert b.query(b.profile.point(point), 9) == messages


@pytest.mark.parametrize(
    ("profile", "point", "value", "accepted"),
    [
        ("z2m-thermostat", "cooling_setpoint", 26, 26.0),
        ("z2m-thermostat", "system_mode", "COOL", "cool"),
        ("z2m-plug", "on", "off", False),
        ("z2m-plug", "on", True, True),
        ("z2m-thermostat", "cooling_setpoint", 12, None),  # below min 16
        ("z2m-thermostat", "cooling_setpoint", float("nan"), None),
        ("z2m-thermostat", "cooling_setpoint", "26", None),
        ("z2m-thermostat", "cooling_setpoint", True, None),
        ("z2m-thermostat", "system_mode", "turbo", None),
        ("z2m-plug", "on", 2, None),
    ],
)
def test_command_values(profile: str, point: str, value: object, accepted: object) -> None:
    prof = load_profile(profile)
    assert isinstance(prof, MqttProfile)
    p = prof.point(point)
    if accepted is None:
        with pytest.raises(ValueError):
            command_value(p, value)  # type: ignore[arg-type]
    else:
        assert command_value(p, value) == accepted  # type: ignore[arg-type]


def test_matches_tolerates_number_formatting_only() -> None:
    prof = load_profile("z2m-thermostat")
    assert isinstance(prof, MqttProfile)
    setpoint = prof.point("cooling_setpoint")
    assert matches(setpoint, 26, 26.0)
    assert not matches(setpoint, 25.5, 26.0)
    assert not matches(prof.point("system_mode"), "heat", "cool")


def test_shelly_rpc_replies() -> None:
    b = binding("shelly-plug", "shellyplus-r2119")
    assert isinstance(b, ShellyGen2)
    assert b.reply_topic() == "wattkeeper/rpc"
    status = parse_rpc_reply(fixture("shelly-plug", "rpc_get_status_reply.json"))
    assert status.src == "shellyplus-r2119" and status.id == 7 and status.error is None
    assert status.result is not None
    parsed = b.reply(status.result)
    assert parsed is not None and parsed.channel == "status/switch:0"
    assert parsed.values["on"] is False
    set_reply = parse_rpc_reply(fixture("shelly-plug", "rpc_set_reply.json"))
    assert set_reply.result == {"was_on": True} and b.reply(set_reply.result) is None
    error = parse_rpc_reply(fixture("shelly-plug", "rpc_error_reply.json"))
    assert error.error and "no such component" in error.error
    with pytest.raises(Malformed):
        parse_rpc_reply(b'{"id": 1}')


def test_profile_and_convention_must_agree() -> None:
    prof = load_profile("shelly-plug")
    assert isinstance(prof, MqttProfile)
    with pytest.raises(ValueError, match="follows shelly-gen2"):
        Tasmota(prof, "x", "wattkeeper")


def test_naive_device_time_is_read_in_the_device_time_zone() -> None:
    prof = load_profile("tasmota-relay")
    assert isinstance(prof, MqttProfile)
    shanghai = bind(prof, "x", "wattkeeper", device_tz=ZoneInfo("Asia/Shanghai"))
    utc = bind(prof, "x", "wattkeeper")
    payload = fixture("tasmota-relay", "tele_SENSOR.json")  # "Time": "2026-07-14T09:12:33", no offset
    assert parse(shanghai, "tele/SENSOR", payload).order == datetime(2026, 7, 14, 1, 12, 33, tzinfo=UTC).timestamp()
    assert parse(utc, "tele/SENSOR", payload).order == datetime(2026, 7, 14, 9, 12, 33, tzinfo=UTC).timestamp()
    # a timestamp with its own offset ignores the device zone
    z2m = load_profile("z2m-thermostat")
    assert isinstance(z2m, MqttProfile)
    ac = bind(z2m, "zigbee2mqtt/ac", "wattkeeper", device_tz=ZoneInfo("Asia/Shanghai"))
    assert (
        parse(ac, "state", b'{"last_seen": "2026-07-14T09:12:33Z"}').order
        == datetime(2026, 7, 14, 9, 12, 33, tzinfo=UTC).timestamp()
    )
