"""`wattkeeper config`: every setting, its effective value, where it came from; secrets never shown."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from service.config.settings import SETTINGS, Settings
from tests.conftest import ROOT

SECRETS = {
    "api": "an-admin-key-of-enough-length",
    "token": "influx-token-value-0123",
    "mqtt": "broker-password-xyz",
    "dingtalk": "dingtalk-token-abc",
}


def config(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("WATTKEEPER_")}
    clean |= {"PYTHONPATH": str(ROOT), **env}
    return subprocess.run(
        [sys.executable, "-m", "service", "config", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean,
        cwd=cwd,
    )


def rows(stdout: str) -> dict[str, tuple[str, str]]:
    """setting -> (value, from) of the printed table (columns are separated by 2+ spaces)."""
    out = {}
    for line in stdout.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if len(cells) >= 3 and cells[0].isupper():
            out[cells[0]] = (cells[1], cells[2])
    return out


def test_every_setting_is_in_the_table_and_the_table_is_every_setting() -> None:
    fields = {f"WATTKEEPER_{name.upper()}" for name in Settings.model_fields}
    listed = {s.env for s in SETTINGS}
    # WATTKEEPER_SIM_PORT is read by `simulate` (the simulators take no Settings) and listed too.
    assert fields <= listed, f"settings missing from SETTINGS: {sorted(fields - listed)}"
    assert listed - fields <= {"WATTKEEPER_SIM_PORT"}, sorted(listed - fields)


def test_origins_environment_dotenv_site_file_default(tmp_path: Path, demo_site_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(demo_site_path.read_text().replace("mqtt:", "profiles_dir: profiles\nmqtt:", 1))
    (tmp_path / "profiles").mkdir()
    (tmp_path / ".env").write_text(
        f"WATTKEEPER_HTTP_PORT=9001\nWATTKEEPER_INFLUX_TOKEN={SECRETS['token']}\nWATTKEEPER_SIM_PORT=9100\n"
    )
    done = config(
        tmp_path,
        {
            "WATTKEEPER_SIM_PORT": "9200",
            "WATTKEEPER_API_KEYS": f"{SECRETS['api']}:admin",
            "WATTKEEPER_MQTT_URL": f"mqtt://wk:{SECRETS['mqtt']}@broker.example:1883",
        },
        "--site",
        "site.yaml",
    )
    assert done.returncode == 0, done.stderr
    got = rows(done.stdout)
    assert got["WATTKEEPER_SIM_PORT"] == ("9200", "environment")  # the environment wins over .env
    assert got["WATTKEEPER_HTTP_PORT"] == ("9001", ".env")
    assert got["WATTKEEPER_PROFILES_DIR"] == ("profiles", "site file")
    assert got["WATTKEEPER_HTTP_HOST"] == ("127.0.0.1", "default")
    assert got["WATTKEEPER_MQTT_URL"] == ("mqtt://wk:***@broker.example:1883", "environment")
    assert got["WATTKEEPER_API_KEYS"] == ("*** (1 key(s): admin)", "environment")
    assert got["WATTKEEPER_INFLUX_TOKEN"] == ("*** (set)", ".env")
    assert f"{tmp_path / 'var' / 'wattkeeper.db'} (does not exist yet)" in done.stdout
    assert set(got) >= {s.env for s in SETTINGS}
    for secret in SECRETS.values():
        assert secret not in done.stdout + done.stderr


def test_site_file_mqtt_url_and_named_secrets(tmp_path: Path) -> None:
    site = ROOT / "deploy" / "sites" / "production.example.yaml"
    (tmp_path / ".env").write_text(f"WATTKEEPER_DINGTALK_TOKEN={SECRETS['dingtalk']}\n")
    done = config(tmp_path, {}, "--site", str(site))
    got = rows(done.stdout)
    assert got["WATTKEEPER_DINGTALK_TOKEN"] == ("*** (set)", ".env")
    assert got["WATTKEEPER_SMTP_PASSWORD"] == ("(none)", "not set")
    # The site file names a secret nobody set: serve would refuse it, and so does config.
    assert done.returncode == 2
    assert "WATTKEEPER_SMTP_PASSWORD is not set" in done.stderr
    assert "WATTKEEPER_DINGTALK_TOKEN is not set" not in done.stderr  # .env counts, as for every setting
    assert SECRETS["dingtalk"] not in done.stdout + done.stderr


def test_invalid_setting_is_named_and_exit_2(tmp_path: Path) -> None:
    done = config(tmp_path, {"WATTKEEPER_HTTP_PORT": "99999", "WATTKEEPER_DATABASE_URL": "mysql://x/y"})
    assert done.returncode == 2
    assert "invalid: WATTKEEPER_HTTP_PORT" in done.stderr
    assert "invalid: WATTKEEPER_DATABASE_URL" in done.stderr
    assert rows(done.stdout)["WATTKEEPER_HTTP_PORT"] == ("99999", "environment")
