"""The scheduler: after-hours sweeps, the monthly energy report, rollup retention, override expiry.

APScheduler 3 `AsyncIOScheduler`, started and stopped by the app's lifespan hooks. The jobs that
must survive a restart live in SQLAlchemy's job store: beside a SQLite state store in its own file
(`<db>-jobs.db`, so the job store's blocking writes never wait on the store's async writer), or in
the same PostgreSQL database (table `apscheduler_jobs`, psycopg driver). Override expiry is not a
stored job: every instance refreshes its own view of the overrides every OVERRIDE_REFRESH_S.

Job ids are the schedule ids of the API and never change: `after-hours` (one job whose trigger
fires at every `calendar.sweeps` time, site time zone, DST-safe), `monthly-report` (00:30 on the
1st, for the month that just ended), `rollup-retention` (daily 03:17, rollups older than
ROLLUP_RETENTION); the API also lists `override-expiry`. The `after-hours` schedule exists even
without sweep times (then it has no job): it can be run by hand.

Restarts neither lose nor repeat a sweep:

- On start a stored job is kept as it is when the site's schedule has not changed, so a sweep
  time that passed while the service was down is still due; APScheduler runs it at once if it is
  at most SWEEP_MISFIRE_GRACE_S late (a sweep later than that would meet the morning), and
  `coalesce` folds several missed times into one run. Report and retention jobs run however late.
- Every scheduled sweep belongs to a slot, the latest configured sweep time at or before now. A
  slot is swept at most once: its start and completion are stored (`sweep:<id>:slot`), and a
  second firing for a completed slot does nothing. A sweep interrupted by a crash is resumed once
  on the next start, within the grace time; switching off twice is harmless, and devices already
  off are not commanded again.
- A slot inside working hours (e.g. a late make-up workday) is recorded and not swept.

One scheduler per deployment: APScheduler 3 cannot share a job store between schedulers, so the
instance that runs it holds a lock — a PostgreSQL session advisory lock, or an exclusive lock on
`<db>-jobs.lock` beside a SQLite database. Other instances serve the API in standby (manual runs
still work) and take over when the lock is free (checked every STANDBY_RETRY_S).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.combining import OrTrigger
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import create_engine
from sqlalchemy.engine import URL, make_url

from service.config.calendar import WorkCalendar
from service.config.site import Site, parse_hhmm
from service.control.path import ControlPath, Sweeper, SweepResult, sweep_findings
from service.energy.reports import ROLLUP_RETENTION, generate_report, month_of, previous_month
from service.store.db import Override, Store

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

SWEEP_ID: Final = "after-hours"
REPORT_ID: Final = "monthly-report"
RETENTION_ID: Final = "rollup-retention"
OVERRIDES_ID: Final = "override-expiry"

SWEEP_MISFIRE_GRACE_S: Final = 2 * 3600
OVERRIDE_REFRESH_S: Final = 15.0
STANDBY_RETRY_S: Final = 30.0
# A sweep job reads the service clock; a firing this close before a sweep time belongs to it.
SLOT_TOLERANCE: Final = timedelta(seconds=30)
HISTORY: Final = 50
_PG_LOCK: Final = 0x77617475  # advisory lock id of the scheduler ("watu")
_JOBS_TABLE: Final = "apscheduler_jobs"

# Running schedulers by site id: stored jobs hold only (site id, schedule id) and find their service here.
_RUNNING: dict[str, Scheduler] = {}


async def run_job(site_id: str, schedule_id: str) -> None:
    """Entry point of every stored job (module level, so the job store can keep a reference to it)."""
    scheduler = _RUNNING.get(site_id)
    if scheduler is None:
        log.warning("job %s for site %s fired with no running service; ignored", schedule_id, site_id)
        return
    await scheduler.fire(schedule_id)


# -- sweep slots (pure) ---------------------------------------------------------------------------


def sweep_times(site: Site) -> list[int]:
    """The configured sweep times in minutes after local midnight, sorted."""
    return sorted({parse_hhmm(t) for t in site.calendar.sweeps})


def _instant(day: date, minute: int, tz: tzinfo) -> datetime:
    # As service.config.calendar: a wall time in a DST gap is the instant just after it.
    return (datetime.combine(day, time(), tzinfo=tz) + timedelta(minutes=minute)).astimezone(UTC)


def sweep_slot(site: Site, now: datetime, *, tolerance: timedelta = SLOT_TOLERANCE) -> datetime | None:
    """The latest sweep time at or before `now` + tolerance (UTC), within the last two days; None if none."""
    tz = site.site.tz
    minutes = sweep_times(site)
    at = now.astimezone(UTC) + tolerance
    local_day = at.astimezone(tz).date()
    for day in (local_day, local_day - timedelta(days=1), local_day - timedelta(days=2)):
        for minute in reversed(minutes):
            moment = _instant(day, minute, tz)
            if moment <= at:
                return moment
    return None


# -- the job store and the one-scheduler lock --------------------------------------------------------


def jobstore_url(database_url: str) -> URL | None:
    """Sync SQLAlchemy URL of the job store for a state-store URL; None for an in-memory SQLite store."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        if url.database in (None, "", ":memory:"):
            return None
        db = Path(url.database)
        return url.set(drivername="sqlite", database=str(db.with_name(f"{db.stem}-jobs.db")))
    return url.set(drivername="postgresql+psycopg")


class Leadership:
    """The right to run this deployment's scheduler: a PostgreSQL advisory lock or a lock file."""

    def __init__(self, database_url: str) -> None:
        self._url = make_url(database_url)
        self._conn: psycopg.Connection[Any] | None = None
        self._fd: int | None = None
        self.held = False

    def try_acquire(self) -> bool:
        """Take the lock if free (blocking I/O; call in a thread); whether it is held."""
        if self.held:
            return True
        if self._url.get_backend_name() == "sqlite":
            self.held = self._lock_file()
        else:
            self.held = self._advisory_lock()
        return self.held

    def _lock_file(self) -> bool:
        if self._url.database in (None, "", ":memory:"):
            return True
        db = Path(self._url.database)
        db.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(db.with_name(f"{db.stem}-jobs.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def _advisory_lock(self) -> bool:
        import psycopg  # only PostgreSQL deployments need the sync driver

        conninfo = self._url.set(drivername="postgresql").render_as_string(hide_password=False)
        conn = psycopg.connect(conninfo, autocommit=True)
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (_PG_LOCK,)).fetchone()
        if row is None or not row[0]:
            conn.close()
            return False
        self._conn = conn  # the lock lives as long as this session
        return True

    def release(self) -> None:
        """Give the lock up."""
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
        self.held = False


# -- the scheduler ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JobSpec:
    """A stored job: its trigger, a fingerprint of its configuration, and how late it may still run."""

    id: str
    trigger: BaseTrigger
    fingerprint: str
    misfire_grace_s: int | None
    description: str


class UnknownSchedule(LookupError):
    """No schedule by that id."""


class Scheduler:
    """Owns the APScheduler instance and runs every periodic job of one service."""

    def __init__(
        self,
        site: Site,
        *,
        control: ControlPath,
        sweeper: Sweeper,
        database_url: str,
    ) -> None:
        self.site = site
        self.control = control
        self.sweeper = sweeper
        self.store: Store = control.store
        self.clock = control.clock
        self.calendar = WorkCalendar(site.calendar, site.site.tz)
        self.database_url = database_url
        self.leadership = Leadership(database_url)
        self.aps: AsyncIOScheduler | None = None
        self._standby: asyncio.Task[None] | None = None
        self._refresher: asyncio.Task[None] | None = None
        self._slot_lock = asyncio.Lock()
        self._overrides: dict[int, Override] = {}
        self._overrides_loaded = False
        self._specs = {s.id: s for s in self._job_specs()}

    # -- configuration ------------------------------------------------------------------------

    def _job_specs(self) -> list[JobSpec]:
        tz = self.site.site.tz
        site_id = self.site.site.id
        specs = []
        minutes = sweep_times(self.site)
        if minutes:
            crons: list[BaseTrigger] = [CronTrigger(hour=m // 60, minute=m % 60, timezone=tz) for m in minutes]
            trigger = crons[0] if len(crons) == 1 else OrTrigger(crons)
            times = ",".join(f"{m // 60:02d}:{m % 60:02d}" for m in minutes)
            specs.append(
                JobSpec(
                    SWEEP_ID,
                    trigger,
                    f"{site_id} sweeps {times} {tz}",
                    SWEEP_MISFIRE_GRACE_S,
                    "after-hours shutdown sweep at each calendar.sweeps time outside working hours",
                )
            )
        specs.append(
            JobSpec(
                REPORT_ID,
                CronTrigger(day=1, hour=0, minute=30, timezone=tz),
                f"{site_id} report day 1 00:30 {tz}",
                None,
                "energy report of the month that just ended, stored for the API",
            )
        )
        specs.append(
            JobSpec(
                RETENTION_ID,
                CronTrigger(hour=3, minute=17, timezone=tz),
                f"{site_id} retention 03:17 {tz} {ROLLUP_RETENTION.days}d",
                None,
                f"delete 1-minute rollups older than {ROLLUP_RETENTION.days} days",
            )
        )
        return specs

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Load overrides, then run the scheduler here or wait in standby for the lock."""
        await self.refresh_overrides()
        self._refresher = asyncio.create_task(self._refresh_overrides_loop(), name="override-expiry")
        if await asyncio.to_thread(self.leadership.try_acquire):
            await self._start_aps()
        else:
            log.warning("another instance runs the scheduler of this deployment; standing by")
            self._standby = asyncio.create_task(self._wait_for_lock(), name="scheduler-standby")

    async def _refresh_overrides_loop(self) -> None:
        while True:
            await asyncio.sleep(OVERRIDE_REFRESH_S)
            try:
                await self.refresh_overrides()
            except Exception:
                log.exception("refreshing overrides failed")

    async def _wait_for_lock(self) -> None:
        while True:
            if await asyncio.to_thread(self.leadership.try_acquire):
                break
            await asyncio.sleep(STANDBY_RETRY_S)
        log.info("scheduler lock taken; this instance now runs the scheduler")
        await self._start_aps()

    async def _start_aps(self) -> None:
        url = jobstore_url(self.database_url)
        if url is None:
            persistent: Any = MemoryJobStore()
            log.warning("in-memory state store: scheduled jobs do not survive a restart")
        else:
            args = {"timeout": 30} if url.get_backend_name() == "sqlite" else {}
            engine = create_engine(url, connect_args=args, pool_pre_ping=url.get_backend_name() != "sqlite")
            persistent = SQLAlchemyJobStore(engine=engine, tablename=_JOBS_TABLE)
        aps = AsyncIOScheduler(
            jobstores={"default": persistent, "memory": MemoryJobStore()},
            job_defaults={"coalesce": True, "max_instances": 1},
            timezone=self.site.site.tz,
        )
        aps.add_listener(self._on_job_event, EVENT_JOB_MISSED | EVENT_JOB_ERROR)
        aps.start(paused=True)
        self._sync_jobs(aps)
        self.aps = aps
        _RUNNING[self.site.site.id] = self
        await self._resume_interrupted(aps)
        aps.resume()

    def _sync_jobs(self, aps: AsyncIOScheduler) -> None:
        """Make the stored jobs match the site; an unchanged job keeps its stored next run time."""
        site_id = self.site.site.id
        for spec in self._specs.values():
            try:
                job = aps.get_job(spec.id, jobstore="default")
            except LookupError:  # stored by a version whose job function lived elsewhere: written anew
                log.info("schedule %s was stored with an old job reference; rewritten", spec.id)
                job = None
            if job is not None and job.name == spec.fingerprint:
                continue
            if job is not None:
                log.info("schedule %s changed: %s -> %s", spec.id, job.name, spec.fingerprint)
            aps.add_job(
                run_job,
                spec.trigger,
                args=[site_id, spec.id],
                id=spec.id,
                name=spec.fingerprint,
                jobstore="default",
                misfire_grace_time=spec.misfire_grace_s,
                replace_existing=True,
            )
        for job in aps.get_jobs(jobstore="default"):
            if job.id not in self._specs:
                log.info("schedule %s is no longer configured; removed", job.id)
                job.remove()

    async def _resume_interrupted(self, aps: AsyncIOScheduler) -> None:
        mark = await self.store.get_state(_slot_key(SWEEP_ID))
        if not isinstance(mark, dict) or not mark.get("started") or mark.get("started") == mark.get("done"):
            return
        started = datetime.fromisoformat(mark["started"])
        if self.clock.now() - started <= timedelta(seconds=SWEEP_MISFIRE_GRACE_S):
            log.warning("sweep of %s was interrupted; resuming it", started.isoformat())
            aps.add_job(run_job, args=[self.site.site.id, SWEEP_ID], id="after-hours-resume", jobstore="memory")

    def _on_job_event(self, event: JobExecutionEvent) -> None:
        if event.code == EVENT_JOB_MISSED:
            log.warning("job %s missed its run time %s (beyond its grace time)", event.job_id, event.scheduled_run_time)
        else:
            log.error("job %s failed: %r", event.job_id, event.exception)

    async def stop(self) -> None:
        """Stop the scheduler (a running sweep is cancelled; its slot resumes on the next start)."""
        for task in (self._standby, self._refresher):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._standby = self._refresher = None
        if self.aps is not None:
            self.aps.shutdown(wait=False)
            self.aps = None
        if _RUNNING.get(self.site.site.id) is self:
            del _RUNNING[self.site.site.id]
        self.leadership.release()

    # -- what runs ----------------------------------------------------------------------------

    async def fire(self, schedule_id: str) -> None:
        """A stored job's run."""
        if schedule_id == SWEEP_ID:
            await self.scheduled_sweep()
        elif schedule_id == REPORT_ID:
            await self.monthly_report(None, who="scheduler")
        elif schedule_id == RETENTION_ID:
            await self.prune_rollups(who="scheduler")
        else:
            log.warning("unknown job %s ignored", schedule_id)

    async def scheduled_sweep(self) -> SweepResult | None:
        """The sweep of the current slot, unless that slot is done or inside working hours."""
        async with self._slot_lock:
            now = self.clock.now()
            slot = sweep_slot(self.site, now)
            if slot is None or now - slot > timedelta(seconds=SWEEP_MISFIRE_GRACE_S):
                log.info("sweep job fired at %s, not near a sweep time; nothing to do", now.isoformat())
                return None
            key = _slot_key(SWEEP_ID)
            mark = await self.store.get_state(key)
            done = mark.get("done") if isinstance(mark, dict) else None
            if done is not None and datetime.fromisoformat(done) >= slot:
                log.info("sweep of %s already ran; not repeated", slot.isoformat())
                return None
            if self.calendar.is_working(slot):
                log.info("sweep time %s is inside working hours; not swept", slot.isoformat())
                await self.store.set_state(key, {"started": slot.isoformat(), "done": slot.isoformat()}, at=now)
                await self._history(SWEEP_ID, {"slot": slot.isoformat(), "skipped": "working hours"})
                return None
            await self.store.set_state(key, {"started": slot.isoformat(), "done": done}, at=now)
            result = await self.sweeper.run(SWEEP_ID, who="scheduler", job=f"{SWEEP_ID}@{slot.isoformat()}")
            await self.record_findings(result)
            await self.store.set_state(key, {"started": slot.isoformat(), "done": slot.isoformat()}, at=now)
            await self._history(SWEEP_ID, {**result.summary(), "slot": slot.isoformat(), "trigger": "scheduled"})
            return result

    async def record_findings(self, result: SweepResult) -> int:
        """Record the rooms an after-hours sweep found on (`left_on_after_hours`, once per room and
        night); how many were new."""
        new = 0
        try:
            for finding in sweep_findings(self.site, result):
                if await self.store.add_after_hours_finding(finding):
                    new += 1
        except Exception:
            # The sweep itself has run: a store error here must not make it run again.
            log.exception("sweep %s: could not record the rooms it found on", result.job)
        return new

    async def monthly_report(self, month: str | None, *, who: str) -> dict[str, Any]:
        """Generate and store a month's report (default: the month before the current one)."""
        now = self.clock.now()
        month = month or previous_month(month_of(now, self.site))
        report = await generate_report(self.store, self.site, month, now=now)
        out = {
            "month": month,
            "departments": len(report.departments),
            "departments_kwh": report.totals.departments_kwh,
            "site_meters_kwh": report.totals.site_meters_kwh,
        }
        await self._history(REPORT_ID, {**out, "at": now.isoformat(), "who": who})
        return out

    async def prune_rollups(self, *, who: str) -> dict[str, Any]:
        """Delete rollups older than the retention period."""
        now = self.clock.now()
        before = now - ROLLUP_RETENTION
        deleted = await self.store.prune_rollups(before)
        out = {"before": before.isoformat(), "deleted": deleted}
        await self._history(RETENTION_ID, {**out, "at": now.isoformat(), "who": who})
        return out

    async def refresh_overrides(self) -> list[Override]:
        """Hand the active overrides to the core (alarms, rooms view); the scheduling instance audits
        those that ran out."""
        now = self.clock.now()
        active = await self.store.active_overrides(now)
        ids = {o.id for o in active}
        if self._overrides_loaded and self.aps is not None:
            for gone in [o for oid, o in self._overrides.items() if oid not in ids and o.until <= now]:
                await self.store.append_audit(
                    at=now,
                    who="scheduler",
                    job=OVERRIDES_ID,
                    device=None,
                    point=None,
                    old={"room": gone.room, "until": gone.until.isoformat()},
                    new=None,
                    result="override_expired",
                    detail=f"override {gone.id} of {gone.room} ended at {gone.until.isoformat()}",
                )
        self._overrides = {o.id: o for o in active}
        self._overrides_loaded = True
        rooms: dict[str, datetime] = {}
        for o in active:
            rooms[o.room] = max(o.until, rooms.get(o.room, o.until))
        self.control.core.set_overrides(rooms)
        return active

    # -- the API's view -----------------------------------------------------------------------

    def schedule_ids(self) -> list[str]:
        """Every schedule id (`after-hours` always)."""
        return [SWEEP_ID, REPORT_ID, RETENTION_ID, OVERRIDES_ID]

    async def schedules(self) -> list[dict[str, Any]]:
        """Every schedule with its trigger, next and last run."""
        now = self.clock.now()
        tz = self.site.site.tz
        running = self.aps is not None
        out: list[dict[str, Any]] = []
        next_sweep = self.calendar.next_sweep(now)
        out.append(
            {
                "id": SWEEP_ID,
                "kind": "sweep",
                "description": "after-hours shutdown of lights, AC and office equipment",
                "trigger": {
                    "times": [f"{m // 60:02d}:{m % 60:02d}" for m in sweep_times(self.site)],
                    "timezone": str(tz),
                },
                "next_run": next_sweep.isoformat() if next_sweep else None,
                "policy": {"occupied_rooms": (await self.sweeper.policy(SWEEP_ID)).value},
                "last_run": await self.sweeper.last_run(SWEEP_ID),
                "active": running,
            }
        )
        for sid in (REPORT_ID, RETENTION_ID):
            spec = self._specs[sid]
            fire = spec.trigger.get_next_fire_time(None, now.astimezone(tz))
            out.append(
                {
                    "id": sid,
                    "kind": "report" if sid == REPORT_ID else "retention",
                    "description": spec.description,
                    "trigger": {"cron": str(spec.trigger), "timezone": str(tz)},
                    "next_run": fire.astimezone(UTC).isoformat() if fire else None,
                    "last_run": await self._last(sid),
                    "active": running,
                }
            )
        out.append(
            {
                "id": OVERRIDES_ID,
                "kind": "housekeeping",
                "description": "expire room overrides and hand the active ones to the alarm rules",
                "trigger": {"every_s": OVERRIDE_REFRESH_S},
                "next_run": None,
                "last_run": None,
                "active": self._refresher is not None,
            }
        )
        return out

    async def run_now(self, schedule_id: str, *, who: str, month: str | None = None) -> dict[str, Any]:
        """Run a schedule at once for an operator; UnknownSchedule if there is none by that id.

        A manual sweep runs whatever the calendar says (the operator decides) and does not count
        as the scheduled slot's sweep.
        """
        if schedule_id == SWEEP_ID:
            result = await self.sweeper.run(SWEEP_ID, who=who, job=f"{SWEEP_ID}:manual")
            if not self.calendar.is_working(result.started_at):
                await self.record_findings(result)
            await self._history(SWEEP_ID, {**result.summary(), "trigger": "manual"})
            return result.to_dict()
        actions: dict[str, Callable[[], Awaitable[dict[str, Any]]]] = {
            REPORT_ID: lambda: self.monthly_report(month, who=who),
            RETENTION_ID: lambda: self.prune_rollups(who=who),
            OVERRIDES_ID: self._overrides_now,
        }
        action = actions.get(schedule_id)
        if action is None:
            raise UnknownSchedule(f"no schedule '{schedule_id}' (known: {', '.join(self.schedule_ids())})")
        return {"schedule": schedule_id, **(await action())}

    async def _overrides_now(self) -> dict[str, Any]:
        active = await self.refresh_overrides()
        return {"active": [{"id": o.id, "room": o.room, "until": o.until.isoformat()} for o in active]}

    async def history(self, schedule_id: str) -> list[dict[str, Any]]:
        """The latest runs of a schedule, oldest first."""
        raw = await self.store.get_state(_history_key(schedule_id))
        return list(raw) if isinstance(raw, list) else []

    async def _last(self, schedule_id: str) -> dict[str, Any] | None:
        runs = await self.history(schedule_id)
        return runs[-1] if runs else None

    async def _history(self, schedule_id: str, entry: dict[str, Any]) -> None:
        runs = [*(await self.history(schedule_id)), entry][-HISTORY:]
        await self.store.set_state(_history_key(schedule_id), runs, at=self.clock.now())


def _slot_key(sweep_id: str) -> str:
    return f"sweep:{sweep_id}:slot"


def _history_key(schedule_id: str) -> str:
    return f"schedule:{schedule_id}:history"
