"""The core loop: a reading's path from a driver to the live state, InfluxDB, the rollups and the alarms.

`Core` only wires its parts and runs their loops; read `_apply` and `tick` top to bottom:

1. service/live/ingest.py: readings and device statuses into the live state; source transfers.
2. service/telemetry/lines.py: the readings as line protocol into the sink's outbox (InfluxDB).
3. service/energy/rollups.py: 1-minute rollups and priced 15-minute energy intervals into the store.
4. service/alarms/evaluate.py: the rules over the changed subjects -> alarm transitions -> store,
   pages, InfluxDB, SSE.
5. service/live/sse.py: the changed room and supply views to SSE clients, once a tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

from drivers.types import DeviceStatus, Reading
from service.alarms.engine import AlarmEngine, AlarmTypeConfig, Flood
from service.alarms.evaluate import AlarmEvaluation, OutboxDrops
from service.alarms.record import Alarm
from service.alarms.rules import Finding
from service.clock import Clock
from service.config.calendar import WorkCalendar
from service.config.site import Site
from service.energy.rollups import Rollups
from service.live.events import EventBus
from service.live.ingest import Ingest
from service.live.sse import LiveViews
from service.live.state import LiveState
from service.live.transfers import Transfer
from service.metrics import CoreStats, Metrics
from service.notify.notifier import Notifier
from service.store.db import Store
from service.telemetry.lines import Telemetry
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
STOP_GRACE_S = 15.0  # how long stop() lets a loop finish a store write before cancelling it


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
        timers_state: str | None = None,
        state: LiveState | None = None,
    ) -> None:
        self.site = site
        self.store = store
        self.clock = clock
        self.events = events
        self.metrics = metrics
        self.state = state if state is not None else LiveState(site)
        self.calendar = WorkCalendar(site.calendar, site.site.tz)
        self.stats = CoreStats()
        self.overrides: dict[str, datetime] = {}
        self.ingest = Ingest(
            site, self.state, store=store, clock=clock, events=events, metrics=metrics, stats=self.stats
        )
        self.telemetry = Telemetry(site, metrics, sink)
        self.rollups = Rollups(site, store=store, calendar=self.calendar, telemetry=self.telemetry, stats=self.stats)
        self.alarms = AlarmEvaluation(
            site,
            self.state,
            store=store,
            events=events,
            metrics=metrics,
            telemetry=self.telemetry,
            stats=self.stats,
            now=clock.now(),
            notifier=notifier,
            alarm_config=alarm_config,
        )
        self.views = LiveViews(site, self.state, events)
        self.drops = OutboxDrops()
        self._notifier = notifier
        # per-device reject counts from the drivers, read every tick
        self.rejects_source = rejects_source
        # running totals of the drivers themselves (Modbus requests answered, MQTT loop failures)
        self.driver_totals_source = driver_totals_source
        # On a core of the bus: the store key its alarm delays now counting are kept under (with
        # every batch applied), so a core that takes the site over goes on with them.
        self.timers_state = timers_state
        self._pending: deque[Reading | DeviceStatus] = deque()
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    # -- parts as the rest of the service sees them -------------------------------------------

    @property
    def sink(self) -> TelemetrySink | None:
        """The telemetry sink (None: no InfluxDB)."""
        return self.telemetry.sink

    @sink.setter
    def sink(self, sink: TelemetrySink | None) -> None:
        self.telemetry.sink = sink

    @property
    def notifier(self) -> Notifier | None:
        """What pages alarm transitions and sweep notices (None: nothing configured)."""
        return self._notifier

    @notifier.setter
    def notifier(self, notifier: Notifier | None) -> None:
        self._notifier = self.alarms.notifier = notifier

    @property
    def engine(self) -> AlarmEngine:
        """The alarm engine (read it; change alarms through the core)."""
        return self.alarms.engine

    @property
    def last_transfers(self) -> dict[str, Transfer]:
        """Each transfer switch's last source transfer."""
        return self.ingest.last_transfers

    # -- start and stop ---------------------------------------------------------------------

    async def start(self) -> None:
        """Restore energy counting, transfers and alarms from the store, then start the loops."""
        self._stopping.clear()
        await self.rollups.resume(self.clock.now())
        await self.ingest.resume_transfers()
        await self.alarms.restore(self.clock.now(), self.timers_state)
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
        checkpoint = self.rollups.checkpoint()  # before the flush closes the open quarter hours
        with contextlib.suppress(Exception):
            await self.alarms.save_updated(self.clock.now(), force=True)
            await self.rollups.flush_minutes(self.clock.now(), force=True)
            await self.rollups.flush_energy(force=True)
        await self.rollups.save_checkpoint(checkpoint, self.clock.now())
        await self.ingest.save_transfers(self.clock.now())

    # -- input ------------------------------------------------------------------------------

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
        await self.rollups.flush_energy()
        await self.rollups.save_checkpoint(self.rollups.checkpoint(), self.clock.now())
        if self.timers_state is not None:
            await self.alarms.save_timers(self.timers_state, self.clock.now())
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

    def _apply(self, batch: Sequence[Reading | DeviceStatus]) -> set[str]:
        """A batch's way: live state, then InfluxDB, then the rollups; the subjects it changed, for the rules."""
        touched = self.ingest.apply(batch)
        written = self.telemetry.readings(batch)
        self.rollups.add(written)
        self.views.changed(touched)
        return touched

    async def _evaluate(self, subjects: set[str] | None) -> float:
        """Run the rules for `subjects` (None: all) and act on the transitions; the seconds it took."""
        return await self.alarms.evaluate(subjects, self.clock.now(), self.overrides)

    # -- findings from outside the rules ----------------------------------------------------

    def report(self, finding: Finding) -> None:
        """A finding made outside the rules (control path, sink); taken at the next evaluation."""
        self.alarms.keep(finding)
        self._wake.set()

    async def report_now(self, finding: Finding) -> None:
        """A finding from outside, evaluated at once."""
        self.alarms.keep(finding)
        await self._evaluate({finding.subject})

    def on_telemetry_dropped(self, count: int) -> None:
        """The sink's callback when its outbox drops the oldest lines (see OutboxDrops)."""
        self.report(self.drops.dropped(count, self.clock.now()))

    # -- operator actions -------------------------------------------------------------------

    async def ack(self, alarm_id: str, who: str) -> Alarm | None:
        """Acknowledge an alarm; None if unknown."""
        return await self.alarms.ack(alarm_id, who, self.clock.now())

    async def shelve(self, alarm_id: str, until: datetime, who: str) -> Alarm:
        """Shelve an open alarm until a time."""
        return await self.alarms.shelve(alarm_id, until, who, self.clock.now())

    def set_overrides(self, overrides: dict[str, datetime]) -> None:
        """Rooms with an active override and until when (the rules see them; office alarms keep running)."""
        changed = set(overrides) ^ set(self.overrides)
        self.overrides = overrides
        self.views.changed(changed)
        if changed:
            self._wake.set()

    def flood_now(self) -> Flood:
        """The flood indicator as of now (the core updates its own every tick)."""
        return self.alarms.flood_now(self.clock.now())

    def record_rejects(self, rejects: dict[str, int]) -> None:
        """Per-device reject counters from the drivers, for /metrics and the data-quality board."""
        self.ingest.record_rejects(rejects)

    def record_clock_skew(self, skews: dict[str, int]) -> None:
        """Per-device counts of messages with a device timestamp far off the receive time, for /metrics."""
        self.ingest.record_clock_skew(skews)

    # -- periodic ---------------------------------------------------------------------------

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
        """Time-driven work: delays, staleness, shelving expiry, views, rollups, energy, gauges."""
        now = self.clock.now()
        cleared = self.drops.all_clear(now)
        if cleared is not None:
            self.alarms.keep(cleared)
        await self._evaluate(None)
        self.alarms.check_flood(now)  # a flood ends as its raises leave the window
        self.views.publish(now, self.overrides)
        await self.alarms.save_updated(self.clock.now())
        await self.rollups.flush_minutes(self.clock.now())
        await self.rollups.flush_energy()
        if self.rollups.checkpoint_due(now):
            await self.rollups.save_checkpoint(self.rollups.checkpoint(), now)
        await self.ingest.save_transfers(now)
        self._update_gauges(now)

    def _update_gauges(self, now: datetime) -> None:
        if self.rejects_source is not None:
            self.ingest.record_rejects(self.rejects_source())
        if self.driver_totals_source is not None:
            requests, loop_errors = self.driver_totals_source()
            self.metrics.modbus_requests.set(requests)
            self.metrics.mqtt_loop_errors.set(loop_errors)
        self.alarms.update_gauges()
        offline = self.ingest.update_gauges()
        self.telemetry.service_figures(
            now, devices_offline=offline, rejects=sum(self.stats.rejects_seen.values()), readings=self.stats.readings
        )
