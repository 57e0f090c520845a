"""Helpers for driver tests: a device config, an event recorder, short timeouts, polling waits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pytest

from drivers.base import DriverSettings
from drivers.profiles import ModbusProfile, load_profile
from drivers.types import DeviceStatus, Quality, Reading, Value

# Short timeouts so offline/online and failed commands take a second, not a minute.
FAST = DriverSettings(
    modbus_timeout_s=0.3,
    modbus_retries=1,
    retry_delay_s=0.02,
    offline_after=3,
    offline_poll_max_s=0.5,
    reconnect_min_s=0.1,
    reconnect_max_s=0.5,
)


def modbus(name: str) -> ModbusProfile:
    """A shipped Modbus profile by name (load_profile returns either kind)."""
    profile = load_profile(name)
    assert isinstance(profile, ModbusProfile)
    return profile


@dataclass(frozen=True)
class Dev:
    """A device configuration (what service.config.site.Device provides)."""

    id: str
    driver: str
    profile: str
    host: str | None = None
    port: int | None = None
    unit: int = 1
    poll_s: float = 0.2
    topic: str | None = None
    rated_kw: float | None = None


def modbus_dev(id: str, profile: str, port: int, **kw: object) -> Dev:
    return Dev(id, "modbus", profile, host="127.0.0.1", port=port, **kw)  # type: ignore[arg-type]


def mqtt_dev(id: str, profile: str, topic: str, **kw: object) -> Dev:
    return Dev(id, "mqtt", profile, topic=topic, **kw)  # type: ignore[arg-type]


class Recorder:
    """Collects emitted batches; the tests read and wait on it."""

    def __init__(self) -> None:
        self.batches: list[tuple[Reading | DeviceStatus, ...]] = []

    def __call__(self, batch: Sequence[Reading | DeviceStatus]) -> None:
        self.batches.append(tuple(batch))

    @property
    def readings(self) -> list[Reading]:
        return [e for b in self.batches for e in b if isinstance(e, Reading)]

    @property
    def statuses(self) -> list[DeviceStatus]:
        return [e for b in self.batches for e in b if isinstance(e, DeviceStatus)]

    def latest(self, device: str) -> dict[str, Reading]:
        """The newest reading of every point of a device."""
        out: dict[str, Reading] = {}
        for r in self.readings:
            if r.device == device:
                out[r.point] = r
        return out

    def value(self, device: str, point: str) -> Value:
        r = self.latest(device).get(point)
        return r.value if r and r.quality is Quality.good else None

    def online(self, device: str) -> bool | None:
        states = [s.online for s in self.statuses if s.device == device]
        return states[-1] if states else None


async def wait_until(condition: Callable[[], object], timeout_s: float = 10.0, what: str = "condition") -> None:
    """Poll a condition; fail the test if it does not hold within the (generous) timeout."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.02)
