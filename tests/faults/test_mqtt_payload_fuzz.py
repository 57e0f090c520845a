"""100,000 hypothesis-generated MQTT payloads across every MQTT profile: no crash, every reject counted.

The bulk goes through the MQTT driver's own message handler in-process (what runs for every
message the broker delivers), each payload checked on its own: the device's reject counter must
move by exactly what the payload's construction says (tests/faults/fuzz_payloads.py), no
exception may escape into the handler's safety net, and no reading may carry a value its point
cannot take. The driver is the one a service builds (`service.app.build_services`, never
started), so the rejects also go the way the core's tick takes them into the service's metrics
registry, and the text `/metrics` renders must show them per device. A smaller batch then goes
through the real broker into the running service, and `/metrics` must show the same count per
device.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import aiomqtt
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from drivers.mqtt import MqttDriver
from drivers.profiles import MqttProfile, load_profile
from drivers.types import DeviceStatus, Quality, Reading
from service.app import build_services
from service.config.settings import Settings
from service.config.site import Site
from service.core import Core
from tests import servers
from tests.faults.fuzz_payloads import MQTT_PROFILES, Message, message, targets
from tests.faults.helpers import figure, make_site
from tests.harness import eventually, running_service

BULK_EXAMPLES = 4_000
PER_EXAMPLE = 25  # 100,000 payloads
BROKER_EXAMPLES = 80  # 2,000 payloads through Mosquitto
DEVICES = {f"fz-{p}": (p, f"zigbee2mqtt/fz-{p}" if p.startswith("z2m") else f"fz-{p}") for p in MQTT_PROFILES}


class Crashes(logging.Handler):
    """Counts what the message loop's safety net catches (logged at ERROR by drivers.mqtt)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def reading_problems(batch: Sequence[Reading | DeviceStatus]) -> list[str]:
    """Readings whose value their point cannot take (a bad reading must carry no value)."""
    out = []
    for r in batch:
        if not isinstance(r, Reading):
            continue
        if r.quality is not Quality.good:
            if r.value is not None:
                out.append(f"{r.device}.{r.point}: bad reading with value {r.value!r}")
            continue
        profile = load_profile(DEVICES[r.device][0])
        assert isinstance(profile, MqttProfile)
        name = r.point.removesuffix("_delta")
        point = profile.point(name)
        v = r.value
        if point.type == "bool" and r.point == name:
            ok = isinstance(v, bool)
        elif point.type in ("float", "int") or r.point != name:
            ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            if ok and r.point == name:
                ok = (point.min is None or v >= point.min) and (point.max is None or v <= point.max)  # type: ignore[operator]
            if ok and r.point != name:
                ok = v >= 0  # type: ignore[operator]
        else:
            ok = isinstance(v, str) and (not point.choices or v in point.choices)
        if not ok:
            out.append(f"{r.device}.{r.point} = {v!r}")
    return out


def fuzz_site(mqtt_url: str) -> Site:
    """One device of each MQTT profile."""
    devices = "\n".join(f"  - {{id: {d}, driver: mqtt, profile: {p}, topic: {t}}}" for d, (p, t) in DEVICES.items())
    return make_site(
        f'site: {{id: fuzz, name: fuzz, allowed_interruption_s: 10}}\nmqtt: {{url: "{mqtt_url}"}}\n'
        f"devices:\n{devices}\n"
    )


def test_100k_payloads_through_the_mqtt_message_handler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    problems: list[str] = []
    # What the drivers hand the core is checked here instead of queued: the core is never started.
    monkeypatch.setattr(Core, "emit", lambda self, batch: problems.extend(reading_problems(batch)))
    config = Settings(_env_file=None, database_url=f"sqlite:///{tmp_path}/wk.db", data_dir=tmp_path)
    # Never started: messages are handed to the handler directly, nothing connects to this broker.
    svc = build_services(fuzz_site("mqtt://127.0.0.1:1"), config)
    core, hub = svc.core, svc.hub
    assert hub is not None and core.rejects_source is not None
    rejects_source = core.rejects_source
    driver = hub._drivers["mqtt"]  # the generic MQTT driver; _dispatch is what its message loop calls
    assert isinstance(driver, MqttDriver)
    stats = {d: driver._devices[d].stats for d in DEVICES}
    all_targets = targets(DEVICES)
    kinds: Counter[str] = Counter()
    expected: Counter[str] = Counter()
    crashes = Crashes()
    drivers_log = logging.getLogger("wattkeeper.drivers")
    level = drivers_log.level
    drivers_log.addHandler(crashes)
    drivers_log.setLevel(logging.ERROR)  # one warning per reject would cost more than the parsing

    @settings(
        max_examples=BULK_EXAMPLES,
        database=None,
        deadline=None,
        derandomize=True,
        phases=[Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(st.lists(message(all_targets), min_size=PER_EXAMPLE, max_size=PER_EXAMPLE))
    def feed(batch: list[Message]) -> None:
        for m in batch:
            before = stats[m.device].rejects
            driver._dispatch(m.topic, m.payload, False)
            counted = stats[m.device].rejects - before
            assert counted == m.rejects, f"{m.kind} on {m.topic}: {m.payload[:300]!r} counted {counted}"
            kinds[m.kind] += 1
            expected[m.device] += m.rejects
        core.record_rejects(rejects_source())  # what each core tick does

    began = time.monotonic()
    try:
        feed()
    finally:
        drivers_log.removeHandler(crashes)
        drivers_log.setLevel(level)
    took = time.monotonic() - began
    total = sum(kinds.values())
    rejects = sum(s.rejects for s in stats.values())
    exposition = svc.metrics.render().decode()  # the body of GET /metrics
    shown = {d: _rejects(exposition, d) for d in DEVICES}
    figure(
        "mqtt-fuzz",
        f"{total:,} generated payloads over {len(DEVICES)} profiles in {took:.0f} s "
        f"({', '.join(f'{k} {n:,}' for k, n in sorted(kinds.items()))}): {len(crashes.records)} crashes, "
        f"{rejects:,} rejects counted per device exactly as each payload required, "
        f"{len(problems)} readings with a value their point cannot take; the service's /metrics exposition "
        f"shows wattkeeper_payload_rejects_total equal to the expected count for "
        f"{sum(shown[d] == expected[d] for d in DEVICES)} of {len(DEVICES)} devices ({sum(shown.values()):,})",
    )
    assert total >= 100_000
    assert crashes.records == []
    assert {d: s.rejects for d, s in stats.items()} == {d: expected[d] for d in DEVICES}
    assert shown == {d: expected[d] for d in DEVICES}
    assert problems == []


async def test_fuzzed_payloads_through_the_broker_are_counted_in_metrics(
    fresh_mosquitto: servers.Mosquitto, tmp_path: Path
) -> None:
    collected: list[Message] = []

    @settings(max_examples=BROKER_EXAMPLES, database=None, deadline=None, derandomize=True, phases=[Phase.generate])
    @given(st.lists(message(targets(DEVICES)), min_size=PER_EXAMPLE, max_size=PER_EXAMPLE))
    def collect(batch: list[Message]) -> None:
        collected.extend(batch)

    collect()
    expected = Counter(dict.fromkeys(DEVICES, 0))
    for m in collected:
        expected[m.device] += m.rejects
    async with running_service(fuzz_site(fresh_mosquitto.url), tmp_path) as svc:
        hub = svc.services.hub
        assert hub is not None
        await eventually(lambda: _true(hub.mqtt_connected), 20)
        async with aiomqtt.Client(fresh_mosquitto.host, fresh_mosquitto.port, identifier="fuzzer") as c:
            for m in collected:
                await c.publish(m.topic, m.payload, qos=1)
        await eventually(lambda: _true(sum(h.rejects for h in hub.health().values()) >= sum(expected.values())), 30)
        await asyncio.sleep(0.5)  # anything still on its way would show as a surplus
        async with svc.client("") as client:
            metrics = (await client.get("/metrics")).text
    shown = {d: _rejects(metrics, d) for d in DEVICES}
    matching = sum(shown[d] == expected[d] for d in DEVICES)
    figure(
        "mqtt-fuzz-broker",
        f"{len(collected):,} generated payloads through Mosquitto into the service: /metrics "
        f"wattkeeper_payload_rejects_total equals the expected count for {matching} of {len(DEVICES)} devices "
        f"({sum(shown.values()):,} rejects)",
    )
    assert shown == dict(expected)


def _rejects(metrics: str, device: str) -> int:
    for line in metrics.splitlines():
        if line.startswith(f'wattkeeper_payload_rejects_total{{device="{device}"}}'):
            return int(float(line.rsplit(" ", 1)[1]))
    return 0


async def _true(value: object) -> bool:
    return bool(value)
