"""Energy counters: turn raw meter totals into non-negative, plausible deltas. Pure; no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# Counter units the rated-power check understands, as multiples of one kWh.
ENERGY_UNITS: dict[str, float] = {"Wh": 1000.0, "kWh": 1.0, "MWh": 0.001}
# A counter step may exceed rated power x elapsed time by this factor (meters round, clocks jitter)...
RATE_MARGIN = 1.25
# ...plus this much energy in kWh, or one count of the counter if that is more: a one-digit step
# on a quiet load, or a 0.1 kWh register's one count within a short poll, is never called absurd.
SLACK_KWH = 0.01

# A reading at most this fraction below the last one is an old reading delivered again (an MQTT
# QoS 1 message re-sent after a broker restart arrives after newer ones) or a glitch, not a new
# meter or a rollover (those drop to near zero): it is passed over and the last value stays the
# baseline, so the steps after it are not counted twice.
BEHIND_FRACTION = 0.01
# ...unless readings stay behind this long: then the counter was set back after all.
BEHIND_MAX_S = 900.0

# A drop is a wrap of a counter with a known modulus M when the step across the wrap is at most
# M / 2: the shorter way round (as TCP sequence numbers and SNMP counters are compared). A bigger
# drop is a meter replaced or set back, not a step of more than half the counter's range.
WRAP_MAX_FRACTION = 0.5

Outcome = Literal["first", "ok", "rollover", "reset", "rejected", "behind"]


@dataclass(frozen=True, slots=True)
class CounterStep:
    """What one counter reading contributed: `delta` >= 0 in the counter's own unit."""

    delta: float
    outcome: Outcome


@dataclass(slots=True)
class EnergyCounter:
    """Follows one counter; `total` only ever grows.

    - The first reading sets the baseline (delta 0).
    - A reading a little below the last one (at most BEHIND_FRACTION of it) is an old reading
      replayed or a glitch: delta 0, counted in `behind`, and the last value stays the baseline;
      readings that stay behind for BEHIND_MAX_S are a counter set back, i.e. a reset.
    - A reading further below the last one on a counter that wraps at a known value `wraps_at`
      (an integer register's range, or a profile's `rollover`) is a rollover when the step
      across the wrap, value + wraps_at - last, is at most WRAP_MAX_FRACTION of wraps_at: that
      step counts in full (counted in `rollovers`), under the same rate check as any step.
    - Any other drop (meter replaced or set back; any drop of a counter without a known wrap)
      restarts from the new value: delta 0, counted in `resets`.
    - A step above `max_per_h` x elapsed hours x RATE_MARGIN + slack is rejected (delta 0,
      counted in `rejected`) and the new value becomes the baseline, so one bad step never
      blocks the counter for good.
    """

    max_per_h: float | None  # counter units per hour at rated power; None: no plausibility limit
    slack: float = 0.0  # counter units always allowed on top of the rate
    wraps_at: float | None = None  # the counter's modulus: it rolls over to 0 here; None: unknown
    last_value: float | None = None
    last_s: float | None = None
    last_source_s: float | None = None
    total: float = 0.0
    rejected: int = 0
    resets: int = 0
    rollovers: int = 0
    behind: int = 0
    behind_since_s: float | None = None  # arrival of the first reading of the current run behind the baseline
    doubtful: bool = False  # the baseline is a refused step's value: a drop back from it is no replay

    @classmethod
    def for_unit(
        cls, unit: str, rated_kw: float | None, resolution: float = 0.0, wraps_at: float | None = None
    ) -> EnergyCounter:
        """A counter in `unit` on a device rated `rated_kw` (no rate check for non-energy units);
        `resolution` is the counter's smallest step in `unit` (one register count), 0 if fine;
        `wraps_at` where it rolls over to 0, None if unknown."""
        per_kwh = ENERGY_UNITS.get(unit)
        if per_kwh is None or rated_kw is None:
            return cls(max_per_h=None, wraps_at=wraps_at)
        return cls(max_per_h=rated_kw * per_kwh, slack=max(SLACK_KWH * per_kwh, resolution), wraps_at=wraps_at)

    def update(self, value: float, at_s: float, source_s: float | None = None) -> CounterStep:
        """Take a good reading `value` received at `at_s` (epoch seconds).

        `source_s` is the device's own timestamp where the payload has one: a backlog delivered
        in a burst after a reconnect is then judged by the time the device measured it. The
        longer of the two elapsed times counts, so neither a coarse device clock nor a burst
        makes a real step look absurd.
        """
        last, last_s, last_source_s = self.last_value, self.last_s, self.last_source_s
        doubtful, self.doubtful = self.doubtful, False
        if not doubtful and last is not None and last - BEHIND_FRACTION * abs(last) <= value < last:
            if self.behind_since_s is None:
                self.behind_since_s = at_s
            if at_s - self.behind_since_s < BEHIND_MAX_S:
                self.behind += 1
                return CounterStep(0.0, "behind")
        self.behind_since_s = None
        self.last_value, self.last_s, self.last_source_s = value, at_s, source_s
        if last is None or last_s is None:
            return CounterStep(0.0, "first")
        delta = value - last
        outcome: Outcome = "ok"
        if delta < 0:
            wrapped = self._across_wrap(last, value)
            if wrapped is None:
                self.resets += 1
                return CounterStep(0.0, "reset")
            delta, outcome = wrapped, "rollover"
        if self.max_per_h is not None:
            elapsed = at_s - last_s
            if source_s is not None and last_source_s is not None:
                elapsed = max(elapsed, source_s - last_source_s)
            if delta > self.max_per_h * max(0.0, elapsed) / 3600.0 * RATE_MARGIN + self.slack:
                self.rejected += 1
                self.doubtful = True
                return CounterStep(0.0, "rejected")
        self.total += delta
        if outcome == "rollover":
            self.rollovers += 1
        return CounterStep(delta, outcome)

    def _across_wrap(self, last: float, value: float) -> float | None:
        """The step from `last` over the wrap to `value`, if the drop is a rollover; None if it is not."""
        if self.wraps_at is None:
            return None
        step = value + self.wraps_at - last
        return step if 0.0 <= step <= WRAP_MAX_FRACTION * self.wraps_at else None
