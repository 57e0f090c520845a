"""Alarm evaluation: the rules over the live state -> the engine's transitions -> store and journal, pages,
InfluxDB, SSE; the flood indicator; operators' acknowledgements and shelves.

The last step of a reading's path (service/core.py): the subjects a batch changed are evaluated here.
Findings made outside the rules (control path, telemetry outbox, bus) are kept and evaluated with them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Protocol

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
from service.alarms.rules import Finding
from service.config.site import Site
from service.live.events import EventBus
from service.live.state import LiveState
from service.metrics import CoreStats, Metrics
from service.store.db import Store, StoredTransition
from service.telemetry.lineproto import alarm_line
from service.telemetry.lines import Telemetry

log = logging.getLogger(__name__)

# telemetry_dropped is reported clear once the outbox has dropped nothing for this long.
DROP_ALARM_HOLD = timedelta(minutes=10)
# Active alarms whose message or value followed their condition are shown at once (SSE) and written
# to the store at most this often: a timed alarm's value (seconds waited) changes every second.
ALARM_UPDATES_SAVE_S = 10.0


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


class Pager(Protocol):
    """What pages a transition (service/notify/notifier.py's Notifier)."""

    async def notify(self, alarm: EngineAlarm, transition: StoredTransition | None = None) -> None: ...


class OutboxDrops:
    """The telemetry_dropped alarm's count: the lines the outbox dropped in this outage.

    An outage ends DROP_ALARM_HOLD after its last drop; the next one counts its own lines. The sink's
    own total (on /metrics) counts them all.
    """

    def __init__(self) -> None:
        self._last_at: datetime | None = None
        self._count = 0

    def dropped(self, count: int, now: datetime) -> Finding:
        """The finding for `count` more lines dropped at `now`."""
        self._last_at = now
        self._count += count
        return rules.telemetry_dropped("telemetry", dropped=self._count, detail="outbox full; oldest lines dropped")

    def all_clear(self, now: datetime) -> Finding | None:
        """The clearing finding once the hold after the last drop has passed (once per outage)."""
        if self._last_at is None or now - self._last_at <= DROP_ALARM_HOLD:
            return None
        self._last_at = None
        self._count = 0
        return rules.telemetry_dropped("telemetry", dropped=0)


class AlarmEvaluation:
    """Owns the alarm engine: what changes an alarm goes through here, one change at a time."""

    def __init__(
        self,
        site: Site,
        state: LiveState,
        *,
        store: Store,
        events: EventBus,
        metrics: Metrics,
        telemetry: Telemetry,
        stats: CoreStats,
        now: datetime,
        notifier: Pager | None = None,
        alarm_config: Mapping[str, AlarmTypeConfig] | None = None,
    ) -> None:
        self.site = site
        self.state = state
        self.store = store
        self.events = events
        self.metrics = metrics
        self.telemetry = telemetry
        self.stats = stats
        self.notifier = notifier
        # The site file's `alarms:` block applies over the shipped defaults (or the configuration given).
        self.engine = AlarmEngine(site_config(site, alarm_config if alarm_config is not None else DEFAULT_CONFIG))
        self.flood: Flood = self.engine.flood_status(now)
        self._external: dict[tuple[str, str], Finding] = {}
        self._lock = asyncio.Lock()
        self._unsaved: set[str] = set()  # ids of alarms updated in place since the last store write
        self._saved_at: datetime | None = None
        self._timers_saved: object = None

    def keep(self, finding: Finding) -> None:
        """A finding made outside the rules, taken with every evaluation until another replaces it."""
        self._external[(finding.type, finding.subject)] = finding

    async def evaluate(self, subjects: set[str] | None, now: datetime, overrides: Mapping[str, datetime]) -> float:
        """Run the rules for `subjects` (None: all) and act on the transitions; the seconds the rules
        and the engine took (the store's and notifiers' waits not counted)."""
        began = time.perf_counter()
        findings = rules.evaluate(
            self.site, self.state, now, overrides=overrides, subjects=subjects, extra=list(self._external.values())
        )
        self.stats.evaluations += 1
        spent_s = time.perf_counter() - began
        async with self._lock:
            began = time.perf_counter()
            transitions = self.engine.update(findings, now)
            updated = self.engine.take_updated()
            spent_s += time.perf_counter() - began
            await self._handle(transitions)
            self._updated(updated)
            if transitions:
                self.check_flood(now)
        return spent_s

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
            self.telemetry.put(
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

    def _updated(self, alarms: Sequence[EngineAlarm]) -> None:
        """Active alarms whose message or value followed their condition: shown now, stored within
        ALARM_UPDATES_SAVE_S."""
        for a in alarms:
            self._unsaved.add(a.id)
            self.events.publish("alarm", {**a.to_dict(), "from_state": a.state.value, "who": "system", "update": True})

    async def save_updated(self, now: datetime, force: bool = False) -> None:
        """Store the latest form of the alarms updated since the last write (no journal entry: no transition);
        every ALARM_UPDATES_SAVE_S, or now when `force`d."""
        due = self._saved_at is None or (now - self._saved_at).total_seconds() >= ALARM_UPDATES_SAVE_S
        if not self._unsaved or not (force or due):
            return
        self._saved_at = now
        ids, self._unsaved = self._unsaved, set()
        for alarm_id in sorted(ids):
            alarm = self.engine.get(alarm_id)
            if alarm is None:
                continue
            try:
                await self.store.save_alarm(alarm)
            except Exception:
                self.stats.store_errors += 1
                log.exception("could not store alarm %s", alarm_id)

    # -- restart ----------------------------------------------------------------------------

    async def restore(self, now: datetime, timers_state: str | None) -> None:
        """Take up the alarms the store kept (and, under `timers_state`, the delays counting)."""
        stored = await self.store.load_alarms()
        await self._handle(self.engine.restore(stored))
        if timers_state is not None:
            timers = await self.store.get_state(timers_state)
            if isinstance(timers, dict):
                try:
                    self.engine.restore_timers(timers)
                except ValueError as exc:
                    log.warning("alarm delays not taken up (%s); they start again", exc)
        self.check_flood(now)

    async def save_timers(self, timers_state: str, now: datetime) -> None:
        """Keep the delays now counting under `timers_state`, when they changed since the last write."""
        timers = self.engine.timers()
        if timers == self._timers_saved:
            return
        try:
            await self.store.set_state(timers_state, timers, at=now)
            self._timers_saved = timers
        except Exception:
            self.stats.store_errors += 1
            log.exception("could not store the alarm delays")

    # -- operator actions -------------------------------------------------------------------

    async def ack(self, alarm_id: str, who: str, now: datetime) -> EngineAlarm | None:
        """Acknowledge an alarm; None if unknown."""
        async with self._lock:
            t = self.engine.ack(alarm_id, who, now)
            if t is None:
                return self.engine.get(alarm_id)
            await self._handle([t])
            return t.alarm

    async def shelve(self, alarm_id: str, until: datetime, who: str, now: datetime) -> EngineAlarm:
        """Shelve an open alarm until a time."""
        async with self._lock:
            t = self.engine.shelve(alarm_id, until, who, now)
            await self._handle([t])
            return t.alarm

    # -- flood and gauges -------------------------------------------------------------------

    def flood_now(self, now: datetime) -> Flood:
        """The flood indicator as of `now` (the kept one is updated every tick)."""
        return self.engine.flood_status(now, self.flood)

    def check_flood(self, now: datetime) -> None:
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

    def update_gauges(self) -> None:
        """Open alarms by state on /metrics."""
        counts = {s.value: 0 for s in AlarmState}
        for a in self.engine.active():
            counts[a.state.value] += 1
        for state, n in counts.items():
            self.metrics.alarms.labels(state=state).set(n)
