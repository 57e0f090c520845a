"""The simulated site: supply side and office side stepped together in simulated time, with faults.

Pure and deterministic: a World is built from a Site, a seed and a start time, moves only when
`step(dt_s)` is called, and does no I/O. The same seed, start and sequence of calls give the same run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, TypeVar, get_args

from service.config.site import Site
from simulators.office import AC_MODES, AcMode, Office, Relay, RoomModel, Thermostat
from simulators.power import (
    BACKFEED_SHARE,
    ENGINE_STATE_NAMES,
    KEY_AUTO,
    KEY_MANUAL,
    LOAD_PF,
    NOMINAL_V,
    PARALLEL_SHARE,
    GeneratorModel,
    MeterModel,
    SourceModel,
    SwitchModel,
)
from simulators.rand import between

FaultName = Literal[
    "source_loss",
    "source_restore",
    "ats_stuck",
    "generator_fail_start",
    "generator_slow_start",
    "interlock_fail",
    "device_offline",
    "device_garbage",
    "generator_manual",
    "ats_manual",
]
FAULT_NAMES: tuple[str, ...] = get_args(FaultName)
_T = TypeVar("_T")
QUANTUM_S = 0.5  # the world moves in steps of at most this much simulated time
OFFICE_STEP_S = 5.0  # rooms change slowly: occupants and temperature are updated on this grid
PREROLL_STEP_S = 60.0
METER_PROFILES = frozenset({"sdm630", "sdm120"})
COOLING_SETPOINT_RANGE = (16.0, 32.0)  # what the z2m-thermostat accepts
HEATING_SETPOINT_RANGE = (5.0, 30.0)


class WorldError(ValueError):
    """A request that does not fit the site (unknown id, wrong kind of target, value out of range)."""


class UnknownRoom(WorldError):
    """No room with that id."""


@dataclass
class _Bus:
    """The load side of one transfer switch: which departments it feeds and how it is fed now."""

    switch: SwitchModel
    departments: list[str]
    generator: GeneratorModel | None = None
    voltage_v: float = 0.0
    frequency_hz: float = 0.0
    load_w: float = 0.0
    feeding: str | None = None


class World:
    """The whole simulated site."""

    def __init__(self, site: Site, *, seed: int = 0, start: datetime, generator_start_s: float | None = None) -> None:
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        if generator_start_s is not None and not generator_start_s > 0:
            raise ValueError("generator_start_s must be positive")
        self.site = site
        self.seed = seed
        self.start = start.astimezone(site.site.tz)
        self.elapsed_s = 0.0
        self._office_due_s = 0.0
        self.faults: dict[tuple[str, str], dict[str, Any]] = {}
        self.offline: set[str] = set()
        self.garbage: set[str] = set()
        self.devices = {d.id: d for d in site.devices}
        self.sources = {s.id: SourceModel(id=s.id, seed=seed) for s in site.sources}
        self.meters = {
            d.id: MeterModel(
                id=d.id,
                import_kwh=round(between(seed, 5_000, 60_000, "kwh", d.id), 1),
                export_kwh=0.0,
            )
            for d in site.devices
            if d.driver == "modbus" and d.profile in METER_PROFILES
        }
        self._buses = self._build_buses(generator_start_s)
        on_switch = {b.generator.id: b.generator for b in self._buses if b.generator is not None}
        # a generator on no transfer switch still runs on manual start; it just feeds nothing
        self.generators = {
            g.id: on_switch.get(g.id) or self._generator(g.id, None, generator_start_s) for g in site.generators
        }
        self.office = Office(site.rooms, site.devices, site.calendar, seed)
        self._base_w = {d.id: d.base_load_kw * 1000 for d in site.departments}
        self._dept_load_w = dict(self._base_w)
        self._dept_rooms: dict[str, list[RoomModel]] = {d.id: [] for d in site.departments}
        for room in self.office.rooms.values():
            self._dept_rooms.setdefault(room.room.department, []).append(room)
        self._preroll()
        self._settle()

    # ---- construction ----------------------------------------------------------------------------

    def _generator(self, gen_id: str, switch: SwitchModel | None, start_s: float | None) -> GeneratorModel:
        g = next(x for x in self.site.generators if x.id == gen_id)
        return GeneratorModel(
            id=g.id,
            device=g.device,
            rated_kw=g.rated_kw,
            start_s=start_s if start_s is not None else 0.5 * g.start_limit_s,
            switch=switch,
            starts=int(between(self.seed, 20, 400, "starts", g.id)),
            energy_kwh=round(between(self.seed, 50, 2_000, "gen-kwh", g.id), 1),
        )

    def _build_buses(self, start_s: float | None) -> list[_Bus]:
        grid_ids = [s.id for s in self.site.sources]
        gen_ids = {g.id for g in self.site.generators}
        switches = [
            SwitchModel(
                id=t.id,
                device=t.device,
                grids=[s for s in t.sources if s in self.sources][:2],
                generator=next((s for s in t.sources if s in gen_ids), None),
                transfer_delay_s=t.transfer_delay_s,
                retransfer_delay_s=t.retransfer_delay_s,
            )
            for t in self.site.transfer_switches
        ]
        if not switches and grid_ids:
            # a site without a transfer switch: one bus on its first feeder
            switches = [SwitchModel("supply", None, grid_ids[:1], None, 0.0, 0.0, exposed=False)]
        buses = [_Bus(switch=s, departments=[]) for s in switches]
        for i, dept in enumerate(self.site.departments):
            if buses:
                buses[i % len(buses)].departments.append(dept.id)
        used: set[str] = set()
        for bus in buses:
            gen_id = bus.switch.generator
            if gen_id and gen_id not in used:
                bus.generator = self._generator(gen_id, bus.switch, start_s)
                used.add(gen_id)
        for bus in buses:
            bus.switch.position = next((i for i, g in enumerate(bus.switch.grids) if self.sources[g].available), None)
        return buses

    def _preroll(self) -> None:
        """Run the rooms from local midnight so a world started at 10:00 has its 10:00 occupants and lights."""
        local = self.start.replace(hour=0, minute=0, second=0, microsecond=0)
        while local < self.start:
            dt = min(PREROLL_STEP_S, (self.start - local).total_seconds())
            local += timedelta(seconds=dt)
            self.office.step(local, dt, lambda _room: NOMINAL_V)

    # ---- time --------------------------------------------------------------------------------------

    @property
    def now(self) -> datetime:
        """Simulated local time."""
        return self.start + timedelta(seconds=self.elapsed_s)

    def step(self, dt_s: float) -> None:
        """Advance simulated time by dt_s (in sub-steps of at most QUANTUM_S)."""
        if dt_s < 0:
            raise ValueError("time does not run backwards")
        remaining = dt_s
        while remaining > 1e-9:
            h = min(QUANTUM_S, remaining)
            self._integrate(h)
            self.elapsed_s += h
            self._update(h)
            remaining -= h

    def _integrate(self, dt_s: float) -> None:
        for meter in self.meters.values():
            meter.integrate(dt_s)
        for gen in self.generators.values():
            gen.energy_kwh += max(gen.power_kw, 0.0) * dt_s / 3600
        self.office.integrate(dt_s)

    def _settle(self) -> None:
        """Bring every controller and flow up to date after a change made between steps."""
        self._update(0.0)

    def _update(self, dt_s: float) -> None:
        t = self.elapsed_s
        epoch = self.now.timestamp()
        for bus in self._buses:
            bus.switch.step(t, self.sources)
            if bus.generator:
                no_grid = not any(self.sources[g].available for g in bus.switch.grids)
                bus.generator.step(t, self._mains_live(bus), no_grid)
        for gen in self.generators.values():
            if gen.switch is None:
                gen.step(t, False, False)
        powered_before = [bus.feeding is not None for bus in self._buses]
        for bus in self._buses:
            self._bus_supply(bus, epoch)
        self._office_due_s += dt_s
        # The rooms move each time simulated time crosses a multiple of OFFICE_STEP_S, by all the time
        # owed since they last moved: a step of any length (0.3 s, 7 s) keeps them going.
        crossed = math.floor((t + 1e-9) / OFFICE_STEP_S) > math.floor((t - dt_s + 1e-9) / OFFICE_STEP_S)
        if dt_s == 0 or crossed or powered_before != [bus.feeding is not None for bus in self._buses]:
            dept_voltage = {d: bus.voltage_v for bus in self._buses for d in bus.departments}
            self.office.step(
                self.now, self._office_due_s, lambda room: dept_voltage.get(room.room.department, NOMINAL_V)
            )
            self._office_due_s = 0.0
            self._dept_load_w = {d: self._department_load_w(d) for d in self._base_w}
        self._flows(epoch)

    # ---- power flows -------------------------------------------------------------------------------

    def _mains_live(self, bus: _Bus) -> bool:
        grid = bus.switch.feeding_grid()
        return grid is not None and self.sources[grid].available

    def _bus_supply(self, bus: _Bus, epoch: float) -> None:
        gen = bus.generator
        grid = bus.switch.feeding_grid()
        if gen is not None and gen.gen_breaker and gen.running:
            bus.voltage_v, bus.frequency_hz, bus.feeding = gen.voltage_v(epoch), gen.frequency_hz(epoch), gen.id
        elif grid is not None and self._mains_live(bus) and (gen is None or gen.mains_breaker):
            src = self.sources[grid]
            bus.voltage_v, bus.frequency_hz, bus.feeding = src.voltage_v(epoch), src.frequency_hz(epoch), grid
        else:
            bus.voltage_v, bus.frequency_hz, bus.feeding = 0.0, 0.0, None

    def _department_load_w(self, dept_id: str) -> float:
        """What a department draws when powered: its base load plus every device in its rooms."""
        total = self._base_w[dept_id]
        for room in self._dept_rooms.get(dept_id, []):
            total += sum(x.power_w for x in room.lights + room.plugs) + sum(a.power_w for a in room.acs)
        return total

    def _flows(self, epoch: float) -> None:
        grid_w: dict[str, float] = dict.fromkeys(self.sources, 0.0)
        grid_v: dict[str, float] = {s: src.voltage_v(epoch) for s, src in self.sources.items()}
        grid_hz: dict[str, float] = {s: src.frequency_hz(epoch) for s, src in self.sources.items()}
        dept_meter: dict[str, tuple[float, float, float]] = {}
        for generator in self.generators.values():
            generator.power_kw = 0.0
        for bus in self._buses:
            powered = bus.feeding is not None
            loads = {d: self._dept_load_w[d] if powered else 0.0 for d in bus.departments}
            for d, w in loads.items():
                dept_meter[d] = (w, bus.voltage_v, bus.frequency_hz)
            bus.load_w = sum(loads.values())
            gen, grid = bus.generator, bus.switch.feeding_grid()
            mains_path = gen is None or gen.mains_breaker
            gen_path = gen is not None and gen.gen_breaker and gen.running
            if gen is not None and gen_path and mains_path and grid is not None:
                # failed interlock: the generator is paralleled onto the feeder through the switch
                if self.sources[grid].available:
                    gen_w = max(bus.load_w, PARALLEL_SHARE * gen.rated_kw * 1000)
                else:
                    rated_w = gen.rated_kw * 1000
                    gen_w = max(bus.load_w, min(bus.load_w + BACKFEED_SHARE * rated_w, rated_w))
                    grid_v[grid], grid_hz[grid] = bus.voltage_v, bus.frequency_hz  # the dead feeder is energised
                grid_w[grid] += bus.load_w - gen_w
                gen.power_kw = gen_w / 1000
            elif gen is not None and gen_path:
                gen.power_kw = bus.load_w / 1000
            elif powered and grid is not None:
                grid_w[grid] += bus.load_w
        for meter in self.meters.values():
            meter.power_w, meter.voltage_v, meter.frequency_hz = 0.0, NOMINAL_V, 50.0
        for src in self.site.sources:
            if src.meter in self.meters:
                m = self.meters[src.meter]
                m.power_w, m.voltage_v, m.frequency_hz = grid_w[src.id], grid_v[src.id], grid_hz[src.id]
        for g in self.site.generators:
            if g.meter in self.meters:
                gen = self.generators[g.id]
                m = self.meters[g.meter]
                m.power_w, m.voltage_v, m.frequency_hz = (
                    gen.power_kw * 1000,
                    gen.voltage_v(epoch),
                    gen.frequency_hz(epoch),
                )
        for dept in self.site.departments:
            if dept.meter in self.meters and dept.id in dept_meter:
                m = self.meters[dept.meter]
                m.power_w, m.voltage_v, m.frequency_hz = dept_meter[dept.id]
        for m in self.meters.values():
            m.power_factor = LOAD_PF if m.power_w >= 0 else -LOAD_PF

    # ---- lookups used by the protocol faces --------------------------------------------------------

    def switch_for_device(self, device_id: str) -> SwitchModel | None:
        """The transfer switch a controller device belongs to."""
        return next((b.switch for b in self._buses if b.switch.device == device_id), None)

    def generator_for_device(self, device_id: str) -> GeneratorModel | None:
        """The generator a GenComm controller device belongs to."""
        return next((g for g in self.generators.values() if g.device == device_id), None)

    def mains_live_for(self, gen: GeneratorModel) -> bool:
        """Whether the generator controller's mains sensing sees a live grid."""
        bus = next((b for b in self._buses if b.generator is gen), None)
        return bus is not None and self._mains_live(bus)

    def source_state_code(self, switch: SwitchModel, index: int) -> int:
        """ATyS source state (20486/20487): 2 available, 0 under threshold (also for an absent position)."""
        if index >= len(switch.grids):
            return 0
        return 2 if self.sources[switch.grids[index]].available else 0

    def is_online(self, device_id: str) -> bool:
        """False while a device_offline fault holds."""
        return device_id not in self.offline

    def is_garbage(self, device_id: str) -> bool:
        """True while a device_garbage fault holds."""
        return device_id in self.garbage

    # ---- faults ------------------------------------------------------------------------------------

    def fault(self, name: str, target: str, **params: float) -> None:
        """Inject a fault (names and targets as in DESIGN.md §4)."""
        if name not in FAULT_NAMES:
            raise WorldError(f"unknown fault '{name}' (known: {', '.join(FAULT_NAMES)})")
        allowed = {"generator_slow_start": {"delay_s"}}.get(name, set())
        extra = set(params) - allowed
        if extra:
            raise WorldError(f"fault '{name}' takes no parameter {', '.join(sorted(extra))}")
        record: dict[str, Any] = {"fault": name, "target": target, "since": self.now.isoformat()}
        if name in ("source_loss", "source_restore"):
            src = self._need(self.sources, target, "source")
            src.available = name == "source_restore"
            src.available_since = self.elapsed_s
            self.faults.pop(("source_loss", target), None)
            if name == "source_restore":
                self._settle()
                return
        elif name in ("ats_stuck", "ats_manual"):
            switch = next((b.switch for b in self._buses if b.switch.id == target and b.switch.exposed), None)
            if switch is None:
                raise WorldError(self._unknown(target, "transfer switch", [b.switch.id for b in self._buses]))
            if name == "ats_stuck":
                switch.stuck = True
            else:
                switch.manual = True  # the selector on the switch's own front turned to manual
        elif name.startswith("generator_") or name == "interlock_fail":
            gen = self._need(self.generators, target, "generator")
            if name == "generator_fail_start":
                gen.fail_start = True
            elif name == "generator_slow_start":
                delay = float(
                    params.get("delay_s", next(g.start_limit_s for g in self.site.generators if g.id == target))
                )
                if delay <= 0:
                    raise WorldError("delay_s must be positive")
                gen.slow_start_s = delay
                record["delay_s"] = delay
            elif name == "generator_manual":
                gen.key(KEY_MANUAL)  # the manual key on the controller's own panel
            else:
                gen.interlock_fail = True
        else:
            self._need(self.devices, target, "device")
            (self.offline if name == "device_offline" else self.garbage).add(target)
        self.faults[(name, target)] = record
        self._settle()

    def clear_faults(self) -> None:
        """Clear every fault, restore every source, reset latched generator alarms."""
        for src in self.sources.values():
            if not src.available:
                src.available, src.available_since = True, self.elapsed_s
        for bus in self._buses:
            bus.switch.stuck = bus.switch.manual = False
        for name, target in self.faults:
            if name == "generator_manual" and target in self.generators:
                self.generators[target].key(KEY_AUTO)
        for gen in self.generators.values():
            gen.fail_start, gen.slow_start_s, gen.interlock_fail, gen.fail_latched = False, 0.0, False, False
            gen.overload_tripped = False
            gen.fail_at = None  # a start under way when the fault is cleared goes on and succeeds
        self.offline.clear()
        self.garbage.clear()
        self.faults.clear()
        self._settle()

    @staticmethod
    def _unknown(target: str, kind: str, known: list[str]) -> str:
        return f"'{target}' is not a {kind} of this site (known: {', '.join(known) or 'none'})"

    def _need(self, table: dict[str, _T], target: str, kind: str) -> _T:
        if target not in table:
            raise WorldError(self._unknown(target, kind, list(table)))
        return table[target]

    # ---- device commands (arrive over the devices' own protocols) ---------------------------------

    def switch_relay(self, device_id: str, on: bool | None, by: str) -> bool:
        """Switch a relay on/off (None toggles); returns whether it was on."""
        relay = self._need(self.office.relays, device_id, "switched device")
        was_on = relay.on
        relay.on, relay.changed_by = (not was_on if on is None else on), by
        self._settle()
        return was_on

    def set_thermostat(
        self,
        device_id: str,
        *,
        mode: str | None = None,
        cooling_setpoint: float | None = None,
        heating_setpoint: float | None = None,
    ) -> None:
        """Change an AC controller's mode or setpoints (out-of-range values are refused)."""
        ac: Thermostat = self._need(self.office.thermostats, device_id, "thermostat")
        if mode is not None and mode not in AC_MODES:
            raise WorldError(f"system_mode '{mode}' is not one of {', '.join(AC_MODES)}")
        for value, (low, high), what in (
            (cooling_setpoint, COOLING_SETPOINT_RANGE, "occupied_cooling_setpoint"),
            (heating_setpoint, HEATING_SETPOINT_RANGE, "occupied_heating_setpoint"),
        ):
            if value is not None and not low <= value <= high:
                raise WorldError(f"{what} {value} is outside {low}..{high}")
        if mode is not None:
            ac.mode = mode
        if cooling_setpoint is not None:
            ac.cooling_setpoint = cooling_setpoint
        if heating_setpoint is not None:
            ac.heating_setpoint = heating_setpoint
        self._settle()

    def generator_key(self, device_id: str, key: int) -> None:
        """A GenComm system control key written to the generator controller."""
        gen = self.generator_for_device(device_id)
        if gen is None:
            raise WorldError(f"'{device_id}' is not a generator controller")
        gen.key(key)
        self._settle()

    # ---- rooms (the operator's hand on the office model) ------------------------------------------

    def room(self, room_id: str) -> RoomModel:
        """A room by id."""
        if room_id not in self.office.rooms:
            raise UnknownRoom(self._unknown(room_id, "room", list(self.office.rooms)))
        return self.office.rooms[room_id]

    def set_room(
        self,
        room_id: str,
        *,
        occupied: bool | None = None,
        lights: bool | None = None,
        temperature: float | None = None,
        ac_mode: AcMode | None = None,
        ac_setpoint: float | None = None,
        door_open: bool | None = None,
        plugs: dict[str, float] | None = None,
        illuminance: float | None = None,
    ) -> None:
        """Hold room fields at the given values until set again or released."""
        room = self.room(room_id)
        if lights is not None and not room.lights:
            raise WorldError(f"room '{room_id}' has no lights")
        if (ac_mode is not None or ac_setpoint is not None) and not room.acs:
            raise WorldError(f"room '{room_id}' has no AC")
        plug_ids = [p.id for p in room.plugs]
        for plug_id in plugs or {}:
            if plug_id not in plug_ids:
                raise WorldError(self._unknown(plug_id, f"plug of room '{room_id}'", plug_ids))
        if ac_setpoint is not None:
            for ac in room.acs:
                # the setpoint is the heating one in heat mode, the cooling one otherwise; a value outside
                # the unit's range is refused (a Zigbee thermostat answers the write INVALID_VALUE), never clamped
                mode = ac_mode if ac_mode is not None else ac.mode
                low, high = HEATING_SETPOINT_RANGE if mode == "heat" else COOLING_SETPOINT_RANGE
                if not low <= ac_setpoint <= high:
                    what = "occupied_heating_setpoint" if mode == "heat" else "occupied_cooling_setpoint"
                    raise WorldError(
                        f"ac setpoint {ac_setpoint:g} is outside {low:g}..{high:g} in {mode} mode ({ac.id}: {what})"
                    )
        if occupied is not None:
            room.hold_occupied = occupied
        if lights is not None:
            room.hold_lights = True
            for light in room.lights:
                light.on, light.changed_by = lights, "button"
        if temperature is not None:
            room.hold_temperature, room.temperature_c = True, temperature
        if ac_mode is not None or ac_setpoint is not None:
            room.hold_ac = True
            for ac in room.acs:
                if ac_mode is not None:
                    ac.mode = ac_mode
                if ac_setpoint is not None:
                    if ac.mode == "heat":
                        ac.heating_setpoint = ac_setpoint
                    else:
                        ac.cooling_setpoint = ac_setpoint
        if door_open is not None:
            room.hold_door = door_open
        if illuminance is not None:
            if not any(x.profile == "z2m-occupancy" for x in room.sensors):
                raise WorldError(f"room '{room_id}' has no occupancy sensor to see illuminance")
            room.hold_illuminance = illuminance
        for plug in room.plugs:
            if plugs and plug.id in plugs:
                plug.override_w = plugs[plug.id]
        self._settle()

    def release_room(self, room_id: str) -> None:
        """Hand a room back to its model."""
        room = self.room(room_id)
        room.hold_occupied, room.hold_door, room.hold_illuminance = None, None, None
        room.hold_lights = room.hold_temperature = room.hold_ac = False
        for plug in room.plugs:
            plug.override_w = None
        self._settle()

    # ---- the state document (GET /sim/state) ------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """The whole simulated world as JSON-ready data."""
        epoch = self.now.timestamp()
        switches: dict[str, Any] = {}
        for bus in self._buses:
            sw = bus.switch
            if not sw.exposed:
                continue
            switches[sw.id] = {
                "position": bus.feeding,
                "code": sw.position_code(),
                "switch_position": "0" if sw.position is None else ("I", "II")[sw.position],
                "connected": sw.feeding_grid(),
                "stuck": sw.stuck,
                "cycles": sw.cycles,
                "load_kw": round(bus.load_w / 1000, 3),
                "mode": "manual" if sw.manual else "auto",
            }
        generators = {
            g.id: {
                "state": ENGINE_STATE_NAMES[g.engine],
                "engine_state": g.engine,
                "breaker_closed": g.gen_breaker,
                "gen_breaker_closed": g.gen_breaker,
                "mains_breaker_closed": g.mains_breaker,
                "power_kw": round(g.power_kw, 3),
                "ready": g.running,
                "mode": g.mode,
                "start_demand": g.demand,
                "fail_to_start": g.fail_latched,
                "overload": g.overloaded,
                "overload_trip": g.overload_tripped,
                "starts": g.starts,
                "start_s": g.start_s,
                "energy_kwh": round(g.energy_kwh, 3),
                "voltage_v": round(g.voltage_v(epoch), 1),
                "frequency_hz": round(g.frequency_hz(epoch), 2),
            }
            for g in self.generators.values()
        }
        return {
            "time": self.now.isoformat(),
            "seed": self.seed,
            "load_kw": round(sum(b.load_w for b in self._buses) / 1000, 3),
            "sources": {
                s.id: {
                    "available": s.available,
                    "voltage_v": round(s.voltage_v(epoch), 1),
                    "frequency_hz": round(s.frequency_hz(epoch), 2),
                }
                for s in self.sources.values()
            },
            "transfer_switches": switches,
            "generators": generators,
            "rooms": {r.id: self._room_state(r) for r in self.office.rooms.values()},
            "devices": {d: self.device_state(d) for d in self.devices},
            "faults": list(self.faults.values()),
        }

    def _room_state(self, room: RoomModel) -> dict[str, Any]:
        ac = room.acs[0] if room.acs else None
        return {
            "occupied": room.occupied,
            "temperature_c": round(room.temperature_c, 2),
            "door_open": room.door_open,
            "department": room.room.department,
            "lights_on": any(x.on for x in room.lights),
            "ac": (
                None
                if ac is None
                else {
                    "mode": ac.mode,
                    "setpoint_c": ac.heating_setpoint if ac.mode == "heat" else ac.cooling_setpoint,
                    "running_state": ac.running_state,
                }
            ),
            "power_w": round(sum(x.power_w for x in room.lights + room.plugs) + sum(a.power_w for a in room.acs), 1),
            "overrides": room.overrides,
            "illuminance": (
                self.office.occupancy_lx(room, self.now)
                if any(x.profile == "z2m-occupancy" for x in room.sensors)
                else None
            ),
        }

    def device_state(self, device_id: str) -> dict[str, Any]:
        """One device as GET /sim/state shows it."""
        dev = self.devices[device_id]
        out: dict[str, Any] = {
            "profile": dev.profile,
            "online": self.is_online(device_id),
            "garbage": self.is_garbage(device_id),
            "on": None,
            "power_w": None,
        }
        office = self.office
        if device_id in self.meters:
            m = self.meters[device_id]
            out |= {
                "power_w": round(m.power_w, 1),
                "voltage_v": round(m.voltage_v, 1),
                "frequency_hz": round(m.frequency_hz, 2),
                "import_kwh": round(m.import_kwh, 3),
                "export_kwh": round(m.export_kwh, 3),
            }
        elif (sw := self.switch_for_device(device_id)) is not None:
            out |= {"position_code": sw.position_code(), "cycles": sw.cycles, "stuck": sw.stuck}
        elif (gen := self.generator_for_device(device_id)) is not None:
            out |= {
                "power_w": round(gen.power_kw * 1000, 1),
                "engine_state": gen.engine,
                "breaker_status": gen.status_bits(self.mains_live_for(gen)),
            }
        elif device_id in office.relays:
            relay: Relay = office.relays[device_id]
            out |= {
                "on": relay.on,
                "power_w": round(relay.power_w, 1),
                "energy_kwh": round(relay.energy_kwh, 4),
                "voltage_v": round(relay.voltage_v, 1),
                "appliance": relay.appliance,
                "changed_by": relay.changed_by,
            }
        elif device_id in office.thermostats:
            ac = office.thermostats[device_id]
            room = office.rooms.get(ac.room or "")
            out |= {
                "on": ac.mode != "off",
                "power_w": round(ac.power_w, 1),
                "system_mode": ac.mode,
                "local_temperature": round(room.temperature_c, 1) if room else None,
                "cooling_setpoint": ac.cooling_setpoint,
                "heating_setpoint": ac.heating_setpoint,
                "running_state": ac.running_state,
            }
        elif device_id in office.sensors:
            sensor = office.sensors[device_id]
            room = office.rooms.get(sensor.room or "")
            out["battery"] = sensor.battery
            if sensor.profile == "z2m-occupancy":
                out |= {
                    "occupancy": bool(room and room.occupied),
                    "illuminance": office.occupancy_lx(room, self.now) if room else 0,
                }
            else:
                out["contact"] = not (room and room.door_open)
        return out
