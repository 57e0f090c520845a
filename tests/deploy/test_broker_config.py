"""`wattkeeper broker-config` on a real Mosquitto: one account per device, each refused on every other
device's command and state topics, only wattkeeper's account publishes commands; the alarms account
receives the alarms the service publishes (end to end)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from drivers.profiles import MqttProfile, load_profile
from service.alarms.engine import DEFAULT_CONFIG, AlarmTypeConfig
from service.alarms.rules import AlarmType
from service.config.brokerconfig import (
    BrokerConfigError,
    accounts,
    password_hash,
    read_passwords,
    write_broker_config,
)
from service.config.site import Site
from simulators.runner import Simulation
from tests import servers
from tests.conftest import DEMO_SITE, site_for_test, write_site
from tests.deploy.test_mosquitto import client, derived_config, make_certs
from tests.harness import running_service

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class GeneratedBroker:
    """Mosquitto with deploy/mosquitto.conf and the ACL and passwords broker-config wrote."""

    port: int
    passwords: dict[str, str]

    def url(self, account: str) -> str:
        return f"mqtt://{account}:{self.passwords[account]}@127.0.0.1:{self.port}"


@contextmanager
def generated_broker(site: Site, *, simulators: bool = False) -> Iterator[GeneratedBroker]:
    with tempfile.TemporaryDirectory(prefix="wk-brokercfg-") as tmp:
        workdir = Path(tmp)
        workdir.chmod(0o755)
        write_broker_config(site, workdir, simulators=simulators)
        make_certs(workdir / "certs")
        passwords = read_passwords(workdir / "passwords")
        (workdir / "data").mkdir()
        if os.getuid() == 0:  # Mosquitto reads its files as `mosquitto` after dropping root
            for path in (workdir / "data", workdir / "passwd", workdir / "acl", *(workdir / "certs").glob("*")):
                shutil.chown(path, "mosquitto")
        port = servers.free_port()
        conf = workdir / "mosquitto.conf"
        conf.write_text(derived_config(workdir, port, servers.free_port()))
        argv = [servers.need("mosquitto"), "-c", str(conf)]
        srv = servers.Server("mosquitto", subprocess.Popen(["true"]), port, workdir, argv, workdir / "mosquitto.log")
        srv.start()
        with servers.running(srv):
            yield GeneratedBroker(port, passwords)


class Probe:
    """An MQTT 5 client of one account: which QoS 1 publishes and subscriptions the broker accepts."""

    def __init__(self, port: int, account: str, password: str) -> None:
        self.acks: dict[int, ReasonCode] = {}
        self.subacks: dict[int, list[ReasonCode]] = {}
        self.received: list[tuple[str, bytes]] = []
        self._changed = threading.Condition()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"probe-{account}", protocol=mqtt.MQTTv5)
        c.username_pw_set(account, password)
        c.on_publish = self._on_publish
        c.on_subscribe = self._on_subscribe
        c.on_connect = self._notify
        c.on_message = self._on_message
        c.connect("127.0.0.1", port)
        c.loop_start()
        self.client = c
        self._wait(lambda: c.is_connected())

    def _notify(self, *_: object) -> None:
        with self._changed:
            self._changed.notify_all()

    def _on_message(self, _c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        with self._changed:
            self.received.append((msg.topic, bytes(msg.payload)))
            self._changed.notify_all()

    def _on_publish(self, _c: object, _u: object, mid: int, rc: ReasonCode, _p: object) -> None:
        with self._changed:
            self.acks[mid] = rc
            self._changed.notify_all()

    def _on_subscribe(self, _c: object, _u: object, mid: int, rcs: list[ReasonCode], _p: object) -> None:
        with self._changed:
            self.subacks[mid] = rcs
            self._changed.notify_all()

    def wait_for(self, topic: str, payload: bytes) -> list[str]:
        """Wait for one message; return the topics received before it."""
        self._wait(lambda: (topic, payload) in self.received)
        return [t for t, _ in self.received[: self.received.index((topic, payload))]]

    def _wait(self, done: object) -> None:
        with self._changed:
            assert self._changed.wait_for(done, timeout=10), "no answer from the broker"  # type: ignore[arg-type]

    def publish(self, topics: list[str]) -> dict[str, bool]:
        """topic -> whether the broker accepted a QoS 1 publish to it."""
        mids = {t: self.client.publish(t, b"probe", qos=1).mid for t in topics}
        self._wait(lambda: all(m in self.acks for m in mids.values()))
        return {t: not self.acks[m].is_failure for t, m in mids.items()}

    def subscribe(self, topics: list[str]) -> dict[str, bool]:
        """topic filter -> whether the broker granted the subscription."""
        mids: dict[str, int] = {}
        for t in topics:
            result, mid = self.client.subscribe(t, qos=1)
            assert mid is not None, (t, result)  # paho gives no message id when it could not send
            mids[t] = mid
        self._wait(lambda: all(m in self.subacks for m in mids.values()))
        return {t: not self.subacks[m][0].is_failure for t, m in mids.items()}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def device_topics(site: Site) -> dict[str, tuple[list[str], list[str]]]:
    """Per MQTT device (not Zigbee): (its command topics, its state topics)."""
    out = {}
    for dev in site.devices:
        if dev.driver != "mqtt" or dev.topic is None:
            continue
        profile = load_profile(dev.profile)
        assert isinstance(profile, MqttProfile)
        t = dev.topic
        if profile.convention == "tasmota":
            out[t] = ([f"cmnd/{t}/POWER"], [f"stat/{t}/POWER", f"stat/{t}/RESULT", f"tele/{t}/STATE", f"tele/{t}/LWT"])
        elif profile.convention == "shelly-gen2":
            out[t] = ([f"{t}/rpc"], [f"{t}/status/switch:0", f"{t}/online", f"{t}/events/rpc"])
    return out


@pytest.fixture(scope="module")
def demo() -> Site:
    return site_for_test("mqtt://127.0.0.1:1883", DEMO_SITE)


def test_password_hash_is_mosquittos(demo: Site) -> None:
    # The real broker accepting the generated file (tests below) is the proof; the format is pinned here.
    text = password_hash("secret", b"\x00" * 12)
    assert text.startswith("$7$101$AAAAAAAAAAAAAAAA$") and len(text.split("$")[4]) == 88


def test_every_device_account_is_refused_on_every_other_devices_topics(demo: Site) -> None:
    topics = device_topics(demo)
    assert len(topics) >= 10, "the demo site has Tasmota and Shelly devices"
    zigbee = [f"{d.topic}" for d in demo.devices if d.topic and d.topic.startswith("zigbee2mqtt/")]
    wrong: list[str] = []
    with generated_broker(demo) as broker:
        service = Probe(broker.port, "wattkeeper", broker.passwords["wattkeeper"])
        bridge = Probe(broker.port, "zigbee2mqtt", broker.passwords["zigbee2mqtt"])
        probes = {a: Probe(broker.port, a, broker.passwords[a]) for a in topics}
        try:
            # Mosquitto grants any subscription and filters what it delivers by the ACL.
            for probe in probes.values():
                assert all(probe.subscribe(["#"]).values())
            # Publishing: each device's own state topics only; never another's, never a command.
            for account, probe in probes.items():
                own_cmd, own_state = topics[account]
                others_cmd = [c for other, (cmd, _) in topics.items() if other != account for c in cmd]
                others_state = [s for other, (_, state) in topics.items() if other != account for s in state]
                zigbee_all = zigbee + [f"{z}/set" for z in zigbee]
                pub = probe.publish(own_state + others_cmd + others_state + own_cmd + zigbee_all)
                wrong += [f"{account} refused on its own {t}" for t in own_state if not pub[t]]
                wrong += [f"{account} may publish {t}" for t, ok in pub.items() if ok and t not in own_state]
            assert all(bridge.publish(zigbee).values())
            # Reading: every device subscribed to everything receives its own commands and nothing else.
            for account in probes:
                assert all(service.publish(topics[account][0]).values())
            for account, probe in probes.items():
                seen = probe.wait_for(topics[account][0][0], b"probe")
                wrong += [f"{account} received {t}" for t in seen if t not in topics[account][0]]
        finally:
            for probe in (service, bridge, *probes.values()):
                probe.close()
    assert wrong == []


def test_only_wattkeeper_publishes_commands(demo: Site) -> None:
    topics = device_topics(demo)
    commands = [c for cmd, _ in topics.values() for c in cmd] + ["zigbee2mqtt/r2119-ac/set"]
    with generated_broker(demo) as broker:
        allowed: dict[str, list[str]] = {}
        for account in broker.passwords:
            probe = Probe(broker.port, account, broker.passwords[account])
            try:
                allowed[account] = sorted(t for t, ok in probe.publish(commands).items() if ok)
            finally:
                probe.close()
    assert allowed.pop("wattkeeper") == sorted(commands)
    # The Zigbee2MQTT bridge owns its base topic, its devices' set topics included (it is their radio).
    assert allowed.pop("zigbee2mqtt") == ["zigbee2mqtt/r2119-ac/set"]
    assert {a: t for a, t in allowed.items() if t} == {}


def test_a_topic_that_cannot_be_an_account_is_refused(demo: Site) -> None:
    devices = [d.model_copy(update={"topic": "cmnd"}) if d.id == "r2119-light" else d for d in demo.devices]
    with pytest.raises(BrokerConfigError, match="r2119-light: topic 'cmnd'"):
        accounts(demo.model_copy(update={"devices": devices}))


def test_passwords_are_kept_when_run_again(demo: Site, tmp_path: Path) -> None:
    write_broker_config(demo, tmp_path)
    first = read_passwords(tmp_path / "passwords")
    assert oct((tmp_path / "passwords").stat().st_mode & 0o777) == "0o600"
    assert oct((tmp_path / "passwd").stat().st_mode & 0o777) == "0o600"
    write_broker_config(demo, tmp_path)
    assert read_passwords(tmp_path / "passwords") == first
    assert all(pw not in (tmp_path / "passwd").read_text() for pw in first.values())


def test_cli_writes_the_files(demo: Site, tmp_path: Path) -> None:
    site_file = write_site(demo, tmp_path / "site.yaml")
    out = tmp_path / "broker"
    env = {**os.environ, "MQTT_WATTKEEPER_PASSWORD": "from-the-env-123"}
    r = subprocess.run(
        [str(ROOT / ".venv/bin/wattkeeper"), "broker-config", "--site", str(site_file), "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert "shellyplus-srv1-ups" in r.stdout and "20 accounts" in r.stdout
    assert read_passwords(out / "passwords")["wattkeeper"] == "from-the-env-123"
    assert "user alarms\ntopic read wattkeeper/+/alarms/#" in (out / "acl").read_text()


AT_ONCE = {**DEFAULT_CONFIG, AlarmType.generator_not_auto: AlarmTypeConfig(on_delay_s=0.0)}


async def test_the_alarms_account_receives_the_services_alarms(tmp_path: Path) -> None:
    # The service logs in as wattkeeper, the simulators as simulators (demo accounts), a building-
    # management system as alarms; the generator's own panel goes to manual -> generator_not_auto.
    site = site_for_test("mqtt://127.0.0.1:1", DEMO_SITE)
    with generated_broker(site, simulators=True) as broker:
        svc_site = site.model_copy(update={"mqtt": site.mqtt.model_copy(update={"url": broker.url("wattkeeper")})})
        async with (
            client(broker.url("alarms"), "bms") as bms,
            Simulation(site, control_port=None, speed=0, seed=3, mqtt_url=broker.url("simulators")) as sim,
            running_service(svc_site, tmp_path, alarm_config=AT_ONCE),
        ):
            await bms.subscribe("wattkeeper/+/alarms/#", qos=1)
            sim.fault("generator_manual", "gen-1")
            async with asyncio.timeout(30):
                async for msg in bms.messages:
                    body = json.loads(msg.payload)
                    if body.get("type") == "generator_not_auto":
                        break
            assert str(msg.topic).startswith("wattkeeper/hq/alarms/")
            assert (body["subject"], body["severity"]) == ("gen-1", "high")
