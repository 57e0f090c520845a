"""The command line: `wattkeeper check` exit codes and output, --help everywhere."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

WK = [sys.executable, "-m", "service"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*WK, *args], capture_output=True, text=True, timeout=60)


def test_check_demo_site_passes(demo_site_path: Path) -> None:
    out = run("check", "--site", str(demo_site_path))
    assert out.returncode == 0, out.stderr
    assert "generator >= 120 % of security load" in out.stdout
    assert "PASS" in out.stdout and "FAIL" not in out.stdout


def test_check_json(demo_site_path: Path) -> None:
    out = run("check", "--site", str(demo_site_path), "--json")
    assert out.returncode == 0
    assert json.loads(out.stdout)["status"] == "PASS"


def test_check_failing_site_names_rule_and_numbers(demo_site_path: Path, tmp_path: Path) -> None:
    text = demo_site_path.read_text().replace("rated_kw: 200", "rated_kw: 179")
    bad = tmp_path / "undersized.yaml"
    bad.write_text(text)
    out = run("check", "--site", str(bad))
    assert out.returncode == 1
    line = next(x for x in out.stdout.splitlines() if "120 %" in x and "FAIL" in x)
    assert "179 kW" in line and "119.3 %" in line and "150 kW" in line


def test_check_invalid_file_lists_every_error(demo_site_path: Path, tmp_path: Path) -> None:
    text = (
        demo_site_path.read_text()
        .replace("grade: first", "grade: gold")
        .replace("department: marketing, kind: meeting", "department: finance, kind: meeting")
    )
    bad = tmp_path / "broken.yaml"
    bad.write_text(text)
    out = run("check", "--site", str(bad))
    assert out.returncode == 2
    assert out.stderr.splitlines() == [
        f"{bad}: invalid site file (2 error(s)):",
        "  site.grade: Input should be 'special', 'first', 'second', 'temporary' or 'ordinary', got 'gold' "
        "(broken.yaml:8)",
        "  rooms[5].department: unknown department 'finance' (broken.yaml:43)",
    ]
    assert out.stdout == ""


@pytest.mark.parametrize(
    ("old", "new", "error"),
    [
        ("holidays: [", "holidays: [2026-02-30, ", "calendar.holidays[0]: '2026-02-30' is not a date"),
        ("holidays: [", "holidays: [2026-13-01, ", "calendar.holidays[0]: '2026-13-01' is not a date"),
        ("meter: meter-gen}", "meter: 2026-02-31}", "generators[0].meter: unknown device '2026-02-31'"),
        ("  grade: first\n", "  grade: first\n  grade: ordinary\n", "site.grade: key 'grade' given twice"),
    ],
)
def test_check_bad_date_or_repeated_key_is_an_error_not_a_crash(
    demo_site_path: Path, tmp_path: Path, old: str, new: str, error: str
) -> None:
    text = demo_site_path.read_text()
    assert old in text
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace(old, new, 1))
    out = run("check", "--site", str(bad))
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    assert any(line.strip().startswith(error) and "(bad.yaml:" in line for line in out.stderr.splitlines()), out.stderr


def test_check_warns_about_energy_counters_without_rated_kw(demo_site_path: Path, tmp_path: Path) -> None:
    text = demo_site_path.read_text()
    old = "port: 15022, unit: 1, poll_s: 1, rated_kw: 400}"
    assert old in text
    site = tmp_path / "unrated.yaml"
    site.write_text(text.replace(old, "port: 15022, unit: 1, poll_s: 1}"))
    out = run("check", "--site", str(site))
    assert out.returncode == 0, out.stdout + out.stderr
    row = next(x for x in out.stdout.splitlines() if x.startswith("energy counters bounded by rated_kw"))
    assert "WARN" in row and "no rated_kw for meter-grid-b:" in row
    assert "overall WARN" in out.stdout
    data = json.loads(run("check", "--site", str(site), "--json").stdout)
    assert data["status"] == "WARN"
    assert [r["rule"] for r in data["rules"] if r["status"] == "WARN"] == ["energy.rated_kw"]


@pytest.mark.parametrize(
    "cmd", [[], ["serve"], ["simulate"], ["demo"], ["check"], ["report", "energy"], ["keys", "create"]]
)
def test_help(cmd: list[str]) -> None:
    out = run(*cmd, "--help")
    assert out.returncode == 0
    assert "Usage" in out.stdout
