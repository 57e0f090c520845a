"""The one object the service talks to: every device of a site, readings out, verified commands in."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from types import TracebackType

from drivers.base import (
    Clock,
    DeviceConfig,
    DeviceStats,
    DriverContext,
    DriverFactory,
    DriverSettings,
    Emit,
    Event,
    log,
)
from drivers.modbus import ModbusDriver
from drivers.mqtt import MqttDriver
from drivers.profiles import Profile, load_profile
from drivers.types import CommandRefused, CommandResult, DeviceHealth, DeviceStatus, Reading, Value

# The generic drivers by the site file's `driver:` value; adding a protocol is adding an entry.
DRIVERS: dict[str, DriverFactory] = {"modbus": ModbusDriver, "mqtt": MqttDriver}


def _utcnow() -> datetime:
    return datetime.now(UTC)


class DriverHub:
    """Reads every device of a site and sends it verified commands.

    Readings and status changes go to `emit` in batches (one per poll or message); `emit` must be
    cheap and must not block. Nothing from pymodbus or paho leaves this package.
    """

    def __init__(
        self,
        devices: Sequence[DeviceConfig],
        *,
        mqtt_url: str | None,
        emit: Callable[[Sequence[Reading | DeviceStatus]], None],
        client_id: str = "wattkeeper",
        clock: Callable[[], datetime] | None = None,
        settings: DriverSettings | None = None,
    ) -> None:
        self._sink: Emit = emit
        self._profiles: dict[str, Profile] = {}
        self._driver_of: dict[str, str] = {}
        self._stats: dict[str, DeviceStats] = {}
        grouped: dict[str, list[DeviceConfig]] = {}
        for dev in devices:
            if dev.id in self._profiles:
                raise ValueError(f"device id '{dev.id}' appears twice")
            if dev.driver not in DRIVERS:
                raise ValueError(f"device {dev.id}: unknown driver '{dev.driver}' (known: {', '.join(DRIVERS)})")
            profile = load_profile(dev.profile)
            if profile.driver != dev.driver:
                raise ValueError(f"device {dev.id}: profile '{dev.profile}' is for {profile.driver}, not {dev.driver}")
            self._profiles[dev.id] = profile
            self._driver_of[dev.id] = dev.driver
            self._stats[dev.id] = DeviceStats(dev.id, dev.rated_kw)
            grouped.setdefault(dev.driver, []).append(dev)
        self.readings_total = 0
        self.emit_errors = 0
        self._clock: Clock = clock or _utcnow
        ctx = DriverContext(
            emit=self._emit,
            clock=self._clock,
            settings=settings or DriverSettings(),
            stats=self._stats,
            profiles=self._profiles,
            client_id=client_id,
            mqtt_url=mqtt_url,
        )
        self._drivers = {name: DRIVERS[name](devs, ctx) for name, devs in grouped.items()}
        self._started = False

    def _emit(self, batch: Sequence[Event]) -> None:
        stats, readings = self._stats, 0
        for event in batch:
            if isinstance(event, Reading):
                stats[event.device].readings += 1
                readings += 1
        self.readings_total += readings
        try:
            self._sink(batch)
        except Exception:  # the consumer's bug must not stop polling
            self.emit_errors += 1
            if self.emit_errors == 1:
                log.exception("emit callback failed (later failures are only counted)")

    async def start(self) -> None:
        """Start polling and subscribing; returns at once (devices come online as they answer)."""
        if self._started:
            return
        for driver in self._drivers.values():
            await driver.start()
        self._started = True

    async def stop(self) -> None:
        """Stop every driver and close its connections."""
        if not self._started:
            return
        await asyncio.gather(*(d.stop() for d in self._drivers.values()))
        self._started = False

    async def __aenter__(self) -> DriverHub:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def command(self, device_id: str, point: str, value: Value, *, timeout_s: float = 5.0) -> CommandResult:
        """Write a writable point and verify it by readback: `confirmed`, `failed` or `refused`; never raises."""

        def refused(why: str) -> CommandResult:
            log.info("command %s.%s=%r refused: %s", device_id, point, value, why)
            return CommandResult(device=device_id, point=point, requested=value, status="refused", detail=why)

        profile = self._profiles.get(device_id)
        if profile is None:
            return refused(f"unknown device '{device_id}'")
        try:
            spec = profile.point(point)
        except KeyError:
            return refused(f"profile '{profile.name}' has no point '{point}'")
        if not spec.writable:
            return refused(f"'{point}' of profile '{profile.name}' is read-only")
        if not self._started:
            return refused("drivers are not running")
        try:
            result = await self._drivers[self._driver_of[device_id]].command(device_id, point, value, timeout_s)
        except CommandRefused as exc:
            return refused(str(exc))
        except Exception as exc:  # a driver bug becomes a failed command, not a crashed request
            log.exception("command %s.%s=%r failed unexpectedly", device_id, point, value)
            return CommandResult(
                device=device_id, point=point, requested=value, status="failed", detail=f"internal error: {exc}"
            )
        log.info("command %s.%s=%r %s %s", device_id, point, value, result.status, result.detail)
        return result

    def health(self) -> dict[str, DeviceHealth]:
        """Per-device link and data-quality snapshot."""
        return {device: stats.health() for device, stats in self._stats.items()}

    @property
    def mqtt_connected(self) -> bool | None:
        """Whether the MQTT broker connection is up; None when the site has no MQTT devices."""
        driver = self._drivers.get("mqtt")
        return driver.connected if isinstance(driver, MqttDriver) else None

    @property
    def mqtt_loop_errors(self) -> int:
        """Unexpected failures of the MQTT bridge's loop (bugs), each logged and followed by a reconnect."""
        driver = self._drivers.get("mqtt")
        return driver.loop_errors if isinstance(driver, MqttDriver) else 0

    @property
    def modbus_requests(self) -> int:
        """Modbus requests answered since start (every read and write, exception responses included)."""
        driver = self._drivers.get("modbus")
        return driver.requests if isinstance(driver, ModbusDriver) else 0


class EventStream:
    """An `emit` target to iterate: `stream = EventStream()`, `DriverHub(..., emit=stream.put)`, `async for`."""

    def __init__(self, maxsize: int = 10_000) -> None:
        self._queue: asyncio.Queue[tuple[Event, ...]] = asyncio.Queue(maxsize)
        self.dropped = 0  # batches dropped because nobody read them

    def put(self, batch: Sequence[Event]) -> None:
        """Queue a batch; drop it (counted) when the reader is too far behind."""
        try:
            self._queue.put_nowait(tuple(batch))
        except asyncio.QueueFull:
            self.dropped += 1

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> tuple[Event, ...]:
        return await self._queue.get()
