"""The MQTT broker restarted mid-stream: QoS 1 readings are not lost, duplicates collapse.

Three Tasmota energy plugs publish `tele/<t>/SENSOR` at QoS 1 as fast as the broker acknowledges,
their energy counter one step higher each message, so the counter value names the message. One
in fifty is published twice (a device resending after a lost PUBACK). Mosquitto, with
persistence, is restarted twice while they publish; the plugs reconnect at once, the service
after its back-off, so messages also queue in the service's persistent session. The service
runs in-process; what its drivers hand the core is recorded.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from drivers.types import DeviceStatus, Reading
from service.alarms import DEFAULT_CONFIG
from service.core import Core
from service.site import Site
from tests import servers
from tests.faults.helpers import figure, make_site
from tests.harness import eventually, running_service

PLUGS = ("plug-0", "plug-1", "plug-2")
MESSAGES = 3000  # per plug
DUPLICATE_EVERY = 50
STEP_KWH = 0.001
BASE_KWH = 100.0
HEATER = "plug-0"  # draws 2 kW on an office plug: one high_power_appliance alarm, never two
FAST = {k: replace(v, on_delay_s=min(v.on_delay_s, 1.0), off_delay_s=5.0) for k, v in DEFAULT_CONFIG.items()}


def site(mqtt_url: str) -> Site:
    devices = "\n".join(
        f"  - {{id: {p}, driver: mqtt, profile: tasmota-relay, topic: rs-{p}, role: office_equipment}}" for p in PLUGS
    )
    return make_site(
        f"""
site: {{id: mqrs, name: broker restart, timezone: Asia/Shanghai, allowed_interruption_s: 10,
        thresholds: {{plug_max_w: 1200}}}}
mqtt: {{url: "{mqtt_url}"}}
departments: [{{id: ops, name: Ops}}]
rooms: [{{id: r1, name: R1, department: ops, kind: office, devices: [{", ".join(PLUGS)}]}}]
devices:
{devices}
"""
    )


def sensor(plug: str, i: int, tz: Any) -> bytes:
    """Message i of a plug: its counter is BASE + i steps; Time is the plug's local clock (Tasmota)."""
    power = 2000 if plug == HEATER else 100
    total = round(BASE_KWH + i * STEP_KWH, 3)
    now = datetime.now(tz).replace(tzinfo=None, microsecond=0).isoformat()
    return json.dumps({"Time": now, "ENERGY": {"Total": total, "Power": power, "Voltage": 230}}).encode()


class Plug:
    """A QoS 1 publisher that keeps re-sending a message until the broker acknowledges it."""

    def __init__(self, plug: str, broker: servers.Mosquitto, tz: Any) -> None:
        self.plug = plug
        self.broker = broker
        self.tz = tz
        self.acked = 0
        self.resent = 0
        self.duplicates = 0

    async def run(self) -> None:
        i = 0
        while i < MESSAGES:
            try:
                async with aiomqtt.Client(self.broker.host, self.broker.port, identifier=f"dev-{self.plug}") as c:
                    while i < MESSAGES:
                        payload = sensor(self.plug, i, self.tz)
                        await c.publish(f"tele/rs-{self.plug}/SENSOR", payload, qos=1, timeout=2)
                        if i % DUPLICATE_EVERY == DUPLICATE_EVERY - 1:
                            await c.publish(f"tele/rs-{self.plug}/SENSOR", payload, qos=1, timeout=2)
                            self.duplicates += 1
                        i += 1
                        self.acked = i
                        if i % 20 == 0:
                            await asyncio.sleep(0.002)  # a stream, not one burst
            except aiomqtt.MqttError:
                self.resent += 1  # the message in hand goes again: maybe a duplicate, never a gap
                await asyncio.sleep(0.05)


@pytest.fixture
def taps(monkeypatch: pytest.MonkeyPatch) -> list[Reading]:
    """Every reading the drivers hand the core (Core.emit wrapped, not replaced)."""
    seen: list[Reading] = []
    original = Core.emit

    def tap(self: Core, batch: Sequence[Reading | DeviceStatus]) -> None:
        seen.extend(e for e in batch if isinstance(e, Reading))
        original(self, batch)

    monkeypatch.setattr(Core, "emit", tap)
    return seen


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[servers.Mosquitto]:
    b = servers.start_mosquitto(tmp_path / "mosquitto")
    try:
        yield b
    finally:
        b.server.stop()


@pytest.mark.slow
async def test_broker_restart_loses_no_qos1_reading_and_duplicates_collapse(
    broker: servers.Mosquitto, tmp_path: Path, taps: list[Reading]
) -> None:
    the_site = site(broker.url)
    tz = the_site.site.tz
    async with running_service(the_site, tmp_path, alarm_config=FAST) as svc:
        assert svc.services.hub is not None
        await eventually(lambda: _true(svc.services.hub.mqtt_connected), 20)
        plugs = [Plug(p, broker, tz) for p in PLUGS]
        tasks = [asyncio.create_task(p.run()) for p in plugs]
        total = MESSAGES * len(PLUGS)
        restarts = 0
        for share in (1 / 3, 2 / 3):
            while sum(p.acked for p in plugs) < total * share:
                await asyncio.sleep(0.01)
            await asyncio.to_thread(broker.restart)
            restarts += 1
        await asyncio.wait_for(asyncio.gather(*tasks), 120)

        def last_seen(plug: str) -> int:
            return max((_index(r) for r in taps if r.device == plug and r.point == "energy"), default=-1)

        await eventually(lambda: _true(all(last_seen(p) == MESSAGES - 1 for p in PLUGS)), 30)
        await asyncio.sleep(1.0)  # let any redelivery still on its way arrive

        async with svc.client("viewer") as c:
            alarms = (await c.get("/api/alarms", params={"state": "all", "limit": 1000})).json()
        journals = {a["id"]: await svc.services.store.journal(a["id"]) for a in alarms}

    lost = 0
    duplicates = 0
    energy_error_kwh = 0.0
    for plug in PLUGS:
        got = [_index(r) for r in taps if r.device == plug and r.point == "energy"]
        lost += len(set(range(MESSAGES)) - set(got))
        duplicates += len(got) - len(set(got))
        counted = sum(float(r.value) for r in taps if r.device == plug and r.point == "energy_delta")  # type: ignore[arg-type]
        energy_error_kwh = max(energy_error_kwh, abs(counted - (MESSAGES - 1) * STEP_KWH))
    published_twice = sum(p.duplicates for p in plugs)
    resent = sum(p.resent for p in plugs)
    keys = [(a["type"], a["subject"]) for a in alarms]
    heater = [a for a in alarms if (a["type"], a["subject"]) == ("high_power_appliance", HEATER)]
    raised = [t for a in heater for t in journals[a["id"]] if t.to_state == "active_unacked"]

    figure(
        "mqtt-restart",
        f"{lost} of {total:,} QoS1 readings lost across {restarts} broker restarts; "
        f"{duplicates:,} duplicate deliveries ({published_twice} sent twice, {resent} re-sent after a restart) "
        f"collapsed: energy off by {energy_error_kwh:.6f} kWh, {len(heater)} high_power_appliance alarm "
        f"raised {len(raised)} time(s)",
    )
    assert lost == 0, f"{lost} readings lost"
    assert duplicates >= published_twice, "the duplicates sent did not arrive: the test did not test collapsing"
    assert energy_error_kwh < 1e-6
    assert len(heater) == 1 and len(raised) == 1, (heater, raised)
    assert len(keys) == len(set(keys)), f"an alarm lifecycle was opened twice: {keys}"


def _index(r: Reading) -> int:
    return round((float(r.value) - BASE_KWH) / STEP_KWH)  # type: ignore[arg-type]


async def _true(value: object) -> bool:
    return bool(value)
