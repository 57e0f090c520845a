"""Notifier against a local HTTP receiver, a real SMTP server (aiosmtpd) and the real broker."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from email.header import decode_header, make_header
from typing import Any
from zoneinfo import ZoneInfo

import aiomqtt
import pytest

from service.alarms.record import Alarm, AlarmState, Severity
from service.alarms.rules import AlarmType
from service.clock import ManualClock
from service.config.site import EmailChannel, Notifications, Webhook
from service.notify.notifier import SEVERITY_MARK, Notifier, alarm_topic_level, render_notice
from tests.servers import Mosquitto
from tests.service.conftest import Receiver
from tests.smtp import SmtpSink, body_text

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Transition:
    alarm_id: str
    from_state: str | None
    to_state: str
    at: datetime
    who: str | None = None
    value: float | str | None = None
    note: str | None = None


def raised(subject: str = "r2119", type: str = "lit_empty_room") -> tuple[Alarm, Transition]:
    alarm = Alarm(
        id=f"{type}:{subject}",
        type=type,
        severity=Severity.warning,
        subject=subject,
        state=AlarmState.active_unacked,
        active=True,
        raised_at=T0,
        updated_at=T0,
        message="2119 会议室 lights on, nobody there",
        value=1.0,
    )
    return alarm, Transition(alarm.id, None, "active_unacked", T0, value=1.0)


def notifier(notifications: Notifications, **kw: Any) -> Notifier:
    return Notifier(
        notifications,
        site_id="hq",
        site_name="HQ building",
        clock=ManualClock(T0),
        timezone=ZoneInfo("Asia/Shanghai"),
        backoff_s=0.05,
        **kw,
    )


async def test_webhook_bodies_per_format(receiver: Receiver) -> None:
    hooks = [Webhook(url=f"{receiver.url}/{fmt}", format=fmt) for fmt in ("json", "dingtalk", "wecom", "slack")]
    n = notifier(Notifications(webhooks=hooks))
    await n.start()
    await n.notify(*raised())
    got = dict(await receiver.wait_for(4))
    await n.stop()

    body = got["/json"]
    assert {k: body[k] for k in ("site", "id", "type", "severity", "subject", "state", "value")} == {
        "site": "hq",
        "id": "lit_empty_room:r2119",
        "type": "lit_empty_room",
        "severity": "warning",
        "subject": "r2119",
        "state": "active_unacked",
        "value": 1.0,
    }
    assert body["raised_at"] == "2026-03-02T10:00:00+00:00"
    assert body["transition"]["to"] == "active_unacked" and body["transition"]["from"] is None
    ding = got["/dingtalk"]
    assert ding["msgtype"] == "markdown" and "lit_empty_room r2119" in ding["markdown"]["title"]
    assert "2119 会议室" in ding["markdown"]["text"] and "2026-03-02 18:00:00 CST" in ding["markdown"]["text"]
    wecom = got["/wecom"]
    assert wecom["msgtype"] == "markdown" and wecom["markdown"]["content"].startswith("### ")
    slack = got["/slack"]
    assert "HQ building" in slack["text"] and slack["blocks"][1]["text"]["type"] == "mrkdwn"


async def test_webhook_retries_with_backoff_until_delivered(receiver: Receiver) -> None:
    receiver.status = lambda n: 503 if n <= 2 else 204
    n = notifier(Notifications(webhooks=[Webhook(url=receiver.url)]))
    await n.start()
    await n.notify(*raised())
    assert len(await receiver.wait_for(3)) == 3
    await asyncio.sleep(0.05)
    channel = n.channels[0]
    assert (channel.sent, channel.failed) == (1, 0)
    await n.stop()


async def test_webhook_client_error_is_not_retried(receiver: Receiver) -> None:
    receiver.status = lambda n: 400
    n = notifier(Notifications(webhooks=[Webhook(url=receiver.url)]))
    await n.start()
    await n.notify(*raised())
    await receiver.wait_for(1)
    await asyncio.sleep(0.3)
    assert len(receiver.requests) == 1 and n.channels[0].failed == 1
    await n.stop()


async def test_flood_becomes_a_digest(receiver: Receiver) -> None:
    n = notifier(Notifications(webhooks=[Webhook(url=receiver.url)]), max_per_window=3, window_s=60)
    await n.start()
    for i in range(40):
        await n.notify(*raised(subject=f"r{i:03d}"))
    got = await receiver.wait_for(3)
    await asyncio.sleep(0.3)
    assert len(receiver.requests) == 3
    assert [b.get("digest") for _, b in got] == [None, None, True]
    digest = got[2][1]
    assert digest["count"] == 38
    assert [a["subject"] for a in digest["alarms"]] == [f"r{i:03d}" for i in range(2, 40)]
    assert n.channels[0].digests == 1
    await n.stop()


async def test_held_notices_wait_for_the_window(receiver: Receiver) -> None:
    n = notifier(Notifications(webhooks=[Webhook(url=receiver.url, format="dingtalk")]), max_per_window=2, window_s=1.0)
    await n.start()
    for i in range(8):
        await n.notify(*raised(subject=f"r{i}"))
        if i == 4:
            await receiver.wait_for(2)
    await asyncio.sleep(0.2)
    assert len(receiver.requests) == 2
    got = await receiver.wait_for(3)
    titles = [body["markdown"]["title"] for _, body in got]
    assert "r0" in titles[0] and titles[1] == "[HQ building] 4 alarm notifications"
    # The window frees one send at a time; the first free slot is also the last, so: a digest.
    assert titles[2] == "[HQ building] 3 alarm notifications"
    await n.stop()


async def test_email_over_real_smtp(smtp_sink: SmtpSink) -> None:
    email = EmailChannel(url=smtp_sink.url, sender="wk@example.com", to=["duty@example.com", "fm@example.com"])
    n = notifier(Notifications(email=email))
    await n.start()
    await n.notify(*raised())
    messages = await asyncio.to_thread(smtp_sink.wait_for, 1)
    await n.stop()
    assert len(messages) == 1
    mail = messages[0]
    assert mail["From"] == "wk@example.com" and mail["To"] == "duty@example.com, fm@example.com"
    assert str(make_header(decode_header(mail["Subject"]))) == "🟡 [HQ building] lit_empty_room r2119: active_unacked"
    text = body_text(mail)
    assert "2119 会议室 lights on" in text and "severity: warning" in text


async def test_mqtt_retained_state_including_cleared(fresh_mosquitto: Mosquitto) -> None:
    topic = "wattkeeper/hq/alarms"
    async with aiomqtt.Client(fresh_mosquitto.host, fresh_mosquitto.port) as client:
        n = notifier(Notifications(mqtt_topic=topic), mqtt=client)
        await n.start()
        alarm, first = raised()
        await n.notify(alarm, first)
        cleared_at = T0 + timedelta(minutes=3)
        cleared = replace(
            alarm,
            state=AlarmState.cleared,
            active=False,
            cleared_at=cleared_at,
            updated_at=cleared_at,
            message="",
            value=None,
        )
        await n.notify(cleared, Transition(alarm.id, "active_acked", "cleared", cleared_at))
        await n.notify(*raised(subject="r2120", type="ac_too_cold"))
        while n.channels[0].sent < 3:
            await asyncio.sleep(0.02)
        await n.stop()

    retained: dict[str, dict[str, Any]] = {}
    async with aiomqtt.Client(fresh_mosquitto.host, fresh_mosquitto.port) as sub:
        await sub.subscribe(f"{topic}/#", qos=1)
        async with asyncio.timeout(10):
            async for msg in sub.messages:
                assert msg.retain
                retained[str(msg.topic)] = json.loads(msg.payload)
                if len(retained) == 2:
                    break
    assert retained[f"{topic}/lit_empty_room:r2119"]["state"] == "cleared"
    assert retained[f"{topic}/lit_empty_room:r2119"]["cleared_at"] == "2026-03-02T10:03:00+00:00"
    assert retained[f"{topic}/ac_too_cold:r2120"]["state"] == "active_unacked"


@pytest.mark.parametrize(
    ("severity", "mark"),
    [(Severity.critical, "🔴"), (Severity.high, "🟠"), (Severity.warning, "🟡"), (Severity.low, "🔵")],
)
def test_each_severity_has_its_own_mark(severity: Severity, mark: str) -> None:
    """The title's mark follows the rules' severities (critical, high, warning, low), not another scale."""
    alarm, transition = raised(type=AlarmType.backfeed)
    alarm = replace(alarm, severity=severity)
    notice = render_notice(alarm, transition, site_id="hq", site_name="HQ building", tz=UTC)
    assert notice.title.startswith(f"{mark} [HQ building] backfeed")
    assert f"severity: {severity.value}" in notice.lines


def test_severity_marks_cover_the_rules_severities() -> None:
    assert set(SEVERITY_MARK) == {s.value for s in Severity}
    assert len(set(SEVERITY_MARK.values())) == len(SEVERITY_MARK)


NEXT_SWEEP = T0 + timedelta(minutes=90)


async def warn(n: Notifier) -> None:
    await n.rooms_still_occupied(
        sweep="after-hours",
        job="after-hours@2026-03-02T10:30",
        at=T0,
        rooms=[("r3101", "3101 研发部"), ("r2119", "2119 会议室")],
        next_sweep=NEXT_SWEEP,
    )


async def test_a_notice_reaches_webhook_email_and_mqtt(
    receiver: Receiver, smtp_sink: SmtpSink, fresh_mosquitto: Mosquitto
) -> None:
    """A sweep's warning is no alarm: kind `notice`, on MQTT once and not retained, under notices/."""
    topic = "wattkeeper/hq/alarms"
    email = EmailChannel(url=smtp_sink.url, sender="wk@example.com", to=["duty@example.com"])
    hooks = [Webhook(url=f"{receiver.url}/json"), Webhook(url=f"{receiver.url}/wecom", format="wecom")]
    async with (
        aiomqtt.Client(fresh_mosquitto.host, fresh_mosquitto.port) as pub,
        aiomqtt.Client(fresh_mosquitto.host, fresh_mosquitto.port) as sub,
    ):
        await sub.subscribe(f"{topic}/#", qos=1)
        n = notifier(Notifications(webhooks=hooks, mqtt_topic=topic, email=email), mqtt=pub)
        await n.start()
        await warn(n)
        async with asyncio.timeout(10):
            msg = await anext(aiter(sub.messages))
        got = dict(await receiver.wait_for(2))
        mails = await asyncio.to_thread(smtp_sink.wait_for, 1)
        await n.stop()

    body = got["/json"]
    assert (body["kind"], body["notice"], body["sweep"]) == ("notice", "rooms_still_occupied", "after-hours")
    assert [r["id"] for r in body["rooms"]] == ["r3101", "r2119"]
    assert body["next_sweep"] == NEXT_SWEEP.isoformat() and body["at"] == T0.isoformat()
    assert "transition" not in body and "state" not in body
    content = got["/wecom"]["markdown"]["content"]
    assert "2 room(s) still occupied" in content and "2026-03-02 19:30 CST" in content
    assert str(msg.topic) == f"{topic}/notices/{body['id']}" and not msg.retain
    assert json.loads(msg.payload) == body
    subject = str(make_header(decode_header(mails[0]["Subject"])))
    assert subject == "🔔 [HQ building] after-hours sweep: 2 room(s) still occupied"
    assert "r3101 (3101 研发部), r2119 (2119 会议室)" in body_text(mails[0])


async def test_notices_share_the_rate_limit_with_alarms(receiver: Receiver) -> None:
    n = notifier(Notifications(webhooks=[Webhook(url=receiver.url)]), max_per_window=2, window_s=60)
    await n.start()
    await n.notify(*raised(subject="r1"))
    await n.notify(*raised(subject="r2"))
    await warn(n)
    await n.notify(*raised(subject="r3"))
    got = await receiver.wait_for(2)
    await asyncio.sleep(0.3)
    await n.stop()
    assert len(receiver.requests) == 2
    single, digest = got[0][1], got[1][1]
    assert (single["kind"], single["subject"]) == ("alarm", "r1")
    assert (digest["digest"], digest["count"]) == (True, 3)
    assert [a["subject"] for a in digest["alarms"]] == ["r2", "r3"]
    assert [x["notice"] for x in digest["notices"]] == ["rooms_still_occupied"]


def test_alarm_ids_become_one_topic_level() -> None:
    assert alarm_topic_level("backfeed:gen-1") == "backfeed:gen-1"
    assert alarm_topic_level("x/y+z#") == "x_y_z_"


def test_mqtt_topic_needs_a_publisher() -> None:
    with pytest.raises(ValueError, match="MQTT publisher"):
        notifier(Notifications(mqtt_topic="wk/alarms"))
