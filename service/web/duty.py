"""What the dashboard's duty features read: data freshness per panel, trend series, the energy explorer.

Pure functions of the site, the live state's device views, stored rows and `now`; the routes in
service.api.routes.duty do the I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Final, Literal
from zoneinfo import ZoneInfo

from service.config.site import Site
from service.energy.reports import ROLLUP_RETENTION
from service.live.state import DeviceView
from service.store.db import EnergyInterval

STALE_FACTOR: Final = 3  # data older than this many poll periods is stale

TrendKind = Literal["room", "source", "generator", "department"]
TrendRange = Literal["24h", "7d", "30d", "12m"]
# range -> (length, bucket): at most ~1,500 points a series, whatever the range.
RANGES: Final[dict[str, tuple[timedelta, timedelta]]] = {
    "24h": (timedelta(hours=24), timedelta(minutes=1)),
    "7d": (timedelta(days=7), timedelta(minutes=15)),
    "30d": (timedelta(days=30), timedelta(hours=1)),
    "12m": (timedelta(days=365), timedelta(days=1)),
}


# -- freshness ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Freshness:
    """Whether a panel's polled devices have reported within STALE_FACTOR poll periods."""

    stale: bool
    last: datetime | None  # the oldest newest-reading among its stale devices (None: never read)
    devices: tuple[str, ...]  # the stale ones


def supply_devices(site: Site) -> list[str]:
    """The devices the supply panel shows: source and generator meters, generator and switch controllers."""
    ids = [s.meter for s in site.sources]
    ids += [x for g in site.generators for x in (g.device, g.meter)]
    ids += [t.device for t in site.transfer_switches]
    return list(dict.fromkeys(i for i in ids if i))


def freshness(site: Site, devices: Iterable[DeviceView], watched: Sequence[str], now: datetime) -> Freshness:
    """Stale when a polled (Modbus) device among `watched` has not been seen for STALE_FACTOR x poll_s.

    Devices that report on change (MQTT) have no period to miss, so they never make a panel stale.
    """
    polled = {d.id: d.poll_s for d in site.devices if d.driver == "modbus" and d.id in set(watched)}
    stale: list[tuple[str, datetime | None]] = []
    for view in devices:
        period = polled.get(view.id)
        if period is None:
            continue
        seen = view.last_seen
        if seen is None or (now - seen).total_seconds() > STALE_FACTOR * period:
            stale.append((view.id, seen))
    if not stale:
        return Freshness(False, None, ())
    times = [s for _, s in stale if s is not None]
    return Freshness(True, min(times) if times else None, tuple(d for d, _ in stale))


# -- trends ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SeriesSpec:
    """One line of a trend: a device point, scaled (W -> kW) and labelled with an i18n key."""

    device: str
    point: str
    label: str  # i18n key
    scale: float = 1.0
    unit: str = ""

    @property
    def metered_power(self) -> bool:
        """A meter's power: its 15-minute energy intervals, kept past the rollups, can draw it."""
        return self.point == "power"


@dataclass(frozen=True, slots=True)
class TrendSpec:
    """What a trend of one thing draws."""

    title: str
    unit: str
    series: tuple[SeriesSpec, ...]


def trend_spec(site: Site, kind: str, subject: str) -> TrendSpec:
    """The series of a room (temperature, setpoint), a source (voltage, kW), a generator (kW) or a
    department (kW); ValueError naming the field when the subject is unknown or has no meter."""
    if kind == "room":
        room = next((r for r in site.rooms if r.id == subject), None)
        if room is None:
            raise ValueError(f"id: no room '{subject}' in this site")
        acs = [d for d in room.devices if site.device(d).profile == "z2m-thermostat"]
        series: list[SeriesSpec] = []
        for ac in acs:
            series.append(SeriesSpec(ac, "local_temperature", "trend.temperature", unit="°C"))
            series.append(SeriesSpec(ac, "cooling_setpoint", "trend.setpoint", unit="°C"))
        if not series:
            raise ValueError(f"id: room '{subject}' has no thermostat to chart")
        return TrendSpec(room.name, "°C", tuple(series))
    if kind == "source":
        src = next((s for s in site.sources if s.id == subject), None)
        if src is None or not src.meter:
            raise ValueError(f"id: no metered source '{subject}' in this site")
        return TrendSpec(
            src.id,
            "kW",
            (
                SeriesSpec(src.meter, "power", "trend.power_kw", 0.001, "kW"),
                SeriesSpec(src.meter, "voltage_l1", "trend.voltage", unit="V"),
            ),
        )
    if kind == "generator":
        gen = next((g for g in site.generators if g.id == subject), None)
        if gen is None or not gen.meter:
            raise ValueError(f"id: no metered generator '{subject}' in this site")
        return TrendSpec(gen.id, "kW", (SeriesSpec(gen.meter, "power", "trend.power_kw", 0.001, "kW"),))
    if kind == "department":
        dept = next((d for d in site.departments if d.id == subject), None)
        if dept is None or not dept.meter:
            raise ValueError(f"id: no metered department '{subject}' in this site")
        return TrendSpec(dept.name, "kW", (SeriesSpec(dept.meter, "power", "trend.power_kw", 0.001, "kW"),))
    raise ValueError(f"kind: '{kind}' is not one of room, source, generator, department")


def trend_window(now: datetime, span: str) -> tuple[datetime, datetime, timedelta]:
    """[start, end) and the bucket of a range, ending at the current minute."""
    if span not in RANGES:
        raise ValueError(f"range: '{span}' is not one of {', '.join(RANGES)}")
    length, every = RANGES[span]
    end = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    return end - length, end, every


def beyond_rollups(start: datetime, now: datetime) -> bool:
    """The window reaches further back than the store keeps 1-minute rollups (ROLLUP_RETENTION)."""
    return start < now - ROLLUP_RETENTION


def mean_kw(intervals: Iterable[EnergyInterval], start: datetime, every: timedelta) -> dict[int, float]:
    """Mean kW per bucket of `every` from `start` out of 15-minute energy intervals (kWh / hours of the
    bucket covered by intervals): a power trend beyond the rollups' retention (the 12-month range)."""
    kwh: dict[int, float] = {}
    hours: dict[int, float] = {}
    for it in intervals:
        bucket = start + (it.start - start) // every * every
        ts = int(bucket.timestamp())
        kwh[ts] = kwh.get(ts, 0.0) + it.kwh
        hours[ts] = hours.get(ts, 0.0) + 0.25
    return {ts: round(kwh[ts] / hours[ts], 3) for ts in kwh}


# -- energy explorer ---------------------------------------------------------------------------

Period = Literal["day", "week", "month", "year"]
PERIODS: Final = ("day", "week", "month", "quarter", "year")


@dataclass(slots=True)
class Explorer:
    """Stacked kWh bars for one department (or all) by tariff band over one period, and its comparisons."""

    period: str
    labels: list[str] = field(default_factory=list)  # one per bar
    starts: list[datetime] = field(default_factory=list)
    bands: dict[str, list[float]] = field(default_factory=dict)  # band -> kWh per bar
    total_kwh: float = 0.0
    total_cost: float = 0.0
    previous_kwh: float = 0.0  # the period before, for month-over-month (or day/week/year-over)
    top_rooms: list[tuple[str, float]] = field(default_factory=list)  # (room name, kWh)


def _month_start(d: date) -> date:
    return d.replace(day=1)


def _add_months(d: date, n: int) -> date:
    m = d.month - 1 + n
    return date(d.year + m // 12, m % 12 + 1, 1)


def explorer_window(period: str, anchor: date) -> tuple[date, date, date, Literal["hour", "day", "month"]]:
    """(start, end, previous start, bar size) of the period holding `anchor`, in site dates."""
    if period == "day":
        return anchor, anchor + timedelta(days=1), anchor - timedelta(days=1), "hour"
    if period == "week":
        start = anchor - timedelta(days=anchor.weekday())
        return start, start + timedelta(days=7), start - timedelta(days=7), "day"
    if period == "month":
        start = _month_start(anchor)
        return start, _add_months(start, 1), _add_months(start, -1), "day"
    if period == "quarter":
        start = date(anchor.year, (anchor.month - 1) // 3 * 3 + 1, 1)
        return start, _add_months(start, 3), _add_months(start, -3), "day"
    if period == "year":
        start = date(anchor.year, 1, 1)
        return start, date(anchor.year + 1, 1, 1), date(anchor.year - 1, 1, 1), "month"
    raise ValueError(f"period: '{period}' is not one of {', '.join(PERIODS)}")


def local_midnight(d: date, tz: ZoneInfo) -> datetime:
    """A site date's first instant."""
    return datetime.combine(d, time(), tzinfo=tz)


def explorer(
    site: Site,
    period: str,
    anchor: date,
    intervals: Iterable[EnergyInterval],
    previous_kwh: float,
    room_kwh: Iterable[tuple[str, float]],
    top: int = 5,
) -> Explorer:
    """Bars of the period's intervals (already filtered by department) by band."""
    tz = site.site.tz
    start, end, _, size = explorer_window(period, anchor)
    bars: list[datetime] = []
    if size == "hour":
        bars = [local_midnight(start, tz) + timedelta(hours=h) for h in range(24)]
        labels = [f"{h:02d}" for h in range(24)]
    elif size == "day":
        days = (end - start).days
        bars = [local_midnight(start + timedelta(days=i), tz) for i in range(days)]
        labels = [(start + timedelta(days=i)).strftime("%m-%d") for i in range(days)]
    else:
        bars = [local_midnight(_add_months(start, i), tz) for i in range(12)]
        labels = [f"{i + 1:02d}" for i in range(12)]
    names = [b.name for b in site.tariff.bands] if site.tariff else []
    out = Explorer(period, labels, bars, {b: [0.0] * len(bars) for b in names})
    for it in intervals:
        local = it.start.astimezone(tz)
        if size == "hour":
            i = local.hour
        elif size == "day":
            i = (local.date() - start).days
        else:
            i = local.month - 1
        if not 0 <= i < len(bars):
            continue
        out.bands.setdefault(it.band, [0.0] * len(bars))[i] += it.kwh
        out.total_kwh += it.kwh
        out.total_cost += it.cost
    out.previous_kwh = previous_kwh
    out.top_rooms = sorted(room_kwh, key=lambda r: -r[1])[:top]
    return out
