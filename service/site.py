"""The site file: pydantic models, a line-aware YAML loader and cross-reference checks."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from drivers.profiles import known_profiles, load_profile
from service.credentials import expand_env_refs, redact_url

MAX_SITE_FILE_BYTES = 2_000_000

Id = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")]
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_SPAN = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")


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


PROTECTED_ROLES = frozenset({DeviceRole.critical, DeviceRole.life_safety})


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


class Thresholds(_Strict):
    """Office-rule thresholds, defaults as in DESIGN.md §1."""

    empty_room_delay_s: float = Field(300, ge=0)
    cooling_min_c: float = 26
    heating_max_c: float = 17
    door_open_delay_s: float = Field(120, ge=0)
    plug_max_w: float = Field(1200, gt=0)
    override_max_h: float = Field(2, gt=0, le=24)


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

    @model_validator(mode="after")
    def _transport(self) -> Device:
        if self.driver == "modbus" and (self.host is None or self.port is None):
            raise ValueError("a modbus device needs host and port")
        if self.driver == "mqtt" and not self.topic:
            raise ValueError("an mqtt device needs topic")
        return self


class Calendar(_Strict):
    """Working hours, holidays, make-up workdays and after-hours sweep times."""

    working_hours: dict[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"], str] = {}
    holidays: list[date] = []
    workdays: list[date] = []
    makeup_hours: str | None = Field(None, description="hours on make-up workdays (default: Monday's)")
    sweeps: list[str] = []

    @field_validator("working_hours")
    @classmethod
    def _spans(cls, v: dict[str, str]) -> dict[str, str]:
        for day, text in v.items():
            for part in text.split(","):
                try:
                    s, e = parse_span(part)
                except ValueError as exc:
                    raise ValueError(f"{day}: {exc}") from None
                if e < s:
                    raise ValueError(f"{day}: '{part}' wraps midnight; split it over two days")
        return v

    @field_validator("sweeps")
    @classmethod
    def _sweeps(cls, v: list[str]) -> list[str]:
        for t in v:
            parse_hhmm(t)
        return v

    @field_validator("makeup_hours")
    @classmethod
    def _makeup(cls, v: str | None) -> str | None:
        if v is not None:
            parse_span(v)
        return v

    @model_validator(mode="after")
    def _disjoint(self) -> Calendar:
        both = set(self.holidays) & set(self.workdays)
        if both:
            raise ValueError(f"{min(both)} is both a holiday and a make-up workday")
        return self


class TariffBand(_Strict):
    """One time-of-use price band."""

    name: str
    hours: list[str] = Field(min_length=1)
    price: float = Field(ge=0)

    @field_validator("hours")
    @classmethod
    def _spans(cls, v: list[str]) -> list[str]:
        for span in v:
            parse_span(span)
        return v

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

    _index: tuple[object, dict[str, Device], object, dict[str, Room]] | None = PrivateAttr(None)

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


class SiteError(Exception):
    """A site file that cannot be used; `errors` lists every problem with key path and line."""

    def __init__(self, path: str, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.path = path
        self.errors = errors


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that refuses aliases and remembers the line of every key path."""


def _line_map(node: yaml.Node, path: tuple[str | int, ...], out: dict[tuple[str | int, ...], int]) -> None:
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            key = k.value if isinstance(k, yaml.ScalarNode) else str(k.value)
            out[(*path, key)] = k.start_mark.line + 1
            _line_map(v, (*path, key), out)
            out[(*path, key)] = k.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_map(item, (*path, i), out)


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


def fmt_path(path: tuple[str | int, ...]) -> str:
    """('rooms', 3, 'department') -> 'rooms[3].department'."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top)"


def _nearest_line(lines: dict[tuple[str | int, ...], int], path: tuple[str | int, ...]) -> int | None:
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return lines.get(())


def _pydantic_messages(exc: ValidationError) -> list[tuple[tuple[str | int, ...], str]]:
    out = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        msg = err["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "required key missing"
        elif err["type"] in ("literal_error", "enum"):
            msg = f"{msg}, got {err.get('input')!r}"
        out.append((loc, msg))
    return out


def cross_check(site: Site) -> list[tuple[tuple[str | int, ...], str]]:
    """Uniqueness and references between the parts of a site file."""
    errors: list[tuple[tuple[str | int, ...], str]] = []
    kinds: dict[str, list[Any]] = {
        "sources": site.sources,
        "generators": site.generators,
        "transfer_switches": site.transfer_switches,
        "departments": site.departments,
        "rooms": site.rooms,
        "devices": site.devices,
    }
    for kind, items in kinds.items():
        seen: dict[str, int] = {}
        for i, item in enumerate(items):
            if item.id in seen:
                errors.append(((kind, i, "id"), f"duplicate id '{item.id}' (first at {kind}[{seen[item.id]}])"))
            else:
                seen[item.id] = i
    supply_ids = {s.id for s in site.sources} | {g.id for g in site.generators}
    clash = {s.id for s in site.sources} & {g.id for g in site.generators}
    for i, g in enumerate(site.generators):
        if g.id in clash:
            errors.append((("generators", i, "id"), f"id '{g.id}' is also a source id"))
    devices = {d.id: d for d in site.devices}
    departments = {d.id for d in site.departments}
    meters = {d.id for d in site.devices if d.driver == "modbus"}

    def need_device(path: tuple[str | int, ...], ref: str | None, what: str, meter: bool = False) -> None:
        if ref is None:
            return
        if ref not in devices:
            errors.append((path, f"unknown device '{ref}'"))
        elif meter and ref not in meters:
            errors.append((path, f"{what} '{ref}' is not a modbus meter"))

    for i, s in enumerate(site.sources):
        need_device(("sources", i, "meter"), s.meter, "meter", meter=True)
    for i, g in enumerate(site.generators):
        need_device(("generators", i, "device"), g.device, "device")
        need_device(("generators", i, "meter"), g.meter, "meter", meter=True)
    for i, t in enumerate(site.transfer_switches):
        need_device(("transfer_switches", i, "device"), t.device, "device")
        for j, src in enumerate(t.sources):
            if src not in supply_ids:
                errors.append((("transfer_switches", i, "sources", j), f"unknown source or generator '{src}'"))
        if len(set(t.sources)) != len(t.sources):
            errors.append((("transfer_switches", i, "sources"), "a source is listed twice"))
    for i, d in enumerate(site.departments):
        need_device(("departments", i, "meter"), d.meter, "meter", meter=True)
    placed: dict[str, str] = {}
    for i, room in enumerate(site.rooms):
        if room.department not in departments:
            errors.append((("rooms", i, "department"), f"unknown department '{room.department}'"))
        for j, dev_id in enumerate(room.devices):
            if dev_id not in devices:
                errors.append((("rooms", i, "devices", j), f"unknown device '{dev_id}'"))
            elif dev_id in placed:
                errors.append((("rooms", i, "devices", j), f"device '{dev_id}' is already in room '{placed[dev_id]}'"))
            else:
                placed[dev_id] = room.id
    profiles = known_profiles()
    for i, dev in enumerate(site.devices):
        if dev.profile not in profiles:
            errors.append(
                (
                    ("devices", i, "profile"),
                    f"unknown profile '{dev.profile}' (known: {', '.join(sorted(profiles))})",
                )
            )
            continue
        prof = load_profile(dev.profile)
        if prof.driver != dev.driver:
            errors.append((("devices", i, "driver"), f"profile '{dev.profile}' is a {prof.driver} profile"))
    endpoints: dict[tuple[str, int, int], str] = {}
    for i, dev in enumerate(site.devices):
        if dev.driver == "modbus" and dev.host and dev.port:
            key = (dev.host, dev.port, dev.unit)
            if key in endpoints:
                errors.append(
                    (
                        ("devices", i, "port"),
                        f"{dev.host}:{dev.port} unit {dev.unit} is also used by '{endpoints[key]}'",
                    )
                )
            endpoints[key] = dev.id
    topics: dict[str, str] = {}
    for i, dev in enumerate(site.devices):
        if dev.topic:
            if dev.topic in topics:
                errors.append((("devices", i, "topic"), f"topic '{dev.topic}' is also used by '{topics[dev.topic]}'"))
            topics[dev.topic] = dev.id
    return errors


def parse_site(text: str, name: str = "site.yaml") -> Site:
    """Parse and validate site-file text; raise SiteError listing every problem."""
    if len(text.encode("utf-8", "replace")) > MAX_SITE_FILE_BYTES:
        raise SiteError(name, [f"{name}: larger than {MAX_SITE_FILE_BYTES} bytes; not a site file"])
    try:
        node = yaml.compose(text, Loader=_LineLoader)
    except RecursionError:
        # PyYAML parses recursively: a few hundred nested brackets exhaust the stack.
        raise SiteError(name, [f"{name}: nested too deeply; not a site file"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" ({name}:{mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SiteError(name, [f"{name}: not valid YAML: {problem}{where}"]) from None
    if node is None:
        raise SiteError(name, [f"{name}: empty file"])
    alias_err = _check_no_alias(node, set())
    if alias_err:
        raise SiteError(name, [f"{name}: {alias_err}"])
    try:
        data = _LineLoader(text).get_single_data()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f" ({name}:{mark.line + 1})" if mark is not None else ""
        raise SiteError(name, [f"{name}: {getattr(exc, 'problem', None) or exc}{where}"]) from None
    if not isinstance(data, dict):
        raise SiteError(name, [f"{name}: the top level must be a mapping with a 'site' key"])
    lines: dict[tuple[str | int, ...], int] = {}
    _line_map(node, (), lines)

    def render(items: list[tuple[tuple[str | int, ...], str]]) -> list[str]:
        out = []
        for path, msg in items:
            line = _nearest_line(lines, path)
            where = f" ({name}:{line})" if line else ""
            out.append(f"{fmt_path(path)}: {msg}{where}")
        return out

    try:
        site = Site.model_validate(data)
    except ValidationError as exc:
        raise SiteError(name, render(_pydantic_messages(exc))) from None
    problems = cross_check(site)
    if problems:
        raise SiteError(name, render(problems))
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
    return parse_site(text, p.name)


DEMO_SITE = Path(__file__).resolve().parent.parent / "deploy" / "sites" / "demo.yaml"
