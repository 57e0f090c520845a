"""MQTT with usernames, passwords and TLS, against Mosquitto configured with both.

A throwaway CA and a server certificate for 127.0.0.1 are made with openssl for each test. The
first broker is configured here (a password file, anonymous clients refused, a plain listener and
a TLS listener); the whole service talks to it over `mqtts://user:password@...?ca=...` while the
simulators publish over the plain listener with their own account. The second broker runs the
shipped deploy/mosquitto/mosquitto.conf with its documented TLS listener switched on.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import ssl
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import pytest

from drivers.hub import DriverHub
from drivers.types import DeviceStatus, Reading
from simulators.runner import Simulation
from tests import servers
from tests.conftest import site_for_test
from tests.faults.helpers import ROOT, figure
from tests.harness import eventually, running_service

MOSQUITTO_DIR = ROOT / "deploy" / "mosquitto"


@dataclass
class Certs:
    ca: Path
    cert: Path
    key: Path


def make_certs(directory: Path, ca_name: str = "ca.crt") -> Certs:
    """A CA and a server certificate for 127.0.0.1 / localhost, signed by it."""
    d = directory
    run = [shutil.which("openssl") or "openssl"]

    def openssl(*args: str) -> None:
        subprocess.run([*run, *args], check=True, capture_output=True, cwd=d)

    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=wattkeeper test CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-keyout", "ca.key", "-out", ca_name,
    )  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key", "-out", "s.csr")
    (d / "ext.cnf").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
    )
    openssl(
        "x509", "-req", "-in", "s.csr", "-CA", ca_name, "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
        "-extfile", "ext.cnf", "-out", "server.crt",
    )  # fmt: skip
    return Certs(d / ca_name, d / "server.crt", d / "server.key")


def password_file(path: Path, accounts: dict[str, str]) -> None:
    for user, password in accounts.items():
        subprocess.run(
            ["mosquitto_passwd", "-b", *([] if path.exists() else ["-c"]), str(path), user, password], check=True
        )


async def refused(host: str, port: int, **kw: object) -> str:
    """How the broker (or TLS) turns a client away; '' if it was let in."""
    try:
        async with aiomqtt.Client(host, port, identifier=f"probe-{secrets.token_hex(3)}", timeout=5, **kw):  # type: ignore[arg-type]
            return ""
    except aiomqtt.MqttError as exc:
        return str(exc) or type(exc).__name__


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[servers.Mosquitto, int, Certs, dict[str, str]]]:
    """Mosquitto: password file, no anonymous clients, plain listener + TLS listener (port returned)."""
    workdir = tmp_path / "mosquitto"
    workdir.mkdir()
    certs = make_certs(workdir)
    accounts = {"wattkeeper": secrets.token_hex(10), "simulators": secrets.token_hex(10)}
    password_file(workdir / "passwd", accounts)
    tls_port = servers.free_port()
    broker = servers.start_mosquitto(
        workdir,
        extra_conf=(
            f"allow_anonymous false\npassword_file {workdir}/passwd\n"
            f"listener {tls_port} 127.0.0.1\ncafile {certs.ca}\ncertfile {certs.cert}\nkeyfile {certs.key}\n"
        ),
    )
    try:
        servers.wait_port(tls_port)
        yield broker, tls_port, certs, accounts
    finally:
        broker.server.stop()


@pytest.mark.slow
async def test_the_service_over_tls_with_a_password_and_nobody_else(
    tls_broker: tuple[servers.Mosquitto, int, Certs, dict[str, str]], tmp_path: Path
) -> None:
    broker, tls_port, certs, accounts = tls_broker
    wk, sim_pw = accounts["wattkeeper"], accounts["simulators"]
    service_url = f"mqtts://wattkeeper:{wk}@127.0.0.1:{tls_port}?ca={certs.ca}"
    sim_url = f"mqtt://simulators:{sim_pw}@127.0.0.1:{broker.port}"
    site = site_for_test(service_url)
    mqtt_devices = {d.id for d in site.devices if d.driver == "mqtt"}
    trusted = ssl.create_default_context(cafile=str(certs.ca))
    # Battery sensors report once a simulated minute: at 10x, every device is heard within seconds.
    async with Simulation(site, control_port=None, speed=10, seed=2, mqtt_url=sim_url):
        async with running_service(site, tmp_path / "svc", env={"mqtt_url": service_url}) as svc:
            hub = svc.services.hub
            assert hub is not None

            async def heard() -> set[str] | None:
                good = {p.device for p in svc.services.core.state.points(svc.services.clock.now())}
                return (good & mqtt_devices) if mqtt_devices <= good else None

            read = await eventually(heard, 30)
            async with svc.client("operator") as op:
                r = await op.post("/api/devices/r2119-light/commands", json={"command": "on", "value": False})
            command = r.json()["status"]
            connected = hub.mqtt_connected

        wrong: list[tuple[Reading | DeviceStatus, ...]] = []
        bad_hub = DriverHub(
            [site.device("r2119-light")],
            mqtt_url=f"mqtts://wattkeeper:not-{wk}@127.0.0.1:{tls_port}?ca={certs.ca}",
            emit=lambda b: wrong.append(tuple(b)),
            client_id="wk-wrong-password",
        )
        async with bad_hub:
            await asyncio.sleep(2.0)
            wrong_password_connected = bad_hub.mqtt_connected
    probes = {
        "anonymous, plain listener": await refused("127.0.0.1", broker.port),
        "anonymous, TLS listener": await refused("127.0.0.1", tls_port, tls_context=trusted),
        "wrong password, TLS": await refused(
            "127.0.0.1", tls_port, username="wattkeeper", password="wrong", tls_context=trusted
        ),
        "unknown CA (system trust only)": await refused(
            "127.0.0.1", tls_port, username="wattkeeper", password=wk, tls_context=ssl.create_default_context()
        ),
        "plain MQTT on the TLS port": await refused("127.0.0.1", tls_port, username="wattkeeper", password=wk),
    }
    let_in = [k for k, why in probes.items() if not why]
    figure(
        "mqtt-auth-tls",
        f"the service over mqtts with a password read {len(read)} of {len(mqtt_devices)} simulated MQTT devices "
        f"and a command came back {command}; refused: {len(probes) - len(let_in)} of {len(probes)} "
        f"({'; '.join(probes)}); the drivers with a wrong password stay disconnected "
        f"({'connected' if wrong_password_connected else 'not connected'}, {sum(map(len, wrong))} events)",
    )
    assert connected and read == mqtt_devices
    assert command == "confirmed"
    assert let_in == [], probes
    assert "authori" in probes["anonymous, plain listener"].lower()
    assert wrong_password_connected is False and not any(isinstance(e, Reading) for b in wrong for e in b)


# -- the shipped configuration ---------------------------------------------------------------------


def deploy_config(workdir: Path, port: int, tls_port: int) -> str:
    """deploy/mosquitto/mosquitto.conf on loopback ports, files in workdir (its TLS listener is on as shipped)."""
    text = (MOSQUITTO_DIR / "mosquitto.conf").read_text()
    text, plain = re.subn(r"(?m)^listener 1883 127\.0\.0\.1$", f"listener {port} 127.0.0.1", text)
    text, tls = re.subn(r"(?m)^listener 8883$", f"listener {tls_port} 127.0.0.1", text)
    files = len(re.findall(r"(?m)^(certfile|keyfile|cafile|tls_version|require_certificate) ", text))
    assert (plain, tls, files) == (1, 1, 5), "deploy/mosquitto/mosquitto.conf changed its listeners"
    text = text.replace("/mosquitto/config/", f"{workdir}/").replace("/mosquitto/data/", f"{workdir}/data/")
    return text.replace("/mosquitto/certs/", f"{workdir}/certs/")


@dataclass
class DeployBroker:
    server: servers.Server
    tls_port: int
    ca: Path
    passwords: dict[str, str]


@pytest.fixture
def deploy_broker() -> Iterator[DeployBroker]:
    """Mosquitto running deploy/mosquitto/mosquitto.conf, its TLS listener switched on."""
    # Run as root, Mosquitto reads its files after dropping to the `mosquitto` user, as in the
    # container: the directory must be reachable for it (pytest's tmp_path is not).
    with tempfile.TemporaryDirectory(prefix="wk-faults-mosquitto-") as tmp:
        workdir = Path(tmp)
        workdir.chmod(0o755)
        (workdir / "certs").mkdir()
        certs = make_certs(workdir / "certs")
        passwords = {"wattkeeper": secrets.token_hex(10), "simulators": secrets.token_hex(10)}
        env = {**os.environ, **{f"MQTT_{a.upper()}_PASSWORD": pw for a, pw in passwords.items()}}
        subprocess.run(["sh", str(MOSQUITTO_DIR / "make-passwd.sh"), str(workdir / "passwd")], env=env, check=True)
        (workdir / "acl").write_text((MOSQUITTO_DIR / "acl").read_text())
        (workdir / "data").mkdir()
        if os.getuid() == 0:
            for path in (workdir / "data", workdir / "certs", *(workdir / "certs").iterdir()):
                shutil.chown(path, "mosquitto")
        port, tls_port = servers.free_port(), servers.free_port()
        conf = workdir / "mosquitto.conf"
        conf.write_text(deploy_config(workdir, port, tls_port))
        argv = [servers.need("mosquitto"), "-c", str(conf)]
        srv = servers.Server("mosquitto", subprocess.Popen(["true"]), port, workdir, argv, workdir / "mosquitto.log")
        srv.start()
        try:
            servers.wait_port(tls_port)
            yield DeployBroker(srv, tls_port, certs.ca, passwords)
        finally:
            srv.stop()


async def test_the_deploy_config_refuses_anonymous_clients_on_both_listeners(deploy_broker: DeployBroker) -> None:
    b = deploy_broker
    trusted = ssl.create_default_context(cafile=str(b.ca))
    probes = {
        "anonymous, plain": await refused("127.0.0.1", b.server.port),
        "anonymous, TLS": await refused("127.0.0.1", b.tls_port, tls_context=trusted),
        "wattkeeper, wrong password, TLS": await refused(
            "127.0.0.1", b.tls_port, username="wattkeeper", password="nope", tls_context=trusted
        ),
    }
    service_in = await refused(
        "127.0.0.1", b.tls_port, username="wattkeeper", password=b.passwords["wattkeeper"], tls_context=trusted
    )
    figure(
        "mqtt-deploy-config",
        f"deploy/mosquitto/mosquitto.conf with its TLS listener on: {sum(bool(v) for v in probes.values())} of "
        f"{len(probes)} unauthenticated or wrong logins refused ({'; '.join(probes)}); the service account "
        f"{'refused: ' + service_in if service_in else 'let in'} over TLS",
    )
    assert all(probes.values()), probes
    assert service_in == ""
