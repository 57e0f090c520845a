"""deploy/mosquitto: the real broker accepts the config, refuses anonymous clients, enforces the ACL,
keeps queued messages across a crash, and serves TLS with certificates made as deploy/README.md says."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import ssl
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import aiomqtt
import pytest

from drivers.hub import DriverHub
from drivers.types import DeviceStatus, Quality, Reading, Value
from simulators.runner import Simulation
from tests import servers
from tests.conftest import DEMO_SITE, site_for_test

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
MOSQUITTO = DEPLOY / "mosquitto"
ACCOUNTS = ("wattkeeper", "simulators", "alarms", "healthcheck")


@dataclass
class DeployBroker:
    """Mosquitto running deploy/mosquitto's config on a loopback port; `passwords` per account."""

    server: servers.Server
    passwords: dict[str, str]
    tls_port: int | None = None

    @property
    def port(self) -> int:
        return self.server.port

    def url(self, account: str) -> str:
        """The mqtt:// URL an account would put in WATTKEEPER_MQTT_URL."""
        return f"mqtt://{account}:{self.passwords[account]}@127.0.0.1:{self.port}"


def derived_config(workdir: Path, port: int, tls_port: int) -> str:
    """deploy/mosquitto/mosquitto.conf with its container paths moved to workdir and its two listeners
    (plain on loopback, TLS) to free loopback ports."""
    text = (MOSQUITTO / "mosquitto.conf").read_text()
    text = text.replace("/mosquitto/config/", f"{workdir}/").replace("/mosquitto/data/", f"{workdir}/data/")
    text = text.replace("/mosquitto/certs/", f"{workdir}/certs/")
    text, n = re.subn(r"(?m)^listener 1883 127\.0\.0\.1$", f"listener {port} 127.0.0.1", text)
    assert n == 1, "mosquitto.conf has one plain listener, on loopback 1883"
    text, n = re.subn(r"(?m)^listener 8883$", f"listener {tls_port} 127.0.0.1", text)
    assert n == 1, "mosquitto.conf has one TLS listener on 8883"
    return text


def make_certs(certs: Path, site: str = "hq", *names: str) -> None:
    """deploy/mosquitto/make-certs.sh: a local CA for `site` and the broker's certificate, into `certs`."""
    env = {**os.environ, "CERTS_DIR": str(certs), "CA_DIR": str(certs.parent / f"{certs.name}-ca")}
    subprocess.run(["sh", str(MOSQUITTO / "make-certs.sh"), site, *names], env=env, check=True, capture_output=True)


def conf_value(key: str) -> str:
    """A setting of deploy/mosquitto/mosquitto.conf (its only uncommented line for the key)."""
    (value,) = re.findall(rf"(?m)^{key} (.+)$", (MOSQUITTO / "mosquitto.conf").read_text())
    return str(value).strip()


@pytest.fixture
def deploy_broker() -> Iterator[DeployBroker]:
    with running_deploy_broker() as broker:
        yield broker


@contextmanager
def running_deploy_broker(certs: Path | None = None) -> Iterator[DeployBroker]:
    """The deploy config on loopback, TLS with `certs` (ca.crt, server.crt, server.key; default: fresh ones)."""
    # Run as root, Mosquitto reads its files after dropping to the `mosquitto` user, as in the
    # container: the directory must be reachable for it (pytest's tmp_path is not).
    with tempfile.TemporaryDirectory(prefix="wk-mosquitto-") as tmp:
        workdir = Path(tmp)
        workdir.chmod(0o755)
        if certs is not None:
            shutil.copytree(certs, workdir / "certs")
        else:
            make_certs(workdir / "certs")
        passwords = {a: secrets.token_hex(12) for a in ACCOUNTS}
        env = {**os.environ, **{f"MQTT_{a.upper()}_PASSWORD": pw for a, pw in passwords.items()}}
        subprocess.run(["sh", str(MOSQUITTO / "make-passwd.sh"), str(workdir / "passwd")], env=env, check=True)
        (workdir / "acl").write_text((MOSQUITTO / "acl").read_text())
        (workdir / "data").mkdir()
        if os.getuid() == 0:
            shutil.chown(workdir / "data", "mosquitto")
            for path in (workdir / "certs", *(workdir / "certs").iterdir()):
                shutil.chown(path, "mosquitto")
        port = servers.free_port()
        tls_port = servers.free_port()
        conf = workdir / "mosquitto.conf"
        conf.write_text(derived_config(workdir, port, tls_port))
        argv = [servers.need("mosquitto"), "-c", str(conf)]
        srv = servers.Server("mosquitto", subprocess.Popen(["true"]), port, workdir, argv, workdir / "mosquitto.log")
        srv.start()
        # Mosquitto binds every listener before it serves one, so the plain port being up (start()
        # waits for it) means the TLS one is too; probing it with a bare TCP connection would log an
        # OpenSSL error.
        with servers.running(srv):
            yield DeployBroker(srv, passwords, tls_port)
        log = srv.log.read_text()
        assert "Error" not in log, log


@asynccontextmanager
async def client(url: str, name: str, **kw: object) -> AsyncIterator[aiomqtt.Client]:
    """An aiomqtt client logged in with the user and password of an mqtt:// URL."""
    u = urlsplit(url)
    async with aiomqtt.Client(
        u.hostname or "127.0.0.1",
        u.port or 1883,
        username=u.username,
        password=u.password,
        identifier=name,
        **kw,  # type: ignore[arg-type]
    ) as c:
        yield c


async def next_message(c: aiomqtt.Client) -> aiomqtt.Message:
    async with asyncio.timeout(10):
        async for msg in c.messages:
            return msg
    raise AssertionError("no message")


def test_password_file_holds_hashes_not_passwords(tmp_path: Path) -> None:
    env = {**os.environ, "MQTT_WATTKEEPER_PASSWORD": "s3cret-wk", "MQTT_SIMULATORS_PASSWORD": ""}
    subprocess.run(["sh", str(MOSQUITTO / "make-passwd.sh"), str(tmp_path / "passwd")], env=env, check=True)
    text = (tmp_path / "passwd").read_text()
    assert [line.split(":", 1)[0] for line in text.splitlines()] == ["wattkeeper"], "empty password: no account"
    assert "s3cret-wk" not in text and text.startswith("wattkeeper:$7$")
    assert (tmp_path / "passwd").stat().st_mode & 0o077 == 0


def test_password_file_needs_the_service_password(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MQTT_")}
    done = subprocess.run(
        ["sh", str(MOSQUITTO / "make-passwd.sh"), str(tmp_path / "passwd")],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode != 0 and "MQTT_WATTKEEPER_PASSWORD" in done.stderr


def test_plain_mqtt_is_on_loopback_only_and_tls_is_on() -> None:
    listeners = re.findall(r"(?m)^listener (.+)$", (MOSQUITTO / "mosquitto.conf").read_text())
    assert listeners == ["1883 127.0.0.1", "8883"]
    assert conf_value("certfile") == "/mosquitto/certs/server.crt"
    assert conf_value("tls_version") == "tlsv1.2"


def test_config_keeps_state_and_refuses_anonymous_by_itself() -> None:
    conf = (MOSQUITTO / "mosquitto.conf").read_text()
    lines = {
        line.split(None, 1)[0]: line.split(None, 1)[1]
        for line in conf.splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert lines["allow_anonymous"] == "false"
    assert lines["persistence"] == "true" and lines["persistence_location"] == "/mosquitto/data/"
    assert lines["password_file"] == "/mosquitto/config/passwd" and lines["acl_file"] == "/mosquitto/config/acl"
    for tls in ("listener 8883", "certfile /mosquitto/certs/", "keyfile /mosquitto/certs/", "cafile /mosquitto/certs/"):
        assert f"\n{tls}" in conf, f"the TLS listener is on: {tls}"
    # Saved on a clock, not on changes: a crash loses at most this many seconds of queued messages
    # at any message rate (the reasons are in the file).
    assert lines["autosave_on_changes"] == "false"
    assert 0 < int(lines["autosave_interval"]) <= 10


def test_anonymous_client_is_refused(deploy_broker: DeployBroker) -> None:
    done = subprocess.run(
        ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(deploy_broker.port), "-t", "zigbee2mqtt/x", "-m", "hi"],
        capture_output=True,
        text=True,
        check=False,
        timeout=20,
    )
    assert done.returncode != 0 and "not authorised" in done.stderr


async def test_wrong_password_is_refused(deploy_broker: DeployBroker) -> None:
    with pytest.raises(aiomqtt.MqttError, match=r"[Nn]ot authori[sz]ed"):
        async with client(f"mqtt://wattkeeper:wrong@127.0.0.1:{deploy_broker.port}", "wk-wrong"):
            pass


def test_compose_healthcheck_command_succeeds(deploy_broker: DeployBroker) -> None:
    done = subprocess.run(
        [
            "mosquitto_sub",
            "-h",
            "127.0.0.1",
            "-p",
            str(deploy_broker.port),
            "-u",
            "healthcheck",
            "-P",
            deploy_broker.passwords["healthcheck"],
            "-t",
            "$SYS/broker/uptime",
            "-C",
            "1",
            "-W",
            "10",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=20,
    )
    assert done.returncode == 0 and "seconds" in done.stdout


async def test_wattkeeper_reads_devices_and_commands_them(deploy_broker: DeployBroker) -> None:
    async with (
        client(deploy_broker.url("wattkeeper"), "wk") as wk,
        client(deploy_broker.url("simulators"), "sim") as sim,
    ):
        await wk.subscribe("zigbee2mqtt/#", qos=1)
        await wk.subscribe("+/status/#", qos=1)
        await sim.subscribe("zigbee2mqtt/+/set", qos=1)
        await sim.publish("zigbee2mqtt/r2119-occ", b'{"occupancy": true}', qos=1)
        msg = await next_message(wk)
        assert (str(msg.topic), msg.payload) == ("zigbee2mqtt/r2119-occ", b'{"occupancy": true}')
        await wk.publish("zigbee2mqtt/r2119-ac/set", b'{"system_mode": "off"}', qos=1)
        cmd = await next_message(sim)
        assert str(cmd.topic) == "zigbee2mqtt/r2119-ac/set"


async def test_wattkeeper_cannot_spoof_device_states(deploy_broker: DeployBroker) -> None:
    async with (
        client(deploy_broker.url("wattkeeper"), "wk") as wk,
        client(deploy_broker.url("simulators"), "sim") as sim,
    ):
        await sim.subscribe("zigbee2mqtt/#", qos=1)
        # Refused first, allowed second, same publisher and QoS: had the first been delivered,
        # it would arrive before the second.
        await wk.publish("zigbee2mqtt/r2119-occ", b'{"occupancy": false}', qos=1)
        await wk.publish("zigbee2mqtt/r2119-light/set", b'{"state": "OFF"}', qos=1)
        msg = await next_message(sim)
        assert str(msg.topic) == "zigbee2mqtt/r2119-light/set"


async def test_wattkeeper_does_not_receive_other_senders_commands(deploy_broker: DeployBroker) -> None:
    # Mosquitto grants every subscription and filters delivery by the ACL. The sender is a second
    # wattkeeper instance: the only account allowed to publish commands.
    async with (
        client(deploy_broker.url("wattkeeper"), "wk") as wk,
        client(deploy_broker.url("wattkeeper"), "wk-2") as other,
    ):
        await wk.subscribe("cmnd/#", qos=1)
        await wk.subscribe("wattkeeper/#", qos=1)
        await other.publish("cmnd/r2119-light/POWER", b"OFF", qos=1)
        await other.publish("wattkeeper/hq/status", b"online", qos=1)
        msg = await next_message(wk)
        assert str(msg.topic) == "wattkeeper/hq/status"


async def test_alarm_consumers_get_alarms_only(deploy_broker: DeployBroker) -> None:
    # The topics the service publishes on (service/notify/notifier.py): <mqtt_topic>/<alarm id> and
    # <mqtt_topic>/notices/<id>, with the demo's mqtt_topic wattkeeper/hq/alarms.
    async with client(deploy_broker.url("wattkeeper"), "wk") as wk, client(deploy_broker.url("alarms"), "bms") as bms:
        await bms.subscribe("#", qos=1)
        # A forged alarm is refused; the QoS 1 round trip is over before the real one is sent.
        await bms.publish("wattkeeper/hq/alarms/forged", b'{"forged": true}', qos=1)
        await wk.publish("zigbee2mqtt/r2119-ac/set", b'{"system_mode": "off"}', qos=1)
        await wk.publish("wattkeeper/hq/status", b"online", qos=1)
        await wk.publish("wattkeeper/hq/alarms/backfeed:gen-1:1", b'{"type": "backfeed"}', qos=1)
        await wk.publish("wattkeeper/hq/alarms/notices/n1", b'{"notice": "rooms still occupied"}', qos=1)
        got = [(str(m.topic), m.payload) for m in [await next_message(bms), await next_message(bms)]]
        assert got == [
            ("wattkeeper/hq/alarms/backfeed:gen-1:1", b'{"type": "backfeed"}'),
            ("wattkeeper/hq/alarms/notices/n1", b'{"notice": "rooms still occupied"}'),
        ]


COMMANDS: list[tuple[str, str, Value]] = [
    ("r2119-light", "on", False),
    ("r2119-plug", "on", False),
    ("r1102-pc", "on", False),
    ("r2119-ac", "system_mode", "off"),
]


async def test_demo_site_runs_through_the_acl(deploy_broker: DeployBroker) -> None:
    # The compose `simulators` profile: every simulated MQTT device logs in as `simulators`,
    # wattkeeper's own drivers as `wattkeeper`; readings flow and verified commands confirm.
    # Fast simulated time: sensors that missed the drivers' subscription report again within a second.
    site = site_for_test(deploy_broker.url("simulators"), DEMO_SITE)
    mqtt_devices = [d for d in site.devices if d.driver == "mqtt"]
    heard: set[str] = set()

    def take(batch: Sequence[Reading | DeviceStatus]) -> None:
        heard.update(e.device for e in batch if isinstance(e, Reading) and e.quality is Quality.good)

    async with (
        Simulation(site, control_port=None, speed=60, seed=3, mqtt_url=deploy_broker.url("simulators")),
        DriverHub(mqtt_devices, mqtt_url=deploy_broker.url("wattkeeper"), emit=take) as hub,
    ):
        try:
            async with asyncio.timeout(20):
                while heard < {d.id for d in mqtt_devices}:
                    await asyncio.sleep(0.05)
        except TimeoutError:
            raise AssertionError(f"never heard: {sorted({d.id for d in mqtt_devices} - heard)}") from None
        assert hub.mqtt_connected
        for device, point, value in COMMANDS:
            result = await hub.command(device, point, value, timeout_s=10)
            assert result.status == "confirmed", result


def saved_stamp(db: Path) -> tuple[int, int] | None:
    """(inode, mtime) of Mosquitto's database file: each save writes a new file and renames it over."""
    try:
        st = db.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns


async def test_queued_messages_and_retained_states_survive_a_broker_crash(deploy_broker: DeployBroker) -> None:
    # The service's persistent session (clean_session=False, as drivers/mqtt.py connects) is away,
    # say restarting, while a device reports; then the broker is killed (no save on the way down)
    # and started again on the same data.
    wk_url, sim_url = deploy_broker.url("wattkeeper"), deploy_broker.url("simulators")
    async with client(wk_url, "wk-persist", clean_session=False) as wk:
        await wk.subscribe("zigbee2mqtt/#", qos=1)
    sent = [f'{{"occupancy": {str(i % 2 == 0).lower()}, "n": {i}}}'.encode() for i in range(5)]
    async with client(sim_url, "sim") as sim:
        for payload in sent:
            await sim.publish("zigbee2mqtt/r2119-occ", payload, qos=1)
        await sim.publish("tele/r2119-light/LWT", b"Online", qos=1, retain=True)
    # Every PUBACK is in: the broker holds it all in memory. Wait for the next save to disk.
    db = deploy_broker.server.workdir / "data" / "mosquitto.db"
    before = saved_stamp(db)
    interval_s = float(conf_value("autosave_interval"))
    async with asyncio.timeout(3 * interval_s + 30):
        while saved_stamp(db) in (before, None):
            await asyncio.sleep(0.05)
    deploy_broker.server.kill()
    deploy_broker.server.start()
    got: list[bytes] = []
    async with client(wk_url, "wk-persist", clean_session=False) as wk:
        async with asyncio.timeout(15):
            async for msg in wk.messages:
                got.append(bytes(msg.payload))
                if len(got) == len(sent):
                    break
        await wk.subscribe("tele/+/LWT", qos=1)
        lwt = await next_message(wk)
    assert got == sent
    assert (str(lwt.topic), lwt.payload, lwt.retain) == ("tele/r2119-light/LWT", b"Online", True)


def test_tls_listener_serves_certificates_made_by_the_script(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    make_certs(certs, "hq", "mqtt.example.internal", "10.20.0.5")
    for name in ("ca.crt", "server.crt", "server.key"):
        assert (certs / name).is_file(), name
    ca_key = tmp_path / "certs-ca" / "ca.key"
    assert not (certs / "ca.key").exists() and oct(ca_key.stat().st_mode & 0o777) == "0o600"
    ca_before = (certs / "ca.crt").read_bytes()
    make_certs(certs, "hq", "mqtt.example.internal")  # again: a new broker certificate, the same CA
    assert (certs / "ca.crt").read_bytes() == ca_before
    with running_deploy_broker(certs) as broker:
        assert broker.tls_port is not None
        # The chain and the name the README puts in the certificate, checked by OpenSSL's client.
        done = subprocess.run(
            [
                "openssl", "s_client", "-connect", f"127.0.0.1:{broker.tls_port}", "-CAfile", str(certs / "ca.crt"),
                "-verify_hostname", "mosquitto", "-verify_return_error", "-brief",
            ],
            input="",
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "Verification: OK" in done.stderr, done.stderr
        # An MQTT session over that TLS listener: the service's account gets in, an anonymous client does not.
        # (The certificate names mosquitto, mqtt.example.internal and 127.0.0.1: OpenSSL checked a name.)
        trusted = ssl.create_default_context(cafile=str(certs / "ca.crt"))
        trusted.check_hostname = False

        async def sessions() -> tuple[bytes, str]:
            url = f"mqtt://wattkeeper:{broker.passwords['wattkeeper']}@127.0.0.1:{broker.tls_port}"
            async with client(url, "wk-tls", tls_context=trusted) as wk:
                await wk.subscribe("wattkeeper/#", qos=1)
                await wk.publish("wattkeeper/hq/status", b"online", qos=1)
                payload = bytes((await next_message(wk)).payload)
            try:
                async with client(f"mqtt://127.0.0.1:{broker.tls_port}", "anon-tls", tls_context=trusted):
                    refused = ""
            except aiomqtt.MqttError as exc:
                refused = str(exc)
            return payload, refused

        payload, refused = asyncio.run(sessions())
        assert payload == b"online"
        assert re.search(r"[Nn]ot authori[sz]ed", refused), refused


async def test_service_and_simulators_run_over_tls_with_the_sites_ca(tmp_path: Path) -> None:
    # As docker-compose.yml connects them: mqtts:// on 8883 with ?ca= naming the CA make-certs.sh made.
    certs = tmp_path / "certs"
    make_certs(certs)
    with running_deploy_broker(certs) as broker:
        assert broker.tls_port is not None

        def url(account: str) -> str:
            return f"mqtts://{account}:{broker.passwords[account]}@127.0.0.1:{broker.tls_port}?ca={certs}/ca.crt"

        site = site_for_test(url("simulators"), DEMO_SITE)
        mqtt_devices = [d for d in site.devices if d.driver == "mqtt"]
        heard: set[str] = set()

        def take(batch: Sequence[Reading | DeviceStatus]) -> None:
            heard.update(e.device for e in batch if isinstance(e, Reading) and e.quality is Quality.good)

        async with (
            Simulation(site, control_port=None, speed=60, seed=3, mqtt_url=url("simulators")),
            DriverHub(mqtt_devices, mqtt_url=url("wattkeeper"), emit=take) as hub,
        ):
            async with asyncio.timeout(20):
                while heard < {d.id for d in mqtt_devices}:
                    await asyncio.sleep(0.05)
            assert hub.mqtt_connected
            result = await hub.command("r2119-light", "on", False, timeout_s=10)
            assert result.status == "confirmed", result
