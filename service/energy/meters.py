"""Energy arithmetic for reports: 15-minute intervals from counters, time-of-use bands, cost. Pure.

Counters go through drivers.energy.EnergyCounter, so the service and the drivers agree on what a
counter step is worth: a drop (meter replaced, counter rolled over) restarts from the new value,
and a step above the meter's rated power x elapsed time is refused; both count as 0 kWh. The
energy between two counter readings is spread evenly over the time between them and split at
quarter-hour boundaries (UTC quarter hours are local quarter hours in every zone in use).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from drivers.energy import ENERGY_UNITS, EnergyCounter
from service.config.calendar import WorkCalendar
from service.config.site import Tariff

INTERVAL = timedelta(minutes=15)
_INTERVAL_S = INTERVAL.total_seconds()


@dataclass(frozen=True, slots=True)
class EnergyInterval:
    """Energy of one meter in the quarter hour from `start` (UTC)."""

    meter: str
    start: datetime
    kwh: float
    covered_s: float = _INTERVAL_S  # how much of the quarter hour the readings span

    @property
    def complete(self) -> bool:
        """Whether readings span the whole quarter hour (not the first or last one of a series)."""
        return self.covered_s >= _INTERVAL_S


@dataclass(frozen=True, slots=True)
class PricedEnergy:
    """The part of one interval in one tariff band: one `energy` line of service.telemetry.measurements."""

    meter: str
    start: datetime
    band: str
    kwh: float
    cost: float
    after_hours: bool


def quarter_of(t: datetime) -> datetime:
    """The start (UTC) of the quarter hour holding `t`."""
    at = _utc(t)
    return at.replace(minute=at.minute - at.minute % 15, second=0, microsecond=0)


def split_15m(start: datetime, end: datetime, kwh: float) -> list[tuple[datetime, float, float]]:
    """Spread `kwh` used from `start` to `end` over quarter hours: (quarter start, kWh, seconds)."""
    a, b = _utc(start), _utc(end)
    if b < a:
        raise ValueError("end before start")
    total = (b - a).total_seconds()
    if total == 0:
        return [(quarter_of(b), kwh, 0.0)]
    out = []
    q = quarter_of(a)
    t = a
    while t < b:
        nxt = min(q + INTERVAL, b)
        seconds = (nxt - t).total_seconds()
        out.append((q, kwh * seconds / total, seconds))
        t, q = nxt, q + INTERVAL
    return out


class CounterTracker:
    """Quarter-hour energy of one meter, fed its energy-counter readings in time order."""

    def __init__(
        self, meter: str, *, unit: str = "kWh", rated_kw: float | None = None, resolution: float = 0.0
    ) -> None:
        if unit not in ENERGY_UNITS:
            raise ValueError(f"'{unit}' is not an energy unit ({', '.join(ENERGY_UNITS)})")
        self.meter = meter
        self._unit = unit
        self._per_kwh = ENERGY_UNITS[unit]
        self._counter = EnergyCounter.for_unit(unit, rated_kw, resolution)
        self._last: datetime | None = None
        self._open: dict[datetime, tuple[float, float]] = {}  # quarter start -> (kWh, seconds covered)

    @property
    def resets(self) -> int:
        """Counter drops seen (meter replaced or rolled over)."""
        return self._counter.resets

    @property
    def rejected(self) -> int:
        """Steps refused as above rated power."""
        return self._counter.rejected

    def add(self, ts: datetime, value: float) -> list[EnergyInterval]:
        """Take a counter reading; return the quarter hours it completes."""
        at = _utc(ts)
        if self._last is not None and at <= self._last:
            return []  # a replayed or late reading adds nothing
        step = self._counter.update(value, at.timestamp())
        if self._last is not None:
            for q, kwh, seconds in split_15m(self._last, at, step.delta / self._per_kwh):
                had_kwh, had_s = self._open.get(q, (0.0, 0.0))
                self._open[q] = (had_kwh + kwh, had_s + seconds)
        self._last = at
        return self._take(lambda q: q + INTERVAL <= at)

    def flush(self) -> list[EnergyInterval]:
        """Every quarter hour not yet returned, the unfinished last one included."""
        return self._take(lambda q: True)

    def checkpoint(self) -> dict[str, Any] | None:
        """What a restarted service needs to go on counting: the last counter value and its time,
        and the kWh of every quarter hour not yet complete. None before the first reading."""
        last_value = self._counter.last_value
        if self._last is None or last_value is None:
            return None
        return {
            "unit": self._unit,
            "value": last_value,
            "at": self._last.isoformat(),
            "open": {q.isoformat(): [kwh, seconds] for q, (kwh, seconds) in sorted(self._open.items())},
        }

    def resume(self, checkpoint: Mapping[str, Any], now: datetime) -> bool:
        """Go on from a checkpoint written before a restart, unless this tracker is already further.

        The counter's next reading then steps from the checkpointed value, so the energy used
        while the service was away is counted (spread evenly over the gap, as for a device that
        was unreachable), and the quarter hours open at the checkpoint are completed with what
        they had, rather than written again with only the part after the restart.
        Raises ValueError for a checkpoint of another unit, one that does not parse, or one later
        than `now` (a clock set back since: readings before it would all be taken as replays).
        """
        if checkpoint.get("unit") != self._unit:
            raise ValueError(f"checkpoint in {checkpoint.get('unit')!r}, the meter counts in {self._unit!r}")
        value = float(checkpoint["value"])
        at = _utc(datetime.fromisoformat(checkpoint["at"]))
        opened = {
            _utc(datetime.fromisoformat(q)): (float(kwh), float(seconds))
            for q, (kwh, seconds) in dict(checkpoint["open"]).items()
        }
        if not math.isfinite(value) or any(not math.isfinite(k) or k < 0 for k, _ in opened.values()):
            raise ValueError("checkpoint holds a value that is not a finite energy")
        if at > _utc(now):
            raise ValueError(f"checkpoint at {at.isoformat()} is later than now ({_utc(now).isoformat()})")
        if self._last is not None and self._last > at:
            return False
        self._counter.last_value, self._counter.last_s, self._counter.last_source_s = value, at.timestamp(), None
        self._last = at
        for q, (kwh, seconds) in opened.items():
            if q not in self._open:  # a quarter this tracker still holds is already the fuller one
                self._open[q] = (kwh, seconds)
        return True

    def _take(self, done: Callable[[datetime], bool]) -> list[EnergyInterval]:
        ready = sorted(q for q in self._open if done(q))
        return [EnergyInterval(self.meter, q, *self._open.pop(q)) for q in ready]


def intervals_15m(
    meter: str, samples: Iterable[tuple[datetime, float]], *, unit: str = "kWh", rated_kw: float | None = None
) -> list[EnergyInterval]:
    """Quarter-hour energy of one meter from (time, counter value) samples in any order."""
    tracker = CounterTracker(meter, unit=unit, rated_kw=rated_kw)
    out = []
    for ts, value in sorted(samples, key=lambda s: _utc(s[0])):
        out += tracker.add(ts, value)
    return out + tracker.flush()


_band_tables: dict[tuple[tuple[str, tuple[str, ...]], ...], list[str]] = {}


def _band_table(tariff: Tariff) -> list[str]:
    # Monthly reports split thousands of intervals; build each tariff's minute table once.
    key = tuple((b.name, tuple(b.hours)) for b in tariff.bands)
    table = _band_tables.get(key)
    if table is None:
        table = _band_tables[key] = tariff.band_table()
    return table


def tou_split(
    interval_start: datetime, kwh: float, tariff: Tariff, tz: ZoneInfo, *, minutes: int = 15
) -> dict[str, float]:
    """Split `kwh` used evenly over `minutes` from `interval_start` into tariff bands by site-local time."""
    table = _band_table(tariff)
    start = _utc(interval_start)
    counts: dict[str, int] = {}
    for i in range(minutes):
        local = (start + timedelta(minutes=i)).astimezone(tz)
        band = table[local.hour * 60 + local.minute]
        counts[band] = counts.get(band, 0) + 1
    return {band: kwh * n / minutes for band, n in counts.items()}


def cost(kwh_by_band: Mapping[str, float], tariff: Tariff) -> float:
    """Cost of energy per band at the tariff's prices, in its currency."""
    return sum(kwh * tariff.price_of(band) for band, kwh in kwh_by_band.items())


def is_after_hours(interval_start: datetime, calendar: WorkCalendar, *, minutes: int = 15) -> bool:
    """Whether an interval is after hours: its midpoint is outside working hours."""
    return not calendar.is_working(_utc(interval_start) + timedelta(minutes=minutes / 2))


def price(interval: EnergyInterval, tariff: Tariff, calendar: WorkCalendar) -> list[PricedEnergy]:
    """An interval split into tariff bands with cost and the after-hours flag (site-local time)."""
    after = is_after_hours(interval.start, calendar)
    return [
        PricedEnergy(interval.meter, interval.start, band, kwh, kwh * tariff.price_of(band), after)
        for band, kwh in tou_split(interval.start, interval.kwh, tariff, calendar.tz).items()
    ]


def _utc(t: datetime) -> datetime:
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError("energy arithmetic needs timezone-aware datetimes")
    return t.astimezone(UTC)
