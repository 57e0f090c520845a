"""`wattkeeper discover`: devices found on the broker and on Modbus, as site-file `devices:` entries."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from drivers.probe import Found, ModbusTarget, RateLimiter, interpret, listen_mqtt, probe_modbus
from drivers.profiles import Profile, known_profiles, load_profile
from service.config.site import Device, Site


@dataclass(slots=True)
class Findings:
    """Everything discovery found, and (with a site file) how it compares."""

    found: list[Found]
    missing: list[Device] = field(default_factory=list)  # in the site file, in scope, did not answer
    differs: list[tuple[Device, Found]] = field(default_factory=list)  # answered, but fits another profile
    compared: bool = False

    @property
    def matched(self) -> list[Found]:
        """Devices a profile fits."""
        return [f for f in self.found if f.match is not None]

    @property
    def unmatched(self) -> list[Found]:
        """Devices no profile fits, with what they said."""
        return [f for f in self.found if f.match is None]


def builtin_profiles() -> list[Profile]:
    """Every shipped profile."""
    return [load_profile(name) for name in sorted(known_profiles())]


async def discover(
    mqtt_url: str | None,
    targets: Sequence[ModbusTarget],
    *,
    listen_s: float = 5.0,
    rate_per_s: float = 20.0,
    timeout_s: float = 1.0,
    limiter: RateLimiter | None = None,
    profiles: Sequence[Profile] | None = None,
) -> list[Found]:
    """Listen on the broker (if given) and probe each Modbus target, one request at a time."""
    chosen = list(profiles) if profiles is not None else builtin_profiles()
    found: list[Found] = []
    if mqtt_url:
        found.extend(interpret(await listen_mqtt(mqtt_url, listen_s=listen_s), chosen))
    bound = limiter or RateLimiter(rate_per_s)
    for target in targets:
        found.extend(await probe_modbus(target, chosen, bound, timeout_s=timeout_s))
    return found


def _site_key(dev: Device) -> tuple[str, ...]:
    if dev.driver == "mqtt":
        return ("mqtt", dev.topic or dev.id)
    return ("modbus", dev.host or "", str(dev.port), str(dev.unit))


def compare(found: list[Found], site: Site, *, mqtt: bool, targets: Sequence[ModbusTarget]) -> Findings:
    """What the site file lacks, what it has that did not answer (among what was asked), what differs."""
    by_key = {f.key: f for f in found}
    probed = {("modbus", t.host, str(t.port), str(u)) for t in targets for u in t.units}
    held = {_site_key(d): d for d in site.devices}
    # a device the file holds stays listed when no profile fits it: what it said is worth seeing
    result = Findings(found=[f for f in found if f.key not in held or f.match is None], compared=True)
    for key, dev in held.items():
        in_scope = (dev.driver == "mqtt" and mqtt) or key in probed
        answer = by_key.get(key)
        if answer is None:
            if in_scope:
                result.missing.append(dev)
        elif answer.match is not None and answer.match.profile != dev.profile:
            result.differs.append((dev, answer))
    return result


def _entry(f: Found) -> dict[str, Any]:
    assert f.match is not None
    entry: dict[str, Any] = {"id": f.id, "driver": f.driver, "profile": f.match.profile}
    if f.driver == "mqtt":
        entry["topic"] = f.topic
    else:
        entry.update(host=f.host, port=f.port, unit=f.unit)
    if f.match.role:
        entry["role"] = f.match.role
    return entry


def _flow(entry: dict[str, Any]) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in entry.items()) + "}"


def render_text(findings: Findings) -> str:
    """Site-file `devices:` entries to paste, then what did not match (and, with a site file, the differences)."""
    lines: list[str] = []
    matched = findings.matched
    if findings.compared:
        lines.append(f"# {len(matched)} device(s) answered that the site file lacks")
    else:
        lines.append(f"# {len(matched)} device(s) recognised; place each in a room (rooms[].devices)")
    lines.append("devices:")
    for f in matched:
        assert f.match is not None
        also = f" (also fits {', '.join(f.match.also)})" if f.match.also else ""
        lines.append(f"  - {_flow(_entry(f))}  # confidence {f.match.confidence:.2f}: {f.match.reason}{also}")
    if not matched:
        lines.append("  []")
    if findings.unmatched:
        lines.append("")
        lines.append(
            f"# {len(findings.unmatched)} no profile fits, or no answer (add a profile, check the address, leave out):"
        )
        for f in findings.unmatched:
            lines.append(f"#   {f.where}: {f.said}")
    if findings.compared:
        lines.append("")
        lines.append(f"# {len(findings.missing)} device(s) in the site file did not answer:")
        for dev in findings.missing:
            where = f"mqtt {dev.topic}" if dev.driver == "mqtt" else f"modbus {dev.host}:{dev.port} unit {dev.unit}"
            lines.append(f"#   {dev.id} ({dev.profile}, {where})")
        if findings.differs:
            lines.append("")
            lines.append(f"# {len(findings.differs)} device(s) answer like another profile than the site file says:")
            for dev, f in findings.differs:
                assert f.match is not None
                lines.append(
                    f"#   {dev.id}: site file {dev.profile}, answers like {f.match.profile} ({f.match.reason})"
                )
    return "\n".join(lines) + "\n"


def render_json(findings: Findings) -> str:
    """The same as JSON."""
    data: dict[str, Any] = {
        "devices": [
            {**_entry(f), "confidence": f.match.confidence, "reason": f.match.reason, "also": list(f.match.also)}
            for f in findings.matched
            if f.match is not None
        ],
        "unmatched": [
            {
                "driver": f.driver,
                "where": f.where,
                "topic": f.topic,
                "host": f.host,
                "port": f.port,
                "unit": f.unit,
                "said": f.said,
            }
            for f in findings.unmatched
        ],
    }
    if findings.compared:
        data["missing"] = [{"id": d.id, "profile": d.profile, "driver": d.driver} for d in findings.missing]
        data["differs"] = [
            {"id": d.id, "site_profile": d.profile, "answers_like": f.match.profile if f.match else None}
            for d, f in findings.differs
        ]
    return json.dumps(data, ensure_ascii=False, indent=2)
