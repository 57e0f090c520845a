"""Register images of the simulated Modbus devices, laid out from the vendors' own register tables.

Written independently of drivers/ so that a wrong driver profile shows up against the simulator.
Addresses are 0-based PDU addresses; 32-bit values are big-endian words (high word first).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from simulators.world import World

Image = dict[int, int]
NAN_F32 = (0x7FC0, 0x0000)  # what an Eastron meter returns for a failed measurement


def f32(value: float) -> tuple[int, int]:
    """IEEE 754 float32 as two registers, high word first."""
    hi, lo = struct.unpack(">HH", struct.pack(">f", value))
    return hi, lo


def u32(value: int) -> tuple[int, int]:
    """Unsigned 32-bit as two registers, high word first."""
    value &= 0xFFFFFFFF
    return value >> 16, value & 0xFFFF


def s32(value: int) -> tuple[int, int]:
    """Signed 32-bit (two's complement) as two registers, high word first."""
    return u32(value & 0xFFFFFFFF)


def _put(image: Image, address: int, words: tuple[int, ...]) -> None:
    for i, word in enumerate(words):
        image[address + i] = word


@dataclass(frozen=True, slots=True, kw_only=True)
class RegisterMap:
    """How one device model lays out its registers and what writes do."""

    profile: str
    table: Literal["input", "holding"]
    blocks: tuple[tuple[int, int], ...]  # readable (start, count)
    writable: tuple[tuple[int, int], ...] = ()  # (start, count) inside the blocks
    fill: int = 0  # value of registers inside a block that the model does not set
    values: Callable[[World, str], Image]  # the registers of a working device
    garbage: Callable[[], Image]  # what the model answers while a device_garbage fault holds
    write: Callable[[World, str, int, list[int]], None] | None = None

    def __post_init__(self) -> None:
        for start, count in self.writable:
            if not any(b <= start and start + count <= b + n for b, n in self.blocks):
                raise ValueError(f"{self.profile}: writable {start}+{count} lies outside the readable blocks")

    def render(self, world: World, device_id: str) -> Image:
        """The device's registers now: its values, or the model's garbage while that fault holds."""
        return self.garbage() if world.is_garbage(device_id) else self.values(world, device_id)


# ---- Eastron SDM630 / SDM120 (input registers, float32) ------------------------------------------

SDM_BLOCK = (0x0000, 0x015A)  # through total kvarh at 0x0158; the meter answers the whole range


def _sdm_garbage() -> Image:
    """What an SDM meter answers while a device_garbage fault holds: NaN in every float of its block."""
    image: Image = {}
    for address in range(SDM_BLOCK[0], SDM_BLOCK[0] + SDM_BLOCK[1], 2):
        _put(image, address, NAN_F32)
    return image


def _sdm630(world: World, device_id: str) -> Image:
    image: Image = {}
    m = world.meters[device_id]
    volts, watts, amps = m.phase_voltages(), m.phase_powers(), m.phase_currents()
    pf = m.power_factor
    vas = tuple(abs(p) / abs(pf) for p in watts)
    vars_ = tuple(math.sqrt(max(va * va - p * p, 0.0)) for va, p in zip(vas, watts, strict=True))
    angle = math.degrees(math.acos(min(abs(pf), 1.0)))
    values: dict[int, float] = {
        0x0000: volts[0],
        0x0002: volts[1],
        0x0004: volts[2],
        0x0006: amps[0],
        0x0008: amps[1],
        0x000A: amps[2],
        0x000C: watts[0],
        0x000E: watts[1],
        0x0010: watts[2],
        0x0012: vas[0],
        0x0014: vas[1],
        0x0016: vas[2],
        0x0018: vars_[0],
        0x001A: vars_[1],
        0x001C: vars_[2],
        0x001E: pf,
        0x0020: pf,
        0x0022: pf,
        0x0024: angle,
        0x0026: angle,
        0x0028: angle,
        0x002A: sum(volts) / 3,
        0x002E: sum(amps) / 3,
        0x0030: sum(amps),
        0x0034: m.power_w,
        0x0038: sum(vas),
        0x003C: sum(vars_),
        0x003E: pf,
        0x0042: angle,
        0x0046: m.frequency_hz,
        0x0048: m.import_kwh,
        0x004A: m.export_kwh,
        0x0054: m.power_w,
        0x00C8: volts[0] * math.sqrt(3),
        0x00CA: volts[1] * math.sqrt(3),
        0x00CC: volts[2] * math.sqrt(3),
        0x00CE: sum(volts) / 3 * math.sqrt(3),
        0x00E0: abs(amps[0] - amps[2]) * 0.5,
        0x0156: m.import_kwh + m.export_kwh,
    }
    for address, value in values.items():
        _put(image, address, f32(value))
    return image


def _sdm120(world: World, device_id: str) -> Image:
    image: Image = {}
    m = world.meters[device_id]
    volts = m.voltage_v
    pf = m.power_factor
    va = abs(m.power_w) / abs(pf)
    values: dict[int, float] = {
        0x0000: volts,
        0x0006: abs(m.power_w) / (volts * abs(pf)) if volts else 0.0,
        0x000C: m.power_w,
        0x0012: va,
        0x0018: math.sqrt(max(va * va - m.power_w**2, 0.0)),
        0x001E: pf,
        0x0046: m.frequency_hz,
        0x0048: m.import_kwh,
        0x004A: m.export_kwh,
        0x0156: m.import_kwh + m.export_kwh,
    }
    for address, value in values.items():
        _put(image, address, f32(value))
    return image


# ---- Deep Sea GenComm (holding registers, page * 256 + offset) ---------------------------------

GENCOMM_PAGE_3 = (768, 256)  # page 3: generating set status
GENCOMM_CONTROL_MODE = 772  # page 3 offset 4
GENCOMM_IDENT = 768  # page 3 offsets 0-1: manufacturer code, model number (used together to name the product)
DSE_MANUFACTURER = 1  # Deep Sea Electronics
DSE_MODEL = 32840  # a DSE73xx MKII family controller (the code a DSE7310 MKII reports)
GENCOMM_MODES = {"stop": 0, "auto": 1, "manual": 2}  # GenComm control mode codes
GENCOMM_PAGES_4_7 = (1024, 1024)  # pages 4 (instrumentation) to 7 (accumulated) in one run
GENCOMM_PAGE_16 = (4096, 256)  # page 16: system control keys
GENCOMM_KEY = 4104
UNIMPLEMENTED_U16 = 0xFFFF  # GenComm's "not available" for unsigned 16-bit
UNIMPLEMENTED_S16 = 0x7FFF
UNIMPLEMENTED_U32 = (0xFFFF, 0xFFFF)
UNIMPLEMENTED_S32 = (0x7FFF, 0xFFFF)


def _gencomm_garbage() -> Image:
    """GenComm's "not available" in every register of pages 4 to 7."""
    image: Image = dict.fromkeys(range(GENCOMM_PAGES_4_7[0], sum(GENCOMM_PAGES_4_7)), UNIMPLEMENTED_U16)
    image[1025] = UNIMPLEMENTED_S16  # coolant temperature is signed
    _put(image, 1536, UNIMPLEMENTED_S32)
    return image


def _gencomm(world: World, device_id: str) -> Image:
    image: Image = {}
    gen = world.generator_for_device(device_id)
    if gen is None:
        return image
    epoch = world.now.timestamp()
    mains_live = world.mains_live_for(gen)
    running = gen.running
    gen_v, gen_hz = gen.voltage_v(epoch), gen.frequency_hz(epoch)
    mains_v, mains_hz = 0.0, 0.0
    grid = gen.switch.feeding_grid() if gen.switch is not None else None
    if mains_live and grid is not None:
        mains_v, mains_hz = world.sources[grid].voltage_v(epoch), world.sources[grid].frequency_hz(epoch)
    elif running and gen.mains_breaker and gen.gen_breaker:
        mains_v, mains_hz = gen_v, gen_hz  # backfeed: the mains terminals are live from the generator
    image[GENCOMM_IDENT] = DSE_MANUFACTURER
    image[GENCOMM_IDENT + 1] = DSE_MODEL
    image[GENCOMM_CONTROL_MODE] = GENCOMM_MODES[gen.mode]
    image[1024] = 420 if running else 0  # oil pressure, kPa
    image[1025] = 82 if running else 38  # coolant temperature, °C (jacket heater keeps it warm)
    image[1027] = 78  # fuel level, %
    image[1029] = round(gen.battery_v() * 10)
    image[1030] = 1500 if running else 0  # engine speed, RPM (4-pole, 50 Hz)
    image[1031] = round(gen_hz * 10)
    for i in range(3):
        _put(image, 1032 + 2 * i, u32(round(gen_v * 10)))
    image[1059] = round(mains_hz * 10)
    for i in range(3):
        _put(image, 1060 + 2 * i, u32(round(mains_v * 10)))
    image[1408] = gen.engine
    image[1410] = gen.status_bits(mains_live)
    _put(image, 1536, s32(round(gen.power_kw * 1000)))
    _put(image, 1800, u32(round(gen.energy_kwh * 10)))
    _put(image, 1808, u32(gen.starts))
    return image


def _gencomm_write(world: World, device_id: str, address: int, values: list[int]) -> None:
    """A control key takes effect only as one write of [key, 65535 - key] to 4104-4105, as on the controller."""
    if address == GENCOMM_KEY and len(values) >= 2 and values[0] + values[1] == 0xFFFF:
        world.generator_key(device_id, values[0])


# ---- Socomec ATyS pM (holding registers) -------------------------------------------------------

ATYS_BLOCK = (20480, 16)
ATYS_MANUAL, ATYS_AUTO = 0, 1  # mode register 20481 codes


def _atys_garbage() -> Image:
    """0xFFFF in every register of the block."""
    return dict.fromkeys(range(ATYS_BLOCK[0], sum(ATYS_BLOCK)), 0xFFFF)


def _atys(world: World, device_id: str) -> Image:
    image: Image = {}
    sw = world.switch_for_device(device_id)
    if sw is None:
        return image
    image[20481] = ATYS_MANUAL if sw.manual else ATYS_AUTO
    image[20482] = sw.position_code()
    image[20486] = world.source_state_code(sw, 0)
    image[20487] = world.source_state_code(sw, 1)
    _put(image, 20489, u32(sw.cycles))
    return image


REGISTER_MAPS: dict[str, RegisterMap] = {
    "sdm630": RegisterMap(profile="sdm630", table="input", blocks=(SDM_BLOCK,), values=_sdm630, garbage=_sdm_garbage),
    "sdm120": RegisterMap(profile="sdm120", table="input", blocks=(SDM_BLOCK,), values=_sdm120, garbage=_sdm_garbage),
    "dse-gencomm": RegisterMap(
        profile="dse-gencomm",
        table="holding",
        blocks=(GENCOMM_PAGE_3, GENCOMM_PAGES_4_7, GENCOMM_PAGE_16),
        writable=((GENCOMM_KEY, 2),),
        fill=UNIMPLEMENTED_U16,
        values=_gencomm,
        garbage=_gencomm_garbage,
        write=_gencomm_write,
    ),
    "atys-pm": RegisterMap(
        profile="atys-pm", table="holding", blocks=(ATYS_BLOCK,), values=_atys, garbage=_atys_garbage
    ),
}
