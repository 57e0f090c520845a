"""Response and request bodies of the HTTP API (DESIGN.md §4 shapes)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

AlarmStateName = Literal["active_unacked", "active_acked", "cleared_unacked", "cleared", "shelved"]


class _Out(BaseModel):
    model_config = ConfigDict(extra="allow")


class DeviceOut(_Out):
    """A device and its link state."""

    id: str = Field(examples=["meter-grid-a"])
    profile: str = Field(examples=["sdm630"])
    driver: Literal["modbus", "mqtt"]
    online: bool
    last_seen: datetime | None


class PointOut(_Out):
    """The latest value of one device point."""

    device: str = Field(examples=["meter-grid-a"])
    point: str = Field(examples=["power"])
    value: float | int | bool | str | None = Field(examples=[48210.5])
    unit: str = Field(examples=["W"])
    ts: datetime
    quality: Literal["good", "bad", "stale"]


class AcOut(_Out):
    """A room's air-conditioner."""

    on: bool | None
    mode: str | None = Field(examples=["cool"])
    setpoint_c: float | None = Field(examples=[26.0])


class RoomOut(_Out):
    """A room now (GET /api/rooms)."""

    id: str = Field(examples=["r2119"])
    name: str = Field(examples=["2119 会议室"])
    department: str = Field(examples=["marketing"])
    kind: str = Field(examples=["meeting"])
    occupied: bool | None
    lights_on: bool | None
    temperature_c: float | None = Field(examples=[24.5])
    ac: AcOut | None
    plugs_w: float | None
    power_w: float | None
    override_until: datetime | None


class SourceOut(_Out):
    """A grid source."""

    id: str = Field(examples=["grid-a"])
    available: bool | None
    voltage_v: float | None = Field(examples=[229.8])


class SwitchOut(_Out):
    """A transfer switch; `position` is the source id feeding the load, or null."""

    id: str = Field(examples=["ats-1"])
    position: str | None = Field(examples=["grid-a"])


class GeneratorOut(_Out):
    """A standby generator."""

    id: str = Field(examples=["gen-1"])
    state: str | None = Field(examples=["stopped"])
    ready: bool | None
    power_kw: float | None
    breaker_closed: bool | None


class SupplyOut(_Out):
    """The supply side now (GET /api/supply)."""

    sources: list[SourceOut]
    transfer_switches: list[SwitchOut]
    generators: list[GeneratorOut]
    load_kw: float | None = Field(examples=[182.4])


class AlarmOut(_Out):
    """One alarm lifecycle."""

    id: str
    type: str = Field(examples=["backfeed"])
    severity: str = Field(examples=["critical"])
    subject: str = Field(examples=["gen-1"])
    state: AlarmStateName
    raised_at: datetime
    cleared_at: datetime | None
    acked_by: str | None
    message: str
    value: float | str | None


class FloodOut(_Out):
    """The alarm flood indicator: more than `threshold` alarms raised within `window_s`."""

    active: bool
    raised: int = Field(description="alarms raised in the window up to `at`", examples=[14])
    threshold: int = Field(examples=[10])
    window_s: float = Field(examples=[600.0])
    since: datetime | None = Field(description="when the flood began; null while there is none")
    at: datetime


class ShelveIn(BaseModel):
    """How long to shelve an alarm."""

    model_config = ConfigDict(extra="forbid")

    until: datetime = Field(description="timezone-aware end of the shelf (at most 24 h ahead)")


class ComplianceRuleOut(_Out):
    """One row of the compliance table."""

    rule: str
    title: str
    status: Literal["PASS", "FAIL", "WARN", "N/A"]
    detail: str
    clause: str


class ComplianceOut(_Out):
    """Static compliance plus live status."""

    site: str
    grade: str
    status: Literal["PASS", "FAIL", "WARN"]
    rules: list[ComplianceRuleOut]
    live: dict[str, Any]


class Health(BaseModel):
    """Liveness and the state of the parts."""

    status: Literal["ok", "degraded"]
    site: str
    devices_online: int
    devices_total: int
    mqtt_connected: bool | None
    outbox_depth: int | None
    version: str


class TelemetryBucket(BaseModel):
    """One bucket of a device point's 1-minute rollups."""

    ts: datetime = Field(description="start of the bucket")
    min: float = Field(examples=[47.9])
    max: float = Field(examples=[52.3])
    mean: float = Field(examples=[50.1])
    last: float = Field(examples=[51.0])
    count: int = Field(description="readings in the bucket", examples=[60])


class TelemetryOut(BaseModel):
    """A device point over a time range, in buckets of `every`."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "device": "meter-grid-a",
                    "point": "power",
                    "unit": "W",
                    "every": "15m",
                    "start": "2026-11-29T00:00:00+08:00",
                    "end": "2026-11-29T12:00:00+08:00",
                    "points": [
                        {
                            "ts": "2026-11-29T00:00:00+08:00",
                            "min": 41200.0,
                            "max": 45800.5,
                            "mean": 43120.7,
                            "last": 44010.2,
                            "count": 900,
                        }
                    ],
                }
            ]
        }
    )

    device: str
    point: str
    unit: str
    every: str
    start: datetime
    end: datetime
    points: list[TelemetryBucket]


class AuditOut(BaseModel):
    """One control action: who did what to which device point, and what came of it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 412,
                    "at": "2026-11-29T18:30:02+08:00",
                    "who": "schedule:after-hours",
                    "job": "after-hours",
                    "device": "r2119-light",
                    "point": "on",
                    "old": True,
                    "new": False,
                    "result": "confirmed",
                    "detail": "",
                }
            ]
        }
    )

    id: int
    at: datetime
    who: str
    job: str | None
    device: str | None
    point: str | None
    old: Any
    new: Any
    result: str
    detail: str


class ErrorOut(BaseModel):
    """What was wrong with a request."""

    detail: str = Field(examples=["start: must be before end"])
    errors: list[dict[str, str]] | None = Field(None, description="validation errors: where and problem")
