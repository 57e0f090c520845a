"""After-hours sweeps through the API against the simulated demo site on a real broker.

What is switched off is checked by the simulated devices' own state (`sim.state()`), not by what
the service believes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from service.clock import ManualClock
from service.config.site import PROTECTED_ROLES, RoomKind, Site
from service.control.path import SWEPT_ROLES
from service.control.scheduler import SWEEP_ID
from service.services import Services
from service.store.db import Store
from simulators.runner import Simulation
from tests.harness import eventually, running_service

TZ = ZoneInfo("Asia/Shanghai")
SIM_START = datetime(2026, 3, 2, 19, 0, tzinfo=TZ)  # a Monday evening, after hours


def switchable(site: Site, rooms: Iterable[str] | None = None) -> list[str]:
    """Devices a sweep may switch off (swept role, not in a server room), optionally only in `rooms`."""
    wanted = set(rooms) if rooms is not None else None
    return [
        d
        for r in site.rooms
        if r.kind is not RoomKind.server and (wanted is None or r.id in wanted)
        for d in r.devices
        if site.device(d).role in SWEPT_ROLES
    ]


def protected(site: Site) -> list[str]:
    """Devices no sweep or command may touch: protected roles, anything in a server room."""
    return [
        d
        for r in site.rooms
        for d in r.devices
        if site.device(d).role in PROTECTED_ROLES or (r.kind is RoomKind.server and site.device(d).role in SWEPT_ROLES)
    ]


def switch_everything_on(sim: Simulation, *, occupied: Iterable[str] = ()) -> None:
    """Every room's lights, ACs and plugs on; rooms empty unless listed in `occupied`."""
    busy = set(occupied)
    world = sim.world
    for room in sim.site.rooms:
        model = world.room(room.id)
        fields: dict[str, Any] = {"occupied": room.id in busy}
        if model.lights:
            fields["lights"] = True
        if model.acs:
            fields["ac"] = {"mode": "cool"}
        sim.set_room(room.id, **fields)
        for plug in model.plugs:
            world.switch_relay(plug.id, True, by="test")


def simulation(site: Site) -> Simulation:
    """The demo site's devices on Monday evening, simulated time held still (nothing changes by itself)."""
    return Simulation(site, control_port=None, speed=0, seed=3, start=SIM_START)


def sim_on(sim: Simulation) -> dict[str, bool | None]:
    """Each device's on/off as the simulated device itself has it."""
    return {d: s["on"] for d, s in sim.state()["devices"].items()}


async def service_sees(svc: Services, sim: Simulation, devices: Iterable[str] | None = None) -> None:
    """Wait until the service's live state agrees with the simulated devices and rooms."""
    control = svc.control
    site = sim.site
    wanted = list(devices) if devices is not None else switchable(site) + protected(site)

    async def agree() -> bool:
        now = svc.clock.now()
        truth = sim_on(sim)
        rooms = sim.state()["rooms"]
        devices_ok = all(control.is_on(d, now) == truth[d] for d in wanted if truth[d] is not None)
        rooms_ok = all(
            _same_occupancy(svc.core.state.room(r.id, now).occupied, rooms[r.id]["occupied"]) for r in site.rooms
        )
        return devices_ok and rooms_ok

    await eventually(agree, timeout_s=20)


def _same_occupancy(seen: bool | None, truth: bool) -> bool:
    # A sensor not heard since the service started is unknown, which a sweep treats like empty.
    return seen is truth or (seen is None and not truth)


async def sweep(client: Any) -> dict[str, Any]:
    """Run the after-hours sweep through the API."""
    r = await client.post(f"/api/schedules/{SWEEP_ID}/run")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def actions(result: dict[str, Any]) -> dict[str, str]:
    """Device -> action of a sweep result."""
    return {d["device"]: d["action"] for d in result["devices"]}


async def test_sweep_switches_off_exactly_what_it_should(demo_site: Site, tmp_path: Path) -> None:
    # The service first: sensors publish on change only, and speed 0 holds their periodic reports.
    async with running_service(demo_site, tmp_path) as svc, simulation(demo_site) as sim:
        switch_everything_on(sim, occupied=["r3101"])
        before = sim_on(sim)
        await service_sees(svc.services, sim)
        async with svc.client("operator") as client:
            result = await sweep(client)
        after = sim_on(sim)
        started = datetime.fromisoformat(result["started_at"])
        found = await svc.services.store.after_hours_findings(started, started + timedelta(seconds=1))
    audit = await _audit(tmp_path)

    expected_off = set(switchable(demo_site)) - set(switchable(demo_site, ["r3101"]))
    assert expected_off, "the demo site has devices to sweep"
    assert {d for d in expected_off if after[d] is not False} == set()
    # the occupied room, the server room and critical devices are exactly as they were
    for d in switchable(demo_site, ["r3101"]) + protected(demo_site):
        assert after[d] == before[d], d
    got = actions(result)
    assert {d for d, a in got.items() if a == "switched_off"} == expected_off
    assert {d for d, a in got.items() if a == "skipped_occupied"} == set(switchable(demo_site, ["r3101"]))
    assert {d for d, a in got.items() if a == "skipped_exempt"} == set(protected(demo_site))
    # Outside working hours every room found on is a left_on_after_hours violation (a manual sweep in
    # working hours is the operator's, not one).
    rooms_on = {d["room"] for d in result["devices"] if d["action"] == "switched_off"}
    working = svc.services.scheduler.calendar.is_working(started)
    assert {f.room for f in found} == (set() if working else rooms_on)
    assert "r3101" not in {f.room for f in found}  # occupied: left on, not a violation
    assert all(d["observed"] in (False, "off") for d in result["devices"] if d["action"] == "switched_off")
    # one audit record per command, none for anything protected
    swept = [a for a in audit if a["job"] == f"{SWEEP_ID}:manual"]
    assert sorted(a["device"] for a in swept) == sorted(expected_off)
    for a in swept:
        assert a["who"].startswith("key:")
        assert a["result"] == "confirmed"
        assert (a["point"], a["new"]) in (("on", False), ("system_mode", "off"))
        assert a["old"] in (True, "cool")
        assert a["at"] is not None


async def test_offline_device_raises_shutdown_failed_and_the_rest_switch(demo_site: Site, tmp_path: Path) -> None:
    async with running_service(demo_site, tmp_path) as svc, simulation(demo_site) as sim:
        switch_everything_on(sim)
        await service_sees(svc.services, sim)
        sim.fault("device_offline", "r2101-light")
        await eventually(lambda: _offline(svc.services, "r2101-light"), timeout_s=20)
        svc.services.control.timeout_s = 1.5
        async with svc.client("operator") as client:
            result = await sweep(client)
            alarms = (await client.get("/api/alarms", params={"type": "shutdown_failed"})).json()
        after = sim_on(sim)

    got = actions(result)
    assert got["r2101-light"] == "failed"
    others = set(switchable(demo_site)) - {"r2101-light"}
    assert {d for d in others if got[d] != "switched_off"} == set()
    assert {d for d in others if after[d] is not False} == set()
    assert [(a["subject"], a["state"]) for a in alarms] == [("r2101-light", "active_unacked")]


async def _offline(svc: Services, device: str) -> bool:
    return svc.core.state.online(device) is False


async def _audit(tmp_path: Path) -> list[dict[str, Any]]:
    """Every audit record of the service's SQLite store, oldest first, as plain dicts."""
    store = Store(f"sqlite:///{tmp_path}/wattkeeper.db")
    await store.open()
    try:
        rows = await store.list_audit(limit=10_000)
    finally:
        await store.close()
    return [
        {
            "who": r.who,
            "job": r.job,
            "device": r.device,
            "point": r.point,
            "old": r.old,
            "new": r.new,
            "result": r.result,
            "at": r.at,
        }
        for r in reversed(rows)
    ]


async def test_restart_between_two_sweeps_runs_each_sweep_once(demo_site: Site, tmp_path: Path) -> None:
    day = datetime.now(TZ).date()
    clock = ManualClock(datetime(day.year, day.month, day.day, 18, 30, 5, tzinfo=TZ))
    async with Simulation(demo_site, control_port=None, speed=0, seed=3, start=SIM_START) as sim:
        switch_everything_on(sim)
        # first life: the 18:30 sweep fires (through APScheduler and the stored job's reference)
        async with running_service(demo_site, tmp_path, clock=clock) as svc:
            await service_sees(svc.services, sim)
            await _fire(svc.services)
            await eventually(lambda: _runs(svc.services, 1))
        assert {d for d in switchable(demo_site) if sim_on(sim)[d] is not False} == set()

        # second life, a minute later: nothing runs by itself, and a second firing of 18:30 repeats nothing
        switch_everything_on(sim)
        clock.advance(60)
        async with running_service(demo_site, tmp_path, clock=clock) as svc:
            await service_sees(svc.services, sim)
            await _fire(svc.services)
            await _settle(svc.services)
            assert len(await _scheduled(svc.services)) == 1
            assert sim_on(sim)["r2119-light"] is True
            # 20:00 fires: the second sweep runs once
            clock.set(datetime(day.year, day.month, day.day, 20, 0, 5, tzinfo=TZ))
            await _fire(svc.services)
            await eventually(lambda: _runs(svc.services, 2))
            # the service goes down before 22:00 and is back at 22:10: the stored job is overdue
            aps = svc.services.scheduler.aps
            assert aps is not None
            aps.pause()
            aps.modify_job(SWEEP_ID, next_run_time=datetime.now(UTC) - timedelta(minutes=10))
        assert {d for d in switchable(demo_site) if sim_on(sim)[d] is not False} == set()

        clock.set(datetime(day.year, day.month, day.day, 22, 10, 0, tzinfo=TZ))
        async with running_service(demo_site, tmp_path, clock=clock) as svc:
            await eventually(lambda: _runs(svc.services, 3))
            await _settle(svc.services)
            runs = await _scheduled(svc.services)
            aps = svc.services.scheduler.aps
            assert aps is not None
            job = aps.get_job(SWEEP_ID)
            assert job.next_run_time > datetime.now(UTC)

    slots = [datetime.fromisoformat(r["slot"]).astimezone(TZ).strftime("%H:%M") for r in runs]
    assert slots == ["18:30", "20:00", "22:00"]


async def _fire(svc: Services) -> None:
    """Make the stored after-hours job due now, as APScheduler would at a sweep time."""
    aps = svc.scheduler.aps
    assert aps is not None
    aps.modify_job(SWEEP_ID, next_run_time=datetime.now(UTC))


async def _scheduled(svc: Services) -> list[dict[str, Any]]:
    return [r for r in await svc.scheduler.history(SWEEP_ID) if r.get("trigger") == "scheduled"]


async def _runs(svc: Services, n: int) -> bool:
    return len(await _scheduled(svc)) >= n


async def _settle(svc: Services) -> None:
    """Give a (wrongly) repeated run the time to show up."""
    await asyncio.sleep(1.0)
