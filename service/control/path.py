"""The one control path (allow-list, command, readback, audit) and the after-hours sweep built on it.

Every command wattkeeper sends — an operator's through the API, a sweep's, any future
automation's — goes through `ControlPath.command`:

1. allow-list (`refusal`): never a device of role `critical` or `life_safety`, never a device in a
   room of kind `server`, only points the device's profile marks writable; supply-side equipment
   (`Site.supply_equipment`: generator controllers, transfer switches, anything a `sources`,
   `generators` or `transfer_switches` entry names) only by an admin (`supply_refusal`), who
   must give a reason (`ReasonRequired`), which the audit keeps;
2. value check (`check_value`): the profile's type, range and choices;
3. the command itself through the driver hub, which verifies it by reading the point back and
   retries once before calling it `failed` (drivers.mqtt / drivers.modbus);
4. one audit record: who (API key) or which job, device, point, old value, new value, result, time;
5. for a switch-off: `shutdown_failed` raised when the device does not confirm, cleared when a
   later switch-off is confirmed.

Refused commands are audited too; malformed ones (unknown command, bad value) never get that far.

Sweep rules, per device of role `lighting`, `hvac` or `office_equipment` in a room (`plan_sweep`),
first match wins:

- room exempt (`exempt: true`) or of kind `server`, or a device of role `critical`/`life_safety`:
  `skipped_exempt` — never commanded;
- room under an active override: `skipped_override`;
- room occupied: `skipped_occupied` (policy `skip`, the default); with policy `notify_then_off`
  the first sweep that finds it occupied warns (a notice through the site's notification
  channels) and skips, a sweep within WARNING_HOLD after that switches it off even if still
  occupied;
- manual ON: a device switched on through the API within the last MANUAL_ON_WINDOW (30 min) keeps
  running unless its room is known to be empty (`skipped_manual_on`) — someone working late who
  switched the light back on after a sweep is not left in the dark, while a light switched on
  remotely in an empty room still goes off;
- the live state says the device is off (a good, fresh reading): `already_off`, nothing sent;
- otherwise the device is switched off (`on` = false, or a thermostat's `system_mode` = "off"):
  `switched_off` when the device confirms, else `failed` or `refused`.

Unknown occupancy (no sensor, or its value stale) does not count as occupied: the sweep is the
default and a broken sensor must not keep a floor lit all night.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final, Literal, Protocol

from drivers.conventions import command_value
from drivers.profiles import ModbusPoint, MqttPoint, Profile, load_profile
from drivers.types import CommandResult, CommandStatus, Quality, Value
from service.alarms import rules
from service.alarms.rules import AlarmType
from service.clock import Clock
from service.config.site import PROTECTED_ROLES, DeviceRole, Room, RoomKind, Site
from service.core import Core
from service.energy.violations import night_of
from service.live.events import EventBus
from service.live.state import RoomView
from service.metrics import Metrics
from service.store.db import AfterHoursFinding, Store

log = logging.getLogger(__name__)


class CommandHub(Protocol):
    """What carries a command to a device and reads it back: the driver hub, or the bus to the
    site's collector (service.bus.runtime)."""

    async def command(self, device_id: str, point: str, value: Value, *, timeout_s: float = ...) -> CommandResult: ...


SWEPT_ROLES: Final = frozenset({DeviceRole.lighting, DeviceRole.hvac, DeviceRole.office_equipment})
MANUAL_ON_WINDOW: Final = timedelta(minutes=30)
# With `notify_then_off`, a warning given by one sweep lets the sweeps of the same evening switch off.
WARNING_HOLD: Final = timedelta(hours=12)
COMMAND_TIMEOUT_S: Final = 5.0
# Commands in flight at once during a sweep: enough to hide MQTT round trips, few enough not to
# flood a Zigbee network (a Zigbee2MQTT bridge queues what it cannot send at once).
SWEEP_CONCURRENCY: Final = 64
_AUDIT_SCAN_LIMIT: Final = 10_000
FOUND_ON: Final = frozenset({"switched_off", "failed"})  # what a sweep did to a device found on

# Friendly command names accepted by the API besides the profiles' own point names.
ALIASES: Final[Mapping[str, str]] = {
    "switch": "on",
    "state": "on",
    "power_state": "on",
    "mode": "system_mode",
    "setpoint": "cooling_setpoint",
    "key": "control_key",
}
_TRUE_WORDS: Final = frozenset({"on", "true"})
_FALSE_WORDS: Final = frozenset({"off", "false"})

SkipActionName = Literal[
    "already_off",
    "skipped_occupied",
    "skipped_override",
    "skipped_exempt",
    "skipped_manual_on",
    "refused",
]
SweepActionName = Literal["switch_off"] | SkipActionName
DeviceActionName = Literal["switched_off", "failed"] | SkipActionName


class OccupiedPolicy(StrEnum):
    """What a sweep does in a room that is still occupied."""

    skip = "skip"
    notify_then_off = "notify_then_off"


class UnknownDevice(LookupError):
    """A command for a device the site does not have."""


class InvalidCommand(ValueError):
    """A command name the device does not know, or a value its point does not take."""


class ReasonRequired(InvalidCommand):
    """A command to supply-side equipment without a reason."""


SUPPLY_COMMAND_ROLE: Final = "admin"


# -- the allow-list and command values (pure) ---------------------------------------------------


def resolve_point(profile: Profile, command: str) -> str:
    """The profile point a command names (point name or alias); InvalidCommand if none."""
    names = {p.name for p in profile.points}
    if command in names:
        return command
    alias = ALIASES.get(command)
    if alias is not None and alias in names:
        return alias
    writable = sorted(p.name for p in profile.points if p.writable)
    raise InvalidCommand(
        f"'{command}' is not a command of profile '{profile.name}'; it takes: {', '.join(writable) or 'none'}"
    )


def refusal(site: Site, device_id: str, point: str) -> str | None:
    """Why the allow-list refuses a command to a device point, or None when it allows it."""
    device = site.device(device_id)
    if device.role in PROTECTED_ROLES:
        return f"{device_id} has role {device.role.value}: never commanded"
    room = site.room_of(device_id)
    if room is not None and room.kind is RoomKind.server:
        return f"{device_id} is in server room {room.id}: never commanded"
    profile = load_profile(device.profile)
    try:
        spec = profile.point(point)
    except KeyError:
        return f"profile '{profile.name}' has no point '{point}'"
    if not spec.writable:
        return f"'{point}' of profile '{profile.name}' is read-only"
    return None


def supply_refusal(site: Site, device_id: str, role: str | None, reason: str | None) -> str | None:
    """Why a command to supply-side equipment is refused for `role`, or None when it may go on.

    An admin must also give a reason (ReasonRequired); `role` None is an automation (a job), which
    never commands supply-side equipment.
    """
    why = site.supply_equipment().get(device_id)
    if why is None:
        return None
    if role != SUPPLY_COMMAND_ROLE:
        return f"{device_id} is supply-side equipment ({why}): only an admin may command it, with a reason"
    if not (reason or "").strip():
        raise ReasonRequired(f"reason: {device_id} is supply-side equipment ({why}); say why you command it")
    return None


def check_value(profile: Profile, point: str, value: Value) -> Value:
    """The value to send for a writable point, normalised; InvalidCommand says what is wrong."""
    spec = profile.point(point)
    if isinstance(spec, MqttPoint):
        if spec.type == "bool" and isinstance(value, str):
            word = value.strip().casefold()
            value = True if word in _TRUE_WORDS else False if word in _FALSE_WORDS else value
        try:
            return command_value(spec, value)
        except ValueError as exc:
            raise InvalidCommand(f"{point}: {exc}") from None
    return _modbus_value(spec, value)


def _modbus_value(spec: ModbusPoint, value: Value) -> Value:
    if isinstance(value, str) and spec.enum:
        for code, name in spec.enum.items():
            if name == value.strip():
                return code
        raise InvalidCommand(f"{spec.name}: '{value}' is not one of {sorted(spec.enum.values())}")
    if isinstance(value, bool) or not isinstance(value, int | float) or not float(value).is_integer():
        raise InvalidCommand(f"{spec.name}: {value!r} is not a whole number")
    if spec.enum and int(value) not in spec.enum:
        raise InvalidCommand(f"{spec.name}: {int(value)} is not one of {sorted(spec.enum)}")
    return int(value)


def off_command(profile: Profile) -> tuple[str, Value] | None:
    """The point and value that switch a device of this profile off, if it has one."""
    writable = {p.name for p in profile.points if p.writable}
    if "on" in writable:
        return "on", False
    if "system_mode" in writable:
        return "system_mode", "off"
    return None


def switches_on(point: str | None, value: object) -> bool:
    """Whether a command (point, value) switches a device on."""
    if point == "on":
        return value is True
    if point == "system_mode":
        return isinstance(value, str) and value != "off"
    return False


def switches_off(point: str | None, value: object) -> bool:
    """Whether a command (point, value) switches a device off."""
    return (point == "on" and value is False) or (point == "system_mode" and value == "off")


# -- the sweep planner (pure) --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlannedAction:
    """What a sweep will do to one device; `point`/`value` set only for `switch_off`."""

    device: str
    room: str
    action: SweepActionName
    point: str | None = None
    value: Value = None
    detail: str = ""


def plan_sweep(
    site: Site,
    rooms: Mapping[str, RoomView],
    device_on: Mapping[str, bool | None],
    overrides: Mapping[str, datetime],
    manual_ons: Mapping[str, datetime],
    now: datetime,
    *,
    policy: OccupiedPolicy = OccupiedPolicy.skip,
    warned: frozenset[str] = frozenset(),
) -> list[PlannedAction]:
    """The after-hours sweep as data: one action per switchable or protected device in a room.

    `device_on` is what the live state says (None: unknown), `overrides` room -> until,
    `manual_ons` device -> when it was last switched on through the API, `warned` the rooms an
    earlier sweep warned under `notify_then_off`. The rules are in the module docstring.
    """
    out: list[PlannedAction] = []
    for room in site.rooms:
        view = rooms.get(room.id)
        occupied = view.occupied if view is not None else None
        for device_id in room.devices:
            device = site.device(device_id)
            if device.role not in SWEPT_ROLES and device.role not in PROTECTED_ROLES:
                continue
            out.append(
                _plan_device(
                    site,
                    room,
                    device_id,
                    occupied,
                    device_on.get(device_id),
                    overrides,
                    manual_ons,
                    now,
                    policy,
                    warned,
                )
            )
    return out


def _plan_device(
    site: Site,
    room: Room,
    device_id: str,
    occupied: bool | None,
    on: bool | None,
    overrides: Mapping[str, datetime],
    manual_ons: Mapping[str, datetime],
    now: datetime,
    policy: OccupiedPolicy,
    warned: frozenset[str],
) -> PlannedAction:
    def skip(action: SkipActionName, detail: str) -> PlannedAction:
        return PlannedAction(device_id, room.id, action, detail=detail)

    device = site.device(device_id)
    if room.kind is RoomKind.server:
        return skip("skipped_exempt", f"server room {room.id}: never commanded")
    if device.role in PROTECTED_ROLES:
        return skip("skipped_exempt", f"role {device.role.value}: never commanded")
    if room.exempt:
        return skip("skipped_exempt", f"room {room.id} is exempt from sweeps")
    until = overrides.get(room.id)
    if until is not None and until > now:
        return skip("skipped_override", f"override until {until.isoformat()}")
    if occupied is True and not (policy is OccupiedPolicy.notify_then_off and room.id in warned):
        return skip("skipped_occupied", f"room {room.id} is occupied")
    switched_on_at = manual_ons.get(device_id)
    if switched_on_at is not None and now - switched_on_at <= MANUAL_ON_WINDOW and occupied is not False:
        return skip("skipped_manual_on", f"switched on through the API at {switched_on_at.isoformat()}")
    if on is False:
        return skip("already_off", "reported off")
    off = off_command(load_profile(device.profile))
    if off is None:
        return skip("refused", f"profile '{device.profile}' has no point that switches it off")
    detail = f"room {room.id} warned at an earlier sweep, still occupied" if occupied is True else ""
    return PlannedAction(device_id, room.id, "switch_off", off[0], off[1], detail)


# -- the control path (I/O) ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandOutcome:
    """The result of one command through the control path."""

    device: str
    point: str
    requested: Value
    status: CommandStatus
    observed: Value
    old: Value
    detail: str
    at: datetime
    round_trip_s: float
    refused_by: Literal["allow-list", "driver", "permission"] | None = None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        d = asdict(self)
        d["at"] = self.at.isoformat()
        return d


class ControlPath:
    """Allow-list, command with readback, audit, metrics and the shutdown_failed alarm, in one place."""

    def __init__(
        self,
        site: Site,
        *,
        hub: CommandHub | None,
        core: Core,
        store: Store,
        clock: Clock,
        metrics: Metrics,
        events: EventBus,
        timeout_s: float = COMMAND_TIMEOUT_S,
    ) -> None:
        self.site = site
        self.hub = hub
        self.core = core
        self.store = store
        self.clock = clock
        self.metrics = metrics
        self.events = events
        self.timeout_s = timeout_s

    def profile(self, device_id: str) -> Profile:
        """The profile of a site device; UnknownDevice if the site has none by that id."""
        try:
            return load_profile(self.site.device(device_id).profile)
        except KeyError:
            raise UnknownDevice(f"no device '{device_id}'") from None

    def current(self, device_id: str, point: str, now: datetime) -> Value:
        """The latest value of a point whatever its quality (what the audit calls `old`)."""
        ps = self.core.state.point(device_id, point, now)
        return None if ps is None else ps.value

    def is_on(self, device_id: str, now: datetime) -> bool | None:
        """Whether the device's own good, fresh reports say it is on; None when unknown."""
        off = off_command(self.profile(device_id))
        if off is None:
            return None
        ps = self.core.state.point(device_id, off[0], now)
        if ps is None or ps.quality is not Quality.good:
            return None
        return not switches_off(off[0], ps.value)

    async def command(
        self,
        device_id: str,
        command: str,
        value: Value,
        *,
        who: str,
        job: str | None = None,
        in_flight: asyncio.Semaphore | None = None,
        role: str | None = None,
        reason: str | None = None,
    ) -> CommandOutcome:
        """Send one command through the allow-list, verify it, audit it (UnknownDevice, InvalidCommand).

        `role` is the caller's API role (None for a job), `reason` why they send it: both decide
        whether supply-side equipment may be commanded. `in_flight` bounds how many commands wait
        on devices at once; the audit write is outside it.
        """
        profile = self.profile(device_id)
        point = resolve_point(profile, command)
        now = self.clock.now()
        old = self.current(device_id, point, now)
        why = refusal(self.site, device_id, point)
        denied = None if why is not None else supply_refusal(self.site, device_id, role, reason)
        requested = value
        if why is None and denied is None:
            requested = check_value(profile, point, value)
            why = rule_refusal(self.site, point, requested)
        round_trip_s = 0.0
        refused_by: Literal["allow-list", "driver", "permission"] | None = None
        if why is not None:
            status: CommandStatus = "refused"
            requested, observed, detail, refused_by = value, old, why, "allow-list"
        elif denied is not None:
            status, requested, observed, detail, refused_by = "refused", value, old, denied, "permission"
        else:
            if self.hub is None:
                status, observed, detail = "refused", old, "drivers are not running"
            else:
                async with in_flight or contextlib.nullcontext():
                    sent = time.perf_counter()
                    result = await self.hub.command(device_id, point, requested, timeout_s=self.timeout_s)
                    round_trip_s = time.perf_counter() - sent
                status, observed, detail = result.status, result.observed, result.detail
            if status == "refused":
                refused_by = "driver"
        outcome = CommandOutcome(
            device=device_id,
            point=point,
            requested=requested,
            status=status,
            observed=observed,
            old=old,
            detail=detail,
            at=now,
            round_trip_s=round_trip_s,
            refused_by=refused_by,
            reason=(reason or "").strip() or None,
        )
        await self._record(outcome, who=who, job=job)
        return outcome

    async def _record(self, outcome: CommandOutcome, *, who: str, job: str | None) -> None:
        detail = outcome.detail
        if outcome.status != "confirmed" and outcome.observed is not None:
            detail = f"{detail}; observed {outcome.observed!r}".lstrip("; ")
        if outcome.reason is not None:
            detail = f"reason: {outcome.reason}; {detail}".rstrip("; ")
        await self.store.append_audit(
            at=outcome.at,
            who=who,
            job=job,
            device=outcome.device,
            point=outcome.point,
            old=outcome.old,
            new=outcome.requested,
            result=outcome.status,
            detail=detail,
        )
        self.metrics.commands.labels(status=outcome.status).inc()
        self.events.publish("command", {**outcome.to_dict(), "who": who, "job": job})
        if switches_off(outcome.point, outcome.requested):
            if outcome.status == "failed":
                finding = rules.shutdown_failed(outcome.device, failed=True, detail=outcome.detail)
                await self.core.report_now(finding)
            elif outcome.status == "confirmed" and self._shutdown_alarm_open(outcome.device):
                await self.core.report_now(rules.shutdown_failed(outcome.device, failed=False))

    def _shutdown_alarm_open(self, device_id: str) -> bool:
        return any(
            a.type == AlarmType.shutdown_failed and a.subject == device_id and a.active
            for a in self.core.engine.active()
        )

    async def manual_ons(self, now: datetime) -> dict[str, datetime]:
        """Devices whose latest confirmed command, within MANUAL_ON_WINDOW, was an API switch-on."""
        records = await self.store.list_audit(since=now - MANUAL_ON_WINDOW, limit=_AUDIT_SCAN_LIMIT)
        latest: dict[str, tuple[datetime, bool]] = {}
        for r in records:  # newest first
            if r.device is None or r.result != "confirmed" or r.device in latest:
                continue
            if switches_on(r.point, r.new) or switches_off(r.point, r.new):
                latest[r.device] = (r.at, r.job is None and switches_on(r.point, r.new))
        return {device: at for device, (at, manual_on) in latest.items() if manual_on}


# -- sweeps ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeviceResult:
    """What a sweep did to one device."""

    device: str
    room: str
    action: DeviceActionName
    observed: Value = None
    detail: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class SweepResult:
    """One sweep run: when, by whom, and what happened to each device."""

    sweep: str
    job: str
    who: str
    policy: OccupiedPolicy
    started_at: datetime
    finished_at: datetime
    devices: list[DeviceResult] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Number of devices per action."""
        out: dict[str, int] = {}
        for d in self.devices:
            out[d.action] = out.get(d.action, 0) + 1
        return out

    def summary(self) -> dict[str, Any]:
        """The run without the per-device list (for schedules and history)."""
        return {
            "sweep": self.sweep,
            "job": self.job,
            "who": self.who,
            "policy": self.policy.value,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "counts": self.counts(),
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form with every device."""
        return {**self.summary(), "devices": [asdict(d) for d in self.devices]}


def sweep_findings(site: Site, result: SweepResult) -> list[AfterHoursFinding]:
    """Rooms a sweep found on: one per room with a device switched off or failing to switch off."""
    rooms = {r.id: r for r in site.rooms}
    found: dict[str, list[dict[str, Any]]] = {}
    for d in result.devices:
        if d.action in FOUND_ON and d.room in rooms:
            found.setdefault(d.room, []).append(
                {"device": d.device, "action": d.action, "observed": d.observed, "detail": d.detail}
            )
    night = night_of(result.started_at, site)
    return [
        AfterHoursFinding(
            room=room,
            night=night,
            at=result.started_at,
            department=rooms[room].department,
            devices=devices,
            job=result.job,
        )
        for room, devices in found.items()
    ]


def _sweep_key(sweep_id: str, what: Literal["policy", "warned", "last"]) -> str:
    """The store key of a sweep's policy, rooms warned at its last run, or that run's summary."""
    return f"sweep:{sweep_id}:{what}"


class Sweeper:
    """Runs after-hours sweeps: plan from the live state, then every switch-off through the control path."""

    def __init__(self, site: Site, control: ControlPath, *, concurrency: int = SWEEP_CONCURRENCY) -> None:
        self.site = site
        self.control = control
        self._concurrency = concurrency
        self._lock = asyncio.Lock()

    async def policy(self, sweep_id: str) -> OccupiedPolicy:
        """The occupied-room policy of a sweep (stored; `skip` until set)."""
        raw = await self.control.store.get_state(_sweep_key(sweep_id, "policy"))
        return (
            OccupiedPolicy(raw) if isinstance(raw, str) and raw in OccupiedPolicy.__members__ else OccupiedPolicy.skip
        )

    async def set_policy(self, sweep_id: str, policy: OccupiedPolicy) -> None:
        """Choose what the sweep does with occupied rooms."""
        await self.control.store.set_state(_sweep_key(sweep_id, "policy"), policy.value, at=self.control.clock.now())

    async def last_run(self, sweep_id: str) -> dict[str, Any] | None:
        """Summary of the latest run of a sweep, if any."""
        raw = await self.control.store.get_state(_sweep_key(sweep_id, "last"))
        return raw if isinstance(raw, dict) else None

    async def run(self, sweep_id: str, *, who: str, job: str) -> SweepResult:
        """Sweep now (one at a time): returns what was done per device."""
        async with self._lock:
            return await self._run(sweep_id, who=who, job=job)

    async def _run(self, sweep_id: str, *, who: str, job: str) -> SweepResult:
        control, store = self.control, self.control.store
        started = control.clock.now()
        policy = await self.policy(sweep_id)
        warned = await self._warned(sweep_id, started)
        overrides: dict[str, datetime] = {}
        for o in await store.active_overrides(started):
            overrides[o.room] = max(o.until, overrides.get(o.room, o.until))
        state = control.core.state
        rooms = {r.id: state.room(r.id, started) for r in self.site.rooms}
        device_on = {d: control.is_on(d, started) for r in self.site.rooms for d in r.devices}
        plan = plan_sweep(
            self.site,
            rooms,
            device_on,
            overrides,
            await control.manual_ons(started),
            started,
            policy=policy,
            warned=frozenset(warned),
        )
        gate = asyncio.Semaphore(self._concurrency)

        async def execute(action: PlannedAction) -> DeviceResult:
            kind = action.action
            if kind != "switch_off":
                return DeviceResult(action.device, action.room, kind, device_on.get(action.device), action.detail)
            point = action.point or ""  # the planner sets it for every switch_off
            outcome = await control.command(action.device, point, action.value, who=who, job=job, in_flight=gate)
            name: DeviceActionName = "switched_off" if outcome.status == "confirmed" else outcome.status
            return DeviceResult(action.device, action.room, name, outcome.observed, outcome.detail or action.detail)

        results = await asyncio.gather(*(execute(a) for a in plan))
        finished = control.clock.now()
        result = SweepResult(
            sweep=sweep_id,
            job=job,
            who=who,
            policy=policy,
            started_at=started,
            finished_at=finished,
            devices=list(results),
        )
        await self._remember(result, warned)
        return result

    async def _warned(self, sweep_id: str, now: datetime) -> dict[str, str]:
        raw = await self.control.store.get_state(_sweep_key(sweep_id, "warned"))
        if not isinstance(raw, dict):
            return {}
        return {room: at for room, at in raw.items() if now - datetime.fromisoformat(at) <= WARNING_HOLD}

    async def _remember(self, result: SweepResult, warned: dict[str, str]) -> None:
        store, at = self.control.store, result.finished_at
        occupied = sorted({d.room for d in result.devices if d.action == "skipped_occupied"})
        if result.policy is OccupiedPolicy.notify_then_off:
            switched = {d.room for d in result.devices if d.action == "switched_off"}
            kept = {room: when for room, when in warned.items() if room not in switched}
            for room in occupied:
                kept.setdefault(room, result.started_at.isoformat())
            await store.set_state(_sweep_key(result.sweep, "warned"), kept, at=at)
        summary = result.summary()
        await store.set_state(_sweep_key(result.sweep, "last"), summary, at=at)
        if occupied:
            log.info("sweep %s: occupied rooms skipped: %s", result.job, ", ".join(occupied))
        self.control.events.publish("sweep", {**summary, "occupied_rooms": occupied})
        if occupied and result.policy is OccupiedPolicy.notify_then_off:
            await self._notify_occupied(result, occupied)

    async def _notify_occupied(self, result: SweepResult, rooms: list[str]) -> None:
        """The "notify" of notify_then_off: a notice through the site's notification channels."""
        notifier = self.control.core.notifier
        if notifier is None:
            return
        next_sweep = self.control.core.calendar.next_sweep(result.finished_at)
        if next_sweep is not None and next_sweep - result.started_at > WARNING_HOLD:
            next_sweep = None  # the warning lapses first: that sweep warns again instead
        names = {r.id: r.name for r in self.site.rooms}
        await notifier.rooms_still_occupied(
            sweep=result.sweep,
            job=result.job,
            at=result.finished_at,
            rooms=[(room, names.get(room, room)) for room in rooms],
            next_sweep=next_sweep,
        )


def rule_refusal(site: Site, point: str, value: object) -> str | None:
    """Why an AC setpoint breaks the site's office rule (cooling not below cooling_min_c, heating
    not above heating_max_c), or None: the dashboard and the API refuse it rather than raise an alarm."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    limits = site.site.thresholds
    if point == "cooling_setpoint" and value < limits.cooling_min_c:
        return f"cooling setpoint {value:g} °C is below cooling_min_c {limits.cooling_min_c:g} °C"
    if point == "heating_setpoint" and value > limits.heating_max_c:
        return f"heating setpoint {value:g} °C is above heating_max_c {limits.heating_max_c:g} °C"
    return None
