"""Modbus polling: DriverHub vs a bare pymodbus loop, 50/200/500 simulated SDM630 meters at 1 s, same run.

Fairness: the meters are minimal Modbus TCP responders (`_MeterProtocol`; one port per meter, as
meters with their own IP) in a separate process pinned to one core; each poller runs in a fresh
process pinned to the other core, so neither is charged for the other's work. The bare loop does
exactly the engine's reads (the three blocks the engine plans for the SDM630 profile, same
first-poll spread, same skip-on-overrun schedule) without decoding. Both poll WARMUP_S before MEASURE_S of counting.

Requests are counted the same way on both sides: every request answered. The engine's count is its
links' own (`DriverHub.modbus_requests`), not an estimate from the readings it emitted, so retries,
fallback reads and failed polls show as they happen.

Capacity (issue 23): the fixed-rate rows cannot show a limit (both sides poll exactly what is
configured), so each side is also ramped: MAX meters at shorter and shorter poll intervals
(CAPACITY_POLLS; 500 meters at 0.25 s ask as much as 2,000 meters at 1 s) until more than 1 % of
polls overrun. The capacity rows give, per side, the last step at or under 1 %: the equivalent
number of meters at 1 s, requests/s and CPU µs per request there. The meters run in one
pymodbus server process on the other core: when a side's CPU at the knee is well below 100 %,
the knee is the meters' (the server's), not the poller's, and the summary line says so.

    python -m tests.bench modbus                  # run alone: prints the table, writes results.json
    python -m tests.bench.bench_modbus            # run alone, prints the rows
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import resource
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.bench._common import Figure

SIZES = (50, 200, 500)
POLL_S = 1.0
WARMUP_S = 4.0
MEASURE_S = 10.0
ROOT = Path(__file__).resolve().parent.parent.parent
POLLER_CPU, SERVER_CPU = 0, 1
METER_IDS = [f"meter-{i:03d}" for i in range(max(SIZES))]
CAPACITY_POLLS = (1.0, 0.5, 0.33, 0.25, 0.2, 0.15, 0.1)  # poll intervals of the ramp, MAX meters each
KNEE_OVERRUN_PCT = 1.0


def _pin(cpu: int) -> None:
    if len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {cpu})
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _blocks() -> list[tuple[int, int]]:
    """The reads the engine plans for one SDM630 (so the bare loop does the same)."""
    from drivers.modbus import plan_blocks
    from drivers.profiles import ModbusProfile, load_profile

    profile = load_profile("sdm630")
    assert isinstance(profile, ModbusProfile)
    return [
        (b.address, b.count) for b in plan_blocks(profile.points, max_block=profile.max_block, max_gap=profile.max_gap)
    ]


# ---- the meters (server process) ----------------------------------------------------------------


class _MeterProtocol(asyncio.Protocol):
    """One meter's Modbus TCP face: answers "read input registers" (and holding) from a fixed table.

    A minimal responder rather than pymodbus's server: pymodbus answered about 3,000 requests/s on
    its core, below what either poller can ask, so the capacity ramp would have found the meters'
    limit instead of the poller's. The answers are the same bytes pymodbus's SimDevice sent.
    """

    def __init__(self, table: bytes) -> None:
        self.table = table
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        import struct

        buf = self.buffer + data
        out = []
        while len(buf) >= 7:
            tid, pid, length, unit = struct.unpack(">HHHB", buf[:7])
            if len(buf) < 6 + length:
                break
            pdu, buf = buf[7 : 6 + length], buf[6 + length :]
            fc = pdu[0]
            address, count = struct.unpack(">HH", pdu[1:5]) if len(pdu) >= 5 else (0, 0)
            if fc in (3, 4) and 1 <= count <= 125 and 2 * (address + count) <= len(self.table):
                body = bytes([fc, 2 * count]) + self.table[2 * address : 2 * (address + count)]
            else:
                body = bytes([fc | 0x80, 2])  # illegal data address
            out.append(struct.pack(">HHHB", tid, pid, len(body) + 1, unit) + body)
        self.buffer = buf
        if out and self.transport is not None:
            self.transport.write(b"".join(out))


async def _serve(count: int) -> None:
    import struct

    registers: list[int] = []
    for i in range(0, 0x15A, 2):  # the whole SDM630 input table, every float a plausible number
        registers += struct.unpack(">2H", struct.pack(">f", 230.0 + i / 10))
    table = struct.pack(f">{len(registers)}H", *registers)
    loop = asyncio.get_running_loop()
    servers = [
        await loop.create_server(lambda: _MeterProtocol(table), "127.0.0.1", 0, backlog=16) for _ in range(count)
    ]
    ports = [srv.sockets[0].getsockname()[1] for srv in servers]
    print(json.dumps(ports), flush=True)
    await asyncio.Event().wait()


# ---- the pollers (poller process) ---------------------------------------------------------------


@dataclass
class Window:
    """What happened between the end of the warm-up and the end of the measurement."""

    requests: int = 0
    polls: int = 0
    overruns: int = 0
    readings: int = 0
    failures: int = 0
    cpu_s: float = 0.0
    wall_s: float = 0.0


def _stagger(device_id: str) -> float:
    return POLL_S * (zlib.crc32(device_id.encode()) % 1000) / 1000


async def _bare(ports: list[int]) -> Window:
    from pymodbus.client import AsyncModbusTcpClient

    blocks = _blocks()
    counts = Window()
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def meter(device_id: str, port: int) -> None:
        client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=1.0, retries=0, reconnect_delay=0)
        await client.connect()
        due = start + _stagger(device_id)
        while True:
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            ok = True
            for address, count in blocks:
                try:
                    pdu = await client.read_input_registers(address, count=count, device_id=1)
                except Exception:
                    ok = False
                    break
                counts.requests += 1  # answered, as the engine's links count
                if pdu.isError():
                    ok = False
                    break
            counts.polls += ok
            counts.failures += not ok
            following = due + POLL_S
            now = loop.time()
            if now > following:
                counts.overruns += 1
                following += POLL_S * math.ceil((now - following) / POLL_S)
            due = following

    tasks = [asyncio.create_task(meter(d, p)) for d, p in zip(METER_IDS, ports, strict=False)]
    window = await _measure(lambda: counts)
    # cancel until done: 3.11's wait_for inside pymodbus can swallow a cancel that meets an answer
    pending = set(tasks)
    while pending:
        for t in pending:
            t.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.5)
    return window


@dataclass(frozen=True)
class _Meter:
    id: str
    port: int
    driver: str = "modbus"
    profile: str = "sdm630"
    host: str = "127.0.0.1"
    unit: int = 1
    poll_s: float = POLL_S
    topic: str | None = None
    rated_kw: float | None = 500.0


async def _engine(ports: list[int]) -> Window:
    from drivers.hub import DriverHub
    from drivers.types import Reading

    counts = Window()

    def emit(batch: Any) -> None:
        # one batch per successful poll of one meter, made of its readings
        counts.polls += 1
        counts.readings += sum(isinstance(e, Reading) for e in batch)

    meters = [_Meter(d, p, poll_s=POLL_S) for d, p in zip(METER_IDS, ports, strict=False)]
    hub = DriverHub(meters, mqtt_url=None, emit=emit)

    def snapshot() -> Window:
        health = hub.health().values()
        return Window(
            requests=hub.modbus_requests,
            polls=counts.polls,
            readings=counts.readings,
            overruns=sum(h.overruns for h in health),
            failures=sum(h.failures for h in health),
        )

    async with hub:
        return await _measure(snapshot)


async def _measure(snapshot: Any) -> Window:
    await asyncio.sleep(WARMUP_S)
    before = Window(**vars(snapshot()))  # a copy: the bare loop's counters keep moving
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.sleep(MEASURE_S)
    after, cpu1, wall1 = snapshot(), time.process_time(), time.perf_counter()
    return Window(
        requests=after.requests - before.requests,
        polls=after.polls - before.polls,
        overruns=after.overruns - before.overruns,
        readings=after.readings - before.readings,
        failures=after.failures - before.failures,
        cpu_s=cpu1 - cpu0,
        wall_s=wall1 - wall0,
    )


# ---- orchestration ------------------------------------------------------------------------------


def _python(*args: str, **kw: Any) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "tests.bench.bench_modbus", *args], cwd=ROOT, text=True, **kw)


def _poll(variant: str, ports: list[int], poll_s: float = POLL_S) -> Window:
    proc = _python("poll", variant, str(poll_s), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        out, _ = proc.communicate(json.dumps(ports), timeout=WARMUP_S + MEASURE_S + 60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise
    if proc.returncode:
        raise RuntimeError(f"{variant} poller exited with {proc.returncode}")
    return Window(**json.loads(out.strip().splitlines()[-1]))


def run() -> list[dict[str, Any]]:
    """Rows for `make bench`: four per size, every size measured beside its bare loop."""
    server = _python("serve", str(max(SIZES)), stdout=subprocess.PIPE)
    assert server.stdout is not None
    try:
        ports = json.loads(server.stdout.readline())
        if len(ports) < max(SIZES):
            raise RuntimeError(f"the meter process serves {len(ports)} meters, not {max(SIZES)}")
        rows: list[dict[str, Any]] = []
        for n in SIZES:
            bare = _poll("bare", ports[:n])
            engine = _poll("engine", ports[:n])
            rows += [figure.row() for figure in _figures(n, engine, bare)]
            print(
                f"   {n} meters: engine {engine.requests / engine.wall_s:,.0f} req/s "
                f"({engine.requests / max(1, engine.polls):.2f} per good poll, {engine.failures} failed polls, "
                f"{engine.overruns} overruns, {100 * engine.cpu_s / engine.wall_s:.0f}% CPU); "
                f"bare {bare.requests / bare.wall_s:,.0f} req/s "
                f"({bare.requests / max(1, bare.polls):.2f} per good poll, {bare.failures} failed polls, "
                f"{bare.overruns} overruns, {100 * bare.cpu_s / bare.wall_s:.0f}% CPU)",
                flush=True,
            )
        rows += _capacity(ports)
        return rows
    finally:
        server.terminate()
        server.wait(10)


def _overrun_pct(w: Window) -> float:
    return 100 * w.overruns / max(1, w.polls + w.failures)


def _capacity(ports: list[int]) -> list[dict[str, Any]]:
    """Each side ramped to the knee (overruns above 1 %); rows at the last step under it."""
    n = max(SIZES)
    knee: dict[str, tuple[float, Window] | None] = {}
    for variant in ("bare", "engine"):
        knee[variant] = None
        for poll_s in CAPACITY_POLLS:
            w = _poll(variant, ports[:n], poll_s)
            over = _overrun_pct(w)
            print(
                f"   capacity {variant}: {n} meters at {poll_s} s ({n / poll_s:,.0f} meters at 1 s): "
                f"{w.requests / w.wall_s:,.0f} req/s, {over:.2f} % overruns, {w.failures} failed polls, "
                f"{100 * w.cpu_s / w.wall_s:.0f} % CPU, {w.cpu_s / max(1, w.requests) * 1e6:.0f} µs CPU/request",
                flush=True,
            )
            if over > KNEE_OVERRUN_PCT or w.failures > 0.01 * max(1, w.polls):
                break
            knee[variant] = (poll_s, w)
    rows: list[dict[str, Any]] = []
    if knee["engine"] is None or knee["bare"] is None:
        print("   capacity: a side overran at the first step; no capacity rows", flush=True)
        return rows
    (e_poll, e), (b_poll, b) = knee["engine"], knee["bare"]
    if 100 * e.cpu_s / e.wall_s < 80:
        # Below a full core: either the meters could answer no more, or the poller waited on answers.
        served = b.requests / b.wall_s
        why = (
            f"the meters answered the bare loop more ({served:,.0f} req/s): the engine's own latency set it"
            if served > 1.1 * e.requests / e.wall_s
            else "the meters (server) may have set it"
        )
        print(f"   capacity: the engine's knee came below 80 % of its core; {why}", flush=True)
    return [
        Figure("modbus capacity: meters at 1 s", n / e_poll, "meters", n / b_poll, 0.8, digits=0).row(),
        Figure("modbus capacity: requests/s", e.requests / e.wall_s, "req/s", b.requests / b.wall_s, None).row(),
        Figure(
            "modbus capacity: CPU per request",
            e.cpu_s / max(1, e.requests) * 1e6,
            "µs/req",
            b.cpu_s / max(1, b.requests) * 1e6,
            None,
            digits=0,
        ).row(),
    ]


def _figures(n: int, engine: Window, bare: Window) -> list[Figure]:
    overrun = 100 * engine.overruns / max(1, engine.polls + engine.failures)
    bare_overrun = 100 * bare.overruns / max(1, bare.polls + bare.failures)
    name = f"modbus {n} meters @1s"
    return [
        Figure(f"{name}: requests/s", engine.requests / engine.wall_s, "req/s", bare.requests / bare.wall_s, 0.8),
        Figure(f"{name}: readings/s", engine.readings / engine.wall_s, "readings/s", None, None),
        Figure(f"{name}: poll overruns", overrun, "%", bare_overrun, 1.0 if n == 200 else None, at_most=True, digits=2),
        Figure(
            f"{name}: poller CPU",
            100 * engine.cpu_s / engine.wall_s,
            "% of a core",
            100 * bare.cpu_s / bare.wall_s,
            None,
        ),
    ]


def _main(argv: list[str]) -> None:
    if argv[0] == "serve":
        _pin(SERVER_CPU)
        asyncio.run(_serve(int(argv[1])))
    elif argv[0] == "poll":
        global POLL_S  # the poller process's interval, set once before polling
        POLL_S = float(argv[2])
        _pin(POLLER_CPU)
        ports = json.loads(sys.stdin.read())
        window = asyncio.run(_bare(ports) if argv[1] == "bare" else _engine(ports))
        print(json.dumps(vars(window)), flush=True)
    else:
        for row in run():
            print(row)


if __name__ == "__main__":
    _main(sys.argv[1:] or ["run"])
