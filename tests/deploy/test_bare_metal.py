"""Bare metal on stock Debian, as far as this machine allows: the documented install script run into a
staging root (DESTDIR), Mosquitto started with Debian's own main config plus the installed conf.d
file, the service started with the installed settings, `wattkeeper config` reading them."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from service.config.settings import Settings, parse_api_keys
from tests import servers
from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"
SCRIPT = DEPLOY / "install-bare-metal.sh"
EXAMPLE_SITE = DEPLOY / "sites" / "production.example.yaml"

# /etc/mosquitto/mosquitto.conf as the Debian 12 package installs it (paths moved under `root`).
DEBIAN_MAIN_CONF = """\
# Place your local configuration in /etc/mosquitto/conf.d/
pid_file {root}/run/mosquitto.pid

persistence true
persistence_location {root}/var/lib/mosquitto/

log_dest file {root}/var/log/mosquitto.log

include_dir {root}/etc/mosquitto/conf.d
"""


def env_file(path: Path) -> dict[str, str]:
    return dict(re.findall(r"(?m)^([A-Z][A-Z0-9_]*)=(.*)$", path.read_text()))


def install(stage: Path, site: Path = EXAMPLE_SITE) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATTKEEPER_")}
    env |= {"DESTDIR": str(stage), "WATTKEEPER_VENV": str(Path(sys.executable).parent.parent)}
    return subprocess.run(
        ["sh", str(SCRIPT), str(site)], capture_output=True, text=True, timeout=120, env=env, cwd=stage.parent
    )


@pytest.fixture(scope="module")
def stage() -> Iterator[Path]:
    """The install script run once into a staging root Mosquitto's own user can read."""
    with tempfile.TemporaryDirectory(prefix="wk-bare-metal-") as tmp:
        Path(tmp).chmod(0o755)
        root = Path(tmp) / "root"
        done = install(root)
        assert done.returncode == 0, done.stdout + done.stderr
        yield root


@pytest.mark.skipif(shutil.which("apt-get") is None, reason="not a Debian-like machine")
def test_debian_packages_are_installable() -> None:
    done = subprocess.run(
        [
            "apt-get",
            "install",
            "--simulate",
            "--no-install-recommends",
            "mosquitto",
            "mosquitto-clients",
            "python3-venv",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_install_writes_every_file_with_secrets_in_their_formats(stage: Path) -> None:
    settings_file = stage / "etc" / "wattkeeper" / "wattkeeper.env"
    values = env_file(settings_file)
    assert settings_file.stat().st_mode & 0o777 == 0o600
    keys = parse_api_keys(values["WATTKEEPER_API_KEYS"])
    assert list(keys.values()) == ["admin"] and all(len(k) >= 16 for k in keys)
    password = values["MQTT_WATTKEEPER_PASSWORD"]
    assert re.fullmatch(r"[A-Za-z0-9]{32}", password)
    assert values["WATTKEEPER_MQTT_URL"] == f"mqtt://wattkeeper:{password}@127.0.0.1:1883"
    assert values["WATTKEEPER_HTTP_HOST"] == "0.0.0.0"
    # Issued elsewhere: never invented, a visible placeholder so `check` runs.
    assert values["WATTKEEPER_DINGTALK_TOKEN"] == "REPLACE-ME"
    assert not any("${" in v for v in values.values())  # systemd's EnvironmentFile does not expand
    # Production settings as the service would read them.
    clean = {k: v for k, v in values.items() if k.startswith("WATTKEEPER_")}
    Settings.model_validate({k.removeprefix("WATTKEEPER_").lower(): v for k, v in clean.items()})
    for unit in ("wattkeeper.service", "wattkeeper-simulators.service"):
        assert (stage / "etc" / "systemd" / "system" / unit).read_text() == (DEPLOY / "systemd" / unit).read_text()
    conf = (stage / "etc" / "mosquitto" / "conf.d" / "wattkeeper.conf").read_text()
    settings = "\n".join(line for line in conf.splitlines() if not line.startswith("#"))
    assert "/mosquitto/" not in settings.replace("/etc/mosquitto/", "").replace("/var/lib/mosquitto/", "")
    assert "persistence true" in conf and not re.search(r"(?m)^persistence_location", conf)
    # the TLS listener's files: the broker's certificate and key, and the site CA that signed it
    assert {p.name for p in (stage / "etc" / "mosquitto" / "certs").iterdir()} >= {"ca.crt", "server.crt", "server.key"}
    assert (stage / "etc" / "wattkeeper" / "mqtt-ca" / "ca.key").stat().st_mode & 0o077 == 0


def test_running_it_again_keeps_the_secrets(stage: Path) -> None:
    before = env_file(stage / "etc" / "wattkeeper" / "wattkeeper.env")
    again = install(stage)
    assert again.returncode == 0, again.stderr
    assert env_file(stage / "etc" / "wattkeeper" / "wattkeeper.env") == before


def test_install_stops_on_a_site_file_check_refuses(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLE_SITE.read_text().replace("grade: first", "grade: gold"))
    done = install(tmp_path / "root", bad)
    assert done.returncode == 2
    assert "site.grade" in done.stderr
    assert "installed;" not in done.stdout


def _debian_broker(stage: Path, conf_d_text: str) -> tuple[servers.Server, int]:
    """Mosquitto with Debian's main config including `conf_d_text` as conf.d/wattkeeper.conf."""
    broker = stage.parent / f"broker-{servers.free_port()}"
    for d in ("run", "var/lib/mosquitto", "var/log", "etc/mosquitto/conf.d"):
        (broker / d).mkdir(parents=True)
    if os.getuid() == 0:
        for d in ("run", "var/lib/mosquitto", "var/log"):
            shutil.chown(broker / d, "mosquitto")
    port = servers.free_port()
    text = conf_d_text.replace("/etc/mosquitto/", f"{stage}/etc/mosquitto/")
    text, n = re.subn(r"(?m)^listener 1883 127\.0\.0\.1$", f"listener {port} 127.0.0.1", text)
    text, n_tls = re.subn(r"(?m)^listener 8883$", f"listener {servers.free_port()} 127.0.0.1", text)
    assert (n, n_tls) == (1, 1)
    if os.getuid() == 0 and (stage / "etc" / "mosquitto" / "certs").is_dir():
        for path in (stage / "etc" / "mosquitto" / "certs", *(stage / "etc" / "mosquitto" / "certs").iterdir()):
            shutil.chown(path, "mosquitto")
    (broker / "etc" / "mosquitto" / "conf.d" / "wattkeeper.conf").write_text(text)
    main = broker / "etc" / "mosquitto" / "mosquitto.conf"
    main.write_text(DEBIAN_MAIN_CONF.format(root=broker))
    argv = [servers.need("mosquitto"), "-c", str(main)]
    return servers.Server("mosquitto", subprocess.Popen(["true"]), port, broker, argv, broker / "stdout.log"), port


def test_mosquitto_takes_the_installed_config_under_debians_main_config(stage: Path) -> None:
    installed = (stage / "etc" / "mosquitto" / "conf.d" / "wattkeeper.conf").read_text()
    password = env_file(stage / "etc" / "wattkeeper" / "wattkeeper.env")["MQTT_WATTKEEPER_PASSWORD"]
    srv, port = _debian_broker(stage, installed)
    srv.start()
    with servers.running(srv):
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bare-metal-test")
        client.username_pw_set("wattkeeper", password)
        assert client.connect("127.0.0.1", port) == 0
        client.loop_start()
        try:
            info = client.publish("wattkeeper/hq/alarms", "x", qos=1)
            info.wait_for_publish(timeout=10)
            assert info.is_published()
        finally:
            client.loop_stop()
            client.disconnect()

    # The config as it was shipped before: Debian's Mosquitto refuses it, so the test above can fail.
    shipped = (DEPLOY / "mosquitto" / "mosquitto.conf").read_text()
    old = shipped.replace("/mosquitto/config/", "/etc/mosquitto/").replace("/mosquitto/data/", "/var/lib/mosquitto/")
    srv, _ = _debian_broker(stage, old)
    done = subprocess.run(srv.argv, capture_output=True, text=True, timeout=20, check=False)
    assert done.returncode != 0
    assert "Duplicate persistence_location" in done.stdout + done.stderr


def test_service_runs_with_the_installed_settings(stage: Path, tmp_path: Path) -> None:
    """`wattkeeper config` and `serve` with the installed settings file (paths moved to the test's)."""
    values = env_file(stage / "etc" / "wattkeeper" / "wattkeeper.env")
    port = servers.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATTKEEPER_")}
    env |= {k: v for k, v in values.items() if k.startswith("WATTKEEPER_")}
    env |= {
        "PYTHONPATH": str(ROOT),
        "WATTKEEPER_DATABASE_URL": f"sqlite:///{tmp_path}/wattkeeper.db",
        "WATTKEEPER_DATA_DIR": str(tmp_path / "data"),
        "WATTKEEPER_HTTP_PORT": str(port),
        "WATTKEEPER_MQTT_URL": "mqtt://127.0.0.1:1",  # no broker: the service starts regardless
    }
    site = stage / "etc" / "wattkeeper" / "site.yaml"
    shown = subprocess.run(
        [sys.executable, "-m", "service", "config", "--site", str(site)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
    )
    assert shown.returncode == 0, shown.stderr
    assert re.search(r"(?m)^WATTKEEPER_HTTP_HOST\s+0\.0\.0\.0\s+environment$", shown.stdout), shown.stdout
    assert re.search(r"(?m)^WATTKEEPER_ENV\s+production\s+environment$", shown.stdout)
    api_key = next(iter(parse_api_keys(values["WATTKEEPER_API_KEYS"])))
    assert api_key not in shown.stdout
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "service", "serve", "--site", str(site)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=tmp_path,
    )
    try:
        servers.wait_http(f"http://127.0.0.1:{port}/healthz", timeout_s=60)
        # Bound to every address (WATTKEEPER_HTTP_HOST=0.0.0.0), not only loopback.
        listening = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=False)
        if listening.returncode == 0:
            assert f"0.0.0.0:{port}" in listening.stdout, listening.stdout
        r = httpx.get(
            f"http://127.0.0.1:{port}/api/devices", headers={"Authorization": f"Bearer {api_key}"}, timeout=10
        )
        assert r.status_code == 200 and r.json()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def test_compose_secrets_script_then_the_example_site_passes_check(tmp_path: Path) -> None:
    """deploy/README's compose steps: make-secrets.py writes .env; the example site then passes `check`
    with what compose hands the service from it."""
    out = tmp_path / ".env"
    made = subprocess.run(
        [
            sys.executable,
            str(DEPLOY / "make-secrets.py"),
            "--out",
            str(out),
            "--set",
            "WATTKEEPER_SMTP_PASSWORD=p%40ss",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    assert "WATTKEEPER_DINGTALK_TOKEN=REPLACE-ME" in made.stderr and "SMTP" not in made.stderr
    values = env_file(out)
    template = env_file(DEPLOY / ".env.example")
    assert set(values) == set(template)
    empty = {k for k, v in values.items() if not v}
    assert empty == {"WATTKEEPER_INFLUX_TOKEN", "GRAFANA_INFLUX_TOKEN"}  # optional: the operator token is used
    assert all(re.fullmatch(r"[A-Za-z0-9]{32}", v) for k, v in values.items() if k.startswith("MQTT_") and "PASS" in k)
    assert values["WATTKEEPER_SMTP_PASSWORD"] == "p%40ss"
    again = subprocess.run([sys.executable, str(DEPLOY / "make-secrets.py"), "--out", str(out)], check=True)
    assert again.returncode == 0 and env_file(out) == values
    # docker-compose.yml's `environment:` of the wattkeeper service, from .env.
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATTKEEPER_")}
    env |= {
        "PYTHONPATH": str(ROOT),
        "WATTKEEPER_ENV": "production",
        "WATTKEEPER_API_KEYS": values["WATTKEEPER_API_KEYS"],
        "WATTKEEPER_MQTT_URL": f"mqtt://wattkeeper:{values['MQTT_WATTKEEPER_PASSWORD']}@mosquitto:1883",
        "WATTKEEPER_INFLUX_URL": "http://influxdb:8086",
        "WATTKEEPER_INFLUX_TOKEN": values["INFLUX_TOKEN"],
        **{k: values[k] for k in ("WATTKEEPER_DINGTALK_TOKEN", "WATTKEEPER_WECOM_KEY", "WATTKEEPER_SMTP_PASSWORD")},
    }
    check = subprocess.run(
        [sys.executable, "-m", "service", "check", "--site", str(EXAMPLE_SITE)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    config = subprocess.run(
        [sys.executable, "-m", "service", "config", "--site", str(EXAMPLE_SITE)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert config.returncode == 0, config.stderr
    for name, value in values.items():
        if value and ("PASSWORD" in name or "TOKEN" in name or name == "WATTKEEPER_API_KEYS"):
            assert value not in config.stdout + config.stderr, name
