"""Real processes: a collector and two cores joined by a nats-server of the test's own, PostgreSQL,
Mosquitto and the demo site's simulators. The owning core is SIGKILLed while faults keep coming:
the other core takes the site over; every fault becomes one alarm and one notification; the energy
counted equals the meters' counter span exactly once."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import urllib.error
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiomqtt
import orjson
import pytest

from drivers.types import Reading
from service.bus.protocol import decode_batch, readings_subject
from service.store.db import Store
from simulators.runner import Simulation
from tests import servers
from tests.conftest import site_for_test, write_site
from tests.faults.helpers import ServiceProcess
from tests.harness import eventually

LEASE_S = 2.0
ROOMS = ("r2101", "r3101")  # lit and empty: one before the kill, one during the takeover


async def stream_counters(url: str) -> dict[str, list[float]]:
    """Every energy-counter reading in the site's readings stream, per meter, in stream order."""
    import nats

    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        sub = await js.subscribe(readings_subject("hq"), ordered_consumer=True)
        info = await js.stream_info("WATTKEEPER")
        out: dict[str, list[float]] = {}
        got = 0
        while got < info.state.messages:
            msg = await sub.next_msg(timeout=5)
            got += 1
            for item in decode_batch(msg.data).items:
                if isinstance(item, Reading) and item.point == "import_energy" and item.value is not None:
                    out.setdefault(item.device, []).append(float(item.value))
        return out
    finally:
        await nc.close()


async def stream_last_seq(url: str) -> int:
    import nats

    nc = await nats.connect(url)
    try:
        return int((await nc.jetstream().stream_info("WATTKEEPER")).state.last_seq)
    finally:
        await nc.close()


def post_status(core: ServiceProcess, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    """POST as an operator; the status code and the JSON body, errors included."""
    try:
        return 200, core.post(path, body)
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())


def owner_of(cores: list[ServiceProcess]) -> ServiceProcess | None:
    owners = []
    for core in cores:
        if core.proc is None or core.proc.poll() is not None:
            continue
        try:
            if core.get("/healthz").get("bus_owner"):
                owners.append(core)
        except OSError:
            continue
    assert len(owners) <= 1, "two cores own the site at once"
    return owners[0] if owners else None


async def test_sigkill_the_owner_the_other_core_takes_over_nothing_lost_nothing_twice(
    fresh_mosquitto: servers.Mosquitto, nats_server: servers.Server, postgres_url: str, tmp_path: Path
) -> None:
    site = site_for_test(fresh_mosquitto.url)
    thresholds = site.site.thresholds.model_copy(update={"empty_room_delay_s": 1})
    site = site.model_copy(update={"site": site.site.model_copy(update={"thresholds": thresholds})})
    site_file = write_site(site, tmp_path / "site.yaml")
    bus_url = servers.nats_url(nats_server)
    env = {
        "WATTKEEPER_BUS_URL": bus_url,
        "WATTKEEPER_BUS_LEASE_S": str(LEASE_S),
        "WATTKEEPER_DATABASE_URL": postgres_url,
        "WATTKEEPER_MQTT_URL": fresh_mosquitto.url,
    }
    cores = [ServiceProcess(site_file, tmp_path / "core-a", env), ServiceProcess(site_file, tmp_path / "core-b", env)]
    cores[1].keys = cores[0].keys
    edge = tmp_path / "edge"
    edge.mkdir()
    collector_env = {k: v for k, v in os.environ.items() if not k.startswith("WATTKEEPER_")}
    collector_env |= {**env, "WATTKEEPER_DATA_DIR": str(edge / "var"), "WATTKEEPER_ENV": "test"}
    collector: subprocess.Popen[bytes] | None = None
    notices: list[dict[str, Any]] = []

    async def listen() -> None:
        async with aiomqtt.Client("127.0.0.1", fresh_mosquitto.port) as client:
            await client.subscribe(f"{site.notifications.mqtt_topic}/+", qos=1)
            async for message in client.messages:
                notices.append(orjson.loads(message.payload))

    listener = asyncio.create_task(listen())
    try:
        async with Simulation(site, control_port=None, seed=5) as sim:
            with (edge / "collector.log").open("ab") as log:
                collector = subprocess.Popen(  # noqa: ASYNC220 - a child that outlives this call
                    [sys.executable, "-m", "service", "collect", "--site", str(site_file)],
                    cwd=edge,
                    env=collector_env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            # one after the other: two cores importing WATTKEEPER_API_KEYS into one empty store at
            # the same instant each store the keys under an id of their own and revoke the other's
            for c in cores:
                await asyncio.to_thread(c.start)
            owner = await eventually(lambda: asyncio.to_thread(owner_of, cores), 30, 0.2)
            other = cores[1] if owner is cores[0] else cores[0]

            async def meters_seen() -> bool | None:
                rows = await asyncio.to_thread(owner.get, "/api/state?device=meter-grid-a", "viewer")
                items = rows["items"] if isinstance(rows, dict) else rows
                return any(r.get("point") == "import_energy" and r.get("value") for r in items) or None

            await eventually(meters_seen, 30, 0.2)
            sim.set_room(ROOMS[0], occupied=False, lights=True)

            async def alarmed(core: ServiceProcess, room: str) -> bool | None:
                active = await asyncio.to_thread(core.get, "/api/alarms?state=active", "viewer")
                return any(a["type"] == "lit_empty_room" and a["subject"] == room for a in active) or None

            await eventually(lambda: alarmed(owner, ROOMS[0]), 30, 0.2)
            assert await alarmed(other, ROOMS[0])  # the core that does not own the site reads PostgreSQL
            killed_at = time.monotonic()
            owner.sigkill()
            sim.set_room(ROOMS[1], occupied=False, lights=True)  # a fault during the takeover
            assert await eventually(lambda: asyncio.to_thread(owner_of, [other]), 30, 0.1) is other
            takeover_s = time.monotonic() - killed_at
            await eventually(lambda: alarmed(other, ROOMS[1]), 30, 0.2)
            assert await alarmed(other, ROOMS[0])  # still open, taken from PostgreSQL, not raised again
            # commands from the API of the new owner go over the bus to the collector, are verified
            # by readback there and audited here; the allow-list holds on both sides
            sim.set_room("r2119", lights=True)
            done = await asyncio.to_thread(
                other.post, "/api/devices/r2119-light/commands", {"command": "on", "value": False}
            )
            assert (done["status"], done["observed"]) == ("confirmed", False), done
            assert sim.state()["devices"]["r2119-light"]["on"] is False
            code, refused = await asyncio.to_thread(
                post_status, other, "/api/devices/srv1-ups/commands", {"command": "on", "value": False}
            )
            assert (code, refused["status"]) == (403, "refused")
            assert "role critical" in refused["detail"]
            await asyncio.sleep(1.0)  # room for a wrong second notification

            # the edge stops; the new owner applies what the stream holds
            collector.terminate()
            collector.wait(20)
            last = await stream_last_seq(bus_url)
            store = Store(postgres_url)
            await store.open()
            try:

                async def caught_up() -> bool | None:
                    return ((await store.get_state("bus_position")) or {}).get("seq") == last or None

                await eventually(caught_up, 30, 0.2)
                # read while the owner runs: a stop closes the open quarter hours as intervals
                alarms = await store.list_alarms(limit=1000)
                audit = await store.list_audit(device="r2119-light")
                audit_refused = await store.list_audit(device="srv1-ups")
                checkpoint = await store.get_state("energy_counters")
                intervals = await store.energy_intervals(
                    datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)
                )
            finally:
                await store.close()
            counters = await stream_counters(bus_url)
    finally:
        listener.cancel()
        if collector is not None and collector.poll() is None:
            collector.kill()
            collector.wait(5)
        for c in cores:
            c.stop()

    print(f"takeover after SIGKILL: {takeover_s:.2f} s (lease_s {LEASE_S})")
    lifecycles = Counter((a.type, a.subject) for a in alarms if a.type == "lit_empty_room")
    assert {room: lifecycles[("lit_empty_room", room)] for room in ROOMS} == dict.fromkeys(ROOMS, 1)
    raised = Counter(
        n["subject"] for n in notices if n.get("type") == "lit_empty_room" and n.get("state") == "active_unacked"
    )
    assert {room: raised[room] for room in ROOMS} == dict.fromkeys(ROOMS, 1)
    assert [(a.point, a.new, a.result) for a in audit] == [("on", False, "confirmed")]
    assert [(a.point, a.new, a.result) for a in audit_refused] == [("on", False, "refused")]
    assert isinstance(checkpoint, dict)
    checked = 0
    for meter, values in counters.items():
        if meter not in checkpoint:
            continue
        spent = values[-1] - values[0]
        counted = sum(i.kwh for i in intervals if i.meter == meter) + sum(
            kwh for kwh, _ in checkpoint[meter]["open"].values()
        )
        assert checkpoint[meter]["value"] == pytest.approx(values[-1])
        if spent > 0:
            assert counted == pytest.approx(spent, rel=1e-3), meter
            checked += 1
            print(f"{meter}: counter span {spent:.4f} kWh, counted {counted:.4f} kWh")
    assert checked >= 1


async def test_bus_down_the_site_shows_stale_then_catches_up_with_nothing_lost(
    fresh_mosquitto: servers.Mosquitto, nats_server: servers.Server, postgres_url: str, tmp_path: Path
) -> None:
    site = site_for_test(fresh_mosquitto.url)
    site_file = write_site(site, tmp_path / "site.yaml")
    bus_url = servers.nats_url(nats_server)
    env = {
        "WATTKEEPER_BUS_URL": bus_url,
        "WATTKEEPER_BUS_LEASE_S": str(LEASE_S),
        "WATTKEEPER_DATABASE_URL": postgres_url,
        "WATTKEEPER_MQTT_URL": fresh_mosquitto.url,
    }
    core = ServiceProcess(site_file, tmp_path / "core", env)
    edge = tmp_path / "edge"
    edge.mkdir()
    collector_env = {k: v for k, v in os.environ.items() if not k.startswith("WATTKEEPER_")}
    collector_env |= {**env, "WATTKEEPER_DATA_DIR": str(edge / "var"), "WATTKEEPER_ENV": "test"}
    buffer = edge / "var" / "bus-buffer" / site.site.id
    collector: subprocess.Popen[bytes] | None = None

    async def grid_a_quality() -> str | None:
        rows = await asyncio.to_thread(core.get, "/api/state?device=meter-grid-a", "viewer")
        items = rows["items"] if isinstance(rows, dict) else rows
        return next((r["quality"] for r in items if r.get("point") == "import_energy"), None)

    try:
        async with Simulation(site, control_port=None, seed=7):
            with (edge / "collector.log").open("ab") as log:
                collector = subprocess.Popen(  # noqa: ASYNC220 - a child that outlives this call
                    [sys.executable, "-m", "service", "collect", "--site", str(site_file)],
                    cwd=edge,
                    env=collector_env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            await asyncio.to_thread(core.start)
            await eventually(lambda: asyncio.to_thread(owner_of, [core]), 30, 0.2)
            await eventually(lambda: _is(grid_a_quality, "good"), 30, 0.2)
            nats_server.stop()
            # the core hears nothing: the meter's values go stale on the dashboard and the API
            await eventually(lambda: _is(grid_a_quality, "stale"), 30, 0.2)
            await eventually(lambda: asyncio.to_thread(lambda: len(list(buffer.glob("*.batch"))) >= 5 or None), 30)
            nats_server.start()  # same port, same store
            await eventually(lambda: _is(grid_a_quality, "good"), 60, 0.2)
            await eventually(lambda: asyncio.to_thread(lambda: not list(buffer.glob("*.batch")) or None), 60, 0.2)
            collector.terminate()
            collector.wait(20)
            last = await stream_last_seq(bus_url)
            store = Store(postgres_url)
            await store.open()
            try:

                async def caught_up() -> bool | None:
                    return ((await store.get_state("bus_position")) or {}).get("seq") == last or None

                await eventually(caught_up, 30, 0.2)
                checkpoint = await store.get_state("energy_counters")
                intervals = await store.energy_intervals(
                    datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)
                )
            finally:
                await store.close()
            counters = await stream_counters(bus_url)
    finally:
        if collector is not None and collector.poll() is None:
            collector.kill()
            collector.wait(5)
        core.stop()

    assert isinstance(checkpoint, dict)
    values = counters["meter-grid-a"]
    assert values == sorted(values)  # forwarded in order
    spent = values[-1] - values[0]
    counted = sum(i.kwh for i in intervals if i.meter == "meter-grid-a") + sum(
        kwh for kwh, _ in checkpoint["meter-grid-a"]["open"].values()
    )
    assert spent > 0
    assert counted == pytest.approx(spent, rel=1e-3)


async def _is(probe: Any, wanted: str) -> bool | None:
    return (await probe()) == wanted or None
