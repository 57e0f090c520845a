"""The state store: alarms and journal, audit, overrides, API keys, rollups, energy, reports, state.

SQLAlchemy 2 async over SQLite (aiosqlite, WAL) or PostgreSQL (asyncpg). Datetimes go in as
timezone-aware values, are stored as UTC and come back timezone-aware UTC on both databases.
Callers pass `at`/`now` from the service's one clock; the store reads the wall clock only to
stamp applied migrations.
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import hashlib
import hmac
import re
import secrets
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Final, Protocol, TypeAlias, TypeVar, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Integer,
    Select,
    String,
    Table,
    Text,
    TypeDecorator,
    case,
    delete,
    event,
    func,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.pool import StaticPool

from service.alarms.record import Alarm, AlarmState, Severity
from service.config.settings import ROLES, Role, async_database_url

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

AlarmValue: TypeAlias = float | str | None
Json: TypeAlias = Any
_JSON: Final = JSON(none_as_null=True)
_ID: Final = BigInteger().with_variant(Integer, "sqlite")  # SQLite autoincrements INTEGER keys only
# Generated keys embed their public id: 16 hex digits (8 in keys made before ids grew to 64 bits).
_KEY_PATTERN: Final = re.compile(r"^wk_([0-9a-f]{16}|[0-9a-f]{8})_[A-Za-z0-9_-]{32,}$")
ENV_KEY_PREFIX: Final = "env-"
_LEGACY_ENV_KEY_PREFIX: Final = "ext-"  # ids once derived from the key's digest
_NEW_ID_ATTEMPTS: Final = 5
_MIGRATION_LOCK: Final = 0x77617474  # PostgreSQL advisory lock id ("watt")
_ENV_KEYS_LOCK: Final = 0x776B6579  # PostgreSQL advisory lock id ("wkey"): importing WATTKEEPER_API_KEYS
_Q = TypeVar("_Q", bound="Select[Any]")
_R = TypeVar("_R", bound="DataclassInstance")
_PRUNE_STEP: Final = timedelta(days=1)


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware datetime stored as UTC; SQLite keeps naive UTC text, PostgreSQL timestamptz."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value} given to the store; use timezone-aware values")
        value = value.astimezone(UTC)
        # Naive on SQLite so that stored text compares in time order.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base with tz-aware datetimes."""

    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UtcDateTime()}


class SchemaVersion(Base):
    """One row per applied migration."""

    __tablename__ = "schema_version"
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(200))
    applied_at: Mapped[datetime]


class AlarmRow(Base):
    """Current state of one alarm lifecycle."""

    __tablename__ = "alarms"
    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    type: Mapped[str] = mapped_column(String(64), index=True)
    severity: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(32), index=True)
    raised_at: Mapped[datetime]
    cleared_at: Mapped[datetime | None]
    acked_by: Mapped[str | None] = mapped_column(String(128))
    message: Mapped[str] = mapped_column(Text, default="")
    value: Mapped[Json] = mapped_column(_JSON, nullable=True)
    updated_at: Mapped[datetime]
    shelved_until: Mapped[datetime | None]
    acked_at: Mapped[datetime | None]  # since migration 2
    shelved_by: Mapped[str | None] = mapped_column(String(128))  # since migration 2


class JournalRow(Base):
    """One state transition of an alarm."""

    __tablename__ = "alarm_journal"
    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    alarm_id: Mapped[str] = mapped_column(ForeignKey("alarms.id", ondelete="CASCADE"), index=True)
    from_state: Mapped[str | None] = mapped_column(String(32))
    to_state: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime]
    who: Mapped[str | None] = mapped_column(String(128))
    value: Mapped[Json] = mapped_column(_JSON, nullable=True)
    note: Mapped[str | None] = mapped_column(Text)


class AuditRow(Base):
    """One control action: who did what to which device point, and what came of it."""

    __tablename__ = "audit"
    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(index=True)
    who: Mapped[str] = mapped_column(String(128))
    job: Mapped[str | None] = mapped_column(String(128))
    device: Mapped[str | None] = mapped_column(String(64), index=True)
    point: Mapped[str | None] = mapped_column(String(64))
    old: Mapped[Json] = mapped_column(_JSON, nullable=True)
    new: Mapped[Json] = mapped_column(_JSON, nullable=True)
    result: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(Text, default="")


class OverrideRow(Base):
    """A room held on after hours ("working late") until `until` or until ended early."""

    __tablename__ = "overrides"
    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    room: Mapped[str] = mapped_column(String(64), index=True)
    until: Mapped[datetime] = mapped_column(index=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]


class ApiKeyRow(Base):
    """An API key: public id, SHA-256 of the key, role. The key itself is never stored."""

    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    digest: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    label: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class RollupRow(Base):
    """One minute of one device point."""

    __tablename__ = "rollups_1m"
    device: Mapped[str] = mapped_column(String(64), primary_key=True)
    point: Mapped[str] = mapped_column(String(64), primary_key=True)
    minute: Mapped[datetime] = mapped_column(primary_key=True)
    min: Mapped[float] = mapped_column(Float)
    max: Mapped[float] = mapped_column(Float)
    mean: Mapped[float] = mapped_column(Float)
    last: Mapped[float] = mapped_column(Float)
    count: Mapped[int] = mapped_column(Integer)


class EnergyRow(Base):
    """One 15-minute energy interval of one meter."""

    __tablename__ = "energy_15m"
    meter: Mapped[str] = mapped_column(String(64), primary_key=True)
    start: Mapped[datetime] = mapped_column(primary_key=True, index=True)
    kwh: Mapped[float] = mapped_column(Float)
    band: Mapped[str] = mapped_column(String(32))
    cost: Mapped[float] = mapped_column(Float)
    after_hours: Mapped[bool] = mapped_column(Boolean)
    department: Mapped[str | None] = mapped_column(String(64), index=True)


class ReportRow(Base):
    """A monthly report of one department as JSON."""

    __tablename__ = "monthly_reports"
    month: Mapped[str] = mapped_column(String(7), primary_key=True)
    department: Mapped[str] = mapped_column(String(64), primary_key=True)
    body: Mapped[Json] = mapped_column(_JSON, nullable=True)
    created_at: Mapped[datetime]


class StateRow(Base):
    """Small pieces of service state (e.g. when each sweep last ran)."""

    __tablename__ = "service_state"
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    value: Mapped[Json] = mapped_column(_JSON, nullable=True)
    updated_at: Mapped[datetime]


class AfterHoursFindingRow(Base):
    """A room an after-hours sweep found on, once per room and night (a `left_on_after_hours` violation)."""

    __tablename__ = "after_hours_findings"
    room: Mapped[str] = mapped_column(String(64), primary_key=True)
    night: Mapped[str] = mapped_column(String(10), primary_key=True)  # site-local date the evening began
    at: Mapped[datetime] = mapped_column(index=True)
    department: Mapped[str] = mapped_column(String(64))
    devices: Mapped[Json] = mapped_column(_JSON, nullable=True)
    job: Mapped[str] = mapped_column(String(200), default="")


class FineDecisionRow(Base):
    """The administration office's decision on the fine of one violation; none means proposed."""

    __tablename__ = "fine_decisions"
    violation: Mapped[str] = mapped_column(String(256), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    amount: Mapped[float] = mapped_column(Float)
    decided_by: Mapped[str] = mapped_column(String(128))
    decided_at: Mapped[datetime]
    reason: Mapped[str] = mapped_column(Text, default="")


class HazardRow(Base):
    """A hazard (隐患) in the register, from report to rectification."""

    __tablename__ = "hazards"
    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    title: Mapped[str] = mapped_column(Text)
    location: Mapped[str] = mapped_column(Text, default="")
    department: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(16))
    due: Mapped[datetime] = mapped_column(index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    rectification: Mapped[str] = mapped_column(Text, default="")
    source_alarm: Mapped[str | None] = mapped_column(String(200))
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(index=True)
    updated_at: Mapped[datetime]
    closed_by: Mapped[str | None] = mapped_column(String(128))
    closed_at: Mapped[datetime | None]


class TransferRow(Base):
    """One source transfer of a transfer switch (the quarterly summary's supply events)."""

    __tablename__ = "transfers"
    switch: Mapped[str] = mapped_column(String(64), primary_key=True)
    at: Mapped[datetime] = mapped_column(primary_key=True, index=True)
    record: Mapped[Json] = mapped_column(_JSON, nullable=True)


class NoticeRow(Base):
    """A notification waiting for its channel (service.notify's outbox): one row per channel and message."""

    __tablename__ = "notify_outbox"
    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(200), index=True)
    message: Mapped[Json] = mapped_column(_JSON, nullable=True)
    created_at: Mapped[datetime]


def _v1_initial(conn: Connection) -> None:
    Base.metadata.create_all(conn)


def _add_columns(conn: Connection, model: type[Base], names: Sequence[str]) -> None:
    """Add the model's columns `names` to its table where missing.

    A new database gets the current models' tables from step 1 already: later steps add only
    what a database made by an older version lacks.
    """
    table = _table(model)
    have = {c["name"] for c in inspect(conn).get_columns(table.name)}
    for name in names:
        if name not in have:
            column = table.c[name]
            kind = column.type.compile(dialect=conn.dialect)
            conn.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}"))


def _v2_alarm_ack_time_and_shelver(conn: Connection) -> None:
    _add_columns(conn, AlarmRow, ("acked_at", "shelved_by"))


def _v3_accountability(conn: Connection) -> None:
    tables = [_table(m) for m in (AfterHoursFindingRow, FineDecisionRow, HazardRow, TransferRow)]
    Base.metadata.create_all(conn, tables=tables, checkfirst=True)


def _v4_notify_outbox(conn: Connection) -> None:
    Base.metadata.create_all(conn, tables=[_table(NoticeRow)], checkfirst=True)


# Ordered and append-only: a schema change is a new (version, name, step) at the end, never an
# edit of an applied step. Steps run on a sync connection inside the migration transaction.
MIGRATIONS: Final[tuple[tuple[int, str, Callable[[Connection], None]], ...]] = (
    (1, "initial schema", _v1_initial),
    (2, "alarms: acked_at, shelved_by", _v2_alarm_ack_time_and_shelver),
    (3, "after-hours findings, fine decisions, hazards, transfers", _v3_accountability),
    (4, "notification outbox", _v4_notify_outbox),
)


# --- values the store returns -------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredTransition:
    """One journal entry (fields as the alarm engine's Transition)."""

    alarm_id: str
    from_state: str | None
    to_state: str
    at: datetime
    who: str | None
    value: AlarmValue
    note: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEntry:
    """One audit record."""

    id: int
    at: datetime
    who: str
    job: str | None
    device: str | None
    point: str | None
    old: Json
    new: Json
    result: str
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Override:
    """A room override; active while `ended_at` is None and `until` is in the future."""

    id: int
    room: str
    until: datetime
    reason: str
    created_by: str
    created_at: datetime
    ended_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiKeyInfo:
    """What may be shown about an API key."""

    id: str
    role: Role
    label: str
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Rollup:
    """Aggregate of one device point over one minute (or over a bucket of minutes in queries)."""

    device: str
    point: str
    minute: datetime
    min: float
    max: float
    mean: float
    last: float
    count: int


@dataclass(frozen=True, slots=True, kw_only=True)
class EnergyInterval:
    """Energy of one meter over the 15 minutes from `start`."""

    meter: str
    start: datetime
    kwh: float
    band: str
    cost: float
    after_hours: bool
    department: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class EnergyTotal:
    """Energy summed per department and tariff band over a period (`month` when grouped by month)."""

    department: str | None
    band: str
    kwh: float
    cost: float
    after_hours_kwh: float
    month: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AfterHoursFinding:
    """A room found on by an after-hours sweep in one night."""

    room: str
    night: str
    at: datetime
    department: str
    devices: Json
    job: str


@dataclass(frozen=True, slots=True, kw_only=True)
class FineDecision:
    """A confirmed or waived fine: by whom, when and why."""

    violation: str
    status: str
    amount: float
    decided_by: str
    decided_at: datetime
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Hazard:
    """A hazard in the register."""

    id: int
    title: str
    location: str
    department: str
    severity: str
    due: datetime
    status: str
    rectification: str
    source_alarm: str | None
    created_by: str
    created_at: datetime
    updated_at: datetime
    closed_by: str | None
    closed_at: datetime | None


class TransitionLike(Protocol):
    """What the store needs of a transition (the alarm engine's Transition fits)."""

    @property
    def alarm_id(self) -> str: ...
    @property
    def from_state(self) -> str | None: ...
    @property
    def to_state(self) -> str: ...
    @property
    def at(self) -> datetime: ...
    @property
    def who(self) -> str | None: ...
    @property
    def value(self) -> AlarmValue: ...
    @property
    def note(self) -> str | None: ...


def month_bounds(month: str, tz: tzinfo) -> tuple[datetime, datetime]:
    """'YYYY-MM' -> [first instant, first instant of next month) in the site's time zone, as UTC."""
    m = re.fullmatch(r"(\d{4})-(0[1-9]|1[0-2])", month)
    if not m:
        raise ValueError(f"'{month}' is not a month YYYY-MM")
    year, mon = int(m.group(1)), int(m.group(2))
    start = datetime(year, mon, 1, tzinfo=tz)
    end = start + timedelta(days=calendar.monthrange(year, mon)[1])
    return start.astimezone(UTC), end.astimezone(UTC)


def _key_id(plaintext: str) -> str | None:
    """The public id embedded in a generated key; None for a key given from outside (its id is random
    and stored: nothing about the key or its digest may be read from the id the audit log shows)."""
    m = _KEY_PATTERN.match(plaintext)
    return m.group(1) if m else None


def is_env_key(key_id: str) -> bool:
    """Whether a stored key came from WATTKEEPER_API_KEYS rather than `wattkeeper keys create`."""
    return key_id.startswith((ENV_KEY_PREFIX, _LEGACY_ENV_KEY_PREFIX))


def _digest(plaintext: str) -> str:
    # Plain SHA-256 suffices: generated keys carry 256 random bits, so there is nothing to
    # brute-force; bootstrap keys from the environment are held to >= 16 characters in production.
    return hashlib.sha256(plaintext.encode()).hexdigest()


def _key_info(row: ApiKeyRow) -> ApiKeyInfo:
    return ApiKeyInfo(
        id=row.id, role=_role(row.role), label=row.label, created_at=row.created_at, revoked_at=row.revoked_at
    )


def alarm_from_row(row: AlarmRow) -> Alarm:
    """A stored alarm back into the record (the one mapping from a row; `alarm_to_row` is its inverse).

    The row keeps no `active`: it follows from the state, and under a shelf from `cleared_at`
    (set while the condition is normal, the last one seen).
    """
    state = AlarmState(row.state)
    return Alarm(
        id=row.id,
        type=row.type,
        severity=Severity(row.severity),
        subject=row.subject,
        state=state,
        active=state in (AlarmState.active_unacked, AlarmState.active_acked)
        or (state is AlarmState.shelved and row.cleared_at is None),
        raised_at=row.raised_at,
        updated_at=row.updated_at,
        cleared_at=row.cleared_at,
        acked_by=row.acked_by,
        acked_at=row.acked_at,
        shelved_until=row.shelved_until,
        shelved_by=row.shelved_by,
        message=row.message,
        value=row.value,
    )


def _record(cls: type[_R], row: Base) -> _R:
    """The record `cls` read from a row whose columns carry its fields' names (one mapper for every table)."""
    return cls(**{f.name: getattr(row, f.name) for f in fields(cls)})


def alarm_to_row(alarm: Alarm) -> dict[str, Any]:
    """The `alarms` row of a record: every column, enums as their strings."""
    return {
        "id": alarm.id,
        "type": str(alarm.type),
        "severity": alarm.severity.value,
        "subject": alarm.subject,
        "state": alarm.state.value,
        "raised_at": alarm.raised_at,
        "cleared_at": alarm.cleared_at,
        "acked_by": alarm.acked_by,
        "message": alarm.message,
        "value": alarm.value,
        "updated_at": alarm.updated_at,
        "shelved_until": alarm.shelved_until,
        "acked_at": alarm.acked_at,
        "shelved_by": alarm.shelved_by,
    }


def _values(record: DataclassInstance) -> dict[str, Any]:
    """A record's fields as the column values of its row (the other way of `_record`)."""
    return {f.name: getattr(record, f.name) for f in fields(record)}


class Store:
    """Async access to the state store at a `sqlite:///path` or `postgresql://...` URL."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._async_url = async_database_url(url)
        self._engine: AsyncEngine | None = None
        self._sessions: async_sessionmaker[AsyncSession] | None = None
        # SQLite has one writer at a time; serialising our own writes avoids busy waits in-process.
        self._write_lock = asyncio.Lock()
        # Bumped by every key change made through this Store: caches of verified keys and sessions
        # in this process compare it and look again at once (another process: at their next check).
        self.keys_revision = 0

    @property
    def dialect(self) -> str:
        """'sqlite' or 'postgresql'."""
        return make_url(self._async_url).get_backend_name()

    async def open(self) -> None:
        """Connect, create the SQLite file's directory, and apply pending migrations."""
        url = make_url(self._async_url)
        kwargs: dict[str, Any] = {}
        if self.dialect == "sqlite":
            if url.database in (None, "", ":memory:"):
                # One shared connection: every new connection would see its own empty database.
                kwargs["poolclass"] = StaticPool
            else:
                Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        else:
            kwargs["pool_pre_ping"] = True
        engine = create_async_engine(url, **kwargs)
        if self.dialect == "sqlite":
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        self._engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        await self._migrate()

    async def close(self) -> None:
        """Release all connections."""
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None
            self._sessions = None

    async def schema_version(self) -> int:
        """The highest applied migration."""
        async with self._read() as s:
            return int(await s.scalar(select(func.coalesce(func.max(SchemaVersion.version), 0))) or 0)

    async def _migrate(self) -> None:
        async with self._write() as s:
            if self.dialect == "postgresql":
                # Several core instances may start at once on one database.
                await s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
            conn = await s.connection()
            await conn.run_sync(lambda c: _table(SchemaVersion).create(c, checkfirst=True))
            applied = set((await s.scalars(select(SchemaVersion.version))).all())
            for version, name, step in MIGRATIONS:
                if version not in applied:
                    await conn.run_sync(step)
                    s.add(SchemaVersion(version=version, name=name, applied_at=datetime.now(UTC)))

    @contextlib.asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncSession]:
        if self._sessions is None:
            raise RuntimeError("Store is not open")
        async with self._sessions() as s:
            yield s

    @contextlib.asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncSession]:
        """A session whose transaction commits on success; one writer at a time on SQLite."""
        if self._sessions is None:
            raise RuntimeError("Store is not open")
        lock = self._write_lock if self.dialect == "sqlite" else contextlib.nullcontext()
        async with lock, self._sessions() as s, s.begin():
            yield s

    def _insert(self, table: Any) -> Any:
        return (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(table)

    async def _upsert(self, s: AsyncSession, model: type[Base], rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        table = _table(model)
        keys = [c.name for c in table.primary_key.columns]
        stmt = self._insert(table)
        stmt = stmt.on_conflict_do_update(
            index_elements=keys, set_={c: stmt.excluded[c] for c in rows[0] if c not in keys}
        )
        await s.execute(stmt, rows)

    async def _save(self, model: type[Base], rows: list[dict[str, Any]]) -> None:
        """Upsert `rows` of `model` in a transaction of their own."""
        async with self._write() as s:
            await self._upsert(s, model, rows)

    # --- alarms -------------------------------------------------------------------------

    async def save_alarm(self, alarm: Alarm, transition: TransitionLike | None = None) -> None:
        """Upsert an alarm and append its transition to the journal, in one transaction."""
        row = alarm_to_row(alarm)
        async with self._write() as s:
            await self._upsert(s, AlarmRow, [row])
            if transition is not None:
                if transition.alarm_id != alarm.id:
                    raise ValueError(f"transition of '{transition.alarm_id}' saved with alarm '{alarm.id}'")
                s.add(
                    JournalRow(
                        alarm_id=transition.alarm_id,
                        from_state=None if transition.from_state is None else str(transition.from_state),
                        to_state=str(transition.to_state),
                        at=transition.at,
                        who=transition.who,
                        value=transition.value,
                        note=transition.note,
                    )
                )

    async def load_alarms(self) -> list[Alarm]:
        """Every alarm not in state `cleared` (what the alarm engine restores after a restart)."""
        async with self._read() as s:
            rows = await s.scalars(select(AlarmRow).where(AlarmRow.state != "cleared").order_by(AlarmRow.raised_at))
            return [alarm_from_row(r) for r in rows]

    async def get_alarm(self, alarm_id: str) -> Alarm | None:
        """One alarm by id."""
        async with self._read() as s:
            row = await s.get(AlarmRow, alarm_id)
            return None if row is None else alarm_from_row(row)

    async def list_alarms(
        self,
        *,
        states: Collection[str] | None = None,
        type: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Alarm]:
        """Alarms newest first, optionally only in `states` and of one `type`."""
        query = select(AlarmRow)
        if states is not None:
            query = query.where(AlarmRow.state.in_([str(x) for x in states]))
        if type is not None:
            query = query.where(AlarmRow.type == type)
        query = query.order_by(AlarmRow.raised_at.desc(), AlarmRow.id).limit(limit).offset(offset)
        async with self._read() as s:
            return [alarm_from_row(r) for r in await s.scalars(query)]

    async def count_alarms(self, *, states: Collection[str] | None = None, type: str | None = None) -> int:
        """How many alarms `list_alarms` would page through with these filters."""
        query = select(func.count(AlarmRow.id))
        if states is not None:
            query = query.where(AlarmRow.state.in_([str(x) for x in states]))
        if type is not None:
            query = query.where(AlarmRow.type == type)
        async with self._read() as s:
            return int(await s.scalar(query) or 0)

    async def alarms_touched(self, types: Collection[str], start: datetime, end: datetime) -> list[Alarm]:
        """Alarms of `types` raised before `end` and changed at or after `start` (any lifecycle that
        may have been raised again in [start, end)), oldest raise first."""
        query = (
            select(AlarmRow)
            .where(AlarmRow.type.in_(list(types)), AlarmRow.raised_at < end, AlarmRow.updated_at >= start)
            .order_by(AlarmRow.raised_at, AlarmRow.id)
        )
        async with self._read() as s:
            return [alarm_from_row(r) for r in await s.scalars(query)]

    async def journal(self, alarm_id: str) -> list[StoredTransition]:
        """The transitions of one alarm, oldest first."""
        query = select(JournalRow).where(JournalRow.alarm_id == alarm_id).order_by(JournalRow.at, JournalRow.id)
        async with self._read() as s:
            return [
                StoredTransition(
                    alarm_id=r.alarm_id,
                    from_state=r.from_state,
                    to_state=r.to_state,
                    at=r.at,
                    who=r.who,
                    value=r.value,
                    note=r.note,
                )
                for r in await s.scalars(query)
            ]

    # --- audit --------------------------------------------------------------------------

    async def append_audit(
        self,
        *,
        at: datetime,
        who: str,
        result: str,
        detail: str = "",
        job: str | None = None,
        device: str | None = None,
        point: str | None = None,
        old: Json = None,
        new: Json = None,
    ) -> int:
        """Record one control action; its id. A person's action on no device point (an override, a
        hazard, a fine) names no job, device or point."""
        row = AuditRow(
            at=at, who=who, job=job, device=device, point=point, old=old, new=new, result=result, detail=detail
        )
        async with self._write() as s:
            s.add(row)
            await s.flush()
            return row.id

    async def list_audit(
        self,
        *,
        device: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        who: str | None = None,
        job: str | None = None,
        result: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[AuditEntry]:
        """Audit records newest first, optionally filtered (times: since <= at < until)."""
        query = _audit_filter(select(AuditRow), device, since, until, who, job, result)
        query = query.order_by(AuditRow.at.desc(), AuditRow.id.desc()).limit(limit).offset(offset)
        async with self._read() as s:
            return [_record(AuditEntry, r) for r in await s.scalars(query)]

    async def count_audit(
        self,
        *,
        device: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        who: str | None = None,
        job: str | None = None,
        result: str | None = None,
    ) -> int:
        """How many audit records `list_audit` would page through with these filters."""
        query = _audit_filter(select(func.count(AuditRow.id)), device, since, until, who, job, result)
        async with self._read() as s:
            return int(await s.scalar(query) or 0)

    # --- overrides ----------------------------------------------------------------------

    async def add_override(
        self, *, room: str, until: datetime, reason: str, created_by: str, created_at: datetime
    ) -> Override:
        """Hold a room on until `until`."""
        if until <= created_at:
            raise ValueError("an override must end after it is created")
        row = OverrideRow(room=room, until=until, reason=reason, created_by=created_by, created_at=created_at)
        async with self._write() as s:
            s.add(row)
            await s.flush()
            return _record(Override, row)

    async def active_overrides(self, now: datetime) -> list[Override]:
        """Overrides in force at `now`, soonest end first."""
        query = (
            select(OverrideRow)
            .where(OverrideRow.ended_at.is_(None), OverrideRow.until > now, OverrideRow.created_at <= now)
            .order_by(OverrideRow.until, OverrideRow.id)
        )
        async with self._read() as s:
            return [_record(Override, r) for r in await s.scalars(query)]

    async def list_overrides(self, *, limit: int = 100, offset: int = 0) -> list[Override]:
        """All overrides, newest first."""
        query = select(OverrideRow).order_by(OverrideRow.created_at.desc(), OverrideRow.id.desc())
        async with self._read() as s:
            return [_record(Override, r) for r in await s.scalars(query.limit(limit).offset(offset))]

    async def count_overrides(self) -> int:
        """How many overrides `list_overrides` pages through."""
        async with self._read() as s:
            return int(await s.scalar(select(func.count(OverrideRow.id))) or 0)

    async def expire_override(self, override_id: int, at: datetime) -> bool:
        """End an override early; False when there is no such override still running."""
        stmt = (
            update(OverrideRow)
            .where(OverrideRow.id == override_id, OverrideRow.ended_at.is_(None), OverrideRow.until > at)
            .values(ended_at=at)
        )
        async with self._write() as s:
            result = await s.execute(stmt)
            return bool(getattr(result, "rowcount", 0))

    # --- API keys -----------------------------------------------------------------------

    async def create_key(self, role: Role, *, at: datetime, label: str = "") -> str:
        """A new key for `role`; the plaintext is returned once and never stored.

        Its id (64 random bits, embedded in the key) is inserted, never upserted: should it collide
        with a stored one, the insert fails and another id is drawn, so no key is ever replaced."""
        for _ in range(_NEW_ID_ATTEMPTS):
            key_id = secrets.token_hex(8)
            plaintext = f"wk_{key_id}_{secrets.token_urlsafe(32)}"
            if await self._insert_key(key_id, _digest(plaintext), role, at=at, label=label):
                return plaintext
        raise RuntimeError(f"no free key id after {_NEW_ID_ATTEMPTS} attempts")

    async def import_key(self, plaintext: str, role: Role, *, at: datetime, label: str = "bootstrap") -> str:
        """Store a key given from outside (WATTKEEPER_API_KEYS), or update the role of the stored key
        with the same digest (and make it live again); its id."""
        async with self._write() as s:
            key_id = await self._import_key(s, plaintext, role, at=at, label=label)
        self.keys_revision += 1  # after the commit: a cache refilled now sees the change
        return key_id

    async def import_env_keys(self, keys: Mapping[str, Role], *, at: datetime) -> tuple[list[str], list[str]]:
        """Import every key of WATTKEEPER_API_KEYS and revoke the live env keys it no longer holds, in
        one transaction; (ids of the keys, ids revoked). On PostgreSQL under an advisory lock: cores
        starting at once with the same variable take turns, so each sees the other's rows as its
        own keys (same digests) instead of inserting copies and revoking each other's."""
        async with self._write() as s:
            if self.dialect == "postgresql":
                await s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _ENV_KEYS_LOCK})
            current = [await self._import_key(s, key, role, at=at, label="bootstrap") for key, role in keys.items()]
            live = (await s.scalars(select(ApiKeyRow.id).where(ApiKeyRow.revoked_at.is_(None)))).all()
            revoked = [key_id for key_id in live if is_env_key(key_id) and key_id not in current]
            if revoked:
                await s.execute(update(ApiKeyRow).where(ApiKeyRow.id.in_(revoked)).values(revoked_at=at))
        self.keys_revision += 1
        return current, revoked

    async def _import_key(self, s: AsyncSession, plaintext: str, role: Role, *, at: datetime, label: str) -> str:
        digest = _digest(plaintext)
        row = await s.scalar(select(ApiKeyRow).where(ApiKeyRow.digest == digest))
        if row is not None:
            key_id = row.id
            if key_id.startswith(_LEGACY_ENV_KEY_PREFIX):
                key_id = ENV_KEY_PREFIX + secrets.token_hex(8)
            values = {"id": key_id, "role": role, "revoked_at": None}
            await s.execute(update(ApiKeyRow).where(ApiKeyRow.id == row.id).values(**values))
            return key_id
        for _ in range(_NEW_ID_ATTEMPTS):
            key_id = ENV_KEY_PREFIX + secrets.token_hex(8)
            if await s.get(ApiKeyRow, key_id) is None:
                s.add(ApiKeyRow(id=key_id, digest=digest, role=role, label=label, created_at=at, revoked_at=None))
                await s.flush()
                return key_id
        raise RuntimeError(f"no free key id after {_NEW_ID_ATTEMPTS} attempts")

    async def _insert_key(self, key_id: str, digest: str, role: Role, *, at: datetime, label: str) -> bool:
        row = {"id": key_id, "digest": digest, "role": role, "label": label, "created_at": at, "revoked_at": None}
        try:
            async with self._write() as s:
                await s.execute(self._insert(_table(ApiKeyRow)), [row])
        except IntegrityError:
            return False
        self.keys_revision += 1
        return True

    async def find_key(self, plaintext: str) -> ApiKeyInfo | None:
        """The live (unrevoked) key `plaintext` is, or None. A generated key is found by the id it
        embeds and its digest compared in constant time; a key from outside by its digest."""
        digest = _digest(plaintext)
        key_id = _key_id(plaintext)
        async with self._read() as s:
            row = await s.get(ApiKeyRow, key_id) if key_id is not None else None
            if row is None or not hmac.compare_digest(row.digest, digest):
                row = await s.scalar(select(ApiKeyRow).where(ApiKeyRow.digest == digest))
        if row is None or row.revoked_at is not None or not hmac.compare_digest(row.digest, digest):
            return None
        return _key_info(row)

    async def verify(self, plaintext: str) -> Role | None:
        """The role of a valid, unrevoked key; None otherwise."""
        found = await self.find_key(plaintext)
        return None if found is None else found.role

    async def list_keys(self) -> list[ApiKeyInfo]:
        """Every key's id, role and dates (never the key)."""
        async with self._read() as s:
            rows = await s.scalars(select(ApiKeyRow).order_by(ApiKeyRow.created_at, ApiKeyRow.id))
            return [_key_info(r) for r in rows]

    async def revoke_key(self, key_id: str, at: datetime) -> bool:
        """Revoke a key by id; False when no such live key."""
        stmt = update(ApiKeyRow).where(ApiKeyRow.id == key_id, ApiKeyRow.revoked_at.is_(None)).values(revoked_at=at)
        async with self._write() as s:
            done = bool(getattr(await s.execute(stmt), "rowcount", 0))
        self.keys_revision += 1
        return done

    # --- 1-minute rollups ---------------------------------------------------------------

    async def upsert_rollups(self, rollups: Iterable[Rollup]) -> None:
        """Insert or replace minutes of device points (idempotent per (device, point, minute))."""
        await self._save(RollupRow, [_values(r) for r in rollups])

    async def telemetry(
        self, device: str, point: str, start: datetime, end: datetime, every: timedelta = timedelta(minutes=1)
    ) -> list[Rollup]:
        """Rollups of [start, end) merged into buckets of `every` (a whole number of minutes) from `start`."""
        if every < timedelta(minutes=1) or every % timedelta(minutes=1):
            raise ValueError("every must be a whole number of minutes")
        query = select(RollupRow).where(*_rollup_span(device, point, start, end)).order_by(RollupRow.minute)
        async with self._read() as s:
            rows = list(await s.scalars(query))
        buckets: list[Rollup] = []
        group: list[RollupRow] = []
        bucket_start: datetime | None = None
        for row in rows:
            this = start + (row.minute - start) // every * every
            if group and this != bucket_start:
                buckets.append(_merge(device, point, bucket_start or this, group))
                group = []
            bucket_start = this
            group.append(row)
        if group and bucket_start is not None:
            buckets.append(_merge(device, point, bucket_start, group))
        return buckets

    # --- 15-minute energy ---------------------------------------------------------------

    async def upsert_energy(self, intervals: Iterable[EnergyInterval]) -> None:
        """Insert or replace intervals (idempotent per (meter, start))."""
        await self._save(EnergyRow, [_values(i) for i in intervals])

    async def energy_intervals(
        self, start: datetime, end: datetime, *, meter: str | None = None, department: str | None = None
    ) -> list[EnergyInterval]:
        """Intervals starting in [start, end), by meter and time."""
        query = select(EnergyRow).where(EnergyRow.start >= start, EnergyRow.start < end)
        if meter is not None:
            query = query.where(EnergyRow.meter == meter)
        if department is not None:
            query = query.where(EnergyRow.department == department)
        async with self._read() as s:
            rows = await s.scalars(query.order_by(EnergyRow.meter, EnergyRow.start))
            return [_record(EnergyInterval, r) for r in rows]

    async def energy_by_department(self, start: datetime, end: datetime) -> list[EnergyTotal]:
        """kWh, cost and after-hours kWh per department and band for intervals starting in [start, end)."""
        after_hours_kwh = func.sum(case((EnergyRow.after_hours, EnergyRow.kwh), else_=0.0))
        query = (
            select(
                EnergyRow.department,
                EnergyRow.band,
                func.sum(EnergyRow.kwh),
                func.sum(EnergyRow.cost),
                after_hours_kwh,
            )
            .where(EnergyRow.start >= start, EnergyRow.start < end)
            .group_by(EnergyRow.department, EnergyRow.band)
            .order_by(EnergyRow.department, EnergyRow.band)
        )
        async with self._read() as s:
            result = await s.execute(query)
            return [
                EnergyTotal(department=d, band=b, kwh=float(k or 0), cost=float(c or 0), after_hours_kwh=float(a or 0))
                for d, b, k, c, a in result.all()
            ]

    async def energy_by_month(self, months: Sequence[str], tz: tzinfo) -> list[EnergyTotal]:
        """`energy_by_department` for each 'YYYY-MM' month in the site's time zone, `month` set."""
        totals: list[EnergyTotal] = []
        for month in months:
            start, end = month_bounds(month, tz)
            totals += [replace(t, month=month) for t in await self.energy_by_department(start, end)]
        return totals

    # --- monthly reports ----------------------------------------------------------------

    async def save_report(self, month: str, department: str, body: Json, *, at: datetime) -> None:
        """Store (or replace) the report of one department for one month."""
        row = {"month": month, "department": department, "body": body, "created_at": at}
        await self._save(ReportRow, [row])

    async def load_report(self, month: str, department: str) -> Json | None:
        """A stored report body, or None."""
        async with self._read() as s:
            row = await s.get(ReportRow, (month, department))
            return None if row is None else row.body

    async def list_reports(self, month: str) -> dict[str, Json]:
        """Every department's report for a month."""
        async with self._read() as s:
            rows = await s.scalars(select(ReportRow).where(ReportRow.month == month).order_by(ReportRow.department))
            return {r.department: r.body for r in rows}

    # --- accountability: after-hours findings, fines, hazards ------------------------------

    async def add_after_hours_finding(self, finding: AfterHoursFinding) -> bool:
        """Record a room found on in a night; False (nothing stored) when that night already has it."""
        row = _values(finding)
        stmt = self._insert(_table(AfterHoursFindingRow)).on_conflict_do_nothing(index_elements=["room", "night"])
        async with self._write() as s:
            return bool(getattr(await s.execute(stmt, [row]), "rowcount", 0))

    async def after_hours_findings(self, start: datetime, end: datetime) -> list[AfterHoursFinding]:
        """Findings made in [start, end), oldest first."""
        query = (
            select(AfterHoursFindingRow)
            .where(AfterHoursFindingRow.at >= start, AfterHoursFindingRow.at < end)
            .order_by(AfterHoursFindingRow.at, AfterHoursFindingRow.room)
        )
        async with self._read() as s:
            return [_record(AfterHoursFinding, r) for r in await s.scalars(query)]

    async def add_transfers(self, records: Iterable[tuple[str, datetime, Json]]) -> None:
        """Keep source transfers as (switch, at, record) (idempotent per switch and time)."""
        rows = [{"switch": switch, "at": at, "record": record} for switch, at, record in records]
        await self._save(TransferRow, rows)

    async def transfers(self, start: datetime, end: datetime) -> list[Json]:
        """The records of transfers that ended in [start, end), oldest first."""
        query = select(TransferRow).where(TransferRow.at >= start, TransferRow.at < end)
        async with self._read() as s:
            return [r.record for r in await s.scalars(query.order_by(TransferRow.at, TransferRow.switch))]

    async def decide_fine(self, decision: FineDecision) -> None:
        """Store (or replace) the decision on a violation's fine."""
        await self._save(FineDecisionRow, [_values(decision)])

    async def fine_decisions(self, violations: Collection[str]) -> dict[str, FineDecision]:
        """The decisions taken on these violations, by violation id."""
        out: dict[str, FineDecision] = {}
        ids = list(violations)
        async with self._read() as s:
            for i in range(0, len(ids), 500):
                query = select(FineDecisionRow).where(FineDecisionRow.violation.in_(ids[i : i + 500]))
                for r in await s.scalars(query):
                    out[r.violation] = _record(FineDecision, r)
        return out

    async def add_hazard(
        self,
        *,
        title: str,
        location: str,
        department: str,
        severity: str,
        due: datetime,
        source_alarm: str | None,
        created_by: str,
        created_at: datetime,
    ) -> Hazard:
        """Open a hazard (status `open`)."""
        if due <= created_at:
            raise ValueError("due: must be after the hazard is reported")
        row = HazardRow(
            title=title,
            location=location,
            department=department,
            severity=severity,
            due=due,
            status="open",
            rectification="",
            source_alarm=source_alarm,
            created_by=created_by,
            created_at=created_at,
            updated_at=created_at,
        )
        async with self._write() as s:
            s.add(row)
            await s.flush()
            return _record(Hazard, row)

    async def get_hazard(self, hazard_id: int) -> Hazard | None:
        """One hazard by id."""
        async with self._read() as s:
            row = await s.get(HazardRow, hazard_id)
            return None if row is None else _record(Hazard, row)

    async def list_hazards(
        self,
        *,
        statuses: Collection[str] | None = None,
        due_by: datetime | None = None,
        created_before: datetime | None = None,
    ) -> list[Hazard]:
        """Hazards, oldest first: optionally only in `statuses`, due at or before a time, reported before one."""
        query = select(HazardRow)
        if statuses is not None:
            query = query.where(HazardRow.status.in_(list(statuses)))
        if due_by is not None:
            query = query.where(HazardRow.due <= due_by)
        if created_before is not None:
            query = query.where(HazardRow.created_at < created_before)
        async with self._read() as s:
            return [_record(Hazard, r) for r in await s.scalars(query.order_by(HazardRow.created_at, HazardRow.id))]

    async def update_hazard(
        self, hazard_id: int, *, status: str, rectification: str | None, who: str, at: datetime
    ) -> Hazard | None:
        """Move a hazard on (`rectifying` or `closed`, with the rectification text); None if unknown."""
        async with self._write() as s:
            row = await s.get(HazardRow, hazard_id)
            if row is None:
                return None
            row.status = status
            if rectification is not None:
                row.rectification = rectification
            row.updated_at = at
            if status == "closed":
                row.closed_by, row.closed_at = who, at
            await s.flush()
            return _record(Hazard, row)

    # --- small service state ------------------------------------------------------------

    async def set_state(self, key: str, value: Json, *, at: datetime) -> None:
        """Remember a small JSON value under `key`."""
        await self._save(StateRow, [{"key": key, "value": value, "updated_at": at}])

    async def get_state(self, key: str) -> Json | None:
        """The value remembered under `key`, or None."""
        async with self._read() as s:
            row = await s.get(StateRow, key)
            return None if row is None else row.value

    async def forget_state(self, prefix: str, *, updated_before: datetime) -> int:
        """Delete the values under keys starting with `prefix` last set before a time; how many."""
        pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        stmt = delete(StateRow).where(StateRow.key.like(pattern, escape="\\"), StateRow.updated_at < updated_before)
        async with self._write() as s:
            return int(getattr(await s.execute(stmt), "rowcount", 0) or 0)

    async def rollup_means(
        self, device: str, point: str, start: datetime, end: datetime, every: timedelta
    ) -> list[tuple[datetime, float]]:
        """(bucket start, count-weighted mean) per bucket of `every` (whole seconds) from `start` over
        [start, end), grouped in the database: a chart of a month of minutes reads 720 rows, not
        43,200 (dashboard trends)."""
        step = int(every.total_seconds())
        origin = int(start.timestamp())
        if self.dialect == "sqlite":  # naive UTC text: strftime('%s') is its epoch; `//` divides integers
            bucket: Any = (func.strftime("%s", RollupRow.minute).cast(Integer) - origin) // step
        else:
            bucket = func.floor((func.extract("epoch", RollupRow.minute) - origin) / step)
        weighted = func.sum(RollupRow.mean * RollupRow.count)
        query = (
            select(bucket.label("bucket"), weighted, func.sum(RollupRow.count), func.avg(RollupRow.mean))
            .where(*_rollup_span(device, point, start, end))
            .group_by("bucket")
            .order_by("bucket")
        )
        async with self._read() as s:
            rows = (await s.execute(query)).all()
        return [
            (start + int(b) * every, float(total / count) if count else float(plain)) for b, total, count, plain in rows
        ]

    # --- notification outbox ------------------------------------------------------------

    async def add_notices(self, rows: Sequence[tuple[str, Json]], *, at: datetime) -> list[int]:
        """Keep (channel, message) rows until their channel has sent them; their ids, in order."""
        async with self._write() as s:
            added = [NoticeRow(channel=channel, message=message, created_at=at) for channel, message in rows]
            s.add_all(added)
            await s.flush()
            return [r.id for r in added]

    async def pending_notices(self) -> list[tuple[int, str, Json]]:
        """(id, channel, message) of every kept row, oldest first."""
        async with self._read() as s:
            result = await s.execute(select(NoticeRow.id, NoticeRow.channel, NoticeRow.message).order_by(NoticeRow.id))
            return [(int(i), str(c), m) for i, c, m in result.all()]

    async def notices_done(self, ids: Collection[int]) -> None:
        """Forget kept rows: their messages were sent or given up on."""
        if not ids:
            return
        async with self._write() as s:
            await s.execute(delete(NoticeRow).where(NoticeRow.id.in_(list(ids))))

    async def rollup_kwh_by_device(self, point: str, start: datetime, end: datetime) -> dict[str, float]:
        """kWh per device from a power point (W) over the minutes in [start, end) (energy reports' rooms)."""
        query = (
            select(RollupRow.device, func.sum(RollupRow.mean))
            .where(RollupRow.point == point, RollupRow.minute >= start, RollupRow.minute < end)
            .group_by(RollupRow.device)
        )
        async with self._read() as s:
            rows = (await s.execute(query)).all()
        return {device: float(w_minutes or 0.0) / 60_000.0 for device, w_minutes in rows}

    async def rollup_minutes_at(self, device: str, point: str, value: float, start: datetime, end: datetime) -> int:
        """How many minutes in [start, end) ended with the point at `value` (e.g. an engine running)."""
        query = select(func.count()).where(*_rollup_span(device, point, start, end), RollupRow.last == value)
        async with self._read() as s:
            return int(await s.scalar(query) or 0)

    async def rollup_rise(self, device: str, point: str, start: datetime, end: datetime) -> float | None:
        """How much a counter rose over the minutes in [start, end) (None without data)."""
        query = select(func.min(RollupRow.min), func.max(RollupRow.max)).where(*_rollup_span(device, point, start, end))
        async with self._read() as s:
            low, high = (await s.execute(query)).one()
        return None if low is None or high is None else float(high) - float(low)

    async def prune_rollups(self, before: datetime) -> int:
        """Delete rollups older than `before`, a day per transaction (the writers between wait a day's
        delete at most); the number deleted."""
        async with self._read() as s:
            oldest = await s.scalar(select(func.min(RollupRow.minute)))
        deleted = 0
        while oldest is not None and oldest < before:
            upto = min(oldest + _PRUNE_STEP, before)
            async with self._write() as s:
                result = await s.execute(delete(RollupRow).where(RollupRow.minute < upto))
                deleted += int(getattr(result, "rowcount", 0) or 0)
            oldest = upto
        return deleted


def _table(model: type[Base]) -> Table:
    return cast(Table, model.__table__)


def _rollup_span(device: str, point: str, start: datetime, end: datetime) -> tuple[Any, ...]:
    """The conditions that pick one device point's minutes in [start, end)."""
    return (RollupRow.device == device, RollupRow.point == point, RollupRow.minute >= start, RollupRow.minute < end)


def _audit_filter(
    query: _Q,
    device: str | None,
    since: datetime | None,
    until: datetime | None,
    who: str | None,
    job: str | None,
    result: str | None,
) -> _Q:
    exact = ((AuditRow.device, device), (AuditRow.who, who), (AuditRow.job, job), (AuditRow.result, result))
    for column, value in exact:
        if value is not None:
            query = query.where(column == value)
    if since is not None:
        query = query.where(AuditRow.at >= since)
    if until is not None:
        query = query.where(AuditRow.at < until)
    return query


def _role(name: str) -> Role:
    if name in ROLES:
        return name
    raise ValueError(f"stored API key has unknown role '{name}'")


def _merge(device: str, point: str, minute: datetime, rows: list[RollupRow]) -> Rollup:
    count = sum(r.count for r in rows)
    mean = sum(r.mean * r.count for r in rows) / count if count else rows[-1].mean
    return Rollup(
        device=device,
        point=point,
        minute=minute,
        min=min(r.min for r in rows),
        max=max(r.max for r in rows),
        mean=mean,
        last=rows[-1].last,
        count=count,
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers run beside the writer; NORMAL is durable across process crashes in WAL
    # mode; busy_timeout covers a second process (e.g. `wattkeeper keys create`) writing.
    cursor = dbapi_connection.cursor()
    for pragma in (
        "journal_mode=WAL",
        "synchronous=NORMAL",
        "foreign_keys=ON",
        "busy_timeout=10000",
    ):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()
