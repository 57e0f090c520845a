"""The JSON Schema of the site file, generated from the pydantic models (`wattkeeper schema`).

The models are the truth: keys, types, bounds and enums come from them. This module adds what
editors show beside each key — a description and an example — where the model does not carry one
itself, and the list of profile names. A key added to the models without a description here (or a
`Field(description=...)`) is caught by tests/service/test_schema.py.

Regenerate the committed copy with: wattkeeper schema > deploy/site.schema.json
"""

from __future__ import annotations

import json
from typing import Any

from drivers.profiles import known_profiles
from service.config.site import Site

SCHEMA_FILE = "deploy/site.schema.json"
REGENERATE = f"wattkeeper schema > {SCHEMA_FILE}"

# (model, key) -> (description, example); a description given in the model wins, an example here wins
KEY_DOCS: dict[tuple[str, str], tuple[str, Any]] = {
    ("Site", "site"): ("The site: identity, time zone, supply grade and office-rule thresholds.", {"id": "hq"}),
    ("Site", "mqtt"): (
        "The MQTT broker the office devices use (WATTKEEPER_MQTT_URL overrides).",
        {"url": "mqtt://127.0.0.1:1883"},
    ),
    ("Site", "sources"): (
        "Grid supply sources (feeders) of the site.",
        [{"id": "grid-a", "substation": "east-110kv", "voltage_kv": 10}],
    ),
    ("Site", "generators"): (
        "Standby (emergency) generators.",
        [{"id": "gen-1", "rated_kw": 200, "start_limit_s": 10}],
    ),
    ("Site", "transfer_switches"): (
        "Transfer switches and the sources they choose between.",
        [{"id": "ats-1", "sources": ["grid-a", "grid-b"]}],
    ),
    ("Site", "departments"): (
        "Departments: energy, cost and violations are reported per department.",
        [{"id": "marketing", "name": "市场营销部"}],
    ),
    ("Site", "rooms"): (
        "Rooms and the devices in them.",
        [
            {
                "id": "r2119",
                "name": "2119 会议室",
                "department": "marketing",
                "kind": "meeting",
                "devices": ["r2119-occ"],
            }
        ],
    ),
    ("Site", "devices"): (
        "Every device wattkeeper reads or switches (`wattkeeper discover` prints these entries).",
        [
            {
                "id": "r2119-occ",
                "driver": "mqtt",
                "profile": "z2m-occupancy",
                "topic": "zigbee2mqtt/r2119-occ",
                "role": "sensor",
            }
        ],
    ),
    ("Site", "calendar"): (
        "Working hours, holidays, make-up workdays and after-hours sweep times.",
        {"sweeps": ["18:30", "20:00"]},
    ),
    ("Site", "tariff"): (
        "Time-of-use tariff for the monthly cost per department.",
        {"currency": "CNY", "bands": [{"name": "flat", "hours": ["00:00-24:00"], "price": 0.68}]},
    ),
    ("Site", "notifications"): (
        "Where alarms are sent: webhooks, an MQTT topic, e-mail.",
        {"mqtt_topic": "wattkeeper/hq/alarms"},
    ),
    ("SiteInfo", "id"): ("Short id of the site (letters, digits, _ . -).", "hq"),
    ("SiteInfo", "name"): ("Name shown on the dashboard and in reports.", "HQ building"),
    ("SiteInfo", "timezone"): (
        "IANA time zone of the site: calendar, sweeps and tariff bands are in it.",
        "Asia/Shanghai",
    ),
    ("SiteInfo", "grade"): (
        "Important power customer grade (ordinary: ungraded); decides the supply rules checked.",
        "first",
    ),
    ("SiteInfo", "allowed_interruption_s"): ("Longest supply interruption the load tolerates, in seconds.", 10),
    ("SiteInfo", "security_load_kw"): ("Security (保安) load in kW the generator must carry with 20 % margin.", 150),
    ("SiteInfo", "peak_load_kw"): ("", 320),
    ("SiteInfo", "interlock"): (
        "Generator/grid interlock preventing backfeed: electrical, mechanical or none.",
        "electrical",
    ),
    ("SiteInfo", "thresholds"): ("Office-rule thresholds for the whole site.", {"empty_room_delay_s": 300}),
    ("MqttConfig", "url"): ("mqtt://[user:pass@]host:port, mqtts:// for TLS.", "mqtt://127.0.0.1:1883"),
    ("Thresholds", "empty_room_delay_s"): ("Seconds a room may stay lit while empty before lit_empty_room.", 300),
    ("Thresholds", "cooling_min_c"): (
        "No AC cooling at or below this room temperature, no cooling setpoint below it (°C).",
        26,
    ),
    ("Thresholds", "heating_max_c"): (
        "No AC heating at or above this room temperature (°C), in centrally heated rooms.",
        17,
    ),
    ("Thresholds", "door_open_delay_s"): (
        "Seconds the AC may run with a door or window open before ac_door_open.",
        120,
    ),
    ("Thresholds", "plug_max_w"): ("Highest power an office plug may draw without an approved appliance (W).", 1200),
    ("Thresholds", "override_max_h"): ("Longest after-hours override (working late) a room may hold, in hours.", 2),
    ("Source", "id"): ("Id of the source.", "grid-a"),
    ("Source", "substation"): (
        "Substation the feeder comes from; redundancy needs different substations.",
        "east-110kv",
    ),
    ("Source", "bus_section"): ("Bus section of the substation the feeder leaves from.", "I"),
    ("Source", "voltage_kv"): ("Supply voltage in kV.", 10),
    ("Source", "line_type"): ("cable, insulated_overhead or overhead.", "cable"),
    ("Source", "support"): ("", "pole-17"),
    ("Source", "capacity_kw"): ("", 630),
    ("Source", "meter"): ("Id of the device (meter) measuring this source.", "meter-grid-a"),
    ("Generator", "id"): ("Id of the generator.", "gen-1"),
    ("Generator", "rated_kw"): ("Rated output in kW (>= 120 % of security_load_kw).", 200),
    ("Generator", "start_limit_s"): ("Seconds from start to ready that the site relies on.", 10),
    ("Generator", "device"): ("Id of the device (generator controller) of this generator.", "genset-1"),
    ("Generator", "meter"): ("Id of the device (meter) measuring the generator output.", "meter-gen"),
    ("TransferSwitch", "id"): ("Id of the transfer switch.", "ats-1"),
    ("TransferSwitch", "sources"): (
        "Source and generator ids, in order of preference (grid first).",
        ["grid-a", "grid-b", "gen-1"],
    ),
    ("TransferSwitch", "device"): ("Id of the device (switch controller).", "ats-1-ctrl"),
    ("TransferSwitch", "transfer_delay_s"): (
        "Seconds the switch waits before transferring away from a lost source.",
        3,
    ),
    ("TransferSwitch", "retransfer_delay_s"): (
        "Seconds a returned source must hold before the switch goes back to it.",
        30,
    ),
    ("Department", "id"): ("Id of the department.", "marketing"),
    ("Department", "name"): ("Name of the department.", "市场营销部"),
    ("Department", "meter"): ("Id of the device (meter) measuring the department's circuit.", "meter-dept-marketing"),
    ("Department", "base_load_kw"): ("Load in kW the department draws besides its rooms' devices (simulator).", 8),
    ("Room", "id"): ("Id of the room.", "r2119"),
    ("Room", "name"): ("Name of the room.", "2119 会议室"),
    ("Room", "department"): ("Id of the department the room belongs to.", "marketing"),
    ("Room", "kind"): ("Kind of room; server rooms are never commanded.", "meeting"),
    ("Room", "devices"): ("Ids of the devices in the room.", ["r2119-occ", "r2119-light"]),
    ("Room", "exempt"): ("", False),
    ("Device", "id"): ("Id of the device.", "r2119-light"),
    ("Device", "driver"): ("modbus (Modbus TCP) or mqtt.", "mqtt"),
    ("Device", "profile"): ("The device model: a profile in drivers/profiles/ (or profiles_dir).", "tasmota-relay"),
    ("Device", "role"): ("What the device does; critical and life_safety devices are never commanded.", "lighting"),
    ("Device", "host"): ("Modbus TCP host.", "192.168.1.20"),
    ("Device", "port"): ("Modbus TCP port.", 502),
    ("Device", "unit"): ("Modbus unit id (slave address) behind host:port.", 1),
    ("Device", "poll_s"): ("Seconds between Modbus polls.", 1),
    ("Device", "topic"): (
        "MQTT topic of the device: zigbee2mqtt/<name>, the Tasmota topic, or the Shelly id.",
        "zigbee2mqtt/r2119-occ",
    ),
    ("Device", "rated_kw"): ("", 3.5),
    ("Device", "appliance"): ("", "pc"),
    ("Calendar", "working_hours"): (
        "Working hours per weekday, spans HH:MM-HH:MM separated by commas.",
        {"mon": "08:30-17:30"},
    ),
    ("Calendar", "holidays"): ("Public holidays (YYYY-MM-DD): no working hours.", ["2026-10-01"]),
    ("Calendar", "workdays"): ("Make-up working days (YYYY-MM-DD) on a weekend.", ["2026-10-10"]),
    ("Calendar", "makeup_hours"): ("", "08:30-17:30"),
    ("Calendar", "sweeps"): (
        "Times (HH:MM) of the after-hours sweeps on non-working time.",
        ["18:30", "20:00", "22:00"],
    ),
    ("TariffBand", "name"): ("Name of the band.", "peak"),
    ("TariffBand", "hours"): ("Spans HH:MM-HH:MM of the band, on quarter hours.", ["08:00-11:00", "18:00-21:00"]),
    ("TariffBand", "price"): ("Price per kWh in the tariff's currency.", 1.12),
    ("Tariff", "currency"): ("Currency of the prices.", "CNY"),
    ("Tariff", "bands"): (
        "Bands covering the whole day exactly once.",
        [{"name": "flat", "hours": ["00:00-24:00"], "price": 0.68}],
    ),
    ("Webhook", "url"): ("http(s) URL the alarm is posted to.", "http://127.0.0.1:9000/hook"),
    ("Webhook", "format"): ("Body format: json, dingtalk, wecom or slack.", "dingtalk"),
    ("EmailChannel", "url"): ("SMTP server, smtp:// or smtps://.", "smtp://127.0.0.1:8025"),
    ("EmailChannel", "from"): ("Sender address.", "wk@example.com"),
    ("EmailChannel", "to"): ("Recipient addresses.", ["duty@example.com"]),
    ("Notifications", "webhooks"): (
        "Webhooks that receive every alarm.",
        [{"url": "http://127.0.0.1:9000/hook", "format": "json"}],
    ),
    ("Notifications", "mqtt_topic"): ("MQTT topic alarms are published on.", "wattkeeper/hq/alarms"),
    ("Notifications", "email"): (
        "E-mail channel for alarms.",
        {"url": "smtp://127.0.0.1:8025", "from": "wk@example.com", "to": ["duty@example.com"]},
    ),
    # keys added with the supply, office, accountability and deployment work
    ("Site", "penalties"): (
        "Fine per violation, in the tariff's currency, by violation type; proposals the administration office "
        "confirms or waives.",
        {"lit_empty_room": 50, "left_on_after_hours": 50, "high_power_appliance": 200},
    ),
    ("Site", "profiles_dir"): ("A directory of extra device profiles (YAML), relative to the site file.", "profiles"),
    ("Site", "alarms"): (
        "Alarm rationalisation per alarm type (ISA-18.2): on/off delay, deadband, severity, enabled.",
        {"ac_too_cold": {"on_delay_s": 60, "off_delay_s": 60, "deadband": 0.5, "severity": "low", "enabled": True}},
    ),
    ("AlarmSettings", "on_delay_s"): ("Seconds the condition must hold before the alarm is raised.", 60),
    ("AlarmSettings", "off_delay_s"): ("Seconds the condition must be normal again before the alarm clears.", 60),
    ("AlarmSettings", "deadband"): ("Hysteresis in the unit of the alarm's value.", 0.5),
    ("AlarmSettings", "severity"): ("critical, high, warning or low.", "low"),
    ("AlarmSettings", "enabled"): ("false: the alarm type is not evaluated at this site.", True),
    ("Device", "approved_w"): (
        "An approved appliance on this office plug: its limit for high_power_appliance, in W.",
        2200,
    ),
    ("Room", "central_heating"): ("Whether the room has central heating (the site's value unless set).", True),
    ("Room", "thresholds"): (
        "This room's own office-rule thresholds; they win over the site's.",
        {"cooling_min_c": 28},
    ),
    ("SiteInfo", "heating_season"): (
        "MM-DD first and last day of the heating season, may wrap the year; absent: all year.",
        ["11-15", "03-15"],
    ),
    ("Source", "overhead_reason"): (
        "Why an insulated overhead line at <= 10 kV (第七条: only where conditions force it).",
        "river crossing",
    ),
    ("Thresholds", "empty_ac_delay_s"): ("Seconds an AC may run in a room known empty before ac_left_on.", 600),
    ("Thresholds", "daylight_lux"): ("Illuminance (lx) at or above which lights should be off (daylight).", 800),
    ("Thresholds", "daylight_delay_s"): ("Seconds lights may stay on in ample daylight before lit_in_daylight.", 600),
    ("TransferSwitch", "transfer_time_s"): (
        "Declared switch-over time in seconds, compared with allowed_interruption_s (第六条5).",
        4,
    ),
}
# A room's own thresholds are the site's keys, for that room only.
KEY_DOCS.update(
    {
        ("RoomThresholds", key): (f"This room's own value: {text[0].lower()}{text[1:]}", example)
        for (model, key), (text, example) in list(KEY_DOCS.items())
        if model == "Thresholds"
    }
)

ENUM_DOCS: dict[str, str] = {
    "Grade": "special, first, second, temporary (important power customers) or ordinary",
    "DeviceRole": "lighting, hvac, office_equipment, sensor, critical, life_safety",
    "RoomKind": "office, meeting, corridor, locker, reception, server, other",
}


def _document(model: str, schema: dict[str, Any]) -> None:
    for key, prop in schema.get("properties", {}).items():
        description, example = KEY_DOCS.get((model, key), ("", None))
        if not prop.get("description") and description:
            prop["description"] = description
        if (model, key) in KEY_DOCS:
            prop["examples"] = [example]
        elif "default" in prop and prop["default"] is not None:
            prop["examples"] = [prop["default"]]


def site_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the site file."""
    schema = Site.model_json_schema(mode="validation")
    defs: dict[str, Any] = schema.get("$defs", {})
    _document("Site", schema)
    for name, sub in defs.items():
        _document(name, sub)
        if name in ENUM_DOCS and not sub.get("description"):
            sub["description"] = ENUM_DOCS[name]
    device = defs["Device"]["properties"]["profile"]
    device["enum"] = sorted(known_profiles())
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$comment": f"Generated from wattkeeper's site models; do not edit. Regenerate: {REGENERATE}",
        **{k: v for k, v in schema.items() if k != "title"},
        "title": "wattkeeper site file",
    }


def render() -> str:
    """The schema as `wattkeeper schema` prints it (stable order, UTF-8, trailing newline)."""
    return json.dumps(site_schema(), ensure_ascii=False, indent=2) + "\n"
