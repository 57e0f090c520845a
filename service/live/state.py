"""Live state: the latest value of every device point and the room and supply views derived from it.

Pure: readings and `now` come in as arguments; nothing here reads a clock, a socket or a file
beyond the device profiles the site loader has already read.

Staleness: a good value counts as `stale` once it is older than its point's maximum age, or
while its device is reported offline. Modbus points are polled, so silence means trouble:
the maximum age is STALE_POLLS poll intervals. MQTT devices publish on change; their measured
values (power, temperature, energy) are expected at least every MQTT_REPORT_INTERVAL_S (Tasmota's
default TelePeriod; Zigbee2MQTT and Shelly metering report more often), so they go stale after
STALE_POLLS of those. Their state points (occupancy, contact, relay `on`, AC mode) are only sent
when they change, so they stay valid until the device's availability says offline, bounded by
MQTT_STATE_MAX_AGE_S (Zigbee2MQTT's availability timeout for battery devices).

Supply topology: a transfer switch (atys-pm) at pos I takes the first grid source in its
`sources`, at pos II the second; a generator in its `sources` is put on the load by its own AMF
controller through the mains and generator breakers (dse-gencomm `breaker_status`). The load is
fed by the generator when its breaker is closed and the mains breaker open (if it is available),
otherwise, with the mains breaker closed (or no generator), by the grid source at the switch
position if that source is present; pos 0 or an unknown position feeds nothing. A source is
`present` when the switch's source state is >= 1 (present) and its meter shows >= 80 % of 230 V,
and `available` when the state is 2 (available) and the meter agrees. For `present` (what feeds
the load) either alone decides when the other is silent; `available` is unknown (None) whenever
a reporter the site declares for the source (its meter, the switch status slot that reports it)
is offline, stale or silent and no other says it is not available: unknown is never counted as
available.

The conditions rules time (how long a lit room has been empty, how long the load has been
without a source, ...) start at the timestamp of the reading that made them true; see `since`.
Each switch's source transfers are told the same way, at the readings' timestamps, by a
service.live.transfers.TransferDetector; `take_transfers` hands over those that ended.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from drivers.profiles import ModbusPoint, load_profile
from drivers.types import Quality, Reading, Value
from service.config.site import PROTECTED_ROLES, Device, DeviceRole, Room, RoomKind, Site
from service.live.jsonable import json_fields
from service.live.transfers import Transfer, TransferDetector

SUPPLY: Final = "supply"  # the evaluation subject for everything on the supply side

STALE_POLLS: Final = 3
MQTT_REPORT_INTERVAL_S: Final = 300.0
MQTT_STATE_MAX_AGE_S: Final = 25 * 3600.0

NOMINAL_LN_V: Final = 230.0
# A source meter below this share of nominal phase voltage means the source is not there.
PRESENT_FRACTION: Final = 0.8

# Socomec ATyS p M: switch position and source state codes.
POS_UNKNOWN, POS_0, POS_I, POS_II = 0, 1, 2, 3
SOURCE_PRESENT, SOURCE_AVAILABLE = 1, 2

# DSE GenComm engine state and breaker_status bits (see drivers/profiles/dse-gencomm.yaml).
ENGINE_RUNNING: Final = 3
MAINS_BREAKER_CLOSED: Final = 1 << 0
GEN_BREAKER_CLOSED: Final = 1 << 1
MAINS_AVAILABLE: Final = 1 << 2
GEN_AVAILABLE: Final = 1 << 3
START_DEMAND: Final = 1 << 4
FAIL_TO_START: Final = 1 << 5

# Conditions whose start LiveState remembers, per subject.
LIT_EMPTY: Final = "lit_empty"  # room: lights on, nobody there
AC_DOOR_OPEN: Final = "ac_door_open"  # room: an AC on with the door or window open
UNPOWERED: Final = "unpowered"  # transfer switch: the load has no source
UNPOWERED_WITH_ALTERNATIVE: Final = "unpowered_with_alternative"  # ... while another source could feed it
START_PENDING: Final = "start_pending"  # generator: start demanded, not ready yet
AC_EMPTY: Final = "ac_empty"  # room: an AC on (any mode but off), nobody there
LIT_DAYLIGHT: Final = "lit_daylight"  # room: lights on, illuminance at or above the room's daylight_lux

# The points of each kind of room device that the timed room conditions (LIT_EMPTY, AC_DOOR_OPEN,
# AC_EMPTY, LIT_DAYLIGHT) read.
_CONDITION_POINTS: Final = {
    "light": frozenset({"on"}),
    "occupancy": frozenset({"occupancy", "illuminance"}),
    "ac": frozenset({"system_mode"}),
    "contact": frozenset({"contact"}),
}
_SUPPLY_ONLY: Final = frozenset({SUPPLY})
_FOREVER: Final = datetime.max.replace(tzinfo=UTC)

_COOL_MODES = frozenset({"cool", "auto", "dry"})  # modes in which an AC may be cooling
_HEAT_MODES = frozenset({"heat", "auto"})


def tri_any(values: Iterable[bool | None]) -> bool | None:
    """True if any is True, False if there are some and all are False, else None (unknown)."""
    seen_unknown = False
    seen = False
    for v in values:
        if v is True:
            return True
        seen = True
        seen_unknown = seen_unknown or v is None
    return None if seen_unknown or not seen else False


def tri_and(a: bool | None, b: bool | None) -> bool | None:
    """Three-valued AND: False wins, then unknown."""
    if a is False or b is False:
        return False
    if a is None or b is None:
        return None
    return True


def tri_not(a: bool | None) -> bool | None:
    """Three-valued NOT."""
    return None if a is None else not a


@dataclass(frozen=True, slots=True, kw_only=True)
class PointState:
    """The latest value of one device point, with its quality now."""

    device: str
    point: str
    value: Value
    unit: str
    ts: datetime
    quality: Quality

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form (GET /api/state serves these fields, built by `LiveState.point_rows`)."""
        return json_fields(self, "device", "point", "value", "unit", "ts", "quality")


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceView:
    """A device's link state for GET /api/devices."""

    id: str
    profile: str
    driver: str
    online: bool
    last_seen: datetime | None
    status_since: datetime | None  # when the driver last reported the device on- or offline

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form (the API contract's fields)."""
        return json_fields(self, "id", "profile", "driver", "online", "last_seen")


@dataclass(frozen=True, slots=True, kw_only=True)
class AcView:
    """One air-conditioner (thermostat) as the rules see it."""

    device: str
    role: DeviceRole
    on: bool | None
    mode: str | None
    setpoint_c: float | None  # the setpoint of the current mode (heating in heat mode, else cooling)
    cooling_setpoint_c: float | None
    heating_setpoint_c: float | None
    temperature_c: float | None
    cooling: bool | None
    heating: bool | None

    def to_dict(self) -> dict[str, object]:
        """JSON-ready `ac` object of GET /api/rooms."""
        return {"on": self.on, "mode": self.mode, "setpoint_c": self.setpoint_c}


@dataclass(frozen=True, slots=True, kw_only=True)
class PlugView:
    """A switched socket (not lighting) in a room."""

    device: str
    role: DeviceRole
    on: bool | None
    power_w: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class RoomView:
    """What is known about a room now; None means unknown (no device or no good data)."""

    id: str
    name: str
    department: str
    kind: str
    occupied: bool | None
    lights_on: bool | None
    temperature_c: float | None
    ac: AcView | None  # the room's first AC, as the API shows it
    acs: tuple[AcView, ...]
    plugs: tuple[PlugView, ...]
    lights: tuple[str, ...]  # lighting device ids
    sensors: tuple[str, ...]  # occupancy sensor ids
    contacts: tuple[str, ...]  # door/window contact ids
    plugs_w: float | None
    power_w: float | None
    door_open: bool | None
    illuminance_lx: float | None = None  # the darkest of the room's occupancy sensors

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form for GET /api/rooms (the service adds `override_until`)."""
        return {
            **json_fields(self, "id", "name", "department", "kind", "occupied", "lights_on", "temperature_c"),
            "ac": self.ac.to_dict() if self.ac else None,
            **json_fields(self, "plugs_w", "power_w", "door_open", "illuminance_lx"),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceView:
    """A grid source: `present` = voltage there, `available` = present and stable."""

    id: str
    available: bool | None
    present: bool | None
    voltage_v: float | None
    power_kw: float | None  # import at the source's meter; negative when exporting

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {"id": self.id, "available": self.available, "voltage_v": self.voltage_v}


@dataclass(frozen=True, slots=True, kw_only=True)
class GeneratorView:
    """A standby generator as its AMF controller reports it."""

    id: str
    engine_state: int | None
    state: str | None
    running: bool | None
    available: bool | None  # the controller's "generator available" bit
    ready: bool | None  # running and available
    power_kw: float | None
    breaker_closed: bool | None
    mains_breaker_closed: bool | None
    demanded: bool | None
    fail_to_start: bool | None

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return json_fields(self, "id", "state", "ready", "power_kw", "breaker_closed")


@dataclass(frozen=True, slots=True, kw_only=True)
class SwitchView:
    """A transfer switch: `position` is the source feeding the load (None: nothing, or unknown)."""

    id: str
    position: str | None
    known: bool  # False: the data to tell what feeds the load is missing or not good
    code: int | None  # raw ATyS position code
    grid_position: str | None  # the grid source the switch is set to (pos I / pos II)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {"id": self.id, "position": self.position}


@dataclass(frozen=True, slots=True, kw_only=True)
class SupplyView:
    """The supply side now."""

    sources: tuple[SourceView, ...]
    transfer_switches: tuple[SwitchView, ...]
    generators: tuple[GeneratorView, ...]
    load_kw: float | None

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form for GET /api/supply."""
        return {
            "sources": [s.to_dict() for s in self.sources],
            "transfer_switches": [t.to_dict() for t in self.transfer_switches],
            "generators": [g.to_dict() for g in self.generators],
            "load_kw": self.load_kw,
        }

    def source(self, source_id: str) -> SourceView | None:
        """A grid source by id."""
        return next((s for s in self.sources if s.id == source_id), None)

    def generator(self, generator_id: str) -> GeneratorView | None:
        """A generator by id."""
        return next((g for g in self.generators if g.id == generator_id), None)


def _device_class(device: Device, points: frozenset[str]) -> str:
    if "system_mode" in points:
        return "ac"
    if "occupancy" in points:
        return "occupancy"
    if "contact" in points:
        return "contact"
    if "on" in points:
        return "light" if device.role is DeviceRole.lighting else "plug"
    return "other"


class LiveState:
    """Latest value, unit, time and quality per device point; derived room and supply views."""

    def __init__(
        self,
        site: Site,
        *,
        stale_polls: int = STALE_POLLS,
        mqtt_report_interval_s: float = MQTT_REPORT_INTERVAL_S,
        mqtt_state_max_age_s: float = MQTT_STATE_MAX_AGE_S,
    ) -> None:
        self.site = site
        self._latest: dict[tuple[str, str], Reading] = {}
        self._sorted: list[tuple[str, str]] = []  # the keys of _latest, sorted
        self._online: dict[str, tuple[bool, datetime]] = {}
        self._last_seen: dict[str, datetime] = {}
        self._since: dict[tuple[str, str], datetime] = {}

        gauge_age_s = stale_polls * mqtt_report_interval_s
        self._state_points: dict[str, frozenset[str]] = {}
        self._class: dict[str, str] = {}
        self._enums: dict[tuple[str, str], dict[int, str]] = {}
        self._devices: dict[str, Device] = {d.id: d for d in site.devices}
        self._condition_points: dict[str, frozenset[str]] = {}
        # Maximum age of a good value: (polled or measured points, MQTT state points) per device.
        self._age: dict[str, tuple[timedelta, timedelta]] = {}
        for d in site.devices:
            profile = load_profile(d.profile)
            self._state_points[d.id] = frozenset(p.name for p in profile.points if p.kind == "state")
            if d.driver == "modbus":
                polled = timedelta(seconds=stale_polls * d.poll_s)
                self._age[d.id] = (polled, polled)
            else:
                self._age[d.id] = (timedelta(seconds=gauge_age_s), timedelta(seconds=mqtt_state_max_age_s))
            self._class[d.id] = _device_class(d, frozenset(p.name for p in profile.points))
            self._condition_points[d.id] = _CONDITION_POINTS.get(self._class[d.id], frozenset())
            for p in profile.points:
                if isinstance(p, ModbusPoint) and p.enum:
                    self._enums[(d.id, p.name)] = p.enum
        supply_devices = {s.meter for s in site.sources}
        supply_devices |= {g.device for g in site.generators} | {g.meter for g in site.generators}
        supply_devices |= {t.device for t in site.transfer_switches}
        self._subjects: dict[str, frozenset[str]] = {}
        self._members: dict[str, list[str]] = {}  # subject -> its devices, in site order
        for d in site.devices:
            room = site.room_of(d.id)
            subjects = {room.id} if room else set()
            if d.id in supply_devices:
                subjects.add(SUPPLY)
            self._subjects[d.id] = frozenset(subjects)
            for subject in subjects:
                self._members.setdefault(subject, []).append(d.id)
        self._device_index = {d.id: i for i, d in enumerate(site.devices)}
        self._room_index = {r.id: i for i, r in enumerate(site.rooms)}
        # Views are pure functions of (state, now), and `now` only matters through staleness: a view
        # is kept, as (view, computed at, valid until), from the `now` it was computed at until its
        # first good value goes stale or a change touches its subject (`_invalidate`).
        self._room_views: dict[str, tuple[RoomView, datetime, datetime]] = {}
        self._supply_view: tuple[SupplyView, datetime, datetime] | None = None
        self._valid_until = _FOREVER  # while a view is computed: when its first good value goes stale
        # Each room's devices by what they are: "ac", "occupancy", "contact", "light", "plug", "other".
        self._rooms: dict[str, tuple[Room, dict[str, tuple[str, ...]]]] = {}
        for room in site.rooms:
            by_class: dict[str, list[str]] = {}
            for dev_id in room.devices:
                by_class.setdefault(self._class.get(dev_id, "other"), []).append(dev_id)
            self._rooms[room.id] = (room, {k: tuple(v) for k, v in by_class.items()})
        # Which switch reports each grid source's state, and at which position it sits.
        grid_ids = {s.id for s in site.sources}
        self._switch_slot: dict[str, tuple[str, str]] = {}
        self._position_source: dict[str, dict[int, str]] = {}
        for t in site.transfer_switches:
            grid = [s for s in t.sources if s in grid_ids][:2]
            self._position_source[t.id] = dict(zip((POS_I, POS_II), grid, strict=False))
            if t.device is None:
                continue
            for slot, src in zip(("source1_state", "source2_state"), grid, strict=False):
                self._switch_slot.setdefault(src, (t.device, slot))
        self._transfers = TransferDetector(
            {t.id: t.sources[0] for t in site.transfer_switches}, site.site.allowed_interruption_s
        )
        self._ended: list[Transfer] = []
        # when a switch's load was last fed again after an interruption (readings' time), if ever
        self.supply_restored_at: datetime | None = None

    # -- ingest ---------------------------------------------------------------------------

    def apply(self, reading: Reading) -> frozenset[str]:
        """Take one reading; return the subjects (room ids, SUPPLY) whose view may have changed."""
        subjects = self._take(reading)
        if subjects:
            self._track(self._timed_by(reading, subjects), reading.ts)
        return subjects

    def apply_all(self, readings: Iterable[Reading]) -> set[str]:
        """Take readings in order as `apply` does; return the subjects whose view may have changed.

        Conditions are timed once per instant (the readings of one message or one poll share a
        timestamp), on the state the whole instant left rather than on each step of it.
        """
        touched: set[str] = set()
        timed: set[str] = set()
        instant: datetime | None = None
        for reading in readings:
            if reading.ts != instant:
                if timed and instant is not None:
                    self._track(timed, instant)
                    timed = set()
                instant = reading.ts
            subjects = self._take(reading)
            if subjects:
                touched |= subjects
                timed |= self._timed_by(reading, subjects)
        if timed and instant is not None:
            self._track(timed, instant)
        return touched

    def _take(self, reading: Reading) -> frozenset[str]:
        subjects = self._subjects.get(reading.device)
        if subjects is None:
            return frozenset()  # not a device of this site
        key = (reading.device, reading.point)
        old = self._latest.get(key)
        if old is not None and reading.ts < old.ts:
            return frozenset()  # a late duplicate never rolls the state back
        self._latest[key] = reading
        seen = self._last_seen.get(reading.device)
        if seen is None or reading.ts > seen:
            self._last_seen[reading.device] = reading.ts
        self._invalidate(subjects)
        return subjects

    def _timed_by(self, reading: Reading, subjects: frozenset[str]) -> frozenset[str]:
        """The subjects whose timed conditions this reading can change.

        A room's conditions rest on its lights' `on`, its sensors' `occupancy`, `illuminance` and `contact` and
        its ACs' `system_mode`; any other point (power, temperature, energy, ...) cannot make them
        hold or end. Staleness only ever makes a condition unknown, which changes no mark.
        """
        if reading.point in self._condition_points[reading.device]:
            return subjects
        return subjects & _SUPPLY_ONLY

    def set_online(self, device: str, online: bool, ts: datetime) -> frozenset[str]:
        """Record a driver's online/offline report; return the subjects to re-evaluate."""
        if device not in self._subjects:
            return frozenset()
        old = self._online.get(device)
        if old is not None and ts < old[1]:
            return frozenset()
        self._online[device] = (online, ts)
        self._invalidate(self._subjects[device])
        self._track(self._subjects[device], ts)
        return self._subjects[device] | {device}

    def _invalidate(self, subjects: frozenset[str]) -> None:
        for subject in subjects:
            if subject == SUPPLY:
                self._supply_view = None
            else:
                self._room_views.pop(subject, None)

    def subjects_of(self, device: str) -> frozenset[str]:
        """The view subjects (room id, SUPPLY) a device feeds."""
        return self._subjects.get(device, frozenset())

    def devices_in(self, subjects: Iterable[str]) -> list[str]:
        """Device ids that are among `subjects` or feed one of them, in site order."""
        found = {s for s in subjects if s in self._device_index}
        for s in subjects:
            found.update(self._members.get(s, ()))
        return sorted(found, key=self._device_index.__getitem__)

    def rooms_in(self, subjects: Iterable[str]) -> list[Room]:
        """The rooms among `subjects`, in site order."""
        ids = sorted((s for s in subjects if s in self._room_index), key=self._room_index.__getitem__)
        return [self._rooms[i][0] for i in ids]

    def take_transfers(self) -> list[Transfer]:
        """The source transfers that ended since the last call, oldest first."""
        ended, self._ended = self._ended, []
        return ended

    def since(self, subject: str, condition: str) -> datetime | None:
        """When `condition` (LIT_EMPTY, UNPOWERED, ...) last became true for `subject`, if it holds."""
        return self._since.get((subject, condition))

    # -- points and devices -----------------------------------------------------------------

    def point(self, device: str, point: str, now: datetime) -> PointState | None:
        """The latest value of a point with its quality at `now`, or None if never read."""
        r = self._latest.get((device, point))
        return None if r is None else self._point_state(r, now)

    def points(self, now: datetime) -> list[PointState]:
        """Every point read so far, by device and point name."""
        return [self._point_state(self._latest[key], now) for key in self._keys()]

    def point_rows(self, now: datetime, device: str | None = None) -> list[dict[str, object]]:
        """GET /api/state's items: `points` as dicts, of one device or all, `ts` left a datetime.

        Built straight from the readings: a PointState per point first would cost as much again.
        """
        rows: list[dict[str, object]] = []
        for key in self._keys():
            if device is not None and key[0] != device:
                continue
            r = self._latest[key]
            quality = self._quality(r, now).value
            rows.append(
                {"device": r.device, "point": r.point, "value": r.value, "unit": r.unit, "ts": r.ts, "quality": quality}
            )
        return rows

    def _keys(self) -> list[tuple[str, str]]:
        if len(self._sorted) != len(self._latest):  # keys are only ever added
            self._sorted = sorted(self._latest)
        return self._sorted

    def _point_state(self, r: Reading, now: datetime) -> PointState:
        return PointState(
            device=r.device, point=r.point, value=r.value, unit=r.unit, ts=r.ts, quality=self._quality(r, now)
        )

    def devices(self, only: Iterable[str] | None = None) -> list[DeviceView]:
        """Every device of the site (or those of `only`, in that order) with its link state (GET /api/devices)."""
        out = []
        for d in self.site.devices if only is None else (self._devices[i] for i in only):
            status = self._online.get(d.id)
            last_seen = self._last_seen.get(d.id)
            out.append(
                DeviceView(
                    id=d.id,
                    profile=d.profile,
                    driver=d.driver,
                    # Before any report from the driver, a device is online if it has been heard.
                    online=status[0] if status else last_seen is not None,
                    last_seen=last_seen,
                    status_since=status[1] if status else None,
                )
            )
        return out

    def online(self, device: str) -> bool | None:
        """What the driver last reported (None: no report yet)."""
        status = self._online.get(device)
        return status[0] if status else None

    def _max_age(self, device: str, point: str) -> timedelta:
        measured, state = self._age[device]
        return state if point in self._state_points[device] else measured

    def _quality(self, r: Reading, now: datetime) -> Quality:
        if r.quality is not Quality.good:
            return r.quality
        status = self._online.get(r.device)
        if status is not None and not status[0]:
            return Quality.stale
        max_age = self._max_age(r.device, r.point)
        if now - r.ts > max_age:
            return Quality.stale
        expires = r.ts + max_age
        if expires < self._valid_until:
            self._valid_until = expires
        return Quality.good

    def _good(self, device: str | None, point: str, now: datetime) -> Value:
        if device is None:
            return None
        r = self._latest.get((device, point))
        if r is None or self._quality(r, now) is not Quality.good:
            return None
        return r.value

    def _num(self, device: str | None, point: str, now: datetime) -> float | None:
        v = self._good(device, point, now)
        if isinstance(v, bool) or not isinstance(v, int | float):
            return None
        return float(v)

    def _int(self, device: str | None, point: str, now: datetime) -> int | None:
        v = self._num(device, point, now)
        return int(v) if v is not None and v.is_integer() else None

    def _bool(self, device: str | None, point: str, now: datetime) -> bool | None:
        v = self._good(device, point, now)
        return v if isinstance(v, bool) else None

    def _str(self, device: str | None, point: str, now: datetime) -> str | None:
        v = self._good(device, point, now)
        return v if isinstance(v, str) else None

    # -- rooms ----------------------------------------------------------------------------

    def room(self, room_id: str, now: datetime) -> RoomView:
        """The derived view of one room (KeyError if the site has no such room)."""
        cached = self._room_views.get(room_id)
        if cached is not None and cached[1] <= now < cached[2]:
            return cached[0]
        self._valid_until = _FOREVER
        view = self._room(room_id, now)
        self._room_views[room_id] = (view, now, self._valid_until)
        return view

    def _room(self, room_id: str, now: datetime) -> RoomView:
        room, by_class = self._rooms[room_id]
        acs = tuple(self._ac(d, now) for d in by_class.get("ac", ()))
        plugs = tuple(
            PlugView(
                device=d,
                role=self._devices[d].role,
                on=self._bool(d, "on", now),
                power_w=self._num(d, "power", now),
            )
            for d in by_class.get("plug", ())
        )
        lights = by_class.get("light", ())
        sensors = by_class.get("occupancy", ())
        contacts = by_class.get("contact", ())
        temps = [a.temperature_c for a in acs if a.temperature_c is not None]
        return RoomView(
            id=room.id,
            name=room.name,
            department=room.department,
            kind=room.kind.value,
            occupied=self._occupied(sensors, now),
            lights_on=self._lights_on(lights, now),
            temperature_c=sum(temps) / len(temps) if temps else None,
            ac=acs[0] if acs else None,
            acs=acs,
            plugs=plugs,
            lights=lights,
            sensors=sensors,
            contacts=contacts,
            plugs_w=_sum_known(p.power_w for p in plugs),
            power_w=_sum_known(self._num(d, "power", now) for d in room.devices),
            door_open=self._door_open(contacts, now),
            illuminance_lx=self._illuminance(sensors, now),
        )

    def _occupied(self, sensors: Iterable[str], now: datetime) -> bool | None:
        return tri_any(self._bool(d, "occupancy", now) for d in sensors)

    def _illuminance(self, sensors: Iterable[str], now: datetime) -> float | None:
        known = [lx for lx in (self._num(d, "illuminance", now) for d in sensors) if lx is not None]
        return min(known) if known else None

    def _lights_on(self, lights: Iterable[str], now: datetime) -> bool | None:
        return tri_any(self._bool(d, "on", now) for d in lights)

    def _door_open(self, contacts: Iterable[str], now: datetime) -> bool | None:
        return tri_any(tri_not(self._bool(d, "contact", now)) for d in contacts)  # contact true = closed

    def _ac_on(self, device: str, now: datetime) -> bool | None:
        mode = self._str(device, "system_mode", now)
        return None if mode is None else mode != "off"

    def rooms(self, now: datetime) -> list[RoomView]:
        """Every room's view, in site-file order."""
        return [self.room(r.id, now) for r in self.site.rooms]

    def _ac(self, device: str, now: datetime) -> AcView:
        mode = self._str(device, "system_mode", now)
        running = self._str(device, "running_state", now)
        cooling_sp = self._num(device, "cooling_setpoint", now)
        heating_sp = self._num(device, "heating_setpoint", now)
        return AcView(
            device=device,
            role=self._devices[device].role,
            on=self._ac_on(device, now),
            mode=mode,
            setpoint_c=heating_sp if mode == "heat" else cooling_sp,
            cooling_setpoint_c=cooling_sp,
            heating_setpoint_c=heating_sp,
            temperature_c=self._num(device, "local_temperature", now),
            cooling=_doing("cool", mode, running, _COOL_MODES),
            heating=_doing("heat", mode, running, _HEAT_MODES),
        )

    # -- supply ---------------------------------------------------------------------------

    def supply(self, now: datetime) -> SupplyView:
        """The derived view of the supply side."""
        cached = self._supply_view
        if cached is not None and cached[1] <= now < cached[2]:
            return cached[0]
        self._valid_until = _FOREVER
        view = self._supply(now)
        self._supply_view = (view, now, self._valid_until)
        return view

    def _supply(self, now: datetime) -> SupplyView:
        sources = tuple(self._source(s.id, s.meter, now) for s in self.site.sources)
        generators = tuple(self._generator(g.id, g.device, g.meter, now) for g in self.site.generators)
        by_source = {s.id: s for s in sources}
        by_gen = {g.id: g for g in generators}
        switches = tuple(
            self._switch(t.id, t.device, t.sources, by_source, by_gen, now) for t in self.site.transfer_switches
        )
        return SupplyView(
            sources=sources,
            transfer_switches=switches,
            generators=generators,
            load_kw=self._load_kw(switches, by_source, by_gen),
        )

    def _source(self, source_id: str, meter: str | None, now: datetime) -> SourceView:
        present: list[bool] = []
        available: list[bool] = []
        slot = self._switch_slot.get(source_id)
        code = self._int(slot[0], slot[1], now) if slot else None
        if code is not None:
            present.append(code >= SOURCE_PRESENT)
            available.append(code >= SOURCE_AVAILABLE)
        volts = self._num(meter, "voltage_l1", now)
        if volts is None:
            volts = self._num(meter, "voltage", now)  # single-phase meters
        if volts is not None:
            there = volts >= PRESENT_FRACTION * NOMINAL_LN_V
            present.append(there)
            available.append(there)
        watts = self._num(meter, "power", now)
        # Every declared reporter must speak and agree: one saying no decides, a silent one makes it unknown.
        silent = (slot is not None and code is None) or (meter is not None and volts is None)
        return SourceView(
            id=source_id,
            available=False if not all(available) else None if silent or not available else True,
            present=all(present) if present else None,
            voltage_v=volts,
            power_kw=None if watts is None else watts / 1000.0,
        )

    def _generator(self, gen_id: str, device: str | None, meter: str | None, now: datetime) -> GeneratorView:
        code = self._int(device, "engine_state", now)
        bits = self._int(device, "breaker_status", now)

        def bit(mask: int) -> bool | None:
            return None if bits is None else bool(bits & mask)

        running = None if code is None else code == ENGINE_RUNNING
        available = bit(GEN_AVAILABLE)
        watts = self._num(meter, "power", now)
        if watts is None:
            watts = self._num(device, "power", now)
        state = None
        if code is not None and device is not None:
            state = self._enums.get((device, "engine_state"), {}).get(code, str(code))
        return GeneratorView(
            id=gen_id,
            engine_state=code,
            state=state,
            running=running,
            available=available,
            ready=tri_and(running, available),
            power_kw=None if watts is None else watts / 1000.0,
            breaker_closed=bit(GEN_BREAKER_CLOSED),
            mains_breaker_closed=bit(MAINS_BREAKER_CLOSED),
            demanded=bit(START_DEMAND),
            fail_to_start=bit(FAIL_TO_START),
        )

    def _switch(
        self,
        switch_id: str,
        device: str | None,
        members: list[str],
        sources: dict[str, SourceView],
        generators: dict[str, GeneratorView],
        now: datetime,
    ) -> SwitchView:
        code = self._int(device, "position", now)
        grid_position = self._position_source[switch_id].get(code) if code is not None else None
        known, feeding = self._feeding(
            code, grid_position, [generators[g] for g in members if g in generators], sources
        )
        return SwitchView(id=switch_id, position=feeding, known=known, code=code, grid_position=grid_position)

    @staticmethod
    def _feeding(
        code: int | None, grid_position: str | None, gens: list[GeneratorView], sources: dict[str, SourceView]
    ) -> tuple[bool, str | None]:
        """(known, source feeding the load), by the topology in the module docstring."""
        # The generator's AMF controller puts it on the load: its breaker closed, the mains breaker open.
        for g in gens:
            if g.breaker_closed and g.mains_breaker_closed is False:
                if g.available is None:
                    return False, None
                return True, g.id if g.available else None
        if any(g.breaker_closed is None or g.mains_breaker_closed is None for g in gens):
            return False, None
        if gens and not any(g.mains_breaker_closed for g in gens):
            return True, None
        if code is None:
            return False, None
        if grid_position is None:
            return True, None  # pos 0 or position unknown to the switch itself: nothing feeds the load
        present = sources[grid_position].present
        if present is None:
            return False, None
        return True, grid_position if present else None

    def _load_kw(
        self,
        switches: tuple[SwitchView, ...],
        sources: dict[str, SourceView],
        generators: dict[str, GeneratorView],
    ) -> float | None:
        if not sources and not generators:
            return None
        switched = {s for t in self.site.transfer_switches for s in t.sources}
        feeding = {s for s in sources if s not in switched}  # sources without a switch feed their load directly
        for t in switches:
            if not t.known:
                return None
            if t.position is not None:
                feeding.add(t.position)
        total = 0.0
        for f in feeding:
            kw = sources[f].power_kw if f in sources else generators[f].power_kw
            if kw is None:
                return None
            total += kw
        return total

    # -- condition timing -----------------------------------------------------------------

    def _mark(self, subject: str, condition: str, holds: bool | None, at: datetime) -> None:
        key = (subject, condition)
        if holds is True:
            self._since.setdefault(key, at)
        elif holds is False:
            self._since.pop(key, None)
        # Unknown keeps the mark: a gap in the data neither starts nor ends a condition.

    def _track(self, subjects: Iterable[str], at: datetime) -> None:
        for subject in subjects:
            if subject == SUPPLY:
                self._track_supply(at)
            else:
                # What the room view would say, without building it: this runs once per message.
                by_class = self._rooms[subject][1]
                lit = self._lights_on(by_class.get("light", ()), at)
                self._mark(
                    subject, LIT_EMPTY, tri_and(lit, tri_not(self._occupied(by_class.get("occupancy", ()), at))), at
                )
                ac_on = tri_any(self._ac_on(d, at) for d in by_class.get("ac", ()))
                self._mark(subject, AC_DOOR_OPEN, tri_and(ac_on, self._door_open(by_class.get("contact", ()), at)), at)
                self._track_office(subject, by_class, lit, at)

    def _track_office(self, subject: str, by_class: dict[str, tuple[str, ...]], lit: bool | None, at: datetime) -> None:
        """AC_EMPTY and LIT_DAYLIGHT: the ACs the office rules may look at, the room's own daylight_lux."""
        room = self._rooms[subject][0]
        sensors = by_class.get("occupancy", ())
        if not sensors:
            return
        empty = tri_not(self._occupied(sensors, at))
        acs = [d for d in by_class.get("ac", ()) if self._devices[d].role not in PROTECTED_ROLES]
        if acs and room.kind is not RoomKind.server:
            self._mark(subject, AC_EMPTY, tri_and(tri_any(self._ac_on(d, at) for d in acs), empty), at)
        if by_class.get("light"):
            lux = self._illuminance(sensors, at)
            bright = None if lux is None else lux >= self.site.thresholds_of(room).daylight_lux
            self._mark(subject, LIT_DAYLIGHT, tri_and(lit, bright), at)

    def _track_supply(self, at: datetime) -> None:
        view = self.supply(at)
        for t, conf in zip(view.transfer_switches, self.site.transfer_switches, strict=True):
            ended = self._transfers.observe(t.id, known=t.known, feeding=t.position, at=at)
            if ended is not None:
                self._ended.append(ended)
                if self.supply_restored_at is None or ended.at > self.supply_restored_at:
                    self.supply_restored_at = ended.at
            unpowered = None if not t.known else t.position is None
            self._mark(t.id, UNPOWERED, unpowered, at)
            self._mark(t.id, UNPOWERED_WITH_ALTERNATIVE, tri_and(unpowered, alternative(view, conf.sources)), at)
        for g in view.generators:
            self._mark(g.id, START_PENDING, tri_and(g.demanded, tri_not(g.ready)), at)


def could_feed(view: SupplyView, member: str) -> bool | None:
    """Whether a switch member could feed the load now: a grid source available or a generator ready."""
    source = view.source(member)
    if source is not None:
        return source.available
    gen = view.generator(member)
    return None if gen is None else gen.ready


def alternative(view: SupplyView, members: Iterable[str]) -> bool | None:
    """Whether any of a switch's members could feed the load."""
    return tri_any(could_feed(view, m) for m in members)


def _doing(what: str, mode: str | None, running: str | None, modes: frozenset[str]) -> bool | None:
    """Whether an AC is cooling (heating): its mode says so, or a mode that may do it reports doing it."""
    if mode == "off":
        return False
    if mode == what or running == what:
        return True
    if mode is None or (mode in modes and running is None):
        return None
    return False


def _sum_known(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None
