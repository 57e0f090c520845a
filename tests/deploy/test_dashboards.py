"""The Grafana boards and their provisioning: valid for the declared schema version, names from
service/telemetry/measurements.py, units and thresholds where they mean something."""

from __future__ import annotations

import re
import subprocess
import sys
from itertools import combinations
from typing import Any

import pytest
import yaml

from drivers.profiles import PROFILE_DIR, known_profiles, load_profile
from service.alarms.record import AlarmState
from service.alarms.rules import AlarmType
from service.config.site import load_site
from service.telemetry import measurements as m
from tests.deploy import grafana as g
from tests.deploy.test_sites import SECRETS

BOARDS = g.boards()
SCHEMA_VERSION = 39
PANEL_TYPES = {"timeseries", "stat", "bargauge", "piechart", "table", "state-timeline", "text", "row"}
RESULT_FORMATS = {"time_series", "table"}
MEASUREMENTS = {name: set(tags) | set(fields) for name, (tags, fields) in m.SCHEMA.items()}
CURRENCY = "currencyCNY"
GRAFANA_MACROS = {"timeFilter", "__interval", "__interval_ms", "__from", "__to"}


def all_queries() -> list[tuple[str, str, str]]:
    """(board, where, query) for panel targets, annotations and variable queries."""
    out = []
    for name, board in BOARDS.items():
        for where, _, t in g.queries(board):
            out.append((name, where, t["query"]))
        for var in g.variables(board):
            if var["type"] == "query":
                out.append((name, f"variable ${var['name']}", var["query"]))
    return out


QUERIES = all_queries()
QUERY_IDS = [f"{b}:{w}" for b, w, _ in QUERIES]


def test_the_five_boards_exist() -> None:
    titles = {b["title"] for b in BOARDS.values()}
    assert titles == {
        "wattkeeper: site overview",
        "wattkeeper: energy by department",
        "wattkeeper: rooms",
        "wattkeeper: alarms",
        "wattkeeper: data quality",
    }


def test_committed_boards_are_what_the_generator_writes() -> None:
    done = subprocess.run(
        [sys.executable, str(g.DASHBOARDS / "build.py"), "--check"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr


def test_provisioned_datasource_is_influxql_with_token_header() -> None:
    ds = g.datasource()
    assert ds["type"] == "influxdb"
    assert ds["uid"] == "wattkeeper-influxdb"
    assert ds["jsonData"]["version"] == "InfluxQL"
    assert ds["jsonData"]["dbName"] == "${INFLUX_BUCKET}"
    assert ds["url"] == "${INFLUX_URL}"
    assert ds["jsonData"]["httpHeaderName1"] == "Authorization"
    assert ds["secureJsonData"]["httpHeaderValue1"] == "Token ${INFLUX_TOKEN}"


def test_dashboard_provider_loads_the_boards_folder_mounted_by_compose() -> None:
    (provider,) = yaml.safe_load((g.PROVISIONING / "dashboards" / "wattkeeper.yaml").read_text())["providers"]
    assert provider["type"] == "file"
    compose = yaml.safe_load((g.ROOT / "deploy" / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"../dashboards/boards:{provider['options']['path']}:ro" in mounts
    assert "../dashboards/provisioning:/etc/grafana/provisioning:ro" in mounts


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_board_is_valid_for_its_schema_version(name: str) -> None:
    board = BOARDS[name]
    assert board["schemaVersion"] == SCHEMA_VERSION
    for key, kind in (
        ("uid", str),
        ("title", str),
        ("tags", list),
        ("version", int),
        ("editable", bool),
        ("time", dict),
        ("panels", list),
        ("templating", dict),
        ("annotations", dict),
    ):
        assert isinstance(board.get(key), kind), f"{name}: top-level '{key}' missing or not {kind.__name__}"
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", board["uid"]), "uid: at most 40 of [A-Za-z0-9_-]"
    assert set(board["time"]) >= {"from", "to"}
    assert board["timezone"] in ("browser", "utc", "")
    for ann in board["annotations"]["list"]:
        assert {"name", "datasource", "enable", "iconColor"} <= set(ann)


def test_board_uids_are_unique() -> None:
    uids = [b["uid"] for b in BOARDS.values()]
    assert len(uids) == len(set(uids))


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_panels_are_well_formed(name: str) -> None:
    board = BOARDS[name]
    uid = g.datasource()["uid"]
    panels = list(g.panels(board))
    assert panels, "a board without panels"
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), f"duplicate panel ids {ids}"
    for p in panels:
        where = f"{name} panel {p.get('id')} '{p.get('title')}'"
        assert isinstance(p["id"], int) and p["id"] > 0, where
        assert p["type"] in PANEL_TYPES, where
        assert p["title"].strip(), where
        pos = p["gridPos"]
        assert set(pos) == {"h", "w", "x", "y"} and all(isinstance(v, int) for v in pos.values()), where
        assert pos["w"] >= 1 and pos["h"] >= 1 and pos["x"] >= 0 and pos["y"] >= 0 and pos["x"] + pos["w"] <= 24, where
        if p["type"] in ("row", "text"):
            continue
        assert p["datasource"] == {"type": "influxdb", "uid": uid}, where
        defaults = p["fieldConfig"]["defaults"]
        assert isinstance(p["fieldConfig"]["overrides"], list), where
        assert isinstance(p["options"], dict), where
        steps = defaults["thresholds"]["steps"]
        assert defaults["thresholds"]["mode"] in ("absolute", "percentage"), where
        assert steps[0]["value"] is None, f"{where}: the first threshold step is the base (value null)"
        values = [s["value"] for s in steps[1:]]
        assert values == sorted(values), f"{where}: threshold steps out of order"
        refs = [t["refId"] for t in p["targets"]]
        assert p["targets"] and len(refs) == len(set(refs)), where
        for t in p["targets"]:
            assert t["datasource"] == p["datasource"], where
            assert t["rawQuery"] is True and isinstance(t["query"], str) and t["query"].strip(), where
            assert t["resultFormat"] in RESULT_FORMATS, where
        if "interval" in p:
            g.duration_ms(p["interval"])


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_panels_do_not_overlap(name: str) -> None:
    def cells(p: dict[str, Any]) -> set[tuple[int, int]]:
        pos = p["gridPos"]
        return {(x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])}

    top = BOARDS[name]["panels"]
    for a, b in combinations(top, 2):
        assert not cells(a) & cells(b), f"panels '{a['title']}' and '{b['title']}' overlap"


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_template_variables(name: str) -> None:
    board = BOARDS[name]
    uid = g.datasource()["uid"]
    names = [v["name"] for v in g.variables(board)]
    assert len(names) == len(set(names))
    assert names[0] == "site", "site is the first variable; the others filter within it"
    for v in g.variables(board):
        assert v["type"] in ("query", "textbox", "constant", "custom"), v["name"]
        assert "current" in v and "hide" in v, v["name"]
        if v["type"] == "query":
            assert v["datasource"] == {"type": "influxdb", "uid": uid}, v["name"]
            assert v["refresh"] in (1, 2), f"${v['name']} must refresh on load or on time range change"
            assert v["query"].startswith("SHOW TAG VALUES FROM "), v["name"]
            assert v["definition"] == v["query"]
            if v["includeAll"]:
                assert "allValue" not in v, "All must list the values: a regex .* would match untagged series"
    used = set()
    for _, _, t in g.queries(board):
        used |= set(re.findall(r"\$\{?(\w+)", t["query"]))
    for v in g.variables(board):
        if v["type"] == "query":
            used |= set(re.findall(r"\$\{?(\w+)", v["query"]))
    assert used - GRAFANA_MACROS <= set(names), f"undefined variables {sorted(used - GRAFANA_MACROS - set(names))}"
    assert set(names) <= used | {"site"}, f"unused variables {sorted(set(names) - used)}"


def test_boards_offer_site_department_and_room_variables() -> None:
    offered = {v["name"] for b in BOARDS.values() for v in g.variables(b)}
    assert {"site", "department", "room"} <= offered
    rooms = next(b for b in BOARDS.values() if b["uid"] == "wattkeeper-rooms")
    assert [v["name"] for v in g.variables(rooms)] == ["site", "department", "room"]


def identifiers(query: str) -> tuple[set[str], set[str]]:
    """(measurements, other double-quoted identifiers) of an InfluxQL query, aliases removed."""
    measurements = set(re.findall(r'\bFROM\s+"([^"]+)"', query))
    aliases = set(re.findall(r'\bAS\s+"([^"]+)"', query))
    quoted = set(re.findall(r'"([^"]+)"', query))
    return measurements, quoted - measurements - aliases


@pytest.mark.parametrize(("board", "where", "query"), QUERIES, ids=QUERY_IDS)
def test_query_names_are_the_sinks(board: str, where: str, query: str) -> None:
    measurements, names = identifiers(query)
    assert measurements, "every query reads a measurement by its quoted name"
    assert measurements <= set(MEASUREMENTS), f"unknown measurements {measurements - set(MEASUREMENTS)}"
    allowed = set().union(*(MEASUREMENTS[x] for x in measurements))
    assert names <= allowed, f"not a tag or field of {sorted(measurements)}: {sorted(names - allowed)}"


def test_point_names_exist_in_the_device_profiles() -> None:
    points = {p.name for name in known_profiles() for p in load_profile(name).points}
    used = {pt for _, _, q in QUERIES for pt in re.findall(r"\"point\" = '([^']+)'", q)}
    assert used, "the boards select points by name"
    assert used <= points, f"points no profile in {PROFILE_DIR} has: {sorted(used - points)}"


def test_time_series_queries_use_grafana_time_filter_and_interval() -> None:
    for name, board in BOARDS.items():
        for where, panel, t in g.queries(board):
            assert "$timeFilter" in t["query"], f"{name} {where}"
            if panel.get("type") in ("timeseries", "state-timeline"):
                assert "GROUP BY time($__interval)" in t["query"], f"{name} {where}"


def panel_by_title(uid: str, title: str) -> dict[str, Any]:
    board = next(b for b in BOARDS.values() if b["uid"] == uid)
    return next(p for p in g.panels(board) if p["title"] == title)


def step_values(panel: dict[str, Any]) -> list[float]:
    return [s["value"] for s in panel["fieldConfig"]["defaults"]["thresholds"]["steps"][1:]]


def shows_thresholds(panel: dict[str, Any]) -> bool:
    return bool(panel["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] != "off")


UNITS = {
    "local_temperature": "celsius",
    "cooling_setpoint": "celsius",
    "heating_setpoint": "celsius",
    "voltage_l1": "volt",
    "power": "watt",
}


def test_units_follow_what_the_query_reads() -> None:
    for board in BOARDS.values():
        for where, panel, t in g.queries(board):
            query = t["query"]
            unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit")
            for point in re.findall(r"\"point\" = '([^']+)'", query):
                expected = UNITS.get(point)
                if expected == "watt" and '"value") / 1000' in query:
                    expected = "kwatt"
                assert expected is None or unit == expected, f"{where}: {point} shown as {unit}"
            if query.startswith('SELECT sum("kwh") FROM'):
                assert unit == "kwatth", where
            if query.startswith('SELECT sum("cost") FROM'):
                assert unit == CURRENCY, where


def unit_of(panel: dict[str, Any], name: str) -> str:
    """The unit Grafana shows a field of this name in: an override by name, else the panel's."""
    for o in panel["fieldConfig"]["overrides"]:
        if o["matcher"] == {"id": "byName", "options": name}:
            units = [p["value"] for p in o["properties"] if p["id"] == "unit"]
            if units:
                return str(units[0])
    return str(panel["fieldConfig"]["defaults"]["unit"])


def test_cost_is_shown_in_the_tariff_currency(monkeypatch: pytest.MonkeyPatch) -> None:
    # Grafana's currency units are currency<ISO 4217 code>; the demo and example sites bill in CNY.
    for name, value in SECRETS.items():  # the example names its notification secrets as ${...}
        monkeypatch.setenv(name, value)
    tariffs = [load_site(g.ROOT / "deploy" / "sites" / f).tariff for f in ("demo.yaml", "production.example.yaml")]
    assert None not in tariffs
    currencies = {t.currency for t in tariffs if t is not None}
    assert {f"currency{c}" for c in currencies} == {CURRENCY}
    table = panel_by_title("wattkeeper-energy", "Cost by department and band")
    assert unit_of(table, "cost") == CURRENCY and unit_of(table, "kWh") == "kwatth"
    costs = [
        (where, panel)
        for board in BOARDS.values()
        for where, panel, t in g.queries(board)
        if re.search(r'\bsum\("cost"\)', t["query"])
    ]
    assert len(costs) == 2, "the cost bar gauge and the cost table"
    for where, panel in costs:
        assert unit_of(panel, "cost") == CURRENCY, where


def test_temperature_thresholds_are_the_office_rules() -> None:
    temp = panel_by_title("wattkeeper-rooms", "Room temperature")
    assert step_values(temp) == [17, 26] and shows_thresholds(temp)
    cooling = panel_by_title("wattkeeper-rooms", "AC cooling setpoint")
    assert step_values(cooling) == [26] and shows_thresholds(cooling)
    heating = panel_by_title("wattkeeper-rooms", "AC heating setpoint")
    assert step_values(heating) == [17] and shows_thresholds(heating)


def test_generator_panel_draws_the_120_percent_line_from_the_site_figures() -> None:
    panel = panel_by_title("wattkeeper-site-overview", "Generator output against the security load")
    assert panel["fieldConfig"]["defaults"]["unit"] == "kwatt"
    queries = {t["refId"]: t["query"] for t in panel["targets"]}
    # The generator controller reports W; the site figures are kW.
    assert "\"point\" = 'power'" in queries["A"] and 'mean("value") / 1000' in queries["A"]
    assert queries["B"].startswith(f'SELECT last("security_load_kw") * 1.2 FROM "{m.SITE_INFO}"')
    line = next(o for o in panel["fieldConfig"]["overrides"] if o["matcher"]["options"] == "B")
    assert {"id": "color", "value": {"mode": "fixed", "fixedColor": "red"}} in line["properties"]
    # The figure is data now: no board asks the user for it.
    variables = {v["name"] for b in BOARDS.values() for v in g.variables(b)}
    assert not variables & {"security_load_kw", "security_load"}
    assert not any("$security" in q for _, _, q in QUERIES)


def test_compliance_status_mapping_is_the_services() -> None:
    panel = panel_by_title("wattkeeper-site-overview", "Static compliance (site file)")
    options = panel["fieldConfig"]["defaults"]["mappings"][0]["options"]
    assert {int(raw): o["text"] for raw, o in options.items()} == {v: k for k, v in m.COMPLIANCE_LEVELS.items()}
    assert f'SELECT last("level") FROM "{m.COMPLIANCE}"' in panel["targets"][0]["query"]


def test_state_panels_map_the_profile_codes() -> None:
    ats = panel_by_title("wattkeeper-site-overview", "Transfer switch position")
    texts = ats["fieldConfig"]["defaults"]["mappings"][0]["options"]
    enum = load_profile("atys-pm").point("position").enum  # type: ignore[union-attr]
    assert set(texts) == {str(code) for code in enum}
    gen = panel_by_title("wattkeeper-site-overview", "Generator state")
    texts = gen["fieldConfig"]["defaults"]["mappings"][0]["options"]
    engine = load_profile("dse-gencomm").point("engine_state").enum  # type: ignore[union-attr]
    assert {code: texts[str(code)]["text"] for code in engine if code != 15} == {
        code: name for code, name in engine.items() if code != 15
    }
    ac = panel_by_title("wattkeeper-rooms", "AC mode")
    modes = ac["fieldConfig"]["defaults"]["mappings"][0]["options"]
    system_mode = next(p for p in load_profile("z2m-thermostat").points if p.name == "system_mode")
    assert set(modes) == set(system_mode.choices)  # type: ignore[union-attr]


def test_alarm_types_and_states_are_the_services() -> None:
    types: set[str] = set()
    states: set[str] = set()
    for _, _, q in QUERIES:
        types |= set(re.findall(r"\"type\" = '([^']+)'", q))
        for group in re.findall(r"\"type\" =~ /\^\(([^)]+)\)\$/", q):
            types |= set(group.split("|"))
        states |= set(re.findall(r"\"state\" = '([^']+)'", q))
    assert types and states
    assert types <= {t.value for t in AlarmType}, sorted(types - {t.value for t in AlarmType})
    assert states <= {s.value for s in AlarmState}
