"""The MQTT bridge against the real Mosquitto: parsing, robustness, ordering, availability, commands."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiomqtt
import pytest

from drivers.base import DriverSettings
from drivers.hub import DriverHub, EventStream
from drivers.mqtt import MqttDriver, parse_mqtt_url
from drivers.types import DeviceStatus, Quality, Reading
from tests import servers
from tests.drivers.fake_mqtt import FakeDevice, FakeDevices
from tests.drivers.helpers import FAST, Recorder, mqtt_dev, wait_until
from tests.drivers.tcp_gate import TcpGate
from tests.drivers.test_modbus import transition_logs

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def uid() -> str:
    return uuid.uuid4().hex[:8]


def client(broker: servers.Mosquitto) -> aiomqtt.Client:
    return aiomqtt.Client(broker.host, broker.port, identifier=f"test-{uid()}")


def fixture(profile: str, name: str) -> bytes:
    return (FIXTURES / profile / name).read_bytes()


async def connected(hub: DriverHub) -> None:
    await wait_until(lambda: hub.mqtt_connected, what="broker connection")


def test_mqtt_urls() -> None:
    plain = parse_mqtt_url("mqtt://127.0.0.1:1883")
    assert (plain.host, plain.port, plain.username, plain.tls) == ("127.0.0.1", 1883, None, None)
    auth = parse_mqtt_url("mqtt://wk%40hq:s3cr%2Ft@broker.local")
    assert (auth.host, auth.port, auth.username, auth.password) == ("broker.local", 1883, "wk@hq", "s3cr/t")
    tls = parse_mqtt_url("mqtts://broker.local")
    assert tls.port == 8883 and tls.tls is not None
    with pytest.raises(ValueError):
        parse_mqtt_url("http://broker.local")


async def test_every_point_of_every_mqtt_profile_is_read(mosquitto: servers.Mosquitto, recorder: Recorder) -> None:
    n = uid()
    devices = [
        mqtt_dev("occ", "z2m-occupancy", f"zigbee2mqtt/occ-{n}"),
        mqtt_dev("ac", "z2m-thermostat", f"zigbee2mqtt/ac-{n}"),
        mqtt_dev("pc", "z2m-plug", f"zigbee2mqtt/pc-{n}"),
        mqtt_dev("door", "z2m-contact", f"zigbee2mqtt/door-{n}"),
        mqtt_dev("light", "tasmota-relay", f"light-{n}"),
        mqtt_dev("plug", "shelly-plug", f"shelly-{n}"),
    ]
    hub = DriverHub(devices, mqtt_url=mosquitto.url, emit=recorder, client_id=f"wk-{n}", settings=FAST)
    async with hub, client(mosquitto) as c:
        await connected(hub)
        for dev, profile in (
            ("occ", "z2m-occupancy"),
            ("ac", "z2m-thermostat"),
            ("pc", "z2m-plug"),
            ("door", "z2m-contact"),
        ):
            await c.publish(f"zigbee2mqtt/{dev}-{n}", fixture(profile, "state.json"), qos=1)
        await c.publish(f"stat/light-{n}/POWER", fixture("tasmota-relay", "stat_POWER.txt"), qos=1)
        await c.publish(f"tele/light-{n}/SENSOR", fixture("tasmota-relay", "tele_SENSOR.json"), qos=1)
        await c.publish(f"shelly-{n}/status/switch:0", fixture("shelly-plug", "status_switch_0.json"), qos=1)
        expected: dict[str, dict[str, object]] = {
            "occ": {"occupancy": True, "illuminance": 381.0, "battery": 100.0},
            "ac": {
                "system_mode": "cool",
                "local_temperature": 27.5,
                "cooling_setpoint": 26.0,
                "heating_setpoint": 20.0,
                "running_state": "cool",
                "power": 1180.0,
            },
            "pc": {"on": True, "power": 85.0, "energy": 12.37, "energy_delta": 0.0},
            "door": {"contact": False, "battery": 91.0},
            "light": {"on": True, "power": 118.0, "energy": 126.418, "voltage": 229.0, "energy_delta": 0.0},
            "plug": {
                "on": True,
                "power": 43.2,
                "energy": pytest.approx(5.814093),
                "voltage": 229.8,
                "energy_delta": 0.0,
            },
        }
        await wait_until(
            lambda: all(set(points) <= set(recorder.latest(d)) for d, points in expected.items()), what="all points"
        )
    for device, points in expected.items():
        got = {p: r.value for p, r in recorder.latest(device).items()}
        assert got == points, device
        assert all(r.quality is Quality.good for r in recorder.latest(device).values())
    assert all(h.online and h.rejects == 0 for h in hub.health().values())


async def test_malformed_payloads_are_counted_and_skipped(mosquitto: servers.Mosquitto, recorder: Recorder) -> None:
    n = uid()
    settings = DriverSettings(mqtt_max_payload=4096, reconnect_min_s=0.1)
    devices = [mqtt_dev("pc", "z2m-plug", f"zigbee2mqtt/pc-{n}"), mqtt_dev("light", "tasmota-relay", f"l-{n}")]
    hub = DriverHub(devices, mqtt_url=mosquitto.url, emit=recorder, client_id=f"wk-{n}", settings=settings)
    garbage = [
        b"{not json",  # invalid JSON
        b'{"power": NaN}',  # NaN is not JSON
        b'{"power": "85 W"}',  # wrong type
        b'{"state": 1}',  # not a known on/off word
        b"\xff\xfe\x00",  # not UTF-8
        b"[1,2,3]",  # not an object
        b'{"power": 5}' + b" " * 5000,  # oversized
        b'{"power": -3}',  # below min 0: implausible
    ]
    async with hub, client(mosquitto) as c:
        await connected(hub)
        for payload in garbage:
            await c.publish(f"zigbee2mqtt/pc-{n}", payload, qos=1)
        await c.publish(f"tele/l-{n}/SENSOR", b'{"Time":"2026-01-01T00:00:00","ENERGY":{"Power":"x"}}', qos=1)
        await c.publish(f"zigbee2mqtt/pc-{n}", b'{"state": "ON", "power": 85}', qos=1)  # the loop lives on
        await wait_until(lambda: recorder.value("pc", "power") == 85.0, what="the good message after the garbage")
    health = hub.health()
    assert health["pc"].rejects == len(garbage)
    assert health["light"].rejects == 1
    assert [r.value for r in recorder.readings if r.device == "pc" and r.point == "power"] == [None, 85.0]
    assert recorder.latest("pc")["power"].quality is Quality.good


async def test_out_of_order_and_duplicate_messages_never_move_state_backwards(
    mosquitto: servers.Mosquitto, recorder: Recorder
) -> None:
    n = uid()
    devices = [mqtt_dev("light", "tasmota-relay", f"l-{n}"), mqtt_dev("ac", "z2m-thermostat", f"zigbee2mqtt/ac-{n}")]
    hub = DriverHub(devices, mqtt_url=mosquitto.url, emit=recorder, client_id=f"wk-{n}", settings=FAST)

    def sensor(time: str, power: float) -> bytes:
        return json.dumps({"Time": time, "ENERGY": {"Power": power, "Total": 10.0}}).encode()

    def ac(last_seen: str, mode: str) -> bytes:
        return json.dumps({"last_seen": last_seen, "system_mode": mode}).encode()

    async with hub, client(mosquitto) as c:
        await connected(hub)
        await c.publish(f"tele/l-{n}/SENSOR", sensor("2026-03-02T10:00:10", 100), qos=1)
        await c.publish(f"tele/l-{n}/SENSOR", sensor("2026-03-02T10:00:00", 50), qos=1)  # late
        await c.publish(f"tele/l-{n}/SENSOR", sensor("2026-03-02T10:00:10", 100), qos=1)  # duplicate
        await c.publish(f"zigbee2mqtt/ac-{n}", ac("2026-03-02T10:00:05.000Z", "off"), qos=1)
        await c.publish(f"zigbee2mqtt/ac-{n}", ac("2026-03-02T10:00:01.000Z", "cool"), qos=1)  # late
        await c.publish(f"zigbee2mqtt/ac-{n}", ac("2026-03-02T10:00:06.000Z", "heat"), qos=1)
        await wait_until(lambda: recorder.value("ac", "system_mode") == "heat", what="the newest AC state")
    powers = [r.value for r in recorder.readings if r.device == "light" and r.point == "power"]
    assert powers == [100.0, 100.0]
    modes = [r.value for r in recorder.readings if r.device == "ac" and r.point == "system_mode"]
    assert modes == ["off", "heat"]
    assert hub.health()["light"].out_of_order == 1 and hub.health()["ac"].out_of_order == 1


async def test_old_counter_readings_delivered_again_are_not_counted_twice(
    mosquitto: servers.Mosquitto, recorder: Recorder
) -> None:
    """A plug re-sends its unacknowledged QoS 1 messages after a broker restart; the broker had
    already passed some of them on, so older totals arrive after newer ones within the same
    second of the device's clock (Tasmota's `Time` has whole seconds)."""
    n = uid()
    hub = DriverHub(
        [mqtt_dev("plug", "tasmota-relay", f"p-{n}")],
        mqtt_url=mosquitto.url,
        emit=recorder,
        client_id=f"wk-{n}",
        settings=FAST,
    )
    now = datetime.now(UTC).replace(microsecond=0).isoformat().removesuffix("+00:00")
    totals = [10.0, 10.001, 10.002, 10.001, 10.002, 10.003]  # the fourth and fifth are the re-sent ones
    async with hub, client(mosquitto) as c:
        await connected(hub)
        for total in totals:
            payload = json.dumps({"Time": now, "ENERGY": {"Power": 100, "Total": total}}).encode()
            await c.publish(f"tele/p-{n}/SENSOR", payload, qos=1)
        await wait_until(lambda: recorder.value("plug", "energy") == 10.003, what="the last total")
    deltas = [r.value for r in recorder.readings if r.device == "plug" and r.point == "energy_delta"]
    assert sum(deltas) == pytest.approx(0.003)  # type: ignore[arg-type]
    assert hub.health()["plug"].counter_resets == 0


async def test_retained_replay_after_reconnect_is_ignored(mosquitto: servers.Mosquitto, recorder: Recorder) -> None:
    """A retained message re-sent on resubscription is older than the live state already seen."""
    n = uid()
    hub = DriverHub(
        [mqtt_dev("light", "tasmota-relay", f"l-{n}")],
        mqtt_url=mosquitto.url,
        emit=recorder,
        client_id=f"wk-{n}",
        settings=FAST,
    )
    async with hub, client(mosquitto) as c:
        await connected(hub)
        await c.publish(f"stat/l-{n}/POWER", b"ON", qos=1, retain=True)
        await wait_until(lambda: recorder.value("light", "on") is True, what="ON")
        await c.publish(f"stat/l-{n}/POWER", b"OFF", qos=1)  # live, not retained
        await wait_until(lambda: recorder.value("light", "on") is False, what="live OFF")
        # Another connection with our client id takes the session over; we reconnect and resubscribe,
        # and the broker sends the retained ON again.
        async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier=f"wk-{n}"):
            await wait_until(lambda: not hub.mqtt_connected, what="session taken over")
        await wait_until(lambda: hub.health()["light"].out_of_order == 1, what="replay dropped")
        assert recorder.value("light", "on") is False
        await c.publish(f"stat/l-{n}/POWER", b"", qos=1, retain=True)


async def test_availability_and_lwt_drive_online_state(mosquitto: servers.Mosquitto, recorder: Recorder) -> None:
    n = uid()
    devices = [
        mqtt_dev("occ", "z2m-occupancy", f"zigbee2mqtt/occ-{n}"),
        mqtt_dev("light", "tasmota-relay", f"l-{n}"),
        mqtt_dev("plug", "shelly-plug", f"s-{n}"),
    ]
    hub = DriverHub(devices, mqtt_url=mosquitto.url, emit=recorder, client_id=f"wk-{n}", settings=FAST)
    async with hub, client(mosquitto) as c:
        await connected(hub)
        await c.publish(f"zigbee2mqtt/occ-{n}/availability", b'{"state":"online"}', qos=1, retain=True)
        await c.publish(f"tele/l-{n}/LWT", b"Online", qos=1, retain=True)
        await c.publish(f"s-{n}/online", b"true", qos=1, retain=True)
        await wait_until(lambda: all(recorder.online(d) for d in ("occ", "light", "plug")), what="online")
        await c.publish(f"zigbee2mqtt/occ-{n}/availability", b"offline", qos=1)  # legacy plain form
        await c.publish(f"tele/l-{n}/LWT", b"Offline", qos=1, retain=True)
        await c.publish(f"s-{n}/online", b"false", qos=1, retain=True)
        await wait_until(lambda: not any(recorder.online(d) for d in ("occ", "light", "plug")), what="offline")
        await c.publish(f"tele/l-{n}/SENSOR", b'{"Time":"2026-01-01T00:00:00","ENERGY":{"Power":5}}', qos=1)
        await wait_until(lambda: recorder.online("light") is True, what="a live report means online")
        for topic in (f"zigbee2mqtt/occ-{n}/availability", f"tele/l-{n}/LWT", f"s-{n}/online"):
            await c.publish(topic, b"", qos=1, retain=True)  # leave the shared broker clean
    assert [s.online for s in recorder.statuses if s.device == "plug"] == [True, False]
    assert [s.online for s in recorder.statuses if s.device == "light"] == [True, False, True]


async def test_verified_commands_on_all_three_conventions(mosquitto: servers.Mosquitto, recorder: Recorder) -> None:
    n = uid()
    fakes = [
        FakeDevice("tasmota", f"light-{n}", {"on": True}),
        FakeDevice(
            "zigbee2mqtt",
            f"zigbee2mqtt/ac-{n}",
            {"system_mode": "cool", "occupied_cooling_setpoint": 22, "local_temperature": 24.0},
        ),
        FakeDevice("zigbee2mqtt", f"zigbee2mqtt/pc-{n}", {"state": "ON", "power": 80}),
        FakeDevice("shelly-gen2", f"shelly-{n}", {"on": True}),
    ]
    devices = [
        mqtt_dev("light", "tasmota-relay", f"light-{n}"),
        mqtt_dev("ac", "z2m-thermostat", f"zigbee2mqtt/ac-{n}"),
        mqtt_dev("pc", "z2m-plug", f"zigbee2mqtt/pc-{n}"),
        mqtt_dev("plug", "shelly-plug", f"shelly-{n}"),
    ]
    hub = DriverHub(devices, mqtt_url=mosquitto.url, emit=recorder, client_id=f"wk-{n}", settings=FAST)
    async with FakeDevices(mosquitto.port, fakes) as fake, hub:
        await connected(hub)
        await wait_until(lambda: len(fake.received) == len(fakes), what="state queries on connect")
        fake.received.clear()
        results = [
            await hub.command("light", "on", False),
            await hub.command("light", "on", True),
            await hub.command("ac", "system_mode", "off"),
            await hub.command("ac", "cooling_setpoint", 26),
            await hub.command("pc", "on", False),
            await hub.command("plug", "on", False),
            await hub.command("plug", "on", False),  # already off: the Shelly stays silent, GetStatus answers
        ]
    assert [(r.status, r.observed) for r in results] == [
        ("confirmed", False),
        ("confirmed", True),
        ("confirmed", "off"),
        ("confirmed", 26.0),
        ("confirmed", False),
        ("confirmed", False),
        ("confirmed", False),
    ]
    sent = [(t, p) for t, p in fake.received]
    assert (f"cmnd/light-{n}/POWER", b"OFF") in sent
    assert (f"zigbee2mqtt/ac-{n}/set", b'{"system_mode":"off"}') in sent
    assert (f"zigbee2mqtt/ac-{n}/set", b'{"occupied_cooling_setpoint":26.0}') in sent
    assert (f"zigbee2mqtt/pc-{n}/set", b'{"state":"OFF"}') in sent
    rpc = [json.loads(p) for t, p in sent if t == f"shelly-{n}/rpc"]
    assert [r["method"] for r in rpc][:3] == ["Switch.Set", "Switch.GetStatus", "Switch.Set"]
    assert rpc[0]["params"] == {"id": 0, "on": False} and rpc[0]["src"] == f"wk-{n}"
    assert fakes[1].state["system_mode"] == "off" and fakes[3].state["on"] is False


async def test_commandable_devices_are_asked_for_their_state_on_connect(
    mosquitto: servers.Mosquitto, recorder: Recorder
) -> None:
    """A Shelly reports only on change, an occupancy sensor only when someone moves: without asking,
    their state would stay unknown (a room "occupancy unknown" for minutes after a start)."""
    n = uid()
    fakes = [
        FakeDevice("shelly-gen2", f"shelly-{n}", {"on": True}),
        FakeDevice("tasmota", f"light-{n}", {"on": False}),
        FakeDevice("zigbee2mqtt", f"zigbee2mqtt/ac-{n}", {"system_mode": "heat", "local_temperature": 19.5}),
        FakeDevice("zigbee2mqtt", f"zigbee2mqtt/occ-{n}", {"occupancy": True}),
    ]
    devices = [
        mqtt_dev("plug", "shelly-plug", f"shelly-{n}"),
        mqtt_dev("light", "tasmota-relay", f"light-{n}"),
        mqtt_dev("ac", "z2m-thermostat", f"zigbee2mqtt/ac-{n}"),
        mqtt_dev("occ", "z2m-occupancy", f"zigbee2mqtt/occ-{n}"),
    ]
    hub = DriverHub(devices, mqtt_url=mosquitto.url, emit=recorder, client_id=f"wk-{n}", settings=FAST)
    async with FakeDevices(mosquitto.port, fakes) as fake, hub:
        await wait_until(
            lambda: (
                recorder.value("plug", "on") is True
                and recorder.value("light", "on") is False
                and recorder.value("ac", "system_mode") == "heat"
                and recorder.value("occ", "occupancy") is True
            ),
            what="states without any report from the devices",
        )
    assert recorder.value("plug", "power") == 40.0  # the whole GetStatus reply is read
    assert any(topic == f"zigbee2mqtt/occ-{n}/get" for topic, _ in fake.received)


async def test_unanswered_command_is_retried_once_then_failed(mosquitto: servers.Mosquitto, recorder: Recorder) -> None:
    n = uid()
    fakes = [FakeDevice("tasmota", f"light-{n}", {"on": True}, silent=True)]
    hub = DriverHub(
        [mqtt_dev("light", "tasmota-relay", f"light-{n}")],
        mqtt_url=mosquitto.url,
        emit=recorder,
        client_id=f"wk-{n}",
        settings=FAST,
    )
    async with FakeDevices(mosquitto.port, fakes) as fake, hub, client(mosquitto) as c:
        await connected(hub)
        await wait_until(lambda: fake.received, what="state query on connect")
        fake.received.clear()
        await c.publish(f"stat/light-{n}/POWER", b"ON", qos=1)
        await wait_until(lambda: recorder.value("light", "on") is True, what="state")
        result = await hub.command("light", "on", False, timeout_s=1.0)
    assert result.status == "failed" and result.observed is True
    assert "no report" in result.detail
    # the command, then the retry with a query (empty payload asks Tasmota for its state)
    assert fake.received == [
        (f"cmnd/light-{n}/POWER", b"OFF"),
        (f"cmnd/light-{n}/POWER", b"OFF"),
        (f"cmnd/light-{n}/POWER", b""),
    ]


async def test_refused_commands_never_reach_the_device(mosquitto: servers.Mosquitto, recorder: Recorder) -> None:
    n = uid()
    fakes = [FakeDevice("zigbee2mqtt", f"zigbee2mqtt/ac-{n}", {"system_mode": "cool"})]
    hub = DriverHub(
        [mqtt_dev("ac", "z2m-thermostat", f"zigbee2mqtt/ac-{n}")],
        mqtt_url=mosquitto.url,
        emit=recorder,
        client_id=f"wk-{n}",
        settings=FAST,
    )
    async with FakeDevices(mosquitto.port, fakes) as fake, hub:
        await connected(hub)
        await wait_until(lambda: fake.received, what="state query on connect")
        fake.received.clear()
        results = [
            await hub.command("ac", "local_temperature", 20),  # read-only
            await hub.command("ac", "cooling_setpoint", 10),  # below the profile's min 16
            await hub.command("ac", "system_mode", "turbo"),  # not a choice
            await hub.command("ac", "cooling_setpoint", "26"),  # wrong type
        ]
        await asyncio.sleep(0.2)
    assert [r.status for r in results] == ["refused"] * 4
    assert "read-only" in results[0].detail and "outside 16.0..32.0" in results[1].detail
    assert fake.received == []


async def test_reconnects_after_broker_restart(fresh_mosquitto: servers.Mosquitto, recorder: Recorder) -> None:
    stream = EventStream()
    events: list[Reading | DeviceStatus] = []

    def emit(batch: object) -> None:
        stream.put(batch)  # type: ignore[arg-type]
        recorder(batch)  # type: ignore[arg-type]

    hub = DriverHub(
        [mqtt_dev("pc", "z2m-plug", "zigbee2mqtt/pc")],
        mqtt_url=fresh_mosquitto.url,
        emit=emit,
        client_id="wk-restart",
        settings=FAST,
    )
    async with hub:
        await connected(hub)
        fresh_mosquitto.server.kill()
        await wait_until(lambda: not hub.mqtt_connected, what="disconnect noticed")
        fresh_mosquitto.restart()
        await connected(hub)
        async with client(fresh_mosquitto) as c:
            await c.publish("zigbee2mqtt/pc", b'{"power": 42}', qos=1)
            await wait_until(lambda: recorder.value("pc", "power") == 42.0, what="a message after the restart")
    async for batch in stream:
        events.extend(batch)
        if any(isinstance(e, Reading) and e.point == "power" for e in events):
            break
    assert any(isinstance(e, Reading) and e.value == 42.0 for e in events)


async def test_persistent_session_delivers_what_was_published_while_away(
    fresh_mosquitto: servers.Mosquitto, recorder: Recorder
) -> None:
    devices = [mqtt_dev("light", "tasmota-relay", "r7-light", rated_kw=0.5)]

    def hub() -> DriverHub:
        return DriverHub(devices, mqtt_url=fresh_mosquitto.url, emit=recorder, client_id="wk-session", settings=FAST)

    first = hub()
    async with first:
        await connected(first)
    async with client(fresh_mosquitto) as c:  # while the service is down: QoS 1, not retained
        await c.publish("tele/r7-light/SENSOR", b'{"Time":"2026-05-01T09:00:00","ENERGY":{"Total":3.0}}', qos=1)
        await c.publish("tele/r7-light/SENSOR", b'{"Time":"2026-05-01T09:30:00","ENERGY":{"Total":3.2}}', qos=1)
    second = hub()
    async with second:
        await wait_until(
            lambda: (
                recorder.value("light", "energy_delta") is not None
                and len([r for r in recorder.readings if r.point == "energy"]) == 2
            ),
            what="backlog",
        )
    # the backlog arrives in a burst, but the device measured 30 minutes apart: 0.2 kWh is plausible for 0.5 kW
    assert recorder.value("light", "energy_delta") == pytest.approx(0.2)
    assert second.health()["light"].rejected_deltas == 0


async def test_mqtt_devices_need_a_broker_url() -> None:
    with pytest.raises(ValueError, match="broker URL"):
        DriverHub([mqtt_dev("pc", "z2m-plug", "zigbee2mqtt/pc")], mqtt_url=None, emit=lambda b: None)


async def test_device_clock_far_off_is_flagged_and_never_blocks_later_messages(
    mosquitto: servers.Mosquitto, recorder: Recorder
) -> None:
    n = uid()
    now = datetime.now(UTC)
    hub = DriverHub(
        [mqtt_dev("ac", "z2m-thermostat", f"zigbee2mqtt/ac-{n}")],
        mqtt_url=mosquitto.url,
        emit=recorder,
        client_id=f"wk-{n}",
        settings=FAST,
    )

    def ac(at: datetime, mode: str) -> bytes:
        return json.dumps({"last_seen": at.isoformat(), "system_mode": mode}).encode()

    async with hub, client(mosquitto) as c:
        await connected(hub)
        await c.publish(f"zigbee2mqtt/ac-{n}", ac(now + timedelta(days=400), "heat"), qos=1)  # clock a year ahead
        await c.publish(f"zigbee2mqtt/ac-{n}", ac(now, "cool"), qos=1)  # correct, and must not look old
        await wait_until(lambda: recorder.value("ac", "system_mode") == "cool", what="the correct message")
    health = hub.health()["ac"]
    assert health.clock_skew == 1 and health.out_of_order == 0
    assert all(r.ts <= datetime.now(UTC) for r in recorder.readings)  # readings keep the receive time


def broker_logs(caplog: pytest.LogCaptureFixture) -> list[str]:
    """'connected' / 'lost' for each broker line the bridge logged, in order."""
    out = []
    for record in caplog.records:
        message = record.getMessage()
        if record.name == "wattkeeper.drivers" and message.startswith("MQTT broker"):
            out.append("connected" if message.endswith("connected") else "lost")
    return out


async def test_broker_loss_is_logged_once_and_reconnects_back_off(
    mosquitto: servers.Mosquitto, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    """Seen at the broker's door: every attempt is counted, the pause the bridge takes before each
    grows, and each loss and each return is one log line however many attempts fail in between.

    The pauses are the bridge's own numbers, noted as each attempt arrives; wall time only bounds
    them from below (a sleep never ends early, a loaded machine only makes a gap longer)."""
    caplog.set_level(logging.INFO, logger="wattkeeper.drivers")
    n = uid()
    # aiomqtt notices a hang-up before CONNACK only when the connect times out: every attempt takes
    # mqtt_timeout_s, and the growing pause comes on top of it
    settings = DriverSettings(reconnect_min_s=0.15, reconnect_max_s=2.0, mqtt_timeout_s=0.5)
    pauses: list[float] = []  # the bridge's pause before each attempt, as the attempt arrives
    async with TcpGate(mosquitto.port, on_accept=lambda: pauses.append(bridge.reconnect_pause_s)) as gate:
        gate.shut()  # the broker hangs up on every connection
        hub = DriverHub(
            [mqtt_dev("pc", "z2m-plug", f"zigbee2mqtt/pc-{n}")],
            mqtt_url=f"mqtt://127.0.0.1:{gate.port}",
            emit=recorder,
            client_id=f"wk-{n}",
            settings=settings,
        )
        driver = hub._drivers["mqtt"]
        assert isinstance(driver, MqttDriver)
        bridge: MqttDriver = driver  # the gate's callback above reads it
        async with hub:
            await wait_until(lambda: len(gate.accepts) >= 5, timeout_s=30, what="five connection attempts")
            gaps, first = gate.gaps()[:4], pauses[:5]
            gate.open()
            await connected(hub)
            gate.shut()
            await wait_until(lambda: not hub.mqtt_connected, what="loss noticed")
            attempts = len(gate.accepts)
            await wait_until(lambda: len(gate.accepts) > attempts, timeout_s=30, what="a failed reconnect")
            gate.open()
            await connected(hub)
    assert first[0] == 0.0  # the first attempt comes at once
    assert all(later > earlier for earlier, later in itertools.pairwise(first)), first  # doubling, jitter < 2x
    assert first[4] >= 8 * settings.reconnect_min_s, first
    assert all(gap >= pause for gap, pause in zip(gaps, first[1:], strict=True)), (gaps, first)
    assert broker_logs(caplog) == ["lost", "connected", "lost", "connected"]
    assert hub.mqtt_loop_errors == 0


async def test_device_availability_changes_are_logged_once(
    mosquitto: servers.Mosquitto, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="wattkeeper.drivers")
    n = uid()
    hub = DriverHub(
        [mqtt_dev("occ", "z2m-occupancy", f"zigbee2mqtt/occ-{n}")],
        mqtt_url=mosquitto.url,
        emit=recorder,
        client_id=f"wk-{n}",
        settings=FAST,
    )
    topic = f"zigbee2mqtt/occ-{n}/availability"
    async with hub, client(mosquitto) as c:
        await connected(hub)
        for word in ("online", "online", "offline", "offline", "offline", "online", "online"):
            await c.publish(topic, json.dumps({"state": word}), qos=1)
        # a live report after the last availability message: online already, so nothing new
        await c.publish(f"zigbee2mqtt/occ-{n}", b'{"occupancy": true}', qos=1)
        await wait_until(lambda: recorder.value("occ", "occupancy") is True, what="the report")
    statuses = [s.online for s in recorder.statuses if s.device == "occ"]
    assert statuses == [True, False, True]
    assert transition_logs(caplog, "occ") == statuses


async def test_an_unexpected_error_in_the_bridge_is_logged_counted_and_reconnected(
    mosquitto: servers.Mosquitto, recorder: Recorder, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug outside payload handling (here: asking devices for their state on connect) must not end
    the bridge for good: it is logged with its traceback, counted, and the bridge connects again."""
    n = uid()
    real = MqttDriver._ask_for_state
    calls = 0

    async def broken_once(self: MqttDriver, c: aiomqtt.Client) -> None:
        nonlocal calls
        calls += 1
        if calls <= 2:
            raise RuntimeError("injected bug")
        await real(self, c)

    monkeypatch.setattr(MqttDriver, "_ask_for_state", broken_once)
    hub = DriverHub(
        [mqtt_dev("pc", "z2m-plug", f"zigbee2mqtt/pc-{n}")],
        mqtt_url=mosquitto.url,
        emit=recorder,
        client_id=f"wk-{n}",
        settings=FAST,
    )
    async with hub, client(mosquitto) as c:
        await wait_until(lambda: calls >= 3 and hub.mqtt_connected, what="connected after two failures")
        await c.publish(f"zigbee2mqtt/pc-{n}", b'{"power": 42}', qos=1)
        await wait_until(lambda: recorder.value("pc", "power") == 42.0, what="messages flow again")
    assert hub.mqtt_loop_errors == 2
    failures = [r for r in caplog.records if "MQTT bridge failed unexpectedly" in r.getMessage()]
    assert len(failures) == 2
    assert all(r.exc_info and isinstance(r.exc_info[1], RuntimeError) for r in failures)
