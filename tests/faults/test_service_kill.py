"""The service SIGKILLed with active alarms and a sweep due: restarted, it neither forgets nor repeats.

The service runs as a child process (SQLite state store, APScheduler job store beside it) against
the demo site's simulators. Before the kill it holds two alarms, one acknowledged
(`redundancy_lost`: grid-b lost) and one not (`lit_empty_room` in r2101, exempt from sweeps so the
sweep cannot end it), and a lamp burns in r3101. The site's one sweep time is the first whole
minute after set-up; the service is killed before it and restarted after it, so the sweep falls
due while the service is dead. Then the service is killed again right after the sweep, and
restarted once more.

Checked from the state store and the API: every alarm keeps its id, state and journal; no
lifecycle is opened twice; the missed sweep runs exactly once (after the first restart, not
again after the second), its audit names the lamp once.
"""

from __future__ import annotations

import asyncio
import math
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from service.alarms.record import Alarm
from service.config.calendar import WorkCalendar
from service.config.site import Calendar, Site
from service.store.db import AuditEntry, Store, StoredTransition
from simulators.runner import Simulation
from tests import servers
from tests.conftest import site_for_test, write_site
from tests.faults.helpers import ServiceProcess, figure
from tests.harness import eventually

SET_UP_S = 22  # real seconds from the start to the kill: service start-up, then the 10 s on-delay of redundancy_lost
LAMP = ("r3101", "r3101-light")


def sweep_site(mqtt_url: str, sweep_at: datetime) -> Site:
    """The demo site: no working hours (every time is after hours), one sweep at `sweep_at`, r2101 exempt."""
    site = site_for_test(mqtt_url)
    local = sweep_at.astimezone(site.site.tz)
    calendar = Calendar(sweeps=[f"{local:%H:%M}"])
    rooms = [r.model_copy(update={"exempt": True}) if r.id == "r2101" else r for r in site.rooms]
    info = site.site.model_copy(
        update={"thresholds": site.site.thresholds.model_copy(update={"empty_room_delay_s": 2, "door_open_delay_s": 2})}
    )
    return site.model_copy(update={"site": info, "calendar": calendar, "rooms": rooms})


def next_sweep_time(earliest: datetime) -> datetime:
    """The first whole minute at or after `earliest`."""
    return datetime.fromtimestamp(math.ceil(earliest.timestamp() / 60) * 60, UTC)


async def snapshot(db: Path) -> tuple[list[Alarm], dict[str, list[StoredTransition]], list[AuditEntry]]:
    """Alarms, their journals and the audit log, read from the state store file."""
    store = Store(f"sqlite:///{db}")
    await store.open()
    try:
        alarms = await store.list_alarms(limit=1000)
        journals = {a.id: await store.journal(a.id) for a in alarms}
        audit = await store.list_audit(limit=1000)
    finally:
        await store.close()
    return alarms, journals, audit


@pytest.mark.slow
async def test_sigkill_with_active_alarms_and_a_pending_sweep(
    fresh_mosquitto: servers.Mosquitto, tmp_path: Path
) -> None:
    began = datetime.now(UTC)
    sweep_at = next_sweep_time(began + timedelta(seconds=SET_UP_S))
    site = sweep_site(fresh_mosquitto.url, sweep_at)
    assert not WorkCalendar(site.calendar, site.site.tz).is_working(sweep_at)
    site_file = write_site(site, tmp_path / "site.yaml")
    workdir = tmp_path / "service"
    db = workdir / "wattkeeper.db"
    svc = ServiceProcess(site_file, workdir, {"WATTKEEPER_MQTT_URL": fresh_mosquitto.url})
    slot = sweep_at.isoformat()
    try:
        async with Simulation(site, control_port=None, seed=11) as sim:
            sim.fault("source_loss", "grid-b")  # polled: the service sees it from its first poll
            await asyncio.to_thread(svc.start)
            # Sensors report on change: set the rooms once the service listens.
            sim.set_room("r2101", occupied=False, lights=True)
            sim.set_room(LAMP[0], lights=True)

            async def open_alarms() -> dict[tuple[str, str], dict[str, Any]] | None:
                active = await asyncio.to_thread(svc.get, "/api/alarms?state=active", "viewer")
                found = {(a["type"], a["subject"]): a for a in active}
                need = {("redundancy_lost", site.site.id), ("lit_empty_room", "r2101")}
                return found if need <= found.keys() else None

            found = await eventually(open_alarms, 40, 0.5)
            acked = found[("redundancy_lost", site.site.id)]
            await asyncio.to_thread(svc.post, f"/api/alarms/{acked['id']}/ack")
            await eventually(lambda: _state_is(svc, acked["id"], "active_acked"), 10)
            assert datetime.now(UTC) < sweep_at - timedelta(seconds=2), "set-up ran past the sweep time"
            svc.sigkill()
            before_alarms, before_journals, before_audit = await snapshot(db)

            # Dead through the sweep time.
            await asyncio.sleep(max(0.0, (sweep_at - datetime.now(UTC)).total_seconds()) + 2)
            await asyncio.to_thread(svc.start)

            async def swept() -> list[dict[str, Any]] | None:
                runs = await asyncio.to_thread(svc.get, "/api/schedules/after-hours/history", "viewer")
                mine = [r for r in runs if r.get("slot") == slot]
                return mine or None

            runs = await eventually(swept, 60, 0.5)
            svc.sigkill()
            await asyncio.to_thread(svc.start)
            after_second_restart = time.monotonic()
            await asyncio.sleep(4)  # room for a wrong second run to happen
            history = await asyncio.to_thread(svc.get, "/api/schedules/after-hours/history", "viewer")
            runs_after = [r for r in history if r.get("slot") == slot]
            active = await asyncio.to_thread(svc.get, "/api/alarms?state=active", "viewer")
            active_after = {(a["type"], a["subject"]): a for a in active}
            await asyncio.to_thread(svc.stop)
            waited_s = time.monotonic() - after_second_restart
            after_alarms, after_journals, after_audit = await snapshot(db)
    finally:
        svc.stop()

    before_by_id = {a.id: a for a in before_alarms}
    open_before = {(a.type, a.subject): a for a in before_alarms if a.state != "cleared"}
    journal_intact = all(after_journals[i][: len(j)] == j for i, j in before_journals.items())
    changed = [
        (a.type, a.subject, a.state, after.state if after is not None else None)
        for a in before_alarms
        if (after := next((x for x in after_alarms if x.id == a.id), None)) is None or after.state != a.state
    ]
    lifecycles: dict[tuple[str, str], int] = {}
    for a in after_alarms:
        lifecycles[(a.type, a.subject)] = lifecycles.get((a.type, a.subject), 0) + 1
    duplicated = {k: n for k, n in lifecycles.items() if n > 1 and k in open_before}
    kept = [(k, a.id, a.state) for k, a in open_before.items() if active_after.get(k, {}).get("id") == a.id]
    sweep_audit = [e for e in after_audit if e.job == f"after-hours@{slot}"]
    lamp_off = [e for e in sweep_audit if e.device == LAMP[1]]
    figure(
        "service-kill",
        f"{len(open_before)} open alarms ({sum(a.state == 'active_acked' for a in open_before.values())} acked) "
        f"survive 2 SIGKILLs with id, state and journal intact ({len(kept)} of {len(open_before)} unchanged, "
        f"{len(duplicated)} duplicated); the sweep due while the service was dead ran {len(runs_after)} time(s) "
        f"({len(sweep_audit)} devices commanded, the lamp {len(lamp_off)} time(s)), "
        f"none after the second restart ({waited_s:.0f} s watched)",
    )
    assert ("redundancy_lost", site.site.id) in open_before and ("lit_empty_room", "r2101") in open_before
    assert before_by_id[acked["id"]].state == "active_acked"
    assert journal_intact, "a journal entry written before the kill changed or vanished"
    assert changed == [], changed
    assert len(kept) == len(open_before), (open_before.keys(), active_after.keys())
    assert duplicated == {}
    assert len(runs) == 1 and len(runs_after) == 1, runs_after
    assert runs_after[0]["trigger"] == "scheduled"
    assert [e.result for e in lamp_off] == ["confirmed"]
    assert not [e for e in before_audit if e.job and e.job.startswith("after-hours")], "swept before the sweep time"


def _state_is(svc: ServiceProcess, alarm_id: str, state: str) -> Any:
    async def check() -> bool:
        active = await asyncio.to_thread(svc.get, "/api/alarms?state=active", "viewer")
        return any(a["id"] == alarm_id and a["state"] == state for a in active)

    return check()
