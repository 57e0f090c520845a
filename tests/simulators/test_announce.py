"""The simulated devices announce themselves as the real ones do, over a real broker."""

from __future__ import annotations

import json

from service.config.site import Site
from simulators.announce import mac_address
from simulators.runner import Simulation
from tests.simulators.conftest import Watch, json_has, pub, run


async def retained(port: int, topic: str) -> list[tuple[str, str]]:
    """The retained messages on a topic filter (mosquitto_sub --retained-only)."""
    code, out, err = await run("mosquitto_sub", "-p", str(port), "-v", "--retained-only", "-W", "2", "-t", topic)
    assert code in (0, 27), out + err  # 27: the -W timeout, after the retained messages
    return [tuple(line.split(" ", 1)) for line in out.splitlines()]  # type: ignore[misc]


async def test_zigbee2mqtt_keeps_its_device_list_retained(sim: Simulation, demo_site: Site) -> None:
    port = int(demo_site.mqtt.url.rsplit(":", 1)[1])
    ((_topic, payload),) = await retained(port, "zigbee2mqtt/bridge/devices")
    devices = json.loads(payload)
    assert devices[0]["type"] == "Coordinator"
    listed = {d["friendly_name"]: d for d in devices[1:]}
    zigbee = {
        d.topic.split("/", 1)[1]: d.profile for d in demo_site.devices if d.topic and d.profile.startswith("z2m-")
    }
    assert set(listed) == set(zigbee)
    assert listed["r2119-occ"]["definition"]["model"] == "RTCGQ11LM"
    assert listed["r2119-ac"]["definition"]["model"] == "Zen-01-W"
    assert len({d["ieee_address"] for d in devices}) == len(devices)


async def test_tasmota_keeps_its_discovery_config_and_sensors_retained(sim: Simulation, demo_site: Site) -> None:
    port = int(demo_site.mqtt.url.rsplit(":", 1)[1])
    configs = {t: json.loads(p) for t, p in await retained(port, "tasmota/discovery/+/config")}
    relays = {d.topic for d in demo_site.devices if d.profile == "tasmota-relay"}
    assert {c["t"] for c in configs.values()} == relays
    config = configs[f"tasmota/discovery/{mac_address('r2119-light')}/config"]
    assert (config["md"], config["mac"], config["ft"]) == (
        "Sonoff Pow R2",
        mac_address("r2119-light"),
        "%prefix%/%topic%/",
    )
    sensors = dict(await retained(port, f"tasmota/discovery/{mac_address('r2119-light')}/sensors"))
    assert "ENERGY" in json.loads(next(iter(sensors.values())))["sn"]


async def test_a_shelly_says_who_it_is_when_asked(sim: Simulation, demo_site: Site) -> None:
    port = int(demo_site.mqtt.url.rsplit(":", 1)[1])
    watch = await Watch(port).start("installer-7/rpc")
    try:
        request = {"id": 3, "src": "installer-7", "method": "Shelly.GetDeviceInfo"}
        await pub(port, "shellyplus-r2119/rpc", json.dumps(request))
        answer = json.loads(await watch.expect("installer-7/rpc", json_has(id=3)))
    finally:
        await watch.stop()
    assert answer["src"] == "shellyplus-r2119" and answer["dst"] == "installer-7"
    info = answer["result"]
    assert (info["id"], info["model"], info["app"], info["gen"]) == ("shellyplus-r2119", "SNPL-00112EU", "PlugS", 2)
    assert info["mac"] == mac_address("r2119-plug")
