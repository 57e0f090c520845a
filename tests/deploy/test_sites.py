"""deploy/sites/production.example.yaml: a production site file that loads and passes compliance."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from service.compliance import check_site
from service.site import load_site

SITES = Path(__file__).resolve().parents[2] / "deploy" / "sites"
EXAMPLE = SITES / "production.example.yaml"


def test_production_example_loads() -> None:
    site = load_site(EXAMPLE)
    assert site.site.grade == "first"
    assert site.tariff is not None and site.calendar.working_hours
    assert {d.driver for d in site.devices} == {"modbus", "mqtt"}
    assert all(s.capacity_kw for s in site.sources) and site.site.peak_load_kw


def test_production_example_passes_compliance() -> None:
    report = check_site(load_site(EXAMPLE))
    assert report.status == "PASS", [(r.rule, r.status, r.detail) for r in report.rules if r.status != "PASS"]


def test_wattkeeper_check_exits_0_for_it() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "service", "check", "--site", str(EXAMPLE)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "overall PASS" in done.stdout
