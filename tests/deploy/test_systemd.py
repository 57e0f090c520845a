"""deploy/systemd: hardened units for a bare-metal install, verified by systemd-analyze where it exists."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[2] / "deploy" / "systemd"
INSTALLED_BINARY = "/opt/wattkeeper/venv/bin/wattkeeper"
HARDENING = {
    "User": "wattkeeper",
    "Group": "wattkeeper",
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ReadWritePaths": "/var/lib/wattkeeper",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "CapabilityBoundingSet": "",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
}


def directives(path: Path) -> dict[str, dict[str, list[str]]]:
    """Section -> key -> values (keys may repeat in unit files)."""
    out: dict[str, dict[str, list[str]]] = {}
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            out.setdefault(section, {})
            continue
        key, sep, value = line.partition("=")
        assert sep and section, f"{path.name}: '{line}' outside a section or not key=value"
        out[section].setdefault(key, []).append(value)
    return out


@pytest.mark.parametrize(
    ("unit", "command"), [("wattkeeper.service", "serve"), ("wattkeeper-simulators.service", "simulate")]
)
def test_unit_runs_the_cli_hardened(unit: str, command: str) -> None:
    d = directives(UNITS / unit)
    svc = d["Service"]
    assert svc["ExecStart"] == [f"{INSTALLED_BINARY} {command} --site /etc/wattkeeper/site.yaml"]
    assert svc["EnvironmentFile"][0] == "/etc/wattkeeper/wattkeeper.env"
    for key, value in HARDENING.items():
        assert svc.get(key) == [value], f"{unit}: {key}={value}"
    assert svc["Restart"] == ["on-failure"]
    assert d["Install"]["WantedBy"] == ["multi-user.target"]
    assert "network-online.target" in d["Unit"]["After"][0]


def installable_copies(tmp_path: Path) -> list[Path]:
    # verify insists that ExecStart's binary exists: point it at one that does.
    stand_in = shutil.which("true") or "/bin/true"
    out = []
    for unit in sorted(UNITS.glob("*.service")):
        copy = tmp_path / unit.name
        copy.write_text(unit.read_text().replace(INSTALLED_BINARY, stand_in))
        out.append(copy)
    return out


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify_finds_nothing(tmp_path: Path) -> None:
    copies = installable_copies(tmp_path)
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *map(str, copies)], capture_output=True, text=True, check=False
    )
    # Unknown keys are only warnings (exit 0): any output is a finding.
    assert done.returncode == 0 and not (done.stdout + done.stderr).strip(), done.stdout + done.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_security_rates_the_units_ok(tmp_path: Path) -> None:
    for copy in installable_copies(tmp_path):
        done = subprocess.run(
            ["systemd-analyze", "security", "--offline=true", "--threshold=20", "--no-pager", str(copy)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stdout[-600:] + done.stderr
