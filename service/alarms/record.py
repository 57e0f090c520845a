"""The alarm record: one alarm lifecycle as the engine keeps it, the store saves it and the API shows it.

A low module (standard library only): the engine, the store, the notifiers, the API and the
dashboard all take this one type. The store maps it to and from its row (service.store.db).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class AlarmType(StrEnum):
    """The alarm types of DESIGN §4 (exact strings)."""

    source_transfer_failed = "source_transfer_failed"
    backfeed = "backfeed"
    redundancy_lost = "redundancy_lost"
    generator_start_failed = "generator_start_failed"
    generator_overload = "generator_overload"
    lit_empty_room = "lit_empty_room"
    ac_too_cold = "ac_too_cold"
    ac_heating_too_warm = "ac_heating_too_warm"
    ac_door_open = "ac_door_open"
    high_power_appliance = "high_power_appliance"
    shutdown_failed = "shutdown_failed"
    device_offline = "device_offline"
    telemetry_dropped = "telemetry_dropped"
    hazard_overdue = "hazard_overdue"
    ac_left_on = "ac_left_on"
    lit_in_daylight = "lit_in_daylight"
    grid_lost = "grid_lost"
    security_load_exceeded = "security_load_exceeded"
    generator_not_auto = "generator_not_auto"
    ats_not_auto = "ats_not_auto"
    critical_load_off = "critical_load_off"


class Severity(StrEnum):
    """How urgent an alarm is, most urgent first."""

    critical = "critical"
    high = "high"
    warning = "warning"
    low = "low"


class AlarmState(StrEnum):
    """Alarm states of GET /api/alarms."""

    active_unacked = "active_unacked"
    active_acked = "active_acked"
    cleared_unacked = "cleared_unacked"
    cleared = "cleared"
    shelved = "shelved"


@dataclass(frozen=True, slots=True, kw_only=True)
class Alarm:
    """One alarm lifecycle; `active` is its condition (after delays), also while shelved."""

    id: str
    type: str
    severity: Severity
    subject: str
    state: AlarmState
    active: bool
    raised_at: datetime
    updated_at: datetime
    cleared_at: datetime | None = None
    acked_by: str | None = None
    acked_at: datetime | None = None
    shelved_until: datetime | None = None
    shelved_by: str | None = None
    message: str = ""
    value: float | str | None = None

    @property
    def key(self) -> tuple[str, str]:
        """(type, subject): at most one open lifecycle each."""
        return (self.type, self.subject)

    @property
    def acked(self) -> bool:
        """Whether the current occurrence has been acknowledged."""
        return self.acked_by is not None

    @property
    def open(self) -> bool:
        """Whether the lifecycle still needs someone (anything but `cleared`)."""
        return self.state is not AlarmState.cleared

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form: the API's AlarmOut (GET /api/alarms, ack, shelve) and the `alarm` event."""
        return {
            "id": self.id,
            "type": self.type,
            "severity": self.severity.value,
            "subject": self.subject,
            "state": self.state.value,
            "raised_at": self.raised_at.isoformat(),
            "cleared_at": self.cleared_at.isoformat() if self.cleared_at else None,
            "acked_by": self.acked_by,
            "acked_at": self.acked_at.isoformat() if self.acked_at else None,
            "message": self.message,
            "value": self.value,
            "shelved_until": self.shelved_until.isoformat() if self.shelved_until else None,
            "shelved_by": self.shelved_by,
        }
