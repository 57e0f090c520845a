"""A device whose profile no simulator models is refused by name, never left without a listener yet 'online'."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers.profiles import PROFILE_DIR, reset_profile_dirs
from service.config.site import load_site
from simulators.runner import Simulation, UnsimulatedDevices, unsimulated
from tests.conftest import ROOT

OWN_METER = """\
name: my-meter
driver: modbus
device: Test meter
documentation: test
points:
  - {name: power, table: input, address: 0, type: float32, unit: W}
"""


@pytest.fixture(autouse=True)
def _forget_added_profiles() -> Iterator[None]:
    reset_profile_dirs()
    yield
    reset_profile_dirs()


def site_with(tmp_path: Path, demo_site_path: Path, profile: str, file_text: str) -> Path:
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / f"{profile}.yaml").write_text(file_text)
    text = demo_site_path.read_text().replace(
        "devices:\n",
        f"devices:\n  - {{id: meter-own, driver: modbus, profile: {profile}, host: 127.0.0.1, port: 15998}}\n",
        1,
    )
    site = tmp_path / "site.yaml"
    site.write_text(text + "\nprofiles_dir: profiles\n")
    return site


def test_demo_site_is_fully_simulated(demo_site_path: Path) -> None:
    assert unsimulated(load_site(demo_site_path)) == []


def test_a_new_profile_is_refused_by_device(tmp_path: Path, demo_site_path: Path) -> None:
    site = load_site(site_with(tmp_path, demo_site_path, "my-meter", OWN_METER))
    with pytest.raises(UnsimulatedDevices, match=r"no simulator for meter-own \(my-meter\)"):
        Simulation(site, control_port=None)


def test_a_replaced_shipped_profile_is_refused_too(tmp_path: Path, demo_site_path: Path) -> None:
    shipped = (PROFILE_DIR / "sdm630.yaml").read_text()
    site = load_site(site_with(tmp_path, demo_site_path, "sdm630", shipped))
    missing = unsimulated(site)
    assert len(missing) == len([d for d in site.devices if d.profile == "sdm630"])
    assert all("sdm630 from " in m for m in missing)


@pytest.mark.parametrize("command", ["simulate", "demo"])
def test_cli_exits_2_naming_the_device(tmp_path: Path, demo_site_path: Path, command: str) -> None:
    site = site_with(tmp_path, demo_site_path, "my-meter", OWN_METER)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATTKEEPER_")} | {"PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "service", command, "--site", str(site)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "cannot simulate 1 device(s): meter-own (my-meter)" in done.stderr
    assert "simulating" not in done.stdout
