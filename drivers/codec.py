"""Registers <-> values: word and byte order, scale and offset, sentinels. Pure; no I/O."""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

from drivers.profiles import REGISTER_COUNT, ModbusPoint, ModbusProfile, ModbusType
from drivers.types import Quality

Order = Literal["big", "little"]

_FORMAT: dict[str, str] = {
    "int16": "h",
    "uint16": "H",
    "int32": "i",
    "uint32": "I",
    "float32": "f",
    "float64": "d",
}
_INTEGER = frozenset({"int16", "uint16", "int32", "uint32"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Layout:
    """How one value sits in consecutive 16-bit registers."""

    type: ModbusType
    word_order: Order = "big"
    byte_order: Order = "big"

    @property
    def count(self) -> int:
        """Registers the value occupies."""
        return REGISTER_COUNT[self.type]


def _to_bytes(registers: list[int], layout: Layout) -> bytes:
    if len(registers) != layout.count:
        raise ValueError(f"a {layout.type} needs {layout.count} registers, got {len(registers)}")
    words = registers if layout.word_order == "big" else registers[::-1]
    # Little byte order swaps the two bytes inside each register (the "BADC"/"DCBA" layouts).
    try:
        return struct.pack(f"{'>' if layout.byte_order == 'big' else '<'}{len(words)}H", *words)
    except struct.error:
        raise ValueError(f"registers must be 0..65535, got {registers}") from None


def _from_bytes(data: bytes, layout: Layout) -> list[int]:
    words = list(struct.unpack(f"{'>' if layout.byte_order == 'big' else '<'}{len(data) // 2}H", data))
    return words if layout.word_order == "big" else words[::-1]


def registers_to_raw(registers: list[int], layout: Layout) -> int | float:
    """The number the registers hold, before scale and offset."""
    value: int | float = struct.unpack(f">{_FORMAT[layout.type]}", _to_bytes(registers, layout))[0]
    return value


def registers_to_bits(registers: list[int], layout: Layout) -> int:
    """The registers as one unsigned bit pattern (what sentinels are written as)."""
    return int.from_bytes(_to_bytes(registers, layout), "big")


def raw_to_registers(raw: int | float, layout: Layout) -> list[int]:
    """Registers holding a raw number; ValueError if it does not fit the type."""
    fmt = _FORMAT[layout.type]
    if layout.type in _INTEGER and (isinstance(raw, bool) or not isinstance(raw, int)):
        raise ValueError(f"a {layout.type} holds whole numbers, got {raw!r}")
    try:
        data = struct.pack(f">{fmt}", raw)
    except (struct.error, OverflowError):
        raise ValueError(f"{raw!r} does not fit a {layout.type}") from None
    return _from_bytes(data, layout)


def _decimals(x: float) -> int:
    exponent = Decimal(repr(x)).normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


@dataclass(frozen=True, slots=True, kw_only=True)
class PointCodec:
    """Decode and encode one point: raw number * scale + offset, with sentinels and allowed codes."""

    layout: Layout
    scale: float = 1.0
    offset: float = 0.0
    sentinels: frozenset[int] = frozenset()
    allowed: frozenset[int] = frozenset()  # state codes the profile lists; empty: any value
    # Derived once, because decode runs for every point of every poll.
    _words: struct.Struct = field(init=False, repr=False, compare=False)
    _value: struct.Struct = field(init=False, repr=False, compare=False)
    _plain: bool = field(init=False, repr=False, compare=False)
    _digits: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        endian = ">" if self.layout.byte_order == "big" else "<"
        object.__setattr__(self, "_words", struct.Struct(f"{endian}{self.layout.count}H"))
        object.__setattr__(self, "_value", struct.Struct(f">{_FORMAT[self.layout.type]}"))
        object.__setattr__(self, "_plain", self.scale == 1 and self.offset == 0)
        object.__setattr__(self, "_digits", max(_decimals(self.scale), _decimals(self.offset)))

    def decode(self, registers: list[int]) -> tuple[float | int | None, Quality]:
        """(value, good) or (None, bad) for a sentinel, NaN/infinity or an unlisted state code."""
        if len(registers) != self.layout.count:
            raise ValueError(f"a {self.layout.type} needs {self.layout.count} registers, got {len(registers)}")
        words = registers if self.layout.word_order == "big" else registers[::-1]
        try:
            data = self._words.pack(*words)
        except struct.error:
            raise ValueError(f"registers must be 0..65535, got {registers}") from None
        if self.sentinels and int.from_bytes(data, "big") in self.sentinels:
            return None, Quality.bad
        raw: int | float = self._value.unpack(data)[0]
        if isinstance(raw, float):
            if not math.isfinite(raw):
                return None, Quality.bad
            return (raw if self._plain else raw * self.scale + self.offset), Quality.good
        if self.allowed and raw not in self.allowed:
            return None, Quality.bad
        if self._plain:
            return raw, Quality.good
        # Integers scaled by 0.1 are rounded so 2301 * 0.1 reads 230.1, not 230.10000000000002.
        return round(raw * self.scale + self.offset, self._digits), Quality.good

    def to_raw(self, value: float | int) -> int | float:
        """The raw number that represents a value; ValueError if none does."""
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f"{value!r} is not a finite number")
        raw: int | float = value if self._plain else (value - self.offset) / self.scale
        if self.layout.type in _INTEGER:
            if isinstance(raw, float):
                if abs(raw - round(raw)) > 1e-6 * max(1.0, abs(raw)):
                    raise ValueError(f"{value!r} is not a multiple of the scale {self.scale}")
                raw = round(raw)
            if self.allowed and raw not in self.allowed:
                raise ValueError(f"{value!r} is not one of {sorted(self.allowed)}")
        return raw

    def encode(self, value: float | int) -> list[int]:
        """Registers that represent a value; ValueError if it does not fit or is a sentinel."""
        regs = raw_to_registers(self.to_raw(value), self.layout)
        if registers_to_bits(regs, self.layout) in self.sentinels:
            raise ValueError(f"{value!r} encodes as a 'not available' sentinel")
        return regs


def codec_for(profile: ModbusProfile, point: ModbusPoint) -> PointCodec:
    """The codec of a profile point (point settings override the profile's)."""
    return PointCodec(
        layout=Layout(
            type=point.type,
            word_order=point.word_order or profile.word_order,
            byte_order=point.byte_order or profile.byte_order,
        ),
        scale=point.scale,
        offset=point.offset,
        sentinels=profile.sentinels_for(point),
        allowed=frozenset(point.enum) if point.kind == "state" else frozenset(),
    )
