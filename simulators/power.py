"""Supply side of the simulated site: grid sources, transfer switches, generators with their AMF controllers, meters.

Times are simulated seconds since the world started (`t`). Everything here is pure state and arithmetic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from simulators.rand import between

NOMINAL_V = 220.0  # LV phase voltage in China (220/380 V)
NOMINAL_HZ = 50.0
LOAD_PF = 0.95
PHASE_SHARE = (0.35, 0.33, 0.32)  # a real office LV board is never perfectly balanced
ATS_OPERATION_S = 0.5  # an ATyS pM passes through position 0 while it operates
COOLDOWN_S = 60.0  # DSE default cooling time before the engine stops
FAIL_START_ATTEMPTS = 3  # DSE default crank attempts before "fail to start"
PARALLEL_SHARE = 0.8  # governor setpoint a generator holds when wrongly paralleled with the grid
# Share of its rating a generator pushes into a dead feeder's other consumers, as far as its rating
# leaves room above its own load: backfeed never drives a set beyond its rating (its governor and
# protection see to that); only the site's own load can load it beyond rated (overload protection).
BACKFEED_SHARE = 0.25
# DSE kW Overload Protection (Generator > Power): above the trip level the controller raises its overload
# warning; if the load stays above it for the delay, the action (here Electrical Trip) takes the generator
# off load and stops it after the cooling timer, latched until reset. The delay is set well beyond
# wattkeeper's generator_overload on-delay (60 s), so the alarm is raised before the protection acts.
OVERLOAD_TRIP_SHARE = 1.0  # trip level: 100 % of rated kW
OVERLOAD_TRIP_DELAY_S = 120.0

# Socomec ATyS position codes (register 20482)
POS_CODE_0 = 1
POS_CODE_I = 2

# GenComm engine states (register 1408)
STOPPED, PRE_START, WARMING, RUNNING, COOLING = 0, 1, 2, 3, 4
ENGINE_STATE_NAMES = {
    STOPPED: "stopped",
    PRE_START: "pre-start",
    WARMING: "warming",
    RUNNING: "running",
    COOLING: "cooling",
}

# GenComm system control keys (page 16, written as [key, 65535 - key])
KEY_STOP, KEY_AUTO, KEY_MANUAL, KEY_START, KEY_RESET_ALARMS = 35700, 35701, 35702, 35705, 35707

GenMode = Literal["auto", "manual", "stop"]


@dataclass
class SourceModel:
    """A grid feeder: present or lost, with a slowly wandering voltage."""

    id: str
    seed: int
    available: bool = True
    available_since: float = -math.inf
    phase: float = field(init=False)

    def __post_init__(self) -> None:
        self.phase = between(self.seed, 0.0, 2 * math.pi, "source-phase", self.id)

    def voltage_v(self, epoch_s: float) -> float:
        """Phase voltage at the incomer; 0 when lost."""
        if not self.available:
            return 0.0
        phase = self.phase
        return NOMINAL_V + 3.0 * math.sin(2 * math.pi * epoch_s / 86400 + phase) + 0.8 * math.sin(epoch_s / 97 + phase)

    def frequency_hz(self, epoch_s: float) -> float:
        """Grid frequency; 0 when lost."""
        if not self.available:
            return 0.0
        return NOMINAL_HZ + 0.03 * math.sin(epoch_s / 53 + len(self.id))


@dataclass
class SwitchModel:
    """A two-position automatic transfer switch (Socomec ATyS pM): position I and II are grid sources."""

    id: str
    device: str | None
    grids: list[str]
    generator: str | None
    transfer_delay_s: float
    retransfer_delay_s: float
    position: int | None = 0  # index into grids; None is position 0
    target: int | None = None
    moving_until: float | None = None
    stuck: bool = False
    cycles: int = 0
    dead_since: float | None = None
    exposed: bool = True  # False for the implicit bus of a site without a transfer switch
    manual: bool = False  # mode selector on manual: the controller does not operate by itself

    def position_code(self) -> int:
        """ATyS register 20482: 1 pos 0, 2 pos I, 3 pos II."""
        return POS_CODE_0 if self.position is None else POS_CODE_I + self.position

    def feeding_grid(self) -> str | None:
        """The grid source the switch connects (regardless of whether it is live)."""
        return None if self.position is None else self.grids[self.position]

    def step(self, t: float, sources: dict[str, SourceModel]) -> None:
        """Run the switch's controller at time t."""
        if self.moving_until is not None:
            if t < self.moving_until:
                return
            self.position, self.target, self.moving_until = self.target, None, None
        live = [i for i, g in enumerate(self.grids) if sources[g].available]
        best = live[0] if live else None
        current = self.position
        if current is not None and current in live:
            self.dead_since = None
            if (
                best is not None
                and best < current
                and t - sources[self.grids[best]].available_since >= (self.retransfer_delay_s - 1e-9)
            ):
                self._operate(best, t)
            return
        if self.dead_since is None:
            self.dead_since = t
        if best is not None and t - self.dead_since >= self.transfer_delay_s - 1e-9:
            self._operate(best, t)

    def _operate(self, target: int, t: float) -> None:
        if self.stuck or self.manual:
            return  # the mechanism does not move; the controller keeps asking
        self.position, self.target, self.moving_until = None, target, t + ATS_OPERATION_S
        self.cycles += 1


@dataclass
class GeneratorModel:
    """A standby generator and its DSE7320-like AMF controller (mains and generator breakers)."""

    id: str
    device: str | None
    rated_kw: float
    start_s: float
    switch: SwitchModel | None
    starts: int
    energy_kwh: float
    mode: GenMode = "auto"
    engine: int = STOPPED
    warm_at: float = 0.0
    ready_at: float = 0.0
    fail_at: float | None = None
    cooling_until: float = 0.0
    fail_latched: bool = False
    overload_since: float | None = None
    overload_tripped: bool = False
    manual_run: bool = False
    demand: bool = False
    mains_fail_since: float | None = None
    mains_ok_since: float | None = None
    mains_breaker: bool = True
    gen_breaker: bool = False
    fail_start: bool = False
    slow_start_s: float = 0.0
    interlock_fail: bool = False
    power_kw: float = 0.0

    @property
    def overloaded(self) -> bool:
        """The kW overload warning: on load above the trip level, the trip timer running."""
        return self.overload_since is not None

    @property
    def running(self) -> bool:
        """Engine up to speed and voltage: the controller calls it available."""
        return self.engine in (RUNNING, COOLING)

    def voltage_v(self, epoch_s: float) -> float:
        """Alternator phase voltage."""
        if not self.running:
            return 0.0
        return NOMINAL_V + 1.0 - 2.0 * min(self.power_kw / self.rated_kw, 1.5) + 0.3 * math.sin(epoch_s / 7)

    def frequency_hz(self, epoch_s: float) -> float:
        """Alternator frequency: governor droop with load."""
        if not self.running:
            return 0.0
        return NOMINAL_HZ + 0.2 - 0.4 * min(self.power_kw / self.rated_kw, 1.5) + 0.02 * math.sin(epoch_s / 5)

    def battery_v(self) -> float:
        """Starter battery: charging while running, dips while cranking."""
        if self.engine == PRE_START:
            return 21.5
        return 27.4 if self.running or self.engine == WARMING else 25.3

    def key(self, key: int) -> None:
        """A GenComm system control key."""
        if key == KEY_STOP:
            # the controller's Stop/Reset: stops the set and resets latched alarms
            self.mode, self.manual_run = "stop", False
            self.fail_latched = self.overload_tripped = False
        elif key == KEY_AUTO:
            self.mode, self.manual_run = "auto", False
        elif key == KEY_MANUAL:
            self.mode = "manual"
        elif key == KEY_START and self.mode == "manual":
            self.manual_run = True
        elif key == KEY_RESET_ALARMS:
            self.fail_latched = self.overload_tripped = False

    def step(self, t: float, mains_live: bool, no_grid: bool) -> None:
        """Run the AMF controller at time t; `mains_live` is the transfer switch output, `no_grid` every grid lost."""
        delay = self.switch.transfer_delay_s if self.switch else 0.0
        back = self.switch.retransfer_delay_s if self.switch else 0.0
        self.mains_fail_since = (self.mains_fail_since if self.mains_fail_since is not None else t) if no_grid else None
        self.mains_ok_since = (self.mains_ok_since if self.mains_ok_since is not None else t) if mains_live else None
        if self.mains_fail_since is not None and t - self.mains_fail_since >= delay - 1e-9:
            self.demand = True
        if self.demand and self.mains_ok_since is not None and t - self.mains_ok_since >= back - 1e-9:
            self.demand = False
        self._protect(t)
        want = (self.mode == "auto" and self.demand) or (self.mode == "manual" and self.manual_run)
        want = want and not self.overload_tripped
        for _ in range(5):  # a long step may cross several deadlines
            if not self._advance(t, want):
                break
        self._breakers(mains_live)

    def _protect(self, t: float) -> None:
        """kW overload protection on the output of the last step: warning at once, electrical trip after the delay."""
        on_load = self.gen_breaker and self.running
        if not on_load or self.power_kw <= OVERLOAD_TRIP_SHARE * self.rated_kw:
            self.overload_since = None
            return
        if self.overload_since is None:
            self.overload_since = t
        if t - self.overload_since >= OVERLOAD_TRIP_DELAY_S - 1e-9:
            self.overload_tripped, self.overload_since = True, None

    def _advance(self, t: float, want: bool) -> bool:
        before = self.engine
        if self.mode == "stop":
            self.engine = STOPPED
        elif self.engine == STOPPED:
            if want and not self.fail_latched and not self.overload_tripped:
                self.engine = PRE_START
                crank_s = 0.4 * self.start_s
                self.fail_at = t + FAIL_START_ATTEMPTS * self.start_s if self.fail_start else None
                self.warm_at = t + crank_s + self.slow_start_s
                self.ready_at = t + self.start_s + self.slow_start_s
        elif self.engine == PRE_START:
            if not want:
                self.engine = STOPPED
            elif self.fail_at is not None:
                if t >= self.fail_at - 1e-9:
                    self.engine, self.fail_latched = STOPPED, True
            elif t >= self.warm_at - 1e-9:
                self.engine = WARMING
                self.starts += 1
        elif self.engine == WARMING:
            if not want:
                self.engine = STOPPED
            elif t >= self.ready_at - 1e-9:
                self.engine = RUNNING
        elif self.engine == RUNNING:
            if not want:
                self.engine, self.cooling_until = COOLING, t + COOLDOWN_S
        elif self.engine == COOLING:
            if want:
                self.engine = RUNNING
            elif t >= self.cooling_until - 1e-9:
                self.engine = STOPPED
        return self.engine != before

    def _breakers(self, mains_live: bool) -> None:
        on_load = self.engine == RUNNING and (
            (self.mode == "auto" and self.demand) or (self.mode == "manual" and not mains_live)
        )
        if self.overload_tripped:
            # the trip opens the generator breaker whatever the interlock; the set cools down off load
            self.mains_breaker, self.gen_breaker = True, False
        elif self.interlock_fail and self.running:
            self.mains_breaker, self.gen_breaker = True, True
        elif on_load:
            self.mains_breaker, self.gen_breaker = False, True
        else:
            self.mains_breaker, self.gen_breaker = True, False

    def status_bits(self, mains_live: bool) -> int:
        """GenComm breaker/status register 1410 (bit layout in drivers/profiles/dse-gencomm.yaml)."""
        return (
            int(self.mains_breaker)
            | int(self.gen_breaker) << 1
            | int(mains_live) << 2
            | int(self.running) << 3
            | int(self.demand) << 4
            | int(self.fail_latched) << 5
            | int(self.overloaded) << 6
            | int(self.overload_tripped) << 7
        )


@dataclass
class MeterModel:
    """A three-phase energy meter: what it measures now and its energy registers."""

    id: str
    import_kwh: float
    export_kwh: float
    power_w: float = 0.0
    voltage_v: float = 0.0
    frequency_hz: float = 0.0
    power_factor: float = LOAD_PF

    def integrate(self, dt_s: float) -> None:
        """Advance the energy registers over dt at the present power."""
        kwh = self.power_w * dt_s / 3_600_000
        if kwh >= 0:
            self.import_kwh += kwh
        else:
            self.export_kwh -= kwh

    def phase_voltages(self) -> tuple[float, float, float]:
        """L1, L2, L3 to neutral."""
        v = self.voltage_v
        return (v, v * 1.004 if v else 0.0, v * 0.997 if v else 0.0)

    def phase_powers(self) -> tuple[float, float, float]:
        """Active power per phase."""
        return (
            self.power_w * PHASE_SHARE[0],
            self.power_w * PHASE_SHARE[1],
            self.power_w * PHASE_SHARE[2],
        )

    def phase_currents(self) -> tuple[float, float, float]:
        """Current per phase (magnitude)."""
        (v1, v2, v3), (p1, p2, p3) = self.phase_voltages(), self.phase_powers()
        pf = self.power_factor
        return (
            abs(p1) / (v1 * pf) if v1 else 0.0,
            abs(p2) / (v2 * pf) if v2 else 0.0,
            abs(p3) / (v3 * pf) if v3 else 0.0,
        )
