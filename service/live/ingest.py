"""Ingest: the drivers' readings and device statuses into the live state; device events and source transfers out.

The first step of a reading's path (service/core.py `Core._apply`): the live state takes it here; the
same batch then goes to InfluxDB (service/telemetry/lines.py), the rollups (service/energy/rollups.py)
and the rules (service/alarms/evaluate.py).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime

from drivers.types import DeviceStatus, Reading
from service.clock import Clock
from service.config.site import Site
from service.live.events import EventBus
from service.live.state import LiveState
from service.live.transfers import Transfer
from service.metrics import CoreStats, Metrics, count_up
from service.store.db import Store

log = logging.getLogger(__name__)

# Each transfer switch's last source transfer, kept in the store's service state so that
# GET /api/compliance and the dashboard still show it after a restart.
TRANSFERS_STATE = "last_transfers"


class Ingest:
    """Everything that changes the live state from the drivers' side goes through here."""

    def __init__(
        self,
        site: Site,
        state: LiveState,
        *,
        store: Store,
        clock: Clock,
        events: EventBus,
        metrics: Metrics,
        stats: CoreStats,
    ) -> None:
        self.site = site
        self.state = state
        self.store = store
        self.clock = clock
        self.events = events
        self.metrics = metrics
        self.stats = stats
        self.last_transfers: dict[str, Transfer] = {}  # switch id -> its last source transfer
        self._transfers_unsaved = False
        self._transfer_log: list[Transfer] = []  # ended transfers not yet in the store's transfer log

    def apply(self, batch: Iterable[Reading | DeviceStatus]) -> set[str]:
        """Take a batch in order; the subjects (rooms, SUPPLY, devices) whose view it changed."""
        touched: set[str] = set()
        readings: list[Reading] = []  # taken by the live state together, up to the next status
        for item in batch:
            if isinstance(item, Reading):
                readings.append(item)
                continue
            touched |= self._take(readings)
            readings = []
            self.stats.statuses += 1
            touched |= self.state.set_online(item.device, item.online, item.ts)
            self.events.publish(
                "device",
                {"id": item.device, "online": item.online, "ts": item.ts.isoformat(), "reason": item.reason},
            )
        touched |= self._take(readings)
        for transfer in self.state.take_transfers():
            self._transfer_ended(transfer)
        return touched

    def _take(self, readings: list[Reading]) -> set[str]:
        if not readings:
            return set()
        self.stats.readings += len(readings)
        self.metrics.readings.inc(len(readings))
        return self.state.apply_all(readings)

    # -- data quality -----------------------------------------------------------------------

    def record_rejects(self, rejects: dict[str, int]) -> None:
        """Per-device reject counters from the drivers, for /metrics and the data-quality board."""
        count_up(self.metrics.rejects, rejects, self.stats.rejects_seen)

    def record_clock_skew(self, skews: dict[str, int]) -> None:
        """Per-device counts of messages with a device timestamp far off the receive time, for /metrics."""
        count_up(self.metrics.clock_skew, skews, self.stats.skew_seen)

    def update_gauges(self) -> int:
        """Devices online and offline on /metrics; the number offline."""
        devices = self.state.devices()
        offline = sum(1 for d in devices if not d.online)
        self.metrics.devices_online.set(len(devices) - offline)
        self.metrics.devices_offline.set(offline)
        return offline

    # -- source transfers -------------------------------------------------------------------

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

    async def save_transfers(self, now: datetime) -> None:
        """Write the transfers ended since the last write; tried again at the next call if the store is away."""
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

    async def resume_transfers(self) -> None:
        """Take up each switch's last transfer as the store kept it."""
        stored = await self.stats.read_state(self.store, TRANSFERS_STATE, "the last source transfers")
        if stored is None:
            return
        switches = {t.id for t in self.site.transfer_switches}
        for switch, record in stored.items():
            if switch not in switches or not isinstance(record, dict):
                continue  # no longer a switch of this site
            try:
                self.last_transfers.setdefault(switch, Transfer.from_dict(record))
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("switch %s: stored last transfer not used (%s)", switch, exc)
