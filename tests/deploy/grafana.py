"""The Grafana boards as the tests see them: loading, template variables and query interpolation."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "dashboards"
BOARDS = DASHBOARDS / "boards"
PROVISIONING = DASHBOARDS / "provisioning"

Json = dict[str, Any]
Query = Callable[[str], list[Json]]


def boards() -> dict[str, Json]:
    """Every board file by name."""
    return {p.name: json.loads(p.read_text(encoding="utf-8")) for p in sorted(BOARDS.glob("*.json"))}


def datasource() -> Json:
    """The one provisioned data source."""
    files = sorted((PROVISIONING / "datasources").glob("*.yaml"))
    (only,) = [ds for f in files for ds in yaml.safe_load(f.read_text())["datasources"]]
    return dict(only)


def panels(board: Json) -> Iterator[Json]:
    """Every panel, including those inside collapsed rows."""
    for panel in board.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def queries(board: Json) -> Iterator[tuple[str, Json, Json]]:
    """(where, panel or annotation, target) for every InfluxQL query a board runs."""
    for panel in panels(board):
        for t in panel.get("targets", []):
            yield f"panel {panel['id']} '{panel['title']}' {t['refId']}", panel, t
    for ann in board.get("annotations", {}).get("list", []):
        if "query" in ann:
            yield f"annotation '{ann['name']}'", ann, ann


def variables(board: Json) -> list[Json]:
    """The board's template variables in order."""
    return list(board.get("templating", {}).get("list", []))


def regex_escape(value: str) -> str:
    """How Grafana's InfluxDB data source escapes a multi-value variable value for a regex."""
    return re.sub(r"[\\^$*+?.()|{}\[\]/]", lambda m: "\\" + m.group(0), value)


def format_value(variable: Json, values: list[str]) -> str:
    """A variable's current value(s) as Grafana interpolates them into InfluxQL."""
    if not (variable.get("multi") or variable.get("includeAll")):
        return values[0]
    escaped = [regex_escape(v) for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


_DURATION = re.compile(r"^(\d+)(ms|s|m|h|d|w)$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


def duration_ms(text: str) -> int:
    """'15m' -> 900000."""
    m = _DURATION.match(text.strip())
    if not m:
        raise ValueError(f"'{text}' is not a Grafana interval")
    return int(m.group(1)) * _UNIT_MS[m.group(2)]


@dataclass(frozen=True)
class TimeRange:
    """The dashboard time range, as Grafana puts it into `$timeFilter` and `$__interval`."""

    start: datetime
    end: datetime
    max_data_points: int = 1000

    @property
    def time_filter(self) -> str:
        start_ms = int(self.start.timestamp() * 1000)
        end_ms = int(self.end.timestamp() * 1000)
        return f"time >= {start_ms}ms and time <= {end_ms}ms"

    def interval(self, min_interval: str = "") -> str:
        """`$__interval`: the range over the panel's data points, never below its minimum interval."""
        span_ms = (self.end - self.start).total_seconds() * 1000
        ms = max(1, int(span_ms / self.max_data_points))
        if min_interval:
            ms = max(ms, duration_ms(min_interval))
        return f"{ms}ms"


def min_interval(panel: Json) -> str:
    """The lower bound of a panel's `$__interval`: its own, else the data source's `timeInterval`."""
    return str(panel.get("interval") or datasource()["jsonData"].get("timeInterval", ""))


def interpolate(query: str, values: dict[str, str], time_range: TimeRange, min_interval: str = "") -> str:
    """A query with Grafana's macros and the template variables substituted."""
    out = query.replace("$timeFilter", time_range.time_filter)
    out = out.replace("$__interval_ms", str(duration_ms(time_range.interval(min_interval))))
    out = out.replace("$__interval", time_range.interval(min_interval))
    # Longest names first so $room never eats the start of $room_kind.
    for name in sorted(values, key=len, reverse=True):
        out = out.replace(f"${{{name}}}", values[name]).replace(f"${name}", values[name])
    return out


def resolve_variables(board: Json, run_meta: Callable[[str], list[str]]) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Fill the board's variables in order as Grafana does on load (All for multi-value ones).

    `run_meta` runs an InfluxQL meta query and returns the values it lists. Returns the
    interpolation strings and the raw values per variable.
    """
    formatted: dict[str, str] = {}
    raw: dict[str, list[str]] = {}
    for var in variables(board):
        name = var["name"]
        if var["type"] == "query":
            query = var["query"] if isinstance(var["query"], str) else var["query"]["query"]
            for other in sorted(formatted, key=len, reverse=True):
                query = query.replace(f"${other}", formatted[other])
            found = run_meta(query)
            if var.get("regex"):
                found = [v for v in found if re.search(var["regex"], v)]
            chosen = found if var.get("includeAll") else found[:1]
        elif var["type"] in ("textbox", "constant", "custom"):
            chosen = [str(var["query"]).split(",")[0].strip()]
        else:
            raise AssertionError(f"variable '{name}' has type {var['type']!r}, which these tests do not model")
        raw[name] = chosen
        if chosen:
            formatted[name] = format_value(var, chosen)
    return formatted, raw
