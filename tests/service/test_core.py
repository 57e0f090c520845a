"""The core with injected time: telemetry_dropped from the outbox's drops; alarms across a restart."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from service.alarms import rules
from service.alarms.engine import DEFAULT_CONFIG, AlarmTypeConfig
from service.alarms.evaluate import ALARM_UPDATES_SAVE_S, DROP_ALARM_HOLD
from service.alarms.record import Alarm, Severity
from service.alarms.rules import AlarmType
from service.clock import ManualClock
from service.config.site import load_site
from service.core import Core
from service.live.events import EventBus
from service.metrics import Metrics
from service.store.db import Store
from service.telemetry.sink import TelemetrySink
from tests.conftest import DEMO_SITE
from tests.harness import eventually
from tests.service.conftest import serve_http

T0 = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
DEMO = load_site(DEMO_SITE)
HOLD_S = DROP_ALARM_HOLD.total_seconds()
# No off-delays: what is tested here is the core's hold and restore, not the engine's delays.
CONFIG = {
    **DEFAULT_CONFIG,
    AlarmType.telemetry_dropped: AlarmTypeConfig(off_delay_s=0.0),
    AlarmType.shutdown_failed: AlarmTypeConfig(off_delay_s=0.0),
}


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@dataclass
class FlakyDatabase:
    url: str
    up: bool = False


@dataclass
class Rig:
    core: Core
    clock: ManualClock
    metrics: Metrics
    store: Store

    def restarted(self) -> Core:
        """A new core on the same store and clock, as after a restart (not started yet)."""
        return _core(self.store, self.clock, Metrics())


def _core(store: Store, clock: ManualClock, metrics: Metrics) -> Core:
    return Core(DEMO, store=store, clock=clock, events=EventBus(), metrics=metrics, alarm_config=CONFIG)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    store = Store(f"sqlite:///{tmp_path}/wk.db")
    await store.open()
    clock, metrics = ManualClock(T0), Metrics()
    yield Rig(_core(store, clock, metrics), clock, metrics, store)
    await store.close()


def dropped_alarm(core: Core) -> Alarm | None:
    return next((a for a in core.engine.all() if a.type == AlarmType.telemetry_dropped), None)


@pytest.mark.parametrize(
    ("drops", "ticks", "check_s", "active", "value"),
    [
        pytest.param([(0, 5)], [], 0, True, 5, id="raised-at-once"),
        pytest.param([(0, 5)], [300], HOLD_S, True, 5, id="held-for-exactly-the-hold"),
        pytest.param([(0, 5)], [300], HOLD_S + 0.001, False, 0, id="clear-after-the-hold"),
        pytest.param([(0, 5), (300, 7)], [], 300 + HOLD_S, True, 12, id="a-drop-restarts-the-hold"),
        pytest.param([(0, 5), (300, 7)], [], 300 + HOLD_S + 0.001, False, 0, id="clear-after-the-last-drop"),
        pytest.param([(0, 5), (HOLD_S + 100, 3)], [HOLD_S + 1], HOLD_S + 100, True, 3, id="second-outage-own-count"),
    ],
)
async def test_telemetry_dropped_hold_and_clear(
    rig: Rig, drops: list[tuple[float, int]], ticks: list[float], check_s: float, active: bool, value: int
) -> None:
    """Raised at the first drop with the outage's count; clear DROP_ALARM_HOLD after the last drop."""
    events = sorted([(t, n) for t, n in drops] + [(t, 0) for t in [*ticks, check_s]])
    for t, n in events:
        rig.clock.set(at(t))
        if n:
            rig.core.on_telemetry_dropped(n)
        await rig.core.tick()
    alarm = dropped_alarm(rig.core)
    assert alarm is not None
    assert alarm.active is active
    if active:
        assert (alarm.subject, alarm.value) == ("telemetry", value)
        assert f"{value} readings dropped" in alarm.message


@pytest.fixture
def database() -> Iterator[FlakyDatabase]:
    """A local HTTP server in the place of InfluxDB's write endpoint: 204 while `up`, 503 while not."""
    db = FlakyDatabase("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(204 if db.up else 503)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    with serve_http(Handler) as url:
        db.url = url
        yield db


async def _evaluated(core: Core) -> Alarm:
    """The telemetry_dropped alarm once the core has evaluated every drop so far.

    A tick's own writes (the alarm's line, the service line) can drop more lines after its
    evaluation; the next tick, which writes nothing new at the same time, takes those too.
    """
    for _ in range(2):
        await core.tick()
    alarm = dropped_alarm(core)
    assert alarm is not None
    return alarm


async def test_a_second_outage_counts_only_its_own_lines(rig: Rig, database: FlakyDatabase, tmp_path: Path) -> None:
    """Through a real outbox and a database that goes away twice: the second outage's alarm leaves
    out the first one's lines; the sink's total (the /metrics gauge) keeps them all."""
    sink = TelemetrySink(
        database.url,
        "",
        "",
        "wk",
        tmp_path / "outbox",
        # room for one tick's own lines (alarm, service, site figures and compliance) once the
        # database is back, so only the outages drop lines
        max_outbox_lines=40,
        batch_lines=2,
        flush_interval_s=0.05,
        max_backoff_s=0.05,
        timeout_s=5.0,
        on_drop=rig.core.on_telemetry_dropped,
    )
    rig.core.sink = sink
    await sink.start()
    try:
        sink.put_many(f"m v={i}i" for i in range(60))
        first = await _evaluated(rig.core)
        assert first.active and first.value == sink.dropped > 0

        database.up = True

        async def drained() -> bool:
            return sink.outbox_depth == 0

        await eventually(drained, 30)
        rig.clock.advance(HOLD_S + 1)
        await rig.core.tick()
        cleared = dropped_alarm(rig.core)
        assert cleared is not None and not cleared.active
        before = sink.dropped

        database.up = False
        rig.clock.advance(120)
        sink.put_many(f"m v={i}i" for i in range(60))
        second = await _evaluated(rig.core)
        assert second.active and second.value == sink.dropped - before > 0
        assert before > 0 and rig.metrics.dropped._value.get() == sink.dropped
    finally:
        await sink.stop(drain_timeout_s=0.1)


# -- shelving across a restart ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("acked", "normal_underneath", "returns"),
    [
        (True, False, "active_acked"),
        (False, False, "active_unacked"),
        (False, True, "cleared_unacked"),
        (True, True, "cleared"),
    ],
)
async def test_a_shelf_outlives_a_restart(rig: Rig, acked: bool, normal_underneath: bool, returns: str) -> None:
    """Who acknowledged and when, who shelved, and the condition underneath come back from the store;
    the shelf then ends in the state they say."""
    device = "r2119-light"
    await rig.core.report_now(rules.shutdown_failed(device, failed=True))
    [alarm] = rig.core.engine.active()
    if acked:
        rig.clock.advance(30)
        await rig.core.ack(alarm.id, "alice")
    until = rig.clock.advance(60) + timedelta(hours=1)
    await rig.core.shelve(alarm.id, until, "bob")
    if normal_underneath:
        rig.clock.advance(60)
        await rig.core.report_now(rules.shutdown_failed(device, failed=False))
    before = rig.core.engine.get(alarm.id)
    assert before is not None and before.active is not normal_underneath

    core = rig.restarted()
    await core.start()
    try:
        restored = core.engine.get(alarm.id)
        assert restored == before
        assert (restored.shelved_by, restored.acked_by) == ("bob", "alice" if acked else None)
        rig.clock.set(until)
        await core.tick()
        back = core.engine.get(alarm.id)
        assert back is not None and back.state.value == returns
        assert back.acked_at == (T0 + timedelta(seconds=30) if acked else None)
    finally:
        await core.stop()
    stored = await rig.store.get_alarm(alarm.id)
    assert stored is not None and (stored.state, stored.shelved_by) == (returns, None)
    journal = [(t.from_state, t.to_state, t.who, t.note) for t in await rig.store.journal(alarm.id)]
    assert journal[-1] == ("shelved", returns, "system", "shelve expired")


async def test_an_alarm_that_follows_its_condition_is_shown_at_once_and_stored_without_a_journal_entry(
    rig: Rig,
) -> None:
    """A changed value of an active alarm goes out as an `alarm` event (update) and is stored at the next tick."""
    async with rig.core.events.subscribe() as queue:
        rig.core.on_telemetry_dropped(5)
        await rig.core.tick()
        raised = dropped_alarm(rig.core)
        assert raised is not None and raised.value == 5
        rig.clock.set(at(1))
        rig.core.on_telemetry_dropped(7)
        await rig.core.tick()
        events = [queue.get_nowait() for _ in range(queue.qsize())]
    alarm_events = [e["data"] for e in events if e["event"] == "alarm"]
    assert [(e["value"], e.get("update", False)) for e in alarm_events] == [(5, False), (12, True)]
    assert alarm_events[1]["state"] == "active_unacked" and "12 readings dropped" in alarm_events[1]["message"]
    (stored,) = await rig.store.list_alarms(type="telemetry_dropped", limit=10, offset=0)
    assert (stored.value, stored.message) == (12, alarm_events[1]["message"])
    assert [j.to_state for j in await rig.store.journal(stored.id)] == ["active_unacked"]  # the raise only
    # Further updates are shown at once but written at most every ALARM_UPDATES_SAVE_S.
    rig.clock.set(at(2))
    rig.core.on_telemetry_dropped(3)
    await rig.core.tick()
    assert rig.core.engine.get(stored.id).value == 15  # type: ignore[union-attr]
    (stored,) = await rig.store.list_alarms(type="telemetry_dropped", limit=10, offset=0)
    assert stored.value == 12
    rig.clock.set(at(1 + ALARM_UPDATES_SAVE_S))
    await rig.core.tick()
    (stored,) = await rig.store.list_alarms(type="telemetry_dropped", limit=10, offset=0)
    assert stored.value == 15


class _Pages:
    """Records what the core hands its notifier (a stand-in for the channels, tested in test_notify.py)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    async def notify(self, alarm: Any, transition: Any = None) -> None:
        self.sent.append((alarm.type, transition.note if transition else ""))


async def test_a_transition_marked_not_to_page_is_journaled_but_not_notified(rig: Rig) -> None:
    pages = _Pages()
    core = Core(DEMO, store=rig.store, clock=rig.clock, events=EventBus(), metrics=Metrics(), alarm_config=CONFIG)
    core.notifier = pages  # type: ignore[assignment]
    covered = rules.Finding(AlarmType.shutdown_failed, "r1101-light", Severity.warning, True, page=False)
    await core.report_now(covered)
    paged = rules.telemetry_dropped("telemetry", dropped=3)
    await core.report_now(paged)
    assert pages.sent == [("telemetry_dropped", "raised")]
    (stored,) = await rig.store.list_alarms(type="shutdown_failed", limit=10, offset=0)
    assert [(j.to_state, "not paged" in (j.note or "")) for j in await rig.store.journal(stored.id)] == [
        ("active_unacked", True)
    ]


async def test_an_escalation_re_alarms_an_acknowledged_alarm_journals_notifies_and_pushes(rig: Rig) -> None:
    pages = _Pages()
    events = EventBus()
    core = Core(DEMO, store=rig.store, clock=rig.clock, events=events, metrics=Metrics(), alarm_config=CONFIG)
    core.notifier = pages  # type: ignore[assignment]
    warning = rules.Finding(AlarmType.shutdown_failed, "r1101-light", Severity.warning, True, message="1 try")
    await core.report_now(warning)
    (alarm,) = core.engine.active()
    await core.ack(alarm.id, "electrician")
    async with events.subscribe() as queue:
        rig.clock.set(at(5))
        worse = rules.Finding(AlarmType.shutdown_failed, "r1101-light", Severity.critical, True, message="3 tries")
        await core.report_now(worse)
        pushed = [queue.get_nowait() for _ in range(queue.qsize())]
    (now,) = core.engine.active()
    assert (now.id, now.state.value, now.severity.value, now.acked_by) == (alarm.id, "active_unacked", "critical", None)
    assert pages.sent[-1] == (
        "shutdown_failed",
        "escalated: warning -> critical; re-alarmed (acknowledgement withdrawn)",
    )
    journal = await rig.store.journal(alarm.id)
    assert [(j.from_state, j.to_state) for j in journal] == [
        (None, "active_unacked"),
        ("active_unacked", "active_acked"),
        ("active_acked", "active_unacked"),
    ]
    (event,) = [e["data"] for e in pushed if e["event"] == "alarm"]
    assert (event["severity"], event["state"], event["message"]) == ("critical", "active_unacked", "3 tries")
