"""End to end: simulator faults over real Modbus/MQTT -> drivers -> core -> the right alarm, and back.

Faults and room settings go through the simulators' own control API over HTTP (POST /sim/faults,
DELETE /sim/faults, POST /sim/rooms/{room}), as an operator or a commissioning script would.

The site's own delays (allowed_interruption_s, start_limit_s) are the demo site's. The office
thresholds (empty_room_delay_s, door_open_delay_s) are site settings and are shortened here, as are
the engine's on/off delays (their timing is tested in test_alarms.py), so each scenario takes
seconds, not minutes.

How soon an alarm comes is asserted as an order of the core's own steps (`CoreTrace`: the readings
it takes, the evaluations it runs with its clock's time, the alarms it publishes), not as seconds
measured by a test polling the API: a loaded machine delays every step, but cannot reorder them.
Latency in seconds is `make bench`'s (tests/bench/bench_latency.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from drivers.base import DriverSettings
from drivers.types import Reading
from service.alarms.engine import DEFAULT_CONFIG
from service.alarms.rules import BACKFEED_EXPORT_KW
from service.config.site import Site, Thresholds
from service.core import Core
from service.live.state import SUPPLY, UNPOWERED_WITH_ALTERNATIVE
from simulators.runner import Simulation
from tests.harness import RunningService, eventually, running_service
from tests.servers import free_port

FAST = {k: replace(v, on_delay_s=min(v.on_delay_s, 2.0), off_delay_s=3.0) for k, v in DEFAULT_CONFIG.items()}
POLL_S = 0.1  # how often the test asks the API; added to every bound as measuring slack


class CoreTrace:
    """What the core does, in order: ("apply", readings), ("evaluate", now, subjects), ("alarm", event data)."""

    def __init__(self, core: Core) -> None:
        self.log: list[tuple[Any, ...]] = []
        apply, evaluate, publish = core._apply, core._evaluate, core.events.publish

        def traced_apply(batch: Any) -> set[str]:
            batch = list(batch)
            self.log.append(("apply", [r for r in batch if isinstance(r, Reading)]))
            return apply(batch)

        async def traced_evaluate(subjects: set[str] | None) -> float:
            self.log.append(("evaluate", core.clock.now(), None if subjects is None else frozenset(subjects)))
            return await evaluate(subjects)

        def traced_publish(kind: str, data: Any) -> None:
            if kind == "alarm":
                self.log.append(("alarm", data))
            publish(kind, data)

        core._apply = traced_apply  # type: ignore[method-assign]
        core._evaluate = traced_evaluate  # type: ignore[method-assign]
        core.events.publish = traced_publish  # type: ignore[method-assign]

    def raising_evaluation(self, raised: int) -> int:
        """Index of the evaluation that made the raise logged at `raised`: the last one begun by the
        alarm's raised_at (evaluations can overlap while one stores and notifies its transitions)."""
        at = self.log[raised][1]["raised_at"]
        at = datetime.fromisoformat(at) if isinstance(at, str) else at
        return max(i for i, e in enumerate(self.log[:raised]) if e[0] == "evaluate" and e[1] <= at)

    @staticmethod
    def of_supply(entry: tuple[Any, ...]) -> bool:
        """An evaluation that ran the supply rules."""
        return entry[0] == "evaluate" and (entry[2] is None or SUPPLY in entry[2])

    async def raised(self, type_: str, subject: str) -> int:
        """Index of the first raise of the alarm (the core stores an alarm, then publishes it)."""

        async def found() -> int | None:
            for i, e in enumerate(self.log):
                if e[0] == "alarm" and (e[1]["type"], e[1]["subject"], e[1]["from_state"]) == (type_, subject, None):
                    return i + 1  # eventually() wants something truthy
            return None

        return await eventually(found, 10, 0.05) - 1


@dataclass
class Rig:
    site: Site
    sim: Simulation
    svc: RunningService
    sim_api: httpx.AsyncClient  # the simulators' control API
    trace: CoreTrace

    async def fault(self, fault: str, target: str) -> None:
        r = await self.sim_api.post("/sim/faults", json={"fault": fault, "target": target})
        r.raise_for_status()

    async def clear_faults(self) -> None:
        r = await self.sim_api.delete("/sim/faults")
        r.raise_for_status()
        assert r.json()["faults"] == []

    async def set_room(self, room: str, **fields: Any) -> None:
        r = await self.sim_api.post(f"/sim/rooms/{room}", json=fields)
        r.raise_for_status()

    async def room(self, room: str) -> dict[str, Any]:
        async with self.svc.client("viewer") as c:
            r = await c.get("/api/rooms")
            r.raise_for_status()
            return next(x for x in r.json() if x["id"] == room)

    async def alarms(self, state: str = "active") -> list[dict[str, Any]]:
        async with self.svc.client("viewer") as c:
            r = await c.get("/api/alarms", params={"state": state})
            r.raise_for_status()
            return list(r.json())

    async def wait_alarm(self, type_: str, subject: str, timeout_s: float) -> tuple[dict[str, Any], float]:
        """Wait for an active alarm; return it and the seconds it took."""
        t0 = time.monotonic()

        async def found() -> dict[str, Any] | None:
            for a in await self.alarms():
                if a["type"] == type_ and a["subject"] == subject and a["state"].startswith("active"):
                    return a
            return None

        alarm = await eventually(found, timeout_s, POLL_S)
        return alarm, time.monotonic() - t0

    async def wait_cleared(self, type_: str, subject: str, timeout_s: float) -> None:
        async def gone() -> bool:
            return not any(
                a["type"] == type_ and a["subject"] == subject and a["state"].startswith("active")
                for a in await self.alarms()
            )

        await eventually(gone, timeout_s, 0.25)

    async def supply(self) -> dict[str, Any]:
        async with self.svc.client("viewer") as c:
            return dict((await c.get("/api/supply")).json())


@pytest.fixture
async def rig(demo_site: Site, tmp_path: Path) -> AsyncIterator[Rig]:
    thresholds = Thresholds(empty_room_delay_s=3, door_open_delay_s=3)
    site = demo_site.model_copy(update={"site": demo_site.site.model_copy(update={"thresholds": thresholds})})
    port = free_port()
    async with (
        Simulation(site, control_port=port, speed=1.0, seed=7) as sim,
        running_service(site, tmp_path, alarm_config=FAST) as svc,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=15.0) as sim_api,
    ):
        rig = Rig(site, sim, svc, sim_api, CoreTrace(svc.services.core))

        async def supply_known() -> bool:
            s = await rig.supply()
            return s["transfer_switches"][0]["position"] == "grid-a" and s["generators"][0]["state"] is not None

        await eventually(supply_known, 20)
        yield rig


async def test_backfeed_raised_by_the_first_reading_that_shows_it(rig: Rig) -> None:
    await rig.fault("source_loss", "grid-a")
    await rig.fault("source_loss", "grid-b")

    async def generator_on_load() -> bool:
        s = await rig.supply()
        return bool(s["transfer_switches"][0]["position"] == "gen-1")

    await eventually(generator_on_load, 30)
    await rig.fault("interlock_fail", "gen-1")
    alarm, _ = await rig.wait_alarm("backfeed", "gen-1", 30)
    assert alarm["severity"] == "critical"
    # Raised by the first evaluation after the core took the first reading that shows the backfeed
    # (genset-1's breaker_status with both breakers closed, bits 0 and 1, or a grid meter exporting):
    # no round of the core passed over it.
    log = rig.trace.log
    raised = await rig.trace.raised("backfeed", "gen-1")
    grid_meters = {s.meter for s in rig.site.sources}

    def shows_backfeed(r: Any) -> bool:
        if r.value is None or isinstance(r.value, bool | str):
            return False
        if r.device == "genset-1" and r.point == "breaker_status":
            return int(r.value) & 3 == 3
        return r.device in grid_meters and r.point == "power" and float(r.value) < -BACKFEED_EXPORT_KW * 1000

    shown = next((i for i, e in enumerate(log) if e[0] == "apply" and any(shows_backfeed(r) for r in e[1])), None)
    assert shown is not None, f"no reading the core took shows the backfeed, raised at {raised}"
    raising = rig.trace.raising_evaluation(raised)
    assert shown < raising, "raised before the core took a reading that showed the backfeed"
    skipped = [e[1] for e in log[shown + 1 : raising] if rig.trace.of_supply(e)]
    assert skipped == [], f"supply evaluations after the reading that did not raise: {skipped}"
    await rig.clear_faults()
    await rig.wait_cleared("backfeed", "gen-1", 30)


async def test_source_transfer_failed_at_the_first_evaluation_past_the_allowed_interruption(rig: Rig) -> None:
    await rig.fault("ats_stuck", "ats-1")
    await rig.fault("source_loss", "grid-a")
    allowed = rig.site.site.allowed_interruption_s
    alarm, _ = await rig.wait_alarm("source_transfer_failed", "ats-1", allowed + 30)
    assert alarm["severity"] == "critical"
    # On the core's clock: raised by the first evaluation of the supply rules after the load had
    # been without a source (another one ready) for longer than allowed, not before, not later.
    since = rig.svc.services.core.state.since("ats-1", UNPOWERED_WITH_ALTERNATIVE)
    assert since is not None
    log = rig.trace.log
    raised = await rig.trace.raised("source_transfer_failed", "ats-1")
    raising = rig.trace.raising_evaluation(raised)
    assert (log[raising][1] - since).total_seconds() > allowed
    passed_over = [e[1] for e in log[:raising] if rig.trace.of_supply(e) and (e[1] - since).total_seconds() > allowed]
    assert passed_over == [], f"evaluations past the allowed interruption that did not raise: {passed_over}"
    supply = await rig.supply()
    assert supply["transfer_switches"][0]["position"] is None
    await rig.clear_faults()
    await rig.wait_cleared("source_transfer_failed", "ats-1", 30)


async def test_generator_start_failed(rig: Rig) -> None:
    await rig.fault("generator_fail_start", "gen-1")
    await rig.fault("source_loss", "grid-a")
    await rig.fault("source_loss", "grid-b")
    limit = rig.site.generators[0].start_limit_s
    transfer = rig.site.transfer_switches[0].transfer_delay_s
    alarm, took = await rig.wait_alarm("generator_start_failed", "gen-1", transfer + limit + 10)
    assert took >= limit, f"raised after {took:.1f} s, before start_limit_s ran out"
    assert alarm["severity"] == "critical"
    await rig.clear_faults()
    await rig.wait_cleared("generator_start_failed", "gen-1", 30)


async def test_redundancy_lost_when_one_substation_is_gone(rig: Rig) -> None:
    await rig.fault("source_loss", "grid-b")
    alarm, _ = await rig.wait_alarm("redundancy_lost", rig.site.site.id, 20)
    assert "1" in alarm["message"] or alarm["value"] == 1
    assert not [a for a in await rig.alarms() if a["type"] == "source_transfer_failed"]
    await rig.clear_faults()
    await rig.wait_cleared("redundancy_lost", rig.site.site.id, 20)


@pytest.mark.parametrize("device", ["r2119-light", "meter-dept-it"])
async def test_device_offline_raised_and_cleared(rig: Rig, device: str) -> None:
    await rig.fault("device_offline", device)
    await rig.wait_alarm("device_offline", device, 40)
    await rig.clear_faults()
    # A Modbus device that comes back is seen at the driver's next reconnect attempt, whose pause
    # has doubled while the device was away (up to reconnect_max_s); then the off-delay runs.
    back_s = DriverSettings().reconnect_max_s + FAST["device_offline"].off_delay_s
    await rig.wait_cleared("device_offline", device, back_s + 15)


def _room_alarms(alarms: list[dict[str, Any]], site: Site, room_id: str) -> set[tuple[str, str]]:
    room = next(r for r in site.rooms if r.id == room_id)
    subjects = {room.id, *room.devices}
    return {(a["type"], a["subject"]) for a in alarms if a["subject"] in subjects}


# What each office scenario starts from: someone in, lights and AC off, the door shut; every alarm
# of the room normal. Only then is the scenario set, so its alarm's delay counts from that moment.
CALM: dict[str, Any] = {"occupied": True, "lights": False, "ac": {"mode": "off"}, "door_open": False}


def _delay_s(rig: Rig, kind: str) -> float:
    """How long a condition must hold before its alarm is raised: the rule's site delay, then the engine's on-delay."""
    thresholds = rig.site.site.thresholds
    rule_delay = {"lit_empty_room": thresholds.empty_room_delay_s, "ac_door_open": thresholds.door_open_delay_s}
    return rule_delay.get(kind, 0.0) + FAST[kind].on_delay_s


async def _calm(rig: Rig, room: str, plugs: dict[str, float], expected: tuple[str, str]) -> None:
    await rig.set_room(room, **CALM, **({"plugs": dict.fromkeys(plugs, 0.0)} if plugs else {}))

    async def seen() -> bool:
        view = await rig.room(room)
        quiet = view["occupied"] is True and view["lights_on"] is False and not (view["ac"] or {}).get("on")
        return quiet and not [a for a in await rig.alarms() if (a["type"], a["subject"]) == expected]

    await eventually(seen, 30, 0.25)
    # An earlier lifecycle of the same alarm (say, from the simulated night before) must be over, or
    # the scenario would continue it with its old raised_at: acknowledge it if it waits for that.
    async with rig.svc.client("operator") as c:
        for a in await rig.alarms("all"):
            if (a["type"], a["subject"]) == expected and a["state"] == "cleared_unacked":
                (await c.post(f"/api/alarms/{a['id']}/ack")).raise_for_status()


@pytest.mark.parametrize(
    ("room", "setting", "expected"),
    [
        pytest.param("r2101", {"occupied": False, "lights": True}, ("lit_empty_room", "r2101"), id="lights-empty-room"),
        pytest.param(
            "r3101",
            {"occupied": True, "lights": True, "temperature": 24.0, "ac": {"mode": "cool", "setpoint": 22.0}},
            ("ac_too_cold", "r3101"),
            id="cooling-22-in-24",
        ),
        pytest.param(
            "r2119",
            {"occupied": True, "lights": True, "plugs": {"r2119-plug": 2000.0}},
            ("high_power_appliance", "r2119-plug"),
            id="2kw-heater",
        ),
        pytest.param(
            "r1102",
            {
                "occupied": True,
                "lights": True,
                "temperature": 30.0,
                "door_open": True,
                "ac": {"mode": "cool", "setpoint": 26.0},
            },
            ("ac_door_open", "r1102"),
            id="door-open-ac-on",
        ),
    ],
)
async def test_office_scenario_raises_its_alarm_after_its_delay_and_no_other(
    rig: Rig, room: str, setting: dict[str, Any], expected: tuple[str, str]
) -> None:
    await _calm(rig, room, setting.get("plugs", {}), expected)
    delay_s = _delay_s(rig, expected[0])
    assert delay_s > 0
    set_at = datetime.now(UTC)
    await rig.set_room(room, **setting)
    alarm, _ = await rig.wait_alarm(*expected, 30)
    # Readings are stamped when the service receives them, after set_at: the condition cannot have
    # started earlier, so an alarm raised before set_at + delay did not wait for its delay.
    raised_after = datetime.fromisoformat(alarm["raised_at"]) - set_at
    assert raised_after >= timedelta(seconds=delay_s), f"raised {raised_after} after the setting (delay {delay_s} s)"
    # Let every other rule of the room run past its own delays before judging "no other alarm".
    await asyncio.sleep(5)
    got = _room_alarms(await rig.alarms(), rig.site, room)
    assert got == {expected}, got
