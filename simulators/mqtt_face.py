"""MQTT face of the simulated office devices, by the vendors' conventions (DESIGN.md §3).

Like a real installation: every Tasmota and Shelly device holds its own broker connection with its
own last will; Zigbee devices share one Zigbee2MQTT bridge connection per base topic. Devices report
on change and every REPORT_S of simulated time, obey commands on their own topics and then report
their new state.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import ssl
import urllib.parse
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

import aiomqtt

from service.config.site import Device
from simulators import announce, payloads
from simulators.payloads import JsonDict
from simulators.rand import between
from simulators.world import World

log = logging.getLogger(__name__)

REPORT_S = 60.0  # simulated seconds between periodic reports (Tasmota TelePeriod, Zigbee reporting)
MIN_REPORT_REAL_S = 1.0  # at high speed, periodic reports still come at most once a real second
RECONNECT_S = 1.0
KEEPALIVE_S = 15
CLOSE_GRACE_S = 5.0
# a change this large is reported at once (absolute, relative to the last report)
DELTAS: dict[str, tuple[float, float]] = {
    "power": (5.0, 0.1),
    "apower": (5.0, 0.1),
    "local_temperature": (0.2, 0.0),
    "illuminance": (50.0, 0.2),
}
EXACT = frozenset({"occupied_cooling_setpoint", "occupied_heating_setpoint"})
Z2M_WRITABLE = {
    "z2m-plug": frozenset({"state"}),
    "z2m-thermostat": frozenset({"system_mode", "occupied_cooling_setpoint", "occupied_heating_setpoint"}),
}


@dataclass(frozen=True, slots=True)
class Broker:
    """Where the devices connect."""

    host: str
    port: int
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: str | None = None  # mqtts://...?ca=/path/ca.crt: a private CA (deploy/mosquitto/make-certs.sh)

    @classmethod
    def from_url(cls, url: str) -> Broker:
        """mqtt://[user:pass@]host[:port] or mqtts://...[?ca=/path/ca.crt]"""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts"):
            raise ValueError(f"'{url}' is not an mqtt:// or mqtts:// URL")
        tls = parts.scheme == "mqtts"
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or (8883 if tls else 1883),
            username=urllib.parse.unquote(parts.username) if parts.username else None,
            password=urllib.parse.unquote(parts.password) if parts.password else None,
            tls=tls,
            ca_file=next(iter(urllib.parse.parse_qs(parts.query).get("ca", [])), None) if tls else None,
        )


def changed(before: JsonDict | None, now: JsonDict) -> bool:
    """Whether a new state differs enough from the last report to be reported at once."""
    if before is None:
        return True
    for key, value in now.items():
        old = before.get(key)
        if isinstance(value, bool | str) or value is None or key in EXACT:
            if old != value:
                return True
        elif key in DELTAS and isinstance(value, int | float):
            if not isinstance(old, int | float):
                return True
            absolute, relative = DELTAS[key]
            delta = abs(value - old) + 1e-9  # 25.2 - 25.0 is a whole 0.2 °C step
            if delta >= absolute and delta >= relative * abs(old):
                return True
    return False


class Link:
    """One broker connection, kept up (reconnecting) while it is wanted."""

    def __init__(
        self,
        broker: Broker,
        identifier: str,
        will: aiomqtt.Will,
        *,
        wanted: Callable[[], bool],
        up: Callable[[aiomqtt.Client], Awaitable[None]],
        down: Callable[[aiomqtt.Client], Awaitable[None]],
        message: Callable[[str, bytes], Awaitable[None]],
    ) -> None:
        self.broker = broker
        self.identifier = identifier
        self.will = will
        self._wanted, self._up, self._down, self._message = wanted, up, down, message
        self.client: aiomqtt.Client | None = None
        self.ready = asyncio.Event()
        self.last_error = ""
        self._poke = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start keeping the connection."""
        self._task = asyncio.create_task(self._run(), name=f"mqtt-{self.identifier}")

    def poke(self) -> None:
        """Re-read `wanted` (a device went offline or came back)."""
        self._poke.set()

    async def close(self) -> None:
        """Say goodbye (offline messages) and disconnect."""
        self._closing = True
        self._poke.set()
        if self._task is not None:
            # A connection attempt to a dead broker is not worth waiting for. asyncio.wait, not
            # wait_for under suppress(CancelledError): that would also swallow a cancellation of
            # whoever is closing us, and Python 3.11's wait_for can lose one (gh-86296).
            _, pending = await asyncio.wait([self._task], timeout=CLOSE_GRACE_S)
            for task in pending:
                task.cancel()
                await asyncio.wait([task])

    async def publish(self, topic: str, payload: str | bytes, *, retain: bool = False, qos: int = 0) -> None:
        """Publish if connected; a device that is not connected says nothing."""
        client = self.client
        if client is None:
            return
        try:
            await client.publish(topic, payload, qos=qos, retain=retain)
        except aiomqtt.MqttError as exc:
            log.debug("%s: publish on %s failed: %s", self.identifier, topic, exc)

    def _want(self) -> bool:
        return not self._closing and self._wanted()

    async def _run(self) -> None:
        while not self._closing:
            if not self._want():
                self.ready.set()  # an offline device is as ready as it will get
                self._poke.clear()
                if not self._want():
                    await self._poke.wait()
                continue
            try:
                await self._session()
            except aiomqtt.MqttError as exc:
                if str(exc) != self.last_error:
                    log.warning("%s: broker %s:%d: %s", self.identifier, self.broker.host, self.broker.port, exc)
                self.last_error = str(exc)
                if not self._closing:
                    await asyncio.sleep(RECONNECT_S)

    async def _session(self) -> None:
        b = self.broker
        client = aiomqtt.Client(
            b.host,
            b.port,
            username=b.username,
            password=b.password,
            identifier=self.identifier,
            will=self.will,
            keepalive=KEEPALIVE_S,
            tls_context=ssl.create_default_context(cafile=b.ca_file) if b.tls else None,
        )
        async with client:
            self.client = client
            try:
                await self._up(client)
                self.ready.set()
                self.last_error = ""
                reader = asyncio.create_task(self._read(client))
                waiter = asyncio.create_task(self._until_unwanted())
                done, _ = await asyncio.wait({reader, waiter}, return_when=asyncio.FIRST_COMPLETED)
                for task in (reader, waiter):
                    task.cancel()
                await asyncio.wait({reader, waiter})  # never hides a cancellation of this session
                if waiter in done:
                    await self._down(client)
                else:
                    reader.result()  # re-raise the broker error that ended the session
            finally:
                self.client = None

    async def _until_unwanted(self) -> None:
        while self._want():
            self._poke.clear()
            if self._want():
                await self._poke.wait()

    async def _read(self, client: aiomqtt.Client) -> None:
        async for msg in client.messages:
            payload = msg.payload if isinstance(msg.payload, bytes) else str(msg.payload or "").encode()
            try:
                await self._message(str(msg.topic), payload)
            except Exception:
                log.exception("%s: handling %s failed", self.identifier, msg.topic)


class Agent(ABC):
    """One simulated MQTT device: renders its reports and obeys its commands."""

    def __init__(self, face: MqttFace, device: Device) -> None:
        self.world = face.world
        self.device = device
        self.topic = device.topic or device.id
        self.link: Link
        self.last: JsonDict | None = None
        self.last_sim = -math.inf
        self.last_real = -math.inf
        self.garbage_n = 0
        self.announced_online: bool | None = None

    @property
    def online(self) -> bool:
        """False while a device_offline fault holds."""
        return self.world.is_online(self.device.id)

    def state(self) -> JsonDict:
        """This device's entry of the world state."""
        return self.world.device_state(self.device.id)

    def due(self, report: JsonDict) -> bool:
        """Whether to report now: a real change, or the periodic report."""
        if changed(self.last, report):
            return True
        loop_now = asyncio.get_running_loop().time()
        return (
            self.world.elapsed_s - self.last_sim >= REPORT_S - 1e-9 and loop_now - self.last_real >= MIN_REPORT_REAL_S
        )

    def mark(self, report: JsonDict) -> None:
        """Remember what was reported and when."""
        self.last = report
        self.last_sim = self.world.elapsed_s
        self.last_real = asyncio.get_running_loop().time()

    def encode(self, report: JsonDict) -> bytes:
        """JSON, or a malformed version of it while a device_garbage fault holds."""
        if self.world.is_garbage(self.device.id):
            self.garbage_n += 1
            return payloads.garbage(report, self.garbage_n)
        return json.dumps(report).encode()

    @abstractmethod
    async def tick(self) -> None:
        """Follow the world: availability changes and due reports."""

    @abstractmethod
    async def message(self, topic: str, payload: bytes) -> None:
        """A message on one of this device's command topics."""

    @abstractmethod
    def subscriptions(self) -> list[str]:
        """Command topics."""


class Z2mDevice(Agent):
    """A Zigbee device behind the Zigbee2MQTT bridge (state JSON on zigbee2mqtt/<name>)."""

    def __init__(self, face: MqttFace, device: Device) -> None:
        super().__init__(face, device)
        self.base, _, self.name = self.topic.partition("/")

    async def log_error(self, message: str) -> None:
        """An error line on the bridge's logging topic, as Zigbee2MQTT reports a failed command."""
        await self.link.publish(f"{self.base}/bridge/logging", json.dumps({"level": "error", "message": message}))

    def report(self) -> JsonDict:
        """The state Zigbee2MQTT holds for the device."""
        lq = round(between(self.world.seed, 60, 200, "lqi", self.device.id, int(self.world.elapsed_s // 600)))
        return payloads.z2m_state(self.device.profile, self.state(), lq)

    def subscriptions(self) -> list[str]:
        """set, set/<attribute>, get."""
        return [f"{self.topic}/set", f"{self.topic}/set/+", f"{self.topic}/get"]

    async def announce(self) -> None:
        """Publish availability (retained) as the bridge does."""
        online = self.online
        self.announced_online = online
        state = "online" if online else "offline"
        await self.link.publish(f"{self.topic}/availability", json.dumps({"state": state}), retain=True)

    async def publish_state(self, force: bool = False) -> None:
        """Publish the device state if due (or forced)."""
        report = self.report()
        if force or self.due(report):
            await self.link.publish(self.topic, self.encode(report))
            self.mark(report)

    async def tick(self) -> None:
        """Availability changes, then due reports while online."""
        if self.online != self.announced_online:
            await self.announce()
            if self.online:
                await self.publish_state(force=True)
        elif self.online:
            await self.publish_state()

    async def message(self, topic: str, payload: bytes) -> None:
        """`set` JSON, `set/<attr>` plain value, `get`."""
        name = self.name
        if not self.online:
            await self.log_error(f"Publish 'set' to '{name}' failed: 'Error: Delivery failed'")
            return
        if topic == f"{self.topic}/get":
            await self.publish_state(force=True)
            return
        if topic.startswith(f"{self.topic}/set/"):
            attribute = topic.rsplit("/", 1)[-1]
            text = payload.decode(errors="replace")
            try:
                value: Any = json.loads(text)
            except ValueError:
                value = text
            command: Any = {attribute: value}
        else:
            try:
                command = json.loads(payload)
            except ValueError:
                await self.log_error(f"Invalid message '{payload.decode(errors='replace')}', skipping...")
                return
        if not isinstance(command, dict):
            await self.log_error(f"Invalid message '{payload.decode(errors='replace')}', skipping...")
            return
        writable = Z2M_WRITABLE.get(self.device.profile, frozenset())
        for key, value in command.items():
            if key not in writable:
                await self.log_error(f"No converter available for '{key}' on '{name}'")
                continue
            try:
                self._apply(key, value)
            except (ValueError, TypeError) as exc:
                await self.log_error(f"Publish 'set' '{key}' to '{name}' failed: '{exc}'")
        await self.publish_state(force=True)

    def _apply(self, key: str, value: object) -> None:
        dev_id = self.device.id
        if key == "state":
            self.world.switch_relay(dev_id, payloads.z2m_on(value, bool(self.state()["on"])), "mqtt")
        elif key == "system_mode":
            if not isinstance(value, str):
                raise ValueError(f"system_mode must be a string, not {value!r}")
            self.world.set_thermostat(dev_id, mode=value)
        else:
            number = float(value)  # type: ignore[arg-type]
            if key == "occupied_cooling_setpoint":
                self.world.set_thermostat(dev_id, cooling_setpoint=number)
            else:
                self.world.set_thermostat(dev_id, heating_setpoint=number)


class TasmotaDevice(Agent):
    """A Tasmota relay with energy monitor (cmnd/stat/tele topics, LWT)."""

    def __init__(self, face: MqttFace, device: Device) -> None:
        super().__init__(face, device)
        self.booted_s = 0.0
        self.power_reported: bool | None = None
        self.day: date | None = None
        self.day_start_kwh = 0.0
        self.yesterday_kwh = 0.0

    def subscriptions(self) -> list[str]:
        """cmnd/<t>/#."""
        return [f"cmnd/{self.topic}/#"]

    def _energy_days(self, total_kwh: float) -> tuple[float, float]:
        today = self.world.now.date()
        if self.day != today:
            if self.day is not None:
                self.yesterday_kwh = total_kwh - self.day_start_kwh
            self.day, self.day_start_kwh = today, total_kwh
        return total_kwh - self.day_start_kwh, self.yesterday_kwh

    async def up(self) -> None:
        """Connected: LWT Online, power state and a first telemetry round."""
        self.booted_s = self.world.elapsed_s
        self.announced_online = True
        await self.link.publish(f"tele/{self.topic}/LWT", "Online", retain=True, qos=1)
        await self.publish_discovery()
        await self.publish_power()
        await self.publish_tele()

    async def publish_discovery(self) -> None:
        """Retained tasmota/discovery/<MAC>/config and .../sensors, as Tasmota does on connecting."""
        base = f"tasmota/discovery/{announce.mac_address(self.device.id)}"
        config = announce.tasmota_config(self.device.id, self.topic)
        await self.link.publish(f"{base}/config", json.dumps(config), retain=True, qos=1)
        today, yesterday = self._energy_days(self.state()["energy_kwh"])
        sensor = payloads.tasmota_sensor(self.state(), self.world.now, today, yesterday)
        await self.link.publish(f"{base}/sensors", json.dumps(announce.tasmota_sensors(sensor)), retain=True, qos=1)

    async def down(self) -> None:
        """Going away: LWT Offline, as the broker would publish from the will."""
        self.announced_online = False
        await self.link.publish(f"tele/{self.topic}/LWT", "Offline", retain=True, qos=1)

    async def publish_power(self) -> None:
        """stat/<t>/RESULT and stat/<t>/POWER, as after a command or a button press."""
        on = bool(self.state()["on"])
        self.power_reported = on
        word = payloads.tasmota_power_word(on)
        await self.link.publish(f"stat/{self.topic}/RESULT", self.encode({"POWER": word}))
        await self.link.publish(f"stat/{self.topic}/POWER", word)

    async def publish_tele(self) -> None:
        """tele/<t>/STATE and tele/<t>/SENSOR."""
        dev, now = self.state(), self.world.now
        rssi = round(between(self.world.seed, 50, 90, "rssi", self.device.id))
        today, yesterday = self._energy_days(dev["energy_kwh"])
        state = payloads.tasmota_state(dev, now, self.world.elapsed_s - self.booted_s, rssi)
        sensor = payloads.tasmota_sensor(dev, now, today, yesterday)
        await self.link.publish(f"tele/{self.topic}/STATE", self.encode(state))
        await self.link.publish(f"tele/{self.topic}/SENSOR", self.encode(sensor))
        self.mark({"POWER": state["POWER"]})

    async def tick(self) -> None:
        """Button presses (state changed in the world) and the TelePeriod."""
        if self.link.client is None:
            return
        if bool(self.state()["on"]) != self.power_reported:
            await self.publish_power()
        loop_now = asyncio.get_running_loop().time()
        if self.world.elapsed_s - self.last_sim >= REPORT_S - 1e-9 and loop_now - self.last_real >= MIN_REPORT_REAL_S:
            await self.publish_tele()

    async def message(self, topic: str, payload: bytes) -> None:
        """cmnd/<t>/POWER (ON, OFF, TOGGLE, empty = query), cmnd/<t>/STATE."""
        command = topic.rsplit("/", 1)[-1].upper()
        result = f"stat/{self.topic}/RESULT"
        if command in ("POWER", "POWER1"):
            try:
                on = payloads.tasmota_command(payload.decode(errors="replace"), bool(self.state()["on"]))
            except ValueError:
                await self.link.publish(result, json.dumps({"Command": "Error"}))
                return
            if on is not None:
                self.world.switch_relay(self.device.id, on, "mqtt")
            await self.publish_power()
        elif command == "STATE":
            dev = self.state()
            rssi = round(between(self.world.seed, 50, 90, "rssi", self.device.id))
            state = payloads.tasmota_state(dev, self.world.now, self.world.elapsed_s - self.booted_s, rssi)
            await self.link.publish(result, self.encode(state))
        else:
            await self.link.publish(result, json.dumps({"Command": "Unknown"}))


class ShellyDevice(Agent):
    """A Shelly Gen2 plug (status/switch:0, JSON-RPC on <id>/rpc, <id>/online)."""

    def subscriptions(self) -> list[str]:
        """<id>/rpc."""
        return [f"{self.topic}/rpc"]

    def report(self) -> JsonDict:
        """The Switch component status."""
        dev = self.state()
        return payloads.shelly_status(dev, self.world.now, 34.0 + dev["power_w"] / 150)

    async def up(self) -> None:
        """Connected: online true and a first status."""
        self.announced_online = True
        await self.link.publish(f"{self.topic}/online", "true", retain=True, qos=1)
        await self.publish_status(force=True)

    async def down(self) -> None:
        """Going away: online false."""
        self.announced_online = False
        await self.link.publish(f"{self.topic}/online", "false", retain=True, qos=1)

    async def publish_status(self, force: bool = False) -> None:
        """<id>/status/switch:0 if due (or forced)."""
        report = self.report()
        if force or self.due(report):
            await self.link.publish(f"{self.topic}/status/switch:0", self.encode(report))
            self.mark(report)

    async def tick(self) -> None:
        """Status on change and periodically."""
        if self.link.client is not None:
            await self.publish_status()

    async def message(self, topic: str, payload: bytes) -> None:
        """A JSON-RPC request; the answer goes to <src>/rpc."""
        try:
            request = json.loads(payload)
        except ValueError:
            return  # no src to answer to, as on the device
        if not isinstance(request, dict) or not isinstance(request.get("src"), str) or not request["src"]:
            return
        src, method = request["src"], request.get("method")
        answer: JsonDict = {"id": request.get("id"), "src": self.topic, "dst": src}
        try:
            answer["result"] = self._call(str(method), request.get("params", {}))
        except LookupError:
            answer["error"] = payloads.shelly_error(404, f"No handler for {method}")
        except ValueError as exc:
            answer["error"] = payloads.shelly_error(-103, str(exc))
        await self.link.publish(f"{src}/rpc", json.dumps(answer))
        if method in ("Switch.Set", "Switch.Toggle") and "result" in answer:
            await self.publish_status(force=True)

    def _call(self, method: str, params: object) -> object:
        dev_id = self.device.id
        if method == "Switch.Set":
            args = payloads.shelly_params_id(params)
            if not isinstance(args.get("on"), bool):
                raise ValueError("Invalid argument 'on': boolean expected")
            return {"was_on": self.world.switch_relay(dev_id, args["on"], "mqtt")}
        if method == "Switch.Toggle":
            payloads.shelly_params_id(params)
            return {"was_on": self.world.switch_relay(dev_id, None, "mqtt")}
        if method == "Switch.GetStatus":
            payloads.shelly_params_id(params)
            return self.report()
        if method == "Shelly.GetStatus":
            return {"switch:0": self.report(), "sys": {"uptime": int(self.world.elapsed_s)}}
        if method == "Shelly.GetDeviceInfo":
            return announce.shelly_device_info(self.device.id, self.topic)
        raise LookupError(method)


# The MQTT profiles these simulators model (Z2mDevice, TasmotaDevice, ShellyDevice).
SIMULATED_PROFILES = frozenset(
    {"z2m-occupancy", "z2m-contact", "z2m-thermostat", "z2m-plug", "tasmota-relay", "shelly-plug"}
)


class MqttFace:
    """Every MQTT device of a site, on one broker."""

    def __init__(self, world: World, mqtt_url: str, *, client_tag: str) -> None:
        self.world = world
        self.broker = Broker.from_url(mqtt_url)
        self.url = mqtt_url
        self.agents: list[Agent] = []
        self.links: list[Link] = []
        bridges: dict[str, list[Z2mDevice]] = {}
        for dev in world.site.devices:
            if dev.driver != "mqtt":
                continue
            if dev.profile.startswith("z2m-"):
                z2m = Z2mDevice(self, dev)
                bridges.setdefault(z2m.base, []).append(z2m)
                self.agents.append(z2m)
            elif dev.profile == "tasmota-relay":
                self._own_link(TasmotaDevice(self, dev), f"DVES_{dev.id}-{client_tag}")
            elif dev.profile == "shelly-plug":
                self._own_link(ShellyDevice(self, dev), f"{dev.topic}-{client_tag}")
        for base, members in bridges.items():
            self._bridge(base, members, client_tag)

    def _own_link(self, agent: TasmotaDevice | ShellyDevice, identifier: str) -> None:
        if isinstance(agent, TasmotaDevice):
            will = aiomqtt.Will(f"tele/{agent.topic}/LWT", "Offline", qos=1, retain=True)
        else:
            will = aiomqtt.Will(f"{agent.topic}/online", "false", qos=1, retain=True)

        async def up(client: aiomqtt.Client) -> None:
            for topic in agent.subscriptions():
                await client.subscribe(topic)
            await agent.up()

        async def down(_client: aiomqtt.Client) -> None:
            await agent.down()

        agent.link = Link(
            self.broker,
            identifier,
            will,
            wanted=lambda: agent.online,
            up=up,
            down=down,
            message=agent.message,
        )
        self.agents.append(agent)
        self.links.append(agent.link)

    def _bridge(self, base: str, members: list[Z2mDevice], client_tag: str) -> None:
        # longest name first, so zigbee2mqtt/a/b/set goes to device "a/b" rather than "a"
        routes = sorted(members, key=lambda m: len(m.topic), reverse=True)

        async def up(client: aiomqtt.Client) -> None:
            await client.publish(f"{base}/bridge/state", json.dumps({"state": "online"}), qos=1, retain=True)
            listed = [(m.device.id, m.name, m.device.profile) for m in members]
            devices = json.dumps(announce.z2m_bridge_devices(listed))
            await client.publish(f"{base}/bridge/devices", devices, qos=1, retain=True)
            for topic in (t for m in members for t in m.subscriptions()):
                await client.subscribe(topic)
            for member in members:
                await member.announce()
                if member.online:
                    await member.publish_state(force=True)

        async def down(client: aiomqtt.Client) -> None:
            for member in members:
                await client.publish(f"{member.topic}/availability", json.dumps({"state": "offline"}), retain=True)
            # QoS 1 last: its acknowledgement means everything before it on this connection was delivered
            await client.publish(f"{base}/bridge/state", json.dumps({"state": "offline"}), qos=1, retain=True)

        async def message(topic: str, payload: bytes) -> None:
            for member in routes:
                if topic.startswith(f"{member.topic}/"):
                    await member.message(topic, payload)
                    return

        link = Link(
            self.broker,
            f"zigbee2mqtt-{base}-{client_tag}",
            aiomqtt.Will(f"{base}/bridge/state", json.dumps({"state": "offline"}), qos=1, retain=True),
            wanted=lambda: True,
            up=up,
            down=down,
            message=message,
        )
        for member in members:
            member.link = link
        self.links.append(link)

    async def start(self, timeout_s: float = 15.0) -> None:
        """Connect every device and wait until each has published its first state."""
        for link in self.links:
            link.start()
        try:
            # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a cancellation that
            # lands as the last device gets ready (gh-86296), and a stopped simulation then ran on.
            async with asyncio.timeout(timeout_s):
                await asyncio.gather(*(link.ready.wait() for link in self.links))
        except TimeoutError:
            errors = {link.last_error for link in self.links if not link.ready.is_set() and link.last_error}
            await self.stop()
            raise ConnectionError(
                f"MQTT broker {self.url}: the simulated devices could not connect ({'; '.join(errors) or 'timeout'})"
            ) from None

    async def tick(self) -> None:
        """Availability changes and due reports of every device."""
        for link in self.links:
            link.poke()
        for agent in self.agents:
            await agent.tick()

    async def stop(self) -> None:
        """Every device says goodbye and disconnects."""
        await asyncio.gather(*(link.close() for link in self.links))
