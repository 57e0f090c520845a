"""The working calendar: working hours per weekday, holidays, make-up workdays, sweep times. Pure.

Hours are site-local wall-clock times. A wall time that a DST change skips maps to the instant
just after the gap (02:30 on a spring-forward night is 03:30 summer time); a wall time that
happens twice means its first occurrence. Every datetime this module returns is in UTC, because
aware datetimes that share a tzinfo compare by wall time and get DST folds wrong.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from service.config.site import Calendar, parse_hhmm, parse_span

_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WEEK = 7


def _spans(text: str | None) -> tuple[tuple[int, int], ...]:
    return tuple(parse_span(part) for part in text.split(",")) if text else ()


class WorkCalendar:
    """Answers "is this a working moment?" and "when is the next after-hours sweep?" for one site."""

    def __init__(self, calendar: Calendar, tz: ZoneInfo | str) -> None:
        self.tz = tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz)
        weekly = {str(day): text for day, text in calendar.working_hours.items()}
        self._weekly = [_spans(weekly.get(day)) for day in _WEEKDAYS]
        self._makeup = _spans(calendar.makeup_hours) if calendar.makeup_hours else self._weekly[0]
        self._holidays = frozenset(calendar.holidays)
        self._workdays = frozenset(calendar.workdays)
        self._sweeps = sorted({parse_hhmm(t) for t in calendar.sweeps})
        self._last_exception = max(self._holidays | self._workdays, default=None)

    def hours(self, day: date) -> tuple[tuple[int, int], ...]:
        """Working spans of a local date in minutes after midnight (end < start: runs past midnight)."""
        if day in self._holidays:
            return ()
        if day in self._workdays:
            return self._makeup  # make-up workday: makeup_hours, or Monday's hours
        return self._weekly[day.weekday()]

    def working_intervals(self, day: date) -> list[tuple[datetime, datetime]]:
        """The working intervals that start on a local date, as UTC [start, end)."""
        out = []
        for start, end in self.hours(day):
            until = end if end > start else end + 24 * 60
            out.append((self._instant(day, start), self._instant(day, until)))
        return out

    def is_working(self, t: datetime) -> bool:
        """Whether `t` (timezone-aware) falls inside working hours."""
        at = _utc(t)
        local_day = at.astimezone(self.tz).date()
        return any(
            start <= at < end
            for day in (local_day - timedelta(days=1), local_day)
            for start, end in self.working_intervals(day)
        )

    def next_sweep(self, after: datetime) -> datetime | None:
        """The first sweep time strictly after `after` that is outside working hours (UTC), or None."""
        if not self._sweeps:
            return None
        at = _utc(after)
        first = at.astimezone(self.tz).date() - timedelta(days=1)
        # After the last holiday or make-up day the weekly pattern repeats: one more week tells.
        last = max(first, self._last_exception or first) + timedelta(days=_WEEK + 1)
        day = first
        while day <= last:
            for minute in self._sweeps:
                moment = self._instant(day, minute)
                if moment > at and not self.is_working(moment):
                    return moment
            day += timedelta(days=1)
        return None

    def _instant(self, day: date, minute: int) -> datetime:
        wall = datetime.combine(day, time(), tzinfo=self.tz) + timedelta(minutes=minute)
        return wall.astimezone(UTC)


def _utc(t: datetime) -> datetime:
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError("the calendar needs timezone-aware datetimes")
    return t.astimezone(UTC)
