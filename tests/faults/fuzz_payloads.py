"""Hypothesis strategies for MQTT payloads of every profile, each with the number of rejects it must cost.

A payload is built by construction to be one of: not UTF-8, not JSON, JSON with NaN/Infinity,
JSON that is not an object, too large, a plain-text word or not, an availability message or not,
or a JSON object whose known keys (a random subset; the others missing) each hold a good value, a
null, a value of the wrong type, or one out of range / not among the choices, plus unknown keys.
The expected count follows the drivers' documented contract (drivers/README.md, "MQTT bridge"):
a payload that cannot be used at all is one reject; in a usable object each value of the wrong
type and each value out of range or not an allowed choice is one reject; null and missing keys
are none. Order keys (Zigbee2MQTT `last_seen`, Tasmota `Time`, Shelly `aenergy.minute_ts`) are
never generated: an out-of-order message is skipped before its values are looked at.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from drivers.conventions import AVAILABILITY, Binding, bind
from drivers.profiles import MqttPoint, MqttProfile, load_profile

MQTT_PROFILES = ("z2m-occupancy", "z2m-thermostat", "z2m-plug", "z2m-contact", "tasmota-relay", "shelly-plug")
MAX_PAYLOAD = 65536  # drivers.base.DriverSettings.mqtt_max_payload
ORDER_KEYS = frozenset({"last_seen", "Time", "minute_ts"})


@dataclass(frozen=True)
class Target:
    """One channel of one device: its topic and the points (with their payload keys) it carries."""

    device: str
    topic: str
    channel: str
    points: tuple[tuple[MqttPoint, str], ...]
    convention: str


@dataclass(frozen=True)
class Message:
    """A generated message and what it must cost."""

    device: str
    topic: str
    payload: bytes
    rejects: int
    kind: str


def targets(device_topics: dict[str, tuple[str, str]], client_id: str = "wattkeeper") -> list[Target]:
    """Every channel of every device: {device: (profile, site-file topic)} -> targets."""
    out = []
    for device, (profile_name, topic) in device_topics.items():
        profile = load_profile(profile_name)
        assert isinstance(profile, MqttProfile)
        binding: Binding = bind(profile, topic, client_id)
        by_channel: dict[str, list[tuple[MqttPoint, str]]] = {}
        for p in profile.points:
            for channel, key in ((p.channel, p.key), *((a.channel, a.key) for a in p.also)):
                by_channel.setdefault(channel, []).append((p, key))
        for mqtt_topic, channel in binding.subscriptions.items():
            points = tuple(by_channel.get(channel, ()))
            out.append(Target(device, mqtt_topic, channel, points, profile.convention))
    return out


# -- values ---------------------------------------------------------------------------------------

_json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
_extras = st.dictionaries(st.sampled_from(("x_a", "x_b", "x_vendor", "x_ünï")), _json_scalars, max_size=2)
_containers = st.one_of(
    st.lists(_json_scalars, max_size=3), st.dictionaries(st.text(max_size=5), _json_scalars, max_size=3)
)


def _words(point: MqttPoint) -> list[object]:
    return [*point.true_values, *point.false_values]


def _is_word(point: MqttPoint, raw: object) -> bool:
    for w in _words(point):
        if isinstance(w, str) and isinstance(raw, str) and w.casefold() == raw.casefold():
            return True
        if not isinstance(w, str) and type(w) is type(raw) and w == raw:
            return True
    return False


def _random_case(word: str) -> st.SearchStrategy[str]:
    return st.sampled_from(sorted({word, word.lower(), word.upper(), word.capitalize(), word.swapcase()}))


# Strategies are built once per point (building them is what costs, not drawing from them).
_built: dict[tuple[str, int], st.SearchStrategy[object]] = {}


def _once(kind: str, point: MqttPoint, build: Any) -> st.SearchStrategy[object]:
    key = (kind, id(point))  # profiles are loaded once, so a point is always the same object
    if key not in _built:
        _built[key] = build(point)
    return _built[key]


def good_value(point: MqttPoint) -> st.SearchStrategy[object]:
    """A value the point takes: no reject, a good reading."""
    return _once("good", point, _good_value)


def bad_value(point: MqttPoint) -> st.SearchStrategy[object]:
    """A value the point refuses: one reject (a wrong type, or out of range / not a choice)."""
    return _once("bad", point, _bad_value)


def _good_value(point: MqttPoint) -> st.SearchStrategy[object]:
    if point.type == "bool":
        words = _words(point)
        return st.sampled_from(words).flatmap(lambda w: _random_case(w) if isinstance(w, str) else st.just(w))
    if point.type in ("float", "int"):
        lo = -1e6 if point.min is None else point.min / point.scale
        hi = 1e6 if point.max is None else point.max / point.scale
        numbers = st.floats(min_value=lo, max_value=hi, allow_nan=False, allow_infinity=False)
        if point.type == "int" or (lo == math.floor(lo) and hi == math.floor(hi)):
            numbers = st.one_of(numbers, st.integers(math.ceil(lo), math.floor(hi)))
        # Scaling by a factor may push a boundary value a hair outside; keep away from the edges.
        return numbers.filter(lambda v: _in_range(point, v))
    return st.sampled_from(point.choices) if point.choices else st.text(max_size=20)


def _in_range(point: MqttPoint, raw: float) -> bool:
    value = raw * point.scale
    return (point.min is None or value >= point.min) and (point.max is None or value <= point.max)


def _bad_value(point: MqttPoint) -> st.SearchStrategy[object]:
    if point.type == "bool":
        return st.one_of(
            _containers,
            st.integers(-5, 5),
            st.floats(allow_nan=False, allow_infinity=False),
            st.text(max_size=10).filter(lambda t: not _is_word(point, t)),
        )
    if point.type in ("float", "int"):
        wrong = st.one_of(st.booleans(), st.text(max_size=10), _containers)
        out_of_range = []
        if point.min is not None:
            out_of_range.append(st.floats(max_value=point.min / point.scale - 1, min_value=-1e12, allow_nan=False))
        if point.max is not None:
            out_of_range.append(st.floats(min_value=point.max / point.scale + 1, max_value=1e12, allow_nan=False))
        return st.one_of(wrong, *out_of_range) if out_of_range else wrong
    wrong_type = st.one_of(st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), _containers)
    if point.choices:
        return st.one_of(wrong_type, st.text(max_size=12).filter(lambda t: t not in point.choices))
    return wrong_type


# -- payloads -------------------------------------------------------------------------------------

# Drawing is cheap, building a strategy is not: everything below is built once (per target).
_PRESENCE = st.sampled_from(("missing", "good", "null", "bad"))
_ENVELOPE = st.sampled_from(("not-utf8", "not-json", "nan", "not-object", "too-large"))
_SIZES = st.sampled_from((MAX_PAYLOAD + 1, 200_000, 1_048_576))
_NAN_TOKENS = st.sampled_from(("NaN", "Infinity", "-Infinity", "nan", "1e999"))
_NOT_OBJECT = st.one_of(_json_scalars, st.lists(_json_scalars, max_size=4))
_BINARY = st.binary(max_size=30)
_TEXT = st.text(max_size=30)
_SOME_TEXT = st.text(min_size=1, max_size=40)
_TENTHS = st.integers(0, 9)
_per_target: dict[tuple[str, int], st.SearchStrategy[Any]] = {}


def _for(kind: str, target: Target, build: Any) -> st.SearchStrategy[Any]:
    key = (kind, id(target))
    if key not in _per_target:
        _per_target[key] = build(target)
    return _per_target[key]


def _nest(obj: dict[str, Any], dotted: str, value: object) -> None:
    *parents, leaf = dotted.split(".")
    node = obj
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


@st.composite
def object_payload(draw: st.DrawFn, target: Target) -> tuple[bytes, int, str]:
    """A JSON object: some known keys good, null, wrong or out of range; the rest missing; unknown keys."""
    obj: dict[str, Any] = {}
    rejects = 0
    kinds = []
    for point, key in target.points:
        choice = draw(_PRESENCE)
        kinds.append(choice)
        if choice == "missing":
            continue
        if choice == "null":
            _nest(obj, key, None)
        elif choice == "good":
            _nest(obj, key, draw(good_value(point)))
        else:
            _nest(obj, key, draw(bad_value(point)))
            rejects += 1
    obj.update(draw(_extras))
    kind = "object:" + ("bad" if rejects else "good" if "good" in kinds else "empty")
    return json.dumps(obj, allow_nan=False).encode(), rejects, kind


@st.composite
def envelope_garbage(draw: st.DrawFn, target: Target) -> tuple[bytes, int, str]:
    """A payload that cannot be used at all: exactly one reject on any channel."""
    kind = draw(_ENVELOPE)
    if kind == "not-utf8":
        return b"\xff" + draw(_BINARY), 1, kind
    first_key = target.points[0][1].split(".")[0] if target.points and target.points[0][1] else "k"
    if kind == "too-large":
        return b'{"' + first_key.encode() + b'": "' + b"x" * draw(_SIZES) + b'"}', 1, kind
    if target.channel == AVAILABILITY or (target.points and target.points[0][1] == ""):
        # Plain-text channels: any text that is not one of the channel's words.
        text = draw(_TEXT)
        if _plain_ok(target, text):
            text = text + "?"
        return text.encode(), 1, "plain-word-unknown"
    if kind == "nan":
        return f'{{"{first_key}": {draw(_NAN_TOKENS)}}}'.encode(), 1, kind
    if kind == "not-object":
        return json.dumps(draw(_NOT_OBJECT)).encode(), 1, kind
    return b"\x00" + draw(_SOME_TEXT).encode(), 1, kind  # no JSON text starts with NUL


def _plain_ok(target: Target, text: str) -> bool:
    """Whether a plain-text payload is a word the channel knows (availability or an on/off word)."""
    word = text.strip()
    if target.channel == AVAILABILITY:
        if target.convention == "zigbee2mqtt" and word.startswith("{"):
            try:
                obj = json.loads(word)
            except ValueError:
                return False
            state = obj.get("state") if isinstance(obj, dict) else None
            return isinstance(state, str) and state.casefold() in ("online", "offline")
        words = ("true", "false") if target.convention == "shelly-gen2" else ("online", "offline")
        return word.casefold() in words
    point = target.points[0][0]
    return _is_word(point, word)


def _plain_text(target: Target) -> st.SearchStrategy[str]:
    if target.channel == AVAILABILITY:
        words = ["true", "false"] if target.convention == "shelly-gen2" else ["online", "offline"]
        good: st.SearchStrategy[str] = st.one_of(*(_random_case(w) for w in words))
        if target.convention == "zigbee2mqtt":
            good = st.one_of(good, good.map(lambda w: json.dumps({"state": w})))
    else:
        good = good_value(target.points[0][0]).filter(lambda w: isinstance(w, str)).map(str)
    return st.one_of(good, st.text(max_size=20))


@st.composite
def plain_payload(draw: st.DrawFn, target: Target) -> tuple[bytes, int, str]:
    """A plain-text channel (Tasmota stat/POWER, availability): a known word or not."""
    text = draw(_for("plain", target, _plain_text))
    ok = _plain_ok(target, text)
    return text.encode(), 0 if ok else 1, "plain-word" if ok else "plain-word-unknown"


@st.composite
def _message(draw: st.DrawFn, targets: st.SearchStrategy[Target]) -> Message:
    target = draw(targets)
    plain = target.channel == AVAILABILITY or (bool(target.points) and target.points[0][1] == "")
    if draw(_TENTHS) < 3:
        payload, rejects, kind = draw(_for("envelope", target, envelope_garbage))
    elif plain:
        payload, rejects, kind = draw(_for("plain-payload", target, plain_payload))
    else:
        payload, rejects, kind = draw(_for("object", target, object_payload))
    return Message(target.device, target.topic, payload, rejects, kind)


def message(all_targets: list[Target]) -> st.SearchStrategy[Message]:
    """One message to one channel of one device."""
    return _message(st.sampled_from(all_targets))
