"""hazard_overdue as a pure function of (hazards, now), and due dates in site time."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from service.alarms.hazards import due_time, overdue_findings
from service.alarms.record import Severity
from service.alarms.rules import AlarmType
from service.config.site import load_site
from service.store.db import Hazard
from tests.conftest import DEMO_SITE

TZ = ZoneInfo("Asia/Shanghai")
DUE = datetime(2026, 4, 10, 16, 0, tzinfo=UTC)  # the end of 2026-04-10, site time
OPEN = Hazard(
    id=7, title="配电室门锁损坏", location="B1", department="admin", severity="high", due=DUE, status="open",
    rectification="", source_alarm=None, created_by="key:op", created_at=DUE - timedelta(days=8),
    updated_at=DUE - timedelta(days=8), closed_by=None, closed_at=None,
)  # fmt: skip


@pytest.mark.parametrize(
    ("change", "now", "active", "severity"),
    [
        ({}, DUE - timedelta(seconds=1), False, Severity.high),
        ({}, DUE, True, Severity.high),  # at the due time
        ({"status": "rectifying"}, DUE + timedelta(days=1), True, Severity.high),  # being fixed is not fixed
        ({"status": "closed"}, DUE + timedelta(days=1), False, Severity.high),
        ({"severity": "low"}, DUE, True, Severity.warning),  # an overdue hazard is at least a warning
        ({"severity": "critical"}, DUE, True, Severity.critical),
    ],
)
def test_overdue(change: dict[str, str], now: datetime, active: bool, severity: Severity) -> None:
    [f] = overdue_findings([replace(OPEN, **change)], now, TZ)  # type: ignore[arg-type]
    assert (f.type, f.subject, f.active, f.severity) == (AlarmType.hazard_overdue, "7", active, severity)
    if active:
        assert "2026-04-11T00:00+08:00" in f.message


def test_a_due_date_is_the_end_of_that_day_in_site_time() -> None:
    site = load_site(DEMO_SITE)
    assert due_time(date(2026, 4, 10), site) == DUE
    assert due_time(datetime(2026, 4, 10, 18, 0), site) == datetime(2026, 4, 10, 18, 0, tzinfo=TZ)
    assert due_time(DUE, site) == DUE
