"""The site file: pydantic models, a line-aware YAML loader and cross-reference checks."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from datetime import date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from drivers.profiles import (
    ProfileError,
    _line_map,  # the key-path -> line map site files share with profiles
    _repeated_keys,
    add_profile_dir,
    known_profiles,
    load_profile,
)
from service.alarms.record import AlarmType
from service.config.credentials import expand_env_refs, redact_url

MAX_SITE_FILE_BYTES = 2_000_000

Id = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")]
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_SPAN = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MONTH_DAY = re.compile(r"^(\d{2})-(\d{2})$")

# What the administration office charges to a room's department (DESIGN §4 `penalties`): one alarm
# lifecycle of these office rules, or a room an after-hours sweep found on (`left_on_after_hours`).
# Data, not code: a new office alarm type becomes a violation by being added here.
VIOLATION_TYPES: tuple[str, ...] = (
    "lit_empty_room",
    "ac_too_cold",
    "ac_heating_too_warm",
    "ac_door_open",
    "high_power_appliance",
    "ac_left_on",
    "lit_in_daylight",
    "left_on_after_hours",
)


class Grade(StrEnum):
    """Important power customer grade (ordinary: ungraded)."""

    special = "special"
    first = "first"
    second = "second"
    temporary = "temporary"
    ordinary = "ordinary"


class DeviceRole(StrEnum):
    """What a device does, which decides whether it may be commanded."""

    lighting = "lighting"
    hvac = "hvac"
    office_equipment = "office_equipment"
    sensor = "sensor"
    critical = "critical"
    life_safety = "life_safety"
    supply = "supply"


PROTECTED_ROLES = frozenset({DeviceRole.critical, DeviceRole.life_safety})
# Profiles of supply-side equipment: a device of one of these, or a device a `sources`,
# `generators` or `transfer_switches` entry names, is supply-side equipment (admin-only commands).
SUPPLY_PROFILES = frozenset({"dse-gencomm", "atys-pm"})


class RoomKind(StrEnum):
    """Kind of room; `server` rooms are never commanded."""

    office = "office"
    meeting = "meeting"
    corridor = "corridor"
    locker = "locker"
    reception = "reception"
    server = "server"
    other = "other"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def parse_hhmm(text: str) -> int:
    """'HH:MM' -> minutes after midnight."""
    m = _HHMM.match(text)
    if not m:
        raise ValueError(f"'{text}' is not a time of day HH:MM")
    return int(m.group(1)) * 60 + int(m.group(2))


def parse_span(text: str) -> tuple[int, int]:
    """'HH:MM-HH:MM' -> (start, end) minutes; end may be before start (wraps midnight)."""
    m = _SPAN.match(text.strip())
    if not m:
        raise ValueError(f"'{text}' is not a span HH:MM-HH:MM")
    start = int(m.group(1)) * 60 + int(m.group(2))
    end = int(m.group(3)) * 60 + int(m.group(4))
    if end > 24 * 60:
        raise ValueError(f"'{text}' ends after 24:00")
    if start == end:
        raise ValueError(f"'{text}' is empty")
    return start, end


def _work_hours(text: str) -> str:
    """Working hours of one day: spans 'HH:MM-HH:MM' separated by commas, none past midnight."""
    for part in text.split(","):
        start, end = parse_span(part)
        if end < start:
            raise ValueError(f"'{part.strip()}' runs past midnight; split it over two days")
    return text


def _makeup_hours(text: str) -> str:
    """Hours of a make-up workday: spans separated by commas, which may run past midnight (a make-up
    day is one date, with no next day in the file to carry the rest of a night shift)."""
    for part in text.split(","):
        parse_span(part)
    return text


def _hhmm(text: str) -> str:
    parse_hhmm(text)
    return text


def _band_span(text: str) -> str:
    """A tariff band span; it starts and ends on a quarter hour, as energy is priced per 15 minutes."""
    start, end = parse_span(text)
    for minute in (start, end):
        if minute % 15:
            raise ValueError(
                f"'{text}': {minute // 60:02d}:{minute % 60:02d} is not on a quarter hour; "
                "energy is priced in 15-minute intervals, so bands start and end at :00, :15, :30 or :45"
            )
    return text


def _site_date(value: object) -> object:
    # Dates arrive as text (the loader does not let YAML build dates) and are read here, so a
    # date that does not exist is an error with its key path, never a crash in the YAML library.
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str) and _DATE.match(value):
        try:
            return date.fromisoformat(value)
        except ValueError as exc:
            raise ValueError(f"'{value}' is not a date ({exc})") from None
    raise ValueError(f"{value!r} is not a date YYYY-MM-DD")


WorkHours = Annotated[str, AfterValidator(_work_hours)]
MakeupHours = Annotated[str, AfterValidator(_makeup_hours)]
TimeOfDay = Annotated[str, AfterValidator(_hhmm)]
BandSpan = Annotated[str, AfterValidator(_band_span)]
SiteDate = Annotated[date, BeforeValidator(_site_date)]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class Thresholds(_Strict):
    """Office-rule thresholds, defaults as in DESIGN.md §1."""

    empty_room_delay_s: float = Field(300, ge=0)
    cooling_min_c: float = 26
    heating_max_c: float = 17
    door_open_delay_s: float = Field(120, ge=0)
    plug_max_w: float = Field(1200, gt=0)
    override_max_h: float = Field(2, gt=0, le=24)
    empty_ac_delay_s: float = Field(600, ge=0)
    daylight_lux: float = Field(800, gt=0, description="illuminance the room's sensors read, lights on included")
    daylight_delay_s: float = Field(600, ge=0)


class RoomThresholds(_Strict):
    """A room's own thresholds (`rooms[].thresholds`): any key of the site's; the room's value wins."""

    empty_room_delay_s: float | None = Field(None, ge=0)
    cooling_min_c: float | None = None
    heating_max_c: float | None = None
    door_open_delay_s: float | None = Field(None, ge=0)
    plug_max_w: float | None = Field(None, gt=0)
    override_max_h: float | None = Field(None, gt=0, le=24)
    empty_ac_delay_s: float | None = Field(None, ge=0)
    daylight_lux: float | None = Field(None, gt=0)
    daylight_delay_s: float | None = Field(None, ge=0)


def _month_day(text: str) -> str:
    """'MM-DD', a day of the year (02-29 allowed)."""
    m = _MONTH_DAY.match(text)
    try:
        if not m:
            raise ValueError
        date(2000, int(m.group(1)), int(m.group(2)))  # a leap year: 02-29 is a day of some years
    except ValueError:
        raise ValueError(f"'{text}' is not a day of the year MM-DD (e.g. 11-15)") from None
    return text


MonthDay = Annotated[str, AfterValidator(_month_day)]


def in_season(season: tuple[str, str] | list[str] | None, day: date) -> bool:
    """Whether `day` lies in the MM-DD range [first, last], inclusive; the range may wrap the year."""
    if season is None:
        return True
    first, last = (tuple(int(x) for x in part.split("-")) for part in season)
    today = (day.month, day.day)
    if first <= last:
        return first <= today <= last
    return today >= first or today <= last


class SiteInfo(_Strict):
    """The `site:` block."""

    id: Id
    name: str
    timezone: str = "Asia/Shanghai"
    grade: Grade = Grade.ordinary
    allowed_interruption_s: float = Field(gt=0)
    security_load_kw: float = Field(0, ge=0)
    peak_load_kw: float | None = Field(None, gt=0, description="site peak load; sources must carry it alone")
    interlock: Literal["electrical", "mechanical", "none"] = "none"
    thresholds: Thresholds = Thresholds()
    central_heating: bool = Field(False, description="rooms have central heating (集中供暖); rooms may say otherwise")
    heating_season: tuple[MonthDay, MonthDay] | None = Field(
        None, description="MM-DD first and last day of the heating season, may wrap the year; absent: all year"
    )

    @field_validator("heating_season", mode="before")
    @classmethod
    def _two_days(cls, v: object) -> object:
        if isinstance(v, list | tuple) and len(v) != 2:
            raise ValueError('give the first and the last day, MM-DD, e.g. ["11-15", "03-15"]')
        return v

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone '{v}'") from None
        return v

    @property
    def tz(self) -> ZoneInfo:
        """The site's time zone."""
        return ZoneInfo(self.timezone)


class MqttConfig(_Strict):
    """The `mqtt:` block."""

    url: str = "mqtt://127.0.0.1:1883"

    @field_validator("url")
    @classmethod
    def _scheme(cls, v: str) -> str:
        if not re.match(r"^mqtts?://", v):
            raise ValueError(f"'{redact_url(v)}' is not an mqtt:// or mqtts:// URL")
        return v


class Source(_Strict):
    """A grid supply source (feeder) of the site."""

    id: Id
    substation: str
    bus_section: str = "I"
    voltage_kv: float = Field(gt=0)
    line_type: Literal["cable", "insulated_overhead", "overhead"] = "cable"
    support: str | None = Field(None, description="id of the pole or tower line carrying an overhead circuit")
    capacity_kw: float | None = Field(None, gt=0, description="what the feeder can carry alone")
    meter: Id | None = None
    overhead_reason: str | None = Field(
        None,
        min_length=1,
        description="why an insulated overhead line at <= 10 kV (第七条: only where conditions force it)",
    )


class Generator(_Strict):
    """A standby (emergency) generator."""

    id: Id
    rated_kw: float = Field(gt=0)
    start_limit_s: float = Field(gt=0)
    device: Id | None = None
    meter: Id | None = None


class TransferSwitch(_Strict):
    """An automatic transfer switch; `sources` in order of preference (grid first)."""

    id: Id
    sources: list[Id] = Field(min_length=2)
    device: Id | None = None
    transfer_delay_s: float = Field(3, ge=0)
    retransfer_delay_s: float = Field(30, ge=0)
    mode: Literal["automatic", "manual"] = Field("automatic", description="how the switch-over is made (第六条5)")
    transfer_time_s: float | None = Field(
        None, gt=0, description="declared switch-over time, compared with allowed_interruption_s (第六条5)"
    )


class Department(_Strict):
    """A department: energy is reported per department."""

    id: Id
    name: str
    meter: Id | None = None
    base_load_kw: float = Field(2.0, ge=0)


class Room(_Strict):
    """A room and the devices in it."""

    id: Id
    name: str
    department: Id
    kind: RoomKind = RoomKind.office
    devices: list[Id] = []
    exempt: bool = Field(False, description="never swept after hours")
    central_heating: bool | None = Field(None, description="the site's central_heating unless set")
    thresholds: RoomThresholds = RoomThresholds()


class Device(_Strict):
    """A device read by a driver; `profile` names a file in drivers/profiles/."""

    id: Id
    driver: Literal["modbus", "mqtt"]
    profile: str
    role: DeviceRole = DeviceRole.sensor
    host: str | None = None
    port: int | None = Field(None, ge=1, le=65535)
    unit: int = Field(1, ge=0, le=247)
    poll_s: float = Field(1.0, gt=0, le=3600)
    topic: str | None = None
    rated_kw: float | None = Field(None, gt=0, description="upper bound for energy-counter plausibility")
    appliance: str | None = Field(None, description="what is plugged in (simulator hint): pc, printer, ...")
    approved_w: float | None = Field(
        None, ge=0, description="an approved appliance on this office plug: its limit for high_power_appliance"
    )

    @model_validator(mode="after")
    def _transport(self) -> Device:
        if self.driver == "modbus" and (self.host is None or self.port is None):
            raise ValueError("a modbus device needs host and port")
        if self.driver == "mqtt" and not self.topic:
            raise ValueError("an mqtt device needs topic")
        return self


class Calendar(_Strict):
    """Working hours, holidays, make-up workdays and after-hours sweep times."""

    working_hours: dict[Weekday, WorkHours] = {}
    holidays: list[SiteDate] = []
    workdays: list[SiteDate] = []
    makeup_hours: MakeupHours | None = Field(None, description="hours on make-up workdays (default: Monday's)")
    sweeps: list[TimeOfDay] = []

    @field_validator("workdays")
    @classmethod
    def _not_holidays(cls, v: list[date], info: ValidationInfo) -> list[date]:
        # A field validator, not a model one: it still runs when another calendar key is wrong.
        both = set(info.data.get("holidays") or ()) & set(v)
        if both:
            raise ValueError(f"{min(both)} is both a holiday and a make-up workday")
        return v


class TariffBand(_Strict):
    """One time-of-use price band."""

    name: str
    hours: list[BandSpan] = Field(min_length=1)
    price: float = Field(ge=0)

    def minutes(self) -> Iterator[int]:
        """Every minute of the day this band covers."""
        for span in self.hours:
            s, e = parse_span(span)
            if e > s:
                yield from range(s, e)
            else:
                yield from range(s, 24 * 60)
                yield from range(0, e)


class Tariff(_Strict):
    """Time-of-use tariff; bands cover 24 h without overlap."""

    currency: str = "CNY"
    bands: list[TariffBand] = Field(min_length=1)

    @model_validator(mode="after")
    def _cover_day(self) -> Tariff:
        owner: list[str | None] = [None] * (24 * 60)
        for band in self.bands:
            for minute in band.minutes():
                if owner[minute] is not None:
                    raise ValueError(
                        f"bands '{owner[minute]}' and '{band.name}' overlap at {minute // 60:02d}:{minute % 60:02d}"
                    )
                owner[minute] = band.name
        if None in owner:
            gap = owner.index(None)
            raise ValueError(f"bands leave {gap // 60:02d}:{gap % 60:02d} uncovered; they must cover 24 h")
        return self

    def band_table(self) -> list[str]:
        """Band name for each minute of the day."""
        owner = [""] * (24 * 60)
        for band in self.bands:
            for minute in band.minutes():
                owner[minute] = band.name
        return owner

    def price_of(self, name: str) -> float:
        """Price of a band by name."""
        return next(b.price for b in self.bands if b.name == name)


class Webhook(_Strict):
    """A webhook notification channel; `${NAME}` in its URL is read from the environment (secrets)."""

    url: Annotated[str, Field(pattern=r"^https?://", repr=False)]
    format: Literal["json", "dingtalk", "wecom", "slack"] = "json"

    _secrets = field_validator("url", mode="before")(expand_env_refs)


class EmailChannel(_Strict):
    """An e-mail notification channel; `${NAME}` in its URL is read from the environment (secrets)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    url: Annotated[str, Field(pattern=r"^smtps?://", repr=False)]
    sender: str = Field(alias="from")
    to: list[str] = Field(min_length=1)

    _secrets = field_validator("url", mode="before")(expand_env_refs)


class Notifications(_Strict):
    """Where alarms are sent."""

    webhooks: list[Webhook] = []
    mqtt_topic: str | None = None
    email: EmailChannel | None = None

    @field_validator("mqtt_topic")
    @classmethod
    def _topic(cls, v: str | None) -> str | None:
        if v is not None and (not v or "#" in v or "+" in v):
            raise ValueError(f"'{v}' is not a publishable topic")
        return v


def _alarm_type(name: str) -> str:
    if name not in AlarmType.__members__:
        raise ValueError(f"unknown alarm type '{name}' (known: {', '.join(AlarmType)})")
    return name


AlarmTypeName = Annotated[str, AfterValidator(_alarm_type)]


class AlarmSettings(_Strict):
    """One alarm type's rationalisation (ISA-18.2) in the `alarms:` block; a key left out keeps its default."""

    on_delay_s: float | None = Field(None, ge=0, le=86400, description="how long the condition must hold")
    off_delay_s: float | None = Field(None, ge=0, le=86400, description="how long it must be normal again")
    deadband: float | None = Field(None, ge=0, description="in the unit of the alarm's value")
    severity: Literal["critical", "high", "warning", "low"] | None = None
    enabled: bool | None = None


class Site(_Strict):
    """A whole site file."""

    site: SiteInfo
    mqtt: MqttConfig = MqttConfig()
    sources: list[Source] = []
    generators: list[Generator] = []
    transfer_switches: list[TransferSwitch] = []
    departments: list[Department] = []
    rooms: list[Room] = []
    devices: list[Device] = []
    calendar: Calendar = Calendar()
    tariff: Tariff | None = None
    notifications: Notifications = Notifications()
    penalties: dict[str, Annotated[float, Field(ge=0)]] = Field(
        default_factory=dict, description="fine per violation, in tariff currency units, by violation type"
    )
    profiles_dir: str | None = Field(
        None, description="a directory of extra device profiles (YAML), relative to the site file"
    )
    alarms: dict[AlarmTypeName, AlarmSettings] = {}

    _index: tuple[object, dict[str, Device], object, dict[str, Room]] | None = PrivateAttr(None)
    _thresholds: dict[str, tuple[Room, SiteInfo, Thresholds]] = PrivateAttr(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _supply_role(cls, data: Any) -> Any:
        """Supply-side equipment without an explicit role gets role `supply`, never the default `sensor`."""
        if not isinstance(data, dict) or not isinstance(data.get("devices"), list):
            return data
        named = supply_device_refs(data)
        devices = [
            {**d, "role": DeviceRole.supply.value}
            if isinstance(d, dict)
            and "role" not in d
            and (_text(d, "id") in named or d.get("profile") in SUPPLY_PROFILES)
            else d
            for d in data["devices"]
        ]
        return {**data, "devices": devices}

    def _indexes(self) -> tuple[dict[str, Device], dict[str, Room]]:
        # Built lazily and rebuilt when model_copy(update=...) swaps the device or room list.
        idx = self._index
        if idx is None or idx[0] is not self.devices or idx[2] is not self.rooms:
            devices = {d.id: d for d in self.devices}
            room_of = {dev: room for room in self.rooms for dev in room.devices}
            idx = (self.devices, devices, self.rooms, room_of)
            self._index = idx
        return idx[1], idx[3]

    def device(self, device_id: str) -> Device:
        """A device by id (KeyError if unknown)."""
        return self._indexes()[0][device_id]

    def room_of(self, device_id: str) -> Room | None:
        """The room holding a device, if any."""
        return self._indexes()[1].get(device_id)

    @field_validator("penalties")
    @classmethod
    def _known_violations(cls, v: dict[str, float]) -> dict[str, float]:
        for kind in v:
            if kind not in VIOLATION_TYPES:
                raise ValueError(f"'{kind}' is not a violation type (known: {', '.join(VIOLATION_TYPES)})")
        return v

    def thresholds_of(self, room: Room) -> Thresholds:
        """A room's effective thresholds: the site's, with the room's own values winning."""
        cached = self._thresholds.get(room.id)
        if cached is not None and cached[0] is room and cached[1] is self.site:
            return cached[2]
        own = room.thresholds.model_dump(exclude_none=True)
        effective = self.site.thresholds.model_copy(update=own) if own else self.site.thresholds
        self._thresholds[room.id] = (room, self.site, effective)
        return effective

    def central_heating(self, room: Room) -> bool:
        """Whether a room has central heating (its own `central_heating`, else the site's)."""
        return self.site.central_heating if room.central_heating is None else room.central_heating

    def heating_rule_applies(self, room: Room, day: date) -> bool:
        """The 17 °C rule's condition: a room with central heating, on a day in the heating season."""
        return self.central_heating(room) and in_season(self.site.heating_season, day)

    def plug_limit_w(self, room: Room | None, device: Device) -> float:
        """A plug's limit for high_power_appliance: the room's plug_max_w, raised by an approval."""
        limit = (self.thresholds_of(room) if room else self.site.thresholds).plug_max_w
        return limit if device.approved_w is None else max(limit, device.approved_w)

    def supply_equipment(self) -> dict[str, str]:
        """Supply-side devices -> why each is one (the site-file entry naming it, or its profile)."""
        out: dict[str, str] = {}
        for src in self.sources:
            if src.meter is not None:
                out.setdefault(src.meter, f"meter of source {src.id}")
        for gen in self.generators:
            if gen.device is not None:
                out.setdefault(gen.device, f"controller of generator {gen.id}")
            if gen.meter is not None:
                out.setdefault(gen.meter, f"meter of generator {gen.id}")
        for ts in self.transfer_switches:
            if ts.device is not None:
                out.setdefault(ts.device, f"controller of transfer switch {ts.id}")
        for dev in self.devices:
            if dev.profile in SUPPLY_PROFILES:
                out.setdefault(dev.id, f"profile {dev.profile}")
        return out

    def is_supply_equipment(self, device_id: str) -> bool:
        """Whether commands to this device need an admin and a reason."""
        return device_id in self.supply_equipment()


class SiteError(Exception):
    """A site file that cannot be used; `errors` lists every problem with key path and line."""

    def __init__(self, path: str, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.path = path
        self.errors = errors


KeyPath = tuple[str | int, ...]
Problem = tuple[KeyPath, str]

_YAML_INT = "tag:yaml.org,2002:int"
_YAML_FLOAT = "tag:yaml.org,2002:float"
_YAML_TIMESTAMP = "tag:yaml.org,2002:timestamp"
# YAML 1.1's numbers without its base-60 forms: unquoted 18:30 is the text '18:30', not 1110.
_INT_RE = re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$")
_FLOAT_RE = re.compile(
    r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9_]+(?:[eE][-+][0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)


def _site_resolvers() -> dict[Any, list[tuple[str, re.Pattern[str]]]]:
    # Unquoted dates stay text: the models read them, so 2026-02-30 is an error with a key path
    # rather than a ValueError from inside PyYAML.
    out: dict[Any, list[tuple[str, re.Pattern[str]]]] = {}
    for first, pairs in yaml.SafeLoader.yaml_implicit_resolvers.items():
        kept = []
        for tag, regexp in pairs:
            if tag == _YAML_TIMESTAMP:
                continue
            kept.append((tag, _INT_RE if tag == _YAML_INT else _FLOAT_RE if tag == _YAML_FLOAT else regexp))
        out[first] = kept
    return out


class _SiteLoader(yaml.SafeLoader):
    """SafeLoader that leaves dates and HH:MM as text and turns bad tagged scalars into marked errors."""

    yaml_implicit_resolvers = _site_resolvers()

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, TypeError, OverflowError) as exc:
            # e.g. `!!int abc` or `!!timestamp 2026-02-30`: PyYAML raises a bare ValueError.
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read {node.tag}: {exc}", node.start_mark
            ) from None


def _check_no_alias(node: yaml.Node, seen: set[int]) -> str | None:
    if id(node) in seen:
        return f"line {node.start_mark.line + 1}: YAML anchors and aliases are not allowed in site files"
    seen.add(id(node))
    children: list[yaml.Node] = []
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            children += [k, v]
    elif isinstance(node, yaml.SequenceNode):
        children = list(node.value)
    for child in children:
        err = _check_no_alias(child, seen)
        if err:
            return err
    return None


def fmt_path(path: KeyPath) -> str:
    """('rooms', 3, 'department') -> 'rooms[3].department'."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top)"


def _nearest_line(lines: dict[KeyPath, int], path: KeyPath) -> int | None:
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return lines.get(())


def _pydantic_messages(exc: ValidationError) -> list[Problem]:
    out = []
    for err in exc.errors():
        # A dict key's error is located at the key itself ('[key]' marks it).
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and (p.startswith("function-") or p == "[key]")))
        msg = err["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
            if len(loc) >= 2 and loc[-2] == "thresholds":
                msg += f" (thresholds are {', '.join(Thresholds.model_fields)})"
        elif err["type"] == "missing":
            msg = "required key missing"
        elif err["type"] in ("literal_error", "enum"):
            msg = f"{msg}, got {err.get('input')!r}"
        out.append((loc, msg))
    return out


def _entries(data: Mapping[str, Any], kind: str) -> list[tuple[int, Mapping[str, Any]]]:
    items = data.get(kind)
    if not isinstance(items, list):
        return []
    return [(i, item) for i, item in enumerate(items) if isinstance(item, dict)]


def _text(item: Mapping[str, Any], key: str) -> str | None:
    value = item.get(key)
    return value if isinstance(value, str) else None


def _number(item: Mapping[str, Any], key: str, default: int | None = None) -> int | None:
    value = item.get(key, default)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def supply_device_refs(data: Mapping[str, Any]) -> set[str]:
    """Device ids named by the `sources` (meter), `generators` (device, meter) and `transfer_switches` (device) data."""
    out: set[str] = set()
    for kind, keys in (
        ("sources", ("meter",)),
        ("generators", ("device", "meter")),
        ("transfer_switches", ("device",)),
    ):
        for _, item in _entries(data, kind):
            out.update(ref for key in keys if (ref := _text(item, key)) is not None)
    return out


def cross_check(data: Mapping[str, Any], bad_profiles: Mapping[str, list[str]] | None = None) -> list[Problem]:
    """Uniqueness and references between the parts of a site file.

    `bad_profiles`: problems of the site's own profiles (by name), reported at the devices naming them.

    Works on the parsed mapping, not on the models, so these problems are reported together with
    schema errors: whatever holds a usable id or reference is checked even when other keys of the
    same file (or item) are wrong.
    """
    errors: list[Problem] = []
    kinds = ("sources", "generators", "transfer_switches", "departments", "rooms", "devices")
    ids: dict[str, dict[str, int]] = {}
    for kind in kinds:
        seen = ids[kind] = {}
        for i, item in _entries(data, kind):
            ident = _text(item, "id")
            if ident is None:
                continue
            if ident in seen:
                errors.append(((kind, i, "id"), f"duplicate id '{ident}' (first at {kind}[{seen[ident]}])"))
            else:
                seen[ident] = i
    for i, g in _entries(data, "generators"):
        ident = _text(g, "id")
        if ident is not None and ident in ids["sources"]:
            errors.append((("generators", i, "id"), f"id '{ident}' is also a source id"))
    supply_ids = ids["sources"].keys() | ids["generators"].keys()
    devices: dict[str, Mapping[str, Any]] = {}
    for _, dev in _entries(data, "devices"):
        ident = _text(dev, "id")
        if ident is not None:
            devices.setdefault(ident, dev)

    def need_device(path: KeyPath, item: Mapping[str, Any], key: str, *, meter: bool = False) -> None:
        ref = _text(item, key)
        if ref is None:
            return
        if ref not in devices:
            errors.append(((*path, key), f"unknown device '{ref}'"))
        elif meter and devices[ref].get("driver") != "modbus":
            errors.append(((*path, key), f"meter '{ref}' is not a modbus meter"))

    for i, s in _entries(data, "sources"):
        need_device(("sources", i), s, "meter", meter=True)
    for i, g in _entries(data, "generators"):
        need_device(("generators", i), g, "device")
        need_device(("generators", i), g, "meter", meter=True)
    for i, t in _entries(data, "transfer_switches"):
        need_device(("transfer_switches", i), t, "device")
        refs = t.get("sources")
        if isinstance(refs, list):
            for j, src in enumerate(refs):
                if isinstance(src, str) and src not in supply_ids:
                    errors.append((("transfer_switches", i, "sources", j), f"unknown source or generator '{src}'"))
            if len(set(map(str, refs))) != len(refs):
                errors.append((("transfer_switches", i, "sources"), "a source is listed twice"))
    for i, d in _entries(data, "departments"):
        need_device(("departments", i), d, "meter", meter=True)
    placed: dict[str, str] = {}
    for i, room in _entries(data, "rooms"):
        department = _text(room, "department")
        if department is not None and department not in ids["departments"]:
            errors.append((("rooms", i, "department"), f"unknown department '{department}'"))
        held = room.get("devices")
        for j, dev_id in enumerate(held if isinstance(held, list) else []):
            if not isinstance(dev_id, str):
                continue
            if dev_id not in devices:
                errors.append((("rooms", i, "devices", j), f"unknown device '{dev_id}'"))
            elif dev_id in placed:
                errors.append((("rooms", i, "devices", j), f"device '{dev_id}' is already in room '{placed[dev_id]}'"))
            else:
                placed[dev_id] = _text(room, "id") or f"rooms[{i}]"
    profiles = known_profiles()
    endpoints: dict[tuple[str, int, int], str] = {}
    topics: dict[str, str] = {}
    for i, dev in _entries(data, "devices"):
        ident = _text(dev, "id") or f"devices[{i}]"
        profile, driver = _text(dev, "profile"), dev.get("driver")
        if profile is not None and bad_profiles and profile in bad_profiles:
            errors += [
                (("devices", i, "profile"), f"profile '{profile}' is invalid: {e}") for e in bad_profiles[profile]
            ]
        elif profile is not None and profile not in profiles:
            errors.append(
                (("devices", i, "profile"), f"unknown profile '{profile}' (known: {', '.join(sorted(profiles))})")
            )
        elif profile is not None and driver in ("modbus", "mqtt"):
            try:
                prof = load_profile(profile)
            except ProfileError as exc:
                errors += [(("devices", i, "profile"), f"profile '{profile}' is invalid: {e}") for e in exc.errors]
                continue
            if prof.driver != driver:
                errors.append((("devices", i, "driver"), f"profile '{profile}' is a {prof.driver} profile"))
        host, port, unit = _text(dev, "host"), _number(dev, "port"), _number(dev, "unit", 1)
        if driver == "modbus" and host and port and unit is not None:
            key = (host, port, unit)
            if key in endpoints:
                errors.append((("devices", i, "port"), f"{host}:{port} unit {unit} is also used by '{endpoints[key]}'"))
            endpoints[key] = ident
        if dev.get("approved_w") is not None and dev.get("role") != DeviceRole.office_equipment.value:
            errors.append(
                (("devices", i, "approved_w"), "approved_w applies to office plugs only (role: office_equipment)")
            )
        topic = _text(dev, "topic")
        if topic:
            if topic in topics:
                errors.append((("devices", i, "topic"), f"topic '{topic}' is also used by '{topics[topic]}'"))
            topics[topic] = ident
    return errors


def _yaml_error(name: str, exc: yaml.YAMLError, prefix: str) -> SiteError:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f" ({name}:{mark.line + 1})" if mark is not None else ""
    problem = getattr(exc, "problem", None) or str(exc)
    return SiteError(name, [f"{name}: {prefix}{problem}{where}"])


PROFILES_DIR_ENV = "WATTKEEPER_PROFILES_DIR"


def _add_profiles(data: Mapping[str, Any], base_dir: Path | None, env_dir: str | None) -> dict[str, list[str]]:
    """Register the site's own profile directory (the environment's wins over the site file's)."""
    if env_dir:
        problems = add_profile_dir(Path(env_dir).expanduser())
        return {n: [f"{PROFILES_DIR_ENV}: {m}" for m in msgs] for n, msgs in problems.items()}
    given = data.get("profiles_dir")
    if not isinstance(given, str) or not given:
        return {}
    directory = Path(given).expanduser()
    if not directory.is_absolute() and base_dir is not None:
        directory = base_dir / directory
    return add_profile_dir(directory)


def parse_site(
    text: str, name: str = "site.yaml", *, base_dir: Path | None = None, profiles_dir_env: str | None = None
) -> Site:
    """Parse and validate site-file text; raise SiteError listing every problem, in file order.

    `base_dir` resolves a relative `profiles_dir`; `profiles_dir_env` is WATTKEEPER_PROFILES_DIR.
    """
    if len(text.encode("utf-8", "replace")) > MAX_SITE_FILE_BYTES:
        raise SiteError(name, [f"{name}: larger than {MAX_SITE_FILE_BYTES} bytes; not a site file"])
    loader = _SiteLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:
            # PyYAML parses recursively: a few hundred nested brackets exhaust the stack.
            raise SiteError(name, [f"{name}: nested too deeply; not a site file"]) from None
        except yaml.YAMLError as exc:
            raise _yaml_error(name, exc, "not valid YAML: ") from None
        if node is None:
            raise SiteError(name, [f"{name}: empty file"])
        alias_err = _check_no_alias(node, set())
        if alias_err:
            raise SiteError(name, [f"{name}: {alias_err}"])
        try:
            data = loader.construct_document(node)
        except yaml.YAMLError as exc:
            raise _yaml_error(name, exc, "") from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise SiteError(name, [f"{name}: the top level must be a mapping with a 'site' key"])
    lines: dict[KeyPath, int] = {}
    _line_map(node, (), lines)
    repeated: list[tuple[KeyPath, str, int]] = []
    _repeated_keys(node, (), repeated)

    site: Site | None = None
    schema: list[Problem] = []
    try:
        site = Site.model_validate(data)
    except ValidationError as exc:
        schema = _pydantic_messages(exc)
    # A reference problem at a key the schema already refused would say the same thing twice.
    refused = {path for path, _ in schema}
    bad_profiles = _add_profiles(data, base_dir, profiles_dir_env)
    checked = cross_check(data, bad_profiles)
    named = {_text(d, "profile") for _, d in _entries(data, "devices")}
    # A bad added profile a device names is reported at that device (cross_check); the others here.
    at_dir: KeyPath = () if profiles_dir_env else ("profiles_dir",)
    checked += [(at_dir, msg) for n, msgs in bad_profiles.items() if n not in named for msg in msgs]
    problems: list[tuple[KeyPath, str, int | None]] = [(path, msg, line) for path, msg, line in repeated]
    problems += [(path, msg, _nearest_line(lines, path)) for path, msg in schema]
    problems += [(path, msg, _nearest_line(lines, path)) for path, msg in checked if path not in refused]
    if problems or site is None:
        problems.sort(key=lambda p: p[2] or 0)
        raise SiteError(
            name, [f"{fmt_path(path)}: {msg}" + (f" ({name}:{line})" if line else "") for path, msg, line in problems]
        )
    return site


def load_site(path: str | Path) -> Site:
    """Read and validate a site file."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if not p.is_file():
            raise SiteError(str(p), [f"{p}: not a file"])
        if size > MAX_SITE_FILE_BYTES:
            raise SiteError(str(p), [f"{p}: larger than {MAX_SITE_FILE_BYTES} bytes; not a site file"])
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SiteError(str(p), [f"{p}: no such file"]) from None
    except UnicodeDecodeError:
        raise SiteError(str(p), [f"{p}: not UTF-8 text"]) from None
    except IsADirectoryError:
        raise SiteError(str(p), [f"{p}: not a file"]) from None
    except OSError as exc:  # permission denied, a file where a directory should be, ...
        raise SiteError(str(p), [f"{p}: cannot read: {exc.strerror or exc}"]) from None
    from service.config.settings import setting_from_env

    return parse_site(text, p.name, base_dir=p.parent, profiles_dir_env=setting_from_env(PROFILES_DIR_ENV))


DEMO_SITE = Path(__file__).resolve().parents[2] / "deploy" / "sites" / "demo.yaml"
