"""Modbus TCP face of the simulated devices: one pymodbus SimDevice server per host:port of the site file.

Registers are rendered from the world on every request (SimDevice action hook), so a master always
reads the present state; writes reach the world through the same hook.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from service.config.site import Device
from simulators.registers import REGISTER_MAPS, RegisterMap
from simulators.world import World

log = logging.getLogger(__name__)

READ_CODES = {"input": frozenset({4}), "holding": frozenset({3})}
WRITE_CODES = frozenset({6, 16})


@dataclass(frozen=True, slots=True)
class _Unit:
    device: Device
    rmap: RegisterMap


def _simdata(rmap: RegisterMap) -> list[SimData]:
    """SimData blocks for a register map: read-only runs with the writable registers cut out."""
    out: list[SimData] = []
    cuts = sorted(rmap.writable)
    for start, count in rmap.blocks:
        address, end = start, start + count
        for w_start, w_count in cuts:
            if start <= w_start < end:
                if w_start > address:
                    out.append(SimData(address, count=w_start - address, datatype=DataType.REGISTERS, readonly=True))
                out.append(SimData(w_start, count=w_count, datatype=DataType.REGISTERS))
                address = w_start + w_count
        if address < end:
            out.append(SimData(address, count=end - address, datatype=DataType.REGISTERS, readonly=True))
    return out


class ModbusEndpoint:
    """One host:port: a device of its own, or several units behind one gateway."""

    def __init__(self, world: World, host: str, port: int, devices: list[Device]) -> None:
        self.world = world
        self.host = host
        self.port = port
        self.units = {d.unit: _Unit(d, REGISTER_MAPS[d.profile]) for d in devices}
        self._server: ModbusTcpServer | None = None

    def wanted(self) -> bool:
        """Whether the endpoint should listen now."""
        # a lone device that is offline takes its port down; a gateway stays up and reports the dead unit
        return len(self.units) > 1 or all(self.world.is_online(u.device.id) for u in self.units.values())

    async def start(self) -> None:
        """Listen on host:port."""
        simdevices = [
            SimDevice(id=unit, simdata=_simdata(u.rmap), action=partial(self._action, u))
            for unit, u in self.units.items()
        ]
        server = ModbusTcpServer(simdevices, address=(self.host, self.port))
        try:
            await server.serve_forever(background=True)
        except RuntimeError:
            names = ", ".join(u.device.id for u in self.units.values())
            raise OSError(f"cannot listen on {self.host}:{self.port} for {names} (port in use?)") from None
        self._server = server

    async def stop(self) -> None:
        """Stop listening and drop every connection, as a device that lost power."""
        if self._server is not None:
            server, self._server = self._server, None
            await server.shutdown()  # type: ignore[no-untyped-call]

    async def sync(self) -> None:
        """Follow device_offline faults: go silent or come back."""
        wanted = self.wanted()
        if wanted and self._server is None:
            await self.start()
            log.info("modbus %s:%d back online", self.host, self.port)
        elif not wanted and self._server is not None:
            await self.stop()
            log.info("modbus %s:%d offline", self.host, self.port)

    async def _action(
        self,
        unit: _Unit,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """Serve one request: refuse what the device would refuse, render reads, pass writes on."""
        device_id, rmap = unit.device.id, unit.rmap
        if not self.world.is_online(device_id):
            return ExcCodes.GATEWAY_NO_RESPONSE
        if set_values is not None:
            if rmap.table != "holding" or function_code not in WRITE_CODES or rmap.write is None:
                return ExcCodes.ILLEGAL_FUNCTION
            rmap.write(self.world, device_id, address, [int(v) for v in set_values])
            return None
        if function_code not in READ_CODES["input"] | READ_CODES["holding"]:
            return ExcCodes.ILLEGAL_FUNCTION
        if function_code not in READ_CODES[rmap.table]:
            return ExcCodes.ILLEGAL_ADDRESS
        image = rmap.render(self.world, device_id)
        writable = {a for s, n in rmap.writable for a in range(s, s + n)}
        for a in range(address, address + count):
            if a not in writable:
                registers[a - start_address] = image.get(a, rmap.fill)
        return None


class ModbusFace:
    """Every Modbus device of a site."""

    def __init__(self, world: World) -> None:
        groups: dict[tuple[str, int], list[Device]] = {}
        for dev in world.site.devices:
            if dev.driver == "modbus" and dev.host and dev.port and dev.profile in REGISTER_MAPS:
                groups.setdefault((dev.host, dev.port), []).append(dev)
        self.endpoints = [ModbusEndpoint(world, host, port, devs) for (host, port), devs in groups.items()]

    async def start(self) -> None:
        """Start every endpoint that is online; raise if a port cannot be taken."""
        try:
            for ep in self.endpoints:
                if ep.wanted():
                    await ep.start()
        except OSError:
            await self.stop()
            raise

    async def sync(self) -> None:
        """Follow the world's device_offline faults."""
        for ep in self.endpoints:
            await ep.sync()

    async def stop(self) -> None:
        """Stop every endpoint."""
        for ep in self.endpoints:
            await ep.stop()
