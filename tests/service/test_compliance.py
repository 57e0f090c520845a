"""Static compliance per grade, with the boundaries the regulation draws."""

from __future__ import annotations

from typing import Any

import pytest

from service.compliance import check_site
from service.site import Site


def make_site(
    grade: str,
    sources: list[dict[str, Any]],
    *,
    generators: list[dict[str, Any]] | None = None,
    security_load_kw: float = 150,
    interlock: str = "electrical",
    allowed_s: float = 10,
    peak_load_kw: float | None = None,
) -> Site:
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
    return Site.model_validate({"site": info, "sources": sources, "generators": generators or []})


def src(
    i: str,
    sub: str,
    bus: str = "I",
    kv: float = 10,
    line: str = "cable",
    support: str | None = None,
    cap: float | None = 500,
) -> dict[str, Any]:
    return {
        "id": i,
        "substation": sub,
        "bus_section": bus,
        "voltage_kv": kv,
        "line_type": line,
        "support": support,
        "capacity_kw": cap,
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
        ("first", [src("a", "s1", line="insulated_overhead"), src("b", "s2")], GEN, "lines.type", "PASS"),
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


def test_no_interlock_fails_and_temporary_never_fails() -> None:
    site = make_site("first", [src("a", "s1"), src("b", "s2")], generators=GEN, interlock="none")
    assert statuses(site)["generator.interlock"] == "FAIL"
    temp = make_site(
        "temporary",
        [src("a", "s1", line="overhead")],
        generators=GEN,
        interlock="none",
        security_load_kw=1000,
    )
    report = check_site(temp)
    assert report.status == "WARN"
    assert "FAIL" not in {r.status for r in report.rules}


def test_report_status_and_json() -> None:
    good = check_site(make_site("first", [src("a", "s1"), src("b", "s2")], generators=GEN))
    assert good.status == "PASS"
    data = good.to_dict()
    assert data["status"] == "PASS"
    assert all({"rule", "title", "status", "detail", "clause"} <= set(r) for r in data["rules"])  # type: ignore[attr-defined]
    bad = check_site(make_site("first", [src("a", "s1"), src("b", "s1")], generators=GEN))
    assert bad.status == "FAIL"
