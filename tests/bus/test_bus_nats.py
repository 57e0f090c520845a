"""Collectors and site owners over a real nats-server (JetStream, file storage) of the test's own."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from drivers.types import CommandResult, DeviceStatus, Reading, Value
from service.bus.protocol import BusConfig, Collector, Lease, SiteOwner, cancel_task
from tests import servers

LEASE_S = 1.0
T0 = datetime(2026, 7, 15, 2, 0, tzinfo=UTC)
Item = Reading | DeviceStatus


def counter(n: int) -> Reading:
    """The n-th reading of an energy counter: value n, one second apart."""
    return Reading(device="meter", point="import_energy", value=float(n), unit="kWh", ts=T0 + timedelta(seconds=n))


def config(srv: servers.Server, holder: str, **kw: object) -> BusConfig:
    return BusConfig(url=servers.nats_url(srv), lease_s=LEASE_S, batch_s=0.05, holder=holder, **kw)  # type: ignore[arg-type]


async def refuse(device: str, point: str, value: Value, timeout_s: float) -> CommandResult:
    return CommandResult(device=device, point=point, requested=value, status="refused", detail="test")


async def no_drivers() -> None:
    return None


async def until(cond: object, timeout_s: float = 20.0, what: str = "") -> None:
    """Wait for a condition (a time-out only ends a test that would otherwise hang; nothing timed is asserted)."""
    async with asyncio.timeout(timeout_s):
        while not cond():  # type: ignore[operator]
            await asyncio.sleep(0.02)


class Applied:
    """An owner's apply: the counter readings it was given, in order. A key frame (the collector's
    latest values, sent again when a core takes the site) repeats the latest reading: counted in
    `repeats`; anything older than the latest is a fault: kept in `older`."""

    def __init__(self) -> None:
        self.values: list[float] = []
        self.repeats = 0
        self.older: list[float] = []
        self.last: datetime | None = None

    async def __call__(self, items: Sequence[Item]) -> None:
        for i in items:
            if not isinstance(i, Reading):
                continue
            if self.last is None or i.ts > self.last:
                self.values.append(float(i.value))  # type: ignore[arg-type]
                self.last = i.ts
            elif i.ts == self.last:
                self.repeats += 1
            else:
                self.older.append(float(i.value))  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def collecting(
    srv: servers.Server, tmp: Path, holder: str, **kw: object
) -> AsyncIterator[tuple[Collector, asyncio.Task[None]]]:
    c = Collector("hq", config(srv, holder, **kw), tmp / holder, start_drivers=no_drivers, command=refuse)
    task = asyncio.create_task(c.run())
    try:
        yield c, task
    finally:
        await cancel_task(task)
        await c.close()


@contextlib.asynccontextmanager
async def owning(
    srv: servers.Server, holder: str, applied: Applied, dropped: list[int] | None = None
) -> AsyncIterator[SiteOwner]:
    async def nothing() -> None:
        return None

    owner = SiteOwner(
        "hq",
        config(srv, holder),
        apply=applied,
        on_acquired=nothing,
        on_lost=nothing,
        on_dropped=None if dropped is None else dropped.append,
    )
    await owner.start()
    try:
        yield owner
    finally:
        await owner.stop()


async def crash(owner: SiteOwner) -> None:
    """As a SIGKILL would leave it: no lease released, nothing acked any more."""
    assert owner._task is not None
    await cancel_task(owner._task)
    owner._task = None
    owner.owner = False  # so stop() does not release the lease
    await owner.nc.close()


async def test_readings_arrive_in_order_and_a_second_collector_is_fenced(
    nats_server: servers.Server, tmp_path: Path
) -> None:
    applied = Applied()
    async with owning(nats_server, "core-1", applied), collecting(nats_server, tmp_path, "edge-1") as (a, a_task):
        await until(a.holding.is_set)
        async with collecting(nats_server, tmp_path, "edge-2") as (b, _):
            for n in range(1, 101):
                a.emit([counter(n)])
                if n % 10 == 0:
                    await asyncio.sleep(0.06)
            await until(lambda: len(applied.values) >= 100)
            assert applied.values == [float(n) for n in range(1, 101)]
            assert not b.holding.is_set()  # a standby: its drivers never started
            assert b.stats.batches_published == 0
            # the first collector dies without a word: the standby takes over after the lease
            await cancel_task(a_task)
            await a.nc.close()
            await until(b.holding.is_set)
            assert b.lease is not None and a.lease is not None
            assert b.lease.epoch > a.lease.epoch
            b.emit([counter(101)])
            await until(lambda: len(applied.values) >= 101)
    assert applied.values == [float(n) for n in range(1, 102)]
    assert applied.older == []


async def test_bus_outage_buffers_on_disk_and_catches_up_in_order(nats_server: servers.Server, tmp_path: Path) -> None:
    applied = Applied()
    async with owning(nats_server, "core-1", applied), collecting(nats_server, tmp_path, "edge-1") as (c, _):
        await until(c.holding.is_set)
        c.emit([counter(1)])
        await until(lambda: applied.values == [1.0])
        nats_server.stop()
        for n in range(2, 52):
            c.emit([counter(n)])
            await asyncio.sleep(0.01)
        await until(lambda: len(c.buffer) > 0 and not c._pending)
        assert applied.values == [1.0]  # nothing arrives while the bus is down
        buffered = sorted(p.name for p in (tmp_path / "edge-1" / "bus-buffer" / "hq").glob("*.batch"))
        assert buffered, "the outage's batches are on disk"
        nats_server.start()  # same port, same JetStream store
        await until(lambda: len(applied.values) >= 51, timeout_s=30)
        assert applied.values == [float(n) for n in range(1, 52)]
        assert applied.older == []
        assert len(c.buffer) == 0


async def test_restarted_nats_server_loses_nothing_stored(nats_server: servers.Server, tmp_path: Path) -> None:
    applied = Applied()
    async with collecting(nats_server, tmp_path, "edge-1") as (c, _):
        await until(c.holding.is_set)
        c.emit([counter(n) for n in range(1, 21)])
        await until(lambda: c.stats.readings_published >= 20)
        # the first twenty are consumed and acknowledged by a core, then the core goes away
        async with owning(nats_server, "core-1", applied):
            await until(lambda: len(applied.values) >= 20)
        c.emit([counter(n) for n in range(21, 31)])
        await until(lambda: c.stats.readings_published >= 30)
        nats_server.stop()
        nats_server.start()
        async with owning(nats_server, "core-2", applied):
            await until(lambda: len(applied.values) >= 30, timeout_s=30)
            await asyncio.sleep(0.3)  # nothing acknowledged comes again
    assert applied.values == [float(n) for n in range(1, 31)]
    assert applied.older == []
    assert applied.repeats >= 1  # core-2 asked for a key frame when it took the site


async def test_takeover_goes_on_from_the_last_acknowledged_batch(nats_server: servers.Server, tmp_path: Path) -> None:
    first, second = Applied(), Applied()
    async with collecting(nats_server, tmp_path, "edge-1") as (c, _):
        await until(c.holding.is_set)
        async with owning(nats_server, "core-1", first) as one, owning(nats_server, "core-2", second) as two:
            await until(lambda: one.owner or two.owner)
            owner, standby, seen = (one, two, first) if one.owner else (two, one, second)
            for n in range(1, 41):
                c.emit([counter(n)])
                await asyncio.sleep(0.01)
            await until(lambda: len(seen.values) >= 40)
            await crash(owner)
            for n in range(41, 81):  # readings keep coming during the takeover
                c.emit([counter(n)])
                await asyncio.sleep(0.01)
            await until(lambda: standby.owner)
            rest = second if seen is first else first
            await until(lambda: len(rest.values) >= 40)
            await asyncio.sleep(0.3)
            # each once, in order; the new owner got the latest value again first (a key frame)
            assert seen.values + rest.values[rest.values[0] == seen.values[-1] :] == [float(n) for n in range(1, 81)]
            assert seen.older == rest.older == []


async def test_a_full_buffer_drops_the_oldest_and_the_core_hears_how_many(
    nats_server: servers.Server, tmp_path: Path
) -> None:
    applied = Applied()
    dropped: list[int] = []
    one_batch = 200  # bytes, about, of a batch of one reading
    async with (
        owning(nats_server, "core-1", applied, dropped),
        collecting(nats_server, tmp_path, "edge-1", buffer_max_bytes=20 * one_batch) as (c, _),
    ):
        await until(c.holding.is_set)
        c.emit([counter(1)])
        await until(lambda: applied.values == [1.0])
        nats_server.stop()
        for n in range(2, 102):
            c.emit([counter(n)])
            c._cut()  # one batch each
        assert c.buffer.dropped > 0
        nats_server.start()
        await until(lambda: applied.values[-1:] == [101.0], timeout_s=30)
        await until(lambda: bool(dropped))
    kept = applied.values[1:]
    assert kept == [float(n) for n in range(102 - len(kept), 102)]  # the newest, in order
    assert len(kept) + c.buffer.dropped == 100  # every reading either applied or counted as dropped
    assert dropped[-1] == c.buffer.dropped  # reported with the batches (telemetry_dropped on the core)


async def test_a_restarted_collector_forwards_its_buffer_first(nats_server: servers.Server, tmp_path: Path) -> None:
    applied = Applied()
    async with owning(nats_server, "core-1", applied):
        async with collecting(nats_server, tmp_path, "edge-1") as (c, _):
            await until(c.holding.is_set)
            nats_server.stop()
            c.emit([counter(n) for n in range(1, 11)])
            c._cut()
        assert len(c.buffer) == 1  # stopped with a batch the bus never took
        nats_server.start()
        async with collecting(nats_server, tmp_path, "edge-1") as (again, _):
            await until(again.holding.is_set)
            again.emit([counter(n) for n in range(11, 21)])
            await until(lambda: len(applied.values) >= 20, timeout_s=30)
    assert applied.values == [float(n) for n in range(1, 21)]
    assert applied.older == []


async def test_an_owner_whose_lease_was_taken_stops_applying(nats_server: servers.Server, tmp_path: Path) -> None:
    applied, lost = Applied(), asyncio.Event()

    async def nothing() -> None:
        return None

    async def on_lost() -> None:
        lost.set()

    owner = SiteOwner("hq", config(nats_server, "core-1"), apply=applied, on_acquired=nothing, on_lost=on_lost)
    await owner.start()
    try:
        async with collecting(nats_server, tmp_path, "edge-1") as (c, _):
            await until(lambda: owner.owner and c.holding.is_set())
            c.emit([counter(1)])
            await until(lambda: applied.values == [1.0])
            # another core takes the key (as after a pause longer than lease_s): the owner must notice
            assert owner._lease is not None
            await owner._lease.kv.delete("hq")
            assert await Lease(owner._lease.kv, "hq", "core-2").acquire()
            await until(lost.is_set)
            assert not owner.owner
            c.emit([counter(2)])
            await asyncio.sleep(0.5)
            assert applied.values == [1.0]  # nothing more applied by the core that lost the site
    finally:
        await owner.stop()


async def test_a_batch_that_fails_to_apply_comes_again_in_order(nats_server: servers.Server, tmp_path: Path) -> None:
    applied = Applied()
    failures: list[float] = []

    async def flaky(items: Sequence[Item]) -> None:
        values = [i.value for i in items if isinstance(i, Reading)]
        if 5.0 in values and not failures:
            failures.append(5.0)
            raise RuntimeError("the store did not take the batch")  # as Core.apply_now says
        await applied(items)

    async def nothing() -> None:
        return None

    owner = SiteOwner("hq", config(nats_server, "core-1"), apply=flaky, on_acquired=nothing, on_lost=nothing)
    await owner.start()
    try:
        async with collecting(nats_server, tmp_path, "edge-1") as (c, _):
            await until(lambda: owner.owner and c.holding.is_set())
            for n in range(1, 11):
                c.emit([counter(n)])
                c._cut()
            await until(lambda: len(applied.values) >= 10)
    finally:
        await owner.stop()
    assert failures == [5.0]
    assert applied.values == [float(n) for n in range(1, 11)]
    assert applied.older == []
