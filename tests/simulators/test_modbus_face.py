"""A real Modbus master (Debian's mbpoll) against the simulated meters, transfer switch and generator controller."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

import pytest

from service.config.site import Site
from simulators.power import COOLDOWN_S, OVERLOAD_TRIP_DELAY_S
from simulators.runner import Simulation
from tests.simulators.conftest import (
    WORKDAY_10AM,
    devices,
    hold_rooms,
    mbpoll,
    poll,
    read_float,
    read_holding,
    write_holding,
)


def port_of_site(site: Site, device_id: str) -> int:
    port = devices(site)[device_id].port
    assert port is not None
    return port


def port_of(sim: Simulation, device_id: str) -> int:
    return port_of_site(sim.site, device_id)


async def test_mbpoll_reads_the_modelled_meter_values(sim: Simulation) -> None:
    port = port_of(sim, "meter-grid-a")
    model = sim.state()["devices"]["meter-grid-a"]
    volts, power, kwh = [await read_float(port, a) for a in (0x0000, 0x0034, 0x0048)]
    assert volts[0] == pytest.approx(sim.world.meters["meter-grid-a"].voltage_v, rel=1e-5)
    assert power[0] == pytest.approx(sim.world.meters["meter-grid-a"].power_w, rel=1e-5)
    assert power[0] == pytest.approx(model["power_w"], abs=0.1) and power[0] > 10_000
    assert kwh[0] == pytest.approx(model["import_kwh"], rel=1e-5)
    frequency = await read_float(port, 0x0046)
    assert frequency[0] == pytest.approx(50.0, abs=0.1)


async def test_meter_energy_rises_by_power_times_time(sim: Simulation) -> None:
    w = sim.world
    hold_rooms(w, 50.0)  # the whole site at a constant load
    port = port_of(sim, "meter-grid-a")
    (p_before,) = await read_float(port, 0x0034)
    (e_before,) = await read_float(port, 0x0048)
    w.step(3 * 3600)  # speed 0: simulated time moves only here
    (p_after,) = await read_float(port, 0x0034)
    (e_after,) = await read_float(port, 0x0048)
    assert p_after == p_before == pytest.approx(44_000 + 10 * 50, abs=0.5)  # base loads + ten plugs at 50 W
    assert e_after - e_before == pytest.approx(p_before * 3 / 1000, rel=0.005)


async def test_transfer_switch_and_generator_registers(sim: Simulation) -> None:
    ats, gen = port_of(sim, "ats-1-ctrl"), port_of(sim, "genset-1")
    assert await read_holding(ats, 20481, 2) == [1, 2]  # auto, position I
    assert await read_holding(ats, 20486, 2) == [2, 2]  # both sources available
    assert await read_holding(gen, 1408) == [0]  # engine stopped
    sim.fault("source_loss", "grid-a")
    sim.fault("source_loss", "grid-b")
    sim.world.step(10)
    assert await read_holding(ats, 20486, 2) == [0, 0]
    assert await read_holding(gen, 1408) == [3]  # running
    assert (await read_holding(gen, 1410))[0] & 0b11 == 0b10  # generator breaker closed, mains breaker open
    (gen_power,) = await mbpoll(gen, "-t", "4:int", "-B", "-r", "1536")
    assert gen_power == pytest.approx(sim.world.generators["gen-1"].power_kw * 1000, abs=1) and gen_power > 0


async def test_control_keys_written_as_complement_pairs(sim: Simulation) -> None:
    gen = port_of(sim, "genset-1")
    await write_holding(gen, 4104, 35702, 65535 - 35702)  # manual
    await write_holding(gen, 4104, 35705, 65535 - 35705 - 1)  # a start key that does not complement: ignored
    sim.world.step(10)
    assert await read_holding(gen, 1408) == [0]
    await write_holding(gen, 4104, 35705, 65535 - 35705)  # start
    sim.world.step(10)
    assert await read_holding(gen, 1408) == [3]
    assert sim.state()["generators"]["gen-1"]["mode"] == "manual"
    with pytest.raises(ConnectionError, match="Illegal data address"):
        await write_holding(gen, 1408, 0)  # measurements are read-only


async def test_wrong_table_and_function_are_refused(sim: Simulation) -> None:
    meter, gen = port_of(sim, "meter-grid-a"), port_of(sim, "genset-1")
    with pytest.raises(ConnectionError, match="Illegal data address"):
        await mbpoll(meter, "-t", "4", "-r", "52")  # the SDM630 values are input registers
    with pytest.raises(ConnectionError, match="Illegal data address"):
        await mbpoll(gen, "-t", "3", "-r", "1408")  # GenComm is holding registers
    with pytest.raises(ConnectionError, match="Illegal data address"):
        await mbpoll(gen, "-t", "4", "-r", "3000")  # between pages


async def test_interlock_failure_shows_export_at_the_grid_meter(sim: Simulation) -> None:
    gen, meter = port_of(sim, "genset-1"), port_of(sim, "meter-grid-a")
    await write_holding(gen, 4104, 35702, 65535 - 35702)
    await write_holding(gen, 4104, 35705, 65535 - 35705)
    sim.world.step(10)
    sim.fault("interlock_fail", "gen-1")
    assert (await read_holding(gen, 1410))[0] & 0b11 == 0b11  # both breakers closed
    (power,) = await read_float(meter, 0x0034)
    (export_before,) = await read_float(meter, 0x004A)
    sim.world.step(600)
    (export_after,) = await read_float(meter, 0x004A)
    assert power < -50_000
    assert export_after - export_before == pytest.approx(-power * 600 / 3.6e6, rel=0.05)


async def test_garbage_reads_the_vendors_not_available_values(sim: Simulation) -> None:
    meter, gen = port_of(sim, "meter-dept-it"), port_of(sim, "genset-1")
    sim.fault("device_garbage", "meter-dept-it")
    sim.fault("device_garbage", "genset-1")
    values = await read_float(meter, 0x0000, 3)
    assert all(math.isnan(v) for v in values)
    assert await read_holding(gen, 1408, 3) == [0xFFFF, 0xFFFF, 0xFFFF]
    assert await read_holding(gen, 1536, 2) == [0x7FFF, 0xFFFF]
    sim.clear_faults()
    assert not math.isnan((await read_float(meter, 0x0034))[0])


async def test_offline_device_stops_answering_and_comes_back(sim: Simulation) -> None:
    port = port_of(sim, "meter-gen")

    async def answers() -> bool:
        try:
            await read_float(port, 0x0034)
        except ConnectionError:
            return False
        return True

    assert await answers()
    sim.fault("device_offline", "meter-gen")
    await poll(lambda: negate(answers))
    sim.clear_faults()
    await poll(answers)


async def negate(check: Callable[[], Awaitable[bool]]) -> bool:
    return not await check()


async def test_units_behind_one_gateway(demo_site: Site) -> None:
    """Two meters on one host:port (an RS-485 gateway): an offline unit times out at the gateway, the other answers."""
    admin = devices(demo_site)["meter-dept-admin"]
    moved = [
        d.model_copy(update={"port": admin.port, "unit": 2}) if d.id == "meter-dept-it" else d
        for d in demo_site.devices
    ]
    site = demo_site.model_copy(update={"devices": moved})
    assert admin.port is not None
    async with Simulation(site, control_port=None, speed=0, start=WORKDAY_10AM) as sim:
        (it_power,) = await read_float(admin.port, 0x0034, unit=2)
        assert it_power == pytest.approx(sim.world.meters["meter-dept-it"].power_w, rel=1e-5)
        sim.fault("device_offline", "meter-dept-it")
        with pytest.raises(ConnectionError, match="Target device failed to respond"):
            await read_float(admin.port, 0x0034, unit=2)
        (admin_power,) = await read_float(admin.port, 0x0034, unit=1)
        assert admin_power == pytest.approx(sim.world.meters["meter-dept-admin"].power_w, rel=1e-5)


async def test_overload_trip_seen_at_the_controller(demo_site: Site) -> None:
    """A 60 kW set given 64 kW: overload warning bit at once, electrical trip after the delay, engine cooling."""
    small = [g.model_copy(update={"rated_kw": 60.0}) for g in demo_site.generators]
    site = demo_site.model_copy(update={"generators": small})
    gen, gen_meter = port_of_site(site, "genset-1"), port_of_site(site, "meter-gen")
    async with Simulation(site, control_port=None, speed=0, start=WORKDAY_10AM) as sim:
        hold_rooms(sim.world, 2000.0)
        sim.fault("source_loss", "grid-a")
        sim.fault("source_loss", "grid-b")
        sim.world.step(10)
        assert await read_holding(gen, 1408) == [3]
        assert (await read_holding(gen, 1410))[0] & 0b1100_0011 == 0b0100_0010, "on load, overload warning"
        sim.world.step(OVERLOAD_TRIP_DELAY_S)
        assert await read_holding(gen, 1408) == [4], "cooling down off load"
        assert (await read_holding(gen, 1410))[0] & 0b1100_0011 == 0b1000_0001, "electrical trip, breaker open"
        assert await read_holding(gen, 1536, 2) == [0, 0]
        assert await read_float(gen_meter, 0x0034) == [0.0]
        sim.world.step(COOLDOWN_S)
        assert await read_holding(gen, 1408) == [0]
        await write_holding(gen, 4104, 35707, 65535 - 35707)  # reset alarms
        assert not (await read_holding(gen, 1410))[0] & 0b1000_0000
