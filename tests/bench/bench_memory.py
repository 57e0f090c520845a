"""Resident memory of wattkeeper with 500 devices / ~5,000 points (target <= 200 MB).

A synthetic site of 212 SDM630 meters (Modbus) and 48 office rooms of six MQTT devices each
(tests/bench/_synthetic.py): 500 devices, 5,016 points counting the energy-counter deltas. The
whole service runs under uvicorn in its own process (tests/bench/_memory_worker.py) with drivers
off; every point gets a reading each second through Core.emit for SECONDS, so live state, minute
rollups, energy intervals and the telemetry outbox fill as they would. Meanwhile GET /api/state
and GET /api/rooms are asked now and then. The figure is the peak (VmHWM); no baseline.

    python -m tests.bench memory
"""

from __future__ import annotations

import json
import secrets
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from tests import servers
from tests.bench import _synthetic
from tests.bench._common import Figure, pinned_to_load, result_of, spawn, start_broker
from tests.conftest import write_site

SECONDS = 75
TARGET_MB = 200.0


def ask(url: str, key: str, stop: threading.Event, answers: list[int]) -> None:
    """GET /api/state and /api/rooms every few seconds until stopped, counting answers in answers[0]."""
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
        while not stop.wait(3.0):
            for path in ("/api/state", "/api/rooms"):
                try:
                    client.get(path).raise_for_status()
                except httpx.ConnectError:
                    return  # the service finished its run and closed its port before we were stopped
                answers[0] += 1


def run() -> list[dict[str, Any]]:
    """Row: peak resident memory in MB."""
    key = f"bench-{secrets.token_hex(16)}"
    with tempfile.TemporaryDirectory() as tmp, pinned_to_load():
        work = Path(tmp)
        broker = start_broker(work / "mosquitto")
        vm = servers.start_victoria(work / "vm")
        try:
            site = _synthetic.memory_site(broker.url)
            cfg = {
                "site": str(write_site(site, work / "site.yaml")),
                "workdir": str(work),
                "influx_url": vm.url,
                "port": servers.free_port(),
                "key": key,
                "seconds": SECONDS,
            }
            path = work / "memory.json"
            path.write_text(json.dumps(cfg))
            proc = spawn("_memory_worker", str(path), measured=True)
            url = f"http://127.0.0.1:{cfg['port']}"
            servers.wait_http(f"{url}/healthz", timeout_s=60)
            stop = threading.Event()
            answers = [0]
            asker = threading.Thread(target=ask, args=(url, key, stop, answers))
            time.sleep(5)  # the first rounds of readings in
            asker.start()
            try:
                got = result_of(proc, timeout_s=SECONDS + 120)
            finally:
                stop.set()
                asker.join(30)
        finally:
            vm.stop()
            broker.server.stop()
    peak_mb = got["hwm_kb"] / 1024
    print(
        f"   {got['devices']} devices, {got['points']:,} points, {got['readings']:,} readings; "
        f"VmRSS {got['rss_kb'][0] / 1024:.0f} MB after 1 s, {got['rss_kb'][-1] / 1024:.0f} MB at the end, "
        f"peak {peak_mb:.0f} MB; {answers[0]} API answers",
        flush=True,
    )
    return [Figure("rss_500_devices_5000_points", peak_mb, "MB", None, TARGET_MB, at_most=True, digits=1).row()]


if __name__ == "__main__":
    for r in run():
        print(r)
