"""The core's parts one by one, with injected time and an SQLite store: ingest into the live state, readings
as InfluxDB lines, rollups and energy intervals, the outbox-drop count, alarm evaluation, the SSE views."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from drivers.types import DeviceStatus, Quality, Reading
from service.alarms import rules
from service.alarms.evaluate import DROP_ALARM_HOLD, AlarmEvaluation, OutboxDrops
from service.alarms.record import Severity
from service.alarms.rules import AlarmType, Finding
from service.clock import ManualClock
from service.config.calendar import WorkCalendar
from service.config.site import load_site
from service.energy.rollups import ENERGY_CHECKPOINT, Rollups
from service.live.events import EventBus
from service.live.ingest import Ingest
from service.live.sse import LiveViews
from service.live.state import SUPPLY, LiveState
from service.metrics import CoreStats, Metrics
from service.store.db import Store
from service.telemetry.lines import Telemetry, device_tags
from tests.conftest import DEMO_SITE

T0 = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
DEMO = load_site(DEMO_SITE)
METER = "meter-dept-it"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def reading(device: str, point: str, value: float | bool, t: datetime) -> Reading:
    return Reading(device=device, point=point, value=value, unit="", ts=t)


class RecordingSink:
    """Takes lines as the telemetry sink's outbox does (the sink itself is tested in test_sink.py)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def put(self, line: str) -> None:
        self.lines.append(line)

    def put_many(self, lines: list[str]) -> None:
        self.lines.extend(lines)


def telemetry(sink: RecordingSink | None = None) -> Telemetry:
    return Telemetry(DEMO, Metrics(), sink)  # type: ignore[arg-type]


# -- telemetry lines ------------------------------------------------------------------------------


def test_device_tags_name_the_room_department_and_source() -> None:
    assert device_tags(DEMO, "meter-grid-a") == {"site": DEMO.site.id, "source": "grid-a"}
    assert device_tags(DEMO, "genset-1")["source"] == "gen-1"
    assert device_tags(DEMO, METER)["department"] == "it"
    light = device_tags(DEMO, "r2119-light")
    assert light["room"] == "r2119" and light["department"] == DEMO.room_of("r2119-light").department  # type: ignore[union-attr]


def test_readings_become_tagged_lines_and_the_rest_is_left_out() -> None:
    sink = RecordingSink()
    good = reading("r2119-light", "power", 42.5, T0)
    batch: list[Reading | DeviceStatus] = [
        good,
        DeviceStatus(device="r2119-light", online=False, ts=T0),
        reading("no-such-device", "power", 1.0, T0),
        Reading(device="r2119-light", point="power", value=None, unit="", ts=T0, quality=Quality.stale),
    ]
    assert telemetry(sink).readings(batch) == [good]
    [line] = sink.lines
    assert line.startswith("telemetry,") and "device=r2119-light" in line and "room=r2119" in line
    assert line.endswith(f" {int(T0.timestamp()) * 1_000_000_000}") and "42.5" in line


def test_without_a_sink_readings_still_render_for_the_rollups() -> None:
    good = reading("r2119-light", "power", 42.5, T0)
    assert telemetry(None).readings([good]) == [good]


def test_the_service_line_goes_out_every_ten_seconds_with_the_site_figures() -> None:
    sink = RecordingSink()
    sink.outbox_depth = sink.dropped = sink.written = 0  # type: ignore[attr-defined]
    out = telemetry(sink)
    for t in (0, 5, 10):
        out.service_figures(at(t), devices_offline=2, rejects=1, readings=7)
    services = [line for line in sink.lines if line.startswith("wattkeeper,")]
    assert len(services) == 2 and "devices_offline=2i" in services[0]
    assert len(sink.lines) > len(services)  # the site lines ride along


# -- ingest -------------------------------------------------------------------------------------


def make_ingest(store: Store, events: EventBus, stats: CoreStats, metrics: Metrics | None = None) -> Ingest:
    return Ingest(
        DEMO,
        LiveState(DEMO),
        store=store,
        clock=ManualClock(T0),
        events=events,
        metrics=metrics or Metrics(),
        stats=stats,
    )


async def test_ingest_takes_readings_in_order_around_statuses_and_tells_sse(store: Store) -> None:
    events, stats = EventBus(), CoreStats()
    ingest = make_ingest(store, events, stats)
    async with events.subscribe() as queue:
        touched = ingest.apply(
            [
                reading("r2119-light", "power", 40.0, T0),
                DeviceStatus(device="r2119-light", online=False, ts=at(1), reason="lost"),
                reading("r2119-occ", "occupancy", True, at(2)),
            ]
        )
        published = [queue.get_nowait() for _ in range(queue.qsize())]
    assert "r2119" in touched and "r2119-light" in touched
    assert (stats.readings, stats.statuses) == (2, 1)
    assert [e["event"] for e in published] == ["device"]
    assert published[0]["data"] == {"id": "r2119-light", "online": False, "ts": at(1).isoformat(), "reason": "lost"}
    assert not ingest.state.devices(["r2119-light"])[0].online


def test_reject_and_skew_counters_count_up_to_the_drivers_totals(tmp_path: Path) -> None:
    metrics, stats = Metrics(), CoreStats()
    ingest = make_ingest(Store(f"sqlite:///{tmp_path}/wk.db"), EventBus(), stats, metrics)
    for totals in ({"a": 2}, {"a": 2, "b": 1}, {"a": 5, "b": 0}):
        ingest.record_rejects(totals)
        ingest.record_clock_skew(totals)
    assert stats.rejects_seen == stats.skew_seen == {"a": 5, "b": 1}
    assert metrics.rejects.labels(device="a")._value.get() == 5
    assert metrics.clock_skew.labels(device="b")._value.get() == 1


def test_the_device_gauges_count_the_devices_offline(tmp_path: Path) -> None:
    metrics = Metrics()
    ingest = make_ingest(Store(f"sqlite:///{tmp_path}/wk.db"), EventBus(), CoreStats(), metrics)
    ingest.apply([DeviceStatus(device="r2119-light", online=False, ts=T0)])
    offline = ingest.update_gauges()
    assert offline >= 1 and metrics.devices_offline._value.get() == offline
    assert metrics.devices_online._value.get() == len(DEMO.devices) - offline


# -- rollups and energy ---------------------------------------------------------------------------


def make_rollups(store: Store, sink: RecordingSink, stats: CoreStats) -> Rollups:
    calendar = WorkCalendar(DEMO.calendar, DEMO.site.tz)
    return Rollups(DEMO, store=store, calendar=calendar, telemetry=telemetry(sink), stats=stats)


async def test_a_minute_is_written_once_it_is_over_and_a_late_reading_does_not_replace_it(store: Store) -> None:
    rollups = make_rollups(store, RecordingSink(), CoreStats())
    rollups.add([reading("r2119-light", "power", v, at(s)) for s, v in ((0, 10.0), (20, 30.0), (40, 20.0))])
    await rollups.flush_minutes(at(59))
    assert await store.telemetry("r2119-light", "power", T0, at(3600)) == []  # still open
    await rollups.flush_minutes(at(60))
    rollups.add([reading("r2119-light", "power", 99.0, at(50))])  # late for a written minute
    await rollups.flush_minutes(at(120), force=True)
    [row] = await store.telemetry("r2119-light", "power", T0, at(3600))
    assert (row.minute, row.min, row.max, row.mean, row.last, row.count) == (T0, 10.0, 30.0, 20.0, 20.0, 3)


async def test_a_meters_quarter_hour_is_priced_stored_and_written_as_a_line(store: Store) -> None:
    sink, stats = RecordingSink(), CoreStats()
    rollups = make_rollups(store, sink, stats)
    assert METER in rollups.meters
    kwh = 1000.0
    for minute in range(0, 16):
        rollups.add([reading(METER, "import_energy", kwh + minute * 0.5, at(minute * 60))])
    await rollups.flush_energy()
    [interval] = await store.energy_intervals(T0, at(3600), meter=METER)
    assert interval.start == T0 and interval.kwh == pytest.approx(7.5)
    assert interval.department == "it" and interval.cost > 0
    [line] = [x for x in sink.lines if x.startswith("energy,")]
    assert f"meter={METER}" in line and "department=it" in line
    assert stats.store_errors == 0


async def test_the_energy_checkpoint_is_kept_and_taken_up_by_the_next_run(store: Store) -> None:
    first = make_rollups(store, RecordingSink(), CoreStats())
    first.add([reading(METER, "import_energy", 1000.0, T0), reading(METER, "import_energy", 1001.0, at(60))])
    assert first.checkpoint_due(T0)
    await first.save_checkpoint(first.checkpoint(), at(60))
    assert not first.checkpoint_due(at(90)) and first.checkpoint_due(at(120))
    assert METER in (await store.get_state(ENERGY_CHECKPOINT) or {})

    second = make_rollups(store, RecordingSink(), CoreStats())
    await second.resume(at(120))
    second.add([reading(METER, "import_energy", 1003.0, at(180))])
    await second.flush_energy(force=True)
    [interval] = await store.energy_intervals(T0, at(3600), meter=METER)
    assert interval.kwh == pytest.approx(3.0)  # counted from the first run's first reading


# -- outbox drops and alarm evaluation ------------------------------------------------------------


def test_an_outage_counts_its_own_drops_and_clears_after_the_hold() -> None:
    drops = OutboxDrops()
    assert drops.dropped(5, T0).value == 5
    assert drops.dropped(7, at(60)).value == 12
    assert drops.all_clear(at(60) + DROP_ALARM_HOLD) is None
    cleared = drops.all_clear(at(61) + DROP_ALARM_HOLD)
    assert cleared is not None and not cleared.active
    assert drops.all_clear(at(120) + DROP_ALARM_HOLD) is None  # once per outage
    assert drops.dropped(3, at(7200)).value == 3


def make_evaluation(store: Store, sink: RecordingSink, events: EventBus, stats: CoreStats) -> AlarmEvaluation:
    return AlarmEvaluation(
        DEMO,
        LiveState(DEMO),
        store=store,
        events=events,
        metrics=Metrics(),
        telemetry=telemetry(sink),
        stats=stats,
        now=T0,
    )


async def test_a_kept_finding_raises_an_alarm_stored_written_and_pushed(store: Store) -> None:
    sink, events, stats = RecordingSink(), EventBus(), CoreStats()
    alarms = make_evaluation(store, sink, events, stats)
    alarms.keep(rules.telemetry_dropped("telemetry", dropped=4))
    async with events.subscribe() as queue:
        spent_s = await alarms.evaluate({"telemetry"}, T0, {})
        pushed = [queue.get_nowait()["data"] for _ in range(queue.qsize())]
    [alarm] = alarms.engine.active()
    assert spent_s >= 0 and (stats.evaluations, stats.transitions) == (1, 1)
    assert (await store.get_alarm(alarm.id)) is not None
    assert [(p["type"], p["from_state"]) for p in pushed] == [("telemetry_dropped", None)]
    assert any(line.startswith("alarm,") and "telemetry_dropped" in line for line in sink.lines)


async def test_ack_and_shelve_go_through_the_engine_and_the_journal(store: Store) -> None:
    alarms = make_evaluation(store, RecordingSink(), EventBus(), CoreStats())
    alarms.keep(Finding(AlarmType.shutdown_failed, "r2119-light", Severity.warning, True))
    await alarms.evaluate(None, T0, {})
    [alarm] = alarms.engine.active()
    acked = await alarms.ack(alarm.id, "alice", at(1))
    assert acked is not None and acked.acked_by == "alice"
    shelved = await alarms.shelve(alarm.id, at(3600), "bob", at(2))
    assert shelved.state.value == "shelved"
    journal = [(j.to_state, j.who) for j in await store.journal(alarm.id)]
    assert journal == [("active_unacked", "system"), ("active_acked", "alice"), ("shelved", "bob")]


async def test_alarm_delays_are_kept_only_when_they_change(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    alarms = make_evaluation(store, RecordingSink(), EventBus(), CoreStats())
    writes: list[str] = []
    real = store.set_state

    async def counted(key: str, value: object, *, at: datetime) -> None:
        writes.append(key)
        await real(key, value, at=at)

    monkeypatch.setattr(store, "set_state", counted)
    await alarms.save_timers("timers", T0)
    await alarms.save_timers("timers", at(1))
    assert writes == ["timers"]
    assert await store.get_state("timers") == alarms.engine.timers()


# -- SSE views ------------------------------------------------------------------------------------


async def test_changed_views_are_pushed_once_with_the_rooms_override() -> None:
    events = EventBus()
    state = LiveState(DEMO)
    views = LiveViews(DEMO, state, events)
    views.changed(["r2119", SUPPLY, "r2119-light"])
    views.publish(T0, {})  # nobody listens: nothing kept for later
    async with events.subscribe() as queue:
        views.publish(T0, {})
        assert queue.empty()
        views.changed(["r2119", SUPPLY])
        views.publish(T0, {"r2119": at(3600)})
        pushed = [queue.get_nowait() for _ in range(queue.qsize())]
        views.publish(at(1), {})
        assert queue.empty()
    assert [e["event"] for e in pushed] == ["supply", "room"]
    assert pushed[1]["data"]["override_until"] == at(3600).isoformat()
