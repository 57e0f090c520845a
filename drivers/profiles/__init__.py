"""Device profiles: YAML data describing register maps and MQTT payloads, validated on load."""

from __future__ import annotations

import logging
import re
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

PROFILE_DIR = Path(__file__).resolve().parent

ModbusType = Literal["int16", "uint16", "int32", "uint32", "float32", "float64"]
REGISTER_COUNT: dict[str, int] = {
    "int16": 1,
    "uint16": 1,
    "int32": 2,
    "uint32": 2,
    "float32": 2,
    "float64": 4,
}
Order = Literal["big", "little"]
PointKind = Literal["gauge", "counter", "state"]
KeyPath = tuple[str | int, ...]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _fits_type(value: int, dtype: str) -> bool:
    """A sentinel may be written as the unsigned bit pattern or as the signed value."""
    bits = 16 * REGISTER_COUNT[dtype]
    return -(1 << (bits - 1)) <= value < (1 << bits)


def _check_unit(name: str, kind: str, numeric: bool, given: bool) -> None:
    """A number is meaningless without its unit: a gauge or counter names it, `unit: ""` when dimensionless."""
    if numeric and kind != "state" and not given:
        raise ValueError(f"point '{name}': give its unit (unit: \"\" if it has none, like a power factor)")


def _check_delta_names(points: list[tuple[str, str]]) -> None:
    """Counters also emit `<name>_delta`; no point may already carry that name."""
    names = {name for name, _ in points}
    for name, kind in points:
        if kind == "counter" and f"{name}_delta" in names:
            raise ValueError(f"point '{name}_delta' clashes with the delta of counter '{name}'")


class KeyEffect(_Strict):
    """What shows that a control key took effect: `point` reads one of `values` (after `mask`, if given)."""

    point: str
    values: list[int] = Field(min_length=1)
    mask: int | None = Field(None, ge=1, le=0xFFFFFFFF, description="compare only these bits of the point")

    def shows(self, value: object) -> bool:
        """Whether a value read from `point` shows the effect."""
        if isinstance(value, bool) or not isinstance(value, int):
            return False
        return (value & self.mask if self.mask is not None else value) in self.values


class ModbusPoint(_Strict):
    """One value in a register map. `address` is the 0-based PDU address."""

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
    table: Literal["input", "holding"]
    address: int = Field(ge=0, le=65535)
    type: ModbusType
    scale: float = 1.0
    offset: float = 0.0
    unit: str = ""
    kind: PointKind = "gauge"
    writable: bool = False
    word_order: Order | None = None
    byte_order: Order | None = None
    sentinels: list[int] = Field([], description="raw values meaning 'not available' for this point")
    write_as: Literal["value", "complement_pair"] = Field(
        "value", description="complement_pair: write [v, 65535-v] to address, address+1 (GenComm keys)"
    )
    enum: dict[int, str] = Field({}, description="meaning of state codes, for documentation and display")
    effects: dict[int, KeyEffect] = Field(
        {}, description="complement_pair keys: per key, the point and value that show it took effect"
    )
    rollover: float | None = Field(
        None, gt=0, description="counters: the value at which the counter wraps to 0, if not the register's range"
    )
    description: str = ""

    @property
    def count(self) -> int:
        """Registers occupied (a complement pair is written over two)."""
        if self.write_as == "complement_pair":
            return 2
        return REGISTER_COUNT[self.type]

    @property
    def resolution(self) -> float:
        """The smallest step an integer register can show (one count, in the point's unit); 0 for floats."""
        return 0.0 if self.type.startswith("float") else abs(self.scale)

    @property
    def polled(self) -> bool:
        """Whether the engine reads this point every poll (control keys are write-only)."""
        return self.write_as != "complement_pair"

    @property
    def wraps_at(self) -> float | None:
        """Where a counter rolls over to 0: `rollover` if declared, else an integer register's range
        times the scale (a float register has no fixed wrap)."""
        if self.rollover is not None:
            return self.rollover
        if self.type.startswith("float"):
            return None
        return float(1 << (16 * REGISTER_COUNT[self.type])) * abs(self.scale)

    @model_validator(mode="after")
    def _fits(self) -> ModbusPoint:
        if self.address + self.count > 65536:
            raise ValueError(f"point '{self.name}' runs past register 65535")
        if self.write_as == "complement_pair" and (self.type != "uint16" or not self.writable):
            raise ValueError(f"point '{self.name}': complement_pair needs a writable uint16")
        if self.writable and self.table != "holding":
            raise ValueError(f"point '{self.name}': only holding registers can be written")
        if self.scale == 0:
            raise ValueError(f"point '{self.name}': scale must not be 0")
        bad = [s for s in self.sentinels if not _fits_type(s, self.type)]
        if bad:
            raise ValueError(f"point '{self.name}': sentinel {bad[0]} does not fit a {self.type}")
        if self.write_as == "complement_pair":
            if not self.enum:
                raise ValueError(f"point '{self.name}': a complement_pair key needs its keys listed in enum")
            missing = sorted(set(self.enum) - set(self.effects))
            if missing:
                raise ValueError(f"point '{self.name}': key {missing[0]} needs an effect (the point that shows it)")
        if self.effects and self.write_as != "complement_pair":
            raise ValueError(f"point '{self.name}': effects are for complement_pair keys")
        unknown = sorted(set(self.effects) - set(self.enum))
        if unknown:
            raise ValueError(f"point '{self.name}': effect for key {unknown[0]}, which enum does not list")
        if self.rollover is not None and self.kind != "counter":
            raise ValueError(f"point '{self.name}': rollover is for counters")
        _check_unit(self.name, self.kind, self.polled, "unit" in self.model_fields_set)
        return self


SuggestedRole = Literal["lighting", "hvac", "office_equipment", "sensor", "critical", "life_safety"]


class RegisterCheck(_Strict):
    """A register a device of this model answers, and what it may hold there (for `wattkeeper discover`).

    `equals`: identification codes (the check identifies the model); else `min`..`max`, after `scale`,
    is the plausible range of a measurement. Probing reads with FC03/FC04 only.
    """

    table: Literal["input", "holding"]
    address: int = Field(ge=0, le=65535)
    type: ModbusType
    scale: float = 1.0
    equals: list[int] = []
    min: float | None = None
    max: float | None = None
    description: str = ""

    @model_validator(mode="after")
    def _bounded(self) -> RegisterCheck:
        if not self.equals and (self.min is None or self.max is None):
            raise ValueError(f"register check at {self.address}: give equals, or both min and max")
        if self.equals and (self.min is not None or self.max is not None):
            raise ValueError(f"register check at {self.address}: equals and min/max exclude each other")
        if self.address + REGISTER_COUNT[self.type] > 65536:
            raise ValueError(f"register check at {self.address} runs past register 65535")
        return self


class Discovery(_Strict):
    """What a device of this model says about itself, so `wattkeeper discover` can recognise it."""

    role: SuggestedRole | None = Field(None, description="the role a discovered device is suggested")
    z2m_models: list[str] = Field([], description="Zigbee2MQTT definition.model ids of this model")
    z2m_exposes: list[str] = Field([], description="exposed properties a compatible Zigbee device has, all of them")
    tasmota_modules: list[str] = Field([], description="Tasmota module names (discovery `md`)")
    tasmota_sensors: list[str] = Field([], description="sensor groups in the discovery `sensors` payload (ENERGY)")
    shelly_apps: list[str] = Field([], description="Shelly.GetDeviceInfo `app` values")
    shelly_models: list[str] = Field([], description="Shelly.GetDeviceInfo `model` values")
    registers: list[RegisterCheck] = Field([], description="Modbus register signature: every check must hold")

    def uses(self) -> set[str]:
        """Which kinds of evidence this block declares."""
        kinds = {
            "zigbee2mqtt": bool(self.z2m_models or self.z2m_exposes),
            "tasmota": bool(self.tasmota_modules or self.tasmota_sensors),
            "shelly-gen2": bool(self.shelly_apps or self.shelly_models),
            "modbus": bool(self.registers),
        }
        return {k for k, used in kinds.items() if used}


def _check_discovery(discovery: Discovery | None, kind: str) -> None:
    if discovery is None:
        return
    foreign = discovery.uses() - {kind}
    if foreign:
        raise ValueError(f"discovery: {sorted(foreign)[0]} evidence does not fit a {kind} profile")


class ModbusProfile(_Strict):
    """A Modbus device model."""

    name: str
    driver: Literal["modbus"]
    device: str
    documentation: str
    word_order: Order = "big"
    byte_order: Order = "big"
    max_block: int = Field(125, ge=1, le=125)
    max_gap: int = Field(8, ge=0, le=64)
    sentinels: dict[ModbusType, list[int]] = Field(
        {}, description="raw values meaning 'not available' for every point of that type"
    )
    points: list[ModbusPoint] = Field(min_length=1)
    discovery: Discovery | None = None

    @model_validator(mode="after")
    def _no_overlap(self) -> ModbusProfile:
        _check_discovery(self.discovery, "modbus")
        for dtype, values in self.sentinels.items():
            bad = [v for v in values if not _fits_type(v, dtype)]
            if bad:
                raise ValueError(f"sentinel {bad[0]} does not fit a {dtype}")
        _check_delta_names([(p.name, p.kind) for p in self.points])
        self._check_effects()
        names: set[str] = set()
        taken: dict[tuple[str, int], str] = {}
        for p in self.points:
            if p.name in names:
                raise ValueError(f"point name '{p.name}' appears twice")
            names.add(p.name)
            for reg in range(p.address, p.address + p.count):
                other = taken.get((p.table, reg))
                if other:
                    raise ValueError(f"points '{other}' and '{p.name}' overlap at {p.table} register {reg}")
                taken[(p.table, reg)] = p.name
        return self

    def _check_effects(self) -> None:
        """A key's effect is read back from a polled whole-number point of this profile (a code, not a measurement)."""
        by_name = {p.name: p for p in self.points}
        for p in self.points:
            for key, effect in p.effects.items():
                target = by_name.get(effect.point)
                if target is None:
                    raise ValueError(f"point '{p.name}': key {key} names effect point '{effect.point}', not in profile")
                if not target.polled or target.type.startswith("float") or target.scale != 1 or target.offset != 0:
                    raise ValueError(
                        f"point '{p.name}': effect point '{target.name}' must be a polled integer code (scale 1)"
                    )

    def point(self, name: str) -> ModbusPoint:
        """A point by name."""
        for p in self.points:
            if p.name == name:
                return p
        raise KeyError(name)

    def sentinels_for(self, point: ModbusPoint) -> frozenset[int]:
        """Raw values that mean 'not available' for a point, as unsigned register bit patterns."""
        mask = (1 << (16 * REGISTER_COUNT[point.type])) - 1
        return frozenset(v & mask for v in (*point.sentinels, *self.sentinels.get(point.type, ())))


class MqttSource(_Strict):
    """Another message that carries the same value."""

    channel: str
    key: str


class MqttPoint(_Strict):
    """One value in an MQTT device's payloads.

    `channel` names which message carries it (see drivers.conventions); `key` is a dotted
    path into that message's JSON ('' for a plain-text payload).
    """

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
    channel: str = "state"
    key: str
    also: list[MqttSource] = []
    type: Literal["bool", "float", "int", "str"]
    unit: str = ""
    scale: float = 1.0
    kind: PointKind = "gauge"
    writable: bool = False
    true_values: list[str | bool | int] = Field(["ON", True], description="payload values meaning true (bool points)")
    false_values: list[str | bool | int] = Field(["OFF", False], description="payload values meaning false")
    choices: list[str] = Field([], description="allowed values of a str point")
    min: float | None = None
    max: float | None = None
    rollover: float | None = Field(None, gt=0, description="counters: the value at which the counter wraps to 0")
    description: str = ""

    @property
    def resolution(self) -> float:
        """The smallest step an int point can show (one count, in the point's unit); 0 otherwise."""
        return abs(self.scale) if self.type == "int" else 0.0

    @property
    def wraps_at(self) -> float | None:
        """Where a counter rolls over to 0; a JSON number has no fixed range, so only a declared `rollover`."""
        return self.rollover

    @model_validator(mode="after")
    def _consistent(self) -> MqttPoint:
        if self.type == "bool" and not (self.true_values and self.false_values):
            raise ValueError(f"point '{self.name}': a bool point needs true_values and false_values")
        if self.scale == 0:
            raise ValueError(f"point '{self.name}': scale must not be 0")
        if self.rollover is not None and self.kind != "counter":
            raise ValueError(f"point '{self.name}': rollover is for counters")
        _check_unit(self.name, self.kind, self.type in ("float", "int"), "unit" in self.model_fields_set)
        return self


# What a channel name looks like under each convention (see drivers.conventions for the topics).
CHANNEL_PATTERNS: dict[str, str] = {
    "zigbee2mqtt": r"state",
    "tasmota": r"(stat|tele)/[A-Za-z0-9_]+",
    "shelly-gen2": r"status/[a-z]+:[0-9]+",
}


def _check_writable(convention: str, p: MqttPoint) -> None:
    """A writable point must be one the convention knows how to command, with explicit bounds."""
    if p.type in ("float", "int") and (p.min is None or p.max is None):
        raise ValueError(f"point '{p.name}': a writable number needs min and max")
    if p.type == "str" and not p.choices:
        raise ValueError(f"point '{p.name}': a writable string needs choices")
    if convention == "zigbee2mqtt" and (not p.key or "." in p.key):
        raise ValueError(f"point '{p.name}': zigbee2mqtt commands set a top-level key")
    if convention == "tasmota" and not (p.channel.startswith("stat/") and p.key == "" and p.type == "bool"):
        raise ValueError(f"point '{p.name}': tasmota commands are ON/OFF on a stat/<COMMAND> plain channel")
    if convention == "shelly-gen2" and not (
        p.channel.startswith("status/switch:") and p.key == "output" and p.type == "bool"
    ):
        raise ValueError(f"point '{p.name}': shelly-gen2 commands are Switch.Set on status/switch:<n> output")


class MqttProfile(_Strict):
    """An MQTT device model following one vendor convention."""

    name: str
    driver: Literal["mqtt"]
    convention: Literal["zigbee2mqtt", "tasmota", "shelly-gen2"]
    device: str
    documentation: str
    points: list[MqttPoint] = Field(min_length=1)
    discovery: Discovery | None = None

    @model_validator(mode="after")
    def _unique(self) -> MqttProfile:
        _check_discovery(self.discovery, self.convention)
        names = [p.name for p in self.points]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"point name '{sorted(dup)[0]}' appears twice")
        _check_delta_names([(p.name, p.kind) for p in self.points])
        pattern = CHANNEL_PATTERNS[self.convention]
        plain: dict[str, bool] = {}
        for p in self.points:
            for channel, key in ((p.channel, p.key), *((a.channel, a.key) for a in p.also)):
                if not re.fullmatch(pattern, channel):
                    raise ValueError(f"point '{p.name}': channel '{channel}' is not a {self.convention} channel")
                if plain.setdefault(channel, key == "") != (key == ""):
                    raise ValueError(f"channel '{channel}' mixes a plain-text point with JSON keys")
            if p.writable:
                _check_writable(self.convention, p)
        return self

    def point(self, name: str) -> MqttPoint:
        """A point by name."""
        for p in self.points:
            if p.name == name:
                return p
        raise KeyError(name)


Profile = ModbusProfile | MqttProfile


class ProfileError(Exception):
    """A profile file that is missing or invalid; `errors` lists every problem as 'file:line: key path: message'."""

    def __init__(self, message: str, errors: list[str] | None = None) -> None:
        self.errors = errors or [message]
        super().__init__("\n".join(self.errors) if errors else message)


_log = logging.getLogger(__name__)

# Profiles a site adds from its own directory (`profiles_dir`, WATTKEEPER_PROFILES_DIR): name -> file.
_extra: dict[str, Path] = {}
_warned_shadow: set[Path] = set()


def known_profiles(directory: Path | None = None) -> frozenset[str]:
    """Names of the profiles in a directory (file stems); by default the shipped ones and any added directory's."""
    if directory is not None:
        return frozenset(p.stem for p in directory.glob("*.yaml"))
    return frozenset(p.stem for p in PROFILE_DIR.glob("*.yaml")) | _extra.keys()


def profile_source(name: str) -> Path | None:
    """The file a profile name loads from (an added directory's first), or None when unknown."""
    if name in _extra:
        return _extra[name]
    path = PROFILE_DIR / f"{name}.yaml"
    return path if path.is_file() else None


def add_profile_dir(directory: Path) -> dict[str, list[str]]:
    """Make the profiles of a site's directory loadable by name; returns the problems, per profile name.

    Each file is validated like a shipped profile; an invalid one is not added. A file named like a
    shipped profile replaces it in this process, with a warning; the same name from two different
    added files is an error. Problems with the directory itself are under the name "".
    """
    if not directory.is_dir():
        return {"": [f"{directory}: not a directory of profiles"]}
    problems: dict[str, list[str]] = {}
    for path in sorted(directory.glob("*.yaml")):
        name = path.stem
        known = _extra.get(name)
        if known is not None and known.resolve() != path.resolve():
            problems[name] = [f"{path}: profile '{name}' is also defined by {known}"]
            continue
        try:
            _load_file(path, name)
        except ProfileError as exc:
            problems[name] = exc.errors
            continue
        _extra[name] = path
        if (PROFILE_DIR / path.name).is_file() and path.resolve() not in _warned_shadow:
            _warned_shadow.add(path.resolve())
            _log.warning("profile '%s' from %s replaces the shipped profile of that name", name, path)
    return problems


def shadowed_profiles() -> dict[str, Path]:
    """Added profiles that replace a shipped one: name -> the file used instead."""
    return {n: p for n, p in _extra.items() if (PROFILE_DIR / f"{n}.yaml").is_file()}


def reset_profile_dirs() -> None:
    """Forget every added profile directory (tests; a process serves one set of profiles)."""
    _extra.clear()
    _warned_shadow.clear()


def load_profile(name: str, directory: Path | None = None) -> Profile:
    """Load and validate a profile by name: from `directory`, else an added directory, else the shipped ones."""
    if "/" in name or "\\" in name or name.startswith("."):
        raise ProfileError(f"unknown profile '{name}'")
    path = directory / f"{name}.yaml" if directory is not None else profile_source(name)
    if path is None or not path.is_file():
        raise ProfileError(f"unknown profile '{name}'")
    return _load_file(path, name)


def _load_file(path: Path, name: str) -> Profile:
    try:
        stat = path.stat()
    except OSError as exc:
        raise ProfileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return _parse_cached(path, name, stat.st_mtime_ns, stat.st_size)


@cache
def _parse_cached(path: Path, name: str, _mtime_ns: int, _size: int) -> Profile:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{path}: cannot read: {exc}") from None
    return parse_profile(text, path, name)


def _line_map(node: yaml.Node, path: KeyPath, out: dict[KeyPath, int]) -> None:
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            key = k.value if isinstance(k, yaml.ScalarNode) else str(k.value)
            out[(*path, key)] = k.start_mark.line + 1
            _line_map(v, (*path, key), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_map(item, (*path, i), out)


def _repeated_keys(node: yaml.Node, path: KeyPath, out: list[tuple[KeyPath, str, int]]) -> None:
    """Keys given twice in one mapping (YAML would keep the last silently)."""
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for k, v in node.value:
            key = k.value if isinstance(k, yaml.ScalarNode) else str(k.value)
            line = k.start_mark.line + 1
            if key in first:
                out.append(((*path, key), f"key '{key}' given twice (first at line {first[key]})", line))
            else:
                first[key] = line
            _repeated_keys(v, (*path, key), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _repeated_keys(item, (*path, i), out)


def _fmt_path(path: KeyPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top)"


def _point_path(data: dict[str, Any], msg: str) -> KeyPath:
    """A profile-level message naming points ('a' and 'b' overlap) is placed at the last point it names."""
    points = data.get("points")
    if not isinstance(points, list):
        return ()
    named = re.findall(r"'([a-z][a-z0-9_]*)'", msg)
    for wanted in reversed(named):
        for i in reversed(range(len(points))):
            if isinstance(points[i], dict) and points[i].get("name") == wanted:
                return ("points", i)
    return ()


def parse_profile(text: str, path: Path, name: str) -> Profile:
    """Validate profile text; ProfileError lists every problem with the file, its line and key path."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ProfileError(f"{path}{line}: not valid YAML: {getattr(exc, 'problem', None) or exc}") from None
    if node is None or not isinstance(data, dict):
        raise ProfileError(f"{path}:1: a profile is a mapping with name, driver, device, documentation and points")
    lines: dict[KeyPath, int] = {}
    _line_map(node, (), lines)
    found: list[tuple[KeyPath, str, int]] = []
    _repeated_keys(node, (), found)
    repeated = [(line, f"{_fmt_path(loc)}: {msg}") for loc, msg, line in found]

    def where(loc: KeyPath) -> int:
        while loc and loc not in lines:
            loc = loc[:-1]
        return lines.get(loc, 1)

    try:
        prof: Profile = (ModbusProfile if data.get("driver") == "modbus" else MqttProfile).model_validate(data)
    except ValidationError as exc:
        errors = []
        for err in exc.errors():
            loc: KeyPath = tuple(
                p for p in err["loc"] if not (isinstance(p, str) and (p.startswith("function-") or p == "[key]"))
            )
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            elif err["type"] == "missing":
                msg = "required key missing"
            elif err["type"] in ("literal_error", "enum"):
                msg = f"{msg}, got {err.get('input')!r}"
            if not loc:
                loc = _point_path(data, msg)
            errors.append((where(loc), f"{path}:{where(loc)}: {_fmt_path(loc)}: {msg}"))
        errors += [(line, f"{path}:{line}: {msg}") for line, msg in repeated]
        errors.sort(key=lambda e: e[0])
        raise ProfileError(errors[0][1], [e for _, e in errors]) from None
    if repeated:
        raise ProfileError(repeated[0][1], [f"{path}:{line}: {msg}" for line, msg in repeated])
    if prof.name != name:
        raise ProfileError(f"{path}:{where(('name',))}: name: '{prof.name}' does not match the file name '{name}'")
    return prof
