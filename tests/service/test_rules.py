"""Alarm rules: one table per alarm type with its boundary values; injected time only."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from drivers.types import Quality, Reading, Value
from service.alarms.engine import DEFAULT_CONFIG, AlarmEngine
from service.alarms.record import Severity
from service.alarms.rules import (
    ALARM_TYPES,
    SEVERITY,
    AlarmType,
    Finding,
    evaluate,
    shutdown_failed,
    telemetry_dropped,
)
from service.config.site import Site
from service.live.state import (
    FAIL_TO_START,
    GEN_AVAILABLE,
    GEN_BREAKER_CLOSED,
    MAINS_AVAILABLE,
    MAINS_BREAKER_CLOSED,
    START_DEMAND,
    SUPPLY,
    LiveState,
)
from tests.service.test_state import NORMAL_BITS, T0, at, feed, make_site, site_dict, supply_normal

Changes = dict[str, dict[str, Value]]
GEN_FEEDS = GEN_BREAKER_CLOSED | GEN_AVAILABLE | MAINS_AVAILABLE


def found(site: Site, state: LiveState, now: datetime, kind: AlarmType, **kw: Any) -> dict[str, Finding]:
    """The findings of one type by subject."""
    return {f.subject: f for f in evaluate(site, state, now, **kw) if f.type is kind}


def verdict(findings: dict[str, Finding], subject: str) -> bool | None:
    """True/False for an active/inactive finding, None when the rule stayed quiet."""
    f = findings.get(subject)
    return None if f is None else f.active


def poll(state: LiveState, start_s: float, end_s: float, changes: Changes | None = None) -> None:
    """Every supply device polled once a second from start_s to end_s."""
    t = start_s
    while t <= end_s:
        supply_normal(state, at(t), changes)
        t += 1.0


@pytest.fixture
def site() -> Site:
    """The test site."""
    return make_site()


@pytest.fixture
def state(site: Site) -> LiveState:
    """Live state of the test site, empty."""
    return LiveState(site)


DESIGN_TYPES = {
    "source_transfer_failed", "backfeed", "redundancy_lost", "generator_start_failed",
    "generator_overload", "lit_empty_room", "ac_too_cold", "ac_heating_too_warm", "ac_door_open",
    "high_power_appliance", "shutdown_failed", "device_offline", "telemetry_dropped", "hazard_overdue",
    "ac_left_on", "lit_in_daylight",
    "grid_lost", "security_load_exceeded",
    "generator_not_auto", "ats_not_auto", "critical_load_off",
}  # fmt: skip


def test_the_alarm_type_table_holds_exactly_the_design_types_once() -> None:
    """DESIGN §4's alarm types, each described once in ALARM_TYPES, in AlarmType's order."""
    assert {t.value for t in AlarmType} == DESIGN_TYPES
    assert [s.type for s in ALARM_TYPES] == list(AlarmType)
    assert set(SEVERITY) == set(AlarmType)


def test_a_type_without_a_rule_says_what_raises_it(site: Site, state: LiveState) -> None:
    """A rule in the table only makes findings of its own type; a type without one names its source."""
    poll(state, 0.0, 1.0)
    assert evaluate(site, state, at(1))  # the rules below decide something
    for spec in ALARM_TYPES:
        if spec.rule is None:
            assert spec.raised_by != "its rule", spec.type
            continue
        assert {f.type for f in spec.rule(site, state, at(1), {}, None)} <= {spec.type}


# -- source_transfer_failed ------------------------------------------------------------------------

GRID_A_LOST: Changes = {"m-a": {"voltage_l1": 0.0, "power": 0.0}, "ats": {"source1_state": 0}}
ALL_LOST: Changes = {
    "m-a": {"voltage_l1": 0.0, "power": 0.0},
    "m-b": {"voltage_l1": 0.0},
    "ats": {"source1_state": 0, "source2_state": 0},
    "gs": {"engine_state": 1, "breaker_status": START_DEMAND | MAINS_BREAKER_CLOSED},
}


@pytest.mark.parametrize(
    ("changes", "down_s", "expected"),
    [
        ({}, 30, False),  # fed
        (GRID_A_LOST, 5, None),  # within allowed_interruption_s 10
        (GRID_A_LOST, 10, None),  # exactly the allowed time
        (GRID_A_LOST, 10.001, True),
        (GRID_A_LOST, 30, True),
        (ALL_LOST, 30, None),  # nothing to transfer to: not a transfer failure
        ({**GRID_A_LOST, "ats": {"source1_state": 0, "position": 3}}, 30, False),  # transferred to grid-b
        ({**GRID_A_LOST, "ats": {"source1_state": 0, "position": 1}}, 10.5, True),  # stuck in pos 0
    ],
)
def test_source_transfer_failed(
    site: Site, state: LiveState, changes: Changes, down_s: float, expected: bool | None
) -> None:
    poll(state, 0, 0)
    poll(state, 1, 1 + int(down_s), changes)
    f = found(site, state, at(1 + down_s), AlarmType.source_transfer_failed)
    assert verdict(f, "ats-1") is expected
    if expected:
        assert f["ats-1"].severity is Severity.critical
        assert f["ats-1"].value == pytest.approx(down_s, abs=0.01)
        assert "grid-b" in f["ats-1"].message


# Both feeders dead; the generator running and available (ready) but its controller has not put it
# on the load: the generator breaker still open, the mains breaker closed onto a dead switch.
ONLY_GENERATOR_READY: Changes = {
    **ALL_LOST,
    "gs": {"engine_state": 3, "breaker_status": START_DEMAND | GEN_AVAILABLE | MAINS_BREAKER_CLOSED},
}


@pytest.mark.parametrize(("down_s", "expected"), [(5, None), (10, None), (10.001, True), (30, True)])
def test_source_transfer_failed_with_only_the_generator_available(
    site: Site, state: LiveState, down_s: float, expected: bool | None
) -> None:
    poll(state, 0, 0)
    poll(state, 1, 1 + int(down_s), ONLY_GENERATOR_READY)
    f = found(site, state, at(1 + down_s), AlarmType.source_transfer_failed)
    assert verdict(f, "ats-1") is expected
    if expected:
        assert f["ats-1"].value == pytest.approx(down_s, abs=0.01)
        assert "while gen-1 could feed it" in f["ats-1"].message


def test_source_transfer_failed_counts_from_when_an_alternative_appeared(site: Site, state: LiveState) -> None:
    poll(state, 0, 0)
    poll(state, 1, 100, ALL_LOST)
    recovered: Changes = {**ALL_LOST, "m-b": {}, "ats": {"source1_state": 0}}  # grid-b back, switch still on I
    poll(state, 101, 111, recovered)
    assert verdict(found(site, state, at(111), AlarmType.source_transfer_failed), "ats-1") is None
    poll(state, 112, 112, recovered)
    f = found(site, state, at(112), AlarmType.source_transfer_failed)["ats-1"]
    assert f.active
    assert f.value == 111.0  # the load has been down since t=1


def test_source_transfer_failed_quiet_without_switch_data(site: Site, state: LiveState) -> None:
    poll(state, 0, 1, GRID_A_LOST)
    assert verdict(found(site, state, at(30), AlarmType.source_transfer_failed), "ats-1") is None  # all stale


# -- backfeed ---------------------------------------------------------------------------------------

RUNNING_ON_LOAD: Changes = {
    **GRID_A_LOST,
    "gs": {"engine_state": 3, "breaker_status": GEN_FEEDS | START_DEMAND, "power": 150_000},
}


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, False),
        ({"gs": {"breaker_status": NORMAL_BITS | GEN_BREAKER_CLOSED}}, True),  # both breakers closed
        (RUNNING_ON_LOAD, False),  # the AMF runs the load from the generator: normal
        # running with its breaker reported open while the load sits on grid-a at pos I:
        ({"gs": {"engine_state": 3, "breaker_status": NORMAL_BITS | GEN_AVAILABLE}, "m-g": {"power": 10_000.0}}, False),
        ({"gs": {"engine_state": 3, "breaker_status": NORMAL_BITS | GEN_AVAILABLE}, "m-g": {"power": 10_001.0}}, True),
        ({"gs": {"engine_state": 0}, "m-g": {"power": 10_001.0}}, False),  # not running
        ({**RUNNING_ON_LOAD, "m-b": {"power": -1000.0}}, False),  # 1 kW export is meter noise
        ({**RUNNING_ON_LOAD, "m-b": {"power": -1000.1}}, True),
        ({"m-b": {"power": -50_000.0}}, False),  # export while the generator is stopped is not backfeed
        # Running above 5 % with the switch on a grid position (pos I, grid-a present) but the mains
        # breaker open: the generator controller (DSE) changes over downstream of the ATyS, so with
        # its mains breaker open the generator cannot reach the switch, let alone the grid. Not
        # backfeed: an on-load test run, or a changeover the controller made on its own.
        (
            {"gs": {"engine_state": 3, "breaker_status": MAINS_AVAILABLE | GEN_AVAILABLE}, "m-g": {"power": 10_001.0}},
            False,
        ),
        ({"gs": {"engine_state": 3, "breaker_status": GEN_FEEDS}, "m-g": {"power": 150_000.0}}, False),
    ],
)
def test_backfeed(site: Site, state: LiveState, changes: Changes, expected: bool) -> None:
    poll(state, 0, 0, changes)
    f = found(site, state, at(0.2), AlarmType.backfeed)
    assert verdict(f, "gen-1") is expected
    assert f["gen-1"].severity is Severity.critical


def test_backfeed_quiet_without_genset_data(site: Site, state: LiveState) -> None:
    poll(state, 0, 0)
    state.apply(Reading(device="gs", point="breaker_status", value=None, unit="", ts=at(0.1), quality=Quality.bad))
    state.apply(Reading(device="gs", point="engine_state", value=None, unit="", ts=at(0.1), quality=Quality.bad))
    assert verdict(found(site, state, at(0.2), AlarmType.backfeed), "gen-1") is None


# -- redundancy_lost --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("grade", "sources", "changes", "expected"),
    [
        ("first", None, {}, False),
        ("first", None, GRID_A_LOST, True),
        ("first", None, {"ats": {"source2_state": 1}}, True),  # present but not stable is not available
        ("second", None, GRID_A_LOST, True),
        ("ordinary", None, GRID_A_LOST, "none"),
        ("temporary", None, GRID_A_LOST, "none"),
        # second grade on one substation: different bus sections count as independent
        ("second", [("east", "I"), ("east", "II")], {}, False),
        ("second", [("east", "I"), ("east", "II")], GRID_A_LOST, True),
        # a first-grade site on one substation fails `check`; live it alarms only on a lost source
        ("first", [("east", "I"), ("east", "II")], {}, False),
        ("first", [("east", "I"), ("east", "I")], GRID_A_LOST, True),
    ],
)
def test_redundancy_lost(
    grade: str, sources: list[tuple[str, str]] | None, changes: Changes, expected: bool | str
) -> None:
    data = site_dict()
    data["site"]["grade"] = grade
    for conf, (substation, bus) in zip(data["sources"], sources or [], strict=False):
        conf.update(substation=substation, bus_section=bus)
    site = Site.model_validate(data)
    state = LiveState(site)
    poll(state, 0, 0, changes)
    f = found(site, state, at(0.2), AlarmType.redundancy_lost)
    if expected == "none":
        assert f == {}
        return
    assert verdict(f, "t") is expected
    assert f["t"].severity is Severity.high


def test_redundancy_lost_quiet_while_a_source_is_unknown(site: Site, state: LiveState) -> None:
    poll(state, 0, 0)
    for device, point in (("ats", "source2_state"), ("m-b", "voltage_l1")):
        state.apply(Reading(device=device, point=point, value=None, unit="", ts=at(0.1), quality=Quality.bad))
    assert verdict(found(site, state, at(0.2), AlarmType.redundancy_lost), "t") is None


# -- generator_start_failed -------------------------------------------------------------------------

STARTING: Changes = {**GRID_A_LOST, "gs": {"engine_state": 1, "breaker_status": START_DEMAND | MAINS_BREAKER_CLOSED}}


@pytest.mark.parametrize(
    ("changes", "waited_s", "expected"),
    [
        ({}, 30, False),  # not demanded
        (STARTING, 9, None),
        (STARTING, 10, None),  # start_limit_s 10
        (STARTING, 10.001, True),
        (RUNNING_ON_LOAD, 30, False),  # ready
        ({"gs": {"breaker_status": NORMAL_BITS | FAIL_TO_START}}, 0, True),  # the controller says so
    ],
)
def test_generator_start_failed(
    site: Site, state: LiveState, changes: Changes, waited_s: float, expected: bool | None
) -> None:
    poll(state, 0, int(waited_s), changes)
    f = found(site, state, at(waited_s), AlarmType.generator_start_failed)
    assert verdict(f, "gen-1") is expected
    if expected:
        assert f["gen-1"].severity is Severity.critical


def test_generator_start_failed_quiet_when_readiness_is_unknown(site: Site, state: LiveState) -> None:
    available: Changes = {**GRID_A_LOST, "gs": {"engine_state": 1, "breaker_status": START_DEMAND | GEN_AVAILABLE}}
    poll(state, 0, 30, available)
    state.apply(Reading(device="gs", point="engine_state", value=None, unit="", ts=at(30.1), quality=Quality.bad))
    assert verdict(found(site, state, at(30.2), AlarmType.generator_start_failed), "gen-1") is None


# -- generator_overload -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("watts", "expected", "percent"),
    [(150_000, False, 75.0), (200_000, False, 100.0), (200_100, True, 100.05), (260_000, True, 130.0)],
)
def test_generator_overload(site: Site, state: LiveState, watts: float, expected: bool, percent: float) -> None:
    poll(state, 0, 0, {**RUNNING_ON_LOAD, "m-g": {"power": float(watts)}})
    f = found(site, state, at(0.2), AlarmType.generator_overload)["gen-1"]
    assert (f.active, f.value, f.limit, f.severity) == (expected, percent, 100.0, Severity.high)


OVERLOAD_ON_DELAY_S = DEFAULT_CONFIG[AlarmType.generator_overload].on_delay_s


@pytest.mark.parametrize(
    ("held_s", "raised"),
    [(0.0, False), (OVERLOAD_ON_DELAY_S - 1, False), (OVERLOAD_ON_DELAY_S - 0.001, False), (OVERLOAD_ON_DELAY_S, True)],
)
def test_generator_overload_raises_once_sustained_for_its_on_delay(
    site: Site, state: LiveState, held_s: float, raised: bool
) -> None:
    """The rule fires on every poll above rating; the alarm needs it to last the type's on-delay."""
    assert OVERLOAD_ON_DELAY_S > 0
    engine = AlarmEngine()  # the shipped configuration
    overload: Changes = {**RUNNING_ON_LOAD, "m-g": {"power": 210_000.0}}
    checks = [float(t) for t in range(int(held_s) + 1)] + [held_s]
    for t in checks:
        poll(state, t, t, overload)
        engine.update(evaluate(site, state, at(t), subjects=[SUPPLY]), at(t))
    alarms = [a for a in engine.active() if a.type == AlarmType.generator_overload]
    assert bool(alarms) is raised
    if raised:
        assert (alarms[0].subject, alarms[0].raised_at, alarms[0].value) == ("gen-1", at(held_s), 105.0)


def test_generator_overload_quiet_without_power(site: Site, state: LiveState) -> None:
    assert found(site, state, T0, AlarmType.generator_overload) == {}


# -- lit_empty_room ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("occupied", "lights", "elapsed_s", "expected"),
    [
        (False, True, 299, None),
        (False, True, 300, None),  # empty_room_delay_s 300
        (False, True, 300.001, True),
        (True, True, 3600, False),
        (False, False, 3600, False),
        (None, True, 3600, None),  # no occupancy data
    ],
)
def test_lit_empty_room(
    site: Site, state: LiveState, occupied: bool | None, lights: bool, elapsed_s: float, expected: bool | None
) -> None:
    if occupied is not None:
        feed(state, T0, "r1-occ", occupancy=occupied)
    feed(state, T0, "r1-light", on=lights)
    f = found(site, state, at(elapsed_s), AlarmType.lit_empty_room)
    assert verdict(f, "r1") is expected
    if expected:
        assert (f["r1"].severity, f["r1"].value) == (Severity.low, round(elapsed_s, 1))


@pytest.mark.parametrize("room", ["c1", "srv"])
def test_lit_empty_room_checks_corridors_and_server_room_lights(site: Site, state: LiveState, room: str) -> None:
    feed(state, T0, f"{room}-occ", occupancy=False)
    feed(state, T0, f"{room}-light", on=True)
    assert verdict(found(site, state, at(301), AlarmType.lit_empty_room), room) is True


# Each office rule in its firing state in room r1 at t=700 (every delay has run out). The room has
# central heating, so the 17 °C heating rule applies to it.
FIRING: dict[AlarmType, dict[str, dict[str, Value]]] = {
    AlarmType.lit_empty_room: {"r1-occ": {"occupancy": False}, "r1-light": {"on": True}},
    AlarmType.ac_too_cold: {"r1-ac": {"system_mode": "cool", "local_temperature": 24.0, "cooling_setpoint": 22.0}},
    AlarmType.ac_heating_too_warm: {"r1-ac": {"system_mode": "heat", "local_temperature": 22.0}},
    AlarmType.ac_door_open: {"r1-ac": {"system_mode": "cool"}, "r1-door": {"contact": False}},
    AlarmType.high_power_appliance: {"r1-plug": {"on": True, "power": 2000.0}},
    AlarmType.ac_left_on: {"r1-occ": {"occupancy": False}, "r1-ac": {"system_mode": "fan_only"}},
    AlarmType.lit_in_daylight: {"r1-occ": {"occupancy": True, "illuminance": 1200.0}, "r1-light": {"on": True}},
}


@pytest.mark.parametrize("kind", list(FIRING))
@pytest.mark.parametrize("until_s", [None, 7200, 700.001])
def test_overrides_never_silence_an_office_rule(kind: AlarmType, until_s: float | None) -> None:
    """An override keeps the after-hours sweeps away; every office rule still runs (changed in issue 16:
    overrides used to make the office alarms of their room inactive)."""
    site = make_site(central_heating=True)
    state = LiveState(site)
    for device, points in FIRING[kind].items():
        feed(state, T0, device, **points)
    overrides = {} if until_s is None else {"r1": at(until_s)}
    f = found(site, state, at(700), kind, overrides=overrides)
    subject = "r1-plug" if kind is AlarmType.high_power_appliance else "r1"
    assert verdict(f, subject) is True
    assert "override" not in f[subject].message


# -- ac_too_cold / ac_heating_too_warm ---------------------------------------------------------------


def _ac(state: LiveState, **points: Value) -> None:
    feed(state, T0, "r1-ac", **points)


@pytest.mark.parametrize(
    ("points", "expected", "value", "limit"),
    [
        ({"system_mode": "cool", "local_temperature": 26.0, "cooling_setpoint": 26.0}, True, 26.0, 26.0),
        ({"system_mode": "cool", "local_temperature": 26.1, "cooling_setpoint": 26.0}, False, 26.1, 26.0),
        ({"system_mode": "cool", "local_temperature": 30.0, "cooling_setpoint": 25.9}, True, 25.9, None),
        ({"system_mode": "cool", "local_temperature": 30.0, "cooling_setpoint": 26.0}, False, 30.0, 26.0),
        ({"system_mode": "auto", "running_state": "idle", "local_temperature": 24.0}, False, None, None),
        ({"system_mode": "auto", "running_state": "cool", "local_temperature": 24.0}, True, 24.0, 26.0),
        ({"system_mode": "heat", "local_temperature": 20.0, "cooling_setpoint": 22.0}, False, None, None),
        ({"system_mode": "off", "local_temperature": 20.0, "cooling_setpoint": 18.0}, False, None, None),
        ({"system_mode": "cool"}, None, None, None),  # no temperature, no setpoint
    ],
)
def test_ac_too_cold(
    site: Site,
    state: LiveState,
    points: dict[str, Value],
    expected: bool | None,
    value: float | None,
    limit: float | None,
) -> None:
    _ac(state, **points)
    f = found(site, state, T0, AlarmType.ac_too_cold)
    assert verdict(f, "r1") is expected
    if expected is not None:
        assert (f["r1"].value, f["r1"].limit) == (value, limit)


@pytest.mark.parametrize(
    ("points", "expected", "value"),
    [
        ({"system_mode": "heat", "local_temperature": 17.0}, True, 17.0),
        ({"system_mode": "heat", "local_temperature": 16.9}, False, 16.9),
        ({"system_mode": "auto", "running_state": "heat", "local_temperature": 18.0}, True, 18.0),
        ({"system_mode": "cool", "local_temperature": 30.0}, False, None),
        ({"system_mode": "heat"}, None, None),
    ],
)
def test_ac_heating_too_warm(points: dict[str, Value], expected: bool | None, value: float | None) -> None:
    site = make_site(central_heating=True)
    state = LiveState(site)
    _ac(state, **points)
    f = found(site, state, T0, AlarmType.ac_heating_too_warm)
    assert verdict(f, "r1") is expected
    if expected is not None:
        assert f["r1"].value == value


@pytest.mark.parametrize("kind", [AlarmType.ac_too_cold, AlarmType.ac_heating_too_warm, AlarmType.ac_door_open])
def test_server_rooms_never_raise_cooling_alarms(site: Site, state: LiveState, kind: AlarmType) -> None:
    feed(state, T0, "srv-ac", system_mode="cool", local_temperature=18.0, cooling_setpoint=18.0)
    assert "srv" not in found(site, state, at(3600), kind)


# -- ac_door_open -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "closed", "elapsed_s", "expected"),
    [
        ("cool", False, 120, None),  # door_open_delay_s 120
        ("cool", False, 120.001, True),
        ("heat", False, 600, True),
        ("off", False, 600, False),
        ("cool", True, 600, False),
    ],
)
def test_ac_door_open(
    site: Site, state: LiveState, mode: str, closed: bool, elapsed_s: float, expected: bool | None
) -> None:
    _ac(state, system_mode=mode)
    feed(state, T0, "r1-door", contact=closed)
    assert verdict(found(site, state, at(elapsed_s), AlarmType.ac_door_open), "r1") is expected


def test_ac_door_open_needs_a_contact_sensor() -> None:
    data = site_dict()
    data["rooms"][0]["devices"].remove("r1-door")
    site = Site.model_validate(data)
    state = LiveState(site)
    _ac(state, system_mode="cool")
    assert found(site, state, at(600), AlarmType.ac_door_open) == {}


# -- high_power_appliance ---------------------------------------------------------------------------


@pytest.mark.parametrize(("watts", "expected"), [(0.0, False), (1200.0, False), (1200.1, True), (2000.0, True)])
def test_high_power_appliance(site: Site, state: LiveState, watts: float, expected: bool) -> None:
    feed(state, T0, "r1-plug", on=True, power=watts)
    f = found(site, state, T0, AlarmType.high_power_appliance)["r1-plug"]
    assert (f.active, f.value, f.limit, f.severity) == (expected, watts, 1200.0, Severity.warning)


def test_high_power_appliance_ignores_critical_plugs(site: Site, state: LiveState) -> None:
    feed(state, T0, "srv-ups", on=True, power=3000.0)
    assert found(site, state, T0, AlarmType.high_power_appliance) == {}


def test_high_power_appliance_quiet_without_data_even_under_override(site: Site, state: LiveState) -> None:
    assert found(site, state, T0, AlarmType.high_power_appliance, overrides={"r1": at(60)}) == {}


# -- device_offline and findings from outside ------------------------------------------------------


@pytest.mark.parametrize(
    ("device", "online", "expected", "severity"),
    [
        ("ats", False, True, Severity.high),
        ("m-dept", False, True, Severity.warning),
        ("r1-occ", False, True, Severity.warning),
        ("ats", True, False, Severity.high),
        ("gs", None, None, None),  # no report from the driver yet
    ],
)
def test_device_offline(
    site: Site, state: LiveState, device: str, online: bool | None, expected: bool | None, severity: Severity | None
) -> None:
    if online is not None:
        state.set_online(device, online, T0)
    f = found(site, state, T0, AlarmType.device_offline)
    assert verdict(f, device) is expected
    if severity is not None:
        assert f[device].severity is severity


def test_outside_findings() -> None:
    failed = shutdown_failed("r1-ac", failed=True, detail="readback still cool")
    assert (failed.type, failed.subject, failed.active, failed.severity) == (
        AlarmType.shutdown_failed, "r1-ac", True, Severity.warning,
    )  # fmt: skip
    assert "readback still cool" in failed.message
    assert not shutdown_failed("r1-ac", failed=False).active
    dropped = telemetry_dropped("t", dropped=12)
    assert (dropped.type, dropped.active, dropped.value) == (AlarmType.telemetry_dropped, True, 12)
    assert not telemetry_dropped("t", dropped=0).active


# -- evaluate -------------------------------------------------------------------------------------


def test_evaluate_scopes_to_touched_subjects(site: Site, state: LiveState) -> None:
    poll(state, 0, 0)
    feed(state, at(0.1), "r1-plug", on=True, power=10.0)
    feed(state, at(0.1), "c1-occ", occupancy=True)
    feed(state, at(0.1), "c1-light", on=True)
    state.set_online("m-dept", False, at(0.1))

    def subjects(scope: set[str] | None) -> set[tuple[str, str]]:
        return {(f.type.value, f.subject) for f in evaluate(site, state, at(0.2), subjects=scope)}

    everything = subjects(None)
    assert subjects({"r1"}) == {("high_power_appliance", "r1-plug")}
    assert subjects({"c1"}) == {("lit_empty_room", "c1")}
    assert subjects({"m-dept"}) == {("device_offline", "m-dept")}
    supply = subjects({SUPPLY})
    assert {t for t, _ in supply} == {
        "source_transfer_failed", "backfeed", "redundancy_lost", "generator_start_failed", "generator_overload",
        "grid_lost", "security_load_exceeded",
        "ats_not_auto",
    }  # fmt: skip
    assert supply | subjects({"r1", "c1", "m-dept"}) == everything
    assert subjects(set()) == set()


def test_evaluate_passes_outside_findings_through(site: Site, state: LiveState) -> None:
    extra = [telemetry_dropped("t", dropped=3)]
    assert evaluate(site, state, T0, subjects=(), extra=extra) == extra


def test_rules_are_pure(site: Site, state: LiveState) -> None:
    poll(state, 0, 0, GRID_A_LOST)
    feed(state, at(0.1), "r1-plug", on=True, power=1500.0)
    now = at(0.2)
    assert evaluate(site, state, now) == evaluate(site, state, now)
    assert evaluate(site, state, now + timedelta(0)) == evaluate(site, state, now)
