"""Recognising devices from what they say about themselves (pure: no I/O).

Each profile's `discovery:` block declares its evidence: Zigbee2MQTT model ids or exposed properties,
Tasmota module and sensor groups, Shelly `app`/`model`, or a Modbus register signature with
plausibility ranges. These functions turn one device's announcement (or the registers read from one
unit) into a `Match` of the best profile, or `None` when no profile fits.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from drivers.codec import Layout, registers_to_raw
from drivers.profiles import REGISTER_COUNT, Discovery, ModbusProfile, MqttProfile, Profile, RegisterCheck

# Confidence of a match, by the kind of evidence
BY_MODEL = 0.95  # the device named a model the profile lists (Z2M model, Tasmota module, Shelly app/model)
BY_IDENTITY = 0.9  # a Modbus identification code matched, and every plausibility range held
BY_FEATURES = 0.7  # the device exposes what the profile needs, but its model is not listed
BY_RANGES = 0.75  # every Modbus plausibility range held (no identification register)
SHARED = 0.15  # taken off when another profile fits as well


@dataclass(frozen=True, slots=True)
class Match:
    """The profile a device fits best, how sure, and why."""

    profile: str
    confidence: float
    reason: str
    role: str | None = None
    also: tuple[str, ...] = ()  # other profiles that fit as well


def discoverable(profiles: Iterable[Profile], kind: str) -> list[tuple[str, Discovery]]:
    """(name, discovery) of the profiles that declare evidence of one kind (zigbee2mqtt, tasmota,
    shelly-gen2, modbus)."""
    out = []
    for p in profiles:
        if p.discovery is None or kind not in p.discovery.uses():
            continue
        if isinstance(p, MqttProfile) and p.convention != kind:
            continue
        if isinstance(p, ModbusProfile) and kind != "modbus":
            continue
        out.append((p.name, p.discovery))
    return sorted(out)


def _best(candidates: list[tuple[float, int, str, str, Discovery]]) -> Match | None:
    """The strongest candidate (confidence, then specificity); others that fit are named in `also`."""
    if not candidates:
        return None
    candidates.sort(key=lambda c: (-c[0], -c[1], c[2]))
    confidence, _, name, reason, disc = candidates[0]
    also = tuple(c[2] for c in candidates[1:])
    if also and candidates[1][0] >= confidence and candidates[1][1] >= candidates[0][1]:
        confidence -= SHARED  # as sure and as specific: a real toss-up
    return Match(name, round(confidence, 2), reason, disc.role, also)


def z2m_properties(exposes: object) -> set[str]:
    """Every `property` in a Zigbee2MQTT `exposes` list, features of composite exposes included."""
    found: set[str] = set()
    stack = [exposes]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            prop = item.get("property")
            if isinstance(prop, str):
                found.add(prop)
            stack.extend(v for k, v in item.items() if k == "features")
    return found


def match_z2m(entry: Mapping[str, object], profiles: Iterable[Profile]) -> Match | None:
    """A Zigbee2MQTT bridge/devices entry -> profile, by model id, else by exposed properties."""
    definition = entry.get("definition")
    if not isinstance(definition, dict):
        return None
    model = definition.get("model")
    props = z2m_properties(definition.get("exposes"))
    candidates = []
    for name, disc in discoverable(profiles, "zigbee2mqtt"):
        if isinstance(model, str) and model in disc.z2m_models:
            candidates.append((BY_MODEL, len(disc.z2m_exposes), name, f"model {model}", disc))
        elif disc.z2m_exposes and set(disc.z2m_exposes) <= props:
            exposed = ", ".join(disc.z2m_exposes)
            candidates.append((BY_FEATURES, len(disc.z2m_exposes), name, f"exposes {exposed}", disc))
    return _best(candidates)


def match_tasmota(
    config: Mapping[str, object], sensors: Mapping[str, object] | None, profiles: Iterable[Profile]
) -> Match | None:
    """A Tasmota discovery config (and its sensors message, if seen) -> profile, by module and sensor groups."""
    module = config.get("md")
    sn = sensors.get("sn") if sensors is not None else None
    groups = set(sn) if isinstance(sn, dict) else set()
    candidates = []
    for name, disc in discoverable(profiles, "tasmota"):
        has_sensors = bool(disc.tasmota_sensors) and set(disc.tasmota_sensors) <= groups
        if isinstance(module, str) and module in disc.tasmota_modules:
            candidates.append((BY_MODEL, len(disc.tasmota_sensors), name, f"module {module}", disc))
        elif has_sensors:
            reason = f"module {module}, sensors {', '.join(disc.tasmota_sensors)}"
            candidates.append((BY_FEATURES, len(disc.tasmota_sensors), name, reason, disc))
    return _best(candidates)


def match_shelly(info: Mapping[str, object], profiles: Iterable[Profile]) -> Match | None:
    """A Shelly.GetDeviceInfo result -> profile, by model or app."""
    model, app = info.get("model"), info.get("app")
    candidates = []
    for name, disc in discoverable(profiles, "shelly-gen2"):
        if isinstance(model, str) and model in disc.shelly_models:
            candidates.append((BY_MODEL, 2, name, f"model {model} (app {app})", disc))
        elif isinstance(app, str) and app in disc.shelly_apps:
            candidates.append((BY_MODEL - 0.1, 1, name, f"app {app} (model {model})", disc))
    return _best(candidates)


# ---- Modbus ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReadBlock:
    """One read request: FC04 for input, FC03 for holding registers."""

    table: Literal["input", "holding"]
    address: int
    count: int


def plan_reads(checks: Iterable[RegisterCheck], *, max_gap: int = 16, max_block: int = 64) -> list[ReadBlock]:
    """The fewest read requests covering every check's registers (nearby registers read together)."""
    spans = sorted({(c.table, c.address, c.address + REGISTER_COUNT[c.type]) for c in checks})
    blocks: list[ReadBlock] = []
    for table, start, end in spans:
        last = blocks[-1] if blocks else None
        if (
            last is not None
            and last.table == table
            and start - (last.address + last.count) <= max_gap
            and end - last.address <= max_block
        ):
            blocks[-1] = ReadBlock(table, last.address, max(last.address + last.count, end) - last.address)
        else:
            blocks.append(ReadBlock(table, start, end - start))
    return blocks


@dataclass(slots=True)
class UnitAnswers:
    """What one unit answered: register values per table, and the exception code of refused reads."""

    registers: dict[tuple[str, int], int] = field(default_factory=dict)
    refused: dict[tuple[str, int], int] = field(default_factory=dict)  # (table, address) -> exception code

    def record(self, block: ReadBlock, values: list[int]) -> None:
        """A block read successfully."""
        for i, v in enumerate(values):
            self.registers[(block.table, block.address + i)] = v

    def refuse(self, block: ReadBlock, code: int) -> None:
        """A block answered with an exception."""
        for i in range(block.count):
            self.refused[(block.table, block.address + i)] = code

    def value(self, check: RegisterCheck) -> float | int | None:
        """The check's value (scaled), None when a register is missing."""
        words = [self.registers.get((check.table, check.address + i)) for i in range(REGISTER_COUNT[check.type])]
        if any(w is None for w in words):
            return None
        raw = registers_to_raw([int(w) for w in words if w is not None], Layout(type=check.type))
        return raw if check.equals else raw * check.scale


def check_holds(check: RegisterCheck, value: float | int | None) -> bool:
    """Whether a value read fits the check (a NaN or a missing register never does)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return False
    if check.equals:
        return value in check.equals
    assert check.min is not None and check.max is not None
    return check.min <= value <= check.max


def match_modbus(answers: UnitAnswers, profiles: Iterable[Profile]) -> Match | None:
    """The registers one unit answered -> the profile whose whole signature holds."""
    candidates = []
    for name, disc in discoverable(profiles, "modbus"):
        if all(check_holds(c, answers.value(c)) for c in disc.registers):
            identified = any(c.equals for c in disc.registers)
            held = ", ".join(c.description or f"{c.table} {c.address}" for c in disc.registers)
            confidence = BY_IDENTITY if identified else BY_RANGES
            candidates.append((confidence, len(disc.registers), name, f"registers hold {held}", disc))
    return _best(candidates)


def describe_answers(answers: UnitAnswers, checks: Iterable[RegisterCheck]) -> str:
    """What a unit said at the registers probed, for a device no profile fits."""
    parts = []
    seen: set[tuple[str, int]] = set()
    for c in checks:
        if (c.table, c.address) in seen:
            continue
        seen.add((c.table, c.address))
        code = answers.refused.get((c.table, c.address))
        if code is not None:
            parts.append(f"{c.table} {c.address}: exception {code}")
            continue
        value = answers.value(c)
        if value is None:
            continue
        shown = f"{value:.6g}" if isinstance(value, float) else str(value)
        parts.append(f"{c.table} {c.address} ({c.type}): {shown}")
    return "; ".join(parts) or "nothing"
