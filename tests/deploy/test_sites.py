"""deploy/sites/production.example.yaml: a production site file that loads and passes compliance."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from service.config.compliance import check_site
from service.config.site import load_site

SITES = Path(__file__).resolve().parents[2] / "deploy" / "sites"
EXAMPLE = SITES / "production.example.yaml"
# The example names its notification secrets as ${...}; an operator's environment holds them.
SECRETS = {"WATTKEEPER_DINGTALK_TOKEN": "0123456789abcdef", "WATTKEEPER_SMTP_PASSWORD": "fedcba9876543210"}


@pytest.fixture(autouse=True)
def _secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)


def test_production_example_loads() -> None:
    site = load_site(EXAMPLE)
    assert site.site.grade == "first"
    assert site.tariff is not None and site.calendar.working_hours
    assert {d.driver for d in site.devices} == {"modbus", "mqtt"}
    assert all(s.capacity_kw for s in site.sources) and site.site.peak_load_kw
    assert site.notifications.email is not None
    urls = [h.url for h in site.notifications.webhooks] + [site.notifications.email.url]
    assert all(secret in "".join(urls) for secret in SECRETS.values()), "secrets come from the environment"


def test_production_example_passes_compliance() -> None:
    report = check_site(load_site(EXAMPLE))
    assert report.status == "PASS", [(r.rule, r.status, r.detail) for r in report.rules if r.status != "PASS"]


def test_wattkeeper_check_exits_0_for_it() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "service", "check", "--site", str(EXAMPLE)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **SECRETS},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "overall PASS" in done.stdout
