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
