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
    assert "site.grade" in out.stderr and "broken.yaml:" in out.stderr


@pytest.mark.parametrize(
    "cmd", [[], ["serve"], ["simulate"], ["demo"], ["check"], ["report", "energy"], ["keys", "create"]]
)
def test_help(cmd: list[str]) -> None:
    out = run(*cmd, "--help")
    assert out.returncode == 0
    assert "Usage" in out.stdout
