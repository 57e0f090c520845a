"""`wattkeeper simulate` as a user runs it: a real process serving Modbus, MQTT and the control API until SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.config.site import Site
from simulators.world import World
from tests import servers
from tests.conftest import write_site
from tests.simulators.conftest import TZ, Watch, devices, read_float, run

START = "2026-07-15T10:00"  # site local time (Asia/Shanghai): a Wednesday morning
WK = [sys.executable, "-m", "service", "simulate"]


def tail(path: Path) -> str:
    """The end of a log file, for an assertion message."""
    return path.read_text(errors="replace")[-4000:]


async def started(proc: asyncio.subprocess.Process, url: str, stderr: Path, timeout_s: float = 60.0) -> Any:
    """GET url until the control API answers; fail with the process's stderr if it dies first."""
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(timeout=5) as client:
        while True:
            assert proc.returncode is None, f"simulate exited {proc.returncode}: {tail(stderr)}"
            try:
                r = await client.get(url)
                if r.status_code == 200:
                    return r.json()
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"control API not up after {timeout_s}s: {tail(stderr)}"
            await asyncio.sleep(0.2)


async def test_simulate_serves_the_site_and_stops_cleanly_on_sigterm(
    demo_site: Site, fresh_mosquitto: servers.Mosquitto, tmp_path: Path
) -> None:
    site_file = write_site(demo_site, tmp_path / "site.yaml")
    port = servers.free_port()
    watch = await Watch(fresh_mosquitto.port).start("zigbee2mqtt/r2119-occ/availability", "tele/r2119-light/LWT")
    stderr = tmp_path / "stderr.txt"
    with stderr.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            *WK, "--site", str(site_file), "--port", str(port), "--seed", "3", "--start", START,
            "--generator-start-s", "2", "--speed", "0.01",
            env={**os.environ, "WATTKEEPER_MQTT_URL": fresh_mosquitto.url},
            stdout=asyncio.subprocess.DEVNULL, stderr=err,
        )  # fmt: skip
    try:
        # at 0.01 simulated s per real s the clock stays on the start time for 50 real s (one 0.5 s quantum)
        state = await started(proc, f"http://127.0.0.1:{port}/sim/state", stderr)
        assert state["time"] == "2026-07-15T10:00:00+08:00" and state["seed"] == 3 and state["speed"] == 0.01
        assert state["generators"]["gen-1"]["start_s"] == 2.0

        # the same seed and start give the same world as the pure model built here
        reference = World(demo_site, seed=3, start=datetime(2026, 7, 15, 10, 0, tzinfo=TZ), generator_start_s=2)
        expected = json.loads(json.dumps(reference.state()))
        assert {k: v for k, v in state.items() if k != "speed"} == expected

        # a real Modbus master reads the modelled meter
        meter_port = devices(demo_site)["meter-grid-a"].port
        assert meter_port is not None
        (power_w,) = await read_float(meter_port, 0x0034)
        assert power_w == pytest.approx(state["devices"]["meter-grid-a"]["power_w"], abs=0.1) and power_w > 10_000
        await watch.expect("zigbee2mqtt/r2119-occ/availability", lambda p: json.loads(p) == {"state": "online"})
        await watch.expect("tele/r2119-light/LWT", lambda p: p == "Online")

        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
        assert "Traceback" not in tail(stderr)
        # a clean stop: every device announced gone (a killed process would leave only the broker's wills)
        await watch.expect("zigbee2mqtt/r2119-occ/availability", lambda p: json.loads(p) == {"state": "offline"})
        await watch.expect("tele/r2119-light/LWT", lambda p: p == "Offline")
        with pytest.raises(ConnectionError):
            await read_float(meter_port, 0x0034)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await watch.stop()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--start", "next tuesday"], "--start 'next tuesday' is not an ISO 8601 time"),
        (["--generator-start-s", "0"], "--generator-start-s"),
    ],
)
async def test_bad_options_are_refused_before_anything_starts(args: list[str], needle: str) -> None:
    code, out, err = await run(*WK, *args, "--port", str(servers.free_port()), timeout_s=60)
    assert code == 2
    assert needle in out + err
