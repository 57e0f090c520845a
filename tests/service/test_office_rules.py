"""Office rules as the policies read them (issue 16): central heating and its season, room thresholds,
ac_left_on, lit_in_daylight, approved appliances; boundaries with injected time only."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from drivers.types import Value
from service.alarms.record import Severity
from service.alarms.rules import AlarmType, Finding, evaluate
from service.config.site import Site, SiteError, in_season, parse_site
from service.live.state import LiveState
from tests.service.test_state import T0, at, feed, site_dict


def _site(site_keys: dict[str, Any] | None = None, room: dict[str, Any] | None = None, **devices: Any) -> Site:
    """The test site with `site:` keys, room r1's keys and device keys (by device id) replaced."""
    data = site_dict()
    data["site"].update(site_keys or {})
    data["rooms"][0].update(room or {})
    for dev in data["devices"]:
        dev.update(devices.get(dev["id"].replace("-", "_"), {}))
    return Site.model_validate(data)


def _found(site: Site, state: LiveState, now: datetime, kind: AlarmType) -> dict[str, Finding]:
    return {f.subject: f for f in evaluate(site, state, now) if f.type is kind}


def _verdict(site: Site, state: LiveState, now: datetime, kind: AlarmType, subject: str = "r1") -> bool | None:
    f = _found(site, state, now, kind).get(subject)
    return None if f is None else f.active


# -- heating: central heating and the heating season -------------------------------------------------


@pytest.mark.parametrize(
    ("season", "day", "expected"),
    [
        (None, date(2026, 7, 1), True),  # no season: all year
        (("11-15", "03-15"), date(2026, 11, 14), False),
        (("11-15", "03-15"), date(2026, 11, 15), True),  # first day, inclusive
        (("11-15", "03-15"), date(2026, 12, 31), True),
        (("11-15", "03-15"), date(2027, 1, 1), True),  # wraps the year
        (("11-15", "03-15"), date(2027, 3, 15), True),  # last day, inclusive
        (("11-15", "03-15"), date(2027, 3, 16), False),
        (("11-15", "03-15"), date(2026, 7, 1), False),
        (("01-10", "02-20"), date(2026, 1, 9), False),  # not wrapping
        (("01-10", "02-20"), date(2026, 1, 10), True),
        (("01-10", "02-20"), date(2026, 2, 20), True),
        (("01-10", "02-20"), date(2026, 2, 21), False),
        (("01-10", "02-20"), date(2026, 12, 1), False),
        (("02-29", "02-29"), date(2028, 2, 29), True),
        (("02-29", "02-29"), date(2027, 3, 1), False),
    ],
)
def test_heating_season(season: tuple[str, str] | None, day: date, expected: bool) -> None:
    assert in_season(season, day) is expected


HEATING_22: dict[str, Value] = {"system_mode": "heat", "local_temperature": 22.0}


@pytest.mark.parametrize(
    ("site_keys", "room", "expected", "why"),
    [
        ({}, {}, False, "no central heating"),  # the default: no central heating anywhere
        ({"central_heating": True}, {}, True, ""),
        ({"central_heating": True}, {"central_heating": False}, False, "no central heating"),  # the room wins
        ({}, {"central_heating": True}, True, ""),
        # T0 is 2 March (site time): inside a winter season, outside a season that ended in February
        ({"central_heating": True, "heating_season": ["11-15", "03-15"]}, {}, True, ""),
        ({"central_heating": True, "heating_season": ["11-15", "03-01"]}, {}, False, "outside the heating season"),
        ({"central_heating": True, "heating_season": ["03-02", "03-02"]}, {}, True, ""),
    ],
)
def test_heating_rule_only_with_central_heating_in_season(
    site_keys: dict[str, Any], room: dict[str, Any], expected: bool, why: str
) -> None:
    site = _site(site_keys, room)
    state = LiveState(site)
    feed(state, T0, "r1-ac", **HEATING_22)
    f = _found(site, state, T0, AlarmType.ac_heating_too_warm)["r1"]
    assert f.active is expected
    assert why in f.message


def test_heating_season_is_read_in_site_time() -> None:
    # 2026-03-15 16:30 UTC is already 16 March 00:30 in Asia/Shanghai: the season has ended there.
    site = _site({"central_heating": True, "heating_season": ["11-15", "03-15"]})
    state = LiveState(site)
    late = datetime(2026, 3, 15, 16, 30, tzinfo=UTC)
    feed(state, late, "r1-ac", **HEATING_22)
    assert _verdict(site, state, late, AlarmType.ac_heating_too_warm) is False
    assert _verdict(site, state, datetime(2026, 3, 15, 15, 59, tzinfo=UTC), AlarmType.ac_heating_too_warm) is True


# -- room thresholds -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("room_limit", "temperature", "expected"),
    [
        (None, 26.0, True),  # the site's 26 °C
        (None, 26.1, False),
        (28.0, 28.0, True),  # a room on the 28 °C policy
        (28.0, 28.1, False),
        (28.0, 27.0, True),  # fine for the site, too cold for this room
    ],
)
def test_room_cooling_threshold_wins(room_limit: float | None, temperature: float, expected: bool) -> None:
    room = {} if room_limit is None else {"thresholds": {"cooling_min_c": room_limit}}
    site = _site(room=room)
    state = LiveState(site)
    feed(state, T0, "r1-ac", system_mode="cool", local_temperature=temperature, cooling_setpoint=30.0)
    f = _found(site, state, T0, AlarmType.ac_too_cold)["r1"]
    assert (f.active, f.limit) == (expected, room_limit or 26.0)


@pytest.mark.parametrize(("temperature", "expected"), [(5.0, True), (4.9, False)])
def test_regulator_room_heating_limit(temperature: float, expected: bool) -> None:
    site = _site({"central_heating": True}, {"thresholds": {"heating_max_c": 5}})
    state = LiveState(site)
    feed(state, T0, "r1-ac", system_mode="heat", local_temperature=temperature)
    assert _verdict(site, state, T0, AlarmType.ac_heating_too_warm) is expected


def test_room_thresholds_keep_the_sites_other_values() -> None:
    site = _site({"thresholds": {"plug_max_w": 1500, "cooling_min_c": 27}}, {"thresholds": {"cooling_min_c": 28}})
    effective = site.thresholds_of(site.rooms[0])
    assert (effective.cooling_min_c, effective.plug_max_w, effective.heating_max_c) == (28, 1500, 17)
    assert site.thresholds_of(site.rooms[1]).cooling_min_c == 27


# -- ac_left_on ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("occupied", "mode", "elapsed_s", "expected"),
    [
        (False, "cool", 599, None),
        (False, "cool", 600, None),  # empty_ac_delay_s 600, exactly
        (False, "cool", 600.001, True),  # one step over
        (False, "fan_only", 3600, True),  # any mode but off
        (False, "heat", 3600, True),
        (False, "off", 3600, False),
        (True, "cool", 3600, False),
        (None, "cool", 3600, None),  # occupancy unknown: not known to be empty
    ],
)
def test_ac_left_on(occupied: bool | None, mode: str, elapsed_s: float, expected: bool | None) -> None:
    site = _site()
    state = LiveState(site)
    if occupied is not None:
        feed(state, T0, "r1-occ", occupancy=occupied)
    feed(state, T0, "r1-ac", system_mode=mode)
    assert _verdict(site, state, at(elapsed_s), AlarmType.ac_left_on) is expected
    if expected:
        f = _found(site, state, at(elapsed_s), AlarmType.ac_left_on)["r1"]
        assert (f.severity, f.value) == (Severity.low, round(elapsed_s, 1))
        assert f"room empty {elapsed_s / 60:.0f} min" in f.message


def test_ac_left_on_counts_from_when_the_room_emptied_and_clears_when_someone_comes_in() -> None:
    site = _site()
    state = LiveState(site)
    feed(state, T0, "r1-occ", occupancy=True)
    feed(state, T0, "r1-ac", system_mode="cool")
    feed(state, at(100), "r1-occ", occupancy=False)
    assert _verdict(site, state, at(700), AlarmType.ac_left_on) is None  # empty for exactly 600 s
    assert _verdict(site, state, at(700.5), AlarmType.ac_left_on) is True
    feed(state, at(800), "r1-occ", occupancy=True)
    assert _verdict(site, state, at(800), AlarmType.ac_left_on) is False


def test_ac_left_on_room_delay_and_protected_units() -> None:
    site = _site(room={"thresholds": {"empty_ac_delay_s": 60}})
    state = LiveState(site)
    feed(state, T0, "r1-occ", occupancy=False)
    feed(state, T0, "r1-ac", system_mode="cool")
    feed(state, T0, "srv-occ", occupancy=False)
    feed(state, T0, "srv-ac", system_mode="cool")
    found = _found(site, state, at(61), AlarmType.ac_left_on)
    assert found["r1"].active is True
    assert "srv" not in found  # server rooms' precision AC runs for ever


# -- lit_in_daylight -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lux", "lights", "elapsed_s", "expected"),
    [
        (800.0, True, 600, None),  # daylight_delay_s 600, exactly
        (800.0, True, 600.001, True),  # exactly daylight_lux, one step over the delay
        (799.9, True, 800, False),  # one step under the threshold
        (1200.0, True, 800, True),
        (1200.0, False, 800, False),
    ],
)
def test_lit_in_daylight(lux: float, lights: bool, elapsed_s: float, expected: bool | None) -> None:
    site = _site()
    state = LiveState(site)
    feed(state, T0, "r1-occ", occupancy=True, illuminance=lux)
    feed(state, T0, "r1-light", on=lights)
    assert _verdict(site, state, at(elapsed_s), AlarmType.lit_in_daylight) is expected
    if expected:
        f = _found(site, state, at(elapsed_s), AlarmType.lit_in_daylight)["r1"]
        assert (f.severity, f.value) == (Severity.low, lux)
        assert f"lights on at {lux:,.0f} lx" in f.message


def test_lit_in_daylight_times_from_when_it_got_bright_and_uses_the_rooms_own_lux() -> None:
    site = _site(room={"thresholds": {"daylight_lux": 1150, "daylight_delay_s": 300}})
    state = LiveState(site)
    feed(state, T0, "r1-light", on=True)
    feed(state, T0, "r1-occ", occupancy=True, illuminance=1000.0)  # bright for the site, not for this room
    assert _verdict(site, state, at(600), AlarmType.lit_in_daylight) is False
    feed(state, at(600), "r1-occ", illuminance=1150.0)
    assert _verdict(site, state, at(900), AlarmType.lit_in_daylight) is None
    assert _verdict(site, state, at(900.001), AlarmType.lit_in_daylight) is True
    feed(state, at(1000), "r1-light", on=False)
    assert _verdict(site, state, at(1000), AlarmType.lit_in_daylight) is False


def test_lit_in_daylight_quiet_without_illuminance() -> None:
    site = _site()
    state = LiveState(site)
    feed(state, T0, "r1-occ", occupancy=True)
    feed(state, T0, "r1-light", on=True)
    assert _verdict(site, state, at(3600), AlarmType.lit_in_daylight) is None


# -- approved appliances -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("approved_w", "watts", "expected", "limit"),
    [
        (None, 1200.0, False, 1200.0),
        (None, 1200.1, True, 1200.0),
        (2200, 2200.0, False, 2200.0),  # the approved kettle at its rating
        (2200, 2200.1, True, 2200.0),  # one step over the approval
        (800, 1000.0, False, 1200.0),  # an approval never lowers the plug's limit
    ],
)
def test_approved_appliance(approved_w: float | None, watts: float, expected: bool, limit: float) -> None:
    site = _site(r1_plug={} if approved_w is None else {"approved_w": approved_w})
    state = LiveState(site)
    feed(state, T0, "r1-plug", on=True, power=watts)
    f = _found(site, state, T0, AlarmType.high_power_appliance)["r1-plug"]
    assert (f.active, f.limit) == (expected, limit)
    assert ("approved" in f.message) is (approved_w is not None and limit == approved_w)


# -- bad input -------------------------------------------------------------------------------------

_BAD_BASE = """\
site:
  id: t
  name: T
  allowed_interruption_s: 10
{site_extra}departments:
  - {{id: d, name: D}}
rooms:
  - id: r1
    name: R1
    department: d
    devices: [r1-plug]
{room_extra}devices:
  - id: r1-plug
    driver: mqtt
    profile: shelly-plug
    topic: shellyplus-r1
    role: {role}
{device_extra}"""


def _bad(site_extra: str = "", room_extra: str = "", device_extra: str = "", role: str = "office_equipment") -> str:
    return _BAD_BASE.format(site_extra=site_extra, room_extra=room_extra, device_extra=device_extra, role=role)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            _bad(site_extra='  heating_season: ["13-40", "03-15"]\n'),
            "site.heating_season[0]: '13-40' is not a day of the year MM-DD (e.g. 11-15) (site.yaml:5)",
        ),
        (
            _bad(site_extra='  heating_season: ["11-15"]\n'),
            "site.heating_season: give the first and the last day, MM-DD",
        ),
        (
            _bad(device_extra="    approved_w: -5\n"),
            "devices[0].approved_w: Input should be greater than or equal to 0 (site.yaml:18)",
        ),
        (
            _bad(device_extra="    approved_w: 2200\n", role="lighting"),
            "devices[0].approved_w: approved_w applies to office plugs only (role: office_equipment) (site.yaml:18)",
        ),
        (
            _bad(room_extra="    thresholds: {cooling_min_c: 28, colling_max_c: 30}\n"),
            "rooms[0].thresholds.colling_max_c: unknown key (thresholds are empty_room_delay_s, cooling_min_c,",
        ),
        (
            _bad(room_extra="    central_heating: maybe\n"),
            "rooms[0].central_heating: ",
        ),
    ],
)
def test_bad_office_keys_are_site_file_errors(text: str, expected: str) -> None:
    with pytest.raises(SiteError) as err:
        parse_site(text)
    assert any(e.startswith(expected) and "(site.yaml:" in e for e in err.value.errors), err.value.errors


def test_good_office_keys_parse() -> None:
    text = _bad(
        site_extra='  central_heating: true\n  heating_season: ["11-15", "03-15"]\n'
        "  thresholds: {empty_ac_delay_s: 300, daylight_lux: 900, daylight_delay_s: 120}\n",
        room_extra="    central_heating: false\n    thresholds: {cooling_min_c: 28, daylight_lux: 1150}\n",
        device_extra="    approved_w: 2200\n",
    )
    site = parse_site(text)
    room = site.rooms[0]
    assert site.site.heating_season == ("11-15", "03-15")
    assert site.central_heating(room) is False
    effective = site.thresholds_of(room)
    assert (effective.cooling_min_c, effective.daylight_lux, effective.empty_ac_delay_s) == (28, 1150, 300)
    assert site.plug_limit_w(room, site.device("r1-plug")) == 2200
