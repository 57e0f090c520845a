#!/usr/bin/env python3
"""Generate the Grafana boards in dashboards/boards/ from the definitions below.

Run `python dashboards/build.py` in the project's environment (it reads the alarm-type table,
service.alarms.rules.ALARM_TYPES) after changing a board; `--check` exits 1 when a committed board
differs from what this file generates (the tests run it). Every query is raw InfluxQL over the
names in service/telemetry/measurements.py, so it runs on InfluxDB 1.x, on 2.x through the DBRP
mapping and on 3.x.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.alarms.rules import ALARM_TYPES

SCHEMA_VERSION = 39
# Grafana's unit for the site's tariff currency (deploy/sites/*.yaml: tariff.currency is CNY).
# A site billed in another currency changes this, e.g. currencyEUR, and regenerates the boards.
CURRENCY_UNIT = "currencyCNY"
DATASOURCE = {"type": "influxdb", "uid": "wattkeeper-influxdb"}
BOARDS_DIR = Path(__file__).resolve().parent / "boards"

SITE = '"site" =~ /^$site$/'
DEPARTMENT = '"department" =~ /^$department$/'
ROOM = '"room" =~ /^$room$/'
# The live supply rules of the compliance board's timeline, as the alarm-type table marks them.
SUPPLY_ALARMS = tuple(spec.type.value for spec in ALARM_TYPES if spec.compliance_board)

Json = dict[str, Any]


# ---------------------------------------------------------------- building blocks


def target(query: str, ref: str = "A", alias: str = "", fmt: str = "time_series") -> Json:
    """One raw InfluxQL query of a panel."""
    t: Json = {"refId": ref, "datasource": DATASOURCE, "rawQuery": True, "resultFormat": fmt, "query": query}
    if alias:
        t["alias"] = alias
    return t


def telemetry(select: str, point: str, where: str = "", by: str = "", fill: str = "null") -> str:
    """A telemetry query per time bucket for one point."""
    cond = f"{SITE} AND \"point\" = '{point}'" + (f" AND {where}" if where else "")
    group = "time($__interval)" + (f", {by}" if by else "")
    return f'SELECT {select} FROM "telemetry" WHERE {cond} AND $timeFilter GROUP BY {group} fill({fill})'


def steps(*pairs: tuple[float | None, str]) -> Json:
    """Absolute thresholds: (value, colour) pairs, the first value None (the base)."""
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for v, c in pairs]}


def mapping(*pairs: tuple[str, str, str]) -> list[Json]:
    """Value mappings: (raw value, text, colour)."""
    return [
        {
            "type": "value",
            "options": {raw: {"text": text, "color": color, "index": i} for i, (raw, text, color) in enumerate(pairs)},
        }
    ]


def override(matcher: str, options: str, **properties: Any) -> Json:
    """A field override: the fields a matcher picks get these properties (dotted ids as in Grafana)."""
    return {
        "matcher": {"id": matcher, "options": options},
        "properties": [{"id": k.replace("__", "."), "value": v} for k, v in properties.items()],
    }


LEGEND = {"showLegend": True, "displayMode": "list", "placement": "bottom", "calcs": []}
TOOLTIP = {"mode": "multi", "sort": "desc"}
REDUCE_LAST = {"calcs": ["lastNotNull"], "fields": "", "values": False}
REDUCE_SUM = {"calcs": ["sum"], "fields": "", "values": False}
BASE = steps((None, "green"))


@dataclass
class Panel:
    """A panel before layout: kind, title, queries and display options."""

    kind: str
    title: str
    description: str
    targets: list[Json]
    unit: str = "none"
    width: int = 12
    height: int = 8
    thresholds: Json = field(default_factory=lambda: BASE)
    custom: Json = field(default_factory=dict)
    options: Json = field(default_factory=dict)
    defaults: Json = field(default_factory=dict)
    mappings: list[Json] = field(default_factory=list)
    interval: str = ""
    transformations: list[Json] = field(default_factory=list)
    overrides: list[Json] = field(default_factory=list)


def timeseries(title: str, description: str, targets: list[Json], unit: str, **kw: Any) -> Panel:
    custom = {
        "drawStyle": "line",
        "lineInterpolation": "linear",
        "lineWidth": 1,
        "fillOpacity": 10,
        "showPoints": "auto",
        # MQTT devices report measured values every few minutes; a longer gap is a real one.
        "spanNulls": 600000,
        "axisPlacement": "auto",
        "stacking": {"mode": "none", "group": "A"},
        "thresholdsStyle": {"mode": "off"},
    }
    custom.update(kw.pop("custom", {}))
    options = {"legend": LEGEND, "tooltip": TOOLTIP}
    return Panel("timeseries", title, description, targets, unit, custom=custom, options=options, **kw)


def bars(title: str, description: str, targets: list[Json], unit: str, **kw: Any) -> Panel:
    custom = {
        "drawStyle": "bars",
        "fillOpacity": 80,
        "lineWidth": 1,
        "showPoints": "never",
        "stacking": {"mode": "normal", "group": "A"},
        "thresholdsStyle": {"mode": "off"},
    }
    return Panel(
        "timeseries",
        title,
        description,
        targets,
        unit,
        custom=custom,
        options={"legend": LEGEND, "tooltip": TOOLTIP},
        **kw,
    )


def timeline(title: str, description: str, targets: list[Json], mappings: list[Json], **kw: Any) -> Panel:
    options = {
        "mergeValues": True,
        "showValue": "auto",
        "alignValue": "left",
        "rowHeight": 0.9,
        "legend": {"showLegend": True, "displayMode": "list", "placement": "bottom"},
        "tooltip": {"mode": "single", "sort": "none"},
    }
    return Panel(
        "state-timeline",
        title,
        description,
        targets,
        custom={"lineWidth": 0, "fillOpacity": 70},
        options=options,
        mappings=mappings,
        **kw,
    )


def stat(
    title: str,
    description: str,
    targets: list[Json],
    unit: str,
    reduce: Json = REDUCE_LAST,
    color_mode: str = "value",
    **kw: Any,
) -> Panel:
    options = {
        "reduceOptions": reduce,
        "colorMode": color_mode,
        "graphMode": "none",
        "textMode": "auto",
        "orientation": "auto",
        "justifyMode": "auto",
        "wideLayout": True,
        "showPercentChange": False,
    }
    return Panel("stat", title, description, targets, unit, options=options, **kw)


def bargauge(
    title: str, description: str, targets: list[Json], unit: str, reduce: Json = REDUCE_SUM, **kw: Any
) -> Panel:
    options = {
        "reduceOptions": reduce,
        "orientation": "horizontal",
        "displayMode": "gradient",
        "valueMode": "color",
        "showUnfilled": True,
        "namePlacement": "auto",
        "sizing": "auto",
        "minVizHeight": 16,
        "minVizWidth": 8,
        "maxVizHeight": 300,
    }
    return Panel("bargauge", title, description, targets, unit, options=options, **kw)


def piechart(title: str, description: str, targets: list[Json], unit: str, **kw: Any) -> Panel:
    options = {
        "reduceOptions": REDUCE_SUM,
        "pieType": "donut",
        "legend": {"showLegend": True, "displayMode": "table", "placement": "right", "values": ["value", "percent"]},
        "tooltip": {"mode": "single", "sort": "none"},
    }
    return Panel("piechart", title, description, targets, unit, options=options, **kw)


def table(title: str, description: str, targets: list[Json], unit: str = "none", **kw: Any) -> Panel:
    options = {"showHeader": True, "cellHeight": "sm", "footer": {"show": False, "reducer": ["sum"], "fields": ""}}
    return Panel(
        "table",
        title,
        description,
        targets,
        unit,
        options=options,
        custom={"align": "auto", "cellOptions": {"type": "auto"}, "inspect": False},
        **kw,
    )


def layout(panels: list[Panel]) -> list[Json]:
    """Place panels left to right in rows of 24 columns and give them ids."""
    out: list[Json] = []
    x = y = row_h = 0
    for number, p in enumerate(panels, start=1):
        if x + p.width > 24:
            x, y, row_h = 0, y + row_h, 0
        defaults: Json = {
            "unit": p.unit,
            "thresholds": p.thresholds,
            "mappings": p.mappings,
            "color": {"mode": "thresholds" if p.kind in ("stat", "bargauge") else "palette-classic"},
            "custom": p.custom,
            **p.defaults,
        }
        if p.kind == "state-timeline":
            defaults["color"] = {"mode": "thresholds"}
        panel: Json = {
            "id": number,
            "type": p.kind,
            "title": p.title,
            "description": p.description,
            "datasource": DATASOURCE,
            "gridPos": {"h": p.height, "w": p.width, "x": x, "y": y},
            "targets": p.targets,
            "fieldConfig": {"defaults": defaults, "overrides": p.overrides},
            "options": p.options,
        }
        if p.interval:
            panel["interval"] = p.interval
        if p.transformations:
            panel["transformations"] = p.transformations
        out.append(panel)
        x += p.width
        row_h = max(row_h, p.height)
    return out


def variable_site() -> Json:
    return query_variable("site", "Site", 'SHOW TAG VALUES FROM "telemetry" WITH KEY = "site"', multi=False)


def query_variable(name: str, label: str, query: str, *, multi: bool = True, hide: int = 0) -> Json:
    """A template variable filled by an InfluxQL meta query; multi-value ones offer All."""
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "query": query,
        "definition": query,
        "refresh": 1,
        "regex": "",
        "sort": 1,
        "multi": multi,
        "includeAll": multi,
        "current": {},
        "options": [],
        "hide": hide,
    }


def variable_department() -> Json:
    return query_variable(
        "department", "Department", f'SHOW TAG VALUES FROM "telemetry" WITH KEY = "department" WHERE {SITE}'
    )


def variable_room() -> Json:
    return query_variable(
        "room", "Room", f'SHOW TAG VALUES FROM "telemetry" WITH KEY = "room" WHERE {SITE} AND {DEPARTMENT}'
    )


ALARM_ANNOTATION = {
    "name": "Alarms raised",
    "datasource": DATASOURCE,
    "enable": True,
    "iconColor": "red",
    "query": (
        'SELECT "state", "type"::tag, "subject"::tag FROM "alarm" '
        f"WHERE {SITE} AND \"state\" = 'active_unacked' AND $timeFilter"
    ),
    "textColumn": "subject",
    "tagsColumn": "type",
}
BUILTIN_ANNOTATION = {
    "name": "Annotations & Alerts",
    "builtIn": 1,
    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
    "enable": True,
    "hide": True,
    "iconColor": "rgba(0, 211, 255, 1)",
    "type": "dashboard",
}


def board(
    uid: str,
    title: str,
    description: str,
    panels: list[Panel],
    variables: list[Json],
    annotations: tuple[Json, ...] = (),
    refresh: str = "30s",
    time_from: str = "now-6h",
) -> Json:
    """A whole dashboard."""
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["wattkeeper"],
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "editable": False,
        "graphTooltip": 1,
        "timezone": "browser",
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "refresh": refresh,
        "time": {"from": time_from, "to": "now"},
        "timepicker": {},
        "weekStart": "",
        "links": [
            {
                "title": "wattkeeper boards",
                "type": "dashboards",
                "tags": ["wattkeeper"],
                "asDropdown": True,
                "includeVars": True,
                "keepTime": True,
                "icon": "external link",
                "targetBlank": False,
                "tooltip": "",
                "url": "",
            }
        ],
        "annotations": {"list": [BUILTIN_ANNOTATION, *annotations]},
        "templating": {"list": variables},
        "panels": layout(panels),
    }


# ---------------------------------------------------------------- site overview

ATS_POSITIONS = mapping(
    ("0", "unknown", "purple"),
    ("1", "0 (open)", "orange"),
    ("2", "I (source 1)", "green"),
    ("3", "II (source 2)", "blue"),
)
ENGINE_STATES = mapping(
    ("0", "stopped", "text"),
    ("1", "pre-start", "yellow"),
    ("2", "warming", "orange"),
    ("3", "running", "green"),
    ("4", "cooling", "blue"),
    ("15", "n/a", "purple"),
)
ACTIVE = mapping(("0", "OK", "green"), ("1", "ACTIVE", "red"))
# The latest power of each source meter, summed by Grafana (merge, then the stat's sum): InfluxQL
# subqueries with fill(previous) do not merge series reliably on InfluxDB 1.x.
TOTAL_LOAD = (
    'SELECT last("value") AS "w" FROM "telemetry" '
    f'WHERE {SITE} AND "point" = \'power\' AND "source" != \'\' AND $timeFilter GROUP BY "source"'
)
ACTIVE_ALARMS = (
    'SELECT sum("active") FROM (SELECT last("active") AS "active" FROM "alarm" '
    f'WHERE {SITE} AND $timeFilter GROUP BY "type", "subject") WHERE $timeFilter'
)


def site_info(select: str, by: str = "") -> str:
    """The site file's figures the service writes (site_info), per time bucket, carried forward."""
    group = "time($__interval)" + (f", {by}" if by else "")
    return f'SELECT {select} FROM "site_info" WHERE {SITE} AND $timeFilter GROUP BY {group} fill(previous)'


# The generator controller reports watts; the site file's figures are kW.
GENERATOR_KW = telemetry('mean("value") / 1000', "power", '"device" =~ /^$generator$/', '"device"')
DASHED = {"custom__lineStyle": {"fill": "dash", "dash": [10, 10]}, "custom__lineWidth": 2, "custom__fillOpacity": 0}
# service/telemetry/measurements.py COMPLIANCE_LEVELS: the `level` the service writes for each status.
COMPLIANCE_STATUS = mapping(
    ("-1", "N/A", "text"),
    ("0", "PASS", "green"),
    ("1", "WARN", "orange"),
    ("2", "FAIL", "red"),
)
COMPLIANCE_LEVEL = f'SELECT last("level") FROM "compliance" WHERE {SITE} AND $timeFilter GROUP BY "rule"'
COMPLIANCE_DETAIL = (
    'SELECT last("status") AS "status", last("title") AS "check", last("detail") AS "finding" '
    f'FROM "compliance" WHERE {SITE} AND $timeFilter GROUP BY "rule"'
)


def site_overview() -> Json:
    supply_alarms = "|".join(SUPPLY_ALARMS)
    panels = [
        timeseries(
            "Supply sources: voltage L1",
            "Phase L1 voltage at each source's meter (grid feeders and generator); a source at 0 V is lost.",
            [target(telemetry('mean("value")', "voltage_l1", "\"source\" != ''", '"source"'), alias="$tag_source")],
            "volt",
            width=8,
        ),
        bars(
            "Load by source",
            "Active power drawn through each source's meter; the stack is the site load.",
            [
                target(
                    telemetry('mean("value")', "power", "\"source\" != ''", '"source"', fill="previous"),
                    alias="$tag_source",
                )
            ],
            "watt",
            width=10,
        ),
        stat(
            "Total load",
            "Sum of the latest active power of each source meter.",
            [target(TOTAL_LOAD, fmt="table")],
            "watt",
            reduce={"calcs": ["sum"], "fields": "/^w$/", "values": False},
            width=3,
            transformations=[{"id": "merge", "options": {}}],
        ),
        stat(
            "Active alarms",
            "Alarms whose last transition is active (acknowledged or not).",
            [target(ACTIVE_ALARMS, alias="active alarms")],
            "none",
            width=3,
            thresholds=steps((None, "green"), (1, "red")),
            defaults={"noValue": "0"},
        ),
        timeline(
            "Transfer switch position",
            "ATyS position: I and II are the switch's first and second "
            "source in the site file; 0 is open (no grid source connected).",
            [target(telemetry('last("value")', "position", by='"device"', fill="previous"), alias="$tag_device")],
            ATS_POSITIONS,
            width=12,
            height=6,
        ),
        timeline(
            "Generator state",
            "Engine state reported by the generator controller (DSE GenComm).",
            [target(telemetry('last("value")', "engine_state", by='"device"', fill="previous"), alias="$tag_device")],
            ENGINE_STATES,
            width=12,
            height=6,
        ),
        timeseries(
            "Generator output against the security load",
            "Active power the generator delivers, beside the site file's security load and 120 % of it "
            "(the red line: a generator must be rated for at least 120 % of the security load) and each "
            "generator's rated power. Rated below the red line fails the capacity rule; output above the "
            "security load means more than the security load is on the generator. The figures are the "
            "ones the service reads from the site file (site_info).",
            [
                target(GENERATOR_KW, alias="$tag_device output"),
                target(site_info('last("security_load_kw") * 1.2'), "B", alias="120 % of security load"),
                target(site_info('last("security_load_kw")'), "C", alias="security load"),
                target(site_info('last("rated_kw")', by='"generator"'), "D", alias="$tag_generator rated"),
            ],
            "kwatt",
            width=16,
            custom={"axisSoftMin": 0},
            overrides=[
                override("byFrameRefID", "B", color={"mode": "fixed", "fixedColor": "red"}, **DASHED),
                override("byFrameRefID", "C", color={"mode": "fixed", "fixedColor": "orange"}, **DASHED),
                override("byFrameRefID", "D", color={"mode": "fixed", "fixedColor": "green"}, **DASHED),
            ],
        ),
        stat(
            "Site supply figures",
            "From the site file, as the service last wrote them: security load, 120 % of it, each "
            "generator's rating and the allowed interruption of supply.",
            [
                target(
                    f'SELECT last("security_load_kw") FROM "site_info" WHERE {SITE} AND $timeFilter',
                    alias="security load",
                ),
                target(
                    f'SELECT last("security_load_kw") * 1.2 FROM "site_info" WHERE {SITE} AND $timeFilter',
                    "B",
                    alias="120 % of it",
                ),
                target(
                    f'SELECT last("rated_kw") FROM "site_info" WHERE {SITE} AND $timeFilter GROUP BY "generator"',
                    "C",
                    alias="$tag_generator rated",
                ),
                target(
                    f'SELECT last("allowed_interruption_s") FROM "site_info" WHERE {SITE} AND $timeFilter',
                    "D",
                    alias="allowed interruption",
                ),
            ],
            "kwatt",
            width=8,
            thresholds=steps((None, "blue")),
            overrides=[override("byFrameRefID", "D", unit="s")],
        ),
        stat(
            "Static compliance (site file)",
            "Each supply rule of `wattkeeper check` for the site file the service runs with: PASS, WARN, "
            "FAIL, or N/A where the rule does not apply to the site's grade.",
            [target(COMPLIANCE_LEVEL, alias="$tag_rule")],
            "none",
            width=24,
            height=5,
            color_mode="background",
            mappings=COMPLIANCE_STATUS,
        ),
        table(
            "Static compliance: details",
            "What each rule found in the site file.",
            [target(COMPLIANCE_DETAIL, fmt="table")],
            width=12,
            height=8,
            transformations=[{"id": "organize", "options": {"excludeByName": {"Time": True}}}],
        ),
        timeline(
            "Supply-side compliance (live)",
            "Live supply rules: redundancy, transfer, generator start and "
            "load, anti-backfeed interlock. A row appears once an alarm of that kind was raised; OK "
            "when it cleared.",
            [
                target(
                    f'SELECT last("active") FROM "alarm" WHERE {SITE} AND "type" =~ /^({supply_alarms})$/ '
                    'AND $timeFilter GROUP BY time($__interval), "type", "subject" fill(previous)',
                    alias="$tag_type $tag_subject",
                )
            ],
            ACTIVE,
            width=12,
            height=8,
        ),
    ]
    variables = [
        variable_site(),
        query_variable(
            "generator",
            "Generator controller",
            f'SHOW TAG VALUES FROM "telemetry" WITH KEY = "device" WHERE {SITE} AND "point" = \'engine_state\'',
            hide=2,
        ),
    ]
    return board(
        "wattkeeper-site-overview",
        "wattkeeper: site overview",
        "Sources, transfer switch, generator, load, and supply compliance (static and live).",
        panels,
        variables,
        (ALARM_ANNOTATION,),
    )


# ---------------------------------------------------------------- energy by department

ENERGY_WHERE = f"{SITE} AND {DEPARTMENT} AND $timeFilter"


def energy() -> Json:
    panels = [
        bargauge(
            "Energy by department",
            "kWh of the 15-minute intervals in the time range.",
            [
                target(
                    f'SELECT sum("kwh") FROM "energy" WHERE {ENERGY_WHERE} GROUP BY "department"',
                    alias="$tag_department",
                )
            ],
            "kwatth",
            width=8,
        ),
        bargauge(
            "Cost by department",
            "Time-of-use cost (the site's tariff currency) in the time range.",
            [
                target(
                    f'SELECT sum("cost") FROM "energy" WHERE {ENERGY_WHERE} GROUP BY "department"',
                    alias="$tag_department",
                )
            ],
            CURRENCY_UNIT,
            width=8,
            defaults={"decimals": 2},
        ),
        bargauge(
            "After-hours share",
            "Share of each department's kWh used outside working hours (evenings, weekends, holidays).",
            [
                target(
                    'SELECT sum("after") / sum("kwh") * 100 FROM (SELECT "kwh", "kwh" * "after_hours" AS '
                    f'"after" FROM "energy" WHERE {ENERGY_WHERE}) WHERE $timeFilter GROUP BY "department"',
                    alias="$tag_department",
                )
            ],
            "percent",
            width=8,
            reduce=REDUCE_LAST,
            thresholds=steps((None, "green"), (15, "orange"), (30, "red")),
            defaults={"min": 0, "max": 100},
        ),
        bars(
            "Energy over time",
            "kWh per department per time bucket (at least the 15-minute interval).",
            [
                target(
                    f'SELECT sum("kwh") FROM "energy" WHERE {ENERGY_WHERE} GROUP BY time($__interval), '
                    '"department" fill(0)',
                    alias="$tag_department",
                )
            ],
            "kwatth",
            width=16,
            interval="15m",
        ),
        piechart(
            "Energy by tariff band",
            "kWh in each time-of-use band (peak, flat, valley).",
            [target(f'SELECT sum("kwh") FROM "energy" WHERE {ENERGY_WHERE} GROUP BY "band"', alias="$tag_band")],
            "kwatth",
            width=8,
        ),
        table(
            "Cost by department and band",
            "kWh and cost per department and tariff band.",
            [
                target(
                    f'SELECT sum("kwh") AS "kWh", sum("cost") AS "cost" FROM "energy" WHERE {ENERGY_WHERE} '
                    'GROUP BY "department", "band"',
                    fmt="table",
                )
            ],
            width=12,
            transformations=[{"id": "organize", "options": {"excludeByName": {"Time": True}}}],
            defaults={"decimals": 2},
            overrides=[
                override("byName", "kWh", unit="kwatth"),
                override("byName", "cost", unit=CURRENCY_UNIT),
            ],
        ),
        timeseries(
            "Department power",
            "Live active power at each department's meter.",
            [
                target(
                    telemetry('mean("value")', "power", f"{DEPARTMENT} AND \"room\" = ''", '"department"'),
                    alias="$tag_department",
                )
            ],
            "watt",
            width=12,
        ),
    ]
    return board(
        "wattkeeper-energy",
        "wattkeeper: energy by department",
        "kWh, time-of-use cost and after-hours share per department.",
        panels,
        [variable_site(), variable_department()],
        refresh="5m",
        time_from="now/M",
    )


# ---------------------------------------------------------------- rooms

AC_MODES = mapping(
    ("off", "off", "text"),
    ("cool", "cool", "blue"),
    ("heat", "heat", "red"),
    ("auto", "auto", "green"),
    ("fan_only", "fan", "yellow"),
    ("dry", "dry", "orange"),
)
ON_OFF = mapping(("0", "off", "text"), ("1", "on", "yellow"))
OCCUPANCY = mapping(("0", "empty", "text"), ("1", "occupied", "green"))
CONTACT = mapping(("0", "open", "red"), ("1", "closed", "green"))
IN_ROOM = f"{DEPARTMENT} AND {ROOM}"


def rooms() -> Json:
    panels = [
        timeseries(
            "Room temperature",
            "Temperature at each room's AC controller. No cooling at or below "
            "26 °C, no heating at or above 17 °C (the dashed lines).",
            [target(telemetry('mean("value")', "local_temperature", IN_ROOM, '"room"'), alias="$tag_room")],
            "celsius",
            width=12,
            thresholds=steps((None, "blue"), (17, "green"), (26, "red")),
            custom={"thresholdsStyle": {"mode": "dashed"}, "axisSoftMin": 15, "axisSoftMax": 28},
        ),
        timeline(
            "AC mode",
            "AC system mode per room.",
            [target(telemetry('last("text")', "system_mode", IN_ROOM, '"room"', fill="previous"), alias="$tag_room")],
            AC_MODES,
            width=12,
        ),
        timeseries(
            "AC cooling setpoint",
            "A cooling setpoint below 26 °C breaks the cooling rule.",
            [target(telemetry('mean("value")', "cooling_setpoint", IN_ROOM, '"room"'), alias="$tag_room")],
            "celsius",
            width=12,
            thresholds=steps((None, "red"), (26, "green")),
            custom={
                "thresholdsStyle": {"mode": "dashed"},
                "axisSoftMin": 20,
                "axisSoftMax": 28,
                "lineInterpolation": "stepAfter",
            },
        ),
        timeseries(
            "AC heating setpoint",
            "Heating above 17 °C breaks the heating rule.",
            [target(telemetry('mean("value")', "heating_setpoint", IN_ROOM, '"room"'), alias="$tag_room")],
            "celsius",
            width=12,
            thresholds=steps((None, "green"), (17, "red")),
            custom={
                "thresholdsStyle": {"mode": "dashed"},
                "axisSoftMin": 10,
                "axisSoftMax": 24,
                "lineInterpolation": "stepAfter",
            },
        ),
        timeline(
            "Occupancy",
            "Occupancy sensor per room.",
            [target(telemetry('last("value")', "occupancy", IN_ROOM, '"room"', fill="previous"), alias="$tag_room")],
            OCCUPANCY,
            width=12,
        ),
        timeline(
            "Lights and switched devices",
            "On/off state of every switched device in the rooms (lights, plugs, AC controllers that report it).",
            [
                target(
                    telemetry('last("value")', "on", IN_ROOM, '"room", "device"', fill="previous"),
                    alias="$tag_room $tag_device",
                )
            ],
            ON_OFF,
            width=12,
            height=10,
        ),
        timeseries(
            "Plug and device power",
            "Active power of each metered device in the rooms (plugs, lights, AC).",
            [target(telemetry('mean("value")', "power", IN_ROOM, '"room", "device"'), alias="$tag_room $tag_device")],
            "watt",
            width=12,
            height=10,
        ),
        timeline(
            "Doors and windows",
            "Contact sensors: AC must be off while a door or window is open.",
            [
                target(
                    telemetry('last("value")', "contact", IN_ROOM, '"room", "device"', fill="previous"),
                    alias="$tag_room $tag_device",
                )
            ],
            CONTACT,
            width=12,
            height=10,
        ),
    ]
    return board(
        "wattkeeper-rooms",
        "wattkeeper: rooms",
        "Temperature, AC mode and setpoints, lights, occupancy and plug power per room.",
        panels,
        [variable_site(), variable_department(), variable_room()],
        refresh="30s",
        time_from="now-12h",
    )


# ---------------------------------------------------------------- alarms

ALARM_WHERE = f'{SITE} AND "type" =~ /^$type$/ AND $timeFilter'


def alarms() -> Json:
    panels = [
        timeline(
            "Alarm timeline",
            "Each (type, subject) lifecycle: ACTIVE from raised to cleared.",
            [
                target(
                    f'SELECT last("active") FROM "alarm" WHERE {ALARM_WHERE} GROUP BY time($__interval), '
                    '"type", "subject" fill(previous)',
                    alias="$tag_type $tag_subject",
                )
            ],
            ACTIVE,
            width=24,
            height=12,
        ),
        bars(
            "Alarms raised",
            "Alarms raised per time bucket, by severity.",
            [
                target(
                    f'SELECT count("active") FROM "alarm" WHERE {ALARM_WHERE} AND "state" = \'active_unacked\' '
                    'GROUP BY time($__interval), "severity" fill(0)',
                    alias="$tag_severity",
                )
            ],
            "none",
            width=12,
        ),
        bargauge(
            "Alarms raised by type",
            "How often each alarm type was raised in the time range.",
            [
                target(
                    f'SELECT count("active") FROM "alarm" WHERE {ALARM_WHERE} AND "state" = '
                    "'active_unacked' GROUP BY \"type\"",
                    alias="$tag_type",
                )
            ],
            "none",
            width=12,
            thresholds=steps((None, "orange")),
        ),
        table(
            "Alarm transitions",
            "Every transition (raised, acknowledged, cleared, shelved), newest first.",
            [
                target(
                    f'SELECT "state", "active" FROM "alarm" WHERE {ALARM_WHERE} GROUP BY "type", "subject", '
                    '"severity" ORDER BY time DESC LIMIT 1000',
                    fmt="table",
                )
            ],
            width=24,
            height=10,
        ),
    ]
    variables = [
        variable_site(),
        query_variable("type", "Alarm type", f'SHOW TAG VALUES FROM "alarm" WITH KEY = "type" WHERE {SITE}'),
    ]
    return board(
        "wattkeeper-alarms",
        "wattkeeper: alarms",
        "Alarm lifecycles and transitions.",
        panels,
        variables,
        (ALARM_ANNOTATION,),
        time_from="now-24h",
    )


# ---------------------------------------------------------------- data quality

SERVICE_WHERE = f"{SITE} AND $timeFilter"


def data_quality() -> Json:
    def counter(field_name: str) -> str:
        # The counters run since the service started; the per-bucket increase survives restarts.
        return (
            f'SELECT non_negative_difference(max("{field_name}")) FROM "wattkeeper" WHERE {SERVICE_WHERE} '
            "GROUP BY time($__interval) fill(null)"
        )

    def increase(field_name: str) -> str:
        return (
            f'SELECT sum("n") FROM (SELECT non_negative_difference("{field_name}") AS "n" FROM "wattkeeper" '
            f"WHERE {SERVICE_WHERE}) WHERE $timeFilter"
        )

    panels = [
        stat(
            "Devices offline",
            "Devices the drivers currently see as offline.",
            [target(f'SELECT last("devices_offline") FROM "wattkeeper" WHERE {SERVICE_WHERE}', alias="offline")],
            "none",
            width=6,
            thresholds=steps((None, "green"), (1, "red")),
        ),
        stat(
            "Outbox depth",
            "Telemetry lines waiting on disk for InfluxDB.",
            [target(f'SELECT last("outbox_depth") FROM "wattkeeper" WHERE {SERVICE_WHERE}', alias="outbox")],
            "none",
            width=6,
            thresholds=steps((None, "green"), (1000, "orange"), (100000, "red")),
        ),
        stat(
            "Dropped points",
            "Telemetry lines lost (outbox full or refused by InfluxDB) in the time range.",
            [target(increase("dropped"), alias="dropped")],
            "none",
            width=6,
            thresholds=steps((None, "green"), (1, "red")),
        ),
        stat(
            "Rejected payloads",
            "Device messages the drivers refused (garbage, out of range) in the time range.",
            [target(increase("rejects"), alias="rejects")],
            "none",
            width=6,
            thresholds=steps((None, "green"), (1, "orange")),
        ),
        timeseries(
            "Devices offline over time",
            "Offline device count.",
            [
                target(
                    f'SELECT max("devices_offline") FROM "wattkeeper" WHERE {SERVICE_WHERE} '
                    "GROUP BY time($__interval) fill(null)",
                    alias="offline",
                )
            ],
            "none",
            width=12,
            thresholds=steps((None, "green"), (1, "red")),
            custom={"lineInterpolation": "stepAfter", "thresholdsStyle": {"mode": "area"}},
        ),
        timeseries(
            "Outbox depth over time",
            "Lines waiting for InfluxDB; rising means the database is unreachable or slow.",
            [
                target(
                    f'SELECT max("outbox_depth") FROM "wattkeeper" WHERE {SERVICE_WHERE} '
                    "GROUP BY time($__interval) fill(null)",
                    alias="outbox",
                )
            ],
            "none",
            width=12,
        ),
        bars(
            "Rejected payloads and dropped points",
            "Per time bucket.",
            [
                target(counter("rejects"), alias="rejected payloads"),
                target(counter("dropped"), "B", alias="dropped points"),
            ],
            "none",
            width=12,
        ),
        timeseries(
            "Readings",
            "Good readings taken per time bucket.",
            [target(counter("readings"), alias="readings")],
            "none",
            width=12,
        ),
        timeline(
            "Device offline alarms",
            "device_offline alarm lifecycle per device.",
            [
                target(
                    f'SELECT last("active") FROM "alarm" WHERE {SITE} AND "type" = \'device_offline\' AND '
                    '$timeFilter GROUP BY time($__interval), "subject" fill(previous)',
                    alias="$tag_subject",
                )
            ],
            ACTIVE,
            width=12,
            height=10,
        ),
        table(
            "Last reading per device",
            "When each device last delivered a good numeric reading.",
            [target(f'SELECT last("value") FROM "telemetry" WHERE {SERVICE_WHERE} GROUP BY "device"', fmt="table")],
            width=12,
            height=10,
        ),
    ]
    return board(
        "wattkeeper-data-quality",
        "wattkeeper: data quality",
        "Devices offline, rejected payloads, outbox depth and dropped points.",
        panels,
        [variable_site()],
        time_from="now-6h",
    )


BOARDS = {
    "site-overview.json": site_overview,
    "energy.json": energy,
    "rooms.json": rooms,
    "alarms.json": alarms,
    "data-quality.json": data_quality,
}


def render(build: Any) -> str:
    """A board as the JSON text committed to the repository."""
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    BOARDS_DIR.mkdir(exist_ok=True)
    for name, build in BOARDS.items():
        path = BOARDS_DIR / name
        text = render(build)
        if check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        print(f"out of date (run python dashboards/build.py): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
