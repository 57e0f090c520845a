"""What each dashboard panel shows, built from the running services; templates only lay it out."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Final, Literal

from service.alarms.record import Alarm, AlarmState, Severity
from service.alarms.rules import ALARM_TYPES
from service.config import office
from service.config.calendar import WorkCalendar
from service.config.compliance import check_site
from service.config.site import PROTECTED_ROLES, Room, RoomKind, Site
from service.live.state import POS_0, POS_I, POS_II, GeneratorView, RoomView, SupplyView, SwitchView
from service.live.transfers import Transfer
from service.store.db import EnergyTotal, Override, month_bounds

Wire = Literal["live", "dead", "unknown"]
Health = Literal["ok", "warn", "bad", "idle", "unknown"]

SEVERITY_ORDER: Final = {s.value: i for i, s in enumerate(Severity)}
STATE_ORDER: Final = {
    AlarmState.active_unacked: 0,
    AlarmState.cleared_unacked: 1,
    AlarmState.active_acked: 2,
    AlarmState.shelved: 3,
    AlarmState.cleared: 4,
}
ACKABLE: Final = frozenset({AlarmState.active_unacked, AlarmState.cleared_unacked})
SUPPLY_TYPES: Final = frozenset(s.type for s in ALARM_TYPES if s.area == "supply")
STARTING: Final = frozenset({"pre-start", "warming"})
URGENT: Final = frozenset({Severity.critical, Severity.high})  # sound, notification, blinking badge
# What a room card and its counter show: the office rules a room breaks, while it breaks them
# (not device_offline or shutdown_failed).
OFFICE_RULE_TYPES: Final = frozenset(s.type for s in ALARM_TYPES if s.area == "office")


def tri(flag: bool | None) -> Wire:
    """live / dead / unknown for a three-valued flag."""
    return "unknown" if flag is None else "live" if flag else "dead"


def both(a: Wire, b: bool | None) -> Wire:
    """A wire behind another and a switch element: dead wins, then unknown."""
    if a == "dead" or b is False:
        return "dead"
    if a == "unknown" or b is None:
        return "unknown"
    return "live"


# -- supply: the single-line diagram ----------------------------------------------------------

COL_W: Final = 140  # horizontal room per source or generator
MARGIN_X: Final = 72
NODE_Y: Final = 74  # centre of source and generator symbols
NODE_R: Final = 17
SWITCH_TOP: Final = 140
SWITCH_H: Final = 44
BREAKER_Y: Final = 222
BREAKER_S: Final = 16
BUS_Y: Final = 282
LOAD_Y: Final = 312
HEIGHT: Final = 356


@dataclass(frozen=True, slots=True)
class Segment:
    """A piece of wire."""

    x1: float
    y1: float
    x2: float
    y2: float
    state: Wire


@dataclass(frozen=True, slots=True)
class Breaker:
    """A circuit breaker symbol: filled when closed."""

    x: float
    y: float
    closed: bool | None
    label: str  # i18n key
    state: Wire


@dataclass(frozen=True, slots=True)
class Node:
    """A source or generator symbol with three lines of text above it."""

    x: float
    id: str
    kind: Literal["grid", "gen"]
    health: Health
    line2: str
    line3: str


@dataclass(frozen=True, slots=True)
class SwitchBox:
    """A transfer switch: inputs on top, output below, the blade shows the position."""

    id: str
    x: float
    w: float
    inputs: tuple[float, ...]
    out_x: float
    blade: tuple[float, float, float, float]
    closed: bool
    health: Health
    position_key: str  # i18n key of the position


@dataclass(slots=True)
class Diagram:
    """Everything the SVG template draws."""

    width: float
    height: float = HEIGHT
    segments: list[Segment] = field(default_factory=list)
    breakers: list[Breaker] = field(default_factory=list)
    nodes: list[Node] = field(default_factory=list)
    switches: list[SwitchBox] = field(default_factory=list)
    bus: Segment | None = None
    load_x: float = 0.0
    load_kw: float | None = None


def _source_health(available: bool | None, present: bool | None) -> Health:
    # Unknown is not available: a source whose meter or switch status is silent is drawn unknown,
    # even while the other reporter still says it is there.
    if available is None:
        return "unknown"
    if available:
        return "ok"
    return "warn" if present else "bad"


def _gen_health(g: GeneratorView) -> Health:
    if g.fail_to_start:
        return "bad"
    if g.ready:
        return "ok"
    if g.running or g.state in STARTING:
        return "warn"
    if g.state is None:
        return "unknown"
    return "idle"  # a standby generator at rest is the normal state


def _position_key(t: SwitchView) -> str:
    return {POS_I: "supply.pos.I", POS_II: "supply.pos.II", POS_0: "supply.pos.0"}.get(
        t.code if t.code is not None else -1, "supply.pos.unknown"
    )


def _fmt(v: float | None, digits: int = 0, unit: str = "") -> str:
    if v is None:
        return "—"
    return f"{v:,.{digits}f}{' ' + unit if unit else ''}"


def diagram(site: Site, supply: SupplyView) -> Diagram:
    """Sources on top, each transfer switch below its grid sources, breakers, the load bus, the load."""
    by_source = {s.id: s for s in supply.sources}
    by_gen = {g.id: g for g in supply.generators}
    gen_ids = set(by_gen)
    conf_sources = {s.id: s for s in site.sources}
    columns: list[str] = []
    for conf in site.transfer_switches:
        columns += [s for s in conf.sources if s in conf_sources and s not in columns]
    columns += [s.id for s in site.sources if s.id not in columns]
    columns += [g.id for g in site.generators]
    x_of = {node: float(MARGIN_X + i * COL_W) for i, node in enumerate(columns)}
    # The extra room on the right is for the last breaker's label.
    d = Diagram(width=max(2 * MARGIN_X + (len(columns) - 1) * COL_W + 60, 320))
    bus_feeds: list[Wire] = []

    for s in site.sources:
        view = by_source.get(s.id)
        present = view.present if view else None
        available = view.available if view else None
        voltage = view.voltage_v if view else None
        d.nodes.append(
            Node(
                x=x_of[s.id],
                id=s.id,
                kind="grid",
                health=_source_health(available, present),
                line2=f"{s.substation} · {s.voltage_kv:g} kV",
                line3=_fmt(voltage, 0, "V"),
            )
        )
    switched: set[str] = set()
    for t_conf, t in zip(site.transfer_switches, supply.transfer_switches, strict=True):
        grid = [s for s in t_conf.sources if s in conf_sources]
        switched |= set(grid)
        xs = tuple(x_of[s] for s in grid)
        left, right = (min(xs), max(xs)) if xs else (float(MARGIN_X), float(MARGIN_X))
        out_x = (left + right) / 2
        for src, x in zip(grid, xs, strict=True):
            view = by_source.get(src)
            d.segments.append(Segment(x, NODE_Y + NODE_R, x, SWITCH_TOP, tri(view.present if view else None)))
        selected = {POS_I: 0, POS_II: 1}.get(t.code if t.code is not None else -1)
        contact_y, out_y = SWITCH_TOP + 10.0, SWITCH_TOP + SWITCH_H - 10.0
        if selected is not None and selected < len(xs):
            blade = (xs[selected], contact_y, out_x, out_y)
            chosen = by_source.get(grid[selected])
            out_state = tri(chosen.present if chosen else None)
        else:
            # Open (pos 0) or unknown: the blade hangs from the output, touching nothing.
            blade = (out_x - 14, contact_y + 8, out_x, out_y)
            out_state = "dead" if t.code == POS_0 else "unknown"
        health: Health = "unknown" if not t.known else "ok" if t.position is not None else "bad"
        d.switches.append(
            SwitchBox(
                id=t.id,
                x=left - 40,
                w=right - left + 80,
                inputs=xs,
                out_x=out_x,
                blade=blade,
                closed=selected is not None,
                health=health,
                position_key=_position_key(t),
            )
        )
        gens_here = [g for g in t_conf.sources if g in gen_ids]
        mains = by_gen[gens_here[0]].mains_breaker_closed if gens_here else True
        below = SWITCH_TOP + SWITCH_H
        d.segments.append(Segment(out_x, below, out_x, BREAKER_Y - BREAKER_S / 2, out_state))
        if gens_here:
            d.breakers.append(Breaker(out_x, BREAKER_Y, mains, "supply.mains_breaker", out_state))
            feed = both(out_state, mains)
            d.segments.append(Segment(out_x, BREAKER_Y + BREAKER_S / 2, out_x, BUS_Y, feed))
        else:
            feed = out_state
            d.segments.append(Segment(out_x, BREAKER_Y - BREAKER_S / 2, out_x, BUS_Y, feed))
        bus_feeds.append(feed)
    for unswitched in site.sources:
        if unswitched.id not in switched:
            view = by_source.get(unswitched.id)
            feed = tri(view.present if view else None)
            x = x_of[unswitched.id]
            d.segments.append(Segment(x, NODE_Y + NODE_R, x, BUS_Y, feed))
            bus_feeds.append(feed)
    for g_conf in site.generators:
        g = by_gen[g_conf.id]
        x = x_of[g_conf.id]
        d.nodes.append(
            Node(
                x=x,
                id=g_conf.id,
                kind="gen",
                health=_gen_health(g),
                line2=f"gen.{g.state}" if g.state else "unknown",
                line3=f"{_fmt(g.power_kw, 1, 'kW')} / {g_conf.rated_kw:g} kW",
            )
        )
        running = tri(g.running)
        d.segments.append(Segment(x, NODE_Y + NODE_R, x, BREAKER_Y - BREAKER_S / 2, running))
        d.breakers.append(Breaker(x, BREAKER_Y, g.breaker_closed, "supply.gen_breaker", running))
        feed = both(running, g.breaker_closed)
        d.segments.append(Segment(x, BREAKER_Y + BREAKER_S / 2, x, BUS_Y, feed))
        bus_feeds.append(feed)
    xs_all = list(x_of.values()) or [MARGIN_X]
    fed: Wire = "live" if "live" in bus_feeds else "unknown" if "unknown" in bus_feeds else "dead"
    d.bus = Segment(min(xs_all) - 40, BUS_Y, max(xs_all) + 40, BUS_Y, fed)
    d.load_x = (min(xs_all) + max(xs_all)) / 2
    d.segments.append(Segment(d.load_x, BUS_Y, d.load_x, LOAD_Y, fed))
    d.load_kw = supply.load_kw
    return d


@dataclass(frozen=True, slots=True)
class ComplianceSummary:
    """The static check's verdict and what the live state says about it now."""

    status: str
    rules: list[tuple[str, str, str, str, str]]  # rule id, status, detail, clause, article
    sources_available: int
    sources_total: int
    substations_available: int
    substations_total: int
    generators_ready: int
    generators_total: int
    allowed_interruption_s: float
    transfers: list[Transfer]  # each switch's last source transfer, in site order
    sources_unknown: int = 0  # meter or switch status silent: not counted as available


def compliance(site: Site, supply: SupplyView, last_transfers: Mapping[str, Transfer]) -> ComplianceSummary:
    """The static compliance report, the live counts beside it and each switch's last transfer."""
    report = check_site(site)
    available = {s.id for s in supply.sources if s.available}
    return ComplianceSummary(
        status=report.status,
        rules=[(r.rule, r.status, r.detail, r.clause, r.article) for r in report.rules],
        sources_available=len(available),
        sources_total=len(supply.sources),
        substations_available=len({s.substation for s in site.sources if s.id in available}),
        substations_total=len({s.substation for s in site.sources}),
        generators_ready=sum(1 for g in supply.generators if g.ready),
        generators_total=len(supply.generators),
        allowed_interruption_s=site.site.allowed_interruption_s,
        transfers=[last_transfers[t.id] for t in site.transfer_switches if t.id in last_transfers],
        sources_unknown=sum(1 for s in supply.sources if s.available is None),
    )


# -- alarms ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AlarmRow:
    """One alarm as the lists show it: the record, with where it is and what a person may do with it."""

    alarm: Alarm
    where: str  # room name, or the room a device is in
    ackable: bool
    shelvable: bool


def where(site: Site, subject: str) -> str:
    """A human place for an alarm subject: the room's name for a room or a device in one."""
    room = next((r for r in site.rooms if r.id == subject), None) or site.room_of(subject)
    return room.name if room is not None else ""


def alarm_rows(site: Site, alarms: Iterable[Alarm]) -> list[AlarmRow]:
    """Open alarms, most pressing first: unacknowledged, then by severity, then newest."""
    rows = [
        AlarmRow(
            alarm=a,
            where=where(site, a.subject),
            ackable=a.state in ACKABLE,
            shelvable=a.state is not AlarmState.shelved and a.state is not AlarmState.cleared,
        )
        for a in alarms
    ]
    rows.sort(key=lambda r: -r.alarm.raised_at.timestamp())
    rows.sort(key=lambda r: (STATE_ORDER[r.alarm.state], SEVERITY_ORDER.get(r.alarm.severity, 9)))
    return rows


def badge_counts(alarms: Sequence[Alarm]) -> dict[str, int]:
    """Open alarms (not shelved) by severity, and how many are unacknowledged."""
    counts = {s.value: 0 for s in Severity}
    for a in alarms:
        if a.state is not AlarmState.shelved:
            counts[a.severity.value] += 1
    counts["unacked"] = sum(1 for a in alarms if a.state in ACKABLE)
    urgent = [a for a in alarms if a.state in ACKABLE and a.severity in URGENT]
    counts["urgent"] = len(urgent)
    counts["urgent_newest"] = max((int(a.raised_at.timestamp()) for a in urgent), default=0)
    return counts


# -- rooms -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Control:
    """A device in a room an operator may switch."""

    device: str
    kind: Literal["light", "ac", "plug"]
    on: bool | None
    mode: str | None = None  # an AC's mode and the setpoint of that mode
    setpoint_c: float | None = None


@dataclass(frozen=True, slots=True)
class RoomCard:
    """One room tile."""

    view: RoomView
    department: str
    override_until: datetime | None
    alarms: list[tuple[str, str]]  # (type, severity)
    worst: str | None
    controls: list[Control]
    critical: bool  # a server room or critical devices: the dashboard offers no switches
    reasons: list[str | None] = field(default_factory=list)  # per alarm: which rule and why, worded
    approved: dict[str, float] = field(default_factory=dict)  # plug -> approved_w


def room_devices(view: RoomView) -> list[str]:
    """Every device of a room's view: lights, ACs, plugs, sensors, contacts."""
    return [*view.lights, *(a.device for a in view.acs), *(p.device for p in view.plugs), *view.sensors, *view.contacts]


def _reason(site: Site, room: Room, alarm: Alarm, t: Callable[..., str] | None) -> str | None:
    if t is None:
        return None
    plug = site.device(alarm.subject) if alarm.subject in room.devices else None
    limit = site.plug_limit_w(room, plug) if plug is not None else 0.0
    return office.reason(alarm.type, alarm.value, site.thresholds_of(room), t, limit)


def room_cards(
    site: Site,
    views: Sequence[RoomView],
    overrides: dict[str, datetime],
    alarms: Sequence[Alarm],
    on_of: Callable[[str], bool | None],
    t: Callable[..., str] | None = None,
) -> list[RoomCard]:
    """Room tiles with their open alarms and the switches an operator may use (`on_of`: a device's relay state).

    With a translator `t`, each alarm also says why the room breaks its rule, in the room's own limits."""
    departments = {d.id: d.name for d in site.departments}
    kinds = {r.id: r.kind for r in site.rooms}
    rooms = {r.id: r for r in site.rooms}
    cards = []
    for view in views:
        members = {view.id, *room_devices(view)}
        mine = [
            a
            for a in alarms
            if a.subject in members and a.active and a.state is not AlarmState.shelved and a.type in OFFICE_RULE_TYPES
        ]
        worst = min((a.severity.value for a in mine), key=lambda s: SEVERITY_ORDER[s], default=None)
        server = kinds.get(view.id) is RoomKind.server
        controls: list[Control] = []
        if not server:
            allowed = [d for d in room_devices(view) if site.device(d).role not in PROTECTED_ROLES]
            acs = {a.device: a for a in view.acs}
            for d in allowed:
                if d in view.lights:
                    controls.append(Control(d, "light", on_of(d)))
                elif d in acs:
                    controls.append(Control(d, "ac", acs[d].on, acs[d].mode, acs[d].setpoint_c))
                elif any(p.device == d for p in view.plugs):
                    controls.append(Control(d, "plug", on_of(d)))
        cards.append(
            RoomCard(
                view=view,
                department=departments.get(view.department, view.department),
                override_until=overrides.get(view.id),
                alarms=[(a.type, a.severity.value) for a in mine],
                worst=worst,
                controls=controls,
                critical=server,
                reasons=[_reason(site, rooms[view.id], a, t) for a in mine],
                approved=office.approvals(site, rooms[view.id]),
            )
        )
    return cards


# -- energy ------------------------------------------------------------------------------------


@dataclass(slots=True)
class EnergyRow:
    """One department's (or the site incomers') energy over a period, split by tariff band."""

    id: str
    name: str
    kwh: float = 0.0
    cost: float = 0.0
    after_hours_kwh: float = 0.0
    bands: dict[str, float] = field(default_factory=dict)  # band -> kWh


SITE_ROW: Final = "__site__"


def energy_rows(site: Site, totals: Iterable[EnergyTotal]) -> list[EnergyRow]:
    """Departments in site order, then the site incomers (meters without a department)."""
    rows = {d.id: EnergyRow(d.id, d.name) for d in site.departments}
    rows[SITE_ROW] = EnergyRow(SITE_ROW, "energy.site")
    for t in totals:
        row = rows.setdefault(t.department or SITE_ROW, EnergyRow(t.department or SITE_ROW, t.department or ""))
        row.kwh += t.kwh
        row.cost += t.cost
        row.after_hours_kwh += t.after_hours_kwh
        row.bands[t.band] = row.bands.get(t.band, 0.0) + t.kwh
    return list(rows.values())


def day_bounds(now: datetime, calendar: WorkCalendar) -> tuple[datetime, datetime]:
    """Local midnight of `now`'s day and of the next day."""
    local = now.astimezone(calendar.tz)
    start = datetime.combine(local.date(), time(), tzinfo=calendar.tz)
    return start, datetime.combine(local.date() + timedelta(days=1), time(), tzinfo=calendar.tz)


def month_of(now: datetime, calendar: WorkCalendar) -> tuple[str, datetime, datetime]:
    """'YYYY-MM' of `now` in the site's zone and its bounds."""
    month = now.astimezone(calendar.tz).strftime("%Y-%m")
    start, end = month_bounds(month, calendar.tz)
    return month, start, end


def tariff_strip(site: Site) -> list[str]:
    """The tariff band of each hour of the day (by its first minute)."""
    if site.tariff is None:
        return []
    table = site.tariff.band_table()
    return [table[h * 60] for h in range(24)]


# -- schedule ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OverrideRow:
    """An override with what became of it."""

    item: Override
    room_name: str
    status: Literal["active", "ended", "expired", "future"]


def override_rows(site: Site, overrides: Iterable[Override], now: datetime) -> list[OverrideRow]:
    """Overrides with their room's name and whether they still hold."""
    names = {r.id: r.name for r in site.rooms}
    out = []
    for o in overrides:
        if o.ended_at is not None:
            status: Literal["active", "ended", "expired", "future"] = "ended"
        elif o.until <= now:
            status = "expired"
        elif o.created_at > now:
            status = "future"
        else:
            status = "active"
        out.append(OverrideRow(o, names.get(o.room, o.room), status))
    return out


def overridable_rooms(site: Site) -> list[tuple[str, str]]:
    """Rooms an override makes sense for: not server rooms, not exempt from sweeps."""
    return [(r.id, r.name) for r in site.rooms if r.kind is not RoomKind.server and not r.exempt]


def override_hours(site: Site) -> list[float]:
    """Durations offered for an override, up to override_max_h."""
    limit = site.site.thresholds.override_max_h
    steps = [0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 24.0]
    return [h for h in steps if h <= limit] or [limit]


def today_hours(calendar: WorkCalendar, now: datetime) -> list[tuple[datetime, datetime]]:
    """Today's working intervals (UTC)."""
    return calendar.working_intervals(now.astimezone(calendar.tz).date())
