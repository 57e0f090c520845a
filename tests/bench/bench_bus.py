"""The bus (NATS JetStream, docs/scale-out.md): transport throughput and takeover time.

- `bus_readings_per_s`: readings of 100 sites x 30 devices (one reading per device per batch)
  through one collector's disk buffer, JetStream (file storage) and one site owner that acks each
  batch after a no-op apply; the baseline is the same readings through the disk buffer alone, so
  the ratio is what the bus itself costs. Target: 3,000 readings/s (100 sites x 30 devices x 1/s).
- `bus_takeover_p50_s` / `bus_takeover_max_s`: 10 times, the owning core is crashed (its lease not
  released, as SIGKILL leaves it) and the time until the standby owns the site is measured; the
  target is lease_s + one poll (lease_s / 3), the baseline lease_s.

Not measured yet: the state store and rules on the core side (1 core against 2), and the alarm
latency through the bus against the embedded path.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from drivers.types import CommandResult, DeviceStatus, Reading, Value
from service.bus.protocol import BusConfig, Collector, DiskBuffer, SiteOwner, cancel_task
from tests import servers

SITES, DEVICES, ROUNDS = 100, 30, 20
LEASE_S = 1.0
KILLS = 10
TARGET_READINGS_S = 3000.0
T0 = datetime(2026, 7, 15, tzinfo=UTC)


def _readings(round_: int) -> list[Reading]:
    ts = T0 + timedelta(seconds=round_)
    return [
        Reading(device=f"s{s}-d{d}", point="power", value=float(round_), unit="W", ts=ts)
        for s in range(SITES)
        for d in range(DEVICES)
    ]


async def _refuse(device: str, point: str, value: Value, timeout_s: float) -> CommandResult:
    return CommandResult(device=device, point=point, requested=value, status="refused")


async def _nothing() -> None:
    return None


async def _throughput(url: str, tmp: Path) -> tuple[float, float]:
    total = SITES * DEVICES * ROUNDS
    applied = 0

    async def apply(items: Sequence[Reading | DeviceStatus]) -> None:
        nonlocal applied
        applied += len(items)

    config = BusConfig(url=url, lease_s=LEASE_S, batch_s=0.05, holder="bench-edge")
    collector = Collector("bench", config, tmp / "edge", start_drivers=_nothing, command=_refuse)
    owner = SiteOwner(
        "bench",
        BusConfig(url=url, lease_s=LEASE_S, holder="bench-core"),
        apply=apply,
        on_acquired=_nothing,
        on_lost=_nothing,
    )
    await owner.start()
    task = asyncio.create_task(collector.run())
    try:
        await collector.holding.wait()
        began = time.perf_counter()
        for r in range(ROUNDS):
            collector.emit(_readings(r))
            collector._cut()
            await asyncio.sleep(0)
        while applied < total:
            await asyncio.sleep(0.005)
        bus_s = time.perf_counter() - began
    finally:
        await cancel_task(task)
        await collector.close()
        await owner.stop()
    # baseline: the same batches through the disk buffer alone (write, read back, remove)
    from service.bus.protocol import Batch, encode_batch

    buf = DiskBuffer(tmp / "baseline", max_bytes=1 << 30)
    began = time.perf_counter()
    for r in range(ROUNDS):
        items = tuple(_readings(r))
        buf.put(r + 1, encode_batch(Batch("bench", "b", 1, r + 1, 0, items)), len(items))
        head = buf.oldest()
        assert head is not None
        buf.remove(head[0])
    base_s = time.perf_counter() - began
    return total / bus_s, total / base_s


async def _takeovers(url: str) -> list[float]:
    times = []
    for i in range(KILLS):
        owners = [
            SiteOwner(
                f"kill{i}",
                BusConfig(url=url, lease_s=LEASE_S, holder=f"core-{i}-{n}"),
                apply=lambda items: _nothing(),
                on_acquired=_nothing,
                on_lost=_nothing,
            )
            for n in range(2)
        ]
        for o in owners:
            await o.start()
        while not any(o.owner for o in owners):
            await asyncio.sleep(0.01)
        victim = next(o for o in owners if o.owner)
        standby = next(o for o in owners if o is not victim)
        assert victim._task is not None
        await cancel_task(victim._task)
        victim._task = None
        victim.owner = False
        await victim.nc.close()
        began = time.perf_counter()
        while not standby.owner:
            await asyncio.sleep(0.005)
        times.append(time.perf_counter() - began)
        await standby.stop()
    return times


def run() -> list[dict[str, Any]]:
    """Benchmark rows (see the module docstring)."""
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        srv = servers.start_nats(tmp / "nats")
        try:
            url = servers.nats_url(srv)
            rate, base_rate = asyncio.run(_throughput(url, tmp))
            takeovers = asyncio.run(_takeovers(url))
        finally:
            srv.stop()
    target = LEASE_S + LEASE_S / 3
    p50, worst = statistics.median(takeovers), max(takeovers)
    return [
        {
            "name": f"bus_readings_per_s_{SITES}x{DEVICES}",
            "value": round(rate),
            "unit": "readings/s",
            "baseline": round(base_rate),
            "ratio": round(rate / base_rate, 3),
            "target": TARGET_READINGS_S,
            "met": rate >= TARGET_READINGS_S,
        },
        {
            "name": "bus_takeover_p50_s",
            "value": round(p50, 2),
            "unit": "s",
            "baseline": LEASE_S,
            "ratio": round(p50 / LEASE_S, 2),
            "target": round(target, 2),
            "met": p50 <= target,
        },
        {
            "name": "bus_takeover_max_s",
            "value": round(worst, 2),
            "unit": "s",
            "baseline": LEASE_S,
            "ratio": round(worst / LEASE_S, 2),
            "target": round(target, 2),
            "met": worst <= target,
        },
    ]
