"""Helpers for the simulator tests: worlds at a known moment, a running simulation, mbpoll and mosquitto clients."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from service.config.site import Device, Site, load_site
from simulators.runner import Simulation
from simulators.world import World
from tests.conftest import DEMO_SITE

TZ = ZoneInfo("Asia/Shanghai")
WORKDAY_10AM = datetime(2026, 7, 15, 10, 0, tzinfo=TZ)  # a Wednesday in July
LINE_LIMIT = 1 << 20  # mosquitto_sub -v lines (topic and payload) kept whole up to this size


@pytest.fixture(scope="session")
def demo() -> Site:
    """The demo site as shipped (for the pure model; no sockets)."""
    return load_site(DEMO_SITE)


def make_world(site: Site, *, seed: int = 0, start: datetime = WORKDAY_10AM, **kw: Any) -> World:
    """A world at a known moment."""
    return World(site, seed=seed, start=start, **kw)


def hold_rooms(world: World, plug_w: float, department: str | None = None) -> None:
    """Freeze rooms (all, or one department's): nobody in, lights and AC off, every plug at plug_w."""
    for room in world.office.rooms.values():
        if department in (None, room.room.department):
            world.set_room(
                room.id,
                occupied=False,
                lights=False if room.lights else None,
                ac_mode="off" if room.acs else None,
                plugs={p.id: plug_w for p in room.plugs},
            )


def devices(site: Site) -> dict[str, Device]:
    """Devices by id, read from the site's device list."""
    return {d.id: d for d in site.devices}


async def wait_until(check: Callable[[], Any], timeout_s: float = 15.0, every_s: float = 0.05) -> Any:
    """Poll until check() is truthy; return its value."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s")
        await asyncio.sleep(every_s)


async def poll(check: Callable[[], Awaitable[bool]], timeout_s: float = 15.0, every_s: float = 0.1) -> None:
    """Poll an async check until it holds."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s")
        await asyncio.sleep(every_s)


@pytest.fixture
async def sim(demo_site: Site) -> AsyncIterator[Simulation]:
    """The demo site simulated on free ports and a fresh broker, simulated time held still (speed 0)."""
    async with Simulation(demo_site, control_port=None, speed=0, seed=3, start=WORKDAY_10AM) as running:
        yield running


async def run(*argv: str, timeout_s: float = 15.0) -> tuple[int, str, str]:
    """Run a command without blocking the event loop the simulators live on."""
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    return proc.returncode or 0, out.decode(), err.decode()


async def mbpoll(port: int, *args: str, unit: int = 1) -> list[float]:
    """Read with Debian's mbpoll (PDU addressing, one poll); the values it prints."""
    code, out, err = await run(
        "mbpoll", "-m", "tcp", "-p", str(port), "-a", str(unit), "-0", "-1", "-o", "2", *args, "127.0.0.1"
    )
    if code != 0 or "failed" in out + err:
        raise ConnectionError(f"mbpoll {' '.join(args)}: {(out + err).strip().splitlines()[-1]}")
    return [float(line.split("\t")[1].split()[0]) for line in out.splitlines() if line.startswith("[")]


async def read_float(port: int, address: int, count: int = 1, unit: int = 1) -> list[float]:
    """SDM float32 input registers, big-endian words (mbpoll -B)."""
    return await mbpoll(port, "-t", "3:float", "-B", "-r", str(address), "-c", str(count), unit=unit)


async def read_holding(port: int, address: int, count: int = 1) -> list[int]:
    """16-bit holding registers."""
    return [int(v) % 65536 for v in await mbpoll(port, "-t", "4", "-r", str(address), "-c", str(count))]


async def write_holding(port: int, address: int, *values: int) -> None:
    """Write holding registers with mbpoll (FC16 for several)."""
    code, out, err = await run(
        "mbpoll", "-m", "tcp", "-p", str(port), "-a", "1", "-0", "-1", "-t", "4", "-r", str(address), "127.0.0.1",
        *(str(v) for v in values),
    )  # fmt: skip
    if code != 0 or "Written" not in out:
        raise ConnectionError((out + err).strip())


class Watch:
    """mosquitto_sub -v on some topics, every line kept."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.lines: list[tuple[str, str]] = []
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self, *topics: str) -> Watch:
        """Subscribe and return once the subscription is live (a probe came through)."""
        probe = f"probe/{uuid.uuid4().hex}"
        args = [a for t in (*topics, probe) for a in ("-t", t)]
        self._proc = await asyncio.create_subprocess_exec(
            "mosquitto_sub", "-p", str(self.port), "-v", *args, stdout=asyncio.subprocess.PIPE, limit=LINE_LIMIT
        )
        self._reader = asyncio.create_task(self._read())
        deadline = time.monotonic() + 10
        while not any(t == probe for t, _ in self.lines):
            assert time.monotonic() < deadline, "mosquitto_sub did not subscribe"
            await run("mosquitto_pub", "-p", str(self.port), "-t", probe, "-m", "x")
            await asyncio.sleep(0.05)
        return self

    async def _read(self) -> None:
        """Keep every line until mosquitto_sub's stdout ends.

        The reader must outlive any payload (bytes that are not UTF-8, an over-long line): if it
        stopped, the pipe would fill, never reach EOF, and waiting for the process would hang.
        """
        assert self._proc is not None and self._proc.stdout is not None
        stdout = self._proc.stdout
        while True:
            try:
                raw = await stdout.readline()
            except ValueError:  # a line over LINE_LIMIT: dropped by the stream, reading goes on
                self.lines.append(("", "<over-long line>"))
                continue
            if not raw:
                return
            topic, _, payload = raw.decode(errors="replace").rstrip("\n").partition(" ")
            self.lines.append((topic, payload))

    async def expect(self, topic: str, check: Callable[[str], bool] = lambda _p: True, timeout_s: float = 10) -> str:
        """The first payload on `topic` (seen so far or arriving) that passes `check`."""

        def found() -> str | None:
            return next((p for t, p in self.lines if t == topic and check(p)), None)

        payload: str = await wait_until(found, timeout_s)
        return payload

    def clear(self) -> None:
        """Forget what was seen."""
        self.lines.clear()

    async def stop(self) -> None:
        """Unsubscribe: end mosquitto_sub, read its output to the end, reap it (killed if it lingers)."""
        proc = self._proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
        if self._reader is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._reader), 5)
            self._reader.cancel()
        if proc is not None:
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()


def json_has(**expected: Any) -> Callable[[str], bool]:
    """A payload check: valid JSON with these key values."""

    def check(payload: str) -> bool:
        try:
            data = json.loads(payload)
        except ValueError:
            return False
        return isinstance(data, dict) and all(data.get(k) == v for k, v in expected.items())

    return check


async def pub(port: int, topic: str, payload: str) -> None:
    """mosquitto_pub."""
    code, out, err = await run("mosquitto_pub", "-p", str(port), "-t", topic, "-m", payload)
    assert code == 0, out + err
