"""End to end over the simulators (issue 16): the office rules as the policies read them.

The simulated site is the demo site, started at local noon of a sunny June day (chosen from the
simulator's own sky for the seed, so the daylight is the model's, not a held value). Room settings go
through the simulators' control API over HTTP; alarms are read from the service's API. The office
delays (empty_ac_delay_s, daylight_delay_s) and the engine's on-delays are shortened so each scenario
takes seconds; their boundaries are tested with injected time in test_office_rules.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.alarms.engine import DEFAULT_CONFIG
from service.config.site import RoomThresholds, Site, Thresholds
from simulators.office import LIGHTS_LX, sky
from simulators.runner import Simulation
from tests.harness import RunningService, eventually, running_service
from tests.servers import free_port

SEED = 7
FAST = {k: replace(v, on_delay_s=min(v.on_delay_s, 1.0), off_delay_s=1.0) for k, v in DEFAULT_CONFIG.items()}
THRESHOLDS = Thresholds(empty_room_delay_s=3, door_open_delay_s=3, empty_ac_delay_s=3, daylight_delay_s=3)
HEATED = "r3101"  # the one room with central heating in this site


def sunny_noon(site: Site) -> datetime:
    """Local noon of the first sunny weekday in June 2026 for SEED."""
    days = (date(2026, 6, 1) + timedelta(days=i) for i in range(30))
    day = next(d for d in days if d.weekday() < 5 and sky(SEED, d) > 0.85)
    return datetime.combine(day, time(12, 0), tzinfo=site.site.tz)


class Office:
    """The simulators' control API and the service's API, side by side."""

    def __init__(self, site: Site, sim: Simulation, svc: RunningService, sim_api: httpx.AsyncClient) -> None:
        self.site, self.sim, self.svc, self.sim_api = site, sim, svc, sim_api

    async def set_room(self, room: str, **fields: Any) -> None:
        (await self.sim_api.post(f"/sim/rooms/{room}", json=fields)).raise_for_status()

    async def room(self, room: str) -> dict[str, Any]:
        async with self.svc.client("viewer") as c:
            return next(x for x in (await c.get("/api/rooms")).json() if x["id"] == room)

    async def active(self) -> set[tuple[str, str]]:
        async with self.svc.client("viewer") as c:
            r = await c.get("/api/alarms", params={"state": "active"})
            return {(a["type"], a["subject"]) for a in r.json() if a["state"].startswith("active")}

    async def raised(self, kind: str, subject: str, timeout_s: float = 30) -> None:
        async def seen() -> bool:
            return (kind, subject) in await self.active()

        await eventually(seen, timeout_s, 0.2)

    async def cleared(self, kind: str, subject: str, timeout_s: float = 30) -> None:
        async def gone() -> bool:
            return (kind, subject) not in await self.active()

        await eventually(gone, timeout_s, 0.2)


@pytest.fixture
async def office(demo_site: Site, tmp_path: Path) -> AsyncIterator[Office]:
    own: dict[str, dict[str, Any]] = {
        HEATED: {"central_heating": True},
        "r3102": {"thresholds": RoomThresholds(cooling_min_c=28)},
    }
    rooms = [r.model_copy(update=own.get(r.id, {})) for r in demo_site.rooms]
    site = demo_site.model_copy(
        update={"site": demo_site.site.model_copy(update={"thresholds": THRESHOLDS}), "rooms": rooms}
    )
    port = free_port()
    async with (
        # the service first: it is subscribed when the simulated devices publish their first state
        running_service(site, tmp_path, alarm_config=FAST) as svc,
        Simulation(site, control_port=port, speed=1.0, seed=SEED, start=sunny_noon(site)) as sim,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=15.0) as sim_api,
    ):
        yield Office(site, sim, svc, sim_api)


async def test_ac_left_on_in_an_empty_room_and_cleared_when_someone_comes_in(office: Office) -> None:
    await office.set_room("r3102", occupied=False, lights=False, ac={"mode": "fan_only"})
    await office.raised("ac_left_on", "r3102")
    view = await office.room("r3102")
    assert view["occupied"] is False and view["ac"]["on"] is True
    await office.set_room("r3102", occupied=True)
    await office.cleared("ac_left_on", "r3102")


async def test_lights_on_at_a_sunny_simulated_noon(office: Office) -> None:
    await office.set_room("r2101", occupied=True, lights=True)
    await office.raised("lit_in_daylight", "r2101")
    view = await office.room("r2101")
    assert view["illuminance_lx"] >= view["thresholds"]["daylight_lux"] + LIGHTS_LX  # daylight alone is ample
    async with office.svc.client("viewer") as c:
        [alarm] = [
            a
            for a in (await c.get("/api/alarms", params={"type": "lit_in_daylight"})).json()
            if a["subject"] == "r2101"
        ]
    assert alarm["severity"] == "low" and "lights on at" in alarm["message"]
    await office.set_room("r2101", lights=False)
    await office.cleared("lit_in_daylight", "r2101")


async def test_heating_raises_only_in_the_room_with_central_heating(office: Office) -> None:
    heating = {"occupied": True, "temperature": 22.0, "ac": {"mode": "heat", "setpoint": 24.0}}
    await office.set_room("r3102", **heating)  # no central heating: the 17 °C rule does not apply
    await office.set_room(HEATED, **heating)
    await office.raised("ac_heating_too_warm", HEATED)
    # The heated room's alarm is up: the same readings, timed the same way, have reached r3102 too.
    await asyncio.sleep(2)
    assert ("ac_heating_too_warm", "r3102") not in await office.active()
    assert (await office.room("r3102"))["ac"]["mode"] == "heat"
    assert (await office.room(HEATED))["central_heating"] is True
    assert (await office.room("r3102"))["central_heating"] is False
    # GET /api/rooms shows each room's effective thresholds: r3102 is on the 28 °C policy
    r3102, heated = await office.room("r3102"), await office.room(HEATED)
    assert (r3102["thresholds"]["cooling_min_c"], r3102["own_thresholds"]) == (28, ["cooling_min_c"])
    assert (heated["thresholds"]["cooling_min_c"], heated["own_thresholds"]) == (26, [])


async def test_an_overridden_room_still_raises_ac_too_cold(office: Office) -> None:
    until = datetime.now(UTC) + timedelta(hours=1)
    async with office.svc.client("operator") as c:
        r = await c.post("/api/overrides", json={"room": "r3101", "until": until.isoformat(), "reason": "late"})
        assert r.status_code == 201, r.text
    assert (await office.room("r3101"))["override_until"] is not None
    await office.set_room("r3101", occupied=True, temperature=24.0, ac={"mode": "cool", "setpoint": 22.0})
    await office.raised("ac_too_cold", "r3101")
