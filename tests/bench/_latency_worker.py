"""Fault-to-alarm latencies, measured in one process on the measured core (started by bench_latency).

    python -m tests.bench._latency_worker CONFIG.json

The demo site's simulators (speed 1) and the service as `wattkeeper serve` builds it (drivers, core,
SQLite store, telemetry sink, MQTT notifier), every alarm type's on-delay 0. An alarm counts when
the service publishes its transition on the event bus (what SSE clients receive), i.e. after it is
stored and the notifiers have been handed it.

- backfeed: with both grids lost and the generator on the load, `interlock_fail` closes both
  breakers; the DSE controller (Modbus, polled every 0.5 s) shows it at its next poll.
- heater: a 2 kW heater on the meeting room's Shelly plug; the plug reports over MQTT. Also timed
  from the plug's report as a separate MQTT client sees it (tests/bench/_observer.py).
- broker round trip: publish and receive on the same broker, from the same event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiomqtt
import uvloop

from tests.bench._common import report, service_settings, spawn

OFF_DELAY_S = 0.5
PLUG, ROOM = "r2119-plug", "r2119"
HEATER_W, IDLE_W = 2000.0, 60.0


class Observer:
    """tests/bench/_observer.py on the load cores, its lines collected by a thread."""

    def __init__(self, port: int, topics: list[str]) -> None:
        self.proc = spawn("_observer", str(port), *topics, measured=False)
        self.seen: list[dict[str, Any]] = []
        self.ready = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            item = json.loads(line)
            if item.get("ready"):
                self.ready.set()
            else:
                self.seen.append(item)

    def first_after(self, t0: float, accept: Callable[[dict[str, Any]], bool]) -> float | None:
        """When the first accepted message after t0 arrived."""
        return next((m["t"] for m in list(self.seen) if m["t"] >= t0 and accept(m)), None)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


async def until(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout_s} s")
        await asyncio.sleep(0.02)


async def broker_round_trips(port: int, count: int) -> list[float]:
    """Seconds from publishing a message to receiving it back, `count` times."""
    topic = f"bench/rtt/{time.monotonic_ns()}"
    out = []
    async with aiomqtt.Client("127.0.0.1", port, identifier=f"bench-rtt-{time.monotonic_ns()}") as client:
        await client.subscribe(topic, qos=1)
        messages = aiter(client.messages)
        for _ in range(count):
            began = time.monotonic()
            await client.publish(topic, b"ping", qos=0)
            await anext(messages)
            out.append(time.monotonic() - began)
            await asyncio.sleep(random.uniform(0.01, 0.05))
    return out


async def measure(cfg: dict[str, Any]) -> dict[str, Any]:
    from service.alarms.engine import DEFAULT_CONFIG
    from service.app import build_services, start_services, stop_services
    from simulators.runner import Simulation
    from tests.conftest import site_for_test

    work = Path(cfg["workdir"])
    repeats: int = cfg["repeats"]
    rnd = random.Random(cfg.get("seed", 1))
    site = site_for_test(cfg["mqtt_url"])
    alarm_config = {k: replace(v, on_delay_s=0.0, off_delay_s=OFF_DELAY_S) for k, v in DEFAULT_CONFIG.items()}
    settings = service_settings(work, site.mqtt.url, cfg["influx_url"])
    plug = site.device(PLUG)
    observer = Observer(cfg["port"], [f"{plug.topic}/status/switch:0"])
    if not await asyncio.to_thread(observer.ready.wait, 30):
        raise TimeoutError("observer did not subscribe")
    raised: asyncio.Queue[tuple[float, dict[str, Any]]] = asyncio.Queue()
    async with Simulation(site, control_port=None, speed=1.0, seed=7) as sim:
        svc = build_services(site, settings, alarm_config=alarm_config)
        await start_services(svc)
        core = svc.core

        async def listen() -> None:
            async with svc.events.subscribe() as queue:
                while True:
                    event = await queue.get()
                    data = event["data"]
                    if event["event"] == "alarm" and data["state"] == "active_unacked":
                        raised.put_nowait((time.monotonic(), data))

        listener = asyncio.create_task(listen())

        def active(kind: str, subject: str) -> bool:
            return any(a.type == kind and a.subject == subject and a.active for a in core.engine.active())

        def value(device: str, point: str) -> object:
            got = core.state.point(device, point, svc.clock.now())
            return None if got is None else got.value

        async def raised_after(kind: str, subject: str, timeout_s: float) -> float:
            async with asyncio.timeout(timeout_s):
                while True:
                    at, data = await raised.get()
                    if data["type"] == kind and data["subject"] == subject:
                        return at

        def clear_queue() -> None:
            while not raised.empty():
                raised.get_nowait()

        try:
            await until(
                lambda: core.state.supply(svc.clock.now()).transfer_switches[0].position == "grid-a",
                30,
                "supply known",
            )
            backfeed = []
            for _ in range(repeats):
                sim.clear_faults()
                sim.fault("source_loss", "grid-a")
                sim.fault("source_loss", "grid-b")
                await until(
                    lambda: (
                        core.state.supply(svc.clock.now()).transfer_switches[0].position == "gen-1"
                        and not active("backfeed", "gen-1")
                    ),
                    60,
                    "generator on the load, no backfeed",
                )
                await asyncio.sleep(rnd.uniform(0.5, 1.5))  # any phase against the poll cycle
                clear_queue()
                began = time.monotonic()
                sim.fault("interlock_fail", "gen-1")
                backfeed.append(await raised_after("backfeed", "gen-1", 10) - began)
            sim.clear_faults()

            sim.set_room(ROOM, occupied=True, lights=True, plugs={PLUG: IDLE_W})
            await until(lambda: value(PLUG, "on") is not None, 30, "plug heard from")
            if value(PLUG, "on") is not True and svc.hub is not None:
                await svc.hub.command(PLUG, "on", True)  # the office model may have left it off
            heater, heater_report, report_delay = [], [], []
            for _ in range(repeats):
                sim.set_room(ROOM, plugs={PLUG: IDLE_W})
                await until(
                    lambda: value(PLUG, "power") == IDLE_W and not active("high_power_appliance", PLUG),
                    30,
                    "plug idle, no alarm",
                )
                await asyncio.sleep(rnd.uniform(0.5, 1.5))
                clear_queue()
                began = time.monotonic()
                sim.set_room(ROOM, plugs={PLUG: HEATER_W})
                at = await raised_after("high_power_appliance", PLUG, 10)
                heater.append(at - began)
                await asyncio.sleep(0.2)  # the observer's line may still be on its way
                reported = observer.first_after(began, lambda m: json.loads(m["payload"]).get("apower", 0) >= HEATER_W)
                if reported is not None:
                    heater_report.append(at - reported)
                    report_delay.append(reported - began)
            rtt = await broker_round_trips(cfg["port"], 2 * repeats)
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
            await stop_services(svc)
            observer.stop()
    return {
        "backfeed_s": backfeed,
        "heater_s": heater,
        "heater_report_s": heater_report,
        "report_delay_s": report_delay,
        "rtt_s": rtt,
        "poll_s": site.device("genset-1").poll_s,
    }


def main(argv: list[str]) -> int:
    cfg = json.loads(Path(argv[0]).read_text())
    report(uvloop.run(measure(cfg)))  # uvloop, as under `wattkeeper serve`
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
