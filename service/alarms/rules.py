"""Alarm rules: one pure function per alarm type, (site, live state, now, overrides, scope) -> findings.

`ALARM_TYPES`, at the end, is the alarm-type table: every type once, with its severity, the
engine's default delays and deadband, its rule (or what else raises it) and where it is shown.
It sits here, beside the rules it names, because each rule takes its findings' severity from it.

Conventions every rule keeps:

- It returns one Finding per (type, subject) it can decide, active or not, so the engine can clear.
- Lacking good data (missing, `bad` or `stale` values), or while its condition holds but has not yet
  lasted its delay, it returns no finding for that (type, subject): the engine then leaves the alarm
  as it is, so a data gap or a restart neither clears nor re-raises an alarm.
- A delay is "longer than": a condition raises once it has lasted strictly longer than its delay.
  Limits say at or beyond which value the rule fires (DESIGN §1: cooling at <= 26 °C, plug > 1200 W).
- Office rules take each room's effective thresholds (`Site.thresholds_of`: the room's own
  `thresholds` win over the site's) and run whatever the hour and whether or not the room holds an
  override: an override ("working late") only keeps the after-hours sweeps away from its room, it
  never makes a prohibited use allowed. `overrides` is still passed to every rule for rules that
  care about sweeps.

Severities: critical — backfeed, source_transfer_failed, generator_start_failed, grid_lost (the
load, or the grid's linemen, are at risk now); high — redundancy_lost, generator_overload,
device_offline of a supply-side device (the next fault is unprotected or unseen); warning —
high_power_appliance (fire risk), shutdown_failed, telemetry_dropped, device_offline of an office
device, security_load_exceeded (the generator's 20 % margin is used up); low — lit_empty_room,
ac_too_cold, ac_heating_too_warm, ac_door_open, ac_left_on, lit_in_daylight (energy waste). Also
critical — critical_load_off (a critical load is down now); high — generator_not_auto, ats_not_auto
(the next mains failure would not be carried over automatically). ALARM_TYPES holds them; a site
file's `alarms:` block may set another severity per type.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Final, Literal

from drivers.profiles import ModbusPoint, load_profile
from drivers.types import Quality
from service.alarms.record import AlarmType as AlarmType
from service.alarms.record import Severity
from service.config.compliance import GENERATOR_MARGIN, GENERATOR_REQUIRED, REQUIRED_SOURCES
from service.config.site import PROTECTED_ROLES, DeviceRole, Generator, Grade, Room, RoomKind, Site, Thresholds
from service.live.state import (
    AC_DOOR_OPEN,
    AC_EMPTY,
    LIT_DAYLIGHT,
    LIT_EMPTY,
    POS_I,
    POS_II,
    START_PENDING,
    SUPPLY,
    UNPOWERED,
    UNPOWERED_WITH_ALTERNATIVE,
    AcView,
    GeneratorView,
    LiveState,
    RoomView,
    SourceView,
    SupplyView,
    could_feed,
    tri_and,
    tri_any,
    tri_not,
)

# Generator output above this share of its rating while the load sits on the grid is backfeed.
BACKFEED_OUTPUT_FRACTION: Final = 0.05
# Export at a grid incomer above this (kW) while the generator runs is backfeed; below it is meter noise.
BACKFEED_EXPORT_KW: Final = 1.0
# Independent sources (substations; bus sections for second grade) each grade needs live.
REQUIRED_INDEPENDENT: Final[Mapping[Grade, int]] = MappingProxyType({Grade.special: 2, Grade.first: 2, Grade.second: 2})

NO_OVERRIDES: Final[Mapping[str, datetime]] = MappingProxyType({})

Scope = frozenset[str] | None


@dataclass(frozen=True, slots=True)
class Finding:
    """What one rule says about one subject now.

    `limit` is set when the finding rests on comparing `value` with that limit alone; the engine
    applies its deadband only then (an AC switched off clears at once, a room warming up by 0.1 °C
    does not).
    """

    type: AlarmType
    subject: str
    severity: Severity
    active: bool
    value: float | str | None = None
    message: str = ""
    limit: float | None = None
    page: bool = True  # False: another active alarm already pages for this event (journaled, not notified)


Rule = Callable[[Site, LiveState, datetime, Mapping[str, datetime], Scope], list[Finding]]


def _finding(
    kind: AlarmType,
    subject: str,
    active: bool,
    value: float | str | None = None,
    message: str = "",
    *,
    limit: float | None = None,
    severity: Severity | None = None,
    page: bool = True,
) -> Finding:
    return Finding(kind, subject, severity or SEVERITY[kind], active, value, message, limit, page)


def _wanted(scope: Scope, *subjects: str) -> bool:
    return scope is None or any(s in scope for s in subjects)


def _elapsed_s(since: datetime | None, now: datetime) -> float | None:
    return None if since is None else (now - since).total_seconds()


def _fmt(x: float) -> str:
    return f"{x:g}"


# -- supply ---------------------------------------------------------------------------------


def check_source_transfer_failed(
    site: Site, state: LiveState, now: datetime, overrides: Mapping[str, datetime], scope: Scope
) -> list[Finding]:
    """The load without a source for longer than allowed_interruption_s while another could feed it.

    The atys-pm profile has no transfer-fault register: a switch stuck at pos 0, at an unknown
    position or on a dead source shows here as the load without a source.
    """
    if not _wanted(scope, SUPPLY):
        return []
    kind = AlarmType.source_transfer_failed
    supply = state.supply(now)
    limit = site.site.allowed_interruption_s
    out = []
    for t in supply.transfer_switches:
        if not t.known:
            continue
        if t.position is not None:
            out.append(_finding(kind, t.id, False, None, f"load fed from {t.position}"))
            continue
        waited = _elapsed_s(state.since(t.id, UNPOWERED_WITH_ALTERNATIVE), now)
        if waited is None or waited <= limit:
            continue  # no source to transfer to (other rules speak), or still within the allowed time
        down = max(waited, _elapsed_s(state.since(t.id, UNPOWERED), now) or 0.0)
        conf = next(c for c in site.transfer_switches if c.id == t.id)
        ready = [m for m in conf.sources if could_feed(supply, m)]
        out.append(
            _finding(
                kind,
                t.id,
                True,
                round(down, 1),
                f"{t.id}: load without supply for {down:.0f} s while {', '.join(ready) or 'another source'} "
                f"could feed it (allowed {_fmt(limit)} s)",
            )
        )
    return out


def check_backfeed(
    site: Site, state: LiveState, now: datetime, overrides: Mapping[str, datetime], scope: Scope
) -> list[Finding]:
    """Generator energy that can reach the grid: both breakers closed, output onto a grid-fed load, or export.

    "Output onto a grid-fed load" needs the generator running above BACKFEED_OUTPUT_FRACTION of its
    rating, a transfer switch carrying it set to a grid position, *and* the mains breaker closed. In
    this topology the generator controller (DSE AMF) does its own mains/generator changeover
    downstream of the ATyS (simulators/README.md): with its mains breaker open the generator is cut
    off from the switch and so from the grid, whatever position the switch shows, as in an on-load
    test run or while the controller carries the load after a grid loss.
    """
    if not _wanted(scope, SUPPLY):
        return []
    supply = state.supply(now)
    out = []
    for conf in site.generators:
        g = supply.generator(conf.id)
        if g is None:
            continue
        both_closed = tri_and(g.breaker_closed, g.mains_breaker_closed)
        on_grid = tri_and(g.mains_breaker_closed, _switch_on_grid(site, supply, conf.id))
        output = None if g.power_kw is None else g.power_kw > BACKFEED_OUTPUT_FRACTION * conf.rated_kw
        output_to_grid = tri_and(g.running, tri_and(on_grid, output))
        exports = [s.power_kw < -BACKFEED_EXPORT_KW if s.power_kw is not None else None for s in _metered(site, supply)]
        exporting = tri_and(g.running, tri_any(exports) if exports else False)
        causes = {
            "generator and mains breakers both closed": both_closed,
            f"generator output {_fmt_kw(g.power_kw)} onto a grid-fed load": output_to_grid,
            "export at a grid incomer while the generator runs": exporting,
        }
        active = tri_any(causes.values())
        if active is None:
            continue
        reasons = [text for text, holds in causes.items() if holds]
        message = f"{conf.id}: backfeed: {'; '.join(reasons)}" if active else f"{conf.id}: no backfeed"
        value = None if g.power_kw is None else round(g.power_kw, 3)
        out.append(_finding(AlarmType.backfeed, conf.id, active, value, message))
    return out


def _switch_on_grid(site: Site, supply: SupplyView, generator_id: str) -> bool | None:
    """Whether a transfer switch carrying the generator is set to a grid position (True if none carries it)."""
    codes = [
        t.code
        for t, c in zip(supply.transfer_switches, site.transfer_switches, strict=True)
        if generator_id in c.sources
    ]
    if not codes:
        return True
    return tri_any(None if code is None else code in (POS_I, POS_II) for code in codes)


def _metered(site: Site, supply: SupplyView) -> list[SourceView]:
    return [s for s, c in zip(supply.sources, site.sources, strict=True) if c.meter is not None]


def _fmt_kw(kw: float | None) -> str:
    return "?" if kw is None else f"{kw:.1f} kW"


def check_redundancy_lost(
    site: Site, state: LiveState, now: datetime, overrides: Mapping[str, datetime], scope: Scope
) -> list[Finding]:
    """Fewer available independent sources than the grade requires; the subject is the site.

    Independent means distinct substations (special, first) or distinct substation bus sections
    (second). The requirement is capped at what the site file declares: a site that cannot meet
    its grade on paper fails `wattkeeper check`, and the live alarm then means "lost what it had".
    Temporary and ordinary sites have no live redundancy requirement.

    A source whose meter or switch status is offline or stale is unknown: never counted as
    available, and the alarm is neither raised nor cleared while the unknown ones decide it.
    While every grid source is lost, grid_lost pages for that event: this finding then carries
    `page=False` (journaled, shown, not notified a second time).
    """
    grade = site.site.grade
    need_independent = REQUIRED_INDEPENDENT.get(grade)
    if need_independent is None or not site.sources or not _wanted(scope, SUPPLY):
        return []
    conf = {s.id: s for s in site.sources}

    def independent(ids: list[str]) -> int:
        if grade is Grade.second:
            return len({(conf[i].substation, conf[i].bus_section) for i in ids})
        return len({conf[i].substation for i in ids})

    need_sources = min(REQUIRED_SOURCES[grade], len(conf))
    need_independent = min(need_independent, independent(list(conf)))

    def meets(ids: list[str]) -> bool:
        return len(ids) >= need_sources and independent(ids) >= need_independent

    supply = state.supply(now)
    sure = [s.id for s in supply.sources if s.available is True]
    maybe = [s.id for s in supply.sources if s.available is not False]
    unknown = [s.id for s in supply.sources if s.available is None]
    if meets(sure):
        active = False
    elif not meets(maybe):
        active = True
    else:
        return []
    message = (
        f"{len(sure)} of {len(conf)} sources available ({', '.join(sure) or 'none'}); {grade.value} grade "
        f"needs {need_sources} from {need_independent} independent"
    )
    if unknown:
        message += f"; unknown: {', '.join(unknown)}"
    all_lost = all(s.available is False for s in supply.sources)
    if active and all_lost:
        message += "; every grid source lost: grid_lost pages for this"
    return [_finding(AlarmType.redundancy_lost, site.site.id, active, len(sure), message, page=not all_lost)]


def _where_is_the_load(site: Site, supply: SupplyView) -> tuple[bool | None, str, float | None]:
    """(a grid source feeds the load, where the load is in words, kW on a generator).

    Sources behind no transfer switch feed their load directly; a site without any switch has its
    generators on the load when their breaker is closed and they run.
    """
    grid_ids = {s.id for s in site.sources}
    switched = {m for t in site.transfer_switches for m in t.sources}
    direct = [s for s in supply.sources if s.id not in switched]
    feeds: list[bool | None] = [s.available for s in direct]
    places: list[str] = []
    gen_kw: float | None = None
    for t in supply.transfer_switches:
        prefix = f"{t.id}: " if len(supply.transfer_switches) > 1 else ""
        if not t.known:
            feeds.append(None)
            places.append(f"{prefix}load unknown")
            continue
        feeds.append(t.position in grid_ids)
        gen = supply.generator(t.position) if t.position is not None else None
        if gen is not None:
            gen_kw = gen.power_kw
            places.append(f"{prefix}load on {gen.id} at {_fmt_kw(gen.power_kw)}")
        elif t.position is None:
            places.append(f"{prefix}dead bus (no source feeds the load)")
        else:
            places.append(f"{prefix}load on {t.position}")
    if not site.transfer_switches:
        running = [g for g in supply.generators if g.breaker_closed and g.running]
        if running:
            gen_kw = _sum_kw(g.power_kw for g in running)
            places.append(", ".join(f"load on {g.id} at {_fmt_kw(g.power_kw)}" for g in running))
        elif not any(s.available for s in direct):
            places.append("dead bus (no source feeds the load)")
    return tri_any(feeds), "; ".join(places), gen_kw


def _sum_kw(values: Iterable[float | None]) -> float | None:
    total = 0.0
    for v in values:
        if v is None:
            return None
        total += v
    return total


def check_grid_lost(
    site: Site, state: LiveState, now: datetime, overrides: Mapping[str, datetime], scope: Scope
) -> list[Finding]:
    """Every grid source known unavailable: the load is on the generator, or dead. The subject is the site.

    Raised only when every grid source is known lost (an unknown source is never counted either
    way); cleared only once a grid source feeds the load again, so a restored feeder still waiting
    out the switch's retransfer delay keeps it active. The message says where the load is and is
    kept up to date while the alarm is active; `value` is the kW on the generator (None while dead).
    """
    if not site.sources or not _wanted(scope, SUPPLY):
        return []
    supply = state.supply(now)
    grid_feeds, where, gen_kw = _where_is_the_load(site, supply)
    lost = [s.id for s in supply.sources if s.available is False]
    unknown = [s.id for s in supply.sources if s.available is None]
    if len(lost) == len(supply.sources):
        message = f"all grid sources lost ({', '.join(lost)}): {where}"
        value = None if gen_kw is None else round(gen_kw, 1)
        return [_finding(AlarmType.grid_lost, site.site.id, True, value, message)]
    if grid_feeds:
        fed = [s.id for s in supply.sources if s.available is True]
        message = f"grid feeds the load ({where or ', '.join(fed)})"
        if unknown:
            message += f"; unknown: {', '.join(unknown)}"
        return [_finding(AlarmType.grid_lost, site.site.id, False, None, message)]
    return []  # a grid source back (or unknown) but not yet feeding the load: the alarm stays as it is


def _generators(site: Site, state: LiveState, now: datetime, scope: Scope) -> Iterator[tuple[Generator, GeneratorView]]:
    """Each generator with its live view, when `scope` takes in the supply."""
    if not _wanted(scope, SUPPLY):
        return
    supply = state.supply(now)
    for conf in site.generators:
        g = supply.generator(conf.id)
        if g is not None:
            yield conf, g


def check_security_load_exceeded(
    site: Site, state: LiveState, now: datetime, overrides: Mapping[str, datetime], scope: Scope
) -> list[Finding]:
    """A generator on load above rated_kw / 1.2: the 20 % margin over the security load is used up (第八条2).

    `value` is percent of rating, compared with 100 / 1.2 = 83.3 %; the engine's on-delay makes it
    sustained. A generator off load (breaker open or engine not running) is normal.
    """
    out = []
    limit_pct = round(100.0 / GENERATOR_MARGIN, 2)
    for conf, g in _generators(site, state, now, scope):
        on_load = tri_and(g.breaker_closed, g.running)
        if on_load is False:
            out.append(_finding(AlarmType.security_load_exceeded, conf.id, False, None, f"{conf.id}: not on load"))
            continue
        if on_load is None or g.power_kw is None:
            continue
        sized_kw = conf.rated_kw / GENERATOR_MARGIN
        percent = round(100.0 * g.power_kw / conf.rated_kw, 2)
        active = g.power_kw > sized_kw
        message = (
            f"{conf.id}: {g.power_kw:.1f} kW on emergency power, "
            f"{'above' if active else 'within'} {sized_kw:.1f} kW (rated {_fmt(conf.rated_kw)} kW / 1.2)"
        )
        out.append(_finding(AlarmType.security_load_exceeded, conf.id, active, percent, message, limit=limit_pct))
    return out


def check_generator_start_failed(
    site: Site, state: LiveState, now: datetime, overrides: Mapping[str, datetime], scope: Scope
) -> list[Finding]:
    """Start demanded and the generator not ready within start_limit_s, or its controller reports fail to start."""
    kind = AlarmType.generator_start_failed
    out = []
    for conf, g in _generators(site, state, now, scope):
        if g.fail_to_start:
            out.append(_finding(kind, conf.id, True, None, f"{conf.id}: controller reports fail to start"))
            continue
        pending = tri_and(g.demanded, tri_not(g.ready))
        if pending is None:
            continue
        if not pending:
            out.append(_finding(kind, conf.id, False, None, f"{conf.id}: {'ready' if g.ready else 'not demanded'}"))
            continue
        waited = _elapsed_s(state.since(conf.id, START_PENDING), now)
        if waited is None or waited <= conf.start_limit_s:
            continue
        message = f"{conf.id}: demanded {waited:.0f} s ago, not ready (limit {_fmt(conf.start_limit_s)} s)"
        out.append(_finding(kind, conf.id, True, round(waited, 1), message))
    return out


def check_generator_overload(
    site: Site, state: LiveState, now: datetime, overrides: Mapping[str, datetime], scope: Scope
) -> list[Finding]:
    """Output above rated kW; `value` is percent of rating (the engine's on-delay makes it sustained)."""
    out = []
    for conf, g in _generators(site, state, now, scope):
        if g.power_kw is None:
            continue
        percent = round(100.0 * g.power_kw / conf.rated_kw, 2)
        message = f"{conf.id}: {g.power_kw:.1f} kW = {percent:g} % of {_fmt(conf.rated_kw)} kW rated"
        out.append(
            _finding(AlarmType.generator_overload, conf.id, g.power_kw > conf.rated_kw, percent, message, limit=100.0)
        )
    return out


# -- office ---------------------------------------------------------------------------------


def _office(outcome: Finding | None) -> list[Finding]:
    """An office check's outcome, if it could decide one (overrides do not silence it)."""
    return [] if outcome is None else [outcome]


def _held_s(state: LiveState, room_id: str, condition: str, now: datetime, delay_s: float) -> float | None:
    """How long a room's `condition` has held, once longer than `delay_s` (the rule's delay); else None."""
    waited = _elapsed_s(state.since(room_id, condition), now)
    return waited if waited is not None and waited > delay_s else None


def _office_rooms(site: Site, state: LiveState, now: datetime, scope: Scope) -> Iterable[tuple[Room, RoomView]]:
    for room in site.rooms if scope is None else state.rooms_in(scope):
        yield room, state.room(room.id, now)


def check_lit_empty_room(
    site: Site, state: LiveState, now: datetime, overrides: Mapping[str, datetime], scope: Scope
) -> list[Finding]:
    """Lights on in a room nobody has been in for longer than empty_room_delay_s."""
    kind = AlarmType.lit_empty_room
    out = []
    for room, view in _office_rooms(site, state, now, scope):
        delay = site.thresholds_of(room).empty_room_delay_s
        if not view.lights or not view.sensors:
            continue
        outcome: Finding | None = None
        if view.lights_on is False or view.occupied is True:
            outcome = _finding(
                kind, room.id, False, None, f"{room.id}: {'occupied' if view.occupied else 'lights off'}"
            )
        elif view.lights_on and view.occupied is False:
            waited = _held_s(state, room.id, LIT_EMPTY, now, delay)
            if waited is not None:
                outcome = _finding(
                    kind, room.id, True, round(waited, 1), f"{room.id}: lights on, empty for {waited:.0f} s"
                )
        out += _office(outcome)
    return out


def _checked_acs(site: Site, room: Room, view: RoomView) -> list[AcView]:
    """ACs the office rules look at: none in server rooms, never critical or life-safety units."""
    if room.kind is RoomKind.server:
        return []
    return [a for a in view.acs if a.role not in PROTECTED_ROLES]


@dataclass(frozen=True, slots=True)
class _AcCheck:
    active: bool | None
    value: float | None = None
    message: str = ""
    on_limit: bool = False  # decided by comparing the room temperature with the limit alone


def _too_cold(ac: AcView, limit: float) -> _AcCheck:
    if ac.on is False:
        return _AcCheck(False)
    sp = ac.cooling_setpoint_c
    if ac.mode in ("cool", "auto") and sp is not None and sp < limit:
        return _AcCheck(True, sp, f"{ac.device} cooling setpoint {_fmt(sp)} °C below {_fmt(limit)} °C")
    if ac.cooling is not True:
        return _AcCheck(ac.cooling)
    t = ac.temperature_c
    if t is None:
        return _AcCheck(None)
    return _AcCheck(t <= limit, t, f"{ac.device} cooling at {_fmt(t)} °C, at or below {_fmt(limit)} °C", True)


def _too_warm(ac: AcView, limit: float) -> _AcCheck:
    if ac.heating is not True:
        return _AcCheck(ac.heating)
    t = ac.temperature_c
    if t is None:
        return _AcCheck(None)
    return _AcCheck(t >= limit, t, f"{ac.device} heating at {_fmt(t)} °C, at or above {_fmt(limit)} °C", True)


@dataclass(frozen=True, slots=True)
class _AcLimit:
    kind: AlarmType
    check: Callable[[AcView, float], _AcCheck]
    nearest: Callable[[Iterable[float]], float]  # of the compared temperatures, the one closest to the limit
    verb: str


_TOO_COLD = _AcLimit(AlarmType.ac_too_cold, _too_cold, min, "cooling")
_TOO_WARM = _AcLimit(AlarmType.ac_heating_too_warm, _too_warm, max, "heating")


def _ac_rule(
    spec: _AcLimit,
    limit_of: Callable[[Thresholds], float],
    site: Site,
    state: LiveState,
    now: datetime,
    scope: Scope,
    applies: Callable[[Room], str | None] = lambda room: None,
) -> list[Finding]:
    """`applies` names why the rule does not apply to a room (its finding is then inactive), or None."""
    kind = spec.kind
    out = []
    for room, view in _office_rooms(site, state, now, scope):
        acs = _checked_acs(site, room, view)
        if not acs:
            continue
        limit = limit_of(site.thresholds_of(room))
        checks = [spec.check(a, limit) for a in acs]
        exempt = applies(room)
        if exempt is not None:
            if any(c.active is not None for c in checks):  # known data: clear whatever was raised before
                out.append(_finding(kind, room.id, False, None, f"{room.id}: {exempt}"))
            continue
        firing = next((c for c in checks if c.active), None)
        outcome: Finding | None = None
        if firing is not None:
            outcome = _finding(
                kind,
                room.id,
                True,
                firing.value,
                f"{room.id}: {firing.message}",
                limit=limit if firing.on_limit else None,
            )
        elif all(c.active is False for c in checks):
            compared = [c.value for c in checks if c.on_limit and c.value is not None]
            if compared:
                value = spec.nearest(compared)
                outcome = _finding(kind, room.id, False, value, f"{room.id}: {_fmt(value)} °C", limit=limit)
            else:
                outcome = _finding(kind, room.id, False, None, f"{room.id}: no AC {spec.verb}")
        out += _office(outcome)
    return out


def check_ac_too_cold(
    site: Site, state: LiveState, now: datetime, overrides: Mapping[str, datetime], scope: Scope
) -> list[Finding]:
    """AC cooling a room at or below cooling_min_c, or set to cool below it."""
    return _ac_rule(_TOO_COLD, lambda t: t.cooling_min_c, site, state, now, scope)


def check_ac_heating_too_warm(
    site: Site, state: LiveState, now: datetime, overrides: Mapping[str, datetime], scope: Scope
) -> list[Finding]:
    """AC heating a room at or above heating_max_c, in rooms with central heating, inside the heating season.

    The policy's 17 °C limit is for offices with central heating (有集中供暖的办公室): there the AC
    only adds to what the radiators do. Elsewhere, or outside the season, the finding is inactive.
    """
    day = now.astimezone(site.site.tz).date()

    def exempt(room: Room) -> str | None:
        if not site.central_heating(room):
            return "no central heating"
        if not site.heating_rule_applies(room, day):
            season = site.site.heating_season or ("", "")
            return f"outside the heating season {season[0]}..{season[1]}"
        return None

    return _ac_rule(_TOO_WARM, lambda t: t.heating_max_c, site, state, now, scope, exempt)


def check_ac_door_open(
    site: Site, state: LiveState, now: datetime, overrides: Mapping[str, datetime], scope: Scope
) -> list[Finding]:
    """An AC on with the room's door or window open for longer than door_open_delay_s."""
    kind = AlarmType.ac_door_open
    out = []
    for room, view in _office_rooms(site, state, now, scope):
        delay = site.thresholds_of(room).door_open_delay_s
        acs = _checked_acs(site, room, view)
        if not acs or not view.contacts:
            continue
        ac_on = tri_any(a.on for a in acs)
        outcome: Finding | None = None
        if ac_on is False or view.door_open is False:
            outcome = _finding(kind, room.id, False, None, f"{room.id}: {'door closed' if ac_on else 'AC off'}")
        elif ac_on and view.door_open:
            waited = _held_s(state, room.id, AC_DOOR_OPEN, now, delay)
            if waited is not None:
                outcome = _finding(
                    kind, room.id, True, round(waited, 1), f"{room.id}: AC on, door open for {waited:.0f} s"
                )
        out += _office(outcome)
    return out


def check_high_power_appliance(
    site: Site, state: LiveState, now: datetime, overrides: Mapping[str, datetime], scope: Scope
) -> list[Finding]:
    """An office-equipment plug drawing more than its limit: plug_max_w, or its approved_w; the subject is the plug."""
    kind = AlarmType.high_power_appliance
    out = []
    for room, view in _office_rooms(site, state, now, scope):
        for plug in view.plugs:
            if plug.role is not DeviceRole.office_equipment:
                continue
            outcome = None
            if plug.power_w is not None:
                device = site.device(plug.device)
                limit = site.plug_limit_w(room, device)
                approved = ", approved" if device.approved_w is not None and limit == device.approved_w else ""
                active = plug.power_w > limit
                message = f"{plug.device} in {room.id}: {_fmt(plug.power_w)} W (limit {_fmt(limit)} W{approved})"
                outcome = _finding(kind, plug.device, active, plug.power_w, message, limit=limit)
            out += _office(outcome)
    return out


def check_ac_left_on(
    site: Site, state: LiveState, now: datetime, overrides: Mapping[str, datetime], scope: Scope
) -> list[Finding]:
    """An AC in any mode but off in a room known to be empty for longer than empty_ac_delay_s.

    Unknown occupancy (no sensor, or no good reading) decides nothing: the rule needs to know the
    room is empty. It clears as soon as the AC is off or someone is in.
    """
    kind = AlarmType.ac_left_on
    out = []
    for room, view in _office_rooms(site, state, now, scope):
        acs = _checked_acs(site, room, view)
        if not acs or not view.sensors:
            continue
        delay = site.thresholds_of(room).empty_ac_delay_s
        ac_on = tri_any(a.on for a in acs)
        outcome: Finding | None = None
        if ac_on is False or view.occupied is True:
            outcome = _finding(kind, room.id, False, None, f"{room.id}: {'occupied' if view.occupied else 'AC off'}")
        elif ac_on and view.occupied is False:
            waited = _held_s(state, room.id, AC_EMPTY, now, delay)
            if waited is not None:
                modes = ", ".join(sorted({a.mode for a in acs if a.on and a.mode}))
                outcome = _finding(
                    kind,
                    room.id,
                    True,
                    round(waited, 1),
                    f"{room.id}: AC on ({modes}), room empty {waited / 60:.0f} min",
                )
        out += _office(outcome)
    return out


def check_lit_in_daylight(
    site: Site, state: LiveState, now: datetime, overrides: Mapping[str, datetime], scope: Scope
) -> list[Finding]:
    """Lights on while the room's illuminance has been at or above daylight_lux for longer than daylight_delay_s.

    The illuminance is what the room's occupancy sensors read (the darkest of them), the lights' own
    light included: `daylight_lux` is set per room so that the lights alone never reach it
    (docs/office-rules.md). `value` is the illuminance in lux.
    """
    kind = AlarmType.lit_in_daylight
    out = []
    for room, view in _office_rooms(site, state, now, scope):
        if not view.lights or not view.sensors:
            continue
        limits = site.thresholds_of(room)
        lux = view.illuminance_lx
        outcome: Finding | None = None
        if view.lights_on is False or (lux is not None and lux < limits.daylight_lux):
            what = "lights off" if view.lights_on is False else f"{_fmt(lux or 0)} lx"
            outcome = _finding(kind, room.id, False, lux, f"{room.id}: {what}")
        elif view.lights_on and lux is not None:
            waited = _held_s(state, room.id, LIT_DAYLIGHT, now, limits.daylight_delay_s)
            if waited is not None:
                outcome = _finding(
                    kind,
                    room.id,
                    True,
                    lux,
                    f"{room.id}: lights on at {lux:,.0f} lx (daylight {_fmt(limits.daylight_lux)} lx) "
                    f"for {waited / 60:.0f} min",
                )
        out += _office(outcome)
    return out


# -- devices and findings from outside ------------------------------------------------------------


def check_device_offline(
    site: Site, state: LiveState, now: datetime, overrides: Mapping[str, datetime], scope: Scope
) -> list[Finding]:
    """A device its driver reports offline; high severity for supply-side devices."""
    out = []
    for dev in state.devices(None if scope is None else state.devices_in(scope)):
        if dev.status_since is None:
            continue
        subjects = state.subjects_of(dev.id)
        severity = Severity.high if SUPPLY in subjects else Severity.warning
        seen = dev.last_seen.isoformat() if dev.last_seen else "never"
        if dev.online:
            message = f"{dev.id} online"
        else:
            message = f"{dev.id} offline since {dev.status_since.isoformat()} (last seen {seen})"
        out.append(_finding(AlarmType.device_offline, dev.id, not dev.online, None, message, severity=severity))
    return out


def shutdown_failed(device: str, *, failed: bool, detail: str = "") -> Finding:
    """The control path's verdict on switching a device off (failed=False clears the alarm)."""
    message = f"{device}: shutdown {'failed' if failed else 'confirmed'}" + (f": {detail}" if detail else "")
    return _finding(AlarmType.shutdown_failed, device, failed, None, message)


def telemetry_dropped(subject: str, *, dropped: int, detail: str = "") -> Finding:
    """The telemetry sink's report: `dropped` readings lost in this outage, since it last reported none (0 clears)."""
    message = f"{subject}: {dropped} readings dropped" + (f": {detail}" if detail else "")
    return _finding(AlarmType.telemetry_dropped, subject, dropped > 0, dropped, message)


# -- supply-side equipment left out of automatic, critical loads switched off ---------------------

# Generator controller modes in which the set starts by itself on a mains failure (DSE "auto with
# manual restore" only waits for a person before going back to the mains).
GENERATOR_AUTO_MODES: Final = frozenset({"auto", "auto with manual restore"})
ATS_AUTO_MODES: Final = frozenset({"auto"})
# A critical plug or relay that reports on but draws at most this has lost its load.
CRITICAL_LOAD_MIN_W: Final = 1.0
# Roles whose switching off in a server room is no loss of a critical load.
_MINOR_IN_SERVER_ROOM: Final = frozenset({DeviceRole.lighting, DeviceRole.sensor})


def _reported_mode(site: Site, state: LiveState, device_id: str, point: str, now: datetime) -> str | None:
    """The mode a controller reports (its profile's name for the code); None without a good reading or such a point."""
    try:
        spec = load_profile(site.device(device_id).profile).point(point)
    except KeyError:
        return None
    ps = state.point(device_id, point, now)
    if ps is None or ps.quality is not Quality.good or ps.value is None:
        return None
    value = ps.value
    if isinstance(spec, ModbusPoint) and spec.enum and isinstance(value, int | float) and not isinstance(value, bool):
        return spec.enum.get(int(value), str(int(value)))
    return str(value)


def check_generator_not_auto(
    site: Site, state: LiveState, now: datetime, overrides: Mapping[str, datetime], scope: Scope
) -> list[Finding]:
    """A generator controller in a mode other than auto while the grade requires an emergency supply (A第八条3)."""
    grade = site.site.grade
    if grade not in GENERATOR_REQUIRED or not _wanted(scope, SUPPLY):
        return []
    out = []
    for conf in site.generators:
        if conf.device is None:
            continue
        mode = _reported_mode(site, state, conf.device, "control_mode", now)
        if mode is None:
            continue
        active = mode not in GENERATOR_AUTO_MODES
        message = (
            f"{conf.id}: controller {conf.device} in {mode} mode: it will not start by itself when the mains fail "
            f"({grade.value} grade needs the emergency supply ready)"
            if active
            else f"{conf.id}: controller in {mode} mode"
        )
        out.append(_finding(AlarmType.generator_not_auto, conf.id, active, mode, message))
    return out


def check_ats_not_auto(
    site: Site, state: LiveState, now: datetime, overrides: Mapping[str, datetime], scope: Scope
) -> list[Finding]:
    """A transfer switch whose controller reports a mode other than auto (manual, inhibited, test).

    Only where the profile reports a mode (atys-pm `mode`), and not for a switch the site file
    declares manual (`mode: manual`): that one is meant to be operated by hand.
    """
    if not _wanted(scope, SUPPLY):
        return []
    out = []
    for conf in site.transfer_switches:
        if conf.device is None or getattr(conf, "mode", "automatic") == "manual":
            continue
        mode = _reported_mode(site, state, conf.device, "mode", now)
        if mode is None:
            continue
        active = mode not in ATS_AUTO_MODES
        message = (
            f"{conf.id}: controller {conf.device} in {mode} mode: it will not transfer by itself when a source fails"
            if active
            else f"{conf.id}: controller in {mode} mode"
        )
        out.append(_finding(AlarmType.ats_not_auto, conf.id, active, mode, message))
    return out


def critical_loads(site: Site) -> list[str]:
    """Devices whose switching off is the loss of a critical load: role critical or life_safety, or a
    server-room device other than its lights and sensors."""
    out = []
    for dev in site.devices:
        room = site.room_of(dev.id)
        in_server_room = room is not None and room.kind is RoomKind.server
        if dev.role in PROTECTED_ROLES or (in_server_room and dev.role not in _MINOR_IN_SERVER_ROOM):
            out.append(dev.id)
    return out


def _load_interrupted(supply: SupplyView) -> bool:
    """Whether a transfer switch known to be feeding nothing, or a source or generator that is not
    delivering, stands between the supply and the load now (unknown data: not interrupted)."""
    sources = {s.id: s for s in supply.sources}
    for t in supply.transfer_switches:
        if not t.known:
            continue
        if t.position is None:
            return True
        if t.position in sources and sources[t.position].available is False:
            return True
        gen = supply.generator(t.position)
        if gen is not None and not (gen.running and gen.breaker_closed):
            return True
    return False


def check_critical_load_off(
    site: Site, state: LiveState, now: datetime, overrides: Mapping[str, datetime], scope: Scope
) -> list[Finding]:
    """A critical load reports off (relay off, AC mode off) or a relay on draws ~0 W.

    wattkeeper never commands these devices (the control path's allow-list refuses), so whatever
    switched it off was someone else: a person at the device, another system on the broker, or the
    device's own protection.
    """
    wanted = None if scope is None else set(state.devices_in(scope))
    # While the supply itself is interrupted (a source lost and the switch not yet over, a dead bus,
    # a generator not yet on load) every load draws nothing: that is grid_lost's and the transfer
    # alarms' business, not a critical load switched off by someone.
    interrupted = _load_interrupted(state.supply(now))
    out = []
    for device_id in critical_loads(site):
        if wanted is not None and device_id not in wanted:
            continue
        points = {p.name for p in load_profile(site.device(device_id).profile).points}
        value: float | str
        if "on" in points:
            on = state.point(device_id, "on", now)
            if on is None or on.quality is not Quality.good or not isinstance(on.value, bool):
                continue
            power = state.point(device_id, "power", now) if "power" in points else None
            watts = power.value if power is not None and power.quality is Quality.good else None
            if not on.value:
                active, value, what = True, "off", "reports off"
            elif isinstance(watts, int | float) and not isinstance(watts, bool) and watts <= CRITICAL_LOAD_MIN_W:
                restored = state.supply_restored_at
                if interrupted or (power is not None and restored is not None and power.ts <= restored):
                    # no finding: a reading from the interruption itself (or before the load was fed
                    # again) says nothing about who switched what; the alarm stays as it is
                    continue
                active, value, what = True, float(watts), f"reports on but draws {watts:g} W"
            else:
                active, value, what = False, "on", "on"
        elif "system_mode" in points:
            mode = state.point(device_id, "system_mode", now)
            if mode is None or mode.quality is not Quality.good or not isinstance(mode.value, str):
                continue
            active, value, what = mode.value == "off", mode.value, f"mode {mode.value}"
        else:
            continue
        message = (
            f"{device_id} {what}: a critical load switched off without a command from wattkeeper"
            if active
            else f"{device_id} {what}"
        )
        out.append(_finding(AlarmType.critical_load_off, device_id, active, value, message))
    return out


# -- the alarm-type table -------------------------------------------------------------------------

Area = Literal["supply", "office", "device", "other"]


@dataclass(frozen=True, slots=True)
class AlarmTypeSpec:
    """Everything wattkeeper says about one alarm type; the engine's defaults, the labels, the
    dashboard and the Grafana boards read it (a site file's `alarms:` block overrides the engine's part).

    `rule` evaluates the type from live state; None for a type whose findings come from elsewhere
    (`raised_by`). Delays are the engine's on-delay and off-delay in seconds; `deadband` is in the unit
    of the findings' value. `area` says where the dashboard shows it: the supply page lists `supply`
    alarms, a room card counts `office` ones. `compliance_board`: a row of the Grafana compliance
    board's live supply timeline.
    """

    type: AlarmType
    severity: Severity
    rule: Rule | None
    raised_by: str = "its rule"
    on_delay_s: float = 0.0
    off_delay_s: float = 60.0
    deadband: float = 0.0
    severity_note: str = ""  # shown next to the severity in `wattkeeper check`
    area: Area = "other"
    compliance_board: bool = False

    @property
    def label_key(self) -> str:
        """The i18n key of the type's name (service.web.i18n)."""
        return f"type.{self.type.value}"

    @property
    def sentence_key(self) -> str:
        """The i18n key of the sentence the dashboard renders from the alarm's values (service.web.messages)."""
        return f"msg.{self.type.value}"


# In DESIGN §4's order; rules run in this order. Types whose rule already waits for a site-file delay
# (allowed_interruption_s, start_limit_s, empty_room_delay_s, door_open_delay_s, empty_ac_delay_s,
# daylight_delay_s) or which come from elsewhere raise at once; the others hold for their on-delay.
ALARM_TYPES: Final[tuple[AlarmTypeSpec, ...]] = (
    AlarmTypeSpec(
        AlarmType.source_transfer_failed,
        Severity.critical,
        check_source_transfer_failed,
        area="supply",
        compliance_board=True,
    ),
    AlarmTypeSpec(AlarmType.backfeed, Severity.critical, check_backfeed, area="supply", compliance_board=True),
    AlarmTypeSpec(
        AlarmType.redundancy_lost,
        Severity.high,
        check_redundancy_lost,
        on_delay_s=10.0,
        area="supply",
        compliance_board=True,
    ),
    AlarmTypeSpec(
        AlarmType.generator_start_failed,
        Severity.critical,
        check_generator_start_failed,
        area="supply",
        compliance_board=True,
    ),
    # values are percent of the generator's rating
    AlarmTypeSpec(
        AlarmType.generator_overload,
        Severity.high,
        check_generator_overload,
        on_delay_s=60.0,
        deadband=2.0,
        area="supply",
        compliance_board=True,
    ),
    AlarmTypeSpec(AlarmType.lit_empty_room, Severity.low, check_lit_empty_room, area="office"),
    AlarmTypeSpec(AlarmType.ac_too_cold, Severity.low, check_ac_too_cold, on_delay_s=60.0, deadband=0.5, area="office"),
    AlarmTypeSpec(
        AlarmType.ac_heating_too_warm,
        Severity.low,
        check_ac_heating_too_warm,
        on_delay_s=60.0,
        deadband=0.5,
        area="office",
    ),
    AlarmTypeSpec(AlarmType.ac_door_open, Severity.low, check_ac_door_open, area="office"),
    AlarmTypeSpec(
        AlarmType.high_power_appliance,
        Severity.warning,
        check_high_power_appliance,
        on_delay_s=30.0,
        deadband=50.0,
        area="office",
    ),
    AlarmTypeSpec(
        AlarmType.shutdown_failed,
        Severity.warning,
        None,
        raised_by="the control path (shutdown_failed())",
        area="device",
    ),
    AlarmTypeSpec(
        AlarmType.device_offline,
        Severity.warning,
        check_device_offline,
        on_delay_s=30.0,
        severity_note="high for supply-side devices",
        area="device",
    ),
    AlarmTypeSpec(
        AlarmType.telemetry_dropped, Severity.warning, None, raised_by="the telemetry sink (telemetry_dropped())"
    ),
    # the hazard's own severity when higher
    AlarmTypeSpec(
        AlarmType.hazard_overdue, Severity.warning, None, raised_by="the hazard register (service.alarms.hazards)"
    ),
    AlarmTypeSpec(AlarmType.ac_left_on, Severity.low, check_ac_left_on, area="office"),
    AlarmTypeSpec(AlarmType.lit_in_daylight, Severity.low, check_lit_in_daylight, area="office"),
    AlarmTypeSpec(AlarmType.grid_lost, Severity.critical, check_grid_lost, area="supply"),
    AlarmTypeSpec(
        AlarmType.security_load_exceeded,
        Severity.warning,
        check_security_load_exceeded,
        on_delay_s=60.0,
        deadband=2.0,
        area="supply",
    ),
    AlarmTypeSpec(
        AlarmType.generator_not_auto, Severity.high, check_generator_not_auto, on_delay_s=60.0, area="supply"
    ),
    AlarmTypeSpec(AlarmType.ats_not_auto, Severity.high, check_ats_not_auto, on_delay_s=60.0, area="supply"),
    # 30 s: a relay's first reports after a (re)connect can say 0 W before its meter has measured
    AlarmTypeSpec(
        AlarmType.critical_load_off, Severity.critical, check_critical_load_off, on_delay_s=30.0, area="device"
    ),
)

SEVERITY: Final[Mapping[str, Severity]] = MappingProxyType({s.type.value: s.severity for s in ALARM_TYPES})
RULES: Final[tuple[Rule, ...]] = tuple(s.rule for s in ALARM_TYPES if s.rule is not None)


def evaluate(
    site: Site,
    state: LiveState,
    now: datetime,
    *,
    overrides: Mapping[str, datetime] = NO_OVERRIDES,
    subjects: Iterable[str] | None = None,
    extra: Iterable[Finding] = (),
) -> list[Finding]:
    """Every rule's findings for `subjects` (room ids, SUPPLY, device ids; None: everything), plus `extra`.

    Call it with the subjects `LiveState.apply`/`set_online` return after each change, and with
    subjects=None every second or so: delays and staleness run out without any new reading.
    `extra` carries findings made elsewhere (shutdown_failed, telemetry_dropped) so one
    `AlarmEngine.update` takes them all.
    """
    scope = None if subjects is None else frozenset(subjects)
    out = [f for rule in RULES for f in rule(site, state, now, overrides, scope)]
    out.extend(extra)
    return out
