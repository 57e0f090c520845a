"""Supply rules of issue 15: grid_lost, unknown is not available, security_load_exceeded; injected time only."""

from __future__ import annotations

from dataclasses import replace

import pytest

from drivers.types import Quality, Reading, Value
from service.alarms.engine import DEFAULT_CONFIG, AlarmEngine
from service.alarms.record import AlarmState, Severity
from service.alarms.rules import AlarmType, evaluate
from service.config.site import Site
from service.live.state import GEN_AVAILABLE, MAINS_BREAKER_CLOSED, START_DEMAND, SUPPLY, LiveState
from tests.service.test_rules import ALL_LOST, GEN_FEEDS, GRID_A_LOST, Changes, found, poll, verdict
from tests.service.test_state import at, feed, make_site

GRID_B_LOST: Changes = {"m-b": {"voltage_l1": 0.0, "power": 0.0}, "ats": {"source2_state": 0}}
GRID_A_BACK: Changes = {"m-a": {"voltage_l1": 230.0, "power": 0.0}, "ats": {"source2_state": 0}}


def on_generator(kw: float, **more: dict[str, Value]) -> Changes:
    """Both feeders lost and the load on gen-1 (AMF: generator breaker closed, mains breaker open)."""
    return {
        **ALL_LOST,
        "gs": {"engine_state": 3, "breaker_status": GEN_FEEDS | START_DEMAND, "power": kw * 1000},
        "m-g": {"power": kw * 1000},
        **more,
    }


@pytest.fixture
def site() -> Site:
    """The test site (first grade, grid-a and grid-b behind ats-1 with gen-1)."""
    return make_site()


@pytest.fixture
def state(site: Site) -> LiveState:
    """Its live state, empty."""
    return LiveState(site)


# -- grid_lost ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "expected", "where"),
    [
        ({}, False, "grid feeds the load (load on grid-a)"),
        (GRID_A_LOST, None, None),  # grid-b is there; the switch has not moved yet: not grid_lost's business
        ({**GRID_A_LOST, "ats": {"source1_state": 0, "position": 3}}, False, "load on grid-b"),
        (ALL_LOST, True, "dead bus (no source feeds the load)"),
        (on_generator(85.0), True, "load on gen-1 at 85.0 kW"),
        # grid-a is back but the switch waits out its retransfer delay: still on the generator, still active
        (
            on_generator(85.0, **GRID_A_BACK),
            None,
            None,
        ),
    ],
)
def test_grid_lost(site: Site, state: LiveState, changes: Changes, expected: bool | None, where: str | None) -> None:
    poll(state, 0, 0, changes)
    f = found(site, state, at(0.2), AlarmType.grid_lost)
    assert verdict(f, "t") is expected
    if expected is not None:
        assert where is not None and where in f["t"].message
        assert f["t"].severity is Severity.critical


def test_grid_lost_value_is_the_generators_kw_and_follows_it(site: Site, state: LiveState) -> None:
    engine = AlarmEngine(DEFAULT_CONFIG)
    poll(state, 0, 0, ALL_LOST)
    (raised,) = [
        t for t in engine.update(evaluate(site, state, at(0), subjects=[SUPPLY]), at(0)) if t.alarm.type == "grid_lost"
    ]
    assert raised.alarm.value is None and "dead bus" in raised.alarm.message  # no on-delay: raised at once
    engine.take_updated()
    poll(state, 1, 1, on_generator(120.0))
    assert not [
        t for t in engine.update(evaluate(site, state, at(1), subjects=[SUPPLY]), at(1)) if t.alarm.type == "grid_lost"
    ]
    (updated,) = [a for a in engine.take_updated() if a.type == "grid_lost"]
    assert (updated.value, updated.id) == (120.0, raised.alarm.id)
    assert "load on gen-1 at 120.0 kW" in updated.message


def test_grid_lost_is_never_raised_on_an_unknown_source(site: Site, state: LiveState) -> None:
    poll(state, 0, 0, GRID_A_LOST)
    state.set_online("m-b", False, at(0.1))  # grid-b's meter gone: grid-b is unknown, not lost
    assert verdict(found(site, state, at(0.2), AlarmType.grid_lost), "t") is None
    assert state.supply(at(0.2)).sources[1].available is None


# -- unknown is not available -----------------------------------------------------------------------


@pytest.mark.parametrize("silence", ["offline", "bad"])
def test_a_source_with_a_silent_meter_is_unknown_and_decides_nothing(
    site: Site, state: LiveState, silence: str
) -> None:
    poll(state, 0, 0)
    if silence == "offline":
        state.set_online("m-b", False, at(0.1))
    else:
        state.apply(Reading(device="m-b", point="voltage_l1", value=None, unit="", ts=at(0.1), quality=Quality.bad))
    assert [s.to_dict() for s in state.supply(at(0.2)).sources] == [
        {"id": "grid-a", "available": True, "voltage_v": 230.0},
        {"id": "grid-b", "available": None, "voltage_v": None},
    ]
    # one sure source of two: redundancy is neither raised nor cleared on a guess about grid-b
    assert verdict(found(site, state, at(0.2), AlarmType.redundancy_lost), "t") is None


def test_a_stale_meter_makes_its_source_unknown(site: Site, state: LiveState) -> None:
    poll(state, 0, 0)
    # The switch goes on reporting grid-b available; m-b's last voltage (t=0) is older than 3 polls of 1 s.
    for t in range(1, 5):
        feed(state, at(t), "ats", position=2, source1_state=2, source2_state=2)
        feed(state, at(t), "m-a", voltage_l1=230.0, power=120_000.0)
    assert {s.id: s.available for s in state.supply(at(3.0)).sources} == {"grid-a": True, "grid-b": True}
    assert {s.id: s.available for s in state.supply(at(3.01)).sources} == {"grid-a": True, "grid-b": None}


def test_a_silent_switch_status_makes_its_source_unknown(site: Site, state: LiveState) -> None:
    poll(state, 0, 0)
    state.apply(Reading(device="ats", point="source2_state", value=None, unit="", ts=at(0.1), quality=Quality.bad))
    assert {s.id: s.available for s in state.supply(at(0.2)).sources} == {"grid-a": True, "grid-b": None}


def test_redundancy_lost_says_unknown_in_its_message(site: Site, state: LiveState) -> None:
    poll(state, 0, 0, GRID_A_LOST)
    state.set_online("m-b", False, at(0.1))
    # grid-a lost, grid-b unknown: short of two sources whatever grid-b is, so raised, saying why
    f = found(site, state, at(0.2), AlarmType.redundancy_lost)["t"]
    assert (f.active, f.value, f.page) == (True, 0, True)
    assert "0 of 2 sources available (none)" in f.message and "unknown: grid-b" in f.message


# -- redundancy_lost and grid_lost --------------------------------------------------------------------


def test_redundancy_lost_is_not_a_second_page_while_grid_lost_is_active(site: Site, state: LiveState) -> None:
    config = {k: replace(v, on_delay_s=0.0) for k, v in DEFAULT_CONFIG.items()}
    engine = AlarmEngine(config)

    def step(t: float, changes: Changes) -> list[tuple[str, str, bool]]:
        poll(state, t, t, changes)
        return [
            (tr.alarm.type, tr.to_state.value, tr.page)
            for tr in engine.update(evaluate(site, state, at(t), subjects=[SUPPLY]), at(t))
            if tr.alarm.type in ("redundancy_lost", "grid_lost")
        ]

    assert step(0, {}) == []
    assert step(1, GRID_A_LOST) == [("redundancy_lost", "active_unacked", True)]  # one page
    redundancy = next(a for a in engine.active() if a.type == "redundancy_lost")
    engine.ack(redundancy.id, "electrician", at(2))
    engine.take_updated()
    # grid-b lost too: grid_lost is the new page; redundancy_lost stays acknowledged, its message follows
    assert step(3, on_generator(90.0)) == [("grid_lost", "active_unacked", True)]
    (updated,) = [a for a in engine.take_updated() if a.type == "redundancy_lost"]
    assert (updated.state, updated.value, updated.severity) == (AlarmState.active_acked, 0, Severity.high)
    assert "0 of 2 sources available (none)" in updated.message and "grid_lost" in updated.message


def test_both_grids_lost_at_once_journal_redundancy_lost_without_a_page(site: Site, state: LiveState) -> None:
    engine = AlarmEngine({k: replace(v, on_delay_s=0.0) for k, v in DEFAULT_CONFIG.items()})
    poll(state, 0, 0, ALL_LOST)
    moves = {
        t.alarm.type: (t.to_state.value, t.page)
        for t in engine.update(evaluate(site, state, at(0), subjects=[SUPPLY]), at(0))
    }
    assert moves["grid_lost"] == ("active_unacked", True)
    assert moves["redundancy_lost"] == ("active_unacked", False)


# -- security_load_exceeded -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, False),  # generator stopped, off load
        (on_generator(166.666), False),  # rated 200 kW / 1.2 = 166.67 kW
        (on_generator(166.667), True),
        (on_generator(199.0), True),
        # running on test with its breaker open: not carrying the load
        (
            {"gs": {"engine_state": 3, "breaker_status": MAINS_BREAKER_CLOSED | GEN_AVAILABLE}, "m-g": {"power": 0.0}},
            False,
        ),
    ],
)
def test_security_load_exceeded(site: Site, state: LiveState, changes: Changes, expected: bool | None) -> None:
    poll(state, 0, 0, changes)
    f = found(site, state, at(0.2), AlarmType.security_load_exceeded)
    assert verdict(f, "gen-1") is expected
    assert f["gen-1"].severity is Severity.warning
    if expected:
        assert f["gen-1"].limit == 83.33
        assert "rated 200 kW / 1.2" in f["gen-1"].message


def test_security_load_exceeded_quiet_while_the_breaker_is_unknown(site: Site, state: LiveState) -> None:
    poll(state, 0, 0, on_generator(180.0))
    state.apply(Reading(device="gs", point="breaker_status", value=None, unit="", ts=at(0.1), quality=Quality.bad))
    assert verdict(found(site, state, at(0.2), AlarmType.security_load_exceeded), "gen-1") is None


def test_security_load_exceeded_needs_its_on_delay(site: Site, state: LiveState) -> None:
    engine = AlarmEngine()  # the shipped configuration
    delay_s = DEFAULT_CONFIG[AlarmType.security_load_exceeded].on_delay_s
    assert delay_s > 0
    for t in range(int(delay_s) + 1):
        poll(state, t, t, on_generator(180.0))
        engine.update(evaluate(site, state, at(t), subjects=[SUPPLY]), at(t))
        raised = [a for a in engine.active() if a.type == AlarmType.security_load_exceeded]
        assert bool(raised) is (t >= delay_s)
    assert raised[0].value == 90.0
