"""Room cards say which office rule a room breaks and why, in the room's own limits, in zh and en."""

from __future__ import annotations

from html import escape

import pytest

from service.alarms.record import Alarm, AlarmState
from service.alarms.rules import SEVERITY, AlarmType
from service.config.site import Site
from service.live.state import LiveState
from service.web import i18n
from service.web.render import Formatter, render
from service.web.views import room_cards
from tests.service.test_state import T0, feed, site_dict


def _site() -> Site:
    data = site_dict()
    data["site"]["central_heating"] = True
    data["rooms"][0]["thresholds"] = {"cooling_min_c": 28}
    next(d for d in data["devices"] if d["id"] == "r1-plug")["approved_w"] = 2200
    return Site.model_validate(data)


def _alarm(kind: AlarmType, subject: str, value: float) -> Alarm:
    return Alarm(
        id=f"{kind.value}-{subject}",
        type=kind.value,
        severity=SEVERITY[kind],
        subject=subject,
        state=AlarmState.active_unacked,
        active=True,
        raised_at=T0,
        updated_at=T0,
        value=value,
    )


ALARMS = [
    (AlarmType.ac_too_cold, "r1", 22.0, "制冷 22 °C ≤ 28 °C", "cooling at 22 °C ≤ 28 °C"),
    (AlarmType.ac_heating_too_warm, "r1", 19.5, "制热 19.5 °C ≥ 17 °C", "heating at 19.5 °C ≥ 17 °C"),
    (AlarmType.ac_left_on, "r1", 720.0, "空调开着，房间已空 12 分钟", "AC on, room empty 12 min"),
    (AlarmType.lit_in_daylight, "r1", 1200.0, "日光 1,200 lx 仍开灯", "lights on at 1,200 lx"),
    (AlarmType.high_power_appliance, "r1-plug", 2500.0, "插座功率 2,500 W > 2,200 W", "plug drawing 2,500 W > 2,200 W"),
]


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_room_card_says_which_rule_and_why(lang: i18n.Lang) -> None:
    site = _site()
    state = LiveState(site)
    feed(state, T0, "r1-occ", occupancy=False, illuminance=1200.0)
    alarms = [_alarm(kind, subject, value) for kind, subject, value, *_ in ALARMS]
    t = i18n.translator(lang)
    [card] = room_cards(site, [state.room("r1", T0)], {}, alarms, lambda _: None, t)
    reasons = [zh if lang == "zh" else en for *_, zh, en in ALARMS]
    assert card.reasons == reasons
    assert card.approved == {"r1-plug": 2200}
    html = render(
        "_rooms.html",
        t=t,
        f=Formatter(site.site.tz, T0, t),
        cards=[card],
        department="",
        departments=[],
        lit_empty=0,
        acs_on=0,
        office_kw=0.0,
        violations=1,
        can_act=False,
        now=T0,
    )
    for reason in reasons:
        assert escape(reason, quote=False) in html
    assert "r1-plug ≤ 2,200 W" in html
    assert "<dd>1,200 lx</dd>" in html


def test_room_card_without_a_translator_has_no_reasons() -> None:
    site = _site()
    state = LiveState(site)
    [card] = room_cards(site, [state.room("r1", T0)], {}, [_alarm(AlarmType.ac_too_cold, "r1", 22)], lambda _: None)
    assert card.reasons == [None]
