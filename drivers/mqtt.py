"""Generic MQTT driver: one broker connection for every MQTT device, payloads read per profile.

QoS 1 subscriptions on a persistent session (MQTT 3.1.1, clean_session=False, stable client
id), so messages published while we reconnect are delivered afterwards. MQTT 3.1.1 rather than
5 because every broker a site may run speaks it, the embedded demo broker (amqtt) included.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import parse_qs, unquote, urlsplit
from zoneinfo import ZoneInfo

import aiomqtt

from drivers.base import DeviceConfig, DeviceStats, DriverContext, Event, cancel_and_wait, log, reading
from drivers.conventions import (
    AVAILABILITY,
    Availability,
    Binding,
    Malformed,
    Parsed,
    Publish,
    ShellyGen2,
    bind,
    command_value,
    matches,
    parse_rpc_reply,
)
from drivers.profiles import MqttPoint, MqttProfile
from drivers.types import CommandRefused, CommandResult, Value

GATHER_S = 0.005  # after a message, the pause in which the next ones gather (see MqttDriver._run)


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    """Where the broker is and how to log in."""

    host: str
    port: int
    username: str | None = None
    password: str | None = None
    tls: ssl.SSLContext | None = None


def parse_mqtt_url(url: str) -> BrokerAddress:
    """`mqtt://[user:pass@]host[:port]`, or `mqtts://...` for TLS (`?ca=/path/ca.pem` adds a CA file)."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ValueError(f"'{url}' is not an mqtt:// or mqtts:// URL")
    tls = None
    if parts.scheme == "mqtts":
        ca = parse_qs(parts.query).get("ca")
        tls = ssl.create_default_context(cafile=ca[0] if ca else None)
    return BrokerAddress(
        host=parts.hostname,
        port=parts.port or (8883 if tls else 1883),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        tls=tls,
    )


@dataclass(slots=True)
class _Order:
    """Ordering guard of one channel of one device."""

    source_s: float | None = None  # newest timestamp the device put in a message on this channel
    live: bool = False  # a non-retained message arrived: retained ones are replays from now on


@dataclass(slots=True)
class _Waiter:
    """A command waiting for the device to report the requested value."""

    point: MqttPoint
    requested: Value
    done: asyncio.Future[Value]


@dataclass(slots=True)
class MqttDevice:
    """One MQTT device: its binding and what has been heard from it."""

    id: str
    binding: Binding
    stats: DeviceStats
    orders: dict[str, _Order] = field(default_factory=dict)
    latest: dict[str, Value] = field(default_factory=dict)
    waiters: list[_Waiter] = field(default_factory=list)


class MqttDriver:
    """All MQTT devices of a site over one aiomqtt client; reconnects with backoff forever."""

    def __init__(self, devices: Sequence[DeviceConfig], ctx: DriverContext) -> None:
        if not ctx.mqtt_url:
            raise ValueError("MQTT devices need an MQTT broker URL")
        self.ctx = ctx
        self.broker = parse_mqtt_url(ctx.mqtt_url)
        self._devices: dict[str, MqttDevice] = {}
        device_tz = ZoneInfo(ctx.settings.device_timezone)
        self._routes: dict[str, list[tuple[MqttDevice, str]]] = {}
        self._rpc_sources: dict[str, MqttDevice] = {}
        for cfg in devices:
            profile = ctx.profiles[cfg.id]
            if not isinstance(profile, MqttProfile):
                raise ValueError(f"device {cfg.id}: profile '{cfg.profile}' is not an MQTT profile")
            if not cfg.topic:
                raise ValueError(f"device {cfg.id}: an MQTT device needs a topic")
            binding = bind(profile, cfg.topic, ctx.client_id, device_tz=device_tz)
            dev = MqttDevice(cfg.id, binding, ctx.stats[cfg.id])
            self._devices[cfg.id] = dev
            for topic, channel in dev.binding.subscriptions.items():
                self._routes.setdefault(topic, []).append((dev, channel))
            if isinstance(dev.binding, ShellyGen2):
                self._rpc_sources[cfg.topic] = dev
        self._reply_topic = f"{ctx.client_id}/rpc" if self._rpc_sources else None
        self._client: aiomqtt.Client | None = None
        self._connected = asyncio.Event()
        self._request_ids = itertools.count(1)
        self._task: asyncio.Task[None] | None = None
        self.loop_errors = 0  # unexpected failures of the connection loop (bugs), each followed by a reconnect
        self.reconnect_pause_s = 0.0  # the pause before the latest reconnect attempt (0 before the first)

    @property
    def connected(self) -> bool:
        """Whether the broker connection is up."""
        return self._connected.is_set()

    async def start(self) -> None:
        """Start the connection loop (it keeps trying while the broker is away)."""
        self._task = asyncio.create_task(self._run(), name="mqtt bridge")

    async def stop(self) -> None:
        """Disconnect (the broker keeps the session) and stop."""
        if self._task:
            await cancel_and_wait([self._task])
            self._task = None

    async def _run(self) -> None:
        """Connect, subscribe, dispatch; on any failure log, count, back off and connect again.

        Only cancellation ends this loop: a lost broker is an aiomqtt.MqttError; anything else is a
        bug (ours or a library's), logged with its traceback and counted in `loop_errors`, and the
        bridge reconnects rather than leave every MQTT device unread for good. The pause doubles
        from reconnect_min_s to reconnect_max_s; it starts again from the minimum only after a
        connection that held for reconnect_max_s, so a failure right after each connect backs off too.
        """
        settings = self.ctx.settings
        loop = asyncio.get_running_loop()
        backoff = settings.reconnect_min_s
        was_up: bool | None = None
        topics = [*self._routes, *([self._reply_topic] if self._reply_topic else [])]
        while True:
            reason = "connection closed"
            up_since: float | None = None
            try:
                async with aiomqtt.Client(
                    self.broker.host,
                    self.broker.port,
                    username=self.broker.username,
                    password=self.broker.password,
                    identifier=self.ctx.client_id,
                    clean_session=False,
                    protocol=aiomqtt.ProtocolVersion.V311,
                    keepalive=settings.mqtt_keepalive_s,
                    timeout=settings.mqtt_timeout_s,
                    tls_context=self.broker.tls,
                ) as client:
                    up_since = loop.time()
                    # Subscribing again is harmless on a resumed session and needed on a fresh one.
                    for i in range(0, len(topics), 100):
                        await client.subscribe([(t, 1) for t in topics[i : i + 100]])
                    self._client = client
                    self._connected.set()
                    if was_up is not True:
                        log.info("MQTT broker %s:%s connected", self.broker.host, self.broker.port)
                    was_up = True
                    await self._ask_for_state(client)
                    # aiomqtt 2.x's queue of received messages (`len(client.messages)` is its size).
                    queue = client._queue
                    async for message in client.messages:
                        self._dispatch(message.topic.value, bytes(message.payload or b""), message.retain)
                        # One wake-up for the messages of the next few milliseconds instead of one
                        # each (the iterator spends a task and an asyncio.wait per message): under a
                        # steady stream they gather meanwhile and are taken in one go; a lone
                        # message is not delayed, the ones behind it by at most GATHER_S.
                        await asyncio.sleep(GATHER_S)
                        while not queue.empty():
                            message = queue.get_nowait()
                            self._dispatch(message.topic.value, bytes(message.payload or b""), message.retain)
            except aiomqtt.MqttError as exc:
                reason = str(exc)
            except Exception as exc:
                self.loop_errors += 1
                reason = f"{type(exc).__name__}: {exc}"
                log.exception("MQTT bridge failed unexpectedly (%d so far); reconnecting", self.loop_errors)
            finally:
                self._client = None
                self._connected.clear()
            if up_since is not None and loop.time() - up_since >= settings.reconnect_max_s:
                backoff = settings.reconnect_min_s
            if was_up is not False:
                log.warning("MQTT broker %s:%s lost: %s; reconnecting", self.broker.host, self.broker.port, reason)
                was_up = False
            self.reconnect_pause_s = backoff * random.uniform(1.0, 1.25)  # jitter: not all pollers at once
            await asyncio.sleep(self.reconnect_pause_s)
            backoff = min(backoff * 2, settings.reconnect_max_s)

    async def _ask_for_state(self, client: aiomqtt.Client) -> None:
        """Ask every commandable device for its state, rather than wait for its next report.

        Relays and ACs report on change (Shelly only then), so after a (re)connect their state could
        stay unknown for a long time. Sensors are asked for their state point too (occupancy, a door
        contact): a room would otherwise show "occupancy unknown" until someone walks past; a
        sleeping battery sensor that cannot answer reports at its next change anyway.
        """
        for dev in self._devices.values():
            points = dev.binding.profile.points
            point = next((p for p in points if p.writable), None) or next(
                (p for p in points if p.kind == "state"), None
            )
            if point is not None:
                for m in dev.binding.query(point, next(self._request_ids)):
                    await client.publish(m.topic, m.payload, qos=1)

    def _dispatch(self, topic: str, payload: bytes, retained: bool) -> None:
        now = self.ctx.clock()
        try:
            if topic == self._reply_topic:
                self._on_reply(payload, now)
                return
            for dev, channel in self._routes.get(topic, ()):
                self._on_message(dev, channel, payload, retained, now)
        except Exception:  # a bug on one payload must never end the message loop
            log.exception("MQTT message on %s could not be handled", topic)

    def _reject(self, dev: MqttDevice, why: str) -> None:
        dev.stats.rejects += 1
        # Logged at warning once per device, then at debug: a chattering device must not flood the log.
        level = 30 if dev.stats.rejects == 1 else 10
        log.log(level, "device %s: payload rejected (%d so far): %s", dev.id, dev.stats.rejects, why)

    def _on_message(self, dev: MqttDevice, channel: str, payload: bytes, retained: bool, now: datetime) -> None:
        if len(payload) > self.ctx.settings.mqtt_max_payload:
            self._reject(dev, f"{len(payload)} bytes on {channel}, more than {self.ctx.settings.mqtt_max_payload}")
            return
        try:
            parsed = dev.binding.parse(channel, payload)
        except Malformed as exc:
            self._reject(dev, f"{channel}: {exc}")
            return
        if isinstance(parsed, Availability):
            self._on_availability(dev, parsed, retained, now)
        else:
            self._accept(dev, parsed, retained, now)

    def _on_availability(self, dev: MqttDevice, msg: Availability, retained: bool, now: datetime) -> None:
        guard = dev.orders.setdefault(AVAILABILITY, _Order())
        if retained and guard.live:
            dev.stats.out_of_order += 1
            return
        guard.live = guard.live or not retained
        status = dev.stats.set_online(msg.online, now, "availability message")
        if status:
            self.ctx.emit([status])

    def _accept(self, dev: MqttDevice, parsed: Parsed, retained: bool, now: datetime) -> None:
        """Apply one data message: ordering guard, readings, online, waiting commands."""
        stats = dev.stats
        guard = dev.orders.setdefault(parsed.channel, _Order())
        order = self._trusted_order(dev, parsed.order, now)
        if order is not None:
            if guard.source_s is not None and order < guard.source_s:
                stats.out_of_order += 1
                return
            guard.source_s = order
        elif retained and guard.live:
            stats.out_of_order += 1
            return
        events: list[Event] = []
        if not retained:
            guard.live = True
            stats.last_seen = now
            status = stats.set_online(True, now, "reporting")
            if status:
                events.append(status)
        for why in parsed.errors:
            self._reject(dev, why)
        for name in parsed.implausible:
            self._reject(dev, f"{name}: value out of range")
        profile = dev.binding.profile
        for name, value in parsed.values.items():
            point = profile.point(name)
            dev.latest[name] = value
            events.append(reading(stats, name, value, point.unit, now))
            if point.kind == "counter" and isinstance(value, int | float):
                events.append(
                    stats.counter_delta(
                        name,
                        float(value),
                        point.unit,
                        now,
                        order,
                        resolution=point.resolution,
                        wraps_at=point.wraps_at,
                    )
                )
        for name in (*parsed.unavailable, *parsed.implausible):
            events.append(reading(stats, name, None, profile.point(name).unit, now))
        if events:
            self.ctx.emit(events)
        if not retained:
            for w in dev.waiters:
                seen = parsed.values.get(w.point.name)
                if not w.done.done() and seen is not None and matches(w.point, seen, w.requested):
                    w.done.set_result(seen)

    def _trusted_order(self, dev: MqttDevice, order: float | None, now: datetime) -> float | None:
        """The message's own timestamp as far as it can be trusted; a clock far off is flagged.

        Readings are stamped with the receive time whatever the device says. A timestamp more than
        max_clock_skew_s off the receive time is counted (`clock_skew`) and logged when the device
        starts and stops being off. One in the future is a wrong clock: it is ignored, so it can
        neither make later, correct messages look old nor stretch an energy step. One in the past is
        also a backlog delivered after an outage: it still orders the device's own messages and
        times its energy steps.
        """
        if order is None:
            return None
        stats = dev.stats
        off_s = order - now.timestamp()
        if abs(off_s) <= self.ctx.settings.max_clock_skew_s:
            if stats.skewed:
                stats.skewed = False
                log.info(
                    "device %s: timestamps within %g s of the receive time again",
                    dev.id,
                    self.ctx.settings.max_clock_skew_s,
                )
            return order
        stats.clock_skew += 1
        if not stats.skewed:
            stats.skewed = True
            log.warning(
                "device %s: timestamp %+.0f s off the receive time (more than %g s); readings keep the receive time",
                dev.id,
                off_s,
                self.ctx.settings.max_clock_skew_s,
            )
        return None if off_s > 0 else order

    def _on_reply(self, payload: bytes, now: datetime) -> None:
        try:
            reply = parse_rpc_reply(payload)
        except Malformed as exc:
            log.debug("RPC reply ignored: %s", exc)
            return
        dev = self._rpc_sources.get(reply.src)
        if dev is None or not isinstance(dev.binding, ShellyGen2):
            return
        if reply.error is not None:
            log.warning("device %s: RPC %s failed: %s", dev.id, reply.id, reply.error)
            return
        parsed = dev.binding.reply(reply.result) if reply.result else None
        if parsed is not None:
            self._accept(dev, parsed, False, now)

    async def _publish(self, messages: list[Publish]) -> None:
        await self._connected.wait()
        client = self._client
        if client is None:
            raise aiomqtt.MqttError("not connected to the MQTT broker")
        for m in messages:
            await client.publish(m.topic, m.payload, qos=1)

    async def command(self, device_id: str, point: str, value: Value, timeout_s: float) -> CommandResult:
        """Publish a command, then wait for the device's own report of the value; one retry."""
        dev = self._devices[device_id]
        p = dev.binding.profile.point(point)
        try:
            requested = command_value(p, value)
        except ValueError as exc:
            raise CommandRefused(f"{point}: {exc}") from None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        waiter = _Waiter(p, requested, loop.create_future())
        dev.waiters.append(waiter)
        detail = "no attempt finished"
        try:
            for attempt in range(2):
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                messages = dev.binding.command(p, requested, next(self._request_ids))
                # The retry also asks for a report, in case the command landed but its report was lost;
                # a Shelly reports nothing when the output does not change, so it is always asked.
                if attempt or isinstance(dev.binding, ShellyGen2):
                    messages += dev.binding.query(p, next(self._request_ids))
                try:
                    async with asyncio.timeout(remaining / 2 if attempt == 0 else remaining):
                        await self._publish(messages)
                        observed = await asyncio.shield(waiter.done)
                    return CommandResult(
                        device=device_id, point=point, requested=requested, status="confirmed", observed=observed
                    )
                except TimeoutError:
                    detail = f"no report of {point}={requested!r} within {timeout_s} s"
                except aiomqtt.MqttError as exc:
                    detail = f"publish failed: {exc}"
        finally:
            dev.waiters.remove(waiter)
            waiter.done.cancel()
        return CommandResult(
            device=device_id,
            point=point,
            requested=requested,
            status="failed",
            observed=dev.latest.get(point),
            detail=detail,
        )
