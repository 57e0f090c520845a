"""`wattkeeper check` as a process: the new static rules at their boundaries (exit 0/1/2), the `alarms:`
block's effective table (text and --json), and a table that fits 80- and 120-column terminals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.cells import cell_len

from tests.test_cli import run

ATS_LINE = "mode: automatic, transfer_time_s: 4}"


def demo_with(demo_site_path: Path, tmp_path: Path, old: str, new: str, name: str = "site.yaml") -> Path:
    text = demo_site_path.read_text(encoding="utf-8")
    assert old in text
    path = tmp_path / name
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("new", "code", "status"),
    [
        ("mode: automatic, transfer_time_s: 10}", 0, "PASS"),  # exactly allowed_interruption_s (10 s)
        ("mode: automatic, transfer_time_s: 10.1}", 1, "FAIL"),  # one step over
        ("mode: automatic}", 0, "WARN"),  # not declared: check live
        ("mode: manual, transfer_time_s: 5}", 1, "FAIL"),  # by hand within 10 s: nobody does
        ("mode: by-hand}", 2, None),  # not a mode
    ],
)
def test_switchover_exit_codes(demo_site_path: Path, tmp_path: Path, new: str, code: int, status: str | None) -> None:
    site = demo_with(demo_site_path, tmp_path, ATS_LINE, new)
    out = run("check", "--site", str(site))
    assert out.returncode == code, out.stdout + out.stderr
    if status is None:
        assert "transfer_switches[0].mode" in out.stderr and "(site.yaml:" in out.stderr
        return
    line = next(x for x in out.stdout.splitlines() if x.startswith("switch-over mode and time"))
    assert status in line and "第六条5" in line


@pytest.mark.parametrize(
    ("new", "code", "status"),
    [
        (
            "line_type: insulated_overhead, overhead_reason: river crossing, capacity_kw: 630, meter: meter-grid-b}",
            0,
            "PASS",
        ),
        ("line_type: insulated_overhead, capacity_kw: 630, meter: meter-grid-b}", 0, "WARN"),
        ("line_type: overhead, capacity_kw: 630, meter: meter-grid-b}", 1, "FAIL"),
    ],
)
def test_line_type_exit_codes(demo_site_path: Path, tmp_path: Path, new: str, code: int, status: str) -> None:
    site = demo_with(demo_site_path, tmp_path, "line_type: cable, capacity_kw: 630, meter: meter-grid-b}", new)
    out = run("check", "--site", str(site))
    assert out.returncode == code, out.stdout + out.stderr
    line = next(x for x in out.stdout.splitlines() if x.startswith("line type per voltage"))
    assert status in line and "第七条" in line


def test_an_alarms_block_shows_in_the_effective_table(demo_site_path: Path, tmp_path: Path) -> None:
    text = demo_site_path.read_text(encoding="utf-8").rstrip("\n")
    site = tmp_path / "tuned.yaml"
    site.write_text(text + "\n\nalarms:\n  ac_too_cold: {on_delay_s: 0, severity: warning}\n", encoding="utf-8")
    out = run("check", "--site", str(site))
    assert out.returncode == 0, out.stderr
    row = next(x for x in out.stdout.splitlines() if x.startswith("ac_too_cold *"))
    assert row.split() == ["ac_too_cold", "*", "0", "60", "0.5", "warning", "yes"]
    default = next(x for x in out.stdout.splitlines() if x.startswith("grid_lost "))
    assert default.split() == ["grid_lost", "0", "60", "0", "critical", "yes"]
    data = json.loads(run("check", "--site", str(site), "--json").stdout)
    alarms = {a["type"]: a for a in data["alarms"]}
    assert alarms["ac_too_cold"]["on_delay_s"] == 0 and alarms["ac_too_cold"]["from"] == "site file"
    assert alarms["lit_empty_room"]["from"] == "default"
    assert data["status"] == "PASS" and all("article" in r for r in data["rules"])


def test_a_bad_alarms_block_exits_2_naming_the_line(demo_site_path: Path, tmp_path: Path) -> None:
    text = demo_site_path.read_text(encoding="utf-8").rstrip("\n")
    site = tmp_path / "bad.yaml"
    site.write_text(text + "\n\nalarms:\n  ac_too_cold:\n    on_dealy_s: 0\n", encoding="utf-8")
    line = len(site.read_text(encoding="utf-8").splitlines())
    out = run("check", "--site", str(site))
    assert out.returncode == 2
    assert f"  alarms.ac_too_cold.on_dealy_s: unknown key (bad.yaml:{line})" in out.stderr.splitlines()
    assert out.stdout == ""


@pytest.mark.parametrize("columns", [80, 120])
def test_check_fits_the_terminal(demo_site_path: Path, columns: int) -> None:
    out = run("check", "--site", str(demo_site_path), columns=columns)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert max(cell_len(x) for x in lines) <= columns
    assert lines[1].split()[:3] == ["rule", "status", "article"]
    assert "第八条4" in out.stdout
