"""InfluxDB line protocol rendered directly (no Point objects), per service/telemetry/measurements.py.

Escaping follows the line protocol spec as influxdb-client applies it: measurement names escape
comma and space; tag keys, tag values and field keys also escape '='; backslashes are doubled and
newlines/tabs written as ``\\n``/``\\t`` so a line never spans two lines (the outbox counts lines).
String field values escape double quote and backslash. Tags are written sorted by key and
empty ones left out, so a line equals what influxdb-client's `Point` renders, at ~1/7 the cost.
Timestamps are integer nanoseconds.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Final

from drivers.types import Quality, Reading
from service.config.compliance import check_site
from service.telemetry import measurements as m

if TYPE_CHECKING:
    from service.config.site import Site

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_CONTROL: Final = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_ESCAPE_MEASUREMENT: Final = str.maketrans({"\\": "\\\\", ",": "\\,", " ": "\\ ", **_CONTROL})
_ESCAPE_KEY: Final = str.maketrans({"\\": "\\\\", ",": "\\,", " ": "\\ ", "=": "\\=", **_CONTROL})
_ESCAPE_STRING: Final = str.maketrans({"\\": "\\\\", '"': '\\"', **_CONTROL})
_OPTIONAL_TELEMETRY_TAGS: Final = frozenset(m.TELEMETRY_TAGS) - {"device", "point", "unit"}


def escape_measurement(name: str) -> str:
    """A measurement name escaped for line protocol."""
    return name.translate(_ESCAPE_MEASUREMENT)


def escape_key(text: str) -> str:
    """A tag key, tag value or field key escaped for line protocol."""
    return text.translate(_ESCAPE_KEY)


def string_field(text: str) -> str:
    """A quoted, escaped string field value."""
    return '"' + text.translate(_ESCAPE_STRING) + '"'


def timestamp_ns(ts: datetime) -> int:
    """Exact integer nanoseconds since the epoch of a timezone-aware datetime."""
    if ts.tzinfo is None:
        raise ValueError("line protocol timestamps must be timezone-aware")
    d = ts - _EPOCH
    return (d.days * 86_400 + d.seconds) * 1_000_000_000 + d.microseconds * 1_000


def float_field(value: float) -> str:
    """A finite float rendered for line protocol; NaN and infinities are refused."""
    if not math.isfinite(value):
        raise ValueError(f"line protocol has no representation for {value}")
    return repr(float(value))


def _series(measurement: str, tags: tuple[tuple[str, str | None], ...]) -> str:
    # Line protocol has no empty tag value; such a tag is left out rather than written empty.
    # Tags sorted by key, as InfluxDB stores them (and as influxdb-client's Point writes them).
    parts = [escape_measurement(measurement)]
    parts.extend(f"{escape_key(k)}={escape_key(v)}" for k, v in sorted(tags) if v)
    return ",".join(parts)


@lru_cache(maxsize=65_536)
def _telemetry_series(device: str, point: str, unit: str, extra: tuple[tuple[str, str], ...]) -> str:
    unknown = {k for k, _ in extra} - _OPTIONAL_TELEMETRY_TAGS
    if unknown:
        raise ValueError(f"telemetry has no tag {sorted(unknown)}; tags are {m.TELEMETRY_TAGS}")
    given = dict(extra, device=device, point=point, unit=unit)
    return _series(m.TELEMETRY, tuple((k, given.get(k)) for k in m.TELEMETRY_TAGS)) + " "


def _value_field(value: object) -> str | None:
    """`value=...` for a number or boolean (as 0/1), `text="..."` for a string; None for NaN/infinity."""
    if isinstance(value, bool):  # before int: a bool is an int
        return "value=1" if value else "value=0"
    if isinstance(value, int):
        return f"value={int(value)}"
    if isinstance(value, float):
        return f"value={float(value)!r}" if math.isfinite(value) else None
    return "text=" + string_field(str(value))


def telemetry_line(reading: Reading, tags: Mapping[str, str]) -> str | None:
    """The `telemetry` line of a good reading; None when there is nothing to write.

    `tags` holds the optional tags (site, room, department, source); device, point and unit
    come from the reading. Numbers and booleans (as 0/1) go to `value`, strings to `text`.
    """
    if reading.quality is not Quality.good or reading.value is None:
        return None
    field = _value_field(reading.value)
    if field is None:
        return None
    series = _telemetry_series(reading.device, reading.point, reading.unit, tuple(tags.items()))
    return f"{series}{field} {timestamp_ns(reading.ts)}"


class TelemetryLines:
    """`telemetry_line` for the devices of one site: each series rendered once, and the
    timestamp once for the readings of one message or poll (they share it)."""

    def __init__(self, tags: Mapping[str, Mapping[str, str]]) -> None:
        self._tags = {device: tuple(t.items()) for device, t in tags.items()}
        self._series: dict[tuple[str, str, str], str] = {}
        self._ts: datetime | None = None
        self._ns = ""

    def line(self, reading: Reading) -> str | None:
        """The reading's line, or None when there is nothing to write or the device is not the site's."""
        value = reading.value
        if value is None or reading.quality is not Quality.good:
            return None
        field = _value_field(value)
        if field is None:
            return None
        key = (reading.device, reading.point, reading.unit)
        series = self._series.get(key)
        if series is None:
            tags = self._tags.get(reading.device)
            if tags is None:
                return None
            series = self._series[key] = _telemetry_series(*key, tags)
        if reading.ts is not self._ts:
            self._ns = str(timestamp_ns(reading.ts))
            self._ts = reading.ts
        return f"{series}{field} {self._ns}"


def _record(
    measurement: str,
    tags: Iterable[tuple[str, str | None]],
    fields: Iterable[tuple[str, str]],
    at: datetime,
) -> str:
    """One line: tag and field keys come zipped from the key tuples in service/telemetry/measurements.py."""
    body = ",".join(f"{escape_key(k)}={v}" for k, v in fields)
    return f"{_series(measurement, tuple(tags))} {body} {timestamp_ns(at)}"


def alarm_line(*, site: str, type: str, subject: str, severity: str, state: str, at: datetime) -> str:
    """The `alarm` line of one alarm transition; `active` is 1 while the condition is active."""
    active = 1 if state in ("active_unacked", "active_acked") else 0
    return _record(
        m.ALARM,
        zip(m.ALARM_TAGS, (site, type, subject, severity), strict=True),
        zip(m.ALARM_FIELDS, (string_field(state), f"{active}i"), strict=True),
        at,
    )


def energy_line(
    *,
    site: str,
    meter: str,
    start: datetime,
    kwh: float,
    cost: float,
    after_hours: bool,
    band: str,
    department: str | None = None,
    source: str | None = None,
) -> str:
    """The `energy` line of one 15-minute interval of a meter, stamped with the interval start."""
    return _record(
        m.ENERGY,
        zip(m.ENERGY_TAGS, (site, meter, department, source, band), strict=True),
        zip(m.ENERGY_FIELDS, (float_field(kwh), float_field(cost), f"{int(after_hours)}i"), strict=True),
        start,
    )


def service_line(
    *,
    site: str,
    at: datetime,
    devices_offline: int,
    rejects: int,
    outbox_depth: int,
    dropped: int,
    readings: int,
) -> str:
    """The `wattkeeper` line: the service's own data-quality counters."""
    counts = (devices_offline, rejects, outbox_depth, dropped, readings)
    return _record(
        m.SERVICE,
        zip(m.SERVICE_TAGS, (site,), strict=True),
        zip(m.SERVICE_FIELDS, (f"{int(n)}i" for n in counts), strict=True),
        at,
    )


def site_lines(site: Site, at: datetime) -> list[str]:
    """The site file's supply figures (`site_info`) and its static compliance (`compliance`), for the boards."""
    info = site.site
    lines = [
        _record(
            m.SITE_INFO,
            ((m.SITE_INFO_TAGS[0], info.id),),
            zip(
                m.SITE_FIELDS,
                (
                    string_field(info.grade.value),
                    float_field(info.security_load_kw),
                    float_field(info.allowed_interruption_s),
                ),
                strict=True,
            ),
            at,
        )
    ]
    lines.extend(
        _record(
            m.SITE_INFO,
            zip(m.SITE_INFO_TAGS, (info.id, g.id), strict=True),
            zip(m.GENERATOR_FIELDS, (float_field(g.rated_kw), float_field(g.start_limit_s)), strict=True),
            at,
        )
        for g in site.generators
    )
    lines.extend(
        _record(
            m.COMPLIANCE,
            zip(m.COMPLIANCE_TAGS, (info.id, r.rule), strict=True),
            zip(
                m.COMPLIANCE_FIELDS,
                (
                    string_field(r.status),
                    f"{m.COMPLIANCE_LEVELS[r.status]}i",
                    string_field(r.title),
                    string_field(r.detail),
                ),
                strict=True,
            ),
            at,
        )
        for r in check_site(site).rules
    )
    return lines
