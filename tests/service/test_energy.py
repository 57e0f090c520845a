"""Energy arithmetic: quarter-hour intervals from counters, time-of-use split, cost, after-hours."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.energy import BEHIND_FRACTION, BEHIND_MAX_S
from service.config.calendar import WorkCalendar
from service.config.site import Calendar, Tariff, TariffBand
from service.energy.meters import (
    CounterTracker,
    EnergyInterval,
    PricedEnergy,
    cost,
    intervals_15m,
    is_after_hours,
    price,
    quarter_of,
    split_15m,
    tou_split,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
# Monday 2026-03-02 00:00 UTC = 08:00 in Shanghai
T0 = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
DEMO_TARIFF = Tariff(
    currency="CNY",
    bands=[
        TariffBand(name="peak", hours=["08:00-11:00", "18:00-21:00"], price=1.12),
        TariffBand(name="flat", hours=["07:00-08:00", "11:00-18:00", "21:00-23:00"], price=0.68),
        TariffBand(name="valley", hours=["23:00-07:00"], price=0.32),
    ],
)
CALENDAR = WorkCalendar(
    Calendar(
        working_hours=dict.fromkeys(("mon", "tue", "wed", "thu", "fri"), "08:30-17:30"),
        holidays=[date(2026, 10, 1)],
    ),
    SHANGHAI,
)


def at(minutes: float) -> datetime:
    """T0 plus minutes."""
    return T0 + timedelta(minutes=minutes)


def local(y: int, mo: int, d: int, h: int, mi: int = 0, tz: ZoneInfo = SHANGHAI) -> datetime:
    """A site-local wall-clock time."""
    return datetime(y, mo, d, h, mi, tzinfo=tz)


@pytest.mark.parametrize(
    ("t", "quarter"),
    [
        (at(0), at(0)),
        (at(14.99), at(0)),
        (at(15), at(15)),
        (at(59.5), at(45)),
        (local(2026, 3, 2, 8, 7), at(0)),  # local times come back in UTC
    ],
)
def test_quarter_of(t: datetime, quarter: datetime) -> None:
    assert quarter_of(t) == quarter


@pytest.mark.parametrize(
    ("start", "end", "kwh", "pieces"),
    [
        (at(-2), at(7), 0.9, [(at(-15), 0.2, 120.0), (at(0), 0.7, 420.0)]),
        (at(0), at(15), 1.5, [(at(0), 1.5, 900.0)]),  # ends on a boundary: nothing in the next quarter
        (at(0), at(45), 3.0, [(at(0), 1.0, 900.0), (at(15), 1.0, 900.0), (at(30), 1.0, 900.0)]),
        (at(5), at(10), 0.1, [(at(0), 0.1, 300.0)]),
        (at(5), at(5), 0.0, [(at(0), 0.0, 0.0)]),
        (at(15), at(15), 0.0, [(at(15), 0.0, 0.0)]),
    ],
)
def test_split_15m(start: datetime, end: datetime, kwh: float, pieces: list[tuple[datetime, float, float]]) -> None:
    got = split_15m(start, end, kwh)
    assert [(q, s) for q, _, s in got] == [(q, s) for q, _, s in pieces]
    assert [k for _, k, _ in got] == pytest.approx([k for _, k, _ in pieces])


def test_split_refuses_backwards_time() -> None:
    with pytest.raises(ValueError, match="before"):
        split_15m(at(10), at(5), 1.0)


def test_tracker_completes_quarters_as_readings_pass_them() -> None:
    tracker = CounterTracker("m1")
    assert tracker.add(at(0), 100.0) == []
    assert tracker.add(at(10), 101.0) == []
    done = tracker.add(at(20), 102.0)  # 0.5 kWh of the second step is in 10:00-10:15
    assert [(i.start, i.complete) for i in done] == [(at(0), True)]
    assert done[0].kwh == pytest.approx(1.5)
    (rest,) = tracker.flush()
    assert (rest.start, rest.covered_s) == (at(15), 300.0)
    assert rest.kwh == pytest.approx(0.5)
    assert tracker.flush() == []


def test_a_resumed_tracker_counts_the_gap_and_completes_the_open_quarter() -> None:
    before = CounterTracker("m1", rated_kw=100.0)
    before.add(at(0), 100.0)
    before.add(at(7), 103.5)
    checkpoint = before.checkpoint()
    (partial,) = before.flush()  # what a stopping service writes: 10:00-10:07 so far
    assert partial.kwh == pytest.approx(3.5)
    after = CounterTracker("m1", rated_kw=100.0)
    assert checkpoint is not None and after.resume(checkpoint, now=at(11))
    # Away from 10:07 to 10:11 (2 kWh, spread over the gap), then readings again.
    assert after.add(at(11), 105.5) == []
    (quarter,) = after.add(at(16), 108.0)
    assert (quarter.start, quarter.complete) == (at(0), True)
    assert quarter.kwh == pytest.approx(7.5)  # the whole quarter hour, not only 10:11-10:15
    assert sum(i.kwh for i in after.flush()) == pytest.approx(0.5)


def test_a_checkpoint_round_trips_through_json_and_refuses_what_does_not_fit() -> None:
    tracker = CounterTracker("m1", unit="Wh")
    assert tracker.checkpoint() is None
    tracker.add(at(0), 1000.0)
    tracker.add(at(5), 1500.0)
    checkpoint = json.loads(json.dumps(tracker.checkpoint()))
    assert CounterTracker("m1", unit="Wh").resume(checkpoint, now=at(6))
    with pytest.raises(ValueError, match="counts in 'kWh'"):
        CounterTracker("m1").resume(checkpoint, now=at(6))
    with pytest.raises(ValueError, match="later than now"):
        CounterTracker("m1", unit="Wh").resume(checkpoint, now=at(4))
    with pytest.raises(ValueError, match="finite"):
        CounterTracker("m1", unit="Wh").resume({**checkpoint, "value": "nan"}, now=at(6))
    further = CounterTracker("m1", unit="Wh")
    further.add(at(10), 2000.0)
    assert not further.resume(checkpoint, now=at(11))  # it already has a later reading


@pytest.mark.parametrize(
    ("values", "total", "resets", "rejected"),
    [
        ([100.0, 101.0, 102.0], 2.0, 0, 0),
        ([100.0, 101.0, 0.5, 1.5], 2.0, 1, 0),  # meter replaced: restarts from 0.5, never negative
        ([9999.0, 10.0, 11.0], 1.0, 1, 0),  # rolled over
        ([100.0, 100.0, 100.0], 0.0, 0, 0),
        ([100.0, 1e9, 101.0], 0.0, 1, 1),  # a garbage spike is refused, the drop back restarts
    ],
)
def test_counter_steps(values: list[float], total: float, resets: int, rejected: int) -> None:
    tracker = CounterTracker("m1", rated_kw=100.0)
    intervals = []
    for i, v in enumerate(values):
        intervals += tracker.add(at(i * 5), v)
    intervals += tracker.flush()
    assert sum(i.kwh for i in intervals) == pytest.approx(total)
    assert all(i.kwh >= 0 for i in intervals)
    assert (tracker.resets, tracker.rejected) == (resets, rejected)


@pytest.mark.parametrize(("step_kwh", "accepted"), [(25.0 * 1.25 + 0.01, True), (25.0 * 1.25 + 0.02, False)])
def test_rated_power_bounds_a_step(step_kwh: float, accepted: bool) -> None:
    tracker = CounterTracker("m1", rated_kw=100.0)  # 15 min at 100 kW = 25 kWh, x1.25 margin + 0.01 slack
    tracker.add(at(0), 0.0)
    (interval,) = tracker.add(at(15), step_kwh)
    assert interval.kwh == (pytest.approx(step_kwh) if accepted else 0.0)


def test_late_and_replayed_readings_add_nothing() -> None:
    tracker = CounterTracker("m1")
    tracker.add(at(0), 1.0)
    tracker.add(at(5), 2.0)
    assert tracker.add(at(5), 9.0) == []
    assert tracker.add(at(3), 9.0) == []
    assert tracker.add(at(15), 3.0)[0].kwh == pytest.approx(2.0)


def test_wh_counters_become_kwh() -> None:
    (interval,) = intervals_15m("p1", [(at(0), 1000.0), (at(15), 1500.0)], unit="Wh")
    assert interval.kwh == pytest.approx(0.5)
    with pytest.raises(ValueError, match="energy unit"):
        CounterTracker("p1", unit="W")


def test_intervals_from_unsorted_samples_mark_partial_edges() -> None:
    samples = [(at(37), 12.0), (at(7), 9.0), (at(22), 10.5)]
    got = intervals_15m("m1", samples)
    assert [(i.start, i.covered_s, i.complete) for i in got] == [
        (at(0), 480.0, False),
        (at(15), 900.0, True),
        (at(30), 420.0, False),
    ]
    assert sum(i.kwh for i in got) == pytest.approx(3.0)


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.floats(min_value=1.0, max_value=3600.0), st.floats(min_value=0.0, max_value=1e6)),
        min_size=1,
        max_size=40,
    )
)
def test_energy_is_conserved_and_never_negative(steps: list[tuple[float, float]]) -> None:
    tracker = CounterTracker("m1")
    t = T0
    tracker.add(t, 0.0)
    last = 0.0
    behind_since: datetime | None = None
    expected = 0.0
    out: list[EnergyInterval] = []
    for dt, value in steps:
        t += timedelta(seconds=dt)
        out += tracker.add(t, value)
        if last - BEHIND_FRACTION * abs(last) <= value < last:  # a little behind: passed over, for a while
            behind_since = behind_since or t
            if (t - behind_since).total_seconds() < BEHIND_MAX_S:
                continue
        behind_since = None
        expected += max(0.0, value - last)  # a drop restarts from the new value
        last = value
    out += tracker.flush()
    assert all(i.kwh >= 0 for i in out)
    assert sum(i.kwh for i in out) == pytest.approx(expected, rel=1e-9, abs=1e-6)
    assert sum(i.covered_s for i in out) == pytest.approx((t - T0).total_seconds())
    assert [i.start for i in out] == sorted({i.start for i in out})


# -- time of use, cost, after hours ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "minutes", "split"),
    [
        (local(2026, 3, 2, 7, 45), 15, {"flat": 1.5}),
        (local(2026, 3, 2, 8, 0), 15, {"peak": 1.5}),
        (local(2026, 3, 2, 10, 45), 15, {"peak": 1.5}),
        (local(2026, 3, 2, 11, 0), 15, {"flat": 1.5}),
        (local(2026, 3, 2, 22, 45), 15, {"flat": 1.5}),
        (local(2026, 3, 2, 23, 0), 15, {"valley": 1.5}),
        (local(2026, 3, 2, 23, 45), 15, {"valley": 1.5}),  # across midnight
        (local(2026, 3, 2, 7, 45), 30, {"flat": 0.75, "peak": 0.75}),
        (at(0), 15, {"peak": 1.5}),  # 00:00 UTC is 08:00 in Shanghai
    ],
)
def test_tou_split(start: datetime, minutes: int, split: dict[str, float]) -> None:
    assert tou_split(start, 1.5, DEMO_TARIFF, SHANGHAI, minutes=minutes) == pytest.approx(split)


def test_tou_split_at_a_quarter_hour_band_boundary() -> None:
    # Band times are on quarter hours (the site loader refuses others), so each quarter is in one band.
    tariff = Tariff(
        bands=[
            TariffBand(name="a", hours=["10:15-22:00"], price=1),
            TariffBand(name="b", hours=["22:00-10:15"], price=0),
        ]
    )
    assert tou_split(local(2026, 3, 2, 10, 0), 1.5, tariff, SHANGHAI) == pytest.approx({"b": 1.5})
    assert tou_split(local(2026, 3, 2, 10, 15), 1.5, tariff, SHANGHAI) == pytest.approx({"a": 1.5})


def test_tou_split_follows_dst() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    # 06:00 UTC is 08:00 summer time (peak) on 2026-03-29, but 07:00 winter time (flat) the day before.
    assert tou_split(datetime(2026, 3, 29, 6, 0, tzinfo=UTC), 1.0, DEMO_TARIFF, berlin) == {"peak": 1.0}
    assert tou_split(datetime(2026, 3, 28, 6, 0, tzinfo=UTC), 1.0, DEMO_TARIFF, berlin) == {"flat": 1.0}


@pytest.mark.parametrize(
    ("by_band", "expected"),
    [({}, 0.0), ({"peak": 1.0}, 1.12), ({"peak": 1.0, "valley": 2.0}, 1.76), ({"flat": 0.5}, 0.34)],
)
def test_cost(by_band: dict[str, float], expected: float) -> None:
    assert cost(by_band, DEMO_TARIFF) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("start", "after"),
    [
        (local(2026, 3, 2, 8, 15), True),  # Monday 08:15-08:30: before work
        (local(2026, 3, 2, 8, 30), False),
        (local(2026, 3, 2, 17, 15), False),
        (local(2026, 3, 2, 17, 30), True),
        (local(2026, 3, 7, 10, 0), True),  # Saturday
        (local(2026, 10, 1, 10, 0), True),  # holiday
        (local(2026, 3, 31, 23, 45), True),  # month end, midnight
    ],
)
def test_is_after_hours(start: datetime, after: bool) -> None:
    assert is_after_hours(start, CALENDAR) is after


@pytest.mark.parametrize(
    ("hours", "start", "after"),
    [
        ("08:20-17:40", local(2026, 3, 2, 8, 15), False),  # 10 of 15 minutes working: midpoint 08:22:30 works
        ("08:20-17:40", local(2026, 3, 2, 17, 30), False),
        ("08:25-17:35", local(2026, 3, 2, 8, 15), True),  # 5 of 15 minutes working
        ("08:25-17:35", local(2026, 3, 2, 17, 30), True),
    ],
)
def test_an_interval_partly_in_working_hours_goes_by_its_midpoint(hours: str, start: datetime, after: bool) -> None:
    cal = WorkCalendar(Calendar(working_hours={"mon": hours}), SHANGHAI)
    assert is_after_hours(start, cal) is after


def test_price_splits_an_interval_into_band_lines() -> None:
    interval = EnergyInterval("m1", local(2026, 3, 2, 7, 45), 2.0)
    (line,) = price(interval, DEMO_TARIFF, CALENDAR)
    assert line == PricedEnergy("m1", interval.start, "flat", 2.0, line.cost, True)
    assert line.cost == pytest.approx(1.36)
