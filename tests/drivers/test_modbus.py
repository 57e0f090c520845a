"""The Modbus engine against a real pymodbus server (SimDevice) over loopback TCP."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from pymodbus.constants import ExcCodes

from drivers.base import DriverSettings
from drivers.hub import DriverHub
from drivers.modbus import ModbusDriver, plan_blocks
from drivers.profiles import ModbusProfile, Profile, known_profiles, load_profile
from drivers.types import Quality
from tests.drivers.helpers import FAST, Recorder, modbus, modbus_dev, wait_until
from tests.drivers.register_server import RegisterServer, Unit
from tests.drivers.tcp_gate import TcpGate

MODBUS_PROFILES = sorted(n for n in known_profiles() if load_profile(n).driver == "modbus")


def sample_values(profile: ModbusProfile) -> dict[str, float | int]:
    """A distinct, valid value for every polled point."""
    out: dict[str, float | int] = {}
    for i, p in enumerate(x for x in profile.points if x.polled):
        if p.enum:
            out[p.name] = sorted(c for c in p.enum if c not in profile.sentinels_for(p))[-1]
        elif p.type.startswith("float"):
            out[p.name] = 100.25 + i
        else:
            out[p.name] = round((100 + i) * p.scale + p.offset, 6)
    return out


def unit_with(profile: ModbusProfile, values: dict[str, Any], fill_gaps: bool = False) -> Unit:
    unit = Unit()
    for name, value in values.items():
        unit.put(profile, name, value)
    if fill_gaps:
        for table in (unit.input, unit.holding):
            if table:
                for a in range(min(table), max(table) + 1):
                    table.setdefault(a, 0)
    return unit


# --- block planning (pure) ---


def test_sdm630_plan_merges_contiguous_points_and_reads_through_small_gaps() -> None:
    p = modbus("sdm630")
    blocks = plan_blocks(p.points, max_block=p.max_block, max_gap=p.max_gap)
    assert [(b.table, b.address, b.count) for b in blocks] == [
        ("input", 0x00, 18),  # voltages, currents, phase powers: contiguous
        ("input", 0x34, 24),  # total W .. export kWh, through gaps of 8 and 6 registers
        ("input", 0x156, 2),  # total kWh, far away
    ]
    assert blocks[1].gaps and not blocks[0].gaps


def test_plan_respects_max_block_tables_and_gap_limit() -> None:
    p = modbus("sdm630")
    assert all(b.count <= 10 for b in plan_blocks(p.points, max_block=10, max_gap=8))
    assert len(plan_blocks(p.points, max_block=125, max_gap=0)) == 5  # 0x00, 0x34, 0x3E, 0x46-0x4B, 0x156
    assert len(plan_blocks(p.points, max_block=1, max_gap=0)) == len(p.points)
    atys = modbus("atys-pm")
    assert [(b.address, b.count) for b in plan_blocks(atys.points, max_block=125, max_gap=8)] == [(20481, 10)]


def test_gencomm_control_key_is_never_polled() -> None:
    p = modbus("dse-gencomm")
    blocks = plan_blocks([x for x in p.points if x.polled], max_block=125, max_gap=8)
    assert all(4104 not in range(b.address, b.address + b.count) for b in blocks)
    assert [(b.address, b.count) for b in blocks] == [
        (772, 1),
        (1029, 9),
        (1059, 3),
        (1408, 3),
        (1536, 2),
        (1800, 10),
    ]


def _float_meter(points: int) -> ModbusProfile:
    """A meter of `points` contiguous float32 input registers (2 registers each, no gaps)."""
    return ModbusProfile.model_validate(
        {
            "name": "test-wide",
            "driver": "modbus",
            "device": "wide test meter",
            "documentation": "test",
            "points": [
                {"name": f"v{i:03d}", "table": "input", "address": 2 * i, "type": "float32", "unit": "V"}
                for i in range(points)
            ],
        }
    )


def test_200_float32_points_split_into_reads_of_at_most_125_registers() -> None:
    profile = _float_meter(200)  # 400 contiguous registers, max_block left at its default
    assert profile.max_block == 125
    blocks = plan_blocks(profile.points, max_block=profile.max_block, max_gap=profile.max_gap)
    assert all(b.count <= 125 for b in blocks)
    # a float32 is never split across two reads: 62 points (124 registers) fit, the 63rd would not
    assert [(b.address, b.count, len(b.points)) for b in blocks] == [
        (0, 124, 62),
        (124, 124, 62),
        (248, 124, 62),
        (372, 28, 14),
    ]
    assert [p.name for b in blocks for p in b.points] == [p.name for p in profile.points]
    for b in blocks:
        assert all(b.address <= p.address and p.address + p.count <= b.address + b.count for p in b.points)


# --- against a server ---


@pytest.mark.parametrize("name", MODBUS_PROFILES)
async def test_every_point_of_every_profile_is_read(name: str, recorder: Recorder) -> None:
    profile = modbus(name)
    values = sample_values(profile)
    async with RegisterServer({3: unit_with(profile, values)}) as srv:
        hub = DriverHub([modbus_dev("d", name, srv.port, unit=3)], mqtt_url=None, emit=recorder, settings=FAST)
        async with hub:
            await wait_until(lambda: set(values) <= set(recorder.latest("d")), what="every point")
    latest = recorder.latest("d")
    for point, expected in values.items():
        r = latest[point]
        assert r.quality is Quality.good, point
        assert r.value == pytest.approx(expected, rel=1e-6), point
        assert r.unit == profile.point(point).unit
        assert r.ts.tzinfo is not None


async def test_gaps_are_read_through_when_the_device_allows(recorder: Recorder) -> None:
    profile = modbus("sdm630")
    async with RegisterServer({1: unit_with(profile, sample_values(profile), fill_gaps=True)}) as srv:
        hub = DriverHub([modbus_dev("m", "sdm630", srv.port)], mqtt_url=None, emit=recorder, settings=FAST)
        async with hub:
            await wait_until(lambda: len(srv.reads) >= 6, what="two polls")
    assert {(a, c) for _, _, a, c in srv.reads} == {(0x00, 18), (0x34, 24), (0x156, 2)}


async def test_requests_are_counted_as_the_device_answers_them(recorder: Recorder) -> None:
    profile = modbus("sdm120")
    units = {u: unit_with(profile, sample_values(profile), fill_gaps=True) for u in (1, 2)}
    async with RegisterServer(units) as srv:
        devices = [modbus_dev(f"m{u}", "sdm120", srv.port, unit=u, poll_s=0.05) for u in (1, 2)]
        hub = DriverHub(devices, mqtt_url=None, emit=recorder, settings=FAST)
        async with hub:
            await wait_until(lambda: len(srv.reads) >= 20, what="polls")
            srv.fail_code = ExcCodes.GATEWAY_NO_RESPONSE  # answered with an exception: still a request
            await wait_until(lambda: recorder.online("m1") is False, what="offline")
    # every request the server served, exception responses included; stopping may cut off the answer
    # to the last one
    assert srv.requests - 1 <= hub.modbus_requests <= srv.requests
    assert srv.requests > len(srv.reads) >= 20


async def test_device_refusing_gap_reads_falls_back_to_gapless_blocks(recorder: Recorder) -> None:
    profile = modbus("sdm630")
    async with RegisterServer({1: unit_with(profile, sample_values(profile))}) as srv:  # gaps are illegal
        hub = DriverHub([modbus_dev("m", "sdm630", srv.port)], mqtt_url=None, emit=recorder, settings=FAST)
        async with hub:
            await wait_until(lambda: len(recorder.latest("m")) >= len(profile.points), what="all points")
            await wait_until(lambda: len(srv.reads) >= 14, what="two polls")
            assert recorder.online("m") is True
    assert all(r.quality is Quality.good for r in recorder.readings)
    assert (0x34, 24) not in {(a, c) for _, _, a, c in srv.reads}


async def test_several_units_share_one_connection_one_request_at_a_time(recorder: Recorder) -> None:
    profile = modbus("sdm120")
    units = {u: unit_with(profile, {**sample_values(profile), "voltage": 220.0 + u}) for u in (1, 2, 3)}
    async with RegisterServer(units) as srv:
        srv.delay_s = 0.01  # widen the window in which a second request could overlap
        devices = [modbus_dev(f"m{u}", "sdm120", srv.port, unit=u, poll_s=0.1) for u in units]
        async with DriverHub(devices, mqtt_url=None, emit=recorder, settings=FAST):
            await wait_until(
                lambda: all(recorder.value(f"m{u}", "voltage") == pytest.approx(220.0 + u) for u in units),
                what="all three units",
            )
            await asyncio.sleep(0.3)
    assert srv.max_in_flight == 1
    assert {u for u, *_ in srv.reads} == {1, 2, 3}


async def test_offline_after_consecutive_failures_and_online_again(recorder: Recorder) -> None:
    profile = modbus("sdm630")
    async with RegisterServer({1: unit_with(profile, sample_values(profile), fill_gaps=True)}) as srv:
        hub = DriverHub([modbus_dev("m", "sdm630", srv.port)], mqtt_url=None, emit=recorder, settings=FAST)
        async with hub:
            await wait_until(lambda: recorder.online("m") is True, what="online")
            srv.hang = True  # requests time out
            await wait_until(lambda: recorder.online("m") is False, what="offline after timeouts")
            assert hub.health()["m"].consecutive_failures >= FAST.offline_after
            srv.hang = False
            await wait_until(lambda: recorder.online("m") is True, what="online again")
            assert hub.health()["m"].consecutive_failures == 0
    transitions = [s.online for s in recorder.statuses if s.device == "m"]
    assert transitions == [True, False, True]  # each transition reported once


async def test_connection_refused_then_server_back_on_the_same_port(recorder: Recorder) -> None:
    profile = modbus("atys-pm")
    unit = unit_with(profile, sample_values(profile))
    srv = await RegisterServer({1: unit}).start()
    hub = DriverHub([modbus_dev("ats", "atys-pm", srv.port)], mqtt_url=None, emit=recorder, settings=FAST)
    async with hub:
        await wait_until(lambda: recorder.online("ats") is True, what="online")
        await srv.stop()
        await wait_until(lambda: recorder.online("ats") is False, what="offline when refused")
        seen = len(recorder.readings)
        await asyncio.sleep(0.3)
        assert len(recorder.readings) == seen  # nothing is made up while offline
        await srv.start()
        await wait_until(lambda: recorder.online("ats") is True, timeout_s=15, what="reconnected")
    await srv.stop()
    assert hub.health()["ats"].failures >= FAST.offline_after


async def test_device_exception_counts_as_failure(recorder: Recorder) -> None:
    profile = modbus("sdm120")
    async with RegisterServer({1: unit_with(profile, sample_values(profile))}) as srv:
        hub = DriverHub([modbus_dev("m", "sdm120", srv.port)], mqtt_url=None, emit=recorder, settings=FAST)
        async with hub:
            await wait_until(lambda: recorder.online("m") is True, what="online")
            srv.fail_code = ExcCodes.GATEWAY_NO_RESPONSE  # the meter behind the gateway is silent
            await wait_until(lambda: recorder.online("m") is False, what="offline")
            assert "code 11" in recorder.statuses[-1].reason


async def test_sentinels_and_nan_read_bad_never_a_number(recorder: Recorder) -> None:
    gencomm, sdm = modbus("dse-gencomm"), modbus("sdm630")
    gen_unit = unit_with(gencomm, sample_values(gencomm))
    gen_unit.put_raw("holding", 1536, [0x7FFF, 0xFFFF])  # power: int32 "not available"
    gen_unit.put_raw("holding", 1031, [0xFFFF])  # frequency
    gen_unit.put_raw("holding", 1408, [15])  # engine state 15: "not available"
    meter = unit_with(sdm, sample_values(sdm))
    meter.put_raw("input", 0x34, [0x7FC0, 0x0000])  # total power NaN
    meter.put_raw("input", 0x48, [0xFFFF, 0xFFFF])  # import kWh NaN
    async with RegisterServer({1: gen_unit}) as gen_srv, RegisterServer({1: meter}) as meter_srv:
        devices = [modbus_dev("gen", "dse-gencomm", gen_srv.port), modbus_dev("meter", "sdm630", meter_srv.port)]
        hub = DriverHub(devices, mqtt_url=None, emit=recorder, settings=FAST)
        async with hub:
            await wait_until(
                lambda: (
                    {"power", "engine_state"} <= set(recorder.latest("gen"))
                    and "import_energy" in recorder.latest("meter")
                ),
                what="readings",
            )
    bad = [(r.device, r.point) for r in recorder.readings if r.quality is Quality.bad]
    assert {("gen", "power"), ("gen", "frequency"), ("gen", "engine_state"), ("meter", "power")} <= set(bad)
    assert ("meter", "import_energy") in bad
    assert all(r.value is None for r in recorder.readings if r.quality is Quality.bad)
    assert "import_energy_delta" not in recorder.latest("meter")  # no delta from a bad counter reading
    assert recorder.latest("gen")["battery_voltage"].quality is Quality.good


async def test_write_to_read_only_point_is_refused_and_never_reaches_the_device(recorder: Recorder) -> None:
    profile = modbus("dse-gencomm")
    async with RegisterServer({1: unit_with(profile, sample_values(profile))}) as srv:
        hub = DriverHub([modbus_dev("gen", "dse-gencomm", srv.port)], mqtt_url=None, emit=recorder, settings=FAST)
        async with hub:
            await wait_until(lambda: recorder.online("gen") is True, what="online")
            result = await hub.command("gen", "engine_state", 3)
            assert result.status == "refused" and "read-only" in result.detail
            bad_key = await hub.command("gen", "control_key", 12345)
            assert bad_key.status == "refused" and "35700" in bad_key.detail
            unknown = await hub.command("gen", "no_such_point", 1)
            assert unknown.status == "refused"
    assert srv.writes == []


def _controller(unit: Unit, *, obeys: bool = True) -> Callable[[int, int, list[int]], list[int]]:
    """What a DSE controller does with a key written to 4104-4105 (`obeys=False`: it takes the write
    and does nothing, as a controller whose remote control is locked)."""

    def on_write(_unit: int, address: int, values: list[int]) -> list[int]:
        if obeys and address == 4104 and len(values) == 2 and values[0] + values[1] == 0xFFFF:
            mode = unit.holding[772]
            if values[0] in (35700, 35701, 35702):
                unit.holding[772] = values[0] - 35700  # 0 stop, 1 auto, 2 manual
            elif values[0] == 35705 and mode == 2:
                unit.holding[1408] = 1  # pre-start: the engine cranks
        return [0, 0]  # the controller consumes the key

    return on_write


def _genset(mode: int = 1, engine: int = 0) -> Unit:
    profile = modbus("dse-gencomm")
    unit = unit_with(profile, {**sample_values(profile), "control_mode": mode, "engine_state": engine})
    unit.put_raw("holding", 4104, [0, 0])
    return unit


async def test_gencomm_control_key_confirmed_by_its_effect(recorder: Recorder) -> None:
    unit = _genset(mode=1)  # auto, engine stopped
    async with RegisterServer({1: unit}) as srv:
        srv.on_write = _controller(unit)
        hub = DriverHub([modbus_dev("gen", "dse-gencomm", srv.port)], mqtt_url=None, emit=recorder, settings=FAST)
        async with hub:
            await wait_until(lambda: recorder.online("gen") is True, what="online")
            manual = await hub.command("gen", "control_key", "manual")
            start = await hub.command("gen", "control_key", 35705)
            stop = await hub.command("gen", "control_key", "stop")
    assert (manual.status, manual.requested, manual.observed) == ("confirmed", "manual", 2)
    assert manual.detail == "control_mode = 2 (manual)"
    assert (start.status, start.observed, start.detail) == ("confirmed", 1, "engine_state = 1 (pre-start)")
    assert (stop.status, stop.observed) == ("confirmed", 0)
    assert srv.writes == [(1, 4104, [k, 65535 - k]) for k in (35702, 35705, 35700)]
    # the effect is read back from the controller itself (polls read 1408 as part of a 3-register block)
    assert (1, 3, 1408, 1) in srv.reads


async def test_gencomm_control_key_without_its_effect_fails(recorder: Recorder) -> None:
    unit = _genset(mode=1)  # auto: GenComm starts the engine only in manual or test mode
    async with RegisterServer({1: unit}) as srv:
        srv.on_write = _controller(unit)
        hub = DriverHub([modbus_dev("gen", "dse-gencomm", srv.port)], mqtt_url=None, emit=recorder, settings=FAST)
        async with hub:
            await wait_until(lambda: recorder.online("gen") is True, what="online")
            start = await hub.command("gen", "control_key", "start", timeout_s=1.0)
            srv.on_write = _controller(unit, obeys=False)  # the controller takes keys and ignores them
            manual = await hub.command("gen", "control_key", "manual", timeout_s=1.0)
            srv.fail_code = ExcCodes.ILLEGAL_VALUE  # GenComm refuses a key it does not support
            refused = await hub.command("gen", "control_key", "reset_alarms", timeout_s=1.0)
    assert (start.status, start.observed) == ("failed", 0)
    assert "no effect within 1.0 s" in start.detail and "engine_state = 0 (stopped)" in start.detail
    assert (manual.status, manual.observed) == ("failed", 1)
    assert "control_mode = 1 (auto)" in manual.detail
    assert (refused.status, refused.observed) == ("failed", None)
    assert "refused key 'reset_alarms'" in refused.detail
    assert [w[2][0] for w in srv.writes] == [35705, 35702]  # each key written once; the refused one stored nothing


def _setpoint_profile() -> ModbusProfile:
    return ModbusProfile.model_validate(
        {
            "name": "test-setpoint",
            "driver": "modbus",
            "device": "test controller",
            "documentation": "test",
            "points": [
                {"name": "temperature", "table": "holding", "address": 10, "type": "int16", "scale": 0.1, "unit": "°C"},
                {
                    "name": "setpoint",
                    "table": "holding",
                    "address": 11,
                    "type": "uint16",
                    "scale": 0.1,
                    "unit": "°C",
                    "writable": True,
                },
            ],
        }
    )


@pytest.fixture
def setpoint_profile(monkeypatch: pytest.MonkeyPatch) -> ModbusProfile:
    profile = _setpoint_profile()
    real = load_profile

    def load(name: str) -> Profile:
        return profile if name == profile.name else real(name)

    monkeypatch.setattr("drivers.hub.load_profile", load)
    return profile


async def test_holding_write_verified_by_readback(setpoint_profile: ModbusProfile, recorder: Recorder) -> None:
    unit = unit_with(setpoint_profile, {"temperature": 24.5, "setpoint": 26.0})
    async with RegisterServer({1: unit}) as srv:
        hub = DriverHub([modbus_dev("ctl", "test-setpoint", srv.port)], mqtt_url=None, emit=recorder, settings=FAST)
        async with hub:
            ok = await hub.command("ctl", "setpoint", 23.5)
            srv.on_write = lambda _u, _a, values: [min(v, 280) for v in values]  # the device clamps at 28.0
            clamped = await hub.command("ctl", "setpoint", 30.0, timeout_s=2)
            refused = await hub.command("ctl", "setpoint", 23.45)
    assert (ok.status, ok.observed) == ("confirmed", 23.5)
    assert (clamped.status, clamped.observed) == ("failed", 28.0)
    assert "read back 28.0" in clamped.detail
    assert refused.status == "refused" and "multiple of the scale" in refused.detail
    assert srv.writes == [(1, 11, [235]), (1, 11, [300]), (1, 11, [300])]  # one retry, then failed


async def test_command_to_unreachable_device_fails_within_timeout(
    setpoint_profile: ModbusProfile, recorder: Recorder
) -> None:
    unit = unit_with(setpoint_profile, {"temperature": 24.5, "setpoint": 26.0})
    async with RegisterServer({1: unit}) as srv:
        hub = DriverHub([modbus_dev("ctl", "test-setpoint", srv.port)], mqtt_url=None, emit=recorder, settings=FAST)
        async with hub:
            await wait_until(lambda: recorder.online("ctl") is True, what="online")
            srv.hang = True
            result = await hub.command("ctl", "setpoint", 22.0, timeout_s=1.0)
    assert result.status == "failed" and result.observed is None


async def test_energy_counter_deltas_reset_and_rejection(recorder: Recorder) -> None:
    profile = modbus("sdm120")
    values = {**sample_values(profile), "import_energy": 1000.0}
    unit = unit_with(profile, values)
    async with RegisterServer({1: unit}) as srv:
        dev = modbus_dev("m", "sdm120", srv.port, rated_kw=10.0)
        hub = DriverHub([dev], mqtt_url=None, emit=recorder, settings=FAST)

        def deltas() -> list[float]:
            return [float(r.value or 0) for r in recorder.readings if r.point == "import_energy_delta"]

        async with hub:
            await wait_until(lambda: len(deltas()) >= 1, what="baseline")
            unit.put(profile, "import_energy", 1000.01)
            await wait_until(lambda: sum(deltas()) >= 0.0099, what="a real step")
            unit.put(profile, "import_energy", 2.0)  # meter replaced
            await wait_until(lambda: hub.health()["m"].counter_resets == 1, what="reset counted")
            unit.put(profile, "import_energy", 90000.0)  # absurd for 10 kW in a fraction of a second
            await wait_until(lambda: hub.health()["m"].rejected_deltas == 1, what="rejection counted")
            await asyncio.sleep(0.3)
    assert min(deltas()) >= 0
    assert sum(deltas()) == pytest.approx(0.01, abs=1e-3)


async def test_slow_device_overruns_are_counted_not_bunched(recorder: Recorder) -> None:
    profile = modbus("atys-pm")
    async with RegisterServer({1: unit_with(profile, sample_values(profile))}) as srv:
        srv.delay_s = 0.25
        dev = modbus_dev("ats", "atys-pm", srv.port, poll_s=0.1)
        hub = DriverHub([dev], mqtt_url=None, emit=recorder, settings=FAST)
        async with hub:
            await wait_until(lambda: hub.health()["ats"].overruns >= 2, what="overruns")
            assert recorder.online("ats") is True
        assert srv.max_in_flight == 1


async def test_a_failing_emit_callback_does_not_stop_polling() -> None:
    calls = 0

    def broken(batch: object) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("consumer bug")

    profile = modbus("sdm120")
    async with RegisterServer({1: unit_with(profile, sample_values(profile))}) as srv:
        hub = DriverHub([modbus_dev("m", "sdm120", srv.port)], mqtt_url=None, emit=broken, settings=FAST)
        async with hub:
            await wait_until(lambda: calls >= 3, what="polls continue")
    assert hub.emit_errors == calls
    assert hub.health()["m"].online


async def test_injected_clock_stamps_readings(recorder: Recorder) -> None:
    fixed = datetime(2026, 10, 1, 8, 0, tzinfo=UTC)
    profile = modbus("sdm120")
    async with RegisterServer({1: unit_with(profile, sample_values(profile))}) as srv:
        settings = DriverSettings(modbus_timeout_s=0.3)
        hub = DriverHub(
            [modbus_dev("m", "sdm120", srv.port)], mqtt_url=None, emit=recorder, clock=lambda: fixed, settings=settings
        )
        async with hub:
            await wait_until(lambda: recorder.readings, what="a reading")
    assert {r.ts for r in recorder.readings} == {fixed}
    assert hub.health()["m"].last_seen == fixed


def transition_logs(caplog: pytest.LogCaptureFixture, device: str) -> list[bool]:
    """The online (True) / offline (False) lines the drivers logged for a device, in order."""
    out: list[bool] = []
    for record in caplog.records:
        if record.name != "wattkeeper.drivers":
            continue
        message = record.getMessage()
        if message.startswith(f"device {device} online"):
            out.append(True)
        elif message.startswith(f"device {device} offline"):
            out.append(False)
    return out


async def test_every_online_offline_transition_is_logged_once(
    recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="wattkeeper.drivers")
    profile = modbus("sdm120")
    async with RegisterServer({1: unit_with(profile, sample_values(profile))}) as srv, TcpGate(srv.port) as gate:
        hub = DriverHub(
            [modbus_dev("m", "sdm120", gate.port, poll_s=0.05)], mqtt_url=None, emit=recorder, settings=FAST
        )

        async def more_failed_polls() -> None:
            failures = hub.health()["m"].failures
            await wait_until(lambda: hub.health()["m"].failures >= failures + 3, what="failed polls while offline")

        async with hub:
            await wait_until(lambda: recorder.online("m") is True, what="online")
            gate.shut()  # the meter hangs up on every connection
            await wait_until(lambda: recorder.online("m") is False, what="offline")
            await more_failed_polls()
            gate.open()
            await wait_until(lambda: recorder.online("m") is True, what="online again")
            srv.hang = True  # the meter stops answering: timeouts
            await wait_until(lambda: recorder.online("m") is False, what="offline again")
            await more_failed_polls()
            srv.hang = False
            await wait_until(lambda: recorder.online("m") is True, what="back")
            polls = hub.health()["m"].readings
            await wait_until(lambda: hub.health()["m"].readings > polls + 10, what="good polls")
    statuses = [s.online for s in recorder.statuses if s.device == "m"]
    assert statuses == [True, False, True, False, True]
    assert transition_logs(caplog, "m") == statuses  # one line per transition, none per failed or good poll


async def test_an_offline_device_is_tried_less_and_less_often(recorder: Recorder) -> None:
    """Connection attempts to a meter that hangs up on connect, seen at the meter: each comes after one
    more failed poll, and the interval the driver waits before it grows. Both are the driver's own
    counts, noted as each attempt arrives, not wall-clock gaps (which a loaded machine bends).

    (pymodbus notices the hang-up only when the request times out, so the timeout is kept well
    below the poll interval: a poll that overran would be rescheduled on the interval's grid.)"""
    profile = modbus("sdm120")
    settings = DriverSettings(
        modbus_timeout_s=0.05, modbus_retries=0, offline_after=1, offline_poll_max_s=30.0, reconnect_min_s=0.05
    )
    seen: list[tuple[int, float]] = []  # (failed polls so far, the interval waited before this attempt)

    def note() -> None:
        seen.append((hub.health()["m"].consecutive_failures, meter.interval(settings)))

    async with RegisterServer({1: unit_with(profile, sample_values(profile))}) as srv, TcpGate(srv.port, note) as gate:
        gate.shut()
        dev = modbus_dev("m", "sdm120", gate.port, poll_s=0.1)
        hub = DriverHub([dev], mqtt_url=None, emit=recorder, settings=settings)
        driver = hub._drivers["modbus"]
        assert isinstance(driver, ModbusDriver)
        meter = driver._coordinators[0].devices[0]
        async with hub:
            await wait_until(lambda: len(gate.accepts) >= 5, timeout_s=30, what="five connection attempts")
    failures, intervals = zip(*seen[:5], strict=True)
    assert failures == (0, 1, 2, 3, 4), seen  # one attempt per poll, each after one more failure
    assert all(later > earlier for earlier, later in itertools.pairwise(intervals[1:])), seen
    assert intervals[4] >= 8 * dev.poll_s, seen
    assert recorder.online("m") is False
