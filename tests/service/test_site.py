"""Site files: valid ones load, broken ones report every problem with key path and line."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from service.config.site import Grade, SiteError, load_site, parse_site

MINIMAL = """\
site:
  id: hq
  name: HQ
  grade: first
  allowed_interruption_s: 10
  security_load_kw: 150
  interlock: electrical
sources:
  - {id: grid-a, substation: east, voltage_kv: 10, meter: m-a}
  - {id: grid-b, substation: west, voltage_kv: 10}
generators:
  - {id: gen-1, rated_kw: 200, start_limit_s: 10}
transfer_switches:
  - {id: ats-1, sources: [grid-a, grid-b, gen-1]}
departments:
  - {id: marketing, name: Marketing}
rooms:
  - {id: r1, name: Room 1, department: marketing, kind: office, devices: [occ-1, light-1]}
devices:
  - {id: m-a, driver: modbus, profile: sdm630, host: 127.0.0.1, port: 15021}
  - {id: occ-1, driver: mqtt, profile: z2m-occupancy, topic: zigbee2mqtt/occ-1}
  - {id: light-1, driver: mqtt, profile: tasmota-relay, topic: light-1, role: lighting}
calendar:
  working_hours: {mon: "08:30-17:30"}
  sweeps: ["18:30"]
tariff:
  bands:
    - {name: peak, hours: ["08:00-20:00"], price: 1.1}
    - {name: valley, hours: ["20:00-08:00"], price: 0.3}
"""


def test_demo_site_loads(demo_site_path: Path) -> None:
    site = load_site(demo_site_path)
    assert site.site.grade is Grade.first
    assert len(site.rooms) >= 8
    assert len({r.department for r in site.rooms}) >= 3
    kinds = {r.kind.value for r in site.rooms}
    assert {"meeting", "office", "corridor", "locker", "server"} <= kinds
    profiles = {d.profile for d in site.devices}
    assert {
        "z2m-occupancy",
        "tasmota-relay",
        "z2m-thermostat",
        "shelly-plug",
        "sdm630",
        "atys-pm",
        "dse-gencomm",
    } <= profiles
    assert site.generators[0].rated_kw >= 1.2 * site.site.security_load_kw
    assert len(site.tariff.bands if site.tariff else []) == 3


def test_minimal_site_loads_with_defaults() -> None:
    site = parse_site(MINIMAL)
    assert site.site.thresholds.empty_room_delay_s == 300
    assert site.site.thresholds.cooling_min_c == 26
    assert site.site.thresholds.heating_max_c == 17
    assert site.site.thresholds.door_open_delay_s == 120
    assert site.site.thresholds.plug_max_w == 1200
    assert site.site.thresholds.override_max_h == 2
    assert site.room_of("light-1") is not None
    assert site.device("m-a").unit == 1


def _break(old: str, new: str) -> str:
    assert old in MINIMAL, old
    return MINIMAL.replace(old, new, 1)


BROKEN = [
    pytest.param(
        _break("department: marketing, kind", "department: finance, kind"),
        "rooms[0].department: unknown department 'finance' (site.yaml:18)",
        id="unknown-department",
    ),
    pytest.param(
        _break("devices: [occ-1, light-1]", "devices: [occ-1, lamp-9]"),
        "rooms[0].devices[1]: unknown device 'lamp-9' (site.yaml:18)",
        id="unknown-room-device",
    ),
    pytest.param(
        _break("profile: sdm630", "profile: sdm999"),
        "devices[0].profile: unknown profile 'sdm999'",
        id="unknown-profile",
    ),
    pytest.param(
        _break("{id: grid-b, substation: west", "{id: grid-a, substation: west"),
        "sources[1].id: duplicate id 'grid-a' (first at sources[0]) (site.yaml:10)",
        id="duplicate-source",
    ),
    pytest.param(
        _break("sources: [grid-a, grid-b, gen-1]", "sources: [grid-a, grid-c, gen-1]"),
        "transfer_switches[0].sources[1]: unknown source or generator 'grid-c' (site.yaml:14)",
        id="unknown-switch-source",
    ),
    pytest.param(
        _break("meter: m-a}", "meter: m-z}"),
        "sources[0].meter: unknown device 'm-z' (site.yaml:9)",
        id="unknown-meter",
    ),
    pytest.param(
        _break("meter: m-a}", "meter: occ-1}"),
        "sources[0].meter: meter 'occ-1' is not a modbus meter (site.yaml:9)",
        id="meter-not-modbus",
    ),
    pytest.param(
        _break("grade: first", "grade: platinum"),
        "site.grade: Input should be 'special', 'first', 'second', 'temporary' or 'ordinary', "
        "got 'platinum' (site.yaml:4)",
        id="bad-grade",
    ),
    pytest.param(
        _break("  allowed_interruption_s: 10\n", ""),
        "site.allowed_interruption_s: required key missing (site.yaml:1)",
        id="missing-key",
    ),
    pytest.param(
        _break("  interlock: electrical\n", "  interlock: electrical\n  colour: red\n"),
        "site.colour: unknown key (site.yaml:8)",
        id="unknown-key",
    ),
    pytest.param(
        _break("rated_kw: 200", "rated_kw: -5"),
        "generators[0].rated_kw: Input should be greater than 0 (site.yaml:12)",
        id="negative-rating",
    ),
    pytest.param(
        _break('hours: ["20:00-08:00"]', 'hours: ["21:00-08:00"]'),
        "tariff: bands leave 20:00 uncovered; they must cover 24 h (site.yaml:26)",
        id="tariff-gap",
    ),
    pytest.param(
        _break('hours: ["20:00-08:00"]', 'hours: ["19:00-08:00"]'),
        "tariff: bands 'peak' and 'valley' overlap at 19:00 (site.yaml:26)",
        id="tariff-overlap",
    ),
    pytest.param(
        _break('mon: "08:30-17:30"', 'mon: "8.30-17.30"'),
        "calendar.working_hours.mon: '8.30-17.30' is not a span HH:MM-HH:MM (site.yaml:24)",
        id="bad-hours",
    ),
    pytest.param(
        _break('sweeps: ["18:30"]', 'sweeps: ["25:00"]'),
        "calendar.sweeps[0]: '25:00' is not a time of day HH:MM (site.yaml:25)",
        id="bad-sweep",
    ),
    pytest.param(
        _break("topic: zigbee2mqtt/occ-1}", "}"),
        "devices[1]: an mqtt device needs topic (site.yaml:21)",
        id="mqtt-without-topic",
    ),
    pytest.param(
        _break("profile: tasmota-relay", "profile: sdm120"),
        "devices[2].driver: profile 'sdm120' is a modbus profile (site.yaml:22)",
        id="driver-mismatch",
    ),
    pytest.param(
        _break("role: lighting", "role: disco"),
        "devices[2].role: Input should be 'lighting', 'hvac', 'office_equipment', 'sensor', 'critical', "
        "'life_safety' or 'supply', got 'disco' (site.yaml:22)",
        id="bad-role",
    ),
    pytest.param(
        _break("  name: HQ\n", "  name: HQ\n  timezone: Mars/Olympus\n"),
        "site.timezone: unknown time zone 'Mars/Olympus' (site.yaml:4)",
        id="bad-timezone",
    ),
    pytest.param(
        _break("port: 15021", "port: 70000"),
        "devices[0].port: Input should be less than or equal to 65535 (site.yaml:20)",
        id="bad-port",
    ),
    pytest.param(
        _break('sweeps: ["18:30"]', 'sweeps: ["18:30"]\n  holidays: [2026-10-01, 2026-02-30]'),
        "calendar.holidays[1]: '2026-02-30' is not a date (day is out of range for month) (site.yaml:26)",
        id="date-that-does-not-exist",
    ),
    pytest.param(
        _break('sweeps: ["18:30"]', "sweeps: [\"18:30\"]\n  workdays: ['2026-13-01']"),
        "calendar.workdays[0]: '2026-13-01' is not a date (month must be in 1..12) (site.yaml:26)",
        id="month-13",
    ),
    pytest.param(
        _break('sweeps: ["18:30"]', 'sweeps: ["18:30"]\n  holidays: [20261001]'),
        "calendar.holidays[0]: 20261001 is not a date YYYY-MM-DD (site.yaml:26)",
        id="date-as-number",
    ),
    pytest.param(
        _break('sweeps: ["18:30"]', 'sweeps: ["18:30"]\n  holidays: [!!timestamp 2026-02-30]'),
        "site.yaml: cannot read tag:yaml.org,2002:timestamp: day is out of range for month (site.yaml:26)",
        id="tagged-date-that-does-not-exist",
    ),
    pytest.param(
        _break("meter: m-a}", "meter: 2026-02-31}"),
        "sources[0].meter: unknown device '2026-02-31' (site.yaml:9)",
        id="date-like-reference",
    ),
    pytest.param(
        _break('sweeps: ["18:30"]', 'sweeps: ["18:30"]\n  holidays: [2026-10-01]\n  workdays: [2026-10-01]'),
        "calendar.workdays: 2026-10-01 is both a holiday and a make-up workday (site.yaml:27)",
        id="holiday-and-workday",
    ),
    pytest.param(
        _break("  grade: first\n", "  grade: first\n  grade: ordinary\n"),
        "site.grade: key 'grade' given twice (first at line 4) (site.yaml:5)",
        id="repeated-key",
    ),
    pytest.param(
        _break("{id: r1, name: Room 1,", "{id: r1, name: Room 1, name: Room 2,"),
        "rooms[0].name: key 'name' given twice (first at line 18) (site.yaml:18)",
        id="repeated-key-in-flow-mapping",
    ),
    pytest.param(
        _break('hours: ["08:00-20:00"]', 'hours: ["08:00-20:10"]').replace("20:00-08:00", "20:10-08:00"),
        "tariff.bands[0].hours[0]: '08:00-20:10': 20:10 is not on a quarter hour; energy is priced in 15-minute "
        "intervals, so bands start and end at :00, :15, :30 or :45 (site.yaml:28)",
        id="band-off-quarter-hour",
    ),
    pytest.param(
        _break('hours: ["08:00-20:00"]', 'hours: ["07:10-20:00"]').replace("20:00-08:00", "20:00-07:10"),
        "tariff.bands[1].hours[0]: '20:00-07:10': 07:10 is not on a quarter hour",
        id="band-end-off-quarter-hour",
    ),
    pytest.param(
        _break('mon: "08:30-17:30"', 'mon: "17:30-08:30"'),
        "calendar.working_hours.mon: '17:30-08:30' runs past midnight; split it over two days (site.yaml:24)",
        id="hours-past-midnight",
    ),
    pytest.param(
        _break('mon: "08:30-17:30"', 'mon: "08:30-17:30", funday: "09:00-10:00"'),
        "calendar.working_hours.funday: Input should be 'mon', 'tue', 'wed', 'thu', 'fri', 'sat' or 'sun', "
        "got 'funday' (site.yaml:24)",
        id="unknown-weekday",
    ),
    pytest.param("site: [1, 2\n", "site.yaml: not valid YAML", id="not-yaml"),
    pytest.param("site: &a {id: x}\nother: *a\n", "anchors and aliases are not allowed", id="yaml-alias"),
    pytest.param("site: !!python/object:os.system {}\n", "site.yaml:", id="unknown-tag"),
]


@pytest.mark.parametrize(("text", "expected"), BROKEN)
def test_broken_site_names_key_and_line(text: str, expected: str) -> None:
    with pytest.raises(SiteError) as info:
        parse_site(text)
    assert any(expected in line for line in info.value.errors), info.value.errors


def test_every_error_is_reported_not_just_the_first() -> None:
    text = _break("grade: first", "grade: gold")
    text = text.replace("rated_kw: 200", "rated_kw: 0").replace("port: 15021", "port: 0")
    with pytest.raises(SiteError) as info:
        parse_site(text)
    paths = [e.split(":")[0] for e in info.value.errors]
    assert paths == ["site.grade", "generators[0].rated_kw", "devices[0].port"]


def _errors(text: str) -> list[str]:
    with pytest.raises(SiteError) as info:
        parse_site(text)
    return info.value.errors


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        pytest.param(
            [("grade: first", "grade: gold"), ("department: marketing, kind", "department: finance, kind")],
            [
                "site.grade: Input should be 'special', 'first', 'second', 'temporary' or 'ordinary', "
                "got 'gold' (site.yaml:4)",
                "rooms[0].department: unknown department 'finance' (site.yaml:18)",
            ],
            id="schema-and-reference",
        ),
        pytest.param(
            [("rated_kw: 200", "rated_kw: big"), ("gen-1]}", "gen-9]}"), ("profile: sdm630", "profile: sdm999")],
            [
                "generators[0].rated_kw: Input should be a valid number, unable to parse string as a number "
                "(site.yaml:12)",
                "transfer_switches[0].sources[2]: unknown source or generator 'gen-9' (site.yaml:14)",
                "devices[0].profile: unknown profile 'sdm999' (known: atys-pm, dse-gencomm, sdm120, sdm630, "
                "shelly-plug, tasmota-relay, z2m-contact, z2m-occupancy, z2m-plug, z2m-thermostat) (site.yaml:20)",
            ],
            id="schema-error-in-the-item-that-holds-a-reference",
        ),
        pytest.param(
            [("{id: grid-b, substation: west", "{id: grid-a, substation: 7"), ("port: 15021", "port: many")],
            [
                "sources[1].substation: Input should be a valid string (site.yaml:10)",
                "sources[1].id: duplicate id 'grid-a' (first at sources[0]) (site.yaml:10)",
                "transfer_switches[0].sources[1]: unknown source or generator 'grid-b' (site.yaml:14)",
                "devices[0].port: Input should be a valid integer, unable to parse string as an integer (site.yaml:20)",
            ],
            id="schema-and-duplicate-on-one-line",
        ),
        pytest.param(
            [("  grade: first\n", "  grade: first\n  grade: gold\n"), ("devices: [occ-1, light-1]", "devices: [x]")],
            [
                "site.grade: key 'grade' given twice (first at line 4) (site.yaml:5)",
                "site.grade: Input should be 'special', 'first', 'second', 'temporary' or 'ordinary', "
                "got 'gold' (site.yaml:5)",
                "rooms[0].devices[0]: unknown device 'x' (site.yaml:19)",
            ],
            id="repeated-key-schema-and-reference",
        ),
        pytest.param(
            [('mon: "08:30-17:30"', 'funday: "08:30-17:30", mon: "17:30-08:30"'), ('"18:30"', '"18:77"')],
            [
                "calendar.working_hours.funday: Input should be 'mon', 'tue', 'wed', 'thu', 'fri', 'sat' or "
                "'sun', got 'funday' (site.yaml:24)",
                "calendar.working_hours.mon: '17:30-08:30' runs past midnight; split it over two days (site.yaml:24)",
                "calendar.sweeps[0]: '18:77' is not a time of day HH:MM (site.yaml:25)",
            ],
            id="several-in-one-model",
        ),
        pytest.param(
            [
                ('sweeps: ["18:30"]', 'sweeps: ["18:30"]\n  holidays: [2026-02-30]'),
                ("department: marketing, kind", "department: finance, kind"),
                ('hours: ["08:00-20:00"]', 'hours: ["08:00-20:05"]'),
            ],
            [
                "rooms[0].department: unknown department 'finance' (site.yaml:18)",
                "calendar.holidays[0]: '2026-02-30' is not a date (day is out of range for month) (site.yaml:26)",
                "tariff.bands[0].hours[0]: '08:00-20:05': 20:05 is not on a quarter hour; energy is priced in "
                "15-minute intervals, so bands start and end at :00, :15, :30 or :45 (site.yaml:29)",
            ],
            id="bad-date-band-and-reference",
        ),
    ],
)
def test_every_error_of_every_kind_in_file_order(changes: list[tuple[str, str]], expected: list[str]) -> None:
    text = MINIMAL
    for old, new in changes:
        assert old in text, old
        text = text.replace(old, new, 1)
    assert _errors(text) == expected


def test_unquoted_times_dates_and_split_makeup_hours_load() -> None:
    text = _break('sweeps: ["18:30"]', "sweeps: [18:30, 20:00]\n  holidays: [2026-10-01]")
    text = text.replace('mon: "08:30-17:30"', 'mon: 08:30-12:00, tue: "08:30-12:00,13:00-17:30"')
    text = text.replace("  working_hours:", '  makeup_hours: "08:30-12:00,13:00-17:30"\n  working_hours:')
    site = parse_site(text)
    assert site.calendar.sweeps == ["18:30", "20:00"]
    assert site.calendar.holidays == [date(2026, 10, 1)]
    assert site.calendar.makeup_hours == "08:30-12:00,13:00-17:30"


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(SiteError, match="no such file"):
        load_site(tmp_path / "nope.yaml")
    with pytest.raises(SiteError, match="not a file"):
        load_site(tmp_path)
    (tmp_path / "plain").write_text("")
    with pytest.raises(SiteError, match=r"plain/site\.yaml: cannot read: Not a directory"):
        load_site(tmp_path / "plain" / "site.yaml")


def test_huge_file_refused() -> None:
    with pytest.raises(SiteError, match="larger than"):
        parse_site("x: " + "a" * 3_000_000)
