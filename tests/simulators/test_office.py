"""The office model: occupants over the working day, lights, AC and temperature, plugs, room overrides."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import pytest

from service.config.site import Calendar, RoomKind, Site
from simulators.office import LIGHTS_LX, daylight_lx, outdoor_c, sky, working_span
from simulators.world import UnknownRoom, WorldError
from tests.simulators.conftest import TZ, make_world

OFFICES = ("r1102", "r2101", "r3101", "r3102")


def test_working_days_follow_the_site_calendar(demo: Site) -> None:
    cal = demo.calendar
    assert working_span(cal, date(2026, 7, 15)) == (510, 1050)  # Wednesday 08:30-17:30
    assert working_span(cal, date(2026, 7, 18)) is None  # Saturday
    assert working_span(cal, date(2026, 10, 1)) is None  # National Day
    assert working_span(cal, date(2026, 10, 10)) == (510, 1050)  # make-up Saturday: Monday's hours
    assert working_span(Calendar(), date(2026, 7, 15)) == (540, 1080), "no calendar: office hours anyway"


def test_offices_fill_in_the_day_and_empty_at_night(demo: Site) -> None:
    busy = [make_world(demo, seed=s).state()["rooms"] for s in range(6)]
    occupied = sum(rooms[r]["occupied"] for rooms in busy for r in OFFICES)
    assert occupied >= 0.75 * len(busy) * len(OFFICES)
    assert all(rooms[r]["lights_on"] for rooms in busy for r in OFFICES if rooms[r]["occupied"])
    night = make_world(demo, seed=1, start=datetime(2026, 7, 15, 3, 0, tzinfo=TZ)).state()["rooms"]
    assert not any(room["occupied"] for room in night.values())
    holiday = make_world(demo, seed=1, start=datetime(2026, 10, 1, 10, 0, tzinfo=TZ)).state()["rooms"]
    assert sum(room["occupied"] for room in holiday.values()) <= 1


def test_occupants_sometimes_forget_the_lights(demo: Site) -> None:
    forgotten = 0
    for seed in range(20):
        rooms = make_world(demo, seed=seed, start=datetime(2026, 7, 15, 23, 30, tzinfo=TZ)).state()["rooms"]
        assert not any(rooms[r]["occupied"] for r in OFFICES)
        forgotten += sum(rooms[r]["lights_on"] for r in OFFICES)
    assert 0 < forgotten < 0.5 * 20 * len(OFFICES), "most people switch off; some forget"


def test_same_seed_same_day(demo: Site) -> None:
    a = make_world(demo, seed=5, start=datetime(2026, 7, 15, 18, 0, tzinfo=TZ))
    b = make_world(demo, seed=5, start=datetime(2026, 7, 15, 18, 0, tzinfo=TZ))
    assert a.state() == b.state()


def test_outdoor_temperature_follows_the_day_and_season() -> None:
    july_2pm = outdoor_c(0, datetime(2026, 7, 15, 14, 0, tzinfo=TZ))
    july_2am = outdoor_c(0, datetime(2026, 7, 15, 2, 0, tzinfo=TZ))
    january = outdoor_c(0, datetime(2026, 1, 14, 14, 0, tzinfo=TZ))
    assert july_2pm - july_2am == pytest.approx(8.0)  # ±4 °C around the day's mean
    assert 26 < july_2pm < 37 and january < 13


def test_ac_cools_a_room_towards_its_setpoint_and_it_drifts_back_when_off(demo: Site) -> None:
    w = make_world(demo, seed=1)
    w.set_room("r3102", temperature=30.0)
    w.release_room("r3102")
    w.set_room("r3102", ac_mode="cool", ac_setpoint=24.0)
    w.step(3 * 3600)
    room = w.state()["rooms"]["r3102"]
    assert room["temperature_c"] == pytest.approx(24.0, abs=0.6)
    assert w.state()["devices"]["r3102-ac"]["power_w"] > 0
    w.set_room("r3102", ac_mode="off")
    w.step(2 * 3600)
    assert w.state()["rooms"]["r3102"]["temperature_c"] > 25.5, "a July afternoon warms the room again"
    assert w.state()["devices"]["r3102-ac"]["power_w"] == 0


def test_heating_mode_warms_a_cold_room(demo: Site) -> None:
    w = make_world(demo, seed=1, start=datetime(2026, 1, 14, 9, 0, tzinfo=TZ))
    w.set_room("r1102", temperature=12.0)
    w.release_room("r1102")
    w.set_room("r1102", ac_mode="heat", ac_setpoint=22.0)
    w.step(2 * 3600)
    ac = w.state()["devices"]["r1102-ac"]
    assert ac["running_state"] in ("heat", "idle") and ac["heating_setpoint"] == 22.0
    assert w.state()["rooms"]["r1102"]["temperature_c"] > 19.0


def test_plugs_draw_what_their_appliance_draws(demo: Site) -> None:
    w = make_world(demo, seed=2)
    dev = w.state()["devices"]
    assert 1400 <= dev["srv1-ups"]["power_w"] <= 1600
    w.set_room("r2101", occupied=True)
    w.step(60)
    dev = w.state()["devices"]
    assert 80 <= dev["r2101-pc1"]["power_w"] <= 140  # a PC in use
    assert 20 <= dev["r2101-pc2"]["power_w"] <= 30  # a monitor
    w.set_room("r2101", occupied=False)
    w.step(2 * 3600)
    dev = w.state()["devices"]
    assert dev["r2101-pc2"]["power_w"] < 1, "monitor in standby"


def test_a_heater_plug_draws_only_when_asked(demo: Site) -> None:
    """A plug marked `appliance: heater` in the site file stays at 0 W, on or off, until a room override asks."""
    devices = [d.model_copy(update={"appliance": "heater"}) if d.id == "r3102-plug" else d for d in demo.devices]
    w = make_world(demo.model_copy(update={"devices": devices}), seed=1, start=datetime(2026, 1, 14, 6, 0, tzinfo=TZ))
    seen: list[tuple[bool, bool, float]] = []
    for _ in range(12 * 4):  # a January working day, 06:00-18:00
        w.step(900)
        plug, room = w.state()["devices"]["r3102-plug"], w.state()["rooms"]["r3102"]
        seen.append((room["occupied"], plug["on"], plug["power_w"]))
    assert any(occupied and on for occupied, on, _ in seen), "the manager was in, the heater plug switched on"
    assert all(watts == 0 for _, _, watts in seen), "nobody asked for heat: a heater draws nothing"
    assert w.state()["devices"]["r3102-plug"]["appliance"] == "heater"

    w.switch_relay("r3102-plug", True, "mqtt")
    dept_before = w.state()["devices"]["meter-dept-engineering"]["power_w"]
    w.set_room("r3102", plugs={"r3102-plug": 2000.0})
    plug = w.state()["devices"]["r3102-plug"]
    assert plug["power_w"] == 2000
    assert w.state()["devices"]["meter-dept-engineering"]["power_w"] == pytest.approx(dept_before + 2000, abs=1)
    w.step(600)
    after = w.state()["devices"]["r3102-plug"]
    assert after["power_w"] == 2000
    assert after["energy_kwh"] - plug["energy_kwh"] == pytest.approx(2000 * 600 / 3.6e6, rel=1e-3)
    w.switch_relay("r3102-plug", False, "mqtt")
    assert w.state()["devices"]["r3102-plug"]["power_w"] == 0, "switched off at the plug: no heat"
    w.switch_relay("r3102-plug", True, "mqtt")
    assert w.state()["devices"]["r3102-plug"]["power_w"] == 2000, "still asked for: heats again"
    w.release_room("r3102")
    assert w.state()["devices"]["r3102-plug"]["power_w"] == 0, "no longer asked for"


def test_room_overrides_hold_until_released(demo: Site) -> None:
    w = make_world(demo, seed=4)
    w.set_room("r2119", occupied=False, lights=True, door_open=True, temperature=21.0)
    w.step(4 * 3600)
    room = w.state()["rooms"]["r2119"]
    assert (room["occupied"], room["lights_on"], room["door_open"], room["temperature_c"]) == (False, True, True, 21.0)
    assert set(room["overrides"]) == {"occupied", "lights", "door_open", "temperature"}
    assert w.state()["devices"]["r2119-door"]["contact"] is False
    assert w.state()["devices"]["r2119-occ"]["occupancy"] is False
    w.switch_relay("r2119-light", False, "mqtt")
    assert not w.state()["rooms"]["r2119"]["lights_on"], "a device command still switches a held light"
    w.release_room("r2119")
    assert w.state()["rooms"]["r2119"]["overrides"] == []


def test_bad_room_requests_name_the_problem(demo: Site) -> None:
    w = make_world(demo)
    with pytest.raises(UnknownRoom, match="'r9999' is not a room"):
        w.set_room("r9999", occupied=True)
    with pytest.raises(WorldError, match="room 'c1' has no AC"):
        w.set_room("c1", ac_mode="cool")
    with pytest.raises(WorldError, match="'r1102-pc' is not a plug of room 'r2119'"):
        w.set_room("r2119", plugs={"r1102-pc": 50.0})
    with pytest.raises(WorldError, match=r"outside 16\.0\.\.32\.0"):
        w.set_thermostat("r2119-ac", cooling_setpoint=12)
    with pytest.raises(WorldError, match="system_mode 'blast'"):
        w.set_thermostat("r2119-ac", mode="blast")


def test_unpowered_rooms_draw_nothing_and_their_ac_stops(demo: Site) -> None:
    w = make_world(demo)
    w.set_room("r3101", ac_mode="cool", ac_setpoint=22.0)
    w.fault("ats_stuck", "ats-1")
    w.fault("source_loss", "grid-a")
    dev = w.state()["devices"]
    assert dev["r3101-ac"]["power_w"] == 0 and dev["r3101-light"]["power_w"] == 0
    assert dev["r3101-ac"]["system_mode"] == "cool", "the controller keeps its settings through the outage"


def test_rooms_keep_moving_after_a_step_off_the_half_second_grid(demo: Site) -> None:
    """A step of any length (sim.world.step(0.3)) must not freeze the office model."""
    odd, even = make_world(demo, seed=1), make_world(demo, seed=1)
    for w in (odd, even):
        w.set_room("r3102", temperature=30.0)
        w.release_room("r3102")
        w.set_room("r3102", ac_mode="cool", ac_setpoint=22.0)
    odd.step(0.3)
    odd.step(3600)
    even.step(3600.3)
    cooled = odd.state()["rooms"]["r3102"]["temperature_c"]
    assert cooled < 27.0, "an hour of AC at 22 °C cools a room that was at 30 °C"
    assert cooled == pytest.approx(even.state()["rooms"]["r3102"]["temperature_c"], abs=0.1)
    assert odd.state()["rooms"]["r3102"]["ac"]["running_state"] == "cool"


def test_ac_setpoints_outside_the_units_range_are_refused_not_clamped(demo: Site) -> None:
    w = make_world(demo, seed=1, start=datetime(2026, 1, 14, 9, 0, tzinfo=TZ))
    w.set_room("r1102", ac_mode="heat", ac_setpoint=22.0)
    with pytest.raises(WorldError, match=r"ac setpoint 31 is outside 5\.\.30 in heat mode \(r1102-ac"):
        w.set_room("r1102", ac_setpoint=31.0)
    with pytest.raises(WorldError, match=r"outside 16\.\.32 in cool mode"):
        w.set_room("r1102", ac_mode="cool", ac_setpoint=10.0)
    ac = w.state()["devices"]["r1102-ac"]
    assert (ac["system_mode"], ac["heating_setpoint"]) == ("heat", 22.0), "a refused request changes nothing"
    w.set_room("r1102", ac_setpoint=10.0)
    assert w.state()["devices"]["r1102-ac"]["heating_setpoint"] == 10.0, "frost protection is a heating setpoint"
    w.set_room("r1102", ac_setpoint=30.0)
    assert w.state()["rooms"]["r1102"]["ac"]["setpoint_c"] == 30.0


# -- daylight (issue 16) ---------------------------------------------------------------------------


def _sunny_and_cloudy(seed: int, month: int) -> tuple[date, date]:
    days = [date(2026, month, d) for d in range(1, 29)]
    return next(d for d in days if sky(seed, d) > 0.8), next(d for d in days if sky(seed, d) < 0.5)


def test_daylight_follows_the_sun_over_the_site_day_and_the_seasons() -> None:
    sunny, _ = _sunny_and_cloudy(0, 6)
    noon = datetime.combine(sunny, time(12, 0), tzinfo=TZ)
    assert daylight_lx(0, noon.replace(hour=3)) == 0.0  # night
    morning, afternoon = daylight_lx(0, noon.replace(hour=8)), daylight_lx(0, noon.replace(hour=16))
    assert 0 < morning < daylight_lx(0, noon) and 0 < afternoon < daylight_lx(0, noon)
    assert daylight_lx(0, noon) > 1500  # a sunny June noon at an office desk
    winter_sunny, _ = _sunny_and_cloudy(0, 12)
    winter_noon = datetime.combine(winter_sunny, time(12, 0), tzinfo=TZ)
    assert 800 < daylight_lx(0, winter_noon) < daylight_lx(0, noon)  # a lower sun
    assert daylight_lx(0, noon.replace(hour=18, minute=30)) > daylight_lx(0, winter_noon.replace(hour=17, minute=30))


def test_cloudy_days_are_darker_and_inner_rooms_darker_still() -> None:
    sunny, cloudy = _sunny_and_cloudy(3, 7)
    at_noon = [datetime.combine(d, time(12, 0), tzinfo=TZ) for d in (sunny, cloudy)]
    assert daylight_lx(3, at_noon[1]) < 0.5 * daylight_lx(3, at_noon[0])
    assert daylight_lx(3, at_noon[0], RoomKind.corridor) < 0.5 * daylight_lx(3, at_noon[0])
    assert daylight_lx(3, at_noon[0], RoomKind.server) == 0.0
    cloudy_days = sum(sky(3, date(2026, 1, 1) + timedelta(days=i)) < 0.5 for i in range(365))
    assert 0.25 * 365 < cloudy_days < 0.45 * 365


def test_sensor_sees_daylight_plus_the_rooms_own_lights_or_what_is_held(demo: Site) -> None:
    night = make_world(demo, seed=1, start=datetime(2026, 7, 15, 23, 0, tzinfo=TZ))
    night.set_room("r3102", lights=False)
    assert night.state()["rooms"]["r3102"]["illuminance"] == 0
    night.set_room("r3102", lights=True)
    assert night.state()["rooms"]["r3102"]["illuminance"] == LIGHTS_LX
    assert night.state()["devices"]["r3102-occ"]["illuminance"] == LIGHTS_LX
    night.set_room("r3102", illuminance=1234.0)
    assert night.device_state("r3102-occ")["illuminance"] == 1234.0
    assert "illuminance" in night.state()["rooms"]["r3102"]["overrides"]
    night.release_room("r3102")
    assert night.state()["rooms"]["r3102"]["overrides"] == []
    with pytest.raises(WorldError, match="no occupancy sensor"):
        night.set_room("srv1", illuminance=100.0)
