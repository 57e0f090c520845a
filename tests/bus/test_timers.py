"""The alarm delays a core hands over with a site (service.alarms.engine timers / restore_timers)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from service.alarms.engine import AlarmEngine
from service.alarms.record import Severity
from service.alarms.rules import AlarmType, Finding

T0 = datetime(2026, 7, 15, 2, 0, tzinfo=UTC)


def offline(active: bool) -> Finding:
    return Finding(type=AlarmType.device_offline, subject="meter-grid-a", severity=Severity.high, active=active)


@pytest.mark.parametrize(
    ("handed_over", "raised_at_s"),
    [
        (True, 31),  # the new owner goes on with the 30 s on-delay begun by the old one
        (False, 50),  # without it the delay starts again when the new owner first sees the fault
    ],
)
def test_on_delay_goes_on_across_a_takeover(handed_over: bool, raised_at_s: int) -> None:
    old = AlarmEngine()
    assert old.update([offline(True)], T0) == []  # counting from T0
    new = AlarmEngine()
    if handed_over:
        assert new.restore_timers(old.timers()) == 1
    raised = None
    for s in (20, 31, 40, 50, 60):
        if new.update([offline(True)], T0 + timedelta(seconds=s)):
            raised = s
            break
    assert raised == raised_at_s


def test_timers_round_trip_and_a_running_delay_is_kept() -> None:
    old = AlarmEngine()
    old.update([offline(True)], T0)
    data = old.timers()
    assert data == {"on": [["device_offline", "meter-grid-a", T0.isoformat()]], "off": []}
    new = AlarmEngine()
    new.update([offline(True)], T0 + timedelta(seconds=5))
    assert new.restore_timers(data) == 0  # already counting: its own start is kept
    assert new.timers()["on"][0][2] == (T0 + timedelta(seconds=5)).isoformat()


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"on": "x"}, "timers.on is not a list"),
        ({"on": [["a", "b"]]}, r"timers.on\[0\]"),
        ({"off": [["a", "b", "yesterday"]]}, r"timers.off\[0\]"),
        ({"on": [["a", "b", "2026-07-15T02:00:00"]]}, "no timezone"),
    ],
)
def test_bad_timers_are_named(data: dict[str, object], needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        AlarmEngine().restore_timers(data)
