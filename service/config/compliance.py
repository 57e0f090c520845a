"""Static compliance of a site's supply with the important-power-customer rules (DESIGN.md §1).

Each row names the article of the regulation (电业公司重要电力客户用电管理办法, 第六条–第八条) it
enforces, beside the clause of GB/T 29328-2018 that also applies.
"""

from __future__ import annotations

import io
import shutil
import textwrap
from collections import Counter
from dataclasses import asdict, dataclass, replace
from itertools import combinations
from typing import Literal

from rich import box
from rich.console import Console
from rich.table import Table

from drivers.energy import ENERGY_UNITS
from drivers.profiles import load_profile
from service.config.site import PROTECTED_ROLES, Device, DeviceRole, Grade, Site, Source

Status = Literal["PASS", "FAIL", "WARN", "N/A"]

# Where each rule comes from: GB/T 29328-2018 (重要电力用户供电电源及自备应急电源配置技术规范)
# as the county power company applies it to important power customers.
CLAUSES: dict[str, str] = {
    "sources.count": "GB/T 29328-2018 供电电源配置: number of sources by grade",
    "sources.substations": "GB/T 29328-2018 供电电源配置: sources from different substations",
    "sources.bus_sections": "GB/T 29328-2018 供电电源配置: second grade, different bus sections of one substation",
    "sources.capacity": "GB/T 29328-2018 供电电源配置: remaining source(s) carry the load alone",
    "lines.type": "GB/T 29328-2018 供电线路: lines <= 10 kV by cable or insulated overhead line",
    "lines.pole": "GB/T 29328-2018 供电线路: no two circuits on one pole (<= 10 kV)",
    "lines.tower": "GB/T 29328-2018 供电线路: >= 35 kV overhead dual sources not on one tower",
    "generator.present": "GB/T 29328-2018 自备应急电源配置: special and first grade need an emergency generator",
    "generator.capacity": "自备应急电源配置: rated >= 120 % of the security load",
    "generator.start_time": "自备应急电源配置: start time within the allowed interruption time",
    "generator.interlock": "自备应急电源配置: interlock between generator and grid prevents backfeed (倒送电)",
    "energy.rated_kw": "wattkeeper energy accounting: a counter step above rated_kw x elapsed time is refused",
    "switchover.time": "GB/T 29328-2018 供电电源配置: switch-over time within the allowed interruption",
    "supply.role": "自备应急电源配置: supply-side equipment is commanded by an admin only, so it stays able to start",
}

RULE_TITLES: dict[str, str] = {
    "sources.count": "number of supply sources",
    "sources.substations": "distinct substations",
    "sources.bus_sections": "distinct bus sections",
    "sources.capacity": "sources carry the load alone",
    "lines.type": "line type per voltage",
    "lines.pole": "no shared pole (<= 10 kV)",
    "lines.tower": "no shared tower (>= 35 kV)",
    "generator.present": "emergency generator present",
    "generator.capacity": "generator >= 120 % of security load",
    "generator.start_time": "generator start time",
    "generator.interlock": "anti-backfeed interlock",
    "energy.rated_kw": "energy counters bounded by rated_kw",
    "switchover.time": "switch-over mode and time",
    "supply.role": "supply device role",
}

# The article of the regulation each rule enforces; the grade-dependent ones are in GRADE_ARTICLES.
ARTICLES: dict[str, str] = {
    "switchover.time": "第六条5",
    "lines.type": "第七条",
    "lines.pole": "第七条",
    "lines.tower": "第七条",
    "generator.present": "第八条1",
    "generator.capacity": "第八条2",
    "generator.start_time": "第八条3",
    "generator.interlock": "第八条4",
    "supply.role": "第八条3",
}
GRADE_ARTICLES: dict[Grade, str] = {
    Grade.special: "第六条1",
    Grade.first: "第六条2",
    Grade.second: "第六条3",
    Grade.temporary: "第六条4",
}
_BY_GRADE = frozenset({"sources.count", "sources.substations", "sources.bus_sections", "sources.capacity"})
# Nobody switches a supply over by hand within less than this: a manual switch-over cannot meet a
# shorter allowed interruption, whatever time the site file declares.
MANUAL_SWITCHOVER_MIN_S = 300.0

REQUIRED_SOURCES: dict[Grade, int] = {Grade.special: 3, Grade.first: 2, Grade.second: 2, Grade.temporary: 2}
REQUIRED_SUBSTATIONS: dict[Grade, int] = {Grade.special: 2, Grade.first: 2}
GENERATOR_REQUIRED = frozenset({Grade.special, Grade.first})
GENERATOR_MARGIN = 1.2


@dataclass(frozen=True, slots=True)
class RuleResult:
    """One row of the compliance table."""

    rule: str
    title: str
    status: Status
    detail: str
    clause: str
    article: str = ""  # of the regulation (第六条1 … 第八条4); empty for wattkeeper's own checks


@dataclass(frozen=True, slots=True)
class ComplianceReport:
    """All rows for one site; `status` is the worst of them."""

    site: str
    grade: str
    rules: tuple[RuleResult, ...]

    @property
    def status(self) -> Status:
        """FAIL if any rule fails, else WARN if any warns, else PASS."""
        states = {r.status for r in self.rules}
        worst: Status
        for worst in ("FAIL", "WARN"):
            if worst in states:
                return worst
        return "PASS"

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form (also served by GET /api/compliance)."""
        return {
            "site": self.site,
            "grade": self.grade,
            "status": self.status,
            "rules": [asdict(r) for r in self.rules],
        }


# Why a grade requirement is only advice at some grades: temporary customers meet it "where
# conditions allow"; ordinary (ungraded) sites are not bound by it at all.
ADVICE_ONLY: dict[Grade, str] = {
    Grade.temporary: "temporary grade: where conditions allow",
    Grade.ordinary: "advice: an ungraded site is not bound by this rule",
}


def _row(rule: str, status: Status, detail: str, *, soft: str | None = None, grade: Grade | None = None) -> RuleResult:
    # `soft` names why a shortfall is a warning rather than a failure at this grade.
    if soft is not None and status == "FAIL":
        status, detail = "WARN", f"{detail} ({soft})"
    article = GRADE_ARTICLES.get(grade, "") if rule in _BY_GRADE and grade is not None else ARTICLES.get(rule, "")
    return RuleResult(rule, RULE_TITLES[rule], status, detail, CLAUSES[rule], article)


def _fmt(x: float) -> str:
    return f"{x:g}"


def _supply_rules(site: Site, soft: str | None) -> list[RuleResult]:
    grade = site.site.grade
    rows: list[RuleResult] = []
    sources = site.sources
    need = REQUIRED_SOURCES.get(grade)
    if need is None:
        rows.append(_row("sources.count", "N/A", f"{len(sources)} source(s); ungraded site"))
    else:
        status: Status = "PASS" if len(sources) >= need else "FAIL"
        rows.append(
            _row(
                "sources.count",
                status,
                f"{len(sources)} source(s), {grade} grade needs >= {need}",
                soft=soft,
                grade=grade,
            )
        )

    substations = {s.substation for s in sources}
    need_sub = REQUIRED_SUBSTATIONS.get(grade)
    if need_sub is not None:
        status = "PASS" if len(substations) >= need_sub else "FAIL"
        rows.append(
            _row(
                "sources.substations",
                status,
                f"{len(substations)} substation(s) ({', '.join(sorted(substations)) or 'none'}), needs >= {need_sub}",
                grade=grade,
            )
        )
    if grade in (Grade.second, Grade.temporary):
        rows.append(_dual_circuit_row(sources, soft, grade))

    if need is not None and sources:
        load = site.site.peak_load_kw or site.site.security_load_kw
        lost = {Grade.special: 2, Grade.first: 1, Grade.second: 1, Grade.temporary: 1}[grade]
        missing = [s.id for s in sources if s.capacity_kw is None]
        if missing:
            rows.append(
                _row(
                    "sources.capacity",
                    "WARN",
                    f"capacity_kw not declared for {', '.join(missing)}; check live",
                    grade=grade,
                )
            )
        elif load <= 0:
            rows.append(
                _row("sources.capacity", "WARN", "no peak_load_kw or security_load_kw to compare with", grade=grade)
            )
        else:
            weakest = min(sources, key=lambda s: s.capacity_kw or 0.0)
            cap = weakest.capacity_kw or 0.0
            status = "PASS" if cap >= load else "FAIL"
            rows.append(
                _row(
                    "sources.capacity",
                    status,
                    f"with {lost} source(s) lost the weakest left ({weakest.id}) has {_fmt(cap)} kW "
                    f"for a {_fmt(load)} kW load",
                    soft=soft,
                    grade=grade,
                )
            )
    return rows


def _dual_circuit_row(sources: list[Source], soft: str | None, grade: Grade) -> RuleResult:
    """第六条3 双回路: passes when any two circuits qualify: from different substations, or from one
    substation on different bus sections. Circuits that share a bus section are named, not failed,
    while a qualifying pair exists."""
    rule = "sources.bus_sections"
    if len(sources) < 2:
        return _row(rule, "FAIL", "fewer than 2 circuits", soft=soft, grade=grade)

    def where(s: Source) -> str:
        return f"{s.id} ({s.substation} bus {s.bus_section})"

    pair = next(
        ((a, b) for a, b in combinations(sources, 2) if a.substation != b.substation or a.bus_section != b.bus_section),
        None,
    )
    if pair is None:
        shared = Counter((s.substation, s.bus_section) for s in sources).most_common(1)[0][0]
        detail = f"no two circuits from different substations or bus sections: all on {shared[0]} bus {shared[1]}"
        return _row(rule, "FAIL", detail, soft=soft, grade=grade)
    a, b = pair
    how = "different substations" if a.substation != b.substation else "one substation, different bus sections"
    return _row(rule, "PASS", f"{where(a)} and {where(b)}: {how}", grade=grade)


def _line_rules(site: Site, soft: str | None) -> list[RuleResult]:
    rows: list[RuleResult] = []
    low = [s for s in site.sources if s.voltage_kv <= 10]
    high = [s for s in site.sources if s.voltage_kv >= 35]
    bare = [s.id for s in low if s.line_type == "overhead"]
    unexplained = [s.id for s in low if s.line_type == "insulated_overhead" and not s.overhead_reason]
    if not low:
        rows.append(_row("lines.type", "N/A", "no line at <= 10 kV"))
    elif bare:
        rows.append(_row("lines.type", "FAIL", f"bare overhead line at <= 10 kV: {', '.join(bare)}", soft=soft))
    elif unexplained:
        # 第七条: cable; insulated overhead only where conditions force it, which the site file says.
        detail = (
            f"insulated overhead at <= 10 kV without overhead_reason: {', '.join(unexplained)} "
            "(allowed only where conditions force it; declare why)"
        )
        rows.append(_row("lines.type", "WARN", detail))
    else:
        kinds = ", ".join(
            f"{s.id} {s.line_type}"
            + (f" ({s.overhead_reason})" if s.line_type != "cable" and s.overhead_reason else "")
            for s in low
        )
        rows.append(_row("lines.type", "PASS", kinds))

    low_overhead = [s for s in low if s.line_type != "cable"]
    if not low_overhead:
        rows.append(_row("lines.pole", "N/A", "no overhead circuit at <= 10 kV"))
    else:
        rows.append(_support_row("lines.pole", low_overhead, "pole", "FAIL", soft))
    high_overhead = [s for s in high if s.line_type != "cable"]
    if len(high_overhead) < 2:
        rows.append(_row("lines.tower", "N/A", "fewer than two overhead sources at >= 35 kV"))
    else:
        # "should not": a recommendation, so a warning rather than a failure.
        rows.append(_support_row("lines.tower", high_overhead, "tower", "WARN", soft))
    return rows


def _support_row(rule: str, overhead: list[Source], what: str, clash_status: Status, soft: str | None) -> RuleResult:
    """Whether overhead circuits share a pole or tower line, as far as their `support` keys show."""
    if len(overhead) == 1:
        return _row(rule, "PASS", f"one overhead circuit ({overhead[0].id}); no other circuit to share a {what}")
    by_support: dict[str, list[str]] = {}
    for s in overhead:
        if s.support:
            by_support.setdefault(s.support, []).append(s.id)
    clash = {sup: ids for sup, ids in by_support.items() if len(ids) > 1}
    if clash:
        detail = "; ".join(f"{', '.join(ids)} on {sup}" for sup, ids in clash.items())
        return _row(rule, clash_status, f"two circuits on one {what} line: {detail}", soft=soft)
    undeclared = [s.id for s in overhead if not s.support]
    if undeclared:
        return _row(
            rule,
            "WARN",
            f"support not declared for {', '.join(undeclared)}: cannot show the {len(overhead)} overhead "
            f"circuits are on separate {what}s",
        )
    placed = ", ".join(f"{s.id} on {s.support}" for s in overhead)
    return _row(rule, "PASS", f"{len(overhead)} overhead circuits on separate {what} lines: {placed}")


def _generator_rules(site: Site, soft: str | None) -> list[RuleResult]:
    rows: list[RuleResult] = []
    grade = site.site.grade
    gens = site.generators
    required = grade in GENERATOR_REQUIRED
    if not gens:
        if required:
            rows.append(_row("generator.present", "FAIL", f"no generator; {grade} grade requires one"))
        else:
            rows.append(_row("generator.present", "N/A", f"none; not required for {grade} grade"))
        return rows
    rows.append(_row("generator.present", "PASS", f"{len(gens)} generator(s): {', '.join(g.id for g in gens)}"))

    security = site.site.security_load_kw
    rated = sum(g.rated_kw for g in gens)
    if security <= 0:
        # Without the security load the 120 % rule cannot be shown; where the grade requires the
        # generator that is a failure, not a pass with a footnote.
        rows.append(
            _row(
                "generator.capacity",
                "FAIL" if required else "WARN",
                f"security_load_kw not declared: rated {_fmt(rated)} kW cannot be shown to be >= 120 % of it",
                soft=soft,
            )
        )
    else:
        # Compare in tenths to avoid binary rounding at exactly 120 %.
        ok = round(rated * 10, 6) >= round(security * 12, 6)
        pct = 100.0 * rated / security
        rows.append(
            _row(
                "generator.capacity",
                "PASS" if ok else "FAIL",
                f"rated {_fmt(rated)} kW = {pct:.1f} % of security load {_fmt(security)} kW (needs >= 120 %, "
                f"{_fmt(GENERATOR_MARGIN * security)} kW)",
                soft=soft,
            )
        )
    limit = site.site.allowed_interruption_s
    slow = [g for g in gens if g.start_limit_s > limit]
    detail = ", ".join(f"{g.id} {_fmt(g.start_limit_s)} s" for g in gens) + f"; allowed interruption {_fmt(limit)} s"
    rows.append(_row("generator.start_time", "FAIL" if slow else "PASS", detail, soft=soft))
    interlock = site.site.interlock
    if interlock == "none":
        # Backfeed endangers people working on the grid: a failure at every grade, never advice.
        rows.append(_row("generator.interlock", "FAIL", "no interlock declared between generator and grid"))
    else:
        rows.append(_row("generator.interlock", "PASS", f"{interlock} interlock declared"))
    return rows


def _switchover_row(site: Site, soft: str | None) -> RuleResult:
    """第六条5: each transfer switch's declared mode and time against allowed_interruption_s; special and
    first grade need a switch between their sources."""
    rule = "switchover.time"
    grade = site.site.grade
    limit = site.site.allowed_interruption_s
    grid = {s.id for s in site.sources}
    switches = site.transfer_switches
    between = [t for t in switches if len(grid.intersection(t.sources)) >= 2]
    if not switches:
        if grade in GENERATOR_REQUIRED:
            return _row(rule, "FAIL", f"no transfer switch between the sources; {grade} grade needs one", soft=soft)
        return _row(rule, "N/A", "no transfer switch")
    verdicts: list[tuple[Status, str]] = []
    for t in switches:
        declared = "no transfer_time_s" if t.transfer_time_s is None else f"{_fmt(t.transfer_time_s)} s"
        said = f"{t.id} {t.mode} {declared}"
        if t.mode == "manual" and limit < MANUAL_SWITCHOVER_MIN_S:
            verdicts.append(("FAIL", f"{said}: manual switch-over cannot meet {_fmt(limit)} s"))
        elif t.transfer_time_s is None:
            status: Status = "FAIL" if t.mode == "manual" else "WARN"
            verdicts.append((status, f"{said}: declare transfer_time_s" + ("" if status == "FAIL" else "; check live")))
        elif t.transfer_time_s > limit:
            verdicts.append(("FAIL", f"{said} > allowed {_fmt(limit)} s"))
        else:
            verdicts.append(("PASS", f"{said} <= allowed {_fmt(limit)} s"))
    if grade in GENERATOR_REQUIRED and not between:
        verdicts.append(("FAIL", f"no transfer switch between two grid sources; {grade} grade needs one"))
    worst: Status = next((w for w in ("FAIL", "WARN") if any(v[0] == w for v in verdicts)), "PASS")
    return _row(rule, worst, "; ".join(text for _, text in verdicts), soft=soft)


def check_site(site: Site) -> ComplianceReport:
    """Evaluate every static supply-side rule that applies to the site's grade."""
    soft = ADVICE_ONLY.get(site.site.grade)
    rows = [*_supply_rules(site, soft), _switchover_row(site, soft), *_line_rules(site, soft)]
    rows += _generator_rules(site, soft)
    return ComplianceReport(site.site.id, site.site.grade.value, tuple(rows))


def energy_counter_devices(site: Site) -> list[Device]:
    """Devices whose profile has an energy counter (kWh, Wh or MWh)."""
    return [
        dev
        for dev in site.devices
        if any(p.kind == "counter" and p.unit in ENERGY_UNITS for p in load_profile(dev.profile).points)
    ]


def unrated_energy_counters(site: Site) -> list[str]:
    """Devices with an energy counter but no `rated_kw`: an absurd counter step from them (a garbled
    register, a swapped meter) is counted as energy instead of refused."""
    return [dev.id for dev in energy_counter_devices(site) if dev.rated_kw is None]


def check_configuration(site: Site) -> list[RuleResult]:
    """Rows about the site file itself that `wattkeeper check` shows below the supply rules."""
    counting = energy_counter_devices(site)
    unrated = [dev.id for dev in counting if dev.rated_kw is None]
    if not counting:
        return [_row("energy.rated_kw", "N/A", "no device with an energy counter")]
    if unrated:
        detail = f"no rated_kw for {', '.join(unrated)}: their counter steps are not checked for plausibility"
        return [_row("energy.rated_kw", "WARN", detail)]
    return [
        _row("energy.rated_kw", "PASS", f"rated_kw declared for all {len(counting)} device(s) with an energy counter")
    ]


def supply_roles(site: Site) -> list[RuleResult]:
    """One row per supply-side device: its role and what its commands need.

    Role `supply` (the default for such devices): commands need an admin and a reason; `critical`
    or `life_safety`: never commanded; any other role is a slip in the site file (WARN), though
    commands to the device still need an admin and a reason.
    """
    rows = []
    for device_id, why in site.supply_equipment().items():
        role = site.device(device_id).role
        if role is DeviceRole.supply:
            status: Status = "PASS"
            rule = "commands need an admin and a reason"
        elif role in PROTECTED_ROLES:
            status, rule = "PASS", "never commanded"
        else:
            status, rule = "WARN", "set role supply (commands still need an admin and a reason)"
        rows.append(_row("supply.role", status, f"{device_id} ({why}): role {role.value}: {rule}"))
    return rows


def with_rows(report: ComplianceReport, rows: list[RuleResult]) -> ComplianceReport:
    """The report with more rows appended."""
    return replace(report, rules=(*report.rules, *rows))


def terminal_width() -> int:
    """The width of the terminal printed to (COLUMNS, else the terminal's, else 80)."""
    return shutil.get_terminal_size((80, 24)).columns


def _render(table: Table, width: int | None) -> str:
    out = io.StringIO()
    console = Console(file=out, width=width or terminal_width(), no_color=True, highlight=False, emoji=False)
    console.print(table)
    return out.getvalue().rstrip("\n")


def render_table(report: ComplianceReport, width: int | None = None) -> str:
    """The compliance table as text that fits `width` columns (default: the terminal's); long cells wrap."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, expand=False, show_edge=False)
    table.add_column("rule", overflow="fold", ratio=2)
    table.add_column("status", no_wrap=True)
    table.add_column("article", no_wrap=True)
    table.add_column("detail", overflow="fold", ratio=4)
    table.add_column("standard", overflow="fold", ratio=2)
    for r in report.rules:
        table.add_row(r.title, r.status, r.article or "—", r.detail, r.clause)
    head = f"site {report.site} — grade {report.grade} — overall {report.status}"
    return f"{head}\n{_render(table, width)}"


def render_alarm_table(rows: list[dict[str, object]], width: int | None = None) -> str:
    """The effective alarm configuration (alarms.effective_table) as text that fits `width` columns."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    table.add_column("alarm type", no_wrap=True)
    for name in ("on s", "off s", "deadband"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("severity", no_wrap=True)
    table.add_column("enabled", no_wrap=True)
    notes = []
    for row in rows:
        mark = " *" if row["from"] != "default" else ""
        if row.get("note"):
            notes.append(f"{row['type']}: {row['severity']}, {row['note']}")
        table.add_row(
            f"{row['type']}{mark}",
            *(_fmt(float(str(row[k]))) for k in ("on_delay_s", "off_delay_s", "deadband")),
            str(row["severity"]),
            "yes" if row["enabled"] else "no",
        )
    foot = [
        "on s / off s: on_delay_s / off_delay_s; * set in the site file's alarms: block, the rest are defaults",
        *notes,
    ]
    cols = width or terminal_width()
    return "\n".join(["alarms", _render(table, width), *(textwrap.fill(line, cols) for line in foot)])
