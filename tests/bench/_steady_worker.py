"""One measured steady-rate run (started by bench_steady on the measured core).

    python -m tests.bench._steady_worker baseline|candidate CONFIG.json

Subscribes (persistent session, QoS 1, the driver's topic list), touches the `ready` file, then
waits for the first message, lets `warmup_s` pass and measures `measure_s`: CPU time of the whole
process (all threads: the telemetry sink's and the store's count too) and messages received.

- baseline: a bare aiomqtt subscriber counting messages;
- candidate: wattkeeper as `wattkeeper serve` assembles it (DriverHub, Core, SQLite store,
  telemetry sink to VictoriaMetrics, MQTT notifier, scheduler).

Profile the candidate with `py-spy record -r 250 --gil -f raw -o out.txt --pid <pid>`.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import aiomqtt
import uvloop

from tests.bench._common import report, service_settings
from tests.bench._ingest_worker import _cpu_s


def _ready(cfg: dict[str, Any]) -> None:
    """Tell the benchmark the subscriptions are in place (it starts the publisher then)."""
    Path(cfg["ready"]).touch()


async def _window(cfg: dict[str, Any], count: list[int]) -> dict[str, Any]:
    """Wait for the first message and the warm-up, then CPU and messages over measure_s."""
    while count[0] == 0:
        await asyncio.sleep(0.01)
    await asyncio.sleep(cfg["warmup_s"])
    cpu, n, began = _cpu_s(), count[0], time.monotonic()
    await asyncio.sleep(cfg["measure_s"])
    ended = time.monotonic()
    return {"seconds": ended - began, "cpu_s": _cpu_s() - cpu, "messages": count[0] - n, "window": [began, ended]}


async def baseline(cfg: dict[str, Any]) -> dict[str, Any]:
    """Count messages; CPU over the window."""
    topics: list[str] = cfg["topics"]
    count = [0]

    async def consume(client: aiomqtt.Client) -> None:
        async for _ in client.messages:
            count[0] += 1

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
        _ready(cfg)
        task = asyncio.create_task(consume(client))
        result = await _window(cfg, count)
        task.cancel()
    return result


async def candidate(cfg: dict[str, Any]) -> dict[str, Any]:
    """The stream through the whole service; CPU over the window, and what was left undone at its end."""
    from service.app import build_services, start_services, stop_services
    from service.config.site import load_site

    work = Path(cfg["workdir"])
    site = load_site(cfg["site"])
    settings = service_settings(work, site.mqtt.url, cfg["influx_url"])
    svc = build_services(site, settings, drivers=True)
    hub = svc.hub
    assert hub is not None
    driver = hub._drivers["mqtt"]
    count = [0]
    dispatch = driver._dispatch  # type: ignore[attr-defined]

    def counted(topic: str, payload: bytes, retained: bool) -> None:
        count[0] += 1
        dispatch(topic, payload, retained)

    driver._dispatch = counted  # type: ignore[attr-defined]
    await start_services(svc)
    lags: list[float] = []

    async def watch_loop() -> None:
        """How late a 10 ms sleep wakes: what held the event loop (a reading waits that long too)."""
        while True:
            asked = time.monotonic()
            await asyncio.sleep(0.01)
            lags.append(time.monotonic() - asked - 0.01)

    watcher = asyncio.create_task(watch_loop())
    try:
        while not driver.connected:  # type: ignore[attr-defined]
            await asyncio.sleep(0.01)
        _ready(cfg)
        result = await _window(cfg, count)
        health = hub.health().values()
        sink = svc.sink
        result.update(
            readings=svc.core.stats.readings,
            rejects=sum(h.rejects for h in health),
            out_of_order=sum(h.out_of_order for h in health),
            clock_skew=sum(h.clock_skew for h in health),
            unapplied=hub.readings_total - svc.core.stats.readings,
            sink_writes=getattr(sink, "writes", None),
            sink_depth=sink.outbox_depth if sink else None,
            loop_lag_max_s=max(lags),
            loop_lag_over_100ms=sum(1 for lag in lags if lag > 0.1),
        )
    finally:
        watcher.cancel()
        await stop_services(svc)
    return result


def main(argv: list[str]) -> int:
    mode, path = argv
    cfg = json.loads(Path(path).read_text())
    result = uvloop.run(baseline(cfg) if mode == "baseline" else candidate(cfg))
    report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
