"""Office side of the simulated site: rooms, their occupants, temperature and the devices in them.

Occupancy follows a day plan drawn from the seed (arrivals, lunch, late stays, meetings); occupants
switch lights, AC and plugs when they arrive and leave, and sometimes forget. Pure state, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal

from service.config.site import Calendar, Device, Room, RoomKind, parse_span
from simulators.rand import between, unit

AcMode = Literal["off", "auto", "cool", "heat", "fan_only", "dry"]
AC_MODES: tuple[AcMode, ...] = ("off", "auto", "cool", "heat", "fan_only", "dry")
RunningState = Literal["idle", "cool", "heat", "fan_only"]

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DEFAULT_HOURS = (9 * 60, 18 * 60)  # a site file without working hours still gets office days (Mon-Fri)
# monthly mean outdoor temperature (°C), a Yangtze-delta climate
MONTHLY_MEAN_C = (4.8, 6.2, 10.0, 15.5, 21.0, 24.5, 28.5, 28.3, 24.5, 19.5, 13.5, 7.5)
BUILDING_C = 24.0  # what the rest of the building holds a room towards
ROOM_TAU_S = 3 * 3600.0
DOOR_OPEN_TAU_S = 3600.0
AC_RATE_C_PER_S = 8.0 / 3600  # full-power AC moves a room 8 °C per hour
AC_HYSTERESIS_C = 0.3
SERVER_GAIN_C = 14.0  # equipment heat in a server room
DEFAULT_RATED_W = {"light": 300.0, "ac": 2500.0}

LIGHT_OFF_P = {  # chance occupants switch the lights off when they leave for the day
    RoomKind.office: 0.75,
    RoomKind.meeting: 0.6,
    RoomKind.corridor: 0.9,
    RoomKind.locker: 0.85,
    RoomKind.reception: 0.8,
    RoomKind.server: 0.8,
    RoomKind.other: 0.7,
}
AC_OFF_P = 0.7

# Daylight: a site on the Yangtze delta (the climate above); a window-side desk under a clear sky
# with the sun overhead; the share of that reaching each kind of room; how often a day is cloudy.
LATITUDE_DEG = 31.2
CLEAR_SKY_DESK_LX = 1800.0
CLOUDY_DAY_P = 0.35
WINDOW_SHARE = {
    RoomKind.office: 1.0,
    RoomKind.meeting: 0.9,
    RoomKind.corridor: 0.3,
    RoomKind.locker: 0.2,
    RoomKind.reception: 0.8,
    RoomKind.server: 0.0,
    RoomKind.other: 0.6,
}
LIGHTS_LX = 350.0  # what one lit circuit adds at the room's sensor


def working_span(calendar: Calendar, day: date) -> tuple[int, int] | None:
    """(start, end) minutes of the working day, or None for a day off."""
    if day in calendar.holidays:
        return None
    if not calendar.working_hours:
        return DEFAULT_HOURS if day.weekday() < 5 else None
    if day in calendar.workdays:
        text = calendar.makeup_hours or calendar.working_hours.get("mon")
    else:
        text = calendar.working_hours.get(WEEKDAYS[day.weekday()])  # type: ignore[call-overload]
    if not text:
        return None
    spans = [parse_span(part) for part in text.split(",")]
    return min(s for s, _ in spans), max(e for _, e in spans)


def outdoor_c(seed: int, local: datetime) -> float:
    """Outdoor temperature: monthly mean, a daily swing peaking at 14:00, and a per-day offset."""
    hour = local.hour + local.minute / 60 + local.second / 3600
    day_offset = between(seed, -2.0, 2.0, "weather", local.date().isoformat())
    return MONTHLY_MEAN_C[local.month - 1] + day_offset + 4.0 * math.cos(2 * math.pi * (hour - 14) / 24)


def sun_sine(local: datetime, latitude_deg: float = LATITUDE_DEG) -> float:
    """Sine of the sun's elevation at a local time (local clock time taken as solar time; < 0 at night)."""
    day = local.timetuple().tm_yday
    declination = math.radians(23.44) * math.sin(2 * math.pi * (284 + day) / 365)
    hour = local.hour + local.minute / 60 + local.second / 3600
    hour_angle = math.radians(15.0 * (hour - 12.0))
    lat = math.radians(latitude_deg)
    return math.sin(lat) * math.sin(declination) + math.cos(lat) * math.cos(declination) * math.cos(hour_angle)


def sky(seed: int, day: date) -> float:
    """How much of the clear-sky daylight a day lets through: sunny days 0.85-1, cloudy days 0.15-0.4."""
    if unit(seed, "sky", day.isoformat()) < CLOUDY_DAY_P:
        return between(seed, 0.15, 0.4, "cloud", day.isoformat())
    return between(seed, 0.85, 1.0, "sun", day.isoformat())


def daylight_lx(seed: int, local: datetime, kind: RoomKind = RoomKind.office) -> float:
    """Daylight reaching a room's sensor: the sun's height over the site's day, that day's sky, the room's windows."""
    elevation = sun_sine(local)
    if elevation <= 0:
        return 0.0
    return CLEAR_SKY_DESK_LX * elevation * sky(seed, local.date()) * WINDOW_SHARE[kind]


def day_plan(seed: int, room: Room, day: date, span: tuple[int, int] | None) -> list[tuple[float, float]]:
    """When the room is occupied on a day: sorted (start, end) minutes after midnight."""

    def u(*keys: object) -> float:
        return unit(seed, "plan", room.id, day.isoformat(), *keys)

    out: list[tuple[float, float]] = []
    if span is None:
        if room.kind in (RoomKind.office, RoomKind.other) and u("weekend") < 0.05:
            start = 600 + 120 * u("weekend-start")
            out.append((start, start + 120 + 120 * u("weekend-len")))
        return out
    ws, we = span
    kind = room.kind
    if kind in (RoomKind.office, RoomKind.other):
        arrive = ws - 30 + 40 * u("arrive")
        late = u("late") < 0.2
        leave = we + (30 + 150 * u("leave")) if late else we - 10 + 40 * u("leave")
        if u("lunch") < 0.5 and arrive < 720 < leave:
            lunch = 720 + 10 * u("lunch-start")
            out += [(arrive, lunch), (lunch + 35 + 15 * u("lunch-len"), leave)]
        else:
            out.append((arrive, leave))
    elif kind == RoomKind.reception:
        out.append((ws - 10, we + 10))
    elif kind == RoomKind.meeting:
        end = -1.0
        for hour in range(ws // 60, we // 60):
            if u("meeting", hour) < 0.45:
                start = hour * 60 + (30 if u("half", hour) < 0.5 else 0)
                if start >= end:
                    end = start + 30 * (1 + int(3 * u("length", hour)))
                    out.append((start, min(end, we + 60)))
    elif kind == RoomKind.corridor:
        for slot in range((ws - 30) // 10, (we + 60) // 10):
            if u("pass", slot) < 0.6:
                start = slot * 10 + 8 * u("at", slot)
                out.append((start, start + 1 + u("len", slot)))
    elif kind == RoomKind.locker:
        for name, at in (
            ("morning", ws - 30 + 30 * u("m")),
            ("lunch", 720 + 60 * u("l")),
            ("evening", we + 30 * u("e")),
        ):
            out.append((at, at + 4 + 4 * u(name)))
    elif kind == RoomKind.server and u("visit") < 0.3:
        start = 600 + 360 * u("visit-at")
        out.append((start, start + 15 + 30 * u("visit-len")))
    return [(max(0.0, s), min(1440.0, e)) for s, e in out if e > s]


def appliance_w(seed: int, device_id: str, appliance: str | None, epoch_s: float, room: RoomModel) -> float:
    """What an appliance draws right now (its plug relay being on and powered)."""
    minute = int(epoch_s // 60)
    n = unit(seed, "load", device_id, minute)
    occupied = room.occupied
    idle_s = epoch_s - room.left_at if room.left_at is not None else math.inf
    awake = occupied or idle_s < 20 * 60 or room.left_on
    if appliance == "pc":
        if occupied:
            return 80.0 + 60.0 * n
        return 45.0 + 5.0 * n if awake else 2.5
    if appliance == "monitor":
        return 22.0 + 6.0 * n if occupied else 0.4
    if appliance == "printer":
        if not (occupied or idle_s < 3600):
            return 2.0
        return 450.0 + 150.0 * n if occupied and n < 0.08 else 12.0
    if appliance == "water_dispenser":
        period, heating = 600, (180 if occupied else 100)
        offset = int(between(seed, 0, period, "dispenser", device_id))
        return 520.0 if (int(epoch_s) + offset) % period < heating else 3.0
    if appliance == "projector":
        return 240.0 + 20.0 * n if occupied else 0.5
    if appliance == "ups":
        return 1500.0 + 100.0 * n
    if appliance == "heater":
        return 0.0  # drawn only when asked for (POST /sim/rooms plugs)
    return 30.0 + 20.0 * n if occupied else 1.0


@dataclass
class Relay:
    """A switched device: a light circuit or a plug with an appliance behind it."""

    id: str
    room: str | None
    light: bool
    appliance: str | None
    rated_w: float
    energy_kwh: float
    on: bool = True
    power_w: float = 0.0
    voltage_v: float = 0.0
    override_w: float | None = None
    changed_by: str = "init"


@dataclass
class Thermostat:
    """An AC controller (Zigbee2MQTT climate device)."""

    id: str
    room: str | None
    rated_w: float
    energy_kwh: float
    mode: AcMode = "off"
    cooling_setpoint: float = 26.0
    heating_setpoint: float = 20.0
    running_state: RunningState = "idle"
    power_w: float = 0.0

    def control(self, temperature_c: float, powered: bool) -> None:
        """Thermostat decision and the power it draws."""
        mode, t = self.mode, temperature_c
        running: RunningState = "idle"
        if not powered or mode == "off":
            running = "idle"
        elif mode == "fan_only":
            running = "fan_only"
        else:
            want_cool = mode in ("cool", "dry", "auto") and (
                t > self.cooling_setpoint + AC_HYSTERESIS_C
                or (self.running_state == "cool" and t > self.cooling_setpoint - AC_HYSTERESIS_C)
            )
            want_heat = mode in ("heat", "auto") and (
                t < self.heating_setpoint - AC_HYSTERESIS_C
                or (self.running_state == "heat" and t < self.heating_setpoint + AC_HYSTERESIS_C)
            )
            running = "cool" if want_cool else "heat" if want_heat else "idle"
        self.running_state = running
        if not powered or mode == "off":
            self.power_w = 0.0
        elif running == "idle":
            self.power_w = 0.04 * self.rated_w
        elif running == "fan_only":
            self.power_w = 0.08 * self.rated_w
        else:
            setpoint = self.cooling_setpoint if running == "cool" else self.heating_setpoint
            self.power_w = self.rated_w * (0.5 + 0.5 * min(1.0, abs(t - setpoint) / 2))

    def heat_rate_c_per_s(self) -> float:
        """How fast the unit moves the room temperature (negative when cooling)."""
        if self.running_state not in ("cool", "heat") or self.rated_w <= 0 or self.power_w <= 0:
            return 0.0
        share = self.power_w / self.rated_w
        return (-1 if self.running_state == "cool" else 1) * AC_RATE_C_PER_S * share


@dataclass
class Sensor:
    """A battery sensor: occupancy or door contact."""

    id: str
    profile: str
    room: str | None
    battery: float


@dataclass
class RoomModel:
    """A room: occupants, temperature, door, and its devices."""

    room: Room
    temperature_c: float
    occupied: bool = False
    door_open: bool = False
    interval: tuple[date, int] | None = None
    left_at: float | None = None
    left_on: bool = False  # someone left their PC awake tonight
    comfort_slot: int = -1
    lights: list[Relay] = field(default_factory=list)
    plugs: list[Relay] = field(default_factory=list)
    acs: list[Thermostat] = field(default_factory=list)
    sensors: list[Sensor] = field(default_factory=list)
    hold_occupied: bool | None = None
    hold_lights: bool = False
    hold_temperature: bool = False
    hold_ac: bool = False
    hold_door: bool | None = None
    hold_illuminance: float | None = None

    @property
    def id(self) -> str:
        """Site-file id."""
        return self.room.id

    @property
    def overrides(self) -> list[str]:
        """Which fields an operator holds (POST /sim/rooms)."""
        held = {
            "occupied": self.hold_occupied is not None,
            "lights": self.hold_lights,
            "temperature": self.hold_temperature,
            "ac": self.hold_ac,
            "door_open": self.hold_door is not None,
            "plugs": any(p.override_w is not None for p in self.plugs),
            "illuminance": self.hold_illuminance is not None,
        }
        return [name for name, on in held.items() if on]


class Office:
    """All rooms of a site and the office devices in them."""

    def __init__(self, rooms: list[Room], devices: list[Device], calendar: Calendar, seed: int) -> None:
        self.seed = seed
        self.calendar = calendar
        self.rooms: dict[str, RoomModel] = {}
        self.relays: dict[str, Relay] = {}
        self.thermostats: dict[str, Thermostat] = {}
        self.sensors: dict[str, Sensor] = {}
        self._plans: dict[tuple[str, date], list[tuple[float, float]]] = {}
        room_of = {d: r.id for r in rooms for d in r.devices}
        for room in rooms:
            self.rooms[room.id] = RoomModel(room=room, temperature_c=BUILDING_C)
        for dev in devices:
            if dev.driver != "mqtt":
                continue
            self._add_device(dev, room_of.get(dev.id))

    def _add_device(self, dev: Device, room_id: str | None) -> None:
        room = self.rooms.get(room_id) if room_id else None
        seed = self.seed
        if dev.profile in ("tasmota-relay", "shelly-plug", "z2m-plug"):
            light = dev.role == "lighting"
            rated = dev.rated_kw * 1000 if dev.rated_kw else DEFAULT_RATED_W["light"]
            relay = Relay(
                id=dev.id,
                room=room_id,
                light=light,
                appliance=None if light else dev.appliance,
                rated_w=rated if light else 0.0,
                energy_kwh=round(between(seed, 20, 900, "energy", dev.id), 3),
                on=not light,
            )
            self.relays[dev.id] = relay
            if room:
                (room.lights if light else room.plugs).append(relay)
        elif dev.profile == "z2m-thermostat":
            ac = Thermostat(
                id=dev.id,
                room=room_id,
                rated_w=dev.rated_kw * 1000 if dev.rated_kw else DEFAULT_RATED_W["ac"],
                energy_kwh=round(between(seed, 100, 3000, "energy", dev.id), 3),
            )
            if room and room.room.kind == RoomKind.server:
                ac.mode, ac.cooling_setpoint = "cool", 22.0  # precision AC: always on
            self.thermostats[dev.id] = ac
            if room:
                room.acs.append(ac)
        elif dev.profile in ("z2m-occupancy", "z2m-contact"):
            sensor = Sensor(
                id=dev.id, profile=dev.profile, room=room_id, battery=round(between(seed, 55, 100, "battery", dev.id))
            )
            self.sensors[dev.id] = sensor
            if room:
                room.sensors.append(sensor)

    def plan(self, room: RoomModel, day: date) -> list[tuple[float, float]]:
        """The room's day plan (cached for today and yesterday)."""
        key = (room.id, day)
        if key not in self._plans:
            for old in [k for k in self._plans if (day - k[1]).days > 1]:
                del self._plans[old]
            self._plans[key] = day_plan(self.seed, room.room, day, working_span(self.calendar, day))
        return self._plans[key]

    def scheduled(self, room: RoomModel, local: datetime) -> tuple[date, int] | None:
        """Which plan interval occupies the room at a local time, if any."""
        minute = local.hour * 60 + local.minute + local.second / 60
        for i, (start, end) in enumerate(self.plan(room, local.date())):
            if start <= minute < end:
                return (local.date(), i)
        return None

    def integrate(self, dt_s: float) -> None:
        """Advance every device's energy counter over dt at its present power."""
        for relay in self.relays.values():
            relay.energy_kwh += relay.power_w * dt_s / 3_600_000
        for ac in self.thermostats.values():
            ac.energy_kwh += ac.power_w * dt_s / 3_600_000

    def step(self, local: datetime, dt_s: float, supply_v: Callable[[RoomModel], float]) -> None:
        """Move every room to `local` (dt after the last step): occupants, temperature, device power."""
        epoch = local.timestamp()
        outdoor = outdoor_c(self.seed, local)
        for room in self.rooms.values():
            self._occupants(room, local, epoch)
            slot = int(epoch // 900)
            if slot != room.comfort_slot:
                room.comfort_slot = slot
                self._comfort(room, slot)
            volts = supply_v(room)
            if room.hold_door is not None:
                room.door_open = room.hold_door
            else:
                slot = int(epoch // 300)
                room.door_open = (
                    room.occupied
                    and room.room.kind in (RoomKind.office, RoomKind.meeting)
                    and (
                        unit(self.seed, "door", room.id, slot) < (0.15 if room.room.kind == RoomKind.meeting else 0.08)
                    )
                )
            for ac in room.acs:
                ac.control(room.temperature_c, volts > 0)
            if not room.hold_temperature:
                self._thermal(room, outdoor, dt_s)
            for relay in room.lights + room.plugs:
                self._relay_power(relay, room, epoch, volts)

    def _thermal(self, room: RoomModel, outdoor: float, dt_s: float) -> None:
        gains = (1.5 if room.occupied else 0.0) + 0.3 * sum(1 for x in room.lights if x.power_w > 0)
        if room.room.kind == RoomKind.server:
            gains += SERVER_GAIN_C
        equilibrium = 0.55 * outdoor + 0.45 * BUILDING_C + gains
        tau = DOOR_OPEN_TAU_S if room.door_open else ROOM_TAU_S
        rate = (equilibrium - room.temperature_c) / tau + sum(ac.heat_rate_c_per_s() for ac in room.acs)
        room.temperature_c += rate * dt_s

    def _relay_power(self, relay: Relay, room: RoomModel, epoch: float, volts: float) -> None:
        relay.voltage_v = volts
        if not relay.on or volts <= 0:
            relay.power_w = 0.0
        elif relay.light:
            relay.power_w = relay.rated_w
        elif relay.override_w is not None:
            relay.power_w = relay.override_w
        else:
            relay.power_w = appliance_w(self.seed, relay.id, relay.appliance, epoch, room)

    def _occupants(self, room: RoomModel, local: datetime, epoch: float) -> None:
        now = self.scheduled(room, local)
        if room.hold_occupied is not None:
            room.occupied, room.interval = room.hold_occupied, now
            return
        before = room.interval
        if now == before:
            return
        if before is not None:
            # only office workers come back after lunch; everyone else has really left
            back_later = (
                room.room.kind in (RoomKind.office, RoomKind.other) and before[1] < len(self.plan(room, before[0])) - 1
            )
            self._leave(room, before, not back_later, epoch)
        room.interval = now
        room.occupied = now is not None
        if now is not None:
            self._arrive(room, now, local)

    def _arrive(self, room: RoomModel, key: tuple[date, int], local: datetime) -> None:
        def u(what: str) -> float:
            return unit(self.seed, what, room.id, key[0].isoformat(), key[1])

        room.left_on = False
        daylight = daylight_lx(self.seed, local, room.room.kind)
        if not room.hold_lights and room.lights and u("lights-on") < (0.95 if daylight > 150 else 1.0):
            for light in room.lights:
                light.on, light.changed_by = True, "button"
        for plug in room.plugs:
            if not plug.on and plug.override_w is None and u(f"plug-on-{plug.id}") < 0.9:
                plug.on, plug.changed_by = True, "button"
        if room.hold_ac or room.room.kind == RoomKind.server:
            return
        self._switch_ac_on(room, u, too_warm_c=26.5, too_cold_c=16.0, keen=0.8)

    def _comfort(self, room: RoomModel, slot: int) -> None:
        """Every quarter hour, people in a room that got too warm or too cold may reach for the AC."""
        if not room.occupied or room.hold_ac or room.room.kind == RoomKind.server:
            return

        def u(what: str) -> float:
            return unit(self.seed, what, room.id, slot)

        self._switch_ac_on(room, u, too_warm_c=27.0, too_cold_c=15.0, keen=0.6)

    @staticmethod
    def _switch_ac_on(
        room: RoomModel, u: Callable[[str], float], *, too_warm_c: float, too_cold_c: float, keen: float
    ) -> None:
        t = room.temperature_c
        for ac in room.acs:
            if ac.mode != "off":
                continue
            if t > too_warm_c and u(f"ac-cool-{ac.id}") < keen:
                ac.mode = "cool"
                ac.cooling_setpoint = (24.0, 25.0, 26.0, 26.0, 27.0)[int(5 * u(f"ac-sp-{ac.id}"))]
            elif t < too_cold_c and u(f"ac-heat-{ac.id}") < keen:
                ac.mode = "heat"
                ac.heating_setpoint = (18.0, 20.0, 22.0)[int(3 * u(f"ac-sp-{ac.id}"))]

    def _leave(self, room: RoomModel, key: tuple[date, int], for_good: bool, epoch: float) -> None:
        def u(what: str) -> float:
            return unit(self.seed, what, room.id, key[0].isoformat(), key[1])

        room.left_at = epoch
        if not for_good:
            return  # a lunch break: lights and AC stay as they are
        room.left_on = u("pc-left-on") < 0.2
        if not room.hold_lights and u("lights-off") < LIGHT_OFF_P[room.room.kind]:
            for light in room.lights:
                light.on, light.changed_by = False, "button"
        if not room.hold_ac and room.room.kind != RoomKind.server:
            for ac in room.acs:
                if u(f"ac-off-{ac.id}") < AC_OFF_P:
                    ac.mode = "off"

    def occupancy_lx(self, room: RoomModel, local: datetime) -> float:
        """Illuminance the room's sensor measures: daylight (passing clouds move it by up to ±20 % every
        ten minutes) plus the room's own lights, or what an operator holds it at."""
        if room.hold_illuminance is not None:
            return room.hold_illuminance
        lights = sum(1 for x in room.lights if x.power_w > 0)
        passing = 0.8 + 0.4 * unit(self.seed, "lux", room.id, int(local.timestamp() // 600))
        return round(daylight_lx(self.seed, local, room.room.kind) * passing + LIGHTS_LX * lights)
