"""The hazard register (隐患): reported at once, rectified, closed; overdue ones raise `hazard_overdue`.

Status moves `open -> rectifying -> closed` (`open -> closed` too). A hazard that is not closed
by its `due` time is overdue: `hazard_overdue` is raised with the hazard id as subject, at the
hazard's severity (at least `warning`), and notified as any alarm; closing the hazard clears it.
Operators report and update hazards, admins close them; every change is audited.

`overdue_findings` is pure (hazards, now) -> findings; `HazardWatch` hands them to the core every
CHECK_S and at once when a hazard changes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Final, Literal, Protocol

from service.alarms.record import Severity
from service.alarms.rules import AlarmType, Finding
from service.clock import Clock
from service.config.site import Site
from service.store.db import Hazard, Store
from service.tasks import stop_task

log = logging.getLogger(__name__)

CHECK_S: Final = 30.0
HazardStatus = Literal["open", "rectifying", "closed"]
HazardSeverity = Literal["critical", "high", "warning", "low"]
STATUSES: Final[tuple[HazardStatus, ...]] = ("open", "rectifying", "closed")
# Allowed moves: a closed hazard stays closed (a new one is reported instead).
MOVES: Final[dict[str, frozenset[str]]] = {
    "open": frozenset({"rectifying", "closed"}),
    "rectifying": frozenset({"rectifying", "closed"}),
    "closed": frozenset(),
}
_RANK: Final = {Severity.critical: 0, Severity.high: 1, Severity.warning: 2, Severity.low: 3}


def due_time(value: datetime | date, site: Site) -> datetime:
    """A due date alone means the end of that day, site time; a time without a zone is site time."""
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=site.site.tz)
    return datetime.combine(value + timedelta(days=1), time(0), tzinfo=site.site.tz)


def is_overdue(h: Hazard, now: datetime) -> bool:
    """Not closed and past due."""
    return h.status != "closed" and h.due <= now


def overdue_findings(hazards: Iterable[Hazard], now: datetime, tz: tzinfo = UTC) -> list[Finding]:
    """One finding per hazard: active while it is overdue (times in the message in `tz`, site time)."""
    out = []
    for h in hazards:
        active = is_overdue(h, now)
        severity = Severity(h.severity) if h.severity in Severity.__members__ else Severity.warning
        if _RANK[severity] > _RANK[Severity.warning]:
            severity = Severity.warning
        late_h = (now - h.due).total_seconds() / 3600.0
        due = h.due.astimezone(tz).isoformat(timespec="minutes")
        message = (
            f"hazard {h.id} '{h.title}' at {h.location or h.department}: not rectified, due {due}"
            if active
            else f"hazard {h.id} {h.status}"
        )
        out.append(
            Finding(
                AlarmType.hazard_overdue, str(h.id), severity, active, round(late_h, 1) if active else None, message
            )
        )
    return out


class Evaluator(Protocol):
    """What the watch hands its findings to: the core (an alarms module knows no core)."""

    site: Site
    clock: Clock

    def report(self, finding: Finding) -> None: ...

    async def report_now(self, finding: Finding) -> None: ...


class HazardWatch:
    """Keeps `hazard_overdue` in step with the register."""

    def __init__(self, store: Store, core: Evaluator) -> None:
        self.store = store
        self.core = core
        self._task: asyncio.Task[None] | None = None
        self._known: set[str] = set()

    async def check(self) -> None:
        """Hand every not-closed hazard's finding to the core, and a clearing one for those closed since."""
        now = self.core.clock.now()
        live = await self.store.list_hazards(statuses=("open", "rectifying"))
        tz = self.core.site.site.tz
        findings = overdue_findings(live, now, tz)
        ids = {f.subject for f in findings}
        for gone in self._known - ids:
            hazard = await self.store.get_hazard(int(gone))
            if hazard is not None:
                findings.extend(overdue_findings([hazard], now, tz))
        self._known = ids
        for f in findings:
            self.core.report(f)
        if findings:
            await self.core.report_now(findings[-1])  # one evaluation takes every reported finding

    async def _loop(self) -> None:
        while True:
            try:
                await self.check()
            except Exception:
                log.exception("hazard check failed")
            await asyncio.sleep(CHECK_S)

    async def start(self) -> None:
        """Check now and every CHECK_S."""
        self._task = asyncio.create_task(self._loop(), name="hazard-watch")

    async def stop(self) -> None:
        """Stop checking."""
        await stop_task(self._task)
        self._task = None
