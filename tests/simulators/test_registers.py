"""Register images at the vendors' addresses, written here as literal numbers from their manuals."""

from __future__ import annotations

import math
import struct

import pytest

from service.config.site import Site
from simulators.registers import REGISTER_MAPS, f32, s32, u32
from tests.simulators.conftest import make_world


def as_f32(image: dict[int, int], address: int) -> float:
    value: float = struct.unpack(">f", struct.pack(">HH", image[address], image[address + 1]))[0]
    return value


def as_u32(image: dict[int, int], address: int) -> int:
    return image[address] << 16 | image[address + 1]


def test_words_are_big_endian() -> None:
    assert f32(230.0) == (0x4366, 0x0000)
    assert u32(0x12345678) == (0x1234, 0x5678)
    assert s32(-1000) == (0xFFFF, 0xFC18)


def test_sdm630_input_registers(demo: Site) -> None:
    w = make_world(demo)
    image = REGISTER_MAPS["sdm630"].render(w, "meter-grid-a")
    m = w.meters["meter-grid-a"]
    assert as_f32(image, 0x0000) == pytest.approx(m.voltage_v, rel=1e-6)  # V L1
    assert as_f32(image, 0x0034) == pytest.approx(m.power_w, rel=1e-6)  # total W
    assert as_f32(image, 0x0046) == pytest.approx(50.0, abs=0.1)  # Hz
    assert as_f32(image, 0x0048) == pytest.approx(m.import_kwh, rel=1e-6)  # import kWh
    assert as_f32(image, 0x004A) == 0.0  # export kWh
    phases = sum(as_f32(image, a) for a in (0x000C, 0x000E, 0x0010))
    assert phases == pytest.approx(m.power_w, rel=1e-5)
    assert as_f32(image, 0x003E) == pytest.approx(0.95, abs=1e-6)  # total PF


def test_sdm630_garbage_is_nan(demo: Site) -> None:
    w = make_world(demo)
    w.fault("device_garbage", "meter-grid-a")
    image = REGISTER_MAPS["sdm630"].render(w, "meter-grid-a")
    assert (image[0x0034], image[0x0035]) == (0x7FC0, 0x0000)
    assert math.isnan(as_f32(image, 0x0000)) and math.isnan(as_f32(image, 0x0048))


def test_gencomm_holding_registers(demo: Site) -> None:
    w = make_world(demo)
    rmap = REGISTER_MAPS["dse-gencomm"]
    image = rmap.render(w, "genset-1")
    assert image[1408] == 0  # engine stopped
    assert image[1410] == 0b0101  # mains breaker closed, mains available
    assert as_u32(image, 1536) == 0
    assert as_u32(image, 1808) == w.generators["gen-1"].starts
    assert as_u32(image, 1800) == round(w.generators["gen-1"].energy_kwh * 10)
    assert 1059 in image and image[1059] == pytest.approx(500, abs=2)  # mains Hz * 10
    assert rmap.fill == 0xFFFF, "registers the controller does not implement read 0xFFFF"
    w.fault("source_loss", "grid-a")
    w.fault("source_loss", "grid-b")
    w.step(10)
    image = rmap.render(w, "genset-1")
    assert image[1408] == 3  # running
    assert image[1410] == 0b11010  # gen breaker closed, gen available, start demand
    assert as_u32(image, 1536) == round(w.generators["gen-1"].power_kw * 1000) > 0
    assert image[1031] == pytest.approx(500, abs=3)
    assert as_u32(image, 1032) == pytest.approx(2200, abs=30)


def test_gencomm_garbage_is_the_not_available_sentinels(demo: Site) -> None:
    w = make_world(demo)
    w.fault("device_garbage", "genset-1")
    image = REGISTER_MAPS["dse-gencomm"].render(w, "genset-1")
    assert image[1408] == 0xFFFF and image[1410] == 0xFFFF
    assert (image[1536], image[1537]) == (0x7FFF, 0xFFFF)  # s32 not available
    assert (image[1800], image[1801]) == (0xFFFF, 0xFFFF)  # u32 not available


def test_gencomm_control_key_needs_the_complement_pair(demo: Site) -> None:
    w = make_world(demo)
    write = REGISTER_MAPS["dse-gencomm"].write
    assert write is not None

    def mode() -> str:
        return w.generators["gen-1"].mode

    write(w, "genset-1", 4104, [35702, 65535 - 35702 + 1])  # not complementary: ignored
    assert mode() == "auto"
    write(w, "genset-1", 4104, [35702])  # half a pair: ignored
    assert mode() == "auto"
    write(w, "genset-1", 4104, [35702, 65535 - 35702])
    assert mode() == "manual"
    write(w, "genset-1", 4104, [35705, 65535 - 35705])
    assert w.generators["gen-1"].engine == 1  # pre-start


def test_atys_holding_registers(demo: Site) -> None:
    w = make_world(demo)
    rmap = REGISTER_MAPS["atys-pm"]
    image = rmap.render(w, "ats-1-ctrl")
    assert (image[20481], image[20482], image[20486], image[20487]) == (1, 2, 2, 2)  # auto, pos I, both available
    assert as_u32(image, 20489) == 0
    w.fault("source_loss", "grid-a")
    w.step(4)
    image = rmap.render(w, "ats-1-ctrl")
    assert (image[20482], image[20486], image[20487]) == (3, 0, 2)  # pos II, source 1 under threshold
    assert as_u32(image, 20489) == 1
    w.fault("device_garbage", "ats-1-ctrl")
    assert rmap.render(w, "ats-1-ctrl")[20482] == 0xFFFF
