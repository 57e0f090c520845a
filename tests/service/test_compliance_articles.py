"""Static checks the regulation names (第六条3, 第六条5, 第七条) at their boundaries, and the article on every row."""

from __future__ import annotations

from typing import Any

import pytest
from rich.cells import cell_len

from service.config.compliance import MANUAL_SWITCHOVER_MIN_S, check_configuration, check_site, render_table, with_rows
from service.config.site import Site
from tests.service.test_compliance import GEN, make_site, src

TWO = [src("a", "s1"), src("b", "s2")]


def ats(*sources: str, **kw: Any) -> dict[str, Any]:
    return {"id": "ats", "sources": list(sources), **kw}


def row(site: Site, rule: str) -> tuple[str, str]:
    found = next(r for r in check_site(site).rules if r.rule == rule)
    return found.status, found.detail


# -- 第六条5: switch-over mode and time against allowed_interruption_s ---------------------------------


@pytest.mark.parametrize(
    ("allowed_s", "switch", "status", "says"),
    [
        (10, ats("a", "b", transfer_time_s=10), "PASS", "ats automatic 10 s <= allowed 10 s"),  # exactly the limit
        (10, ats("a", "b", transfer_time_s=10.1), "FAIL", "ats automatic 10.1 s > allowed 10 s"),  # one step over
        (10, ats("a", "b"), "WARN", "declare transfer_time_s; check live"),
        (10, ats("a", "b", mode="manual", transfer_time_s=5), "FAIL", "manual switch-over cannot meet 10 s"),
        (MANUAL_SWITCHOVER_MIN_S - 1, ats("a", "b", mode="manual", transfer_time_s=60), "FAIL", "cannot meet 299 s"),
        (MANUAL_SWITCHOVER_MIN_S, ats("a", "b", mode="manual", transfer_time_s=300), "PASS", "manual 300 s <="),
        (MANUAL_SWITCHOVER_MIN_S, ats("a", "b", mode="manual", transfer_time_s=300.5), "FAIL", "manual 300.5 s >"),
        (600, ats("a", "b", mode="manual"), "FAIL", "ats manual no transfer_time_s: declare transfer_time_s"),
        (10, ats("a", "g", transfer_time_s=5), "FAIL", "no transfer switch between two grid sources"),
    ],
)
def test_switchover(allowed_s: float, switch: dict[str, Any], status: str, says: str) -> None:
    site = make_site("first", TWO, generators=GEN, allowed_s=allowed_s, switches=[switch])
    assert row(site, "switchover.time")[0] == status
    assert says in row(site, "switchover.time")[1]


@pytest.mark.parametrize(
    ("grade", "status"),
    [("special", "FAIL"), ("first", "FAIL"), ("second", "N/A"), ("temporary", "N/A"), ("ordinary", "N/A")],
)
def test_a_site_without_any_transfer_switch(grade: str, status: str) -> None:
    sources = [src("a", "s1"), src("b", "s2"), src("c", "s2")]
    assert row(make_site(grade, sources, generators=GEN, switches=[]), "switchover.time")[0] == status


def test_a_slow_switch_on_an_ungraded_site_is_advice() -> None:
    site = make_site("ordinary", TWO, switches=[ats("a", "b", transfer_time_s=30)])
    status, detail = row(site, "switchover.time")
    assert status == "WARN" and "30 s > allowed 10 s" in detail


# -- 第六条3: second grade passes when any two circuits qualify ----------------------------------------


@pytest.mark.parametrize(
    ("sources", "status", "says"),
    [
        # the example: a and b share s1 bus I, but a and c come from different substations
        (
            [src("a", "s1"), src("b", "s1"), src("c", "s2")],
            "PASS",
            "a (s1 bus I) and c (s2 bus I): different substations",
        ),
        ([src("a", "s1"), src("b", "s1", bus="II")], "PASS", "one substation, different bus sections"),
        ([src("a", "s1"), src("b", "s1"), src("c", "s1", bus="II")], "PASS", "a (s1 bus I) and c (s1 bus II)"),
        ([src("a", "s1"), src("b", "s1")], "FAIL", "all on s1 bus I"),
        ([src("a", "s1")], "FAIL", "fewer than 2 circuits"),
    ],
)
def test_second_grade_dual_circuits(sources: list[dict[str, Any]], status: str, says: str) -> None:
    site = make_site("second", sources)
    assert row(site, "sources.bus_sections")[0] == status
    assert says in row(site, "sources.bus_sections")[1]


def test_temporary_grade_dual_circuits_are_advice() -> None:
    assert row(make_site("temporary", [src("a", "s1"), src("b", "s1")]), "sources.bus_sections")[0] == "WARN"


# -- 第七条: lines at <= 10 kV --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "kv", "reason", "status"),
    [
        ("cable", 10, None, "PASS"),
        ("insulated_overhead", 10, "river crossing", "PASS"),
        ("insulated_overhead", 10, None, "WARN"),
        ("overhead", 10, "river crossing", "FAIL"),  # bare overhead at <= 10 kV: no reason makes it right
        ("overhead", 10.5, None, "PASS"),  # above 10 kV 第七条's cable rule does not apply (b is the <= 10 kV line)
    ],
)
def test_line_type(line: str, kv: float, reason: str | None, status: str) -> None:
    site = make_site("first", [src("a", "s1", kv=kv, line=line, reason=reason), src("b", "s2")], generators=GEN)
    assert row(site, "lines.type")[0] == status


# -- every row names its article ---------------------------------------------------------------------

ARTICLES = {
    "sources.count": "第六条2",
    "sources.substations": "第六条2",
    "sources.capacity": "第六条2",
    "switchover.time": "第六条5",
    "lines.type": "第七条",
    "lines.pole": "第七条",
    "lines.tower": "第七条",
    "generator.present": "第八条1",
    "generator.capacity": "第八条2",
    "generator.start_time": "第八条3",
    "generator.interlock": "第八条4",
}


def test_every_supply_row_names_its_article() -> None:
    report = check_site(make_site("first", TWO, generators=GEN))
    assert {r.rule: r.article for r in report.rules} == ARTICLES
    assert all(r.clause for r in report.rules)  # and the standard beside it


@pytest.mark.parametrize(
    ("grade", "rule", "article"),
    [
        ("special", "sources.count", "第六条1"),
        ("special", "sources.capacity", "第六条1"),
        ("second", "sources.bus_sections", "第六条3"),
        ("temporary", "sources.bus_sections", "第六条4"),
    ],
)
def test_grade_rules_name_the_grades_article(grade: str, rule: str, article: str) -> None:
    report = check_site(make_site(grade, [src("a", "s1"), src("b", "s2"), src("c", "s2")], generators=GEN))
    assert next(r.article for r in report.rules if r.rule == rule) == article


def test_json_rows_carry_the_article() -> None:
    data = check_site(make_site("first", TWO, generators=GEN)).to_dict()
    rules: list[dict[str, str]] = data["rules"]  # type: ignore[assignment]
    assert all({"rule", "title", "status", "detail", "clause", "article"} <= set(r) for r in rules)


# -- the table fits the terminal ------------------------------------------------------------------------


@pytest.mark.parametrize("width", [80, 120])
def test_the_table_fits_the_terminal_with_rule_and_status_first(width: int) -> None:
    site = make_site("first", TWO, generators=GEN)
    report = with_rows(check_site(site), check_configuration(site))
    text = render_table(report, width=width)
    lines = text.splitlines()
    assert max(cell_len(line) for line in lines) <= width  # display columns: 第 counts two
    header = lines[1].split()
    assert header[:3] == ["rule", "status", "article"]
    assert "第八条4" in text and "第六条5" in text  # the article column is on screen
    wide = render_table(report, width=400).splitlines()
    assert len(lines) > len(wide)  # it wrapped rather than ran off the edge
