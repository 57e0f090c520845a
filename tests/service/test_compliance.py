"""Static compliance per grade, with the boundaries the regulation draws."""

from __future__ import annotations

from typing import Any

import pytest

from service.config.compliance import check_configuration, check_site
from service.config.site import Site


def make_site(
    grade: str,
    sources: list[dict[str, Any]],
    *,
    generators: list[dict[str, Any]] | None = None,
    security_load_kw: float = 150,
    interlock: str = "electrical",
    allowed_s: float = 10,
    peak_load_kw: float | None = None,
    switches: list[dict[str, Any]] | None = None,
) -> Site:
    """A site; unless `switches` says otherwise, an automatic switch (5 s) between its first two sources."""
    info: dict[str, Any] = {
        "id": "t",
        "name": "t",
        "grade": grade,
        "allowed_interruption_s": allowed_s,
        "security_load_kw": security_load_kw,
        "interlock": interlock,
    }
    if peak_load_kw is not None:
        info["peak_load_kw"] = peak_load_kw
    if switches is None:
        ids = [s["id"] for s in sources[:2]]
        switches = [{"id": "ats", "sources": ids, "transfer_time_s": 5}] if len(ids) == 2 else []
    data = {"site": info, "sources": sources, "generators": generators or [], "transfer_switches": switches}
    return Site.model_validate(data)


def src(
    i: str,
    sub: str,
    bus: str = "I",
    kv: float = 10,
    line: str = "cable",
    support: str | None = None,
    cap: float | None = 500,
    reason: str | None = None,
) -> dict[str, Any]:
    return {
        "id": i,
        "substation": sub,
        "bus_section": bus,
        "voltage_kv": kv,
        "line_type": line,
        "support": support,
        "capacity_kw": cap,
        "overhead_reason": reason,
    }


GEN = [{"id": "g", "rated_kw": 200, "start_limit_s": 10}]


def statuses(site: Site) -> dict[str, str]:
    return {r.rule: r.status for r in check_site(site).rules}


@pytest.mark.parametrize(
    ("grade", "sources", "generators", "rule", "status"),
    [
        ("special", [src("a", "s1"), src("b", "s2"), src("c", "s2")], GEN, "sources.count", "PASS"),
        ("special", [src("a", "s1"), src("b", "s2")], GEN, "sources.count", "FAIL"),
        ("special", [src("a", "s1"), src("b", "s1"), src("c", "s1")], GEN, "sources.substations", "FAIL"),
        ("special", [src("a", "s1"), src("b", "s2"), src("c", "s2")], None, "generator.present", "FAIL"),
        ("first", [src("a", "s1"), src("b", "s2")], GEN, "sources.substations", "PASS"),
        ("first", [src("a", "s1"), src("b", "s1", bus="II")], GEN, "sources.substations", "FAIL"),
        ("first", [src("a", "s1")], GEN, "sources.count", "FAIL"),
        ("first", [src("a", "s1"), src("b", "s2")], None, "generator.present", "FAIL"),
        ("second", [src("a", "s1"), src("b", "s1", bus="II")], None, "sources.bus_sections", "PASS"),
        ("second", [src("a", "s1"), src("b", "s1", bus="I")], None, "sources.bus_sections", "FAIL"),
        ("second", [src("a", "s1"), src("b", "s2")], None, "sources.bus_sections", "PASS"),
        ("second", [src("a", "s1"), src("b", "s1", bus="II")], None, "generator.present", "N/A"),
        ("temporary", [src("a", "s1")], None, "sources.count", "WARN"),
        ("temporary", [src("a", "s1"), src("b", "s1")], None, "sources.bus_sections", "WARN"),
        ("ordinary", [src("a", "s1")], None, "sources.count", "N/A"),
        ("first", [src("a", "s1", line="overhead"), src("b", "s2")], GEN, "lines.type", "FAIL"),
        # 第七条: insulated overhead only where conditions force it: declared, or a warning
        ("first", [src("a", "s1", line="insulated_overhead"), src("b", "s2")], GEN, "lines.type", "WARN"),
        (
            "first",
            [src("a", "s1", line="insulated_overhead", reason="a river"), src("b", "s2")],
            GEN,
            "lines.type",
            "PASS",
        ),
        (
            "first",
            [
                src("a", "s1", line="insulated_overhead", support="p1"),
                src("b", "s2", line="insulated_overhead", support="p1"),
            ],
            GEN,
            "lines.pole",
            "FAIL",
        ),
        (
            "first",
            [
                src("a", "s1", line="insulated_overhead", support="p1"),
                src("b", "s2", line="insulated_overhead", support="p2"),
            ],
            GEN,
            "lines.pole",
            "PASS",
        ),
        (
            "first",
            [
                src("a", "s1", kv=35, line="overhead", support="t1"),
                src("b", "s2", kv=35, line="overhead", support="t1"),
            ],
            GEN,
            "lines.tower",
            "WARN",
        ),
        (
            "first",
            [src("a", "s1", line="insulated_overhead"), src("b", "s2", line="insulated_overhead")],
            GEN,
            "lines.pole",
            "WARN",
        ),
        (
            "first",
            [src("a", "s1", line="insulated_overhead", support="p1"), src("b", "s2", line="insulated_overhead")],
            GEN,
            "lines.pole",
            "WARN",
        ),
        ("first", [src("a", "s1", line="insulated_overhead"), src("b", "s2")], GEN, "lines.pole", "PASS"),
        ("first", [src("a", "s1"), src("b", "s2")], GEN, "lines.pole", "N/A"),
        (
            "first",
            [src("a", "s1", kv=35, line="overhead"), src("b", "s2", kv=35, line="overhead")],
            GEN,
            "lines.tower",
            "WARN",
        ),
        (
            "first",
            [
                src("a", "s1", kv=35, line="overhead", support="t1"),
                src("b", "s2", kv=35, line="overhead", support="t2"),
            ],
            GEN,
            "lines.tower",
            "PASS",
        ),
        ("first", [src("a", "s1", kv=35, line="overhead"), src("b", "s2", kv=35)], GEN, "lines.tower", "N/A"),
        ("ordinary", [src("a", "s1", line="overhead")], None, "lines.type", "WARN"),
        ("ordinary", [src("a", "s1", line="insulated_overhead")], None, "lines.type", "WARN"),
        ("ordinary", [src("a", "s1", line="insulated_overhead", reason="old town")], None, "lines.type", "PASS"),
        (
            "ordinary",
            [
                src("a", "s1", line="insulated_overhead", support="p1"),
                src("b", "s1", line="insulated_overhead", support="p1"),
            ],
            None,
            "lines.pole",
            "WARN",
        ),
        ("ordinary", [src("a", "s1")], None, "generator.present", "N/A"),
        ("first", [src("a", "s1", cap=100), src("b", "s2")], GEN, "sources.capacity", "FAIL"),
        ("first", [src("a", "s1", cap=None), src("b", "s2")], GEN, "sources.capacity", "WARN"),
    ],
)
def test_rule_by_grade(
    grade: str, sources: list[dict[str, Any]], generators: list[dict[str, Any]] | None, rule: str, status: str
) -> None:
    assert statuses(make_site(grade, sources, generators=generators))[rule] == status


@pytest.mark.parametrize(
    ("rated_kw", "security_kw", "status"),
    [
        (179.85, 150, "FAIL"),
        (180, 150, "PASS"),
        (119.9, 100, "FAIL"),
        (120, 100, "PASS"),
        (120.1, 100, "PASS"),
        (36, 30, "PASS"),
        (35.97, 30, "FAIL"),
    ],
)
def test_generator_120_percent_boundary(rated_kw: float, security_kw: float, status: str) -> None:
    gens = [{"id": "g", "rated_kw": rated_kw, "start_limit_s": 10}]
    site = make_site("first", [src("a", "s1"), src("b", "s2")], generators=gens, security_load_kw=security_kw)
    row = next(r for r in check_site(site).rules if r.rule == "generator.capacity")
    assert row.status == status
    assert f"{rated_kw:g} kW" in row.detail


@pytest.mark.parametrize(("start_s", "allowed_s", "status"), [(10, 10, "PASS"), (10.5, 10, "FAIL"), (5, 10, "PASS")])
def test_generator_start_time(start_s: float, allowed_s: float, status: str) -> None:
    gens = [{"id": "g", "rated_kw": 200, "start_limit_s": start_s}]
    site = make_site("first", [src("a", "s1"), src("b", "s2")], generators=gens, allowed_s=allowed_s)
    assert statuses(site)["generator.start_time"] == status


SLOW_SMALL_GEN = [{"id": "g", "rated_kw": 100, "start_limit_s": 30}]


@pytest.mark.parametrize(
    ("grade", "site_keys", "generators", "rule", "status", "detail"),
    [
        # The interlock is a safety matter: FAIL at every grade once a generator exists.
        ("first", {"interlock": "none"}, GEN, "generator.interlock", "FAIL", "no interlock declared"),
        ("second", {"interlock": "none"}, GEN, "generator.interlock", "FAIL", "no interlock declared"),
        ("temporary", {"interlock": "none"}, GEN, "generator.interlock", "FAIL", "no interlock declared"),
        ("ordinary", {"interlock": "none"}, GEN, "generator.interlock", "FAIL", "no interlock declared"),
        ("ordinary", {"interlock": "mechanical"}, GEN, "generator.interlock", "PASS", "mechanical interlock"),
        # Grade requirements are advice for an ungraded site and "where conditions allow" when temporary.
        ("ordinary", {}, SLOW_SMALL_GEN, "generator.start_time", "WARN", "g 30 s; allowed interruption 10 s"),
        ("ordinary", {}, SLOW_SMALL_GEN, "generator.capacity", "WARN", "an ungraded site is not bound"),
        ("temporary", {}, SLOW_SMALL_GEN, "generator.start_time", "WARN", "where conditions allow"),
        ("first", {}, SLOW_SMALL_GEN, "generator.start_time", "FAIL", "g 30 s; allowed interruption 10 s"),
        # No security load: the 120 % rule cannot be shown; where the grade needs a generator, FAIL.
        ("first", {"security_load_kw": 0}, GEN, "generator.capacity", "FAIL", "security_load_kw not declared"),
        ("special", {"security_load_kw": 0}, GEN, "generator.capacity", "FAIL", "security_load_kw not declared"),
        ("second", {"security_load_kw": 0}, GEN, "generator.capacity", "WARN", "security_load_kw not declared"),
        ("ordinary", {"security_load_kw": 0}, GEN, "generator.capacity", "WARN", "security_load_kw not declared"),
    ],
)
def test_rule_by_grade_and_site_keys(
    grade: str,
    site_keys: dict[str, Any],
    generators: list[dict[str, Any]],
    rule: str,
    status: str,
    detail: str,
) -> None:
    site = make_site(grade, [src("a", "s1"), src("b", "s2")], generators=generators, **site_keys)
    row = next(r for r in check_site(site).rules if r.rule == rule)
    assert (row.status, detail in row.detail) == (status, True), row.detail


@pytest.mark.parametrize(
    ("sources", "rule", "detail"),
    [
        (
            [src("a", "s1", line="insulated_overhead"), src("b", "s2", line="insulated_overhead")],
            "lines.pole",
            "support not declared for a, b: cannot show the 2 overhead circuits are on separate poles",
        ),
        (
            [src("a", "s1", line="insulated_overhead"), src("b", "s2")],
            "lines.pole",
            "one overhead circuit (a); no other circuit to share a pole",
        ),
        (
            [
                src("a", "s1", line="insulated_overhead", support="p1"),
                src("b", "s2", line="insulated_overhead", support="p2"),
            ],
            "lines.pole",
            "2 overhead circuits on separate pole lines: a on p1, b on p2",
        ),
        (
            [
                src("a", "s1", line="insulated_overhead", support="p1"),
                src("b", "s2", line="insulated_overhead", support="p1"),
            ],
            "lines.pole",
            "two circuits on one pole line: a, b on p1",
        ),
        (
            [src("a", "s1", kv=35, line="overhead", support="t1"), src("b", "s2", kv=35, line="overhead")],
            "lines.tower",
            "support not declared for b: cannot show the 2 overhead circuits are on separate towers",
        ),
    ],
)
def test_shared_support_details(sources: list[dict[str, Any]], rule: str, detail: str) -> None:
    row = next(r for r in check_site(make_site("first", sources, generators=GEN)).rules if r.rule == rule)
    assert row.detail == detail


def test_temporary_supply_shortfalls_only_warn() -> None:
    temp = make_site("temporary", [src("a", "s1", line="overhead")], generators=GEN, security_load_kw=1000)
    report = check_site(temp)
    assert report.status == "WARN"
    assert {r.rule for r in report.rules if r.status == "WARN"} >= {
        "sources.count",
        "sources.bus_sections",
        "lines.type",
        "generator.capacity",
    }
    assert "FAIL" not in {r.status for r in report.rules}


def _site_with_devices(devices: list[dict[str, Any]]) -> Site:
    return Site.model_validate(
        {"site": {"id": "t", "name": "t", "allowed_interruption_s": 10}, "devices": devices},
    )


METER = {"driver": "modbus", "profile": "sdm630", "host": "127.0.0.1", "unit": 1}


@pytest.mark.parametrize(
    ("devices", "status", "detail"),
    [
        (
            [
                {"id": "m1", **METER, "port": 1502},
                {"id": "m2", **METER, "port": 1503, "rated_kw": 100},
                {"id": "plug", "driver": "mqtt", "profile": "shelly-plug", "topic": "p1"},
                {"id": "sw", "driver": "mqtt", "profile": "tasmota-relay", "topic": "p2", "rated_kw": 2},
                {"id": "occ", "driver": "mqtt", "profile": "z2m-occupancy", "topic": "z/occ"},
                {"id": "ats", "driver": "modbus", "profile": "atys-pm", "host": "127.0.0.1", "port": 1504},
            ],
            "WARN",
            "no rated_kw for m1, plug: their counter steps are not checked for plausibility",
        ),
        (
            [
                {"id": "m2", **METER, "port": 1503, "rated_kw": 100},
                {"id": "occ", "driver": "mqtt", "profile": "z2m-occupancy", "topic": "z/occ"},
            ],
            "PASS",
            "rated_kw declared for all 1 device(s) with an energy counter",
        ),
        (
            [{"id": "ats", "driver": "modbus", "profile": "atys-pm", "host": "127.0.0.1", "port": 1504}],
            "N/A",
            "no device with an energy counter",
        ),
    ],
)
def test_energy_counters_without_rated_kw(devices: list[dict[str, Any]], status: str, detail: str) -> None:
    (row,) = check_configuration(_site_with_devices(devices))
    assert (row.rule, row.status, row.detail) == ("energy.rated_kw", status, detail)


def test_report_status_and_json() -> None:
    good = check_site(make_site("first", [src("a", "s1"), src("b", "s2")], generators=GEN))
    assert good.status == "PASS"
    data = good.to_dict()
    assert data["status"] == "PASS"
    assert all({"rule", "title", "status", "detail", "clause"} <= set(r) for r in data["rules"])  # type: ignore[attr-defined]
    bad = check_site(make_site("first", [src("a", "s1"), src("b", "s1")], generators=GEN))
    assert bad.status == "FAIL"
