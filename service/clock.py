"""The one injectable clock: the service reads time here; pure code takes `now` as an argument."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """A source of the current time."""

    def now(self) -> datetime:
        """The current time, timezone-aware, in UTC."""
        ...


class SystemClock:
    """The wall clock."""

    def now(self) -> datetime:
        """The current time, timezone-aware, in UTC."""
        return datetime.now(UTC)


class ManualClock:
    """A clock that moves only when told to (tests, replays, simulations)."""

    def __init__(self, start: datetime) -> None:
        self._now = _aware_utc(start)

    def now(self) -> datetime:
        """The time last set, in UTC."""
        return self._now

    def set(self, t: datetime) -> None:
        """Jump to `t` (timezone-aware)."""
        self._now = _aware_utc(t)

    def advance(self, seconds: float) -> datetime:
        """Move forward by `seconds` and return the new time."""
        if seconds < 0:
            raise ValueError("a clock does not run backwards")
        self._now += timedelta(seconds=seconds)
        return self._now


def _aware_utc(t: datetime) -> datetime:
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError("the clock needs a timezone-aware datetime")
    return t.astimezone(UTC)
