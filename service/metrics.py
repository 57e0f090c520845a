"""Prometheus metrics of one service instance (its own registry, so tests can run several), and the
core's own counters."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "CoreStats", "Metrics"]

log = logging.getLogger(__name__)


def count_up(counter: Counter, totals: dict[str, int], seen: dict[str, int]) -> None:
    """Advance a per-device counter to the running totals the drivers report (`seen`: what it has counted)."""
    for device, n in totals.items():
        before = seen.get(device, 0)
        if n > before:
            counter.labels(device=device).inc(n - before)
            seen[device] = n


class StateReader(Protocol):
    """What reading a service-state entry needs of the store."""

    async def get_state(self, key: str) -> Any: ...


@dataclass(slots=True)
class CoreStats:
    """What the core has done since start; its parts count into one of these."""

    readings: int = 0
    statuses: int = 0
    evaluations: int = 0
    transitions: int = 0
    store_errors: int = 0
    ingest_errors: int = 0
    last_transition_at: datetime | None = None
    rejects_seen: dict[str, int] = field(default_factory=dict)
    skew_seen: dict[str, int] = field(default_factory=dict)

    async def read_state(self, store: StateReader, key: str, what: str) -> dict[str, Any] | None:
        """A service-state entry kept by an earlier run; None when there is none or the store is away
        (then counted as a store error: a start goes on without it)."""
        try:
            stored = await store.get_state(key)
        except Exception:
            self.store_errors += 1
            log.exception("could not read %s", what)
            return None
        return stored if isinstance(stored, dict) else None


class Metrics:
    """Counters and gauges exposed on /metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.readings = Counter("wattkeeper_readings_ingested", "Readings ingested", registry=r)
        self.rejects = Counter(
            "wattkeeper_payload_rejects", "Malformed payloads or implausible values, per device", ["device"], registry=r
        )
        self.clock_skew = Counter(
            "wattkeeper_device_clock_skew",
            "Messages whose device timestamp was more than 5 min off the receive time, per device",
            ["device"],
            registry=r,
        )
        self.outbox_depth = Gauge("wattkeeper_outbox_depth", "Telemetry lines waiting in the outbox", registry=r)
        self.dropped = Gauge("wattkeeper_telemetry_dropped", "Telemetry lines dropped (outbox full)", registry=r)
        self.written = Gauge("wattkeeper_telemetry_written", "Telemetry lines written to InfluxDB", registry=r)
        self.alarms = Gauge("wattkeeper_alarms", "Alarms by state", ["state"], registry=r)
        self.alarm_flood = Gauge(
            "wattkeeper_alarm_flood", "1 during an alarm flood (more than 10 alarms raised in 10 minutes)", registry=r
        )
        self.alarms_raised_recent = Gauge(
            "wattkeeper_alarms_raised_recent", "Alarms raised in the last flood window (10 minutes)", registry=r
        )
        self.commands = Counter("wattkeeper_commands", "Command results", ["status"], registry=r)
        self.devices_online = Gauge("wattkeeper_devices_online", "Devices online", registry=r)
        self.devices_offline = Gauge("wattkeeper_devices_offline", "Devices offline", registry=r)
        self.sse_clients = Gauge("wattkeeper_sse_clients", "Open event streams", registry=r)
        self.modbus_requests = Gauge(
            "wattkeeper_modbus_requests", "Modbus requests answered since start (a running total)", registry=r
        )
        self.mqtt_loop_errors = Gauge(
            "wattkeeper_mqtt_loop_errors",
            "Unexpected failures of the MQTT bridge's loop since start, each logged and followed by a reconnect",
            registry=r,
        )

    def render(self) -> bytes:
        """Text exposition format."""
        return generate_latest(self.registry)
