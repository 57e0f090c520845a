"""The dashboard's duty logic without a browser: alarm sentences, room cards, freshness, trends, explorer."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

import pytest

from service.alarms.record import Alarm, AlarmState, Severity
from service.config.compliance import check_site, supply_roles
from service.config.site import Site, load_site
from service.live.state import DeviceView, LiveState
from service.store.db import EnergyInterval
from service.web import duty, i18n, messages, views
from tests.conftest import DEMO_SITE

NOW = datetime(2026, 3, 11, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
ZH = i18n.translator("zh")
EN = i18n.translator("en")


@pytest.fixture(scope="module")
def site() -> Site:
    """The demo site."""
    return load_site(DEMO_SITE)


def alarm(
    kind: str,
    subject: str,
    *,
    state: AlarmState = AlarmState.active_unacked,
    active: bool = True,
    severity: Severity = Severity.warning,
    value: float | None = None,
    at: datetime = NOW,
) -> Alarm:
    """An alarm as the engine holds it."""
    return Alarm(
        id=f"{kind}:{subject}",
        type=kind,
        severity=severity,
        subject=subject,
        state=state,
        active=active,
        raised_at=at,
        updated_at=at,
        value=value,
        message="English text from the core",
    )


@pytest.mark.parametrize(
    ("kind", "subject", "value", "zh", "en"),
    [
        ("redundancy_lost", "hq", 1, "全站（HQ building）：仅 1 路电源可用", "(HQ building): only 1 sources"),
        (
            "lit_empty_room",
            "r2119",
            312.4,
            "2119 会议室：无人亮灯已 312.4 秒",
            "2119 会议室: lights on in an empty room",
        ),
        ("ac_too_cold", "r2119", 22, "空调制冷 22 °C，低于 26 °C", "AC cooling at 22 °C, below 26 °C"),
        (
            "high_power_appliance",
            "r2119-plug",
            2100,
            "r2119-plug（2119 会议室）：插座功率 2,100 W，超过 1,200 W",
            "2,100 W",
        ),
        ("generator_overload", "gen-1", 112.5, "gen-1：输出为额定功率的 112.5%", "gen-1: output at 112.5 %"),
        ("device_offline", "meter-grid-a", None, "meter-grid-a：设备离线", "meter-grid-a: device offline"),
        (
            "grid_lost",
            "hq",
            182.4,
            "全站（HQ building）：市电全部失电，发电机带载 182.4 kW",
            "generator carries 182.4 kW",
        ),
        ("grid_lost", "hq", None, "全站（HQ building）：市电全部失电", "every grid source lost"),
        (
            "security_load_exceeded",
            "gen-1",
            91.5,
            "gen-1：发电机带载为额定功率的 91.5%，超过保安负荷上限 83.3%",
            "above the security-load limit of 83.3 %",
        ),
        ("ac_left_on", "r2119", 900, "2119 会议室：人走未关空调，房间已空 900 秒", "AC left on, room empty for 900 s"),
        (
            "lit_in_daylight",
            "r2119",
            1250,
            "2119 会议室：照度 1,250 lx，日光充足（≥ 800 lx）仍开灯",
            "lights on at 1,250 lx, daylight from 800 lx",
        ),
        ("hazard_overdue", "7", 26.5, "隐患 7：逾期 26.5 小时未整改", "hazard 7: not rectified, 26.5 h past due"),
        ("generator_not_auto", "gen-1", "manual", "gen-1：发电机控制器处于“手动”位", "controller in manual mode"),
        (
            "ats_not_auto",
            "ats-1",
            "inhibited",
            "ats-1：双电源切换开关处于“闭锁”位",
            "transfer switch in inhibited mode",
        ),
        ("critical_load_off", "srv1-ups", "off", "srv1-ups（机房）：重要负荷已断电，非本系统指令", "not by wattkeeper"),
        ("made_up_type", "grid-a", None, "made_up_type · grid-a", "made_up_type · grid-a"),  # a type it does not know
    ],
)
def test_alarm_sentences_from_type_and_values(
    site: Site, kind: str, subject: str, value: float | str | None, zh: str, en: str
) -> None:
    """The page's sentence, not the core's English message; names and limits from the site."""
    assert zh in messages.alarm_message(site, kind, subject, value, ZH)
    assert en in messages.alarm_message(site, kind, subject, value, EN)


def test_every_compliance_detail_of_the_demo_site_reads_chinese(site: Site) -> None:
    """The static check's details on the Chinese page carry no English sentence."""
    for rule in [*check_site(site).rules, *supply_roles(site)]:
        text = messages.compliance_detail(rule.detail, "zh")
        english = [
            w for w in re.findall(r"[A-Za-z_]{3,}", text) if not re.search(rf"\b{w}\b", " ".join(site_ids(site)))
        ]
        assert not english, (rule.rule, rule.detail, text)
        assert messages.compliance_detail(rule.detail, "en") == rule.detail


def site_ids(site: Site) -> list[str]:
    """Ids and names a detail may quote."""
    return [
        *(s.id for s in site.sources),
        *(s.substation for s in site.sources),
        *(g.id for g in site.generators),
        *(t.id for t in site.transfer_switches),
        *(d.id for d in site.devices),
    ]


def test_audit_changes_read_as_words(site: Site) -> None:
    """on/off, modes, rooms by name and times in site time instead of raw JSON."""
    when = lambda iso: datetime.fromisoformat(iso).astimezone(site.site.tz).strftime("%m-%d %H:%M")  # noqa: E731
    assert messages.change_text(False, site, ZH, when) == "已关"
    assert messages.change_text("cool", site, ZH, when) == "制冷"
    text = messages.change_text({"room": "r2119", "until": "2026-03-10T18:16:00+00:00"}, site, ZH, when)
    assert text == "房间 2119 会议室，至 03-11 02:16"


def test_room_cards_show_active_office_rule_alarms_only(site: Site) -> None:
    """A cleared-unacknowledged light, a shelved alarm and device_offline stay off the card and the counter."""
    state = LiveState(site)
    rooms = [v for v in state.rooms(NOW) if v.id == "r2119"]
    alarms = [
        alarm("lit_empty_room", "r2119", state=AlarmState.cleared_unacked, active=False),
        alarm("ac_door_open", "r2119", state=AlarmState.shelved, active=True),
        alarm("device_offline", "r2119-occ", severity=Severity.low),
        alarm("high_power_appliance", "r2119-plug", state=AlarmState.active_acked),
    ]
    (card,) = views.room_cards(site, rooms, {}, alarms, lambda d: None)
    assert card.alarms == [("high_power_appliance", "warning")]
    (none,) = views.room_cards(site, rooms, {}, alarms[:3], lambda d: None)
    assert none.alarms == [] and none.worst is None


def test_badge_counts_urgent_unacknowledged_alarms() -> None:
    """Only unacknowledged critical and high alarms call for the sound; the newest one's time is kept."""
    later = NOW + timedelta(minutes=3)
    counts = views.badge_counts(
        [
            alarm("redundancy_lost", "hq", severity=Severity.high, at=later),
            alarm("backfeed", "gen-1", severity=Severity.critical, state=AlarmState.active_acked),
            alarm("lit_empty_room", "r2119", severity=Severity.warning),
        ]
    )
    assert counts["urgent"] == 1 and counts["unacked"] == 2
    assert counts["urgent_newest"] == int(later.timestamp())


def view(device: str, seen: datetime | None) -> DeviceView:
    """A device's link state."""
    return DeviceView(id=device, profile="sdm630", driver="modbus", online=True, last_seen=seen, status_since=None)


def test_supply_goes_stale_after_three_poll_periods(site: Site) -> None:
    """meter-grid-a polls every second: 3 s without a reading is fresh, 3.5 s stale, with its last time."""
    watched = duty.supply_devices(site)
    assert "meter-grid-a" in watched and "ats-1-ctrl" in watched
    poll = next(d.poll_s for d in site.devices if d.id == "meter-grid-a")
    fresh = [view(d, NOW) for d in watched]
    assert not duty.freshness(site, fresh, watched, NOW).stale
    old = NOW - timedelta(seconds=3 * poll + 0.5)
    views_now = [view(d, old if d == "meter-grid-a" else NOW) for d in watched]
    result = duty.freshness(site, views_now, watched, NOW)
    assert result.stale and result.devices == ("meter-grid-a",) and result.last == old
    at_limit = [view(d, NOW - timedelta(seconds=3 * poll) if d == "meter-grid-a" else NOW) for d in watched]
    assert not duty.freshness(site, at_limit, watched, NOW).stale
    never = duty.freshness(site, [view("meter-grid-a", None)], ["meter-grid-a"], NOW)
    assert never.stale and never.last is None


def test_trend_specs_and_windows(site: Site) -> None:
    """A room charts its thermostat, a source its meter; unknown things are 422 material naming the field."""
    room = duty.trend_spec(site, "room", "r2119")
    assert [(s.device, s.point) for s in room.series] == [
        ("r2119-ac", "local_temperature"),
        ("r2119-ac", "cooling_setpoint"),
    ]
    source = duty.trend_spec(site, "source", "grid-a")
    assert source.series[0].scale == 0.001 and source.series[0].unit == "kW"
    for kind, subject, field in (("room", "nope", "id"), ("planet", "x", "kind"), ("source", "gen-1", "id")):
        with pytest.raises(ValueError, match=rf"^{field}: "):
            duty.trend_spec(site, kind, subject)
    start, end, every = duty.trend_window(NOW + timedelta(seconds=20), "30d")
    assert end - start == timedelta(days=30) and every == timedelta(hours=1) and end.second == 0
    assert (end - start) / every == 720
    with pytest.raises(ValueError, match=r"^range: "):
        duty.trend_window(NOW, "1y")


def test_explorer_windows() -> None:
    """Day, week (from Monday), month and year, each with the period before."""
    wed = date(2026, 3, 11)
    assert duty.explorer_window("day", wed) == (wed, date(2026, 3, 12), date(2026, 3, 10), "hour")
    assert duty.explorer_window("week", wed) == (date(2026, 3, 9), date(2026, 3, 16), date(2026, 3, 2), "day")
    assert duty.explorer_window("month", wed) == (date(2026, 3, 1), date(2026, 4, 1), date(2026, 2, 1), "day")
    assert duty.explorer_window("month", date(2026, 1, 5))[2] == date(2025, 12, 1)
    assert duty.explorer_window("year", wed) == (date(2026, 1, 1), date(2027, 1, 1), date(2025, 1, 1), "month")
    with pytest.raises(ValueError, match=r"^period: "):
        duty.explorer_window("decade", wed)


def test_explorer_bars_by_band_in_site_days(site: Site) -> None:
    """An interval at 23:45 on the 1st (site time) lands on the 1st's bar, whatever UTC says."""
    tz = site.site.tz
    late = datetime(2026, 3, 1, 23, 45, tzinfo=tz)
    noon = datetime(2026, 3, 2, 12, 0, tzinfo=tz)
    meter = site.departments[0].meter or ""
    intervals = [
        EnergyInterval(meter=meter, start=late, kwh=2.0, band="valley", cost=0.64, after_hours=True, department="x"),
        EnergyInterval(meter=meter, start=noon, kwh=5.0, band="flat", cost=3.4, after_hours=False, department="x"),
    ]
    ex = duty.explorer(site, "month", date(2026, 3, 11), intervals, 10.0, [("a", 1.0), ("b", 3.0)], top=1)
    assert len(ex.labels) == 31 and ex.labels[0] == "03-01"
    assert ex.bands["valley"][0] == 2.0 and ex.bands["flat"][1] == 5.0
    assert ex.total_kwh == 7.0 and ex.previous_kwh == 10.0
    assert ex.top_rooms == [("b", 3.0)]


@pytest.mark.parametrize(
    ("detail", "zh"),
    [
        (
            "cooling setpoint 24 °C is below cooling_min_c 26 °C; observed 26.0",
            "制冷设定 24 °C 低于下限 26 °C，已拒绝；回读 26.0",
        ),
        ("observed False", "回读 关"),
        ("no report of on=False within 5.0 s; observed True", "5.0 秒内未收到 on=False 的回报；回读 开"),
        ("srv1-ups has role critical: never commanded", "srv1-ups 为关键/安全设备，从不控制"),
        ("something new", "something new"),
    ],
)
def test_audit_details_in_chinese(detail: str, zh: str) -> None:
    """The control path's English details read Chinese on the Chinese page; unknown ones stay as written."""
    assert messages.audit_detail(detail, "zh") == zh
    assert messages.audit_detail(detail, "en") == detail


def test_quarters_and_override_details(site: Site) -> None:
    """A quarter runs Jan-Mar, Apr-Jun, ...; override details name the room and the local time."""
    assert duty.explorer_window("quarter", date(2026, 5, 20)) == (
        date(2026, 4, 1),
        date(2026, 7, 1),
        date(2026, 1, 1),
        "day",
    )
    when = lambda iso: datetime.fromisoformat(iso).astimezone(site.site.tz).strftime("%m-%d %H:%M")  # noqa: E731
    text = messages.audit_detail("override 3 of r3101 ended at 2026-03-10T12:00:00+00:00", "zh", site, when)
    assert text == "加班登记 #3：3101 研发部开放办公区，03-10 20:00 到期"


def test_a_year_of_power_from_energy_intervals(site: Site) -> None:
    """Days of 15-minute kWh become the day's mean kW (over the intervals there are)."""
    start = datetime(2026, 3, 1, tzinfo=site.site.tz)
    day = timedelta(days=1)
    intervals = [
        EnergyInterval(
            meter="m", start=start + i * timedelta(minutes=15), kwh=5.0, band="flat", cost=0, after_hours=False
        )
        for i in range(96)
    ] + [EnergyInterval(meter="m", start=start + day, kwh=1.0, band="flat", cost=0, after_hours=False)]
    got = duty.mean_kw(intervals, start, day)
    assert got == {int(start.timestamp()): 20.0, int((start + day).timestamp()): 4.0}


def test_only_ranges_older_than_the_rollups_need_history(site: Site) -> None:
    """Rollups are kept ROLLUP_RETENTION (90 days): of the trend ranges only 12 months reaches past them."""
    reach = {span: duty.beyond_rollups(duty.trend_window(NOW, span)[0], NOW) for span in duty.RANGES}
    assert reach == {"24h": False, "7d": False, "30d": False, "12m": True}
    assert not duty.beyond_rollups(NOW - timedelta(days=90), NOW)
    assert duty.beyond_rollups(NOW - timedelta(days=90, minutes=1), NOW)
    spec = duty.trend_spec(site, "source", "grid-a")
    assert [s.metered_power for s in spec.series] == [True, False]  # power from energy; voltage only from rollups
