"""Rollups and energy: readings into 1-minute rollups, meters' counters into priced 15-minute intervals.

Fed with the readings that went to InfluxDB (service/telemetry/lines.py); `flush_minutes` and
`flush_energy` write what is finished to the store (and the intervals to InfluxDB too). Rows the store
did not take are kept and written with the next flush (upserts: writing one twice is harmless).
The meters' counters are checkpointed in the store's service state, so the energy used while the
service was away is counted from the counters at the next start, not lost.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from drivers.profiles import ModbusProfile, load_profile
from drivers.types import Reading
from service.config.calendar import WorkCalendar
from service.config.site import Site
from service.energy.meters import CounterTracker, price
from service.energy.meters import EnergyInterval as EnergyChunk
from service.metrics import CoreStats
from service.store.db import EnergyInterval, Rollup, Store
from service.telemetry.lineproto import energy_line
from service.telemetry.lines import Telemetry

log = logging.getLogger(__name__)

# Rollup minutes and energy intervals the store could not take are kept, up to this many of each;
# beyond, the oldest go.
UNSAVED_MAX = 100_000
METER_ENERGY_POINTS = ("import_energy", "energy")
# The trackers are written at every stop and every CHECKPOINT_S, and taken up again at start.
ENERGY_CHECKPOINT = "energy_counters"
CHECKPOINT_S = 60.0

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

    def row(self, device: str, point: str) -> Rollup:
        return Rollup(
            device=device,
            point=point,
            minute=self.minute,
            min=self.min,
            max=self.max,
            mean=self.total / self.count,
            last=self.last,
            count=self.count,
        )


def minute_of(ts: datetime) -> datetime:
    """The minute a timestamp falls in."""
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


def energy_meters(site: Site) -> dict[str, tuple[str, CounterTracker]]:
    """Modbus meters whose energy counter becomes 15-minute intervals: device -> (point, tracker)."""
    out: dict[str, tuple[str, CounterTracker]] = {}
    for d in site.devices:
        profile = load_profile(d.profile)
        if not isinstance(profile, ModbusProfile):
            continue
        names = {p.name: p for p in profile.points}
        for point in METER_ENERGY_POINTS:
            if point in names and names[point].unit in ("kWh", "Wh"):
                p = names[point]
                out[d.id] = (point, CounterTracker(d.id, unit=p.unit, rated_kw=d.rated_kw, resolution=p.resolution))
                break
    return out


class Rollups:
    """The minutes of every numeric point and the energy meters' quarter hours, on their way to the store."""

    def __init__(
        self, site: Site, *, store: Store, calendar: WorkCalendar, telemetry: Telemetry, stats: CoreStats
    ) -> None:
        self.site = site
        self.store = store
        self.calendar = calendar
        self.telemetry = telemetry
        self.stats = stats
        self.meters = energy_meters(site)
        self._open: dict[tuple[str, str], _Acc] = {}
        self._finished: list[tuple[tuple[str, str], _Acc]] = []
        self._flushed_minute: dict[tuple[str, str], datetime] = {}
        self._finished_energy: list[EnergyChunk] = []
        self._unsaved_rollups: dict[tuple[str, str, datetime], Rollup] = {}
        self._unsaved_energy: dict[tuple[str, datetime], EnergyInterval] = {}
        self._checkpoint_at: datetime | None = None

    def add(self, readings: Iterable[Reading]) -> None:
        """Take readings into their minutes, and meters' counters into their quarter hours."""
        minutes: dict[datetime, datetime] = {}  # one message's or poll's readings share a timestamp
        meters = self.meters
        for r in readings:
            minute = minutes.get(r.ts)
            if minute is None:
                minute = minutes[r.ts] = minute_of(r.ts)
            self._rollup(r, minute)
            meter = meters.get(r.device)
            if meter is not None and meter[0] == r.point and isinstance(r.value, int | float):
                done = meter[1].add(r.ts, float(r.value))
                if done:
                    self._finished_energy.extend(done)

    def _rollup(self, r: Reading, minute: datetime) -> None:
        v = _numeric(r.value)
        if v is None:
            return
        key = (r.device, r.point)
        flushed = self._flushed_minute.get(key)
        if flushed is not None and minute <= flushed:
            return  # the store replaces a minute; a late reading must not overwrite a complete one
        acc = self._open.get(key)
        if acc is None or acc.minute != minute:
            if acc is not None and acc.minute < minute:
                self._finished.append((key, acc))
            self._open[key] = _Acc(minute, v, v, v, v)
        else:
            acc.add(v)

    async def flush_minutes(self, now: datetime, force: bool = False) -> None:
        """Write the minutes before `now`'s (every open one when `force`d) and those a failed write kept."""
        now_minute = minute_of(now)
        done = self._finished
        self._finished = []
        for key, acc in list(self._open.items()):
            if force or acc.minute < now_minute:
                done.append((key, acc))
                del self._open[key]
        if not done and not self._unsaved_rollups:
            return
        rows = self._unsaved_rollups
        for key, acc in done:
            self._flushed_minute[key] = max(acc.minute, self._flushed_minute.get(key, acc.minute))
            rows[(*key, acc.minute)] = acc.row(*key)
        self._unsaved_rollups = {}
        kept = await self._write(self.store.upsert_rollups, rows, "rollup minutes")
        if kept:
            self._unsaved_rollups = kept

    async def flush_energy(self, force: bool = False) -> None:
        """Price and write the finished quarter hours (the open ones too when `force`d)."""
        if force:
            for _, tracker in self.meters.values():
                self._finished_energy.extend(tracker.flush())
        done, self._finished_energy = self._finished_energy, []
        tariff = self.site.tariff
        if (not done and not self._unsaved_energy) or tariff is None:
            return
        rows = self._unsaved_energy
        self._unsaved_energy = {}
        lines = []
        for iv in done:
            parts = price(iv, tariff, self.calendar)
            if not parts:
                continue
            main = max(parts, key=lambda p: p.kwh)
            tags = self.telemetry.tags.get(main.meter, {})
            row = rows[(main.meter, main.start)] = EnergyInterval(
                meter=main.meter,
                start=main.start,
                kwh=sum(p.kwh for p in parts),
                band=main.band,
                cost=sum(p.cost for p in parts),
                after_hours=main.after_hours,
                department=tags.get("department") if "room" not in tags else None,
            )
            lines.append(
                energy_line(
                    site=self.site.site.id,
                    meter=row.meter,
                    start=row.start,
                    kwh=row.kwh,
                    cost=row.cost,
                    after_hours=row.after_hours,
                    band=row.band,
                    department=tags.get("department"),
                    source=tags.get("source"),
                )
            )
        kept = await self._write(self.store.upsert_energy, rows, "energy intervals")
        if kept:
            self._unsaved_energy = kept
        self.telemetry.put_many(lines)

    async def _write(
        self, upsert: Callable[[list[_V]], Awaitable[None]], rows: dict[_K, _V], what: str
    ) -> dict[_K, _V]:
        """Write rows; those to write again with the next flush (none once the store took them)."""
        try:
            await upsert(list(rows.values()))
        except Exception:
            self.stats.store_errors += 1
            log.exception("could not store %d %s; kept for the next flush", len(rows), what)
            return _keep_newest(rows, what)
        return {}

    # -- checkpoints ------------------------------------------------------------------------

    def checkpoint(self) -> dict[str, object]:
        """Where each meter's counting stands (taken before a final flush closes the open quarter hours)."""
        out: dict[str, object] = {}
        for meter, (_, tracker) in self.meters.items():
            checkpoint = tracker.checkpoint()
            if checkpoint is not None:
                out[meter] = checkpoint
        return out

    def checkpoint_due(self, now: datetime) -> bool:
        """CHECKPOINT_S or more since the last checkpoint (or none yet)."""
        return self._checkpoint_at is None or (now - self._checkpoint_at).total_seconds() >= CHECKPOINT_S

    async def save_checkpoint(self, checkpoint: dict[str, object], now: datetime) -> None:
        """Keep a checkpoint in the store's service state."""
        self._checkpoint_at = now
        if not checkpoint:
            return
        try:
            await self.store.set_state(ENERGY_CHECKPOINT, checkpoint, at=now)
        except Exception:
            self.stats.store_errors += 1
            log.exception("could not store the energy counters' checkpoint")

    async def resume(self, now: datetime) -> None:
        """Take up the meters' energy trackers where the last checkpoint left them."""
        if not self.meters:
            return
        stored = await self.stats.read_state(
            self.store, ENERGY_CHECKPOINT, "the energy counters' checkpoint; counting starts afresh"
        )
        if stored is None:
            return
        resumed = []
        for meter, checkpoint in stored.items():
            entry = self.meters.get(meter)
            if entry is None or not isinstance(checkpoint, dict):
                continue  # no longer a meter of this site
            try:
                if entry[1].resume(checkpoint, now):
                    resumed.append(meter)
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("meter %s: energy checkpoint not used (%s); counting starts afresh", meter, exc)
        if resumed:
            log.info("energy counting of %d meter(s) goes on from the last checkpoint", len(resumed))
