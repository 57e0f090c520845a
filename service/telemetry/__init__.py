"""Telemetry to InfluxDB: measurement names, line protocol, and the sink with its disk outbox."""
