"""The scheduler: sweep slots (pure, table-tested), the job store across restarts on SQLite and
PostgreSQL, one scheduler per deployment, per-slot idempotency, and the periodic jobs."""

from __future__ import annotations

import asyncio
import contextlib
import pickle
import sqlite3
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.cron import CronTrigger

from service.clock import ManualClock
from service.config.site import Calendar, Site, load_site
from service.control.path import ControlPath, Sweeper
from service.control.scheduler import (
    OVERRIDES_ID,
    REPORT_ID,
    RETENTION_ID,
    SWEEP_ID,
    Leadership,
    Scheduler,
    jobstore_url,
    sweep_slot,
)
from service.core import Core
from service.energy.reports import ROLLUP_RETENTION
from service.live.events import EventBus
from service.metrics import Metrics
from service.store.db import Rollup, Store
from tests.conftest import DEMO_SITE

TZ = ZoneInfo("Asia/Shanghai")
DEMO = load_site(DEMO_SITE)


def local(text: str, tz: ZoneInfo = TZ) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=tz)


def with_calendar(site: Site, **changes: object) -> Site:
    calendar = site.calendar.model_copy(update=changes)
    return site.model_copy(update={"calendar": Calendar.model_validate(calendar.model_dump())})


# -- slots ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "slot"),
    [
        ("2026-03-02 18:30:00", "2026-03-02 18:30"),
        ("2026-03-02 18:29:45", "2026-03-02 18:30"),  # a firing a moment early belongs to its time
        ("2026-03-02 18:29:00", "2026-03-01 22:00"),
        ("2026-03-02 21:59:59", "2026-03-02 22:00"),
        ("2026-03-02 23:59:59", "2026-03-02 22:00"),
        ("2026-03-03 00:10:00", "2026-03-02 22:00"),  # past midnight
        ("2026-04-01 00:05:00", "2026-03-31 22:00"),  # past a month end
        ("2026-01-01 07:00:00", "2025-12-31 22:00"),  # past a year end
    ],
)
def test_sweep_slot(now: str, slot: str) -> None:
    assert sweep_slot(DEMO, local(now)) == local(slot).astimezone(UTC)


def test_sweep_slot_across_dst_and_without_sweeps() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    site = with_calendar(DEMO, sweeps=["02:30", "19:00"])
    site = site.model_copy(update={"site": site.site.model_copy(update={"timezone": "Europe/Berlin"})})
    # 2026-03-29 02:30 does not exist in Berlin: the sweep is at 03:30 CEST (01:30 UTC)
    assert sweep_slot(site, datetime(2026, 3, 29, 1, 31, tzinfo=UTC)) == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    assert sweep_slot(site, datetime(2026, 3, 29, 1, 0, tzinfo=UTC)) == local("2026-03-28 19:00", berlin)
    # 2026-10-25 02:30 happens twice: the first one (CEST, 00:30 UTC)
    assert sweep_slot(site, datetime(2026, 10, 25, 2, 0, tzinfo=UTC)) == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    assert sweep_slot(with_calendar(DEMO, sweeps=[]), local("2026-03-02 20:00")) is None


@pytest.mark.parametrize(
    ("url", "jobs"),
    [
        ("sqlite:///./var/wattkeeper.db", "sqlite:///var/wattkeeper-jobs.db"),
        ("sqlite:////srv/wk/state.db", "sqlite:////srv/wk/state-jobs.db"),
        ("postgresql://wk:secret@db:5432/wk", "postgresql+psycopg://wk:***@db:5432/wk"),
        ("postgresql+asyncpg://db/wk", "postgresql+psycopg://db/wk"),
        ("sqlite:///:memory:", None),
    ],
)
def test_jobstore_url(url: str, jobs: str | None) -> None:
    got = jobstore_url(url)
    assert (None if got is None else str(got)) == jobs


def test_one_scheduler_per_sqlite_deployment(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/wk.db"
    first, second = Leadership(url), Leadership(url)
    assert first.try_acquire()
    assert not second.try_acquire()
    first.release()
    assert second.try_acquire()
    second.release()


def test_one_scheduler_per_postgresql_deployment(postgres_url: str) -> None:
    first, second = Leadership(postgres_url), Leadership(postgres_url)
    assert first.try_acquire()
    assert not second.try_acquire()
    first.release()
    assert second.try_acquire()
    second.release()


# -- the scheduler on a real store ----------------------------------------------------------------


class Rig:
    """A scheduler over a real store and core, with no drivers (switch-offs come back refused)."""

    def __init__(self, site: Site, url: str, clock: ManualClock) -> None:
        self.site, self.url, self.clock = site, url, clock
        self.store = Store(url)
        self.core = Core(site, store=self.store, clock=clock, events=EventBus(), metrics=Metrics())
        self.control = ControlPath(
            site, hub=None, core=self.core, store=self.store, clock=clock, metrics=Metrics(), events=EventBus()
        )
        self.scheduler = Scheduler(
            site,
            control=self.control,
            sweeper=Sweeper(site, self.control),
            database_url=url,
        )

    async def __aenter__(self) -> Rig:
        await self.store.open()
        await self.scheduler.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.scheduler.stop()
        await self.store.close()

    async def sweeps(self) -> list[dict[str, object]]:
        return await self.scheduler.history(SWEEP_ID)


@pytest.fixture
def rig(tmp_path: Path) -> Callable[..., Rig]:
    def make(site: Site = DEMO, at: str = "2026-03-02 18:30:05", url: str | None = None) -> Rig:
        return Rig(site, url or f"sqlite:///{tmp_path}/wk.db", ManualClock(local(at)))

    return make


async def _until(check: Callable[[], object], timeout_s: float = 5.0) -> None:
    for _ in range(int(timeout_s / 0.05)):
        if await check():  # type: ignore[misc]
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met")


async def test_jobs_are_stored_with_stable_ids_and_survive_a_restart(rig: Callable[..., Rig]) -> None:
    due = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3, minutes=7)
    async with rig() as r:
        aps = r.scheduler.aps
        assert aps is not None
        assert {j.id for j in aps.get_jobs(jobstore="default")} == {SWEEP_ID, REPORT_ID, RETENTION_ID}
        assert aps.get_jobs(jobstore="memory") == []
        job = aps.get_job(SWEEP_ID)
        assert (job.coalesce, job.misfire_grace_time, job.max_instances) == (True, 7200, 1)
        assert job.func_ref == "service.control.scheduler:run_job" and job.args == ("hq", SWEEP_ID)
        aps.modify_job(SWEEP_ID, next_run_time=due)  # not a trigger time: only a stored job keeps it
    async with rig() as r:
        assert r.scheduler.aps is not None
        assert r.scheduler.aps.get_job(SWEEP_ID).next_run_time == due
    # a changed schedule replaces the job; a site without sweep times has no sweep job, but the schedule
    async with rig(with_calendar(DEMO, sweeps=["19:00"])) as r:
        assert r.scheduler.aps is not None
        job = r.scheduler.aps.get_job(SWEEP_ID)
        assert job.next_run_time != due and job.next_run_time.astimezone(TZ).strftime("%H:%M") == "19:00"
    async with rig(with_calendar(DEMO, sweeps=[])) as r:
        assert r.scheduler.aps is not None
        assert r.scheduler.aps.get_job(SWEEP_ID) is None
        listed = {s["id"]: s for s in await r.scheduler.schedules()}
        assert listed[SWEEP_ID]["trigger"]["times"] == []
        assert set(listed) == {SWEEP_ID, REPORT_ID, RETENTION_ID, OVERRIDES_ID}


async def test_a_second_instance_stands_by(rig: Callable[..., Rig]) -> None:
    async with rig() as first, rig() as second:
        assert first.scheduler.aps is not None
        assert second.scheduler.aps is None
        listed = {s["id"]: s for s in await second.scheduler.schedules()}
        assert listed[SWEEP_ID]["active"] is False


async def test_each_slot_is_swept_once(rig: Callable[..., Rig]) -> None:
    async with rig() as r:
        first = await r.scheduler.scheduled_sweep()
        assert first is not None and first.job == "after-hours@2026-03-02T10:30:00+00:00"
        assert await r.scheduler.scheduled_sweep() is None
        r.clock.advance(20)
        assert await r.scheduler.scheduled_sweep() is None
        r.clock.set(local("2026-03-02 20:00:01"))
        assert await r.scheduler.scheduled_sweep() is not None
        r.clock.set(local("2026-03-03 03:00:00"))  # five hours after 22:00: too late for it
        assert await r.scheduler.scheduled_sweep() is None
        slots = [s["slot"] for s in await r.sweeps()]
    assert slots == ["2026-03-02T10:30:00+00:00", "2026-03-02T12:00:00+00:00"]


async def test_a_sweep_time_inside_working_hours_does_nothing(rig: Callable[..., Rig]) -> None:
    late_makeup = with_calendar(DEMO, makeup_hours="08:30-21:00", workdays=[date(2026, 3, 7)])
    async with rig(late_makeup, at="2026-03-07 20:00:03") as r:
        assert await r.scheduler.scheduled_sweep() is None
        [entry] = await r.sweeps()
        assert entry == {"slot": "2026-03-07T12:00:00+00:00", "skipped": "working hours"}
        assert await r.store.list_audit() == []
        r.clock.set(local("2026-03-07 22:00:03"))
        assert await r.scheduler.scheduled_sweep() is not None


async def test_an_interrupted_sweep_resumes_once_on_start(rig: Callable[..., Rig]) -> None:
    async with rig() as r:
        slot = "2026-03-02T10:30:00+00:00"
        await r.store.set_state("sweep:after-hours:slot", {"started": slot, "done": None}, at=r.clock.now())
    async with rig(at="2026-03-02 18:40:00") as r:
        await _until(lambda: _swept(r, 1))
        await asyncio.sleep(0.3)
        assert [s["slot"] for s in await r.sweeps()] == [slot]
    async with rig(at="2026-03-02 18:41:00") as r:
        await asyncio.sleep(0.3)
        assert len(await r.sweeps()) == 1


async def _swept(r: Rig, n: int) -> bool:
    return len(await r.sweeps()) >= n


async def test_monthly_report_and_rollup_retention_jobs(rig: Callable[..., Rig]) -> None:
    async with rig(at="2026-04-01 00:30:00") as r:
        await r.scheduler.fire(REPORT_ID)
        assert set(await r.store.list_reports("2026-03")) == {"_site", "admin", "marketing", "engineering", "it"}
        now = r.clock.now()
        old, recent = now - ROLLUP_RETENTION - timedelta(days=2), now - timedelta(days=10)
        await r.store.upsert_rollups(
            Rollup(device="r2119-ac", point="power", minute=m, min=1, max=1, mean=1, last=1, count=1)
            for start in (old, recent)
            for m in (start + timedelta(minutes=i) for i in range(3))
        )
        await r.scheduler.fire(RETENTION_ID)
        left = await r.store.telemetry("r2119-ac", "power", old - timedelta(days=1), now)
        assert [x.minute for x in left] == [recent.replace(second=0) + timedelta(minutes=i) for i in range(3)]
        [entry] = await r.scheduler.history(RETENTION_ID)
        assert entry["deleted"] == 3
        run = await r.scheduler.run_now(REPORT_ID, who="key:x", month="2026-02")
        assert run["month"] == "2026-02"


async def test_overrides_expire_by_themselves_and_are_audited(rig: Callable[..., Rig]) -> None:
    async with rig() as r:
        now = r.clock.now()
        await r.store.add_override(
            room="r2119", until=now + timedelta(minutes=10), reason="late", created_by="key:a", created_at=now
        )
        await r.scheduler.refresh_overrides()
        assert r.core.overrides == {"r2119": now + timedelta(minutes=10)}
        r.clock.advance(11 * 60)
        await r.scheduler.refresh_overrides()
        assert r.core.overrides == {}
        [audit] = await r.store.list_audit()
        assert (audit.result, audit.who, audit.job, audit.old["room"]) == (
            "override_expired",
            "scheduler",
            OVERRIDES_ID,
            "r2119",
        )


async def test_scheduler_on_postgresql(postgres_url: str) -> None:
    clock = ManualClock(local("2026-03-02 18:30:05"))
    swept = []
    for _ in range(2):  # the second start finds its jobs and the slot's record in PostgreSQL
        async with Rig(DEMO, postgres_url, clock) as r:
            assert r.scheduler.aps is not None
            stored = {j.id for j in r.scheduler.aps.get_jobs(jobstore="default")}
            assert stored == {SWEEP_ID, REPORT_ID, RETENTION_ID}
            swept.append(await r.scheduler.scheduled_sweep() is not None)
    assert swept == [True, False]
    assert len(await _pg_history(postgres_url)) == 1


async def _pg_history(url: str) -> list[object]:
    store = Store(url)
    await store.open()
    try:
        raw = await store.get_state(f"schedule:{SWEEP_ID}:history")
    finally:
        await store.close()
    return list(raw or [])


async def test_a_job_stored_with_the_old_module_path_is_rewritten_and_runs(rig: Callable[..., Rig]) -> None:
    r = rig()
    jobs = jobstore_url(r.url)
    assert jobs is not None and jobs.database is not None
    # The row an older version stored: its job function was service.scheduler:run_job.
    due = datetime.now(UTC) + timedelta(days=1)
    state = {
        "version": 1,
        "id": SWEEP_ID,
        "func": "service.scheduler:run_job",
        "trigger": CronTrigger(hour=18, minute=30, timezone=TZ),
        "executor": "default",
        "args": ("hq", SWEEP_ID),
        "kwargs": {},
        "name": "an older fingerprint",
        "misfire_grace_time": 7200,
        "coalesce": True,
        "max_instances": 1,
        "next_run_time": due,
    }
    with contextlib.closing(sqlite3.connect(jobs.database)) as db, db:
        db.execute(
            "CREATE TABLE apscheduler_jobs (id VARCHAR(191) PRIMARY KEY, next_run_time FLOAT, job_state BLOB NOT NULL)"
        )
        db.execute(
            "INSERT INTO apscheduler_jobs VALUES (?, ?, ?)",
            (SWEEP_ID, due.timestamp(), pickle.dumps(state, pickle.HIGHEST_PROTOCOL)),
        )
    async with r:
        aps = r.scheduler.aps
        assert aps is not None
        job = aps.get_job(SWEEP_ID, jobstore="default")
        assert job.func_ref == "service.control.scheduler:run_job" and job.args == ("hq", SWEEP_ID)
        aps.modify_job(SWEEP_ID, next_run_time=datetime.now(UTC))  # due now, as at its sweep time
        await _until(lambda: _swept(r, 1))
        [run] = await r.sweeps()
        assert run["slot"] == "2026-03-02T10:30:00+00:00"
    with contextlib.closing(sqlite3.connect(jobs.database)) as db:
        [(stored,)] = db.execute("SELECT job_state FROM apscheduler_jobs WHERE id = ?", (SWEEP_ID,)).fetchall()
    assert pickle.loads(stored)["func"] == "service.control.scheduler:run_job"
