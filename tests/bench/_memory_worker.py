"""wattkeeper with 500 devices / ~5,000 points, fed for a while; its resident memory (started by bench_memory).

    python -m tests.bench._memory_worker CONFIG.json

The whole service as `wattkeeper serve` runs it (uvicorn, SQLite store, telemetry sink into
VictoriaMetrics, MQTT notifier, scheduler), drivers off: every point of every device gets a
reading each second through Core.emit, in one batch per device as the drivers hand them over.
VmRSS is sampled every second from /proc/self/status; VmHWM is the peak.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvicorn
import uvloop

from drivers.types import Value
from tests.bench._common import report, service_settings


def status_kb(field: str) -> int:
    """A field of /proc/self/status in kB (VmRSS, VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def value_for(point: Any, rnd: random.Random, tick: int) -> Value:
    """A plausible value of a profile point."""
    kind = getattr(point, "type", "float")
    if kind == "bool":
        return rnd.random() < 0.5
    if kind == "str":
        choices = getattr(point, "choices", None) or ["idle"]
        return str(rnd.choice(list(choices)))
    if point.kind == "counter":
        return 1000.0 + tick * 0.01
    if point.unit == "V":
        return round(rnd.uniform(225, 235), 1)
    if point.unit == "Hz":
        return round(rnd.uniform(49.9, 50.1), 2)
    if kind == "int":
        return rnd.randint(0, 100)
    lo = point.min if getattr(point, "min", None) is not None else 0.0
    hi = point.max if getattr(point, "max", None) is not None else lo + 5000.0
    return round(rnd.uniform(lo, hi), 2)


async def run(cfg: dict[str, Any]) -> dict[str, Any]:
    from drivers.profiles import load_profile
    from drivers.types import Reading
    from service.app import create_app
    from service.config.site import load_site

    site = load_site(cfg["site"])
    work = Path(cfg["workdir"])
    settings = service_settings(work, site.mqtt.url, cfg["influx_url"], api_keys={cfg["key"]: "viewer"})
    app = create_app(site, settings, drivers=False)
    core = app.state.services.core
    config = uvicorn.Config(app, host="127.0.0.1", port=cfg["port"], log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    rnd = random.Random(1)
    devices = [(d.id, load_profile(d.profile).points) for d in site.devices]
    print(json.dumps({"serving": True}), flush=True)
    samples = []
    began = time.monotonic()
    tick = 0
    while time.monotonic() - began < cfg["seconds"]:
        tick += 1
        now = datetime.now(UTC)
        for dev, points in devices:
            batch = []
            for p in points:
                batch.append(Reading(device=dev, point=p.name, value=value_for(p, rnd, tick), unit=p.unit, ts=now))
                if p.kind == "counter":
                    batch.append(Reading(device=dev, point=f"{p.name}_delta", value=0.01, unit=p.unit, ts=now))
            core.emit(batch)
            await asyncio.sleep(0)
        await asyncio.sleep(max(0.0, began + tick - time.monotonic()))
        samples.append(status_kb("VmRSS"))
    result = {
        "points": len(core.state.points(datetime.now(UTC))),
        "devices": len(site.devices),
        "readings": core.stats.readings,
        "rss_kb": samples,
        "hwm_kb": status_kb("VmHWM"),
    }
    server.should_exit = True
    await serving
    return result


def main(argv: list[str]) -> int:
    cfg = json.loads(Path(argv[0]).read_text())
    report(uvloop.run(run(cfg)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
