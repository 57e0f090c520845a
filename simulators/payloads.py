"""MQTT payloads of the simulated office devices, written from the vendors' own conventions.

Independent of drivers/ on purpose: a driver profile with a wrong key or topic fails against these.
Inputs are the device entries of World.state(); outputs are JSON-ready dicts or raw payloads.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

from simulators.power import LOAD_PF

JsonDict = dict[str, Any]


# ---- Zigbee2MQTT ---------------------------------------------------------------------------------


def z2m_state(profile: str, dev: JsonDict, linkquality: int) -> JsonDict:
    """The full device state Zigbee2MQTT publishes on zigbee2mqtt/<name>."""
    if profile == "z2m-occupancy":
        return {
            "battery": round(dev["battery"]),
            "illuminance": dev["illuminance"],
            "linkquality": linkquality,
            "occupancy": dev["occupancy"],
            "voltage": round(2800 + 4 * dev["battery"]),
        }
    if profile == "z2m-contact":
        return {
            "battery": round(dev["battery"]),
            "contact": dev["contact"],
            "linkquality": linkquality,
            "voltage": round(2800 + 4 * dev["battery"]),
        }
    if profile == "z2m-thermostat":
        return {
            "linkquality": linkquality,
            "local_temperature": dev["local_temperature"],
            "occupied_cooling_setpoint": dev["cooling_setpoint"],
            "occupied_heating_setpoint": dev["heating_setpoint"],
            "power": round(dev["power_w"]),
            "running_state": dev["running_state"],
            "system_mode": dev["system_mode"],
        }
    volts = dev["voltage_v"]
    return {  # z2m-plug
        "current": round(dev["power_w"] / (volts * LOAD_PF), 2) if volts else 0.0,
        "energy": round(dev["energy_kwh"], 2),
        "linkquality": linkquality,
        "power": round(dev["power_w"], 1),
        "state": "ON" if dev["on"] else "OFF",
        "voltage": round(volts),
    }


def z2m_on(value: object, was_on: bool) -> bool:
    """A Zigbee2MQTT `state` command value (ON, OFF, TOGGLE, any case) -> new state."""
    if isinstance(value, str):
        word = value.upper()
        if word in ("ON", "OFF"):
            return word == "ON"
        if word == "TOGGLE":
            return not was_on
    raise ValueError(f"state must be ON, OFF or TOGGLE, not {value!r}")


# ---- Tasmota -------------------------------------------------------------------------------------


def tasmota_time(now: datetime) -> str:
    """Tasmota's local timestamp (no offset)."""
    return now.replace(tzinfo=None, microsecond=0).isoformat()


def tasmota_uptime(seconds: float) -> str:
    """Tasmota's uptime text, e.g. 1T02:03:04."""
    s = int(seconds)
    return f"{s // 86400}T{s % 86400 // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def tasmota_state(dev: JsonDict, now: datetime, uptime_s: float, rssi: int) -> JsonDict:
    """tele/<t>/STATE."""
    return {
        "Time": tasmota_time(now),
        "Uptime": tasmota_uptime(uptime_s),
        "UptimeSec": int(uptime_s),
        "Heap": 26,
        "SleepMode": "Dynamic",
        "Sleep": 50,
        "LoadAvg": 19,
        "MqttCount": 1,
        "POWER": "ON" if dev["on"] else "OFF",
        "Wifi": {"AP": 1, "SSId": "office-iot", "Channel": 6, "RSSI": rssi, "Signal": rssi // 2 - 100, "LinkCount": 1},
    }


def tasmota_sensor(dev: JsonDict, now: datetime, today_kwh: float, yesterday_kwh: float) -> JsonDict:
    """tele/<t>/SENSOR with the energy monitor readings."""
    power, volts = dev["power_w"], dev["voltage_v"]
    apparent = power / LOAD_PF if power else 0.0
    return {
        "Time": tasmota_time(now),
        "ENERGY": {
            "TotalStartTime": "2024-01-08T09:00:00",
            "Total": round(dev["energy_kwh"], 3),
            "Yesterday": round(yesterday_kwh, 3),
            "Today": round(today_kwh, 3),
            "Power": round(power),
            "ApparentPower": round(apparent),
            "ReactivePower": round(math.sqrt(max(apparent**2 - power**2, 0.0))),
            "Factor": LOAD_PF if power else 0.0,
            "Voltage": round(volts),
            "Current": round(apparent / volts, 3) if volts else 0.0,
        },
    }


def tasmota_power_word(on: bool) -> str:
    """ON / OFF as Tasmota says it."""
    return "ON" if on else "OFF"


def tasmota_command(payload: str, was_on: bool) -> bool | None:
    """cmnd/<t>/POWER payload -> new state; None for a query (empty payload). ValueError if invalid."""
    word = payload.strip().upper()
    if word == "":
        return None
    if word in ("ON", "1", "TRUE"):
        return True
    if word in ("OFF", "0", "FALSE"):
        return False
    if word in ("TOGGLE", "2"):
        return not was_on
    raise ValueError(word)


# ---- Shelly Gen2 ---------------------------------------------------------------------------------

SHELLY_SOURCES = {"init": "init", "button": "button", "mqtt": "MQTT"}


def shelly_status(dev: JsonDict, now: datetime, temperature_c: float) -> JsonDict:
    """The Switch component status (<id>/status/switch:0, Switch.GetStatus)."""
    power, volts = dev["power_w"], dev["voltage_v"]
    minute_ts = int(now.timestamp()) // 60 * 60
    return {
        "id": 0,
        "source": SHELLY_SOURCES.get(dev.get("changed_by", "init"), "init"),
        "output": dev["on"],
        "apower": round(power, 1),
        "voltage": round(volts, 1),
        "freq": 50.0 if volts else 0.0,
        "current": round(power / (volts * LOAD_PF), 3) if volts else 0.0,
        "aenergy": {
            "total": round(dev["energy_kwh"] * 1000, 3),
            "by_minute": [round(power * 1000 / 60, 3)] * 3,  # mWh in each of the last three minutes
            "minute_ts": minute_ts,
        },
        "temperature": {"tC": round(temperature_c, 1), "tF": round(temperature_c * 9 / 5 + 32, 1)},
    }


def shelly_error(code: int, message: str) -> JsonDict:
    """A JSON-RPC error object as Shelly Gen2 returns it."""
    return {"code": code, "message": message}


def shelly_params_id(params: object) -> JsonDict:
    """Check the `params` of a Switch.* call; Shelly plugs have one switch, id 0."""
    if not isinstance(params, dict):
        raise ValueError("Invalid argument 'params': object expected")
    if params.get("id") != 0:
        raise ValueError(f"Invalid argument 'id': no switch {params.get('id')!r}")
    return params


# ---- malformed payloads (device_garbage) ---------------------------------------------------------


def _wrong_type(value: object) -> object:
    if isinstance(value, bool):
        return "maybe"
    if isinstance(value, int | float):
        return "n/a"
    if isinstance(value, dict):
        return {k: _wrong_type(v) for k, v in value.items()}
    return 12345


def _nan(value: object) -> object:
    if isinstance(value, dict):
        return {k: _nan(v) for k, v in value.items()}
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int | float):
        return math.nan
    return value


def garbage(payload: JsonDict, n: int) -> bytes:
    """A broken version of a JSON payload: truncated text, wrong types, or NaN numbers (in turn)."""
    kind = n % 3
    if kind == 0:
        text = json.dumps(payload)
        return text[: max(1, len(text) // 2)].encode()
    if kind == 1:
        return json.dumps({k: _wrong_type(v) for k, v in payload.items()}).encode()
    return json.dumps(_nan(payload)).encode()  # json.dumps writes NaN, which is not JSON
