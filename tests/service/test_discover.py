"""`wattkeeper discover` against the simulators over a real broker and real Modbus sockets."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from drivers.probe import Found, ModbusTarget, RateLimiter
from service.config.site import Site
from service.onboard.discover import compare, discover, render_text
from simulators.runner import Simulation
from tests import servers
from tests.conftest import write_site
from tests.drivers.modbus_tap import WRITE_FUNCTIONS, ModbusTap
from tests.simulators.conftest import WORKDAY_10AM, run

LISTEN_S = 1.0  # retained announcements arrive at once; the Shelly answers follow within milliseconds


def targets_of(site: Site) -> list[ModbusTarget]:
    """Every Modbus host:port of a site with the units it declares there."""
    units: dict[tuple[str, int], list[int]] = {}
    for dev in site.devices:
        if dev.driver == "modbus" and dev.host and dev.port:
            units.setdefault((dev.host, dev.port), []).append(dev.unit)
    return [ModbusTarget(host, port, tuple(sorted(u))) for (host, port), u in sorted(units.items())]


def site_key(site: Site) -> dict[tuple[str, ...], str]:
    """(where) -> profile, for every device of a site."""
    out: dict[tuple[str, ...], str] = {}
    for dev in site.devices:
        if dev.driver == "mqtt":
            out[("mqtt", dev.topic or dev.id)] = dev.profile
        else:
            out[("modbus", dev.host or "", str(dev.port), str(dev.unit))] = dev.profile
    return out


@pytest.fixture
async def sim(demo_site: Site) -> AsyncIterator[Simulation]:
    async with Simulation(demo_site, control_port=None, speed=0, seed=5, start=WORKDAY_10AM) as running:
        yield running


async def test_discover_finds_every_device_of_the_demo_site_and_nothing_else(
    sim: Simulation, demo_site: Site, fresh_mosquitto: servers.Mosquitto
) -> None:
    found = await discover(fresh_mosquitto.url, targets_of(demo_site), listen_s=LISTEN_S, rate_per_s=500)
    assert [f for f in found if f.match is None] == []
    seen = {f.key: f.match.profile for f in found if f.match is not None}
    assert len(seen) == len(found)  # nobody twice
    assert seen == site_key(demo_site)
    # a suggested role where the profile knows one, and the Z2M device named as the bridge names it
    by_topic = {f.topic: f for f in found}
    occ = by_topic["zigbee2mqtt/r2119-occ"]
    assert occ.id == "r2119-occ" and occ.match is not None and occ.match.role == "sensor"
    text = render_text(compare(found, demo_site, mqtt=True, targets=targets_of(demo_site)))
    assert "# 0 device(s) answered that the site file lacks" in text
    assert "# 0 device(s) in the site file did not answer:" in text


async def test_a_zigbee_device_of_an_unknown_model_is_listed_with_what_it_said(
    sim: Simulation, fresh_mosquitto: servers.Mosquitto
) -> None:
    devices = [
        {
            "ieee_address": "0x00124b0000000001",
            "type": "Coordinator",
            "friendly_name": "Coordinator",
            "definition": None,
        },
        {
            "ieee_address": "0x54ef441000a1b2c3",
            "type": "EndDevice",
            "friendly_name": "lab/button",
            "model_id": "lumi.remote.b1acn02",
            "manufacturer": "LUMI",
            "definition": {
                "model": "WXKG13LM",
                "vendor": "Aqara",
                "exposes": [{"type": "enum", "name": "action", "property": "action", "access": 1}],
            },
        },
    ]
    code, out, err = await run(
        "mosquitto_pub", "-p", str(fresh_mosquitto.port), "-r", "-t", "lab-zigbee/bridge/devices", "-m",
        json.dumps(devices),
    )  # fmt: skip
    assert code == 0, out + err
    found = await discover(fresh_mosquitto.url, [], listen_s=LISTEN_S)
    (button,) = [f for f in found if f.topic == "lab-zigbee/lab/button"]
    assert button.match is None
    assert button.said == "Aqara WXKG13LM (LUMI lumi.remote.b1acn02), exposes action"
    text = render_text(compare(found, sim.site, mqtt=True, targets=[]))
    assert "#   mqtt lab-zigbee/lab/button: Aqara WXKG13LM (LUMI lumi.remote.b1acn02), exposes action" in text


async def test_dead_ports_refusing_units_and_garbage_are_reported_not_fatal(demo_site: Site) -> None:
    # meter-dept-it moves behind meter-dept-engineering's port as unit 2: one gateway, two meters
    engineering = demo_site.device("meter-dept-engineering")
    devices = [
        d.model_copy(update={"port": engineering.port, "unit": 2}) if d.id == "meter-dept-it" else d
        for d in demo_site.devices
    ]
    site = demo_site.model_copy(update={"devices": devices})
    dead = servers.free_port()
    async with Simulation(site, control_port=None, speed=0, seed=5, start=WORKDAY_10AM) as running:
        running.fault("device_offline", "meter-dept-it")  # the gateway answers for it with exception 11
        running.fault("device_garbage", "meter-grid-b")  # NaN in every measurement
        grid_b = site.device("meter-grid-b")
        targets = [
            ModbusTarget("127.0.0.1", dead),
            ModbusTarget("127.0.0.1", engineering.port or 0, (1, 2)),
            ModbusTarget("127.0.0.1", grid_b.port or 0),
        ]
        found = await discover(None, targets, rate_per_s=500, timeout_s=0.5)
    by_where = {f.where: f for f in found}
    assert by_where[f"modbus 127.0.0.1:{dead} unit 1"].said == f"no answer: cannot connect to 127.0.0.1:{dead}"
    good = by_where[f"modbus 127.0.0.1:{engineering.port} unit 1"]
    assert good.match is not None and good.match.profile == "sdm630"
    refused = by_where[f"modbus 127.0.0.1:{engineering.port} unit 2"]
    assert refused.match is None and refused.said.startswith("exception 11")
    garbage = by_where[f"modbus 127.0.0.1:{grid_b.port} unit 1"]
    assert garbage.match is None and "input 0 (float32): nan" in garbage.said
    assert len(found) == 4


async def test_probing_stays_under_its_rate_and_never_writes(demo_site: Site) -> None:
    now = [0.0]

    async def sleep(seconds: float) -> None:
        now[0] += seconds
        await asyncio.sleep(0)

    limiter = RateLimiter(5, clock=lambda: now[0], sleep=sleep)
    async with Simulation(demo_site, control_port=None, speed=0, seed=5, start=WORKDAY_10AM):
        taps = [ModbusTap(t.port) for t in targets_of(demo_site)[:3]]
        for tap in taps:
            await tap.__aenter__()
        try:
            found = await discover(None, [ModbusTarget("127.0.0.1", t.port) for t in taps], limiter=limiter)
        finally:
            for tap in taps:
                await tap.__aexit__(None, None, None)
    assert all(f.match is not None for f in found) and len(found) == 3
    seen = [fc for tap in taps for fc in tap.functions]
    assert len(seen) == len(limiter.stamps) == 3 * 6  # six reads per unit: every signature register once
    assert set(seen) <= {3, 4} and not set(seen) & WRITE_FUNCTIONS
    gaps = [b - a for a, b in zip(limiter.stamps, limiter.stamps[1:], strict=False)]
    assert min(gaps) >= 0.2 - 1e-9  # 5 requests a second at most


async def test_cli_with_a_site_file_prints_what_it_lacks_and_what_did_not_answer(
    sim: Simulation, demo_site: Site, fresh_mosquitto: servers.Mosquitto, tmp_path: Path
) -> None:
    lacking = [d for d in demo_site.devices if d.id not in ("r2119-door", "meter-dept-it")]
    rooms = [r.model_copy(update={"devices": [d for d in r.devices if d != "r2119-door"]}) for r in demo_site.rooms]
    departments = [d.model_copy(update={"meter": None}) if d.id == "it" else d for d in demo_site.departments]
    ghost = demo_site.device("r2101-occ").model_copy(update={"id": "r9999-occ", "topic": "zigbee2mqtt/r9999-occ"})
    site = demo_site.model_copy(update={"devices": [*lacking, ghost], "rooms": rooms, "departments": departments})
    path = write_site(site, tmp_path / "site.yaml")
    args = ["--mqtt", fresh_mosquitto.url, "--site", str(path), "--listen-s", str(LISTEN_S), "--rate", "500"]
    for target in targets_of(demo_site):
        args += ["--modbus", f"{target.host}:{target.port}/1"]
    code, out, err = await run(sys.executable, "-m", "service", "discover", *args, timeout_s=60)
    assert code == 0, err
    assert "# 2 device(s) answered that the site file lacks" in out
    it_port = demo_site.device("meter-dept-it").port
    assert (
        "  - {id: r2119-door, driver: mqtt, profile: z2m-contact, topic: zigbee2mqtt/r2119-door, role: sensor}" in out
    )
    assert (
        f"  - {{id: sdm630-{it_port}-1, driver: modbus, profile: sdm630, host: 127.0.0.1, port: {it_port}, unit: 1}}"
        in out
    )
    assert (
        "# 1 device(s) in the site file did not answer:\n#   r9999-occ (z2m-occupancy, mqtt zigbee2mqtt/r9999-occ)"
        in out
    )
    code, out, err = await run(sys.executable, "-m", "service", "discover", *args, "--json", timeout_s=60)
    assert code == 0, err
    data = json.loads(out)
    assert sorted(d["profile"] for d in data["devices"]) == ["sdm630", "z2m-contact"]
    assert data["missing"] == [{"id": "r9999-occ", "profile": "z2m-occupancy", "driver": "mqtt"}]
    assert data["unmatched"] == [] and data["differs"] == []


async def test_cli_refuses_a_bad_target_and_needs_something_to_look_at() -> None:
    code, _, err = await run(sys.executable, "-m", "service", "discover", "--modbus", "10.0.0.5")
    assert code == 2 and "HOST:PORT" in err
    code, _, err = await run(sys.executable, "-m", "service", "discover")
    assert code == 2 and "--mqtt" in err
    dead = servers.free_port()
    code, out, err = await run(
        sys.executable, "-m", "service", "discover", "--mqtt", f"mqtt://u:secret@127.0.0.1:{dead}"
    )
    assert code == 1 and out == ""
    assert f"discover: broker mqtt://u:***@127.0.0.1:{dead}:" in err and "secret" not in err


def test_found_devices_have_a_stable_key() -> None:
    f = Found(driver="modbus", id="x", said="", match=None, host="h", port=1, unit=2)
    assert f.key == ("modbus", "h", "1", "2") and f.where == "modbus h:1 unit 2"
