"""One measured drain of a queued MQTT stream (started by bench_ingest on the measured core).

    python -m tests.bench._ingest_worker baseline|candidate CONFIG.json

Both connect with a persistent session the benchmark created and filled beforehand, subscribe to
the same topics at QoS 1 and time from connecting until the stream's last message is done:

- baseline: a bare aiomqtt subscriber counting messages;
- candidate: wattkeeper's DriverHub + Core as `wattkeeper serve` assembles them (SQLite store,
  telemetry sink to VictoriaMetrics, MQTT notifier), done when the core has taken the last reading.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import aiomqtt
import uvloop

from tests.bench._common import report, service_settings


def _cpu_s() -> float:
    """CPU seconds this process has used (all threads: the sink's and the store's count too)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def baseline(cfg: dict[str, Any]) -> dict[str, Any]:
    """Count every message of the stream; seconds from connect to the last one."""
    topics: list[str] = cfg["topics"]
    total: int = cfg["messages"]
    cpu = _cpu_s()
    began = time.perf_counter()
    count = 0
    async with aiomqtt.Client(
        "127.0.0.1",
        cfg["port"],
        identifier=cfg["client_id"],
        clean_session=False,
        protocol=aiomqtt.ProtocolVersion.V311,
        keepalive=30,
    ) as client:
        for i in range(0, len(topics), 100):
            await client.subscribe([(t, 1) for t in topics[i : i + 100]])
        async for _ in client.messages:
            count += 1
            if count == total:
                break
        elapsed = time.perf_counter() - began
    return {"seconds": elapsed, "messages": count, "cpu_s": _cpu_s() - cpu}


async def candidate(cfg: dict[str, Any]) -> dict[str, Any]:
    """The stream through DriverHub -> Core; seconds from connect until the sentinel is in the live state."""
    from service.app import build_services, start_services, stop_services
    from service.config.site import load_site
    from tests.bench import _synthetic

    work = Path(cfg["workdir"])
    site = load_site(cfg["site"])
    settings = service_settings(work, site.mqtt.url, cfg["influx_url"])
    svc = build_services(site, settings, drivers=True)
    # The hub exactly as the service builds it (its client id names this round's session), started on the clock.
    hub, svc.hub = svc.hub, None
    assert hub is not None
    await start_services(svc)
    core = svc.core
    sentinel = _synthetic.sentinel_device(site).id
    try:
        cpu = _cpu_s()
        began = time.perf_counter()
        await hub.start()
        while True:
            seen = core.state.point(sentinel, "power", svc.clock.now())
            done = seen is not None and seen.value == _synthetic.SENTINEL_POWER_W
            if done and core.stats.readings == hub.readings_total:
                break
            await asyncio.sleep(0.002)
        elapsed = time.perf_counter() - began
        health = hub.health().values()
        result = {
            "seconds": elapsed,
            "messages": cfg["messages"],
            "cpu_s": _cpu_s() - cpu,
            "readings": core.stats.readings,
            "evaluations": core.stats.evaluations,
            "transitions": core.stats.transitions,
            "rejects": sum(h.rejects for h in health),
            "out_of_order": sum(h.out_of_order for h in health),
            "rejected_deltas": sum(h.rejected_deltas for h in health),
            "sink_depth": svc.sink.outbox_depth if svc.sink else None,
        }
    finally:
        await hub.stop()
        await stop_services(svc)
    return result


def main(argv: list[str]) -> int:
    mode, path = argv
    cfg = json.loads(Path(path).read_text())
    # uvloop, as under `wattkeeper serve` (uvicorn picks it when installed), for both sides.
    result = uvloop.run(baseline(cfg) if mode == "baseline" else candidate(cfg))
    report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
