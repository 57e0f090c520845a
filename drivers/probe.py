"""Finding devices: listen on the broker for what devices announce, ask the ones that answer requests,
and read the identifying registers of Modbus units, politely (read-only, rate-bounded, timed out).

The evidence is matched to profiles by drivers.discovery; this module only gathers it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import ssl
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import aiomqtt

from drivers.base import DriverSettings
from drivers.discovery import (
    Match,
    UnitAnswers,
    describe_answers,
    discoverable,
    match_modbus,
    match_shelly,
    match_tasmota,
    match_z2m,
    plan_reads,
    z2m_properties,
)
from drivers.modbus import DeviceError, Link, LinkDown
from drivers.profiles import Profile, RegisterCheck

log = logging.getLogger(__name__)

GATEWAY_CODES = frozenset({10, 11})  # gateway path unavailable, target failed to respond: no such unit
EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    6: "server busy",
    10: "gateway path unavailable",
    11: "gateway target failed to respond",
}
ILLEGAL_FUNCTION = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class Found:
    """One device that said something: where it is, what it said, and the profile it fits (or None)."""

    driver: Literal["mqtt", "modbus"]
    id: str
    said: str
    match: Match | None
    topic: str | None = None
    host: str | None = None
    port: int | None = None
    unit: int | None = None

    @property
    def key(self) -> tuple[str, ...]:
        """Where the device is: its topic, or host, port and unit."""
        if self.driver == "mqtt":
            return ("mqtt", self.topic or "")
        return ("modbus", self.host or "", str(self.port), str(self.unit))

    @property
    def where(self) -> str:
        """The key for people."""
        if self.driver == "mqtt":
            return f"mqtt {self.topic}"
        return f"modbus {self.host}:{self.port} unit {self.unit}"


class RateLimiter:
    """At most `per_s` requests a second: each request waits for its slot. Clock and sleep are injectable."""

    def __init__(
        self,
        per_s: float,
        *,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if per_s <= 0:
            raise ValueError("the request rate must be above 0")
        self.interval_s = 1.0 / per_s
        self._clock = clock
        self._sleep = sleep
        self._next = -float("inf")
        self.stamps: list[float] = []  # when each request was let through

    def _now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    async def wait(self) -> None:
        """Wait for the next slot."""
        now = self._now()
        if now < self._next:
            await self._sleep(self._next - now)
            now = max(self._now(), self._next)
        self._next = now + self.interval_s
        self.stamps.append(now)


# ---- Modbus ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModbusTarget:
    """A host:port and the unit ids to ask there."""

    host: str
    port: int
    units: tuple[int, ...] = (1,)


def parse_target(text: str) -> ModbusTarget:
    """HOST:PORT[/UNITS], UNITS like 1 or 1,2,5-7 (1..247)."""
    where, _, unit_text = text.partition("/")
    host, sep, port_text = where.rpartition(":")
    if not sep or not host:
        raise ValueError(f"'{text}': give HOST:PORT[/UNITS], e.g. 192.168.1.20:502/1-3")
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"'{text}': port '{port_text}' is not a number") from None
    if not 0 < port < 65536:
        raise ValueError(f"'{text}': port {port} is not 1..65535")
    units: list[int] = []
    for part in (unit_text or "1").split(","):
        lo, dash, hi = part.strip().partition("-")
        try:
            first, last = int(lo), int(hi) if dash else int(lo)
        except ValueError:
            raise ValueError(f"'{text}': unit '{part}' is not a number or a range like 1-5") from None
        if not 1 <= first <= last <= 247:
            raise ValueError(f"'{text}': units must be 1..247, got '{part}'")
        units.extend(u for u in range(first, last + 1) if u not in units)
    return ModbusTarget(host.strip("[]"), port, tuple(units))


async def probe_modbus(
    target: ModbusTarget, profiles: Iterable[Profile], limiter: RateLimiter, *, timeout_s: float = 1.0
) -> list[Found]:
    """Read each unit's signature registers (FC03/FC04 only, never a write) and match them."""
    profile_list = list(profiles)
    checks: list[RegisterCheck] = [c for _, disc in discoverable(profile_list, "modbus") for c in disc.registers]
    plan = plan_reads(checks)
    link = Link(target.host, target.port, DriverSettings(modbus_timeout_s=timeout_s, reconnect_min_s=0.0))
    out: list[Found] = []

    def found(unit: int, said: str, match: Match | None = None) -> Found:
        name = match.profile if match else "unknown"
        return Found(
            driver="modbus",
            id=f"{name}-{target.port}-{unit}",
            said=said,
            match=match,
            host=target.host,
            port=target.port,
            unit=unit,
        )

    try:
        for unit in target.units:
            answers = UnitAnswers()
            answered = False
            silent = ""
            skip_tables: set[str] = set()
            for block in plan:
                if block.table in skip_tables:
                    continue
                await limiter.wait()
                try:
                    values = await link.read(block.table, block.address, block.count, unit)
                except DeviceError as exc:
                    code = exc.code
                    answers.refuse(block, code)
                    answered = True
                    if code in GATEWAY_CODES:
                        silent = f"exception {code} ({EXCEPTION_NAMES[code]}: no device answers at this unit id)"
                        break
                    if code == ILLEGAL_FUNCTION:
                        skip_tables.add(block.table)
                    continue
                except LinkDown as exc:
                    if "cannot connect" in str(exc):
                        return [*out, found(unit, f"no answer: cannot connect to {target.host}:{target.port}")]
                    silent = f"no answer ({exc})"
                    break
                answers.record(block, values)
                answered = True
            if silent and not answers.registers:
                out.append(found(unit, silent))
                continue
            if not answered:
                continue
            codes = set(answers.refused.values())
            if not answers.registers and len(codes) == 1:
                (code,) = codes
                out.append(found(unit, f"exception {code} ({EXCEPTION_NAMES.get(code, 'unknown')}) to every read"))
                continue
            match = match_modbus(answers, profile_list)
            out.append(found(unit, describe_answers(answers, checks), match))
    finally:
        link.close()
    return out


# ---- MQTT -----------------------------------------------------------------------------------------

DISCOVERY_TOPICS = (
    "+/bridge/devices",  # Zigbee2MQTT, any base topic
    "tasmota/discovery/+/config",
    "tasmota/discovery/+/sensors",
    "tele/+/LWT",  # a Tasmota device with its native discovery off still has its LWT
    "+/online",  # Shelly Gen2
)


@dataclass(slots=True)
class Heard:
    """What the broker carried during the listening window."""

    z2m: dict[str, list[Any]] = field(default_factory=dict)  # base -> bridge/devices list
    tasmota_config: dict[str, dict[str, Any]] = field(default_factory=dict)  # mac -> config
    tasmota_sensors: dict[str, dict[str, Any]] = field(default_factory=dict)  # mac -> sensors
    tasmota_lwt: dict[str, str] = field(default_factory=dict)  # topic -> Online/Offline
    shelly_online: dict[str, str] = field(default_factory=dict)  # id -> true/false
    shelly_info: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> GetDeviceInfo result
    asked: set[str] = field(default_factory=set)


def _json(payload: bytes) -> Any:
    try:
        return json.loads(payload)
    except ValueError:
        return None


def _client(url: str, identifier: str) -> aiomqtt.Client:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ValueError(f"'{url}' is not an mqtt:// or mqtts:// URL")
    tls = parts.scheme == "mqtts"
    return aiomqtt.Client(
        parts.hostname or "127.0.0.1",
        parts.port or (8883 if tls else 1883),
        username=urllib.parse.unquote(parts.username) if parts.username else None,
        password=urllib.parse.unquote(parts.password) if parts.password else None,
        identifier=identifier,
        tls_context=ssl.create_default_context() if tls else None,
        timeout=10,
    )


async def listen_mqtt(url: str, *, listen_s: float) -> Heard:
    """Listen `listen_s` seconds to the retained announcements and ask each Shelly who it is."""
    try:
        return await _listen(url, listen_s)
    except aiomqtt.MqttError as exc:
        raise ConnectionError(f"broker {_redacted(url)}: {exc}") from None


def _redacted(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    return parts._replace(netloc=f"{parts.username}:***@{parts.hostname}:{parts.port}").geturl()


async def _listen(url: str, listen_s: float) -> Heard:
    src = f"wattkeeper-discover-{secrets.token_hex(4)}"
    heard = Heard()
    async with _client(url, src) as client:
        for topic in (*DISCOVERY_TOPICS, f"{src}/rpc"):
            await client.subscribe(topic, qos=1)

        async def read() -> None:
            async for msg in client.messages:
                payload = msg.payload if isinstance(msg.payload, bytes) else str(msg.payload or "").encode()
                await _heard(client, heard, str(msg.topic), payload, src)

        reader = asyncio.create_task(read())
        done, _ = await asyncio.wait([reader], timeout=listen_s)
        reader.cancel()
        await asyncio.wait([reader])
        if reader in done:
            reader.result()  # the broker error that ended the listening
    return heard


async def _heard(client: aiomqtt.Client, heard: Heard, topic: str, payload: bytes, src: str) -> None:
    parts = topic.split("/")
    if topic == f"{src}/rpc":
        answer = _json(payload)
        if isinstance(answer, dict) and isinstance(answer.get("result"), dict) and isinstance(answer.get("src"), str):
            heard.shelly_info[answer["src"]] = answer["result"]
    elif len(parts) == 3 and parts[1:] == ["bridge", "devices"]:
        devices = _json(payload)
        if isinstance(devices, list):
            heard.z2m[parts[0]] = devices
    elif len(parts) == 4 and parts[:2] == ["tasmota", "discovery"]:
        data = _json(payload)
        if isinstance(data, dict):
            (heard.tasmota_config if parts[3] == "config" else heard.tasmota_sensors)[parts[2]] = data
    elif len(parts) == 3 and parts[0] == "tele" and parts[2] == "LWT":
        heard.tasmota_lwt[parts[1]] = payload.decode(errors="replace")
    elif len(parts) == 2 and parts[1] == "online" and payload in (b"true", b"false"):
        heard.shelly_online[parts[0]] = payload.decode()
        if parts[0] not in heard.asked:
            heard.asked.add(parts[0])
            request = {"id": len(heard.asked), "src": src, "method": "Shelly.GetDeviceInfo"}
            await client.publish(f"{parts[0]}/rpc", json.dumps(request), qos=1)


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "_.-" else "-" for ch in text).strip("-.") or "device"


def interpret(heard: Heard, profiles: Iterable[Profile]) -> list[Found]:
    """Every device heard, matched to a profile where one fits."""
    profile_list = list(profiles)
    out: list[Found] = []
    for base, devices in sorted(heard.z2m.items()):
        for entry in devices:
            if not isinstance(entry, dict) or entry.get("type") == "Coordinator":
                continue
            name = str(entry.get("friendly_name") or entry.get("ieee_address") or "?")
            definition = entry.get("definition")
            if isinstance(definition, dict):
                props = ", ".join(sorted(z2m_properties(definition.get("exposes"))))
                said = (
                    f"{definition.get('vendor')} {definition.get('model')}"
                    f" ({entry.get('manufacturer')} {entry.get('model_id')}), exposes {props or 'nothing'}"
                )
            else:
                said = f"unsupported by Zigbee2MQTT ({entry.get('manufacturer')} {entry.get('model_id')})"
            out.append(
                Found(
                    driver="mqtt",
                    id=_slug(name),
                    said=said,
                    match=match_z2m(entry, profile_list),
                    topic=f"{base}/{name}",
                )
            )
    configured: set[str] = set()
    for mac, config in sorted(heard.tasmota_config.items()):
        topic = str(config.get("t") or mac)
        configured.add(topic)
        sensors = heard.tasmota_sensors.get(mac)
        sn = sensors.get("sn") if sensors else None
        groups = sorted(k for k in sn if k != "Time") if isinstance(sn, dict) else []
        said = f"Tasmota {config.get('sw')}, module {config.get('md')}, sensors {', '.join(groups) or 'none'}"
        match = match_tasmota(config, sensors, profile_list)
        out.append(Found(driver="mqtt", id=_slug(topic), said=said, match=match, topic=topic))
    for topic, word in sorted(heard.tasmota_lwt.items()):
        if topic not in configured:
            said = f"LWT {word}, no discovery config (Tasmota SetOption19 1, or discovery off?)"
            out.append(Found(driver="mqtt", id=_slug(topic), said=said, match=None, topic=topic))
    for shelly_id, online in sorted(heard.shelly_online.items()):
        info = heard.shelly_info.get(shelly_id)
        if info is None:
            said = f"online {online}; no answer to Shelly.GetDeviceInfo"
            out.append(Found(driver="mqtt", id=_slug(shelly_id), said=said, match=None, topic=shelly_id))
            continue
        said = f"Shelly {info.get('model')} app {info.get('app')} gen {info.get('gen')} fw {info.get('ver')}"
        match = match_shelly(info, profile_list)
        out.append(Found(driver="mqtt", id=_slug(shelly_id), said=said, match=match, topic=shelly_id))
    return out


class BrokerWatch:
    """Keeps listening to the announcements on a broker, so the service can list devices no room holds.

    One connection of its own, reconnecting with backoff; the state is what was heard last (retained
    announcements come back on every reconnect). Shelly devices are asked who they are once each.
    """

    def __init__(self, url: str, *, client_id: str, reconnect_s: float = 2.0, reconnect_max_s: float = 60.0) -> None:
        self.url = url
        self.client_id = client_id
        self.heard = Heard()
        self.connected = False
        self.last_error = ""
        self._reconnect_s = reconnect_s
        self._reconnect_max_s = reconnect_max_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start listening in the background."""
        self._task = asyncio.create_task(self._run(), name=f"broker-watch-{self.client_id}")

    async def stop(self) -> None:
        """Stop listening."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])
            self._task = None

    def found(self, profiles: Iterable[Profile]) -> list[Found]:
        """Every device heard so far, matched to profiles."""
        return interpret(self.heard, profiles)

    async def _run(self) -> None:
        pause = self._reconnect_s
        while True:
            try:
                async with _client(self.url, self.client_id) as client:
                    for topic in (*DISCOVERY_TOPICS, f"{self.client_id}/rpc"):
                        await client.subscribe(topic, qos=1)
                    self.connected, self.last_error, pause = True, "", self._reconnect_s
                    self.heard.asked.clear()  # a Shelly that came back is asked again
                    async for msg in client.messages:
                        raw = msg.payload if isinstance(msg.payload, bytes) else str(msg.payload or "").encode()
                        await _heard(client, self.heard, str(msg.topic), raw, self.client_id)
            except aiomqtt.MqttError as exc:
                if str(exc) != self.last_error:
                    log.warning("broker watch %s: %s", self.url, exc)
                self.last_error = str(exc)
            self.connected = False
            await asyncio.sleep(pause)
            pause = min(pause * 2, self._reconnect_max_s)
