"""How the simulated MQTT devices announce themselves, as the real ones do (DESIGN.md §4).

- Zigbee2MQTT publishes the retained device list on `<base>/bridge/devices`: the coordinator, then
  every device with its IEEE address, `friendly_name`, `model_id`/`manufacturer` (what the device
  says over Zigbee) and `definition` (what Zigbee2MQTT made of it: `model`, `vendor`, `exposes`).
- Tasmota (native discovery, SetOption19 0) publishes retained `tasmota/discovery/<MAC>/config`
  (short keys: `dn` device name, `fn` friendly names, `hn` host name, `mac`, `md` module, `sw`
  version, `t` topic, `ft` full topic, `tp` prefixes, `rl` relays, `onln`/`ofln` LWT words...) and
  `tasmota/discovery/<MAC>/sensors` (`sn`: a tele/SENSOR payload).
- Shelly Gen2 answers `Shelly.GetDeviceInfo` on `<id>/rpc` (`id`, `mac`, `model`, `gen`, `app`,
  `ver`, ...) and says `<id>/online` true/false.

The models are real ones whose payloads match what the simulator publishes; recorded examples are
in tests/fixtures/<profile>/.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from simulators.payloads import JsonDict


@dataclass(frozen=True, slots=True, kw_only=True)
class ZigbeeModel:
    """A Zigbee device model as Zigbee2MQTT knows it."""

    model: str  # definition.model: the vendor's model id, what Zigbee2MQTT's device list shows
    vendor: str
    description: str
    model_id: str  # the Basic cluster's modelID the device reports
    manufacturer: str  # the Basic cluster's manufacturerName
    power_source: str
    device_type: str  # EndDevice | Router
    exposes: tuple[JsonDict, ...]

    def definition(self) -> JsonDict:
        """What Zigbee2MQTT made of the device: the `definition` of its device-list entry."""
        return {
            "model": self.model,
            "vendor": self.vendor,
            "description": self.description,
            "exposes": list(self.exposes),
            "options": [],
            "supports_ota": False,
            "source": "native",
        }

    def interview(self) -> JsonDict:
        """What the device said of itself when Zigbee2MQTT interviewed it."""
        reported = {"power_source": self.power_source, "model_id": self.model_id, "manufacturer": self.manufacturer}
        return {**reported, "software_build_id": None, "date_code": None}


def _numeric(prop: str, unit: str, access: int = 1, **extra: object) -> JsonDict:
    return {"type": "numeric", "name": prop, "property": prop, "access": access, "unit": unit, **extra}


def _binary(prop: str, on: object, off: object, access: int = 1) -> JsonDict:
    return {"type": "binary", "name": prop, "property": prop, "access": access, "value_on": on, "value_off": off}


_BATTERY = _numeric("battery", "%", value_min=0, value_max=100)
_VOLTAGE_MV = _numeric("voltage", "mV")
_LQI = _numeric("linkquality", "lqi", value_min=0, value_max=255)

ZIGBEE_MODELS: dict[str, ZigbeeModel] = {
    "z2m-occupancy": ZigbeeModel(
        model="RTCGQ11LM",
        vendor="Aqara",
        description="Motion sensor",
        model_id="lumi.sensor_motion.aq2",
        manufacturer="LUMI",
        power_source="Battery",
        device_type="EndDevice",
        exposes=(_binary("occupancy", True, False), _numeric("illuminance", "lx"), _BATTERY, _VOLTAGE_MV, _LQI),
    ),
    "z2m-contact": ZigbeeModel(
        model="MCCGQ11LM",
        vendor="Aqara",
        description="Door and window sensor",
        model_id="lumi.sensor_magnet.aq2",
        manufacturer="LUMI",
        power_source="Battery",
        device_type="EndDevice",
        exposes=(_binary("contact", False, True), _BATTERY, _VOLTAGE_MV, _LQI),
    ),
    "z2m-plug": ZigbeeModel(
        model="TS011F_plug_1",
        vendor="Tuya",
        description="Smart plug (with power monitoring)",
        model_id="TS011F",
        manufacturer="_TZ3000_w0qqde0g",
        power_source="Mains (single phase)",
        device_type="Router",
        exposes=(
            {"type": "switch", "features": [{**_binary("state", "ON", "OFF", access=7), "value_toggle": "TOGGLE"}]},
            _numeric("power", "W", access=5),
            _numeric("current", "A", access=5),
            _numeric("voltage", "V", access=5),
            _numeric("energy", "kWh", access=5),
            _LQI,
        ),
    ),
    "z2m-thermostat": ZigbeeModel(
        model="Zen-01-W",
        vendor="Zen",
        description="Thermostat",
        model_id="Zen-01",
        manufacturer="Zen Within",
        power_source="Mains (single phase)",
        device_type="Router",
        exposes=(
            {
                "type": "climate",
                "features": [
                    _numeric("local_temperature", "°C", access=5),
                    _numeric("occupied_heating_setpoint", "°C", access=7, value_min=10, value_max=30, value_step=0.5),
                    _numeric("occupied_cooling_setpoint", "°C", access=7, value_min=10, value_max=30, value_step=0.5),
                    {
                        "type": "enum",
                        "name": "system_mode",
                        "property": "system_mode",
                        "access": 7,
                        "values": ["off", "auto", "cool", "heat"],
                    },
                    {
                        "type": "enum",
                        "name": "running_state",
                        "property": "running_state",
                        "access": 5,
                        "values": ["idle", "heat", "cool"],
                    },
                ],
            },
            _numeric("power", "W", access=5),
            _LQI,
        ),
    ),
}

# Sonoff POW R2 running Tasmota: module name as Tasmota's `Module` command and discovery `md` say it
TASMOTA_MODULE = "Sonoff Pow R2"
TASMOTA_VERSION = "14.2.0(release-tasmota)"
SHELLY_MODEL = "SNPL-00112EU"  # Shelly Plus Plug S
SHELLY_APP = "PlugS"
SHELLY_VERSION = "1.4.4"
SHELLY_FW = "20241011-114455/1.4.4-g6d2a586"


def _digest(device_id: str, salt: str, n: int) -> bytes:
    return hashlib.sha256(f"{salt}:{device_id}".encode()).digest()[:n]


def ieee_address(device_id: str) -> str:
    """A stable IEEE address for a simulated Zigbee device."""
    return "0x" + _digest(device_id, "ieee", 8).hex()


def mac_address(device_id: str) -> str:
    """A stable MAC (upper-case hex, no separators, as Tasmota writes it) for a simulated device."""
    return "C8C9A3" + _digest(device_id, "mac", 3).hex().upper()


def _z2m_entry(ieee_address: str, kind: str, name: str, *, supported: bool, **more: object) -> JsonDict:
    """One entry of Zigbee2MQTT's device list: what every entry says, with `more` (a supported
    device's network address, definition and what it reported when interviewed) in between."""
    return {
        "ieee_address": ieee_address,
        "type": kind,
        "supported": supported,
        "disabled": False,
        "friendly_name": name,
        "definition": None,
        **more,
        "interview_completed": True,
        "interviewing": False,
        "endpoints": {},
    }


def z2m_bridge_devices(members: list[tuple[str, str, str]]) -> list[JsonDict]:
    """`<base>/bridge/devices`: the coordinator, then (device_id, friendly_name, profile) of each device."""
    out = [_z2m_entry("0x00124b0024c1d2e3", "Coordinator", "Coordinator", supported=True, network_address=0)]
    for n, (device_id, name, profile) in enumerate(members, start=1):
        zm = ZIGBEE_MODELS.get(profile)
        if zm is None:  # a profile without a model here: listed as Zigbee2MQTT lists an unsupported device
            out.append(_z2m_entry(ieee_address(device_id), "EndDevice", name, supported=False))
            continue
        network_address = int.from_bytes(_digest(device_id, "nwk", 2), "big") or n
        more = {"network_address": network_address, "description": None, "definition": zm.definition()}
        out.append(_z2m_entry(ieee_address(device_id), zm.device_type, name, supported=True, **more, **zm.interview()))
    return out


def tasmota_config(device_id: str, topic: str) -> JsonDict:
    """`tasmota/discovery/<MAC>/config` of a one-relay Tasmota device with topic `topic`."""
    mac = mac_address(device_id)
    return {
        "ip": "192.168.10." + str(10 + _digest(device_id, "ip", 1)[0] % 200),
        "dn": topic,
        "fn": [topic, None, None, None, None, None, None, None],
        "hn": f"{topic}-{mac[-4:]}",
        "mac": mac,
        "md": TASMOTA_MODULE,
        "ty": 0,
        "if": 0,
        "cam": 0,
        "ofln": "Offline",
        "onln": "Online",
        "state": ["OFF", "ON", "TOGGLE", "HOLD"],
        "sw": TASMOTA_VERSION,
        "t": topic,
        "ft": "%prefix%/%topic%/",
        "tp": ["cmnd", "stat", "tele"],
        "rl": [1, 0, 0, 0, 0, 0, 0, 0],
        "swc": [-1, -1, -1, -1, -1, -1, -1, -1],
        "swn": [None, None, None, None, None, None, None, None],
        "btn": [0, 0, 0, 0, 0, 0, 0, 0],
        "so": {"4": 0, "11": 0, "13": 0, "17": 0, "20": 0, "30": 0, "68": 0, "73": 0, "82": 0, "114": 0, "117": 0},
        "lk": 0,
        "lt_st": 0,
        "bat": 0,
        "dslp": 0,
        "sho": [],
        "sht": [],
        "ver": 1,
    }


def tasmota_sensors(sensor: JsonDict) -> JsonDict:
    """`tasmota/discovery/<MAC>/sensors`: the sensors the device has, as one tele/SENSOR payload."""
    return {"sn": sensor, "ver": 1}


def shelly_device_info(device_id: str, shelly_id: str) -> JsonDict:
    """The result of Shelly.GetDeviceInfo on a Shelly Plus Plug S."""
    return {
        "name": None,
        "id": shelly_id,
        "mac": mac_address(device_id),
        "slot": 0,
        "model": SHELLY_MODEL,
        "gen": 2,
        "fw_id": SHELLY_FW,
        "ver": SHELLY_VERSION,
        "app": SHELLY_APP,
        "auth_en": False,
        "auth_domain": None,
    }
