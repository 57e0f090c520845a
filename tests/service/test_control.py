"""The control path and the sweep planner: allow-list and value tables, a property test over random
sites, and the I/O part (audit, metrics, shutdown_failed, manual ONs, policies) with a stand-in hub."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.profiles import load_profile
from drivers.types import CommandResult, Reading, Value
from service.alarms.rules import AlarmType
from service.clock import ManualClock
from service.config.site import (
    PROTECTED_ROLES,
    Department,
    Device,
    DeviceRole,
    Notifications,
    Room,
    RoomKind,
    Site,
    SiteInfo,
    Webhook,
    load_site,
)
from service.control.path import (
    MANUAL_ON_WINDOW,
    SWEPT_ROLES,
    ControlPath,
    InvalidCommand,
    OccupiedPolicy,
    Sweeper,
    UnknownDevice,
    check_value,
    off_command,
    plan_sweep,
    refusal,
    resolve_point,
    rule_refusal,
)
from service.core import Core
from service.live.events import EventBus
from service.live.state import LiveState, RoomView
from service.metrics import Metrics
from service.notify.notifier import Notifier
from service.store.db import Store
from tests.conftest import DEMO_SITE
from tests.service.conftest import Receiver

NOW = datetime(2026, 3, 2, 11, 0, tzinfo=UTC)  # 19:00 in Shanghai
DEMO = load_site(DEMO_SITE)
MQTT_PROFILES = ("tasmota-relay", "shelly-plug", "z2m-plug", "z2m-thermostat", "z2m-occupancy", "z2m-contact")


# -- allow-list and values -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("device", "point", "why"),
    [
        ("srv1-ups", "on", "role critical"),
        ("srv1-ac", "system_mode", "role critical"),
        ("srv1-light", "on", "server room srv1"),
        ("r2119-light", "power", "read-only"),
        ("r2119-light", "volume", "no point 'volume'"),
        ("meter-grid-a", "import_energy", "read-only"),
        ("r2119-light", "on", None),
        ("r2119-ac", "cooling_setpoint", None),
        ("genset-1", "control_key", None),
    ],
)
def test_allow_list(device: str, point: str, why: str | None) -> None:
    got = refusal(DEMO, device, point)
    assert got is None if why is None else why in (got or "")


def test_life_safety_is_refused_like_critical() -> None:
    site = _site([("r1", RoomKind.office, False, [("exit-sign", "tasmota-relay", DeviceRole.life_safety)])])
    assert "life_safety" in (refusal(site, "exit-sign", "on") or "")


@pytest.mark.parametrize(
    ("profile", "point", "value", "sent"),
    [
        ("tasmota-relay", "on", True, True),
        ("tasmota-relay", "on", "OFF", False),
        ("shelly-plug", "on", "on", True),
        ("z2m-plug", "on", "false", False),
        ("z2m-thermostat", "system_mode", "COOL", "cool"),
        ("z2m-thermostat", "cooling_setpoint", 26, 26.0),
        ("z2m-thermostat", "heating_setpoint", 18.5, 18.5),
        ("dse-gencomm", "control_key", "auto", 35701),
        ("dse-gencomm", "control_key", 35700, 35700),
    ],
)
def test_values_accepted(profile: str, point: str, value: Value, sent: Value) -> None:
    got = check_value(load_profile(profile), point, value)
    assert got == sent and type(got) is type(sent)


@pytest.mark.parametrize(
    ("profile", "point", "value"),
    [
        ("tasmota-relay", "on", "maybe"),
        ("tasmota-relay", "on", 1.5),
        ("z2m-thermostat", "system_mode", "turbo"),
        ("z2m-thermostat", "cooling_setpoint", 40),
        ("z2m-thermostat", "cooling_setpoint", "cold"),
        ("z2m-thermostat", "heating_setpoint", True),
        ("dse-gencomm", "control_key", "explode"),
        ("dse-gencomm", "control_key", 12345),
        ("dse-gencomm", "control_key", 35700.5),
    ],
)
def test_values_refused(profile: str, point: str, value: Value) -> None:
    with pytest.raises(InvalidCommand, match=point):
        check_value(load_profile(profile), point, value)


def test_aliases_and_off_commands() -> None:
    assert resolve_point(load_profile("tasmota-relay"), "switch") == "on"
    assert resolve_point(load_profile("z2m-thermostat"), "mode") == "system_mode"
    assert resolve_point(load_profile("z2m-thermostat"), "setpoint") == "cooling_setpoint"
    assert resolve_point(load_profile("dse-gencomm"), "key") == "control_key"
    with pytest.raises(InvalidCommand, match="takes: on"):
        resolve_point(load_profile("shelly-plug"), "mode")
    assert off_command(load_profile("shelly-plug")) == ("on", False)
    assert off_command(load_profile("z2m-thermostat")) == ("system_mode", "off")
    assert off_command(load_profile("z2m-occupancy")) is None


# -- the planner ----------------------------------------------------------------------------------


def view(room: Room, occupied: bool | None) -> RoomView:
    """A room view with only occupancy known (all the planner reads)."""
    return RoomView(
        id=room.id,
        name=room.name,
        department=room.department,
        kind=room.kind.value,
        occupied=occupied,
        lights_on=None,
        temperature_c=None,
        ac=None,
        acs=(),
        plugs=(),
        lights=(),
        sensors=(),
        contacts=(),
        plugs_w=None,
        power_w=None,
        door_open=None,
    )


def demo_views(occupied: dict[str, bool | None] | None = None) -> dict[str, RoomView]:
    occupied = occupied or {}
    return {r.id: view(r, occupied.get(r.id, False)) for r in DEMO.rooms}


def planned(**kw: Any) -> dict[str, str]:
    args: dict[str, Any] = {"rooms": demo_views(), "device_on": {}, "overrides": {}, "manual_ons": {}, "now": NOW}
    args.update(kw)
    return {a.device: a.action for a in plan_sweep(DEMO, **args)}


def test_plan_on_the_demo_site() -> None:
    got = planned()
    assert got["srv1-light"] == got["srv1-ac"] == got["srv1-ups"] == "skipped_exempt"
    assert got["r2119-light"] == got["r2119-ac"] == got["r2119-plug"] == "switch_off"
    assert "r2119-occ" not in got and "meter-grid-a" not in got  # sensors and supply devices are not swept
    actions = {a.device: (a.point, a.value) for a in plan_sweep(DEMO, demo_views(), {}, {}, {}, NOW)}
    assert actions["r2119-ac"] == ("system_mode", "off")
    assert actions["r2119-light"] == ("on", False)


def test_plan_overrides_occupancy_and_already_off() -> None:
    got = planned(
        rooms=demo_views({"r3101": True, "r2101": None}),
        overrides={"r2119": NOW + timedelta(minutes=1), "r3102": NOW},  # r3102's has just ended
        device_on={"r1102-light": False, "r1102-ac": None},
    )
    assert got["r2119-light"] == "skipped_override"
    assert got["r3102-light"] == "switch_off"
    assert got["r3101-pc1"] == "skipped_occupied"
    assert got["r2101-light"] == "switch_off"  # unknown occupancy sweeps like empty
    assert (got["r1102-light"], got["r1102-ac"]) == ("already_off", "switch_off")


def test_plan_manual_on_is_respected_unless_the_room_is_empty() -> None:
    recent, old = NOW - timedelta(minutes=29), NOW - MANUAL_ON_WINDOW - timedelta(seconds=1)
    rooms = demo_views({"r2101": None, "r2119": False})
    got = planned(rooms=rooms, manual_ons={"r2101-light": recent, "r2119-light": recent, "r2101-ac": old})
    assert got["r2101-light"] == "skipped_manual_on"  # occupancy unknown: someone may be there
    assert got["r2119-light"] == "switch_off"  # known empty
    assert got["r2101-ac"] == "switch_off"  # switched on 30 min ago and more


def test_plan_notify_then_off() -> None:
    rooms = demo_views({"r3101": True, "r3102": True})
    first = planned(rooms=rooms, policy=OccupiedPolicy.notify_then_off)
    assert first["r3101-light"] == first["r3102-light"] == "skipped_occupied"
    second = planned(rooms=rooms, policy=OccupiedPolicy.notify_then_off, warned=frozenset({"r3101"}))
    assert (second["r3101-light"], second["r3102-light"]) == ("switch_off", "skipped_occupied")
    skip = planned(rooms=rooms, policy=OccupiedPolicy.skip, warned=frozenset({"r3101"}))
    assert skip["r3101-light"] == "skipped_occupied"


def _site(rooms: list[tuple[str, RoomKind, bool, list[tuple[str, str, DeviceRole]]]]) -> Site:
    devices = [
        Device(id=d, driver="mqtt", profile=p, role=role, topic=f"t/{d}") for _, _, _, ds in rooms for d, p, role in ds
    ]
    return Site(
        site=SiteInfo(id="s", name="s", allowed_interruption_s=10),
        departments=[Department(id="dept", name="Dept")],
        rooms=[
            Room(id=r, name=r, department="dept", kind=kind, exempt=exempt, devices=[d for d, _, _ in ds])
            for r, kind, exempt, ds in rooms
        ],
        devices=devices,
    )


@st.composite
def sweep_cases(draw: st.DrawFn) -> dict[str, Any]:
    """A random site, its rooms' occupancy, device states, overrides, manual ONs, policy and warnings."""
    rooms = []
    for i in range(draw(st.integers(1, 6))):
        devices = [
            (f"d{i}-{j}", draw(st.sampled_from(MQTT_PROFILES)), draw(st.sampled_from(list(DeviceRole))))
            for j in range(draw(st.integers(0, 6)))
        ]
        rooms.append((f"r{i}", draw(st.sampled_from(list(RoomKind))), draw(st.booleans()), devices))
    site = _site(rooms)
    room_ids = [r.id for r in site.rooms]
    device_ids = [d.id for d in site.devices]
    tri = st.sampled_from([True, False, None])
    offsets = st.timedeltas(min_value=timedelta(hours=-3), max_value=timedelta(hours=3))
    return {
        "site": site,
        "rooms": {r.id: view(r, draw(tri)) for r in site.rooms if draw(st.booleans())},
        "device_on": {d: draw(tri) for d in device_ids},
        "overrides": {r: NOW + draw(offsets) for r in draw(st.lists(st.sampled_from(room_ids), unique=True))},
        "manual_ons": {d: NOW - abs(draw(offsets)) for d in draw(st.lists(st.sampled_from(device_ids), unique=True))}
        if device_ids
        else {},
        "policy": draw(st.sampled_from(list(OccupiedPolicy))),
        "warned": frozenset(draw(st.lists(st.sampled_from(room_ids), unique=True))),
    }


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sweep_cases())
def test_sweeps_never_command_protected_devices_or_server_rooms(case: dict[str, Any]) -> None:
    site: Site = case["site"]
    plan = plan_sweep(
        site,
        case["rooms"],
        case["device_on"],
        case["overrides"],
        case["manual_ons"],
        NOW,
        policy=case["policy"],
        warned=case["warned"],
    )
    rooms = {r.id: r for r in site.rooms}
    for action in plan:
        room, device = rooms[action.room], site.device(action.device)
        assert action.device in room.devices
        if action.action != "switch_off":
            assert action.point is None
            continue
        assert device.role not in PROTECTED_ROLES
        assert device.role in SWEPT_ROLES
        assert room.kind is not RoomKind.server
        assert not room.exempt
        assert not (room.id in case["overrides"] and case["overrides"][room.id] > NOW)
        assert case["device_on"].get(action.device) is not False
        # the one control path would let the command through
        assert action.point is not None and refusal(site, action.device, action.point) is None
    # every switchable or protected device in a room is accounted for exactly once
    expected = sorted(d for r in site.rooms for d in r.devices if site.device(d).role in SWEPT_ROLES | PROTECTED_ROLES)
    assert sorted(a.device for a in plan) == expected


@settings(max_examples=200, deadline=None)
@given(sweep_cases())
def test_the_allow_list_refuses_every_point_of_protected_devices(case: dict[str, Any]) -> None:
    site: Site = case["site"]
    for device in site.devices:
        room = site.room_of(device.id)
        protected = device.role in PROTECTED_ROLES or (room is not None and room.kind is RoomKind.server)
        for point in load_profile(device.profile).points:
            allowed = refusal(site, device.id, point.name) is None
            assert allowed == (point.writable and not protected)


# -- the control path with a stand-in hub ------------------------------------------------------------


@dataclass
class FakeHub:
    """Stands in for the driver hub: confirms unless a device is listed as failing, and reports the
    confirmed value into the live state as the drivers would."""

    clock: ManualClock
    state: LiveState | None = None
    failing: set[str] = field(default_factory=set)
    sent: list[tuple[str, str, Value]] = field(default_factory=list)

    async def command(self, device_id: str, point: str, value: Value, *, timeout_s: float = 5.0) -> CommandResult:
        self.sent.append((device_id, point, value))
        if device_id in self.failing:
            return CommandResult(
                device=device_id, point=point, requested=value, status="failed", observed=True, detail="no report"
            )
        if self.state is not None:
            self.state.apply(reading(device_id, point, value, self.clock.now()))
        return CommandResult(device=device_id, point=point, requested=value, status="confirmed", observed=value)


@dataclass
class Rig:
    control: ControlPath
    hub: FakeHub
    core: Core
    store: Store
    clock: ManualClock
    events: EventBus
    metrics: Metrics


@contextlib.asynccontextmanager
async def make_rig(tmp_path: Path, notifications: Notifications | None = None) -> AsyncIterator[Rig]:
    """A control path on a core of the demo site; with `notifications`, the core notifies through them."""
    store = Store(f"sqlite:///{tmp_path}/wk.db")
    await store.open()
    clock = ManualClock(NOW)
    events, metrics, hub = EventBus(), Metrics(), FakeHub(clock)
    notifier = None
    if notifications is not None:
        notifier = Notifier(
            notifications, site_id=DEMO.site.id, site_name=DEMO.site.name, clock=clock, timezone=DEMO.site.tz
        )
        await notifier.start()
    core = Core(DEMO, store=store, clock=clock, events=events, metrics=metrics, notifier=notifier)
    hub.state = core.state
    control = ControlPath(
        DEMO,
        hub=hub,
        core=core,
        store=store,
        clock=clock,
        metrics=metrics,
        events=events,
    )
    try:
        yield Rig(control, hub, core, store, clock, events, metrics)
    finally:
        if notifier is not None:
            await notifier.stop()
        await store.close()


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with make_rig(tmp_path) as rig:
        yield rig


def reading(device: str, point: str, value: Value, at: datetime = NOW) -> Reading:
    return Reading(device=device, point=point, value=value, unit="", ts=at)


async def test_command_is_audited_counted_and_published(rig: Rig) -> None:
    rig.core.state.apply(reading("r2119-light", "on", True))
    async with rig.events.subscribe() as queue:
        outcome = await rig.control.command("r2119-light", "on", "off", who="key:abcd1234")
        event = queue.get_nowait()
    assert (outcome.status, outcome.old, outcome.requested, outcome.observed) == ("confirmed", True, False, False)
    [audit] = await rig.store.list_audit()
    assert (audit.who, audit.job, audit.device, audit.point, audit.old, audit.new, audit.result, audit.at) == (
        "key:abcd1234",
        None,
        "r2119-light",
        "on",
        True,
        False,
        "confirmed",
        NOW,
    )
    assert event["event"] == "command" and event["data"]["device"] == "r2119-light"
    assert rig.metrics.commands.labels(status="confirmed")._value.get() == 1

    refused = await rig.control.command("srv1-ups", "on", False, who="key:abcd1234")
    assert (refused.status, refused.refused_by) == ("refused", "allow-list")
    assert rig.hub.sent == [("r2119-light", "on", False)]
    assert [a.result for a in await rig.store.list_audit()] == ["refused", "confirmed"]
    with pytest.raises(UnknownDevice):
        await rig.control.command("nope", "on", False, who="x")
    with pytest.raises(InvalidCommand):
        await rig.control.command("r2119-light", "on", "dim", who="x")
    assert len(await rig.store.list_audit()) == 2


async def test_failed_switch_off_raises_shutdown_failed_and_a_confirmed_one_clears_it(rig: Rig) -> None:
    rig.hub.failing.add("r2119-plug")
    failed = await rig.control.command("r2119-plug", "on", False, who="scheduler", job="after-hours@x")
    assert failed.status == "failed"
    [alarm] = [a for a in rig.core.engine.active() if a.type == AlarmType.shutdown_failed]
    assert (alarm.subject, alarm.active) == ("r2119-plug", True)
    # a failed switch-on is no shutdown failure
    rig.hub.failing.add("r2119-light")
    await rig.control.command("r2119-light", "on", True, who="key:x")
    assert {a.subject for a in rig.core.engine.active() if a.type == AlarmType.shutdown_failed} == {"r2119-plug"}

    rig.hub.failing.clear()
    await rig.control.command("r2119-plug", "on", False, who="scheduler", job="after-hours@y")
    rig.clock.advance(61)  # the alarm's off-delay
    await rig.core.tick()
    [alarm] = [a for a in rig.core.engine.all() if a.type == AlarmType.shutdown_failed]
    assert alarm.active is False and alarm.cleared_at is not None


async def test_manual_ons_come_from_the_audit(rig: Rig) -> None:
    control, clock = rig.control, rig.clock
    await control.command("r2101-light", "on", True, who="key:a")  # manual ON
    await control.command("r2119-light", "on", True, who="key:a")
    await control.command("r2119-light", "on", False, who="scheduler", job="after-hours:manual")  # swept since
    await control.command("r3101-ac", "system_mode", "cool", who="key:a")
    rig.hub.failing.add("r3102-light")
    await control.command("r3102-light", "on", True, who="key:a")  # not confirmed: not on
    assert set(await control.manual_ons(clock.now())) == {"r2101-light", "r3101-ac"}
    clock.advance(MANUAL_ON_WINDOW.total_seconds() + 1)
    assert await control.manual_ons(clock.now()) == {}


async def test_sweeper_uses_stored_overrides_policy_and_warnings(rig: Rig) -> None:
    state = rig.core.state
    for room in DEMO.rooms:
        for d in room.devices:
            if DEMO.device(d).profile == "z2m-occupancy":
                state.apply(reading(d, "occupancy", room.id == "r3101"))
    await rig.store.add_override(
        room="r2119", until=NOW + timedelta(hours=1), reason="late", created_by="key:a", created_at=NOW
    )
    sweeper = Sweeper(DEMO, rig.control)
    await sweeper.set_policy("after-hours", OccupiedPolicy.notify_then_off)
    first = await sweeper.run("after-hours", who="scheduler", job="after-hours@1")
    got = {d.device: d.action for d in first.devices}
    assert got["r2119-light"] == "skipped_override"
    assert got["r3101-light"] == "skipped_occupied"
    assert got["r2101-light"] == "switched_off"
    assert got["srv1-light"] == "skipped_exempt"
    assert first.policy is OccupiedPolicy.notify_then_off
    assert (await sweeper.last_run("after-hours") or {})["counts"] == first.counts()

    rig.clock.advance(90 * 60)
    second = await sweeper.run("after-hours", who="scheduler", job="after-hours@2")
    got = {d.device: d.action for d in second.devices}
    assert got["r3101-light"] == "switched_off"  # warned at the first sweep, still occupied
    assert got["r2119-light"] == "switched_off"  # the override ran out
    sent = [d for d, _, _ in rig.hub.sent]
    assert not {d for d in sent if DEMO.device(d).role in PROTECTED_ROLES or d.startswith("srv1")}
    assert len(sent) == len(set(sent))  # nothing commanded twice: switched devices are known to be off


def _occupancy(rig: Rig, occupied: set[str]) -> None:
    for room in DEMO.rooms:
        for d in room.devices:
            if DEMO.device(d).profile == "z2m-occupancy":
                rig.core.state.apply(reading(d, "occupancy", room.id in occupied))


async def test_notify_then_off_warns_through_the_notification_channels(tmp_path: Path, receiver: Receiver) -> None:
    """The "notify" of notify_then_off is a notice (not an alarm) on the site's channels, once per
    room: the sweep that then switches the room off sends none."""
    hooks = [Webhook(url=f"{receiver.url}/json"), Webhook(url=f"{receiver.url}/dingtalk", format="dingtalk")]
    async with make_rig(tmp_path, Notifications(webhooks=hooks)) as rig:
        _occupancy(rig, {"r3101", "r2119"})
        sweeper = Sweeper(DEMO, rig.control)
        await sweeper.set_policy("after-hours", OccupiedPolicy.notify_then_off)
        first = await sweeper.run("after-hours", who="scheduler", job="after-hours@1")
        warned = sorted({d.room for d in first.devices if d.action == "skipped_occupied"})
        assert warned == ["r2119", "r3101"]
        got = dict(await receiver.wait_for(2))
        notice = got["/json"]
        assert (notice["kind"], notice["notice"], notice["site"], notice["sweep"]) == (
            "notice",
            "rooms_still_occupied",
            DEMO.site.id,
            "after-hours",
        )
        names = {r.id: r.name for r in DEMO.rooms}
        assert notice["rooms"] == [{"id": r, "name": names[r]} for r in warned]
        next_sweep = rig.core.calendar.next_sweep(first.finished_at)
        assert next_sweep is not None and datetime.fromisoformat(notice["next_sweep"]) == next_sweep
        ding = got["/dingtalk"]["markdown"]
        assert "2 room(s) still occupied" in ding["title"] and names["r3101"] in ding["text"]
        assert rig.core.engine.all() == []  # a notice, not an alarm

        rig.clock.advance(90 * 60)
        second = await sweeper.run("after-hours", who="scheduler", job="after-hours@2")
        assert {d.room for d in second.devices if d.action == "switched_off"} >= set(warned)
        await asyncio.sleep(0.3)
        assert len(receiver.requests) == 2  # nothing more: the warned rooms were switched off


async def test_skip_policy_sends_no_notice(tmp_path: Path, receiver: Receiver) -> None:
    async with make_rig(tmp_path, Notifications(webhooks=[Webhook(url=receiver.url)])) as rig:
        _occupancy(rig, {"r3101"})
        result = await Sweeper(DEMO, rig.control).run("after-hours", who="scheduler", job="after-hours@1")
        assert "skipped_occupied" in result.counts()
        await asyncio.sleep(0.3)
        assert receiver.requests == []


@pytest.mark.parametrize(
    ("point", "value", "why"),
    [
        ("cooling_setpoint", 25.5, "cooling setpoint 25.5 °C is below cooling_min_c 26 °C"),
        ("cooling_setpoint", 26.0, None),
        ("cooling_setpoint", 28, None),
        ("heating_setpoint", 17.5, "heating setpoint 17.5 °C is above heating_max_c 17 °C"),
        ("heating_setpoint", 17, None),
        ("system_mode", "cool", None),
        ("on", True, None),
    ],
)
def test_setpoints_beyond_the_office_rule_are_refused(point: str, value: Value, why: str | None) -> None:
    """The dashboard and the API refuse an AC setpoint the office rule forbids, saying which limit."""
    assert rule_refusal(DEMO, point, value) == why
