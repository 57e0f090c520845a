"""Energy counters never produce negative or absurd energy."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.energy import EnergyCounter


def steps(counter: EnergyCounter, readings: list[tuple[float, float]]) -> list[tuple[float, str]]:
    return [(round(s.delta, 9), s.outcome) for s in (counter.update(v, t) for t, v in readings)]


@pytest.mark.parametrize(
    ("readings", "expected", "total"),
    [
        # 100 kW for an hour is 100 kWh: plausible on a 120 kW meter
        ([(0, 1000.0), (3600, 1100.0)], [(0.0, "first"), (100.0, "ok")], 100.0),
        # the meter was replaced: the new one starts near zero; counting goes on from there
        (
            [(0, 48213.6), (60, 48213.7), (120, 3.1), (180, 3.2)],
            [(0.0, "first"), (0.1, "ok"), (0.0, "reset"), (0.1, "ok")],
            0.2,
        ),
        # a drop on a counter whose wrap is unknown (a float register): no negative energy, no
        # huge positive step, a reset
        ([(0, 429496.7), (60, 0.5), (120, 1.5)], [(0.0, "first"), (0.0, "reset"), (1.0, "ok")], 1.0),
        # a corrupt read of 1e9 kWh is rejected; the next good value is a drop (a reset), so the
        # total stays true
        (
            [(0, 500.0), (60, 1e9), (120, 500.1), (180, 500.2)],
            [(0.0, "first"), (0.0, "rejected"), (0.0, "reset"), (0.1, "ok")],
            0.1,
        ),
        # a real meter swap to a higher-reading meter: rejected once, then counted from the new base
        ([(0, 10.0), (60, 9000.0), (120, 9000.02)], [(0.0, "first"), (0.0, "rejected"), (0.02, "ok")], 0.02),
        # unchanged value: zero delta
        ([(0, 5.0), (1, 5.0)], [(0.0, "first"), (0.0, "ok")], 0.0),
        # old readings delivered again after newer ones (QoS 1 re-sent after a broker restart):
        # passed over, and the steps after them are not counted twice
        (
            [(0, 100.0), (1, 100.001), (2, 100.002), (3, 100.001), (4, 100.002), (5, 100.003)],
            [(0.0, "first"), (0.001, "ok"), (0.001, "ok"), (0.0, "behind"), (0.0, "ok"), (0.001, "ok")],
            0.003,
        ),
        # a one-poll glitch 50 kWh low on a large register costs nothing
        (
            [(0, 60_000.0), (60, 60_001.0), (120, 59_951.5), (180, 60_002.5)],
            [(0.0, "first"), (1.0, "ok"), (0.0, "behind"), (1.5, "ok")],
            2.5,
        ),
        # a glitch a little above, refused; the drop back from it is no replay, counting goes on
        (
            [(0, 1000.0), (60, 1005.0), (120, 1000.1), (180, 1000.2)],
            [(0.0, "first"), (0.0, "rejected"), (0.0, "reset"), (0.1, "ok")],
            0.1,
        ),
        # readings that stay a little behind for BEHIND_MAX_S: the counter was set back after all
        (
            [(0, 2000.0), (60, 1990.0), (600, 1990.5), (960, 1991.0), (1020, 1991.1)],
            [(0.0, "first"), (0.0, "behind"), (0.0, "behind"), (0.0, "reset"), (0.1, "ok")],
            0.1,
        ),
    ],
)
def test_counter_rules(readings: list[tuple[float, float]], expected: list[tuple[float, str]], total: float) -> None:
    counter = EnergyCounter.for_unit("kWh", rated_kw=120)
    assert steps(counter, readings) == expected
    assert counter.total == pytest.approx(total)


# GenComm's generator kWh: a uint32 register of tenths of a kWh wraps at 2**32 x 0.1 kWh.
WRAP_U32_TENTHS = 2**32 * 0.1


@pytest.mark.parametrize(
    ("readings", "expected", "total"),
    [
        # rolled over between two polls: the 0.5 kWh across the wrap counts in full
        (
            [(0, WRAP_U32_TENTHS - 0.3), (60, 0.2), (120, 0.4)],
            [(0.0, "first"), (0.5, "rollover"), (0.2, "ok")],
            0.7,
        ),
        # exactly at the wrap: the register reads 0
        ([(0, WRAP_U32_TENTHS - 0.1), (60, 0.0)], [(0.0, "first"), (0.1, "rollover")], 0.1),
        # a step across the wrap is held to rated power like any other (120 kW for 60 s is 2 kWh)
        ([(0, WRAP_U32_TENTHS - 0.3), (60, 50.0)], [(0.0, "first"), (0.0, "rejected")], 0.0),
        # a drop of less than half the range is no wrap: the meter was replaced, a reset
        ([(0, 48213.6), (60, 3.1), (120, 3.2)], [(0.0, "first"), (0.0, "reset"), (0.1, "ok")], 0.1),
    ],
)
def test_counter_with_a_known_wrap(
    readings: list[tuple[float, float]], expected: list[tuple[float, str]], total: float
) -> None:
    counter = EnergyCounter.for_unit("kWh", rated_kw=120, resolution=0.1, wraps_at=WRAP_U32_TENTHS)
    # float64 holds 4.3e8 kWh to about 6e-8 kWh: the deltas are compared to that
    got = steps(counter, readings)
    assert [outcome for _, outcome in got] == [outcome for _, outcome in expected]
    assert [delta for delta, _ in got] == pytest.approx([delta for delta, _ in expected], abs=1e-6)
    assert counter.total == pytest.approx(total)
    assert counter.rollovers == sum(outcome == "rollover" for _, outcome in expected)
    assert counter.resets == sum(outcome == "reset" for _, outcome in expected)


@given(
    start=st.integers(0, 2**16 - 1),
    increments=st.lists(st.integers(0, 2**15 - 1), min_size=1, max_size=60),
    scale=st.sampled_from([1.0, 0.1, 0.01]),
)
def test_steps_across_any_number_of_wraps_add_up_to_the_true_energy(
    start: int, increments: list[int], scale: float
) -> None:
    """A uint16 counter read after every step of less than half its range: the register shows the
    true count modulo 2**16, and the deltas add up to the true total, however often it wrapped."""
    counter = EnergyCounter.for_unit("kWh", rated_kw=None, resolution=scale, wraps_at=2**16 * scale)
    unknown = EnergyCounter.for_unit("kWh", rated_kw=None, resolution=scale)
    true_count = start
    counter.update(round(start * scale, 2), 0.0)
    unknown.update(round(start * scale, 2), 0.0)
    wraps = 0
    for t, increment in enumerate(increments, start=1):
        before = true_count % 2**16
        true_count += increment
        shown = round((true_count % 2**16) * scale, 2)
        wraps += true_count % 2**16 < before
        step = counter.update(shown, t * 60.0)
        assert step.delta == pytest.approx(increment * scale, abs=1e-6)
        unknown.update(shown, t * 60.0)
    assert counter.total == pytest.approx((true_count - start) * scale, abs=1e-6 * len(increments))
    assert (counter.rollovers, counter.resets) == (wraps, 0)
    # without the modulus every wrap is a reset worth nothing: exactly the steps across wraps are lost
    assert unknown.resets == wraps
    assert unknown.total <= counter.total + 1e-6


@given(
    last=st.integers(0, 2**16 - 1),
    value=st.integers(0, 2**16 - 1),
)
def test_a_drop_is_a_wrap_only_the_short_way_round(last: int, value: int) -> None:
    counter = EnergyCounter.for_unit("", rated_kw=None, wraps_at=2**16)
    counter.update(float(last), 0.0)
    step = counter.update(float(value), 60.0)
    assert step.delta >= 0
    if value >= last:
        assert (step.outcome, step.delta) == ("ok", value - last)
    elif value + 2**16 - last <= 2**15:
        assert (step.outcome, step.delta) == ("rollover", value + 2**16 - last)
    else:
        assert step.outcome in ("reset", "behind") and step.delta == 0


def test_limit_is_rated_power_times_elapsed_time_with_margin() -> None:
    counter = EnergyCounter.for_unit("kWh", rated_kw=3.6)  # 1 kWh per 1000 s at rated power
    counter.update(0.0, 0.0)
    assert counter.update(1.2, 1000.0).outcome == "ok"  # 1.2 < 1.0 * 1.25 + 0.01
    assert counter.update(2.6, 2000.0).outcome == "rejected"  # 1.4 > 1.26
    assert counter.rejected == 1


def test_one_count_of_a_coarse_counter_is_always_plausible() -> None:
    # A genset's 0.1 kWh register polled every 0.5 s: at rated 250 kW a poll covers 0.035 kWh, yet
    # the register moves a whole count at a time. One count passes; two counts in 0.5 s do not.
    counter = EnergyCounter.for_unit("kWh", rated_kw=250, resolution=0.1)
    counter.update(1693.5, 0.0)
    assert [counter.update(1693.5 + 0.1 * n, 0.5 * n * 3).outcome for n in range(1, 5)] == ["ok"] * 4
    assert counter.total == pytest.approx(0.4)
    assert counter.update(1694.1, 6.5).outcome == "rejected"  # 0.2 kWh in 0.5 s is 1,440 kW
    fine = EnergyCounter.for_unit("kWh", rated_kw=250)
    fine.update(1693.5, 0.0)
    assert fine.update(1693.6, 0.5).outcome == "rejected"  # without the resolution it would be absurd


def test_wh_counters_are_scaled() -> None:
    counter = EnergyCounter.for_unit("Wh", rated_kw=1.0)  # 1000 Wh per hour
    counter.update(0.0, 0.0)
    assert counter.update(1000.0, 3600.0).outcome == "ok"
    assert counter.update(5000.0, 3601.0).outcome == "rejected"


def test_the_longer_of_arrival_and_device_time_counts() -> None:
    # A backlog after a reconnect arrives in one burst, but the device measured it an hour apart.
    counter = EnergyCounter.for_unit("kWh", rated_kw=2.0)
    counter.update(10.0, 1000.0, source_s=0.0)
    assert counter.update(11.5, 1000.1, source_s=3600.0).outcome == "ok"


def test_non_energy_counters_have_no_rate_limit() -> None:
    starts = EnergyCounter.for_unit("", rated_kw=250)
    starts.update(1187, 0.0)
    assert starts.update(5000, 1.0).outcome == "ok"
    assert starts.update(3, 2.0).outcome == "reset"


@given(
    st.lists(
        st.tuples(st.floats(0, 30, allow_nan=False), st.floats(-1e6, 1e9, allow_nan=False)),
        min_size=1,
        max_size=40,
    )
)
def test_total_never_goes_backwards_and_never_exceeds_rated_energy(samples: list[tuple[float, float]]) -> None:
    counter = EnergyCounter.for_unit("kWh", rated_kw=100)
    t = 0.0
    previous_total = 0.0
    for gap, value in samples:
        t += gap
        step = counter.update(value, t)
        assert step.delta >= 0
        assert counter.total >= previous_total
        previous_total = counter.total
    assert counter.total <= 100 * t / 3600 * 1.25 + 0.01 * len(samples) + 1e-9
