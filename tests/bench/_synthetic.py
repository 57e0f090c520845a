"""Synthetic sites and device traffic for the benchmarks.

Payloads come from simulators/payloads.py, i.e. the vendors' own formats (Zigbee2MQTT state JSON,
Tasmota tele/SENSOR, tele/STATE and stat/*, Shelly Gen2 status/switch:0, availability and LWT).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

from drivers.conventions import bind
from drivers.profiles import MqttProfile, load_profile
from service.config.site import (
    Calendar,
    Department,
    Device,
    DeviceRole,
    MqttConfig,
    Notifications,
    Room,
    RoomKind,
    Site,
    SiteInfo,
    load_site,
)
from simulators import payloads

DEMO_SITE = Path(__file__).resolve().parent.parent.parent / "deploy" / "sites" / "demo.yaml"
DEPARTMENTS = ("admin", "marketing", "engineering", "it")

# One office room: (suffix, profile, role, rated_kw); a Zigbee2MQTT sensor and AC, Tasmota lights,
# a Zigbee and a Shelly plug, a door contact.
ROOM_DEVICES: tuple[tuple[str, str, DeviceRole, float | None], ...] = (
    ("occ", "z2m-occupancy", DeviceRole.sensor, None),
    ("light", "tasmota-relay", DeviceRole.lighting, 1.0),
    ("ac", "z2m-thermostat", DeviceRole.hvac, 5.0),
    ("pc", "z2m-plug", DeviceRole.office_equipment, 3.5),
    ("plug", "shelly-plug", DeviceRole.office_equipment, 3.5),
    ("door", "z2m-contact", DeviceRole.sensor, None),
)


def _topic(device_id: str, profile: str) -> str:
    if profile.startswith("z2m-"):
        return f"zigbee2mqtt/{device_id}"
    if profile == "shelly-plug":
        return f"shellyplus-{device_id}"
    return device_id


def office(rooms: int) -> tuple[list[Room], list[Device]]:
    """`rooms` office rooms of six MQTT devices each, spread over the four departments."""
    out_rooms, devices = [], []
    for i in range(rooms):
        rid = f"r{i:04d}"
        ids = []
        for suffix, profile, role, rated in ROOM_DEVICES:
            dev_id = f"{rid}-{suffix}"
            ids.append(dev_id)
            topic = _topic(dev_id, profile)
            devices.append(Device(id=dev_id, driver="mqtt", profile=profile, role=role, topic=topic, rated_kw=rated))
        department = DEPARTMENTS[i % len(DEPARTMENTS)]
        out_rooms.append(Room(id=rid, name=f"Room {i}", department=department, kind=RoomKind.office, devices=ids))
    return out_rooms, devices


def _site(rooms: list[Room], devices: list[Device], mqtt_url: str, site_id: str) -> Site:
    demo = load_site(DEMO_SITE)
    return Site(
        site=SiteInfo(id=site_id, name=f"{site_id} benchmark site", grade="ordinary", allowed_interruption_s=10),
        mqtt=MqttConfig(url=mqtt_url),
        departments=[Department(id=d, name=d) for d in DEPARTMENTS],
        rooms=rooms,
        devices=devices,
        # The demo's working week and tariff, but no sweep: nothing may command devices mid-benchmark.
        calendar=Calendar(working_hours=demo.calendar.working_hours, holidays=demo.calendar.holidays),
        tariff=demo.tariff,
        notifications=Notifications(mqtt_topic=f"wattkeeper/{site_id}/alarms"),
    )


def ingest_site(mqtt_url: str, rooms: int = 50) -> Site:
    """An office floor of `rooms` x 6 MQTT devices (notifications on the broker)."""
    return _site(*office(rooms), mqtt_url, "bench")


def memory_site(mqtt_url: str, meters: int = 212, rooms: int = 48) -> Site:
    """500 devices: `meters` SDM630 sub-meters (Modbus, never polled: drivers stay off) and `rooms` x 6 MQTT devices."""
    rooms_, devices = office(rooms)
    for i in range(meters):
        devices.append(
            Device(
                id=f"meter-{i:03d}",
                driver="modbus",
                profile="sdm630",
                host="127.0.0.1",
                port=20000 + i,
                poll_s=1,
                rated_kw=100,
            )
        )
    return _site(rooms_, devices, mqtt_url, "bench")


def subscriptions(site: Site, client_id: str) -> list[str]:
    """The topics wattkeeper's MQTT driver subscribes to for this site (same order)."""
    topics: dict[str, None] = {}
    rpc = False
    for d in site.devices:
        if d.driver != "mqtt" or d.topic is None:
            continue
        profile = load_profile(d.profile)
        assert isinstance(profile, MqttProfile)
        topics.update(dict.fromkeys(bind(profile, d.topic, client_id).subscriptions))
        rpc = rpc or profile.convention == "shelly-gen2"
    return [*topics, *([f"{client_id}/rpc"] if rpc else [])]


# ---- traffic ------------------------------------------------------------------------------------

Message = tuple[str, bytes]

# How often each kind of device reports, relative to the others (metering plugs are the chattiest).
WEIGHT = {
    "shelly-plug": 3.0,
    "z2m-plug": 3.0,
    "tasmota-relay": 2.0,
    "z2m-thermostat": 2.0,
    "z2m-occupancy": 1.0,
    "z2m-contact": 0.5,
}
AVAILABILITY_SHARE = 0.01
STEP_S = 0.003
SENTINEL_POWER_W = 1.2345  # never produced by the stream (powers are rounded to 0.1 W)


@dataclass
class _Dev:
    """One simulated device's own state while the stream is generated."""

    conf: Device
    on: bool = True
    power_w: float = 50.0
    energy_kwh: float = 100.0
    occupancy: bool = False
    illuminance: int = 200
    battery: float = 90.0
    contact: bool = True
    mode: str = "cool"
    temperature_c: float = 27.0
    seen: datetime | None = None


def _json(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode()


def _report(d: _Dev, now: datetime, tz: tzinfo, rnd: random.Random) -> list[Message]:
    """One report of a device, as the real one sends it, after its state moved on."""
    dt_s = 10.0 if d.seen is None else (now - d.seen).total_seconds()
    d.seen = now
    profile, topic = d.conf.profile, d.conf.topic
    assert topic is not None
    if rnd.random() < 0.02:
        d.on = not d.on
    d.power_w = round(max(0.0, d.power_w + rnd.uniform(-5, 5)), 1) if d.on else 0.0
    d.energy_kwh += d.power_w * dt_s / 3.6e6
    dev = {"on": d.on, "power_w": d.power_w, "voltage_v": round(rnd.uniform(226, 234), 1), "energy_kwh": d.energy_kwh}
    if profile == "z2m-occupancy":
        if rnd.random() < 0.1:
            d.occupancy = not d.occupancy
        d.illuminance = max(0, d.illuminance + rnd.randint(-20, 20))
        sensor = {"battery": d.battery, "illuminance": d.illuminance, "occupancy": d.occupancy}
        return [(topic, _json(payloads.z2m_state(profile, sensor, rnd.randint(40, 200))))]
    if profile == "z2m-contact":
        if rnd.random() < 0.05:
            d.contact = not d.contact
        contact = {"battery": d.battery, "contact": d.contact}
        return [(topic, _json(payloads.z2m_state(profile, contact, rnd.randint(40, 200))))]
    if profile == "z2m-thermostat":
        if rnd.random() < 0.02:
            d.mode = rnd.choice(["off", "cool", "auto", "fan_only"])
        d.temperature_c = round(min(32.0, max(20.0, d.temperature_c + rnd.uniform(-0.3, 0.3))), 1)
        running = "cool" if d.mode in ("cool", "auto") and d.temperature_c > 26 else "idle"
        thermostat = {
            "local_temperature": d.temperature_c,
            "cooling_setpoint": 26.0,
            "heating_setpoint": 20.0,
            "power_w": 900.0 if running == "cool" else 15.0,
            "running_state": running,
            "system_mode": d.mode,
        }
        return [(topic, _json(payloads.z2m_state(profile, thermostat, rnd.randint(40, 200))))]
    if profile == "z2m-plug":
        return [(topic, _json(payloads.z2m_state(profile, dev, rnd.randint(40, 200))))]
    if profile == "shelly-plug":
        status = payloads.shelly_status(dev, now, 40.0 + rnd.uniform(-2, 2))
        return [(f"{topic}/status/switch:0", _json(status))]
    # tasmota-relay: mostly the TelePeriod pair, sometimes a button press; Time is local, no offset
    local = now.astimezone(tz)
    roll = rnd.random()
    if roll < 0.15:
        word = payloads.tasmota_power_word(d.on)
        return [(f"stat/{topic}/RESULT", _json({"POWER": word})), (f"stat/{topic}/POWER", word.encode())]
    if roll < 0.4:
        return [(f"tele/{topic}/STATE", _json(payloads.tasmota_state(dev, local, 86_400.0, rnd.randint(40, 90))))]
    return [(f"tele/{topic}/SENSOR", _json(payloads.tasmota_sensor(dev, local, 1.2, 3.4)))]


def _availability(d: _Dev) -> Message:
    topic = d.conf.topic
    assert topic is not None
    if d.conf.profile.startswith("z2m-"):
        return f"{topic}/availability", _json({"state": "online"})
    if d.conf.profile == "shelly-plug":
        return f"{topic}/online", b"true"
    return f"tele/{topic}/LWT", b"Online"


def stream(
    site: Site,
    count: int,
    seed: int = 1,
    *,
    step_s: float = STEP_S,
    end: datetime | None = None,
    skip: frozenset[str] = frozenset(),
) -> list[Message]:
    """`count` device messages in the order devices would send them, then the sentinel (`sentinel`).

    `skip`: device ids that send nothing (a steady-rate run's probe device)."""
    rnd = random.Random(seed)
    devs = [_Dev(d) for d in site.devices if d.driver == "mqtt" and d.id not in skip]
    weights = [WEIGHT[d.conf.profile] for d in devs]
    # Device time runs `step_s` per message and ends at `end` (now): a backlog of the last few minutes, so
    # no device clock looks wrong (drivers flag timestamps more than 5 minutes off the receive time).
    now = (end or datetime.now(UTC)) - timedelta(seconds=count * step_s)
    out: list[Message] = [_availability(d) for d in devs]  # every device announces itself first
    while len(out) < count:
        now += timedelta(seconds=step_s)
        d = rnd.choices(devs, weights)[0]
        out.extend([_availability(d)] if rnd.random() < AVAILABILITY_SHARE else _report(d, now, site.site.tz, rnd))
    del out[count:]
    out.append(sentinel(site, now))
    return out


def sentinel_device(site: Site) -> Device:
    """The Shelly plug whose last message ends the stream."""
    return next(d for d in site.devices if d.profile == "shelly-plug")


def sentinel(site: Site, now: datetime) -> Message:
    """A status with a power the stream never produces: once it is in the live state, so is everything before it."""
    d = sentinel_device(site)
    dev = {"on": True, "power_w": SENTINEL_POWER_W, "voltage_v": 230.0, "energy_kwh": 0.0}
    status = payloads.shelly_status(dev, now, 40.0)
    status["apower"] = SENTINEL_POWER_W
    del status["aenergy"]  # no counter step: the stream's energy is unknown here
    return f"{d.topic}/status/switch:0", _json(status)
