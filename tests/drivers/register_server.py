"""A real pymodbus TCP server (SimDevice/SimData) whose registers a test owns and changes live."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from dataclasses import dataclass, field

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from drivers.codec import codec_for
from drivers.profiles import ModbusProfile
from tests.servers import free_port


def _runs(addresses: set[int]) -> list[tuple[int, int]]:
    """Contiguous runs (start, count) of addresses."""
    out: list[tuple[int, int]] = []
    for a in sorted(addresses):
        if out and out[-1][0] + out[-1][1] == a:
            out[-1] = (out[-1][0], out[-1][1] + 1)
        else:
            out.append((a, 1))
    return out


@dataclass
class Unit:
    """One unit id's registers: only the addresses present exist; others answer ILLEGAL_ADDRESS."""

    holding: dict[int, int] = field(default_factory=dict)
    input: dict[int, int] = field(default_factory=dict)
    readonly: set[int] = field(default_factory=set)  # holding addresses that refuse writes

    def put(self, profile: ModbusProfile, name: str, value: float | int) -> None:
        """Store a point's value the way the profile lays it out."""
        point = profile.point(name)
        regs = codec_for(profile, point).encode(value)
        self.put_raw(point.table, point.address, regs)

    def put_raw(self, table: str, address: int, registers: list[int]) -> None:
        """Store raw registers."""
        target = self.holding if table == "holding" else self.input
        for i, r in enumerate(registers):
            target[address + i] = r


class RegisterServer:
    """Serves `units` on a free loopback port; `hang` makes it stop answering, `writes` logs writes."""

    def __init__(self, units: dict[int, Unit]) -> None:
        self.units = units
        self.port = free_port()
        self.writes: list[tuple[int, int, list[int]]] = []
        self.reads: list[tuple[int, int, int, int]] = []  # (unit, function, address, count)
        self.hang = False
        self.fail_code: ExcCodes | None = None
        self.delay_s = 0.0  # answer every request this late
        self.on_write: Callable[[int, int, list[int]], list[int]] | None = None  # what the device stores
        self.in_flight = 0
        self.max_in_flight = 0
        self.requests = 0  # requests served, exception responses included
        self._server: ModbusTcpServer | None = None

    def _device(self, unit_id: int, unit: Unit) -> SimDevice:
        def blocks(regs: dict[int, int], ro: set[int]) -> list[SimData]:
            out = [
                SimData(
                    address=start,
                    count=1,
                    values=[regs[a] for a in range(start, start + n)],
                    datatype=DataType.REGISTERS,
                )
                for start, n in _runs(set(regs) - ro)
            ]
            out += [
                SimData(
                    address=start,
                    count=1,
                    values=[regs[a] for a in range(start, start + n)],
                    datatype=DataType.REGISTERS,
                    readonly=True,
                )
                for start, n in _runs(set(regs) & ro)
            ]
            # A table with no registers still needs one block; put it where no profile looks.
            return out or [SimData(address=65000, count=1, values=[0], datatype=DataType.REGISTERS)]

        bits = [SimData(address=0, count=16, values=False, datatype=DataType.BITS)]
        return SimDevice(
            id=unit_id,
            simdata=(bits, list(bits), blocks(unit.holding, unit.readonly), blocks(unit.input, set())),
            action=functools.partial(self._action, unit_id),
        )

    async def _action(
        self,
        unit_id: int,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        current: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.requests += 1
        try:
            if self.hang:
                await asyncio.sleep(3600)
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            if self.fail_code is not None:
                return self.fail_code
            unit = self.units[unit_id]
            table = unit.input if function_code == 4 else unit.holding
            if set_values is not None:
                written = [int(v) for v in set_values]
                self.writes.append((unit_id, address, written))
                stored = self.on_write(unit_id, address, written) if self.on_write else written
                for i, v in enumerate(stored):
                    table[address + i] = v
                return None
            self.reads.append((unit_id, function_code, address, count))
            for a in range(address, address + count):
                current[a - start_address] = table.get(a, 0)
            return None
        finally:
            self.in_flight -= 1

    async def start(self) -> RegisterServer:
        """Listen."""
        devices = [self._device(uid, unit) for uid, unit in self.units.items()]
        self._server = ModbusTcpServer(devices, address=("127.0.0.1", self.port))
        await self._server.serve_forever(background=True)
        return self

    async def stop(self) -> None:
        """Close the listener and every connection."""
        if self._server is not None:
            await self._server.shutdown()  # type: ignore[no-untyped-call]
            self._server = None

    async def __aenter__(self) -> RegisterServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
