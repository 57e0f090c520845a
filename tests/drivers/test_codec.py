"""The pure codec: registers <-> values, word/byte order, scale, sentinels (hypothesis round trips)."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.codec import Layout, PointCodec, codec_for, raw_to_registers, registers_to_bits, registers_to_raw
from drivers.profiles import REGISTER_COUNT, ModbusProfile, load_profile
from drivers.types import Quality

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
TYPES = list(REGISTER_COUNT)
ORDERS = ("big", "little")

layouts = st.builds(
    Layout, type=st.sampled_from(TYPES), word_order=st.sampled_from(ORDERS), byte_order=st.sampled_from(ORDERS)
)


# 230.1 as an IEEE 754 float32 is 0x43661999: bytes A=43 B=66 C=19 D=99.
@pytest.mark.parametrize(
    ("word_order", "byte_order", "registers", "name"),
    [
        ("big", "big", [0x4366, 0x1999], "ABCD"),
        ("little", "big", [0x1999, 0x4366], "CDAB"),
        ("big", "little", [0x6643, 0x9919], "BADC"),
        ("little", "little", [0x9919, 0x6643], "DCBA"),
    ],
)
def test_float32_in_all_four_layouts(word_order: str, byte_order: str, registers: list[int], name: str) -> None:
    layout = Layout(type="float32", word_order=word_order, byte_order=byte_order)  # type: ignore[arg-type]
    assert registers_to_raw(registers, layout) == pytest.approx(230.1, rel=1e-7), name
    assert raw_to_registers(struct.unpack(">f", bytes.fromhex("43661999"))[0], layout) == registers


@pytest.mark.parametrize(
    ("dtype", "registers", "value"),
    [
        ("int16", [0xFFFF], -1),
        ("uint16", [0xFFFF], 65535),
        ("int32", [0xFFFF, 0xFFFE], -2),
        ("uint32", [0x0001, 0x0000], 65536),
        ("float64", [0x4059, 0x0000, 0x0000, 0x0000], 100.0),
    ],
)
def test_known_values(dtype: str, registers: list[int], value: float) -> None:
    assert registers_to_raw(registers, Layout(type=dtype)) == value  # type: ignore[arg-type]


@given(layout=layouts, data=st.data())
def test_registers_round_trip_bit_exact(layout: Layout, data: st.DataObject) -> None:
    registers = data.draw(st.lists(st.integers(0, 0xFFFF), min_size=layout.count, max_size=layout.count))
    raw = registers_to_raw(registers, layout)
    if isinstance(raw, float) and math.isnan(raw):
        return  # NaN payload bits are not preserved by Python floats, and NaN never becomes a value anyway
    assert raw_to_registers(raw, layout) == registers
    assert registers_to_bits(registers, layout) < 1 << (16 * layout.count)


@given(layout=layouts, data=st.data())
def test_decode_encode_round_trip(layout: Layout, data: st.DataObject) -> None:
    registers = data.draw(st.lists(st.integers(0, 0xFFFF), min_size=layout.count, max_size=layout.count))
    codec = PointCodec(layout=layout)
    value, quality = codec.decode(registers)
    if quality is Quality.bad:
        raw = registers_to_raw(registers, layout)
        assert isinstance(raw, float) and not math.isfinite(raw)
        return
    assert value is not None
    assert codec.encode(value) == registers


@given(
    dtype=st.sampled_from(["int16", "uint16", "int32", "uint32"]),
    scale=st.sampled_from([0.1, 0.01, 0.001, 10.0, 0.5]),
    offset=st.sampled_from([0.0, -40.0, 273.15]),
    data=st.data(),
)
def test_scaled_integers_round_trip(dtype: str, scale: float, offset: float, data: st.DataObject) -> None:
    layout = Layout(type=dtype)  # type: ignore[arg-type]
    codec = PointCodec(layout=layout, scale=scale, offset=offset)
    registers = data.draw(st.lists(st.integers(0, 0xFFFF), min_size=layout.count, max_size=layout.count))
    value, quality = codec.decode(registers)
    assert quality is Quality.good and isinstance(value, float)
    assert codec.encode(value) == registers


def test_scaled_value_reads_as_written() -> None:
    codec = PointCodec(layout=Layout(type="uint16"), scale=0.1)
    assert codec.decode([2301]) == (230.1, Quality.good)
    assert codec.encode(230.1) == [2301]


@given(
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.sampled_from(ORDERS),
    st.sampled_from(ORDERS),
)
def test_float32_values_round_trip(value: float, word_order: str, byte_order: str) -> None:
    codec = PointCodec(layout=Layout(type="float32", word_order=word_order, byte_order=byte_order))  # type: ignore[arg-type]
    assert codec.decode(codec.encode(value)) == (value, Quality.good)


@pytest.mark.parametrize("bits", [0x7FC00000, 0xFFC00000, 0x7F800000, 0xFF800000, 0xFFFFFFFF])
def test_nan_and_infinity_are_bad_never_a_number(bits: int) -> None:
    codec = PointCodec(layout=Layout(type="float32"))
    assert codec.decode([bits >> 16, bits & 0xFFFF]) == (None, Quality.bad)


def test_sentinels_are_bad_never_a_number() -> None:
    gencomm = load_profile("dse-gencomm")
    assert isinstance(gencomm, ModbusProfile)
    power = codec_for(gencomm, gencomm.point("power"))  # int32: 0x7FFFFFFF..0x7FFFFFF8 mean "not available"
    assert power.decode([0x7FFF, 0xFFFF]) == (None, Quality.bad)
    assert power.decode([0x7FFF, 0xFFF8]) == (None, Quality.bad)
    assert power.decode([0x7FFF, 0xFFF7]) == (0x7FFFFFF7, Quality.good)
    assert power.decode([0xFFFF, 0xFFFF]) == (-1, Quality.good)  # -1 W is a number, not a sentinel
    state = codec_for(gencomm, gencomm.point("engine_state"))
    assert state.decode([15]) == (None, Quality.bad)  # the controller's own "not available"
    assert state.decode([3]) == (3, Quality.good)
    assert state.decode([9]) == (None, Quality.bad)  # not a state the profile knows: implausible


def test_negative_sentinels_match_their_bit_pattern() -> None:
    codec = PointCodec(layout=Layout(type="int16"), sentinels=frozenset({0x8000}))
    assert codec.decode([0x8000]) == (None, Quality.bad)
    with pytest.raises(ValueError, match="sentinel"):
        codec.encode(-32768)


@pytest.mark.parametrize(
    ("dtype", "value"),
    [("uint16", -1), ("uint16", 65536), ("int16", 40000), ("uint32", 2**32), ("float32", 1e39)],
)
def test_values_that_do_not_fit_are_refused(dtype: str, value: float) -> None:
    with pytest.raises(ValueError):
        PointCodec(layout=Layout(type=dtype)).encode(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [math.nan, math.inf, True, "26"])
def test_non_numbers_are_refused(value: object) -> None:
    with pytest.raises(ValueError):
        PointCodec(layout=Layout(type="float32")).encode(value)  # type: ignore[arg-type]


def test_value_between_scale_steps_is_refused() -> None:
    with pytest.raises(ValueError, match="multiple of the scale"):
        PointCodec(layout=Layout(type="uint16"), scale=0.1).encode(23.05)


def test_wrong_register_count_is_an_error() -> None:
    with pytest.raises(ValueError, match="needs 2 registers"):
        PointCodec(layout=Layout(type="float32")).decode([1])


@pytest.mark.parametrize(
    ("profile", "dump"),
    [
        ("sdm630", "input_registers.json"),
        ("sdm120", "input_registers.json"),
        ("dse-gencomm", "holding_registers.json"),
        ("atys-pm", "holding_registers.json"),
    ],
)
def test_recorded_register_dumps_decode_to_the_meter_display(profile: str, dump: str) -> None:
    prof = load_profile(profile)
    assert isinstance(prof, ModbusProfile)
    recorded = json.loads((FIXTURES / profile / dump).read_text())
    registers = {int(a): r for a, r in recorded["registers"].items()}
    # every polled point is in the dump, or the dump says it was not recorded
    assert set(recorded["expected"]) | set(recorded.get("not_recorded", [])) == {
        p.name for p in prof.points if p.polled
    }
    for name, expected in recorded["expected"].items():
        point = prof.point(name)
        assert point.table == recorded["table"]
        value, quality = codec_for(prof, point).decode([registers[point.address + i] for i in range(point.count)])
        if expected is None:
            assert (value, quality) == (None, Quality.bad), name
        else:
            assert quality is Quality.good and value == pytest.approx(expected, rel=1e-6), name
