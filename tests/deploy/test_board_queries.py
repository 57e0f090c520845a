"""Every query of every board, with Grafana's macros and template variables substituted, runs on a
real InfluxDB 1.x holding what the simulated demo site went through, and returns rows."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest

from service.config.compliance import check_site
from service.telemetry import measurements as m
from tests import servers
from tests.conftest import DEMO_SITE, site_for_test
from tests.deploy import grafana as g
from tests.deploy.recording import OFFLINE_DEVICE, Recording, record

DB = "wattkeeper_boards"  # its own database on the shared server
BOARDS = g.boards()
QUERIES = [(name, where) for name, board in BOARDS.items() for where, _, _ in g.queries(board)]


@dataclass
class Loaded:
    """InfluxDB 1.x with the recording written into database DB."""

    url: str
    recording: Recording
    time_range: g.TimeRange

    def query(self, q: str) -> dict[str, Any]:
        r = httpx.post(f"{self.url}/query", data={"db": DB, "q": q, "epoch": "ms"}, timeout=30)
        r.raise_for_status()
        (result,) = r.json()["results"]
        assert "error" not in result, f"{result['error']}\n{q}"
        return result  # type: ignore[no-any-return]

    def meta(self, q: str) -> list[str]:
        """Values a SHOW TAG VALUES query lists."""
        return sorted({row[1] for s in self.query(q).get("series", []) for row in s["values"]})


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recording]:
    broker = servers.start_mosquitto(tmp_path_factory.mktemp("boards-mosquitto"))
    with servers.running(broker.server):
        site = site_for_test(broker.url, DEMO_SITE)
        yield asyncio.run(record(site, broker.url, tmp_path_factory.mktemp("boards-service")))


@pytest.fixture(scope="module")
def loaded(influxdb1: servers.Server, recording: Recording) -> Loaded:
    httpx.post(f"{influxdb1.url}/query", data={"q": f"DROP DATABASE {DB}; CREATE DATABASE {DB}"}).raise_for_status()
    body = "\n".join(recording.lines).encode()
    r = httpx.post(f"{influxdb1.url}/write", params={"db": DB, "precision": "ns"}, content=body, timeout=60)
    assert r.status_code == 204, r.text
    # A dashboard range around the run, as a user would pick it.
    span = g.TimeRange(recording.first - timedelta(minutes=15), recording.last + timedelta(minutes=1))
    return Loaded(influxdb1.url, recording, span)


def test_the_run_went_through_faults_and_alarms(recording: Recording) -> None:
    assert ("redundancy_lost", recording.site.site.id) in recording.raised
    assert ("device_offline", OFFLINE_DEVICE) in recording.raised
    assert ("device_offline", OFFLINE_DEVICE) in recording.cleared
    energy = [line for line in recording.lines if line.startswith("energy,")]
    departments = {m.group(1) for line in energy if (m := re.search(r",department=([^, ]+)", line))}
    assert departments == {d.id for d in recording.site.departments}
    assert any("after_hours=1i" in line for line in energy) and any("after_hours=0i" in line for line in energy)


def test_variables_list_the_demo_site(loaded: Loaded) -> None:
    site = loaded.recording.site
    rooms = next(b for b in BOARDS.values() if b["uid"] == "wattkeeper-rooms")
    _, raw = g.resolve_variables(rooms, loaded.meta)
    assert raw["site"] == [site.site.id]
    assert raw["department"] == sorted(d.id for d in site.departments)
    assert raw["room"] == sorted(r.id for r in site.rooms if r.devices)
    overview = next(b for b in BOARDS.values() if b["uid"] == "wattkeeper-site-overview")
    _, raw = g.resolve_variables(overview, loaded.meta)
    assert raw["generator"] == [g_.device for g_ in site.generators]


def has_values(result: dict[str, Any]) -> bool:
    """Some series has a row with a value besides its time."""
    return any(v is not None for s in result.get("series", []) for row in s["values"] for v in row[1:])


@pytest.mark.parametrize(("board", "where"), QUERIES, ids=[f"{b}:{w}" for b, w in QUERIES])
def test_query_returns_rows_for_the_demo_site(loaded: Loaded, board: str, where: str) -> None:
    spec = BOARDS[board]
    values, _ = g.resolve_variables(spec, loaded.meta)
    panel, target = next((p, t) for w, p, t in g.queries(spec) if w == where)
    query = g.interpolate(target["query"], values, loaded.time_range, g.min_interval(panel))
    assert not re.search(r"\$\{?\w", query), f"left unsubstituted: {query}"
    assert has_values(loaded.query(query)), f"no rows:\n{query}"


def test_the_core_wrote_only_names_declared_in_measurements(loaded: Loaded) -> None:
    # What InfluxDB found in the lines the service's core wrote during the run.
    def keys(q: str) -> dict[str, set[str]]:
        return {s["name"]: {row[0] for row in s["values"]} for s in loaded.query(q).get("series", [])}

    tags, fields = keys("SHOW TAG KEYS"), keys("SHOW FIELD KEYS")
    assert set(fields) == set(m.SCHEMA)
    for name, (declared_tags, declared_fields) in m.SCHEMA.items():
        assert tags.get(name, set()) <= set(declared_tags), name
        assert fields[name] <= set(declared_fields), name


def panel_rows(loaded: Loaded, uid: str, title: str, ref: str) -> list[dict[str, Any]]:
    """One panel target run as Grafana would: its series with their rows."""
    spec = next(b for b in BOARDS.values() if b["uid"] == uid)
    values, _ = g.resolve_variables(spec, loaded.meta)
    panel = next(p for p in g.panels(spec) if p["title"] == title)
    target = next(t for t in panel["targets"] if t["refId"] == ref)
    query = g.interpolate(target["query"], values, loaded.time_range, g.min_interval(panel))
    return list(loaded.query(query).get("series", []))


def last_value(series: dict[str, Any]) -> Any:
    return [row[1] for row in series["values"] if row[1] is not None][-1]


def test_the_120_percent_line_is_the_site_files(loaded: Loaded) -> None:
    site = loaded.recording.site
    title = "Generator output against the security load"
    (line,) = panel_rows(loaded, "wattkeeper-site-overview", title, "B")
    assert last_value(line) == pytest.approx(1.2 * site.site.security_load_kw)
    rated = panel_rows(loaded, "wattkeeper-site-overview", title, "D")
    assert {s["tags"]["generator"]: last_value(s) for s in rated} == {g_.id: g_.rated_kw for g_ in site.generators}


def test_static_compliance_is_the_site_files(loaded: Loaded) -> None:
    report = check_site(loaded.recording.site)
    series = panel_rows(loaded, "wattkeeper-site-overview", "Static compliance (site file)", "A")
    shown = {s["tags"]["rule"]: last_value(s) for s in series}
    assert shown == {r.rule: m.COMPLIANCE_LEVELS[r.status] for r in report.rules}
