"""Line protocol rendering: escaping tables, value types, and a round trip through VictoriaMetrics."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from influxdb_client.client.write.point import Point
from influxdb_client.domain.write_precision import WritePrecision

from drivers.types import Quality, Reading
from service.config.compliance import check_site
from service.config.site import load_site
from service.telemetry import measurements as m
from service.telemetry.lineproto import (
    TelemetryLines,
    alarm_line,
    energy_line,
    escape_key,
    escape_measurement,
    service_line,
    site_lines,
    string_field,
    telemetry_line,
    timestamp_ns,
)
from tests import servers
from tests.conftest import DEMO_SITE

TS = datetime(2026, 3, 2, 10, 0, 0, 123456, tzinfo=UTC)
NS = 1772445600123456000


def reading(value: float | int | bool | str | None, **kw: object) -> Reading:
    fields: dict[str, object] = {"device": "meter-grid-a", "point": "power_kw", "unit": "kW", "ts": TS}
    fields.update(kw)
    return Reading(value=value, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "key", "measurement"),
    [
        ("plain", "plain", "plain"),
        ("a b", r"a\ b", r"a\ b"),
        ("a,b", r"a\,b", r"a\,b"),
        ("a=b", r"a\=b", "a=b"),
        ('say "hi"', r'say\ "hi"', r'say\ "hi"'),
        ("back\\slash", r"back\\slash", r"back\\slash"),
        ("2119 会议室", r"2119\ 会议室", r"2119\ 会议室"),
        ("line\nbreak", r"line\nbreak", r"line\nbreak"),
    ],
)
def test_escaping_of_names(raw: str, key: str, measurement: str) -> None:
    assert escape_key(raw) == key
    assert escape_measurement(raw) == measurement


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ("on", '"on"'),
        ('say "hi"', r'"say \"hi\""'),
        ("back\\slash", r'"back\\slash"'),
        ("a, b = c", '"a, b = c"'),
        ("市场营销部", '"市场营销部"'),
    ],
)
def test_string_fields(raw: str, field: str) -> None:
    assert string_field(raw) == field


@pytest.mark.parametrize(
    ("value", "field"),
    [
        (12.5, "value=12.5"),
        (0.0, "value=0.0"),
        (-3, "value=-3"),
        (1e20, "value=1e+20"),
        (True, "value=1"),
        (False, "value=0"),
        ("heat", 'text="heat"'),
    ],
)
def test_telemetry_values(value: float | int | bool | str, field: str) -> None:
    line = telemetry_line(reading(value), {"site": "hq", "room": "r2119", "department": "marketing"})
    tags = "department=marketing,device=meter-grid-a,point=power_kw,room=r2119,site=hq,unit=kW"
    assert line == f"telemetry,{tags} {field} {NS}"


@pytest.mark.parametrize(
    "r",
    [
        reading(None),
        reading(None, quality=Quality.bad),
        reading(None, quality=Quality.stale),
        reading(float("nan")),
        reading(float("inf")),
    ],
)
def test_nothing_to_write(r: Reading) -> None:
    assert telemetry_line(r, {"site": "hq"}) is None


def test_empty_tags_are_left_out_and_unknown_tags_refused() -> None:
    line = telemetry_line(reading(1.0, unit=""), {"site": "hq", "room": "", "source": "grid a"})
    assert line == rf"telemetry,device=meter-grid-a,point=power_kw,site=hq,source=grid\ a value=1.0 {NS}"
    with pytest.raises(ValueError, match="no tag"):
        telemetry_line(reading(1.0), {"site": "hq", "colour": "red"})


def test_the_site_renderer_writes_what_telemetry_line_writes() -> None:
    tags = {"meter-grid-a": {"site": "hq", "source": "grid-a"}, "plug 1": {"site": "hq", "room": "2119 会议室"}}
    lines = TelemetryLines(tags)
    later = TS + timedelta(seconds=1)
    readings = [
        reading(230.25),
        reading(7, point="count", unit=""),
        reading(True, device="plug 1", point="on", unit=""),
        reading("heat", device="plug 1", point="mode", unit=""),
        reading(231.0, ts=later),  # another instant: its own timestamp, not the last one's
        reading(230.5, ts=later.astimezone(timezone(timedelta(hours=8)))),  # the same instant, another object
        reading(232.0),  # back to the first instant
        reading(float("nan")),
        reading(None, quality=Quality.bad),
    ]
    for r in readings:
        assert lines.line(r) == telemetry_line(r, tags[r.device])
    assert lines.line(reading(1.0, device="not-on-site")) is None


def test_same_line_as_influxdb_client_point() -> None:
    r = reading(230.25, device="meter a,1", point="v=l1")
    ours = telemetry_line(r, {"site": "hq", "room": "2119 会议室"})
    point = (
        Point("telemetry")  # type: ignore[no-untyped-call]  # influxdb-client leaves Point unannotated
        .tag("site", "hq")
        .tag("device", "meter a,1")
        .tag("point", "v=l1")
        .tag("room", "2119 会议室")
        .tag("unit", "kW")
        .field("value", 230.25)
        .time(TS, WritePrecision.NS)
    )
    assert ours == point.to_line_protocol()


def test_timestamps_are_exact_nanoseconds() -> None:
    assert timestamp_ns(TS) == NS
    assert timestamp_ns(TS.astimezone(timezone(timedelta(hours=8)))) == NS
    assert timestamp_ns(datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=1)) == 1000
    with pytest.raises(ValueError):
        timestamp_ns(datetime(2026, 1, 1))


def test_alarm_energy_and_service_lines() -> None:
    assert alarm_line(
        site="hq", type="lit_empty_room", subject="r2119", severity="warning", state="active_unacked", at=TS
    ) == (f'alarm,severity=warning,site=hq,subject=r2119,type=lit_empty_room state="active_unacked",active=1i {NS}')
    assert "active=0i" in alarm_line(site="hq", type="t", subject="s", severity="info", state="cleared", at=TS)
    assert energy_line(
        site="hq", meter="m1", start=TS, kwh=1.25, cost=1.4, after_hours=True, band="peak", department="marketing"
    ) == (f"energy,band=peak,department=marketing,meter=m1,site=hq kwh=1.25,cost=1.4,after_hours=1i {NS}")
    with pytest.raises(ValueError):
        energy_line(site="hq", meter="m1", start=TS, kwh=float("nan"), cost=0, after_hours=False, band="flat")
    assert service_line(site="hq", at=TS, devices_offline=1, rejects=2, outbox_depth=3, dropped=4, readings=5) == (
        f"wattkeeper,site=hq devices_offline=1i,rejects=2i,outbox_depth=3i,dropped=4i,readings=5i {NS}"
    )


def test_site_lines_carry_the_site_file_figures_and_compliance() -> None:
    site = load_site(DEMO_SITE)
    lines = site_lines(site, TS)
    info = site.site
    assert lines[0] == (
        f'site_info,site={info.id} grade="{info.grade.value}",security_load_kw={info.security_load_kw!r},'
        f"allowed_interruption_s={info.allowed_interruption_s!r} {NS}"
    )
    generators = [f"site_info,generator={g.id},site={info.id} rated_kw={g.rated_kw!r}," for g in site.generators]
    assert [line.split("start_limit_s=")[0] for line in lines[1 : 1 + len(generators)]] == generators
    report = check_site(site)
    compliance = lines[1 + len(generators) :]
    assert len(compliance) == len(report.rules)
    for line, rule in zip(compliance, report.rules, strict=True):
        assert line.startswith(f"compliance,rule={rule.rule},site={info.id} ")
        assert f'status="{rule.status}",level={m.COMPLIANCE_LEVELS[rule.status]}i,' in line


def test_every_key_the_sink_writes_is_declared_in_measurements(influxdb1: servers.Server) -> None:
    # InfluxDB itself parses what every renderer writes and lists the tag and field keys it found.
    db = f"keys_{uuid.uuid4().hex[:8]}"
    full = {"site": "hq", "room": "2119 会议室", "department": "marketing", "source": "grid-a"}
    lines = [
        telemetry_line(reading(230.5), full),
        telemetry_line(reading("heat", point="system_mode", unit=""), full),
        alarm_line(site="hq", type="backfeed", subject="gen-1", severity="critical", state="active_unacked", at=TS),
        energy_line(
            site="hq", meter="m1", start=TS, kwh=1.0, cost=0.7, after_hours=False, band="flat", department="it",
            source="grid-a",
        ),
        service_line(site="hq", at=TS, devices_offline=0, rejects=0, outbox_depth=0, dropped=0, readings=1),
        *site_lines(load_site(DEMO_SITE), TS),
    ]  # fmt: skip

    def query(q: str) -> list[dict[str, Any]]:  # InfluxDB 1.x JSON
        r = httpx.post(f"{influxdb1.url}/query", data={"db": db, "q": q}, timeout=30)
        r.raise_for_status()
        (result,) = r.json()["results"]
        assert "error" not in result, result
        return list(result.get("series", []))

    query(f"CREATE DATABASE {db}")
    try:
        r = httpx.post(
            f"{influxdb1.url}/write", params={"db": db, "precision": "ns"}, content="\n".join(map(str, lines))
        )
        assert r.status_code == 204, r.text
        tags = {s["name"]: {row[0] for row in s["values"]} for s in query("SHOW TAG KEYS")}
        fields = {s["name"]: {row[0] for row in s["values"]} for s in query("SHOW FIELD KEYS")}
    finally:
        query(f"DROP DATABASE {db}")
    assert set(fields) == set(m.SCHEMA), "every measurement written, and only those declared"
    for name, (declared_tags, declared_fields) in m.SCHEMA.items():
        assert tags[name] == set(declared_tags), name
        assert fields[name] == set(declared_fields), name


def test_round_trip_through_victoriametrics(victoria: servers.Server) -> None:
    site = f"rt {uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC).replace(microsecond=0)
    names = ["meter a,1", "v=l1", 'say "hi"', "2119 会议室", "back\\slash"]
    lines = [
        telemetry_line(
            reading(float(i), device=name, point=name, ts=now + timedelta(milliseconds=i)), {"site": site, "room": name}
        )
        for i, name in enumerate(names)
    ]
    req = urllib.request.Request(
        f"{victoria.url}/api/v2/write", data="\n".join(map(str, lines)).encode(), method="POST"
    )
    with urllib.request.urlopen(req, timeout=5) as r:
        assert r.status == 204
    query = urllib.parse.urlencode({"match[]": f'telemetry_value{{site="{site}"}}'})
    deadline = time.monotonic() + 20
    series: list[dict[str, object]] = []
    while len(series) < len(names) and time.monotonic() < deadline:
        with urllib.request.urlopen(f"{victoria.url}/internal/force_flush", timeout=5):
            pass
        with urllib.request.urlopen(f"{victoria.url}/api/v1/export?{query}", timeout=5) as r:
            series = [json.loads(x) for x in r.read().decode().splitlines()]
        time.sleep(0.1)
    got = {(s["metric"]["device"], s["metric"]["point"], s["metric"]["room"]): s["values"] for s in series}  # type: ignore[index]
    assert got == {(name, name, name): [float(i)] for i, name in enumerate(names)}
