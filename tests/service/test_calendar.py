"""Working calendar: working moments and sweep times across holidays, make-up days, midnight,
month ends and DST changes."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from service.config.calendar import WorkCalendar
from service.config.site import Calendar

SHANGHAI = ZoneInfo("Asia/Shanghai")
BERLIN = ZoneInfo("Europe/Berlin")
WEEKDAYS = dict.fromkeys(("mon", "tue", "wed", "thu", "fri"), "08:30-17:30")

# The demo site's calendar: 2026-10-01..07 national holiday, Saturday 2026-10-10 a make-up workday.
DEMO = WorkCalendar(
    Calendar(
        working_hours=WEEKDAYS,
        holidays=[date(2026, 10, d) for d in range(1, 8)] + [date(2026, 4, 4), date(2026, 4, 6)],
        workdays=[date(2026, 10, 10)],
        sweeps=["18:30", "20:00", "22:00"],
    ),
    "Asia/Shanghai",
)


def local(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0, tz: ZoneInfo = SHANGHAI) -> datetime:
    """A site-local wall-clock time."""
    return datetime(y, mo, d, h, mi, s, tzinfo=tz)


@pytest.mark.parametrize(
    ("moment", "working"),
    [
        (local(2026, 3, 2, 8, 29, 59), False),  # Monday, just before
        (local(2026, 3, 2, 8, 30), True),
        (local(2026, 3, 2, 17, 29, 59), True),
        (local(2026, 3, 2, 17, 30), False),  # the end is not working
        (local(2026, 3, 2, 0, 0), False),  # midnight
        (local(2026, 3, 1, 23, 59, 59), False),
        (local(2026, 3, 7, 10, 0), False),  # Saturday
        (local(2026, 3, 31, 17, 0), True),  # month end, Tuesday
        (local(2026, 4, 3, 10, 0), True),  # Friday before the holiday
        (local(2026, 4, 6, 10, 0), False),  # Monday holiday
        (local(2026, 9, 30, 17, 29), True),
        (local(2026, 10, 1, 10, 0), False),  # national day
        (local(2026, 10, 7, 10, 0), False),
        (local(2026, 10, 8, 10, 0), True),
        (local(2026, 10, 10, 10, 0), True),  # make-up Saturday: Monday's hours
        (local(2026, 10, 10, 8, 29), False),
        (local(2026, 10, 11, 10, 0), False),  # the Sunday after stays off
        (local(2026, 12, 31, 17, 29), True),  # year end
        (local(2027, 1, 1, 0, 0), False),
        (datetime(2026, 3, 2, 0, 30, tzinfo=UTC), True),  # 08:30 in Shanghai, given in UTC
        (datetime(2026, 3, 2, 9, 30, tzinfo=UTC), False),  # 17:30 in Shanghai
    ],
)
def test_is_working(moment: datetime, working: bool) -> None:
    assert DEMO.is_working(moment) is working


@pytest.mark.parametrize(
    ("after", "sweep"),
    [
        (local(2026, 3, 2, 10, 0), local(2026, 3, 2, 18, 30)),
        (local(2026, 3, 2, 18, 29, 59), local(2026, 3, 2, 18, 30)),
        (local(2026, 3, 2, 18, 30), local(2026, 3, 2, 20, 0)),  # strictly after
        (local(2026, 3, 2, 22, 0), local(2026, 3, 3, 18, 30)),  # past midnight
        (local(2026, 3, 31, 23, 59), local(2026, 4, 1, 18, 30)),  # month end
        (local(2026, 12, 31, 22, 0), local(2027, 1, 1, 18, 30)),  # year end
        (local(2026, 3, 7, 3, 0), local(2026, 3, 7, 18, 30)),  # weekends are swept too
        (local(2026, 10, 1, 19, 0), local(2026, 10, 1, 20, 0)),  # holidays too
    ],
)
def test_next_sweep(after: datetime, sweep: datetime) -> None:
    got = DEMO.next_sweep(after)
    assert got == sweep
    assert got is not None
    assert got.tzinfo is UTC


def test_sweeps_skip_working_moments_on_make_up_days() -> None:
    cal = WorkCalendar(
        Calendar(
            working_hours=WEEKDAYS, workdays=[date(2026, 10, 10)], makeup_hours="08:30-19:00", sweeps=["18:30", "20:00"]
        ),
        SHANGHAI,
    )
    assert cal.next_sweep(local(2026, 10, 10, 12, 0)) == local(2026, 10, 10, 20, 0)
    assert cal.next_sweep(local(2026, 10, 9, 12, 0)) == local(2026, 10, 9, 18, 30)


def test_sweep_found_only_on_a_holiday_far_ahead() -> None:
    always = dict.fromkeys(("mon", "tue", "wed", "thu", "fri", "sat", "sun"), "00:00-24:00")
    cal = WorkCalendar(Calendar(working_hours=always, holidays=[date(2026, 10, 1)], sweeps=["12:00"]), SHANGHAI)
    assert cal.next_sweep(local(2026, 3, 2)) == local(2026, 10, 1, 12, 0)
    assert cal.next_sweep(local(2026, 10, 1, 12, 0)) is None
    assert WorkCalendar(Calendar(working_hours=WEEKDAYS), SHANGHAI).next_sweep(local(2026, 3, 2)) is None


def test_sweep_after_a_make_up_day_takes_the_only_weekly_sweep() -> None:
    six_days = dict.fromkeys(("mon", "tue", "wed", "thu", "fri", "sat"), "00:00-24:00")
    # Sundays are the only sweeps; Sunday 2026-10-11 is a make-up day worked around the clock.
    cal = WorkCalendar(
        Calendar(working_hours=six_days, workdays=[date(2026, 10, 11)], makeup_hours="00:00-24:00", sweeps=["12:00"]),
        SHANGHAI,
    )
    assert cal.next_sweep(local(2026, 10, 5)) == local(2026, 10, 18, 12, 0)


@pytest.mark.parametrize(
    ("moment", "working"),
    [
        (local(2026, 10, 10, 9, 0), True),  # Monday's hours 09:00-12:00
        (local(2026, 10, 10, 13, 0), False),  # not Tuesday's
    ],
)
def test_make_up_day_uses_mondays_hours(moment: datetime, working: bool) -> None:
    cal = WorkCalendar(
        Calendar(working_hours={"mon": "09:00-12:00", "tue": "08:00-17:00"}, workdays=[date(2026, 10, 10)]), SHANGHAI
    )
    assert cal.is_working(moment) is working


@pytest.mark.parametrize(
    ("moment", "working"),
    [
        (local(2026, 10, 10, 21, 59), False),
        (local(2026, 10, 10, 22, 0), True),
        (local(2026, 10, 11, 1, 59), True),  # a make-up night shift runs past midnight
        (local(2026, 10, 11, 2, 0), False),
    ],
)
def test_make_up_hours_past_midnight(moment: datetime, working: bool) -> None:
    cal = WorkCalendar(Calendar(workdays=[date(2026, 10, 10)], makeup_hours="22:00-02:00"), SHANGHAI)
    assert cal.is_working(moment) is working


def test_several_spans_a_day() -> None:
    cal = WorkCalendar(Calendar(working_hours={"mon": "08:30-12:00,13:30-17:30"}), SHANGHAI)
    assert [cal.is_working(local(2026, 3, 2, h, m)) for h, m in ((11, 59), (12, 0), (13, 29), (13, 30))] == [
        True,
        False,
        False,
        True,
    ]


# -- DST (Europe/Berlin: 2026-03-29 02:00 -> 03:00, 2026-10-25 03:00 -> 02:00) ----------------------

ALL_WEEK = dict.fromkeys(("mon", "tue", "wed", "thu", "fri", "sat", "sun"), "08:00-17:00")


@pytest.mark.parametrize(
    ("utc", "working"),
    [
        (datetime(2026, 3, 28, 6, 59, tzinfo=UTC), False),  # 07:59 CET
        (datetime(2026, 3, 28, 7, 0, tzinfo=UTC), True),  # 08:00 CET
        (datetime(2026, 3, 29, 5, 59, tzinfo=UTC), False),  # 07:59 CEST
        (datetime(2026, 3, 29, 6, 0, tzinfo=UTC), True),  # 08:00 CEST
        (datetime(2026, 10, 25, 6, 0, tzinfo=UTC), False),  # 07:00 CET after the fall-back
        (datetime(2026, 10, 25, 7, 0, tzinfo=UTC), True),
        (datetime(2026, 10, 25, 15, 59, tzinfo=UTC), True),  # 16:59 CET
        (datetime(2026, 10, 25, 16, 0, tzinfo=UTC), False),
    ],
)
def test_working_hours_follow_dst(utc: datetime, working: bool) -> None:
    cal = WorkCalendar(Calendar(working_hours=ALL_WEEK), BERLIN)
    assert cal.is_working(utc) is working


@pytest.mark.parametrize(("day", "hours"), [(date(2026, 3, 29), 23), (date(2026, 10, 25), 25), (date(2026, 3, 30), 24)])
def test_a_whole_day_lasts_as_long_as_the_clock_says(day: date, hours: int) -> None:
    cal = WorkCalendar(Calendar(working_hours=dict.fromkeys(ALL_WEEK, "00:00-24:00")), BERLIN)
    ((start, end),) = cal.working_intervals(day)
    assert end - start == timedelta(hours=hours)


def test_sweeps_across_dst_changes() -> None:
    cal = WorkCalendar(Calendar(sweeps=["02:30"]), BERLIN)
    # 02:30 does not exist on 2026-03-29: the sweep runs just after the gap, at 03:30 CEST.
    assert cal.next_sweep(datetime(2026, 3, 28, 12, 0, tzinfo=UTC)) == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    # 02:30 happens twice on 2026-10-25: the sweep runs once, at the first.
    first = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    assert cal.next_sweep(datetime(2026, 10, 24, 12, 0, tzinfo=UTC)) == first
    assert cal.next_sweep(first) == datetime(2026, 10, 26, 1, 30, tzinfo=UTC)


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        DEMO.is_working(datetime(2026, 3, 2, 10, 0))
