"""Supply-side equipment: who may command it, its protective role, and the alarms that watch it
(generator_not_auto, ats_not_auto, critical_load_off) as tables with injected time."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from drivers.types import Quality, Reading, Value
from service.alarms.engine import DEFAULT_CONFIG, AlarmEngine
from service.alarms.record import Severity
from service.alarms.rules import AlarmType, Finding, critical_loads, evaluate
from service.config.compliance import supply_roles
from service.config.site import DeviceRole, Site
from service.control.path import ReasonRequired, supply_refusal
from service.live.state import SUPPLY, LiveState
from tests.service.test_state import T0, at, feed, make_site, site_dict, supply_normal

GEN_MODES = {"stop": 0, "auto": 1, "manual": 2, "test on load": 3, "auto with manual restore": 4}


def found(site: Site, state: LiveState, now: datetime, kind: AlarmType) -> dict[str, Finding]:
    return {f.subject: f for f in evaluate(site, state, now) if f.type is kind}


@pytest.fixture
def site() -> Site:
    return make_site()


@pytest.fixture
def state(site: Site) -> LiveState:
    return LiveState(site)


# -- which devices are supply-side equipment, and their role -------------------------------------


def test_supply_equipment_and_its_protective_default_role(site: Site) -> None:
    assert site.supply_equipment() == {
        "m-a": "meter of source grid-a",
        "m-b": "meter of source grid-b",
        "gs": "controller of generator gen-1",
        "m-g": "meter of generator gen-1",
        "ats": "controller of transfer switch ats-1",
    }
    for device in site.supply_equipment():
        assert site.device(device).role is DeviceRole.supply
    assert site.device("m-dept").role is DeviceRole.sensor  # a department meter is not supply-side


def test_a_supply_profile_makes_a_device_supply_side_even_if_no_entry_names_it() -> None:
    data = site_dict()
    data["devices"].append({"id": "gs2", "driver": "modbus", "profile": "dse-gencomm", "host": "127.0.0.1", "port": 9})
    site = Site.model_validate(data)
    assert site.device("gs2").role is DeviceRole.supply
    assert site.supply_equipment()["gs2"] == "profile dse-gencomm"


@pytest.mark.parametrize(("role", "status"), [("critical", "PASS"), ("sensor", "WARN"), ("supply", "PASS")])
def test_an_explicit_role_is_kept_and_check_lists_it(role: str, status: str) -> None:
    data = site_dict()
    gs = next(d for d in data["devices"] if d["id"] == "gs")
    gs["role"] = role
    site = Site.model_validate(data)
    assert site.device("gs").role.value == role
    row = next(r for r in supply_roles(site) if r.detail.startswith("gs "))
    assert (row.rule, row.status) == ("supply.role", status)
    assert f"role {role}" in row.detail
    assert len(supply_roles(site)) == 5


@pytest.mark.parametrize(
    ("device", "role", "reason", "refused"),
    [
        ("gs", "operator", "test run", True),
        ("gs", "viewer", "test run", True),
        ("gs", None, "a job", True),  # automation never commands supply-side equipment
        ("ats", "operator", None, True),
        ("gs", "admin", "monthly test run", False),
        ("r1-light", "operator", None, False),  # office devices: not this rule's business
    ],
)
def test_supply_refusal(site: Site, device: str, role: str | None, reason: str | None, refused: bool) -> None:
    why = supply_refusal(site, device, role, reason)
    assert (why is not None) is refused
    if refused:
        assert "only an admin" in (why or "")


@pytest.mark.parametrize("reason", [None, "", "   "])
def test_an_admin_must_give_a_reason(site: Site, reason: str | None) -> None:
    with pytest.raises(ReasonRequired, match="reason"):
        supply_refusal(site, "gs", "admin", reason)


# -- generator_not_auto ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("grade", "mode", "expected"),
    [
        ("first", "auto", False),
        ("first", "manual", True),
        ("first", "stop", True),
        ("first", "test on load", True),
        ("first", "auto with manual restore", False),  # still starts by itself on a mains failure
        ("special", "manual", True),
        ("second", "manual", None),  # the grade does not require an emergency supply
        ("ordinary", "manual", None),
    ],
)
def test_generator_not_auto(grade: str, mode: str, expected: bool | None) -> None:
    site = make_site(grade=grade)
    state = LiveState(site)
    supply_normal(state, T0, {"gs": {"control_mode": GEN_MODES[mode]}})
    finding = found(site, state, T0, AlarmType.generator_not_auto).get("gen-1")
    assert (None if finding is None else finding.active) is expected
    if finding is not None:
        assert (finding.severity, finding.value) == (Severity.high, mode)
        assert mode in finding.message


def test_generator_not_auto_quiet_without_a_good_mode(site: Site, state: LiveState) -> None:
    supply_normal(state, T0)  # no control_mode read
    assert found(site, state, T0, AlarmType.generator_not_auto) == {}
    state.apply(Reading(device="gs", point="control_mode", value=None, unit="", ts=T0, quality=Quality.bad))
    assert found(site, state, T0, AlarmType.generator_not_auto) == {}
    feed(state, T0, "gs", control_mode=2)
    assert found(site, state, at(10), AlarmType.generator_not_auto) == {}  # 10 s old at poll 0.5 s: stale


ON_DELAY_S = DEFAULT_CONFIG[AlarmType.generator_not_auto].on_delay_s


@pytest.mark.parametrize(("held_s", "raised"), [(0, False), (ON_DELAY_S - 1, False), (ON_DELAY_S, True)])
def test_generator_not_auto_raises_after_its_on_delay_and_clears_in_auto(
    site: Site, state: LiveState, held_s: float, raised: bool
) -> None:
    assert ON_DELAY_S == 60.0
    engine = AlarmEngine()
    for t in range(int(held_s) + 1):
        supply_normal(state, at(t), {"gs": {"control_mode": 2}})
        engine.update(evaluate(site, state, at(t), subjects=[SUPPLY]), at(t))
    alarms = [a for a in engine.active() if a.type == AlarmType.generator_not_auto]
    assert bool(alarms) is raised
    if raised:
        auto_s = held_s + 1
        supply_normal(state, at(auto_s), {"gs": {"control_mode": 1}})
        engine.update(evaluate(site, state, at(auto_s), subjects=[SUPPLY]), at(auto_s))
        cleared_s = auto_s + DEFAULT_CONFIG[AlarmType.generator_not_auto].off_delay_s
        supply_normal(state, at(cleared_s), {"gs": {"control_mode": 1}})
        engine.update(evaluate(site, state, at(cleared_s), subjects=[SUPPLY]), at(cleared_s))
        (alarm,) = [a for a in engine.active() if a.type == AlarmType.generator_not_auto]
        assert (alarm.active, alarm.cleared_at) == (False, at(cleared_s))


# -- ats_not_auto ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "expected", "mode"),
    [(1, False, "auto"), (0, True, "manual"), (3, True, "inhibited"), (2, True, "test")],
)
def test_ats_not_auto(site: Site, state: LiveState, code: int, expected: bool, mode: str) -> None:
    supply_normal(state, T0, {"ats": {"mode": code}})
    finding = found(site, state, T0, AlarmType.ats_not_auto)["ats-1"]
    assert (finding.active, finding.value, finding.severity) == (expected, mode, Severity.high)


# -- critical_load_off -----------------------------------------------------------------------------


def test_critical_loads_are_protected_roles_and_server_room_equipment(site: Site) -> None:
    # srv-light and srv-occ are in the server room too, but a dark server room loses no load
    assert critical_loads(site) == ["srv-ac", "srv-ups"]


@pytest.mark.parametrize(
    ("device", "points", "expected", "value"),
    [
        ("srv-ups", {"on": True, "power": 420.0}, False, "on"),
        ("srv-ups", {"on": False, "power": 0.0}, True, "off"),
        ("srv-ups", {"on": True, "power": 0.0}, True, 0.0),  # relay on, load gone
        ("srv-ups", {"on": True, "power": 1.0}, True, 1.0),
        ("srv-ups", {"on": True, "power": 1.5}, False, "on"),
        ("srv-ups", {"on": True}, False, "on"),  # no power reading: the relay decides
        ("srv-ac", {"system_mode": "cool", "power": 0.0}, False, "cool"),  # an idle compressor is no loss
        ("srv-ac", {"system_mode": "off"}, True, "off"),
    ],
)
def test_critical_load_off(
    site: Site, state: LiveState, device: str, points: dict[str, Value], expected: bool, value: Any
) -> None:
    feed(state, T0, device, **points)
    finding = found(site, state, T0, AlarmType.critical_load_off)[device]
    assert (finding.active, finding.value, finding.severity) == (expected, value, Severity.critical)
    if expected:
        assert "without a command from wattkeeper" in finding.message


def test_critical_load_off_waits_out_a_supply_interruption(site: Site, state: LiveState) -> None:
    """grid-a lost with the switch still on it (its transfer delay): the UPS plug draws nothing, which
    is the supply's doing, not someone switching a critical load off; once fed again 0 W counts."""
    supply_normal(state, T0, {"m-a": {"voltage_l1": 0.0, "power": 0.0}, "ats": {"source1_state": 0}})
    feed(state, T0, "srv-ups", on=True, power=0.0)
    assert AlarmType.critical_load_off not in {f.type for f in evaluate(site, state, T0) if f.subject == "srv-ups"}
    t1 = at(5)
    supply_normal(state, t1, {"m-a": {"voltage_l1": 0.0, "power": 0.0}, "ats": {"source1_state": 0, "position": 3}})
    t2 = at(8)
    feed(state, t2, "srv-ups", on=True, power=0.0)  # a report after the load was fed again: the load is gone
    finding = found(site, state, t2, AlarmType.critical_load_off)["srv-ups"]
    assert (finding.active, finding.value) == (True, 0.0)


def test_critical_load_off_quiet_without_data_and_for_office_devices(site: Site, state: LiveState) -> None:
    feed(state, T0, "r1-plug", on=False)
    feed(state, T0, "srv-light", on=False)
    assert found(site, state, T0, AlarmType.critical_load_off) == {}


def test_critical_load_off_raises_after_its_30_s_on_delay(site: Site, state: LiveState) -> None:
    engine = AlarmEngine()
    touched = feed(state, T0, "srv-ups", on=False)
    engine.update(evaluate(site, state, T0, subjects=touched), T0)
    engine.update(evaluate(site, state, at(29), subjects=touched), at(29))
    assert not [a for a in engine.active() if a.type == AlarmType.critical_load_off]
    engine.update(evaluate(site, state, at(31), subjects=touched), at(31))
    (alarm,) = [a for a in engine.active() if a.type == AlarmType.critical_load_off]
    assert (alarm.subject, alarm.severity) == ("srv-ups", Severity.critical)
