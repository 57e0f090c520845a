"""MQTT vendor conventions: which topics a device uses, what its payloads mean, how it is commanded.

Pure: no I/O. A `Binding` ties one profile to one device's site-file `topic` `t`:

- `zigbee2mqtt` (`t` = `zigbee2mqtt/<name>`): channel `state` is `t`; availability `t/availability`;
  commands are JSON on `t/set`, queries on `t/get`.
- `tasmota` (`t` = the device topic): channel `stat/POWER` is `stat/t/POWER`, `tele/SENSOR` is
  `tele/t/SENSOR`, ...; LWT `tele/t/LWT`; commands `cmnd/t/POWER` ON/OFF, an empty one queries.
- `shelly-gen2` (`t` = the device id): channel `status/switch:0` is `t/status/switch:0`;
  availability `t/online`; JSON-RPC `Switch.Set` / `Switch.GetStatus` on `t/rpc`, answered on
  `<client id>/rpc`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any, ClassVar, Final

import orjson

from drivers.profiles import MqttPoint, MqttProfile
from drivers.types import Value

AVAILABILITY: Final = "@availability"  # pseudo-channel of the availability / LWT topic

_MISSING: Final = object()


class Malformed(ValueError):
    """A payload that cannot be used at all (not UTF-8, not JSON, not an object, unknown word)."""


@dataclass(frozen=True, slots=True)
class Publish:
    """One message to send."""

    topic: str
    payload: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Parsed:
    """What one data message says about a device's points."""

    channel: str
    values: dict[str, Value]  # good values by point name, already scaled
    unavailable: tuple[str, ...] = ()  # the device sent null: quality bad
    implausible: tuple[str, ...] = ()  # out of range or not an allowed choice: quality bad, counted
    errors: tuple[str, ...] = ()  # points skipped for a wrong type or NaN: counted
    order: float | None = None  # the message's own timestamp (s), where the convention has one


@dataclass(frozen=True, slots=True)
class Availability:
    """An availability / LWT message."""

    online: bool


def _text(payload: bytes) -> str:
    try:
        return payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise Malformed("payload is not UTF-8") from None


def _json_object(payload: bytes) -> dict[str, Any]:
    try:
        obj = orjson.loads(payload)  # orjson refuses NaN and Infinity, as JSON does
    except orjson.JSONDecodeError as exc:
        raise Malformed(f"invalid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise Malformed(f"expected a JSON object, got {type(obj).__name__}")
    return obj


def _dig(obj: dict[str, Any], dotted: str) -> object:
    node: object = obj
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _same_word(a: object, b: object) -> bool:
    """Payload words compare case-insensitively; other JSON values by type and value (True is not 1)."""
    if isinstance(a, str) and isinstance(b, str):
        return a.casefold() == b.casefold()
    return type(a) is type(b) and a == b


def coerce(point: MqttPoint, raw: object) -> tuple[str, Value]:
    """One payload value -> ("good", value) | ("null", None) | ("implausible", None) | ("error", reason)."""
    if raw is None:
        return "null", None
    if point.type == "bool":
        if any(_same_word(raw, t) for t in point.true_values):
            return "good", True
        if any(_same_word(raw, f) for f in point.false_values):
            return "good", False
        return "error", f"{point.name}: {raw!r} is not a known on/off value"
    if point.type in ("float", "int"):
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            return "error", f"{point.name}: {raw!r} is not a number"
        if not math.isfinite(raw):
            return "error", f"{point.name}: {raw!r} is not finite"
        if point.type == "int" and not float(raw).is_integer():
            return "error", f"{point.name}: {raw!r} is not a whole number"
        value: float | int = round(raw * point.scale) if point.type == "int" else float(raw) * point.scale
        if (point.min is not None and value < point.min) or (point.max is not None and value > point.max):
            return "implausible", None
        return "good", value
    if not isinstance(raw, str):
        return "error", f"{point.name}: {raw!r} is not a string"
    if point.choices and raw not in point.choices:
        return "implausible", None
    return "good", raw


def command_value(point: MqttPoint, value: Value) -> Value:
    """Validate a commanded value for a writable point; ValueError says why it is refused."""
    if point.type == "bool":
        if isinstance(value, bool):
            return value
        kind, out = coerce(point, value)
        if kind == "good":
            return out
        raise ValueError(f"{value!r} is not on/off for '{point.name}'")
    if point.type in ("float", "int"):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f"{value!r} is not a number")
        if point.type == "int" and not float(value).is_integer():
            raise ValueError(f"{value!r} is not a whole number")
        lo, hi = point.min, point.max
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise ValueError(f"{value} is outside {lo}..{hi} {point.unit}".rstrip())
        return int(value) if point.type == "int" else float(value)
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a string")
    for choice in point.choices:
        if choice.casefold() == value.casefold():
            return choice
    raise ValueError(f"'{value}' is not one of {point.choices}")


def matches(point: MqttPoint, observed: Value, requested: Value) -> bool:
    """Whether a reported value shows a commanded one."""
    if point.type in ("float", "int"):
        if not isinstance(observed, int | float) or not isinstance(requested, int | float):
            return False
        return abs(observed - requested) <= max(0.01, 1e-6 * abs(requested))
    return observed == requested


def _wire(point: MqttPoint, value: Value) -> object:
    """The payload form of a commanded value: a bool as the profile's own first on/off word."""
    if point.type == "bool":
        words = point.true_values if value else point.false_values
        return next((w for w in words if isinstance(w, str)), bool(value))
    if isinstance(value, int | float) and not isinstance(value, bool) and point.scale != 1:
        return value / point.scale
    return value


def _epoch(value: object, naive_tz: tzinfo = UTC) -> float | None:
    """A payload timestamp: epoch ms (Zigbee2MQTT 'epoch'), epoch s, or ISO 8601 (naive read in `naive_tz`)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float) and math.isfinite(value):
        return value / 1000.0 if value > 1e11 else float(value)
    if isinstance(value, str):
        try:
            ts = datetime.fromisoformat(value)
        except ValueError:
            return None
        return (ts if ts.tzinfo else ts.replace(tzinfo=naive_tz)).timestamp()
    return None


class Binding(ABC):
    """One device's profile under its convention; subclasses fill in the vendor's topics."""

    convention: ClassVar[str]
    order_key: ClassVar[str | None] = None  # dotted payload key holding the message's own timestamp

    def __init__(self, profile: MqttProfile, topic: str, client_id: str, *, device_tz: tzinfo = UTC) -> None:
        if profile.convention != self.convention:
            raise ValueError(f"profile '{profile.name}' follows {profile.convention}, not {self.convention}")
        self.profile = profile
        self.topic = topic
        self.client_id = client_id
        self.device_tz = device_tz  # the zone of timestamps without an offset (Tasmota's local `Time`)
        self._channels: dict[str, list[tuple[MqttPoint, str]]] = {}
        for p in profile.points:
            for channel, key in ((p.channel, p.key), *((a.channel, a.key) for a in p.also)):
                self._channels.setdefault(channel, []).append((p, key))
        self.subscriptions: dict[str, str] = {self.channel_topic(c): c for c in self._channels}
        self.subscriptions[self.availability_topic()] = AVAILABILITY

    @abstractmethod
    def channel_topic(self, channel: str) -> str:
        """The MQTT topic of a profile channel."""

    @abstractmethod
    def availability_topic(self) -> str:
        """The availability / LWT topic."""

    @abstractmethod
    def availability(self, payload: bytes) -> Availability:
        """Parse an availability message."""

    @abstractmethod
    def command(self, point: MqttPoint, value: Value, request_id: int) -> list[Publish]:
        """Messages that set a writable point (value already checked by `command_value`)."""

    @abstractmethod
    def query(self, point: MqttPoint, request_id: int) -> list[Publish]:
        """Messages that ask the device to report a point now."""

    def parse(self, channel: str, payload: bytes) -> Parsed | Availability:
        """Parse one message of this device; Malformed if nothing in it can be used."""
        if channel == AVAILABILITY:
            return self.availability(payload)
        entries = self._channels[channel]
        if entries[0][1] == "":  # plain-text channel: the whole payload is the value
            text = _text(payload)
            return self._collect(channel, [(p, text) for p, _ in entries], None)
        return self._parse_object(channel, _json_object(payload))

    def _parse_object(self, channel: str, obj: dict[str, Any]) -> Parsed:
        order = _epoch(_dig(obj, self.order_key), self.device_tz) if self.order_key else None
        return self._collect(channel, [(p, _dig(obj, key)) for p, key in self._channels[channel]], order)

    def _collect(self, channel: str, raws: list[tuple[MqttPoint, object]], order: float | None) -> Parsed:
        values: dict[str, Value] = {}
        unavailable: list[str] = []
        implausible: list[str] = []
        errors: list[str] = []
        for point, raw in raws:
            if raw is _MISSING:
                continue
            kind, out = coerce(point, raw)
            if kind == "good":
                values[point.name] = out
            elif kind == "null":
                unavailable.append(point.name)
            elif kind == "implausible":
                implausible.append(point.name)
            else:
                errors.append(str(out))
        return Parsed(
            channel=channel,
            values=values,
            unavailable=tuple(unavailable),
            implausible=tuple(implausible),
            errors=tuple(errors),
            order=order,
        )


def _words(payload: bytes, online: str, offline: str) -> Availability:
    text = _text(payload).casefold()
    if text == online:
        return Availability(True)
    if text == offline:
        return Availability(False)
    raise Malformed(f"'{text[:40]}' is not {online}/{offline}")


class Zigbee2Mqtt(Binding):
    """Zigbee2MQTT: state JSON on the device topic, `/set`, `/get`, `/availability`."""

    convention = "zigbee2mqtt"
    order_key = "last_seen"  # present when Zigbee2MQTT's `last_seen` option is on

    def channel_topic(self, channel: str) -> str:
        """Zigbee2MQTT has one state channel: the device topic itself."""
        return self.topic

    def availability_topic(self) -> str:
        """`<topic>/availability`."""
        return f"{self.topic}/availability"

    def availability(self, payload: bytes) -> Availability:
        """`{"state":"online"}` (Zigbee2MQTT >= 1.30), or the legacy plain `online`/`offline`."""
        text = _text(payload)
        if text.startswith("{"):
            state = _json_object(payload).get("state")
            if not isinstance(state, str):
                raise Malformed("availability without a 'state' string")
            text = state
        return _words(text.encode(), "online", "offline")

    def command(self, point: MqttPoint, value: Value, request_id: int) -> list[Publish]:
        """`{"<key>": value}` on `<topic>/set`."""
        return [Publish(f"{self.topic}/set", orjson.dumps({point.key: _wire(point, value)}))]

    def query(self, point: MqttPoint, request_id: int) -> list[Publish]:
        """`{"<key>": ""}` on `<topic>/get`."""
        return [Publish(f"{self.topic}/get", orjson.dumps({point.key: ""}))]


class Tasmota(Binding):
    """Tasmota: `stat/<t>/...`, `tele/<t>/...`, commands on `cmnd/<t>/<COMMAND>`, LWT `tele/<t>/LWT`."""

    convention = "tasmota"
    order_key = "Time"  # tele/* JSON carries the device's local time; only its order is used

    def channel_topic(self, channel: str) -> str:
        """`stat/POWER` -> `stat/<t>/POWER`."""
        prefix, name = channel.split("/", 1)
        return f"{prefix}/{self.topic}/{name}"

    def availability_topic(self) -> str:
        """`tele/<t>/LWT`."""
        return f"tele/{self.topic}/LWT"

    def availability(self, payload: bytes) -> Availability:
        """`Online` / `Offline`."""
        return _words(payload, "online", "offline")

    def command(self, point: MqttPoint, value: Value, request_id: int) -> list[Publish]:
        """`ON` / `OFF` on `cmnd/<t>/<COMMAND>`."""
        word = _wire(point, value)
        return [Publish(self._command_topic(point), str(word).encode())]

    def query(self, point: MqttPoint, request_id: int) -> list[Publish]:
        """An empty `cmnd/<t>/<COMMAND>` makes Tasmota report the current state."""
        return [Publish(self._command_topic(point), b"")]

    def _command_topic(self, point: MqttPoint) -> str:
        return f"cmnd/{self.topic}/{point.channel.split('/', 1)[1]}"


class ShellyGen2(Binding):
    """Shelly Gen2: `<id>/status/<component>:<n>`, JSON-RPC on `<id>/rpc`, `<id>/online`."""

    convention = "shelly-gen2"
    order_key = "aenergy.minute_ts"  # minute resolution: only a strictly older minute is stale

    def channel_topic(self, channel: str) -> str:
        """`status/switch:0` -> `<id>/status/switch:0`."""
        return f"{self.topic}/{channel}"

    def availability_topic(self) -> str:
        """`<id>/online`."""
        return f"{self.topic}/online"

    def availability(self, payload: bytes) -> Availability:
        """`true` / `false`."""
        return _words(payload, "true", "false")

    def reply_topic(self) -> str:
        """Where the device answers RPCs sent with our client id as `src`."""
        return f"{self.client_id}/rpc"

    def command(self, point: MqttPoint, value: Value, request_id: int) -> list[Publish]:
        """`Switch.Set` `{"id": n, "on": bool}`."""
        return [self._rpc(request_id, "Switch.Set", {"id": self._switch_id(point), "on": bool(value)})]

    def query(self, point: MqttPoint, request_id: int) -> list[Publish]:
        """`Switch.GetStatus`; the reply carries the same fields as `status/switch:<n>`."""
        return [self._rpc(request_id, "Switch.GetStatus", {"id": self._switch_id(point)})]

    def reply(self, result: dict[str, Any]) -> Parsed | None:
        """A `Switch.GetStatus` result read as a `status/switch:<n>` message; None for other results."""
        switch_id = result.get("id")
        channel = f"status/switch:{switch_id}"
        if "output" not in result or isinstance(switch_id, bool) or channel not in self._channels:
            return None
        return self._parse_object(channel, result)

    def _rpc(self, request_id: int, method: str, params: dict[str, object]) -> Publish:
        body = {"id": request_id, "src": self.client_id, "method": method, "params": params}
        return Publish(f"{self.topic}/rpc", orjson.dumps(body))

    @staticmethod
    def _switch_id(point: MqttPoint) -> int:
        return int(point.channel.rsplit(":", 1)[1])


@dataclass(frozen=True, slots=True, kw_only=True)
class RpcReply:
    """A Shelly JSON-RPC reply."""

    src: str
    id: int | None
    result: dict[str, Any] | None
    error: str | None


def parse_rpc_reply(payload: bytes) -> RpcReply:
    """Parse a reply on `<client id>/rpc`; Malformed if it is not one."""
    obj = _json_object(payload)
    src, rid, result, error = obj.get("src"), obj.get("id"), obj.get("result"), obj.get("error")
    if not isinstance(src, str):
        raise Malformed("RPC reply without 'src'")
    return RpcReply(
        src=src,
        id=rid if isinstance(rid, int) and not isinstance(rid, bool) else None,
        result=result if isinstance(result, dict) else None,
        error=str(error.get("message", error)) if isinstance(error, dict) else None,
    )


CONVENTIONS: dict[str, type[Binding]] = {
    "zigbee2mqtt": Zigbee2Mqtt,
    "tasmota": Tasmota,
    "shelly-gen2": ShellyGen2,
}


def bind(profile: MqttProfile, topic: str, client_id: str, *, device_tz: tzinfo = UTC) -> Binding:
    """The binding of a device's profile and site-file topic under its convention."""
    return CONVENTIONS[profile.convention](profile, topic, client_id, device_tz=device_tz)
