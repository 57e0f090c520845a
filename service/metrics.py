"""Prometheus metrics of one service instance (its own registry, so tests can run several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]


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
