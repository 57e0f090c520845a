"""wattkeeper's own frozen types at the driver edge; no pymodbus or paho type leaves drivers/."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Literal

Value = float | int | bool | str | None


class Quality(StrEnum):
    """How far a value can be trusted."""

    good = "good"
    bad = "bad"  # the device said "not available", sent garbage, or the value is implausible
    stale = "stale"  # no fresh reading for 3 poll intervals


@dataclass(frozen=True, slots=True, kw_only=True)
class Reading:
    """One value of one point of one device at one moment."""

    device: str
    point: str
    value: Value
    unit: str
    ts: datetime
    quality: Quality = Quality.good

    def __post_init__(self) -> None:
        if self.ts.tzinfo is None:
            raise ValueError("Reading.ts must be timezone-aware")
        if self.quality is not Quality.good and self.value is not None:
            raise ValueError("a reading that is not good carries no value")


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceStatus:
    """A device went online or offline."""

    device: str
    online: bool
    ts: datetime
    reason: str = ""


CommandStatus = Literal["confirmed", "failed", "refused"]


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandResult:
    """The outcome of one verified command."""

    device: str
    point: str
    requested: Value
    status: CommandStatus
    observed: Value = None
    detail: str = ""


class CommandRefused(Exception):
    """A command the allow-list refuses; it never reaches the device."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceHealth:
    """What the drivers know about one device's link and data quality (all counters since start)."""

    online: bool  # False until the device has been heard from
    last_seen: datetime | None  # last good poll or message; the service decides staleness
    consecutive_failures: int = 0  # failed polls in a row (Modbus)
    failures: int = 0  # failed polls (Modbus)
    overruns: int = 0  # polls that ended after the next one was due (Modbus)
    rejects: int = 0  # malformed payloads and values of the wrong type or out of range
    out_of_order: int = 0  # stale, duplicate or replayed messages ignored (MQTT)
    rejected_deltas: int = 0  # energy-counter steps above rated power x elapsed time
    counter_resets: int = 0  # counters that went backwards, not by rolling over (meter replaced or set back)
    clock_skew: int = 0  # messages whose device timestamp was more than max_clock_skew_s off the receive time (MQTT)
    readings: int = 0  # readings emitted
