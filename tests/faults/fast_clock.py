"""`python -m service` in a child process whose clocks run fast: `python -m tests.faults.fast_clock
SPEED AT_EPOCH_S REAL_EPOCH_S serve --site ...`.

A fault test needs the service itself to live through more than ten minutes of a database outage
without taking ten minutes. The service reads time from two clocks: its own
(`service.clock.SystemClock`: core, alarms, energy, service lines) and the drivers' default
(`drivers.hub._utcnow`: the receive time stamped on every reading). Both are replaced by one
clock that reads AT_EPOCH_S at wall time REAL_EPOCH_S and runs SPEED times as fast, so the test
can compute the same time. Timers (poll intervals, retries, back-off) stay in wall time: a device
polled every second is read every SPEED simulated seconds. Everything else is the product's
`serve` command as it is.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta

import drivers.hub
import service.clock
from service.cli import main


class FastClock:
    """Reads `at` at wall time `real` and runs `speed` times as fast."""

    def __init__(self, speed: float, at: datetime, real: float) -> None:
        if speed <= 0 or at.tzinfo is None:
            raise ValueError("a fast clock needs a positive speed and a timezone-aware start")
        self.speed = speed
        self.at = at
        self.real = real

    def now(self) -> datetime:
        """The fast time now, in UTC."""
        return self.at + timedelta(seconds=(time.time() - self.real) * self.speed)

    def argv(self) -> list[str]:
        """The arguments that make a child process's clock this one."""
        return [repr(self.speed), repr(self.at.timestamp()), repr(self.real)]

    @classmethod
    def from_argv(cls, args: list[str]) -> FastClock:
        """The clock of `argv()`."""
        speed, at, real = (float(a) for a in args)
        return cls(speed, datetime.fromtimestamp(at, UTC), real)


def run(args: list[str]) -> None:
    """Put the fast clock in place of both clocks, then run the `wattkeeper` command in `args[3:]`."""
    clock = FastClock.from_argv(args[:3])
    if not callable(getattr(drivers.hub, "_utcnow", None)):
        raise SystemExit("drivers.hub has no default clock _utcnow to replace: update tests/faults/fast_clock.py")
    drivers.hub._utcnow = clock.now
    service.clock.SystemClock.now = lambda self: clock.now()  # type: ignore[method-assign]
    sys.argv = ["wattkeeper", *args[3:]]
    main()


if __name__ == "__main__":
    run(sys.argv[1:])
