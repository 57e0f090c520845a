"""The state store against SQLite and the real PostgreSQL server."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from service.alarms.record import Alarm, AlarmState, Severity
from service.config.settings import async_database_url
from service.store import db
from service.store.db import MIGRATIONS, EnergyInterval, Rollup, Store, month_bounds

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SHANGHAI = ZoneInfo("Asia/Shanghai")


@dataclass(frozen=True)
class Transition:
    alarm_id: str
    from_state: str | None
    to_state: str
    at: datetime
    who: str | None
    value: float | str | None
    note: str | None


def alarm(id: str = "lit_empty_room:r2119", state: str = "active_unacked", **kw: object) -> Alarm:
    fields: dict[str, object] = {
        "type": id.split(":")[0],
        "severity": Severity.warning,
        "subject": id.split(":")[1],
        "state": AlarmState(state),
        "active": state in ("active_unacked", "active_acked"),
        "raised_at": T0,
        "updated_at": T0,
        "message": "lights on in an empty room",
        "value": 1.0,
    }
    fields.update(kw)
    return Alarm(id=id, **fields)  # type: ignore[arg-type]


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/nested/dir/wk.db"
    else:
        url = request.getfixturevalue("postgres_url")
    s = Store(url)
    await s.open()
    try:
        yield s
    finally:
        await s.close()


async def test_open_migrates_once_and_sqlite_is_wal(tmp_path: Path) -> None:
    path = tmp_path / "var" / "wk.db"
    for _ in range(2):
        s = Store(f"sqlite:///{path}")
        await s.open()
        assert await s.schema_version() == MIGRATIONS[-1][0]
        await s.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT count(*) FROM schema_version").fetchone()[0] == len(MIGRATIONS)


async def test_concurrent_opens_on_postgres_migrate_once(postgres_url: str) -> None:
    stores = [Store(postgres_url) for _ in range(3)]
    await asyncio.gather(*(s.open() for s in stores))
    assert [await s.schema_version() for s in stores] == [MIGRATIONS[-1][0]] * 3
    for s in stores:
        await s.close()


async def test_alarm_upsert_and_journal_restore(store: Store) -> None:
    raised = alarm()
    await store.save_alarm(raised, Transition(raised.id, None, "active_unacked", T0, None, 1.0, "raised"))
    at = T0 + timedelta(minutes=5)
    acked = alarm(state="active_acked", acked_by="duty", updated_at=at, value="on")
    await store.save_alarm(acked, Transition(acked.id, "active_unacked", "active_acked", at, "duty", "on", None))
    await store.save_alarm(alarm("ac_too_cold:r2120", state="cleared", cleared_at=at, value=None))

    restored = await store.load_alarms()
    assert [a.id for a in restored] == [acked.id]
    got = restored[0]
    assert (got.state, got.acked_by, got.value, got.updated_at) == ("active_acked", "duty", "on", at)
    assert got.raised_at.tzinfo is not None and got.raised_at == T0
    journal = await store.journal(acked.id)
    assert [(t.from_state, t.to_state, t.who, t.value) for t in journal] == [
        (None, "active_unacked", None, 1.0),
        ("active_unacked", "active_acked", "duty", "on"),
    ]
    assert all(t.at.utcoffset() == timedelta(0) for t in journal)

    assert {a.id for a in await store.list_alarms()} == {acked.id, "ac_too_cold:r2120"}
    assert [a.id for a in await store.list_alarms(states=["cleared"])] == ["ac_too_cold:r2120"]
    assert [a.id for a in await store.list_alarms(type="lit_empty_room")] == [acked.id]
    assert len(await store.list_alarms(limit=1, offset=1)) == 1
    cleared = await store.get_alarm("ac_too_cold:r2120")
    assert cleared is not None and cleared.value is None


async def test_acknowledgement_time_and_shelver_are_kept(store: Store) -> None:
    acked_at, until = T0 + timedelta(minutes=1), T0 + timedelta(hours=4)
    await store.save_alarm(
        alarm(state="shelved", acked_by="duty", acked_at=acked_at, shelved_until=until, shelved_by="fm")
    )
    [got] = await store.load_alarms()
    assert (got.state, got.acked_by, got.acked_at, got.shelved_until, got.shelved_by) == (
        "shelved",
        "duty",
        acked_at,
        until,
        "fm",
    )


@pytest.mark.parametrize(
    "saved",
    [
        alarm(),
        alarm(state="cleared_unacked", cleared_at=T0 + timedelta(minutes=2), value="off"),
        alarm(state="shelved", active=True, acked_by="duty", acked_at=T0, shelved_until=T0 + timedelta(hours=1)),
        alarm(state="shelved", cleared_at=T0, shelved_until=T0 + timedelta(hours=1), shelved_by="fm", value=None),
    ],
    ids=["active", "cleared_unacked", "shelved-active", "shelved-normal"],
)
async def test_an_alarm_comes_back_as_it_was_saved(store: Store, saved: Alarm) -> None:
    """The record's row mapping is lossless, `active` included (it follows from state and cleared_at)."""
    await store.save_alarm(saved)
    assert await store.get_alarm(saved.id) == saved


async def test_migration_2_adds_the_alarm_columns_to_an_older_database(store: Store) -> None:
    """A database made before migration 2 (its alarms table without acked_at and shelved_by) gets
    them when opened again, and keeps its alarms."""
    engine = create_async_engine(async_database_url(store.url))
    await store.save_alarm(alarm(state="active_acked", acked_by="duty"))
    await store.close()
    async with engine.begin() as conn:
        for column in ("acked_at", "shelved_by"):
            await conn.execute(text(f"ALTER TABLE alarms DROP COLUMN {column}"))
        await conn.execute(text("DELETE FROM schema_version WHERE version >= 2"))
    await store.open()
    assert await store.schema_version() == MIGRATIONS[-1][0]
    [old] = await store.load_alarms()
    assert (old.state, old.acked_by, old.acked_at, old.shelved_by) == ("active_acked", "duty", None, None)
    until = T0 + timedelta(hours=1)
    await store.save_alarm(alarm(state="shelved", acked_by="duty", acked_at=T0, shelved_until=until, shelved_by="fm"))
    [got] = await store.load_alarms()
    assert (got.acked_at, got.shelved_by) == (T0, "fm")
    await engine.dispose()


async def test_alarm_and_journal_commit_together(store: Store) -> None:
    a = alarm()
    with pytest.raises(ValueError, match="transition of"):
        await store.save_alarm(a, Transition("other:x", None, "active_unacked", T0, None, None, None))
    assert await store.get_alarm(a.id) is None


async def test_naive_datetimes_are_refused(store: Store) -> None:
    with pytest.raises(Exception, match="naive datetime"):
        await store.save_alarm(alarm(raised_at=datetime(2026, 1, 1)))


async def test_other_time_zones_come_back_as_the_same_instant(store: Store) -> None:
    local = datetime(2026, 3, 2, 17, 0, tzinfo=timezone(timedelta(hours=8)))
    await store.save_alarm(alarm(raised_at=local, updated_at=local))
    got = await store.get_alarm("lit_empty_room:r2119")
    assert got is not None and got.raised_at == T0 and got.raised_at.tzinfo == UTC


async def test_audit_append_and_list(store: Store) -> None:
    first = await store.append_audit(
        at=T0,
        who="sweep",
        job="after-hours",
        device="r2119-light",
        point="power",
        old=True,
        new=False,
        result="confirmed",
    )
    second = await store.append_audit(
        at=T0 + timedelta(seconds=1),
        who="key:ab12cd34",
        job=None,
        device="r2119-ac",
        point="setpoint",
        old=24.0,
        new=26.0,
        result="refused",
        detail="cooling setpoint below 26 °C",
    )
    assert second > first
    entries = await store.list_audit()
    assert [(e.id, e.old, e.new, e.result) for e in entries] == [
        (second, 24.0, 26.0, "refused"),
        (first, True, False, "confirmed"),
    ]
    assert entries[0].detail == "cooling setpoint below 26 °C"
    assert [e.id for e in await store.list_audit(device="r2119-light")] == [first]
    assert [e.id for e in await store.list_audit(since=T0 + timedelta(seconds=1))] == [second]


async def test_overrides_active_and_expired(store: Store) -> None:
    late = await store.add_override(
        room="r2119", until=T0 + timedelta(hours=2), reason="deadline", created_by="alice", created_at=T0
    )
    await store.add_override(room="r2120", until=T0 + timedelta(hours=1), reason="", created_by="bob", created_at=T0)
    assert [o.room for o in await store.active_overrides(T0 + timedelta(minutes=1))] == ["r2120", "r2119"]
    assert [o.room for o in await store.active_overrides(T0 + timedelta(minutes=90))] == ["r2119"]
    assert await store.expire_override(late.id, T0 + timedelta(minutes=10))
    assert not await store.expire_override(late.id, T0 + timedelta(minutes=11))
    assert [o.room for o in await store.active_overrides(T0 + timedelta(minutes=20))] == ["r2120"]
    listed = {o.room: o for o in await store.list_overrides()}
    assert listed["r2119"].ended_at == T0 + timedelta(minutes=10)
    with pytest.raises(ValueError):
        await store.add_override(room="r1", until=T0, reason="", created_by="x", created_at=T0)


async def test_api_keys_are_hashed_verified_and_revocable(store: Store) -> None:
    key = await store.create_key("operator", at=T0, label="tablet")
    assert key.startswith("wk_")
    assert await store.verify(key) == "operator"
    assert await store.verify(key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    assert await store.verify("nonsense") is None
    boot = "a-bootstrap-key-from-env"
    boot_id = await store.import_key(boot, "admin", at=T0)
    assert await store.verify(boot) == "admin"
    await store.import_key(boot, "viewer", at=T0)
    assert await store.verify(boot) == "viewer"
    keys = await store.list_keys()
    assert {k.role for k in keys} == {"operator", "viewer"}
    assert all(key not in repr(k) and boot not in repr(k) for k in keys)
    assert await store.revoke_key(boot_id, T0)
    assert await store.verify(boot) is None


async def test_rollups_upsert_and_buckets(store: Store) -> None:
    def minute(i: int, mean: float, count: int = 60) -> Rollup:
        return Rollup(
            device="meter-grid-a",
            point="power_kw",
            minute=T0 + timedelta(minutes=i),
            min=mean - 1,
            max=mean + 1,
            mean=mean,
            last=mean,
            count=count,
        )

    await store.upsert_rollups([minute(i, 10.0 + i) for i in range(10)])
    await store.upsert_rollups([minute(3, 100.0, count=30)])  # replaces minute 3
    one = await store.telemetry("meter-grid-a", "power_kw", T0, T0 + timedelta(minutes=10))
    assert len(one) == 10 and one[3].mean == 100.0 and one[3].count == 30
    five = await store.telemetry("meter-grid-a", "power_kw", T0, T0 + timedelta(minutes=10), timedelta(minutes=5))
    assert [b.minute for b in five] == [T0, T0 + timedelta(minutes=5)]
    first = five[0]
    assert (first.min, first.max, first.last, first.count) == (9.0, 101.0, 14.0, 270)
    assert first.mean == pytest.approx((10 * 60 + 11 * 60 + 12 * 60 + 100 * 30 + 14 * 60) / 270)
    assert await store.telemetry("meter-grid-a", "other", T0, T0 + timedelta(hours=1)) == []
    with pytest.raises(ValueError):
        await store.telemetry("meter-grid-a", "power_kw", T0, T0, timedelta(seconds=90))


async def test_energy_intervals_idempotent_and_aggregated_by_month(store: Store) -> None:
    # 2026-03-31 23:45 Shanghai is still March; 2026-04-01 00:00 Shanghai is April.
    march_end = datetime(2026, 3, 31, 23, 45, tzinfo=SHANGHAI)
    april = datetime(2026, 4, 1, 0, 0, tzinfo=SHANGHAI)
    rows = [
        EnergyInterval(
            meter="m-mkt", start=march_end, kwh=2.0, band="valley", cost=0.64, after_hours=True, department="marketing"
        ),
        EnergyInterval(
            meter="m-mkt", start=april, kwh=1.0, band="valley", cost=0.32, after_hours=True, department="marketing"
        ),
        EnergyInterval(
            meter="m-fin", start=march_end, kwh=3.0, band="valley", cost=0.96, after_hours=False, department="finance"
        ),
        EnergyInterval(
            meter="m-fin",
            start=datetime(2026, 3, 10, 9, 0, tzinfo=SHANGHAI),
            kwh=4.0,
            band="peak",
            cost=4.48,
            after_hours=False,
            department="finance",
        ),
    ]
    await store.upsert_energy(rows)
    await store.upsert_energy(rows[:1])  # idempotent on (meter, start)
    totals = await store.energy_by_month(["2026-03", "2026-04"], SHANGHAI)
    got = {(t.month, t.department, t.band): (t.kwh, round(t.cost, 2), t.after_hours_kwh) for t in totals}
    assert got == {
        ("2026-03", "finance", "peak"): (4.0, 4.48, 0.0),
        ("2026-03", "finance", "valley"): (3.0, 0.96, 0.0),
        ("2026-03", "marketing", "valley"): (2.0, 0.64, 2.0),
        ("2026-04", "marketing", "valley"): (1.0, 0.32, 1.0),
    }
    start, end = month_bounds("2026-03", SHANGHAI)
    assert start == datetime(2026, 2, 28, 16, 0, tzinfo=UTC) and end == datetime(2026, 3, 31, 16, 0, tzinfo=UTC)
    march = await store.energy_intervals(start, end, department="finance")
    assert [i.kwh for i in march] == [4.0, 3.0] and march[0].start.tzinfo == UTC
    assert [i.meter for i in await store.energy_intervals(start, end, meter="m-mkt")] == ["m-mkt"]


async def test_reports_and_service_state(store: Store) -> None:
    body = {"department": "市场营销部", "kwh": 1234.5, "bands": {"peak": 400.0}}
    await store.save_report("2026-03", "marketing", body, at=T0)
    await store.save_report("2026-03", "marketing", {**body, "kwh": 1300.0}, at=T0)
    assert await store.load_report("2026-03", "marketing") == {**body, "kwh": 1300.0}
    assert await store.load_report("2026-04", "marketing") is None
    assert list(await store.list_reports("2026-03")) == ["marketing"]
    await store.set_state("sweep:after-hours:last", {"at": T0.isoformat(), "commanded": 12}, at=T0)
    assert await store.get_state("sweep:after-hours:last") == {"at": T0.isoformat(), "commanded": 12}
    assert await store.get_state("missing") is None


def test_month_bounds_rejects_bad_months() -> None:
    for bad in ("2026-13", "2026-3", "march"):
        with pytest.raises(ValueError):
            month_bounds(bad, SHANGHAI)


async def test_rollup_means_grouped_in_the_database_match_the_buckets(store: Store) -> None:
    """The dashboard's trend query (grouped in SQL) gives the same buckets and weighted means as telemetry()."""
    rows = [
        Rollup(
            device="r2119-ac",
            point="local_temperature",
            minute=T0 + timedelta(minutes=i),
            min=20.0,
            max=30.0,
            mean=20.0 + (i % 7),
            last=20.0,
            count=1 + i % 3,
        )
        for i in range(0, 300)
        if i % 11  # gaps: buckets without some minutes, and some without any
    ]
    await store.upsert_rollups(rows)
    for start, every in (
        (T0 - timedelta(minutes=2), timedelta(minutes=5)),
        (T0, timedelta(hours=1)),
        (T0 + timedelta(minutes=7), timedelta(minutes=1)),
    ):
        end = T0 + timedelta(hours=5)
        want = [(b.minute, b.mean) for b in await store.telemetry("r2119-ac", "local_temperature", start, end, every)]
        got = await store.rollup_means("r2119-ac", "local_temperature", start, end, every)
        assert [at for at, _ in got] == [at for at, _ in want]
        assert [m for _, m in got] == pytest.approx([m for _, m in want])
    assert await store.rollup_means("r2119-ac", "nope", T0, T0 + timedelta(hours=1), timedelta(minutes=5)) == []


async def test_rollup_energy_run_minutes_counter_rise_and_pruning(store: Store) -> None:
    """The reports' queries on the rollups: kWh per device, minutes at a state, a counter's rise, retention."""

    def minute(device: str, point: str, i: int, value: float) -> Rollup:
        at = T0 + timedelta(minutes=i)
        return Rollup(device=device, point=point, minute=at, min=value, max=value, mean=value, last=value, count=6)

    rows = [minute("r2119-ac", "power", i, 1200.0) for i in range(30)]
    rows += [minute("r2120-ac", "power", i, 600.0) for i in range(60)]
    rows += [minute("gen-1", "engine_state", i, 1.0 if 10 <= i < 25 else 0.0) for i in range(60)]
    rows += [minute("gen-1", "starts", i, 40.0 + i // 20) for i in range(60)]
    rows += [minute("r2119-ac", "power", -3 * 24 * 60 + i, 5000.0) for i in range(3)]  # three days before
    await store.upsert_rollups(rows)
    hour = (T0, T0 + timedelta(hours=1))

    assert await store.rollup_kwh_by_device("power", *hour) == pytest.approx({"r2119-ac": 0.6, "r2120-ac": 0.6})
    assert await store.rollup_minutes_at("gen-1", "engine_state", 1.0, *hour) == 15
    assert await store.rollup_minutes_at("gen-1", "engine_state", 1.0, T0, T0 + timedelta(minutes=12)) == 2
    assert await store.rollup_rise("gen-1", "starts", *hour) == 2.0
    assert await store.rollup_rise("gen-1", "nope", *hour) is None

    assert await store.prune_rollups(T0) == 3  # spread over three days: one transaction a day
    assert await store.prune_rollups(T0) == 0
    earlier = await store.rollup_kwh_by_device("power", T0 - timedelta(days=4), T0)
    assert earlier == {}
    assert await store.rollup_kwh_by_device("power", *hour) == pytest.approx({"r2119-ac": 0.6, "r2120-ac": 0.6})


@pytest.mark.parametrize(
    ("record", "row"),
    [
        (db.AuditEntry, db.AuditRow),
        (db.Override, db.OverrideRow),
        (db.Rollup, db.RollupRow),
        (db.EnergyInterval, db.EnergyRow),
        (db.AfterHoursFinding, db.AfterHoursFindingRow),
        (db.FineDecision, db.FineDecisionRow),
        (db.Hazard, db.HazardRow),
    ],
)
def test_records_map_one_to_one_onto_their_tables(record: type, row: type[db.Base]) -> None:
    """The store maps rows and records by field name: every field is a column, every column a field."""
    assert {f.name for f in fields(record)} == {c.name for c in row.__table__.columns}
