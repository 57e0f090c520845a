"""Response and request bodies of the HTTP API (DESIGN.md §4 shapes)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from service.store.db import AuditEntry

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
    illuminance_lx: float | None = Field(None, examples=[640], description="the darkest of its occupancy sensors")
    thresholds: dict[str, float] = Field(
        default_factory=dict, description="effective office-rule thresholds: the room's own values win over the site's"
    )
    own_thresholds: list[str] = Field(default_factory=list, description="threshold keys the room sets itself")
    central_heating: bool = False
    approved_w: dict[str, float] = Field(default_factory=dict, description="plugs with an approved appliance")


class SourceOut(_Out):
    """A grid source."""

    id: str = Field(examples=["grid-a"])
    available: bool | None = Field(
        description="null (unknown) while its meter or the switch status that reports it is offline or stale: "
        "unknown is never counted as available"
    )
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
    """One alarm lifecycle: the alarm record (service.alarms.record.Alarm) as its to_dict() gives it."""

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
    acked_at: datetime | None = None
    shelved_until: datetime | None = Field(None, description="set while the alarm is shelved")
    shelved_by: str | None = None


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

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"until": "2026-11-29T20:00:00+08:00"}]})

    until: datetime = Field(description="timezone-aware end of the shelf (at most 24 h ahead)")


class ComplianceRuleOut(_Out):
    """One row of the compliance table."""

    rule: str
    title: str
    status: Literal["PASS", "FAIL", "WARN", "N/A"]
    detail: str
    clause: str = Field(description="the clause of GB/T 29328-2018 (or wattkeeper's own check) it follows")
    article: str = Field(
        "", description="the article of the important-power-customer regulation it enforces (第六条1 … 第八条4)"
    )


class TransferOut(_Out):
    """One source transfer of a switch's load that ended: lost, without a source, fed again."""

    switch: str = Field(examples=["ats-1"])
    kind: Literal["transfer", "retransfer", "restored"] = Field(
        description="`transfer` to another source or the generator, `retransfer` back to the switch's "
        "preferred source, `restored` the same source back before the switch moved"
    )
    from_source: str = Field(examples=["grid-a"])
    to_source: str = Field(examples=["grid-b"])
    lost_at: datetime = Field(description="first reading with the load without a source")
    at: datetime = Field(description="first reading with the load fed again")
    interruption_s: float = Field(
        description="lost_at to at; 0 when no reading caught the load without a source", examples=[3.5]
    )
    allowed_interruption_s: float = Field(examples=[10])
    within_allowed: bool


class ComplianceLive(_Out):
    """What the live state says now: sources, generators, load, the last transfer."""

    at: datetime
    sources_available: list[str] = Field(description="grid sources with voltage now")
    sources_total: int
    substations_available: list[str]
    generators_ready: list[str] = Field(description="generators that could start and take the load")
    load_kw: float | None
    security_load_kw: float | None
    allowed_interruption_s: float | None
    last_transfer: TransferOut | None = Field(
        None, description="the latest transfer of the load between sources, with its duration; null before any"
    )
    last_transfers: list[TransferOut] = Field(
        default_factory=list, description="each transfer switch's last transfer, in site order"
    )
    active_supply_alarms: list[AlarmOut] = Field(description="open supply-side alarms")
    sources_unknown: list[str] = Field(
        default_factory=list,
        description="grid sources whose meter or switch status is offline or stale: not counted as available",
    )


_TRANSFER_EXAMPLE: dict[str, Any] = {
    "switch": "ats-1",
    "kind": "transfer",
    "from_source": "grid-a",
    "to_source": "grid-b",
    "lost_at": "2026-11-29T09:41:07.5+08:00",
    "at": "2026-11-29T09:41:11+08:00",
    "interruption_s": 3.5,
    "allowed_interruption_s": 10,
    "within_allowed": True,
}

_COMPLIANCE_EXAMPLE: dict[str, Any] = {
    "site": "hq",
    "grade": "first",
    "status": "PASS",
    "rules": [
        {
            "rule": "sources.count",
            "title": "number of supply sources",
            "status": "PASS",
            "detail": "2 source(s), first grade needs >= 2",
            "clause": "GB/T 29328-2018 供电电源配置: number of sources by grade",
            "article": "第六条2",
        }
    ],
    "live": {
        "at": "2026-11-29T10:00:00+08:00",
        "sources_available": ["grid-a", "grid-b"],
        "sources_total": 2,
        "substations_available": ["east-110kv", "west-35kv"],
        "generators_ready": ["gen-1"],
        "load_kw": 182.4,
        "security_load_kw": 150,
        "allowed_interruption_s": 10,
        "last_transfer": _TRANSFER_EXAMPLE,
        "last_transfers": [_TRANSFER_EXAMPLE],
        "active_supply_alarms": [],
    },
}


class ComplianceOut(_Out):
    """Static compliance plus live status."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [_COMPLIANCE_EXAMPLE]})

    site: str
    grade: str
    status: Literal["PASS", "FAIL", "WARN"]
    rules: list[ComplianceRuleOut]
    live: ComplianceLive


class Health(BaseModel):
    """Liveness and the state of the parts."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "status": "ok",
                    "site": "hq",
                    "devices_online": 36,
                    "devices_total": 36,
                    "mqtt_connected": True,
                    "outbox_depth": 0,
                    "version": "0.1.0",
                }
            ]
        }
    )

    status: Literal["ok", "degraded"]
    site: str
    devices_online: int
    devices_total: int
    mqtt_connected: bool | None
    outbox_depth: int | None
    version: str
    # With WATTKEEPER_BUS_URL: whether this core owns the site now (applies its readings); else null.
    bus_owner: bool | None = None


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


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditOut(AuditEntry):
    """One control action: who did what to which device point, and what came of it."""

    __pydantic_config__ = ConfigDict(
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


class ErrorOut(BaseModel):
    """What was wrong with a request."""

    detail: str = Field(examples=["start: must be before end"])
    errors: list[dict[str, str]] | None = Field(None, description="validation errors: where and problem")


# -- schedules ------------------------------------------------------------------------------------


class ScheduleTrigger(_Out):
    """When a schedule fires: sweep times, a cron expression, or an interval."""

    times: list[str] | None = Field(None, description="sweep: site-local times", examples=[["18:30", "20:00"]])
    cron: str | None = Field(None, description="report, retention: the cron trigger")
    every_s: float | None = Field(None, description="housekeeping: the interval")
    timezone: str | None = Field(None, examples=["Asia/Shanghai"])


class SweepDeviceOut(_Out):
    """What a sweep did to one device."""

    device: str = Field(examples=["r2119-light"])
    room: str = Field(examples=["r2119"])
    action: str = Field(description="switched_off, already_off, skipped_occupied, skipped_exempt, failed, ...")
    observed: bool | int | float | str | None = None
    detail: str = ""


class ScheduleRun(_Out):
    """One run of a schedule (times are ISO 8601 as recorded). A sweep has `sweep` ... `counts`; the
    monthly report `month` and its kWh; retention `before` and `deleted`."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "sweep": "after-hours",
                    "job": "after-hours",
                    "who": "scheduler",
                    "policy": "skip",
                    "started_at": "2026-11-29T18:30:00.012000+08:00",
                    "finished_at": "2026-11-29T18:30:03.480000+08:00",
                    "counts": {"switched_off": 14, "already_off": 20, "skipped_exempt": 4},
                    "slot": "2026-11-29T18:30:00+08:00",
                    "trigger": "scheduled",
                }
            ]
        },
    )

    who: str | None = Field(None, description="who ran it: a key, or the scheduler")
    trigger: Literal["scheduled", "manual"] | None = None
    at: str | None = Field(None, description="report, retention: when it ran")
    sweep: str | None = None
    job: str | None = None
    policy: str | None = Field(None, description="sweep: the occupied-room policy it ran with")
    started_at: str | None = None
    finished_at: str | None = None
    counts: dict[str, int] | None = Field(None, description="sweep: devices per action")
    slot: str | None = Field(None, description="sweep: the scheduled time it ran for")
    month: str | None = Field(None, description="report: YYYY-MM")
    departments: int | None = None
    departments_kwh: float | None = None
    site_meters_kwh: float | None = None
    before: str | None = Field(None, description="retention: rollups older than this were deleted")
    deleted: int | None = None


class SweepPolicyOut(_Out):
    """The after-hours sweep's settings."""

    occupied_rooms: Literal["skip", "notify_then_off"]


class ScheduleOut(_Out):
    """A schedule: its trigger, next and last run."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "id": "after-hours",
                    "kind": "sweep",
                    "description": "after-hours shutdown of lights, AC and office equipment",
                    "trigger": {"times": ["18:30", "20:00", "22:00"], "timezone": "Asia/Shanghai"},
                    "next_run": "2026-11-29T18:30:00+08:00",
                    "policy": {"occupied_rooms": "skip"},
                    "last_run": {
                        "sweep": "after-hours",
                        "job": "after-hours",
                        "who": "scheduler",
                        "policy": "skip",
                        "started_at": "2026-11-28T22:00:00.008000+08:00",
                        "finished_at": "2026-11-28T22:00:02.310000+08:00",
                        "counts": {"switched_off": 3, "already_off": 31, "skipped_exempt": 4},
                    },
                    "active": True,
                }
            ]
        },
    )

    id: str
    kind: Literal["sweep", "report", "retention", "housekeeping"]
    description: str
    trigger: ScheduleTrigger
    next_run: str | None = Field(description="ISO 8601; null when it runs only on its interval or never")
    last_run: ScheduleRun | None
    active: bool = Field(description="whether this instance runs it")
    policy: SweepPolicyOut | None = None


class OverrideBrief(_Out):
    """An override in force (housekeeping runs)."""

    id: int
    room: str
    until: str


class RunOut(ScheduleRun):
    """What a manual run did: a sweep's summary with every device, or `schedule` and the job's outcome."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "sweep": "after-hours",
                    "job": "after-hours:manual",
                    "who": "key:3f9c2a7d51e04b68",
                    "policy": "skip",
                    "started_at": "2026-11-29T19:05:00.010000+08:00",
                    "finished_at": "2026-11-29T19:05:02.920000+08:00",
                    "counts": {"switched_off": 1, "skipped_exempt": 1},
                    "devices": [
                        {"device": "r2119-light", "room": "r2119", "action": "switched_off", "observed": False},
                        {"device": "srv1-ac", "room": "srv1", "action": "skipped_exempt", "detail": "server room"},
                    ],
                },
                {"schedule": "monthly-report", "month": "2026-10", "departments": 4, "departments_kwh": 21786.9},
            ]
        },
    )

    schedule: str | None = Field(None, description="the schedule run (all but the sweep)")
    devices: list[SweepDeviceOut] | None = Field(None, description="sweep: every device it considered")
    active: list[OverrideBrief] | None = Field(None, description="housekeeping: overrides in force")


class SchedulePatchOut(_Out):
    """The sweep's settings after a change."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={"examples": [{"id": "after-hours", "policy": {"occupied_rooms": "notify_then_off"}}]},
    )

    id: str
    policy: SweepPolicyOut


class UnassignedDeviceOut(_Out):
    """A device left to place (`GET /api/devices?assigned=false`): in the site file without a room or supply
    role, or heard on the broker and not in the site file (then with the profile it fits, if any, and what it said)."""

    id: str = Field(examples=["r2119-door"])
    profile: str | None = Field(examples=["z2m-contact"])
    driver: Literal["modbus", "mqtt"]
    online: bool | None
    last_seen: datetime | None
    topic: str | None = Field(examples=["zigbee2mqtt/r2119-door"])
    assigned: bool
    in_site_file: bool
    confidence: float | None = None
    said: str | None = Field(None, examples=["Aqara MCCGQ11LM (LUMI lumi.sensor_magnet.aq2), exposes contact"])


class SiteAlarmsOut(BaseModel):
    """A site's open alarms: all, those nobody has acknowledged yet, the critical ones."""

    active: int = Field(examples=[2])
    unacked: int = Field(examples=[1])
    critical: int = Field(examples=[0])


class SiteOut(_Out):
    """One site of the deployment, as the fleet view lists it."""

    id: str = Field(examples=["hq"])
    name: str = Field(examples=["County Power Office HQ"])
    grade: str = Field(examples=["second"])
    timezone: str = Field(examples=["Asia/Shanghai"])
    compliance: Literal["PASS", "FAIL", "WARN"]
    grid_available: bool | None = Field(description="any grid source available now; null while unknown")
    on_generator: bool | None = Field(description="a transfer switch feeds its load from a generator now")
    alarms: SiteAlarmsOut
    energy_month_kwh: float = Field(description="kWh of the site meters this site-local month", examples=[18250.4])
