"""Generic Modbus TCP driver: one coordinator per connection polls its devices into readings.

One connection per host:port with one request in flight; each device is polled on its own
interval, its points merged into block reads; library errors become failures and quality,
never exceptions that leave this module.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import zlib
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Literal

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException
from pymodbus.pdu import ModbusPDU

from drivers.base import (
    DeviceConfig,
    DeviceStats,
    DriverContext,
    DriverSettings,
    Event,
    cancel_and_wait,
    log,
    reading,
)
from drivers.codec import PointCodec, codec_for
from drivers.profiles import ModbusPoint, ModbusProfile
from drivers.types import CommandRefused, CommandResult, CommandStatus, Value

Table = Literal["input", "holding"]
ILLEGAL_ADDRESS = 2  # Modbus exception codes meaning "these registers do not exist"
ILLEGAL_VALUE = 3


@dataclass(frozen=True, slots=True)
class Block:
    """One read request: `count` registers from `address` covering `points`."""

    table: Table
    address: int
    count: int
    points: tuple[ModbusPoint, ...]

    @property
    def gaps(self) -> bool:
        """Whether the block reads registers no point uses."""
        return sum(p.count for p in self.points) < self.count


def plan_blocks(points: Sequence[ModbusPoint], *, max_block: int, max_gap: int) -> list[Block]:
    """Merge points into as few reads as possible: same table, <= max_block registers, gaps <= max_gap."""
    blocks: list[Block] = []
    current: list[ModbusPoint] = []
    start = end = 0
    for p in sorted(points, key=lambda p: (p.table, p.address)):
        joins = current and p.table == current[0].table and p.address - end <= max_gap
        if joins and p.address + p.count - start <= max_block:
            current.append(p)
            end = max(end, p.address + p.count)
            continue
        if current:
            blocks.append(Block(current[0].table, start, end - start, tuple(current)))
        current, start, end = [p], p.address, p.address + p.count
    if current:
        blocks.append(Block(current[0].table, start, end - start, tuple(current)))
    return blocks


class LinkDown(Exception):
    """The connection failed (refused, reset, timed out); the request may not have reached the device."""


class DeviceError(Exception):
    """The device (or its gateway) answered with a Modbus exception."""

    def __init__(self, code: int) -> None:
        super().__init__(f"Modbus exception code {code}")
        self.code = code


class Link:
    """One TCP connection to host:port: one request in flight, reconnects with backoff."""

    def __init__(self, host: str, port: int, settings: DriverSettings) -> None:
        self.name = f"{host}:{port}"
        self._host, self._port = host, port
        self._settings = settings
        self._client: AsyncModbusTcpClient | None = None  # made on first use: it needs a running loop
        self._lock = asyncio.Lock()
        self._retry_at = 0.0
        self._backoff = settings.reconnect_min_s
        self.requests = 0  # requests answered (reads and writes, exception responses included)

    async def read(self, table: Table, address: int, count: int, unit: int) -> list[int]:
        """Read registers; LinkDown or DeviceError on failure."""
        async with self._lock:
            client = await self._connect()
            if table == "input":
                pdu = await self._call(client.read_input_registers(address, count=count, device_id=unit))
            else:
                pdu = await self._call(client.read_holding_registers(address, count=count, device_id=unit))
            registers = list(pdu.registers)
            if len(registers) != count:
                self._drop()
                raise LinkDown(f"asked for {count} registers, got {len(registers)}")
            return registers

    async def write(self, address: int, values: list[int], unit: int) -> None:
        """Write holding registers (function 16); LinkDown or DeviceError on failure."""
        async with self._lock:
            client = await self._connect()
            await self._call(client.write_registers(address, values, device_id=unit))

    def close(self) -> None:
        """Close the connection."""
        if self._client is not None:
            self._client.close()

    async def _connect(self) -> AsyncModbusTcpClient:
        if self._client is None:
            # pymodbus' own retries and reconnect are off: retries and backoff are decided here.
            self._client = AsyncModbusTcpClient(
                self._host, port=self._port, timeout=self._settings.modbus_timeout_s, retries=0, reconnect_delay=0
            )
        if self._client.connected:
            return self._client
        loop = asyncio.get_running_loop()
        if loop.time() < self._retry_at:
            raise LinkDown(f"{self.name}: reconnecting in {self._retry_at - loop.time():.1f} s")
        if not await self._client.connect():
            self._retry_at = loop.time() + self._backoff
            self._backoff = min(self._backoff * 2, self._settings.reconnect_max_s)
            raise LinkDown(f"{self.name}: cannot connect")
        self._backoff = self._settings.reconnect_min_s
        return self._client

    async def _call(self, request: Awaitable[ModbusPDU]) -> ModbusPDU:
        try:
            # pymodbus times the answer out itself; this only guards against a hung connect or close.
            async with asyncio.timeout(self._settings.modbus_timeout_s * 2):
                pdu = await request
        except (ModbusException, TimeoutError, OSError) as exc:
            # After a timeout the TCP stream may still deliver the late answer: start afresh.
            self._drop()
            raise LinkDown(f"{self.name}: {type(exc).__name__}: {exc}") from None
        self.requests += 1
        if pdu.isError():
            raise DeviceError(pdu.exception_code)
        return pdu

    def _drop(self) -> None:
        self.close()


@dataclass(frozen=True, slots=True)
class _Slot:
    """Where a point sits in a block read."""

    name: str
    offset: int
    count: int
    codec: PointCodec
    unit: str
    counter: bool
    resolution: float
    wraps_at: float | None


class ModbusDevice:
    """One device on a link: its profile, block plan and bookkeeping."""

    def __init__(self, config: DeviceConfig, profile: ModbusProfile, link: Link, stats: DeviceStats) -> None:
        self.id = config.id
        self.unit = config.unit
        self.poll_s = config.poll_s
        self.profile = profile
        self.link = link
        self.stats = stats
        self._polled = [p for p in profile.points if p.polled]
        # Fallbacks when the device refuses reads through unmapped registers: gapless, then point by point.
        self._plans = [(profile.max_block, profile.max_gap), (profile.max_block, 0), (1, 0)]
        self.level = 0
        self.blocks = self._plan()
        self.missing: set[str] = set()  # points the device says it does not have

    def _plan(self) -> list[tuple[Block, list[_Slot]]]:
        out = []
        max_block, max_gap = self._plans[self.level]
        for block in plan_blocks(self._polled, max_block=max_block, max_gap=max_gap):
            slots = [
                _Slot(
                    p.name,
                    p.address - block.address,
                    p.count,
                    codec_for(self.profile, p),
                    p.unit,
                    p.kind == "counter",
                    p.resolution,
                    p.wraps_at,
                )
                for p in block.points
            ]
            out.append((block, slots))
        return out

    def degrade(self) -> bool:
        """Use the next, finer block plan; False when already reading point by point."""
        if self.level == len(self._plans) - 1:
            return False
        self.level += 1
        self.blocks = self._plan()
        log.warning(
            "device %s refuses merged reads; reading %s", self.id, ("gapless blocks", "point by point")[self.level - 1]
        )
        return True

    def interval(self, settings: DriverSettings) -> float:
        """Seconds to the next poll: the device's own interval, stretched while it is offline."""
        excess = self.stats.consecutive_failures - settings.offline_after
        if excess < 0:
            return self.poll_s
        return max(self.poll_s, min(self.poll_s * 2.0 ** (excess + 1), settings.offline_poll_max_s))


class Coordinator:
    """Polls every device of one link on its schedule, one request at a time."""

    def __init__(self, link: Link, devices: list[ModbusDevice], ctx: DriverContext) -> None:
        self.link = link
        self.devices = devices
        self.ctx = ctx

    async def run(self) -> None:
        """Poll forever; a poll that ends after the next one was due counts as an overrun."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        # Spread first polls over the interval so 500 meters do not all ask in the same millisecond.
        heap = [
            (start + d.poll_s * (zlib.crc32(d.id.encode()) % 1000) / 1000, i, d) for i, d in enumerate(self.devices)
        ]
        heapq.heapify(heap)
        settings = self.ctx.settings
        while True:
            due, i, dev = heap[0]
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            heapq.heappop(heap)
            try:
                await self.poll(dev)
            except Exception:  # a bug must not stop the other devices on this link
                log.exception("device %s: poll failed unexpectedly", dev.id)
            interval = dev.interval(settings)
            next_due = due + interval
            now = loop.time()
            if now > next_due:
                dev.stats.overruns += 1
                next_due += interval * math.ceil((now - next_due) / interval)
            heapq.heappush(heap, (next_due, i, dev))

    async def poll(self, dev: ModbusDevice) -> None:
        """Read every block of one device, emit readings, track online/offline."""
        results: list[tuple[list[_Slot], list[int] | None]] = []
        failure = ""
        settings = self.ctx.settings
        pending = list(dev.blocks)
        while pending and not failure:
            block, slots = pending[0]
            try:
                registers = await self._read(dev, block)
            except DeviceError as exc:
                if exc.code in (ILLEGAL_ADDRESS, ILLEGAL_VALUE):
                    if (block.gaps or len(slots) > 1) and dev.degrade():
                        results.clear()
                        pending = list(dev.blocks)
                        continue
                    # Point by point and still refused: the profile names a register this device lacks.
                    if slots[0].name not in dev.missing:
                        dev.missing.add(slots[0].name)
                        log.warning("device %s has no register for '%s' (%s)", dev.id, slots[0].name, exc)
                    results.append((slots, None))
                    pending.pop(0)
                    continue
                failure = str(exc)
            except LinkDown as exc:
                failure = str(exc)
            else:
                results.append((slots, registers))
                pending.pop(0)

        stats = dev.stats
        ts = self.ctx.clock()
        events: list[Event] = []
        if failure:
            stats.failures += 1
            stats.consecutive_failures += 1
            if stats.consecutive_failures >= settings.offline_after:
                status = stats.set_online(False, ts, failure)
                if status:
                    events.append(status)
        else:
            stats.consecutive_failures = 0
            stats.last_seen = ts
            status = stats.set_online(True, ts)
            if status:
                events.append(status)
        for slots, regs in results:
            for slot in slots:
                value = None
                if regs is not None:
                    value = slot.codec.decode(regs[slot.offset : slot.offset + slot.count])[0]
                events.append(reading(stats, slot.name, value, slot.unit, ts))
                if slot.counter and value is not None:
                    events.append(
                        stats.counter_delta(
                            slot.name,
                            float(value),
                            slot.unit,
                            ts,
                            resolution=slot.resolution,
                            wraps_at=slot.wraps_at,
                        )
                    )
        if events:
            self.ctx.emit(events)

    async def _read(self, dev: ModbusDevice, block: Block) -> list[int]:
        settings = self.ctx.settings
        for attempt in range(settings.modbus_retries + 1):
            try:
                return await self.link.read(block.table, block.address, block.count, dev.unit)
            except (LinkDown, DeviceError) as exc:
                illegal = isinstance(exc, DeviceError) and exc.code in (ILLEGAL_ADDRESS, ILLEGAL_VALUE)
                if illegal or attempt == settings.modbus_retries:
                    raise
                await asyncio.sleep(settings.retry_delay_s * 2**attempt)
        raise AssertionError("unreachable")


class ModbusDriver:
    """All Modbus devices of a site: links grouped by host:port, one coordinator task per link."""

    def __init__(self, devices: Sequence[DeviceConfig], ctx: DriverContext) -> None:
        self.ctx = ctx
        self._links: dict[tuple[str, int], Link] = {}
        self._devices: dict[str, ModbusDevice] = {}
        by_link: dict[tuple[str, int], list[ModbusDevice]] = {}
        for cfg in devices:
            profile = ctx.profiles[cfg.id]
            if not isinstance(profile, ModbusProfile):
                raise ValueError(f"device {cfg.id}: profile '{cfg.profile}' is not a Modbus profile")
            if cfg.host is None or cfg.port is None:
                raise ValueError(f"device {cfg.id}: a Modbus device needs host and port")
            key = (cfg.host, cfg.port)
            link = self._links.get(key) or self._links.setdefault(key, Link(cfg.host, cfg.port, ctx.settings))
            dev = ModbusDevice(cfg, profile, link, ctx.stats[cfg.id])
            self._devices[cfg.id] = dev
            by_link.setdefault(key, []).append(dev)
        self._coordinators = [Coordinator(self._links[k], devs, ctx) for k, devs in by_link.items()]
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Start one coordinator per link."""
        self._tasks = [asyncio.create_task(c.run(), name=f"modbus {c.link.name}") for c in self._coordinators]

    async def stop(self) -> None:
        """Cancel the coordinators and close the links."""
        await cancel_and_wait(self._tasks)
        self._tasks = []
        for link in self._links.values():
            link.close()

    @property
    def requests(self) -> int:
        """Modbus requests answered on every link since start."""
        return sum(link.requests for link in self._links.values())

    async def command(self, device_id: str, point: str, value: Value, timeout_s: float) -> CommandResult:
        """Write a writable point and verify it within `timeout_s`: a value by reading it back, a
        control key by reading back the effect its profile declares."""
        dev = self._devices[device_id]
        p = dev.profile.point(point)
        codec = codec_for(dev.profile, p)
        registers, requested = _encode_command(p, codec, value)
        if p.write_as == "complement_pair":
            return await self._send_key(dev, p, value, int(requested), registers, timeout_s)
        return await self._write_value(dev, p, value, codec, registers, timeout_s)

    async def _write_value(
        self,
        dev: ModbusDevice,
        p: ModbusPoint,
        requested: Value,
        codec: PointCodec,
        registers: list[int],
        timeout_s: float,
    ) -> CommandResult:
        """Write registers, read them back; one retry of the write before `failed`."""
        last = "no attempt finished"
        observed: Value = None
        try:
            async with asyncio.timeout(timeout_s):
                for _attempt in range(2):
                    try:
                        await dev.link.write(p.address, registers, dev.unit)
                        back = await dev.link.read("holding", p.address, len(registers), dev.unit)
                    except (LinkDown, DeviceError) as exc:
                        last = str(exc)
                        continue
                    observed = codec.decode(back)[0]
                    if back == registers:
                        return _result(dev, p, requested, "confirmed", observed)
                    last = f"read back {observed!r}"
        except TimeoutError:
            last = f"no confirmation within {timeout_s} s ({last})"
        return _result(dev, p, requested, "failed", observed, last)

    async def _send_key(
        self, dev: ModbusDevice, p: ModbusPoint, requested: Value, key: int, registers: list[int], timeout_s: float
    ) -> CommandResult:
        """Write a control key, then read its effect point until it shows the effect or time is up.

        The controller consumes a key (reading the key registers back shows nothing), so the key is
        confirmed only by what it does: `observed` is the effect point's value, `detail` names it.
        A write that fails on the link is sent once more; a key the controller refuses (a Modbus
        exception) fails at once, as the same key would be refused again.
        """
        effect = p.effects[key]
        target = dev.profile.point(effect.point)
        target_codec = codec_for(dev.profile, target)
        name = p.enum[key]
        observed: Value = None
        last = "no attempt finished"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        pause_s = min(dev.poll_s, 0.25, timeout_s / 10)
        try:
            async with asyncio.timeout(timeout_s):
                for attempt in range(2):
                    try:
                        await dev.link.write(p.address, registers, dev.unit)
                        break
                    except DeviceError as exc:
                        return _result(dev, p, requested, "failed", None, f"the controller refused key '{name}': {exc}")
                    except LinkDown as exc:
                        last = f"write failed: {exc}"
                        if attempt == 1:
                            return _result(dev, p, requested, "failed", None, last)
                while True:
                    try:
                        back = await dev.link.read(target.table, target.address, target.count, dev.unit)
                    except (LinkDown, DeviceError) as exc:
                        last = f"reading {target.name} failed: {exc}"
                    else:
                        observed = target_codec.decode(back)[0]
                        shown = _describe(target, observed)
                        if effect.shows(observed):
                            return _result(dev, p, requested, "confirmed", observed, f"{target.name} = {shown}")
                        last = f"{target.name} = {shown}"
                    await asyncio.sleep(max(0.0, min(pause_s, deadline - loop.time())))
        except TimeoutError:
            last = f"key '{name}' sent, no effect within {timeout_s} s: {last}"
        return _result(dev, p, requested, "failed", observed, last)


def _describe(point: ModbusPoint, value: Value) -> str:
    """A value read back, with its enum meaning where the profile gives one."""
    if value is None:
        return "not available"
    meaning = point.enum.get(value) if isinstance(value, int) else None
    return f"{value} ({meaning})" if meaning else repr(value)


def _result(
    dev: ModbusDevice, p: ModbusPoint, requested: Value, status: CommandStatus, observed: Value, detail: str = ""
) -> CommandResult:
    return CommandResult(
        device=dev.id, point=p.name, requested=requested, status=status, observed=observed, detail=detail
    )


def _encode_command(point: ModbusPoint, codec: PointCodec, value: Value) -> tuple[list[int], int | float]:
    """Registers to write and the number they stand for; CommandRefused if the value cannot be sent."""
    if isinstance(value, str) and point.enum:
        codes = [code for code, name in point.enum.items() if name == value]
        if not codes:
            raise CommandRefused(f"'{value}' is not one of {sorted(point.enum.values())}")
        value = codes[0]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CommandRefused(f"{value!r} is not a number for '{point.name}'")
    if point.enum and value not in point.enum:
        raise CommandRefused(f"{value!r} is not one of {sorted(point.enum)} for '{point.name}'")
    try:
        raw = codec.to_raw(value)
        registers = codec.encode(value)
    except ValueError as exc:
        raise CommandRefused(f"{point.name}: {exc}") from None
    if point.write_as == "complement_pair":
        return [int(raw), 0xFFFF - int(raw)], raw
    return registers, raw
