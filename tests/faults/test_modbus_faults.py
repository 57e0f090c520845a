"""Modbus devices misbehaving in every way a field bus does, while healthy meters keep being read.

Each faulty device is a small Modbus TCP server written here on raw asyncio sockets, so it can do
what no well-behaved server library does: accept and never answer, accept and hang up, stop
reading (half-open), answer garbage, answer with exception responses (function | 0x80), or answer
correctly with the vendor's "not available" sentinels. Four meters on real pymodbus servers are the
healthy neighbours: two with a server each, two behind one server (unit 1 and 2, one link, so one
coordinator polls both). The whole service runs in-process with its default driver settings; only the
alarm engine's delays are shortened. Every device starts healthy, then all faults start at once,
then all are healed.

The bounds asserted are the product's own, with slack for a shared machine:
- a point turns `stale` within 3 poll intervals of its last good reading (service.live.state), + 1 s;
- a device is `offline` after `offline_after` failed polls, each at most
  (retries + 1) x 2 x timeout + the retry pauses (drivers.base.DriverSettings), + 2 s;
- a sentinel reads `bad` from the first poll that sees it: poll interval + 1 s;
- a healthy meter is polled on its schedule: the coordinator polls on a fixed grid and skips a tick
  it is late for (drivers/README.md, "overrun"), so every tick of the fault window must give a good
  reading. A tick may be skipped only where the event loop itself stalled (a loaded machine not
  running the process): a probe task measures the loop's stalls, and each stall excuses the ticks it
  covers. A fault holding up a neighbour's polls is a wait on a socket, not a stall, so it is never
  excused. Skipped ticks are a count, not a wall-clock bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import random
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import pytest

from drivers.base import DriverSettings
from drivers.codec import codec_for
from drivers.profiles import ModbusProfile
from drivers.types import DeviceStatus, Quality, Reading
from service.alarms.engine import DEFAULT_CONFIG
from service.core import Core
from tests.drivers.helpers import modbus
from tests.drivers.register_server import RegisterServer, Unit
from tests.faults.helpers import figure, make_site
from tests.harness import eventually, running_service
from tests.servers import free_port

Mode = Literal["healthy", "silent", "close", "half_open", "garbage", "exception", "illegal", "sentinel", "refused"]
FAST = {k: replace(v, on_delay_s=min(v.on_delay_s, 1.0), off_delay_s=2.0) for k, v in DEFAULT_CONFIG.items()}
POLL_S = 0.5  # the faulty devices
REF_POLL_S = 0.25  # the healthy meters
STALL_S = 0.05  # a wake-up of the loop probe this much later than asked counts as a stall


class LoopProbe:
    """Measures the event loop's stalls: sleeps 10 ms at a time and notes how late each wake-up is."""

    def __init__(self) -> None:
        self.stalls: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time() + 0.01
            await asyncio.sleep(0.01)
            late = loop.time() - asked
            if late > STALL_S:
                self.stalls.append(late)

    def start(self) -> None:
        self.stalls.clear()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    def ticks_covered(self, every_s: float) -> int:
        """Ticks of a grid every `every_s` that the stalls can have made a poll miss: a stall delays
        a poll past its tick's successor if it and the poll last longer than a tick (+1 per stall)."""
        return sum(math.ceil(stall / every_s) for stall in self.stalls)


# (device id, server, unit id): two servers of their own, two units behind one server
HEALTHY: list[tuple[str, str, int]] = [("ref-a", "a", 1), ("ref-b", "b", 1), ("ref-c", "cd", 1), ("ref-d", "cd", 2)]
SDM630 = modbus("sdm630")
GENCOMM = modbus("dse-gencomm")
METER_VALUES = {"voltage": 230.0, "current": 4.35, "power": 1000.0, "power_factor": 0.95, "frequency": 50.0}
ILLEGAL_POINT = "total_energy"  # the register the `illegal` device says it does not have

# (device id, profile, fault, what the fault must lead to)
FAULTS: list[tuple[str, ModbusProfile, Mode, str]] = [
    ("m-timeout", SDM630, "silent", "offline"),
    ("m-refused", SDM630, "refused", "offline"),
    ("m-close", SDM630, "close", "offline"),
    ("m-half-open", SDM630, "half_open", "offline"),
    ("m-garbage", SDM630, "garbage", "offline"),
    ("m-exception", SDM630, "exception", "offline"),
    ("m-illegal", SDM630, "illegal", "point bad"),
    ("g-sentinel", GENCOMM, "sentinel", "bad"),
]


def meter_value(name: str) -> float:
    for prefix, value in METER_VALUES.items():
        if name.startswith(prefix):
            return value
    return 1234.5  # energy counters


def healthy_image(profile: ModbusProfile) -> dict[tuple[str, int], int]:
    """(table, address) -> register of a device reading plausible values."""
    image: dict[tuple[str, int], int] = {}
    for p in profile.points:
        if not p.polled:
            continue
        value: float = meter_value(p.name) if profile.name == "sdm630" else 0
        for i, reg in enumerate(codec_for(profile, p).encode(value)):
            image[(p.table, p.address + i)] = reg
    return image


def sentinel_image(profile: ModbusProfile) -> dict[tuple[str, int], int]:
    """Every polled point holding its profile's 'not available' sentinel (big-endian words)."""
    image: dict[tuple[str, int], int] = {}
    for p in profile.points:
        if not p.polled:
            continue
        assert profile.word_order == "big" and profile.byte_order == "big"
        bits = max(profile.sentinels_for(p))
        data = bits.to_bytes(2 * p.count, "big")
        for i in range(p.count):
            image[(p.table, p.address + i)] = int.from_bytes(data[2 * i : 2 * i + 2], "big")
    return image


@dataclass
class FaultyModbus:
    """A Modbus TCP server on loopback whose behaviour the test switches with `mode`."""

    profile: ModbusProfile
    port: int = field(default_factory=free_port)
    mode: Mode = "healthy"
    requests: int = 0
    _server: asyncio.Server | None = None
    _conns: set[asyncio.StreamWriter] = field(default_factory=set)
    _rng: random.Random = field(default_factory=lambda: random.Random(9))

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, reuse_address=True)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for w in list(self._conns):
            w.transport.abort()
        self._conns.clear()

    async def set_mode(self, mode: Mode) -> None:
        if mode == "refused":
            await self.stop()  # nothing listens: connections are refused
        elif self._server is None:
            await self.start()
        if mode in ("close", "half_open"):
            for w in list(self._conns):
                w.transport.abort()  # the link breaks; what follows is the new behaviour
        self.mode = mode

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._conns.add(writer)
        try:
            while True:
                if self.mode == "close":
                    return
                if self.mode == "half_open":
                    await asyncio.sleep(3600)  # connected, but nobody reads or answers
                tid, _, length, unit = struct.unpack(">HHHB", await reader.readexactly(7))
                pdu = await reader.readexactly(length - 1)
                self.requests += 1
                answer = self._answer(pdu)
                if answer is not None:
                    writer.write(answer if self.mode == "garbage" else _frame(tid, unit, answer))
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._conns.discard(writer)
            writer.transport.abort()

    def _answer(self, pdu: bytes) -> bytes | None:
        fc = pdu[0]
        mode = self.mode
        if mode == "silent":
            return None
        if mode == "garbage":
            return self._garbage()
        if mode == "exception":
            return bytes([fc | 0x80, 4])  # server device failure
        if fc not in (3, 4):
            return bytes([fc | 0x80, 1])
        address, count = struct.unpack(">HH", pdu[1:5])
        table = "holding" if fc == 3 else "input"
        if mode == "illegal":
            missing = SDM630.point(ILLEGAL_POINT)
            if address <= missing.address < address + count:
                return bytes([fc | 0x80, 2])  # illegal data address
        image = sentinel_image(self.profile) if mode == "sentinel" else healthy_image(self.profile)
        regs = [image.get((table, a), 0) for a in range(address, address + count)]
        return bytes([fc, 2 * count]) + struct.pack(f">{count}H", *regs)

    def _garbage(self) -> bytes:
        """Bytes no correct reply looks like: noise, a truncated frame, a frame that lies about its length."""
        kind = self._rng.randrange(3)
        if kind == 0:
            return self._rng.randbytes(self._rng.randrange(1, 40))
        if kind == 1:
            return b"\x00\x01\x00\x00\x00\x09\x01\x04"  # promises 8 more bytes, sends none
        return b"\xde\xad\x00\x00\x00\x03\x01\x04\xff\x00\x00\x00"  # wrong id, absurd byte count


def _frame(tid: int, unit: int, pdu: bytes) -> bytes:
    return struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + pdu


def site_text(servers: dict[str, FaultyModbus], ref_ports: dict[str, int]) -> str:
    lines = ["site: {id: mbf, name: modbus faults, allowed_interruption_s: 10}", "devices:"]
    for device, server, unit in HEALTHY:
        lines.append(
            f"  - {{id: {device}, driver: modbus, profile: sdm630, host: 127.0.0.1, port: {ref_ports[server]}, "
            f"unit: {unit}, poll_s: {REF_POLL_S}}}"
        )
    for device, profile, _, _ in FAULTS:
        lines.append(
            f"  - {{id: {device}, driver: modbus, profile: {profile.name}, host: 127.0.0.1, "
            f"port: {servers[device].port}, poll_s: {POLL_S}}}"
        )
    return "\n".join(lines) + "\n"


@dataclass
class CollectingSink:
    """Stands in for the telemetry sink: keeps every line the core writes."""

    lines: list[str] = field(default_factory=list)
    outbox_depth: int = 0
    dropped: int = 0
    written: int = 0

    def put(self, line: str) -> None:
        self.lines.append(line)

    def put_many(self, lines: Sequence[str]) -> None:
        self.lines.extend(lines)


@pytest.fixture
def taps(monkeypatch: pytest.MonkeyPatch) -> list[Reading | DeviceStatus]:
    """Everything the drivers hand the core, in order."""
    seen: list[Reading | DeviceStatus] = []
    original = Core.emit

    def tap(self: Core, batch: Sequence[Reading | DeviceStatus]) -> None:
        seen.extend(batch)
        original(self, batch)

    monkeypatch.setattr(Core, "emit", tap)
    return seen


@pytest.mark.slow
async def test_modbus_faults_are_contained_and_reported(tmp_path: Path, taps: list[Reading | DeviceStatus]) -> None:
    settings = DriverSettings()
    offline_bound_s = (
        settings.offline_after
        * (
            POLL_S
            + (settings.modbus_retries + 1) * 2 * settings.modbus_timeout_s
            + sum(settings.retry_delay_s * 2**i for i in range(settings.modbus_retries))
        )
        + 2.0
    )
    stale_bound_s = 3 * POLL_S + 1.0
    bad_bound_s = POLL_S + 1.0
    fakes = {device: FaultyModbus(profile) for device, profile, _, _ in FAULTS}
    refs: dict[str, RegisterServer] = {}
    for _, server, unit in HEALTHY:
        meter = Unit()
        for p in SDM630.points:
            meter.put(SDM630, p.name, meter_value(p.name))
        refs.setdefault(server, RegisterServer({})).units[unit] = meter
    healthy = [device for device, _, _ in HEALTHY]
    for f in fakes.values():
        await f.start()
    for r in refs.values():
        await r.start()
    sink = CollectingSink()
    site = make_site(site_text(fakes, {name: r.port for name, r in refs.items()}))
    try:
        async with running_service(site, tmp_path, alarm_config=FAST) as svc:
            svc.services.core.sink = sink  # type: ignore[assignment]
            client = svc.client("viewer")

            async def state() -> dict[str, dict[str, dict[str, Any]]]:
                out: dict[str, dict[str, dict[str, Any]]] = {}
                for p in (await client.get("/api/state")).json():
                    out.setdefault(p["device"], {})[p["point"]] = p
                return out

            async def online() -> dict[str, bool]:
                return {d["id"]: d["online"] for d in (await client.get("/api/devices")).json()}

            async def all_good() -> bool:
                st, on = await state(), await online()
                return all(on.get(d) for d in (*fakes, *healthy)) and all(
                    st.get(d) and all(p["quality"] == "good" for p in st[d].values()) for d in fakes
                )

            await eventually(all_good, 30, 0.1)

            # -- every fault at once -----------------------------------------------------------
            probe = LoopProbe()
            probe.start()
            t0 = time.monotonic()
            t0_wall = datetime.now(UTC)
            for device, _, mode, _ in FAULTS:
                await fakes[device].set_mode(mode)
            reached: dict[str, dict[str, float]] = {d: {} for d in fakes}
            deadline = t0 + offline_bound_s + 10
            while time.monotonic() < deadline:
                now = time.monotonic() - t0
                st, on = await state(), await online()
                alarms = {(a["type"], a["subject"]) for a in (await client.get("/api/alarms")).json()}
                for device, _, _, outcome in FAULTS:
                    got = reached[device]
                    points = st.get(device, {})
                    if outcome == "offline":
                        if "stale" not in got and points and all(p["quality"] != "good" for p in points.values()):
                            got["stale"] = now
                        if "offline" not in got and on.get(device) is False:
                            got["offline"] = now
                        if "alarm" not in got and ("device_offline", device) in alarms:
                            got["alarm"] = now
                    elif outcome == "bad":
                        measured = [p for name, p in points.items() if not name.endswith("_delta")]
                        if "bad" not in got and measured and all(p["quality"] == "bad" for p in measured):
                            got["bad"] = now
                    elif "bad" not in got and points.get(ILLEGAL_POINT, {}).get("quality") == "bad":
                        got["bad"] = now
                if all(_done(reached[d], o) for d, _, _, o in FAULTS):
                    break
                await asyncio.sleep(0.1)
            fault_s = time.monotonic() - t0
            fault_end = datetime.now(UTC)
            await probe.stop()
            on_during = await online()
            st_during = await state()

            # -- heal ------------------------------------------------------------------------
            t1 = time.monotonic()
            for f in fakes.values():
                await f.set_mode("healthy")
            await eventually(all_good, 60, 0.1)

            async def offline_alarms_cleared() -> bool:
                alarms = (await client.get("/api/alarms", params={"state": "all", "limit": 1000})).json()
                mine = [a for a in alarms if a["type"] == "device_offline"]
                return bool(mine) and all(a["state"] in ("cleared_unacked", "cleared") for a in mine)

            await eventually(offline_alarms_cleared, 30, 0.2)
            heal_s = time.monotonic() - t1
            all_alarms = (await client.get("/api/alarms", params={"state": "all", "limit": 1000})).json()
            rollups = {
                (d, p.name): await svc.services.store.telemetry(d, p.name, _ago(3600), _ago(-3600))
                for d, profile, _, _ in FAULTS
                for p in profile.points
                if p.polled
            }
            await client.aclose()
    finally:
        for f in fakes.values():
            await f.stop()
        for r in refs.values():
            await r.stop()

    # The healthy meters, polled on their schedule all through the faults: one `power` reading per
    # poll. A window of the fault's length holds at least floor(length / interval) ticks of the grid.
    due = math.floor((fault_end - t0_wall).total_seconds() / REF_POLL_S)
    polls: dict[str, int] = {}
    not_good: dict[str, int] = {}
    worst_gap = 0.0
    for device in healthy:
        during = [
            r
            for r in taps
            if isinstance(r, Reading) and r.device == device and r.point == "power" and t0_wall <= r.ts <= fault_end
        ]
        polls[device] = len(during)
        not_good[device] = sum(1 for r in during if r.quality is not Quality.good or r.value != meter_value("power"))
        ts = [r.ts.timestamp() for r in during]
        worst_gap = max([worst_gap, *(b - a for a, b in itertools.pairwise(ts))])
    late = {d: max(0, due - n) for d, n in polls.items()}
    excused = probe.ticks_covered(REF_POLL_S)
    # What was written and stored: never a number from a bad reply.
    allowed = _allowed_values()
    bad_numbers = [
        line
        for line in sink.lines
        if line.startswith("telemetry,")
        and any(f"device={d}," in line for d in fakes)
        and float(line.rsplit(" ", 2)[1].split("=", 1)[1]) not in allowed
    ]
    bad_rollups = [k for k, rows in rollups.items() for r in rows if r.min not in allowed or r.max not in allowed]
    bad_readings_with_numbers = [
        r for r in taps if isinstance(r, Reading) and r.quality is not Quality.good and r.value is not None
    ]
    offline_faults = [d for d, _, _, o in FAULTS if o == "offline"]
    raised = {a["subject"] for a in all_alarms if a["type"] == "device_offline"}
    cleared = {a["subject"] for a in all_alarms if a["type"] == "device_offline" and a["cleared_at"]}
    stale_worst = max(reached[d]["stale"] for d in offline_faults)
    offline_worst = max(reached[d]["offline"] for d in offline_faults)
    bad_worst = max(reached[d]["bad"] for d, _, _, o in FAULTS if o != "offline")
    figure(
        "modbus-faults",
        f"{len(FAULTS)} faults (timeout, refused, close, half-open, garbage, exception 4, exception 2, sentinels): "
        f"points stale within {stale_worst:.1f} s (bound {stale_bound_s:.1f}), devices offline within "
        f"{offline_worst:.1f} s (bound {offline_bound_s:.1f}), sentinels/refused registers bad within "
        f"{bad_worst:.1f} s (bound {bad_bound_s:.1f}); device_offline raised {len(raised)}/{len(offline_faults)}, "
        f"cleared {len(cleared)}/{len(offline_faults)} within {heal_s:.1f} s of healing; "
        f"{len(bad_numbers) + len(bad_rollups)} bad values stored as numbers; {len(healthy)} healthy meters "
        f"({len(refs)} links) polled {', '.join(str(polls[d]) for d in healthy)} times with {due} polls due each in "
        f"{fault_s:.1f} s of faults (every {REF_POLL_S} s; {sum(late.values())} skipped, {excused} allowed per "
        f"meter by {len(probe.stalls)} stalls of the event loop totalling {sum(probe.stalls):.2f} s), "
        f"{sum(not_good.values())} not good, longest gap {worst_gap:.2f} s",
    )
    for device, _, _, outcome in FAULTS:
        got = reached[device]
        assert _done(got, outcome), (device, got)
        if outcome == "offline":
            assert got["stale"] <= stale_bound_s, (device, got)
            assert got["offline"] <= offline_bound_s, (device, got)
        else:
            assert got["bad"] <= bad_bound_s, (device, got)
            assert on_during[device] is True, f"{device} answers, so it is online"
    assert all(p["value"] is None for name, p in st_during["g-sentinel"].items() if not name.endswith("_delta"))
    assert st_during["m-illegal"]["power"]["quality"] in ("good", "stale")
    assert raised == set(offline_faults) and cleared == set(offline_faults)
    assert bad_numbers == [] and bad_rollups == [] and bad_readings_with_numbers == []
    assert due >= 20, "the fault window was too short to say anything about the healthy meters' schedule"
    assert all(n <= excused for n in late.values()), (
        f"healthy meters skipped polls: {late} of {due} due; the event loop's stalls excuse {excused}: {probe.stalls}"
    )
    assert not_good == dict.fromkeys(healthy, 0), not_good
    assert all(on_during[d] for d in healthy)


def _done(got: dict[str, float], outcome: str) -> bool:
    if outcome == "offline":
        return {"stale", "offline", "alarm"} <= got.keys()
    return "bad" in got


def _allowed_values() -> set[float]:
    """Every number a healthy reply of the fakes decodes to, and 0 (counter deltas, GenComm zeros)."""
    out = {0.0}
    for profile in (SDM630, GENCOMM):
        image = healthy_image(profile)
        for p in profile.points:
            if p.polled:
                regs = [image[(p.table, p.address + i)] for i in range(p.count)]
                value = codec_for(profile, p).decode(regs)[0]
                if value is not None:
                    out.add(float(value))
    return out


def _ago(seconds: float) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=seconds)
