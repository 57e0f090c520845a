"""The core loop: readings in -> live state -> rules -> alarm lifecycles -> store, notifiers, sinks, events."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

from drivers.profiles import ModbusProfile, load_profile
from drivers.types import DeviceStatus, Reading
from service.alarms import rules
from service.alarms.engine import (
    DEFAULT_CONFIG,
    AlarmEngine,
    AlarmTypeConfig,
    Flood,
    Transition,
    site_config,
)
from service.alarms.record import Alarm as EngineAlarm
from service.alarms.record import AlarmState
from service.alarms.rules import AlarmType, Finding
from service.clock import Clock
from service.config.calendar import WorkCalendar
from service.config.site import Site
from service.energy.meters import CounterTracker, price
from service.energy.meters import EnergyInterval as EnergyChunk
from service.live.events import EventBus
from service.live.state import SUPPLY, LiveState
from service.live.transfers import Transfer
from service.metrics import Metrics
from service.notify.notifier import Notifier
from service.store.db import EnergyInterval, Rollup, Store, StoredTransition
from service.telemetry.lineproto import TelemetryLines, alarm_line, energy_line, service_line, site_lines
from service.telemetry.sink import TelemetrySink

log = logging.getLogger(__name__)

TICK_S = 1.0
# A reading after a quiet spell is evaluated at once. Under a stream of readings the rules run
# over everything that arrived meanwhile, at most every EVALUATE_EVERY_S and, on a site so large
# that evaluating takes long, seldom enough to take no more than RULES_SHARE of the core's time.
EVALUATE_EVERY_S = 0.01
RULES_SHARE = 0.1
# Work is cut in parts of a few milliseconds with a look at the sockets in between: an MQTT broker
# sends a QoS 1 subscriber only so many unacknowledged messages, and HTTP requests wait too.
INGEST_BATCH = 1000  # readings
EVALUATE_BATCH = 20  # subjects (rooms, SUPPLY, devices)
VIEW_PUBLISH_S = 1.0
SERVICE_LINE_S = 10.0
# telemetry_dropped is reported clear once the outbox has dropped nothing for this long.
DROP_ALARM_HOLD = timedelta(minutes=10)
# Rollup minutes and energy intervals the store could not take are kept and written with the next
# flush (upserts: writing one twice is harmless), up to this many of each; beyond, the oldest go.
UNSAVED_MAX = 100_000
STOP_GRACE_S = 15.0  # how long stop() lets a loop finish a store write before cancelling it
METER_ENERGY_POINTS = ("import_energy", "energy")
# The meters' energy trackers are written to the store's service state at every stop and every
# CHECKPOINT_S, and taken up again at start: the energy used while the service was away (or since
# the last checkpoint before a crash) is counted from the counters, not lost.
ENERGY_CHECKPOINT = "energy_counters"
CHECKPOINT_S = 60.0
# Each transfer switch's last source transfer, kept in the store's service state so that
# GET /api/compliance and the dashboard still show it after a restart.
TRANSFERS_STATE = "last_transfers"
# Active alarms whose message or value followed their condition are shown at once (SSE) and written
# to the store at most this often: a timed alarm's value (seconds waited) changes every second.
ALARM_UPDATES_SAVE_S = 10.0


_K = TypeVar("_K")
_V = TypeVar("_V")


@dataclass(slots=True)
class _Acc:
    """One minute of one numeric point."""

    minute: datetime
    min: float
    max: float
    total: float
    last: float
    count: int = 1

    def add(self, v: float) -> None:
        if v < self.min:
            self.min = v
        elif v > self.max:
            self.max = v
        self.total += v
        self.last = v
        self.count += 1


@dataclass(slots=True)
class CoreStats:
    """What the core has done since start."""

    readings: int = 0
    statuses: int = 0
    evaluations: int = 0
    transitions: int = 0
    store_errors: int = 0
    ingest_errors: int = 0
    last_transition_at: datetime | None = None
    rejects_seen: dict[str, int] = field(default_factory=dict)
    skew_seen: dict[str, int] = field(default_factory=dict)


def _minute(ts: datetime) -> datetime:
    return ts.replace(second=0, microsecond=0)


def _numeric(value: object) -> float | None:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def _keep_newest(rows: dict[_K, _V], what: str) -> dict[_K, _V]:
    """Rows to retry, the newest UNSAVED_MAX of them (dicts keep insertion order: oldest first)."""
    if len(rows) <= UNSAVED_MAX:
        return rows
    log.error("the store is away: %d %s dropped, the oldest", len(rows) - UNSAVED_MAX, what)
    return dict(list(rows.items())[-UNSAVED_MAX:])


def journal_entry(t: Transition) -> StoredTransition:
    """The store's form of an engine transition."""
    return StoredTransition(
        alarm_id=t.alarm.id,
        from_state=t.from_state.value if t.from_state else None,
        to_state=t.to_state.value,
        at=t.at,
        who=t.who,
        value=t.value,
        note=t.note,
    )


class Core:
    """Owns the live state and the alarm engine; everything that changes them goes through here."""

    def __init__(
        self,
        site: Site,
        *,
        store: Store,
        clock: Clock,
        events: EventBus,
        metrics: Metrics,
        sink: TelemetrySink | None = None,
        notifier: Notifier | None = None,
        alarm_config: Mapping[str, AlarmTypeConfig] | None = None,
        rejects_source: Callable[[], dict[str, int]] | None = None,
        driver_totals_source: Callable[[], tuple[int, int]] | None = None,
    ) -> None:
        self.site = site
        self.store = store
        self.clock = clock
        self.events = events
        self.metrics = metrics
        self.sink = sink
        self.notifier = notifier
        self.state = LiveState(site)
        # The site file's `alarms:` block applies over the shipped defaults (or the configuration given).
        self.engine = AlarmEngine(site_config(site, alarm_config if alarm_config is not None else DEFAULT_CONFIG))
        self.flood: Flood = self.engine.flood_status(clock.now())
        self.calendar = WorkCalendar(site.calendar, site.site.tz)
        self.stats = CoreStats()
        self.overrides: dict[str, datetime] = {}
        self._external: dict[tuple[str, str], Finding] = {}
        self._drops_at: datetime | None = None
        self._outage_dropped = 0  # telemetry lines dropped since the telemetry_dropped all-clear
        self._pending: deque[Reading | DeviceStatus] = deque()
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._dirty: set[str] = set()
        self._unsaved_alarms: set[str] = set()  # ids of alarms updated in place since the last store write
        self._alarms_saved_at: datetime | None = None
        self._rollups: dict[tuple[str, str], _Acc] = {}
        self._finished_rollups: list[tuple[tuple[str, str], _Acc]] = []
        self._flushed_minute: dict[tuple[str, str], datetime] = {}
        self._finished_energy: list[EnergyChunk] = []
        self._unsaved_rollups: dict[tuple[str, str, datetime], Rollup] = {}
        self._unsaved_energy: dict[tuple[str, datetime], EnergyInterval] = {}
        self._stopping = asyncio.Event()
        self._tags = {d.id: self._tags_of(d.id) for d in site.devices}
        self._lines = TelemetryLines(self._tags)
        self._meters = self._energy_meters()
        self._tasks: list[asyncio.Task[None]] = []
        self._last_service_line: datetime | None = None
        self._last_checkpoint: datetime | None = None
        self.last_transfers: dict[str, Transfer] = {}  # switch id -> its last source transfer
        self._transfers_unsaved = False
        self._transfer_log: list[Transfer] = []  # ended transfers not yet in the store's transfer log
        # Per-device reject counts from the drivers, read every tick.
        self.rejects_source = rejects_source
        # running totals of the drivers themselves (Modbus requests answered, MQTT loop failures)
        self.driver_totals_source = driver_totals_source
        # Set on a core of the bus: the store key its alarm delays now counting are kept under
        # (with every batch applied), so a core that takes the site over goes on with them.
        self.timers_state: str | None = None
        self._timers_saved: object = None

    # -- set-up ---------------------------------------------------------------------------

    def _tags_of(self, device_id: str) -> dict[str, str]:
        tags = {"site": self.site.site.id}
        room = self.site.room_of(device_id)
        if room is not None:
            tags["room"] = room.id
            tags["department"] = room.department
        for s in self.site.sources:
            if s.meter == device_id:
                tags["source"] = s.id
        for g in self.site.generators:
            if device_id in (g.meter, g.device):
                tags["source"] = g.id
        for d in self.site.departments:
            if d.meter == device_id:
                tags["department"] = d.id
        return tags

    def _energy_meters(self) -> dict[str, tuple[str, CounterTracker]]:
        """Modbus meters whose energy counter becomes 15-minute intervals: device -> (point, tracker)."""
        out: dict[str, tuple[str, CounterTracker]] = {}
        for d in self.site.devices:
            profile = load_profile(d.profile)
            if not isinstance(profile, ModbusProfile):
                continue
            names = {p.name: p for p in profile.points}
            for point in METER_ENERGY_POINTS:
                if point in names and names[point].unit in ("kWh", "Wh"):
                    p = names[point]
                    tracker = CounterTracker(d.id, unit=p.unit, rated_kw=d.rated_kw, resolution=p.resolution)
                    out[d.id] = (point, tracker)
                    break
        return out

    async def start(self) -> None:
        """Restore alarms from the store, then start the loops."""
        self._stopping.clear()
        await self._resume_energy()
        await self._resume_transfers()
        stored = await self.store.load_alarms()
        restored = self.engine.restore(stored)
        await self._handle(restored)
        if self.timers_state is not None:
            timers = await self.store.get_state(self.timers_state)
            if isinstance(timers, dict):
                try:
                    self.engine.restore_timers(timers)
                except ValueError as exc:
                    log.warning("alarm delays not taken up (%s); they start again", exc)
        self._check_flood(self.clock.now())
        self._tasks = [
            asyncio.create_task(self._ingest_loop(), name="core-ingest"),
            asyncio.create_task(self._tick_loop(), name="core-tick"),
        ]

    async def stop(self) -> None:
        """Stop the loops and write what is buffered.

        The loops are asked to stop and finish what they are doing: cancelling one inside a store
        write would lose that write's rows. One that takes longer than STOP_GRACE_S is cancelled.
        """
        self._stopping.set()
        self._wake.set()
        if self._tasks:
            _, late = await asyncio.wait(self._tasks, timeout=STOP_GRACE_S)
            for t in late:
                t.cancel()
            for t in self._tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await t
        self._tasks = []
        if self._pending:
            touched = self._apply(self._drain(len(self._pending)))
            with contextlib.suppress(Exception):
                await self._evaluate(touched)
        checkpoint = self._energy_checkpoint()  # before the flush closes the open quarter hours
        with contextlib.suppress(Exception):
            await self._save_updated_alarms(force=True)
            await self._flush_rollups(force=True)
            await self._flush_energy(force=True)
        await self._save_checkpoint(checkpoint, self.clock.now())
        await self._save_transfers(self.clock.now())

    # -- input ----------------------------------------------------------------------------

    def emit(self, batch: Sequence[Reading | DeviceStatus]) -> None:
        """The drivers' callback: queue a batch (cheap, never blocks)."""
        self._pending.extend(batch)
        self._wake.set()

    async def apply_now(self, batch: Sequence[Reading | DeviceStatus]) -> None:
        """Apply a batch at once: live state, rules, alarms stored, finished energy intervals and the
        energy checkpoint written (the bus path acknowledges the batch only after this returns).

        Raises RuntimeError when the store did not take everything, so the batch is not acknowledged.
        """
        errors = self.stats.store_errors
        subjects = list(self._apply(batch))
        for i in range(0, len(subjects), EVALUATE_BATCH):
            await self._evaluate(set(subjects[i : i + EVALUATE_BATCH]))
        await self._flush_energy()
        await self._save_checkpoint(self._energy_checkpoint(), self.clock.now())
        if self.timers_state is not None:
            timers = self.engine.timers()
            if timers != self._timers_saved:
                try:
                    await self.store.set_state(self.timers_state, timers, at=self.clock.now())
                    self._timers_saved = timers
                except Exception:
                    self.stats.store_errors += 1
                    log.exception("could not store the alarm delays")
        if self.stats.store_errors != errors:
            raise RuntimeError("the store did not take the batch's alarms or energy; not acknowledged")

    def _drain(self, n: int) -> list[Reading | DeviceStatus]:
        if n >= len(self._pending):
            batch = list(self._pending)
            self._pending.clear()
            return batch
        return [self._pending.popleft() for _ in range(n)]

    async def _ingest_loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_round = -math.inf
        while True:
            await self._wake.wait()
            if self._stopping.is_set():
                return  # stop() takes what is pending
            wait_s = next_round - loop.time()
            if wait_s > 0:
                await asyncio.sleep(wait_s)
            self._wake.clear()
            try:
                started = loop.time()
                # What waits now; what arrives meanwhile waits for the next round.
                touched: set[str] = set()
                backlog = len(self._pending)
                while backlog > 0 and self._pending:
                    batch = self._drain(min(backlog, INGEST_BATCH))
                    backlog -= len(batch)
                    touched |= self._apply(batch)
                    await asyncio.sleep(0)
                evaluating_s = 0.0
                subjects = list(touched)
                for i in range(0, len(subjects), EVALUATE_BATCH):
                    evaluating_s += await self._evaluate(set(subjects[i : i + EVALUATE_BATCH]))
                    await asyncio.sleep(0)
                next_round = started + max(EVALUATE_EVERY_S, evaluating_s / RULES_SHARE)
            except Exception:
                # One bad batch must not stop ingestion for good: log it, count it, carry on.
                self.stats.ingest_errors += 1
                log.exception("ingest round failed; its readings are lost, later ones are taken")
                next_round = loop.time() + EVALUATE_EVERY_S

    def _apply(self, batch: Iterable[Reading | DeviceStatus]) -> set[str]:
        touched: set[str] = set()
        lines: list[str] = []
        readings: list[Reading] = []  # taken by the live state together, up to the next status
        minutes: dict[datetime, datetime] = {}  # one message's or poll's readings share a timestamp
        line_of = self._lines.line
        for item in batch:
            if isinstance(item, Reading):
                readings.append(item)
                line = line_of(item)
                if line is None:
                    continue  # not a good value of a device of this site: nothing to write or roll up
                lines.append(line)
                minute = minutes.get(item.ts)
                if minute is None:
                    minute = minutes[item.ts] = _minute(item.ts)
                self._rollup(item, minute)
                meter = self._meters.get(item.device)
                if meter is not None and meter[0] == item.point and isinstance(item.value, int | float):
                    self._energy_reading(item, meter[1])
            else:
                touched |= self._take(readings)
                readings = []
                self.stats.statuses += 1
                touched |= self.state.set_online(item.device, item.online, item.ts)
                self.events.publish(
                    "device",
                    {"id": item.device, "online": item.online, "ts": item.ts.isoformat(), "reason": item.reason},
                )
        touched |= self._take(readings)
        if lines and self.sink is not None:
            self.sink.put_many(lines)
        self._dirty |= touched
        for transfer in self.state.take_transfers():
            self._transfer_ended(transfer)
        return touched

    def _take(self, readings: list[Reading]) -> set[str]:
        if not readings:
            return set()
        self.stats.readings += len(readings)
        self.metrics.readings.inc(len(readings))
        return self.state.apply_all(readings)

    def _rollup(self, r: Reading, minute: datetime) -> None:
        v = _numeric(r.value)
        if v is None:
            return
        key = (r.device, r.point)
        flushed = self._flushed_minute.get(key)
        if flushed is not None and minute <= flushed:
            return  # the store replaces a minute; a late reading must not overwrite a complete one
        acc = self._rollups.get(key)
        if acc is None or acc.minute != minute:
            if acc is not None and acc.minute < minute:
                self._finished_rollups.append((key, acc))
            self._rollups[key] = _Acc(minute, v, v, v, v)
        else:
            acc.add(v)

    def _energy_reading(self, r: Reading, tracker: CounterTracker) -> None:
        done = tracker.add(r.ts, float(r.value))  # type: ignore[arg-type]
        if done:
            self._finished_energy.extend(done)

    # -- source transfers -----------------------------------------------------------------

    def _transfer_ended(self, t: Transfer) -> None:
        """Keep a switch's last transfer (the store takes it at the next tick) and tell SSE clients."""
        self.last_transfers[t.switch] = t
        self._transfer_log.append(t)
        self._transfers_unsaved = True
        log.log(
            logging.INFO if t.within_allowed else logging.WARNING,
            "%s: load %s from %s to %s after %.1f s without supply (allowed %g s)",
            t.switch,
            "retransferred" if t.kind == "retransfer" else "restored" if t.kind == "restored" else "transferred",
            t.from_source,
            t.to_source,
            t.interruption_s,
            t.allowed_interruption_s,
        )
        self.events.publish("supply", {**self.state.supply(self.clock.now()).to_dict(), "transfer": t.to_dict()})

    async def _save_transfers(self, now: datetime) -> None:
        if not self._transfers_unsaved:
            return
        try:
            if self._transfer_log:
                await self.store.add_transfers((t.switch, t.at, t.to_dict()) for t in self._transfer_log)
                self._transfer_log = []
            await self.store.set_state(
                TRANSFERS_STATE, {s: t.to_dict() for s, t in self.last_transfers.items()}, at=now
            )
        except Exception:
            self.stats.store_errors += 1
            log.exception("could not store the last source transfers; tried again at the next tick")
            return
        self._transfers_unsaved = False

    async def _resume_transfers(self) -> None:
        """Take up each switch's last transfer as the store kept it."""
        try:
            stored = await self.store.get_state(TRANSFERS_STATE)
        except Exception:
            self.stats.store_errors += 1
            log.exception("could not read the last source transfers")
            return
        if not isinstance(stored, dict):
            return
        switches = {t.id for t in self.site.transfer_switches}
        for switch, record in stored.items():
            if switch not in switches or not isinstance(record, dict):
                continue  # no longer a switch of this site
            try:
                self.last_transfers.setdefault(switch, Transfer.from_dict(record))
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("switch %s: stored last transfer not used (%s)", switch, exc)

    # -- evaluation -----------------------------------------------------------------------

    async def _evaluate(self, subjects: set[str] | None) -> float:
        """Run the rules for `subjects` (None: all) and act on the transitions; the seconds the rules
        and the engine took (the store's and notifiers' waits not counted)."""
        began = time.perf_counter()
        now = self.clock.now()
        findings = rules.evaluate(
            self.site,
            self.state,
            now,
            overrides=self.overrides,
            subjects=subjects,
            extra=list(self._external.values()),
        )
        self.stats.evaluations += 1
        spent_s = time.perf_counter() - began
        async with self._lock:
            began = time.perf_counter()
            transitions = self.engine.update(findings, now)
            updated = self.engine.take_updated()
            spent_s += time.perf_counter() - began
            await self._handle(transitions)
            self._updated_alarms(updated)
            if transitions:
                self._check_flood(now)
        return spent_s

    def flood_now(self) -> Flood:
        """The flood indicator as of now (the core updates its own every tick)."""
        return self.engine.flood_status(self.clock.now(), self.flood)

    def _check_flood(self, now: datetime) -> None:
        """Update the flood indicator; its start and end go out as an `alarm_flood` event."""
        flood = self.engine.flood_status(now, self.flood)
        changed = flood.active != self.flood.active
        self.flood = flood
        self.metrics.alarm_flood.set(1 if flood.active else 0)
        self.metrics.alarms_raised_recent.set(flood.raised)
        if not changed:
            return
        if flood.active:
            log.warning("alarm flood: %d alarms raised in the last %g s", flood.raised, flood.window_s)
        else:
            log.warning("alarm flood over: %d alarms raised in the last %g s", flood.raised, flood.window_s)
        self.events.publish("alarm_flood", flood.to_dict())

    async def _handle(self, transitions: Sequence[Transition]) -> None:
        for t in transitions:
            self.stats.transitions += 1
            self.stats.last_transition_at = t.at
            try:
                await self.store.save_alarm(t.alarm, journal_entry(t))
            except Exception:
                self.stats.store_errors += 1
                log.exception("could not store alarm %s", t.alarm.id)
            if self.notifier is not None and t.page:
                await self.notifier.notify(t.alarm, journal_entry(t))
            if self.sink is not None:
                self.sink.put(
                    alarm_line(
                        site=self.site.site.id,
                        type=t.alarm.type,
                        subject=t.alarm.subject,
                        severity=t.alarm.severity.value,
                        state=t.to_state.value,
                        at=t.at,
                    )
                )
            self.events.publish("alarm", {**t.alarm.to_dict(), "from_state": t.from_state, "who": t.who})

    def _updated_alarms(self, alarms: Sequence[EngineAlarm]) -> None:
        """Active alarms whose message or value followed their condition: shown now, stored within
        ALARM_UPDATES_SAVE_S."""
        for a in alarms:
            self._unsaved_alarms.add(a.id)
            self.events.publish("alarm", {**a.to_dict(), "from_state": a.state.value, "who": "system", "update": True})

    async def _save_updated_alarms(self, force: bool = False) -> None:
        """Store the latest form of the alarms updated since the last write (no journal entry: no transition);
        every ALARM_UPDATES_SAVE_S, or now when `force`d."""
        now = self.clock.now()
        due = self._alarms_saved_at is None or (now - self._alarms_saved_at).total_seconds() >= ALARM_UPDATES_SAVE_S
        if not self._unsaved_alarms or not (force or due):
            return
        self._alarms_saved_at = now
        ids, self._unsaved_alarms = self._unsaved_alarms, set()
        for alarm_id in sorted(ids):
            alarm = self.engine.get(alarm_id)
            if alarm is None:
                continue
            try:
                await self.store.save_alarm(alarm)
            except Exception:
                self.stats.store_errors += 1
                log.exception("could not store alarm %s", alarm_id)

    def report(self, finding: Finding) -> None:
        """A finding made outside the rules (control path, sink); taken at the next evaluation."""
        self._external[(finding.type, finding.subject)] = finding
        self._wake.set()

    async def report_now(self, finding: Finding) -> None:
        """A finding from outside, evaluated at once."""
        self._external[(finding.type, finding.subject)] = finding
        await self._evaluate({finding.subject})

    def on_telemetry_dropped(self, count: int) -> None:
        """The sink's callback when its outbox drops the oldest lines.

        The alarm's value counts this outage's lines: those dropped since the last all-clear, which
        comes DROP_ALARM_HOLD after the last drop. The sink's own total (on /metrics) counts them all.
        """
        self._drops_at = self.clock.now()
        self._outage_dropped += count
        self.report(
            rules.telemetry_dropped(
                "telemetry", dropped=self._outage_dropped, detail="outbox full; oldest lines dropped"
            )
        )

    # -- operator actions -----------------------------------------------------------------

    async def ack(self, alarm_id: str, who: str) -> EngineAlarm | None:
        """Acknowledge an alarm; None if unknown."""
        async with self._lock:
            t = self.engine.ack(alarm_id, who, self.clock.now())
            if t is None:
                return self.engine.get(alarm_id)
            await self._handle([t])
            return t.alarm

    async def shelve(self, alarm_id: str, until: datetime, who: str) -> EngineAlarm:
        """Shelve an open alarm until a time."""
        async with self._lock:
            t = self.engine.shelve(alarm_id, until, who, self.clock.now())
            await self._handle([t])
            return t.alarm

    def set_overrides(self, overrides: dict[str, datetime]) -> None:
        """Rooms with an active override and until when (the rules see them; office alarms keep running)."""
        changed = set(overrides) ^ set(self.overrides)
        self.overrides = overrides
        self._dirty |= changed
        if changed:
            self._wake.set()

    # -- periodic -------------------------------------------------------------------------

    async def _tick_loop(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), TICK_S)
            if self._stopping.is_set():
                return
            try:
                await self.tick()
            except Exception:
                log.exception("core tick failed")

    async def tick(self) -> None:
        """Time-driven work: delays, staleness, shelving expiry, views, rollups, energy."""
        now = self.clock.now()
        if self._drops_at is not None and now - self._drops_at > DROP_ALARM_HOLD:
            self._drops_at = None
            self._outage_dropped = 0
            self._external[(AlarmType.telemetry_dropped, "telemetry")] = rules.telemetry_dropped("telemetry", dropped=0)
        await self._evaluate(None)
        self._check_flood(now)  # a flood ends as its raises leave the window
        self._publish_views(now)
        await self._save_updated_alarms()
        await self._flush_rollups()
        await self._flush_energy()
        if self._last_checkpoint is None or (now - self._last_checkpoint).total_seconds() >= CHECKPOINT_S:
            await self._save_checkpoint(self._energy_checkpoint(), now)
        await self._save_transfers(now)
        self._update_gauges(now)

    def _publish_views(self, now: datetime) -> None:
        dirty, self._dirty = self._dirty, set()
        if not self.events.subscribers:
            return
        if SUPPLY in dirty:
            self.events.publish("supply", self.state.supply(now).to_dict())
        for room in self.site.rooms:
            if room.id in dirty:
                view = self.state.room(room.id, now).to_dict()
                until = self.overrides.get(room.id)
                view["override_until"] = until.isoformat() if until else None
                self.events.publish("room", view)

    async def _flush_rollups(self, force: bool = False) -> None:
        now_minute = _minute(self.clock.now())
        done = list(self._finished_rollups)
        self._finished_rollups.clear()
        for key, acc in list(self._rollups.items()):
            if force or acc.minute < now_minute:
                done.append((key, acc))
                del self._rollups[key]
        if not done and not self._unsaved_rollups:
            return
        for key, acc in done:
            self._flushed_minute[key] = max(acc.minute, self._flushed_minute.get(key, acc.minute))
        rows = self._unsaved_rollups
        for (device, point), a in done:
            rows[(device, point, a.minute)] = Rollup(
                device=device,
                point=point,
                minute=a.minute,
                min=a.min,
                max=a.max,
                mean=a.total / a.count,
                last=a.last,
                count=a.count,
            )
        self._unsaved_rollups = {}
        try:
            await self.store.upsert_rollups(list(rows.values()))
        except Exception:
            self.stats.store_errors += 1
            self._unsaved_rollups = _keep_newest(rows, "rollup minutes")
            log.exception("could not store %d rollups; kept for the next flush", len(rows))

    async def _flush_energy(self, force: bool = False) -> None:
        if force:
            for _, tracker in self._meters.values():
                self._finished_energy.extend(tracker.flush())
        done, self._finished_energy = self._finished_energy, []
        if (not done and not self._unsaved_energy) or self.site.tariff is None:
            return
        rows = self._unsaved_energy
        self._unsaved_energy = {}
        lines = []
        for iv in done:
            parts = price(iv, self.site.tariff, self.calendar)
            if not parts:
                continue
            main = max(parts, key=lambda p: p.kwh)
            tags = self._tags.get(main.meter, {})
            kwh = sum(p.kwh for p in parts)
            cost = sum(p.cost for p in parts)
            rows[(main.meter, main.start)] = EnergyInterval(
                meter=main.meter,
                start=main.start,
                kwh=kwh,
                band=main.band,
                cost=cost,
                after_hours=main.after_hours,
                department=tags.get("department") if "room" not in tags else None,
            )
            lines.append(
                energy_line(
                    site=self.site.site.id,
                    meter=main.meter,
                    start=main.start,
                    kwh=kwh,
                    cost=cost,
                    after_hours=main.after_hours,
                    band=main.band,
                    department=tags.get("department"),
                    source=tags.get("source"),
                )
            )
        try:
            await self.store.upsert_energy(list(rows.values()))
        except Exception:
            self.stats.store_errors += 1
            self._unsaved_energy = _keep_newest(rows, "energy intervals")
            log.exception("could not store %d energy intervals; kept for the next flush", len(rows))
        if self.sink is not None and lines:
            self.sink.put_many(lines)

    def _energy_checkpoint(self) -> dict[str, object]:
        out: dict[str, object] = {}
        for meter, (_, tracker) in self._meters.items():
            checkpoint = tracker.checkpoint()
            if checkpoint is not None:
                out[meter] = checkpoint
        return out

    async def _save_checkpoint(self, checkpoint: dict[str, object], now: datetime) -> None:
        self._last_checkpoint = now
        if not checkpoint:
            return
        try:
            await self.store.set_state(ENERGY_CHECKPOINT, checkpoint, at=now)
        except Exception:
            self.stats.store_errors += 1
            log.exception("could not store the energy counters' checkpoint")

    async def _resume_energy(self) -> None:
        """Take up the meters' energy trackers where the last checkpoint left them."""
        if not self._meters:
            return
        try:
            stored = await self.store.get_state(ENERGY_CHECKPOINT)
        except Exception:
            self.stats.store_errors += 1
            log.exception("could not read the energy counters' checkpoint; counting starts afresh")
            return
        if not isinstance(stored, dict):
            return
        now = self.clock.now()
        resumed = []
        for meter, checkpoint in stored.items():
            entry = self._meters.get(meter)
            if entry is None or not isinstance(checkpoint, dict):
                continue  # no longer a meter of this site
            try:
                if entry[1].resume(checkpoint, now):
                    resumed.append(meter)
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("meter %s: energy checkpoint not used (%s); counting starts afresh", meter, exc)
        if resumed:
            log.info("energy counting of %d meter(s) goes on from the last checkpoint", len(resumed))

    def _update_gauges(self, now: datetime) -> None:
        if self.rejects_source is not None:
            self.record_rejects(self.rejects_source())
        if self.driver_totals_source is not None:
            requests, loop_errors = self.driver_totals_source()
            self.metrics.modbus_requests.set(requests)
            self.metrics.mqtt_loop_errors.set(loop_errors)
        counts = {s.value: 0 for s in AlarmState}
        for a in self.engine.active():
            counts[a.state.value] += 1
        for state, n in counts.items():
            self.metrics.alarms.labels(state=state).set(n)
        devices = self.state.devices()
        offline = sum(1 for d in devices if not d.online)
        self.metrics.devices_online.set(len(devices) - offline)
        self.metrics.devices_offline.set(offline)
        if self.sink is not None:
            self.metrics.outbox_depth.set(self.sink.outbox_depth)
            self.metrics.dropped.set(self.sink.dropped)
            self.metrics.written.set(self.sink.written)
            if self._last_service_line is None or (now - self._last_service_line).total_seconds() >= SERVICE_LINE_S:
                self._last_service_line = now
                self.sink.put(
                    service_line(
                        site=self.site.site.id,
                        at=now,
                        devices_offline=offline,
                        rejects=sum(self.stats.rejects_seen.values()),
                        outbox_depth=self.sink.outbox_depth,
                        dropped=self.sink.dropped,
                        readings=self.stats.readings,
                    )
                )
                # The site's supply figures and static compliance ride along, so a board drawn over
                # any time range finds them (the 120 % line, the compliance table).
                self.sink.put_many(site_lines(self.site, now))

    def record_rejects(self, rejects: dict[str, int]) -> None:
        """Per-device reject counters from the drivers, for /metrics and the data-quality board."""
        for device, n in rejects.items():
            seen = self.stats.rejects_seen.get(device, 0)
            if n > seen:
                self.metrics.rejects.labels(device=device).inc(n - seen)
                self.stats.rejects_seen[device] = n

    def record_clock_skew(self, skews: dict[str, int]) -> None:
        """Per-device counts of messages with a device timestamp far off the receive time, for /metrics."""
        for device, n in skews.items():
            seen = self.stats.skew_seen.get(device, 0)
            if n > seen:
                self.metrics.clock_skew.labels(device=device).inc(n - seen)
                self.stats.skew_seen[device] = n
