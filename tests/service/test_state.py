"""Live state: staleness, ingest, room and supply views, condition timing; injected time only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from drivers.types import Quality, Reading, Value
from service.clock import ManualClock
from service.config.site import Site
from service.live.state import (
    AC_DOOR_OPEN,
    FAIL_TO_START,
    GEN_AVAILABLE,
    GEN_BREAKER_CLOSED,
    LIT_EMPTY,
    MAINS_AVAILABLE,
    MAINS_BREAKER_CLOSED,
    START_DEMAND,
    START_PENDING,
    SUPPLY,
    UNPOWERED,
    UNPOWERED_WITH_ALTERNATIVE,
    LiveState,
    tri_and,
    tri_any,
    tri_not,
)

T0 = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)  # Monday 10:00 in Asia/Shanghai


def at(seconds: float) -> datetime:
    """T0 plus seconds."""
    return T0 + timedelta(seconds=seconds)


def _modbus(dev_id: str, profile: str, port: int, poll_s: float = 1.0, **extra: Any) -> dict[str, Any]:
    return {
        "id": dev_id,
        "driver": "modbus",
        "profile": profile,
        "host": "127.0.0.1",
        "port": port,
        "poll_s": poll_s,
        **extra,
    }


def _mqtt(dev_id: str, profile: str, role: str = "sensor") -> dict[str, Any]:
    return {"id": dev_id, "driver": "mqtt", "profile": profile, "topic": f"t/{dev_id}", "role": role}


def site_dict() -> dict[str, Any]:
    """A small first-grade site: two feeders, one ATS, one generator; an office, a server room, a corridor."""
    return {
        "site": {
            "id": "t",
            "name": "Test",
            "timezone": "Asia/Shanghai",
            "grade": "first",
            "allowed_interruption_s": 10,
            "security_load_kw": 150,
            "interlock": "electrical",
        },
        "sources": [
            {"id": "grid-a", "substation": "east", "voltage_kv": 10, "meter": "m-a"},
            {"id": "grid-b", "substation": "west", "voltage_kv": 10, "meter": "m-b"},
        ],
        "generators": [{"id": "gen-1", "rated_kw": 200, "start_limit_s": 10, "device": "gs", "meter": "m-g"}],
        "transfer_switches": [{"id": "ats-1", "sources": ["grid-a", "grid-b", "gen-1"], "device": "ats"}],
        "departments": [{"id": "d", "name": "D"}],
        "rooms": [
            {
                "id": "r1",
                "name": "R1",
                "department": "d",
                "kind": "office",
                "devices": ["r1-occ", "r1-light", "r1-ac", "r1-plug", "r1-door"],
            },
            {
                "id": "srv",
                "name": "Server",
                "department": "d",
                "kind": "server",
                "devices": ["srv-ac", "srv-ups", "srv-light", "srv-occ"],
            },
            {"id": "c1", "name": "Corridor", "department": "d", "kind": "corridor", "devices": ["c1-occ", "c1-light"]},
        ],
        "devices": [
            _modbus("m-a", "sdm630", 1),
            _modbus("m-b", "sdm630", 2),
            _modbus("m-g", "sdm630", 3),
            _modbus("ats", "atys-pm", 4, poll_s=0.5),
            _modbus("gs", "dse-gencomm", 5, poll_s=0.5),
            _modbus("m-dept", "sdm630", 6),
            _mqtt("r1-occ", "z2m-occupancy"),
            _mqtt("r1-light", "tasmota-relay", "lighting"),
            _mqtt("r1-ac", "z2m-thermostat", "hvac"),
            _mqtt("r1-plug", "shelly-plug", "office_equipment"),
            _mqtt("r1-door", "z2m-contact"),
            _mqtt("srv-ac", "z2m-thermostat", "critical"),
            _mqtt("srv-ups", "shelly-plug", "critical"),
            _mqtt("srv-light", "tasmota-relay", "lighting"),
            _mqtt("srv-occ", "z2m-occupancy"),
            _mqtt("c1-occ", "z2m-occupancy"),
            _mqtt("c1-light", "tasmota-relay", "lighting"),
        ],
    }


def make_site(**site_overrides: Any) -> Site:
    """The test site with keys of the `site:` block replaced."""
    data = site_dict()
    data["site"].update(site_overrides)
    return Site.model_validate(data)


def feed(state: LiveState, t: datetime, device: str, **points: Value) -> frozenset[str]:
    """Apply one good reading per point; return the subjects touched."""
    touched: frozenset[str] = frozenset()
    for name, value in points.items():
        touched |= state.apply(Reading(device=device, point=name, value=value, unit="", ts=t))
    return touched


NORMAL_BITS = MAINS_BREAKER_CLOSED | MAINS_AVAILABLE


def supply_normal(
    state: LiveState, t: datetime, changes: dict[str, dict[str, Value]] | None = None, *, load_w: float = 120_000.0
) -> None:
    """One poll of every supply device: both feeders up, ATS at pos I, generator stopped, mains
    breaker closed; `changes` replaces points per device."""
    normal: dict[str, dict[str, Value]] = {
        "m-a": {"voltage_l1": 230.0, "power": load_w},
        "m-b": {"voltage_l1": 231.0, "power": 0.0},
        "m-g": {"power": 0.0},
        "ats": {"position": 2, "source1_state": 2, "source2_state": 2, "mode": 1},
        "gs": {"engine_state": 0, "breaker_status": NORMAL_BITS, "power": 0},
    }
    for device, points in normal.items():
        feed(state, t, device, **{**points, **(changes or {}).get(device, {})})


def quality(state: LiveState, device: str, point: str, now: datetime) -> Quality | None:
    """A point's quality at `now` (None if never read)."""
    p = state.point(device, point, now)
    return None if p is None else p.quality


@pytest.fixture
def state() -> LiveState:
    """Live state of the test site, empty."""
    return LiveState(make_site())


# -- three-valued logic ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], None),
        ([None], None),
        ([False], False),
        ([False, False], False),
        ([False, None], None),
        ([None, True], True),
        ([True, False], True),
    ],
)
def test_tri_any(values: list[bool | None], expected: bool | None) -> None:
    assert tri_any(values) is expected


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [(True, True, True), (True, False, False), (False, None, False), (None, True, None), (None, None, None)],
)
def test_tri_and(a: bool | None, b: bool | None, expected: bool | None) -> None:
    assert tri_and(a, b) is expected
    assert tri_and(b, a) is expected


def test_tri_not() -> None:
    assert (tri_not(True), tri_not(False), tri_not(None)) == (False, True, None)


# -- staleness ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("device", "point", "age_s", "quality"),
    [
        ("m-a", "power", 0.0, Quality.good),
        ("m-a", "power", 3.0, Quality.good),  # 3 x poll_s 1.0
        ("m-a", "power", 3.001, Quality.stale),
        ("ats", "position", 1.5, Quality.good),  # 3 x poll_s 0.5
        ("ats", "position", 1.51, Quality.stale),
        ("r1-plug", "power", 900.0, Quality.good),  # MQTT measured value: 3 x 300 s
        ("r1-plug", "power", 900.5, Quality.stale),
        ("r1-plug", "on", 900.5, Quality.good),  # MQTT state: sent on change only
        ("r1-occ", "occupancy", 25 * 3600.0, Quality.good),
        ("r1-occ", "occupancy", 25 * 3600.0 + 1, Quality.stale),
    ],
)
def test_staleness(state: LiveState, device: str, point: str, age_s: float, quality: Quality) -> None:
    state.apply(Reading(device=device, point=point, value=1.0 if point == "power" else True, unit="", ts=T0))
    p = state.point(device, point, at(age_s))
    assert p is not None
    assert p.quality is quality


def test_mqtt_report_interval_is_configurable() -> None:
    state = LiveState(make_site(), mqtt_report_interval_s=60.0)
    feed(state, T0, "r1-plug", power=5.0)
    assert quality(state, "r1-plug", "power", at(180)) is Quality.good
    assert quality(state, "r1-plug", "power", at(181)) is Quality.stale


def test_offline_device_values_are_stale_until_back_online(state: LiveState) -> None:
    clock = ManualClock(T0)
    feed(state, clock.now(), "r1-plug", power=10.0)
    assert state.set_online("r1-plug", False, clock.advance(1)) == frozenset({"r1-plug", "r1"})
    assert quality(state, "r1-plug", "power", clock.now()) is Quality.stale
    assert state.room("r1", clock.now()).plugs_w is None
    state.set_online("r1-plug", True, clock.advance(1))
    assert quality(state, "r1-plug", "power", clock.now()) is Quality.good
    assert state.room("r1", clock.now()).plugs_w == 10.0


def test_late_status_report_is_ignored(state: LiveState) -> None:
    state.set_online("gs", False, at(10))
    assert state.set_online("gs", True, at(5)) == frozenset()
    assert state.online("gs") is False


def test_bad_reading_replaces_value_and_is_never_a_number(state: LiveState) -> None:
    feed(state, T0, "m-a", voltage_l1=230.0)
    state.apply(Reading(device="m-a", point="voltage_l1", value=None, unit="V", ts=at(1), quality=Quality.bad))
    p = state.point("m-a", "voltage_l1", at(1))
    assert p is not None
    assert (p.value, p.quality) == (None, Quality.bad)
    assert state.supply(at(1)).sources[0].voltage_v is None


def test_late_reading_never_rolls_back(state: LiveState) -> None:
    feed(state, at(10), "m-a", power=5.0)
    assert feed(state, at(9), "m-a", power=7.0) == frozenset()
    assert [p.value for p in state.points(at(10))] == [5.0]


@pytest.mark.parametrize(
    ("device", "subjects"),
    [
        ("m-a", {SUPPLY}),
        ("ats", {SUPPLY}),
        ("gs", {SUPPLY}),
        ("m-g", {SUPPLY}),
        ("r1-plug", {"r1"}),
        ("c1-light", {"c1"}),
        ("m-dept", set()),  # a department meter feeds no view
        ("nope", set()),  # not in the site file
    ],
)
def test_apply_returns_touched_subjects(state: LiveState, device: str, subjects: set[str]) -> None:
    assert feed(state, T0, device, power=1.0) == frozenset(subjects)


def test_points_and_devices_for_the_api(state: LiveState) -> None:
    feed(state, T0, "m-a", power=1500.0)
    state.set_online("gs", False, T0)
    assert [p.to_dict() for p in state.points(at(1))] == [
        {"device": "m-a", "point": "power", "value": 1500.0, "unit": "", "ts": T0.isoformat(), "quality": "good"}
    ]
    views = {d.id: d.to_dict() for d in state.devices()}
    assert views["m-a"] == {
        "id": "m-a",
        "profile": "sdm630",
        "driver": "modbus",
        "online": True,
        "last_seen": T0.isoformat(),
    }
    assert views["gs"]["online"] is False
    assert views["r1-occ"] == {
        "id": "r1-occ",
        "profile": "z2m-occupancy",
        "driver": "mqtt",
        "online": False,
        "last_seen": None,
    }


# -- rooms ---------------------------------------------------------------------------------------


def test_room_view_matches_the_api_contract(state: LiveState) -> None:
    feed(state, T0, "r1-occ", occupancy=True, illuminance=420.0)
    feed(state, T0, "r1-light", on=True, power=40.0)
    feed(
        state,
        T0,
        "r1-ac",
        system_mode="cool",
        running_state="cool",
        local_temperature=27.5,
        cooling_setpoint=26.0,
        heating_setpoint=20.0,
        power=900.0,
    )
    feed(state, T0, "r1-plug", on=True, power=60.0)
    feed(state, T0, "r1-door", contact=False)
    assert state.room("r1", at(1)).to_dict() == {
        "id": "r1",
        "name": "R1",
        "department": "d",
        "kind": "office",
        "occupied": True,
        "lights_on": True,
        "temperature_c": 27.5,
        "ac": {"on": True, "mode": "cool", "setpoint_c": 26.0},
        "plugs_w": 60.0,
        "power_w": 1000.0,
        "door_open": True,
        "illuminance_lx": 420.0,
    }


def test_room_view_unknown_when_nothing_heard(state: LiveState) -> None:
    view = state.room("r1", T0)
    assert (view.occupied, view.lights_on, view.temperature_c, view.plugs_w, view.power_w, view.door_open) == (
        None,
        None,
        None,
        None,
        None,
        None,
    )
    assert view.ac is not None
    assert view.ac.to_dict() == {"on": None, "mode": None, "setpoint_c": None}
    assert state.room("c1", T0).to_dict()["ac"] is None
    assert [r.id for r in state.rooms(T0)] == ["r1", "srv", "c1"]


@pytest.mark.parametrize(
    ("mode", "running", "cooling", "heating", "setpoint"),
    [
        ("off", "cool", False, False, 25.0),
        ("cool", None, True, False, 25.0),
        ("cool", "idle", True, False, 25.0),
        ("heat", None, False, True, 21.0),
        ("auto", None, None, None, 25.0),
        ("auto", "cool", True, False, 25.0),
        ("auto", "heat", False, True, 25.0),
        ("auto", "idle", False, False, 25.0),
        ("dry", "cool", True, False, 25.0),
        ("fan_only", None, False, False, 25.0),
        (None, "cool", True, None, 25.0),
        (None, None, None, None, 25.0),
    ],
)
def test_ac_cooling_and_heating(
    state: LiveState, mode: str | None, running: str | None, cooling: bool | None, heating: bool | None, setpoint: float
) -> None:
    points: dict[str, Value] = {"cooling_setpoint": 25.0, "heating_setpoint": 21.0}
    if mode is not None:
        points["system_mode"] = mode
    if running is not None:
        points["running_state"] = running
    feed(state, T0, "r1-ac", **points)
    ac = state.room("r1", T0).ac
    assert ac is not None
    assert (ac.cooling, ac.heating, ac.setpoint_c) == (cooling, heating, setpoint)
    assert ac.on is (None if mode is None else mode != "off")


def test_plugs_and_lights_are_told_apart_by_role(state: LiveState) -> None:
    feed(state, T0, "srv-ups", on=True, power=2500.0)
    feed(state, T0, "srv-light", on=False)
    view = state.room("srv", T0)
    assert [(p.device, p.role.value, p.power_w) for p in view.plugs] == [("srv-ups", "critical", 2500.0)]
    assert view.lights == ("srv-light",)
    assert view.lights_on is False


@pytest.mark.parametrize(
    ("events", "since"),
    [
        # (seconds, device, point, value) ...; expected LIT_EMPTY start or None
        ([(0, "r1-light", "on", True), (5, "r1-occ", "occupancy", False)], 5),
        ([(0, "r1-occ", "occupancy", False), (7, "r1-light", "on", True)], 7),
        ([(0, "r1-occ", "occupancy", False), (7, "r1-light", "on", True), (9, "r1-occ", "occupancy", True)], None),
        ([(0, "r1-occ", "occupancy", False), (7, "r1-light", "on", True), (9, "r1-light", "on", False)], None),
        (  # lit and empty again: timing restarts
            [
                (0, "r1-occ", "occupancy", False),
                (1, "r1-light", "on", True),
                (2, "r1-occ", "occupancy", True),
                (3, "r1-occ", "occupancy", False),
            ],
            3,
        ),
    ],
)
def test_lit_empty_since(state: LiveState, events: list[tuple[float, str, str, Value]], since: float | None) -> None:
    for t, device, point, value in events:
        feed(state, at(t), device, **{point: value})
    assert state.since("r1", LIT_EMPTY) == (None if since is None else at(since))


def test_a_data_gap_neither_starts_nor_ends_a_condition(state: LiveState) -> None:
    feed(state, T0, "r1-occ", occupancy=False)
    feed(state, T0, "r1-light", on=True)
    state.set_online("r1-occ", False, at(10))
    feed(state, at(20), "r1-light", on=True, power=30.0)  # the room is re-evaluated with occupancy unknown
    assert state.since("r1", LIT_EMPTY) == T0
    state.set_online("r1-occ", True, at(30))
    feed(state, at(30), "r1-occ", occupancy=False)
    assert state.since("r1", LIT_EMPTY) == T0


def test_ac_door_open_since(state: LiveState) -> None:
    feed(state, T0, "r1-door", contact=False)
    assert state.since("r1", AC_DOOR_OPEN) is None
    feed(state, at(4), "r1-ac", system_mode="heat")
    assert state.since("r1", AC_DOOR_OPEN) == at(4)
    feed(state, at(6), "r1-door", contact=True)
    assert state.since("r1", AC_DOOR_OPEN) is None


# -- supply --------------------------------------------------------------------------------------


def test_supply_view_matches_the_api_contract(state: LiveState) -> None:
    supply_normal(state, T0)
    assert state.supply(at(0.2)).to_dict() == {
        "sources": [
            {"id": "grid-a", "available": True, "voltage_v": 230.0},
            {"id": "grid-b", "available": True, "voltage_v": 231.0},
        ],
        "transfer_switches": [{"id": "ats-1", "position": "grid-a"}],
        "generators": [{"id": "gen-1", "state": "stopped", "ready": False, "power_kw": 0.0, "breaker_closed": False}],
        "load_kw": 120.0,
    }


def test_supply_unknown_when_nothing_heard(state: LiveState) -> None:
    view = state.supply(T0)
    assert view.to_dict() == {
        "sources": [
            {"id": "grid-a", "available": None, "voltage_v": None},
            {"id": "grid-b", "available": None, "voltage_v": None},
        ],
        "transfer_switches": [{"id": "ats-1", "position": None}],
        "generators": [{"id": "gen-1", "state": None, "ready": None, "power_kw": None, "breaker_closed": None}],
        "load_kw": None,
    }
    assert view.transfer_switches[0].known is False


@pytest.mark.parametrize(
    ("switch_state", "volts", "present", "available"),
    [
        (2, 230.0, True, True),
        (1, 230.0, True, False),  # present, not yet stable
        (0, 230.0, False, False),
        (2, 184.0, True, True),  # 80 % of 230 V
        (2, 183.9, False, False),
        (None, 184.0, True, None),  # meter alone: present, but the switch's status is unknown
        (None, 100.0, False, False),  # the meter alone shows it is not there
        (2, None, True, None),  # switch alone: the meter is silent, so not counted as available
        (0, None, False, False),
        (None, None, None, None),
    ],
)
def test_source_availability(
    state: LiveState, switch_state: int | None, volts: float | None, present: bool | None, available: bool | None
) -> None:
    if switch_state is not None:
        feed(state, T0, "ats", source1_state=switch_state)
    if volts is not None:
        feed(state, T0, "m-a", voltage_l1=volts)
    source = state.supply(T0).sources[0]
    assert (source.present, source.available) == (present, available)


GEN_FEEDS = GEN_BREAKER_CLOSED | GEN_AVAILABLE | MAINS_AVAILABLE


@pytest.mark.parametrize(
    ("position", "s1", "s2", "bits", "expected", "load_kw"),
    [
        (2, 2, 2, NORMAL_BITS, "grid-a", 120.0),
        (3, 2, 2, NORMAL_BITS, "grid-b", 30.0),
        (3, 2, 1, NORMAL_BITS, "grid-b", 30.0),  # present but not yet stable still feeds
        (2, 0, 2, NORMAL_BITS, None, 0.0),  # on a dead source
        (1, 2, 2, NORMAL_BITS, None, 0.0),  # pos 0
        (0, 2, 2, NORMAL_BITS, None, 0.0),  # the switch cannot tell its position
        (2, 2, 2, GEN_FEEDS, "gen-1", 150.0),  # AMF: generator breaker closed, mains open
        (2, 0, 0, GEN_FEEDS, "gen-1", 150.0),
        (2, 0, 0, GEN_BREAKER_CLOSED, None, 0.0),  # generator breaker closed on a dead generator
        (2, 2, 2, MAINS_AVAILABLE, None, 0.0),  # both breakers open
        (2, 2, 2, NORMAL_BITS | GEN_BREAKER_CLOSED, "grid-a", 120.0),  # both closed (backfeed): grid side
    ],
)
def test_source_feeding_the_load(
    state: LiveState, position: int, s1: int, s2: int, bits: int, expected: str | None, load_kw: float
) -> None:
    supply_normal(state, T0)
    feed(state, T0, "m-b", power=30_000.0)
    feed(state, T0, "m-g", power=150_000.0)
    feed(state, T0, "ats", position=position, source1_state=s1, source2_state=s2)
    feed(state, T0, "gs", breaker_status=bits)
    view = state.supply(T0)
    switch = view.transfer_switches[0]
    assert (switch.known, switch.position) == (True, expected)
    assert view.load_kw == load_kw


@pytest.mark.parametrize(
    ("device", "point", "known", "position"),
    [
        ("ats", "position", False, None),
        ("gs", "breaker_status", False, None),
        ("ats", "source1_state", True, "grid-a"),  # the meter alone says the source is there
        ("m-a", "voltage_l1", True, "grid-a"),  # the switch alone says so
    ],
)
def test_feeding_without_good_data(
    state: LiveState, device: str, point: str, known: bool, position: str | None
) -> None:
    supply_normal(state, T0)
    state.apply(Reading(device=device, point=point, value=None, unit="", ts=at(0.1), quality=Quality.bad))
    view = state.supply(at(0.1))
    assert (view.transfer_switches[0].known, view.transfer_switches[0].position) == (known, position)
    assert (view.load_kw is None) is not known


def test_feeding_unknown_when_both_availability_sources_are_bad(state: LiveState) -> None:
    supply_normal(state, T0)
    for device, point in (("ats", "source1_state"), ("m-a", "voltage_l1")):
        state.apply(Reading(device=device, point=point, value=None, unit="", ts=at(0.1), quality=Quality.bad))
    assert state.supply(at(0.1)).transfer_switches[0].known is False


@pytest.mark.parametrize(
    ("engine", "bits", "state_text", "ready", "demanded", "fail"),
    [
        (0, NORMAL_BITS, "stopped", False, False, False),
        (1, NORMAL_BITS | START_DEMAND, "pre-start", False, True, False),
        (3, NORMAL_BITS | START_DEMAND, "running", False, True, False),  # running, not yet available
        (3, NORMAL_BITS | START_DEMAND | GEN_AVAILABLE, "running", True, True, False),
        (4, GEN_AVAILABLE, "cooling", False, False, False),
        (0, START_DEMAND | FAIL_TO_START, "stopped", False, True, True),
    ],
)
def test_generator_view(
    state: LiveState, engine: int, bits: int, state_text: str, ready: bool, demanded: bool, fail: bool
) -> None:
    feed(state, T0, "gs", engine_state=engine, breaker_status=bits, power=12_500)
    g = state.supply(T0).generators[0]
    assert (g.state, g.ready, g.demanded, g.fail_to_start) == (state_text, ready, demanded, fail)
    assert g.power_kw == 12.5  # the genset's own power when its meter is silent


def test_generator_meter_wins_over_the_controller(state: LiveState) -> None:
    feed(state, T0, "gs", power=12_500)
    feed(state, T0, "m-g", power=13_000.0)
    assert state.supply(T0).generators[0].power_kw == 13.0


def test_unpowered_and_start_timing(state: LiveState) -> None:
    clock = ManualClock(T0)
    supply_normal(state, clock.now())
    # grid-a lost: the switch stays on pos I, the controller sees the demand and starts the engine
    grid_a_lost: dict[str, dict[str, Value]] = {"m-a": {"voltage_l1": 0.0, "power": 0.0}, "ats": {"source1_state": 0}}
    t1 = clock.advance(1)
    supply_normal(state, t1, grid_a_lost)
    assert state.since("ats-1", UNPOWERED) == t1
    assert state.since("ats-1", UNPOWERED_WITH_ALTERNATIVE) == t1  # grid-b is available
    starting: dict[str, dict[str, Value]] = {
        **grid_a_lost,
        "gs": {"engine_state": 1, "breaker_status": START_DEMAND | MAINS_BREAKER_CLOSED},
    }
    t2 = clock.advance(1)
    supply_normal(state, t2, starting)
    assert state.since("gen-1", START_PENDING) == t2
    supply_normal(state, clock.advance(1), starting)
    assert state.since("gen-1", START_PENDING) == t2
    # the generator is ready and takes the load
    t4 = clock.advance(1)
    supply_normal(state, t4, {**grid_a_lost, "gs": {"engine_state": 3, "breaker_status": START_DEMAND | GEN_FEEDS}})
    assert state.since("gen-1", START_PENDING) is None
    assert state.since("ats-1", UNPOWERED) is None
    assert state.supply(t4).transfer_switches[0].position == "gen-1"


def test_unpowered_without_alternative(state: LiveState) -> None:
    supply_normal(state, T0)
    all_lost: dict[str, dict[str, Value]] = {
        "m-a": {"voltage_l1": 0.0},
        "m-b": {"voltage_l1": 0.0},
        "ats": {"source1_state": 0, "source2_state": 0},
    }
    supply_normal(state, at(1), all_lost)
    assert state.since("ats-1", UNPOWERED) == at(1)
    assert state.since("ats-1", UNPOWERED_WITH_ALTERNATIVE) is None
    supply_normal(state, at(2), all_lost)
    supply_normal(state, at(3), {**all_lost, "m-b": {}, "ats": {"source1_state": 0}})  # grid-b is back
    assert state.since("ats-1", UNPOWERED) == at(1)
    assert state.since("ats-1", UNPOWERED_WITH_ALTERNATIVE) == at(3)
