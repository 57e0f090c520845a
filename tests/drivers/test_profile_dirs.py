"""Profiles a site adds (`profiles_dir`, WATTKEEPER_PROFILES_DIR), and broken profiles as site-file errors."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import drivers.profiles as profiles
from drivers.profiles import ModbusProfile, load_profile, reset_profile_dirs
from service.config.site import SiteError, load_site
from tests.conftest import ROOT

README = ROOT / "README.md"
WK = [sys.executable, "-m", "service"]

GOOD = """\
name: my-meter
driver: modbus
device: Test meter
documentation: test
points:
  - {name: power, table: input, address: 0, type: float32, unit: W}
  - {name: energy, table: input, address: 2, type: float32, unit: kWh, kind: counter}
"""


@pytest.fixture(autouse=True)
def _forget_added_profiles() -> Iterator[None]:
    reset_profile_dirs()
    yield
    reset_profile_dirs()


def _site(
    tmp_path: Path, demo_site_path: Path, profile: str = "my-meter", profiles_dir: str | None = "profiles"
) -> Path:
    """The demo site with one extra meter of `profile`, and `profiles_dir` if given."""
    text = demo_site_path.read_text(encoding="utf-8")
    extra = f"  - {{id: meter-extra, driver: modbus, profile: {profile}, host: 127.0.0.1, port: 15999, unit: 1}}\n"
    text = text.replace("devices:\n", "devices:\n" + extra, 1)
    if profiles_dir is not None:
        text += f"\nprofiles_dir: {profiles_dir}\n"
    site = tmp_path / "site.yaml"
    site.write_text(text, encoding="utf-8")
    return site


def _line_of(path: Path, needle: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), start=1) if needle in line)


def run_check(site: Path) -> subprocess.CompletedProcess[str]:
    """`wattkeeper check --site site.yaml` run from the site file's directory, as the README does."""
    env = {k: v for k, v in os.environ.items() if k != "WATTKEEPER_PROFILES_DIR"}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [*WK, "check", "--site", site.name], capture_output=True, text=True, timeout=60, env=env, cwd=site.parent
    )


def test_profile_from_the_site_directory_loads(tmp_path: Path, demo_site_path: Path) -> None:
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "my-meter.yaml").write_text(GOOD)
    site = load_site(_site(tmp_path, demo_site_path))
    assert site.profiles_dir == "profiles"
    assert isinstance(load_profile("my-meter"), ModbusProfile)
    assert load_profile("my-meter").point("energy").kind == "counter"


@pytest.mark.parametrize(
    ("change", "needle", "message"),
    [
        (
            ("type: float32, unit: W}", "type: float32}"),
            "name: power",
            "points[0]: point 'power': give its unit",
        ),
        (
            ("address: 2,", "address: 1,"),
            "name: energy",
            "points[1]: points 'power' and 'energy' overlap at input register 1",
        ),
        (("device: Test meter", "device: Test meter\nvendor_url: x"), "vendor_url", "vendor_url: unknown key"),
        (("driver: modbus", "driver: modbus\ndriver: mqtt"), "driver: mqtt", "driver: key 'driver' given twice"),
        (("- {name: energy,", "- {name: energy"), "name: energy", "not valid YAML"),
    ],
    ids=["missing-unit", "overlap", "unknown-key", "repeated-key", "yaml"],
)
def test_broken_profile_is_a_site_file_error(
    tmp_path: Path, demo_site_path: Path, change: tuple[str, str], needle: str, message: str
) -> None:
    (tmp_path / "profiles").mkdir()
    bad = tmp_path / "profiles" / "my-meter.yaml"
    bad.write_text(GOOD.replace(*change))
    site = _site(tmp_path, demo_site_path)
    out = run_check(site)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    device_line = _line_of(site, "id: meter-extra")
    expected = (
        f"devices[0].profile: profile 'my-meter' is invalid: profiles/my-meter.yaml:{_line_of(bad, needle)}: {message}"
    )
    assert expected in out.stderr, out.stderr
    assert f"(site.yaml:{device_line})" in out.stderr


def test_unused_broken_profile_is_reported_at_profiles_dir(tmp_path: Path, demo_site_path: Path) -> None:
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "spare.yaml").write_text(GOOD.replace("my-meter", "spare").replace(", unit: W}", "}"))
    (tmp_path / "profiles" / "my-meter.yaml").write_text(GOOD)
    site = _site(tmp_path, demo_site_path)
    with pytest.raises(SiteError) as err:
        load_site(site)
    line = _line_of(site, "profiles_dir:")
    assert err.value.errors == [
        f"profiles_dir: {tmp_path / 'profiles' / 'spare.yaml'}:6: points[0]: point 'power': give its unit"
        f' (unit: "" if it has none, like a power factor) (site.yaml:{line})'
    ]


def test_missing_profiles_dir_is_named(tmp_path: Path, demo_site_path: Path) -> None:
    site = _site(tmp_path, demo_site_path, profile="sdm630", profiles_dir="nowhere")
    with pytest.raises(SiteError) as err:
        load_site(site)
    assert any(
        e.startswith(f"profiles_dir: {tmp_path / 'nowhere'}: not a directory of profiles") for e in err.value.errors
    )


def test_environment_directory_wins_over_the_site_file(
    tmp_path: Path, demo_site_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "my-meter.yaml").write_text(GOOD.replace("device: Test meter", "device: From the environment"))
    monkeypatch.setenv("WATTKEEPER_PROFILES_DIR", str(other))
    load_site(_site(tmp_path, demo_site_path, profiles_dir="nowhere"))
    assert load_profile("my-meter").device == "From the environment"


def test_shadowing_a_shipped_profile_warns(
    tmp_path: Path, demo_site_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "profiles").mkdir()
    shipped = (profiles.PROFILE_DIR / "sdm630.yaml").read_text()
    (tmp_path / "profiles" / "sdm630.yaml").write_text(shipped.replace("device: ", "device: Local copy of ", 1))
    with caplog.at_level("WARNING", logger="drivers.profiles"):
        load_site(_site(tmp_path, demo_site_path, profile="sdm630"))
    assert load_profile("sdm630").device.startswith("Local copy of ")
    assert any("replaces the shipped profile" in r.getMessage() and "sdm630" in r.getMessage() for r in caplog.records)
    reset_profile_dirs()
    assert not load_profile("sdm630").device.startswith("Local copy of ")


def test_broken_shipped_profile_is_a_site_file_error(
    tmp_path: Path, demo_site_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    for f in profiles.PROFILE_DIR.glob("*.yaml"):
        (shipped / f.name).write_text(f.read_text())
    (shipped / "sdm630.yaml").write_text(
        (shipped / "sdm630.yaml").read_text().replace("unit: V", "unit: V, colour: red", 1)
    )
    monkeypatch.setattr(profiles, "PROFILE_DIR", shipped)
    with pytest.raises(SiteError) as err:
        load_site(demo_site_path)
    assert err.value.errors
    assert all("profile 'sdm630' is invalid" in e and "colour: unknown key" in e for e in err.value.errors)


def _readme_blocks() -> dict[str, str]:
    text = README.read_text(encoding="utf-8")
    return dict(re.findall(r"<!-- example-profiles-dir: (\S+) -->\s*```yaml\n(.*?)```", text, re.S))


def test_readme_worked_example_runs(tmp_path: Path, demo_site_path: Path) -> None:
    blocks = _readme_blocks()
    assert set(blocks) == {"profiles/sdm72d.yaml", "site.yaml"}, "README lost its profiles_dir worked example"
    (tmp_path / "profiles").mkdir()
    profile_file = tmp_path / "profiles" / "sdm72d.yaml"
    profile_file.write_text(blocks["profiles/sdm72d.yaml"])
    snippet = blocks["site.yaml"]
    device = next(line for line in snippet.splitlines() if line.startswith("  - "))
    assert "profiles_dir: profiles" in snippet
    text = demo_site_path.read_text().replace("devices:\n", f"devices:\n{device}\n", 1) + "\nprofiles_dir: profiles\n"
    site = tmp_path / "site.yaml"
    site.write_text(text)
    out = run_check(site)
    assert out.returncode == 0, out.stderr
    assert isinstance(load_profile("sdm72d", tmp_path / "profiles"), ModbusProfile)

    # The README's sample error, from the same example broken as it says.
    profile_file.write_text(blocks["profiles/sdm72d.yaml"].replace("address: 0x0048", "address: 0x0035"))
    out = run_check(site)
    assert out.returncode == 2
    sample = re.search(
        r"tests/drivers/test_profile_dirs.py runs it\) -->\n```console\n\$ wattkeeper check --site site.yaml\n(.*?)```",
        README.read_text(),
        re.S,
    )
    assert sample, "README lost the sample of a broken profile"

    def normal(t: str) -> str:
        return re.sub(r"devices\[\d+\]|site\.yaml:\d+", "N", t).strip()

    assert normal(sample.group(1)) == normal(out.stderr)
