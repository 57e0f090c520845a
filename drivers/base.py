"""What the generic drivers share: device configuration, settings, per-device bookkeeping."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from drivers.energy import EnergyCounter
from drivers.profiles import Profile
from drivers.types import CommandResult, DeviceHealth, DeviceStatus, Quality, Reading, Value

log = logging.getLogger("wattkeeper.drivers")

Event = Reading | DeviceStatus
Emit = Callable[[Sequence[Event]], None]
Clock = Callable[[], datetime]


class DeviceConfig(Protocol):
    """A device as the drivers need it (service.config.site.Device satisfies this)."""

    @property
    def id(self) -> str: ...
    @property
    def driver(self) -> str: ...
    @property
    def profile(self) -> str: ...
    @property
    def host(self) -> str | None: ...
    @property
    def port(self) -> int | None: ...
    @property
    def unit(self) -> int: ...
    @property
    def poll_s(self) -> float: ...
    @property
    def topic(self) -> str | None: ...
    @property
    def rated_kw(self) -> float | None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class DriverSettings:
    """Timeouts, retries and limits; the defaults suit a building, tests shorten them."""

    modbus_timeout_s: float = 1.0  # one request, and one connection attempt
    modbus_retries: int = 1  # extra attempts of a failed request within one poll
    retry_delay_s: float = 0.1  # first pause before a retry; doubles per retry
    offline_after: int = 3  # consecutive failed polls before a device is offline
    offline_poll_max_s: float = 10.0  # an offline device is polled less often, down to this interval
    reconnect_min_s: float = 0.5  # first pause before reconnecting (Modbus connection, MQTT broker)
    reconnect_max_s: float = 30.0  # the pause doubles up to this
    mqtt_keepalive_s: int = 30
    mqtt_timeout_s: float = (
        10.0  # connecting (until CONNACK), subscribing: a broker that hangs up unanswered costs this
    )
    mqtt_max_payload: int = 65536  # bytes; larger payloads are rejected unread
    device_timezone: str = "UTC"  # the zone of device timestamps without an offset (Tasmota `Time`): the site's
    max_clock_skew_s: float = 300.0  # a device timestamp further than this from the receive time is flagged


@dataclass(slots=True)
class DeviceStats:
    """Mutable per-device state behind `DeviceHealth`; touched only from the event loop."""

    device: str
    rated_kw: float | None
    online: bool | None = None  # None until first heard from or given up on
    last_seen: datetime | None = None
    consecutive_failures: int = 0
    failures: int = 0
    overruns: int = 0
    rejects: int = 0
    out_of_order: int = 0
    readings: int = 0
    clock_skew: int = 0
    skewed: bool = False  # the last message carrying a timestamp was off by more than max_clock_skew_s
    counters: dict[str, EnergyCounter] = field(default_factory=dict)

    def set_online(self, online: bool, ts: datetime, reason: str = "") -> DeviceStatus | None:
        """Record a link state; returns the event (and logs once) only when it changes."""
        if self.online is online:
            return None
        self.online = online
        if online:
            log.info("device %s online%s", self.device, f" ({reason})" if reason else "")
        else:
            log.warning("device %s offline: %s", self.device, reason or "unknown reason")
        return DeviceStatus(device=self.device, online=online, ts=ts, reason=reason)

    def counter_delta(
        self,
        point: str,
        value: float,
        unit: str,
        ts: datetime,
        source_s: float | None = None,
        *,
        resolution: float = 0.0,
        wraps_at: float | None = None,
    ) -> Reading:
        """The `<point>_delta` reading that follows a good counter reading taken at `ts`
        (`resolution`: the counter's smallest step, one register count; `wraps_at`: where it rolls over)."""
        counter = self.counters.get(point)
        if counter is None:
            counter = self.counters[point] = EnergyCounter.for_unit(unit, self.rated_kw, resolution, wraps_at)
        step = counter.update(value, ts.timestamp(), source_s)
        if step.outcome == "rejected":
            log.warning(
                "device %s: %s jumped to %s %s, above rated power; delta rejected", self.device, point, value, unit
            )
        elif step.outcome == "behind":
            log.debug("device %s: %s read %s %s, behind its last value; passed over", self.device, point, value, unit)
        elif step.outcome == "rollover":
            log.info("device %s: %s rolled over to %s %s; counted across the wrap", self.device, point, value, unit)
        elif step.outcome == "reset":
            log.warning(
                "device %s: %s went back to %s %s; counting restarts from there", self.device, point, value, unit
            )
        return Reading(device=self.device, point=f"{point}_delta", value=step.delta, unit=unit, ts=ts)

    def health(self) -> DeviceHealth:
        """A frozen snapshot."""
        return DeviceHealth(
            online=bool(self.online),
            last_seen=self.last_seen,
            consecutive_failures=self.consecutive_failures,
            failures=self.failures,
            overruns=self.overruns,
            rejects=self.rejects,
            out_of_order=self.out_of_order,
            rejected_deltas=sum(c.rejected for c in self.counters.values()),
            counter_resets=sum(c.resets for c in self.counters.values()),
            clock_skew=self.clock_skew,
            readings=self.readings,
        )


def reading(stats: DeviceStats, point: str, value: Value, unit: str, ts: datetime) -> Reading:
    """A reading; None means the device gave no usable value (quality bad)."""
    if value is None:
        return Reading(device=stats.device, point=point, value=None, unit=unit, ts=ts, quality=Quality.bad)
    return Reading(device=stats.device, point=point, value=value, unit=unit, ts=ts)


@dataclass(slots=True, kw_only=True)
class DriverContext:
    """What the hub hands each driver."""

    emit: Emit
    clock: Clock
    settings: DriverSettings
    stats: dict[str, DeviceStats]
    profiles: dict[str, Profile]  # by device id, loaded and checked by the hub
    client_id: str
    mqtt_url: str | None


class Driver(Protocol):
    """A generic driver executing the profiles of its devices."""

    async def start(self) -> None:
        """Begin polling / subscribing; returns once running (devices may still be unreachable)."""

    async def stop(self) -> None:
        """Stop and close connections."""

    async def command(self, device_id: str, point: str, value: Value, timeout_s: float) -> CommandResult:
        """Write a writable point and verify it; raise CommandRefused for a value it cannot take."""


DriverFactory = Callable[[Sequence[DeviceConfig], DriverContext], Driver]


async def cancel_and_wait(tasks: Sequence[asyncio.Task[None]]) -> None:
    """Cancel tasks and wait until they are done, cancelling again if one swallowed it.

    Python 3.11's asyncio.wait_for (which pymodbus awaits on every request) can lose a
    cancellation that arrives as the answer does; a single cancel() could then leave a poller
    running and stop() waiting for ever.
    """
    pending = {t for t in tasks if not t.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.5)
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            log.error("%s ended with %r", task.get_name(), task.exception())
